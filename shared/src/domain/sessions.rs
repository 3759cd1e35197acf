//! Sessions: starting one (login), refresh-token rotation with reuse detection, logout, and
//! the signed-in user's session management.

use std::sync::Arc;
use std::time::Duration;

use crate::clock::SharedClock;
use crate::config::Config;
use crate::context::RequestCtx;
use crate::domain::authn::Caller;
use crate::domain::error::{DomainError, DomainResult};
use crate::domain::ratelimit::admitted;
use crate::domain::views::{SessionView, TokenResponse};
use crate::logging::security_event;
use crate::secret::Token;
use crate::store::{Rotation, Session, SessionPort, SessionStore, User};
use crate::tokens::{self, Jwt, Subject};

/// RFC 8176 method names: a password; a one-time password (TOTP); multiple factors (the
/// password and a recovery code).
pub const PWD: &str = "pwd";
pub const OTP: &str = "otp";
pub const MFA: &str = "mfa";

/// Issues access tokens and starts refresh sessions (login and refresh share it).
#[derive(Clone)]
pub struct SessionIssuer {
    jwt: Jwt,
    idle_ttl: Duration,
    absolute_ttl: Duration,
}

impl SessionIssuer {
    pub fn new(jwt: Jwt, cfg: &Config) -> Self {
        Self { jwt, idle_ttl: cfg.refresh_idle_ttl, absolute_ttl: cfg.refresh_absolute_ttl }
    }

    fn access_token(&self, user: &User, session_id: &str, amr: &[String], now: i64) -> DomainResult<(String, String)> {
        let amr: Vec<&str> = amr.iter().map(String::as_str).collect();
        Ok(self.jwt.issue(
            &Subject {
                user_id: &user.id,
                email: &user.email,
                email_verified: user.is_verified,
                is_superuser: user.is_superuser,
                session_version: user.session_version,
                session_id,
                amr: &amr,
            },
            now,
        )?)
    }

    /// The token response for `secret`, the live refresh secret of a session signed in with
    /// `amr`.
    pub fn token_response(
        &self,
        user: &User,
        session_id: &str,
        amr: &[String],
        secret: &str,
        idle_expires_at: i64,
        now: i64,
    ) -> DomainResult<TokenResponse> {
        let (access_token, scope) = self.access_token(user, session_id, amr, now)?;
        Ok(TokenResponse {
            access_token,
            token_type: "Bearer",
            expires_in: self.jwt.ttl().as_secs(),
            refresh_token: tokens::format_refresh(&user.id, session_id, secret),
            refresh_token_expires_in: (idle_expires_at - now).max(0) as u64,
            scope,
        })
    }

    /// Starts a new session for `user` and returns its first token pair.
    pub async fn start(
        &self,
        store: &dyn SessionStore,
        user: &User,
        ctx: &RequestCtx,
        now: i64,
    ) -> DomainResult<TokenResponse> {
        let (session, secret) = self.new_session(user, &[PWD], ctx, now).await?;
        store.create_session(&session).await?;
        self.token_response(user, &session.id, &session.amr, &secret, session.idle_expires_at, now)
    }

    /// `start` for a successful login (authenticated by `amr`): the session, `last_login_at`
    /// and the deletion of the lockout keys the login cleared go to the store as one write.
    pub async fn start_login(
        &self,
        store: &dyn SessionStore,
        user: &User,
        amr: &[&str],
        cleared_locks: &[String],
        ctx: &RequestCtx,
        now: i64,
    ) -> DomainResult<TokenResponse> {
        let (session, secret) = self.new_session(user, amr, ctx, now).await?;
        store.start_login_session(&session, cleared_locks, now).await?;
        self.token_response(user, &session.id, &session.amr, &secret, session.idle_expires_at, now)
    }

    /// A new session for `user`, signed in with `amr`, and its refresh secret, for a caller
    /// that writes it itself (the login's second step, with the code it spends); `respond`
    /// answers it once written.
    pub async fn new_login(
        &self,
        user: &User,
        amr: &[&str],
        ctx: &RequestCtx,
        now: i64,
    ) -> DomainResult<(Session, String)> {
        self.new_session(user, amr, ctx, now).await
    }

