//! Extractors: strict JSON bodies (content type, 16 KiB, unknown and duplicate fields
//! refused), the token endpoint's form-or-JSON body, the caller's context and bearer auth.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use bytes::Bytes;
use http::header;
use http::request::Parts;
use serde::de::DeserializeOwned;

use super::problem::ApiError;
use crate::context::{Admission, RequestCtx};
use crate::domain::authn::{Authenticator, Caller};
use crate::domain::error::{DomainError, FieldError, invalid};

/// Largest accepted request body.
pub const MAX_BODY: usize = 16 * 1024;

pub(crate) fn content_type(parts: &http::HeaderMap) -> Option<String> {
    parts
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").trim().to_ascii_lowercase())
}

async fn body_bytes(req: Request) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(req.into_body(), MAX_BODY).await.map_err(|_| ApiError::PayloadTooLarge)
}

fn malformed(msg: impl Into<String>) -> ApiError {
    ApiError::Domain(DomainError::BadRequest(msg.into()))
}

fn json_error(e: serde_json::Error) -> ApiError {
    // serde's messages name fields and types, never values: safe to show.
    let msg = e.to_string();
    let msg = msg.split(" at line").next().unwrap_or(&msg).to_owned();
    if e.is_data() { ApiError::Domain(invalid("body", msg)) } else { malformed(format!("Malformed JSON: {msg}")) }
}

/// Parses a JSON object with the target type's `deny_unknown_fields` and serde's duplicate-key
/// check. Serde would also read a struct from an array (`["a@b.c", "pw"]`): only objects pass.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => serde_json::from_slice(bytes).map_err(json_error),
        Some(b'[' | b'"' | b'-' | b'0'..=b'9' | b't' | b'f' | b'n') => {
            Err(ApiError::Domain(invalid("body", "must be a JSON object")))
        }
        _ => Err(malformed("Malformed JSON: expected an object")),
    }
}

/// A JSON request body of type `T` (which should `deny_unknown_fields`).
pub struct Json<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _: &S) -> Result<Self, ApiError> {
        if content_type(req.headers()).as_deref() != Some("application/json") {
            return Err(ApiError::UnsupportedMediaType);
        }
        let bytes = body_bytes(req).await?;
        parse_json(&bytes).map(Json)
    }
}

/// A body that is either JSON or `application/x-www-form-urlencoded` (RFC 6749 §4.3, and the
/// mail pages' forms); the flag says it was a form.
pub struct FormOrJson<T>(pub T, pub bool);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for FormOrJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _: &S) -> Result<Self, ApiError> {
        match content_type(req.headers()).as_deref() {
            Some("application/json") => parse_json(&body_bytes(req).await?).map(|t| FormOrJson(t, false)),
            Some("application/x-www-form-urlencoded") => {
                let bytes = body_bytes(req).await?;
                // Repeated parameters are refused (RFC 6749 §3.2).
                let pairs: Vec<(String, String)> =
                    serde_urlencoded::from_bytes(&bytes).map_err(|_| malformed("Malformed form body."))?;
                let mut seen = std::collections::HashSet::new();
                if !pairs.iter().all(|(k, _)| seen.insert(k.as_str())) {
                    return Err(malformed("Repeated form parameter."));
                }
                serde_urlencoded::from_bytes(&bytes).map(|t| FormOrJson(t, true)).map_err(|e| {
                    ApiError::Domain(DomainError::Validation(vec![FieldError::new("body", e.to_string())]))
                })
            }
            _ => Err(ApiError::UnsupportedMediaType),
        }
    }
}

/// The client IP: API Gateway's `sourceIp` in Lambda, the socket peer locally; never
/// `X-Forwarded-For`.
pub(crate) fn client_ip(ext: &http::Extensions) -> String {
    use lambda_http::request::RequestContext;
    if let Some(RequestContext::ApiGatewayV2(c)) = ext.get::<RequestContext>() {
        return c.http.source_ip.clone().unwrap_or_default();
    }
    ext.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip().to_string()).unwrap_or_default()
}

