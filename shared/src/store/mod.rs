//! Storage ports: narrow traits per concern, grouped into one port per use case, implemented
//! twice (DynamoDB and in-memory) and checked by one contract suite
//! (`shared/tests/store_contract.rs`).
//!
//! Every method that can race is one atomic, conditional operation; none reads, modifies and
//! writes back. Expiring items carry a `ttl` and are treated as absent once it has passed,
//! whether or not DynamoDB has deleted them yet.

use async_trait::async_trait;

pub mod dynamo;
mod items;
pub mod memory;
pub mod migrate;

/// Errors from the storage ports.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("email already registered")]
    EmailTaken,
    #[error("storage unavailable: {0}")]
    Unavailable(String),
}

/// A user account. `Debug` never shows the password hash.
#[derive(Clone, PartialEq, Eq)]
pub struct User {
    pub id: String,
    /// Normalized address (see `email::normalize`).
    pub email: String,
    pub name: Option<String>,
    pub password_hash: String,
    pub is_active: bool,
    pub is_verified: bool,
    pub is_superuser: bool,
    pub created_at: i64,
    pub updated_at: i64,
    pub last_login_at: Option<i64>,
    /// Bumped whenever older access tokens must stop working.
    pub session_version: u64,
    /// A second factor (TOTP) is active: a correct password alone starts no session. Items
    /// written before the factor existed have no such attribute and read as `false`.
    pub mfa_enabled: bool,
    /// Made by a self-service sign-up and not verified yet: a later sign-up for the address
    /// adds a registration (`registrations`) instead of being refused. `false` for accounts an
    /// administrator made, verified ones, and items written before it existed (which a sign-up
    /// therefore never changes).
    pub pending_signup: bool,
    /// The sign-ups for this unverified address after the first (whose password is
    /// `password_hash`), oldest first, at most `MAX_REGISTRATIONS`. Verification activates the
    /// one whose password it is given and discards the others; none replaces another.
    pub registrations: Vec<Registration>,
}

/// One pending self-service sign-up beyond an unverified account's first. `Debug` never shows
/// the hash.
#[derive(Clone, PartialEq, Eq)]
pub struct Registration {
    pub password_hash: String,
    pub name: Option<String>,
    pub created_at: i64,
}

impl std::fmt::Debug for Registration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registration").field("created_at", &self.created_at).finish_non_exhaustive()
    }
}

/// How many sign-ups an unverified address keeps besides its first; a further one drops the
/// oldest of them (the per-address sign-up limit makes that take hours).
pub const MAX_REGISTRATIONS: usize = 8;

/// A sign-up for the address of an unverified, self-registered account (`add_registration`).
#[derive(Debug, Clone, Copy)]
pub struct NewRegistration<'a> {
    pub user_id: &'a str,
    /// The account as read: its session version and its registrations, which the write
    /// replaces with `registrations` only if they are still exactly these.
    pub read: &'a User,
    /// The account's registrations after this one is added (`User::with_registration`).
    pub registrations: &'a [Registration],
    /// The new verification link (its hash), which replaces the address's older one; `None`
    /// when no link can be mailed now (the account's mail cap), so the older one stays valid.
    pub token_hash: Option<&'a str>,
    pub expires_at: i64,
    pub now: i64,
}

impl User {
    /// The password hash a sign-in for this account is checked against: the newest pending
    /// sign-up's for an unverified address that has several, else the account's. One hash, so
    /// a login costs one argon2 verification whatever the account holds.
    pub fn sign_in_hash(&self) -> &str {
        match self.registrations.last() {
            Some(r) if !self.is_verified => &r.password_hash,
            _ => &self.password_hash,
        }
    }

    /// The account's registrations with `r` added (the oldest dropped past `MAX_REGISTRATIONS`).
    pub fn with_registration(&self, r: Registration) -> Vec<Registration> {
        let mut all = self.registrations.clone();
        all.push(r);
        let extra = all.len().saturating_sub(MAX_REGISTRATIONS);
        all.drain(..extra);
        all
    }
}

