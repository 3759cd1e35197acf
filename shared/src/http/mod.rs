//! The single mapping between HTTP and the service. Each endpoint is one handler, mounted by
//! its own Lambda binary and by the local server alike.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{HeaderName, HeaderValue, StatusCode, header};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{AppError, AppResult, OAuthFlavour, Problem};
use crate::secret::{Password, Token};
use crate::service::{AuthService, TokenResponse, UserView};

pub mod docs;
pub mod extract;
pub mod pages;
pub mod request_id;

use extract::{AdminBearer, Bearer, Ctx, FormOrJson, Json, MAX_BODY};

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
    Docs,
    Jwks,
    ForgotPassword,
    ResetPassword,
    ChangePassword,
    ChangeEmail,
    ConfirmEmailChange,
    Sessions,
    Pages,
    UsersList,
    UsersCreate,
    UsersGet,
    UsersUpdate,
    UsersActivate,
    UsersDeactivate,
    UsersUnlock,
    UsersRevokeSessions,
    UsersDelete,
}

impl Endpoint {
    pub const ALL: [Endpoint; 27] = [
        Endpoint::Health,
        Endpoint::Signup,
        Endpoint::VerifyEmail,
        Endpoint::ResendVerification,
        Endpoint::Login,
        Endpoint::Token,
        Endpoint::Refresh,
        Endpoint::Logout,
        Endpoint::Me,
        Endpoint::Docs,
        Endpoint::Jwks,
        Endpoint::ForgotPassword,
        Endpoint::ResetPassword,
        Endpoint::ChangePassword,
        Endpoint::ChangeEmail,
        Endpoint::ConfirmEmailChange,
        Endpoint::Sessions,
        Endpoint::Pages,
        Endpoint::UsersList,
        Endpoint::UsersCreate,
        Endpoint::UsersGet,
        Endpoint::UsersUpdate,
        Endpoint::UsersActivate,
        Endpoint::UsersDeactivate,
        Endpoint::UsersUnlock,
        Endpoint::UsersRevokeSessions,
        Endpoint::UsersDelete,
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
            Endpoint::Docs => "docs",
            Endpoint::Jwks => "jwks",
            Endpoint::ForgotPassword => "forgot-password",
            Endpoint::ResetPassword => "reset-password",
            Endpoint::ChangePassword => "change-password",
            Endpoint::ChangeEmail => "change-email",
            Endpoint::ConfirmEmailChange => "confirm-email-change",
            Endpoint::Sessions => "sessions",
            Endpoint::Pages => "pages",
            Endpoint::UsersList => "users-list",
            Endpoint::UsersCreate => "users-create",
            Endpoint::UsersGet => "users-get",
            Endpoint::UsersUpdate => "users-update",
            Endpoint::UsersActivate => "users-activate",
            Endpoint::UsersDeactivate => "users-deactivate",
            Endpoint::UsersUnlock => "users-unlock",
            Endpoint::UsersRevokeSessions => "users-revoke-sessions",
            Endpoint::UsersDelete => "users-delete",
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
            Endpoint::Docs => &[("GET", "/openapi.json"), ("GET", "/docs"), ("GET", "/docs/{file}")],
            Endpoint::Jwks => &[("GET", "/.well-known/jwks.json"), ("GET", "/.well-known/openid-configuration")],
            Endpoint::ForgotPassword => &[("POST", "/auth/forgot-password")],
            Endpoint::ResetPassword => &[("POST", "/auth/reset-password")],
            Endpoint::ChangePassword => &[("POST", "/auth/change-password")],
            Endpoint::ChangeEmail => &[("POST", "/auth/change-email")],
            Endpoint::ConfirmEmailChange => &[("POST", "/auth/confirm-email-change")],
            Endpoint::Sessions => {
                &[("GET", "/auth/sessions"), ("DELETE", "/auth/sessions/{id}"), ("POST", "/auth/logout-all")]
            }
            Endpoint::Pages => {
                &[("GET", "/auth/verify-email"), ("GET", "/auth/reset-password"), ("GET", "/auth/confirm-email-change")]
            }
            Endpoint::UsersList => &[("GET", "/users")],
            Endpoint::UsersCreate => &[("POST", "/users")],
            Endpoint::UsersGet => &[("GET", "/users/{id}")],
            Endpoint::UsersUpdate => &[("PUT", "/users/{id}")],
            Endpoint::UsersActivate => &[("POST", "/users/{id}/activate")],
            Endpoint::UsersDeactivate => &[("POST", "/users/{id}/deactivate")],
            Endpoint::UsersUnlock => &[("POST", "/users/{id}/unlock")],
            Endpoint::UsersRevokeSessions => &[("POST", "/users/{id}/revoke-sessions")],
            Endpoint::UsersDelete => &[("DELETE", "/users/{id}")],
        }
    }

    /// Mounts the endpoint's handlers; each route lands in the OpenAPI document too.
    fn mount(self, r: OpenApiRouter<Svc>) -> OpenApiRouter<Svc> {
        let n = OpenApiRouter::new();
        let sub = match self {
            Endpoint::Health => n.routes(routes!(health)),
            Endpoint::Signup => n.routes(routes!(signup)),
            Endpoint::VerifyEmail => n.routes(routes!(verify_email)),
            Endpoint::ResendVerification => n.routes(routes!(resend_verification)),
            Endpoint::Login => n.routes(routes!(login)),
            Endpoint::Token => n.routes(routes!(token)),
            Endpoint::Refresh => n.routes(routes!(refresh)),
            Endpoint::Logout => n.routes(routes!(logout)),
            Endpoint::Me => n.routes(routes!(me, update_me)),
            Endpoint::Docs => n
                .routes(routes!(docs::openapi_json))
                .routes(routes!(docs::docs_index))
                .routes(routes!(docs::docs_asset)),
            Endpoint::Jwks => n.routes(routes!(jwks)).routes(routes!(openid_configuration)),
            Endpoint::ForgotPassword => n.routes(routes!(forgot_password)),
            Endpoint::ResetPassword => n.routes(routes!(reset_password)),
            Endpoint::ChangePassword => n.routes(routes!(change_password)),
            Endpoint::ChangeEmail => n.routes(routes!(change_email)),
            Endpoint::ConfirmEmailChange => n.routes(routes!(confirm_email_change)),
            Endpoint::Sessions => {
                n.routes(routes!(list_sessions)).routes(routes!(revoke_session)).routes(routes!(logout_all))
            }
            Endpoint::Pages => pages_routes(n),
            Endpoint::UsersList => n.routes(routes!(users_list)),
            Endpoint::UsersCreate => n.routes(routes!(users_create)),
            Endpoint::UsersGet => n.routes(routes!(users_get)),
            Endpoint::UsersUpdate => n.routes(routes!(users_update)),
            Endpoint::UsersActivate => n.routes(routes!(users_activate)),
            Endpoint::UsersDeactivate => n.routes(routes!(users_deactivate)),
            Endpoint::UsersUnlock => n.routes(routes!(users_unlock)),
            Endpoint::UsersRevokeSessions => n.routes(routes!(users_revoke_sessions)),
            Endpoint::UsersDelete => n.routes(routes!(users_delete)),
        };
        // Every unauthenticated endpoint with limits gets them, ahead of its handler.
        let limited = crate::ratelimit::DEFAULTS.iter().any(|(name, _)| *name == self.binary());
        let sub = if limited {
            sub.route_layer(middleware::from_fn(move |req: Request, next: Next| rate_limited(self, req, next)))
        } else {
            sub
        };
        r.merge(sub)
    }
}

