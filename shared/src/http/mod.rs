//! The single mapping between HTTP and the service. Each endpoint is one handler, mounted by
//! its own Lambda binary and by the local server alike.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::{HeaderName, HeaderValue, StatusCode, header};
use serde::Deserialize;

use crate::error::{AppError, AppResult, OAuthFlavour};
use crate::secret::{Password, Token};
use crate::service::{AuthService, TokenResponse, UserView};

pub mod extract;
pub mod request_id;

use extract::{Bearer, Ctx, FormOrJson, Json, MAX_BODY};

type Svc = Arc<AuthService>;

/// Every endpoint of this issue; each is one Lambda function (binary name in `binary()`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Health,
    Signup,
    VerifyEmail,
    ResendVerification,
    Login,
    Token,
    Refresh,
    Logout,
    Me,
}

impl Endpoint {
    pub const ALL: [Endpoint; 9] = [
        Endpoint::Health,
        Endpoint::Signup,
        Endpoint::VerifyEmail,
        Endpoint::ResendVerification,
        Endpoint::Login,
        Endpoint::Token,
        Endpoint::Refresh,
        Endpoint::Logout,
        Endpoint::Me,
    ];

    /// The function binary that serves it (see `functions/src/bin`).
    pub fn binary(self) -> &'static str {
        match self {
            Endpoint::Health => "health",
            Endpoint::Signup => "signup",
            Endpoint::VerifyEmail => "verify-email",
            Endpoint::ResendVerification => "resend-verification",
            Endpoint::Login => "login",
            Endpoint::Token => "token",
            Endpoint::Refresh => "refresh",
            Endpoint::Logout => "logout",
            Endpoint::Me => "me",
        }
    }

    /// (method, path) pairs it serves.
    pub fn routes(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Endpoint::Health => &[("GET", "/health")],
            Endpoint::Signup => &[("POST", "/auth/signup")],
            Endpoint::VerifyEmail => &[("POST", "/auth/verify-email")],
            Endpoint::ResendVerification => &[("POST", "/auth/resend-verification")],
            Endpoint::Login => &[("POST", "/auth/login")],
            Endpoint::Token => &[("POST", "/auth/token")],
            Endpoint::Refresh => &[("POST", "/auth/refresh")],
            Endpoint::Logout => &[("POST", "/auth/logout")],
            Endpoint::Me => &[("GET", "/auth/me"), ("PATCH", "/auth/me")],
        }
    }

    fn mount(self, r: Router<Svc>) -> Router<Svc> {
        match self {
            Endpoint::Health => r.route("/health", get(health)),
            Endpoint::Signup => r.route("/auth/signup", post(signup)),
            Endpoint::VerifyEmail => r.route("/auth/verify-email", post(verify_email)),
            Endpoint::ResendVerification => r.route("/auth/resend-verification", post(resend_verification)),
            Endpoint::Login => r.route("/auth/login", post(login)),
            Endpoint::Token => r.route("/auth/token", post(token)),
            Endpoint::Refresh => r.route("/auth/refresh", post(refresh)),
            Endpoint::Logout => r.route("/auth/logout", post(logout)),
            Endpoint::Me => r.route("/auth/me", get(me).patch(update_me)),
        }
    }
}

/// The router for `endpoints`, with the common layers and problem+json fallbacks.
pub fn router(svc: Svc, endpoints: &[Endpoint]) -> Router {
    finish(routes(svc, endpoints))
}

/// The bare routes for `endpoints`, to merge with others before `finish`.
pub fn routes(svc: Svc, endpoints: &[Endpoint]) -> Router {
    endpoints.iter().fold(Router::new(), |r, e| e.mount(r)).with_state(svc)
}

/// The health route alone: it needs no store, key or mailer.
pub fn health_router() -> Router {
    finish(Router::new().route("/health", get(health)))
}

/// What a function serves when it could not start (e.g. Secrets Manager unreachable at cold
/// start): 503 on every path, no fallback key.
pub fn unavailable_router() -> Router {
    Router::new()
        .fallback(|| async { AppError::Unavailable("function failed to initialize".into()) })
        .layer(middleware::from_fn(common))
}

/// Adds the 404/405 problems and the common layer to a router.
pub fn finish(r: Router) -> Router {
    r.fallback(|| async { AppError::NotFound })
        .method_not_allowed_fallback(|| async { AppError::MethodNotAllowed })
        .layer(middleware::from_fn(common))
}

const SECURITY_HEADERS: [(&str, &str); 5] = [
    ("strict-transport-security", "max-age=63072000; includeSubDomains"),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("content-security-policy", "default-src 'none'; frame-ancestors 'none'"),
    ("referrer-policy", "no-referrer"),
];

