//! Password policy (length in code points, zxcvbn dictionaries, email local part, optional
//! composition rules) and argon2id hashing on the blocking pool behind a concurrency cap.

use std::sync::{Arc, OnceLock};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::Semaphore;

use crate::config::{HashParams, PasswordPolicy};
use crate::email::Email;
use crate::secret::Password;
use crate::validation::FieldError;

/// Builds zxcvbn's dictionaries (built lazily on first use) now, so that a function's first
/// password judgement costs what the others do. Call it only where passwords are judged: it
/// links the dictionaries.
pub fn warm_policy() {
    let _ = zxcvbn::zxcvbn("warm-up only: Tq7#vLm", &[]);
}

/// Checks `pw` against the policy; every failing rule is listed for `field`.
pub fn check_policy(
    policy: &PasswordPolicy,
    pw: &Password,
    email: Option<&Email>,
    field: &str,
) -> Result<(), PolicyError> {
    let s = pw.expose();
    let len = s.chars().count();
    let mut errors = Vec::new();
    if len < policy.min_len {
        errors.push(FieldError::new(field, format!("must be at least {} characters", policy.min_len)));
    }
    if len > policy.max_len {
        errors.push(FieldError::new(field, format!("must be at most {} characters", policy.max_len)));
    }
    let lower = s.to_lowercase();
    if let Some(email) = email {
        let local = email.local_part();
        if local.chars().count() >= 3 && lower.contains(local) {
            errors.push(FieldError::new(field, "must not contain your email address"));
        }
    }
    if len <= policy.max_len && !s.is_empty() {
        let inputs: Vec<&str> = email.map(|e| vec![e.local_part(), e.as_str()]).unwrap_or_default();
        let entropy = zxcvbn::zxcvbn(s, &inputs);
        if (entropy.score() as u8) < 3 {
            errors.push(FieldError::new(field, "is too common or easy to guess"));
        }
    }
    if policy.composition_rules {
        if !s.chars().any(char::is_uppercase) {
            errors.push(FieldError::new(field, "must contain an upper-case letter"));
        }
        if !s.chars().any(char::is_lowercase) {
            errors.push(FieldError::new(field, "must contain a lower-case letter"));
        }
        if !s.chars().any(|c| c.is_ascii_digit()) {
            errors.push(FieldError::new(field, "must contain a digit"));
        }
        if s.chars().all(char::is_alphanumeric) {
            errors.push(FieldError::new(field, "must contain a special character"));
        }
    }
    if errors.is_empty() { Ok(()) } else { Err(PolicyError(errors)) }
}

/// Every rule a password fails, for the field it was given in.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("password policy: {} rule(s) failed", .0.len())]
pub struct PolicyError(pub Vec<FieldError>);

/// Hashing could not run (never a wrong password: that is `Verified::No`).
#[derive(Debug, Clone, thiserror::Error)]
#[error("password hashing: {0}")]
pub struct HashError(pub String);

/// argon2id hasher: runs on the blocking pool, at most `permits` hashes at once.
#[derive(Clone)]
pub struct Hasher {
    params: HashParams,
    permits: Arc<Semaphore>,
    dummy: Arc<OnceLock<String>>,
}

/// Outcome of a verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verified {
    No,
    Yes,
    /// Correct, and the stored hash is weaker than today's parameters: here is the new hash.
    YesRehashed(String),
}

impl Hasher {
    pub fn new(params: HashParams, concurrency: usize) -> Self {
        Self { params, permits: Arc::new(Semaphore::new(concurrency.max(1))), dummy: Arc::default() }
    }

