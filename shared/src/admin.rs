//! User management for administrators (the admin API and the admin CLI). Same rules for both:
//! an admin cannot deactivate, demote or delete itself; the last active admin cannot go; email
//! changes move the unique-email claim in one transaction; deactivation, role and password
//! changes revoke sessions and bump the session version. Every action logs an `admin_user_*`
//! event with the actor, the target and the names (never values) of the changed fields.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde::{Deserialize, Serialize};

use crate::email::{self, Email};
use crate::error::{AppError, AppResult, FieldError};
use crate::logging::RequestCtx;
use crate::password::check_policy;
use crate::secret::Password;
use crate::service::{AuthService, Caller, UserView, validate_name};
use crate::store::{AdminWrite, User, UserChanges};

/// Who acts: an administrator's id (API) or the operator CLI.
#[derive(Debug, Clone, Copy)]
pub enum Actor<'a> {
    Admin(&'a str),
    Cli,
}

impl Actor<'_> {
    fn id(&self) -> &str {
        match self {
            Actor::Admin(id) => id,
            Actor::Cli => "cli",
        }
    }

    fn is(&self, target: &str) -> bool {
        matches!(self, Actor::Admin(id) if *id == target)
    }
}

/// `status` filter of the listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Active,
    Inactive,
    Unverified,
    Locked,
}

/// A listing request.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    pub limit: Option<u32>,
    pub cursor: Option<String>,
    pub email_prefix: Option<String>,
    pub status: Option<Status>,
}

/// A page of users.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UserPage {
    pub items: Vec<UserView>,
    /// Opaque and tamper-evident; absent on the last page.
    pub next_cursor: Option<String>,
}

/// What the cursor carries (and binds: a cursor only continues the listing it came from).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CursorBody {
    e: String,
    i: String,
    p: String,
    s: Option<Status>,
}

/// Fields an admin may set on create.
#[derive(Debug)]
pub struct NewUser {
    pub email: String,
    pub password: Password,
    pub name: Option<String>,
    pub is_superuser: bool,
    pub is_verified: bool,
}

/// Fields an admin may change.
#[derive(Debug, Default)]
pub struct UserUpdate {
    pub email: Option<String>,
    pub name: Option<Option<String>>,
    pub is_superuser: Option<bool>,
    pub is_verified: Option<bool>,
    pub password: Option<Password>,
}

fn conflict(msg: &str) -> AppError {
    AppError::Conflict(msg.to_owned())
}

fn admin_event(event: &str, ctx: &RequestCtx, actor: Actor<'_>, target: &str, fields: &[&str]) {
    tracing::info!(
        event,
        request_id = %ctx.request_id,
        actor_id = actor.id(),
        user_id = target,
        fields = %fields.join(","),
        ip = %ctx.ip,
        user_agent = %ctx.user_agent,
        outcome = "success",
        "security event"
    );
}

impl AuthService {
    /// Verifies a bearer token for the admin API: 401 for a bad token or an inactive user,
    /// 403 for a valid token of someone who is not (or no longer) an administrator.
    pub async fn authenticate_admin(&self, bearer: &str, ctx: &RequestCtx) -> AppResult<Caller> {
        self.jwt.refresh_keys().await;
        let claims = self.jwt.verify(bearer).map_err(|_| AppError::Unauthorized { sent: true })?;
        let user = self.store.get_user(&claims.sub).await?.ok_or(AppError::Unauthorized { sent: true })?;
        if !user.is_active {
            return Err(AppError::Unauthorized { sent: true });
        }
        let admin_scope = claims.scope.split(' ').any(|s| s == "admin");
        // A token that claims an admin its holder no longer is (demoted): 403 at once, even
        // though its session version is stale too.
        let demoted = admin_scope && !user.is_superuser;
        if !demoted && user.session_version != claims.sv {
            return Err(AppError::Unauthorized { sent: true });
        }
        if !user.is_superuser || !admin_scope {
            tracing::info!(request_id = %ctx.request_id, event = "admin_access_denied", user_id = %user.id, "not an administrator");
            return Err(AppError::Forbidden);
        }
        Ok(Caller { claims, user })
    }

    fn encode_cursor(&self, body: &CursorBody) -> String {
        let payload = B64.encode(serde_json::to_vec(body).unwrap_or_default());
        let tag = B64.encode(self.jwt.keys().mac(payload.as_bytes()));
        format!("{payload}.{tag}")
    }

    fn decode_cursor(&self, cursor: &str) -> AppResult<CursorBody> {
        let bad = || AppError::BadRequest("The cursor is invalid; start the listing again.".into());
        let (payload, tag) = cursor.split_once('.').ok_or_else(bad)?;
        let tag = B64.decode(tag).map_err(|_| bad())?;
        if !self.jwt.keys().verify_mac(payload.as_bytes(), &tag) {
            return Err(bad());
        }
        serde_json::from_slice(&B64.decode(payload).map_err(|_| bad())?).map_err(|_| bad())
    }

