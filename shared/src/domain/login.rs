//! Password login under the lockout gate (`domain::lockout`).

use std::sync::Arc;

use crate::clock::SharedClock;
use crate::context::RequestCtx;
use crate::domain::email_field;
use crate::domain::error::{DomainError, DomainResult};
use crate::domain::lockout::Lockout;
use crate::domain::ratelimit::{Gate, admitted, email_from_ip};
use crate::domain::sessions::{PWD, SessionIssuer};
use crate::domain::signup::VerificationLinks;
use crate::domain::views::TokenResponse;
use crate::logging::security_event;
use crate::password::{Hasher, Verified};
use crate::secret::Password;
use crate::store::{LoginPort, User};

/// The login use case.
pub struct Login {
    store: Arc<dyn LoginPort>,
    hasher: Hasher,
    lockout: Lockout,
    issuer: SessionIssuer,
    links: VerificationLinks,
    gate: Option<Gate>,
    clock: SharedClock,
    /// The least time a refused login takes (`failure_floor`).
    floor: std::time::Duration,
}

impl Login {
    pub fn new(
        store: Arc<dyn LoginPort>,
        hasher: Hasher,
        lockout: Lockout,
        issuer: SessionIssuer,
        links: VerificationLinks,
        gate: Option<Gate>,
        clock: SharedClock,
    ) -> Self {
        Self { store, hasher, lockout, issuer, links, gate, clock, floor: std::time::Duration::ZERO }
    }

    /// Makes every refused login (wrong password, unknown address, locked, deactivated, the
    /// failure that locks the account and queues its notice) take at least `floor`, so that
    /// which of them it was does not show in the answer's timing. Successes are not padded.
    pub fn with_failure_floor(mut self, floor: std::time::Duration) -> Self {
        self.floor = floor;
        self
    }

    /// Checks the password under the lockout gate and starts a session.
    ///
    /// The account is read while the rate limits and the lockout gate are counted (reads only;
    /// the password is checked once the gate let the attempt through), and the writes of a
    /// success (session, `last_login_at`, cleared lockout keys) go to the store as one:
    /// four sequential round trips with rate limits on (`tests/e2e/calls.rs`).
    pub async fn login(&self, raw_email: &str, pw: &Password, ctx: &RequestCtx) -> DomainResult<TokenResponse> {
        let deadline = tokio::time::Instant::now() + self.floor;
        let out = self.attempt(raw_email, pw, ctx).await;
        if matches!(out, Err(DomainError::InvalidCredentials)) {
            tokio::time::sleep_until(deadline).await;
        }
        out
    }

    async fn attempt(&self, raw_email: &str, pw: &Password, ctx: &RequestCtx) -> DomainResult<TokenResponse> {
        let email = email_field("email", raw_email)?;
        let gate = async {
            // The per-email count may run alongside the per-IP one (a count, not work: the
            // email limit is the tighter one, so one IP can reach it either way); the lockout
            // gate, which counts a password check, waits for both. The per-email count is kept
            // per client (the address as seen from this IP, IPv6 by /64): other clients' traffic,
            // at any rate, never spends the owner's.
            if let Some(g) = &self.gate {
                g.admit(&email_from_ip(&email, ctx), ctx).await?;
            }
            admitted(ctx).await?;
            self.lockout.enter(email.as_str(), ctx).await
        };
        let (entered, user) = tokio::join!(gate, self.store.find_user_by_email(email.as_str()));
        let Ok(attempt) = entered? else {
            return Err(self.failed(ctx, None, "locked"));
        };
        let user = user?;
        // One hash whatever the account holds (`User::sign_in_hash`), so the timing tells nothing.
        let verified = self.hasher.verify(pw, user.as_ref().map(User::sign_in_hash)).await?;
        let user = match (user, &verified) {
            (Some(u), Verified::Yes | Verified::YesRehashed(_)) if u.is_active => u,
            (user, _) => {
                self.lockout.failed(attempt, user.as_ref(), ctx).await?;
                return Err(self.failed(ctx, user.as_ref(), "invalid_credentials"));
            }
        };
        if !user.is_verified {
            // No verified account: answered exactly like a wrong password, so a sign-up then a
            // login tells nobody whether the address had an account. The right password of a
            // pending registration neither adds to the lockout count nor clears it, and the
            // address gets a fresh link (within its mail cap): the owner's way forward.
            self.lockout.pending(attempt).await?;
            self.links.issue(self.store.as_ref(), &user, ctx).await?;
            return Err(self.failed(ctx, Some(&user), "email_not_verified"));
        }
        if let Verified::YesRehashed(new_hash) = &verified
            && let Err(e) = self.store.upgrade_password_hash(&user.id, &user.password_hash, new_hash).await
        {
            tracing::warn!(request_id = %ctx.request_id, error = %e, "password hash upgrade failed");
        }
        if user.mfa_enabled {
            // The password is right, and it is only the first step: it does not reset the
            // count that wrong codes add to (`Lockout::pending`).
            let (released, mfa_token) = tokio::join!(
                self.lockout.pending(attempt),
                crate::domain::mfa::challenge(self.store.as_ref(), &user, self.clock.now())
            );
            released?;
            let mfa_token = mfa_token?;
            security_event("login_mfa_required", ctx, Some(&user.id), "challenge");
            return Err(DomainError::MfaRequired { mfa_token: crate::secret::Token::new(mfa_token) });
        }
        let cleared = self.lockout.keys_to_clear(attempt);
        let tokens =
            self.issuer.start_login(self.store.as_ref(), &user, &[PWD], &cleared, ctx, self.clock.now()).await?;
        security_event("login_succeeded", ctx, Some(&user.id), "success");
        crate::metrics::count("LoginSucceeded");
        Ok(tokens)
    }