/// A refresh-token rotation family. `Debug` never shows a token hash.
#[derive(Clone, PartialEq, Eq)]
pub struct Session {
    pub user_id: String,
    pub id: String,
    /// Hash of the live refresh secret.
    pub current_hash: String,
    /// Hash of the secret it replaced (for the grace window and reuse detection).
    pub previous_hash: Option<String>,
    /// Tags (`spent_tag`) of the generations before `previous_hash`, newest first, at most
    /// `SPENT_HASHES_KEPT` (reuse detection). Items written before tags hold whole hashes,
    /// which compare by their tag too.
    pub spent_hashes: Vec<String>,
    pub rotated_at: i64,
    pub created_at: i64,
    pub last_used_at: i64,
    pub idle_expires_at: i64,
    pub absolute_expires_at: i64,
    pub ip: String,
    pub user_agent: String,
    /// The user's session version when the session was made (or last confirmed); a session
    /// behind the user's current version is dead, even if revoking it failed half-way.
    pub session_version: u64,
    /// How the session's sign-in was authenticated (RFC 8176 `amr`): `["pwd"]`, or `["pwd",
    /// "otp"]` / `["pwd", "mfa"]` after a TOTP or a recovery code. Every access token the
    /// session is refreshed to carries it. Sessions stored before it existed read `["pwd"]`.
    pub amr: Vec<String>,
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .field("email", &self.email)
            .field("is_active", &self.is_active)
            .field("is_verified", &self.is_verified)
            .field("is_superuser", &self.is_superuser)
            .field("session_version", &self.session_version)
            .finish_non_exhaustive()
    }
}

impl User {
    /// Whether `self` (as stored now) still matches `read` in what an administrative write is
    /// conditioned on: address, role, active flag, session version and password hash. A login
    /// (`last_login_at`) or the user's own name change in between does not make an admin's read
    /// stale; anything that changes who the user is or what it may do does. The DynamoDB store
    /// puts exactly these into its condition expression.
    pub fn admin_guard_matches(&self, read: &User) -> bool {
        self.email == read.email
            && self.is_superuser == read.is_superuser
            && self.is_active == read.is_active
            && self.session_version == read.session_version
            && self.password_hash == read.password_hash
    }
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("user_id", &self.user_id)
            .field("id", &self.id)
            .field("rotated_at", &self.rotated_at)
            .field("idle_expires_at", &self.idle_expires_at)
            .field("session_version", &self.session_version)
            .finish_non_exhaustive()
    }
}

/// How many rotated-out refresh hashes a session remembers beyond the previous one: a replay of
/// any of them revokes the session; an older one is only refused.
pub const SPENT_HASHES_KEPT: usize = 16;

/// How much of a rotated-out hash the spent list keeps: 16 base64url characters, 96 bits of
/// SHA-256. Enough to recognise a replayed token (a presented secret matches a tag by chance
/// with probability 2^-96), and small enough that a session item stays under 1 KB (one write
/// unit per refresh) for its whole life: 16 whole hashes made it pass 1 KB at about the 11th
/// refresh.
pub const SPENT_TAG_LEN: usize = 16;

/// The tag of a rotated-out refresh hash in the spent list.
pub fn spent_tag(hash: &str) -> &str {
    hash.get(..SPENT_TAG_LEN).unwrap_or(hash)
}

/// The most of a client's user agent a session keeps (bytes, cut at a character boundary), so
/// the item stays under 1 KB.
pub const USER_AGENT_KEPT: usize = 160;

/// `ua` cut to `USER_AGENT_KEPT` bytes at a character boundary.
pub fn kept_user_agent(ua: &str) -> String {
    let mut end = ua.len().min(USER_AGENT_KEPT);
    while !ua.is_char_boundary(end) {
        end -= 1;
    }
    ua[..end].to_owned()
}

impl Session {
    /// The spent list after rotating this session once more: its previous hash's tag joins the
    /// older ones, newest first, bounded.
    pub fn next_spent(&self) -> Vec<String> {
        self.previous_hash
            .iter()
            .chain(self.spent_hashes.iter())
            .take(SPENT_HASHES_KEPT)
            .map(|h| spent_tag(h).to_owned())
            .collect()
    }

    /// Whether `hash` is a refresh secret this session has already rotated out.
    pub fn has_spent(&self, hash: &str) -> bool {
        self.previous_hash.as_deref() == Some(hash) || self.spent_hashes.iter().any(|h| spent_tag(h) == spent_tag(hash))
    }

    /// When the item stops being live (its TTL).
    pub fn expires_at(&self) -> i64 {
        self.idle_expires_at.min(self.absolute_expires_at)
    }
}

/// Kinds of one-time mail tokens; a newer token of a kind replaces the older one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OneTimeKind {
    VerifyEmail,
    ResetPassword,
    ChangeEmail,
    /// The account-lock notice's link: the owner signs in despite the lock (1 hour).
    Unlock,
}

