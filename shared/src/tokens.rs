//! Access JWTs (ES256, `typ: at+jwt`, strict verification per RFC 8725) and the opaque
//! random secrets behind refresh and one-time mail tokens (stored only as SHA-256).

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use jsonwebtoken::{Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::keys::{KeyProvider, KeySet};

/// The `typ` header of access tokens (RFC 9068).
pub const ACCESS_TYP: &str = "at+jwt";
/// Maximum clock skew accepted on `exp` / `nbf`.
pub const LEEWAY_SECS: u64 = 60;

/// Claims of an access token (docs/api.md "Tokens").
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AccessClaims {
    pub iss: String,
    pub aud: String,
    pub sub: String,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    pub jti: String,
    pub scope: String,
    pub email: String,
    pub email_verified: bool,
    pub sv: u64,
    /// The session (refresh-token family) this token was issued for.
    pub sid: String,
    /// RFC 8176 authentication methods: `["pwd"]`, or `["pwd","otp"]` / `["pwd","mfa"]` after
    /// a second factor (absent in tokens issued before it existed: read as none).
    #[serde(default)]
    pub amr: Vec<String>,
}

/// Signs and verifies access tokens with one key set.
#[derive(Clone)]
pub struct Jwt {
    keys: Arc<KeyProvider>,
    issuer: String,
    audience: String,
    ttl: Duration,
}

/// The facts about a user an access token carries.
#[derive(Debug, Clone)]
pub struct Subject<'a> {
    pub user_id: &'a str,
    pub email: &'a str,
    pub email_verified: bool,
    pub is_superuser: bool,
    pub session_version: u64,
    pub session_id: &'a str,
    /// RFC 8176 authentication methods of the session's sign-in.
    pub amr: &'a [&'a str],
}

impl Jwt {
    pub fn new(keys: Arc<KeyProvider>, issuer: String, audience: String, ttl: Duration) -> Self {
        Self { keys, issuer, audience, ttl }
    }

    /// Re-reads the key set if its cache has expired (at most once per `KEY_CACHE_SECONDS`).
    pub async fn refresh_keys(&self) {
        self.keys.refresh_if_stale().await;
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The cached key set.
    pub fn keys(&self) -> Arc<KeySet> {
        self.keys.keys()
    }

    /// Issues an access token for `s` at `now`; returns the token and its scope.
    pub fn issue(&self, s: &Subject<'_>, now: i64) -> Result<(String, String), TokenError> {
        let keys = self.keys.keys();
        let key = &keys.current;
        let encoding = key.encoding.as_ref().ok_or_else(|| TokenError("current key cannot sign".into()))?;
        let scope = if s.is_superuser { "openid profile email admin" } else { "openid profile email" }.to_owned();
        let claims = AccessClaims {
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sub: s.user_id.to_owned(),
            iat: now,
            nbf: now,
            exp: now + self.ttl.as_secs() as i64,
            jti: uuid::Uuid::new_v4().to_string(),
            scope: scope.clone(),
            email: s.email.to_owned(),
            email_verified: s.email_verified,
            sv: s.session_version,
            sid: s.session_id.to_owned(),
            amr: s.amr.iter().map(|m| (*m).to_owned()).collect(),
        };
        let mut header = Header::new(key.alg);
        header.typ = Some(ACCESS_TYP.to_owned());
        header.kid = Some(key.kid.clone());
        let token = jsonwebtoken::encode(&header, &claims, encoding).map_err(|e| TokenError(format!("sign: {e}")))?;
        Ok((token, scope))
    }

    /// Verifies an access token: the key is chosen by `kid` and pins the algorithm; `typ`,
    /// `iss`, `aud`, `exp`, `nbf` are required; `jku`/`jwk`/`x5u`/`x5c` headers are refused.
    pub fn verify(&self, token: &str) -> Result<AccessClaims, TokenRejected> {
        self.verify_at(token, crate::now())
    }

    /// `verify`, with `exp` and `nbf` judged at `now` (the caller's clock: the bearer check
    /// passes the service's, which tests set).
    pub fn verify_at(&self, token: &str, now: i64) -> Result<AccessClaims, TokenRejected> {
        // `alg: none` (any case) and unknown algorithms fail to parse here.
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenRejected::Malformed)?;
        if header.jku.is_some() || header.jwk.is_some() || header.x5u.is_some() || header.x5c.is_some() {
            return Err(TokenRejected::ForbiddenHeader);
        }
        if header.crit.is_some() {
            return Err(TokenRejected::ForbiddenHeader);
        }
        match header.typ.as_deref().map(str::to_ascii_lowercase).as_deref() {
            Some(ACCESS_TYP | "application/at+jwt") => {}
            _ => return Err(TokenRejected::WrongType),
        }
        let kid = header.kid.as_deref().ok_or(TokenRejected::UnknownKey)?;
        let keys = self.keys.keys();
        let key = keys.find(kid).ok_or(TokenRejected::UnknownKey)?;
        if header.alg != key.alg {
            return Err(TokenRejected::AlgorithmMismatch);
        }
        let mut v = Validation::new(key.alg);
        // Required, and judged below against `now` rather than the system clock.
        v.validate_exp = false;
        v.validate_nbf = false;
        v.set_issuer(&[&self.issuer]);
        v.set_audience(&[&self.audience]);
        v.set_required_spec_claims(&["exp", "nbf", "iat", "iss", "aud", "sub"]);
        let claims = jsonwebtoken::decode::<AccessClaims>(token, &key.decoding, &v)
            .map(|d| d.claims)
            .map_err(|_| TokenRejected::Invalid)?;
        let leeway = LEEWAY_SECS as i64;
        if claims.exp < now - leeway || claims.nbf > now + leeway {
            return Err(TokenRejected::Invalid);
        }
        Ok(claims)
    }
}

