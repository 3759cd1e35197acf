//! `health` and `jwks`: liveness, and what resource servers need to verify access tokens.

use axum::response::Response;
use http::{HeaderValue, StatusCode, header};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{Endpoint, ErrorStyle, StatusBody, Uc, Uses, json_response, mounted};
use crate::config::EndpointLimits;
use crate::domain::discovery::{Discovery, Publisher};

/// This file's endpoints, for `super::AREAS` (the local server, the README table, the checks).
pub const ENDPOINTS: &[&Endpoint] = &[&HEALTH, &JWKS];

/// `GET /health`: no store, key or mailer.
pub const HEALTH: Endpoint = Endpoint {
    binary: "health",
    routes: &[("GET", "/health")],
    limits: EndpointLimits::NONE,
    errors: ErrorStyle::Plain,
    uses: Uses::NOTHING,
    use_case: "—",
    source: file!(),
    mount: |_| mounted(async { Ok(OpenApiRouter::new().routes(routes!(health))) }),
};

/// The JWKS and the discovery document: only the signing keys.
pub const JWKS: Endpoint = Endpoint {
    binary: "jwks",
    routes: &[("GET", "/.well-known/jwks.json"), ("GET", "/.well-known/openid-configuration")],
    limits: EndpointLimits::NONE,
    errors: ErrorStyle::Plain,
    uses: Uses { table: &[], mail: false, keys: true, mfa_key: false },
    use_case: "shared/src/domain/discovery.rs",
    source: file!(),
    mount: |deps| {
        mounted(async move {
            let publisher = deps.publisher().await?;
            Ok(OpenApiRouter::new().routes(routes!(jwks)).routes(routes!(openid_configuration)).with_state(publisher))
        })
    },
};

/// Liveness: no store access.
#[utoipa::path(get, path = "/health", tag = "meta", responses((status = 200, body = StatusBody, example = json!({"status": "ok"}))))]
async fn health() -> Response {
    json_response(StatusCode::OK, &serde_json::json!({"status": "ok"}))
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
async fn jwks(axum::extract::State(p): Uc<Publisher>) -> Response {
    public_cache(json_response(StatusCode::OK, &p.jwks().await))
}

/// Where the keys and the token endpoint are, and what they support.
#[utoipa::path(get, path = "/.well-known/openid-configuration", tag = "meta", responses(
    (status = 200, body = Discovery, headers(("Cache-Control" = String, description = "public, max-age=300"))),
))]
async fn openid_configuration(axum::extract::State(p): Uc<Publisher>) -> Response {
    public_cache(json_response(StatusCode::OK, &p.metadata().await))
}
