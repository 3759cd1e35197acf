//! User management for administrators (the admin API and the admin CLI). Same rules for both:
//! an admin cannot deactivate, demote or delete itself; the last active admin cannot go; email
//! changes move the unique-email claim in one transaction; deactivation, role and password
//! changes revoke sessions and bump the session version. Every action logs an `admin_user_*`
//! event with the actor, the target and the names (never values) of the changed fields.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde::{Deserialize, Serialize};

use std::sync::Arc;

use futures::StreamExt as _;

use crate::clock::SharedClock;
use crate::config::{Config, PasswordPolicy};
use crate::context::RequestCtx;
use crate::domain::error::{DomainError, DomainResult, invalid};
use crate::domain::notify::Notifier;
use crate::domain::ratelimit::{Gate, admit_id};
use crate::domain::validate_name;
use crate::domain::views::UserView;
use crate::email::{self, Email};
use crate::keys::KeyProvider;
use crate::mail::templates::{self, AdminNotice};
use crate::password::{Hasher, check_policy};
use crate::secret::Password;
use crate::store::{AdminPort, AdminWrite, User, UserChanges};

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

/// The administration use case (the admin API and the operator CLI).
pub struct Admin {
    store: Arc<dyn AdminPort>,
    hasher: Hasher,
    policy: PasswordPolicy,
    /// The cursor MAC is keyed from the current signing key.
    keys: Arc<KeyProvider>,
    /// Tells an account's owner what an administrator did to it. `None` only where the
    /// endpoint's declaration says it changes nothing an owner must hear of (`admin_quiet`).
    notifier: Option<Notifier>,
    /// The per-administrator limit of the endpoints that hash a password.
    gate: Option<Gate>,
    clock: SharedClock,
    /// Users one listing request looks at, at most (`EXAMINED_PER_REQUEST`).
    examine: usize,
}

/// Users one filtered listing request looks at, at most: a filter few users match (`locked`
/// on a large table) answers a short or empty page with a cursor where it stopped, rather than
/// reading the whole table in one request.
pub const EXAMINED_PER_REQUEST: usize = 1000;
/// Lock checks (`status=locked`, one query per user) in flight at once.
const LOCK_CHECKS_IN_FLIGHT: usize = 16;

fn conflict(msg: &str) -> DomainError {
    DomainError::Conflict(msg.to_owned())
}

pub(crate) fn admin_event(event: &str, ctx: &RequestCtx, actor: Actor<'_>, target: &str, fields: &[&str]) {
    tracing::info!(
        event,
        request_id = %ctx.request_id,
        client_request_id = ctx.client_request_id.as_deref().unwrap_or(""),
        actor_id = actor.id(),
        user_id = target,
        fields = %fields.join(","),
        ip = %ctx.ip,
        user_agent = %ctx.user_agent,
        outcome = "success",
        "security event"
    );
}

impl Admin {
    pub fn new(
        store: Arc<dyn AdminPort>,
        hasher: Hasher,
        keys: Arc<KeyProvider>,
        notifier: Option<Notifier>,
        gate: Option<Gate>,
        cfg: &Config,
        clock: SharedClock,
    ) -> Self {
        Self { store, hasher, policy: cfg.password.clone(), keys, notifier, gate, clock, examine: EXAMINED_PER_REQUEST }
    }

    /// Tells the owner of `user` (at `to`, its address before the change) what was done.
    async fn notify(&self, to: &str, what: AdminNotice, fields: &[&str], ctx: &RequestCtx) {
        let Some(n) = &self.notifier else {
            tracing::error!(request_id = %ctx.request_id, "an administrator's change mailed no notice: no mailer");
            return;
        };
        n.notice(templates::admin_notice(n.product(), n.base_url(), to, what, fields), ctx, "admin_notice").await;
    }

    /// Looks at most at `n` users per listing request (tests).
    pub fn with_examine_budget(mut self, n: usize) -> Self {
        self.examine = n.max(1);
        self
    }

    /// Counts a request of `actor` against the gate (the CLI is not limited).
    async fn admit(&self, actor: Actor<'_>, ctx: &RequestCtx) -> DomainResult<()> {
        match actor {
            Actor::Admin(id) => admit_id(&self.gate, id, ctx).await,
            Actor::Cli => Ok(()),
        }
    }

    fn now(&self) -> i64 {
        self.clock.now()
    }

    fn encode_cursor(&self, body: &CursorBody) -> String {
        let payload = B64.encode(serde_json::to_vec(body).unwrap_or_default());
        let tag = B64.encode(self.keys.keys().mac(payload.as_bytes()));
        format!("{payload}.{tag}")
    }

