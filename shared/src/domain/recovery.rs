//! Forgot and reset password: a link mailed to the stored address, the same answer and timing
//! whether or not the account exists; the reset revokes every session and clears lockout.

use std::sync::Arc;
use std::time::Duration;

use crate::clock::SharedClock;
use crate::config::{Config, PasswordPolicy};
use crate::context::RequestCtx;
use crate::domain::error::{DomainError, DomainResult};
use crate::domain::notify::Notifier;
use crate::domain::ratelimit::{Gate, admit_id, within};
use crate::domain::{RESET_TTL_SECS, email_field, with_floor};
use crate::email::Email;
use crate::logging::security_event;
use crate::mail::templates;
use crate::password::{Hasher, check_policy};
use crate::secret::{Password, Token};
use crate::store::{OneTimeKind, RecoveryPort};
use crate::tokens;

/// The password-recovery use case.
pub struct Recovery {
    store: Arc<dyn RecoveryPort>,
    hasher: Hasher,
    policy: PasswordPolicy,
    notifier: Notifier,
    floor: Duration,
    gate: Option<Gate>,
    user_gate: Option<Gate>,
    clock: SharedClock,
}

impl Recovery {
    pub fn new(
        store: Arc<dyn RecoveryPort>,
        hasher: Hasher,
        notifier: Notifier,
        gate: Option<Gate>,
        user_gate: Option<Gate>,
        cfg: &Config,
        clock: SharedClock,
    ) -> Self {
        Self {
            store,
            hasher,
            policy: cfg.password.clone(),
            notifier,
            floor: cfg.enumeration_floor,
            gate,
            user_gate,
            clock,
        }
    }

    /// Mails a reset link if the account exists; the same 202 and timing either way.
    ///
    /// The address's budget (its per-email limit, and the account's mail cap) is shared by
    /// every client, so spending it is not this caller's error: past it the request is answered
    /// 202 as usual and does nothing new. In particular no new token is written, so the newest
    /// link already in the mailbox stays valid and the owner can always use it.
    pub async fn forgot_password(&self, raw_email: &str, ctx: &RequestCtx) -> DomainResult<()> {
        let email = email_field("email", raw_email)?;
        with_floor(self.floor, async {
            if !within(&self.gate, email.as_str(), ctx).await? {
                security_event("password_reset_requested", ctx, None, "address_budget_spent");
                return Ok(());
            }
            let Some(u) = self.store.find_user_by_email(email.as_str()).await?.filter(|u| u.is_active) else {
                security_event("password_reset_requested", ctx, None, "unknown_address");
                return Ok(());
            };
            let n = &self.notifier;
            if !n.allowed(&u.id, ctx, "password_reset").await {
                security_event("password_reset_requested", ctx, Some(&u.id), "mail_cap_reached");
                return Ok(());
            }
            let secret = tokens::random_secret()?;
            let expires = self.clock.now() + RESET_TTL_SECS;
            let hash = tokens::hash_secret(&secret);
            self.store.put_one_time(OneTimeKind::ResetPassword, &u.id, &hash, expires, u.session_version).await?;
            let token = format!("{}.{}", u.id, secret);
            let mail = templates::password_reset(n.product(), n.base_url(), &u.email, &token);
            n.deliver(mail, ctx, "password_reset").await;
            security_event("password_reset_requested", ctx, Some(&u.id), "sent");
            Ok(())
        })
        .await
    }

