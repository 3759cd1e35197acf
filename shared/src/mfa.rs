//! The second factor's primitives: TOTP secrets (RFC 6238, through `totp-rs`), their
//! encryption at rest (AES-256-GCM under the MFA key, bound to the user), recovery codes and
//! the MFA challenge token. No store and no HTTP here: `domain::mfa` uses them.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use sha2::{Digest, Sha256};

/// Seconds per TOTP step (RFC 6238's default, what authenticator apps assume).
pub const STEP: u64 = 30;
/// Digits per code.
pub const DIGITS: u8 = 6;
/// Secret length: 160 bits, RFC 4226's recommendation.
pub const SECRET_BYTES: usize = 20;
/// Recovery codes issued at confirmation (and at each regeneration).
pub const RECOVERY_CODES: usize = 10;
/// Wrong codes a challenge survives; the fifth kills it.
pub const CHALLENGE_MAX_FAILURES: u32 = 5;
/// How long a challenge (`mfa_token`) lives.
pub const CHALLENGE_TTL_SECS: i64 = 300;

#[derive(Debug, thiserror::Error)]
#[error("mfa: {0}")]
pub struct MfaError(pub String);

fn random<const N: usize>() -> Result<[u8; N], MfaError> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).map_err(|e| MfaError(format!("rng: {e}")))?;
    Ok(b)
}

/// A TOTP secret in the clear: it exists only while a request needs it. `Debug` hides it.
pub struct TotpSecret(zeroize::Zeroizing<Vec<u8>>);

impl std::fmt::Debug for TotpSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TotpSecret(..)")
    }
}

impl TotpSecret {
    /// A fresh random secret.
    pub fn generate() -> Result<Self, MfaError> {
        Ok(Self(zeroize::Zeroizing::new(random::<SECRET_BYTES>()?.to_vec())))
    }

    pub fn from_bytes(b: Vec<u8>) -> Self {
        Self(zeroize::Zeroizing::new(b))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    fn totp(&self) -> totp_rs::Totp {
        totp_rs::Builder::new()
            .with_algorithm(totp_rs::Algorithm::SHA1)
            .with_digits(DIGITS)
            .with_skew(1)
            .with_step_duration(STEP)
            .with_secret(self.0.to_vec())
            .build_noncompliant()
    }

    /// RFC 4648 base32 without padding, as authenticator apps take it.
    pub fn base32(&self) -> String {
        totp_rs::Secret::from(self.0.to_vec()).to_base32()
    }

    /// The `otpauth://` URI an authenticator app scans (Google Authenticator's key URI
    /// format): label `<issuer>:<account>`, every parameter spelled out.
    pub fn otpauth_uri(&self, issuer: &str, account: &str) -> String {
        use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode as enc};
        let (i, a) = (enc(issuer, NON_ALPHANUMERIC), enc(account, NON_ALPHANUMERIC));
        format!(
            "otpauth://totp/{i}:{a}?secret={}&issuer={i}&algorithm=SHA1&digits={DIGITS}&period={STEP}",
            self.base32()
        )
    }

    /// The step `code` is valid for at `now`, within one step of skew either way; `None` if
    /// it is not a code of this secret then. Constant-time per candidate (`totp-rs`).
    pub fn matching_step(&self, code: &str, now: i64) -> Option<u64> {
        let code = code.trim();
        if code.len() != usize::from(DIGITS) || !code.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        self.totp().check(code, now.max(0) as u64)
    }

    /// The code of the step containing `at` (tests and the CLI's diagnostics).
    pub fn code_at(&self, at: i64) -> String {
        self.totp().generate(at.max(0) as u64).to_string()
    }
}

/// Encrypts TOTP secrets at rest: AES-256-GCM under the MFA key, with the user id as
/// associated data, so that a sealed secret copied to another user's item does not open.
/// Sealed form: `v1.<base64url(nonce || ciphertext || tag)>`.
pub struct Sealer {
    key: aws_lc_rs::aead::LessSafeKey,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(..)")
    }
}

