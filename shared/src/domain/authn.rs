//! Bearer authentication: an access token that verifies, of a user who is active at the token's
//! session version; for the admin API also the `admin` scope of a user who is a superuser now.

use std::sync::Arc;

use crate::clock::SharedClock;
use crate::context::RequestCtx;
use crate::domain::error::{DomainError, DomainResult};
use crate::store::{BearerPort, User};
use crate::tokens::{AccessClaims, Jwt};

/// An authenticated caller: verified token claims and the user as stored now.
#[derive(Debug, Clone)]
pub struct Caller {
    pub claims: AccessClaims,
    pub user: User,
}

/// Verifies bearer tokens.
pub struct Authenticator {
    store: Arc<dyn BearerPort>,
    jwt: Jwt,
    clock: SharedClock,
}

fn refused() -> DomainError {
    DomainError::Unauthorized { token_sent: true }
}

impl Authenticator {
    pub fn new(store: Arc<dyn BearerPort>, jwt: Jwt, clock: SharedClock) -> Self {
        Self { store, jwt, clock }
    }

    /// The token's user as stored now, and whether the token's session (`sid`) is still live:
    /// the user and the session are read together (one `BatchGetItem`), so a revoked or ended
    /// session's tokens stop at once on every bearer endpoint, for no extra round trip.
    async fn user_of(&self, claims: &AccessClaims, ctx: &RequestCtx) -> DomainResult<(Option<User>, bool)> {
        let (user, session) = self.store.get_user_and_session(&claims.sub, &claims.sid, self.clock.now()).await?;
        if session.is_none() {
            tracing::info!(request_id = %ctx.request_id, event = "access_token_rejected", reason = "session_ended", "token rejected");
        }
        Ok((user, session.is_some()))
    }

    /// A valid access token of a user still active at that session version, whose session is
    /// still live.
    pub async fn authenticate(&self, bearer: &str, ctx: &RequestCtx) -> DomainResult<Caller> {
        self.jwt.refresh_keys().await;
        let claims = self.jwt.verify_at(bearer, self.clock.now()).map_err(|why| {
            tracing::info!(request_id = %ctx.request_id, event = "access_token_rejected", reason = ?why, "token rejected");
            refused()
        })?;
        match self.user_of(&claims, ctx).await? {
            (Some(user), true) if user.is_active && user.session_version == claims.sv => Ok(Caller { claims, user }),
            _ => {
                tracing::info!(request_id = %ctx.request_id, event = "access_token_rejected", reason = "stale_session_version_or_user", "token rejected");
                Err(refused())
            }
        }
    }

    /// For the admin API: 401 for a bad token or an inactive user, 403 for a valid token of
    /// someone who is not (or no longer) an administrator.
    pub async fn authenticate_admin(&self, bearer: &str, ctx: &RequestCtx) -> DomainResult<Caller> {
        self.jwt.refresh_keys().await;
        let claims = self.jwt.verify_at(bearer, self.clock.now()).map_err(|_| refused())?;
        let (user, live) = self.user_of(&claims, ctx).await?;
        let user = user.ok_or_else(refused)?;
        if !user.is_active {
            return Err(refused());
        }
        let admin_scope = claims.scope.split(' ').any(|s| s == "admin");
        // A token that claims an admin its holder no longer is (demoted): 403 at once, even
        // though its session version is stale (and its session revoked) too.
        let demoted = admin_scope && !user.is_superuser;
        if !demoted && (!live || user.session_version != claims.sv) {
            return Err(refused());
        }
        if !user.is_superuser || !admin_scope {
            tracing::info!(request_id = %ctx.request_id, event = "admin_access_denied", user_id = %user.id, "not an administrator");
            return Err(DomainError::Forbidden);
        }
        Ok(Caller { claims, user })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::testkit::{Kit, PASSWORD};
    use crate::store::{AdminStore, UserChanges};

    #[tokio::test]
    async fn given_a_bumped_session_version_or_a_demotion_then_older_tokens_are_refused() {
        let k = Kit::new();
        // Another admin, so that this one may be demoted.
        let other = k.user("root@example.com", PASSWORD).await;
        let promote = UserChanges { is_superuser: Some(true), ..Default::default() };
        AdminStore::admin_update_user(k.store.as_ref(), &other, &promote, k.clock.now()).await.unwrap();
        let mut u = k.user("hal@example.com", PASSWORD).await;
        let changes = UserChanges { is_superuser: Some(true), ..Default::default() };
        AdminStore::admin_update_user(k.store.as_ref(), &u, &changes, k.clock.now()).await.unwrap();
        u = k.stored(&u.id).await;
        let t = k.issuer().start(k.store.as_ref(), &u, &Kit::ctx("192.0.2.1"), k.clock.now()).await.unwrap();
        let auth = Authenticator::new(k.store.clone(), k.jwt(), k.clock.shared());
        let ctx = Kit::ctx("192.0.2.1");
        auth.authenticate(&t.access_token, &ctx).await.unwrap();
        auth.authenticate_admin(&t.access_token, &ctx).await.unwrap();
        // Demoted (which bumps the version): the admin API answers 403, the rest 401.
        let demote = UserChanges { is_superuser: Some(false), bump_session_version: true, ..Default::default() };
        let done = AdminStore::admin_update_user(k.store.as_ref(), &u, &demote, k.clock.now()).await.unwrap();
        assert!(matches!(done, crate::store::AdminWrite::Done(_)), "{done:?}");
        assert!(matches!(auth.authenticate_admin(&t.access_token, &ctx).await, Err(DomainError::Forbidden)));
        assert!(matches!(
            auth.authenticate(&t.access_token, &ctx).await,
            Err(DomainError::Unauthorized { token_sent: true })
        ));
        assert!(auth.authenticate(&t.refresh_token, &ctx).await.is_err(), "a refresh token is no access token");
    }

    #[tokio::test]
    async fn given_a_revoked_session_then_its_access_token_is_refused_at_once() {
        let k = Kit::new();
        let u = k.user("rev@example.com", PASSWORD).await;
        let ctx = Kit::ctx("192.0.2.1");
        let kept = k.issuer().start(k.store.as_ref(), &u, &ctx, k.clock.now()).await.unwrap();
        let gone = k.issuer().start(k.store.as_ref(), &u, &ctx, k.clock.now()).await.unwrap();
        let auth = Authenticator::new(k.store.clone(), k.jwt(), k.clock.shared());
        let gone_claims = auth.authenticate(&gone.access_token, &ctx).await.unwrap().claims;
        crate::store::SessionStore::delete_session(k.store.as_ref(), &u.id, &gone_claims.sid).await.unwrap();
        assert!(matches!(
            auth.authenticate(&gone.access_token, &ctx).await,
            Err(DomainError::Unauthorized { token_sent: true })
        ));
        auth.authenticate(&kept.access_token, &ctx).await.unwrap();
    }
}