    fn decode_cursor(&self, cursor: &str) -> DomainResult<CursorBody> {
        let bad = || DomainError::BadRequest("The cursor is invalid; start the listing again.".into());
        let (payload, tag) = cursor.split_once('.').ok_or_else(bad)?;
        let tag = B64.decode(tag).map_err(|_| bad())?;
        if !self.keys.keys().verify_mac(payload.as_bytes(), &tag) {
            return Err(bad());
        }
        serde_json::from_slice(&B64.decode(payload).map_err(|_| bad())?).map_err(|_| bad())
    }

    /// Which users of `page` match `status`; lock checks (a query per user) run concurrently.
    async fn matches_page(&self, page: &[User], status: Option<Status>) -> Vec<DomainResult<bool>> {
        let Some(Status::Locked) = status else {
            return page
                .iter()
                .map(|u| {
                    Ok(match status {
                        Some(Status::Active) => u.is_active,
                        Some(Status::Inactive) => !u.is_active,
                        Some(Status::Unverified) => !u.is_verified,
                        _ => true,
                    })
                })
                .collect();
        };
        let (now, store) = (self.now(), self.store.clone());
        let emails: Vec<String> = page.iter().map(|u| u.email.clone()).collect();
        let checks = emails.into_iter().map(move |email| {
            let store = store.clone();
            async move { store.is_locked(&email, now).await.map_err(DomainError::from) }
        });
        futures::stream::iter(checks).buffered(LOCK_CHECKS_IN_FLIGHT).collect().await
    }

    /// Users ordered by email, filtered; cursor pagination on the email index.
    pub async fn list_users(&self, q: &ListQuery) -> DomainResult<UserPage> {
        let limit = q.limit.unwrap_or(50);
        if !(1..=100).contains(&limit) {
            return Err(invalid("limit", "must be between 1 and 100"));
        }
        let limit = limit as usize;
        let prefix = q.email_prefix.as_deref().unwrap_or("").trim().to_lowercase();
        if prefix.chars().any(char::is_control) || prefix.len() > 254 {
            return Err(invalid("email_prefix", "is not a valid prefix"));
        }
        let mut after = match &q.cursor {
            Some(c) => {
                let b = self.decode_cursor(c)?;
                if b.p != prefix || b.s != q.status {
                    return Err(DomainError::BadRequest("The cursor belongs to another listing.".into()));
                }
                Some((b.e, b.i))
            }
            None => None,
        };
        let mut items: Vec<User> = Vec::new();
        let mut examined = 0usize;
        let cursor_at = |after: &Option<(String, String)>| {
            let (e, i) = after.clone().unwrap_or_default();
            self.encode_cursor(&CursorBody { e, i, p: prefix.clone(), s: q.status })
        };
        loop {
            let (page, more) =
                self.store.list_users(&prefix, after.as_ref().map(|(e, i)| (e.as_str(), i.as_str())), limit).await?;
            let page_len = page.len();
            let checks = self.matches_page(&page, q.status).await;
            for (n, (u, matched)) in page.into_iter().zip(checks).enumerate() {
                after = Some((u.email.clone(), u.id.clone()));
                examined += 1;
                if matched? {
                    items.push(u);
                }
                let rest = more || n + 1 < page_len;
                if items.len() == limit || (examined >= self.examine && rest) {
                    let next = rest.then(|| cursor_at(&after));
                    return Ok(UserPage { items: items.iter().map(UserView::from).collect(), next_cursor: next });
                }
            }
            if !more || page_len == 0 {
                return Ok(UserPage { items: items.iter().map(UserView::from).collect(), next_cursor: None });
            }
        }
    }

    /// The user by id, or 404.
    pub async fn get_user(&self, id: &str) -> DomainResult<User> {
        self.store.get_user(id).await?.ok_or(DomainError::NotFound)
    }

    /// Finds a user by id or, for the CLI, by email.
    pub async fn find(&self, id_or_email: &str) -> DomainResult<User> {
        if id_or_email.contains('@') {
            let e = email::normalize(id_or_email).map_err(|_| DomainError::NotFound)?;
            return self.store.find_user_by_email(e.as_str()).await?.ok_or(DomainError::NotFound);
        }
        self.get_user(id_or_email).await
    }

