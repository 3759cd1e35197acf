//! Sign-up and email verification: the same answer, in the same time, whether or not the
//! address is registered.

use std::sync::Arc;
use std::time::Duration;

use crate::clock::SharedClock;
use crate::config::{Config, PasswordPolicy};
use crate::context::RequestCtx;
use crate::domain::error::{DomainError, DomainResult};
use crate::domain::notify::Notifier;
use crate::domain::ratelimit::{Gate, admit};
use crate::domain::{email_field, validate_name, with_floor};
use crate::email::Email;
use crate::logging::security_event;
use crate::mail::templates;
use crate::password::{Hasher, PolicyError, check_policy};
use crate::secret::{Password, Token};
use crate::store::{OneTimeKind, SignupPort, StoreError, TokenPort, User};
use crate::tokens;

/// Sign-up and re-sending the verification mail.
pub struct Signup {
    store: Arc<dyn SignupPort>,
    hasher: Hasher,
    policy: PasswordPolicy,
    notifier: Notifier,
    verify_ttl: Duration,
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
            notifier,
            verify_ttl: cfg.verify_token_ttl,
            floor: cfg.enumeration_floor,
            gate,
            clock,
        }
    }

    async fn issue_verification(&self, user: &User, ctx: &RequestCtx) -> DomainResult<()> {
        let secret = tokens::random_secret()?;
        let expires = self.clock.now() + self.verify_ttl.as_secs() as i64;
        let hash = tokens::hash_secret(&secret);
        self.store.put_one_time(OneTimeKind::VerifyEmail, &user.id, &hash, expires, user.session_version).await?;
        self.mail_link(user, &secret, ctx).await;
        Ok(())
    }

    async fn mail_link(&self, user: &User, secret: &str, ctx: &RequestCtx) {
        let token = format!("{}.{}", user.id, secret);
        let n = &self.notifier;
        n.send(&user.id, templates::verification(n.product(), n.base_url(), &user.email, &token), ctx, "verification")
            .await;
    }

    /// A sign-up for an address that is taken. An unverified account's pending registration
    /// is replaced by this one (its password, and a new link that alone works), so that
    /// whoever registered the address first can never sign in once its owner has signed up;
    /// anything else gets the "attempted sign-up" notice.
    async fn signup_taken(
        &self,
        email: &Email,
        hash: String,
        name: Option<&str>,
        ctx: &RequestCtx,
    ) -> DomainResult<()> {
        let now = self.clock.now();
        if let Some(u) = self.store.find_user_by_email(email.as_str()).await?.filter(|u| u.is_active && !u.is_verified)
        {
            let secret = tokens::random_secret()?;
            let expires = now + self.verify_ttl.as_secs() as i64;
            let token_hash = tokens::hash_secret(&secret);
            if self.store.replace_registration(&u.id, u.session_version, &hash, name, &token_hash, expires, now).await?
            {
                security_event("signup", ctx, Some(&u.id), "pending_registration_replaced");
                self.mail_link(&u, &secret, ctx).await;
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
            };
            let secret = tokens::random_secret()?;
            let token_hash = tokens::hash_secret(&secret);
            let expires = now + self.verify_ttl.as_secs() as i64;
            // One round trip: the account with its verification token (one write), the lockout
            // keys counted against the address before it had an account (a read), and the new
            // account's mail cap.
            let (registered, stale_locks, mail_allowed) = tokio::join!(
                self.store.register(&user, &token_hash, expires),
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
                        let n = &self.notifier;
                        let token = format!("{}.{}", user.id, secret);
                        let mail = templates::verification(n.product(), n.base_url(), &user.email, &token);
                        n.deliver(mail, ctx, "verification").await;
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
                    self.issue_verification(&u, ctx).await
                }
                _ => Ok(()),
            }
        })
        .await
    }
}

/// Email verification: consuming the link's token. Sends no mail.
pub struct Verification {
    store: Arc<dyn TokenPort>,
    clock: SharedClock,
}

impl Verification {
    pub fn new(store: Arc<dyn TokenPort>, clock: SharedClock) -> Self {
        Self { store, clock }
    }