/// The mounted routes of `endpoints` and their OpenAPI paths.
fn api(endpoints: &[Endpoint]) -> (Router<Svc>, utoipa::openapi::OpenApi) {
    use utoipa::OpenApi as _;
    endpoints.iter().fold(OpenApiRouter::with_openapi(docs::ApiDoc::openapi()), |r, e| e.mount(r)).split_for_parts()
}

/// The router for `endpoints`, with the common layers and problem+json fallbacks.
pub fn router(svc: Svc, endpoints: &[Endpoint]) -> Router {
    finish(routes(svc, endpoints))
}

/// The bare routes for `endpoints`, to merge with others before `finish`.
pub fn routes(svc: Svc, endpoints: &[Endpoint]) -> Router {
    api(endpoints).0.layer(axum::Extension(svc.clone())).with_state(svc)
}

/// The normalized email a rate-limited body names (`email`, or the token endpoint's
/// `username`), if any; anything unparsable simply has none (the handler will refuse it).
fn email_in(content_type: Option<&str>, bytes: &[u8]) -> Option<String> {
    let raw = match content_type {
        Some("application/x-www-form-urlencoded") => serde_urlencoded::from_bytes::<Vec<(String, String)>>(bytes)
            .ok()?
            .into_iter()
            .find(|(k, _)| k == "username")
            .map(|(_, v)| v)?,
        _ => {
            let v: serde_json::Value = serde_json::from_slice(bytes).ok()?;
            v.get("email").or_else(|| v.get("username"))?.as_str()?.to_owned()
        }
    };
    crate::email::normalize(&raw).ok().map(|e| e.as_str().to_owned())
}

