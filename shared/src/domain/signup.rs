//! Sign-up and email verification: the same answer, in the same time, whether or not the
//! address is registered.
//!
//! Verification proves two things: the mailbox (the link mailed to the address) and the sign-up
//! (its password). Every self-service sign-up for an address with no verified account keeps its
//! own password (the account's first, then `User::registrations`); none replaces another, and
//! the link plus the password of one of them activates that one and discards the others. So
//! whoever signs up an address first, without its mailbox, can never end up holding the account
//! its owner activates, and the owner can never activate a password it did not choose. A sign-up
//! never changes an account an administrator made, nor a verified one: the address is told of
//! the attempt instead.

use std::sync::Arc;
use std::time::Duration;

use crate::clock::SharedClock;
use crate::config::{Config, PasswordPolicy};
use crate::context::RequestCtx;
use crate::domain::error::{DomainError, DomainResult};
use crate::domain::lockout::Lockout;
use crate::domain::notify::Notifier;
use crate::domain::ratelimit::{Gate, admit};
use crate::domain::{email_field, validate_name, with_floor};
use crate::email::Email;
use crate::logging::security_event;
use crate::mail::templates;
use crate::password::{Hasher, PolicyError, Verified, check_policy};
use crate::secret::{Password, Token};
use crate::store::{
    NewRegistration, OneTimeKind, OneTimeTokenStore, Registration, SignupPort, StoreError, TokenPort, User,
};
use crate::tokens;

/// How often a sign-up re-reads an unverified account whose registrations a concurrent sign-up
/// changed before it gives up (and mails the attempted-sign-up notice instead).
const REGISTRATION_TRIES: usize = 3;

/// Mails verification links: a new link replaces the address's older one only when it is
/// actually sent (within the account's mail cap), so a capped request never kills the link
/// already in the mailbox.
#[derive(Clone)]
pub struct VerificationLinks {
    notifier: Notifier,
    ttl: Duration,
    clock: SharedClock,
}

impl VerificationLinks {
    pub fn new(notifier: Notifier, cfg: &Config, clock: SharedClock) -> Self {
        Self { notifier, ttl: cfg.verify_token_ttl, clock }
    }

    fn expires_at(&self) -> i64 {
        self.clock.now() + self.ttl.as_secs() as i64
    }

    fn mail(&self, user: &User, secret: &str) -> crate::mail::Mail {
        let n = &self.notifier;
        templates::verification(n.product(), n.base_url(), &user.email, &format!("{}.{secret}", user.id))
    }

    /// Mails a fresh link for `user` (resend, or a sign-in with the right password of an
    /// unverified address), if the mail cap allows it; otherwise nothing changes.
    pub async fn issue(&self, store: &dyn OneTimeTokenStore, user: &User, ctx: &RequestCtx) -> DomainResult<()> {
        if !self.notifier.allowed(&user.id, ctx, "verification").await {
            return Ok(());
        }
        let secret = tokens::random_secret()?;
        let hash = tokens::hash_secret(&secret);
        store.put_one_time(OneTimeKind::VerifyEmail, &user.id, &hash, self.expires_at(), user.session_version).await?;
        self.notifier.deliver(self.mail(user, &secret), ctx, "verification").await;
        Ok(())
    }
}

/// Sign-up and re-sending the verification mail.
pub struct Signup {
    store: Arc<dyn SignupPort>,
    hasher: Hasher,
    policy: PasswordPolicy,
    notifier: Notifier,
    links: VerificationLinks,
    floor: Duration,
    gate: Option<Gate>,
    clock: SharedClock,
}

impl Signup {
    pub fn new(
        store: Arc<dyn SignupPort>,
        hasher: Hasher,
        notifier: Notifier,
        gate: Option<Gate>,
        cfg: &Config,
        clock: SharedClock,
    ) -> Self {
        Self {
            store,
            hasher,
            policy: cfg.password.clone(),
            links: VerificationLinks::new(notifier.clone(), cfg, clock.clone()),
            notifier,
            floor: cfg.enumeration_floor,
            gate,
            clock,
        }
    }

