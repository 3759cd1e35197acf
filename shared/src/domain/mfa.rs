//! The second factor (TOTP, RFC 6238, and recovery codes): enrolment and management by the
//! signed-in user (`MfaSettings`), the login's second step (`MfaLogin`), and the
//! administrator's reset (`MfaReset`). docs/security.md "Second factor".
//!
//! - Enrolment and every change need the current password, checked under the lockout gate
//!   like a login; disabling and new recovery codes also need a current code.
//! - A TOTP code is spent by a conditional write of its step (`last_step < step`), so it is
//!   accepted once however many requests carry it; a recovery code by removing its hash.
//! - A login whose password was right answers a challenge (`mfa_token`: `<user id>.<secret>`,
//!   only the secret's hash stored) instead of tokens. Answering it spends the code and the
//!   challenge and writes the session in one transaction; a wrong code counts on the challenge (five kill it) and on
//!   the account's lockout, which the right password neither added to nor cleared
//!   (`Lockout::pending`): only a completed second step clears it.

use std::sync::Arc;

use crate::clock::SharedClock;
use crate::context::RequestCtx;
use crate::domain::admin::{Actor, admin_event};
use crate::domain::authn::Caller;
use crate::domain::error::{DomainError, DomainResult, invalid};
use crate::domain::lockout::{Attempt, Lockout};
use crate::domain::notify::Notifier;
use crate::domain::ratelimit::{Gate, admit_id, admitted};
use crate::domain::sessions::{MFA, OTP, PWD, SessionIssuer};
use crate::domain::views::{TokenResponse, UserView};
use crate::logging::security_event;
use crate::mail::templates::{self, MfaNotice};
use crate::mfa::{self, Sealer, TotpSecret};
use crate::password::{Hasher, Verified};
use crate::secret::{Password, Token};
use crate::store::{
    AdminPort, AdminWrite, MfaChallenge, MfaFactor, MfaPort, MfaProof, MfaSignIn, MfaSpend, MfaStore, User,
};
use crate::tokens;

/// A new (pending) factor, as the authenticator app takes it. `Debug` shows neither form of
/// the secret.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Enrolment {
    /// The secret, base32 (160 bits).
    pub secret: String,
    /// `otpauth://totp/<issuer>:<email>?secret=…&issuer=…&algorithm=SHA1&digits=6&period=30`
    pub otpauth_uri: String,
}

/// Recovery codes, shown once. `Debug` shows how many, not the codes.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct RecoveryCodes {
    pub recovery_codes: Vec<String>,
}

impl std::fmt::Debug for Enrolment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Enrolment").finish_non_exhaustive()
    }
}

impl std::fmt::Debug for RecoveryCodes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecoveryCodes").field("count", &self.recovery_codes.len()).finish()
    }
}

fn seal_err(e: mfa::MfaError) -> DomainError {
    DomainError::Internal(e.to_string())
}

/// The proof `code` makes for the active factor as read: a TOTP code of a step newer than the
/// last accepted one, or an unused recovery code; `None` if it makes none. (The store's
/// conditional write decides; this read lets a wrong code count before anything is written.)
fn proof_of(
    sealer: &Sealer,
    user_id: &str,
    factor: &MfaFactor,
    code: &str,
    now: i64,
) -> DomainResult<Option<MfaProof>> {
    let Some(sealed) = factor.secret.as_deref() else { return Ok(None) };
    if let Some(hash) = mfa::hash_recovery_code(code) {
        return Ok(factor.recovery.contains(&hash).then_some(MfaProof::Recovery { hash }));
    }
    let secret = sealer.open(user_id, sealed).map_err(seal_err)?;
    Ok(secret
        .matching_step(code, now)
        .filter(|step| *step > factor.last_step)
        .map(|step| MfaProof::Totp { sealed: sealed.to_owned(), step }))
}

/// Stores a challenge for `user`, whose password was just checked, and returns its token.
pub(crate) async fn challenge(store: &dyn MfaStore, user: &User, now: i64) -> DomainResult<String> {
    let secret = tokens::random_secret()?;
    let c = MfaChallenge {
        user_id: user.id.clone(),
        session_version: user.session_version,
        failures: 0,
        expires_at: now + mfa::CHALLENGE_TTL_SECS,
    };
    store.put_mfa_challenge(&tokens::hash_secret(&secret), &c).await?;
    Ok(format!("{}.{secret}", user.id))
}

/// What the owner is told, and the security log.
async fn notify(notifier: &Notifier, user: &User, what: MfaNotice, codes_left: usize, ctx: &RequestCtx) {
    let mail = templates::mfa_notice(notifier.product(), notifier.base_url(), &user.email, what, codes_left);
    notifier.notice(mail, ctx, "mfa_notice").await;
}

