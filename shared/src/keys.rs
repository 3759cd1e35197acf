//! Signing keys. The local server uses an ephemeral key; Lambda functions load a key set from
//! Secrets Manager (`SIGNING_KEY_SECRET_ID`) once per cold start and re-read it after
//! `KEY_CACHE_SECONDS` (default 300), so a rotation reaches warm functions without a cold start.
//!
//! Each secret *version* holds one key; the staging labels say its role:
//! `AWSCURRENT` signs, `AWSPENDING` (the next key, during a rotation) and `AWSPREVIOUS` (the
//! retired key, until the next rotation) only verify. A version's `SecretString`:
//! ```json
//! {"kid": "2026-11-30-3f9a", "alg": "ES256", "private_key_pem": "-----BEGIN PRIVATE KEY-----\n…"}
//! {"kid": "2026-11-30-77c1", "alg": "RS256", "private_key_pem": "…PKCS#8 RSA, at least 3072 bits…"}
//! {"kid": "2026-11-30-0b2e", "alg": "HS256", "secret": "<base64url, at least 32 bytes>"}
//! ```
//! HS256 is the seed's compatibility choice: it cannot be published in the JWKS, so API
//! Gateway and third parties cannot verify its tokens.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Signature algorithms a key set may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyAlg {
    ES256,
    RS256,
    HS256,
}

impl KeyAlg {
    pub fn parse(s: &str) -> Result<Self, KeyError> {
        match s {
            "ES256" => Ok(KeyAlg::ES256),
            "RS256" => Ok(KeyAlg::RS256),
            "HS256" => Ok(KeyAlg::HS256),
            other => Err(KeyError(format!("unsupported alg {other} (ES256, RS256, HS256)"))),
        }
    }
}

/// Smallest RSA modulus accepted, in bits.
pub const MIN_RSA_BITS: usize = 3072;

/// A key that can verify, and (for the current key) sign.
pub struct JwtKey {
    pub kid: String,
    pub alg: Algorithm,
    pub encoding: Option<EncodingKey>,
    pub decoding: DecodingKey,
    /// The public JWK, or `None` for a symmetric key (never published).
    pub public_jwk: Option<serde_json::Value>,
}

impl std::fmt::Debug for JwtKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtKey").field("kid", &self.kid).field("alg", &self.alg).finish_non_exhaustive()
    }
}

/// The signing key plus the keys that only verify (next, then previous). `Debug` shows kids
/// and algorithms, never key material.
pub struct KeySet {
    pub current: JwtKey,
    pub others: Vec<JwtKey>,
    /// True for the local server's throw-away key.
    pub ephemeral: bool,
    /// HMAC key for tamper-evident cursors, derived from the current key's private material
    /// (so it is as secret as the signing key, and changes with a rotation).
    cursor_key: [u8; 32],
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeySet")
            .field("current", &self.current)
            .field("others", &self.others)
            .field("ephemeral", &self.ephemeral)
            .finish_non_exhaustive()
    }
}

/// Why a key could not be built or loaded.
#[derive(Debug, thiserror::Error)]
#[error("signing keys: {0}")]
pub struct KeyError(pub String);

/// One secret version's content (module docs).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyDoc {
    pub kid: String,
    pub alg: KeyAlg,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key_pem: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

// Private material: never printed.
impl std::fmt::Debug for KeyDoc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyDoc").field("kid", &self.kid).field("alg", &self.alg).finish_non_exhaustive()
    }
}

fn thumbprint(canonical: String) -> String {
    B64.encode(Sha256::digest(canonical.as_bytes()))
}

fn pem_der(kid: &str, pem: Option<&str>) -> Result<Vec<u8>, KeyError> {
    let pem = pem.ok_or_else(|| KeyError(format!("key {kid}: private_key_pem is required")))?;
    let p = pem::parse(pem.as_bytes()).map_err(|_| KeyError(format!("key {kid}: private_key_pem is not PEM")))?;
    if p.tag() != "PRIVATE KEY" {
        return Err(KeyError(format!("key {kid}: expected a PKCS#8 PRIVATE KEY")));
    }
    Ok(p.into_contents())
}