    fn failed(&self, ctx: &RequestCtx, user: Option<&User>, outcome: &str) -> DomainError {
        security_event("login_failed", ctx, user.map(|u| u.id.as_str()), outcome);
        crate::metrics::count("LoginFailed");
        DomainError::InvalidCredentials
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::testkit::{Kit, PASSWORD};

    fn links(k: &Kit) -> VerificationLinks {
        VerificationLinks::new(k.notifier(), &k.cfg, k.clock.shared())
    }

    fn login(k: &Kit) -> Login {
        Login::new(k.store.clone(), k.hasher.clone(), k.lockout(), k.issuer(), links(k), None, k.clock.shared())
    }

    async fn attempt(uc: &Login, email: &str, pw: &str, ip: &str) -> DomainResult<TokenResponse> {
        uc.login(email, &Password::new(pw), &Kit::ctx(ip)).await
    }

    #[tokio::test(start_paused = true)]
    async fn given_a_failure_floor_then_every_refusal_takes_it_and_a_success_does_not() {
        let k = Kit::new();
        k.user("fay@example.com", PASSWORD).await;
        let floor = std::time::Duration::from_millis(300);
        let uc = login(&k).with_failure_floor(floor);
        let threshold = k.cfg.lockout.threshold as usize;
        // Wrong passwords up to and including the one that locks, a locked attempt, an
        // unknown address: each refused after the floor.
        let mut cases: Vec<(&str, &str)> = vec![("fay@example.com", "wrong-password-1"); threshold + 1];
        cases.push(("nobody@example.com", "wrong-password-1"));
        for (email, pw) in cases {
            let t = tokio::time::Instant::now();
            assert!(matches!(attempt(&uc, email, pw, "192.0.2.7").await, Err(DomainError::InvalidCredentials)));
            assert!(t.elapsed() >= floor, "{email}: {:?}", t.elapsed());
        }
        let t = tokio::time::Instant::now();
        attempt(&uc, "fay@example.com", PASSWORD, "198.51.100.1").await.unwrap();
        assert!(t.elapsed() < floor, "{:?}", t.elapsed());
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
    async fn given_eight_concurrent_correct_logins_for_twenty_rounds_then_all_sign_in_and_nothing_locks() {
        let k = Kit::new();
        k.user("svc@example.com", PASSWORD).await;
        let uc = login(&k);
        for round in 0..20 {
            let all =
                futures::future::join_all((0..8).map(|_| attempt(&uc, "svc@example.com", PASSWORD, "192.0.2.5"))).await;
            assert!(all.iter().all(Result::is_ok), "round {round}: {:?}", all.iter().find(|r| r.is_err()));
        }
        assert!(k.outbox.to("svc@example.com").is_empty(), "no lock notice");
    }

    #[tokio::test]
    async fn given_50_concurrent_wrong_passwords_then_the_account_locks_once_for_that_ip() {
        let k = Kit::new();
        k.user("flood@example.com", PASSWORD).await;
        let uc = login(&k);
        let all = futures::future::join_all(
            (0..50).map(|_| attempt(&uc, "flood@example.com", "wrong-password-1", "192.0.2.6")),
        )
        .await;
        assert!(all.iter().all(|r| matches!(r, Err(DomainError::InvalidCredentials))));
        assert_eq!(k.outbox.to("flood@example.com").len(), 1, "one lock, one notice");
        assert!(attempt(&uc, "flood@example.com", PASSWORD, "192.0.2.6").await.is_err(), "locked for that IP");
        assert!(attempt(&uc, "flood@example.com", PASSWORD, "198.51.100.6").await.is_ok(), "not for the owner's");
    }

    #[tokio::test]
    async fn given_failures_from_rotating_ipv6_addresses_in_one_64_then_they_lock_that_prefix() {
        let k = Kit::new();
        k.user("ipv6@example.com", PASSWORD).await;
        let uc = login(&k);
        for i in 0..k.cfg.lockout.threshold {
            let ip = format!("2001:db8:1:2::{:x}", i + 1);
            assert!(attempt(&uc, "ipv6@example.com", "wrong-password-1", &ip).await.is_err());
        }
        // Another address of the prefix is locked out; another prefix is not.
        assert!(attempt(&uc, "ipv6@example.com", PASSWORD, "2001:db8:1:2:ffff::9").await.is_err());
        assert!(attempt(&uc, "ipv6@example.com", PASSWORD, "2001:db8:1:3::1").await.is_ok());
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
    async fn given_an_unverified_account_then_the_right_password_gets_the_wrong_passwords_answer_and_a_link() {
        let k = Kit::new();
        let u = k.user("dan@example.com", PASSWORD).await;
        let changes = crate::store::UserChanges { is_verified: Some(false), ..Default::default() };
        crate::store::AdminStore::admin_update_user(k.store.as_ref(), &u, &changes, k.clock.now()).await.unwrap();
        let uc = login(&k);
        assert!(matches!(
            attempt(&uc, "dan@example.com", "wrong-password-1", "192.0.2.1").await,
            Err(DomainError::InvalidCredentials)
        ));
        assert!(k.outbox.to("dan@example.com").is_empty(), "a wrong password mails nothing");
        assert!(matches!(
            attempt(&uc, "dan@example.com", PASSWORD, "192.0.2.1").await,
            Err(DomainError::InvalidCredentials)
        ));
        assert_eq!(k.outbox.to("dan@example.com").len(), 1, "the right one mails a fresh link");
    }
}
