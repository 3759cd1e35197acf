//! `docs`: the OpenAPI 3.1 document and the interactive docs (Swagger UI vendored into the
//! binary, so nothing is fetched from a CDN at run time).
//!
//! The document is generated from the handlers (`cargo run -p local-server -- --openapi`); the
//! function serves the checked-in copy, which `tests/e2e/docs.rs` keeps equal to the generated
//! one, so that serving it links no handler.

use std::sync::{Arc, OnceLock};

use axum::extract::Path;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use utoipa::Modify;
use utoipa::openapi::security::{Flow, HttpAuthScheme, HttpBuilder, OAuth2, Password, Scopes, SecurityScheme};
use utoipa::openapi::{ContentBuilder, HeaderBuilder, OpenApi, Ref, ResponseBuilder};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::problem::{ApiError, Problem};
use super::{Endpoint, ErrorStyle, Uses, mounted};
use crate::config::EndpointLimits;
use crate::domain::error::{DomainError, FieldError};

/// This file's endpoints, for `super::AREAS` (the local server, the README table, the checks).
pub const ENDPOINTS: &[&Endpoint] = &[&DOCS];

/// `GET /openapi.json`, `GET /docs` and its assets.
pub const DOCS: Endpoint = Endpoint {
    binary: "docs",
    routes: &[("GET", "/openapi.json"), ("GET", "/docs"), ("GET", "/docs/{file}")],
    limits: EndpointLimits::NONE,
    errors: ErrorStyle::Plain,
    uses: Uses::NOTHING,
    use_case: "—",
    source: file!(),
    mount: |_| {
        mounted(async {
            Ok(OpenApiRouter::new()
                .routes(routes!(openapi_json))
                .routes(routes!(docs_index))
                .routes(routes!(docs_asset)))
        })
    },
};

/// The checked-in document (`openapi.json` at the repository root).
pub const DOCUMENT: &str = include_str!("../../../openapi.json");

/// The static parts of the document: info, tags, shared schemas, security schemes.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Secure Auth Service",
        description = "Authentication and user management. Errors are RFC 9457 problems; every response carries `X-Request-Id`.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    components(schemas(Problem, FieldError)),
    modifiers(&SecuritySchemes),
    tags(
        (name = "auth", description = "Sign-up, verification, login and tokens"),
        (name = "account", description = "The signed-in user's own account"),
        (name = "meta", description = "Health and documentation"),
        (name = "pages", description = "The pages mail links open"),
        (name = "admin", description = "User management (admin scope)"),
    ),
)]
pub struct ApiDoc;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, doc: &mut OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build()),
        );
        let scopes = Scopes::from_iter([
            ("openid", "OpenID"),
            ("profile", "Profile"),
            ("email", "Email"),
            ("admin", "Granted to active superusers"),
        ]);
        components.add_security_scheme(
            "oauth2",
            SecurityScheme::OAuth2(OAuth2::new([Flow::Password(Password::new("/auth/token", scopes))])),
        );
    }
}

fn problem_response(description: &str) -> utoipa::openapi::Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/problem+json",
            ContentBuilder::new().schema(Some(Ref::from_schema_name("Problem"))).build(),
        )
        .build()
}