impl OneTimeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OneTimeKind::VerifyEmail => "VERIFY_EMAIL",
            OneTimeKind::ResetPassword => "RESET_PASSWORD",
            OneTimeKind::ChangeEmail => "CHANGE_EMAIL",
            OneTimeKind::Unlock => "UNLOCK",
        }
    }
}

/// Outcome of confirming an email change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EmailChange {
    Changed {
        user: User,
        old_email: String,
    },
    /// Unknown, used, superseded or expired token.
    InvalidToken,
    /// The new address was claimed by someone else meanwhile; the token is spent.
    Taken,
}

/// Result of passing the lockout gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockGate {
    /// This is attempt number `attempt` since the last reset or lock; `previous_locks` earlier
    /// locks are remembered for the backoff.
    Open {
        attempt: u32,
        previous_locks: u32,
    },
    Locked {
        until: i64,
    },
}

/// A user's second factor as stored: one item per user (`USER#<id>`, `MFA`). Secrets are
/// sealed (`mfa::Sealer`); recovery codes are hashes. `Debug` shows neither.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct MfaFactor {
    /// The active TOTP secret, sealed; `None` while only a pending one exists.
    pub secret: Option<String>,
    /// An enrolment waiting for its first code, sealed.
    pub pending: Option<String>,
    /// The last TOTP step accepted: a code of this step or an earlier one is refused.
    pub last_step: u64,
    /// Hashes of the unused recovery codes.
    pub recovery: Vec<String>,
}

impl std::fmt::Debug for MfaFactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MfaFactor")
            .field("active", &self.secret.is_some())
            .field("pending", &self.pending.is_some())
            .field("last_step", &self.last_step)
            .field("recovery_codes", &self.recovery.len())
            .finish()
    }
}

/// A login waiting for its second factor (the `mfa_token`'s item, `USER#<id>`,
/// `MFA_CHALLENGE#<hash>`): bound to the user and to the session version the password was
/// checked at; single use, short-lived, dead after `mfa::CHALLENGE_MAX_FAILURES` wrong codes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MfaChallenge {
    pub user_id: String,
    pub session_version: u64,
    pub failures: u32,
    pub expires_at: i64,
}

/// What answers a challenge, or proves the factor to a bearer endpoint. `Debug` shows neither
/// the sealed secret nor the code's hash.
#[derive(Clone, PartialEq, Eq)]
pub enum MfaProof {
    /// A TOTP code of `step`, checked against the active secret `sealed` (the write is
    /// conditioned on it, so a factor replaced meanwhile refuses it).
    Totp { sealed: String, step: u64 },
    /// The hash of a recovery code.
    Recovery { hash: String },
}

impl std::fmt::Debug for MfaProof {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MfaProof::Totp { step, .. } => f.debug_struct("Totp").field("step", step).finish_non_exhaustive(),
            MfaProof::Recovery { .. } => f.debug_struct("Recovery").finish_non_exhaustive(),
        }
    }
}

/// What the login's second step writes (`MfaStore::complete_mfa_sign_in`).
#[derive(Debug, Clone, Copy)]
pub struct MfaSignIn<'a> {
    /// The challenge's token hash.
    pub hash: &'a str,
    pub proof: &'a MfaProof,
    /// The new session (its `user_id` names the user).
    pub session: &'a Session,
    pub clear_locks: &'a [String],
    pub now: i64,
    pub max_failures: u32,
}

/// Outcome of spending a proof.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MfaSpend {
    Spent,
    /// The step was not newer than the last accepted one, the code was used or unknown, or
    /// the factor changed: nothing was written.
    Refused,
    /// (Challenges only) the challenge is used, expired, dead or unknown: nothing was written.
    ChallengeGone,
}

/// Outcome of a conditional rotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rotation {
    Rotated,
    /// The condition failed; here is the live session as it is now.
    Conflict(Box<Session>),
    /// No live session (never existed, revoked, or expired).
    Missing,
}

/// Reading users.
#[async_trait]
pub trait UserLookup: Send + Sync {
    async fn get_user(&self, id: &str) -> Result<Option<User>, StoreError>;
    async fn find_user_by_email(&self, email: &str) -> Result<Option<User>, StoreError>;
}

/// Creating users by sign-up.
#[async_trait]
pub trait UserRegistry: Send + Sync {
    /// Writes the user and its unique-email claim atomically; `EmailTaken` if claimed.
    async fn create_user(&self, user: &User) -> Result<(), StoreError>;
    /// `create_user` and the verification token (`token_hash`, live until `expires_at`) of the
    /// new account, in one atomic write. `EmailTaken` if the address is claimed.
    async fn register(&self, user: &User, token_hash: &str, expires_at: i64) -> Result<(), StoreError>;
}

