//! `users-*`: user management for administrators (admin scope of an active superuser).

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::account::present;
use super::extract::{AdminBearer, Json, PathId, Query};
use super::problem::{ApiResult, Problem};
use super::ratelimit::limited;
use super::{Endpoint, ErrorStyle, PROBLEM, Uc, Uses, authenticated, json_response, mounted};
use crate::config::{EndpointLimits, per};
use crate::domain::admin::{Actor, Admin, ListQuery, NewUser, Status, UserPage, UserUpdate};
use crate::domain::views::UserView;
use crate::secret::Password;

/// This file's endpoints, for `super::AREAS` (the local server, the README table, the checks).
pub const ENDPOINTS: &[&Endpoint] = &[
    &USERS_LIST,
    &USERS_CREATE,
    &USERS_GET,
    &USERS_UPDATE,
    &USERS_ACTIVATE,
    &USERS_DEACTIVATE,
    &USERS_UNLOCK,
    &USERS_REVOKE_SESSIONS,
    &USERS_DELETE,
];

/// The limits of the admin endpoints that hash a password: per IP and per administrator.
const HASHING: EndpointLimits = EndpointLimits { ip: per(30, 60), email: None, user: per(30, 60) };

/// One admin endpoint: `$binary` serving `$handler` at ($method, $path). The form with limits
/// is for the endpoints that take a password (limited like other hashing endpoints, and
/// zxcvbn's dictionaries built at mount, in Lambda during init).
macro_rules! admin_endpoint {
    ($name:ident, $binary:literal, $method:literal, $path:literal, $table:expr, $handler:ident) => {
        admin_endpoint!(@ $name, $binary, $method, $path, $table, $handler, false, admin_quiet, EndpointLimits::NONE, {});
    };
    ($name:ident, $binary:literal, $method:literal, $path:literal, $table:expr, $handler:ident, NOTICE) => {
        admin_endpoint!(@ $name, $binary, $method, $path, $table, $handler, true, admin, EndpointLimits::NONE, {});
    };
    ($name:ident, $binary:literal, $method:literal, $path:literal, $table:expr, $handler:ident, $mail:expr, $build:ident, $limits:expr) => {
        admin_endpoint!(@ $name, $binary, $method, $path, $table, $handler, $mail, $build, $limits, {
            crate::domain::warm_password_policy();
        });
    };
    (@ $name:ident, $binary:literal, $method:literal, $path:literal, $table:expr, $handler:ident, $mail:expr, $build:ident, $limits:expr, $warm:block) => {
        #[doc = concat!("`", $method, " ", $path, "`.")]
        pub const $name: Endpoint = Endpoint {
            binary: $binary,
            routes: &[($method, $path)],
            limits: $limits,
            errors: ErrorStyle::Plain,
            // `mail`: the endpoint changes an account, and its owner is told (`domain::admin`).
            uses: Uses { table: $table, mail: $mail, keys: true, mfa_key: false },
            use_case: "shared/src/domain/admin.rs",
            source: file!(),
            mount: |deps| {
                mounted(async move {
                    $warm
                    // Only the endpoints that mail build the mailer, so the others link no SQS.
                    let admin = deps.$build($name.user_gate(&deps).await?).await?;
                    let r = OpenApiRouter::new().routes(routes!($handler)).with_state(admin);
                    let r = authenticated(r, deps.authenticator().await?);
                    if $name.limits.is_none() { Ok(r) } else { Ok(limited(r, &$name, deps.rate_limiter().await?)) }
                })
            },
        };
    };
}

admin_endpoint!(USERS_LIST, "users-list", "GET", "/users", &["GetItem", "Query", "BatchGetItem"], users_list);
admin_endpoint!(
    USERS_CREATE,
    "users-create",
    "POST",
    "/users",
    &["GetItem", "PutItem", "UpdateItem", "BatchGetItem"],
    users_create,
    false,
    admin_quiet,
    HASHING
);
admin_endpoint!(USERS_GET, "users-get", "GET", "/users/{id}", &["GetItem", "BatchGetItem"], users_get);
admin_endpoint!(
    USERS_UPDATE,
    "users-update",
    "PUT",
    "/users/{id}",
    &["GetItem", "PutItem", "UpdateItem", "DeleteItem", "Query", "BatchGetItem"],
    users_update,
    true,
    admin,
    HASHING
);
admin_endpoint!(
    USERS_ACTIVATE,
    "users-activate",
    "POST",
    "/users/{id}/activate",
    &["GetItem", "UpdateItem", "BatchGetItem"],
    users_activate,
    NOTICE
);
admin_endpoint!(
    USERS_DEACTIVATE,
    "users-deactivate",
    "POST",
    "/users/{id}/deactivate",
    &["GetItem", "UpdateItem", "DeleteItem", "Query", "BatchGetItem"],
    users_deactivate,
    NOTICE
);
admin_endpoint!(
    USERS_UNLOCK,
    "users-unlock",
    "POST",
    "/users/{id}/unlock",
    &["GetItem", "DeleteItem", "Query", "BatchGetItem"],
    users_unlock
);
admin_endpoint!(
    USERS_REVOKE_SESSIONS,
    "users-revoke-sessions",
    "POST",
    "/users/{id}/revoke-sessions",
    &["GetItem", "UpdateItem", "DeleteItem", "Query", "BatchGetItem"],
    users_revoke_sessions,
    NOTICE
);
admin_endpoint!(
    USERS_DELETE,
    "users-delete",
    "DELETE",
    "/users/{id}",
    &["GetItem", "UpdateItem", "DeleteItem", "Query", "BatchGetItem"],
    users_delete,
    NOTICE
);

