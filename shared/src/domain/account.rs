//! The signed-in user's own account: display name, password change, email change.

use std::sync::Arc;

use crate::clock::SharedClock;
use crate::config::{Config, PasswordPolicy};
use crate::context::RequestCtx;
use crate::domain::authn::Caller;
use crate::domain::error::{DomainError, DomainResult, invalid};
use crate::domain::lockout::Lockout;
use crate::domain::mfa::{StepUp, StepUpProof};
use crate::domain::notify::Notifier;
use crate::domain::ratelimit::{Gate, admit_id};
use crate::domain::views::UserView;
use crate::domain::{EMAIL_CHANGE_TTL_SECS, email_field, validate_name};
use crate::email::Email;
use crate::logging::security_event;
use crate::mail::templates;
use crate::password::{Hasher, Verified, check_policy};
use crate::secret::{Password, Token};
use crate::store::{AccountPort, EmailChange, TokenPort, User, UserUpdates};
use crate::tokens;

/// The display name (`PATCH /auth/me`); sends no mail.
pub struct Profile {
    store: Arc<dyn UserUpdates>,
    clock: SharedClock,
}

impl Profile {
    pub fn new(store: Arc<dyn UserUpdates>, clock: SharedClock) -> Self {
        Self { store, clock }
    }

    /// Updates the caller's display name.
    pub async fn update_name(&self, caller: &Caller, name: Option<&str>) -> DomainResult<UserView> {
        let name = validate_name(name)?;
        let user = self
            .store
            .update_name(&caller.user.id, name.as_deref(), self.clock.now())
            .await?
            .ok_or(DomainError::Unauthorized { token_sent: true })?;
        Ok(UserView::from(&user))
    }
}

/// Password and email changes. The current password is checked under the lockout gate, like
/// a login: a stolen access token is no unthrottled password oracle.
pub struct Account {
    store: Arc<dyn AccountPort>,
    hasher: Hasher,
    policy: PasswordPolicy,
    notifier: Notifier,
    lockout: Lockout,
    step_up: StepUp,
    gate: Option<Gate>,
    clock: SharedClock,
}

fn wrong_password(field: &str) -> DomainError {
    invalid(field, "is incorrect")
}

impl Account {
    pub fn new(
        store: Arc<dyn AccountPort>,
        hasher: Hasher,
        notifier: Notifier,
        step_up: StepUp,
        gate: Option<Gate>,
        cfg: &Config,
        clock: SharedClock,
    ) -> Self {
        // The password is checked under the same lockout gate the step-up closes.
        let lockout = step_up.lockout().clone();
        Self { store, hasher, policy: cfg.password.clone(), notifier, lockout, step_up, gate, clock }
    }

    /// Checks `current` for `user` under the lockout gate: a wrong one counts like a failed
    /// login, and a locked account gets the same answer as a wrong password. Then the step-up
    /// (`StepUp::check`): an account with an active factor also needs `proof`.
    async fn check_current(
        &self,
        user: &User,
        current: &Password,
        proof: Option<StepUpProof<'_>>,
        event: &str,
        ctx: &RequestCtx,
    ) -> DomainResult<()> {
        let Ok(attempt) = self.lockout.enter(&user.email, ctx).await? else {
            security_event(event, ctx, Some(&user.id), "locked");
            return Err(wrong_password("current_password"));
        };
        if self.hasher.verify(current, Some(&user.password_hash)).await? == Verified::No {
            self.lockout.failed(attempt, Some(user), ctx).await?;
            security_event(event, ctx, Some(&user.id), "wrong_current_password");
            return Err(wrong_password("current_password"));
        }
        self.step_up.check(user, proof, attempt, event, ctx).await
    }

    /// Changes the password with the current one; every other session is revoked, the
    /// caller's session stays usable (its refresh token moves to the new version).
    pub async fn change_password(
        &self,
        caller: &Caller,
        current: &Password,
        new_pw: &Password,
        proof: Option<StepUpProof<'_>>,
        ctx: &RequestCtx,
    ) -> DomainResult<()> {
        let user = &caller.user;
        admit_id(&self.gate, &user.id, ctx).await?;
        // The policy first: a weak new password spends no code.
        check_policy(&self.policy, new_pw, Some(&Email::from_stored(user.email.clone())), "new_password")?;
        self.check_current(user, current, proof, "password_changed", ctx).await?;
        let new_hash = self.hasher.hash(new_pw).await?;
        // The caller's session moves to the new version in the same write: whatever fails
        // after it, the caller stays signed in and every other session is dead.
        let sid = &caller.claims.sid;
        self.store
            .change_password(&user.id, &user.password_hash, &new_hash, user.session_version, sid, self.clock.now())
            .await?
            .ok_or_else(|| DomainError::Conflict("The password changed meanwhile; try again.".into()))?;
        self.store.delete_sessions(&user.id, Some(sid)).await?;
        security_event("password_changed", ctx, Some(&user.id), "success");
        let n = &self.notifier;
        let mail = templates::password_changed(n.product(), n.base_url(), &user.email);
        n.notice(mail, ctx, "password_changed").await;
        Ok(())
    }