/// The changes a user's own requests make to the user item.
#[async_trait]
pub trait UserUpdates: Send + Sync {
    /// Replaces the hash only if it is still `expected` (parameter upgrade on login).
    async fn upgrade_password_hash(&self, id: &str, expected: &str, new_hash: &str) -> Result<bool, StoreError>;
    /// Sets the display name; `None` if the user does not exist.
    async fn update_name(&self, id: &str, name: Option<&str>, now: i64) -> Result<Option<User>, StoreError>;
    async fn record_login(&self, id: &str, now: i64) -> Result<(), StoreError>;
    /// Replaces the password hash if it is still `expected` and the session version still
    /// `sv`, moves the version to `sv + 1` and, in the same write, moves the session `keep`
    /// (the caller's, if it still exists) to it too, so that a change whose answer is lost
    /// never leaves the caller's session behind. Returns the new version, or `None` if the hash
    /// or the version changed meanwhile or the user is gone. A retry of this write that had
    /// landed (the item already holds `new_hash`, whose salt is unique) is recognised as
    /// success, not as a change made meanwhile.
    async fn change_password(
        &self,
        id: &str,
        expected: &str,
        new_hash: &str,
        sv: u64,
        keep: &str,
        now: i64,
    ) -> Result<Option<u64>, StoreError>;
    /// Bumps the session version (forced logout); the new version, or `None` if no such user.
    async fn bump_session_version(&self, id: &str, now: i64) -> Result<Option<u64>, StoreError>;
}

/// A live one-time token as stored, read before it is spent (a reset checks its token before
/// hashing the new password).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingToken {
    /// The user's session version when the token was issued: the token is dead once it moved.
    pub session_version: u64,
    pub expires_at: i64,
    /// The address an email-change token moves the account to.
    pub new_email: Option<String>,
}

