//! Extractors: strict JSON bodies (content type, 16 KiB, unknown and duplicate fields
//! refused), the token endpoint's form-or-JSON body, the caller's context and bearer auth.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use bytes::Bytes;
use http::header;
use http::request::Parts;
use serde::de::DeserializeOwned;

use crate::error::{AppError, FieldError};
use crate::logging::RequestCtx;
use crate::service::{AuthService, Caller};

/// Largest accepted request body.
pub const MAX_BODY: usize = 16 * 1024;

pub(crate) fn content_type(parts: &http::HeaderMap) -> Option<String> {
    parts
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").trim().to_ascii_lowercase())
}

async fn body_bytes(req: Request) -> Result<Bytes, AppError> {
    axum::body::to_bytes(req.into_body(), MAX_BODY).await.map_err(|_| AppError::PayloadTooLarge)
}

fn json_error(e: serde_json::Error) -> AppError {
    // serde's messages name fields and types, never values: safe to show.
    let msg = e.to_string();
    let msg = msg.split(" at line").next().unwrap_or(&msg).to_owned();
    if e.is_data() {
        AppError::Validation(vec![FieldError::new("body", msg)])
    } else {
        AppError::BadRequest(format!("Malformed JSON: {msg}"))
    }
}

/// Parses a JSON object with the target type's `deny_unknown_fields` and serde's duplicate-key
/// check. Serde would also read a struct from an array (`["a@b.c", "pw"]`): only objects pass.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, AppError> {
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => serde_json::from_slice(bytes).map_err(json_error),
        Some(b'[' | b'"' | b'-' | b'0'..=b'9' | b't' | b'f' | b'n') => {
            Err(AppError::Validation(vec![FieldError::new("body", "must be a JSON object")]))
        }
        _ => Err(AppError::BadRequest("Malformed JSON: expected an object".into())),
    }
}

/// A JSON request body of type `T` (which should `deny_unknown_fields`).
pub struct Json<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Json<T> {
    type Rejection = AppError;

    async fn from_request(req: Request, _: &S) -> Result<Self, AppError> {
        if content_type(req.headers()).as_deref() != Some("application/json") {
            return Err(AppError::UnsupportedMediaType);
        }
        let bytes = body_bytes(req).await?;
        parse_json(&bytes).map(Json)
    }
}

/// A body that is either JSON or `application/x-www-form-urlencoded` (RFC 6749 §4.3, and the
/// mail pages' forms); the flag says it was a form.
pub struct FormOrJson<T>(pub T, pub bool);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for FormOrJson<T> {
    type Rejection = AppError;

    async fn from_request(req: Request, _: &S) -> Result<Self, AppError> {
        match content_type(req.headers()).as_deref() {
            Some("application/json") => parse_json(&body_bytes(req).await?).map(|t| FormOrJson(t, false)),
            Some("application/x-www-form-urlencoded") => {
                let bytes = body_bytes(req).await?;
                // Repeated parameters are refused (RFC 6749 §3.2).
                let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(&bytes)
                    .map_err(|_| AppError::BadRequest("Malformed form body.".into()))?;
                let mut seen = std::collections::HashSet::new();
                if !pairs.iter().all(|(k, _)| seen.insert(k.as_str())) {
                    return Err(AppError::BadRequest("Repeated form parameter.".into()));
                }
                serde_urlencoded::from_bytes(&bytes)
                    .map(|t| FormOrJson(t, true))
                    .map_err(|e| AppError::Validation(vec![FieldError::new("body", e.to_string())]))
            }
            _ => Err(AppError::UnsupportedMediaType),
        }
    }
}

/// The client IP: API Gateway's `sourceIp` in Lambda, the socket peer locally; never
/// `X-Forwarded-For`.
pub(crate) fn client_ip(ext: &http::Extensions) -> String {
    use lambda_http::request::RequestContext;
    match ext.get::<RequestContext>() {
        Some(RequestContext::ApiGatewayV2(c)) => {
            return c.http.source_ip.clone().unwrap_or_default();
        }
        Some(RequestContext::ApiGatewayV1(c)) => {
            return c.identity.source_ip.clone().unwrap_or_default();
        }
        _ => {}
    }
    ext.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip().to_string()).unwrap_or_default()
}

/// The caller's request context, for logs and session metadata.
pub struct Ctx(pub RequestCtx);

impl<S: Send + Sync> FromRequestParts<S> for Ctx {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, AppError> {
        let user_agent = parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .chars()
            .take(256)
            .collect();
        Ok(Ctx(RequestCtx { request_id: super::request_id::current(), ip: client_ip(&parts.extensions), user_agent }))
    }
}

/// A bearer-authenticated caller. The token is read from `Authorization` only.
pub struct Bearer(pub Caller, pub RequestCtx);

impl FromRequestParts<Arc<AuthService>> for Bearer {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, svc: &Arc<AuthService>) -> Result<Self, AppError> {
        let Ctx(ctx) = Ctx::from_request_parts(parts, svc).await?;
        let token = bearer_token(parts)?;
        let caller = svc.authenticate(token, &ctx).await?;
        Ok(Bearer(caller, ctx))
    }
}

/// A caller with a valid admin token (401 without a valid token, 403 for a non-admin).
pub struct AdminBearer(pub Caller, pub RequestCtx);

impl FromRequestParts<Arc<AuthService>> for AdminBearer {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, svc: &Arc<AuthService>) -> Result<Self, AppError> {
        let Ctx(ctx) = Ctx::from_request_parts(parts, svc).await?;
        let token = bearer_token(parts)?;
        let caller = svc.authenticate_admin(token, &ctx).await?;
        Ok(AdminBearer(caller, ctx))
    }
}

/// The token of `Authorization: Bearer …` (never the query string).
fn bearer_token(parts: &Parts) -> Result<&str, AppError> {
    let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
        return Err(AppError::Unauthorized { sent: false });
    };
    let value = value.to_str().map_err(|_| AppError::Unauthorized { sent: true })?;
    match value.split_once(' ') {
        Some((scheme, t)) if scheme.eq_ignore_ascii_case("bearer") && !t.trim().is_empty() => Ok(t.trim()),
        _ => Err(AppError::Unauthorized { sent: true }),
    }
}