    fn argon(params: HashParams) -> Result<Argon2<'static>, HashError> {
        let p = Params::new(params.m_kib, params.t, params.p, None)
            .map_err(|e| HashError(format!("argon2 params: {e}")))?;
        Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, p))
    }

    fn hash_sync(params: HashParams, pw: &str) -> Result<String, HashError> {
        let mut salt_bytes = [0u8; 16];
        getrandom::fill(&mut salt_bytes).map_err(|e| HashError(format!("rng: {e}")))?;
        let salt = SaltString::encode_b64(&salt_bytes).map_err(|e| HashError(format!("salt: {e}")))?;
        Self::argon(params)?
            .hash_password(pw.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| HashError(format!("hash: {e}")))
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> Result<T, HashError> + Send + 'static,
    ) -> Result<T, HashError> {
        let _permit =
            self.permits.clone().acquire_owned().await.map_err(|_| HashError("hash semaphore closed".into()))?;
        tokio::task::spawn_blocking(f).await.map_err(|e| HashError(format!("hash task: {e}")))?
    }

    /// A PHC string for `pw` with the configured parameters.
    pub async fn hash(&self, pw: &Password) -> Result<String, HashError> {
        let params = self.params;
        let pw = pw.clone();
        self.blocking(move || Self::hash_sync(params, pw.expose())).await
    }

    /// Verifies `pw` against `phc`; with `None`, verifies against a dummy hash so that an
    /// unknown user costs the same as a wrong password (and always answers `No`).
    pub async fn verify(&self, pw: &Password, phc: Option<&str>) -> Result<Verified, HashError> {
        let params = self.params;
        let (phc, real) = match phc {
            Some(p) => (p.to_owned(), true),
            None => (self.dummy_hash().await?, false),
        };
        let pw = pw.clone();
        self.blocking(move || {
            let parsed = PasswordHash::new(&phc).map_err(|e| HashError(format!("stored hash: {e}")))?;
            // Verification uses the parameters in the PHC string, whatever today's are.
            let ok = Argon2::default().verify_password(pw.expose().as_bytes(), &parsed).is_ok();
            if !ok || !real {
                return Ok(Verified::No);
            }
            if Self::is_weaker(&parsed, params) {
                return Ok(Verified::YesRehashed(Self::hash_sync(params, pw.expose())?));
            }
            Ok(Verified::Yes)
        })
        .await
    }

    fn is_weaker(parsed: &PasswordHash<'_>, want: HashParams) -> bool {
        if parsed.algorithm.as_str() != "argon2id" {
            return true;
        }
        match Params::try_from(parsed) {
            Ok(p) => p.m_cost() < want.m_kib || p.t_cost() < want.t || p.p_cost() < want.p,
            Err(_) => true,
        }
    }

    /// Makes the dummy hash now, so that the first login for an unknown email costs what the
    /// others do.
    pub async fn warm(&self) -> Result<(), HashError> {
        self.dummy_hash().await.map(drop)
    }

    async fn dummy_hash(&self) -> Result<String, HashError> {
        if let Some(h) = self.dummy.get() {
            return Ok(h.clone());
        }
        let h = Self::dummy_phc(self.params)?;
        Ok(self.dummy.get_or_init(|| h).clone())
    }

    /// A PHC string with the configured parameters, a random salt and a random output: verifying
    /// any password against it costs exactly what a real hash with those parameters costs, and
    /// nothing verifies (no password is known to produce a random output). Making it needs no
    /// hashing, so it costs nothing during init.
    fn dummy_phc(params: HashParams) -> Result<String, HashError> {
        use base64::Engine as _;
        let mut salt = [0u8; 16];
        let mut output = [0u8; argon2::Params::DEFAULT_OUTPUT_LEN];
        getrandom::fill(&mut salt).map_err(|e| HashError(format!("rng: {e}")))?;
        getrandom::fill(&mut output).map_err(|e| HashError(format!("rng: {e}")))?;
        let b64 = base64::engine::general_purpose::STANDARD_NO_PAD;
        let phc = format!(
            "$argon2id$v=19$m={},t={},p={}${}${}",
            params.m_kib,
            params.t,
            params.p,
            b64.encode(salt),
            b64.encode(output)
        );
        PasswordHash::new(&phc).map_err(|e| HashError(format!("dummy hash: {e}")))?;
        Ok(phc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::email::normalize;

    fn policy() -> PasswordPolicy {
        PasswordPolicy::default()
    }

    fn errs(r: Result<(), PolicyError>) -> Vec<String> {
        match r {
            Err(PolicyError(v)) => v.into_iter().map(|e| e.message).collect(),
            Ok(()) => vec![],
        }
    }

    #[test]
    fn strong_password_passes() {
        assert!(check_policy(&policy(), &Password::new("violet-tractor-sunrise-42"), None, "password").is_ok());
    }

    #[test]
    fn short_common_and_email_passwords_are_rejected_with_every_reason() {
        let email = normalize("margaret@example.com").ok();
        let e = errs(check_policy(&policy(), &Password::new("margaret"), email.as_ref(), "password"));
        assert!(e.iter().any(|m| m.contains("at least 12")), "{e:?}");
        assert!(e.iter().any(|m| m.contains("email")), "{e:?}");
        assert!(e.iter().any(|m| m.contains("common")), "{e:?}");
        let e = errs(check_policy(&policy(), &Password::new("password1234"), None, "password"));
        assert_eq!(e, vec!["is too common or easy to guess".to_owned()]);
    }

    #[test]
    fn length_counts_code_points_and_never_truncates() {
        // 12 code points, 36 bytes: long enough.
        let pw = Password::new("日本語のパスワードです安全");
        assert!(errs(check_policy(&policy(), &pw, None, "p")).iter().all(|m| !m.contains("at least")));
        let long = Password::new("x".repeat(129));
        assert!(errs(check_policy(&policy(), &long, None, "p")).iter().any(|m| m.contains("at most 128")));
    }

    #[test]
    fn composition_rules_are_optional() {
        let mut p = policy();
        let pw = Password::new("violet-tractor-sunrise");
        assert!(check_policy(&p, &pw, None, "p").is_ok());
        p.composition_rules = true;
        let e = errs(check_policy(&p, &pw, None, "p"));
        assert!(e.iter().any(|m| m.contains("upper-case")) && e.iter().any(|m| m.contains("digit")), "{e:?}");
    }

    #[tokio::test]
    async fn hash_verify_and_upgrade_weaker_parameters() {
        let weak = Hasher::new(HashParams { m_kib: 64, t: 1, p: 1 }, 2);
        let strong = Hasher::new(HashParams { m_kib: 128, t: 1, p: 1 }, 2);
        let pw = Password::new("violet-tractor-sunrise-42");
        let h = weak.hash(&pw).await.ok().unwrap_or_default();
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert_eq!(weak.verify(&pw, Some(&h)).await.ok(), Some(Verified::Yes));
        assert_eq!(weak.verify(&Password::new("wrong"), Some(&h)).await.ok(), Some(Verified::No));
        match strong.verify(&pw, Some(&h)).await {
            Ok(Verified::YesRehashed(new)) => assert!(new.contains("m=128"), "{new}"),
            other => panic!("expected upgrade, got {other:?}"),
        }
        // Unknown user: dummy verification, never a match.
        assert_eq!(strong.verify(&pw, None).await.ok(), Some(Verified::No));
    }

    #[test]
    fn the_dummy_hash_has_a_real_hash_shape_with_the_configured_parameters_and_a_fresh_salt() {
        let params = HashParams { m_kib: 19456, t: 2, p: 1 };
        let real = Hasher::hash_sync(HashParams { m_kib: 64, t: 1, p: 1 }, "x").unwrap_or_default();
        let (a, b) = (Hasher::dummy_phc(params).unwrap_or_default(), Hasher::dummy_phc(params).unwrap_or_default());
        assert_ne!(a, b, "fresh salt and output per process");
        let (dummy, real) = (PasswordHash::new(&a).ok().unwrap(), PasswordHash::new(&real).ok().unwrap());
        let p = Params::try_from(&dummy).ok().unwrap();
        assert_eq!((p.m_cost(), p.t_cost(), p.p_cost()), (19456, 2, 1), "verifying it costs a real verification");
        assert_eq!(dummy.algorithm, real.algorithm);
        assert_eq!(dummy.version, real.version);
        assert_eq!(dummy.hash.map(|h| h.len()), real.hash.map(|h| h.len()), "same output length");
        assert_eq!(dummy.salt.map(|s| s.len()), real.salt.map(|s| s.len()));
    }
}