    /// The token response of a session `new_login` made and the caller stored.
    pub fn respond(&self, user: &User, session: &Session, secret: &str, now: i64) -> DomainResult<TokenResponse> {
        self.token_response(user, &session.id, &session.amr, secret, session.idle_expires_at, now)
    }

    /// A new session for `user`, signed in with `amr`, and its refresh secret.
    async fn new_session(
        &self,
        user: &User,
        amr: &[&str],
        ctx: &RequestCtx,
        now: i64,
    ) -> DomainResult<(Session, String)> {
        self.jwt.refresh_keys().await;
        let secret = tokens::random_secret()?;
        let absolute = now + self.absolute_ttl.as_secs() as i64;
        let session = Session {
            user_id: user.id.clone(),
            id: uuid::Uuid::new_v4().simple().to_string(),
            current_hash: tokens::hash_secret(&secret),
            previous_hash: None,
            spent_hashes: Vec::new(),
            rotated_at: now,
            created_at: now,
            last_used_at: now,
            idle_expires_at: (now + self.idle_ttl.as_secs() as i64).min(absolute),
            absolute_expires_at: absolute,
            ip: ctx.ip.clone(),
            user_agent: crate::store::kept_user_agent(&ctx.user_agent),
            session_version: user.session_version,
            amr: amr.iter().map(|m| (*m).to_owned()).collect(),
        };
        Ok((session, secret))
    }

    fn idle_ttl(&self) -> Duration {
        self.idle_ttl
    }
}

/// Refresh-token rotation.
pub struct Refresh {
    store: Arc<dyn SessionPort>,
    issuer: SessionIssuer,
    grace: Duration,
    clock: SharedClock,
}

impl Refresh {
    pub fn new(store: Arc<dyn SessionPort>, issuer: SessionIssuer, cfg: &Config, clock: SharedClock) -> Self {
        Self { store, issuer, grace: cfg.refresh_grace, clock }
    }

    /// Rotates a refresh token; replay after the grace window revokes the session.
    pub async fn refresh(&self, token: &Token, ctx: &RequestCtx) -> DomainResult<TokenResponse> {
        let parts = tokens::parse_refresh(token.expose()).ok_or(DomainError::InvalidGrant)?;
        self.issuer.jwt.refresh_keys().await;
        let now = self.clock.now();
        // The user and the session in one read.
        let (user, session) = self.store.get_user_and_session(&parts.user_id, &parts.session_id, now).await?;
        let user = match user {
            Some(u) if u.is_active && u.is_verified => u,
            _ => {
                admitted(ctx).await?;
                self.store.delete_session(&parts.user_id, &parts.session_id).await?;
                return Err(DomainError::InvalidGrant);
            }
        };
        let Some(session) = session else {
            return Err(DomainError::InvalidGrant);
        };
        // Everything above only read; writes wait for the per-IP rate limit's decision.
        admitted(ctx).await?;
        // The successor is derived from the presented token, so that every refresh with it
        // rotates to the same one (tokens::RefreshParts::successor_secret).
        let keys = self.issuer.jwt.keys();
        let secret = parts.successor_secret(&keys);
        let new_hash = tokens::hash_secret(&secret);
        if session.session_version != user.session_version {
            // Revoked by a password change, reset or forced logout whose clean-up had not
            // reached this session yet.
            self.store.delete_session(&parts.user_id, &parts.session_id).await?;
            return Err(DomainError::InvalidGrant);
        }
        let idle = (now + self.issuer.idle_ttl().as_secs() as i64).min(session.absolute_expires_at);
        let outcome = self
            .store
            .rotate_session(
                &parts.user_id,
                &parts.session_id,
                &parts.secret_hash,
                &new_hash,
                now,
                idle,
                &session.next_spent(),
            )
            .await?;
        match outcome {
            Rotation::Rotated => {
                security_event("token_refreshed", ctx, Some(&user.id), "success");
                self.issuer.token_response(&user, &parts.session_id, &session.amr, &secret, idle, now)
            }
            Rotation::Missing => Err(DomainError::InvalidGrant),
            Rotation::Conflict(current) => {
                let grace = self.grace.as_secs() as i64;
                let just_rotated = current.previous_hash.as_deref() == Some(parts.secret_hash.as_str());
                if just_rotated && now - current.rotated_at <= grace {
                    // The winner may have loaded the keys on the other side of a rotation.
                    let stored =
                        parts.successor_secrets(&keys).find(|s| tokens::hash_secret(s) == current.current_hash);
                    if let Some(secret) = stored {
                        // A concurrent refresh with this token, or a retry after a lost answer:
                        // the same successor the rotation stored, with a fresh access token.
                        security_event("token_refreshed", ctx, Some(&user.id), "same_successor");
                        return self.issuer.token_response(
                            &user,
                            &parts.session_id,
                            &current.amr,
                            &secret,
                            current.idle_expires_at,
                            now,
                        );
                    }
                    // The successor has rotated on already: a clean refusal, nothing revoked.
                    security_event("token_refresh_race", ctx, Some(&user.id), "grace");
                    return Err(DomainError::InvalidGrant);
                }
                if current.has_spent(&parts.secret_hash) {
                    // Replay of a rotated-out token after the grace window: revoke the session.
                    self.store.delete_session(&parts.user_id, &parts.session_id).await?;
                    security_event("refresh_token_reuse", ctx, Some(&user.id), "session_revoked");
                    crate::metrics::count("RefreshTokenReuse");
                }
                Err(DomainError::InvalidGrant)
            }
        }
    }
}