/// `GET /users` query parameters.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct UsersQuery {
    /// 1 to 100, default 50.
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
    /// From the previous page's `next_cursor`.
    cursor: Option<String>,
    email_prefix: Option<String>,
    /// `active`, `inactive`, `unverified` or `locked`.
    status: Option<String>,
}

/// List users, ordered by email, with cursor pagination (a query on the email index).
#[utoipa::path(get, path = "/users", tag = "admin", security(("bearer" = []), ("oauth2" = ["admin"])), params(UsersQuery),
    responses(
        (status = 200, body = UserPage),
        (status = 400, body = Problem, content_type = PROBLEM, description = "validation-failed or a tampered or foreign cursor"),
        (status = 403, body = Problem, content_type = PROBLEM, description = "forbidden: not an administrator"),
))]
async fn users_list(State(uc): Uc<Admin>, _admin: AdminBearer, Query(q): Query<UsersQuery>) -> ApiResult<Response> {
    let status = q.status.as_deref().map(Status::parse).transpose()?;
    let page =
        uc.list_users(&ListQuery { limit: q.limit, cursor: q.cursor, email_prefix: q.email_prefix, status }).await?;
    Ok(json_response(StatusCode::OK, &page))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateUserBody {
    #[schema(format = Email, max_length = 254)]
    email: String,
    #[schema(value_type = String, format = Password, min_length = 12, max_length = 128)]
    password: Password,
    #[serde(default)]
    #[schema(max_length = 100)]
    name: Option<String>,
    #[serde(default)]
    is_superuser: bool,
    #[serde(default)]
    is_verified: bool,
}

/// Create a user.
#[utoipa::path(post, path = "/users", tag = "admin", security(("bearer" = []), ("oauth2" = ["admin"])), request_body = CreateUserBody,
    responses(
        (status = 201, body = UserView),
        (status = 400, body = Problem, content_type = PROBLEM, description = "validation-failed"),
        (status = 403, body = Problem, content_type = PROBLEM, description = "forbidden"),
        (status = 409, body = Problem, content_type = PROBLEM, description = "conflict: the email is taken"),
))]
async fn users_create(
    State(uc): Uc<Admin>,
    AdminBearer(caller, ctx): AdminBearer,
    Json(b): Json<CreateUserBody>,
) -> ApiResult<Response> {
    let new = NewUser {
        email: b.email,
        password: b.password,
        name: b.name,
        is_superuser: b.is_superuser,
        is_verified: b.is_verified,
    };
    let user = uc.create_user(Actor::Admin(&caller.user.id), new, &ctx).await?;
    Ok(json_response(StatusCode::CREATED, &UserView::from(&user)))
}

/// One user.
#[utoipa::path(get, path = "/users/{id}", tag = "admin", security(("bearer" = []), ("oauth2" = ["admin"])),
    params(("id" = String, Path, description = "User id")),
    responses(
        (status = 200, body = UserView),
        (status = 403, body = Problem, content_type = PROBLEM, description = "forbidden"),
        (status = 404, body = Problem, content_type = PROBLEM, description = "not-found"),
))]
async fn users_get(State(uc): Uc<Admin>, _admin: AdminBearer, PathId(id): PathId) -> ApiResult<Response> {
    let user = uc.get_user(&id).await?;
    Ok(json_response(StatusCode::OK, &UserView::from(&user)))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct UpdateUserBody {
    #[serde(default)]
    #[schema(format = Email, max_length = 254)]
    email: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, max_length = 100)]
    name: Option<Option<String>>,
    #[serde(default)]
    is_superuser: Option<bool>,
    #[serde(default)]
    is_verified: Option<bool>,
    #[serde(default)]
    #[schema(value_type = Option<String>, format = Password, min_length = 12, max_length = 128)]
    password: Option<Password>,
}

