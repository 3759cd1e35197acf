//! Rate limits in front of an endpoint's handlers. The per-IP limit is counted here, before
//! the body is read: a limited request costs the counter write and nothing more (no parsing,
//! hashing, mail or other store work). The per-email limit is counted by the use case right
//! after it normalizes the address (`domain::ratelimit::Gate`), so the body is parsed and
//! the address normalized once. Both record their decision in the request's `RateSlot`, and
//! the most restrictive one is reported in the `RateLimit-*` headers.
//!
//! An endpoint whose declaration has limits mounts its routes through `limited`;
//! `tests/e2e/ratelimit.rs` checks that every such endpoint answers 429 past its limit.

use std::sync::Arc;

use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use http::HeaderValue;
use utoipa_axum::router::OpenApiRouter;

use super::Endpoint;
use super::extract::{self, RequestId};
use super::problem::ApiError;
use crate::context::{RateSlot, RequestCtx};
use crate::domain::error::DomainError;
use crate::domain::ratelimit::RateLimiter;

/// `r` behind `endpoint`'s rate limits.
pub(crate) fn limited(r: OpenApiRouter, endpoint: &'static Endpoint, limiter: Arc<RateLimiter>) -> OpenApiRouter {
    r.route_layer(middleware::from_fn(move |req: Request, next: Next| {
        let limiter = limiter.clone();
        async move { check(endpoint, &limiter, req, next).await }
    }))
}

async fn check(endpoint: &'static Endpoint, limiter: &RateLimiter, mut req: Request, next: Next) -> Response {
    let Some(limits) = limiter.limits_for(endpoint.binary, endpoint.limits) else { return next.run(req).await };
    let slot = RateSlot::default();
    req.extensions_mut().insert(slot.clone());
    if let Some(limit) = limits.ip {
        let ip = extract::client_ip(req.extensions());
        let decision = match limiter.check(endpoint.binary, "ip", &crate::context::ip_key(&ip), limit).await {
            Ok(d) => d,
            Err(e) => return ApiError::from(e).into_response(),
        };
        slot.record(decision);
        if decision.limited {
            let ids = req.extensions().get::<RequestId>().cloned();
            let ctx = RequestCtx {
                request_id: ids.as_ref().map(|r| r.server.clone()).unwrap_or_default(),
                client_request_id: ids.and_then(|r| r.client),
                ip,
                ..Default::default()
            };
            crate::logging::security_event("rate_limited", &ctx, None, endpoint.binary);
            crate::metrics::count("RateLimited");
            return ApiError::Domain(DomainError::RateLimited { limit: decision.limit, reset: decision.reset })
                .into_response();
        }
    }
    let mut resp = next.run(req).await;
    if let Some(d) = slot.get().filter(|d| !d.limited) {
        let h = resp.headers_mut();
        h.insert("ratelimit-limit", HeaderValue::from(d.limit));
        h.insert("ratelimit-remaining", HeaderValue::from(d.remaining));
        h.insert("ratelimit-reset", HeaderValue::from(d.reset));
    }
    resp
}