/// What a caller offers as the second factor of a step-up. Today a code (TOTP or recovery);
/// a passkey assertion joins as another variant, checked by the same `StepUp::check`.
#[derive(Clone, Copy)]
pub enum StepUpProof<'a> {
    Code(&'a str),
}

impl std::fmt::Debug for StepUpProof<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StepUpProof::Code(_) => f.write_str("Code(..)"),
        }
    }
}

/// Step-up (ASVS 7.5.1): for an account with an active second factor, a change of its
/// credentials or its address needs the factor as well as the password. It runs after the
/// password was checked under the lockout gate, and closes that attempt: no factor, success;
/// no proof, the attempt is taken back (`Lockout::pending`) and the change refused; a wrong,
/// used or replayed proof counts as a failure. A good proof is spent before the change is
/// written, so a code works once.
#[derive(Clone)]
pub struct StepUp {
    store: Arc<dyn MfaStore>,
    sealer: Arc<Sealer>,
    lockout: Lockout,
    clock: SharedClock,
}

impl StepUp {
    pub fn new(store: Arc<dyn MfaStore>, sealer: Arc<Sealer>, lockout: Lockout, clock: SharedClock) -> Self {
        Self { store, sealer, lockout, clock }
    }

    /// The lockout gate the password check before the step-up passes.
    pub fn lockout(&self) -> &Lockout {
        &self.lockout
    }

    /// Closes `attempt` (the password of `user` was right) with the step-up's outcome.
    pub async fn check(
        &self,
        user: &User,
        proof: Option<StepUpProof<'_>>,
        attempt: Attempt,
        event: &str,
        ctx: &RequestCtx,
    ) -> DomainResult<()> {
        if !user.mfa_enabled {
            return self.lockout.succeeded(attempt).await;
        }
        let factor = self.store.get_mfa(&user.id).await?.unwrap_or_default();
        let Some(StepUpProof::Code(code)) = proof else {
            self.lockout.pending(attempt).await?;
            security_event(event, ctx, Some(&user.id), "step_up_required");
            return Err(DomainError::StepUpRequired);
        };
        let spent = match proof_of(&self.sealer, &user.id, &factor, code, self.clock.now())? {
            Some(p) => self.store.spend_mfa_proof(&user.id, &p).await? == MfaSpend::Spent,
            None => false,
        };
        if !spent {
            self.lockout.failed(attempt, Some(user), ctx).await?;
            security_event(event, ctx, Some(&user.id), "step_up_wrong_code");
            return Err(DomainError::StepUpRefused);
        }
        self.lockout.succeeded(attempt).await
    }
}

/// Enrolment, recovery codes and disabling, by the signed-in user.
pub struct MfaSettings {
    store: Arc<dyn MfaPort>,
    hasher: Hasher,
    sealer: Arc<Sealer>,
    lockout: Lockout,
    notifier: Notifier,
    gate: Option<Gate>,
    clock: SharedClock,
}

impl MfaSettings {
    pub fn new(
        store: Arc<dyn MfaPort>,
        hasher: Hasher,
        sealer: Arc<Sealer>,
        lockout: Lockout,
        notifier: Notifier,
        gate: Option<Gate>,
        clock: SharedClock,
    ) -> Self {
        Self { store, hasher, sealer, lockout, notifier, gate, clock }
    }

    /// Checks the current password (and, with `code`, a current code of the active factor)
    /// under the lockout gate: either wrong counts like a failed login and gets a validation
    /// error naming its field; a locked account is told its password is wrong. Returns the
    /// proof the code makes, not yet spent.
    async fn check(
        &self,
        user: &User,
        pw: &Password,
        code: Option<(&MfaFactor, &str)>,
        event: &str,
        ctx: &RequestCtx,
    ) -> DomainResult<Option<MfaProof>> {
        let Ok(attempt) = self.lockout.enter(&user.email, ctx).await? else {
            security_event(event, ctx, Some(&user.id), "locked");
            return Err(invalid("current_password", "is incorrect"));
        };
        if self.hasher.verify(pw, Some(&user.password_hash)).await? == Verified::No {
            self.lockout.failed(attempt, Some(user), ctx).await?;
            security_event(event, ctx, Some(&user.id), "wrong_current_password");
            return Err(invalid("current_password", "is incorrect"));
        }
        let proof = match code {
            None => None,
            Some((factor, code)) => match proof_of(&self.sealer, &user.id, factor, code, self.clock.now())? {
                Some(p) => Some(p),
                None => {
                    self.lockout.failed(attempt, Some(user), ctx).await?;
                    security_event(event, ctx, Some(&user.id), "wrong_code");
                    return Err(invalid("code", "is incorrect"));
                }
            },
        };
        self.lockout.succeeded(attempt).await?;
        Ok(proof)
    }

