//! Password login with lockout (docs/security.md "Brute force", docs/api.md "Lockout policy").
//!
//! Two counters, each an atomic conditional update made before any password check: one per
//! (account, client IP), which locks the account *for that IP* after `threshold` failures, and
//! one per account, which locks it for everyone after `account_ceiling` failures from all IPs.
//! One attacker therefore cannot lock the owner out from the owner's own network, while a
//! distributed guesser still meets a hard limit.

use std::sync::Arc;

use crate::clock::SharedClock;
use crate::config::{Config, LockoutPolicy};
use crate::context::RequestCtx;
use crate::domain::email_field;
use crate::domain::error::{DomainError, DomainResult};
use crate::domain::notify::Notifier;
use crate::domain::ratelimit::{EmailGate, admit};
use crate::domain::sessions::SessionIssuer;
use crate::domain::views::TokenResponse;
use crate::logging::security_event;
use crate::mail::templates;
use crate::password::{Hasher, Verified};
use crate::secret::Password;
use crate::store::{LockGate, LoginPort, User, pair_lock_key};

/// The login use case.
pub struct Login {
    store: Arc<dyn LoginPort>,
    hasher: Hasher,
    notifier: Notifier,
    issuer: SessionIssuer,
    policy: LockoutPolicy,
    gate: Option<EmailGate>,
    clock: SharedClock,
}

impl Login {
    pub fn new(
        store: Arc<dyn LoginPort>,
        hasher: Hasher,
        notifier: Notifier,
        issuer: SessionIssuer,
        gate: Option<EmailGate>,
        cfg: &Config,
        clock: SharedClock,
    ) -> Self {
        Self { store, hasher, notifier, issuer, policy: cfg.lockout, gate, clock }
    }

    /// Checks the password under the lockout gate and starts a session.
    pub async fn login(&self, raw_email: &str, pw: &Password, ctx: &RequestCtx) -> DomainResult<TokenResponse> {
        let email = email_field("email", raw_email)?;
        admit(&self.gate, &email, ctx).await?;
        let account_key = email.as_str().to_owned();
        let pair_key = pair_lock_key(&account_key, &ctx.ip);
        let policy = self.policy;
        let window = policy.window.as_secs() as i64;
        // Fails closed: if a count cannot be written, nobody signs in.
        let mut gates = Vec::with_capacity(2);
        for (key, limit) in [(&pair_key, policy.threshold), (&account_key, policy.account_ceiling)] {
            match self.store.lock_gate(key, self.clock.now(), window).await? {
                LockGate::Locked { .. } => return Err(self.failed(ctx, None, "locked")),
                LockGate::Open { attempt, previous_locks } => {
                    if attempt == 1 && previous_locks > 0 {
                        security_event("account_unlocked", ctx, None, "lock_expired");
                    }
                    gates.push((key.clone(), limit, attempt, previous_locks));
                }
            }
        }
        if gates.iter().any(|(_, limit, attempt, _)| attempt > limit) {
            // Raced past a threshold before its lock landed: no password check.
            for (key, limit, attempt, prev) in &gates {
                if attempt > limit {
                    self.lock(key, *limit, *prev, &account_key, None, ctx).await?;
                }
            }
            return Err(self.failed(ctx, None, "locked"));
        }
        let user = self.store.find_user_by_email(&account_key).await?;
        let verified = self.hasher.verify(pw, user.as_ref().map(|u| u.password_hash.as_str())).await?;
        let user = match (user, &verified) {
            (Some(u), Verified::Yes | Verified::YesRehashed(_)) if u.is_active => u,
            (user, _) => {
                for (key, limit, attempt, prev) in &gates {
                    if attempt >= limit {
                        self.lock(key, *limit, *prev, &account_key, user.as_ref(), ctx).await?;
                    }
                }
                return Err(self.failed(ctx, user.as_ref(), "invalid_credentials"));
            }
        };
        self.store.clear_lockout(&pair_key).await?;
        self.store.clear_lockout(&account_key).await?;
        if let Verified::YesRehashed(new_hash) = &verified
            && let Err(e) = self.store.upgrade_password_hash(&user.id, &user.password_hash, new_hash).await
        {
            tracing::warn!(request_id = %ctx.request_id, error = %e, "password hash upgrade failed");
        }
        if !user.is_verified {
            security_event("login_failed", ctx, Some(&user.id), "email_not_verified");
            return Err(DomainError::EmailNotVerified);
        }
        let tokens = self.issuer.start(self.store.as_ref(), &user, ctx, self.clock.now()).await?;
        self.store.record_login(&user.id, self.clock.now()).await?;
        security_event("login_succeeded", ctx, Some(&user.id), "success");
        crate::metrics::count("LoginSucceeded");
        Ok(tokens)
    }

    fn failed(&self, ctx: &RequestCtx, user: Option<&User>, outcome: &str) -> DomainError {
        security_event("login_failed", ctx, user.map(|u| u.id.as_str()), outcome);
        crate::metrics::count("LoginFailed");
        DomainError::InvalidCredentials
    }