    /// Sets a new password with a reset token (single use); revokes every session, bumps the
    /// session version, clears lockout and notifies the owner. The token is checked before
    /// the new password is hashed (a made-up token costs no argon2 run) and spent after.
    pub async fn reset_password(&self, token: &Token, new_pw: &Password, ctx: &RequestCtx) -> DomainResult<()> {
        let (user_id, hash) = tokens::parse_one_time(token.expose()).ok_or(DomainError::InvalidToken)?;
        admit_id(&self.user_gate, &user_id, ctx).await?;
        let user = self.store.get_user(&user_id).await?.filter(|u| u.is_active).ok_or(DomainError::InvalidToken)?;
        let now = self.clock.now();
        let pending = self.store.peek_one_time(OneTimeKind::ResetPassword, &user_id, &hash, now).await?;
        if pending.is_none_or(|t| t.session_version != user.session_version) {
            security_event("password_reset", ctx, Some(&user_id), "invalid_token");
            return Err(DomainError::InvalidToken);
        }
        // The policy runs first, so a weak password does not spend the token.
        check_policy(&self.policy, new_pw, Some(&Email::from_stored(user.email.clone())), "new_password")?;
        let new_hash = self.hasher.hash(new_pw).await?;
        if self
            .store
            .reset_password(&user_id, &hash, &new_hash, self.clock.now(), user.session_version)
            .await?
            .is_none()
        {
            security_event("password_reset", ctx, Some(&user_id), "invalid_token");
            return Err(DomainError::InvalidToken);
        }
        // Sessions are already dead (their version is behind); this only tidies up.
        self.store.delete_sessions(&user_id, None).await?;
        self.store.clear_all_lockouts(&user.email).await?;
        security_event("password_reset", ctx, Some(&user_id), "success");
        let n = &self.notifier;
        let mail = templates::password_changed(n.product(), n.base_url(), &user.email);
        n.notice(mail, ctx, "password_changed").await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::testkit::{Kit, PASSWORD};
    use crate::store::{SessionStore, UserLookup};

    fn recovery(k: &Kit) -> Recovery {
        Recovery::new(k.store.clone(), k.hasher.clone(), k.notifier(), None, None, &k.cfg, k.clock.shared())
    }

    #[tokio::test]
    async fn given_a_reset_link_then_the_password_changes_sessions_die_and_the_link_works_once() {
        let k = Kit::new();
        let u = k.user("fay@example.com", PASSWORD).await;
        k.issuer().start(k.store.as_ref(), &u, &Kit::ctx("192.0.2.1"), k.clock.now()).await.unwrap();
        let uc = recovery(&k);
        let ctx = Kit::ctx("192.0.2.1");
        uc.forgot_password("fay@example.com", &ctx).await.unwrap();
        uc.forgot_password("nobody@example.com", &ctx).await.unwrap();
        let token = Token::new(k.outbox.token_to("fay@example.com"));
        let new_pw = Password::new("granite-meadow-compass-81");
        uc.reset_password(&token, &new_pw, &ctx).await.unwrap();
        let stored = k.stored(&u.id).await;
        assert_eq!(stored.session_version, u.session_version + 1);
        assert_ne!(stored.password_hash, u.password_hash);
        assert!(k.store.list_sessions(&u.id, k.clock.now()).await.unwrap().is_empty());
        assert!(matches!(uc.reset_password(&token, &new_pw, &ctx).await, Err(DomainError::InvalidToken)));
    }

    #[tokio::test]
    async fn given_a_reset_link_older_than_an_hour_or_a_weak_password_then_nothing_changes() {
        let k = Kit::new();
        let u = k.user("gus@example.com", PASSWORD).await;
        let uc = recovery(&k);
        let ctx = Kit::ctx("192.0.2.1");
        uc.forgot_password("gus@example.com", &ctx).await.unwrap();
        let token = Token::new(k.outbox.token_to("gus@example.com"));
        // A weak password is refused before the token is spent.
        assert!(matches!(
            uc.reset_password(&token, &Password::new("password"), &ctx).await,
            Err(DomainError::Validation(_))
        ));
        k.clock.advance(RESET_TTL_SECS + 1);
        let strong = Password::new("granite-meadow-compass-81");
        assert!(matches!(uc.reset_password(&token, &strong, &ctx).await, Err(DomainError::InvalidToken)));
        assert_eq!(k.store.get_user(&u.id).await.unwrap().unwrap().password_hash, u.password_hash);
    }
}