fn pick_request_id(req: &Request) -> String {
    if let Some(v) =
        req.headers().get("x-request-id").and_then(|v| v.to_str().ok()).filter(|v| request_id::well_formed(v))
    {
        return v.to_owned();
    }
    use lambda_http::request::RequestContext;
    let apigw = match req.extensions().get::<RequestContext>() {
        Some(RequestContext::ApiGatewayV2(c)) => c.request_id.clone(),
        Some(RequestContext::ApiGatewayV1(c)) => c.request_id.clone(),
        _ => None,
    };
    apigw.unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

/// Request id, body limit, security headers and `Cache-Control: no-store` on every response.
async fn common(req: Request, next: Next) -> Response {
    let id = pick_request_id(&req);
    let too_big = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .is_some_and(|n| n > MAX_BODY);
    let mut resp = request_id::scope(id.clone(), async {
        if too_big { AppError::PayloadTooLarge.into_response() } else { next.run(req).await }
    })
    .await;
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&id) {
        h.insert(HeaderName::from_static("x-request-id"), v);
    }
    for (k, v) in SECURITY_HEADERS {
        if !h.contains_key(k) {
            h.insert(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
    }
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}

fn json_response(status: StatusCode, body: &impl serde::Serialize) -> Response {
    (status, axum::Json(body)).into_response()
}

fn token_result(r: AppResult<TokenResponse>) -> Response {
    match r {
        Ok(t) => {
            let mut resp = json_response(StatusCode::OK, &t);
            resp.headers_mut().insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
            resp
        }
        Err(e) => e.to_response(OAuthFlavour::TokenEndpoint),
    }
}

async fn health() -> Response {
    json_response(StatusCode::OK, &serde_json::json!({"status": "ok"}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignupBody {
    email: String,
    password: Password,
    #[serde(default)]
    name: Option<String>,
}

async fn signup(State(svc): State<Svc>, Ctx(ctx): Ctx, Json(b): Json<SignupBody>) -> AppResult<Response> {
    svc.signup(&b.email, &b.password, b.name.as_deref(), &ctx).await?;
    Ok(json_response(StatusCode::ACCEPTED, &serde_json::json!({"status": "verification_pending"})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenBody {
    token: Token,
}

async fn verify_email(State(svc): State<Svc>, Ctx(ctx): Ctx, Json(b): Json<TokenBody>) -> AppResult<Response> {
    svc.verify_email(&b.token, &ctx).await?;
    Ok(json_response(StatusCode::OK, &serde_json::json!({"status": "verified"})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EmailBody {
    email: String,
}

async fn resend_verification(State(svc): State<Svc>, Ctx(ctx): Ctx, Json(b): Json<EmailBody>) -> AppResult<Response> {
    svc.resend_verification(&b.email, &ctx).await?;
    Ok(json_response(StatusCode::ACCEPTED, &serde_json::json!({"status": "accepted"})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginBody {
    email: String,
    password: Password,
}

async fn login(State(svc): State<Svc>, Ctx(ctx): Ctx, body: Result<Json<LoginBody>, AppError>) -> Response {
    token_result(
        async {
            let Json(b) = body?;
            svc.login(&b.email, &b.password, &ctx).await
        }
        .await,
    )
}

/// RFC 6749 token request; `scope` and `client_id` are accepted and ignored (public client).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OAuthTokenBody {
    grant_type: String,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<Password>,
    #[serde(default)]
    refresh_token: Option<Token>,
    #[serde(default)]
    #[allow(dead_code)]
    scope: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    client_id: Option<String>,
}

async fn token(State(svc): State<Svc>, Ctx(ctx): Ctx, body: Result<FormOrJson<OAuthTokenBody>, AppError>) -> Response {
    token_result(
        async {
            let FormOrJson(b) = body?;
            match b.grant_type.as_str() {
                "password" => match (b.username, b.password) {
                    (Some(u), Some(p)) => svc.login(&u, &p, &ctx).await,
                    _ => Err(AppError::BadRequest("username and password are required.".into())),
                },
                "refresh_token" => match b.refresh_token {
                    Some(t) => svc.refresh(&t, &ctx).await,
                    None => Err(AppError::BadRequest("refresh_token is required.".into())),
                },
                _ => Err(AppError::UnsupportedGrantType),
            }
        }
        .await,
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RefreshBody {
    refresh_token: Token,
}

async fn refresh(State(svc): State<Svc>, Ctx(ctx): Ctx, body: Result<Json<RefreshBody>, AppError>) -> Response {
    token_result(
        async {
            let Json(b) = body?;
            svc.refresh(&b.refresh_token, &ctx).await
        }
        .await,
    )
}

async fn logout(State(svc): State<Svc>, Ctx(ctx): Ctx, Json(b): Json<RefreshBody>) -> AppResult<Response> {
    svc.logout(&b.refresh_token, &ctx).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn me(Bearer(caller, _): Bearer) -> Response {
    json_response(StatusCode::OK, &UserView::from(&caller.user))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateMeBody {
    /// Absent: unchanged; `null` or blank: cleared.
    #[serde(default, deserialize_with = "present")]
    name: Option<Option<String>>,
}

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

async fn update_me(
    State(svc): State<Svc>,
    Bearer(caller, _): Bearer,
    Json(b): Json<UpdateMeBody>,
) -> AppResult<Response> {
    let view = match b.name {
        Some(name) => svc.update_me(&caller, name.as_deref()).await?,
        None => UserView::from(&caller.user),
    };
    Ok(json_response(StatusCode::OK, &view))
}
