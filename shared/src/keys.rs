//! Signing keys. The local server uses an ephemeral key; Lambda functions load a key set from
//! Secrets Manager (`SIGNING_KEY_SECRET_ID`) once per cold start and re-read it after
//! `KEY_CACHE_SECONDS` (default 300), so a rotation reaches warm functions without a cold start.
//!
//! Each secret *version* holds a key ring: the key that signs while the version is
//! `AWSCURRENT`, and the *next* key, which only verifies until the following rotation makes it
//! the signing key. A key is therefore published (JWKS) and accepted by every function for a
//! whole rotation period before anything signs with it, so no cache (a warm function's, up to
//! `KEY_CACHE_SECONDS`; API Gateway's JWT authorizer's) meets a token signed by a key it has not
//! seen. `AWSPREVIOUS`'s ring keeps the retired signing key verifying until the next rotation.
//! A version's `SecretString`:
//! ```json
//! {"signing": {"kid": "20261130T101500-3f9a1c02", "alg": "ES256", "private_key_pem": "-----BEGIN PRIVATE KEY-----\n…"},
//!  "next":    {"kid": "20261130T101500-77c1e9a4", "alg": "ES256", "private_key_pem": "…"}}
//! ```
//! A key is `{"kid", "alg": "ES256", "private_key_pem"}`, `{"kid", "alg": "RS256",
//! "private_key_pem": PKCS#8 RSA of at least 3072 bits}` or `{"kid", "alg": "HS256", "secret":
//! base64url of at least 32 bytes}`. A version written before key rings (a bare key, no `next`)
//! still loads: its key signs, and the first rotation after the upgrade adds a next key
//! without changing the signing key (`rotation.rs`).
//! HS256 is the seed's compatibility choice: it cannot be published in the JWKS, so API
//! Gateway and third parties cannot verify its tokens.

use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

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
    /// HMAC keys for tamper-evident cursors and derived refresh successors, one per key of
    /// the set (current first), each derived from that key's private material: as secret as the
    /// signing key, new with each rotation, and the previous one still checks across it.
    cursor_keys: Vec<[u8; 32]>,
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

/// One key of a ring (module docs).
#[derive(Clone, Serialize, Deserialize)]
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

/// One secret version's content: the signing key and the next one (module docs).
#[derive(Debug)]
pub struct KeyRing {
    pub signing: KeyDoc,
    pub next: Option<KeyDoc>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RingDoc {
    signing: KeyDoc,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    next: Option<KeyDoc>,
}

impl KeyRing {
    /// A ring of two new keys of `alg`.
    pub fn generate(alg: KeyAlg) -> Result<Self, KeyError> {
        Ok(Self { signing: KeyDoc::generate(alg)?, next: Some(KeyDoc::generate(alg)?) })
    }

    /// Parses a version's secret string: a ring, or a bare key written before rings.
    pub fn from_json(s: &str) -> Result<Self, KeyError> {
        if let Ok(doc) = serde_json::from_str::<KeyDoc>(s) {
            return Ok(Self { signing: doc, next: None });
        }
        let r: RingDoc = serde_json::from_str(s).map_err(|e| KeyError(format!("key ring JSON: {e}")))?;
        Ok(Self { signing: r.signing, next: r.next })
    }

    pub fn to_json(&self) -> String {
        let doc = RingDoc { signing: self.signing.clone(), next: self.next.clone() };
        serde_json::to_string(&doc).unwrap_or_default()
    }

    /// The ring the next rotation stages: the next key signs, and a new key of `alg` is next.
    /// A ring without a next key (written before rings) keeps its signing key, so that nothing
    /// ever signs with a key no cache has seen.
    pub fn successor(&self, alg: KeyAlg) -> Result<Self, KeyError> {
        let signing = self.next.clone().unwrap_or_else(|| self.signing.clone());
        Ok(Self { signing, next: Some(KeyDoc::generate(alg)?) })
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
        Ok(Self { current, others: vec![], ephemeral: true, cursor_keys: vec![doc.cursor_key()] })
    }