fn es256(kid: Option<String>, der: &[u8], can_sign: bool) -> Result<JwtKey, KeyError> {
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der)
        .map_err(|_| KeyError("not a PKCS#8 P-256 private key".into()))?;
    let point = pair.public_key().as_ref();
    // Uncompressed SEC1 point: 0x04 || x (32) || y (32).
    if point.len() != 65 || point[0] != 4 {
        return Err(KeyError("unexpected public key encoding".into()));
    }
    let (x, y) = (B64.encode(&point[1..33]), B64.encode(&point[33..65]));
    // RFC 7638 thumbprint as the default kid: members in lexicographic order.
    let kid = kid.unwrap_or_else(|| thumbprint(format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#)));
    let decoding = DecodingKey::from_ec_components(&x, &y).map_err(|e| KeyError(format!("public key: {e}")))?;
    let jwk =
        serde_json::json!({"kty": "EC", "crv": "P-256", "x": x, "y": y, "kid": kid, "alg": "ES256", "use": "sig"});
    Ok(JwtKey {
        kid,
        alg: Algorithm::ES256,
        encoding: can_sign.then(|| EncodingKey::from_ec_der(der)),
        decoding,
        public_jwk: Some(jwk),
    })
}

fn rs256(kid: Option<String>, der: &[u8], can_sign: bool) -> Result<JwtKey, KeyError> {
    let pair = aws_lc_rs::rsa::KeyPair::from_pkcs8(der).map_err(|_| KeyError("not a PKCS#8 RSA private key".into()))?;
    if pair.public_modulus_len() * 8 < MIN_RSA_BITS {
        return Err(KeyError(format!("RSA keys must have at least {MIN_RSA_BITS} bits")));
    }
    let public = pair.public_key();
    let n = B64.encode(public.modulus().big_endian_without_leading_zero());
    let e = B64.encode(public.exponent().big_endian_without_leading_zero());
    let kid = kid.unwrap_or_else(|| thumbprint(format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#)));
    let decoding = DecodingKey::from_rsa_components(&n, &e).map_err(|e| KeyError(format!("public key: {e}")))?;
    let jwk = serde_json::json!({"kty": "RSA", "n": n, "e": e, "kid": kid, "alg": "RS256", "use": "sig"});
    // The signer wants PKCS#1 inside; from_rsa_pem unwraps the PKCS#8 envelope.
    let encoding = if can_sign {
        let pem = pem::encode(&pem::Pem::new("PRIVATE KEY", der.to_vec()));
        Some(EncodingKey::from_rsa_pem(pem.as_bytes()).map_err(|e| KeyError(format!("RSA key: {e}")))?)
    } else {
        None
    };
    Ok(JwtKey { kid, alg: Algorithm::RS256, encoding, decoding, public_jwk: Some(jwk) })
}

fn hs256(kid: String, secret: &[u8], can_sign: bool) -> Result<JwtKey, KeyError> {
    if secret.len() < 32 {
        return Err(KeyError(format!("key {kid}: HS256 secrets need at least 32 bytes")));
    }
    let encoding = EncodingKey::from_secret(secret).map_err(|e| KeyError(e.to_string()))?;
    let decoding = DecodingKey::from_secret(secret).map_err(|e| KeyError(e.to_string()))?;
    Ok(JwtKey { kid, alg: Algorithm::HS256, encoding: can_sign.then_some(encoding), decoding, public_jwk: None })
}

impl KeyDoc {
    /// A new key of `alg` with a dated, random kid.
    pub fn generate(alg: KeyAlg) -> Result<Self, KeyError> {
        let mut r = [0u8; 4];
        getrandom::fill(&mut r).map_err(|e| KeyError(format!("rng: {e}")))?;
        let kid = format!("{}-{}", chrono::Utc::now().format("%Y%m%dT%H%M%S"), hex(&r));
        let pkcs8 = |der: Vec<u8>| Some(pem::encode(&pem::Pem::new("PRIVATE KEY", der)));
        Ok(match alg {
            KeyAlg::ES256 => {
                let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                    .map_err(|_| KeyError("key generation failed".into()))?;
                KeyDoc { kid, alg, private_key_pem: pkcs8(doc.as_ref().to_vec()), secret: None }
            }
            KeyAlg::RS256 => {
                let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa3072)
                    .map_err(|_| KeyError("key generation failed".into()))?;
                let der = pair.as_der().map_err(|_| KeyError("key encoding failed".into()))?;
                KeyDoc { kid, alg, private_key_pem: pkcs8(der.as_ref().to_vec()), secret: None }
            }
            KeyAlg::HS256 => {
                let mut s = [0u8; 32];
                getrandom::fill(&mut s).map_err(|e| KeyError(format!("rng: {e}")))?;
                KeyDoc { kid, alg, private_key_pem: None, secret: Some(B64.encode(s)) }
            }
        })
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    fn cursor_key(&self) -> [u8; 32] {
        let material = self.private_key_pem.as_deref().or(self.secret.as_deref()).unwrap_or_default();
        Sha256::new().chain_update(b"secure-auth cursor mac v1\0").chain_update(material.as_bytes()).finalize().into()
    }

    pub fn from_json(s: &str) -> Result<Self, KeyError> {
        serde_json::from_str(s).map_err(|e| KeyError(format!("key JSON: {e}")))
    }

    /// The usable key; only the current key keeps its signing half.
    pub fn to_key(&self, can_sign: bool) -> Result<JwtKey, KeyError> {
        let kid = Some(self.kid.clone());
        match self.alg {
            KeyAlg::ES256 => es256(kid, &pem_der(&self.kid, self.private_key_pem.as_deref())?, can_sign),
            KeyAlg::RS256 => rs256(kid, &pem_der(&self.kid, self.private_key_pem.as_deref())?, can_sign),
            KeyAlg::HS256 => {
                let s =
                    self.secret.as_deref().ok_or_else(|| KeyError(format!("key {}: secret is required", self.kid)))?;
                let bytes = B64
                    .decode(s.trim_end_matches('='))
                    .map_err(|_| KeyError(format!("key {}: secret is not base64url", self.kid)))?;
                hs256(self.kid.clone(), &bytes, can_sign)
            }
        }
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl KeySet {
    /// A fresh in-memory key of `alg`; tokens die with the process.
    pub fn ephemeral(alg: KeyAlg) -> Result<Self, KeyError> {
        let doc = KeyDoc::generate(alg)?;
        let current = match alg {
            // The thumbprint kid makes the ephemeral ES256 key recognizable across restarts of nothing.
            KeyAlg::ES256 => es256(None, &pem_der(&doc.kid, doc.private_key_pem.as_deref())?, true)?,
            _ => doc.to_key(true)?,
        };
        Ok(Self { current, others: vec![], ephemeral: true, cursor_key: doc.cursor_key() })
    }

    /// Builds a set from the three stages' secret strings. The current key must be valid; a
    /// broken pending or previous version is logged and skipped (it only verifies).
    pub fn from_stages(current: &str, pending: Option<&str>, previous: Option<&str>) -> Result<Self, KeyError> {
        let current_doc = KeyDoc::from_json(current)?;
        let cursor_key = current_doc.cursor_key();
        let current = current_doc.to_key(true)?;
        let mut others: Vec<JwtKey> = Vec::new();
        for (stage, s) in [("AWSPENDING", pending), ("AWSPREVIOUS", previous)] {
            let Some(s) = s else { continue };
            match KeyDoc::from_json(s).and_then(|d| d.to_key(false)) {
                Ok(k) if k.kid != current.kid && others.iter().all(|o| o.kid != k.kid) => others.push(k),
                Ok(_) => {}
                Err(e) => tracing::warn!(stage, error = %e, "ignoring unusable signing key version"),
            }
        }
        Ok(Self { current, others, ephemeral: false, cursor_key })
    }

    /// HMAC-SHA256 of `data` under the cursor key.
    pub fn mac(&self, data: &[u8]) -> Vec<u8> {
        let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &self.cursor_key);
        aws_lc_rs::hmac::sign(&key, data).as_ref().to_vec()
    }

    /// Checks a MAC made by `mac`, in constant time.
    pub fn verify_mac(&self, data: &[u8], tag: &[u8]) -> bool {
        let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &self.cursor_key);
        aws_lc_rs::hmac::verify(&key, data, tag).is_ok()
    }

    /// The key for `kid`, whatever its stage.
    pub fn find(&self, kid: &str) -> Option<&JwtKey> {
        std::iter::once(&self.current).chain(self.others.iter()).find(|k| k.kid == kid)
    }

    /// Public JWKs of current, next and previous keys (never private or symmetric keys).
    pub fn jwks(&self) -> serde_json::Value {
        let keys: Vec<&serde_json::Value> =
            std::iter::once(&self.current).chain(self.others.iter()).filter_map(|k| k.public_jwk.as_ref()).collect();
        serde_json::json!({ "keys": keys })
    }
}

/// Reads the stages of the key secret (a missing stage is `None`).
pub async fn fetch_stages(
    client: &aws_sdk_secretsmanager::Client,
    secret_id: &str,
) -> Result<(String, Option<String>, Option<String>), KeyError> {
    let get = |stage: &'static str| async move {
        match client.get_secret_value().secret_id(secret_id).version_stage(stage).send().await {
            Ok(out) => Ok(out.secret_string().map(str::to_owned)),
            Err(e) if e.as_service_error().is_some_and(|e| e.is_resource_not_found_exception()) => Ok(None),
            Err(e) => Err(KeyError(format!(
                "GetSecretValue {stage}: {}",
                aws_sdk_secretsmanager::error::DisplayErrorContext(e)
            ))),
        }
    };
    let (current, pending, previous) = tokio::join!(get("AWSCURRENT"), get("AWSPENDING"), get("AWSPREVIOUS"));
    let current = current?.ok_or_else(|| KeyError("the secret has no AWSCURRENT key".into()))?;
    // A pending or previous version that cannot be read only costs verification of old tokens.
    Ok((current, pending.unwrap_or(None), previous.unwrap_or(None)))
}

/// The three stages' secret strings: current, pending (next), previous.
pub type Stages = (String, Option<String>, Option<String>);

/// Where a key set is read from. A trait object, so that a function that holds a key provider
/// links the Secrets Manager client only if it reads keys from there.
pub trait KeySource: Send + Sync {
    fn fetch(&self) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Stages, KeyError>> + Send + '_>>;
}

/// The key set secret in Secrets Manager.
pub struct SecretsManagerSource {
    pub client: aws_sdk_secretsmanager::Client,
    pub secret_id: String,
}

impl KeySource for SecretsManagerSource {
    fn fetch(&self) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Stages, KeyError>> + Send + '_>> {
        Box::pin(fetch_stages(&self.client, &self.secret_id))
    }
}

/// The key set with its cache: read once at cold start, re-read at most every `ttl`, never per
/// request or per unknown `kid`. One refresh at a time; others keep using the cached set.
pub struct KeyProvider {
    source: Option<Box<dyn KeySource>>,
    ttl: Duration,
    state: RwLock<(Arc<KeySet>, Instant)>,
    refreshing: tokio::sync::Mutex<()>,
}

impl KeyProvider {
    /// A provider that never changes (ephemeral key, tests).
    pub fn fixed(keys: KeySet) -> Self {
        Self {
            source: None,
            ttl: Duration::MAX,
            state: RwLock::new((Arc::new(keys), Instant::now())),
            refreshing: tokio::sync::Mutex::new(()),
        }
    }

    /// Loads the key set from `source` (cold start); fails if the current key is unusable.
    pub async fn load(source: Box<dyn KeySource>, ttl: Duration) -> Result<Self, KeyError> {
        let (c, n, p) = source.fetch().await?;
        let keys = KeySet::from_stages(&c, n.as_deref(), p.as_deref())?;
        Ok(Self {
            source: Some(source),
            ttl,
            state: RwLock::new((Arc::new(keys), Instant::now())),
            refreshing: tokio::sync::Mutex::new(()),
        })
    }

    /// Loads the key set from the Secrets Manager secret `secret_id`.
    pub async fn from_secrets_manager(
        client: aws_sdk_secretsmanager::Client,
        secret_id: String,
        ttl: Duration,
    ) -> Result<Self, KeyError> {
        Self::load(Box::new(SecretsManagerSource { client, secret_id }), ttl).await
    }

    /// The cached key set.
    pub fn keys(&self) -> Arc<KeySet> {
        match self.state.read() {
            Ok(g) => g.0.clone(),
            Err(p) => p.into_inner().0.clone(),
        }
    }

    fn is_stale(&self) -> bool {
        match self.state.read() {
            Ok(g) => g.1.elapsed() >= self.ttl,
            Err(_) => true,
        }
    }

    /// Re-reads the secret if the cache is older than its ttl. A failure keeps the cached set
    /// (and is retried after another ttl): a brief Secrets Manager outage does not stop warm
    /// functions.
    pub async fn refresh_if_stale(&self) {
        let Some(source) = &self.source else { return };
        if !self.is_stale() {
            return;
        }
        let Ok(_guard) = self.refreshing.try_lock() else { return };
        if !self.is_stale() {
            return;
        }
        let loaded = match source.fetch().await {
            Ok((c, n, p)) => KeySet::from_stages(&c, n.as_deref(), p.as_deref()),
            Err(e) => Err(e),
        };
        let mut g = match self.state.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        match loaded {
            Ok(keys) => {
                if keys.current.kid != g.0.current.kid {
                    tracing::info!(event = "signing_key_changed", kid = %keys.current.kid, "new current signing key");
                }
                *g = (Arc::new(keys), Instant::now());
            }
            Err(e) => {
                tracing::warn!(error = %e, "key set refresh failed; keeping the cached keys");
                g.1 = Instant::now();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_build_current_next_previous_and_jwks_never_shows_private_or_hs_keys() {
        let cur = KeyDoc::generate(KeyAlg::ES256).unwrap();
        let next = KeyDoc::generate(KeyAlg::RS256).unwrap();
        let prev = KeyDoc::generate(KeyAlg::HS256).unwrap();
        let ks = KeySet::from_stages(&cur.to_json(), Some(&next.to_json()), Some(&prev.to_json())).unwrap();
        assert_eq!(ks.current.kid, cur.kid);
        assert!(ks.current.encoding.is_some());
        assert!(ks.find(&next.kid).is_some_and(|k| k.encoding.is_none() && k.alg == Algorithm::RS256));
        assert!(ks.find(&prev.kid).is_some_and(|k| k.alg == Algorithm::HS256));
        let jwks = ks.jwks();
        let keys = jwks["keys"].as_array().unwrap();
        assert_eq!(keys.len(), 2, "the HS256 key is never published");
        assert_eq!(keys[0]["kid"], cur.kid.as_str());
        assert_eq!(keys[1]["kty"], "RSA");
        let text = jwks.to_string();
        assert!(
            !text.contains("\"d\"") && !text.contains("PRIVATE") && !text.contains(prev.secret.as_deref().unwrap())
        );
    }

    #[test]
    fn broken_current_is_fatal_but_broken_previous_is_skipped() {
        let cur = KeyDoc::generate(KeyAlg::ES256).unwrap();
        assert!(KeySet::from_stages("random-placeholder", None, None).is_err());
        let ks = KeySet::from_stages(&cur.to_json(), None, Some("random-placeholder")).unwrap();
        assert!(ks.others.is_empty());
    }

    #[test]
    fn weak_keys_are_refused() {
        let small = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        let der = small.as_der().unwrap();
        let doc = KeyDoc {
            kid: "small".into(),
            alg: KeyAlg::RS256,
            private_key_pem: Some(pem::encode(&pem::Pem::new("PRIVATE KEY", der.as_ref().to_vec()))),
            secret: None,
        };
        assert!(doc.to_key(true).is_err());
        let short =
            KeyDoc { kid: "hs".into(), alg: KeyAlg::HS256, private_key_pem: None, secret: Some(B64.encode([1u8; 16])) };
        assert!(short.to_key(true).is_err());
        assert!(KeyDoc::from_json(r#"{"kid":"x","alg":"none"}"#).is_err());
    }

    #[test]
    fn ephemeral_keys_for_each_alg() {
        for alg in [KeyAlg::ES256, KeyAlg::RS256, KeyAlg::HS256] {
            let ks = KeySet::ephemeral(alg).unwrap();
            assert!(ks.ephemeral && ks.current.encoding.is_some());
        }
        assert_eq!(KeySet::ephemeral(KeyAlg::ES256).unwrap().current.kid.len(), 43);
    }

    #[test]
    fn key_doc_debug_hides_material() {
        let d = KeyDoc::generate(KeyAlg::HS256).unwrap();
        assert!(!format!("{d:?}").contains(d.secret.as_deref().unwrap()));
    }
}