/// Applies `endpoint`'s rate limits before anything else runs: a limited request costs two
/// small DynamoDB calls per key and nothing more (no hashing, no mail, no other store work).
async fn rate_limited(endpoint: Endpoint, req: Request, next: Next) -> Response {
    let Some(svc) = req.extensions().get::<Svc>().cloned() else { return next.run(req).await };
    let limits = &svc.cfg.rate_limits;
    let Some(cfg) = limits.endpoints.get(endpoint.binary()).filter(|_| limits.enabled).copied() else {
        return next.run(req).await;
    };
    let flavour = match endpoint {
        Endpoint::Login | Endpoint::Token | Endpoint::Refresh => OAuthFlavour::TokenEndpoint,
        _ => OAuthFlavour::Plain,
    };
    let ip = extract::client_ip(req.extensions());
    let (req, email) = if cfg.email.is_some() {
        let (parts, body) = req.into_parts();
        let Ok(bytes) = axum::body::to_bytes(body, MAX_BODY).await else {
            return AppError::PayloadTooLarge.to_response(flavour);
        };
        let email = email_in(extract::content_type(&parts.headers).as_deref(), &bytes);
        (Request::from_parts(parts, axum::body::Body::from(bytes)), email)
    } else {
        (req, None)
    };
    let decision =
        crate::ratelimit::check(svc.store.as_ref(), limits, endpoint.binary(), &ip, email.as_deref(), crate::now())
            .await;
    let decision = match decision {
        Ok(Some(d)) => d,
        Ok(None) => return next.run(req).await,
        Err(e) => return AppError::from(e).to_response(flavour),
    };
    if decision.limited {
        let ctx = crate::logging::RequestCtx { request_id: request_id::current(), ip, user_agent: String::new() };
        crate::logging::security_event("rate_limited", &ctx, None, endpoint.binary());
        crate::metrics::count("RateLimited");
        return AppError::RateLimited { limit: decision.limit, reset: decision.reset }.to_response(flavour);
    }
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert("ratelimit-limit", HeaderValue::from(decision.limit));
    h.insert("ratelimit-remaining", HeaderValue::from(decision.remaining));
    h.insert("ratelimit-reset", HeaderValue::from(decision.reset));
    resp
}

/// The OpenAPI 3.1 document of every endpoint, generated from the handlers.
pub fn openapi() -> utoipa::openapi::OpenApi {
    docs::finish_document(api(&Endpoint::ALL).1)
}

/// The health route alone: it needs no store, key or mailer.
pub fn health_router() -> Router {
    finish(Router::new().route("/health", get(health)))
}

/// The docs routes alone: they need no store, key or mailer either.
pub fn docs_router() -> Router {
    finish(docs::router())
}

/// The mail-link pages on any router: they take no state.
fn pages_routes<S: Clone + Send + Sync + 'static>(n: OpenApiRouter<S>) -> OpenApiRouter<S> {
    n.routes(routes!(pages::verify_email_page))
        .routes(routes!(pages::reset_password_page))
        .routes(routes!(pages::confirm_email_change_page))
}