/// One-time mail tokens. Each is bound to the session version its user had when it was issued,
/// and is spent only while the user is still at that version: any change of credentials or of
/// the sign-in address, and deactivation (all of which bump the version), kills every pending
/// link at once, without a list of deletions to forget.
#[async_trait]
pub trait OneTimeTokenStore: Send + Sync {
    /// Stores the hash of a one-time token issued at session version `sv`, replacing any older
    /// token of that kind.
    async fn put_one_time(
        &self,
        kind: OneTimeKind,
        user_id: &str,
        hash: &str,
        expires_at: i64,
        sv: u64,
    ) -> Result<(), StoreError>;
    /// Stores an email-change token carrying the new address (replacing an older one).
    async fn put_email_change(
        &self,
        user_id: &str,
        hash: &str,
        new_email: &str,
        expires_at: i64,
        sv: u64,
    ) -> Result<(), StoreError>;
    /// The live token of `kind` whose hash is `hash`, without spending it.
    async fn peek_one_time(
        &self,
        kind: OneTimeKind,
        user_id: &str,
        hash: &str,
        now: i64,
    ) -> Result<Option<PendingToken>, StoreError>;
    /// Deletes the live token of `kind` whose hash is `hash` if it was issued at session
    /// version `sv` (one conditional delete): `true` for the one call that spent it.
    async fn spend_one_time(
        &self,
        kind: OneTimeKind,
        user_id: &str,
        hash: &str,
        now: i64,
        sv: u64,
    ) -> Result<bool, StoreError>;
    /// Consumes a live verification token issued at `sv` and marks the user verified, in one
    /// transaction, if the user is still at `sv`; the pending registrations are discarded.
    /// With `chosen` (one of the account's `registrations`, whose password the verification
    /// was given) its password and name become the account's and the session version moves
    /// on. `false` when the token is unknown, used, superseded, expired or stale.
    async fn verify_email(
        &self,
        user_id: &str,
        hash: &str,
        now: i64,
        sv: u64,
        chosen: Option<&Registration>,
    ) -> Result<bool, StoreError>;
    /// Consumes a live reset token issued at `sv`, sets the new hash and bumps the session
    /// version, in one transaction, if the user is still active and at `sv`; the new version,
    /// or `None` otherwise.
    async fn reset_password(
        &self,
        user_id: &str,
        hash: &str,
        new_hash: &str,
        now: i64,
        sv: u64,
    ) -> Result<Option<u64>, StoreError>;
    /// Consumes a live email-change token and moves the unique-email claim, in one
    /// transaction (old claim deleted, new claim created, user updated, session version bumped),
    /// if the user is active and still at the token's session version.
    async fn confirm_email_change(&self, user_id: &str, hash: &str, now: i64) -> Result<EmailChange, StoreError>;
    /// A new sign-up for the address of an unverified, self-registered account: its
    /// registrations become `r.registrations` and a new verification link replaces the older
    /// one, in one transaction, if the account is still unverified, self-registered, at the
    /// session version read and holds exactly the registrations read. `false` otherwise (a
    /// concurrent sign-up, a verification, an admin's change): nothing is written. The
    /// account's own password and every other registration stay as they are.
    async fn add_registration(&self, r: &NewRegistration<'_>) -> Result<bool, StoreError>;
}

/// Separates the account from the client IP in a per-(account, IP) lockout key. A control
/// character: normalized emails never contain one.
pub const LOCK_KEY_SEP: char = '\u{1f}';

/// The lockout key of `account` as seen from `ip`.
pub fn pair_lock_key(account: &str, ip: &str) -> String {
    format!("{account}{LOCK_KEY_SEP}{ip}")
}

#[async_trait]
pub trait LockoutStore: Send + Sync {
    /// Atomically counts an attempt unless the key is locked. Counts expire `window` seconds
    /// after the last attempt.
    async fn lock_gate(&self, key: &str, now: i64, window: i64) -> Result<LockGate, StoreError>;
    /// Takes back one count `lock_gate` made (an attempt that waits rather than be checked),
    /// unless the key is locked or expired meanwhile (a lock resets the count itself).
    async fn lock_gate_release(&self, key: &str, now: i64) -> Result<(), StoreError>;
    /// Locks the key until `until` if its count reached `threshold` and it is not locked yet;
    /// resets the count and remembers the lock for the backoff. `true` if this call locked it,
    /// also when the SDK retried this call's write after it had landed (a token per call, kept
    /// in the item, tells this call's lock from another's).
    async fn lock(&self, key: &str, threshold: u32, until: i64, now: i64, window: i64) -> Result<bool, StoreError>;
    /// Forgets failures and locks of exactly `key` (a successful login clears its own IP's key
    /// and the account-wide one; other IPs' locks stand).
    async fn clear_lockout(&self, key: &str) -> Result<(), StoreError>;
    /// Forgets every lockout of `account`: the account-wide key and every (account, IP) key
    /// (password reset, admin unlock, delete).
    /// The lockout keys (account and per-IP) that exist for `account`: a read, so that a
    /// caller can look while it writes something else and delete (`clear_lockout`) after.
    async fn lockout_keys(&self, account: &str) -> Result<Vec<String>, StoreError>;
    async fn clear_all_lockouts(&self, account: &str) -> Result<(), StoreError>;
}

#[async_trait]
pub trait SessionStore: Send + Sync {
    async fn create_session(&self, s: &Session) -> Result<(), StoreError>;
    /// What a successful login writes, in one atomic write: the new session, the user's
    /// `last_login_at` (`now`) and the deletion of the lockout keys `clear_locks`. Fails (and
    /// writes nothing) if the user is gone.
    async fn start_login_session(&self, s: &Session, clear_locks: &[String], now: i64) -> Result<(), StoreError>;
    /// The user and one of their sessions, read together (one round trip); an expired session
    /// is absent.
    async fn get_user_and_session(
        &self,
        user_id: &str,
        id: &str,
        now: i64,
    ) -> Result<(Option<User>, Option<Session>), StoreError>;
    /// The live session, or `None` if absent or past its expiry.
    async fn get_session(&self, user_id: &str, id: &str, now: i64) -> Result<Option<Session>, StoreError>;
    /// Replaces `old_hash` by `new_hash` if it is still current and the session is live, and
    /// sets the older spent hashes to `spent` (see `Session::next_spent`). A retried write that
    /// had already succeeded reports `Rotated`.
    #[allow(clippy::too_many_arguments)]
    async fn rotate_session(
        &self,
        user_id: &str,
        id: &str,
        old_hash: &str,
        new_hash: &str,
        now: i64,
        idle_expires_at: i64,
        spent: &[String],
    ) -> Result<Rotation, StoreError>;
    async fn delete_session(&self, user_id: &str, id: &str) -> Result<(), StoreError>;
    /// The user's live sessions (one query, no scan), oldest first.
    async fn list_sessions(&self, user_id: &str, now: i64) -> Result<Vec<Session>, StoreError>;
    /// Deletes every session of the user but `keep`; safe to retry. Returns how many went.
    async fn delete_sessions(&self, user_id: &str, keep: Option<&str>) -> Result<usize, StoreError>;
    /// Moves a live session to session version `sv` (the caller's session after a password change).
    async fn confirm_session_version(&self, user_id: &str, id: &str, sv: u64) -> Result<(), StoreError>;
}

/// The count of one rate-limit key after a hit (`RateLimitStore::rate_hit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateCount {
    /// The window the hit was counted in (its start, in seconds).
    pub start: i64,
    /// Hits in that window, this one included.
    pub hits: u32,
    /// Hits in the window just before it (0 if none, or older).
    pub previous: u32,
}

