//! `me`, `change-password`, `change-email`, `confirm-email-change`: the signed-in user's own
//! account.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{Bearer, Ctx, FormOrJson, Json};
use super::pages::{TokenBody, form_or_json};
use super::problem::{ApiResult, Problem};
use super::ratelimit::limited;
use super::{Endpoint, ErrorStyle, PROBLEM, StatusBody, Uc, Uses, authenticated, json_response, mounted};
use crate::config::{EndpointLimits, per};
use crate::domain::account::{Account, EmailConfirmation, Profile};
use crate::domain::mfa::StepUpProof;
use crate::domain::views::UserView;
use crate::secret::Password;

/// This file's endpoints, for `super::AREAS` (the local server, the README table, the checks).
pub const ENDPOINTS: &[&Endpoint] = &[&ME, &CHANGE_PASSWORD, &CHANGE_EMAIL, &CONFIRM_EMAIL_CHANGE];

/// `GET` and `PATCH /auth/me`.
pub const ME: Endpoint = Endpoint {
    binary: "me",
    routes: &[("GET", "/auth/me"), ("PATCH", "/auth/me")],
    limits: EndpointLimits::NONE,
    errors: ErrorStyle::Plain,
    uses: Uses { table: &["GetItem", "UpdateItem", "BatchGetItem"], mail: false, keys: true, mfa_key: false },
    use_case: "shared/src/domain/account.rs",
    source: file!(),
    mount: |deps| {
        mounted(async move {
            let r = OpenApiRouter::new().routes(routes!(me, update_me)).with_state(deps.profile().await?);
            Ok(authenticated(r, deps.authenticator().await?))
        })
    },
};

/// `POST /auth/change-password`.
pub const CHANGE_PASSWORD: Endpoint = Endpoint {
    binary: "change-password",
    routes: &[("POST", "/auth/change-password")],
    limits: EndpointLimits { ip: per(10, 60), email: None, user: per(5, 3600) },
    errors: ErrorStyle::Plain,
    uses: Uses {
        table: &["GetItem", "PutItem", "UpdateItem", "DeleteItem", "Query", "BatchGetItem"],
        mail: true,
        keys: true,
        mfa_key: true,
    },
    use_case: "shared/src/domain/account.rs",
    source: file!(),
    mount: |deps| {
        mounted(async move {
            crate::domain::warm_password_policy();
            let uc = deps.account(CHANGE_PASSWORD.user_gate(&deps).await?).await?;
            let r = authenticated(
                OpenApiRouter::new().routes(routes!(change_password)).with_state(uc),
                deps.authenticator().await?,
            );
            Ok(limited(r, &CHANGE_PASSWORD, deps.rate_limiter().await?))
        })
    },
};

/// `POST /auth/change-email`.
pub const CHANGE_EMAIL: Endpoint = Endpoint {
    binary: "change-email",
    routes: &[("POST", "/auth/change-email")],
    limits: EndpointLimits { ip: per(10, 60), email: None, user: per(5, 3600) },
    errors: ErrorStyle::Plain,
    uses: Uses {
        table: &["GetItem", "PutItem", "UpdateItem", "DeleteItem", "BatchGetItem"],
        mail: true,
        keys: true,
        mfa_key: true,
    },
    use_case: "shared/src/domain/account.rs",
    source: file!(),
    mount: |deps| {
        mounted(async move {
            let uc = deps.account(CHANGE_EMAIL.user_gate(&deps).await?).await?;
            let r = authenticated(
                OpenApiRouter::new().routes(routes!(change_email)).with_state(uc),
                deps.authenticator().await?,
            );
            Ok(limited(r, &CHANGE_EMAIL, deps.rate_limiter().await?))
        })
    },
};

/// `POST /auth/confirm-email-change`.
pub const CONFIRM_EMAIL_CHANGE: Endpoint = Endpoint {
    binary: "confirm-email-change",
    routes: &[("POST", "/auth/confirm-email-change")],
    limits: EndpointLimits { ip: per(20, 60), email: None, user: per(5, 3600) },
    errors: ErrorStyle::Plain,
    uses: Uses { table: &["GetItem", "PutItem", "UpdateItem", "DeleteItem"], mail: true, keys: false, mfa_key: false },
    use_case: "shared/src/domain/account.rs",
    source: file!(),
    mount: |deps| {
        mounted(async move {
            let r = OpenApiRouter::new()
                .routes(routes!(confirm_email_change))
                .with_state(deps.email_confirmation(CONFIRM_EMAIL_CHANGE.user_gate(&deps).await?).await?);
            Ok(limited(r, &CONFIRM_EMAIL_CHANGE, deps.rate_limiter().await?))
        })
    },
};