/// The mail-link pages alone (the `pages` function): rendering them touches nothing.
pub fn pages_router() -> Router {
    finish(pages_routes(OpenApiRouter::new()).split_for_parts().0)
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

/// `{"status": …}` bodies.
#[derive(Serialize, ToSchema)]
pub struct StatusBody {
    #[schema(example = "ok")]
    pub status: String,
}

const PROBLEM: &str = "application/problem+json";

/// Liveness: no store access.
#[utoipa::path(get, path = "/health", tag = "meta", responses((status = 200, body = StatusBody, example = json!({"status": "ok"}))))]
async fn health() -> Response {
    json_response(StatusCode::OK, &serde_json::json!({"status": "ok"}))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct SignupBody {
    #[schema(format = Email, max_length = 254)]
    email: String,
    /// At least `PASSWORD_MIN_LENGTH` (default 12) code points, at most 128; not common, not the email.
    #[schema(value_type = String, format = Password, min_length = 12, max_length = 128)]
    password: Password,
    #[schema(max_length = 100)]
    #[serde(default)]
    name: Option<String>,
}

/// Sign up; the same 202 whether or not the address is already registered.
#[utoipa::path(post, path = "/auth/signup", tag = "auth", request_body = SignupBody, responses(
    (status = 202, body = StatusBody, example = json!({"status": "verification_pending"})),
    (status = 400, body = Problem, content_type = PROBLEM, description = "validation-failed (policy failures listed in `errors`) or malformed-request"),
))]
async fn signup(State(svc): State<Svc>, Ctx(ctx): Ctx, Json(b): Json<SignupBody>) -> AppResult<Response> {
    svc.signup(&b.email, &b.password, b.name.as_deref(), &ctx).await?;
    Ok(json_response(StatusCode::ACCEPTED, &serde_json::json!({"status": "verification_pending"})))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct TokenBody {
    /// The one-time token from the mail link.
    #[schema(value_type = String)]
    token: Token,
}

/// Answers a mail page's form with HTML, an API client with JSON.
fn form_or_json(form: bool, r: AppResult<Response>, page_title: &str, page_text: &str) -> Response {
    match (form, r) {
        (false, Ok(resp)) => resp,
        (false, Err(e)) => e.into_response(),
        (true, Ok(_)) => pages::page(StatusCode::OK, page_title, &format!("<p>{page_text}</p>")),
        (true, Err(e)) => pages::error_page(&e),
    }
}

/// Confirm an email address with the token from the verification mail (single use). The
/// mail page's form posts it form-encoded and gets an HTML page back.
#[utoipa::path(post, path = "/auth/verify-email", tag = "auth",
    request_body(content((TokenBody = "application/json"), (TokenBody = "application/x-www-form-urlencoded"))),
    responses(
        (status = 200, content((StatusBody = "application/json", example = json!({"status": "verified"})), (String = "text/html"))),
        (status = 400, description = "invalid-token when unknown, used or expired",
            content((Problem = "application/problem+json"), (String = "text/html"))),
))]
async fn verify_email(
    State(svc): State<Svc>,
    Ctx(ctx): Ctx,
    body: Result<FormOrJson<TokenBody>, AppError>,
) -> Response {
    let form = body.as_ref().is_ok_and(|b| b.1);
    let r = async {
        let FormOrJson(b, _) = body?;
        svc.verify_email(&b.token, &ctx).await?;
        Ok(json_response(StatusCode::OK, &serde_json::json!({"status": "verified"})))
    }
    .await;
    form_or_json(
        form,
        r,
        "Email address verified",
        "Your email address is verified. You can close this page and sign in.",
    )
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct EmailBody {
    #[schema(format = Email, max_length = 254)]
    email: String,
}

/// Send the verification mail again; the same answer whether or not the account exists.
#[utoipa::path(post, path = "/auth/resend-verification", tag = "auth", request_body = EmailBody, responses(
    (status = 202, body = StatusBody, example = json!({"status": "accepted"})),
    (status = 400, body = Problem, content_type = PROBLEM, description = "validation-failed"),
))]
async fn resend_verification(State(svc): State<Svc>, Ctx(ctx): Ctx, Json(b): Json<EmailBody>) -> AppResult<Response> {
    svc.resend_verification(&b.email, &ctx).await?;
    Ok(json_response(StatusCode::ACCEPTED, &serde_json::json!({"status": "accepted"})))
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
    (status = 403, body = Problem, content_type = PROBLEM, description = "email-not-verified, only after a correct password"),
))]
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
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct OAuthTokenBody {
    /// `password` (with `username`, `password`) or `refresh_token` (with `refresh_token`).
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
    #[serde(default)]
    #[allow(dead_code)]
    scope: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    client_id: Option<String>,
}