    /// Locks `key` (a pair or the account) if its count reached `limit`; mails the owner once
    /// per lock.
    async fn lock(
        &self,
        key: &str,
        limit: u32,
        previous_locks: u32,
        account: &str,
        user: Option<&User>,
        ctx: &RequestCtx,
    ) -> DomainResult<()> {
        let now = self.clock.now();
        let dur = self.policy.lock_duration(previous_locks);
        let locked =
            self.store.lock(key, limit, now + dur.as_secs() as i64, now, self.policy.window.as_secs() as i64).await?;
        if locked {
            // The caller that raced past the threshold has not looked the user up yet.
            let owner = match user {
                Some(u) => Some(u.clone()),
                None => self.store.find_user_by_email(account).await?,
            };
            let scope = if key == account { "account" } else { "account_from_ip" };
            security_event("account_locked", ctx, owner.as_ref().map(|u| u.id.as_str()), scope);
            crate::metrics::count("AccountLocked");
            if let Some(u) = owner {
                let mail = templates::account_locked(self.notifier.product(), &u.email, dur.as_secs() / 60);
                self.notifier.send(mail, ctx, "account_locked").await;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::testkit::{Kit, PASSWORD};

    fn login(k: &Kit) -> Login {
        Login::new(k.store.clone(), k.hasher.clone(), k.notifier(), k.issuer(), None, &k.cfg, k.clock.shared())
    }

    async fn attempt(uc: &Login, email: &str, pw: &str, ip: &str) -> DomainResult<TokenResponse> {
        uc.login(email, &Password::new(pw), &Kit::ctx(ip)).await
    }

    #[tokio::test]
    async fn given_the_right_password_then_a_session_starts_and_last_login_is_recorded() {
        let k = Kit::new();
        let u = k.user("ann@example.com", PASSWORD).await;
        let t = attempt(&login(&k), "ANN@example.com", PASSWORD, "192.0.2.1").await.unwrap();
        assert!(t.refresh_token.starts_with(&u.id));
        assert_eq!(k.stored(&u.id).await.last_login_at, Some(k.clock.now()));
    }

    #[tokio::test]
    async fn given_threshold_failures_from_one_ip_then_that_ip_is_locked_until_the_lock_expires() {
        let k = Kit::new();
        k.user("ben@example.com", PASSWORD).await;
        let uc = login(&k);
        for _ in 0..k.cfg.lockout.threshold {
            assert!(matches!(
                attempt(&uc, "ben@example.com", "wrong-password-1", "192.0.2.9").await,
                Err(DomainError::InvalidCredentials)
            ));
        }
        // Locked for that IP, even with the right password; the owner elsewhere still signs in.
        assert!(matches!(
            attempt(&uc, "ben@example.com", PASSWORD, "192.0.2.9").await,
            Err(DomainError::InvalidCredentials)
        ));
        assert!(attempt(&uc, "ben@example.com", PASSWORD, "198.51.100.7").await.is_ok());
        assert_eq!(k.outbox.to("ben@example.com").len(), 1, "one lock notice");
        // 15 minutes later the lock is over.
        k.clock.advance(k.cfg.lockout.base.as_secs() as i64 + 1);
        assert!(attempt(&uc, "ben@example.com", PASSWORD, "192.0.2.9").await.is_ok());
    }

    #[tokio::test]
    async fn given_an_unknown_or_deactivated_account_then_the_same_error_as_a_wrong_password() {
        let k = Kit::new();
        let uc = login(&k);
        assert!(matches!(
            attempt(&uc, "nobody@example.com", PASSWORD, "192.0.2.1").await,
            Err(DomainError::InvalidCredentials)
        ));
        let u = k.user("cat@example.com", PASSWORD).await;
        let changes = crate::store::UserChanges { is_active: Some(false), ..Default::default() };
        crate::store::AdminStore::admin_update_user(k.store.as_ref(), &u, &changes, k.clock.now()).await.unwrap();
        assert!(matches!(
            attempt(&uc, "cat@example.com", PASSWORD, "192.0.2.1").await,
            Err(DomainError::InvalidCredentials)
        ));
    }

    #[tokio::test]
    async fn given_an_unverified_account_then_only_the_right_password_learns_it() {
        let k = Kit::new();
        let u = k.user("dan@example.com", PASSWORD).await;
        let changes = crate::store::UserChanges { is_verified: Some(false), ..Default::default() };
        crate::store::AdminStore::admin_update_user(k.store.as_ref(), &u, &changes, k.clock.now()).await.unwrap();
        let uc = login(&k);
        assert!(matches!(
            attempt(&uc, "dan@example.com", "wrong-password-1", "192.0.2.1").await,
            Err(DomainError::InvalidCredentials)
        ));
        assert!(matches!(
            attempt(&uc, "dan@example.com", PASSWORD, "192.0.2.1").await,
            Err(DomainError::EmailNotVerified)
        ));
    }
}
