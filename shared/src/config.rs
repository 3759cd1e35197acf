//! Configuration from environment variables, with the local server's embedded defaults (docs/operations.md).

use std::collections::HashMap;
use std::time::Duration;

/// Argon2id cost parameters (OWASP defaults: m=19456 KiB, t=2, p=1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashParams {
    pub m_kib: u32,
    pub t: u32,
    pub p: u32,
}

impl HashParams {
    pub const OWASP: HashParams = HashParams { m_kib: 19_456, t: 2, p: 1 };
    /// Cheap parameters for tests only.
    pub const TEST: HashParams = HashParams { m_kib: 256, t: 1, p: 1 };
}

/// Password policy knobs (docs/security.md "Passwords").
#[derive(Debug, Clone)]
pub struct PasswordPolicy {
    pub min_len: usize,
    pub max_len: usize,
    /// The seed's upper/lower/digit/special rules; off by default (NIST 800-63B).
    pub composition_rules: bool,
}

impl Default for PasswordPolicy {
    fn default() -> Self {
        Self { min_len: 12, max_len: 128, composition_rules: false }
    }
}

/// Lockout policy: threshold, then exponential backoff capped at `max`.
#[derive(Debug, Clone, Copy)]
pub struct LockoutPolicy {
    /// Failures from one IP that lock the account for that IP.
    pub threshold: u32,
    /// Failures from all IPs together that lock the account for everyone.
    pub account_ceiling: u32,
    pub base: Duration,
    pub max: Duration,
    /// How long a failure count is remembered without a new failure.
    pub window: Duration,
}

impl Default for LockoutPolicy {
    fn default() -> Self {
        Self {
            threshold: 5,
            account_ceiling: 50,
            base: Duration::from_secs(15 * 60),
            max: Duration::from_secs(24 * 3600),
            window: Duration::from_secs(24 * 3600),
        }
    }
}

impl LockoutPolicy {
    /// Lock length after `previous_locks` earlier locks: base * 2^n, capped.
    pub fn lock_duration(&self, previous_locks: u32) -> Duration {
        let factor = 1u64.checked_shl(previous_locks.min(32)).unwrap_or(u64::MAX);
        let secs = self.base.as_secs().saturating_mul(factor);
        Duration::from_secs(secs.min(self.max.as_secs()))
    }
}

/// Which mailer delivers mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MailerKind {
    Console,
    Ses,
}

/// Everything the service reads from its environment.
#[derive(Debug, Clone)]
pub struct Config {
    /// DynamoDB table; `None` means the in-memory store (local server only).
    pub table_name: Option<String>,
    /// What delivers mail: the mailer function, or the local server's in-process queue.
    pub mailer: MailerKind,
    pub mail_from: String,
    /// The SQS queue mail jobs go on (`MAIL_QUEUE_URL`; required in Lambda for every function
    /// that mails). Unset, the local server queues in-process.
    pub mail_queue_url: Option<String>,
    /// The wait before a failed delivery is tried again; it doubles per attempt.
    pub mail_retry_base: Duration,
    /// Deliveries of one job before it is dead-lettered (the queue's `maxReceiveCount`).
    pub mail_max_attempts: u32,
    pub product_name: String,
    /// Secrets Manager secret holding the signing keys; `None` means an ephemeral key.
    pub signing_key_secret_id: Option<String>,
    /// Secrets Manager secret whose text the TOTP secrets' encryption key is derived from;
    /// `None` means an ephemeral key (local server only: enrolments die with the process).
    pub mfa_key_secret_id: Option<String>,
    /// How long a function trusts its cached key set before re-reading the secret.
    pub key_cache_ttl: Duration,
    /// Algorithm of new keys (the local server's ephemeral key, rotation, `keys init`).
    pub signing_alg: crate::keys::KeyAlg,
    pub public_base_url: String,
    pub issuer: String,
    pub audience: String,
    pub access_ttl: Duration,
    pub refresh_idle_ttl: Duration,
    pub refresh_absolute_ttl: Duration,
    pub refresh_grace: Duration,
    pub verify_token_ttl: Duration,
    pub password: PasswordPolicy,
    pub hash: HashParams,
    pub hash_concurrency: usize,
    pub lockout: LockoutPolicy,
    /// Minimum answer time of the enumeration-sensitive endpoints (signup, resend).
    pub enumeration_floor: Duration,
    pub rate_limits: RateLimits,
    /// Mails one account may cause per hour when rate limits are on.
    pub mail_cap_per_hour: u32,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            table_name: None,
            mailer: MailerKind::Console,
            mail_from: "no-reply@example.com".into(),
            mail_queue_url: None,
            mail_retry_base: Duration::from_secs(30),
            mail_max_attempts: 10,
            product_name: "Secure Auth".into(),
            signing_key_secret_id: None,
            mfa_key_secret_id: None,
            key_cache_ttl: Duration::from_secs(300),
            signing_alg: crate::keys::KeyAlg::ES256,
            public_base_url: "http://127.0.0.1:3000".into(),
            issuer: "http://127.0.0.1:3000".into(),
            audience: "secure-auth".into(),
            access_ttl: Duration::from_secs(15 * 60),
            refresh_idle_ttl: Duration::from_secs(7 * 24 * 3600),
            refresh_absolute_ttl: Duration::from_secs(30 * 24 * 3600),
            refresh_grace: Duration::from_secs(10),
            verify_token_ttl: Duration::from_secs(24 * 3600),
            password: PasswordPolicy::default(),
            hash: HashParams::OWASP,
            hash_concurrency: 4,
            lockout: LockoutPolicy::default(),
            enumeration_floor: Duration::from_millis(300),
            rate_limits: RateLimits::default(),
            mail_cap_per_hour: 10,
        }
    }
}