/// The second factor (docs/storage.md "Second factor"). Every write that decides something is
/// conditional: a pending secret becomes active only if it is still the one confirmed, a TOTP
/// step is accepted only if it is newer than the last (so of two concurrent uses of a code one
/// passes), a recovery code is spent only if it is still there.
#[async_trait]
pub trait MfaStore: Send + Sync {
    async fn get_mfa(&self, user_id: &str) -> Result<Option<MfaFactor>, StoreError>;
    /// Stores a pending enrolment (replacing an earlier pending one) unless a factor is
    /// active; `false` if one is.
    async fn put_pending_mfa(&self, user_id: &str, sealed: &str, now: i64) -> Result<bool, StoreError>;
    /// Activates the pending factor `sealed` with its first accepted `step` and the recovery
    /// code hashes, marks the user `mfa_enabled`, moves the user to session version `sv + 1`
    /// and the caller's session `keep` with it, in one transaction, if the pending secret is
    /// still `sealed`, no factor is active and the user is still at `sv`. The new version, or
    /// `None`. A retry of a write that landed is recognised as success.
    #[allow(clippy::too_many_arguments)]
    async fn enable_mfa(
        &self,
        user_id: &str,
        sealed: &str,
        step: u64,
        recovery: &[String],
        sv: u64,
        keep: &str,
        now: i64,
    ) -> Result<Option<u64>, StoreError>;
    /// Spends `proof` on the user's active factor.
    async fn spend_mfa_proof(&self, user_id: &str, proof: &MfaProof) -> Result<MfaSpend, StoreError>;
    /// Replaces every recovery code, if the active secret is still `sealed`; `false` if not.
    async fn replace_recovery_codes(
        &self,
        user_id: &str,
        sealed: &str,
        recovery: &[String],
    ) -> Result<bool, StoreError>;
    /// Removes the factor (secret, pending enrolment, codes) and clears `mfa_enabled`, in one
    /// transaction, if the active secret is still `sealed`; `false` if not (a retry that
    /// landed finds nothing to remove: `true`).
    async fn disable_mfa(&self, user_id: &str, sealed: &str, now: i64) -> Result<bool, StoreError>;
    /// Stores a challenge under the hash of its token.
    async fn put_mfa_challenge(&self, hash: &str, c: &MfaChallenge) -> Result<(), StoreError>;
    /// The live challenge (unexpired, fewer than `max_failures` wrong codes).
    async fn get_mfa_challenge(
        &self,
        user_id: &str,
        hash: &str,
        now: i64,
        max_failures: u32,
    ) -> Result<Option<MfaChallenge>, StoreError>;
    /// Counts one wrong code on a live challenge.
    async fn mfa_challenge_failed(&self, user_id: &str, hash: &str, now: i64) -> Result<(), StoreError>;
    /// The second step of a sign-in, in one transaction: consumes the live challenge, spends
    /// the proof, and writes what a successful login writes (the session, `last_login_at`, the
    /// deletion of the lockout keys). All of it or none: nothing is spent without a session,
    /// and no session starts without the code being spent.
    async fn complete_mfa_sign_in(&self, s: &MfaSignIn<'_>) -> Result<MfaSpend, StoreError>;
}

/// Rate-limit counters: one item per key holding the current fixed window's count and the
/// previous window's, expiring by TTL two windows after the current one starts.
#[async_trait]
pub trait RateLimitStore: Send + Sync {
    /// Counts one hit on `key` in the window starting at `start` (`window` seconds long) if
    /// that window holds fewer than `max` hits, atomically; `None` when it is full. An item of an
    /// older window rolls over (its count becomes `previous` if that window was the one just
    /// before). One conditional write in the common case; an expired item counts as absent.
    async fn rate_hit(
        &self,
        key: &str,
        start: i64,
        window: i64,
        max: u32,
        expires_at: i64,
    ) -> Result<Option<RateCount>, StoreError>;
    /// Takes back one hit counted in the window `start` (a hit the sliding window refused).
    async fn rate_unhit(&self, key: &str, start: i64) -> Result<(), StoreError>;
}

/// Who may send a queued mail job (`MailLedger::claim_mail`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailClaim {
    /// This delivery holds the job's lease and may send it.
    Claimed,
    /// An earlier delivery sent it: a redelivered job, not to be sent again.
    Sent,
    /// Another delivery holds a live lease on it (a concurrent duplicate): try again later.
    Busy,
}