    /// Consumes a verification token (single use).
    pub async fn verify_email(&self, token: &Token, ctx: &RequestCtx) -> DomainResult<()> {
        let (user_id, hash) = tokens::parse_one_time(token.expose()).ok_or(DomainError::InvalidToken)?;
        let Some(user) = self.store.get_user(&user_id).await? else { return Err(DomainError::InvalidToken) };
        if self.store.verify_email(&user_id, &hash, self.clock.now(), user.session_version).await? {
            security_event("email_verified", ctx, Some(&user_id), "success");
            Ok(())
        } else {
            security_event("email_verified", ctx, None, "invalid_token");
            Err(DomainError::InvalidToken)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::testkit::{Kit, PASSWORD};

    fn signup(k: &Kit) -> Signup {
        Signup::new(k.store.clone(), k.hasher.clone(), k.notifier(), None, &k.cfg, k.clock.shared())
    }

    #[tokio::test]
    async fn given_a_new_address_when_signing_up_then_the_mailed_link_verifies_it_once() {
        let k = Kit::new();
        let ctx = Kit::ctx("192.0.2.1");
        signup(&k).signup(" Ada@Example.COM ", &Password::new(PASSWORD), Some("Ada"), &ctx).await.unwrap();
        let token = Token::new(k.outbox.token_to("ada@example.com"));
        let v = Verification::new(k.store.clone(), k.clock.shared());
        v.verify_email(&token, &ctx).await.unwrap();
        assert!(matches!(v.verify_email(&token, &ctx).await, Err(DomainError::InvalidToken)));
        let user = crate::store::UserLookup::find_user_by_email(k.store.as_ref(), "ada@example.com").await.unwrap();
        assert!(user.is_some_and(|u| u.is_verified && u.name.as_deref() == Some("Ada")));
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
    }

    #[tokio::test]
    async fn given_an_unverified_address_when_its_owner_signs_up_then_the_first_registrants_link_and_password_die() {
        let k = Kit::new();
        let ctx = Kit::ctx("192.0.2.1");
        let uc = signup(&k);
        uc.signup("eva@example.com", &Password::new("attacker-chose-this-1"), None, &ctx).await.unwrap();
        let attackers_link = Token::new(k.outbox.token_to("eva@example.com"));
        uc.signup("eva@example.com", &Password::new(PASSWORD), Some("Eva"), &ctx).await.unwrap();
        let owners_link = Token::new(k.outbox.token_to("eva@example.com"));
        let v = Verification::new(k.store.clone(), k.clock.shared());
        assert!(matches!(v.verify_email(&attackers_link, &ctx).await, Err(DomainError::InvalidToken)));
        v.verify_email(&owners_link, &ctx).await.unwrap();
        let u =
            crate::store::UserLookup::find_user_by_email(k.store.as_ref(), "eva@example.com").await.unwrap().unwrap();
        assert!(u.is_verified && u.name.as_deref() == Some("Eva"));
        assert_eq!(
            k.hasher.verify(&Password::new(PASSWORD), Some(&u.password_hash)).await.unwrap(),
            crate::password::Verified::Yes
        );
        assert_eq!(
            k.hasher.verify(&Password::new("attacker-chose-this-1"), Some(&u.password_hash)).await.unwrap(),
            crate::password::Verified::No
        );
    }

    #[tokio::test]
    async fn given_a_verification_link_past_its_lifetime_then_it_is_refused() {
        let k = Kit::new();
        let ctx = Kit::ctx("192.0.2.1");
        signup(&k).signup("cy@example.com", &Password::new(PASSWORD), None, &ctx).await.unwrap();
        let token = Token::new(k.outbox.token_to("cy@example.com"));
        k.clock.advance(k.cfg.verify_token_ttl.as_secs() as i64 + 1);
        let v = Verification::new(k.store.clone(), k.clock.shared());
        assert!(matches!(v.verify_email(&token, &ctx).await, Err(DomainError::InvalidToken)));
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
        let v = Verification::new(k.store.clone(), k.clock.shared());
        assert!(matches!(v.verify_email(&old, &ctx).await, Err(DomainError::InvalidToken)));
        v.verify_email(&new, &ctx).await.unwrap();
    }
}