    /// Spends a checked proof; a code already used is as wrong as any other.
    async fn spend(&self, user: &User, proof: &MfaProof, event: &str, ctx: &RequestCtx) -> DomainResult<()> {
        match self.store.spend_mfa_proof(&user.id, proof).await? {
            MfaSpend::Spent => Ok(()),
            _ => {
                security_event(event, ctx, Some(&user.id), "code_already_used");
                Err(invalid("code", "is incorrect"))
            }
        }
    }

    async fn active(&self, user: &User) -> DomainResult<MfaFactor> {
        match self.store.get_mfa(&user.id).await? {
            Some(f) if f.secret.is_some() && user.mfa_enabled => Ok(f),
            _ => Err(DomainError::Conflict("No second factor is enabled.".into())),
        }
    }

    /// Starts an enrolment (`POST /auth/mfa/totp/enroll`): a new pending secret, replacing an
    /// earlier pending one. 409 when a factor is active.
    pub async fn enroll(&self, caller: &Caller, pw: &Password, ctx: &RequestCtx) -> DomainResult<Enrolment> {
        let user = &caller.user;
        admit_id(&self.gate, &user.id, ctx).await?;
        self.check(user, pw, None, "mfa_enroll", ctx).await?;
        if user.mfa_enabled {
            return Err(DomainError::MfaAlreadyEnabled);
        }
        let secret = TotpSecret::generate().map_err(seal_err)?;
        let sealed = self.sealer.seal(&user.id, &secret).map_err(seal_err)?;
        if !self.store.put_pending_mfa(&user.id, &sealed, self.clock.now()).await? {
            return Err(DomainError::MfaAlreadyEnabled);
        }
        security_event("mfa_enroll_started", ctx, Some(&user.id), "pending");
        Ok(Enrolment { secret: secret.base32(), otpauth_uri: secret.otpauth_uri(self.notifier.product(), &user.email) })
    }

    /// Activates the pending factor with its first code (`POST /auth/mfa/totp/confirm`):
    /// ten recovery codes, shown only here; every other session of the user ends (the
    /// caller's moves to the new session version in the same write).
    pub async fn confirm(&self, caller: &Caller, code: &str, ctx: &RequestCtx) -> DomainResult<RecoveryCodes> {
        let user = &caller.user;
        admit_id(&self.gate, &user.id, ctx).await?;
        if user.mfa_enabled {
            return Err(DomainError::MfaAlreadyEnabled);
        }
        let factor = self.store.get_mfa(&user.id).await?.unwrap_or_default();
        let Some(sealed) = factor.pending else {
            return Err(DomainError::Conflict("No enrolment is pending: start one first.".into()));
        };
        let secret = self.sealer.open(&user.id, &sealed).map_err(seal_err)?;
        let Some(step) = secret.matching_step(code, self.clock.now()) else {
            security_event("mfa_enroll_confirm", ctx, Some(&user.id), "wrong_code");
            return Err(invalid("code", "is incorrect"));
        };
        let codes = mfa::recovery_codes().map_err(seal_err)?;
        let hashes: Vec<String> = codes.iter().filter_map(|c| mfa::hash_recovery_code(c)).collect();
        let sid = &caller.claims.sid;
        self.store
            .enable_mfa(&user.id, &sealed, step, &hashes, user.session_version, sid, self.clock.now())
            .await?
            .ok_or_else(|| DomainError::Conflict("The account changed meanwhile; enrol again.".into()))?;
        self.store.delete_sessions(&user.id, Some(sid)).await?;
        security_event("mfa_enabled", ctx, Some(&user.id), "success");
        crate::metrics::count("MfaEnabled");
        notify(&self.notifier, user, MfaNotice::Enabled, 0, ctx).await;
        Ok(RecoveryCodes { recovery_codes: codes })
    }

    /// Replaces every recovery code (`POST /auth/mfa/recovery-codes`).
    pub async fn regenerate(
        &self,
        caller: &Caller,
        pw: &Password,
        code: &str,
        ctx: &RequestCtx,
    ) -> DomainResult<RecoveryCodes> {
        let user = &caller.user;
        admit_id(&self.gate, &user.id, ctx).await?;
        let factor = self.active(user).await?;
        let proof = self.check(user, pw, Some((&factor, code)), "mfa_recovery_codes", ctx).await?;
        let proof = proof.ok_or_else(|| invalid("code", "is incorrect"))?;
        self.spend(user, &proof, "mfa_recovery_codes", ctx).await?;
        let codes = mfa::recovery_codes().map_err(seal_err)?;
        let hashes: Vec<String> = codes.iter().filter_map(|c| mfa::hash_recovery_code(c)).collect();
        let sealed = factor.secret.as_deref().unwrap_or_default();
        if !self.store.replace_recovery_codes(&user.id, sealed, &hashes).await? {
            return Err(DomainError::Conflict("The second factor changed meanwhile.".into()));
        }
        security_event("mfa_recovery_codes_regenerated", ctx, Some(&user.id), "success");
        notify(&self.notifier, user, MfaNotice::CodesRegenerated, 0, ctx).await;
        Ok(RecoveryCodes { recovery_codes: codes })
    }