/// The request's ids, chosen by the common layer: the server's (API Gateway's in Lambda, a
/// fresh UUID locally), which every log line and problem carries, and the client's
/// `X-Request-Id` if it sent a well-formed one, which is echoed and logged beside it.
#[derive(Debug, Clone)]
pub(crate) struct RequestId {
    pub server: String,
    pub client: Option<String>,
}

/// The `{id}` segment of a path (a user or session id). A value that cannot be an id is a 404
/// before any store access; a path that does not decode is a 400 problem.
pub struct PathId(pub String);

/// Ids are UUIDs (with or without dashes).
pub(crate) fn is_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

impl<S: Send + Sync> FromRequestParts<S> for PathId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Path::<String>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(id)) if is_id(&id) => Ok(PathId(id)),
            Ok(_) => Err(ApiError::Domain(DomainError::NotFound)),
            Err(e) => Err(malformed(format!("Malformed path: {}", e.body_text()))),
        }
    }
}

/// A query string of type `T` (which should `deny_unknown_fields`); a malformed or repeated
/// parameter is a 400 problem.
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(t)) => Ok(Query(t)),
            Err(e) => Err(malformed(format!("Bad query: {}", e.body_text()))),
        }
    }
}

/// The caller's request context, for logs and session metadata.
pub struct Ctx(pub RequestCtx);

impl Ctx {
    pub(crate) fn of(parts: &Parts) -> RequestCtx {
        let user_agent = parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .chars()
            .take(256)
            .collect();
        let (request_id, client_request_id) = match parts.extensions.get::<RequestId>() {
            Some(r) => (r.server.clone(), r.client.clone()),
            None => (String::new(), None),
        };
        let rate = parts.extensions.get::<crate::context::RateSlot>().cloned().unwrap_or_default();
        let admission = parts.extensions.get::<Admission>().cloned().unwrap_or_default();
        RequestCtx { request_id, client_request_id, ip: client_ip(&parts.extensions), user_agent, rate, admission }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Ctx {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        Ok(Ctx(Ctx::of(parts)))
    }
}

/// The authenticator of a bearer endpoint, put in the request by its mount.
fn authenticator(parts: &Parts) -> Result<Arc<Authenticator>, ApiError> {
    parts.extensions.get::<Arc<Authenticator>>().cloned().ok_or_else(|| {
        ApiError::Domain(DomainError::Internal("bearer endpoint mounted without an authenticator".into()))
    })
}

/// A bearer-authenticated caller. The token is read from `Authorization` only.
pub struct Bearer(pub Caller, pub RequestCtx);

impl<S: Send + Sync> FromRequestParts<S> for Bearer {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let ctx = Ctx::of(parts);
        let token = bearer_token(parts)?;
        let caller = authenticator(parts)?.authenticate(token, &ctx).await?;
        Ok(Bearer(caller, ctx))
    }
}

/// A caller with a valid admin token (401 without a valid token, 403 for a non-admin).
pub struct AdminBearer(pub Caller, pub RequestCtx);

impl<S: Send + Sync> FromRequestParts<S> for AdminBearer {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let ctx = Ctx::of(parts);
        let token = bearer_token(parts)?;
        let caller = authenticator(parts)?.authenticate_admin(token, &ctx).await?;
        Ok(AdminBearer(caller, ctx))
    }
}

/// The token of `Authorization: Bearer …` (never the query string).
fn bearer_token(parts: &Parts) -> Result<&str, ApiError> {
    let refused = |token_sent| ApiError::Domain(DomainError::Unauthorized { token_sent });
    let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
        return Err(refused(false));
    };
    let value = value.to_str().map_err(|_| refused(true))?;
    match value.split_once(' ') {
        Some((scheme, t)) if scheme.eq_ignore_ascii_case("bearer") && !t.trim().is_empty() => Ok(t.trim()),
        _ => Err(refused(true)),
    }
}
