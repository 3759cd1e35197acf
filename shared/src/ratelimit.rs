//! Rate limits for the unauthenticated endpoints: per client IP and per normalized email.
//!
//! Scheme: sliding-window counter. Each key has one DynamoDB item per fixed window of `w`
//! seconds; a request is admitted if `hits(current) + floor(hits(previous) * (w - elapsed) / w)`
//! stays within the limit. The previous window is closed (read-only), and the current one is
//! counted with one conditional `ADD` (`hits < allowed`), so concurrent requests can never
//! exceed the limit. Items expire by TTL two windows after they start; reads ignore expired
//! items. A limited request does no other work.

use std::collections::HashMap;

use crate::error::StoreError;
use crate::store::Store;

/// `max` requests per `window` seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub max: u32,
    pub window: u64,
}

/// The limits of one endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EndpointLimits {
    pub ip: Option<Limit>,
    pub email: Option<Limit>,
}

/// Whether limits apply, and each endpoint's limits (by function binary name).
#[derive(Debug, Clone)]
pub struct RateLimits {
    pub enabled: bool,
    pub endpoints: HashMap<&'static str, EndpointLimits>,
}

const fn l(max: u32, window: u64) -> Option<Limit> {
    Some(Limit { max, window })
}

/// The defaults: generous for people, tight for scripts; lockout still guards passwords.
pub const DEFAULTS: [(&str, EndpointLimits); 10] = [
    ("login", EndpointLimits { ip: l(30, 60), email: l(10, 60) }),
    ("token", EndpointLimits { ip: l(30, 60), email: l(10, 60) }),
    ("signup", EndpointLimits { ip: l(10, 60), email: l(3, 3600) }),
    ("resend-verification", EndpointLimits { ip: l(10, 60), email: l(3, 3600) }),
    ("verify-email", EndpointLimits { ip: l(20, 60), email: None }),
    ("refresh", EndpointLimits { ip: l(60, 60), email: None }),
    ("logout", EndpointLimits { ip: l(60, 60), email: None }),
    ("forgot-password", EndpointLimits { ip: l(10, 60), email: l(3, 3600) }),
    ("reset-password", EndpointLimits { ip: l(10, 60), email: None }),
    ("confirm-email-change", EndpointLimits { ip: l(20, 60), email: None }),
];

impl Default for RateLimits {
    fn default() -> Self {
        Self { enabled: false, endpoints: DEFAULTS.into_iter().collect() }
    }
}

fn parse_limit(s: &str) -> Option<Limit> {
    let (max, window) = s.split_once('/')?;
    Some(Limit { max: max.trim().parse().ok()?, window: window.trim().parse().ok().filter(|w| *w > 0)? })
}

impl RateLimits {
    /// `RATE_LIMITS_ENABLED=true` turns limits on; `RATE_LIMIT_<ENDPOINT>=ip=30/60,email=10/60`
    /// (endpoint in upper case, `-` as `_`; `off` for none) overrides one endpoint.
    pub fn from_env(enabled: bool, var: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let mut me = RateLimits { enabled, ..Default::default() };
        for (name, limits) in me.endpoints.iter_mut() {
            let env = format!("RATE_LIMIT_{}", name.to_uppercase().replace('-', "_"));
            let Some(spec) = var(&env) else { continue };
            let mut parsed = EndpointLimits::default();
            for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty() && *p != "off") {
                match part.split_once('=') {
                    Some(("ip", v)) => parsed.ip = Some(parse_limit(v).ok_or(format!("{env}: bad limit {v}"))?),
                    Some(("email", v)) => parsed.email = Some(parse_limit(v).ok_or(format!("{env}: bad limit {v}"))?),
                    _ => return Err(format!("{env}: expected ip=N/SECONDS,email=N/SECONDS")),
                }
            }
            *limits = parsed;
        }
        Ok(me)
    }
}

/// The outcome for one request, with what the `RateLimit-*` headers report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub limited: bool,
    pub limit: u32,
    pub remaining: u32,
    /// Seconds until the current window ends.
    pub reset: u64,
}

async fn check_one(store: &dyn Store, key: &str, lim: Limit, now: i64) -> Result<Decision, StoreError> {
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

/// Counts the request against the endpoint's IP and email limits; the most restrictive wins.
/// `None` if the endpoint has no limits or limits are off.
pub async fn check(
    store: &dyn Store,
    limits: &RateLimits,
    endpoint: &str,
    ip: &str,
    email: Option<&str>,
    now: i64,
) -> Result<Option<Decision>, StoreError> {
    if !limits.enabled {
        return Ok(None);
    }
    let Some(cfg) = limits.endpoints.get(endpoint) else { return Ok(None) };
    let mut out: Option<Decision> = None;
    let scopes = [(cfg.ip, "ip", Some(ip)), (cfg.email, "email", email)];
    for (lim, scope, id) in scopes {
        let (Some(lim), Some(id)) = (lim, id) else { continue };
        let d = check_one(store, &format!("{endpoint}#{scope}#{id}"), lim, now).await?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;

    fn limits(max: u32, window: u64) -> RateLimits {
        let mut r = RateLimits { enabled: true, ..Default::default() };
        r.endpoints.insert("login", EndpointLimits { ip: l(max, window), email: None });
        r
    }

    #[tokio::test]
    async fn sliding_window_carries_the_previous_window_by_weight() {
        let s = MemoryStore::new();
        let r = limits(10, 100);
        let t0 = 1_000_000; // a window start
        for _ in 0..10 {
            assert!(!check(&s, &r, "login", "ip1", None, t0).await.unwrap().unwrap().limited);
        }
        assert!(check(&s, &r, "login", "ip1", None, t0 + 99).await.unwrap().unwrap().limited);
        // 30 s into the next window, 70% of the previous 10 hits still count: 3 are allowed.
        let admitted = futures::future::join_all((0..6).map(|_| check(&s, &r, "login", "ip1", None, t0 + 130))).await;
        assert_eq!(admitted.iter().filter(|d| !d.as_ref().unwrap().unwrap().limited).count(), 3);
        // Two windows later everything has expired.
        assert!(!check(&s, &r, "login", "ip1", None, t0 + 200).await.unwrap().unwrap().limited);
    }

    #[tokio::test]
    async fn disabled_or_unlisted_endpoints_are_not_limited_and_do_not_count() {
        let s = MemoryStore::new();
        let mut r = limits(1, 60);
        assert!(check(&s, &r, "me", "ip", None, 0).await.unwrap().is_none());
        r.enabled = false;
        assert!(check(&s, &r, "login", "ip", None, 0).await.unwrap().is_none());
        assert_eq!(crate::store::RateLimitStore::rate_count(&s, "login#ip#ip#0", 0).await.unwrap(), 0);
    }

    #[test]
    fn env_overrides_parse_and_bad_ones_are_refused() {
        let r = RateLimits::from_env(true, |k| {
            (k == "RATE_LIMIT_RESEND_VERIFICATION").then(|| "ip=5/10,email=1/60".into())
        })
        .unwrap();
        assert_eq!(r.endpoints["resend-verification"], EndpointLimits { ip: l(5, 10), email: l(1, 60) });
        assert_eq!(r.endpoints["login"], DEFAULTS[0].1);
        let off = RateLimits::from_env(true, |k| (k == "RATE_LIMIT_LOGIN").then(|| "off".into())).unwrap();
        assert_eq!(off.endpoints["login"], EndpointLimits::default());
        assert!(RateLimits::from_env(true, |k| (k == "RATE_LIMIT_LOGIN").then(|| "ip=x".into())).is_err());
    }
}