/// Logout and the caller's own sessions; needs no signing key.
pub struct Sessions {
    store: Arc<dyn SessionPort>,
    clock: SharedClock,
}

impl Sessions {
    pub fn new(store: Arc<dyn SessionPort>, clock: SharedClock) -> Self {
        Self { store, clock }
    }

    /// Revokes the refresh token's session; silent for unknown or malformed tokens (RFC 7009).
    pub async fn logout(&self, token: &Token, ctx: &RequestCtx) -> DomainResult<()> {
        let Some(parts) = tokens::parse_refresh(token.expose()) else {
            return Ok(());
        };
        let Some(s) = self.store.get_session(&parts.user_id, &parts.session_id, self.clock.now()).await? else {
            return Ok(());
        };
        if s.current_hash == parts.secret_hash || s.has_spent(&parts.secret_hash) {
            self.store.delete_session(&parts.user_id, &parts.session_id).await?;
            security_event("session_revoked", ctx, Some(&parts.user_id), "logout");
        }
        Ok(())
    }

    /// The caller's live sessions, oldest first.
    pub async fn list(&self, caller: &Caller) -> DomainResult<Vec<SessionView>> {
        let sessions = self.store.list_sessions(&caller.user.id, self.clock.now()).await?;
        Ok(sessions
            .into_iter()
            .filter(|x| x.session_version == caller.user.session_version)
            .map(|x| SessionView::of(x, &caller.claims.sid))
            .collect())
    }

    /// Revokes one of the caller's own sessions; `NotFound` for anyone else's or an unknown id.
    pub async fn revoke(&self, caller: &Caller, id: &str, ctx: &RequestCtx) -> DomainResult<()> {
        if self.store.get_session(&caller.user.id, id, self.clock.now()).await?.is_none() {
            return Err(DomainError::NotFound);
        }
        self.store.delete_session(&caller.user.id, id).await?;
        security_event("session_revoked", ctx, Some(&caller.user.id), "one");
        Ok(())
    }