/// RFC 6749 token endpoint: password and refresh_token grants, form-encoded or JSON.
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
        (status = 403, body = Problem, content_type = PROBLEM, description = "email-not-verified"),
))]
async fn token(State(svc): State<Svc>, Ctx(ctx): Ctx, body: Result<FormOrJson<OAuthTokenBody>, AppError>) -> Response {
    token_result(
        async {
            let FormOrJson(b, _) = body?;
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
async fn refresh(State(svc): State<Svc>, Ctx(ctx): Ctx, body: Result<Json<RefreshBody>, AppError>) -> Response {
    token_result(
        async {
            let Json(b) = body?;
            svc.refresh(&b.refresh_token, &ctx).await
        }
        .await,
    )
}

/// Revoke the refresh token's session; 204 also for unknown or malformed tokens (RFC 7009).
#[utoipa::path(post, path = "/auth/logout", tag = "auth", request_body = RefreshBody, responses(
    (status = 204, description = "Revoked, or nothing to revoke"),
    (status = 400, body = Problem, content_type = PROBLEM, description = "validation-failed"),
))]
async fn logout(State(svc): State<Svc>, Ctx(ctx): Ctx, Json(b): Json<RefreshBody>) -> AppResult<Response> {
    svc.logout(&b.refresh_token, &ctx).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

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

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// Change the caller's display name (the only field a user may set here).
#[utoipa::path(patch, path = "/auth/me", tag = "account", security(("bearer" = []), ("oauth2" = [])), request_body = UpdateMeBody, responses(
    (status = 200, body = UserView),
    (status = 400, body = Problem, content_type = PROBLEM, description = "validation-failed"),
))]
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

fn public_cache(mut resp: Response) -> Response {
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
    resp
}

/// A JSON Web Key Set (RFC 7517).
#[derive(Serialize, ToSchema)]
struct JwkSet {
    /// Public keys: current, next, previous. Never private or symmetric keys.
    #[schema(value_type = Vec<Object>)]
    keys: Vec<serde_json::Value>,
}

/// The public keys that verify access tokens.
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "meta", responses(
    (status = 200, body = JwkSet, headers(("Cache-Control" = String, description = "public, max-age=300"))),
))]
async fn jwks(State(svc): State<Svc>) -> Response {
    svc.jwt.refresh_keys().await;
    public_cache(json_response(StatusCode::OK, &svc.jwt.keys().jwks()))
}

/// OpenID-style discovery metadata (RFC 8414).
#[derive(Serialize, ToSchema)]
struct Discovery {
    issuer: String,
    jwks_uri: String,
    token_endpoint: String,
    grant_types_supported: Vec<String>,
    response_types_supported: Vec<String>,
    subject_types_supported: Vec<String>,
    token_endpoint_auth_methods_supported: Vec<String>,
    id_token_signing_alg_values_supported: Vec<String>,
    scopes_supported: Vec<String>,
    claims_supported: Vec<String>,
}

/// Where the keys and the token endpoint are, and what they support.
#[utoipa::path(get, path = "/.well-known/openid-configuration", tag = "meta", responses(
    (status = 200, body = Discovery, headers(("Cache-Control" = String, description = "public, max-age=300"))),
))]
async fn openid_configuration(State(svc): State<Svc>) -> Response {
    svc.jwt.refresh_keys().await;
    let keys = svc.jwt.keys();
    let mut algs: Vec<String> =
        std::iter::once(&keys.current).chain(keys.others.iter()).map(|k| format!("{:?}", k.alg)).collect();
    algs.dedup();
    let base = &svc.cfg.public_base_url;
    let v = |xs: &[&str]| xs.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let d = Discovery {
        issuer: svc.jwt.issuer().to_owned(),
        jwks_uri: format!("{base}/.well-known/jwks.json"),
        token_endpoint: format!("{base}/auth/token"),
        grant_types_supported: v(&["password", "refresh_token"]),
        response_types_supported: v(&["token"]),
        subject_types_supported: v(&["public"]),
        token_endpoint_auth_methods_supported: v(&["none"]),
        id_token_signing_alg_values_supported: algs,
        scopes_supported: v(&["openid", "profile", "email", "admin"]),
        claims_supported: v(&[
            "iss",
            "aud",
            "sub",
            "iat",
            "nbf",
            "exp",
            "jti",
            "scope",
            "email",
            "email_verified",
            "sv",
        ]),
    };
    public_cache(json_response(StatusCode::OK, &d))
}