    /// Builds a set from the three stages' secret strings: the current ring's signing key
    /// signs; its next key, the pending ring's keys (during a rotation) and the previous ring's
    /// keys only verify. The current signing key must be valid; a broken key elsewhere is
    /// logged and skipped (it only verifies).
    pub fn from_stages(current: &str, pending: Option<&str>, previous: Option<&str>) -> Result<Self, KeyError> {
        let ring = KeyRing::from_json(current)?;
        let mut cursor_keys = vec![ring.signing.cursor_key()];
        let current = ring.signing.to_key(true)?;
        let mut others: Vec<JwtKey> = Vec::new();
        let mut docs: Vec<(&str, KeyDoc)> = Vec::new();
        docs.extend(ring.next.map(|n| ("AWSCURRENT", n)));
        for (stage, s) in [("AWSPENDING", pending), ("AWSPREVIOUS", previous)] {
            match s.map(KeyRing::from_json) {
                Some(Ok(r)) => docs.extend(std::iter::once(r.signing).chain(r.next).map(|d| (stage, d))),
                Some(Err(e)) => tracing::warn!(stage, error = %e, "ignoring unusable signing key version"),
                None => {}
            }
        }
        for (stage, doc) in docs {
            match doc.to_key(false) {
                Ok(k) if k.kid != current.kid && others.iter().all(|o| o.kid != k.kid) => {
                    cursor_keys.push(doc.cursor_key());
                    others.push(k);
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(stage, error = %e, "ignoring unusable signing key"),
            }
        }
        Ok(Self { current, others, ephemeral: false, cursor_keys })
    }

    /// HMAC-SHA256 of `data` under the current key's cursor key.
    pub fn mac(&self, data: &[u8]) -> Vec<u8> {
        self.macs(data).next().unwrap_or_default()
    }

    /// `data`'s MAC under each key's cursor key, the current key's first: what a process that
    /// loaded the set before or after a rotation may have made.
    pub fn macs<'a>(&'a self, data: &'a [u8]) -> impl Iterator<Item = Vec<u8>> + 'a {
        self.cursor_keys.iter().map(move |k| {
            let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, k);
            aws_lc_rs::hmac::sign(&key, data).as_ref().to_vec()
        })
    }

    /// Checks a MAC made by `mac` under any key of the set, in constant time per key.
    pub fn verify_mac(&self, data: &[u8], tag: &[u8]) -> bool {
        self.cursor_keys.iter().any(|k| {
            let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, k);
            aws_lc_rs::hmac::verify(&key, data, tag).is_ok()
        })
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
    /// The set and when it was read, on the wall clock: a monotonic clock may not count the time
    /// a Lambda environment spends frozen between requests, and the cache's age must.
    state: RwLock<(Arc<KeySet>, SystemTime)>,
    refreshing: tokio::sync::Mutex<()>,
}

impl KeyProvider {
    /// A provider that never changes (ephemeral key, tests).
    pub fn fixed(keys: KeySet) -> Self {
        Self {
            source: None,
            ttl: Duration::MAX,
            state: RwLock::new((Arc::new(keys), SystemTime::now())),
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
            state: RwLock::new((Arc::new(keys), SystemTime::now())),
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
            // A clock that went backwards counts as stale: better one read too many.
            Ok(g) => !g.1.elapsed().is_ok_and(|age| age < self.ttl),
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
                *g = (Arc::new(keys), SystemTime::now());
            }
            Err(e) => {
                tracing::warn!(error = %e, "key set refresh failed; keeping the cached keys");
                g.1 = SystemTime::now();
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
    fn a_ring_publishes_its_next_key_and_a_rotation_signs_only_with_a_key_published_before() {
        let old = KeyRing::generate(KeyAlg::ES256).unwrap();
        let new = old.successor(KeyAlg::ES256).unwrap();
        let next = old.next.as_ref().unwrap();
        assert_eq!(new.signing.kid, next.kid, "the rotation promotes the published next key");
        assert_ne!(new.next.as_ref().unwrap().kid, next.kid);
        // A process that loaded before the rotation knows the key that signs after it.
        let before = KeySet::from_stages(&old.to_json(), None, None).unwrap();
        assert!(before.find(&new.signing.kid).is_some_and(|k| k.encoding.is_none()));
        let jwks = before.jwks().to_string();
        assert!(jwks.contains(&old.signing.kid) && jwks.contains(&next.kid));
        // One that loaded after it still knows the key that signed before.
        let after = KeySet::from_stages(&new.to_json(), None, Some(&old.to_json())).unwrap();
        assert_eq!(after.current.kid, next.kid);
        assert!(after.find(&old.signing.kid).is_some() && after.find(&new.next.as_ref().unwrap().kid).is_some());
        assert_eq!(after.others.len(), 2, "no key twice");
        // A MAC made on either side of the rotation checks on the other.
        assert!(after.verify_mac(b"cursor", &before.mac(b"cursor")));
        assert!(before.verify_mac(b"cursor", &after.mac(b"cursor")));
        assert!(after.macs(b"cursor").any(|m| m == before.mac(b"cursor")));
        assert!(!after.verify_mac(b"other", &before.mac(b"cursor")));
    }

    #[test]
    fn a_bare_key_from_before_rings_loads_and_its_first_rotation_keeps_it_signing() {
        let doc = KeyDoc::generate(KeyAlg::ES256).unwrap();
        let ring = KeyRing::from_json(&doc.to_json()).unwrap();
        assert!(ring.next.is_none());
        assert_eq!(KeySet::from_stages(&doc.to_json(), None, None).unwrap().current.kid, doc.kid);
        let first = ring.successor(KeyAlg::ES256).unwrap();
        assert_eq!(first.signing.kid, doc.kid, "no key signs before it was published");
        assert!(first.next.is_some());
        let back = KeyRing::from_json(&first.to_json()).unwrap();
        assert_eq!((back.signing.kid, back.next.map(|n| n.kid)), (doc.kid, first.next.map(|n| n.kid)));
        assert!(KeyRing::from_json(r#"{"signing":{"kid":"x","alg":"ES256"},"extra":1}"#).is_err());
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