/// The caller's profile.
#[utoipa::path(get, path = "/auth/me", tag = "account", security(("bearer" = []), ("oauth2" = [])), responses(
    (status = 200, body = UserView),
))]
async fn me(Bearer(caller, _): Bearer) -> Response {
    json_response(StatusCode::OK, &UserView::from(&caller.user))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct UpdateMeBody {
    /// Absent: unchanged; `null` or blank: cleared.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, max_length = 100)]
    name: Option<Option<String>>,
}

/// Distinguishes an absent field (`None`) from an explicit `null` (`Some(None)`).
pub(crate) fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// Change the caller's display name (the only field a user may set here).
#[utoipa::path(patch, path = "/auth/me", tag = "account", security(("bearer" = []), ("oauth2" = [])), request_body = UpdateMeBody, responses(
    (status = 200, body = UserView),
    (status = 400, body = Problem, content_type = PROBLEM, description = "validation-failed"),
))]
async fn update_me(
    State(uc): Uc<Profile>,
    Bearer(caller, _): Bearer,
    Json(b): Json<UpdateMeBody>,
) -> ApiResult<Response> {
    let view = match b.name {
        Some(name) => uc.update_name(&caller, name.as_deref()).await?,
        None => UserView::from(&caller.user),
    };
    Ok(json_response(StatusCode::OK, &view))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ChangePasswordBody {
    #[schema(value_type = String, format = Password)]
    current_password: Password,
    #[schema(value_type = String, format = Password, min_length = 12, max_length = 128)]
    new_password: Password,
    /// Required when the account has an active second factor (step-up): a current
    /// authenticator code or an unused recovery code.
    #[serde(default)]
    #[schema(max_length = 32, example = "123456")]
    code: Option<String>,
}

/// The step-up proof a body carries, if any.
fn step_up(code: &Option<String>) -> Option<StepUpProof<'_>> {
    code.as_deref().map(StepUpProof::Code)
}

/// Change the password. Every other session is revoked and older access tokens stop working;
/// the caller's refresh token stays valid (refresh to get a current access token).
#[utoipa::path(post, path = "/auth/change-password", tag = "account", security(("bearer" = []), ("oauth2" = [])),
    request_body = ChangePasswordBody, responses(
        (status = 204, description = "Changed"),
        (status = 400, body = Problem, content_type = PROBLEM, description = "validation-failed (wrong current password or policy)"),
        (status = 403, body = Problem, content_type = PROBLEM, description = "mfa-required (the account has a second factor and no `code` was sent) or invalid-mfa-code; nothing changed"),
        (status = 409, body = Problem, content_type = PROBLEM, description = "conflict: changed concurrently"),
))]
async fn change_password(
    State(uc): Uc<Account>,
    Bearer(caller, ctx): Bearer,
    Json(b): Json<ChangePasswordBody>,
) -> ApiResult<Response> {
    uc.change_password(&caller, &b.current_password, &b.new_password, step_up(&b.code), &ctx).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ChangeEmailBody {
    #[schema(value_type = String, format = Password)]
    current_password: Password,
    #[schema(format = Email, max_length = 254)]
    new_email: String,
    /// Required when the account has an active second factor (step-up).
    #[serde(default)]
    #[schema(max_length = 32, example = "123456")]
    code: Option<String>,
}

/// Ask to change the sign-in address: a link goes to the new address, a notice to the old one.
#[utoipa::path(post, path = "/auth/change-email", tag = "account", security(("bearer" = []), ("oauth2" = [])),
    request_body = ChangeEmailBody, responses(
        (status = 202, body = StatusBody, example = json!({"status": "confirmation_sent"})),
        (status = 400, body = Problem, content_type = PROBLEM, description = "validation-failed (wrong current password, bad address)"),
        (status = 403, body = Problem, content_type = PROBLEM, description = "mfa-required (the account has a second factor and no `code` was sent) or invalid-mfa-code; nothing changed"),
))]
async fn change_email(
    State(uc): Uc<Account>,
    Bearer(caller, ctx): Bearer,
    Json(b): Json<ChangeEmailBody>,
) -> ApiResult<Response> {
    uc.change_email(&caller, &b.current_password, &b.new_email, step_up(&b.code), &ctx).await?;
    Ok(json_response(StatusCode::ACCEPTED, &serde_json::json!({"status": "confirmation_sent"})))
}

/// Confirm an email change with the token from the mail to the new address (single use).
#[utoipa::path(post, path = "/auth/confirm-email-change", tag = "auth",
    request_body(content((TokenBody = "application/json"), (TokenBody = "application/x-www-form-urlencoded"))),
    responses(
        (status = 200, content((UserView = "application/json"), (String = "text/html"))),
        (status = 400, description = "invalid-token", content((Problem = "application/problem+json"), (String = "text/html"))),
        (status = 409, description = "conflict: the address was taken meanwhile",
            content((Problem = "application/problem+json"), (String = "text/html"))),
))]
async fn confirm_email_change(
    State(uc): Uc<EmailConfirmation>,
    Ctx(ctx): Ctx,
    body: ApiResult<FormOrJson<TokenBody>>,
) -> Response {
    let form = body.as_ref().is_ok_and(|b| b.1);
    let r = async {
        let FormOrJson(b, _) = body?;
        let user = uc.confirm_email_change(&b.token, &ctx).await?;
        Ok(json_response(StatusCode::OK, &user))
    }
    .await;
    form_or_json(form, r, "Email address changed", "Your sign-in address was changed. Sign in with the new address.")
}
