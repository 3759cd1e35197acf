//! The unlock link: when the account-wide failure ceiling locks an account, its notice carries a
//! one-time link (1 hour, `lockout::UNLOCK_TTL_SECS`). The link plus the account's password
//! signs the owner in despite the lock and whatever the per-email limits say, so no traffic of
//! others, at any rate, keeps the owner out (docs/security.md "Brute force").
//!
//! The link is spent by the attempt whatever its outcome: a wrong password spends it, so it is
//! no unthrottled password oracle. A right one clears the account-wide lock and this client's
//! own lock (other clients' locks stand), then answers like a login: tokens, or the second
//! factor's challenge.

use std::sync::Arc;

use crate::clock::SharedClock;
use crate::context::{RequestCtx, ip_key};
use crate::domain::error::{DomainError, DomainResult};
use crate::domain::sessions::{PWD, SessionIssuer};
use crate::domain::views::TokenResponse;
use crate::logging::security_event;
use crate::password::{Hasher, Verified};
use crate::secret::{Password, Token};
use crate::store::{LoginPort, OneTimeKind, pair_lock_key};
use crate::tokens;

/// The unlock use case.
pub struct Unlock {
    store: Arc<dyn LoginPort>,
    hasher: Hasher,
    issuer: SessionIssuer,
    clock: SharedClock,
}

impl Unlock {
    pub fn new(store: Arc<dyn LoginPort>, hasher: Hasher, issuer: SessionIssuer, clock: SharedClock) -> Self {
        Self { store, hasher, issuer, clock }
    }

    /// Spends the unlock link `token` with the account's password. With `sign_in`, answers
    /// like a login (tokens, or `MfaRequired` when a factor is active); without (the mail
    /// page's form, which cannot keep tokens), only lifts the lock, so the owner signs in again
    /// from its app. An unknown, used or expired link: `InvalidToken`; a wrong password:
    /// `InvalidCredentials`, and the link is spent.
    pub async fn unlock(
        &self,
        token: &Token,
        pw: &Password,
        sign_in: bool,
        ctx: &RequestCtx,
    ) -> DomainResult<Option<TokenResponse>> {
        let invalid = |user: Option<&str>| {
            security_event("account_unlock", ctx, user, "invalid_token");
            DomainError::InvalidToken
        };
        let (user_id, hash) = tokens::parse_one_time(token.expose()).ok_or_else(|| invalid(None))?;
        let user = self.store.get_user(&user_id).await?.filter(|u| u.is_active && u.is_verified);
        let Some(user) = user else { return Err(invalid(None)) };
        let now = self.clock.now();
        // The link is spent before any password is checked (a made-up one costs no argon2
        // run, and a wrong password spends it too): one conditional delete on its hash, expiry
        // and the user's session version.
        if !self.store.spend_one_time(OneTimeKind::Unlock, &user.id, &hash, now, user.session_version).await? {
            return Err(invalid(Some(&user.id)));
        }
        let verified = self.hasher.verify(pw, Some(&user.password_hash)).await?;
        if verified == Verified::No {
            security_event("account_unlock", ctx, Some(&user.id), "wrong_password");
            crate::metrics::count("LoginFailed");
            return Err(DomainError::InvalidCredentials);
        }
        if let Verified::YesRehashed(new_hash) = &verified
            && let Err(e) = self.store.upgrade_password_hash(&user.id, &user.password_hash, new_hash).await
        {
            tracing::warn!(request_id = %ctx.request_id, error = %e, "password hash upgrade failed");
        }
        // What a successful login clears: the account-wide lock and this client's own.
        let cleared = [user.email.clone(), pair_lock_key(&user.email, &ip_key(&ctx.ip))];
        security_event("account_unlocked", ctx, Some(&user.id), "unlock_link");
        if !sign_in || user.mfa_enabled {
            for key in &cleared {
                self.store.clear_lockout(key).await?;
            }
        }
        if !sign_in {
            return Ok(None);
        }
        if user.mfa_enabled {
            let mfa_token = crate::domain::mfa::challenge(self.store.as_ref(), &user, now).await?;
            security_event("login_mfa_required", ctx, Some(&user.id), "challenge");
            return Err(DomainError::MfaRequired { mfa_token: crate::secret::Token::new(mfa_token) });
        }
        let tokens = self.issuer.start_login(self.store.as_ref(), &user, &[PWD], &cleared, ctx, now).await?;
        security_event("login_succeeded", ctx, Some(&user.id), "unlock_link");
        crate::metrics::count("LoginSucceeded");
        Ok(Some(tokens))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::login::Login;
    use crate::domain::signup::VerificationLinks;
    use crate::domain::testkit::{Kit, PASSWORD};

    fn login(k: &Kit) -> Login {
        let links = VerificationLinks::new(k.notifier(), &k.cfg, k.clock.shared());
        Login::new(k.store.clone(), k.hasher.clone(), k.lockout(), k.issuer(), links, None, k.clock.shared())
    }

    fn unlock(k: &Kit) -> Unlock {
        Unlock::new(k.store.clone(), k.hasher.clone(), k.issuer(), k.clock.shared())
    }

    /// Wrong passwords from as many IPs as it takes to reach the account-wide ceiling.
    async fn lock_account(k: &Kit, email: &str) {
        let uc = login(k);
        for i in 0..k.cfg.lockout.account_ceiling {
            let ip = format!("198.51.100.{}", i / k.cfg.lockout.threshold + 1);
            let _ = uc.login(email, &Password::new("wrong-password-1"), &Kit::ctx(&ip)).await;
        }
    }

    #[tokio::test]
    async fn given_an_account_wide_lock_then_the_mailed_link_and_the_password_sign_the_owner_in_once() {
        let k = Kit::new();
        k.user("own@example.com", PASSWORD).await;
        lock_account(&k, "own@example.com").await;
        let owner = Kit::ctx("203.0.113.9");
        let right = Password::new(PASSWORD);
        assert!(matches!(
            login(&k).login("own@example.com", &right, &owner).await,
            Err(DomainError::InvalidCredentials)
        ));
        let link = Token::new(k.outbox.token_to("own@example.com"));
        assert!(unlock(&k).unlock(&link, &right, true, &owner).await.unwrap().is_some());
        assert!(matches!(unlock(&k).unlock(&link, &right, true, &owner).await, Err(DomainError::InvalidToken)));
        // The lock is lifted: the owner's app signs in as usual.
        assert!(login(&k).login("own@example.com", &right, &owner).await.is_ok());
    }

    #[tokio::test]
    async fn given_a_wrong_password_then_the_link_is_spent() {
        let k = Kit::new();
        k.user("spent@example.com", PASSWORD).await;
        lock_account(&k, "spent@example.com").await;
        let link = Token::new(k.outbox.token_to("spent@example.com"));
        let ctx = Kit::ctx("203.0.113.9");
        let wrong = unlock(&k).unlock(&link, &Password::new("wrong-password-2"), true, &ctx).await;
        assert!(matches!(wrong, Err(DomainError::InvalidCredentials)));
        let again = unlock(&k).unlock(&link, &Password::new(PASSWORD), true, &ctx).await;
        assert!(matches!(again, Err(DomainError::InvalidToken)));
    }
}
