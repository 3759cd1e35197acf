//! `unlock`: the account-lock notice's link, spent with the password (`domain::unlock`).

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::token_result;
use super::extract::{Ctx, FormOrJson};
use super::pages::{TokenPasswordBody, form_or_json};
use super::problem::{ApiError, ApiResult, Problem};
use super::ratelimit::limited;
use super::{Endpoint, ErrorStyle, Uc, Uses, mounted};
use crate::config::{EndpointLimits, per};
use crate::domain::error::DomainError;
use crate::domain::unlock::Unlock;
use crate::domain::views::TokenResponse;

/// This file's endpoints, for `super::AREAS` (the local server, the README table, the checks).
pub const ENDPOINTS: &[&Endpoint] = &[&UNLOCK];

/// `POST /auth/unlock`.
pub const UNLOCK: Endpoint = Endpoint {
    binary: "unlock",
    routes: &[("POST", "/auth/unlock")],
    // Per IP only: a per-email limit is exactly what the link must get past.
    limits: EndpointLimits { ip: per(10, 60), email: None, user: None },
    errors: ErrorStyle::OAuth,
    uses: Uses { table: &["GetItem", "PutItem", "UpdateItem", "DeleteItem"], mail: false, keys: true, mfa_key: false },
    use_case: "shared/src/domain/unlock.rs",
    source: file!(),
    mount: |deps| {
        mounted(async move {
            let r = OpenApiRouter::new().routes(routes!(unlock)).with_state(deps.unlock().await?);
            Ok(limited(r, &UNLOCK, deps.rate_limiter().await?))
        })
    },
};

/// Sign in with the unlock link of an account-lock notice and the account's password, despite
/// the lock and the per-email limits (single use; a wrong password spends the link). Answers
/// like a login. The mail page's form posts it form-encoded: the lock is lifted and a page
/// says so (a page keeps no tokens; the owner signs in again from its app).
#[utoipa::path(post, path = "/auth/unlock", tag = "auth",
    request_body(content((TokenPasswordBody = "application/json"), (TokenPasswordBody = "application/x-www-form-urlencoded"))),
    responses(
        (status = 200, content((TokenResponse = "application/json"), (String = "text/html"))),
        (status = 400, description = "invalid-token: unknown, used or expired link",
            content((Problem = "application/problem+json"), (String = "text/html"))),
        (status = 401, description = "invalid-credentials (`error`: invalid_grant): a wrong password, which spent the link",
            content((Problem = "application/problem+json"), (String = "text/html"))),
        (status = 403, body = Problem, content_type = "application/problem+json",
            description = "mfa-required (`error`: mfa_required, with `mfa_token` and `factors`)"),
))]
async fn unlock(State(uc): Uc<Unlock>, Ctx(ctx): Ctx, body: ApiResult<FormOrJson<TokenPasswordBody>>) -> Response {
    let form = body.as_ref().is_ok_and(|b| b.1);
    let r = async {
        let FormOrJson(b, _) = body?;
        Ok(uc.unlock(&b.token, &b.password, !form, &ctx).await?)
    }
    .await;
    if form {
        return form_or_json(
            true,
            r.map(|_| StatusCode::OK.into_response()),
            "Account unlocked",
            "Your account is unlocked. Sign in again in your app.",
        );
    }
    // Asked to sign in, the use case answers tokens or an error, never neither.
    token_result(
        r.and_then(|t| t.ok_or_else(|| ApiError::Domain(DomainError::Internal("unlock without tokens".into())))),
    )
}
