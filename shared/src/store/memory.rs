//! In-memory twin of the DynamoDB store, with the same conditional semantics (one mutex makes
//! every operation atomic). Used by the local server's embedded defaults and the contract suite.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;

use super::*;

#[derive(Debug, Default, Clone)]
struct OneTime {
    hash: String,
    expires_at: i64,
    payload: Option<String>,
    sv: u64,
}

#[derive(Debug, Default, Clone)]
struct Lock {
    failures: u32,
    locked_until: Option<i64>,
    lock_count: u32,
    expires_at: i64,
}

#[derive(Default, Clone)]
struct Inner {
    users: HashMap<String, User>,
    emails: HashMap<String, String>,
    one_time: HashMap<(String, &'static str), OneTime>,
    locks: HashMap<String, Lock>,
    sessions: HashMap<(String, String), Session>,
    counters: HashMap<String, RateCount>,
    /// Mail jobs: (sent, claim, lease until, expires at).
    mail: HashMap<String, (bool, String, i64, i64)>,
    admins: u64,
    mfa: HashMap<String, MfaFactor>,
    /// MFA challenges by (user id, token hash).
    challenges: HashMap<(String, String), MfaChallenge>,
}

impl Inner {
    /// Spends `proof` on `user_id`'s active factor (the caller holds the lock).
    fn spend(&mut self, user_id: &str, proof: &MfaProof) -> MfaSpend {
        let Some(f) = self.mfa.get_mut(user_id) else { return MfaSpend::Refused };
        match proof {
            MfaProof::Totp { sealed, step } => {
                if f.secret.as_deref() != Some(sealed.as_str()) || *step <= f.last_step {
                    return MfaSpend::Refused;
                }
                f.last_step = *step;
            }
            MfaProof::Recovery { hash } => {
                let Some(i) = f.recovery.iter().position(|h| h == hash) else { return MfaSpend::Refused };
                if f.secret.is_none() {
                    return MfaSpend::Refused;
                }
                f.recovery.remove(i);
            }
        }
        MfaSpend::Spent
    }

    fn live_challenge(&self, user_id: &str, hash: &str, now: i64, max: u32) -> Option<&MfaChallenge> {
        self.challenges.get(&(user_id.to_owned(), hash.to_owned())).filter(|c| c.expires_at > now && c.failures < max)
    }
}

/// The in-process store.
#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// A copy of everything stored, as it is now (the lifecycle model test checks what the
    /// owner could do next on a copy, so that the check changes nothing).
    #[cfg(test)]
    pub fn snapshot(&self) -> Self {
        Self { inner: Mutex::new(self.lock().map(|g| g.clone()).unwrap_or_default()) }
    }

    fn lock(&self) -> Result<MutexGuard<'_, Inner>, StoreError> {
        self.inner.lock().map_err(|_| StoreError::Unavailable("memory store poisoned".into()))
    }
}

#[async_trait]
impl UserRegistry for MemoryStore {
    async fn create_user(&self, user: &User) -> Result<(), StoreError> {
        let mut g = self.lock()?;
        if g.emails.contains_key(&user.email) || g.users.contains_key(&user.id) {
            return Err(StoreError::EmailTaken);
        }
        g.emails.insert(user.email.clone(), user.id.clone());
        g.users.insert(user.id.clone(), user.clone());
        Ok(())
    }

    async fn register(&self, user: &User, token_hash: &str, expires_at: i64) -> Result<(), StoreError> {
        let mut g = self.lock()?;
        if g.emails.contains_key(&user.email) || g.users.contains_key(&user.id) {
            return Err(StoreError::EmailTaken);
        }
        g.emails.insert(user.email.clone(), user.id.clone());
        g.users.insert(user.id.clone(), user.clone());
        let t = OneTime { hash: token_hash.to_owned(), expires_at, payload: None, sv: user.session_version };
        g.one_time.insert((user.id.clone(), OneTimeKind::VerifyEmail.as_str()), t);
        Ok(())
    }
}