/// The idempotency record of queued mail: one item per job id, claimed with a conditional
/// write before the send and marked sent after it, so that a job SQS delivers again after a
/// send that succeeded mails once. Items expire by TTL after the queue's retention.
#[async_trait]
pub trait MailLedger: Send + Sync {
    /// Claims job `job_id` for the delivery `claim` (unique per attempt) until `lease_until`:
    /// granted if no delivery sent it and no other holds a lease that is still live. The
    /// same `claim` retried after its write landed is granted again.
    async fn claim_mail(
        &self,
        job_id: &str,
        claim: &str,
        now: i64,
        lease_until: i64,
        expires_at: i64,
    ) -> Result<MailClaim, StoreError>;
    /// Records that the delivery `claim` sent the job.
    async fn mail_sent(&self, job_id: &str, claim: &str, now: i64) -> Result<(), StoreError>;
    /// Gives up the lease of `claim` after a failed send, so a retry need not wait for it.
    async fn release_mail(&self, job_id: &str, claim: &str) -> Result<(), StoreError>;
}

/// What an administrator may change on a user (absent = unchanged).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserChanges {
    pub email: Option<String>,
    pub name: Option<Option<String>>,
    pub is_superuser: Option<bool>,
    pub is_verified: Option<bool>,
    pub is_active: Option<bool>,
    pub password_hash: Option<String>,
    /// Bump the session version (role change, deactivation, password change, forced logout).
    pub bump_session_version: bool,
}

/// Outcome of an administrative write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminWrite {
    Done(User),
    NotFound,
    EmailTaken,
    /// It would leave no active administrator.
    LastAdmin,
    /// The user changed meanwhile; read it again.
    Changed,
}

/// Users as administrators see them.
#[async_trait]
pub trait AdminStore: Send + Sync {
    /// Users whose email starts with `prefix`, ordered by email, after `after` (email, id);
    /// `true` if more may follow. A query on the email index, never a scan.
    async fn list_users(
        &self,
        prefix: &str,
        after: Option<(&str, &str)>,
        limit: usize,
    ) -> Result<(Vec<User>, bool), StoreError>;
    /// Creates a user (and counts it if it is an active administrator), atomically.
    async fn admin_create_user(&self, user: &User) -> Result<AdminWrite, StoreError>;
    /// Applies `changes` in one transaction if the stored user still matches `current` (the
    /// admin's read) in what `User::admin_guard_matches` compares, else `Changed`; fields the
    /// changes do not name keep their stored values. The unique-email claim moves with the
    /// email, and the count of active administrators never drops to zero.
    async fn admin_update_user(
        &self,
        current: &User,
        changes: &UserChanges,
        now: i64,
    ) -> Result<AdminWrite, StoreError>;
    /// Clears the user's lockout items, deletes the user and its email claim in one
    /// transaction (never the last active administrator), then its sessions and pending
    /// tokens (`purge_user`).
    async fn admin_delete_user(&self, current: &User) -> Result<AdminWrite, StoreError>;
    /// Deletes what is kept under user `id` but the user item itself (sessions, pending
    /// tokens): what a delete whose answer was lost after its transaction may have left.
    async fn purge_user(&self, id: &str) -> Result<(), StoreError>;
    /// Removes the user's second factor (secret, pending enrolment, recovery codes) and clears
    /// `mfa_enabled`, in one transaction, if the stored user still matches `current` (as
    /// `admin_update_user`); the user as it is after.
    async fn admin_reset_mfa(&self, current: &User, now: i64) -> Result<AdminWrite, StoreError>;
    /// Whether any lockout of `account` is in force (account-wide or from some IP).
    async fn is_locked(&self, account: &str, now: i64) -> Result<bool, StoreError>;
}

/// True if the user counts as an active administrator.
pub fn is_active_admin(u: &User) -> bool {
    u.is_superuser && u.is_active
}

