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

/// The per-IP rate limit's decision, for an endpoint whose handler starts while the limit is
/// still being counted (`http::ratelimit::limited_after_reads`): the handler may read, but
/// waits for `Admission::wait` before anything else (a write, a hash, a mail). The default is
/// an admission already granted (the limit was counted before the handler started, or none
/// applies).
#[derive(Debug, Clone, Default)]
pub struct Admission(Option<tokio::sync::watch::Receiver<Option<Admitted>>>);

/// What `Admission::wait` learns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admitted {
    Yes,
    /// Over the limit: the request does nothing more.
    Limited(Decision),
    /// The count could not be made: the request fails closed.
    Failed,
}

/// Sends the decision to the handler's `Admission`.
#[derive(Debug)]
pub struct AdmissionSender(tokio::sync::watch::Sender<Option<Admitted>>);

impl Admission {
    /// An admission decided later through the returned sender.
    pub fn pending() -> (AdmissionSender, Admission) {
        let (tx, rx) = tokio::sync::watch::channel(None);
        (AdmissionSender(tx), Admission(Some(rx)))
    }

    /// Waits for the decision (at once if it was made before the handler started).
    pub async fn wait(&self) -> Admitted {
        let Some(rx) = &self.0 else { return Admitted::Yes };
        let mut rx = rx.clone();
        match rx.wait_for(Option::is_some).await {
            Ok(v) => v.unwrap_or(Admitted::Failed),
            Err(_) => Admitted::Failed,
        }
    }
}

impl AdmissionSender {
    pub fn send(self, decision: Admitted) {
        let _ = self.0.send(Some(decision));
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
    /// Whether the per-IP limit admitted the request (see `Admission`).
    pub admission: Admission,
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

/// The key a client IP is counted under (rate limits, per-IP lockout): an IPv4 address as is,
/// an IPv6 address by its /64 (one subscriber's prefix), so rotating addresses inside a prefix
/// does not reset a count. IPv4-mapped IPv6 addresses count as their IPv4 address.
pub fn ip_key(ip: &str) -> String {
    match ip.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
        Ok(std::net::IpAddr::V4(v4)) => v4.to_string(),
        Err(_) => ip.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::ip_key;

    #[test]
    fn given_ipv6_addresses_then_they_count_by_their_64_prefix() {
        assert_eq!(ip_key("2001:db8:1:2:aaaa::1"), ip_key("2001:db8:1:2:ffff:0:0:9"));
        assert_eq!(ip_key("2001:db8:1:2::5"), "2001:db8:1:2::/64");
        assert_ne!(ip_key("2001:db8:1:2::5"), ip_key("2001:db8:1:3::5"));
        assert_eq!(ip_key("::ffff:192.0.2.7"), "192.0.2.7");
        assert_eq!(ip_key("192.0.2.7"), "192.0.2.7");
    }
}
