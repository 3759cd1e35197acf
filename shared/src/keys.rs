//! Signing keys: an ephemeral ES256 key for the local server, or a key set loaded once per
//! cold start from Secrets Manager.
//!
//! Secret format (`SIGNING_KEY_SECRET_ID`, a JSON string):
//! ```json
//! {"keys": [
//!   {"kid": "2026-11-30", "alg": "ES256", "status": "current",
//!    "private_key_pem": "-----BEGIN PRIVATE KEY-----\n...PKCS#8 P-256...\n-----END PRIVATE KEY-----\n"},
//!   {"kid": "2026-10-31", "alg": "ES256", "status": "previous", "private_key_pem": "..."}
//! ]}
//! ```
//! Exactly one key is `current` (it signs); `previous` and `next` keys only verify.
//! Create one with `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256`.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// A key that can verify, and (for the current key) sign.
pub struct JwtKey {
    pub kid: String,
    pub alg: Algorithm,
    pub encoding: Option<EncodingKey>,
    pub decoding: DecodingKey,
    /// The public JWK members (for the JWKS endpoint of a later issue).
    pub public_jwk: serde_json::Value,
}

impl std::fmt::Debug for JwtKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtKey").field("kid", &self.kid).field("alg", &self.alg).finish_non_exhaustive()
    }
}

/// The signing key plus the keys that only verify.
#[derive(Debug)]
pub struct KeySet {
    pub current: JwtKey,
    pub others: Vec<JwtKey>,
    /// True for the local server's throw-away key.
    pub ephemeral: bool,
}

/// Why a key set could not be built.
#[derive(Debug, thiserror::Error)]
#[error("signing keys: {0}")]
pub struct KeyError(pub String);

fn es256_from_pkcs8(kid: Option<String>, der: &[u8], can_sign: bool) -> Result<JwtKey, KeyError> {
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der)
        .map_err(|_| KeyError("not a PKCS#8 P-256 private key".into()))?;
    let point = pair.public_key().as_ref();
    // Uncompressed SEC1 point: 0x04 || x (32) || y (32).
    if point.len() != 65 || point[0] != 4 {
        return Err(KeyError("unexpected public key encoding".into()));
    }
    let x = B64.encode(&point[1..33]);
    let y = B64.encode(&point[33..65]);
    // RFC 7638 thumbprint as the default kid: members in lexicographic order.
    let kid = kid.unwrap_or_else(|| {
        let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
        B64.encode(Sha256::digest(canonical.as_bytes()))
    });
    let decoding = DecodingKey::from_ec_components(&x, &y).map_err(|e| KeyError(format!("public key: {e}")))?;
    let public_jwk = serde_json::json!({
        "kty": "EC", "crv": "P-256", "x": x, "y": y, "kid": kid, "alg": "ES256", "use": "sig"
    });
    Ok(JwtKey {
        kid,
        alg: Algorithm::ES256,
        encoding: can_sign.then(|| EncodingKey::from_ec_der(der)),
        decoding,
        public_jwk,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretKeyEntry {
    kid: String,
    alg: String,
    status: String,
    private_key_pem: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretDoc {
    keys: Vec<SecretKeyEntry>,
}

impl KeySet {
    /// A fresh in-memory P-256 key; tokens die with the process.
    pub fn ephemeral() -> Result<Self, KeyError> {
        let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
            .map_err(|_| KeyError("key generation failed".into()))?;
        Ok(Self { current: es256_from_pkcs8(None, doc.as_ref(), true)?, others: vec![], ephemeral: true })
    }

    /// Parses the Secrets Manager secret string (format in the module docs).
    pub fn from_secret_json(json: &str) -> Result<Self, KeyError> {
        let doc: SecretDoc = serde_json::from_str(json).map_err(|e| KeyError(format!("secret JSON: {e}")))?;
        let mut current = None;
        let mut others = Vec::new();
        for entry in doc.keys {
            if entry.alg != "ES256" {
                return Err(KeyError(format!("key {}: unsupported alg {}", entry.kid, entry.alg)));
            }
            let pem = pem::parse(entry.private_key_pem.as_bytes())
                .map_err(|_| KeyError(format!("key {}: private_key_pem is not PEM", entry.kid)))?;
            if pem.tag() != "PRIVATE KEY" {
                return Err(KeyError(format!("key {}: expected a PKCS#8 PRIVATE KEY", entry.kid)));
            }
            match entry.status.as_str() {
                "current" => {
                    if current.is_some() {
                        return Err(KeyError("more than one current key".into()));
                    }
                    current = Some(es256_from_pkcs8(Some(entry.kid), pem.contents(), true)?);
                }
                "previous" | "next" => others.push(es256_from_pkcs8(Some(entry.kid), pem.contents(), false)?),
                s => return Err(KeyError(format!("key {}: unknown status {s}", entry.kid))),
            }
        }
        let current = current.ok_or_else(|| KeyError("no current key".into()))?;
        Ok(Self { current, others, ephemeral: false })
    }

    /// Loads the key set from Secrets Manager (once per cold start).
    pub async fn from_secrets_manager(
        client: &aws_sdk_secretsmanager::Client,
        secret_id: &str,
    ) -> Result<Self, KeyError> {
        let out = client.get_secret_value().secret_id(secret_id).send().await.map_err(|e| {
            KeyError(format!("GetSecretValue: {}", aws_sdk_secretsmanager::error::DisplayErrorContext(e)))
        })?;
        let s = out.secret_string().ok_or_else(|| KeyError("secret has no SecretString".into()))?;
        Self::from_secret_json(s)
    }

    /// The key for `kid`, whatever its status.
    pub fn find(&self, kid: &str) -> Option<&JwtKey> {
        std::iter::once(&self.current).chain(self.others.iter()).find(|k| k.kid == kid)
    }

    /// A PKCS#8 PEM for a new P-256 key, for the secret format above (tests and tooling).
    pub fn generate_pem() -> Result<String, KeyError> {
        let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
            .map_err(|_| KeyError("key generation failed".into()))?;
        Ok(pem::encode(&pem::Pem::new("PRIVATE KEY", doc.as_ref().to_vec())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_json_round_trip_with_current_and_previous() {
        let a = KeySet::generate_pem().unwrap();
        let b = KeySet::generate_pem().unwrap();
        let json = serde_json::json!({"keys": [
            {"kid": "k2", "alg": "ES256", "status": "current", "private_key_pem": a},
            {"kid": "k1", "alg": "ES256", "status": "previous", "private_key_pem": b},
        ]})
        .to_string();
        let ks = KeySet::from_secret_json(&json).unwrap();
        assert_eq!(ks.current.kid, "k2");
        assert!(ks.current.encoding.is_some());
        assert!(ks.find("k1").is_some_and(|k| k.encoding.is_none()));
        assert!(!ks.ephemeral);
    }

    #[test]
    fn bad_secrets_are_refused() {
        let a = KeySet::generate_pem().unwrap();
        for bad in [
            "not json".to_owned(),
            r#"{"keys": []}"#.to_owned(),
            serde_json::json!({"keys": [{"kid": "x", "alg": "HS256", "status": "current", "private_key_pem": a}]}).to_string(),
            serde_json::json!({"keys": [{"kid": "x", "alg": "ES256", "status": "current", "private_key_pem": "garbage"}]}).to_string(),
        ] {
            assert!(KeySet::from_secret_json(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ephemeral_key_has_thumbprint_kid() {
        let ks = KeySet::ephemeral().unwrap();
        assert!(ks.ephemeral);
        assert_eq!(ks.current.kid.len(), 43);
    }
}