    /// Starts an email change: a link to the new address, a notice to the old one. The same
    /// 202 whether or not the new address is taken (that surfaces only at confirmation, to the
    /// holder of the new address).
    pub async fn change_email(
        &self,
        caller: &Caller,
        current: &Password,
        raw_new: &str,
        proof: Option<StepUpProof<'_>>,
        ctx: &RequestCtx,
    ) -> DomainResult<()> {
        let new_email = email_field("new_email", raw_new)?;
        let user = &caller.user;
        admit_id(&self.gate, &user.id, ctx).await?;
        if new_email.as_str() == user.email {
            return Err(invalid("new_email", "is already your address"));
        }
        self.check_current(user, current, proof, "email_change_requested", ctx).await?;
        let secret = tokens::random_secret()?;
        let expires = self.clock.now() + EMAIL_CHANGE_TTL_SECS;
        let hash = tokens::hash_secret(&secret);
        self.store.put_email_change(&user.id, &hash, new_email.as_str(), expires, user.session_version).await?;
        let token = format!("{}.{}", user.id, secret);
        let n = &self.notifier;
        let (product, base) = (n.product(), n.base_url());
        let confirm = templates::email_change_confirm(product, base, new_email.as_str(), &token);
        n.notice(confirm, ctx, "email_change_confirm").await;
        n.notice(templates::email_change_notice(product, base, &user.email, false), ctx, "email_change_notice").await;
        security_event("email_change_requested", ctx, Some(&user.id), "sent");
        Ok(())
    }
}

/// Confirming an email change with the link mailed to the new address: no password, no
/// factor (the link is the proof), so this use case holds neither.
pub struct EmailConfirmation {
    store: Arc<dyn TokenPort>,
    notifier: Notifier,
    gate: Option<Gate>,
    clock: SharedClock,
}

impl EmailConfirmation {
    pub fn new(store: Arc<dyn TokenPort>, notifier: Notifier, gate: Option<Gate>, clock: SharedClock) -> Self {
        Self { store, notifier, gate, clock }
    }

    /// Confirms an email change (single use): the unique-email claim moves in one transaction.
    pub async fn confirm_email_change(&self, token: &Token, ctx: &RequestCtx) -> DomainResult<UserView> {
        let (user_id, hash) = tokens::parse_one_time(token.expose()).ok_or(DomainError::InvalidToken)?;
        admit_id(&self.gate, &user_id, ctx).await?;
        match self.store.confirm_email_change(&user_id, &hash, self.clock.now()).await? {
            EmailChange::Changed { user, old_email } => {
                security_event("email_changed", ctx, Some(&user.id), "success");
                let n = &self.notifier;
                let mail = templates::email_change_notice(n.product(), n.base_url(), &old_email, true);
                n.notice(mail, ctx, "email_changed").await;
                Ok(UserView::from(&user))
            }
            EmailChange::Taken => {
                security_event("email_changed", ctx, Some(&user_id), "address_taken");
                Err(DomainError::Conflict("That address is already in use; the request was cancelled.".into()))
            }
            EmailChange::InvalidToken => Err(DomainError::InvalidToken),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::testkit::{Kit, PASSWORD};
    use crate::store::{SessionStore, UserLookup};

    fn account(k: &Kit) -> Account {
        let sealer = Arc::new(crate::mfa::Sealer::ephemeral().unwrap());
        let step_up = StepUp::new(k.store.clone(), sealer, k.lockout(), k.clock.shared());
        Account::new(k.store.clone(), k.hasher.clone(), k.notifier(), step_up, None, &k.cfg, k.clock.shared())
    }

    async fn caller(k: &Kit, email: &str) -> Caller {
        let u = k.user(email, PASSWORD).await;
        let t = k.issuer().start(k.store.as_ref(), &u, &Kit::ctx("192.0.2.1"), k.clock.now()).await.unwrap();
        let auth = crate::domain::authn::Authenticator::new(k.store.clone(), k.jwt(), k.clock.shared());
        auth.authenticate(&t.access_token, &Kit::ctx("192.0.2.1")).await.unwrap()
    }

    #[tokio::test]
    async fn given_a_password_change_then_the_callers_session_survives_and_the_others_die() {
        let k = Kit::new();
        let c = caller(&k, "ivy@example.com").await;
        k.issuer().start(k.store.as_ref(), &c.user, &Kit::ctx("198.51.100.2"), k.clock.now()).await.unwrap();
        let uc = account(&k);
        let ctx = Kit::ctx("192.0.2.1");
        let wrong = uc.change_password(&c, &Password::new("not-my-password"), &Password::new("x"), None, &ctx).await;
        assert!(matches!(wrong, Err(DomainError::Validation(_))));
        uc.change_password(&c, &Password::new(PASSWORD), &Password::new("granite-meadow-compass-81"), None, &ctx)
            .await
            .unwrap();
        let live = k.store.list_sessions(&c.user.id, k.clock.now()).await.unwrap();
        assert_eq!(live.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(), vec![c.claims.sid.as_str()]);
        assert_eq!(live[0].session_version, c.user.session_version + 1);
        assert_eq!(k.outbox.to("ivy@example.com").len(), 1, "a notice");
    }

    #[tokio::test]
    async fn given_an_email_change_then_the_link_to_the_new_address_moves_the_claim_once() {
        let k = Kit::new();
        let c = caller(&k, "jo@example.com").await;
        let uc = account(&k);
        let ctx = Kit::ctx("192.0.2.1");
        uc.change_email(&c, &Password::new(PASSWORD), "Jo.New@Example.com", None, &ctx).await.unwrap();
        assert_eq!(k.outbox.to("jo@example.com").len(), 1, "the old address is told");
        let token = Token::new(k.outbox.token_to("jo.new@example.com"));
        let confirm = EmailConfirmation::new(k.store.clone(), k.notifier(), None, k.clock.shared());
        let view = confirm.confirm_email_change(&token, &ctx).await.unwrap();
        assert_eq!(view.email, "jo.new@example.com");
        assert!(k.store.find_user_by_email("jo@example.com").await.unwrap().is_none());
        assert!(matches!(confirm.confirm_email_change(&token, &ctx).await, Err(DomainError::InvalidToken)));
    }
}
