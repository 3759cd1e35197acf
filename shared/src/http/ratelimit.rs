//! Rate limits in front of an endpoint's handlers: a limited request costs the counter writes
//! and nothing more (no hashing, no mail, no other store work). An endpoint whose declaration
//! has limits mounts its routes through `limited`; `tests/e2e/ratelimit.rs` checks that every
//! such endpoint answers 429 past its limit.

use std::sync::Arc;

use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use http::HeaderValue;
use utoipa_axum::router::OpenApiRouter;

use super::Endpoint;
use super::extract::{self, MAX_BODY, RequestId};
use super::problem::ApiError;
use crate::context::RequestCtx;
use crate::domain::error::DomainError;
use crate::domain::ratelimit::RateLimiter;

/// `r` behind `endpoint`'s rate limits.
pub(crate) fn limited(r: OpenApiRouter, endpoint: &'static Endpoint, limiter: Arc<RateLimiter>) -> OpenApiRouter {
    r.route_layer(middleware::from_fn(move |req: Request, next: Next| {
        let limiter = limiter.clone();
        async move { check(endpoint, &limiter, req, next).await }
    }))
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

async fn check(endpoint: &'static Endpoint, limiter: &RateLimiter, req: Request, next: Next) -> Response {
    let Some(limits) = limiter.limits_for(endpoint.binary, endpoint.limits) else { return next.run(req).await };
    let ip = extract::client_ip(req.extensions());
    let (req, email) = if limits.email.is_some() {
        let (parts, body) = req.into_parts();
        let Ok(bytes) = axum::body::to_bytes(body, MAX_BODY).await else {
            return ApiError::PayloadTooLarge.into_response();
        };
        let email = email_in(extract::content_type(&parts.headers).as_deref(), &bytes);
        (Request::from_parts(parts, axum::body::Body::from(bytes)), email)
    } else {
        (req, None)
    };
    let decision = match limiter.check(endpoint.binary, limits, &ip, email.as_deref()).await {
        Ok(Some(d)) => d,
        Ok(None) => return next.run(req).await,
        Err(e) => return ApiError::from(e).into_response(),
    };
    if decision.limited {
        let request_id = req.extensions().get::<RequestId>().map(|r| r.0.clone()).unwrap_or_default();
        let ctx = RequestCtx { request_id, ip, ..Default::default() };
        crate::logging::security_event("rate_limited", &ctx, None, endpoint.binary);
        crate::metrics::count("RateLimited");
        return ApiError::Domain(DomainError::RateLimited { limit: decision.limit, reset: decision.reset })
            .into_response();
    }
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert("ratelimit-limit", HeaderValue::from(decision.limit));
    h.insert("ratelimit-remaining", HeaderValue::from(decision.remaining));
    h.insert("ratelimit-reset", HeaderValue::from(decision.reset));
    resp
}
