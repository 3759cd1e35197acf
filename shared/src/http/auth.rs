//! `login`, `token`, `refresh`, `logout`: the token-issuing endpoints.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{Ctx, FormOrJson, Json};
use super::problem::{ApiError, ApiResult, Problem};
use super::ratelimit::{limited, limited_after_reads};
use super::{Endpoint, ErrorStyle, PROBLEM, Uc, Uses, json_response, mounted};
use crate::config::{EndpointLimits, per};
use crate::domain::error::DomainError;
use crate::domain::login::Login;
use crate::domain::mfa::MfaLogin;
use crate::domain::sessions::{Refresh, Sessions};
use crate::domain::views::TokenResponse;
use crate::secret::{Password, Token};

const LOGIN_TABLE: &[&str] = &["GetItem", "PutItem", "UpdateItem", "DeleteItem"];
/// Refresh reads the user and the session with one `BatchGetItem`.
const REFRESH_TABLE: &[&str] = &["GetItem", "PutItem", "UpdateItem", "DeleteItem", "BatchGetItem"];

/// This file's endpoints, for `super::AREAS` (the local server, the README table, the checks).
pub const ENDPOINTS: &[&Endpoint] = &[&LOGIN, &TOKEN, &REFRESH, &LOGOUT];

/// `POST /auth/login`.
pub const LOGIN: Endpoint = Endpoint {
    binary: "login",
    routes: &[("POST", "/auth/login")],
    limits: EndpointLimits { ip: per(30, 60), email: per(10, 60), user: None },
    errors: ErrorStyle::OAuth,
    uses: Uses { table: LOGIN_TABLE, mail: true, keys: true, mfa_key: false },
    use_case: "shared/src/domain/login.rs",
    source: file!(),
    mount: |deps| {
        mounted(async move {
            let r = OpenApiRouter::new()
                .routes(routes!(login))
                .with_state(deps.login(LOGIN.email_gate(&deps).await?).await?);
            Ok(limited_after_reads(r, &LOGIN, deps.rate_limiter().await?))
        })
    },
};

/// `POST /auth/token` (RFC 6749): the password, refresh-token and second-factor grants.
pub const TOKEN: Endpoint = Endpoint {
    binary: "token",
    routes: &[("POST", "/auth/token")],
    limits: EndpointLimits { ip: per(30, 60), email: per(10, 60), user: None },
    errors: ErrorStyle::OAuth,
    uses: Uses { table: REFRESH_TABLE, mail: true, keys: true, mfa_key: true },
    use_case: "shared/src/domain/login.rs, shared/src/domain/sessions.rs, shared/src/domain/mfa.rs",
    source: file!(),
    mount: |deps| {
        mounted(async move {
            deps.keys_and_mfa_key().await?;
            let grants = Arc::new(Grants {
                login: deps.login(TOKEN.email_gate(&deps).await?).await?,
                refresh: deps.refresh().await?,
                mfa: deps.mfa_login().await?,
            });
            let r = OpenApiRouter::new().routes(routes!(token)).with_state(grants);
            Ok(limited_after_reads(r, &TOKEN, deps.rate_limiter().await?))
        })
    },
};

/// `POST /auth/refresh`.
pub const REFRESH: Endpoint = Endpoint {
    binary: "refresh",
    routes: &[("POST", "/auth/refresh")],
    limits: EndpointLimits { ip: per(60, 60), email: None, user: None },
    errors: ErrorStyle::OAuth,
    uses: Uses { table: REFRESH_TABLE, mail: false, keys: true, mfa_key: false },
    use_case: "shared/src/domain/sessions.rs",
    source: file!(),
    mount: |deps| {
        mounted(async move {
            let r = OpenApiRouter::new().routes(routes!(refresh)).with_state(deps.refresh().await?);
            Ok(limited_after_reads(r, &REFRESH, deps.rate_limiter().await?))
        })
    },
};

/// `POST /auth/logout` (RFC 7009 semantics).
pub const LOGOUT: Endpoint = Endpoint {
    binary: "logout",
    routes: &[("POST", "/auth/logout")],
    limits: EndpointLimits { ip: per(60, 60), email: None, user: None },
    errors: ErrorStyle::Plain,
    uses: Uses { table: &["GetItem", "PutItem", "UpdateItem", "DeleteItem"], mail: false, keys: false, mfa_key: false },
    use_case: "shared/src/domain/sessions.rs",
    source: file!(),
    mount: |deps| {
        mounted(async move {
            let r = OpenApiRouter::new().routes(routes!(logout)).with_state(deps.sessions().await?);
            Ok(limited(r, &LOGOUT, deps.rate_limiter().await?))
        })
    },
};

/// The token endpoint's grants.
struct Grants {
    login: Arc<Login>,
    refresh: Arc<Refresh>,
    mfa: Arc<MfaLogin>,
}

/// The grant that answers a login's second-factor challenge.
pub const MFA_OTP_GRANT: &str = "urn:secure-auth:grant-type:mfa-otp";

