//! Rate limits in front of an endpoint's handlers. The per-IP limit is counted here, before
//! the body is read: a limited request costs the counter write and nothing more (no parsing,
//! hashing, mail or other store work). The per-email limit is counted by the use case right
//! after it normalizes the address (`domain::ratelimit::Gate`), so the body is parsed and
//! the address normalized once. Both record their decision in the request's `RateSlot`, and
//! the most restrictive one is reported in the `RateLimit-*` headers.
//!
//! An endpoint whose handler must read before it can do anything else (refresh reads the user
//! and the session, login the account) mounts through `limited_after_reads` instead: the
//! per-IP limit is counted while the handler runs, and the use case waits for the decision
//! (`context::Admission`) before its first write, hash or mail, so that the count and the reads
//! take one round trip. The one write that may run alongside is another rate-limit count (login's
//! per-email limit, tighter than the per-IP one, so that one IP reaches it either way). A limited
//! request then costs the counter writes and those reads, and answers 429 whatever the handler
//! made of it.
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
use crate::config::Decision;
use crate::context::{Admission, Admitted, RateSlot, RequestCtx};
use crate::domain::error::DomainError;
use crate::domain::ratelimit::RateLimiter;

/// `r` behind `endpoint`'s rate limits.
pub(crate) fn limited(r: OpenApiRouter, endpoint: &'static Endpoint, limiter: Arc<RateLimiter>) -> OpenApiRouter {
    r.route_layer(middleware::from_fn(move |req: Request, next: Next| {
        let limiter = limiter.clone();
        async move { check(endpoint, &limiter, req, next).await }
    }))
}

/// `r` behind `endpoint`'s rate limits, its handler reading while the per-IP limit is counted.
pub(crate) fn limited_after_reads(
    r: OpenApiRouter,
    endpoint: &'static Endpoint,
    limiter: Arc<RateLimiter>,
) -> OpenApiRouter {
    r.route_layer(middleware::from_fn(move |req: Request, next: Next| {
        let limiter = limiter.clone();
        async move { check_alongside(endpoint, &limiter, req, next).await }
    }))
}

async fn check_alongside(endpoint: &'static Endpoint, limiter: &RateLimiter, mut req: Request, next: Next) -> Response {
    let Some(limit) = limiter.limits_for(endpoint.binary, endpoint.limits).and_then(|l| l.ip) else {
        return check(endpoint, limiter, req, next).await;
    };
    let slot = RateSlot::default();
    req.extensions_mut().insert(slot.clone());
    let (tx, admission) = Admission::pending();
    req.extensions_mut().insert(admission);
    let ip = extract::client_ip(req.extensions());
    let ids = req.extensions().get::<RequestId>().cloned();
    let count = async {
        let decision = limiter.check(endpoint.binary, "ip", &crate::context::ip_key(&ip), limit).await;
        tx.send(match &decision {
            Ok(d) if d.limited => Admitted::Limited(*d),
            Ok(_) => Admitted::Yes,
            Err(_) => Admitted::Failed,
        });
        decision
    };
    let (decision, resp) = tokio::join!(count, next.run(req));
    let decision = match decision {
        Ok(d) => d,
        Err(e) => return ApiError::from(e).into_response(),
    };
    slot.record(decision);
    if decision.limited {
        return refused(endpoint, decision, ip, ids);
    }
    with_headers(resp, &slot)
}

fn refused(endpoint: &'static Endpoint, decision: Decision, ip: String, ids: Option<RequestId>) -> Response {
    let ctx = RequestCtx {
        request_id: ids.as_ref().map(|r| r.server.clone()).unwrap_or_default(),
        client_request_id: ids.and_then(|r| r.client),
        ip,
        ..Default::default()
    };
    crate::logging::security_event("rate_limited", &ctx, None, endpoint.binary);
    crate::metrics::count("RateLimited");
    ApiError::Domain(DomainError::RateLimited { limit: decision.limit, reset: decision.reset }).into_response()
}

fn with_headers(mut resp: Response, slot: &RateSlot) -> Response {
    if let Some(d) = slot.get().filter(|d| !d.limited) {
        let h = resp.headers_mut();
        h.insert("ratelimit-limit", HeaderValue::from(d.limit));
        h.insert("ratelimit-remaining", HeaderValue::from(d.remaining));
        h.insert("ratelimit-reset", HeaderValue::from(d.reset));
    }
    resp
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
            return refused(endpoint, decision, ip, ids);
        }
    }
    let resp = next.run(req).await;
    with_headers(resp, &slot)
}
