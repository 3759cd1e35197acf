//! Rate limits for the endpoints that hash passwords, send mail or spend tokens: per client IP
//! and per normalized email. Each endpoint declares its defaults (`http::Endpoint::limits`);
//! configuration switches limits on and overrides them per endpoint.
//!
//! Scheme: sliding-window counter. Each key has one DynamoDB item holding the count of the
//! current fixed window of `w` seconds and the count of the window before it; a request is
//! admitted if `hits(current) + floor(hits(previous) * (w - elapsed) / w)` stays within the
//! limit. A request costs one conditional write in the common case: an atomic `ADD` to the
//! current window (refused once it holds the limit) whose answer carries the previous count;
//! a hit that the carried share pushes over the limit is taken back with a second write. Every
//! admitted request holds a hit that was counted before it was admitted, so concurrent requests
//! can never exceed the limit. A new window rolls the item over with a write conditioned on the
//! old window's exact count. Items expire by TTL two windows after their window starts, and the
//! window start stored in the item, not TTL, decides what counts, so an expired item that TTL has
//! not deleted yet counts as absent. A limited request does no other work.

use std::sync::Arc;

use crate::clock::SharedClock;
pub use crate::config::{Decision, EndpointLimits, Limit, RateLimits, override_variable, per};
use crate::context::{Admitted, RequestCtx};
use crate::domain::error::{DomainError, DomainResult};
use crate::email::Email;
use crate::store::{RateLimitStore, StoreError};

async fn check_one(store: &dyn RateLimitStore, key: &str, lim: Limit, now: i64) -> Result<Decision, StoreError> {
    let w = lim.window as i64;
    let start = now - now.rem_euclid(w);
    let reset = (w - (now - start)).max(1) as u64;
    let limited = Decision { limited: true, limit: lim.max, remaining: 0, reset };
    let Some(count) = store.rate_hit(key, start, w, lim.max, start + 2 * w).await? else { return Ok(limited) };
    // The previous window counts by the share of it that the sliding window still covers.
    let elapsed = (now - count.start).clamp(0, w);
    let carried = (count.previous as i64 * (w - elapsed)) / w;
    let used = count.hits as i64 + carried;
    if used > lim.max as i64 {
        // Refused: the hit is taken back so that refused requests do not count. If that write
        // fails the count stays one higher, which only limits more.
        if let Err(e) = store.rate_unhit(key, count.start).await {
            tracing::warn!(error = %e, "rate-limit hit could not be taken back");
        }
        return Ok(limited);
    }
    Ok(Decision { limited: false, limit: lim.max, remaining: (lim.max as i64 - used) as u32, reset })
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

    /// Counts one request of `binary` against `limit` for the scope `scope` (`ip`, `email`)
    /// and its id.
    pub async fn check(&self, binary: &str, scope: &str, id: &str, limit: Limit) -> Result<Decision, StoreError> {
        check_one(self.store.as_ref(), &format!("{binary}#{scope}#{id}"), limit, self.clock.now()).await
    }
}

/// Which identity a `Gate` counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The normalized email the body names.
    Email,
    /// The account acted on.
    User,
}

impl Scope {
    fn name(self) -> &'static str {
        match self {
            Scope::Email => "email",
            Scope::User => "user",
        }
    }
}

/// One endpoint's per-email or per-account limit, applied by its use case as soon as it knows
/// the identity (the address normalized, the caller authenticated, the token parsed) and
/// before any other work: no hashing, no mail.
pub struct Gate {
    limiter: Arc<RateLimiter>,
    binary: &'static str,
    scope: Scope,
    limit: Limit,
}

impl Gate {
    /// The `scope` gate of `binary` with `defaults`, or `None` if no such limit applies.
    pub fn new(
        limiter: Arc<RateLimiter>,
        binary: &'static str,
        defaults: EndpointLimits,
        scope: Scope,
    ) -> Option<Self> {
        let limits = limiter.limits_for(binary, defaults)?;
        let limit = match scope {
            Scope::Email => limits.email,
            Scope::User => limits.user,
        }?;
        Some(Self { limiter, binary, scope, limit })
    }

    /// Counts the request for `id`; `RateLimited` past the limit. The decision is recorded in
    /// `ctx` for the `RateLimit-*` headers.
    pub async fn admit(&self, id: &str, ctx: &RequestCtx) -> DomainResult<()> {
        let d = self.limiter.check(self.binary, self.scope.name(), id, self.limit).await?;
        ctx.rate.record(d);
        if d.limited {
            crate::logging::security_event("rate_limited", ctx, None, self.binary);
            crate::metrics::count("RateLimited");
            return Err(DomainError::RateLimited { limit: d.limit, reset: d.reset });
        }
        Ok(())
    }
}

impl Gate {
    /// Counts the request for `id` like `admit`, but a spent budget is not the caller's error:
    /// `false`, with no `RateLimit-*` headers and no 429 (forgot-password, whose per-address
    /// budget others can spend: the request is answered as usual and does nothing new).
    pub async fn within(&self, id: &str, ctx: &RequestCtx) -> DomainResult<bool> {
        let d = self.limiter.check(self.binary, self.scope.name(), id, self.limit).await?;
        if d.limited {
            crate::logging::security_event("rate_limited", ctx, None, self.binary);
            crate::metrics::count("RateLimited");
        }
        Ok(!d.limited)
    }
}

/// Applies `gate`, if any, to `id` without refusing (`Gate::within`): `false` past the limit.
pub(crate) async fn within(gate: &Option<Gate>, id: &str, ctx: &RequestCtx) -> DomainResult<bool> {
    match gate {
        Some(g) => g.within(id, ctx).await,
        None => Ok(true),
    }
}

/// The per-email key of a password sign-in: the address as seen from the client's IP (IPv6 by
/// /64), so that the traffic of other clients never spends the owner's budget.
pub(crate) fn email_from_ip(email: &Email, ctx: &RequestCtx) -> String {
    crate::store::pair_lock_key(email.as_str(), &crate::context::ip_key(&ctx.ip))
}

/// Waits until the per-IP rate limit admitted the request (`context::Admission`): what a use
/// case whose endpoint reads while the limit is counted calls before its first write.
pub(crate) async fn admitted(ctx: &RequestCtx) -> DomainResult<()> {
    match ctx.admission.wait().await {
        Admitted::Yes => Ok(()),
        Admitted::Limited(d) => Err(DomainError::RateLimited { limit: d.limit, reset: d.reset }),
        Admitted::Failed => Err(DomainError::Unavailable("rate limit could not be counted".into())),
    }
}

/// Applies `gate`, if any, to `email`.
pub(crate) async fn admit(gate: &Option<Gate>, email: &Email, ctx: &RequestCtx) -> DomainResult<()> {
    admit_id(gate, email.as_str(), ctx).await
}

/// Applies `gate`, if any, to the account `id`.
pub(crate) async fn admit_id(gate: &Option<Gate>, id: &str, ctx: &RequestCtx) -> DomainResult<()> {
    match gate {
        Some(g) => g.admit(id, ctx).await,
        None => Ok(()),
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
        r.check("login", "ip", "ip1", lim.ip.unwrap()).await.unwrap().limited
    }

    #[tokio::test]
    async fn sliding_window_carries_the_previous_window_by_weight() {
        let t0 = 1_000_000; // a window start
        let clock = ManualClock::at(t0);
        let r = limiter(&clock);
        let lim = EndpointLimits { ip: per(10, 100), email: None, user: None };
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
