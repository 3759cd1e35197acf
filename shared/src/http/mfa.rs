//! `mfa-enroll`, `mfa-manage`, `mfa-verify`, `users-mfa-reset`: the second factor (TOTP and
//! recovery codes).

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::token_result;
use super::extract::{AdminBearer, Bearer, Ctx, Json, PathId};
use super::problem::{ApiError, ApiResult, Problem};
use super::ratelimit::{limited, limited_after_reads};
use super::{Endpoint, ErrorStyle, PROBLEM, Uc, Uses, authenticated, json_response, mounted};
use crate::config::{EndpointLimits, per};
use crate::domain::admin::Actor;
use crate::domain::error::DomainError;
use crate::domain::mfa::{Answer, Enrolment, MfaLogin, MfaReset, MfaSettings, RecoveryCodes};
use crate::domain::views::{TokenResponse, UserView};
use crate::secret::{Password, Token};

/// This file's endpoints, for `super::AREAS` (the local server, the README table, the checks).
pub const ENDPOINTS: &[&Endpoint] = &[&MFA_ENROLL, &MFA_MANAGE, &MFA_VERIFY, &USERS_MFA_RESET];

/// Enrolment and management: the factor item, the user item, the caller's session, lockout.
const SETTINGS_TABLE: &[&str] = &["GetItem", "PutItem", "UpdateItem", "DeleteItem", "Query", "BatchGetItem"];
/// Per IP, and per account (a stolen access token is no unthrottled password oracle).
const SETTINGS_LIMITS: EndpointLimits = EndpointLimits { ip: per(10, 60), email: None, user: per(10, 3600) };

/// `POST /auth/mfa/totp/enroll` and `POST /auth/mfa/totp/confirm`.
pub const MFA_ENROLL: Endpoint = Endpoint {
    binary: "mfa-enroll",
    routes: &[("POST", "/auth/mfa/totp/enroll"), ("POST", "/auth/mfa/totp/confirm")],
    limits: SETTINGS_LIMITS,
    errors: ErrorStyle::Plain,
    uses: Uses { table: SETTINGS_TABLE, mail: true, keys: true, mfa_key: true },
    use_case: "shared/src/domain/mfa.rs",
    source: file!(),
    mount: |deps| {
        mounted(async move {
            deps.keys_and_mfa_key().await?;
            let uc = deps.mfa_settings(MFA_ENROLL.user_gate(&deps).await?).await?;
            let r = OpenApiRouter::new().routes(routes!(enroll)).routes(routes!(confirm)).with_state(uc);
            let r = authenticated(r, deps.authenticator().await?);
            Ok(limited(r, &MFA_ENROLL, deps.rate_limiter().await?))
        })
    },
};

/// `POST /auth/mfa/recovery-codes` and `POST /auth/mfa/totp/disable`.
pub const MFA_MANAGE: Endpoint = Endpoint {
    binary: "mfa-manage",
    routes: &[("POST", "/auth/mfa/recovery-codes"), ("POST", "/auth/mfa/totp/disable")],
    limits: SETTINGS_LIMITS,
    errors: ErrorStyle::Plain,
    uses: Uses { table: SETTINGS_TABLE, mail: true, keys: true, mfa_key: true },
    use_case: "shared/src/domain/mfa.rs",
    source: file!(),
    mount: |deps| {
        mounted(async move {
            deps.keys_and_mfa_key().await?;
            let uc = deps.mfa_settings(MFA_MANAGE.user_gate(&deps).await?).await?;
            let r = OpenApiRouter::new().routes(routes!(recovery_codes)).routes(routes!(disable)).with_state(uc);
            let r = authenticated(r, deps.authenticator().await?);
            Ok(limited(r, &MFA_MANAGE, deps.rate_limiter().await?))
        })
    },
};