/// Signing or drawing a random secret failed (never a client's fault).
#[derive(Debug, Clone, thiserror::Error)]
#[error("tokens: {0}")]
pub struct TokenError(pub String);

/// Why an access token was refused (logged, never sent beyond `invalid_token`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenRejected {
    Malformed,
    ForbiddenHeader,
    WrongType,
    UnknownKey,
    AlgorithmMismatch,
    Invalid,
}

/// 256 random bits, base64url.
pub fn random_secret() -> Result<String, TokenError> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).map_err(|e| TokenError(format!("rng: {e}")))?;
    Ok(B64.encode(b))
}

/// SHA-256 of a high-entropy secret, base64url: what the store keeps instead of the secret.
pub fn hash_secret(secret: &str) -> String {
    B64.encode(Sha256::digest(secret.as_bytes()))
}

/// A refresh token: `<user id>.<session id>.<secret>`; only the secret's hash is stored.
/// `Debug` shows the ids, not the hash or the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct RefreshParts {
    pub user_id: String,
    pub session_id: String,
    pub secret_hash: String,
    /// The presented secret: the successor of a rotation is derived from it.
    secret: String,
}

impl RefreshParts {
    /// The secret that replaces this one when the session rotates: HMAC-SHA256 under the key
    /// set's server-side key (Secrets Manager) of the session id and this secret. Every refresh
    /// with one token therefore rotates to the same successor (a retry after a lost answer, or
    /// the losers of a concurrent refresh, get what the winner got), and only the holder of this
    /// token and the key can compute it: the table stores neither the secret nor the key.
    pub fn successor_secret(&self, keys: &crate::keys::KeySet) -> String {
        self.successor_secrets(keys).next().unwrap_or_default()
    }

    /// The successor under each key of the set, the current key's first: a process that loaded
    /// the keys on the other side of a rotation derived one of these.
    pub fn successor_secrets<'a>(&self, keys: &'a crate::keys::KeySet) -> impl Iterator<Item = String> + 'a {
        let input = format!("refresh-successor\0{}\0{}", self.session_id, self.secret);
        keys.macs(input.as_bytes()).map(|m| B64.encode(m)).collect::<Vec<_>>().into_iter()
    }
}

impl std::fmt::Debug for RefreshParts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RefreshParts")
            .field("user_id", &self.user_id)
            .field("session_id", &self.session_id)
            .finish_non_exhaustive()
    }
}

fn is_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