/// Change a user. Role, email and password changes revoke its sessions and bump its session version.
#[utoipa::path(put, path = "/users/{id}", tag = "admin", security(("bearer" = []), ("oauth2" = ["admin"])),
    params(("id" = String, Path, description = "User id")), request_body = UpdateUserBody,
    responses(
        (status = 200, body = UserView),
        (status = 400, body = Problem, content_type = PROBLEM, description = "validation-failed"),
        (status = 403, body = Problem, content_type = PROBLEM, description = "forbidden"),
        (status = 404, body = Problem, content_type = PROBLEM, description = "not-found"),
        (status = 409, body = Problem, content_type = PROBLEM, description = "conflict: email taken, self-demotion, last admin, concurrent change"),
))]
async fn users_update(
    State(uc): Uc<Admin>,
    AdminBearer(caller, ctx): AdminBearer,
    PathId(id): PathId,
    Json(b): Json<UpdateUserBody>,
) -> ApiResult<Response> {
    let up = UserUpdate {
        email: b.email,
        name: b.name,
        is_superuser: b.is_superuser,
        is_verified: b.is_verified,
        password: b.password,
    };
    let user = uc.update_user(Actor::Admin(&caller.user.id), &id, up, &ctx).await?;
    Ok(json_response(StatusCode::OK, &UserView::from(&user)))
}

/// Activate a user.
#[utoipa::path(post, path = "/users/{id}/activate", tag = "admin", security(("bearer" = []), ("oauth2" = ["admin"])),
    params(("id" = String, Path, description = "User id")),
    responses(
        (status = 200, body = UserView),
        (status = 403, body = Problem, content_type = PROBLEM, description = "forbidden"),
        (status = 404, body = Problem, content_type = PROBLEM, description = "not-found"),
        (status = 409, body = Problem, content_type = PROBLEM, description = "conflict"),
))]
async fn users_activate(
    State(uc): Uc<Admin>,
    AdminBearer(caller, ctx): AdminBearer,
    PathId(id): PathId,
) -> ApiResult<Response> {
    let user = uc.set_active(Actor::Admin(&caller.user.id), &id, true, &ctx).await?;
    Ok(json_response(StatusCode::OK, &UserView::from(&user)))
}

/// Deactivate a user: its sessions are revoked and its tokens stop working.
#[utoipa::path(post, path = "/users/{id}/deactivate", tag = "admin", security(("bearer" = []), ("oauth2" = ["admin"])),
    params(("id" = String, Path, description = "User id")),
    responses(
        (status = 200, body = UserView),
        (status = 403, body = Problem, content_type = PROBLEM, description = "forbidden"),
        (status = 404, body = Problem, content_type = PROBLEM, description = "not-found"),
        (status = 409, body = Problem, content_type = PROBLEM, description = "conflict: itself, or the last admin"),
))]
async fn users_deactivate(
    State(uc): Uc<Admin>,
    AdminBearer(caller, ctx): AdminBearer,
    PathId(id): PathId,
) -> ApiResult<Response> {
    let user = uc.set_active(Actor::Admin(&caller.user.id), &id, false, &ctx).await?;
    Ok(json_response(StatusCode::OK, &UserView::from(&user)))
}

/// Clear a user's lockout state.
#[utoipa::path(post, path = "/users/{id}/unlock", tag = "admin", security(("bearer" = []), ("oauth2" = ["admin"])),
    params(("id" = String, Path, description = "User id")),
    responses(
        (status = 200, body = UserView),
        (status = 403, body = Problem, content_type = PROBLEM, description = "forbidden"),
        (status = 404, body = Problem, content_type = PROBLEM, description = "not-found"),
))]
async fn users_unlock(
    State(uc): Uc<Admin>,
    AdminBearer(caller, ctx): AdminBearer,
    PathId(id): PathId,
) -> ApiResult<Response> {
    let user = uc.unlock(Actor::Admin(&caller.user.id), &id, &ctx).await?;
    Ok(json_response(StatusCode::OK, &UserView::from(&user)))
}

/// Forced logout of a user.
#[utoipa::path(post, path = "/users/{id}/revoke-sessions", tag = "admin", security(("bearer" = []), ("oauth2" = ["admin"])),
    params(("id" = String, Path, description = "User id")),
    responses(
        (status = 204, description = "Every session revoked"),
        (status = 403, body = Problem, content_type = PROBLEM, description = "forbidden"),
        (status = 404, body = Problem, content_type = PROBLEM, description = "not-found"),
))]
async fn users_revoke_sessions(
    State(uc): Uc<Admin>,
    AdminBearer(caller, ctx): AdminBearer,
    PathId(id): PathId,
) -> ApiResult<Response> {
    uc.revoke_sessions(Actor::Admin(&caller.user.id), &id, &ctx).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Delete a user, its email claim, sessions and pending tokens.
#[utoipa::path(delete, path = "/users/{id}", tag = "admin", security(("bearer" = []), ("oauth2" = ["admin"])),
    params(("id" = String, Path, description = "User id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, body = Problem, content_type = PROBLEM, description = "forbidden"),
        (status = 404, body = Problem, content_type = PROBLEM, description = "not-found"),
        (status = 409, body = Problem, content_type = PROBLEM, description = "conflict: itself, or the last admin"),
))]
async fn users_delete(
    State(uc): Uc<Admin>,
    AdminBearer(caller, ctx): AdminBearer,
    PathId(id): PathId,
) -> ApiResult<Response> {
    uc.delete_user(Actor::Admin(&caller.user.id), &id, &ctx).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