/// `POST /auth/mfa/verify`: the login's second step.
pub const MFA_VERIFY: Endpoint = Endpoint {
    binary: "mfa-verify",
    routes: &[("POST", "/auth/mfa/verify")],
    limits: EndpointLimits { ip: per(30, 60), email: None, user: None },
    errors: ErrorStyle::OAuth,
    uses: Uses { table: &["GetItem", "PutItem", "UpdateItem", "DeleteItem"], mail: true, keys: true, mfa_key: true },
    use_case: "shared/src/domain/mfa.rs",
    source: file!(),
    mount: |deps| {
        mounted(async move {
            deps.keys_and_mfa_key().await?;
            let r = OpenApiRouter::new().routes(routes!(verify)).with_state(deps.mfa_login().await?);
            Ok(limited_after_reads(r, &MFA_VERIFY, deps.rate_limiter().await?))
        })
    },
};

/// `POST /users/{id}/mfa/reset`.
pub const USERS_MFA_RESET: Endpoint = Endpoint {
    binary: "users-mfa-reset",
    routes: &[("POST", "/users/{id}/mfa/reset")],
    limits: EndpointLimits::NONE,
    errors: ErrorStyle::Plain,
    uses: Uses {
        table: &["GetItem", "UpdateItem", "DeleteItem", "BatchGetItem"],
        mail: true,
        keys: true,
        mfa_key: false,
    },
    use_case: "shared/src/domain/mfa.rs",
    source: file!(),
    mount: |deps| {
        mounted(async move {
            let r = OpenApiRouter::new().routes(routes!(users_mfa_reset)).with_state(deps.mfa_reset().await?);
            Ok(authenticated(r, deps.authenticator().await?))
        })
    },
};

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct EnrollBody {
    #[schema(value_type = String, format = Password)]
    current_password: Password,
}

/// Start enrolling an authenticator app: a new pending secret (replacing a pending one).
/// The factor is active only once a code from it is confirmed.
#[utoipa::path(post, path = "/auth/mfa/totp/enroll", tag = "mfa", security(("bearer" = []), ("oauth2" = [])),
    request_body = EnrollBody, responses(
        (status = 200, body = Enrolment),
        (status = 400, body = Problem, content_type = PROBLEM, description = "validation-failed (wrong current password)"),
        (status = 409, body = Problem, content_type = PROBLEM, description = "mfa-already-enabled"),
))]
async fn enroll(
    State(uc): Uc<MfaSettings>,
    Bearer(caller, ctx): Bearer,
    Json(b): Json<EnrollBody>,
) -> ApiResult<Response> {
    let e = uc.enroll(&caller, &b.current_password, &ctx).await?;
    Ok(json_response(StatusCode::OK, &e))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ConfirmBody {
    /// The six-digit code the app shows now.
    #[schema(example = "123456", max_length = 32)]
    code: String,
}

/// Confirm the pending factor with a code: it becomes active, the user's other sessions end
/// (refresh the caller's to get a current access token), and ten recovery codes are returned,
/// the only time they are shown.
#[utoipa::path(post, path = "/auth/mfa/totp/confirm", tag = "mfa", security(("bearer" = []), ("oauth2" = [])),
    request_body = ConfirmBody, responses(
        (status = 200, body = RecoveryCodes),
        (status = 400, body = Problem, content_type = PROBLEM, description = "validation-failed (wrong code)"),
        (status = 409, body = Problem, content_type = PROBLEM, description = "mfa-already-enabled, or no pending enrolment"),
))]
async fn confirm(
    State(uc): Uc<MfaSettings>,
    Bearer(caller, ctx): Bearer,
    Json(b): Json<ConfirmBody>,
) -> ApiResult<Response> {
    let codes = uc.confirm(&caller, &b.code, &ctx).await?;
    Ok(json_response(StatusCode::OK, &codes))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ManageBody {
    #[schema(value_type = String, format = Password)]
    current_password: Password,
    /// A current TOTP code, or an unused recovery code.
    #[schema(example = "123456", max_length = 32)]
    code: String,
}

/// Replace every recovery code.
#[utoipa::path(post, path = "/auth/mfa/recovery-codes", tag = "mfa", security(("bearer" = []), ("oauth2" = [])),
    request_body = ManageBody, responses(
        (status = 200, body = RecoveryCodes),
        (status = 400, body = Problem, content_type = PROBLEM, description = "validation-failed (wrong password or code)"),
        (status = 409, body = Problem, content_type = PROBLEM, description = "conflict: no factor enabled"),
))]
async fn recovery_codes(
    State(uc): Uc<MfaSettings>,
    Bearer(caller, ctx): Bearer,
    Json(b): Json<ManageBody>,
) -> ApiResult<Response> {
    let codes = uc.regenerate(&caller, &b.current_password, &b.code, &ctx).await?;
    Ok(json_response(StatusCode::OK, &codes))
}

