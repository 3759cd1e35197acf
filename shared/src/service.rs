//! The domain: one function per use case. Knows nothing of HTTP, Lambda or DynamoDB.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::config::Config;
use crate::email::{self, Email};
use crate::error::{AppError, AppResult, FieldError};
use crate::logging::{RequestCtx, security_event};
use crate::mail::{Mail, Mailer, templates};
use crate::password::{Hasher, Verified, check_policy};
use crate::secret::{Password, Token};
use crate::store::{EmailChange, LockGate, OneTimeKind, Rotation, Session, Store, User};
use crate::tokens::{self, AccessClaims, Jwt, Subject};

/// RFC 6749 §5.1 token response.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TokenResponse {
    pub access_token: String,
    #[schema(value_type = String, example = "Bearer")]
    pub token_type: &'static str,
    pub expires_in: u64,
    pub refresh_token: String,
    pub refresh_token_expires_in: u64,
    pub scope: String,
}

/// The public view of a user (never hashes, tokens or lockout internals).
#[derive(Debug, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct UserView {
    pub id: String,
    #[schema(format = Email)]
    pub email: String,
    pub name: Option<String>,
    pub is_active: bool,
    pub is_verified: bool,
    pub is_superuser: bool,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
    #[schema(format = DateTime)]
    pub last_login_at: Option<String>,
}

fn rfc3339(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0).unwrap_or_default().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

impl From<&User> for UserView {
    fn from(u: &User) -> Self {
        Self {
            id: u.id.clone(),
            email: u.email.clone(),
            name: u.name.clone(),
            is_active: u.is_active,
            is_verified: u.is_verified,
            is_superuser: u.is_superuser,
            created_at: rfc3339(u.created_at),
            updated_at: rfc3339(u.updated_at),
            last_login_at: u.last_login_at.map(rfc3339),
        }
    }
}

/// A session as `GET /auth/sessions` lists it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SessionView {
    pub id: String,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub last_used_at: String,
    pub ip: String,
    pub user_agent: String,
    /// True for the session the calling access token belongs to.
    pub current: bool,
}

/// An authenticated caller: verified token claims and the user as stored now.
#[derive(Debug, Clone)]
pub struct Caller {
    pub claims: AccessClaims,
    pub user: User,
}

/// The service with its ports.
pub struct AuthService {
    pub cfg: Arc<Config>,
    pub store: Arc<dyn Store>,
    pub mailer: Arc<dyn Mailer>,
    pub jwt: Jwt,
    pub hasher: Hasher,
}

fn email_field(field: &str, raw: &str) -> AppResult<Email> {
    email::normalize(raw).map_err(|e| AppError::Validation(vec![FieldError::new(field, e.to_string())]))
}

/// Display names: at most 100 code points, no control characters; blank means none.
pub fn validate_name(name: Option<&str>) -> AppResult<Option<String>> {
    let Some(n) = name.map(str::trim).filter(|n| !n.is_empty()) else {
        return Ok(None);
    };
    if n.chars().count() > 100 {
        return Err(AppError::Validation(vec![FieldError::new("name", "must be at most 100 characters")]));
    }
    if n.chars().any(char::is_control) {
        return Err(AppError::Validation(vec![FieldError::new("name", "must not contain control characters")]));
    }
    Ok(Some(n.to_owned()))
}

/// Runs `fut`, then waits until at least `floor` has passed since the start, so that the
/// answer's timing does not depend on which branch ran.
pub async fn with_floor<T>(floor: Duration, fut: impl std::future::Future<Output = T>) -> T {
    let deadline = tokio::time::Instant::now() + floor;
    let out = fut.await;
    tokio::time::sleep_until(deadline).await;
    out
}

impl AuthService {
    pub(crate) fn now(&self) -> i64 {
        crate::now()
    }

    /// Sends a mail; a failure is logged (without body or link) and never changes the answer.
    async fn send_mail(&self, mail: Mail, ctx: &RequestCtx, what: &str) {
        if let Err(e) = self.mailer.send(&mail).await {
            tracing::warn!(request_id = %ctx.request_id, event = "mail_failed", mail = what, error = %e.0, "mail delivery failed");
            crate::metrics::count("MailFailed");
        }
    }