/// A configuration variable that is set but unusable.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(pub String);

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn num<T: std::str::FromStr>(name: &str, default: T) -> Result<T, ConfigError> {
    match var(name) {
        None => Ok(default),
        Some(v) => v.trim().parse().map_err(|_| ConfigError(format!("{name} must be a number"))),
    }
}

fn secs(name: &str, default: Duration) -> Result<Duration, ConfigError> {
    num(name, default.as_secs()).map(Duration::from_secs)
}

fn flag(name: &str) -> bool {
    matches!(var(name).as_deref(), Some("1" | "true" | "yes" | "on"))
}

impl Config {
    /// Reads the environment; unset variables keep the embedded defaults.
    pub fn from_env() -> Result<Self, ConfigError> {
        let d = Config::default();
        let public_base_url =
            var("PUBLIC_BASE_URL").map(|u| u.trim_end_matches('/').to_owned()).unwrap_or(d.public_base_url);
        let mailer = match var("MAILER").as_deref() {
            None | Some("console") => MailerKind::Console,
            Some("ses") => MailerKind::Ses,
            Some(other) => {
                return Err(ConfigError(format!("MAILER must be console or ses, not {other}")));
            }
        };
        let min_len = num("PASSWORD_MIN_LENGTH", d.password.min_len)?;
        if min_len < 8 {
            return Err(ConfigError("PASSWORD_MIN_LENGTH must be at least 8".into()));
        }
        let hash = HashParams {
            m_kib: num("ARGON2_MEMORY_KIB", d.hash.m_kib)?,
            t: num("ARGON2_ITERATIONS", d.hash.t)?,
            p: num("ARGON2_PARALLELISM", d.hash.p)?,
        };
        let lockout = LockoutPolicy {
            threshold: num("LOCKOUT_THRESHOLD", d.lockout.threshold)?.max(1),
            account_ceiling: num("LOCKOUT_ACCOUNT_CEILING", d.lockout.account_ceiling)?.max(1),
            base: secs("LOCKOUT_BASE_SECONDS", d.lockout.base)?,
            max: secs("LOCKOUT_MAX_SECONDS", d.lockout.max)?,
            window: secs("LOCKOUT_WINDOW_SECONDS", d.lockout.window)?,
        };
        Ok(Self {
            table_name: var("TABLE_NAME"),
            mailer,
            mail_from: var("MAIL_FROM").unwrap_or(d.mail_from),
            mail_queue_url: var("MAIL_QUEUE_URL"),
            mail_retry_base: secs("MAIL_RETRY_BASE_SECONDS", d.mail_retry_base)?,
            mail_max_attempts: num("MAIL_MAX_ATTEMPTS", d.mail_max_attempts)?.max(1),
            product_name: var("PRODUCT_NAME").unwrap_or(d.product_name),
            signing_key_secret_id: var("SIGNING_KEY_SECRET_ID"),
            mfa_key_secret_id: var("MFA_KEY_SECRET_ID"),
            key_cache_ttl: secs("KEY_CACHE_SECONDS", d.key_cache_ttl)?,
            signing_alg: match var("SIGNING_ALG") {
                Some(a) => crate::keys::KeyAlg::parse(&a).map_err(|e| ConfigError(e.0))?,
                None => d.signing_alg,
            },
            issuer: var("JWT_ISSUER").unwrap_or_else(|| public_base_url.clone()),
            public_base_url,
            audience: var("JWT_AUDIENCE").unwrap_or(d.audience),
            access_ttl: secs("ACCESS_TOKEN_TTL_SECONDS", d.access_ttl)?,
            refresh_idle_ttl: secs("REFRESH_IDLE_TTL_SECONDS", d.refresh_idle_ttl)?,
            refresh_absolute_ttl: secs("REFRESH_ABSOLUTE_TTL_SECONDS", d.refresh_absolute_ttl)?,
            refresh_grace: secs("REFRESH_GRACE_SECONDS", d.refresh_grace)?,
            verify_token_ttl: secs("VERIFY_TOKEN_TTL_SECONDS", d.verify_token_ttl)?,
            password: PasswordPolicy { min_len, max_len: 128, composition_rules: flag("PASSWORD_COMPOSITION_RULES") },
            hash,
            hash_concurrency: num("HASH_CONCURRENCY", d.hash_concurrency)?.max(1),
            lockout,
            enumeration_floor: Duration::from_millis(num(
                "ENUMERATION_FLOOR_MS",
                d.enumeration_floor.as_millis() as u64,
            )?),
            rate_limits: RateLimits::from_env(flag("RATE_LIMITS_ENABLED"), std::env::vars()).map_err(ConfigError)?,
            mail_cap_per_hour: num("MAIL_CAP_PER_HOUR", d.mail_cap_per_hour)?.max(1),
        })
    }
}

