//! The lockout gate every password check passes: login, and the bearer endpoints that check a
//! current password (docs/security.md "Brute force", docs/api.md "Lockout policy").
//!
//! Two counters, each an atomic conditional update made before any password check: one per
//! (account, client IP), which locks the account *for that IP* after `threshold` failures, and
//! one per account, which locks it for everyone after `account_ceiling` failures from all IPs.
//! One attacker therefore cannot lock the owner out from the owner's own network, while a
//! distributed guesser still meets a hard limit. IPv6 clients are counted by /64.

use std::sync::Arc;

use crate::clock::SharedClock;
use crate::config::{Config, LockoutPolicy};
use crate::context::{RequestCtx, ip_key};
use crate::domain::error::DomainResult;
use crate::domain::notify::Notifier;
use crate::logging::security_event;
use crate::mail::templates;
use crate::store::{LockGate, LockoutPort, OneTimeKind, User, pair_lock_key};

/// How long an attempt waits between looks at a count that checks in flight fill.
const WAIT_STEP: std::time::Duration = std::time::Duration::from_millis(40);
/// How long it waits in all before it is refused (a count that stays full is an attack).
const WAIT_BUDGET: std::time::Duration = std::time::Duration::from_secs(2);

/// Counts password checks and locks accounts.
#[derive(Clone)]
pub struct Lockout {
    store: Arc<dyn LockoutPort>,
    notifier: Notifier,
    policy: LockoutPolicy,
    clock: SharedClock,
}

/// A password check that passed the gate: what to record once its outcome is known.
#[must_use = "record the outcome with Lockout::failed or Lockout::succeeded"]
pub struct Attempt {
    account: String,
    gates: Vec<(String, u32, u32, u32)>,
}

/// The gate refused the check: the account is locked (for this IP or for everyone).
#[derive(Debug)]
pub struct Locked;

impl Lockout {
    pub fn new(store: Arc<dyn LockoutPort>, notifier: Notifier, cfg: &Config, clock: SharedClock) -> Self {
        Self { store, notifier, policy: cfg.lockout, clock }
    }

    /// Counts one password check of `account` (a normalized email) from `ctx.ip`. Fails closed:
    /// if a count cannot be written, the store error ends the request.
    ///
    /// The count includes the checks still in flight, so concurrent attempts can fill it before
    /// any has failed (a service account's parallel workers, a client's retries). An attempt
    /// that finds the count past the limit without a lock takes its count back and waits for
    /// the checks ahead of it (`WAIT_STEP`, up to `WAIT_BUDGET`): each success clears the count,
    /// each failure stays counted and the one that reaches the limit locks. So a correct password
    /// is not refused because other attempts are in flight, no lock notice is sent for them, and
    /// under a flood of wrong passwords still at most `threshold` checks pass the gate before the
    /// lock. A count still past the limit after the whole wait holds failures whose lock never
    /// landed: it is locked then.
    pub async fn enter(&self, account: &str, ctx: &RequestCtx) -> DomainResult<Result<Attempt, Locked>> {
        self.enter_scoped(account, true, ctx).await
    }

    /// `enter`, counting only this client's (account, IP) key: for a check that only the
    /// holder of a mailed link can reach (verification), so that the account-wide ceiling,
    /// which anyone's traffic fills, never stands between the mailbox's owner and its account.
    pub async fn enter_from_ip(&self, account: &str, ctx: &RequestCtx) -> DomainResult<Result<Attempt, Locked>> {
        self.enter_scoped(account, false, ctx).await
    }

    async fn enter_scoped(
        &self,
        account: &str,
        account_wide: bool,
        ctx: &RequestCtx,
    ) -> DomainResult<Result<Attempt, Locked>> {
        let waited_until = std::time::Instant::now() + WAIT_BUDGET;
        loop {
            let attempt = match self.count(account, account_wide, ctx).await? {
                Ok(a) => a,
                Err(Locked) => return Ok(Err(Locked)),
            };
            if !attempt.gates.iter().any(|(_, limit, n, _)| n > limit) {
                return Ok(Ok(attempt));
            }
            if std::time::Instant::now() >= waited_until {
                // Checks in flight end in milliseconds: a count still full after the wait holds
                // failures whose lock never landed. Lock now, as the failed check would have.
                for (key, limit, n, prev) in &attempt.gates {
                    if n > limit {
                        self.lock(key, *limit, *prev, &attempt.account, None, ctx).await?;
                    }
                }
                return Ok(Err(Locked));
            }
            for (key, ..) in &attempt.gates {
                self.store.lock_gate_release(key, self.clock.now()).await?;
            }
            let jitter = u64::from(uuid::Uuid::new_v4().as_bytes()[0]) % 20;
            tokio::time::sleep(WAIT_STEP + std::time::Duration::from_millis(jitter)).await;
        }
    }

    /// One count of both keys (the pair first: a pair lock spares the account's count).
    async fn count(
        &self,
        account: &str,
        account_wide: bool,
        ctx: &RequestCtx,
    ) -> DomainResult<Result<Attempt, Locked>> {
        let pair_key = pair_lock_key(account, &ip_key(&ctx.ip));
        let window = self.policy.window.as_secs() as i64;
        let mut gates: Vec<(String, u32, u32, u32)> = Vec::with_capacity(2);
        let keys = [(pair_key, self.policy.threshold), (account.to_owned(), self.policy.account_ceiling)];
        for (key, limit) in keys.into_iter().take(if account_wide { 2 } else { 1 }) {
            match self.store.lock_gate(&key, self.clock.now(), window).await? {
                LockGate::Locked { .. } => {
                    for (counted, ..) in &gates {
                        self.store.lock_gate_release(counted, self.clock.now()).await?;
                    }
                    return Ok(Err(Locked));
                }
                LockGate::Open { attempt, previous_locks } => {
                    if attempt == 1 && previous_locks > 0 {
                        security_event("account_unlocked", ctx, None, "lock_expired");
                    }
                    gates.push((key, limit, attempt, previous_locks));
                }
            }
        }
        Ok(Ok(Attempt { account: account.to_owned(), gates }))
    }