#[async_trait]
impl UserLookup for MemoryStore {
    async fn get_user(&self, id: &str) -> Result<Option<User>, StoreError> {
        Ok(self.lock()?.users.get(id).cloned())
    }

    async fn find_user_by_email(&self, email: &str) -> Result<Option<User>, StoreError> {
        let g = self.lock()?;
        Ok(g.emails.get(email).and_then(|id| g.users.get(id)).cloned())
    }
}

#[async_trait]
impl UserUpdates for MemoryStore {
    async fn upgrade_password_hash(&self, id: &str, expected: &str, new_hash: &str) -> Result<bool, StoreError> {
        let mut g = self.lock()?;
        match g.users.get_mut(id) {
            Some(u) if u.password_hash == expected => {
                u.password_hash = new_hash.to_owned();
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn update_name(&self, id: &str, name: Option<&str>, now: i64) -> Result<Option<User>, StoreError> {
        let mut g = self.lock()?;
        Ok(g.users.get_mut(id).map(|u| {
            u.name = name.map(str::to_owned);
            u.updated_at = now;
            u.clone()
        }))
    }

    async fn record_login(&self, id: &str, now: i64) -> Result<(), StoreError> {
        if let Some(u) = self.lock()?.users.get_mut(id) {
            u.last_login_at = Some(now);
        }
        Ok(())
    }

    async fn change_password(
        &self,
        id: &str,
        expected: &str,
        new_hash: &str,
        sv: u64,
        keep: &str,
        now: i64,
    ) -> Result<Option<u64>, StoreError> {
        let mut g = self.lock()?;
        let Some(u) = g.users.get_mut(id) else { return Ok(None) };
        if u.password_hash == new_hash {
            // This write, already applied.
            return Ok(Some(u.session_version));
        }
        if u.password_hash != expected || u.session_version != sv {
            return Ok(None);
        }
        u.password_hash = new_hash.to_owned();
        u.session_version = sv + 1;
        u.updated_at = now;
        if let Some(s) = g.sessions.get_mut(&(id.to_owned(), keep.to_owned())) {
            s.session_version = sv + 1;
        }
        Ok(Some(sv + 1))
    }

    async fn bump_session_version(&self, id: &str, now: i64) -> Result<Option<u64>, StoreError> {
        let mut g = self.lock()?;
        Ok(g.users.get_mut(id).map(|u| {
            u.session_version += 1;
            u.updated_at = now;
            u.session_version
        }))
    }
}

impl Inner {
    /// Drops the account-wide lock item of `account` and every (account, IP) one.
    fn clear_all_locks(&mut self, account: &str) {
        let prefix = format!("{account}{LOCK_KEY_SEP}");
        self.locks.retain(|k, _| k != account && !k.starts_with(&prefix));
    }

    /// The live token of `kind` matching `hash`, if its user exists, is at the token's session
    /// version and (with `require_active`) is active.
    fn spendable(
        &self,
        kind: OneTimeKind,
        user_id: &str,
        hash: &str,
        now: i64,
        require_active: bool,
    ) -> Option<&OneTime> {
        let t = self.one_time.get(&(user_id.to_owned(), kind.as_str()))?;
        let u = self.users.get(user_id)?;
        let ok = t.hash == hash && t.expires_at > now && t.sv == u.session_version && (u.is_active || !require_active);
        ok.then_some(t)
    }

    /// Removes the token `spendable` finds; `None` if there is none.
    fn take_one_time(
        &mut self,
        kind: OneTimeKind,
        user_id: &str,
        hash: &str,
        now: i64,
        require_active: bool,
    ) -> Option<OneTime> {
        self.spendable(kind, user_id, hash, now, require_active)?;
        self.one_time.remove(&(user_id.to_owned(), kind.as_str()))
    }
}

#[async_trait]
impl OneTimeTokenStore for MemoryStore {
    async fn put_one_time(
        &self,
        kind: OneTimeKind,
        user_id: &str,
        hash: &str,
        expires_at: i64,
        sv: u64,
    ) -> Result<(), StoreError> {
        let t = OneTime { hash: hash.to_owned(), expires_at, payload: None, sv };
        self.lock()?.one_time.insert((user_id.to_owned(), kind.as_str()), t);
        Ok(())
    }

    async fn put_email_change(
        &self,
        user_id: &str,
        hash: &str,
        new_email: &str,
        expires_at: i64,
        sv: u64,
    ) -> Result<(), StoreError> {
        let t = OneTime { hash: hash.to_owned(), expires_at, payload: Some(new_email.to_owned()), sv };
        self.lock()?.one_time.insert((user_id.to_owned(), OneTimeKind::ChangeEmail.as_str()), t);
        Ok(())
    }

    async fn peek_one_time(
        &self,
        kind: OneTimeKind,
        user_id: &str,
        hash: &str,
        now: i64,
    ) -> Result<Option<PendingToken>, StoreError> {
        let g = self.lock()?;
        Ok(g.one_time
            .get(&(user_id.to_owned(), kind.as_str()))
            .filter(|t| t.hash == hash && t.expires_at > now)
            .map(|t| PendingToken { session_version: t.sv, expires_at: t.expires_at, new_email: t.payload.clone() }))
    }

    async fn reset_password(
        &self,
        user_id: &str,
        hash: &str,
        new_hash: &str,
        now: i64,
        sv: u64,
    ) -> Result<Option<u64>, StoreError> {
        let mut g = self.lock()?;
        if g.spendable(OneTimeKind::ResetPassword, user_id, hash, now, true).is_none_or(|t| t.sv != sv) {
            return Ok(None);
        }
        g.take_one_time(OneTimeKind::ResetPassword, user_id, hash, now, true);
        Ok(g.users.get_mut(user_id).map(|u| {
            u.password_hash = new_hash.to_owned();
            u.session_version += 1;
            u.updated_at = now;
            u.session_version
        }))
    }

    async fn confirm_email_change(&self, user_id: &str, hash: &str, now: i64) -> Result<EmailChange, StoreError> {
        let mut g = self.lock()?;
        let Some(new_email) =
            g.take_one_time(OneTimeKind::ChangeEmail, user_id, hash, now, true).and_then(|t| t.payload)
        else {
            return Ok(EmailChange::InvalidToken);
        };
        if g.emails.contains_key(&new_email) {
            return Ok(EmailChange::Taken);
        }
        let Some(u) = g.users.get_mut(user_id) else { return Ok(EmailChange::InvalidToken) };
        let old_email = std::mem::replace(&mut u.email, new_email.clone());
        u.session_version += 1;
        u.updated_at = now;
        let user = u.clone();
        g.emails.remove(&old_email);
        g.emails.insert(new_email, user_id.to_owned());
        Ok(EmailChange::Changed { user, old_email })
    }

    async fn verify_email(
        &self,
        user_id: &str,
        hash: &str,
        now: i64,
        sv: u64,
        chosen: Option<&Registration>,
    ) -> Result<bool, StoreError> {
        let mut g = self.lock()?;
        if g.spendable(OneTimeKind::VerifyEmail, user_id, hash, now, false).is_none_or(|t| t.sv != sv)
            || g.users.get(user_id).is_none_or(|u| u.session_version != sv)
        {
            return Ok(false);
        }
        g.take_one_time(OneTimeKind::VerifyEmail, user_id, hash, now, false);
        if let Some(u) = g.users.get_mut(user_id) {
            u.is_verified = true;
            u.updated_at = now;
            u.pending_signup = false;
            u.registrations.clear();
            if let Some(r) = chosen {
                u.password_hash = r.password_hash.clone();
                u.name = r.name.clone();
                u.session_version += 1;
            }
        }
        Ok(true)
    }

    async fn spend_one_time(
        &self,
        kind: OneTimeKind,
        user_id: &str,
        hash: &str,
        now: i64,
        sv: u64,
    ) -> Result<bool, StoreError> {
        let mut g = self.lock()?;
        if g.spendable(kind, user_id, hash, now, false).is_none_or(|t| t.sv != sv) {
            return Ok(false);
        }
        Ok(g.take_one_time(kind, user_id, hash, now, false).is_some())
    }

    async fn add_registration(&self, r: &NewRegistration<'_>) -> Result<bool, StoreError> {
        let mut g = self.lock()?;
        let Some(u) = g.users.get_mut(r.user_id).filter(|u| {
            !u.is_verified
                && u.pending_signup
                && u.session_version == r.read.session_version
                && u.registrations == r.read.registrations
        }) else {
            return Ok(false);
        };
        u.registrations = r.registrations.to_vec();
        u.updated_at = r.now;
        if let Some(hash) = r.token_hash {
            let t =
                OneTime { hash: hash.to_owned(), expires_at: r.expires_at, payload: None, sv: r.read.session_version };
            g.one_time.insert((r.user_id.to_owned(), OneTimeKind::VerifyEmail.as_str()), t);
        }
        Ok(true)
    }
}

#[async_trait]
impl LockoutStore for MemoryStore {
    async fn lock_gate(&self, key: &str, now: i64, window: i64) -> Result<LockGate, StoreError> {
        let mut g = self.lock()?;
        let entry = g.locks.entry(key.to_owned()).or_default();
        if entry.expires_at <= now {
            *entry = Lock::default();
        }
        if let Some(until) = entry.locked_until.filter(|u| *u > now) {
            return Ok(LockGate::Locked { until });
        }
        entry.failures += 1;
        entry.expires_at = entry.expires_at.max(now + window);
        Ok(LockGate::Open { attempt: entry.failures, previous_locks: entry.lock_count })
    }

    async fn lock_gate_release(&self, key: &str, now: i64) -> Result<(), StoreError> {
        let mut g = self.lock()?;
        if let Some(entry) = g.locks.get_mut(key) {
            let unlocked = entry.locked_until.is_none_or(|u| u <= now);
            if entry.expires_at > now && unlocked && entry.failures > 0 {
                entry.failures -= 1;
            }
        }
        Ok(())
    }

    async fn lock(&self, key: &str, threshold: u32, until: i64, now: i64, window: i64) -> Result<bool, StoreError> {
        let mut g = self.lock()?;
        let Some(entry) = g.locks.get_mut(key) else {
            return Ok(false);
        };
        let unlocked = entry.locked_until.is_none_or(|u| u <= now);
        if entry.expires_at > now && entry.failures >= threshold && unlocked {
            entry.locked_until = Some(until);
            entry.failures = 0;
            entry.lock_count += 1;
            entry.expires_at = until + window;
            return Ok(true);
        }
        Ok(false)
    }

    async fn clear_lockout(&self, key: &str) -> Result<(), StoreError> {
        self.lock()?.locks.remove(key);
        Ok(())
    }

    async fn lockout_keys(&self, account: &str) -> Result<Vec<String>, StoreError> {
        let prefix = format!("{account}{LOCK_KEY_SEP}");
        Ok(self.lock()?.locks.keys().filter(|k| *k == account || k.starts_with(&prefix)).cloned().collect())
    }

    async fn clear_all_lockouts(&self, account: &str) -> Result<(), StoreError> {
        self.lock()?.clear_all_locks(account);
        Ok(())
    }
}

#[async_trait]
impl SessionStore for MemoryStore {
    async fn create_session(&self, s: &Session) -> Result<(), StoreError> {
        let mut g = self.lock()?;
        let key = (s.user_id.clone(), s.id.clone());
        if g.sessions.contains_key(&key) {
            return Err(StoreError::Unavailable("session id collision".into()));
        }
        g.sessions.insert(key, s.clone());
        Ok(())
    }

    async fn start_login_session(&self, s: &Session, clear_locks: &[String], now: i64) -> Result<(), StoreError> {
        let mut g = self.lock()?;
        let key = (s.user_id.clone(), s.id.clone());
        if g.sessions.contains_key(&key) {
            return Err(StoreError::Unavailable("session id collision".into()));
        }
        let Some(u) = g.users.get_mut(&s.user_id) else {
            return Err(StoreError::Unavailable("the user is gone".into()));
        };
        u.last_login_at = Some(now);
        g.sessions.insert(key, s.clone());
        for k in clear_locks {
            g.locks.remove(k);
        }
        Ok(())
    }

    async fn get_user_and_session(
        &self,
        user_id: &str,
        id: &str,
        now: i64,
    ) -> Result<(Option<User>, Option<Session>), StoreError> {
        let g = self.lock()?;
        let session = g.sessions.get(&(user_id.to_owned(), id.to_owned())).filter(|s| s.expires_at() > now).cloned();
        Ok((g.users.get(user_id).cloned(), session))
    }

    async fn get_session(&self, user_id: &str, id: &str, now: i64) -> Result<Option<Session>, StoreError> {
        let g = self.lock()?;
        Ok(g.sessions.get(&(user_id.to_owned(), id.to_owned())).filter(|s| s.expires_at() > now).cloned())
    }

    async fn rotate_session(
        &self,
        user_id: &str,
        id: &str,
        old_hash: &str,
        new_hash: &str,
        now: i64,
        idle_expires_at: i64,
        spent: &[String],
    ) -> Result<Rotation, StoreError> {
        let mut g = self.lock()?;
        let Some(s) = g.sessions.get_mut(&(user_id.to_owned(), id.to_owned())) else {
            return Ok(Rotation::Missing);
        };
        if s.expires_at() <= now {
            return Ok(Rotation::Missing);
        }
        if s.current_hash == old_hash {
            s.spent_hashes = spent.to_vec();
            s.previous_hash = Some(old_hash.to_owned());
            s.current_hash = new_hash.to_owned();
            s.rotated_at = now;
            s.last_used_at = now;
            s.idle_expires_at = idle_expires_at;
            return Ok(Rotation::Rotated);
        }
        Ok(Rotation::Conflict(Box::new(s.clone())))
    }

    async fn delete_session(&self, user_id: &str, id: &str) -> Result<(), StoreError> {
        self.lock()?.sessions.remove(&(user_id.to_owned(), id.to_owned()));
        Ok(())
    }

    async fn list_sessions(&self, user_id: &str, now: i64) -> Result<Vec<Session>, StoreError> {
        let g = self.lock()?;
        let mut out: Vec<Session> =
            g.sessions.values().filter(|s| s.user_id == user_id && s.expires_at() > now).cloned().collect();
        out.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(out)
    }

    async fn delete_sessions(&self, user_id: &str, keep: Option<&str>) -> Result<usize, StoreError> {
        let mut g = self.lock()?;
        let before = g.sessions.len();
        g.sessions.retain(|(u, id), _| u != user_id || Some(id.as_str()) == keep);
        Ok(before - g.sessions.len())
    }

    async fn confirm_session_version(&self, user_id: &str, id: &str, sv: u64) -> Result<(), StoreError> {
        if let Some(s) = self.lock()?.sessions.get_mut(&(user_id.to_owned(), id.to_owned())) {
            s.session_version = sv;
        }
        Ok(())
    }
}

#[async_trait]
impl RateLimitStore for MemoryStore {
    async fn rate_hit(
        &self,
        key: &str,
        start: i64,
        window: i64,
        max: u32,
        expires_at: i64,
    ) -> Result<Option<RateCount>, StoreError> {
        let mut g = self.lock()?;
        let c = g.counters.entry(key.to_owned()).or_insert(RateCount { start, hits: 0, previous: 0 });
        if c.start < start {
            let previous = if c.start == start - window { c.hits } else { 0 };
            *c = RateCount { start, hits: 0, previous };
        }
        let _ = expires_at;
        if c.hits >= max {
            return Ok(None);
        }
        c.hits += 1;
        Ok(Some(*c))
    }

    async fn rate_unhit(&self, key: &str, start: i64) -> Result<(), StoreError> {
        if let Some(c) = self.lock()?.counters.get_mut(key).filter(|c| c.start == start) {
            c.hits = c.hits.saturating_sub(1);
        }
        Ok(())
    }
}

#[async_trait]
impl MailLedger for MemoryStore {
    async fn claim_mail(
        &self,
        job_id: &str,
        claim: &str,
        now: i64,
        lease_until: i64,
        expires_at: i64,
    ) -> Result<MailClaim, StoreError> {
        let mut g = self.lock()?;
        match g.mail.get(job_id) {
            Some((_, _, _, exp)) if *exp <= now => {}
            Some((true, _, _, _)) => return Ok(MailClaim::Sent),
            Some((false, c, lease, _)) if c != claim && *lease > now => return Ok(MailClaim::Busy),
            _ => {}
        }
        g.mail.insert(job_id.to_owned(), (false, claim.to_owned(), lease_until, expires_at));
        Ok(MailClaim::Claimed)
    }

    async fn mail_sent(&self, job_id: &str, claim: &str, _now: i64) -> Result<(), StoreError> {
        let mut g = self.lock()?;
        if let Some(job) = g.mail.get_mut(job_id) {
            job.0 = true;
            job.1 = claim.to_owned();
        }
        Ok(())
    }

    async fn release_mail(&self, job_id: &str, claim: &str) -> Result<(), StoreError> {
        let mut g = self.lock()?;
        if g.mail.get(job_id).is_some_and(|(sent, c, _, _)| !sent && c == claim) {
            g.mail.remove(job_id);
        }
        Ok(())
    }
}

#[async_trait]
impl AdminStore for MemoryStore {
    async fn list_users(
        &self,
        prefix: &str,
        after: Option<(&str, &str)>,
        limit: usize,
    ) -> Result<(Vec<User>, bool), StoreError> {
        let g = self.lock()?;
        let mut all: Vec<&User> = g
            .users
            .values()
            .filter(|u| u.email.starts_with(prefix))
            .filter(|u| after.is_none_or(|(e, _)| u.email.as_str() > e))
            .collect();
        all.sort_by(|a, b| a.email.cmp(&b.email));
        let more = all.len() > limit;
        Ok((all.into_iter().take(limit).cloned().collect(), more))
    }

    async fn admin_create_user(&self, user: &User) -> Result<AdminWrite, StoreError> {
        let mut g = self.lock()?;
        if g.emails.contains_key(&user.email) || g.users.contains_key(&user.id) {
            return Ok(AdminWrite::EmailTaken);
        }
        g.emails.insert(user.email.clone(), user.id.clone());
        g.users.insert(user.id.clone(), user.clone());
        if is_active_admin(user) {
            g.admins += 1;
        }
        Ok(AdminWrite::Done(user.clone()))
    }

    async fn admin_update_user(
        &self,
        current: &User,
        changes: &UserChanges,
        now: i64,
    ) -> Result<AdminWrite, StoreError> {
        let mut g = self.lock()?;
        let Some(stored) = g.users.get(&current.id) else { return Ok(AdminWrite::NotFound) };
        if !stored.admin_guard_matches(current) {
            return Ok(AdminWrite::Changed);
        }
        // On top of what is stored: a login or a name change since the read stays.
        let next = changes.apply(stored, now);
        let (was, is) = (is_active_admin(current), is_active_admin(&next));
        if was && !is && g.admins <= 1 {
            return Ok(AdminWrite::LastAdmin);
        }
        if next.email != current.email {
            if g.emails.contains_key(&next.email) {
                return Ok(AdminWrite::EmailTaken);
            }
            g.emails.remove(&current.email);
            g.emails.insert(next.email.clone(), next.id.clone());
        }
        match (was, is) {
            (true, false) => g.admins -= 1,
            (false, true) => g.admins += 1,
            _ => {}
        }
        g.users.insert(next.id.clone(), next.clone());
        Ok(AdminWrite::Done(next))
    }

    async fn admin_delete_user(&self, current: &User) -> Result<AdminWrite, StoreError> {
        let mut g = self.lock()?;
        let Some(stored) = g.users.get(&current.id) else { return Ok(AdminWrite::NotFound) };
        if !stored.admin_guard_matches(current) {
            return Ok(AdminWrite::Changed);
        }
        if is_active_admin(current) {
            if g.admins <= 1 {
                return Ok(AdminWrite::LastAdmin);
            }
            g.admins -= 1;
        }
        g.users.remove(&current.id);
        g.emails.remove(&current.email);
        g.sessions.retain(|(u, _), _| u != &current.id);
        g.one_time.retain(|(u, _), _| u != &current.id);
        g.mfa.remove(&current.id);
        g.challenges.retain(|(u, _), _| u != &current.id);
        g.clear_all_locks(&current.email);
        Ok(AdminWrite::Done(current.clone()))
    }

    async fn purge_user(&self, id: &str) -> Result<(), StoreError> {
        let mut g = self.lock()?;
        g.sessions.retain(|(u, _), _| u != id);
        g.one_time.retain(|(u, _), _| u != id);
        g.mfa.remove(id);
        g.challenges.retain(|(u, _), _| u != id);
        Ok(())
    }

    async fn admin_reset_mfa(&self, current: &User, now: i64) -> Result<AdminWrite, StoreError> {
        let mut g = self.lock()?;
        let Some(stored) = g.users.get_mut(&current.id) else { return Ok(AdminWrite::NotFound) };
        if !stored.admin_guard_matches(current) {
            return Ok(AdminWrite::Changed);
        }
        stored.mfa_enabled = false;
        stored.updated_at = now;
        let user = stored.clone();
        g.mfa.remove(&current.id);
        Ok(AdminWrite::Done(user))
    }

    async fn is_locked(&self, account: &str, now: i64) -> Result<bool, StoreError> {
        let g = self.lock()?;
        let prefix = format!("{account}{LOCK_KEY_SEP}");
        Ok(g.locks
            .iter()
            .filter(|(k, _)| *k == account || k.starts_with(&prefix))
            .any(|(_, l)| l.expires_at > now && l.locked_until.is_some_and(|u| u > now)))
    }
}

#[async_trait]
impl MfaStore for MemoryStore {
    async fn get_mfa(&self, user_id: &str) -> Result<Option<MfaFactor>, StoreError> {
        Ok(self.lock()?.mfa.get(user_id).cloned())
    }

    async fn put_pending_mfa(&self, user_id: &str, sealed: &str, _now: i64) -> Result<bool, StoreError> {
        let mut g = self.lock()?;
        let f = g.mfa.entry(user_id.to_owned()).or_default();
        if f.secret.is_some() {
            return Ok(false);
        }
        f.pending = Some(sealed.to_owned());
        Ok(true)
    }

    async fn enable_mfa(
        &self,
        user_id: &str,
        sealed: &str,
        step: u64,
        recovery: &[String],
        sv: u64,
        keep: &str,
        now: i64,
    ) -> Result<Option<u64>, StoreError> {
        let mut g = self.lock()?;
        let Some(u) = g.users.get(user_id) else { return Ok(None) };
        let landed = g.mfa.get(user_id).is_some_and(|f| f.secret.as_deref() == Some(sealed) && f.recovery == recovery);
        if landed {
            // This write, already applied.
            return Ok(Some(u.session_version));
        }
        let pending_ok = g.mfa.get(user_id).is_some_and(|f| f.pending.as_deref() == Some(sealed) && f.secret.is_none());
        if !pending_ok || u.session_version != sv || u.mfa_enabled {
            return Ok(None);
        }
        g.mfa.insert(
            user_id.to_owned(),
            MfaFactor { secret: Some(sealed.to_owned()), pending: None, last_step: step, recovery: recovery.to_vec() },
        );
        if let Some(u) = g.users.get_mut(user_id) {
            u.mfa_enabled = true;
            u.session_version = sv + 1;
            u.updated_at = now;
        }
        if let Some(s) = g.sessions.get_mut(&(user_id.to_owned(), keep.to_owned())) {
            s.session_version = sv + 1;
        }
        Ok(Some(sv + 1))
    }

    async fn spend_mfa_proof(&self, user_id: &str, proof: &MfaProof) -> Result<MfaSpend, StoreError> {
        Ok(self.lock()?.spend(user_id, proof))
    }

    async fn replace_recovery_codes(
        &self,
        user_id: &str,
        sealed: &str,
        recovery: &[String],
    ) -> Result<bool, StoreError> {
        let mut g = self.lock()?;
        match g.mfa.get_mut(user_id) {
            Some(f) if f.secret.as_deref() == Some(sealed) => {
                f.recovery = recovery.to_vec();
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn disable_mfa(&self, user_id: &str, sealed: &str, now: i64) -> Result<bool, StoreError> {
        let mut g = self.lock()?;
        match g.mfa.get(user_id) {
            Some(f) if f.secret.as_deref() == Some(sealed) => {}
            Some(_) => return Ok(false),
            None => return Ok(true),
        }
        g.mfa.remove(user_id);
        if let Some(u) = g.users.get_mut(user_id) {
            u.mfa_enabled = false;
            u.updated_at = now;
        }
        Ok(true)
    }

    async fn put_mfa_challenge(&self, hash: &str, c: &MfaChallenge) -> Result<(), StoreError> {
        self.lock()?.challenges.insert((c.user_id.clone(), hash.to_owned()), c.clone());
        Ok(())
    }

    async fn get_mfa_challenge(
        &self,
        user_id: &str,
        hash: &str,
        now: i64,
        max_failures: u32,
    ) -> Result<Option<MfaChallenge>, StoreError> {
        Ok(self.lock()?.live_challenge(user_id, hash, now, max_failures).cloned())
    }

    async fn mfa_challenge_failed(&self, user_id: &str, hash: &str, now: i64) -> Result<(), StoreError> {
        let mut g = self.lock()?;
        if let Some(c) = g.challenges.get_mut(&(user_id.to_owned(), hash.to_owned()))
            && c.expires_at > now
        {
            c.failures += 1;
        }
        Ok(())
    }

    async fn complete_mfa_sign_in(&self, x: &MfaSignIn<'_>) -> Result<MfaSpend, StoreError> {
        let mut g = self.lock()?;
        let user_id = x.session.user_id.as_str();
        if g.live_challenge(user_id, x.hash, x.now, x.max_failures).is_none() {
            return Ok(MfaSpend::ChallengeGone);
        }
        let key = (user_id.to_owned(), x.session.id.clone());
        if !g.users.contains_key(user_id) || g.sessions.contains_key(&key) {
            return Ok(MfaSpend::ChallengeGone);
        }
        let spent = g.spend(user_id, x.proof);
        if spent == MfaSpend::Spent {
            g.challenges.remove(&(user_id.to_owned(), x.hash.to_owned()));
            if let Some(u) = g.users.get_mut(user_id) {
                u.last_login_at = Some(x.now);
            }
            g.sessions.insert(key, x.session.clone());
            for k in x.clear_locks {
                g.locks.remove(k);
            }
        }
        Ok(spent)
    }
}