    async fn matches(&self, u: &User, status: Option<Status>) -> AppResult<bool> {
        Ok(match status {
            None => true,
            Some(Status::Active) => u.is_active,
            Some(Status::Inactive) => !u.is_active,
            Some(Status::Unverified) => !u.is_verified,
            Some(Status::Locked) => self.store.is_locked(&u.email, self.now()).await?,
        })
    }

    /// Users ordered by email, filtered; cursor pagination on the email index.
    pub async fn admin_list_users(&self, q: &ListQuery) -> AppResult<UserPage> {
        let limit = q.limit.unwrap_or(50);
        if !(1..=100).contains(&limit) {
            return Err(AppError::Validation(vec![FieldError::new("limit", "must be between 1 and 100")]));
        }
        let limit = limit as usize;
        let prefix = q.email_prefix.as_deref().unwrap_or("").trim().to_lowercase();
        if prefix.chars().any(char::is_control) || prefix.len() > 254 {
            return Err(AppError::Validation(vec![FieldError::new("email_prefix", "is not a valid prefix")]));
        }
        let mut after = match &q.cursor {
            Some(c) => {
                let b = self.decode_cursor(c)?;
                if b.p != prefix || b.s != q.status {
                    return Err(AppError::BadRequest("The cursor belongs to another listing.".into()));
                }
                Some((b.e, b.i))
            }
            None => None,
        };
        let mut items: Vec<User> = Vec::new();
        loop {
            let (page, more) =
                self.store.list_users(&prefix, after.as_ref().map(|(e, i)| (e.as_str(), i.as_str())), limit).await?;
            let page_len = page.len();
            for (n, u) in page.into_iter().enumerate() {
                after = Some((u.email.clone(), u.id.clone()));
                if self.matches(&u, q.status).await? {
                    items.push(u);
                    if items.len() == limit {
                        let rest = more || n + 1 < page_len;
                        let next = rest.then(|| {
                            let (e, i) = after.clone().unwrap_or_default();
                            self.encode_cursor(&CursorBody { e, i, p: prefix.clone(), s: q.status })
                        });
                        return Ok(UserPage { items: items.iter().map(UserView::from).collect(), next_cursor: next });
                    }
                }
            }
            if !more || page_len == 0 {
                return Ok(UserPage { items: items.iter().map(UserView::from).collect(), next_cursor: None });
            }
        }
    }

    /// The user by id, or 404.
    pub async fn admin_get_user(&self, id: &str) -> AppResult<User> {
        self.store.get_user(id).await?.ok_or(AppError::NotFound)
    }

    /// Finds a user by id or, for the CLI, by email.
    pub async fn admin_find(&self, id_or_email: &str) -> AppResult<User> {
        if id_or_email.contains('@') {
            let e = email::normalize(id_or_email).map_err(|_| AppError::NotFound)?;
            return self.store.find_user_by_email(e.as_str()).await?.ok_or(AppError::NotFound);
        }
        self.admin_get_user(id_or_email).await
    }

    /// Creates a user; 409 if the address is taken (administrators may know).
    pub async fn admin_create_user(&self, actor: Actor<'_>, new: NewUser, ctx: &RequestCtx) -> AppResult<User> {
        let email = email::normalize(&new.email)
            .map_err(|e| AppError::Validation(vec![FieldError::new("email", e.to_string())]))?;
        let name = validate_name(new.name.as_deref())?;
        check_policy(&self.cfg.password, &new.password, Some(&email), "password")?;
        let now = self.now();
        let user = User {
            id: uuid::Uuid::new_v4().to_string(),
            email: email.as_str().to_owned(),
            name,
            password_hash: self.hasher.hash(&new.password).await?,
            is_active: true,
            is_verified: new.is_verified,
            is_superuser: new.is_superuser,
            created_at: now,
            updated_at: now,
            last_login_at: None,
            session_version: 1,
        };
        match self.store.admin_create_user(&user).await? {
            AdminWrite::Done(u) => {
                let mut fields = vec!["email", "password"];
                if new.is_superuser {
                    fields.push("is_superuser");
                }
                admin_event("admin_user_created", ctx, actor, &u.id, &fields);
                Ok(u)
            }
            AdminWrite::EmailTaken => Err(conflict("The email is already registered.")),
            _ => Err(conflict("The user could not be created; retry.")),
        }
    }

    async fn admin_write(&self, current: &User, changes: UserChanges) -> AppResult<User> {
        match self.store.admin_update_user(current, &changes, self.now()).await? {
            AdminWrite::Done(u) => {
                if changes.bump_session_version {
                    self.store.delete_sessions(&u.id, None).await?;
                }
                Ok(u)
            }
            AdminWrite::NotFound => Err(AppError::NotFound),
            AdminWrite::EmailTaken => Err(conflict("The email is already registered.")),
            AdminWrite::LastAdmin => Err(conflict("This is the last active administrator.")),
            AdminWrite::Changed => Err(conflict("The user changed meanwhile; read it again and retry.")),
        }
    }