    /// The check failed: locks every key whose count reached its limit (and mails the owner,
    /// `user`, once per lock).
    pub async fn failed(&self, attempt: Attempt, user: Option<&User>, ctx: &RequestCtx) -> DomainResult<()> {
        for (key, limit, n, prev) in &attempt.gates {
            if n >= limit {
                self.lock(key, *limit, *prev, &attempt.account, user, ctx).await?;
            }
        }
        Ok(())
    }

    /// The check succeeded: forgets this IP's failures and the account-wide ones (other IPs'
    /// locks stand).
    pub async fn succeeded(&self, attempt: Attempt) -> DomainResult<()> {
        for (key, ..) in &attempt.gates {
            self.store.clear_lockout(key).await?;
        }
        Ok(())
    }

    /// The check succeeded but the sign-in is not complete (a second factor follows): the
    /// attempt's count is taken back, and the failures before it stay counted. A right
    /// password neither adds to the count nor resets it; only the completed second step does,
    /// so wrong codes after a right password still lock.
    pub async fn pending(&self, attempt: Attempt) -> DomainResult<()> {
        let now = self.clock.now();
        let releases = attempt.gates.iter().map(|(key, ..)| self.store.lock_gate_release(key, now));
        for r in futures::future::join_all(releases).await {
            r?;
        }
        Ok(())
    }

    /// The keys `keys_to_clear` would give, while the attempt is still open (a caller that
    /// writes the clean-up with a write that may still be refused).
    pub fn gate_keys(&self, attempt: &Attempt) -> Vec<String> {
        attempt.gates.iter().map(|(key, ..)| key.clone()).collect()
    }

    /// The check succeeded and the caller writes the clean-up itself (login, in the same write
    /// as the new session): the keys `succeeded` would delete.
    pub fn keys_to_clear(&self, attempt: Attempt) -> Vec<String> {
        attempt.gates.into_iter().map(|(key, ..)| key).collect()
    }

    /// Locks `key` (a pair or the account) if its count reached `limit`; mails the owner once
    /// per lock.
    ///
    /// The notice is queued once per lock however the request ends: its job is keyed by the
    /// lock (`notice_key`). If the lock write fails, its answer may have been lost after it
    /// landed, and the client's retry then meets a locked account and would not mail: so the
    /// notice is queued before the error ends the request, and if the write had not landed
    /// the retry's lock queues the same job again, which is sent once.
    async fn lock(
        &self,
        key: &str,
        limit: u32,
        previous_locks: u32,
        account: &str,
        user: Option<&User>,
        ctx: &RequestCtx,
    ) -> DomainResult<()> {
        let now = self.clock.now();
        let dur = self.policy.lock_duration(previous_locks);
        let locked =
            self.store.lock(key, limit, now + dur.as_secs() as i64, now, self.policy.window.as_secs() as i64).await;
        if let Ok(false) = locked {
            return Ok(());
        }
        // The caller that raced past the threshold has not looked the user up yet.
        let owner = match user {
            Some(u) => Some(u.clone()),
            None if locked.is_ok() => self.store.find_user_by_email(account).await?,
            None => None,
        };
        if locked.is_ok() {
            let scope = if key == account { "account" } else { "account_from_ip" };
            security_event("account_locked", ctx, owner.as_ref().map(|u| u.id.as_str()), scope);
            crate::metrics::count("AccountLocked");
        }
        if let Some(u) = owner {
            // An account-wide lock holds the owner too, wherever it signs in from: its notice
            // carries a one-time unlock link (`domain::unlock`), so no traffic of others can
            // keep the owner out. A lock of one IP leaves the owner's own network open.
            let unlock = match (key == account, &locked) {
                (true, Ok(true)) if u.is_active && u.is_verified => Some(self.unlock_link(&u, now).await?),
                _ => None,
            };
            let n = &self.notifier;
            let link = unlock.as_deref().map(|t| (n.base_url(), t));
            let mail = templates::account_locked(n.product(), &u.email, dur.as_secs() / 60, link);
            let once = notice_key(key, previous_locks, now);
            n.notice_once(mail, &once, ctx, "account_locked").await;
        }
        locked.map(|_| ()).map_err(Into::into)
    }
}

impl Lockout {
    /// A new unlock token for `user` (replacing an older one), as the link carries it.
    async fn unlock_link(&self, user: &User, now: i64) -> DomainResult<String> {
        let secret = crate::tokens::random_secret()?;
        let hash = crate::tokens::hash_secret(&secret);
        let expires = now + UNLOCK_TTL_SECS;
        self.store.put_one_time(OneTimeKind::Unlock, &user.id, &hash, expires, user.session_version).await?;
        Ok(format!("{}.{secret}", user.id))
    }
}

/// How long an unlock link works.
pub const UNLOCK_TTL_SECS: i64 = 3600;

/// The job key of the notice for lock number `previous_locks + 1` of `key`: the same for a
/// request and its retry (within the hour), and no address or IP in it.
fn notice_key(key: &str, previous_locks: u32, now: i64) -> String {
    use sha2::Digest as _;
    let d = sha2::Sha256::new()
        .chain_update(b"lock-notice\0")
        .chain_update(key.as_bytes())
        .chain_update(format!("\0{previous_locks}\0{}", now / 3600).as_bytes())
        .finalize();
    let hex: String = d.iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!("lock-{hex}")
}
