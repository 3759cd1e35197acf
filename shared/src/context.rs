//! Who made a request, below both the domain and the HTTP layer: the request id, the client IP
//! and the user agent. The HTTP layer builds it once per request; the domain only reads it (for
//! security events and session metadata).

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