    /// A sign-up for an address that is taken. An unverified account that a sign-up made gains
    /// this registration beside its others (none is replaced) and the address a new link;
    /// anything else (a verified account, one an administrator made) is left as it is and the
    /// address gets the "attempted sign-up" notice.
    async fn signup_taken(
        &self,
        email: &Email,
        hash: String,
        name: Option<&str>,
        ctx: &RequestCtx,
    ) -> DomainResult<()> {
        let registration =
            Registration { password_hash: hash, name: name.map(str::to_owned), created_at: self.clock.now() };
        for _ in 0..REGISTRATION_TRIES {
            let Some(u) = self.store.find_user_by_email(email.as_str()).await? else { break };
            if !(u.is_active && !u.is_verified && u.pending_signup) {
                break;
            }
            let mail = self.notifier.allowed(&u.id, ctx, "verification").await;
            let secret = tokens::random_secret()?;
            let token_hash = tokens::hash_secret(&secret);
            let all = u.with_registration(registration.clone());
            let r = NewRegistration {
                user_id: &u.id,
                read: &u,
                registrations: &all,
                token_hash: mail.then_some(token_hash.as_str()),
                expires_at: self.links.expires_at(),
                now: self.clock.now(),
            };
            if self.store.add_registration(&r).await? {
                security_event("signup", ctx, Some(&u.id), "registration_added");
                if mail {
                    self.notifier.deliver(self.links.mail(&u, &secret), ctx, "verification").await;
                }
                return Ok(());
            }
        }
        security_event("signup", ctx, None, "existing_address");
        let n = &self.notifier;
        let mail = templates::attempted_signup(n.product(), n.base_url(), email.as_str());
        n.send(email.as_str(), mail, ctx, "attempted_signup").await;
        Ok(())
    }

    /// Sign-up: same 202 and timing whether or not the address is taken.
    pub async fn signup(
        &self,
        raw_email: &str,
        pw: &Password,
        name: Option<&str>,
        ctx: &RequestCtx,
    ) -> DomainResult<()> {
        let email = email_field("email", raw_email);
        let name = validate_name(name);
        let (email, name) = match (email, name) {
            (Ok(e), Ok(n)) => (e, n),
            (e, n) => {
                let mut errs = Vec::new();
                for r in [e.err(), n.err()].into_iter().flatten() {
                    if let DomainError::Validation(v) = r {
                        errs.extend(v);
                    }
                }
                if let Err(PolicyError(v)) = check_policy(&self.policy, pw, None, "password") {
                    errs.extend(v);
                }
                return Err(DomainError::Validation(errs));
            }
        };
        check_policy(&self.policy, pw, Some(&email), "password")?;
        admit(&self.gate, &email, ctx).await?;
        with_floor(self.floor, async {
            let hash = self.hasher.hash(pw).await?;
            let now = self.clock.now();
            let user = User {
                id: uuid::Uuid::new_v4().to_string(),
                email: email.as_str().to_owned(),
                name: name.clone(),
                password_hash: hash.clone(),
                is_active: true,
                is_verified: false,
                is_superuser: false,
                created_at: now,
                updated_at: now,
                last_login_at: None,
                session_version: 1,
                mfa_enabled: false,
                pending_signup: true,
                registrations: Vec::new(),
            };
            let secret = tokens::random_secret()?;
            let token_hash = tokens::hash_secret(&secret);
            // One round trip: the account with its verification token (one write), the lockout
            // keys counted against the address before it had an account (a read), and the new
            // account's mail cap.
            let (registered, stale_locks, mail_allowed) = tokio::join!(
                self.store.register(&user, &token_hash, self.links.expires_at()),
                self.store.lockout_keys(&user.email),
                self.notifier.allowed(&user.id, ctx, "verification"),
            );
            match registered {
                Ok(()) => {
                    security_event("signup", ctx, Some(&user.id), "created");
                    // Failures counted against the address before it had an account (and locks
                    // they caused) are not the new account's.
                    match stale_locks {
                        Ok(keys) => {
                            for k in &keys {
                                self.store.clear_lockout(k).await?;
                            }
                        }
                        Err(_) => self.store.clear_all_lockouts(&user.email).await?,
                    }
                    if mail_allowed {
                        self.notifier.deliver(self.links.mail(&user, &secret), ctx, "verification").await;
                    }
                    Ok(())
                }
                Err(StoreError::EmailTaken) => self.signup_taken(&email, hash, name.as_deref(), ctx).await,
                Err(e) => Err(e.into()),
            }
        })
        .await
    }

