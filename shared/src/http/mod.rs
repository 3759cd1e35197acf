//! The HTTP layer. Each endpoint is declared once, as an `Endpoint` next to its handlers (one
//! file per area); its Lambda binary serves just that declaration, and the local server
//! mounts `all()`. Every list the project needs (the routes, the template check, the README
//! table, the OpenAPI document) is derived from these declarations.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use http::{HeaderName, HeaderValue, StatusCode, header};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;

pub use self::problem::{ApiError, ApiResult, ErrorStyle};
use crate::config::EndpointLimits;
use crate::wiring::{BuildError, Deps};

pub mod account;
pub mod admin;
pub mod auth;
pub mod docs;
pub mod extract;
pub mod meta;
pub mod mfa;
pub mod pages;
pub mod problem;
pub mod ratelimit;
pub mod recovery;
pub mod sessions;
pub mod signup;
pub mod unlock;

use extract::{MAX_BODY, RequestId};

/// What a function uses beyond its own code: its IAM policy and its required environment
/// follow from this (`tests/e2e/docs.rs` compares them with `template.yaml`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Uses {
    /// DynamoDB actions on the table (`TABLE_NAME`); empty: no table.
    pub table: &'static [&'static str],
    /// Sends mail: puts jobs on the mail queue (`MAIL_QUEUE_URL`, `sqs:SendMessage`); the
    /// mailer function sends them through SES.
    pub mail: bool,
    /// Reads the signing keys from Secrets Manager (`SIGNING_KEY_SECRET_ID`).
    pub keys: bool,
    /// Reads the key TOTP secrets are sealed with from Secrets Manager (`MFA_KEY_SECRET_ID`).
    pub mfa_key: bool,
}

impl Uses {
    /// Nothing outside the function itself.
    pub const NOTHING: Uses = Uses { table: &[], mail: false, keys: false, mfa_key: false };
}

/// The future a mount returns.
pub type Mounted = Pin<Box<dyn Future<Output = Result<OpenApiRouter, BuildError>> + Send>>;

/// One endpoint: one Lambda function, and the routes it serves in the local server.
pub struct Endpoint {
    /// The function binary (`functions/src/bin/<binary>.rs`).
    pub binary: &'static str,
    /// (method, path) pairs, as in the OpenAPI document.
    pub routes: &'static [(&'static str, &'static str)],
    /// Default rate limits (applied when `RATE_LIMITS_ENABLED`; see `RATE_LIMIT_<BINARY>`).
    pub limits: EndpointLimits,
    /// Whether problems carry RFC 6749's `error` member.
    pub errors: ErrorStyle,
    pub uses: Uses,
    /// The domain module behind it, for the README table (`—` if none).
    pub use_case: &'static str,
    /// The handler file, for the README table.
    pub source: &'static str,
    /// Builds the use cases it needs from `deps` and returns its routes with state applied.
    pub mount: fn(Arc<Deps>) -> Mounted,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint").field("binary", &self.binary).field("routes", &self.routes).finish_non_exhaustive()
    }
}

impl Endpoint {
    /// This endpoint's per-email rate limit, for the use case that normalizes the address.
    pub(crate) async fn email_gate(
        &'static self,
        deps: &Deps,
    ) -> Result<Option<crate::domain::ratelimit::Gate>, BuildError> {
        deps.gate(self.binary, self.limits, crate::domain::ratelimit::Scope::Email).await
    }

    /// This endpoint's per-account rate limit, for the use case that knows the account.
    pub(crate) async fn user_gate(
        &'static self,
        deps: &Deps,
    ) -> Result<Option<crate::domain::ratelimit::Gate>, BuildError> {
        deps.gate(self.binary, self.limits, crate::domain::ratelimit::Scope::User).await
    }

    /// The endpoint's routes, ready to serve: mounted, with its error style stamped.
    pub async fn mounted(&'static self, deps: Arc<Deps>) -> Result<OpenApiRouter, BuildError> {
        let style = self.errors;
        Ok((self.mount)(deps)
            .await?
            .route_layer(middleware::from_fn(move |req: Request, next: Next| problem::stamp_style(style, req, next))))
    }
}