/// Turn the second factor off (password and a current TOTP or recovery code).
#[utoipa::path(post, path = "/auth/mfa/totp/disable", tag = "mfa", security(("bearer" = []), ("oauth2" = [])),
    request_body = ManageBody, responses(
        (status = 204, description = "Disabled"),
        (status = 400, body = Problem, content_type = PROBLEM, description = "validation-failed (wrong password or code)"),
        (status = 409, body = Problem, content_type = PROBLEM, description = "conflict: no factor enabled"),
))]
async fn disable(
    State(uc): Uc<MfaSettings>,
    Bearer(caller, ctx): Bearer,
    Json(b): Json<ManageBody>,
) -> ApiResult<Response> {
    uc.disable(&caller, &b.current_password, &b.code, &ctx).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct VerifyBody {
    /// From the login's `mfa-required` answer.
    #[schema(value_type = String)]
    mfa_token: Token,
    /// A TOTP code (or send `recovery_code`).
    #[serde(default)]
    #[schema(example = "123456", max_length = 32)]
    code: Option<String>,
    #[serde(default)]
    #[schema(max_length = 32)]
    recovery_code: Option<String>,
}

/// Answer a login's second-factor challenge with a TOTP code or a recovery code.
#[utoipa::path(post, path = "/auth/mfa/verify", tag = "mfa", request_body = VerifyBody, responses(
    (status = 200, body = TokenResponse),
    (status = 400, body = Problem, content_type = PROBLEM, description = "validation-failed (`error`: invalid_request)"),
    (status = 401, body = Problem, content_type = PROBLEM, description = "invalid-mfa-code (`error`: invalid_grant)",
        headers(("WWW-Authenticate" = String, description = "Bearer realm=\"secure-auth\""))),
))]
async fn verify(State(uc): Uc<MfaLogin>, Ctx(ctx): Ctx, body: ApiResult<Json<VerifyBody>>) -> Response {
    token_result(
        async {
            let Json(b) = body?;
            let answer = answer(b.code.as_deref(), b.recovery_code.as_deref(), "code")?;
            Ok(uc.verify(&b.mfa_token, answer, &ctx).await?)
        }
        .await,
    )
}

/// Exactly one of a TOTP code (`totp_field`) and a recovery code.
pub(crate) fn answer<'a>(
    totp: Option<&'a str>,
    recovery: Option<&'a str>,
    totp_field: &str,
) -> Result<Answer<'a>, ApiError> {
    match (totp, recovery) {
        (Some(c), None) => Ok(Answer::Totp(c)),
        (None, Some(c)) => Ok(Answer::RecoveryCode(c)),
        _ => Err(ApiError::Domain(DomainError::BadRequest(format!(
            "Send exactly one of {totp_field} and recovery_code."
        )))),
    }
}

/// Remove a user's second factor and recovery codes (a user who lost both the device and the
/// codes). The user is told by mail; the reset is logged.
#[utoipa::path(post, path = "/users/{id}/mfa/reset", tag = "admin", security(("bearer" = []), ("oauth2" = ["admin"])),
    params(("id" = String, Path, description = "User id")),
    responses(
        (status = 200, body = UserView),
        (status = 403, body = Problem, content_type = PROBLEM, description = "forbidden"),
        (status = 404, body = Problem, content_type = PROBLEM, description = "not-found"),
        (status = 409, body = Problem, content_type = PROBLEM, description = "conflict: changed concurrently"),
))]
async fn users_mfa_reset(
    State(uc): Uc<MfaReset>,
    AdminBearer(caller, ctx): AdminBearer,
    PathId(id): PathId,
) -> ApiResult<Response> {
    let user = uc.reset(Actor::Admin(&caller.user.id), &id, &ctx).await?;
    Ok(json_response(StatusCode::OK, &user))
}
