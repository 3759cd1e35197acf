//! What a resource server needs to verify access tokens: the public keys (JWKS, RFC 7517) and
//! the discovery metadata (RFC 8414).

use std::sync::Arc;

use serde::Serialize;

use crate::config::Config;
use crate::keys::KeyProvider;

/// OpenID-style discovery metadata (RFC 8414).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Discovery {
    pub issuer: String,
    pub jwks_uri: String,
    pub token_endpoint: String,
    pub grant_types_supported: Vec<String>,
    pub response_types_supported: Vec<String>,
    pub subject_types_supported: Vec<String>,
    pub token_endpoint_auth_methods_supported: Vec<String>,
    pub id_token_signing_alg_values_supported: Vec<String>,
    pub scopes_supported: Vec<String>,
    pub claims_supported: Vec<String>,
}

/// Publishes the key set and the metadata.
pub struct Publisher {
    keys: Arc<KeyProvider>,
    issuer: String,
    base_url: String,
}

fn strings(xs: &[&str]) -> Vec<String> {
    xs.iter().map(|x| x.to_string()).collect()
}

impl Publisher {
    pub fn new(keys: Arc<KeyProvider>, cfg: &Config) -> Self {
        Self { keys, issuer: cfg.issuer.clone(), base_url: cfg.public_base_url.clone() }
    }

    /// The public keys of the current, next and previous keys (never private or symmetric ones).
    pub async fn jwks(&self) -> serde_json::Value {
        self.keys.refresh_if_stale().await;
        self.keys.keys().jwks()
    }

    /// The discovery document; every URL is built from the configured base URL.
    pub async fn metadata(&self) -> Discovery {
        self.keys.refresh_if_stale().await;
        let keys = self.keys.keys();
        let mut algs: Vec<String> =
            std::iter::once(&keys.current).chain(keys.others.iter()).map(|k| format!("{:?}", k.alg)).collect();
        algs.dedup();
        let base = &self.base_url;
        Discovery {
            issuer: self.issuer.clone(),
            jwks_uri: format!("{base}/.well-known/jwks.json"),
            token_endpoint: format!("{base}/auth/token"),
            grant_types_supported: strings(&["password", "refresh_token"]),
            response_types_supported: strings(&["token"]),
            subject_types_supported: strings(&["public"]),
            token_endpoint_auth_methods_supported: strings(&["none"]),
            id_token_signing_alg_values_supported: algs,
            scopes_supported: strings(&["openid", "profile", "email", "admin"]),
            claims_supported: strings(&[
                "iss",
                "aud",
                "sub",
                "iat",
                "nbf",
                "exp",
                "jti",
                "scope",
                "email",
                "email_verified",
                "sv",
            ]),
        }
    }
}