const SEALED_PREFIX: &str = "v1.";

impl Sealer {
    /// The key derived (HKDF-SHA256) from the MFA key secret's text: at least 32 characters,
    /// as the template's generated secret (64 alphanumerics) is.
    pub fn from_secret_text(text: &str) -> Result<Self, MfaError> {
        if text.len() < 32 {
            return Err(MfaError("the MFA key secret must hold at least 32 characters".into()));
        }
        use aws_lc_rs::hkdf;
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, b"secure-auth/mfa-key").extract(text.as_bytes());
        let okm = prk
            .expand(&[b"totp-secrets v1"], &aws_lc_rs::aead::AES_256_GCM)
            .map_err(|_| MfaError("key derivation failed".into()))?;
        let key = aws_lc_rs::aead::UnboundKey::from(okm);
        Ok(Self { key: aws_lc_rs::aead::LessSafeKey::new(key) })
    }

    /// A random key for this process only (the local server's default).
    pub fn ephemeral() -> Result<Self, MfaError> {
        Self::from_secret_text(&B64.encode(random::<32>()?))
    }

    pub fn seal(&self, user_id: &str, secret: &TotpSecret) -> Result<String, MfaError> {
        use aws_lc_rs::aead::{Aad, Nonce};
        let nonce = random::<12>()?;
        let mut buf = secret.as_bytes().to_vec();
        self.key
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(user_id.as_bytes()), &mut buf)
            .map_err(|_| MfaError("seal failed".into()))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        Ok(format!("{SEALED_PREFIX}{}", B64.encode(out)))
    }

    /// The secret `sealed` holds for `user_id`; an error if it was sealed under another key or
    /// for another user, or altered.
    pub fn open(&self, user_id: &str, sealed: &str) -> Result<TotpSecret, MfaError> {
        use aws_lc_rs::aead::{Aad, Nonce};
        let raw = sealed
            .strip_prefix(SEALED_PREFIX)
            .and_then(|b| B64.decode(b).ok())
            .filter(|b| b.len() > 12)
            .ok_or_else(|| MfaError("malformed sealed secret".into()))?;
        let (nonce, ct) = raw.split_at(12);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| MfaError("bad nonce".into()))?;
        let mut buf = zeroize::Zeroizing::new(ct.to_vec());
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(user_id.as_bytes()), &mut buf)
            .map_err(|_| MfaError("the sealed secret does not open under this key".into()))?;
        Ok(TotpSecret::from_bytes(plain.to_vec()))
    }
}

/// Recovery codes: 80 random bits each, shown as four groups of four base32 characters
/// (`abcd-efgh-ijkl-mnop`); stored only as SHA-256 hashes of their normalized form.
pub fn recovery_codes() -> Result<Vec<String>, MfaError> {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz234567";
    (0..RECOVERY_CODES)
        .map(|_| {
            let b = random::<10>()?;
            // 80 bits as 16 symbols of 5 bits.
            let bits = b.iter().fold(0u128, |acc, x| (acc << 8) | u128::from(*x));
            let chars: Vec<u8> = (0..16).rev().map(|i| ALPHABET[((bits >> (5 * i)) & 31) as usize]).collect();
            let s: Vec<String> = chars.chunks(4).map(|c| String::from_utf8_lossy(c).into_owned()).collect();
            Ok(s.join("-"))
        })
        .collect()
}

/// The form a recovery code is hashed in: lower case, without separators or blanks, so that
/// `ABCD EFGH-ijkl-mnop` is the code `abcd-efgh-ijkl-mnop`. `None` for anything that cannot
/// be one.
pub fn normalize_recovery_code(code: &str) -> Option<String> {
    let s: String = code.chars().filter(|c| !matches!(c, '-' | ' ')).map(|c| c.to_ascii_lowercase()).collect();
    (s.len() == 16 && s.bytes().all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b))).then_some(s)
}

