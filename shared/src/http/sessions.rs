//! `sessions`: the caller's live sessions, revoking one, revoking all.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{Bearer, PathId};
use super::problem::{ApiResult, Problem};
use super::{Endpoint, ErrorStyle, PROBLEM, Uc, Uses, authenticated, json_response, mounted};
use crate::config::EndpointLimits;
use crate::domain::sessions::Sessions;
use crate::domain::views::SessionView;

/// This file's endpoints, for `super::AREAS` (the local server, the README table, the checks).
pub const ENDPOINTS: &[&Endpoint] = &[&SESSIONS];

/// `GET /auth/sessions`, `DELETE /auth/sessions/{id}`, `POST /auth/logout-all`.
pub const SESSIONS: Endpoint = Endpoint {
    binary: "sessions",
    routes: &[("GET", "/auth/sessions"), ("DELETE", "/auth/sessions/{id}"), ("POST", "/auth/logout-all")],
    limits: EndpointLimits::NONE,
    errors: ErrorStyle::Plain,
    uses: Uses {
        table: &["GetItem", "UpdateItem", "DeleteItem", "Query", "BatchGetItem"],
        mail: false,
        keys: true,
        mfa_key: false,
    },
    use_case: "shared/src/domain/sessions.rs",
    source: file!(),
    mount: |deps| {
        mounted(async move {
            let r = OpenApiRouter::new()
                .routes(routes!(list_sessions))
                .routes(routes!(revoke_session))
                .routes(routes!(logout_all))
                .with_state(deps.sessions().await?);
            Ok(authenticated(r, deps.authenticator().await?))
        })
    },
};

/// `{"items": [...]}` of sessions.
#[derive(Serialize, ToSchema)]
struct SessionList {
    items: Vec<SessionView>,
}

/// The caller's live sessions.
#[utoipa::path(get, path = "/auth/sessions", tag = "account", security(("bearer" = []), ("oauth2" = [])), responses(
    (status = 200, body = SessionList),
))]
async fn list_sessions(State(uc): Uc<Sessions>, Bearer(caller, _): Bearer) -> ApiResult<Response> {
    let items = uc.list(&caller).await?;
    Ok(json_response(StatusCode::OK, &SessionList { items }))
}

/// Revoke one of the caller's own sessions.
#[utoipa::path(delete, path = "/auth/sessions/{id}", tag = "account", security(("bearer" = []), ("oauth2" = [])),
    params(("id" = String, Path, description = "Session id")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 404, body = Problem, content_type = PROBLEM, description = "not-found: no such session of the caller's"),
))]
async fn revoke_session(
    State(uc): Uc<Sessions>,
    Bearer(caller, ctx): Bearer,
    PathId(id): PathId,
) -> ApiResult<Response> {
    uc.revoke(&caller, &id, &ctx).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Revoke every session of the caller and make every access token of theirs stale.
#[utoipa::path(post, path = "/auth/logout-all", tag = "account", security(("bearer" = []), ("oauth2" = [])), responses(
    (status = 204, description = "All sessions revoked"),
))]
async fn logout_all(State(uc): Uc<Sessions>, Bearer(caller, ctx): Bearer) -> ApiResult<Response> {
    uc.logout_all(&caller, &ctx).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