/// Adds what every operation shares: `X-Request-Id` on every response, 503 where a store is
/// used, 413/415 where a body is read, 401 where a bearer token is required.
pub fn finish_document(mut doc: OpenApi) -> OpenApi {
    let request_id = HeaderBuilder::new()
        .schema(utoipa::openapi::ObjectBuilder::new().schema_type(utoipa::openapi::Type::String))
        .description(Some("The request id (echoed if the client sent a well-formed one)"))
        .build();
    let limited: Vec<&str> =
        super::all().filter(|e| !e.limits.is_none()).flat_map(|e| e.routes.iter().map(|(_, p)| *p)).collect();
    for (path, item) in doc.paths.paths.iter_mut() {
        let is_limited = limited.contains(&path.as_str());
        let is_meta = path == "/health" || path == "/openapi.json" || path.starts_with("/docs");
        for op in
            [&mut item.get, &mut item.post, &mut item.patch, &mut item.put, &mut item.delete].into_iter().flatten()
        {
            let responses = &mut op.responses.responses;
            if op.request_body.is_some() {
                responses
                    .entry("413".into())
                    .or_insert_with(|| problem_response("payload-too-large: body over 16 KiB").into());
                responses.entry("415".into()).or_insert_with(|| problem_response("unsupported-media-type").into());
            }
            if op.security.is_some() {
                let unauthorized =
                    ResponseBuilder::from(problem_response("unauthorized: missing, invalid or outdated access token"))
                        .header(
                            "WWW-Authenticate",
                            HeaderBuilder::new()
                                .description(Some("Bearer realm=\"secure-auth\"[, error=\"invalid_token\"]"))
                                .build(),
                        )
                        .build();
                responses.entry("401".into()).or_insert_with(|| unauthorized.into());
            }
            if is_limited {
                let header = |d: &str| HeaderBuilder::new().description(Some(d.to_owned())).build();
                let limited = ResponseBuilder::from(problem_response(
                    "rate-limited: over a per-IP or per-email limit (only when RATE_LIMITS_ENABLED); nothing was done",
                ))
                .header("Retry-After", header("Seconds until the window resets"))
                .header("RateLimit-Limit", header("Requests allowed per window"))
                .header("RateLimit-Remaining", header("Requests left in the window"))
                .header("RateLimit-Reset", header("Seconds until the window resets"))
                .build();
                responses.entry("429".into()).or_insert_with(|| limited.into());
            }
            if !is_meta {
                let unavailable =
                    ResponseBuilder::from(problem_response("unavailable: a dependency failed; retry later"))
                        .header("Retry-After", HeaderBuilder::new().description(Some("Seconds to wait")).build())
                        .build();
                responses.entry("503".into()).or_insert_with(|| unavailable.into());
            }
            for resp in responses.values_mut() {
                if let utoipa::openapi::RefOr::T(r) = resp {
                    r.headers.insert("X-Request-Id".into(), request_id.clone());
                }
            }
        }
    }
    doc
}

const DOCS_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
img-src 'self' data:; connect-src 'self'; font-src 'self' data:; base-uri 'self'; frame-ancestors 'none'";

fn swagger_config() -> Arc<utoipa_swagger_ui::Config<'static>> {
    static CONFIG: OnceLock<Arc<utoipa_swagger_ui::Config<'static>>> = OnceLock::new();
    CONFIG.get_or_init(|| Arc::new(utoipa_swagger_ui::Config::new(["/openapi.json"]).validator_url("none"))).clone()
}

fn not_found() -> ApiError {
    ApiError::Domain(DomainError::NotFound)
}

fn swagger_file(file: &str) -> Result<Response, ApiError> {
    let f = utoipa_swagger_ui::serve(file, swagger_config())
        .map_err(|e| ApiError::Domain(DomainError::Internal(format!("swagger ui: {e}"))))?
        .ok_or_else(not_found)?;
    let mut bytes = f.bytes.into_owned();
    if file == "index.html" {
        // Served at /docs (no trailing slash): resolve the bundle's relative asset URLs.
        let html = String::from_utf8_lossy(&bytes).replacen("<head>", "<head>\n    <base href=\"/docs/\">", 1);
        bytes = html.into_bytes();
    }
    let mut resp = (StatusCode::OK, bytes).into_response();
    let h = resp.headers_mut();
    if let Ok(ct) = HeaderValue::from_str(&f.content_type) {
        h.insert(header::CONTENT_TYPE, ct);
    }
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(DOCS_CSP));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
    Ok(resp)
}

/// The OpenAPI 3.1 document of every route.
#[utoipa::path(get, path = "/openapi.json", tag = "meta", responses((status = 200, description = "OpenAPI 3.1 document", content_type = "application/json", body = Object)))]
pub async fn openapi_json() -> Response {
    let mut resp = (StatusCode::OK, DOCUMENT).into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
    resp
}

/// Interactive docs (Swagger UI) rendered from `/openapi.json`.
#[utoipa::path(get, path = "/docs", tag = "meta", responses((status = 200, description = "HTML page", content_type = "text/html", body = String)))]
pub async fn docs_index() -> Result<Response, ApiError> {
    swagger_file("index.html")
}

/// The Swagger UI bundle's static files.
#[utoipa::path(get, path = "/docs/{file}", tag = "meta", params(("file" = String, Path, description = "Asset name", example = "swagger-ui.css")), responses(
    (status = 200, description = "Static asset (stylesheets, scripts, icons)", content(
        (String = "text/css"), (String = "text/javascript"), (String = "image/png"),
    )),
    (status = 404, description = "not-found", content_type = "application/problem+json", body = Problem),
))]
pub async fn docs_asset(Path(file): Path<String>) -> Result<Response, ApiError> {
    // Only what the page loads; source maps and the bundle's other pages are not served.
    let allowed = [".css", ".js", ".png"].iter().any(|ext| file.ends_with(ext));
    if !allowed || file.contains("..") {
        return Err(not_found());
    }
    swagger_file(&file)
}