/// The stored hash of a recovery code (`None`: not a code's shape).
pub fn hash_recovery_code(code: &str) -> Option<String> {
    normalize_recovery_code(code).map(|c| B64.encode(Sha256::digest(format!("recovery-code\0{c}").as_bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_6238_sha1_vectors_match() {
        // RFC 6238 appendix B, SHA-1, secret "12345678901234567890", last six digits.
        let s = TotpSecret::from_bytes(b"12345678901234567890".to_vec());
        for (t, code) in [(59, "287082"), (1111111109, "081804"), (1234567890, "005924"), (2000000000, "279037")] {
            assert_eq!(s.code_at(t), code, "t={t}");
            assert_eq!(s.matching_step(code, t), Some(t as u64 / STEP));
        }
    }

    #[test]
    fn codes_are_accepted_one_step_either_side_and_not_two() {
        let s = TotpSecret::generate().unwrap();
        let now = 1_800_000_000;
        let code = s.code_at(now);
        let step = now as u64 / STEP;
        assert_eq!(s.matching_step(&code, now + STEP as i64), Some(step), "one step late");
        assert_eq!(s.matching_step(&code, now - STEP as i64), Some(step), "one step early");
        assert_eq!(s.matching_step(&code, now + 2 * STEP as i64), None, "two steps late");
        assert_eq!(s.matching_step(&code, now - 2 * STEP as i64), None, "two steps early");
        assert_eq!(s.matching_step("12345", now), None);
        assert_eq!(s.matching_step("12345a", now), None);
    }

    #[test]
    fn a_sealed_secret_opens_only_for_its_user_under_its_key() {
        let k = Sealer::ephemeral().unwrap();
        let s = TotpSecret::generate().unwrap();
        let sealed = k.seal("u1", &s).unwrap();
        assert!(!sealed.contains(&s.base32()), "nothing of the secret shows");
        assert_eq!(k.open("u1", &sealed).unwrap().as_bytes(), s.as_bytes());
        assert!(k.open("u2", &sealed).is_err(), "another user's item");
        assert!(Sealer::ephemeral().unwrap().open("u1", &sealed).is_err(), "another key");
        let mut tampered = sealed.clone().into_bytes();
        let last = tampered.len() - 2;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        assert!(k.open("u1", &String::from_utf8(tampered).unwrap()).is_err());
        assert_ne!(k.seal("u1", &s).unwrap(), sealed, "a fresh nonce each time");
    }

    #[test]
    fn recovery_codes_are_distinct_and_normalize_to_their_hash() {
        let codes = recovery_codes().unwrap();
        assert_eq!(codes.len(), RECOVERY_CODES);
        let unique: std::collections::HashSet<_> = codes.iter().collect();
        assert_eq!(unique.len(), RECOVERY_CODES);
        let c = &codes[0];
        assert_eq!(c.len(), 19);
        let shouted = c.to_uppercase().replace('-', " ");
        assert_eq!(hash_recovery_code(&shouted), hash_recovery_code(c));
        assert_eq!(hash_recovery_code("not-a-code"), None);
        assert_eq!(hash_recovery_code("0000-0000-0000-0000"), None, "0 and 1 are not base32");
    }

    #[test]
    fn the_otpauth_uri_names_issuer_account_and_every_parameter() {
        let s = TotpSecret::from_bytes(vec![0; 20]);
        let uri = s.otpauth_uri("Secure Auth", "ann+x@example.com");
        assert_eq!(
            uri,
            format!(
                "otpauth://totp/Secure%20Auth:ann%2Bx%40example%2Ecom?secret={}&issuer=Secure%20Auth&algorithm=SHA1&digits=6&period=30",
                s.base32()
            )
        );
        assert_eq!(s.base32().len(), 32, "160 bits");
    }
}