    async fn issue_verification(&self, user: &User, ctx: &RequestCtx) -> AppResult<()> {
        let secret = tokens::random_secret()?;
        let expires = self.now() + self.cfg.verify_token_ttl.as_secs() as i64;
        self.store.put_one_time(OneTimeKind::VerifyEmail, &user.id, &tokens::hash_secret(&secret), expires).await?;
        let token = format!("{}.{}", user.id, secret);
        let mail = templates::verification(&self.cfg.product_name, &self.cfg.public_base_url, &user.email, &token);
        self.send_mail(mail, ctx, "verification").await;
        Ok(())
    }

    /// Sign-up: same 202 and timing whether or not the address is taken.
    pub async fn signup(&self, raw_email: &str, pw: &Password, name: Option<&str>, ctx: &RequestCtx) -> AppResult<()> {
        let email = email_field("email", raw_email);
        let name = validate_name(name);
        let (email, name) = match (email, name) {
            (Ok(e), Ok(n)) => (e, n),
            (e, n) => {
                let mut errs = Vec::new();
                for r in [e.err(), n.err()].into_iter().flatten() {
                    if let AppError::Validation(v) = r {
                        errs.extend(v);
                    }
                }
                if let Err(AppError::Validation(v)) = check_policy(&self.cfg.password, pw, None, "password") {
                    errs.extend(v);
                }
                return Err(AppError::Validation(errs));
            }
        };
        check_policy(&self.cfg.password, pw, Some(&email), "password")?;
        with_floor(self.cfg.enumeration_floor, async {
            let hash = self.hasher.hash(pw).await?;
            let now = self.now();
            let user = User {
                id: uuid::Uuid::new_v4().to_string(),
                email: email.as_str().to_owned(),
                name,
                password_hash: hash,
                is_active: true,
                is_verified: false,
                is_superuser: false,
                created_at: now,
                updated_at: now,
                last_login_at: None,
                session_version: 1,
            };
            match self.store.create_user(&user).await {
                Ok(()) => {
                    security_event("signup", ctx, Some(&user.id), "created");
                    self.issue_verification(&user, ctx).await
                }
                Err(crate::error::StoreError::EmailTaken) => {
                    security_event("signup", ctx, None, "existing_address");
                    let mail =
                        templates::attempted_signup(&self.cfg.product_name, &self.cfg.public_base_url, email.as_str());
                    self.send_mail(mail, ctx, "attempted_signup").await;
                    Ok(())
                }
                Err(e) => Err(e.into()),
            }
        })
        .await
    }

    /// Consumes a verification token (single use).
    pub async fn verify_email(&self, token: &Token, ctx: &RequestCtx) -> AppResult<()> {
        let (user_id, hash) = tokens::parse_one_time(token.expose()).ok_or(AppError::InvalidToken)?;
        if self.store.verify_email(&user_id, &hash, self.now()).await? {
            security_event("email_verified", ctx, Some(&user_id), "success");
            Ok(())
        } else {
            security_event("email_verified", ctx, None, "invalid_token");
            Err(AppError::InvalidToken)
        }
    }

