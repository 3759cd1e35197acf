//! `forgot-password`, `reset-password`.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{Ctx, FormOrJson, Json};
use super::pages::form_or_json;
use super::problem::{ApiResult, Problem};
use super::ratelimit::limited;
use super::signup::EmailBody;
use super::{Endpoint, ErrorStyle, PROBLEM, StatusBody, Uc, Uses, json_response, mounted};
use crate::config::{EndpointLimits, per};
use crate::domain::recovery::Recovery;
use crate::secret::{Password, Token};

/// This file's endpoints, for `super::AREAS` (the local server, the README table, the checks).
pub const ENDPOINTS: &[&Endpoint] = &[&FORGOT_PASSWORD, &RESET_PASSWORD];

/// `POST /auth/forgot-password`.
pub const FORGOT_PASSWORD: Endpoint = Endpoint {
    binary: "forgot-password",
    routes: &[("POST", "/auth/forgot-password")],
    limits: EndpointLimits { ip: per(10, 60), email: per(3, 3600), user: None },
    errors: ErrorStyle::Plain,
    uses: Uses { table: &["GetItem", "PutItem", "UpdateItem"], mail: true, keys: false, mfa_key: false },
    use_case: "shared/src/domain/recovery.rs",
    source: file!(),
    mount: |deps| {
        mounted(async move {
            let r = OpenApiRouter::new()
                .routes(routes!(forgot_password))
                .with_state(deps.recovery(FORGOT_PASSWORD.email_gate(&deps).await?, None).await?);
            Ok(limited(r, &FORGOT_PASSWORD, deps.rate_limiter().await?))
        })
    },
};

/// `POST /auth/reset-password`.
pub const RESET_PASSWORD: Endpoint = Endpoint {
    binary: "reset-password",
    routes: &[("POST", "/auth/reset-password")],
    limits: EndpointLimits { ip: per(10, 60), email: None, user: per(5, 3600) },
    errors: ErrorStyle::Plain,
    uses: Uses {
        table: &["GetItem", "PutItem", "UpdateItem", "DeleteItem", "Query"],
        mail: true,
        keys: false,
        mfa_key: false,
    },
    use_case: "shared/src/domain/recovery.rs",
    source: file!(),
    mount: |deps| {
        mounted(async move {
            crate::domain::warm_password_policy();
            let r = OpenApiRouter::new()
                .routes(routes!(reset_password))
                .with_state(deps.recovery(None, RESET_PASSWORD.user_gate(&deps).await?).await?);
            Ok(limited(r, &RESET_PASSWORD, deps.rate_limiter().await?))
        })
    },
};

/// Ask for a password-reset link; the same 202 whether or not the account exists.
#[utoipa::path(post, path = "/auth/forgot-password", tag = "auth", request_body = EmailBody, responses(
    (status = 202, body = StatusBody, example = json!({"status": "accepted"})),
    (status = 400, body = Problem, content_type = PROBLEM, description = "validation-failed"),
))]
async fn forgot_password(State(uc): Uc<Recovery>, Ctx(ctx): Ctx, Json(b): Json<EmailBody>) -> ApiResult<Response> {
    uc.forgot_password(&b.email, &ctx).await?;
    Ok(json_response(StatusCode::ACCEPTED, &serde_json::json!({"status": "accepted"})))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ResetBody {
    #[schema(value_type = String)]
    token: Token,
    #[schema(value_type = String, format = Password, min_length = 12, max_length = 128)]
    new_password: Password,
}

/// Set a new password with the token from the reset mail (single use): every session is
/// revoked. The mail page's form posts it form-encoded and gets an HTML page back.
#[utoipa::path(post, path = "/auth/reset-password", tag = "auth",
    request_body(content((ResetBody = "application/json"), (ResetBody = "application/x-www-form-urlencoded"))),
    responses(
        (status = 204, description = "Password changed (JSON clients)"),
        (status = 200, description = "Result page (form posts)", content_type = "text/html", body = String),
        (status = 400, description = "invalid-token, or validation-failed for the new password",
            content((Problem = "application/problem+json"), (String = "text/html"))),
))]
async fn reset_password(State(uc): Uc<Recovery>, Ctx(ctx): Ctx, body: ApiResult<FormOrJson<ResetBody>>) -> Response {
    let form = body.as_ref().is_ok_and(|b| b.1);
    let r = async {
        let FormOrJson(b, _) = body?;
        uc.reset_password(&b.token, &b.new_password, &ctx).await?;
        Ok(StatusCode::NO_CONTENT.into_response())
    }
    .await;
    form_or_json(
        form,
        r,
        "Password changed",
        "Your password was changed and every session signed out. You can sign in now.",
    )
}