impl UserChanges {
    /// `current` with the changes applied (the store writes exactly this).
    pub fn apply(&self, current: &User, now: i64) -> User {
        let mut u = current.clone();
        if let Some(e) = &self.email {
            u.email = e.clone();
        }
        if let Some(n) = &self.name {
            u.name = n.clone();
        }
        if let Some(v) = self.is_superuser {
            u.is_superuser = v;
        }
        if let Some(v) = self.is_verified {
            u.is_verified = v;
        }
        if let Some(v) = self.is_active {
            u.is_active = v;
        }
        if let Some(h) = &self.password_hash {
            u.password_hash = h.clone();
        }
        if self.bump_session_version {
            u.session_version += 1;
        }
        if self.takes_over() {
            u.pending_signup = false;
            u.registrations.clear();
        }
        u.updated_at = now;
        u
    }

    /// Whether the changes make the account the administrator's: a change of its credentials,
    /// address, role or verification. A later sign-up for the address then no longer adds
    /// registrations to it. (A name or an activation leaves a pending sign-up pending.)
    pub fn takes_over(&self) -> bool {
        self.email.is_some()
            || self.is_superuser.is_some()
            || self.is_verified.is_some()
            || self.password_hash.is_some()
    }
}

/// What each use case needs from storage: a function that serves one use case links only
/// these methods of the store it is given.
pub trait SignupPort: UserLookup + UserRegistry + OneTimeTokenStore + LockoutStore {}
impl<T: UserLookup + UserRegistry + OneTimeTokenStore + LockoutStore> SignupPort for T {}

/// Spending a mail token: the user's current session version, and the token.
pub trait TokenPort: UserLookup + OneTimeTokenStore {}
impl<T: UserLookup + OneTimeTokenStore> TokenPort for T {}

/// The lockout gate: its counters, and the owner to mail when it locks.
pub trait LockoutPort: UserLookup + LockoutStore + OneTimeTokenStore {}
impl<T: UserLookup + LockoutStore + OneTimeTokenStore> LockoutPort for T {}

/// Login: lockout, the user, the session it starts (or the challenge of its second factor).
pub trait LoginPort: UserLookup + UserUpdates + OneTimeTokenStore + LockoutStore + SessionStore + MfaStore {}
impl<T: UserLookup + UserUpdates + OneTimeTokenStore + LockoutStore + SessionStore + MfaStore> LoginPort for T {}

/// The second factor: enrolment and management (under the lockout gate), and the login's
/// second step, which starts the session.
pub trait MfaPort: UserLookup + MfaStore + LockoutStore + SessionStore {}
impl<T: UserLookup + MfaStore + LockoutStore + SessionStore> MfaPort for T {}

/// Bearer authentication: the token's user and its session, read together.
pub trait BearerPort: UserLookup + SessionStore {}
impl<T: UserLookup + SessionStore> BearerPort for T {}

/// Refresh, logout and session management.
pub trait SessionPort: UserLookup + UserUpdates + SessionStore {}
impl<T: UserLookup + UserUpdates + SessionStore> SessionPort for T {}

/// Forgot and reset password.
pub trait RecoveryPort: UserLookup + OneTimeTokenStore + SessionStore + LockoutStore {}
impl<T: UserLookup + OneTimeTokenStore + SessionStore + LockoutStore> RecoveryPort for T {}

/// The signed-in user's own account: password and email (under the lockout gate).
pub trait AccountPort: UserLookup + UserUpdates + OneTimeTokenStore + SessionStore + LockoutStore + MfaStore {}
impl<T: UserLookup + UserUpdates + OneTimeTokenStore + SessionStore + LockoutStore + MfaStore> AccountPort for T {}

/// Administration.
pub trait AdminPort: UserLookup + UserUpdates + AdminStore + LockoutStore + SessionStore {}
impl<T: UserLookup + UserUpdates + AdminStore + LockoutStore + SessionStore> AdminPort for T {}

/// Everything (the contract suite, and stores that serve every use case).
pub trait Store:
    UserLookup
    + UserRegistry
    + UserUpdates
    + OneTimeTokenStore
    + LockoutStore
    + SessionStore
    + RateLimitStore
    + AdminStore
    + MailLedger
    + MfaStore
{
}
impl<
    T: UserLookup
        + UserRegistry
        + UserUpdates
        + OneTimeTokenStore
        + LockoutStore
        + SessionStore
        + RateLimitStore
        + AdminStore
        + MailLedger
        + MfaStore,
> Store for T
{
}