pub(crate) fn token_result(r: ApiResult<TokenResponse>) -> Response {
    match r {
        Ok(t) => {
            let mut resp = json_response(StatusCode::OK, &t);
            resp.headers_mut().insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
            resp
        }
        Err(e) => e.into_response(),
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct LoginBody {
    #[schema(format = Email, max_length = 254)]
    email: String,
    #[schema(value_type = String, format = Password)]
    password: Password,
}

/// Password login. Unknown email, wrong password, locked or deactivated account: one identical 401.
#[utoipa::path(post, path = "/auth/login", tag = "auth", request_body = LoginBody, responses(
    (status = 200, body = TokenResponse),
    (status = 400, body = Problem, content_type = PROBLEM, description = "validation-failed (`error`: invalid_request)"),
    (status = 401, body = Problem, content_type = PROBLEM, description = "invalid-credentials (`error`: invalid_grant)",
        headers(("WWW-Authenticate" = String, description = "Bearer realm=\"secure-auth\""))),
    (status = 403, body = Problem, content_type = PROBLEM, description = "mfa-required (`error`: mfa_required, with `mfa_token` and `factors`), only after a correct password of a verified account"),
))]
async fn login(State(uc): Uc<Login>, Ctx(ctx): Ctx, body: ApiResult<Json<LoginBody>>) -> Response {
    token_result(
        async {
            let Json(b) = body?;
            Ok(uc.login(&b.email, &b.password, &ctx).await?)
        }
        .await,
    )
}

/// RFC 6749 token request; `scope` and `client_id` are accepted and ignored (public client).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct OAuthTokenBody {
    /// `password` (with `username`, `password`), `refresh_token` (with `refresh_token`) or
    /// `urn:secure-auth:grant-type:mfa-otp` (with `mfa_token` and `otp` or `recovery_code`).
    #[schema(example = "password")]
    grant_type: String,
    #[serde(default)]
    #[schema(format = Email)]
    username: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<String>, format = Password)]
    password: Option<Password>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    refresh_token: Option<Token>,
    /// `urn:secure-auth:grant-type:mfa-otp`: the challenge from the password grant's
    /// `mfa_required` answer, with `otp` or `recovery_code`.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    mfa_token: Option<Token>,
    #[serde(default)]
    #[schema(example = "123456")]
    otp: Option<String>,
    #[serde(default)]
    recovery_code: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    scope: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    client_id: Option<String>,
}

fn bad_request(msg: &str) -> ApiError {
    ApiError::Domain(DomainError::BadRequest(msg.into()))
}

/// RFC 6749 token endpoint: password, refresh_token and second-factor grants, form-encoded or JSON.
#[utoipa::path(post, path = "/auth/token", tag = "auth",
    request_body(content(
        (OAuthTokenBody = "application/x-www-form-urlencoded"),
        (OAuthTokenBody = "application/json"),
    )),
    responses(
        (status = 200, body = TokenResponse),
        (status = 400, body = Problem, content_type = PROBLEM, description = "invalid_request or unsupported_grant_type"),
        (status = 401, body = Problem, content_type = PROBLEM, description = "invalid-credentials / invalid-grant (`error`: invalid_grant)",
            headers(("WWW-Authenticate" = String, description = "Bearer realm=\"secure-auth\""))),
        (status = 403, body = Problem, content_type = PROBLEM, description = "mfa-required (`error`: mfa_required, with `mfa_token` and `factors`)"),
))]
async fn token(State(g): Uc<Grants>, Ctx(ctx): Ctx, body: ApiResult<FormOrJson<OAuthTokenBody>>) -> Response {
    token_result(
        async {
            let FormOrJson(b, _) = body?;
            match b.grant_type.as_str() {
                "password" => match (b.username, b.password) {
                    (Some(u), Some(p)) => Ok(g.login.login(&u, &p, &ctx).await?),
                    _ => Err(bad_request("username and password are required.")),
                },
                "refresh_token" => match b.refresh_token {
                    Some(t) => Ok(g.refresh.refresh(&t, &ctx).await?),
                    None => Err(bad_request("refresh_token is required.")),
                },
                MFA_OTP_GRANT => match b.mfa_token {
                    Some(t) => {
                        let answer = super::mfa::answer(b.otp.as_deref(), b.recovery_code.as_deref(), "otp")?;
                        Ok(g.mfa.verify(&t, answer, &ctx).await?)
                    }
                    None => Err(bad_request("mfa_token is required.")),
                },
                _ => Err(ApiError::Domain(DomainError::UnsupportedGrantType)),
            }
        }
        .await,
    )
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct RefreshBody {
    #[schema(value_type = String)]
    refresh_token: Token,
}

/// Rotate a refresh token. Replay of a rotated token after the grace window revokes the session.
#[utoipa::path(post, path = "/auth/refresh", tag = "auth", request_body = RefreshBody, responses(
    (status = 200, body = TokenResponse),
    (status = 400, body = Problem, content_type = PROBLEM, description = "validation-failed (`error`: invalid_request)"),
    (status = 401, body = Problem, content_type = PROBLEM, description = "invalid-grant (`error`: invalid_grant)",
        headers(("WWW-Authenticate" = String, description = "Bearer realm=\"secure-auth\""))),
))]
async fn refresh(State(uc): Uc<Refresh>, Ctx(ctx): Ctx, body: ApiResult<Json<RefreshBody>>) -> Response {
    token_result(
        async {
            let Json(b) = body?;
            Ok(uc.refresh(&b.refresh_token, &ctx).await?)
        }
        .await,
    )
}

/// Revoke the refresh token's session; 204 also for unknown or malformed tokens (RFC 7009).
#[utoipa::path(post, path = "/auth/logout", tag = "auth", request_body = RefreshBody, responses(
    (status = 204, description = "Revoked, or nothing to revoke"),
    (status = 400, body = Problem, content_type = PROBLEM, description = "validation-failed"),
))]
async fn logout(State(uc): Uc<Sessions>, Ctx(ctx): Ctx, Json(b): Json<RefreshBody>) -> ApiResult<Response> {
    uc.logout(&b.refresh_token, &ctx).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