    /// Re-sends verification mail if the account exists and is unverified; same answer always.
    pub async fn resend_verification(&self, raw_email: &str, ctx: &RequestCtx) -> DomainResult<()> {
        let email = email_field("email", raw_email)?;
        admit(&self.gate, &email, ctx).await?;
        with_floor(self.floor, async {
            match self.store.find_user_by_email(email.as_str()).await? {
                Some(u) if u.is_active && !u.is_verified => {
                    security_event("verification_resent", ctx, Some(&u.id), "sent");
                    self.links.issue(self.store.as_ref(), &u, ctx).await
                }
                _ => Ok(()),
            }
        })
        .await
    }
}

/// Email verification: the link's token and the password of one of the address's pending
/// registrations. Sends no mail but the lock notice of the lockout gate it passes.
pub struct Verification {
    store: Arc<dyn TokenPort>,
    hasher: Hasher,
    lockout: Lockout,
    clock: SharedClock,
}

impl Verification {
    pub fn new(store: Arc<dyn TokenPort>, hasher: Hasher, lockout: Lockout, clock: SharedClock) -> Self {
        Self { store, hasher, lockout, clock }
    }

    /// Consumes a verification token (single use) with the password of one of the address's
    /// registrations, which becomes the account's. An unknown, used or expired token and a
    /// password that matches no registration get the same `InvalidToken`; a wrong password
    /// counts toward the lockout like a failed login (and does not spend the link).
    pub async fn verify_email(&self, token: &Token, pw: &Password, ctx: &RequestCtx) -> DomainResult<()> {
        let invalid = |user: Option<&str>, outcome: &str| {
            security_event("email_verified", ctx, user, outcome);
            DomainError::InvalidToken
        };
        let (user_id, hash) = tokens::parse_one_time(token.expose()).ok_or_else(|| invalid(None, "invalid_token"))?;
        let Some(user) = self.store.get_user(&user_id).await? else { return Err(invalid(None, "invalid_token")) };
        let now = self.clock.now();
        // The link is checked before any password: a made-up token costs no argon2 run.
        let pending = self.store.peek_one_time(OneTimeKind::VerifyEmail, &user_id, &hash, now).await?;
        if user.is_verified || pending.is_none_or(|t| t.session_version != user.session_version) {
            return Err(invalid(None, "invalid_token"));
        }
        let Ok(attempt) = self.lockout.enter_from_ip(&user.email, ctx).await? else {
            return Err(invalid(Some(&user.id), "locked"));
        };
        // The account's own password first, then the later sign-ups, newest first.
        let mut chosen = None;
        let mut matched = self.hasher.verify(pw, Some(&user.password_hash)).await? != Verified::No;
        for r in user.registrations.iter().rev() {
            if matched {
                break;
            }
            if self.hasher.verify(pw, Some(&r.password_hash)).await? != Verified::No {
                matched = true;
                chosen = Some(r);
            }
        }
        if !matched {
            self.lockout.failed(attempt, Some(&user), ctx).await?;
            return Err(invalid(Some(&user.id), "wrong_password"));
        }
        self.lockout.succeeded(attempt).await?;
        if self.store.verify_email(&user_id, &hash, now, user.session_version, chosen).await? {
            security_event("email_verified", ctx, Some(&user_id), "success");
            Ok(())
        } else {
            Err(invalid(None, "invalid_token"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::testkit::{Kit, PASSWORD};
    use crate::store::UserLookup;

    const ATTACKERS: &str = "attacker-chose-this-1";

    fn signup(k: &Kit) -> Signup {
        Signup::new(k.store.clone(), k.hasher.clone(), k.notifier(), None, &k.cfg, k.clock.shared())
    }

    fn verification(k: &Kit) -> Verification {
        Verification::new(k.store.clone(), k.hasher.clone(), k.lockout(), k.clock.shared())
    }

    async fn verify(k: &Kit, token: &Token, pw: &str) -> DomainResult<()> {
        verification(k).verify_email(token, &Password::new(pw), &Kit::ctx("192.0.2.1")).await
    }

    async fn holds(k: &Kit, email: &str, pw: &str) -> bool {
        let u = k.store.find_user_by_email(email).await.unwrap().unwrap();
        k.hasher.verify(&Password::new(pw), Some(&u.password_hash)).await.unwrap() != Verified::No
    }

    #[tokio::test]
    async fn given_a_new_address_when_signing_up_then_the_link_with_the_password_verifies_it_once() {
        let k = Kit::new();
        let ctx = Kit::ctx("192.0.2.1");
        signup(&k).signup(" Ada@Example.COM ", &Password::new(PASSWORD), Some("Ada"), &ctx).await.unwrap();
        let token = Token::new(k.outbox.token_to("ada@example.com"));
        assert!(matches!(verify(&k, &token, "not-the-password-1").await, Err(DomainError::InvalidToken)));
        verify(&k, &token, PASSWORD).await.unwrap();
        assert!(matches!(verify(&k, &token, PASSWORD).await, Err(DomainError::InvalidToken)));
        let user = k.store.find_user_by_email("ada@example.com").await.unwrap();
        assert!(user.is_some_and(|u| u.is_verified && u.name.as_deref() == Some("Ada") && !u.pending_signup));
    }

    #[tokio::test]
    async fn given_a_verified_address_then_a_sign_up_answers_the_same_and_the_owner_is_told() {
        let k = Kit::new();
        let ctx = Kit::ctx("192.0.2.1");
        let uc = signup(&k);
        k.user("bob@example.com", PASSWORD).await;
        uc.signup("bob@example.com", &Password::new("another-strong-passphrase-9"), None, &ctx).await.unwrap();
        let mails = k.outbox.to("bob@example.com");
        assert_eq!(mails.len(), 1);
        assert!(mails[0].subject.to_lowercase().contains("sign-up attempt"), "{:?}", mails[0].subject);
        assert!(!mails[0].text.contains("token="));
        assert!(holds(&k, "bob@example.com", PASSWORD).await);
    }

    #[tokio::test]
    async fn given_an_attackers_sign_up_first_then_the_owner_activates_only_its_own_password() {
        let k = Kit::new();
        let ctx = Kit::ctx("192.0.2.1");
        let uc = signup(&k);
        uc.signup("eva@example.com", &Password::new(ATTACKERS), None, &ctx).await.unwrap();
        let first_link = Token::new(k.outbox.token_to("eva@example.com"));
        uc.signup("eva@example.com", &Password::new(PASSWORD), Some("Eva"), &ctx).await.unwrap();
        let newest = Token::new(k.outbox.token_to("eva@example.com"));
        // The older link is superseded; the newest with the attacker's password is refused too
        // (the owner, who holds the mailbox, would have to type the attacker's password).
        assert!(matches!(verify(&k, &first_link, PASSWORD).await, Err(DomainError::InvalidToken)));
        verify(&k, &newest, PASSWORD).await.unwrap();
        let u = k.store.find_user_by_email("eva@example.com").await.unwrap().unwrap();
        assert!(u.is_verified && u.name.as_deref() == Some("Eva") && u.registrations.is_empty());
        assert!(holds(&k, "eva@example.com", PASSWORD).await);
        assert!(!holds(&k, "eva@example.com", ATTACKERS).await);
    }

    #[tokio::test]
    async fn given_the_owners_sign_up_first_then_a_later_one_replaces_nothing() {
        let k = Kit::new();
        let ctx = Kit::ctx("192.0.2.1");
        let uc = signup(&k);
        uc.signup("ola@example.com", &Password::new(PASSWORD), Some("Ola"), &ctx).await.unwrap();
        uc.signup("ola@example.com", &Password::new(ATTACKERS), Some("Mallory"), &ctx).await.unwrap();
        let newest = Token::new(k.outbox.token_to("ola@example.com"));
        verify(&k, &newest, PASSWORD).await.unwrap();
        let u = k.store.find_user_by_email("ola@example.com").await.unwrap().unwrap();
        assert_eq!(u.name.as_deref(), Some("Ola"));
        assert!(holds(&k, "ola@example.com", PASSWORD).await);
        assert!(!holds(&k, "ola@example.com", ATTACKERS).await);
    }

    #[tokio::test]
    async fn given_an_account_an_admin_made_unverified_then_a_sign_up_changes_nothing() {
        let k = Kit::new();
        let ctx = Kit::ctx("192.0.2.1");
        let u = k.user("adm@example.com", PASSWORD).await;
        let changes = crate::store::UserChanges { is_verified: Some(false), ..Default::default() };
        crate::store::AdminStore::admin_update_user(k.store.as_ref(), &u, &changes, k.clock.now()).await.unwrap();
        let before = k.stored(&u.id).await;
        signup(&k).signup("adm@example.com", &Password::new(ATTACKERS), None, &ctx).await.unwrap();
        assert_eq!(k.stored(&u.id).await, before);
        let mails = k.outbox.to("adm@example.com");
        assert_eq!(mails.len(), 1);
        assert!(mails[0].subject.to_lowercase().contains("sign-up attempt"));
    }

    #[tokio::test]
    async fn given_wrong_passwords_at_verification_then_they_count_toward_the_lockout() {
        let k = Kit::new();
        let ctx = Kit::ctx("192.0.2.1");
        signup(&k).signup("lok@example.com", &Password::new(PASSWORD), None, &ctx).await.unwrap();
        let token = Token::new(k.outbox.token_to("lok@example.com"));
        for _ in 0..k.cfg.lockout.threshold {
            assert!(matches!(verify(&k, &token, ATTACKERS).await, Err(DomainError::InvalidToken)));
        }
        // Locked for that IP: even the right password is refused there.
        assert!(matches!(verify(&k, &token, PASSWORD).await, Err(DomainError::InvalidToken)));
    }

    #[tokio::test]
    async fn given_a_verification_link_past_its_lifetime_then_it_is_refused() {
        let k = Kit::new();
        let ctx = Kit::ctx("192.0.2.1");
        signup(&k).signup("cy@example.com", &Password::new(PASSWORD), None, &ctx).await.unwrap();
        let token = Token::new(k.outbox.token_to("cy@example.com"));
        k.clock.advance(k.cfg.verify_token_ttl.as_secs() as i64 + 1);
        assert!(matches!(verify(&k, &token, PASSWORD).await, Err(DomainError::InvalidToken)));
    }

    #[tokio::test]
    async fn given_a_resend_then_only_the_newest_link_works() {
        let k = Kit::new();
        let ctx = Kit::ctx("192.0.2.1");
        let uc = signup(&k);
        uc.signup("di@example.com", &Password::new(PASSWORD), None, &ctx).await.unwrap();
        let old = Token::new(k.outbox.token_to("di@example.com"));
        uc.resend_verification("di@example.com", &ctx).await.unwrap();
        let new = Token::new(k.outbox.token_to("di@example.com"));
        assert!(matches!(verify(&k, &old, PASSWORD).await, Err(DomainError::InvalidToken)));
        verify(&k, &new, PASSWORD).await.unwrap();
    }
}