    /// Removes the factor (`POST /auth/mfa/totp/disable`) with the password and a current
    /// TOTP or recovery code.
    pub async fn disable(&self, caller: &Caller, pw: &Password, code: &str, ctx: &RequestCtx) -> DomainResult<()> {
        let user = &caller.user;
        admit_id(&self.gate, &user.id, ctx).await?;
        let factor = self.active(user).await?;
        let proof = self.check(user, pw, Some((&factor, code)), "mfa_disable", ctx).await?;
        let proof = proof.ok_or_else(|| invalid("code", "is incorrect"))?;
        self.spend(user, &proof, "mfa_disable", ctx).await?;
        let sealed = factor.secret.as_deref().unwrap_or_default();
        if !self.store.disable_mfa(&user.id, sealed, self.clock.now()).await? {
            return Err(DomainError::Conflict("The second factor changed meanwhile.".into()));
        }
        security_event("mfa_disabled", ctx, Some(&user.id), "success");
        crate::metrics::count("MfaDisabled");
        notify(&self.notifier, user, MfaNotice::Disabled, 0, ctx).await;
        Ok(())
    }
}

/// How a challenge is answered.
#[derive(Debug, Clone, Copy)]
pub enum Answer<'a> {
    Totp(&'a str),
    RecoveryCode(&'a str),
}

/// The login's second step (`POST /auth/mfa/verify`, and the token endpoint's MFA grant).
pub struct MfaLogin {
    store: Arc<dyn MfaPort>,
    sealer: Arc<Sealer>,
    lockout: Lockout,
    issuer: SessionIssuer,
    notifier: Notifier,
    clock: SharedClock,
}

impl MfaLogin {
    pub fn new(
        store: Arc<dyn MfaPort>,
        sealer: Arc<Sealer>,
        lockout: Lockout,
        issuer: SessionIssuer,
        notifier: Notifier,
        clock: SharedClock,
    ) -> Self {
        Self { store, sealer, lockout, issuer, notifier, clock }
    }

    /// Answers the challenge `token` and starts the session. Every refusal (unknown, used,
    /// expired or dead challenge, wrong or replayed code, locked account) is the same
    /// `InvalidMfaCode`.
    pub async fn verify(&self, token: &Token, answer: Answer<'_>, ctx: &RequestCtx) -> DomainResult<TokenResponse> {
        let refused = |outcome: &str, user: Option<&str>| {
            security_event("mfa_verify_failed", ctx, user, outcome);
            crate::metrics::count("MfaFailed");
            DomainError::InvalidMfaCode
        };
        let Some((user_id, hash)) = tokens::parse_one_time(token.expose()) else {
            return Err(refused("malformed_challenge", None));
        };
        let now = self.clock.now();
        let max = mfa::CHALLENGE_MAX_FAILURES;
        let (challenge, user, factor) = tokio::try_join!(
            self.store.get_mfa_challenge(&user_id, &hash, now, max),
            self.store.get_user(&user_id),
            self.store.get_mfa(&user_id),
        )?;
        // Everything above only read; writes wait for the per-IP rate limit's decision.
        admitted(ctx).await?;
        let Some(challenge) = challenge else { return Err(refused("challenge_gone", Some(&user_id))) };
        let (Some(user), Some(factor)) = (user, factor) else { return Err(refused("no_factor", Some(&user_id))) };
        // A password change, reset or deactivation since the password was checked ends it.
        if !user.is_active || !user.mfa_enabled || user.session_version != challenge.session_version {
            return Err(refused("account_changed", Some(&user.id)));
        }
        let Ok(attempt) = self.lockout.enter(&user.email, ctx).await? else {
            return Err(refused("locked", Some(&user.id)));
        };
        // Each answer is only what it says it is: a TOTP field never spends a recovery code.
        let proof = match answer {
            Answer::Totp(code) if mfa::hash_recovery_code(code).is_none() => {
                proof_of(&self.sealer, &user.id, &factor, code, now)?
            }
            Answer::RecoveryCode(code) if mfa::hash_recovery_code(code).is_some() => {
                proof_of(&self.sealer, &user.id, &factor, code, now)?
            }
            _ => None,
        };
        let recovery = matches!(proof, Some(MfaProof::Recovery { .. }));
        let amr = [PWD, if recovery { MFA } else { OTP }];
        let Some(proof) = proof else {
            self.store.mfa_challenge_failed(&user.id, &hash, now).await?;
            self.lockout.failed(attempt, Some(&user), ctx).await?;
            return Err(refused("wrong_code", Some(&user.id)));
        };
        // The code, the challenge and the session in one write (`complete_mfa_sign_in`).
        let (session, secret) = self.issuer.new_login(&user, &amr, ctx, now).await?;
        let clear_locks = self.lockout.gate_keys(&attempt);
        let sign_in = MfaSignIn {
            hash: &hash,
            proof: &proof,
            session: &session,
            clear_locks: &clear_locks,
            now,
            max_failures: max,
        };
        match self.store.complete_mfa_sign_in(&sign_in).await? {
            MfaSpend::Spent => {}
            MfaSpend::ChallengeGone => {
                self.lockout.failed(attempt, Some(&user), ctx).await?;
                return Err(refused("challenge_gone", Some(&user.id)));
            }
            MfaSpend::Refused => {
                self.store.mfa_challenge_failed(&user.id, &hash, now).await?;
                self.lockout.failed(attempt, Some(&user), ctx).await?;
                return Err(refused("wrong_code", Some(&user.id)));
            }
        }
        // The write above cleared the attempt's keys.
        drop(attempt);
        let tokens = self.issuer.respond(&user, &session, &secret, now)?;
        security_event("login_succeeded", ctx, Some(&user.id), if recovery { "recovery_code" } else { "totp" });
        crate::metrics::count("LoginSucceeded");
        if recovery {
            let left = factor.recovery.len().saturating_sub(1);
            notify(&self.notifier, &user, MfaNotice::RecoveryCodeUsed, left, ctx).await;
        }
        Ok(tokens)
    }
}

/// An administrator removes a user's second factor (`POST /users/{id}/mfa/reset`): for a user
/// who lost both the device and the codes.
pub struct MfaReset {
    store: Arc<dyn AdminPort>,
    notifier: Notifier,
    clock: SharedClock,
}

impl MfaReset {
    pub fn new(store: Arc<dyn AdminPort>, notifier: Notifier, clock: SharedClock) -> Self {
        Self { store, notifier, clock }
    }

    /// `actor` removes the factor of user `id` (an id, as the API and the CLI resolve it).
    pub async fn reset(&self, actor: Actor<'_>, id: &str, ctx: &RequestCtx) -> DomainResult<UserView> {
        let current = self.store.get_user(id).await?.ok_or(DomainError::NotFound)?;
        let user = match self.store.admin_reset_mfa(&current, self.clock.now()).await? {
            AdminWrite::Done(u) => u,
            AdminWrite::NotFound => return Err(DomainError::NotFound),
            _ => return Err(DomainError::Conflict("The user changed meanwhile; read it again and retry.".into())),
        };
        admin_event("admin_user_mfa_reset", ctx, actor, &user.id, &["mfa"]);
        notify(&self.notifier, &user, MfaNotice::ResetByAdmin, 0, ctx).await;
        Ok(UserView::from(&user))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::authn::Authenticator;
    use crate::domain::login::Login;
    use crate::domain::testkit::{Kit, PASSWORD};
    use crate::store::UserLookup;

    struct Mfa {
        k: Kit,
        sealer: Arc<Sealer>,
    }

    impl Mfa {
        fn new() -> Self {
            Self { k: Kit::new(), sealer: Arc::new(Sealer::ephemeral().unwrap()) }
        }
        fn settings(&self) -> MfaSettings {
            let k = &self.k;
            MfaSettings::new(
                k.store.clone(),
                k.hasher.clone(),
                self.sealer.clone(),
                k.lockout(),
                k.notifier(),
                None,
                k.clock.shared(),
            )
        }
        fn second_step(&self) -> MfaLogin {
            let k = &self.k;
            MfaLogin::new(k.store.clone(), self.sealer.clone(), k.lockout(), k.issuer(), k.notifier(), k.clock.shared())
        }
        fn login(&self) -> Login {
            let k = &self.k;
            Login::new(
                k.store.clone(),
                k.hasher.clone(),
                k.lockout(),
                k.issuer(),
                crate::domain::signup::VerificationLinks::new(k.notifier(), &k.cfg, k.clock.shared()),
                None,
                k.clock.shared(),
            )
        }
        async fn caller(&self, user: &User) -> Caller {
            let k = &self.k;
            let user = k.stored(&user.id).await;
            let t = k.issuer().start(k.store.as_ref(), &user, &Kit::ctx("192.0.2.1"), k.clock.now()).await.unwrap();
            Authenticator::new(k.store.clone(), k.jwt(), k.clock.shared())
                .authenticate(&t.access_token, &Kit::ctx("192.0.2.1"))
                .await
                .unwrap()
        }
        /// A user with an active factor: its secret and recovery codes.
        async fn enrolled(&self, email: &str) -> (User, TotpSecret, Vec<String>) {
            let u = self.k.user(email, PASSWORD).await;
            let c = self.caller(&u).await;
            let e = self.settings().enroll(&c, &Password::new(PASSWORD), &Kit::ctx("192.0.2.1")).await.unwrap();
            let secret = TotpSecret::from_bytes(totp_rs::Secret::try_from_base32(&e.secret).unwrap().as_ref().to_vec());
            let code = secret.code_at(self.k.clock.now());
            let codes = self.settings().confirm(&c, &code, &Kit::ctx("192.0.2.1")).await.unwrap().recovery_codes;
            // The next code is a step later: the enrolment spent this one.
            self.k.clock.advance(mfa::STEP as i64);
            (self.k.stored(&u.id).await, secret, codes)
        }
        async fn challenge(&self, email: &str, ip: &str) -> Token {
            match self.login().login(email, &Password::new(PASSWORD), &Kit::ctx(ip)).await {
                Err(DomainError::MfaRequired { mfa_token }) => mfa_token,
                other => panic!("expected the challenge, got {other:?}"),
            }
        }
        fn now(&self) -> i64 {
            self.k.clock.now()
        }
    }

    fn amr(t: &TokenResponse, k: &Kit) -> Vec<String> {
        k.jwt().verify(&t.access_token).unwrap().amr
    }

    #[tokio::test]
    async fn given_an_enrolment_then_only_a_confirmed_factor_is_active_and_login_asks_for_it() {
        let m = Mfa::new();
        let u = m.k.user("eve@example.com", PASSWORD).await;
        let c = m.caller(&u).await;
        let other = m.caller(&u).await;
        let ctx = Kit::ctx("192.0.2.1");
        let e = m.settings().enroll(&c, &Password::new(PASSWORD), &ctx).await.unwrap();
        assert!(e.otpauth_uri.starts_with("otpauth://totp/"), "{}", e.otpauth_uri);
        // Pending only: the password still signs in.
        assert!(m.login().login("eve@example.com", &Password::new(PASSWORD), &ctx).await.is_ok());
        let secret = TotpSecret::from_bytes(totp_rs::Secret::try_from_base32(&e.secret).unwrap().as_ref().to_vec());
        let wrong = if secret.code_at(m.now()) == "000000" { "111111" } else { "000000" };
        assert!(matches!(m.settings().confirm(&c, wrong, &ctx).await, Err(DomainError::Validation(_))));
        let codes = m.settings().confirm(&c, &secret.code_at(m.now()), &ctx).await.unwrap().recovery_codes;
        assert_eq!(codes.len(), 10);
        let stored = m.k.stored(&u.id).await;
        assert!(stored.mfa_enabled);
        assert_eq!(stored.session_version, u.session_version + 1, "other sessions' tokens die");
        let sessions = crate::store::SessionStore::list_sessions(m.k.store.as_ref(), &u.id, m.now()).await.unwrap();
        assert_eq!(sessions.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(), vec![c.claims.sid.as_str()]);
        assert_ne!(other.claims.sid, c.claims.sid);
        // Stored sealed, codes hashed.
        let f = MfaStore::get_mfa(m.k.store.as_ref(), &u.id).await.unwrap().unwrap();
        assert!(f.secret.as_deref().is_some_and(|s| !s.contains(&e.secret)));
        assert!(codes.iter().all(|c| !f.recovery.contains(c)));
        // A second enrolment is refused; a login asks for the factor and carries no token.
        assert!(matches!(
            m.settings().enroll(&m.caller(&u).await, &Password::new(PASSWORD), &ctx).await,
            Err(DomainError::MfaAlreadyEnabled)
        ));
        m.challenge("eve@example.com", "192.0.2.1").await;
        assert_eq!(m.k.outbox.to("eve@example.com").len(), 1, "the enabled notice");
    }

    #[tokio::test]
    async fn given_a_challenge_then_a_code_is_accepted_once_and_the_token_says_otp() {
        let m = Mfa::new();
        let (_, secret, _) = m.enrolled("otp@example.com").await;
        let ctx = Kit::ctx("192.0.2.1");
        let ch = m.challenge("otp@example.com", "192.0.2.1").await;
        let code = secret.code_at(m.now());
        let t = m.second_step().verify(&ch, Answer::Totp(&code), &ctx).await.unwrap();
        assert_eq!(amr(&t, &m.k), vec!["pwd", "otp"]);
        // The challenge is spent; the same code on a new challenge is a replay.
        assert!(matches!(
            m.second_step().verify(&ch, Answer::Totp(&code), &ctx).await,
            Err(DomainError::InvalidMfaCode)
        ));
        let ch2 = m.challenge("otp@example.com", "192.0.2.1").await;
        assert!(matches!(
            m.second_step().verify(&ch2, Answer::Totp(&code), &ctx).await,
            Err(DomainError::InvalidMfaCode)
        ));
        m.k.clock.advance(mfa::STEP as i64);
        let t = m.second_step().verify(&ch2, Answer::Totp(&secret.code_at(m.now())), &ctx).await.unwrap();
        // Refreshed tokens keep the method.
        let parts = crate::tokens::parse_refresh(&t.refresh_token).unwrap();
        let s = crate::store::SessionStore::get_session(m.k.store.as_ref(), &parts.user_id, &parts.session_id, m.now())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(s.amr, vec!["pwd", "otp"]);
    }

    #[tokio::test]
    async fn given_one_code_on_eight_challenges_at_once_then_exactly_one_signs_in() {
        let m = Mfa::new();
        let (_, secret, _) = m.enrolled("race@example.com").await;
        let mut challenges = Vec::new();
        for _ in 0..8 {
            challenges.push(m.challenge("race@example.com", "192.0.2.1").await);
        }
        let code = secret.code_at(m.now());
        let uc = m.second_step();
        let ctx = Kit::ctx("192.0.2.1");
        let all = futures::future::join_all(challenges.iter().map(|c| uc.verify(c, Answer::Totp(&code), &ctx))).await;
        assert_eq!(all.iter().filter(|r| r.is_ok()).count(), 1, "{all:?}");
    }

    #[tokio::test]
    async fn given_a_recovery_code_then_it_signs_in_once_says_mfa_and_tells_the_owner() {
        let m = Mfa::new();
        let (_, _, codes) = m.enrolled("rec@example.com").await;
        let ctx = Kit::ctx("192.0.2.1");
        let ch = m.challenge("rec@example.com", "192.0.2.1").await;
        // A recovery code in the TOTP field is no TOTP code.
        assert!(matches!(
            m.second_step().verify(&ch, Answer::Totp(&codes[0]), &ctx).await,
            Err(DomainError::InvalidMfaCode)
        ));
        let shouted = codes[0].to_uppercase();
        let t = m.second_step().verify(&ch, Answer::RecoveryCode(&shouted), &ctx).await.unwrap();
        assert_eq!(amr(&t, &m.k), vec!["pwd", "mfa"]);
        let ch = m.challenge("rec@example.com", "192.0.2.1").await;
        assert!(matches!(
            m.second_step().verify(&ch, Answer::RecoveryCode(&codes[0]), &ctx).await,
            Err(DomainError::InvalidMfaCode)
        ));
        m.second_step().verify(&ch, Answer::RecoveryCode(&codes[1]), &ctx).await.unwrap();
        let mails = m.k.outbox.to("rec@example.com");
        assert_eq!(mails.iter().filter(|m| m.subject.contains("recovery code was used")).count(), 2);
        assert!(mails.last().unwrap().text.contains("8 unused codes"), "{}", mails.last().unwrap().text);
    }

    #[tokio::test]
    async fn given_wrong_codes_then_the_challenge_dies_after_five_and_the_account_locks_for_that_ip() {
        let m = Mfa::new();
        let (u, secret, _) = m.enrolled("guess@example.com").await;
        let ctx = Kit::ctx("192.0.2.66");
        let wrong = |now: i64| if secret.code_at(now) == "123456" { "654321".to_owned() } else { "123456".to_owned() };
        let ch = m.challenge("guess@example.com", "198.51.100.1").await;
        for _ in 0..mfa::CHALLENGE_MAX_FAILURES {
            let w = wrong(m.now());
            assert!(m.second_step().verify(&ch, Answer::Totp(&w), &Kit::ctx("198.51.100.1")).await.is_err());
            m.k.clock.advance(1);
        }
        // Dead now, even with the right code.
        let right = secret.code_at(m.now());
        assert!(matches!(
            m.second_step().verify(&ch, Answer::Totp(&right), &Kit::ctx("198.51.100.1")).await,
            Err(DomainError::InvalidMfaCode)
        ));
        // Wrong codes count toward the lockout of the IP they come from, and a right password
        // in between resets nothing: threshold wrong codes on fresh challenges lock it.
        for _ in 0..m.k.cfg.lockout.threshold {
            let ch = m.challenge("guess@example.com", "192.0.2.66").await;
            let w = wrong(m.now());
            assert!(m.second_step().verify(&ch, Answer::Totp(&w), &ctx).await.is_err());
        }
        assert!(m.k.outbox.to(&u.email).iter().any(|mail| mail.subject.contains("locked")), "the owner is told");
        assert!(matches!(
            m.login().login("guess@example.com", &Password::new(PASSWORD), &ctx).await,
            Err(DomainError::InvalidCredentials)
        ));
        // Elsewhere the owner still signs in.
        let ch = m.challenge("guess@example.com", "203.0.113.5").await;
        m.second_step().verify(&ch, Answer::Totp(&right), &Kit::ctx("203.0.113.5")).await.unwrap();
    }

    #[tokio::test]
    async fn given_an_expired_challenge_or_a_changed_password_then_the_code_is_refused() {
        let m = Mfa::new();
        let (u, secret, _) = m.enrolled("late@example.com").await;
        let ctx = Kit::ctx("192.0.2.1");
        let ch = m.challenge("late@example.com", "192.0.2.1").await;
        m.k.clock.advance(mfa::CHALLENGE_TTL_SECS + 1);
        let code = secret.code_at(m.now());
        assert!(matches!(
            m.second_step().verify(&ch, Answer::Totp(&code), &ctx).await,
            Err(DomainError::InvalidMfaCode)
        ));
        let ch = m.challenge("late@example.com", "192.0.2.1").await;
        crate::store::UserUpdates::bump_session_version(m.k.store.as_ref(), &u.id, m.now()).await.unwrap();
        assert!(matches!(
            m.second_step().verify(&ch, Answer::Totp(&code), &ctx).await,
            Err(DomainError::InvalidMfaCode)
        ));
    }

    #[tokio::test]
    async fn given_the_password_and_a_code_then_disable_and_new_codes_work_and_tell_the_owner() {
        let m = Mfa::new();
        let (u, secret, codes) = m.enrolled("off@example.com").await;
        let ctx = Kit::ctx("192.0.2.1");
        let c = m.caller(&u).await;
        let pw = Password::new(PASSWORD);
        let fresh = m.settings().regenerate(&c, &pw, &codes[0], &ctx).await.unwrap().recovery_codes;
        assert!(fresh.iter().all(|x| !codes.contains(x)));
        // Old codes are gone, and the one just used was spent.
        assert!(matches!(m.settings().disable(&c, &pw, &codes[1], &ctx).await, Err(DomainError::Validation(_))));
        assert!(matches!(
            m.settings().disable(&c, &Password::new("wrong-password-1"), &secret.code_at(m.now()), &ctx).await,
            Err(DomainError::Validation(_))
        ));
        m.settings().disable(&c, &pw, &secret.code_at(m.now()), &ctx).await.unwrap();
        assert!(!m.k.stored(&u.id).await.mfa_enabled);
        assert!(MfaStore::get_mfa(m.k.store.as_ref(), &u.id).await.unwrap().is_none());
        assert!(m.login().login("off@example.com", &pw, &ctx).await.is_ok(), "a password alone signs in again");
        let subjects: Vec<String> = m.k.outbox.to(&u.email).into_iter().map(|m| m.subject).collect();
        assert!(subjects.iter().any(|s| s.contains("new recovery codes")), "{subjects:?}");
        assert!(subjects.iter().any(|s| s.contains("turned off")), "{subjects:?}");
    }

    #[tokio::test]
    async fn given_wrong_passwords_at_enrolment_then_they_count_toward_the_lockout() {
        let m = Mfa::new();
        let u = m.k.user("enr@example.com", PASSWORD).await;
        let c = m.caller(&u).await;
        let ctx = Kit::ctx("192.0.2.9");
        for _ in 0..m.k.cfg.lockout.threshold {
            assert!(m.settings().enroll(&c, &Password::new("wrong-password-1"), &ctx).await.is_err());
        }
        assert!(m.settings().enroll(&c, &Password::new(PASSWORD), &ctx).await.is_err(), "locked for that IP");
        assert!(m.login().login("enr@example.com", &Password::new(PASSWORD), &ctx).await.is_err());
    }

    #[tokio::test]
    async fn given_an_admin_reset_then_the_factor_is_gone_and_the_owner_told() {
        let m = Mfa::new();
        let (u, _, _) = m.enrolled("lost@example.com").await;
        let admin = m.caller(&m.k.user("root@example.com", PASSWORD).await).await;
        let reset = MfaReset::new(m.k.store.clone(), m.k.notifier(), m.k.clock.shared());
        let view = reset.reset(Actor::Admin(&admin.user.id), &u.id, &Kit::ctx("192.0.2.1")).await.unwrap();
        assert!(!view.mfa_enabled);
        assert!(!m.k.store.get_user(&u.id).await.unwrap().unwrap().mfa_enabled);
        assert!(m.login().login("lost@example.com", &Password::new(PASSWORD), &Kit::ctx("192.0.2.1")).await.is_ok());
        assert!(m.k.outbox.to(&u.email).iter().any(|mail| mail.subject.contains("reset")));
        assert!(matches!(
            reset.reset(Actor::Cli, "no-such-user", &Kit::ctx("192.0.2.1")).await,
            Err(DomainError::NotFound)
        ));
    }
}