    /// Changes a user's fields (`PUT /users/{id}`).
    pub async fn admin_update_user(
        &self,
        actor: Actor<'_>,
        id: &str,
        up: UserUpdate,
        ctx: &RequestCtx,
    ) -> AppResult<User> {
        let current = self.admin_get_user(id).await?;
        let mut changes = UserChanges::default();
        let mut fields = Vec::new();
        if let Some(raw) = &up.email {
            let e: Email = email::normalize(raw)
                .map_err(|e| AppError::Validation(vec![FieldError::new("email", e.to_string())]))?;
            if e.as_str() != current.email {
                changes.email = Some(e.as_str().to_owned());
                changes.bump_session_version = true;
                fields.push("email");
            }
        }
        if let Some(name) = &up.name {
            changes.name = Some(validate_name(name.as_deref())?);
            fields.push("name");
        }
        if let Some(v) = up.is_superuser.filter(|v| *v != current.is_superuser) {
            if !v && actor.is(id) {
                return Err(conflict("An administrator cannot demote itself."));
            }
            changes.is_superuser = Some(v);
            changes.bump_session_version = true;
            fields.push("is_superuser");
        }
        if let Some(v) = up.is_verified {
            changes.is_verified = Some(v);
            fields.push("is_verified");
        }
        if let Some(pw) = &up.password {
            let email = Email::from_stored(changes.email.clone().unwrap_or_else(|| current.email.clone()));
            check_policy(&self.cfg.password, pw, Some(&email), "password")?;
            changes.password_hash = Some(self.hasher.hash(pw).await?);
            changes.bump_session_version = true;
            fields.push("password");
        }
        let user = self.admin_write(&current, changes).await?;
        admin_event("admin_user_updated", ctx, actor, id, &fields);
        Ok(user)
    }

    /// Activates or deactivates a user; deactivation revokes every session.
    pub async fn admin_set_active(
        &self,
        actor: Actor<'_>,
        id: &str,
        active: bool,
        ctx: &RequestCtx,
    ) -> AppResult<User> {
        if !active && actor.is(id) {
            return Err(conflict("An administrator cannot deactivate itself."));
        }
        let current = self.admin_get_user(id).await?;
        if current.is_active == active {
            return Ok(current);
        }
        let changes = UserChanges { is_active: Some(active), bump_session_version: !active, ..Default::default() };
        let user = self.admin_write(&current, changes).await?;
        let event = if active { "admin_user_activated" } else { "admin_user_deactivated" };
        admin_event(event, ctx, actor, id, &["is_active"]);
        Ok(user)
    }

    /// Clears every lockout of the user's account.
    pub async fn admin_unlock(&self, actor: Actor<'_>, id: &str, ctx: &RequestCtx) -> AppResult<User> {
        let user = self.admin_get_user(id).await?;
        self.store.clear_all_lockouts(&user.email).await?;
        admin_event("admin_user_unlocked", ctx, actor, id, &["lockout"]);
        crate::logging::security_event("account_unlocked", ctx, Some(id), "admin");
        Ok(user)
    }

    /// Forced logout: every session revoked, every access token stale.
    pub async fn admin_revoke_sessions(&self, actor: Actor<'_>, id: &str, ctx: &RequestCtx) -> AppResult<()> {
        let user = self.admin_get_user(id).await?;
        self.store.bump_session_version(&user.id, self.now()).await?.ok_or(AppError::NotFound)?;
        self.store.delete_sessions(&user.id, None).await?;
        admin_event("admin_user_sessions_revoked", ctx, actor, id, &["sessions"]);
        Ok(())
    }

    /// Deletes the user, its email claim, sessions, pending tokens and lockout items.
    pub async fn admin_delete_user(&self, actor: Actor<'_>, id: &str, ctx: &RequestCtx) -> AppResult<()> {
        if actor.is(id) {
            return Err(conflict("An administrator cannot delete itself."));
        }
        let current = self.admin_get_user(id).await?;
        match self.store.admin_delete_user(&current).await? {
            AdminWrite::Done(_) => {
                admin_event("admin_user_deleted", ctx, actor, id, &[]);
                Ok(())
            }
            AdminWrite::NotFound => Err(AppError::NotFound),
            AdminWrite::LastAdmin => Err(conflict("This is the last active administrator.")),
            _ => Err(conflict("The user changed meanwhile; read it again and retry.")),
        }
    }
}

impl Status {
    pub fn parse(s: &str) -> AppResult<Self> {
        match s {
            "active" => Ok(Status::Active),
            "inactive" => Ok(Status::Inactive),
            "unverified" => Ok(Status::Unverified),
            "locked" => Ok(Status::Locked),
            _ => Err(AppError::Validation(vec![FieldError::new(
                "status",
                "must be one of active, inactive, unverified, locked",
            )])),
        }
    }
}