    /// Revokes all the caller's sessions and bumps the session version.
    pub async fn logout_all(&self, caller: &Caller, ctx: &RequestCtx) -> DomainResult<()> {
        self.store.bump_session_version(&caller.user.id, self.clock.now()).await?;
        self.store.delete_sessions(&caller.user.id, None).await?;
        security_event("session_revoked", ctx, Some(&caller.user.id), "all");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::testkit::{Kit, PASSWORD};

    async fn started(k: &Kit) -> (User, TokenResponse) {
        let u = k.user("eve@example.com", PASSWORD).await;
        let t = k.issuer().start(k.store.as_ref(), &u, &Kit::ctx("192.0.2.1"), k.clock.now()).await.unwrap();
        (u, t)
    }

    fn refresh(k: &Kit) -> Refresh {
        Refresh::new(k.store.clone(), k.issuer(), &k.cfg, k.clock.shared())
    }

    #[tokio::test]
    async fn given_a_refresh_retried_in_the_grace_window_then_it_gets_the_same_successor() {
        let k = Kit::new();
        let (_, t) = started(&k).await;
        let uc = refresh(&k);
        let ctx = Kit::ctx("192.0.2.1");
        let t2 = uc.refresh(&Token::new(t.refresh_token.clone()), &ctx).await.unwrap();
        assert_ne!(t.refresh_token, t2.refresh_token);
        // A retry after a lost answer: the same successor, a fresh access token.
        k.clock.advance(2);
        let again = uc.refresh(&Token::new(t.refresh_token.clone()), &ctx).await.unwrap();
        assert_eq!(again.refresh_token, t2.refresh_token);
        assert_ne!(again.access_token, t2.access_token);
        // The successor rotates on; a retry of that refresh gets its successor too.
        let t3 = uc.refresh(&Token::new(t2.refresh_token.clone()), &ctx).await.unwrap();
        let again = uc.refresh(&Token::new(t2.refresh_token), &ctx).await.unwrap();
        assert_eq!(again.refresh_token, t3.refresh_token);
        uc.refresh(&Token::new(t3.refresh_token), &ctx).await.unwrap();
    }

    #[tokio::test]
    async fn given_eight_concurrent_refreshes_with_one_token_then_all_get_the_one_successor() {
        let k = Kit::new();
        let (_, t) = started(&k).await;
        let uc = refresh(&k);
        let ctx = Kit::ctx("192.0.2.1");
        let token = Token::new(t.refresh_token.clone());
        let all = futures::future::join_all((0..8).map(|_| uc.refresh(&token, &ctx))).await;
        let successors: std::collections::HashSet<String> =
            all.into_iter().map(|r| r.map(|t| t.refresh_token)).collect::<Result<_, _>>().unwrap();
        assert_eq!(successors.len(), 1);
        let only = successors.into_iter().next().unwrap_or_default();
        uc.refresh(&Token::new(only), &ctx).await.unwrap();
    }

    #[tokio::test]
    async fn given_a_replay_after_the_grace_window_then_the_whole_session_is_revoked() {
        let k = Kit::new();
        let (_, t) = started(&k).await;
        let uc = refresh(&k);
        let ctx = Kit::ctx("192.0.2.1");
        let t2 = uc.refresh(&Token::new(t.refresh_token.clone()), &ctx).await.unwrap();
        k.clock.advance(k.cfg.refresh_grace.as_secs() as i64 + 1);
        assert!(uc.refresh(&Token::new(t.refresh_token), &ctx).await.is_err());
        assert!(matches!(uc.refresh(&Token::new(t2.refresh_token), &ctx).await, Err(DomainError::InvalidGrant)));
    }

    #[tokio::test]
    async fn given_an_idle_session_past_its_lifetime_then_refresh_is_refused() {
        let k = Kit::new();
        let (_, t) = started(&k).await;
        k.clock.advance(k.cfg.refresh_idle_ttl.as_secs() as i64 + 1);
        assert!(refresh(&k).refresh(&Token::new(t.refresh_token), &Kit::ctx("192.0.2.1")).await.is_err());
    }

    #[tokio::test]
    async fn given_logout_then_the_session_is_gone_and_unknown_tokens_are_silently_accepted() {
        let k = Kit::new();
        let (u, t) = started(&k).await;
        let s = Sessions::new(k.store.clone(), k.clock.shared());
        let ctx = Kit::ctx("192.0.2.1");
        s.logout(&Token::new("not-a-token"), &ctx).await.unwrap();
        s.logout(&Token::new(t.refresh_token.clone()), &ctx).await.unwrap();
        assert!(k.store.list_sessions(&u.id, k.clock.now()).await.unwrap().is_empty());
        assert!(refresh(&k).refresh(&Token::new(t.refresh_token), &ctx).await.is_err());
    }
}
