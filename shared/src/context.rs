//! Who made a request, below both the domain and the HTTP layer: the request id, the client IP
//! and the user agent. The HTTP layer builds it once per request; the domain only reads it (for
//! security events and session metadata).

use std::sync::{Arc, Mutex};

use crate::config::Decision;

/// The most restrictive rate-limit decision made while serving a request (for the
/// `RateLimit-*` headers); shared by the HTTP layer and the use case serving the request.
#[derive(Debug, Clone, Default)]
pub struct RateSlot(Arc<Mutex<Option<Decision>>>);

impl RateSlot {
    /// Keeps `d` if it is more restrictive than what is there.
    pub fn record(&self, d: Decision) {
        if let Ok(mut g) = self.0.lock()
            && g.is_none_or(|old| d.worse_than(&old))
        {
            *g = Some(d);
        }
    }

    pub fn get(&self) -> Option<Decision> {
        self.0.lock().ok().and_then(|g| *g)
    }
}

/// The caller's request context.
#[derive(Debug, Clone, Default)]
pub struct RequestCtx {
    /// API Gateway's request id in Lambda, a fresh UUID locally.
    pub request_id: String,
    /// The id the client sent in `X-Request-Id`, if well formed: echoed and logged beside the
    /// request id, never in its place.
    pub client_request_id: Option<String>,
    /// API Gateway's `sourceIp` in Lambda, the socket peer locally; never `X-Forwarded-For`.
    pub ip: String,
    pub user_agent: String,
    /// Rate-limit decisions made for this request.
    pub rate: RateSlot,
}

impl RequestCtx {
    /// A context for work that is not an HTTP request (the CLI, start-up).
    pub fn internal(request_id: impl Into<String>) -> Self {
        Self { request_id: request_id.into(), ..Default::default() }
    }
}

/// An incoming request id is echoed only if it is short and made of safe characters.
pub fn well_formed_request_id(v: &str) -> bool {
    !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
}