    /// Creates a user; 409 if the address is taken (administrators may know).
    pub async fn create_user(&self, actor: Actor<'_>, new: NewUser, ctx: &RequestCtx) -> DomainResult<User> {
        self.admit(actor, ctx).await?;
        let email = email::normalize(&new.email).map_err(|e| invalid("email", e.to_string()))?;
        let name = validate_name(new.name.as_deref())?;
        check_policy(&self.policy, &new.password, Some(&email), "password")?;
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
            mfa_enabled: false,
            pending_signup: false,
            registrations: Vec::new(),
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

    async fn admin_write(&self, current: &User, changes: UserChanges) -> DomainResult<User> {
        match self.store.admin_update_user(current, &changes, self.now()).await? {
            AdminWrite::Done(u) => {
                if changes.bump_session_version {
                    self.store.delete_sessions(&u.id, None).await?;
                }
                Ok(u)
            }
            AdminWrite::NotFound => Err(DomainError::NotFound),
            AdminWrite::EmailTaken => Err(conflict("The email is already registered.")),
            AdminWrite::LastAdmin => Err(conflict("This is the last active administrator.")),
            AdminWrite::Changed => Err(conflict("The user changed meanwhile; read it again and retry.")),
        }
    }

    /// Changes a user's fields (`PUT /users/{id}`).
    pub async fn update_user(
        &self,
        actor: Actor<'_>,
        id: &str,
        up: UserUpdate,
        ctx: &RequestCtx,
    ) -> DomainResult<User> {
        self.admit(actor, ctx).await?;
        let current = self.get_user(id).await?;
        let mut changes = UserChanges::default();
        let mut fields = Vec::new();
        if let Some(raw) = &up.email {
            let e: Email = email::normalize(raw).map_err(|e| invalid("email", e.to_string()))?;
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
            check_policy(&self.policy, pw, Some(&email), "password")?;
            changes.password_hash = Some(self.hasher.hash(pw).await?);
            changes.bump_session_version = true;
            fields.push("password");
        }
        let user = self.admin_write(&current, changes).await?;
        admin_event("admin_user_updated", ctx, actor, id, &fields);
        if !fields.is_empty() {
            self.notify(&current.email, AdminNotice::Changed, &fields, ctx).await;
        }
        Ok(user)
    }

    /// Activates or deactivates a user; deactivation revokes every session.
    pub async fn set_active(&self, actor: Actor<'_>, id: &str, active: bool, ctx: &RequestCtx) -> DomainResult<User> {
        if !active && actor.is(id) {
            return Err(conflict("An administrator cannot deactivate itself."));
        }
        let current = self.get_user(id).await?;
        if current.is_active == active {
            return Ok(current);
        }
        let changes = UserChanges { is_active: Some(active), bump_session_version: !active, ..Default::default() };
        let user = self.admin_write(&current, changes).await?;
        let event = if active { "admin_user_activated" } else { "admin_user_deactivated" };
        admin_event(event, ctx, actor, id, &["is_active"]);
        let what = if active { AdminNotice::Reactivated } else { AdminNotice::Deactivated };
        self.notify(&current.email, what, &[], ctx).await;
        Ok(user)
    }

    /// Clears every lockout of the user's account.
    pub async fn unlock(&self, actor: Actor<'_>, id: &str, ctx: &RequestCtx) -> DomainResult<User> {
        let user = self.get_user(id).await?;
        self.store.clear_all_lockouts(&user.email).await?;
        admin_event("admin_user_unlocked", ctx, actor, id, &["lockout"]);
        crate::logging::security_event("account_unlocked", ctx, Some(id), "admin");
        Ok(user)
    }

    /// Forced logout: every session revoked, every access token stale.
    pub async fn revoke_sessions(&self, actor: Actor<'_>, id: &str, ctx: &RequestCtx) -> DomainResult<()> {
        let user = self.get_user(id).await?;
        self.store.bump_session_version(&user.id, self.now()).await?.ok_or(DomainError::NotFound)?;
        self.store.delete_sessions(&user.id, None).await?;
        admin_event("admin_user_sessions_revoked", ctx, actor, id, &["sessions"]);
        self.notify(&user.email, AdminNotice::SessionsRevoked, &[], ctx).await;
        Ok(())
    }

    /// Deletes the user, its email claim, sessions, pending tokens and lockout items.
    pub async fn delete_user(&self, actor: Actor<'_>, id: &str, ctx: &RequestCtx) -> DomainResult<()> {
        if actor.is(id) {
            return Err(conflict("An administrator cannot delete itself."));
        }
        let current = match self.get_user(id).await {
            Err(DomainError::NotFound) => {
                // Gone; but a delete whose answer was lost after its transaction may have left
                // sessions and tokens behind, which this repairs.
                self.store.purge_user(id).await?;
                return Err(DomainError::NotFound);
            }
            found => found?,
        };
        match self.store.admin_delete_user(&current).await? {
            AdminWrite::Done(_) => {
                admin_event("admin_user_deleted", ctx, actor, id, &[]);
                self.notify(&current.email, AdminNotice::Deleted, &[], ctx).await;
                Ok(())
            }
            AdminWrite::NotFound => Err(DomainError::NotFound),
            AdminWrite::LastAdmin => Err(conflict("This is the last active administrator.")),
            _ => Err(conflict("The user changed meanwhile; read it again and retry.")),
        }
    }
}

impl Status {
    pub fn parse(s: &str) -> DomainResult<Self> {
        match s {
            "active" => Ok(Status::Active),
            "inactive" => Ok(Status::Inactive),
            "unverified" => Ok(Status::Unverified),
            "locked" => Ok(Status::Locked),
            _ => Err(invalid("status", "must be one of active, inactive, unverified, locked")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::testkit::{Kit, PASSWORD};

    fn admin(k: &Kit) -> Admin {
        Admin::new(
            k.store.clone(),
            k.hasher.clone(),
            k.keys.clone(),
            Some(k.notifier()),
            None,
            &k.cfg,
            k.clock.shared(),
        )
    }

    fn new_admin(email: &str) -> NewUser {
        NewUser {
            email: email.into(),
            password: Password::new(PASSWORD),
            name: None,
            is_superuser: true,
            is_verified: true,
        }
    }

    #[tokio::test]
    async fn given_one_admin_then_it_cannot_demote_deactivate_or_delete_itself_and_stays() {
        let k = Kit::new();
        let uc = admin(&k);
        let ctx = RequestCtx::internal("t");
        let root = uc.create_user(Actor::Cli, new_admin("root@example.com"), &ctx).await.unwrap();
        let me = Actor::Admin(&root.id);
        let demote = UserUpdate { is_superuser: Some(false), ..Default::default() };
        assert!(matches!(uc.update_user(me, &root.id, demote, &ctx).await, Err(DomainError::Conflict(_))));
        assert!(matches!(uc.set_active(me, &root.id, false, &ctx).await, Err(DomainError::Conflict(_))));
        assert!(matches!(uc.delete_user(me, &root.id, &ctx).await, Err(DomainError::Conflict(_))));
        // Not even the CLI may remove the last active admin.
        assert!(matches!(uc.set_active(Actor::Cli, &root.id, false, &ctx).await, Err(DomainError::Conflict(_))));
        assert!(k.stored(&root.id).await.is_superuser);
    }

    #[tokio::test]
    async fn given_pages_then_cursors_continue_exactly_and_a_tampered_one_is_refused() {
        let k = Kit::new();
        for i in 0..5 {
            k.user(&format!("u{i}@example.com"), PASSWORD).await;
        }
        let uc = admin(&k);
        let first = uc.list_users(&ListQuery { limit: Some(3), ..Default::default() }).await.unwrap();
        assert_eq!(first.items.len(), 3);
        let cursor = first.next_cursor.unwrap();
        let rest = uc
            .list_users(&ListQuery { limit: Some(3), cursor: Some(cursor.clone()), ..Default::default() })
            .await
            .unwrap();
        assert_eq!(
            rest.items.iter().map(|u| u.email.as_str()).collect::<Vec<_>>(),
            ["u3@example.com", "u4@example.com"]
        );
        assert!(rest.next_cursor.is_none());
        let mut forged = cursor.into_bytes();
        forged[2] ^= 1;
        let forged = String::from_utf8(forged).unwrap();
        let q = ListQuery { limit: Some(3), cursor: Some(forged), ..Default::default() };
        assert!(matches!(uc.list_users(&q).await, Err(DomainError::BadRequest(_))));
    }

    #[tokio::test]
    async fn given_a_filter_few_users_match_then_each_request_looks_at_a_bounded_number_and_continues_by_cursor() {
        use crate::store::{LockoutStore, UserRegistry};
        let k = Kit::new();
        let template = k.user("a000@example.com", PASSWORD).await;
        for i in 1..250 {
            let u = crate::store::User {
                id: uuid::Uuid::new_v4().to_string(),
                email: format!("a{i:03}@example.com"),
                ..template.clone()
            };
            k.store.create_user(&u).await.unwrap();
        }
        // Only the last user by address is locked.
        let last = "a249@example.com";
        let now = k.clock.now();
        k.store.lock_gate(last, now, 3600).await.unwrap();
        assert!(k.store.lock(last, 1, now + 900, now, 3600).await.unwrap());
        let uc = admin(&k).with_examine_budget(100);
        let mut cursor = None;
        let mut pages = Vec::new();
        loop {
            let q = ListQuery {
                limit: Some(10),
                cursor: cursor.clone(),
                status: Some(Status::Locked),
                ..Default::default()
            };
            let page = uc.list_users(&q).await.unwrap();
            pages.push(page.items.iter().map(|u| u.email.clone()).collect::<Vec<_>>());
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        // 250 users, at most 100 looked at per request: three requests, the first two empty.
        assert_eq!(pages, [vec![], vec![], vec![last.to_owned()]]);
        // A filter that matches answers full pages as before.
        let all = uc.list_users(&ListQuery { limit: Some(50), ..Default::default() }).await.unwrap();
        assert_eq!(all.items.len(), 50);
        assert!(all.next_cursor.is_some());
    }
}
