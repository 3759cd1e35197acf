//! Builds the service from configuration: the one place that picks adapters. Lambda insists
//! on real AWS adapters; the local server may fall back to the embedded defaults.

use std::sync::Arc;

use crate::config::{Config, MailerKind};
use crate::keys::{KeyProvider, KeySet};
use crate::mail::Mailer;
use crate::mail::ses::SesMailer;
use crate::password::Hasher;
use crate::service::AuthService;
use crate::store::Store;
use crate::store::dynamo::DynamoStore;
use crate::store::memory::MemoryStore;
use crate::tokens::Jwt;

/// Where the service runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// A Lambda function: DynamoDB, SES and Secrets Manager are required.
    Lambda,
    /// The local server: each missing setting falls back to its embedded default.
    Local,
}

/// What was chosen, for the startup line.
#[derive(Debug, Clone)]
pub struct Modes {
    pub store: String,
    pub mailer: String,
    pub keys: String,
}

/// Why the service could not be built.
#[derive(Debug, thiserror::Error)]
#[error("startup: {0}")]
pub struct BuildError(pub String);

/// Loads the AWS SDK configuration (standard variables, `AWS_ENDPOINT_URL_<SERVICE>` included).
pub async fn aws_config() -> aws_config::SdkConfig {
    aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await
}

/// Builds the service. `console` is the local server's mailer, used unless `MAILER=ses`.
pub async fn build(
    cfg: Config,
    target: Target,
    console: Option<Arc<dyn Mailer>>,
) -> Result<(Arc<AuthService>, Modes), BuildError> {
    let needs_aws = cfg.table_name.is_some() || cfg.mailer == MailerKind::Ses || cfg.signing_key_secret_id.is_some();
    let sdk = if needs_aws { Some(aws_config().await) } else { None };

    let (store, store_mode): (Arc<dyn Store>, String) = match (&cfg.table_name, &sdk) {
        (Some(table), Some(sdk)) => {
            let client = aws_sdk_dynamodb::Client::new(sdk);
            (Arc::new(DynamoStore::new(client, table)), format!("dynamodb table {table}"))
        }
        _ if target == Target::Local => (Arc::new(MemoryStore::new()), "in-memory (data is lost on exit)".into()),
        _ => return Err(BuildError("TABLE_NAME is required".into())),
    };

    let (mailer, mailer_mode): (Arc<dyn Mailer>, String) = match (&cfg.mailer, &sdk, console) {
        (MailerKind::Ses, Some(sdk), _) => (
            Arc::new(SesMailer::new(aws_sdk_sesv2::Client::new(sdk), cfg.mail_from.clone())),
            format!("ses from {}", cfg.mail_from),
        ),
        (MailerKind::Console, _, Some(console)) => (console, "console (GET /_dev/outbox)".into()),
        _ => return Err(BuildError("MAILER=ses is required".into())),
    };

    let (keys, keys_mode) = match (&cfg.signing_key_secret_id, &sdk) {
        (Some(id), Some(sdk)) => {
            let client = aws_sdk_secretsmanager::Client::new(sdk);
            let kp = KeyProvider::from_secrets_manager(client, id.clone(), cfg.key_cache_ttl)
                .await
                .map_err(|e| BuildError(e.to_string()))?;
            let ks = kp.keys();
            let mode =
                format!("secrets manager {id} (current kid {}, {} more verifying)", ks.current.kid, ks.others.len());
            (kp, mode)
        }
        _ if target == Target::Local => {
            let ks = KeySet::ephemeral(cfg.signing_alg).map_err(|e| BuildError(e.to_string()))?;
            let mode =
                format!("EPHEMERAL {:?} key kid {} (tokens die with the process)", cfg.signing_alg, ks.current.kid);
            (KeyProvider::fixed(ks), mode)
        }
        _ => return Err(BuildError("SIGNING_KEY_SECRET_ID is required".into())),
    };

    let jwt = Jwt::new(Arc::new(keys), cfg.issuer.clone(), cfg.audience.clone(), cfg.access_ttl);
    let hasher = Hasher::new(cfg.hash, cfg.hash_concurrency);
    let svc = AuthService { cfg: Arc::new(cfg), store, mailer, jwt, hasher };
    Ok((Arc::new(svc), Modes { store: store_mode, mailer: mailer_mode, keys: keys_mode }))
}