    /// Re-sends verification mail if the account exists and is unverified; same answer always.
    pub async fn resend_verification(&self, raw_email: &str, ctx: &RequestCtx) -> AppResult<()> {
        let email = email_field("email", raw_email)?;
        with_floor(self.cfg.enumeration_floor, async {
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

    /// Password login with lockout; see docs/security.md "Brute force" and docs/api.md "Lockout policy".
    ///
    /// Two counters, each an atomic conditional update made before any password check: one per
    /// (account, client IP), which locks the account *for that IP* after `threshold` failures,
    /// and one per account, which locks it for everyone after `account_ceiling` failures from
    /// all IPs. One attacker therefore cannot lock the owner out from the owner's own network,
    /// while a distributed guesser still meets a hard limit.
    pub async fn login(&self, raw_email: &str, pw: &Password, ctx: &RequestCtx) -> AppResult<TokenResponse> {
        let email = email_field("email", raw_email)?;
        let account_key = email.as_str().to_owned();
        let pair_key = crate::store::pair_lock_key(&account_key, &ctx.ip);
        let policy = self.cfg.lockout;
        let window = policy.window.as_secs() as i64;
        // Fails closed: if a count cannot be written, nobody signs in.
        let mut gates = Vec::with_capacity(2);
        for (key, limit) in [(&pair_key, policy.threshold), (&account_key, policy.account_ceiling)] {
            match self.store.lock_gate(key, self.now(), window).await? {
                LockGate::Locked { .. } => return Err(self.login_failed(ctx, None, "locked")),
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
                    self.lock_account(key, *limit, *prev, &account_key, None, ctx).await?;
                }
            }
            return Err(self.login_failed(ctx, None, "locked"));
        }
        let user = self.store.find_user_by_email(&account_key).await?;
        let verified = self.hasher.verify(pw, user.as_ref().map(|u| u.password_hash.as_str())).await?;
        let user = match (user, &verified) {
            (Some(u), Verified::Yes | Verified::YesRehashed(_)) if u.is_active => u,
            (user, _) => {
                for (key, limit, attempt, prev) in &gates {
                    if attempt >= limit {
                        self.lock_account(key, *limit, *prev, &account_key, user.as_ref(), ctx).await?;
                    }
                }
                return Err(self.login_failed(ctx, user.as_ref(), "invalid_credentials"));
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
            return Err(AppError::EmailNotVerified);
        }
        let tokens = self.start_session(&user, ctx).await?;
        self.store.record_login(&user.id, self.now()).await?;
        security_event("login_succeeded", ctx, Some(&user.id), "success");
        crate::metrics::count("LoginSucceeded");
        Ok(tokens)
    }

    fn login_failed(&self, ctx: &RequestCtx, user: Option<&User>, outcome: &str) -> AppError {
        security_event("login_failed", ctx, user.map(|u| u.id.as_str()), outcome);
        crate::metrics::count("LoginFailed");
        AppError::InvalidCredentials
    }

    /// Locks `key` (a pair or the account) if its count reached `limit`; mails the owner once
    /// per lock.
    async fn lock_account(
        &self,
        key: &str,
        limit: u32,
        previous_locks: u32,
        account: &str,
        user: Option<&User>,
        ctx: &RequestCtx,
    ) -> AppResult<()> {
        let policy = self.cfg.lockout;
        let now = self.now();
        let dur = policy.lock_duration(previous_locks);
        let locked =
            self.store.lock(key, limit, now + dur.as_secs() as i64, now, policy.window.as_secs() as i64).await?;
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
                let mail = templates::account_locked(&self.cfg.product_name, &u.email, dur.as_secs() / 60);
                self.send_mail(mail, ctx, "account_locked").await;
            }
        }
        Ok(())
    }

    fn access_token(&self, user: &User, session_id: &str, now: i64) -> AppResult<(String, String)> {
        self.jwt.issue(
            &Subject {
                user_id: &user.id,
                email: &user.email,
                email_verified: user.is_verified,
                is_superuser: user.is_superuser,
                session_version: user.session_version,
                session_id,
            },
            now,
        )
    }

    fn token_response(
        &self,
        user: &User,
        session_id: &str,
        secret: &str,
        idle_expires_at: i64,
        now: i64,
    ) -> AppResult<TokenResponse> {
        let (access_token, scope) = self.access_token(user, session_id, now)?;
        Ok(TokenResponse {
            access_token,
            token_type: "Bearer",
            expires_in: self.jwt.ttl().as_secs(),
            refresh_token: tokens::format_refresh(&user.id, session_id, secret),
            refresh_token_expires_in: (idle_expires_at - now).max(0) as u64,
            scope,
        })
    }

    async fn start_session(&self, user: &User, ctx: &RequestCtx) -> AppResult<TokenResponse> {
        self.jwt.refresh_keys().await;
        let now = self.now();
        let secret = tokens::random_secret()?;
        let absolute = now + self.cfg.refresh_absolute_ttl.as_secs() as i64;
        let session = Session {
            user_id: user.id.clone(),
            id: uuid::Uuid::new_v4().simple().to_string(),
            current_hash: tokens::hash_secret(&secret),
            previous_hash: None,
            spent_hashes: Vec::new(),
            rotated_at: now,
            created_at: now,
            last_used_at: now,
            idle_expires_at: (now + self.cfg.refresh_idle_ttl.as_secs() as i64).min(absolute),
            absolute_expires_at: absolute,
            ip: ctx.ip.clone(),
            user_agent: ctx.user_agent.chars().take(256).collect(),
            session_version: user.session_version,
        };
        self.store.create_session(&session).await?;
        self.token_response(user, &session.id, &secret, session.idle_expires_at, now)
    }

    /// Rotates a refresh token; replay after the grace window revokes the session.
    pub async fn refresh(&self, token: &Token, ctx: &RequestCtx) -> AppResult<TokenResponse> {
        let parts = tokens::parse_refresh(token.expose()).ok_or(AppError::InvalidGrant)?;
        self.jwt.refresh_keys().await;
        let now = self.now();
        let user = match self.store.get_user(&parts.user_id).await? {
            Some(u) if u.is_active && u.is_verified => u,
            _ => {
                self.store.delete_session(&parts.user_id, &parts.session_id).await?;
                return Err(AppError::InvalidGrant);
            }
        };
        let secret = tokens::random_secret()?;
        let new_hash = tokens::hash_secret(&secret);
        // The item gives the absolute expiry (it caps the idle one) and the spent hashes.
        let Some(session) = self.store.get_session(&parts.user_id, &parts.session_id, now).await? else {
            return Err(AppError::InvalidGrant);
        };
        if session.session_version != user.session_version {
            // Revoked by a password change, reset or forced logout whose clean-up had not
            // reached this session yet.
            self.store.delete_session(&parts.user_id, &parts.session_id).await?;
            return Err(AppError::InvalidGrant);
        }
        let idle = (now + self.cfg.refresh_idle_ttl.as_secs() as i64).min(session.absolute_expires_at);
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
                self.token_response(&user, &parts.session_id, &secret, idle, now)
            }
            Rotation::Missing => Err(AppError::InvalidGrant),
            Rotation::Conflict(current) => {
                let grace = self.cfg.refresh_grace.as_secs() as i64;
                let just_rotated = current.previous_hash.as_deref() == Some(parts.secret_hash.as_str());
                if current.has_spent(&parts.secret_hash) {
                    if just_rotated && now - current.rotated_at <= grace {
                        // Lost a race with a concurrent refresh: a clean refusal, no second successor.
                        security_event("token_refresh_race", ctx, Some(&user.id), "grace");
                    } else {
                        self.store.delete_session(&parts.user_id, &parts.session_id).await?;
                        security_event("refresh_token_reuse", ctx, Some(&user.id), "session_revoked");
                        crate::metrics::count("RefreshTokenReuse");
                    }
                }
                Err(AppError::InvalidGrant)
            }
        }
    }

    /// Revokes the refresh token's session; silent for unknown or malformed tokens (RFC 7009).
    pub async fn logout(&self, token: &Token, ctx: &RequestCtx) -> AppResult<()> {
        let Some(parts) = tokens::parse_refresh(token.expose()) else {
            return Ok(());
        };
        let Some(s) = self.store.get_session(&parts.user_id, &parts.session_id, self.now()).await? else {
            return Ok(());
        };
        if s.current_hash == parts.secret_hash || s.has_spent(&parts.secret_hash) {
            self.store.delete_session(&parts.user_id, &parts.session_id).await?;
            security_event("session_revoked", ctx, Some(&parts.user_id), "logout");
        }
        Ok(())
    }

    /// Verifies a bearer token and checks the user is still active at that session version.
    pub async fn authenticate(&self, bearer: &str, ctx: &RequestCtx) -> AppResult<Caller> {
        self.jwt.refresh_keys().await;
        let claims = self.jwt.verify(bearer).map_err(|why| {
            tracing::info!(request_id = %ctx.request_id, event = "access_token_rejected", reason = ?why, "token rejected");
            AppError::Unauthorized { sent: true }
        })?;
        match self.store.get_user(&claims.sub).await? {
            Some(user) if user.is_active && user.session_version == claims.sv => Ok(Caller { claims, user }),
            _ => {
                tracing::info!(request_id = %ctx.request_id, event = "access_token_rejected", reason = "stale_session_version_or_user", "token rejected");
                Err(AppError::Unauthorized { sent: true })
            }
        }
    }

    /// Updates the caller's display name.
    pub async fn update_me(&self, caller: &Caller, name: Option<&str>) -> AppResult<UserView> {
        let name = validate_name(name)?;
        let user = self
            .store
            .update_name(&caller.user.id, name.as_deref(), self.now())
            .await?
            .ok_or(AppError::Unauthorized { sent: true })?;
        Ok(UserView::from(&user))
    }

    fn wrong_password(field: &str) -> AppError {
        AppError::Validation(vec![FieldError::new(field, "is incorrect")])
    }

    /// Mails a reset link if the account exists; the same 202 and timing either way.
    pub async fn forgot_password(&self, raw_email: &str, ctx: &RequestCtx) -> AppResult<()> {
        let email = email_field("email", raw_email)?;
        with_floor(self.cfg.enumeration_floor, async {
            let Some(u) = self.store.find_user_by_email(email.as_str()).await?.filter(|u| u.is_active) else {
                security_event("password_reset_requested", ctx, None, "unknown_address");
                return Ok(());
            };
            let secret = tokens::random_secret()?;
            let expires = self.now() + RESET_TTL_SECS;
            self.store.put_one_time(OneTimeKind::ResetPassword, &u.id, &tokens::hash_secret(&secret), expires).await?;
            let token = format!("{}.{}", u.id, secret);
            let mail = templates::password_reset(&self.cfg.product_name, &self.cfg.public_base_url, &u.email, &token);
            self.send_mail(mail, ctx, "password_reset").await;
            security_event("password_reset_requested", ctx, Some(&u.id), "sent");
            Ok(())
        })
        .await
    }

    /// Sets a new password with a reset token (single use); revokes every session, bumps the
    /// session version, clears lockout and notifies the owner.
    pub async fn reset_password(&self, token: &Token, new_pw: &Password, ctx: &RequestCtx) -> AppResult<()> {
        let (user_id, hash) = tokens::parse_one_time(token.expose()).ok_or(AppError::InvalidToken)?;
        let user = self.store.get_user(&user_id).await?.ok_or(AppError::InvalidToken)?;
        // The policy runs first, so a weak password does not spend the token.
        check_policy(&self.cfg.password, new_pw, Some(&Email::from_stored(user.email.clone())), "new_password")?;
        let new_hash = self.hasher.hash(new_pw).await?;
        if self.store.reset_password(&user_id, &hash, &new_hash, self.now()).await?.is_none() {
            security_event("password_reset", ctx, Some(&user_id), "invalid_token");
            return Err(AppError::InvalidToken);
        }
        // Sessions are already dead (their version is behind); this only tidies up.
        self.store.delete_sessions(&user_id, None).await?;
        self.store.clear_all_lockouts(&user.email).await?;
        security_event("password_reset", ctx, Some(&user_id), "success");
        let mail = templates::password_changed(&self.cfg.product_name, &self.cfg.public_base_url, &user.email);
        self.send_mail(mail, ctx, "password_changed").await;
        Ok(())
    }

    /// Changes the password with the current one; every other session is revoked, the
    /// caller's session stays usable (its refresh token moves to the new version).
    pub async fn change_password(
        &self,
        caller: &Caller,
        current: &Password,
        new_pw: &Password,
        ctx: &RequestCtx,
    ) -> AppResult<()> {
        let user = &caller.user;
        if self.hasher.verify(current, Some(&user.password_hash)).await? == Verified::No {
            security_event("password_changed", ctx, Some(&user.id), "wrong_current_password");
            return Err(Self::wrong_password("current_password"));
        }
        check_policy(&self.cfg.password, new_pw, Some(&Email::from_stored(user.email.clone())), "new_password")?;
        let new_hash = self.hasher.hash(new_pw).await?;
        let sv = self
            .store
            .change_password(&user.id, &user.password_hash, &new_hash, self.now())
            .await?
            .ok_or_else(|| AppError::Conflict("The password changed meanwhile; try again.".into()))?;
        self.store.confirm_session_version(&user.id, &caller.claims.sid, sv).await?;
        self.store.delete_sessions(&user.id, Some(&caller.claims.sid)).await?;
        security_event("password_changed", ctx, Some(&user.id), "success");
        let mail = templates::password_changed(&self.cfg.product_name, &self.cfg.public_base_url, &user.email);
        self.send_mail(mail, ctx, "password_changed").await;
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
        ctx: &RequestCtx,
    ) -> AppResult<()> {
        let new_email = email_field("new_email", raw_new)?;
        let user = &caller.user;
        if self.hasher.verify(current, Some(&user.password_hash)).await? == Verified::No {
            security_event("email_change_requested", ctx, Some(&user.id), "wrong_current_password");
            return Err(Self::wrong_password("current_password"));
        }
        if new_email.as_str() == user.email {
            return Err(AppError::Validation(vec![FieldError::new("new_email", "is already your address")]));
        }
        let secret = tokens::random_secret()?;
        let expires = self.now() + EMAIL_CHANGE_TTL_SECS;
        self.store.put_email_change(&user.id, &tokens::hash_secret(&secret), new_email.as_str(), expires).await?;
        let token = format!("{}.{}", user.id, secret);
        let (product, base) = (&self.cfg.product_name, &self.cfg.public_base_url);
        self.send_mail(
            templates::email_change_confirm(product, base, new_email.as_str(), &token),
            ctx,
            "email_change_confirm",
        )
        .await;
        self.send_mail(templates::email_change_notice(product, base, &user.email, false), ctx, "email_change_notice")
            .await;
        security_event("email_change_requested", ctx, Some(&user.id), "sent");
        Ok(())
    }

    /// Confirms an email change (single use): the unique-email claim moves in one transaction.
    pub async fn confirm_email_change(&self, token: &Token, ctx: &RequestCtx) -> AppResult<UserView> {
        let (user_id, hash) = tokens::parse_one_time(token.expose()).ok_or(AppError::InvalidToken)?;
        match self.store.confirm_email_change(&user_id, &hash, self.now()).await? {
            EmailChange::Changed { user, old_email } => {
                security_event("email_changed", ctx, Some(&user.id), "success");
                let (product, base) = (&self.cfg.product_name, &self.cfg.public_base_url);
                self.send_mail(templates::email_change_notice(product, base, &old_email, true), ctx, "email_changed")
                    .await;
                Ok(UserView::from(&user))
            }
            EmailChange::Taken => {
                security_event("email_changed", ctx, Some(&user_id), "address_taken");
                Err(AppError::Conflict("That address is already in use; the request was cancelled.".into()))
            }
            EmailChange::InvalidToken => Err(AppError::InvalidToken),
        }
    }

    /// The caller's live sessions, newest last.
    pub async fn list_sessions(&self, caller: &Caller) -> AppResult<Vec<SessionView>> {
        let sessions = self.store.list_sessions(&caller.user.id, self.now()).await?;
        Ok(sessions
            .into_iter()
            .filter(|x| x.session_version == caller.user.session_version)
            .map(|x| SessionView {
                current: x.id == caller.claims.sid,
                id: x.id,
                created_at: rfc3339(x.created_at),
                last_used_at: rfc3339(x.last_used_at),
                ip: x.ip,
                user_agent: x.user_agent,
            })
            .collect())
    }

    /// Revokes one of the caller's own sessions; 404 for anyone else's or an unknown id.
    pub async fn revoke_session(&self, caller: &Caller, id: &str, ctx: &RequestCtx) -> AppResult<()> {
        let found = self.store.get_session(&caller.user.id, id, self.now()).await?;
        if found.is_none() {
            return Err(AppError::NotFound);
        }
        self.store.delete_session(&caller.user.id, id).await?;
        security_event("session_revoked", ctx, Some(&caller.user.id), "one");
        Ok(())
    }

    /// Revokes all the caller's sessions and bumps the session version.
    pub async fn logout_all(&self, caller: &Caller, ctx: &RequestCtx) -> AppResult<()> {
        self.store.bump_session_version(&caller.user.id, self.now()).await?;
        self.store.delete_sessions(&caller.user.id, None).await?;
        security_event("session_revoked", ctx, Some(&caller.user.id), "all");
        Ok(())
    }
}

/// Reset links live one hour (docs/security.md).
pub const RESET_TTL_SECS: i64 = 3600;
/// Email-change links live one hour too: they move the account's sign-in address.
pub const EMAIL_CHANGE_TTL_SECS: i64 = 3600;