// Rate limits: the data each endpoint declares, and what configuration does with it.

/// `max` requests per `window` seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub max: u32,
    pub window: u64,
}

/// The limits of one endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EndpointLimits {
    /// Per client IP (IPv6 by /64).
    pub ip: Option<Limit>,
    /// Per normalized email named in the body.
    pub email: Option<Limit>,
    /// Per account acted on (the bearer caller, or the account a mail token belongs to).
    pub user: Option<Limit>,
}

impl EndpointLimits {
    /// No limit at all.
    pub const NONE: EndpointLimits = EndpointLimits { ip: None, email: None, user: None };

    pub fn is_none(&self) -> bool {
        self.ip.is_none() && self.email.is_none() && self.user.is_none()
    }
}

/// The outcome of one rate-limit check, with what the `RateLimit-*` headers report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub limited: bool,
    pub limit: u32,
    pub remaining: u32,
    /// Seconds until the current window ends.
    pub reset: u64,
}

impl Decision {
    /// Whether `self` is more restrictive than `other` (limited first, then fewer remaining).
    pub fn worse_than(&self, other: &Decision) -> bool {
        (self.limited && !other.limited) || (self.limited == other.limited && self.remaining < other.remaining)
    }
}

/// A limit of `max` requests per `window` seconds (for declarations).
pub const fn per(max: u32, window: u64) -> Option<Limit> {
    Some(Limit { max, window })
}

/// Whether limits apply, and per-endpoint overrides of the declared defaults (by function
/// binary name).
#[derive(Debug, Clone, Default)]
pub struct RateLimits {
    pub enabled: bool,
    pub overrides: HashMap<String, EndpointLimits>,
}

fn parse_limit(s: &str) -> Option<Limit> {
    let (max, window) = s.split_once('/')?;
    Some(Limit { max: max.trim().parse().ok()?, window: window.trim().parse().ok().filter(|w| *w > 0)? })
}