/// Every endpoint, area by area (the README table's order). Each area file lists its own
/// endpoints next to their declarations; a new area is added here.
pub const AREAS: &[&[&Endpoint]] = &[
    meta::ENDPOINTS,
    signup::ENDPOINTS,
    auth::ENDPOINTS,
    unlock::ENDPOINTS,
    account::ENDPOINTS,
    recovery::ENDPOINTS,
    sessions::ENDPOINTS,
    mfa::ENDPOINTS,
    pages::ENDPOINTS,
    docs::ENDPOINTS,
    admin::ENDPOINTS,
];

/// Every endpoint (see `AREAS`).
pub fn all() -> impl Iterator<Item = &'static Endpoint> {
    AREAS.iter().flat_map(|area| area.iter().copied())
}

/// The endpoint a function binary serves, by name.
pub fn endpoint(binary: &str) -> Option<&'static Endpoint> {
    all().find(|e| e.binary == binary)
}

/// `endpoints` mounted together, with the common layers and problem+json fallbacks.
pub async fn app(deps: Arc<Deps>, endpoints: &[&'static Endpoint]) -> Result<Router, BuildError> {
    Ok(finish(routes(deps, endpoints).await?))
}

/// The bare routes of `endpoints`, to add others to before `finish`. (The OpenAPI paths the
/// mounts produce are dropped here: a function serves no document, and references no other
/// endpoint, so that the linker leaves every other endpoint out of its binary.)
pub async fn routes(deps: Arc<Deps>, endpoints: &[&'static Endpoint]) -> Result<Router, BuildError> {
    let mut r = OpenApiRouter::new();
    for e in endpoints {
        r = r.merge(e.mounted(deps.clone()).await?);
    }
    Ok(r.split_for_parts().0)
}

/// The OpenAPI 3.1 document of every endpoint, generated from the handlers (with throw-away
/// local dependencies: mounting builds the use cases but touches no store). The checked-in
/// `openapi.json` is this document (`cargo run -p local-server -- --openapi`).
pub async fn openapi() -> Result<utoipa::openapi::OpenApi, BuildError> {
    use utoipa::OpenApi as _;
    struct NoMail;
    #[async_trait::async_trait]
    impl crate::mail::Mailer for NoMail {
        async fn send(&self, _: &crate::mail::Mail) -> Result<(), crate::mail::MailError> {
            Ok(())
        }
    }
    let local = crate::wiring::LocalDefaults {
        store: Arc::new(crate::store::memory::MemoryStore::new()),
        mailer: Arc::new(NoMail),
        ses: |_, _| Arc::new(NoMail),
        queue: |mailer, _| mailer,
    };
    let deps = Arc::new(Deps::local(crate::config::Config::default(), local));
    let mut r = OpenApiRouter::with_openapi(docs::ApiDoc::openapi());
    for e in all() {
        r = r.merge(e.mounted(deps.clone()).await?);
    }
    Ok(docs::finish_document(r.split_for_parts().1))
}

/// What a function serves when it could not start (e.g. Secrets Manager unreachable at cold
/// start): 503 on every path, no fallback key.
pub fn unavailable_router() -> Router {
    Router::new()
        .fallback(|| async {
            ApiError::Domain(crate::domain::error::DomainError::Unavailable("function failed to initialize".into()))
        })
        .layer(middleware::from_fn(common))
}

/// Adds the 404/405 problems and the common layer to a router.
pub fn finish(r: Router) -> Router {
    r.fallback(|| async { ApiError::Domain(crate::domain::error::DomainError::NotFound) })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(middleware::from_fn(common))
}

const SECURITY_HEADERS: [(&str, &str); 5] = [
    ("strict-transport-security", "max-age=63072000; includeSubDomains"),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("content-security-policy", "default-src 'none'; frame-ancestors 'none'"),
    ("referrer-policy", "no-referrer"),
];

/// The server's request id (API Gateway's, else a fresh UUID) and the client's well-formed
/// `X-Request-Id`, if any.
fn pick_request_id(req: &Request) -> RequestId {
    let client = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| crate::context::well_formed_request_id(v))
        .map(str::to_owned);
    use lambda_http::request::RequestContext;
    let apigw = match req.extensions().get::<RequestContext>() {
        Some(RequestContext::ApiGatewayV2(c)) => c.request_id.clone(),
        _ => None,
    };
    RequestId { server: apigw.unwrap_or_else(|| uuid::Uuid::new_v4().to_string()), client }
}

/// Request id, body limit, problem rendering, security headers and `Cache-Control: no-store`
/// on every response.
async fn common(mut req: Request, next: Next) -> Response {
    let ids = pick_request_id(&req);
    let too_big = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .is_some_and(|n| n > MAX_BODY);
    req.extensions_mut().insert(ids.clone());
    let resp = if too_big { ApiError::PayloadTooLarge.into_response() } else { next.run(req).await };
    let mut resp = problem::render_pending(resp, &ids.server);
    let h = resp.headers_mut();
    // The client's id is echoed; without one, the server's.
    if let Ok(v) = HeaderValue::from_str(ids.client.as_deref().unwrap_or(&ids.server)) {
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

/// A JSON response.
pub(crate) fn json_response(status: StatusCode, body: &impl serde::Serialize) -> Response {
    (status, axum::Json(body)).into_response()
}

/// `{"status": …}` bodies.
#[derive(Serialize, ToSchema)]
pub struct StatusBody {
    #[schema(example = "ok")]
    pub status: String,
}

pub(crate) const PROBLEM: &str = "application/problem+json";

/// The state handlers of one endpoint share: a use case.
pub(crate) type Uc<T> = axum::extract::State<Arc<T>>;

/// A boxed mount future.
pub(crate) fn mounted(f: impl Future<Output = Result<OpenApiRouter, BuildError>> + Send + 'static) -> Mounted {
    Box::pin(f)
}

/// `r`'s routes with the authenticator their `Bearer`/`AdminBearer` extractors read.
pub(crate) fn authenticated(r: OpenApiRouter, auth: Arc<crate::domain::authn::Authenticator>) -> OpenApiRouter {
    r.route_layer(axum::Extension(auth))
}

/// `max/window` as the README writes it.
fn limit_text(l: Option<crate::config::Limit>) -> String {
    match l {
        None => "—".into(),
        Some(l) if l.window == 3600 => format!("{} / hour", l.max),
        Some(l) => format!("{} / {} s", l.max, l.window),
    }
}

/// The README's endpoint table, derived from the declarations (`tests/e2e/docs.rs` keeps the
/// README's copy equal to it; `cargo run -p local-server -- --readme-table` prints it).
pub fn readme_table() -> String {
    let mut out = String::from(
        "| method & path | function | handler | use case | per IP | per email | per account | uses |\n|---|---|---|---|---|---|---|---|\n",
    );
    for e in all() {
        let routes = e.routes.iter().map(|(m, p)| format!("`{m} {p}`")).collect::<Vec<_>>().join(", ");
        let source = e.source.trim_start_matches("./");
        let use_case = match e.use_case {
            "—" => "—".to_owned(),
            u => u.split(", ").map(|f| format!("`{f}`")).collect::<Vec<_>>().join(", "),
        };
        let mut uses = Vec::new();
        if !e.uses.table.is_empty() {
            uses.push("DynamoDB");
        }
        if e.uses.mail {
            uses.push("SQS (mail)");
        }
        match (e.uses.keys, e.uses.mfa_key) {
            (true, true) => uses.push("Secrets Manager (keys, MFA key)"),
            (true, false) => uses.push("Secrets Manager"),
            (false, true) => uses.push("Secrets Manager (MFA key)"),
            (false, false) => {}
        }
        let uses = if uses.is_empty() { "—".to_owned() } else { uses.join(", ") };
        out.push_str(&format!(
            "| {routes} | `{}` | `{source}` | {use_case} | {} | {} | {} | {uses} |\n",
            e.binary,
            limit_text(e.limits.ip),
            limit_text(e.limits.email),
            limit_text(e.limits.user)
        ));
    }
    out
}

/// The declarations as JSON, for the infra scripts (`local-server --endpoints`).
pub fn declarations_json() -> serde_json::Value {
    serde_json::Value::Array(
        all()
            .map(|e| {
                serde_json::json!({
                    "binary": e.binary,
                    "routes": e.routes.iter().map(|(m, p)| serde_json::json!([m, p])).collect::<Vec<_>>(),
                    "limits": {
                        "ip": e.limits.ip.map(|l| [l.max as u64, l.window]),
                        "email": e.limits.email.map(|l| [l.max as u64, l.window]),
                        "user": e.limits.user.map(|l| [l.max as u64, l.window]),
                    },
                    "oauth_errors": e.errors == ErrorStyle::OAuth,
                    "uses": {"table": e.uses.table, "mail": e.uses.mail, "keys": e.uses.keys, "mfa_key": e.uses.mfa_key},
                    "use_case": e.use_case,
                    "source": e.source,
                })
            })
            .collect(),
    )
}