fn is_secret(s: &str) -> bool {
    s.len() == 43 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Parses an opaque refresh token; `None` for anything malformed.
pub fn parse_refresh(token: &str) -> Option<RefreshParts> {
    let mut it = token.split('.');
    let (u, s, secret) = (it.next()?, it.next()?, it.next()?);
    if it.next().is_some() || !is_id(u) || !is_id(s) || !is_secret(secret) {
        return None;
    }
    Some(RefreshParts {
        user_id: u.to_owned(),
        session_id: s.to_owned(),
        secret_hash: hash_secret(secret),
        secret: secret.to_owned(),
    })
}

/// Builds a refresh token string.
pub fn format_refresh(user_id: &str, session_id: &str, secret: &str) -> String {
    format!("{user_id}.{session_id}.{secret}")
}

/// A one-time mail token: `<user id>.<secret>`.
pub fn parse_one_time(token: &str) -> Option<(String, String)> {
    let (u, secret) = token.split_once('.')?;
    if !is_id(u) || !is_secret(secret) {
        return None;
    }
    Some((u.to_owned(), hash_secret(secret)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{Algorithm, EncodingKey};

    fn jwt_with(alg: crate::keys::KeyAlg) -> Jwt {
        let keys = Arc::new(KeyProvider::fixed(KeySet::ephemeral(alg).unwrap()));
        Jwt::new(keys, "https://iss".into(), "aud".into(), Duration::from_secs(900))
    }

    fn jwt() -> Jwt {
        jwt_with(crate::keys::KeyAlg::ES256)
    }

    #[test]
    fn rs256_and_hs256_key_sets_sign_and_verify_and_pin_their_algorithm() {
        for alg in [crate::keys::KeyAlg::RS256, crate::keys::KeyAlg::HS256] {
            let j = jwt_with(alg);
            let now = chrono::Utc::now().timestamp();
            let (t, _) = j.issue(&subject(), now).unwrap();
            assert!(j.verify(&t).is_ok(), "{alg:?}");
            // The same claims under another algorithm and the same kid are refused.
            let claims: AccessClaims = jsonwebtoken::dangerous::insecure_decode(&t).unwrap().claims;
            let mut h = Header::new(Algorithm::HS384);
            h.typ = Some("at+jwt".into());
            h.kid = Some(j.keys().current.kid.clone());
            let forged = jsonwebtoken::encode(&h, &claims, &EncodingKey::from_secret(b"k").unwrap()).unwrap();
            assert_eq!(j.verify(&forged), Err(TokenRejected::AlgorithmMismatch));
        }
    }

    fn subject() -> Subject<'static> {
        Subject {
            user_id: "u1",
            email: "a@example.com",
            email_verified: true,
            is_superuser: false,
            session_version: 3,
            amr: &["pwd"],
            session_id: "s1",
        }
    }

    fn b64(v: &serde_json::Value) -> String {
        B64.encode(v.to_string())
    }

    #[test]
    fn issued_token_verifies_with_all_claims() {
        let j = jwt();
        let now = chrono::Utc::now().timestamp();
        let (t, scope) = j.issue(&subject(), now).unwrap();
        let c = j.verify(&t).unwrap();
        assert_eq!((c.sub.as_str(), c.sv, c.scope.as_str()), ("u1", 3, scope.as_str()));
        assert_eq!(c.exp - c.iat, 900);
        let h = jsonwebtoken::decode_header(&t).unwrap();
        assert_eq!(h.typ.as_deref(), Some("at+jwt"));
        assert_eq!(h.kid.as_deref(), Some(j.keys().current.kid.as_str()));
        assert_eq!(h.alg, Algorithm::ES256);
    }

    #[test]
    fn alg_none_in_any_case_is_rejected() {
        let j = jwt();
        let now = chrono::Utc::now().timestamp();
        let (t, _) = j.issue(&subject(), now).unwrap();
        let payload = t.split('.').nth(1).unwrap();
        for alg in ["none", "None", "NONE", "nOnE"] {
            let h = b64(&serde_json::json!({"alg": alg, "typ": "at+jwt", "kid": j.keys().current.kid}));
            assert!(j.verify(&format!("{h}.{payload}.")).is_err(), "{alg}");
        }
    }

    #[test]
    fn hs256_signed_with_public_key_is_rejected() {
        let j = jwt();
        let now = chrono::Utc::now().timestamp();
        let pubkey = j.keys().current.public_jwk.as_ref().unwrap().to_string();
        let mut h = Header::new(Algorithm::HS256);
        h.typ = Some("at+jwt".into());
        h.kid = Some(j.keys().current.kid.clone());
        let (t, _) = j.issue(&subject(), now).unwrap();
        let claims: AccessClaims = jsonwebtoken::dangerous::insecure_decode(&t).unwrap().claims;
        let forged = jsonwebtoken::encode(&h, &claims, &EncodingKey::from_secret(pubkey.as_bytes()).unwrap()).unwrap();
        assert_eq!(j.verify(&forged), Err(TokenRejected::AlgorithmMismatch));
    }

    #[test]
    fn wrong_typ_kid_iss_aud_and_expiry_are_rejected() {
        let j = jwt();
        let now = chrono::Utc::now().timestamp();
        let keys = j.keys();
        let key = keys.current.encoding.as_ref().unwrap();
        let (t, _) = j.issue(&subject(), now).unwrap();
        let base: AccessClaims = jsonwebtoken::dangerous::insecure_decode(&t).unwrap().claims;
        let sign = |typ: Option<&str>, kid: Option<&str>, c: &AccessClaims| {
            let mut h = Header::new(Algorithm::ES256);
            h.typ = typ.map(Into::into);
            h.kid = kid.map(Into::into);
            jsonwebtoken::encode(&h, c, key).unwrap()
        };
        let kid = j.keys().current.kid.clone();
        assert!(j.verify(&sign(Some("at+jwt"), Some(&kid), &base)).is_ok());
        assert_eq!(j.verify(&sign(Some("JWT"), Some(&kid), &base)), Err(TokenRejected::WrongType));
        assert_eq!(j.verify(&sign(None, Some(&kid), &base)), Err(TokenRejected::WrongType));
        assert_eq!(j.verify(&sign(Some("at+jwt"), None, &base)), Err(TokenRejected::UnknownKey));
        assert_eq!(j.verify(&sign(Some("at+jwt"), Some("../../etc/passwd"), &base)), Err(TokenRejected::UnknownKey));
        let mut c = base.clone();
        c.iss = "https://evil".into();
        assert_eq!(j.verify(&sign(Some("at+jwt"), Some(&kid), &c)), Err(TokenRejected::Invalid));
        let mut c = base.clone();
        c.aud = "other".into();
        assert_eq!(j.verify(&sign(Some("at+jwt"), Some(&kid), &c)), Err(TokenRejected::Invalid));
        let mut c = base.clone();
        c.exp = now - 61;
        assert_eq!(j.verify(&sign(Some("at+jwt"), Some(&kid), &c)), Err(TokenRejected::Invalid));
        let mut c = base.clone();
        c.exp = now - 30; // within the 60 s skew
        assert!(j.verify(&sign(Some("at+jwt"), Some(&kid), &c)).is_ok());
        let mut c = base.clone();
        c.nbf = now + 120;
        assert_eq!(j.verify(&sign(Some("at+jwt"), Some(&kid), &c)), Err(TokenRejected::Invalid));
    }

    #[test]
    fn jku_jwk_x5u_headers_are_rejected() {
        let j = jwt();
        let now = chrono::Utc::now().timestamp();
        let keys = j.keys();
        let key = keys.current.encoding.as_ref().unwrap();
        let (t, _) = j.issue(&subject(), now).unwrap();
        let c: AccessClaims = jsonwebtoken::dangerous::insecure_decode(&t).unwrap().claims;
        let mut h = Header::new(Algorithm::ES256);
        h.typ = Some("at+jwt".into());
        h.kid = Some(j.keys().current.kid.clone());
        h.jku = Some("https://evil/jwks".into());
        assert_eq!(j.verify(&jsonwebtoken::encode(&h, &c, key).unwrap()), Err(TokenRejected::ForbiddenHeader));
        h.jku = None;
        h.x5u = Some("https://evil/cert".into());
        assert_eq!(j.verify(&jsonwebtoken::encode(&h, &c, key).unwrap()), Err(TokenRejected::ForbiddenHeader));
    }

    #[test]
    fn a_token_signed_by_another_key_with_our_kid_is_rejected() {
        let j = jwt();
        let other = jwt();
        let now = chrono::Utc::now().timestamp();
        let (t, _) = other.issue(&subject(), now).unwrap();
        assert!(j.verify(&t).is_err());
    }

    #[test]
    fn refresh_and_one_time_tokens_parse_strictly_and_are_not_jwts() {
        let secret = random_secret().unwrap();
        let rt = format_refresh("u-1", "s-2", &secret);
        let p = parse_refresh(&rt).unwrap();
        assert_eq!(p.secret_hash, hash_secret(&secret));
        assert!(parse_refresh("u.s").is_none());
        assert!(parse_refresh(&format!("u.s.{secret}.x")).is_none());
        assert!(parse_refresh(&format!("u/..s.{secret}")).is_none());
        assert!(parse_one_time(&format!("u-1.{secret}")).is_some());
        assert!(jwt().verify(&rt).is_err());
    }
}