/// Ask for a password-reset link; the same 202 whether or not the account exists.
#[utoipa::path(post, path = "/auth/forgot-password", tag = "auth", request_body = EmailBody, responses(
    (status = 202, body = StatusBody, example = json!({"status": "accepted"})),
    (status = 400, body = Problem, content_type = PROBLEM, description = "validation-failed"),
))]
async fn forgot_password(State(svc): State<Svc>, Ctx(ctx): Ctx, Json(b): Json<EmailBody>) -> AppResult<Response> {
    svc.forgot_password(&b.email, &ctx).await?;
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
async fn reset_password(
    State(svc): State<Svc>,
    Ctx(ctx): Ctx,
    body: Result<FormOrJson<ResetBody>, AppError>,
) -> Response {
    let form = body.as_ref().is_ok_and(|b| b.1);
    let r = async {
        let FormOrJson(b, _) = body?;
        svc.reset_password(&b.token, &b.new_password, &ctx).await?;
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

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ChangePasswordBody {
    #[schema(value_type = String, format = Password)]
    current_password: Password,
    #[schema(value_type = String, format = Password, min_length = 12, max_length = 128)]
    new_password: Password,
}

/// Change the password. Every other session is revoked and older access tokens stop working;
/// the caller's refresh token stays valid (refresh to get a current access token).
#[utoipa::path(post, path = "/auth/change-password", tag = "account", security(("bearer" = []), ("oauth2" = [])),
    request_body = ChangePasswordBody, responses(
        (status = 204, description = "Changed"),
        (status = 400, body = Problem, content_type = PROBLEM, description = "validation-failed (wrong current password or policy)"),
        (status = 409, body = Problem, content_type = PROBLEM, description = "conflict: changed concurrently"),
))]
async fn change_password(
    State(svc): State<Svc>,
    Bearer(caller, ctx): Bearer,
    Json(b): Json<ChangePasswordBody>,
) -> AppResult<Response> {
    svc.change_password(&caller, &b.current_password, &b.new_password, &ctx).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ChangeEmailBody {
    #[schema(value_type = String, format = Password)]
    current_password: Password,
    #[schema(format = Email, max_length = 254)]
    new_email: String,
}

/// Ask to change the sign-in address: a link goes to the new address, a notice to the old one.
#[utoipa::path(post, path = "/auth/change-email", tag = "account", security(("bearer" = []), ("oauth2" = [])),
    request_body = ChangeEmailBody, responses(
        (status = 202, body = StatusBody, example = json!({"status": "confirmation_sent"})),
        (status = 400, body = Problem, content_type = PROBLEM, description = "validation-failed (wrong current password, bad address)"),
))]
async fn change_email(
    State(svc): State<Svc>,
    Bearer(caller, ctx): Bearer,
    Json(b): Json<ChangeEmailBody>,
) -> AppResult<Response> {
    svc.change_email(&caller, &b.current_password, &b.new_email, &ctx).await?;
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
    State(svc): State<Svc>,
    Ctx(ctx): Ctx,
    body: Result<FormOrJson<TokenBody>, AppError>,
) -> Response {
    let form = body.as_ref().is_ok_and(|b| b.1);
    let r = async {
        let FormOrJson(b, _) = body?;
        let user = svc.confirm_email_change(&b.token, &ctx).await?;
        Ok(json_response(StatusCode::OK, &user))
    }
    .await;
    form_or_json(form, r, "Email address changed", "Your sign-in address was changed. Sign in with the new address.")
}

/// `{"items": [...]}` of sessions.
#[derive(Serialize, ToSchema)]
struct SessionList {
    items: Vec<crate::service::SessionView>,
}

/// The caller's live sessions.
#[utoipa::path(get, path = "/auth/sessions", tag = "account", security(("bearer" = []), ("oauth2" = [])), responses(
    (status = 200, body = SessionList),
))]
async fn list_sessions(State(svc): State<Svc>, Bearer(caller, _): Bearer) -> AppResult<Response> {
    let items = svc.list_sessions(&caller).await?;
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
    State(svc): State<Svc>,
    Bearer(caller, ctx): Bearer,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> AppResult<Response> {
    svc.revoke_session(&caller, &id, &ctx).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Revoke every session of the caller and make every access token of theirs stale.
#[utoipa::path(post, path = "/auth/logout-all", tag = "account", security(("bearer" = []), ("oauth2" = [])), responses(
    (status = 204, description = "All sessions revoked"),
))]
async fn logout_all(State(svc): State<Svc>, Bearer(caller, ctx): Bearer) -> AppResult<Response> {
    svc.logout_all(&caller, &ctx).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

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

fn user_id(id: &str) -> AppResult<&str> {
    // Ids are UUIDs; anything else cannot name a user.
    if id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        Ok(id)
    } else {
        Err(AppError::NotFound)
    }
}