/// The variable that overrides `binary`'s limits: `RATE_LIMIT_` and the name in upper case, `-`
/// as `_`.
pub fn override_variable(binary: &str) -> String {
    format!("RATE_LIMIT_{}", binary.to_uppercase().replace('-', "_"))
}

impl RateLimits {
    /// `RATE_LIMITS_ENABLED=true` turns limits on; `RATE_LIMIT_<ENDPOINT>=ip=30/60,email=10/60,user=5/3600`
    /// (`off` for none) overrides one endpoint. `vars` are the environment's (name, value) pairs.
    pub fn from_env(enabled: bool, vars: impl IntoIterator<Item = (String, String)>) -> Result<Self, String> {
        let mut me = RateLimits { enabled, ..Default::default() };
        for (env, spec) in vars {
            let Some(name) = env.strip_prefix("RATE_LIMIT_") else { continue };
            if name.is_empty() || spec.trim().is_empty() {
                continue;
            }
            let mut parsed = EndpointLimits::default();
            for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty() && *p != "off") {
                match part.split_once('=') {
                    Some(("ip", v)) => parsed.ip = Some(parse_limit(v).ok_or(format!("{env}: bad limit {v}"))?),
                    Some(("email", v)) => parsed.email = Some(parse_limit(v).ok_or(format!("{env}: bad limit {v}"))?),
                    Some(("user", v)) => parsed.user = Some(parse_limit(v).ok_or(format!("{env}: bad limit {v}"))?),
                    _ => return Err(format!("{env}: expected ip=N/SECONDS,email=N/SECONDS,user=N/SECONDS")),
                }
            }
            me.overrides.insert(name.to_lowercase().replace('_', "-"), parsed);
        }
        Ok(me)
    }

    /// The limits that apply to `binary` (declared `defaults` unless overridden); `None` when
    /// limits are off or none apply.
    pub fn effective(&self, binary: &str, defaults: EndpointLimits) -> Option<EndpointLimits> {
        if !self.enabled {
            return None;
        }
        Some(self.overrides.get(binary).copied().unwrap_or(defaults)).filter(|l| !l.is_none())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disabled_limits_or_endpoints_without_limits_apply_nothing() {
        let on = RateLimits { enabled: true, ..Default::default() };
        assert_eq!(on.effective("me", EndpointLimits::NONE), None);
        let off = RateLimits::default();
        assert_eq!(off.effective("login", EndpointLimits { ip: per(1, 60), email: None, user: None }), None);
    }

    #[test]
    fn env_overrides_parse_and_bad_ones_are_refused() {
        let env = |k: &str, v: &str| vec![(k.to_owned(), v.to_owned())];
        let r = RateLimits::from_env(true, env("RATE_LIMIT_RESEND_VERIFICATION", "ip=5/10,email=1/60")).unwrap();
        let declared = EndpointLimits { ip: per(10, 60), email: per(3, 3600), user: None };
        assert_eq!(
            r.effective("resend-verification", declared),
            Some(EndpointLimits { ip: per(5, 10), email: per(1, 60), user: None })
        );
        assert_eq!(r.effective("login", declared), Some(declared));
        let off = RateLimits::from_env(true, env("RATE_LIMIT_LOGIN", "off")).unwrap();
        assert_eq!(off.effective("login", declared), None);
        assert!(RateLimits::from_env(true, env("RATE_LIMIT_LOGIN", "ip=x")).is_err());
        assert_eq!(override_variable("users-revoke-sessions"), "RATE_LIMIT_USERS_REVOKE_SESSIONS");
    }

    #[test]
    fn backoff_doubles_and_caps_at_max() {
        let p = LockoutPolicy::default();
        assert_eq!(p.lock_duration(0).as_secs(), 900);
        assert_eq!(p.lock_duration(1).as_secs(), 1800);
        assert_eq!(p.lock_duration(2).as_secs(), 3600);
        assert_eq!(p.lock_duration(10).as_secs(), 24 * 3600);
        assert_eq!(p.lock_duration(200).as_secs(), 24 * 3600);
    }
}
