//! Rate limits for the endpoints that hash passwords, send mail or spend tokens: per client IP
//! and per normalized email. Each endpoint declares its defaults (`http::Endpoint::limits`);
//! configuration switches limits on and overrides them per endpoint.
//!
//! Scheme: sliding-window counter. Each key has one DynamoDB item per fixed window of `w`
//! seconds; a request is admitted if `hits(current) + floor(hits(previous) * (w - elapsed) / w)`
//! stays within the limit. The previous window is closed (read-only), and the current one is
//! counted with one conditional `ADD` (`hits < allowed`), so concurrent requests can never
//! exceed the limit. Items expire by TTL two windows after they start; reads ignore expired
//! items. A limited request does no other work.

use std::sync::Arc;

use crate::clock::SharedClock;
pub use crate::config::{EndpointLimits, Limit, RateLimits, override_variable, per};
use crate::store::{RateLimitStore, StoreError};

/// The outcome for one request, with what the `RateLimit-*` headers report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub limited: bool,
    pub limit: u32,
    pub remaining: u32,
    /// Seconds until the current window ends.
    pub reset: u64,
}

async fn check_one(store: &dyn RateLimitStore, key: &str, lim: Limit, now: i64) -> Result<Decision, StoreError> {
    let w = lim.window as i64;
    let start = now - now.rem_euclid(w);
    let elapsed = now - start;
    let previous = store.rate_count(&format!("{key}#{}", start - w), now).await? as i64;
    let carried = (previous * (w - elapsed)) / w;
    let allowed = (lim.max as i64 - carried).max(0) as u32;
    let reset = (w - elapsed).max(1) as u64;
    if allowed == 0 {
        return Ok(Decision { limited: true, limit: lim.max, remaining: 0, reset });
    }
    match store.rate_hit(&format!("{key}#{start}"), allowed, now, start + 2 * w).await? {
        Some(hits) => Ok(Decision { limited: false, limit: lim.max, remaining: allowed.saturating_sub(hits), reset }),
        None => Ok(Decision { limited: true, limit: lim.max, remaining: 0, reset }),
    }
}

/// Counts requests against an endpoint's limits.
pub struct RateLimiter {
    store: Arc<dyn RateLimitStore>,
    limits: RateLimits,
    clock: SharedClock,
}

impl RateLimiter {
    pub fn new(store: Arc<dyn RateLimitStore>, limits: RateLimits, clock: SharedClock) -> Self {
        Self { store, limits, clock }
    }

    /// The limits that apply to `binary` (see `RateLimits::effective`).
    pub fn limits_for(&self, binary: &str, defaults: EndpointLimits) -> Option<EndpointLimits> {
        self.limits.effective(binary, defaults)
    }

    /// Counts the request against `limits` for the client IP and, if given, the normalized
    /// email; the most restrictive outcome wins, and a limited scope stops the count. `None`
    /// when no scope applies (an email limit and no email in the body).
    pub async fn check(
        &self,
        binary: &str,
        limits: EndpointLimits,
        ip: &str,
        email: Option<&str>,
    ) -> Result<Option<Decision>, StoreError> {
        let now = self.clock.now();
        let mut out: Option<Decision> = None;
        let scopes = [(limits.ip, "ip", Some(ip)), (limits.email, "email", email)];
        for (lim, scope, id) in scopes {
            let (Some(lim), Some(id)) = (lim, id) else { continue };
            let d = check_one(self.store.as_ref(), &format!("{binary}#{scope}#{id}"), lim, now).await?;
            let worse = match out {
                None => true,
                Some(o) => d.limited && !o.limited || (d.limited == o.limited && d.remaining < o.remaining),
            };
            if worse {
                out = Some(d);
            }
            if d.limited {
                break;
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::store::memory::MemoryStore;

    fn limiter(clock: &ManualClock) -> RateLimiter {
        RateLimiter::new(
            Arc::new(MemoryStore::new()),
            RateLimits { enabled: true, ..Default::default() },
            clock.shared(),
        )
    }

    async fn limited(r: &RateLimiter, lim: EndpointLimits) -> bool {
        r.check("login", lim, "ip1", None).await.unwrap().unwrap().limited
    }

    #[tokio::test]
    async fn sliding_window_carries_the_previous_window_by_weight() {
        let t0 = 1_000_000; // a window start
        let clock = ManualClock::at(t0);
        let r = limiter(&clock);
        let lim = EndpointLimits { ip: per(10, 100), email: None };
        for _ in 0..10 {
            assert!(!limited(&r, lim).await);
        }
        clock.set(t0 + 99);
        assert!(limited(&r, lim).await);
        // 30 s into the next window, 70% of the previous 10 hits still count: 3 are allowed.
        clock.set(t0 + 130);
        let admitted = futures::future::join_all((0..6).map(|_| limited(&r, lim))).await;
        assert_eq!(admitted.iter().filter(|l| !**l).count(), 3);
        // Two windows later everything has expired.
        clock.set(t0 + 200);
        assert!(!limited(&r, lim).await);
    }
}