/// List users, ordered by email, with cursor pagination (a query on the email index).
#[utoipa::path(get, path = "/users", tag = "admin", security(("bearer" = []), ("oauth2" = ["admin"])), params(UsersQuery),
    responses(
        (status = 200, body = crate::admin::UserPage),
        (status = 400, body = Problem, content_type = PROBLEM, description = "validation-failed or a tampered or foreign cursor"),
        (status = 403, body = Problem, content_type = PROBLEM, description = "forbidden: not an administrator"),
))]
async fn users_list(
    State(svc): State<Svc>,
    _admin: AdminBearer,
    q: Result<axum::extract::Query<UsersQuery>, axum::extract::rejection::QueryRejection>,
) -> AppResult<Response> {
    let axum::extract::Query(q) = q.map_err(|e| AppError::BadRequest(format!("Bad query: {}", e.body_text())))?;
    let status = q.status.as_deref().map(crate::admin::Status::parse).transpose()?;
    let page = svc
        .admin_list_users(&crate::admin::ListQuery {
            limit: q.limit,
            cursor: q.cursor,
            email_prefix: q.email_prefix,
            status,
        })
        .await?;
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
    State(svc): State<Svc>,
    AdminBearer(caller, ctx): AdminBearer,
    Json(b): Json<CreateUserBody>,
) -> AppResult<Response> {
    let new = crate::admin::NewUser {
        email: b.email,
        password: b.password,
        name: b.name,
        is_superuser: b.is_superuser,
        is_verified: b.is_verified,
    };
    let user = svc.admin_create_user(crate::admin::Actor::Admin(&caller.user.id), new, &ctx).await?;
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
async fn users_get(
    State(svc): State<Svc>,
    _admin: AdminBearer,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> AppResult<Response> {
    let user = svc.admin_get_user(user_id(&id)?).await?;
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
    State(svc): State<Svc>,
    AdminBearer(caller, ctx): AdminBearer,
    axum::extract::Path(id): axum::extract::Path<String>,
    Json(b): Json<UpdateUserBody>,
) -> AppResult<Response> {
    let up = crate::admin::UserUpdate {
        email: b.email,
        name: b.name,
        is_superuser: b.is_superuser,
        is_verified: b.is_verified,
        password: b.password,
    };
    let user = svc.admin_update_user(crate::admin::Actor::Admin(&caller.user.id), user_id(&id)?, up, &ctx).await?;
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
    State(svc): State<Svc>,
    AdminBearer(caller, ctx): AdminBearer,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> AppResult<Response> {
    let user = svc.admin_set_active(crate::admin::Actor::Admin(&caller.user.id), user_id(&id)?, true, &ctx).await?;
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
    State(svc): State<Svc>,
    AdminBearer(caller, ctx): AdminBearer,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> AppResult<Response> {
    let user = svc.admin_set_active(crate::admin::Actor::Admin(&caller.user.id), user_id(&id)?, false, &ctx).await?;
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
    State(svc): State<Svc>,
    AdminBearer(caller, ctx): AdminBearer,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> AppResult<Response> {
    let user = svc.admin_unlock(crate::admin::Actor::Admin(&caller.user.id), user_id(&id)?, &ctx).await?;
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
    State(svc): State<Svc>,
    AdminBearer(caller, ctx): AdminBearer,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> AppResult<Response> {
    svc.admin_revoke_sessions(crate::admin::Actor::Admin(&caller.user.id), user_id(&id)?, &ctx).await?;
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
    State(svc): State<Svc>,
    AdminBearer(caller, ctx): AdminBearer,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> AppResult<Response> {
    svc.admin_delete_user(crate::admin::Actor::Admin(&caller.user.id), user_id(&id)?, &ctx).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
