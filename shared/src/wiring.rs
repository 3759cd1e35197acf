//! The composition root: builds each use case from configuration, on demand. An endpoint's
//! mount asks only for what it uses, so a function binary links only the adapters (and AWS
//! clients) its endpoint needs: `jwks` reads keys and never builds a DynamoDB client, `me`
//! builds no mailer, `health` touches none of this.
//!
//! In Lambda every adapter is the real one, and a missing setting fails the cold start (there
//! is no fallback key). The local server passes `LocalDefaults`: the in-memory store, the
//! console mailer and an ephemeral key stand in for whatever is not configured.

use std::sync::{Arc, Mutex};

use tokio::sync::OnceCell;

use crate::clock::{self, SharedClock};
use crate::config::{Config, EndpointLimits, MailerKind};
use crate::domain::account::{Account, EmailConfirmation, Profile};
use crate::domain::admin::Admin;
use crate::domain::authn::Authenticator;
use crate::domain::discovery::Publisher;
use crate::domain::lockout::Lockout;
use crate::domain::login::Login;
use crate::domain::mfa::{MfaLogin, MfaReset, MfaSettings, StepUp};
use crate::domain::notify::Notifier;
use crate::domain::ratelimit::{Gate, RateLimiter, Scope};
use crate::domain::recovery::Recovery;
use crate::domain::sessions::{Refresh, SessionIssuer, Sessions};
use crate::domain::signup::{Signup, Verification, VerificationLinks};
use crate::domain::unlock::Unlock;
use crate::keys::{KeyProvider, KeySet};
use crate::mail::Mailer;
use crate::password::Hasher;
use crate::store::dynamo::DynamoStore;
use crate::store::memory::MemoryStore;
use crate::tokens::Jwt;

/// Why a function or the local server could not be built.
#[derive(Debug, Clone, thiserror::Error)]
#[error("startup: {0}")]
pub struct BuildError(pub String);

/// Loads the AWS SDK configuration the way every AWS SDK does on a workstation (standard
/// variables, `AWS_ENDPOINT_URL_<SERVICE>` included, then profiles, SSO, web identity, the
/// container and instance metadata endpoints): for the local server, the CLI and the tests.
/// Its HTTP client is `operator_https_client`.
pub async fn aws_config() -> Result<aws_config::SdkConfig, BuildError> {
    let timeouts = call_timeouts(&aws_types::os_shim_internal::Env::real());
    Ok(aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(operator_https_client()?)
        .timeout_config(timeouts)
        .load()
        .await)
}

/// The SDK's own HTTP client, as aws-config builds it by default (hyper-util's pool, rustls on
/// aws-lc, `HTTPS_PROXY`/`HTTP_PROXY`/`NO_PROXY`, the system's roots), plus the CAs of the
/// bundle `AWS_CA_BUNDLE` names: what an operator behind a proxy or a TLS-inspecting gateway
/// needs, and what a function does not.
#[cfg(feature = "operator-client")]
fn operator_https_client() -> Result<aws_smithy_runtime_api::client::http::SharedHttpClient, BuildError> {
    use aws_smithy_http_client::{Builder, ConnectorBuilder, proxy::ProxyConfig, tls};
    let mut trust = tls::TrustStore::default();
    if let Some(path) = std::env::var_os("AWS_CA_BUNDLE") {
        let pem = std::fs::read(&path)
            .map_err(|e| BuildError(format!("AWS_CA_BUNDLE {}: {e}", std::path::Path::new(&path).display())))?;
        trust = trust.with_pem_certificate(pem);
    }
    let context = tls::TlsContext::builder().with_trust_store(trust).build().map_err(|e| BuildError(e.to_string()))?;
    Ok(Builder::new().build_with_connector_fn(move |settings, components| {
        let mut builder = ConnectorBuilder::default()
            .tls_provider(tls::Provider::Rustls(tls::rustls_provider::CryptoMode::AwsLc))
            .tls_context(context.clone());
        builder.set_connector_settings(settings.cloned());
        if let Some(components) = components {
            builder.set_sleep_impl(components.sleep_impl());
        }
        builder.set_proxy_config(Some(ProxyConfig::from_env()));
        builder.build()
    }))
}

/// Without the `operator-client` feature (shared's own tests), the functions' client.
#[cfg(not(feature = "operator-client"))]
fn operator_https_client() -> Result<aws_smithy_runtime_api::client::http::SharedHttpClient, BuildError> {
    aws_https_client()
}

/// How long one attempt of an AWS call may take before the SDK gives it up (and retries, within
/// the operation's bound), by default: far above a DynamoDB call's usual tens of milliseconds,
/// far below the functions' 10 s timeout.
pub const ATTEMPT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);
/// How long one AWS call may take in all, retries and their waits included, by default: a
/// black-holed dependency costs a request at most this, and it answers 503 `unavailable` with
/// `Retry-After` well inside the function's timeout.
pub const OPERATION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The SDK's time bounds: 3.1 s to connect (aws-config's default), `ATTEMPT_TIMEOUT` per
/// attempt and `OPERATION_TIMEOUT` per call. The SDK reads no standard variable for the last
/// two; `SDK_ATTEMPT_TIMEOUT_MS` and `SDK_OPERATION_TIMEOUT_MS` override them.
fn call_timeouts(env: &aws_types::os_shim_internal::Env) -> aws_config::timeout::TimeoutConfig {
    let ms = |name: &str, default: std::time::Duration| {
        env.get(name)
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .filter(|v| *v > 0)
            .map_or(default, std::time::Duration::from_millis)
    };
    aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(std::time::Duration::from_millis(3100))
        .operation_attempt_timeout(ms("SDK_ATTEMPT_TIMEOUT_MS", ATTEMPT_TIMEOUT))
        .operation_timeout(ms("SDK_OPERATION_TIMEOUT_MS", OPERATION_TIMEOUT))
        .build()
}

/// The AWS SDK configuration of a Lambda function, from what Lambda puts in its environment:
/// the region (`AWS_REGION`), the execution role's credentials (`AWS_ACCESS_KEY_ID`,
/// `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`) and the standard endpoint variables
/// (`AWS_ENDPOINT_URL_<SERVICE>`, `AWS_ENDPOINT_URL`, `AWS_IGNORE_CONFIGURED_ENDPOINT_URLS`),
/// read by the SDK's own parser, and `AWS_USE_FIPS_ENDPOINT` / `AWS_USE_DUALSTACK_ENDPOINT`.
/// Retries are the defaults `aws_config()` gives (standard retries, three attempts), and so
/// are the time bounds (`call_timeouts`).
///
/// Nothing else of the default chain is read (no profile files, SSO, STS web identity, IMDS),
/// so none of it is linked into a function: no STS client, XML parser or profile parser in
/// any binary (`e2e::lambda` reads the symbol tables), and no file is opened at cold start.
pub async fn lambda_aws_config() -> Result<aws_config::SdkConfig, BuildError> {
    Ok(lambda_sdk_config(aws_types::os_shim_internal::Env::real(), aws_https_client()?))
}

fn lambda_sdk_config(
    env: aws_types::os_shim_internal::Env,
    http_client: aws_smithy_runtime_api::client::http::SharedHttpClient,
) -> aws_config::SdkConfig {
    use aws_config::environment::EnvironmentVariableCredentialsProvider;
    use aws_credential_types::provider::SharedCredentialsProvider;
    let flag = |name: &str| env.get(name).is_ok_and(|v| v.eq_ignore_ascii_case("true"));
    // As aws-config's environment region provider reads it.
    let region = env.get("AWS_REGION").or_else(|_| env.get("AWS_DEFAULT_REGION")).ok().map(aws_config::Region::new);
    aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(region)
        .credentials_provider(SharedCredentialsProvider::new(EnvironmentVariableCredentialsProvider::new()))
        .identity_cache(aws_config::identity::IdentityCache::lazy().build())
        .retry_config(aws_config::retry::RetryConfig::standard())
        .timeout_config(call_timeouts(&env))
        .sleep_impl(aws_smithy_async::rt::sleep::SharedAsyncSleep::new(aws_smithy_async::rt::sleep::TokioSleep::new()))
        .time_source(aws_smithy_async::time::SharedTimeSource::default())
        .http_client(http_client)
        .use_fips(flag("AWS_USE_FIPS_ENDPOINT"))
        .use_dual_stack(flag("AWS_USE_DUALSTACK_ENDPOINT"))
        .service_config(EnvEndpoints { ignore: flag("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS"), env })
        .build()
}

/// Service settings from the environment alone: `AWS_ENDPOINT_URL_<SERVICE>`, else
/// `AWS_ENDPOINT_URL` (aws-config does the same, and also reads profile files).
#[derive(Debug)]
struct EnvEndpoints {
    ignore: bool,
    env: aws_types::os_shim_internal::Env,
}

impl aws_types::service_config::LoadServiceConfig for EnvEndpoints {
    fn load_config(&self, key: aws_types::service_config::ServiceConfigKey<'_>) -> Option<String> {
        if self.ignore && key.env() == "AWS_ENDPOINT_URL" {
            return None;
        }
        let (value, _) = aws_runtime::env_config::EnvConfigValue::new()
            .env(key.env())
            .service_id(key.service_id())
            .load(&self.env, None)?;
        Some(value.into_owned())
    }
}

/// The roots of Amazon Trust Services (Amazon Root CA 1–4 and the two Starfield roots that
/// cross-sign them), which issue the certificates of every AWS service endpoint.
const AWS_ROOTS: &[u8] = include_bytes!("aws-roots.pem");

/// The roots an AWS endpoint's certificate must chain to: the Amazon roots, or the PEM bundle
/// `AWS_CA_BUNDLE` names (the variable the other AWS SDKs read; for an endpoint behind a
/// private CA). The operating system's store (about 140 roots here, parsed at every cold
/// start: 6–7 ms of each function's init, measured) is not read, and no other CA can vouch for
/// an AWS endpoint.
fn aws_roots() -> Vec<u8> {
    match std::env::var_os("AWS_CA_BUNDLE") {
        Some(path) => std::fs::read(&path).unwrap_or_else(|e| {
            tracing::warn!(path = %std::path::Path::new(&path).display(), error = %e, "AWS_CA_BUNDLE unreadable; trusting the Amazon roots");
            AWS_ROOTS.to_vec()
        }),
        None => AWS_ROOTS.to_vec(),
    }
}

/// The functions' SDK HTTP client (`aws_http`: hyper-util's pool, HTTP/1.1, rustls on
/// aws-lc), trusting `aws_roots` (the Amazon roots if `AWS_CA_BUNDLE` holds no usable
/// certificate).
fn aws_https_client() -> Result<aws_smithy_runtime_api::client::http::SharedHttpClient, BuildError> {
    let client = crate::aws_http::Http1Client::trusting(&aws_roots()).or_else(|e| {
        tracing::error!(error = %e, "AWS_CA_BUNDLE; trusting the Amazon roots");
        crate::aws_http::Http1Client::trusting(AWS_ROOTS)
    });
    client.map(crate::aws_http::Http1Client::shared).map_err(|e| BuildError(e.to_string()))
}

/// What the local server falls back to for each adapter that is not configured.
pub struct LocalDefaults {
    pub store: Arc<MemoryStore>,
    /// Delivers mail when `MAILER` is not `ses` (the console mailer).
    pub mailer: Arc<dyn Mailer>,
    /// Builds the SES mailer for `MAILER=ses`. A function pointer the local server passes, so
    /// that the endpoint functions, which only queue mail, link no SES client.
    pub ses: fn(&aws_config::SdkConfig, &Config) -> Arc<dyn Mailer>,
    /// Puts a delivering mailer behind an in-process queue, used when `MAIL_QUEUE_URL` is not
    /// set (the local server's queue, with the mailer function's retry policy).
    pub queue: fn(Arc<dyn Mailer>, &Config) -> Arc<dyn Mailer>,
}

/// What was chosen, for the startup line.
#[derive(Debug, Clone, Default)]
pub struct Modes {
    pub store: String,
    pub mailer: String,
    pub keys: String,
    /// The TOTP secrets' encryption key (empty if nothing mounted needs it).
    pub mfa_key: String,
}

/// Turns a concrete store into the port a use case holds. Implemented for each port's trait
/// object, so that only the methods of that port end up in a function binary.
pub trait FromStore {
    fn from_dynamo(s: Arc<DynamoStore>) -> Arc<Self>;
    fn from_memory(s: Arc<MemoryStore>) -> Arc<Self>;
}

macro_rules! from_store {
    ($($port:path),* $(,)?) => {$(
        impl FromStore for dyn $port {
            fn from_dynamo(s: Arc<DynamoStore>) -> Arc<Self> {
                s
            }
            fn from_memory(s: Arc<MemoryStore>) -> Arc<Self> {
                s
            }
        }
    )*};
}

from_store!(
    crate::store::SignupPort,
    crate::store::TokenPort,
    crate::store::BearerPort,
    crate::store::MfaStore,
    crate::store::LoginPort,
    crate::store::LockoutPort,
    crate::store::SessionPort,
    crate::store::RecoveryPort,
    crate::store::AccountPort,
    crate::store::AdminPort,
    crate::store::MfaPort,
    crate::store::UserLookup,
    crate::store::UserUpdates,
    crate::store::OneTimeTokenStore,
    crate::store::RateLimitStore,
    crate::store::MailLedger,
    crate::store::Store,
);

type SdkLoader =
    fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<aws_config::SdkConfig, BuildError>> + Send>>;

/// Dependencies, built on first use and shared by every endpoint mounted from them.
pub struct Deps {
    cfg: Result<Arc<Config>, BuildError>,
    local: Option<LocalDefaults>,
    sdk: OnceCell<aws_config::SdkConfig>,
    /// Where the SDK configuration comes from: `lambda_aws_config` in a function (`None`), the
    /// default chain (`aws_config`) in the local server and the CLI. A function pointer that
    /// only they set, so that a function binary never references the default chain and links
    /// none of it, and one that builds no AWS client (`health`) links no SDK configuration.
    sdk_loader: Option<SdkLoader>,
    keys: OnceCell<Arc<KeyProvider>>,
    sealer: OnceCell<Arc<crate::mfa::Sealer>>,
    issuer: OnceCell<SessionIssuer>,
    hasher: std::sync::OnceLock<Hasher>,
    /// One DynamoDB client for every port of this function: one connection pool, opened once.
    dynamodb: OnceCell<aws_sdk_dynamodb::Client>,
    /// One mail queue (SQS client, or the local server's worker) for every use case.
    mailer: OnceCell<Arc<dyn Mailer>>,
    /// Set once the store's connection is being opened during init (Lambda only).
    store_warmed: std::sync::OnceLock<()>,
    /// Warm-ups that run while init goes on (the store's first connection while the keys are
    /// fetched); `settle` waits for them before the function polls for its first event.
    warming: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    clock: SharedClock,
    modes: Mutex<Modes>,
}

impl Deps {
    /// A Lambda function's dependencies, from its environment.
    pub fn lambda() -> Self {
        let cfg = Config::from_env().map(Arc::new).map_err(|e| BuildError(e.to_string()));
        Self::with(cfg, None, None)
    }

    /// The local server's (or the CLI's): configured adapters where set, else `local`.
    pub fn local(cfg: Config, local: LocalDefaults) -> Self {
        Self::with(Ok(Arc::new(cfg)), Some(local), Some(|| Box::pin(aws_config())))
    }

    /// Dependencies from `cfg`; without `local`, every adapter must be configured (as in Lambda).
    pub fn new(cfg: Config, local: Option<LocalDefaults>) -> Self {
        Self::with(Ok(Arc::new(cfg)), local, Some(|| Box::pin(aws_config())))
    }

    fn with(cfg: Result<Arc<Config>, BuildError>, local: Option<LocalDefaults>, sdk_loader: Option<SdkLoader>) -> Self {
        Self {
            cfg,
            local,
            sdk: OnceCell::new(),
            sdk_loader,
            keys: OnceCell::new(),
            sealer: OnceCell::new(),
            issuer: OnceCell::new(),
            hasher: std::sync::OnceLock::new(),
            dynamodb: OnceCell::new(),
            mailer: OnceCell::new(),
            store_warmed: std::sync::OnceLock::new(),
            warming: Mutex::new(Vec::new()),
            clock: clock::system(),
            modes: Mutex::new(Modes::default()),
        }
    }

    /// Waits for the warm-ups started while building (each may fail without failing init).
    pub async fn settle(&self) {
        let pending: Vec<_> = self.warming.lock().map(|mut w| std::mem::take(&mut *w)).unwrap_or_default();
        for w in pending {
            let _ = w.await;
        }
    }

    /// The configuration (a Lambda whose environment is unusable fails here).
    pub fn config(&self) -> Result<&Config, BuildError> {
        self.cfg.as_deref().map_err(Clone::clone)
    }

    pub fn clock(&self) -> SharedClock {
        self.clock.clone()
    }

    /// What each adapter turned out to be (for the startup line).
    pub fn modes(&self) -> Modes {
        self.modes.lock().map(|m| m.clone()).unwrap_or_default()
    }

    fn note(&self, f: impl FnOnce(&mut Modes)) {
        if let Ok(mut m) = self.modes.lock() {
            f(&mut m);
        }
    }

    async fn sdk(&self) -> Result<&aws_config::SdkConfig, BuildError> {
        self.sdk
            .get_or_try_init(|| async {
                match self.sdk_loader {
                    Some(load) => load().await,
                    None => lambda_aws_config().await,
                }
            })
            .await
    }

    /// The store as the port `T` (`dyn LoginPort`, …): DynamoDB when `TABLE_NAME` is set,
    /// else the local default; in Lambda `TABLE_NAME` is required.
    pub async fn store<T: ?Sized + FromStore>(&self) -> Result<Arc<T>, BuildError> {
        let cfg = self.config()?;
        match (&cfg.table_name, &self.local) {
            (Some(table), _) => {
                // Each SDK client has its own HTTP client and connection pool: share one.
                let client = self
                    .dynamodb
                    .get_or_try_init(|| async { Ok::<_, BuildError>(aws_sdk_dynamodb::Client::new(self.sdk().await?)) })
                    .await?;
                self.note(|m| m.store = format!("dynamodb table {table}"));
                let store = Arc::new(DynamoStore::new(client.clone(), table));
                if self.local.is_none() {
                    // In Lambda this runs during init, on the client every port uses, beside
                    // whatever else init does next (`settle` waits for it).
                    self.store_warmed.get_or_init(|| {
                        let store = store.clone();
                        let warm = tokio::spawn(async move { store.warm().await });
                        if let Ok(mut w) = self.warming.lock() {
                            w.push(warm);
                        }
                    });
                }
                Ok(T::from_dynamo(store))
            }
            (None, Some(local)) => {
                self.note(|m| m.store = "in-memory (data is lost on exit)".into());
                Ok(T::from_memory(local.store.clone()))
            }
            (None, None) => Err(BuildError("TABLE_NAME is required".into())),
        }
    }

    /// The mailer endpoints hold: the SQS queue with `MAIL_QUEUE_URL` (required in Lambda),
    /// else the local server's in-process queue in front of SES or the console mailer. Either way a request
    /// only queues its mail; neither its answer nor its timing depends on SES.
    pub async fn mailer(&self) -> Result<Arc<dyn Mailer>, BuildError> {
        self.mailer.get_or_try_init(|| self.new_mailer()).await.cloned()
    }

    async fn new_mailer(&self) -> Result<Arc<dyn Mailer>, BuildError> {
        let cfg = self.config()?;
        match (&cfg.mail_queue_url, &self.local) {
            (Some(url), _) => {
                let client = aws_sdk_sqs::Client::new(self.sdk().await?);
                self.note(|m| m.mailer = format!("sqs queue {url}"));
                Ok(Arc::new(crate::mail::sqs::SqsOutbox::new(client, url.clone())))
            }
            (None, Some(local)) => {
                let delivery = match cfg.mailer {
                    MailerKind::Ses => {
                        self.note(|m| m.mailer = format!("in-process queue, then ses from {}", cfg.mail_from));
                        (local.ses)(self.sdk().await?, cfg)
                    }
                    MailerKind::Console => {
                        self.note(|m| m.mailer = "in-process queue, then console (GET /_dev/outbox)".into());
                        local.mailer.clone()
                    }
                };
                Ok((local.queue)(delivery, cfg))
            }
            (None, None) => Err(BuildError("MAIL_QUEUE_URL is required".into())),
        }
    }

    /// SES (`MAILER=ses`, `MAIL_FROM`): what the mailer function sends through.
    async fn ses(&self) -> Result<Arc<dyn Mailer>, BuildError> {
        let cfg = self.config()?;
        if cfg.mailer != MailerKind::Ses {
            return Err(BuildError("MAILER=ses is required".into()));
        }
        let client = aws_sdk_sesv2::Client::new(self.sdk().await?);
        self.note(|m| m.mailer = format!("ses from {}", cfg.mail_from));
        Ok(Arc::new(crate::mail::ses::SesMailer::new(client, cfg.mail_from.clone())))
    }

    /// The mailer function's handler: jobs from `MAIL_QUEUE_URL`, claimed in the table's
    /// ledger, sent through SES.
    pub async fn mail_worker(&self) -> Result<crate::mail::sqs::Worker, BuildError> {
        let cfg = self.config()?;
        let url = cfg.mail_queue_url.clone().ok_or_else(|| BuildError("MAIL_QUEUE_URL is required".into()))?;
        // No warm-up read: its role may only touch the ledger's items, and no one waits for
        // a mail's first connection.
        self.store_warmed.get_or_init(|| ());
        let delivery = crate::mail::queue::Delivery::new(
            self.store::<dyn crate::store::MailLedger>().await?,
            self.ses().await?,
            self.clock(),
        );
        let sqs = aws_sdk_sqs::Client::new(self.sdk().await?);
        Ok(crate::mail::sqs::Worker::new(delivery, sqs, url, crate::mail::queue::RetryPolicy::from_config(cfg)))
    }

    /// The signing keys, loaded once: from Secrets Manager when `SIGNING_KEY_SECRET_ID` is
    /// set, else (local server only) an ephemeral key.
    pub async fn keys(&self) -> Result<Arc<KeyProvider>, BuildError> {
        let cfg = self.config()?;
        self.keys
            .get_or_try_init(|| async {
                let provider = match (&cfg.signing_key_secret_id, &self.local) {
                    (Some(id), _) => {
                        let client = aws_sdk_secretsmanager::Client::new(self.sdk().await?);
                        let kp = KeyProvider::from_secrets_manager(client, id.clone(), cfg.key_cache_ttl)
                            .await
                            .map_err(|e| BuildError(e.to_string()))?;
                        let ks = kp.keys();
                        let mode = format!(
                            "secrets manager {id} (current kid {}, {} more verifying)",
                            ks.current.kid,
                            ks.others.len()
                        );
                        self.note(|m| m.keys = mode);
                        kp
                    }
                    (None, Some(_)) => {
                        let ks = KeySet::ephemeral(cfg.signing_alg).map_err(|e| BuildError(e.to_string()))?;
                        let mode = format!(
                            "EPHEMERAL {:?} key kid {} (tokens die with the process)",
                            cfg.signing_alg, ks.current.kid
                        );
                        self.note(|m| m.keys = mode);
                        KeyProvider::fixed(ks)
                    }
                    (None, None) => return Err(BuildError("SIGNING_KEY_SECRET_ID is required".into())),
                };
                Ok(Arc::new(provider))
            })
            .await
            .cloned()
    }

    /// The key TOTP secrets are sealed with, read once (cold start): from Secrets Manager when
    /// `MFA_KEY_SECRET_ID` is set, else (local server only) an ephemeral key.
    pub async fn sealer(&self) -> Result<Arc<crate::mfa::Sealer>, BuildError> {
        let cfg = self.config()?;
        self.sealer
            .get_or_try_init(|| async {
                let sealer = match (&cfg.mfa_key_secret_id, &self.local) {
                    (Some(id), _) => {
                        let client = aws_sdk_secretsmanager::Client::new(self.sdk().await?);
                        let out = client.get_secret_value().secret_id(id).send().await.map_err(|e| {
                            BuildError(format!(
                                "MFA key: GetSecretValue: {}",
                                aws_sdk_secretsmanager::error::DisplayErrorContext(e)
                            ))
                        })?;
                        let text = out.secret_string().ok_or_else(|| BuildError("MFA key: no secret string".into()))?;
                        let sealer =
                            crate::mfa::Sealer::from_secret_text(text).map_err(|e| BuildError(e.to_string()))?;
                        self.note(|m| m.mfa_key = format!("secrets manager {id}"));
                        sealer
                    }
                    (None, Some(_)) => {
                        self.note(|m| m.mfa_key = "EPHEMERAL (TOTP enrolments die with the process)".into());
                        crate::mfa::Sealer::ephemeral().map_err(|e| BuildError(e.to_string()))?
                    }
                    (None, None) => return Err(BuildError("MFA_KEY_SECRET_ID is required".into())),
                };
                Ok(Arc::new(sealer))
            })
            .await
            .cloned()
    }

    /// Reads the signing keys and the MFA key side by side (two Secrets Manager calls in one
    /// round trip during init) for the functions that need both; later calls use the cache.
    pub async fn keys_and_mfa_key(&self) -> Result<(), BuildError> {
        tokio::try_join!(self.keys(), self.sealer()).map(|_| ())
    }

    /// The password hasher (one concurrency cap per process).
    pub fn hasher(&self) -> Result<Hasher, BuildError> {
        let cfg = self.config()?;
        Ok(self.hasher.get_or_init(|| Hasher::new(cfg.hash, cfg.hash_concurrency)).clone())
    }

    /// Access-token signing and verification.
    pub async fn jwt(&self) -> Result<Jwt, BuildError> {
        let cfg = self.config()?;
        Ok(Jwt::new(self.keys().await?, cfg.issuer.clone(), cfg.audience.clone(), cfg.access_ttl))
    }

    async fn notifier(&self) -> Result<Notifier, BuildError> {
        let cfg = self.config()?;
        let cap = if cfg.rate_limits.enabled { Some(self.rate_limiter().await?) } else { None };
        Ok(Notifier::new(self.mailer().await?, cfg, cap))
    }

    async fn lockout(&self) -> Result<Lockout, BuildError> {
        Ok(Lockout::new(self.store().await?, self.notifier().await?, self.config()?, self.clock()))
    }

    /// The session issuer, built (and its warm-up signature made) once per process: the
    /// token function's three grants share it.
    async fn issuer(&self) -> Result<SessionIssuer, BuildError> {
        self.issuer.get_or_try_init(|| self.new_issuer()).await.cloned()
    }

    async fn new_issuer(&self) -> Result<SessionIssuer, BuildError> {
        let jwt = self.jwt().await?;
        // Sign one throw-away token now (it never leaves the process): a process's first
        // signature costs about 60 ms here, the next ones microseconds, and the first request
        // would otherwise pay for it (infra/bench-lambda.sh: refresh's first request 67 → 9 ms).
        let warm = crate::tokens::Subject {
            user_id: "warm-up",
            email: "warm-up@invalid",
            email_verified: false,
            is_superuser: false,
            session_version: 0,
            amr: &["pwd"],
            session_id: "warm-up",
        };
        jwt.issue(&warm, self.clock.now()).map_err(|e| BuildError(format!("signing key: {e}")))?;
        Ok(SessionIssuer::new(jwt, self.config()?))
    }

    pub async fn authenticator(&self) -> Result<Arc<Authenticator>, BuildError> {
        Ok(Arc::new(Authenticator::new(self.store().await?, self.jwt().await?, self.clock())))
    }

    pub async fn rate_limiter(&self) -> Result<Arc<RateLimiter>, BuildError> {
        Ok(Arc::new(RateLimiter::new(self.store().await?, self.config()?.rate_limits.clone(), self.clock())))
    }

    /// The `scope` limit of endpoint `binary` (declared `defaults`), if one applies.
    pub async fn gate(
        &self,
        binary: &'static str,
        defaults: EndpointLimits,
        scope: Scope,
    ) -> Result<Option<Gate>, BuildError> {
        let applies = self.config()?.rate_limits.effective(binary, defaults).is_some_and(|l| match scope {
            Scope::Email => l.email.is_some(),
            Scope::User => l.user.is_some(),
        });
        if !applies {
            return Ok(None);
        }
        Ok(Gate::new(self.rate_limiter().await?, binary, defaults, scope))
    }

    pub async fn signup(&self, gate: Option<Gate>) -> Result<Arc<Signup>, BuildError> {
        let cfg = self.config()?;
        Ok(Arc::new(Signup::new(self.store().await?, self.hasher()?, self.notifier().await?, gate, cfg, self.clock())))
    }

    pub async fn verification(&self) -> Result<Arc<Verification>, BuildError> {
        // A wrong password at verification counts like a failed login.
        let hasher = self.hasher()?;
        Ok(Arc::new(Verification::new(self.store().await?, hasher, self.lockout().await?, self.clock())))
    }

    pub async fn login(&self, gate: Option<Gate>) -> Result<Arc<Login>, BuildError> {
        let hasher = self.hasher()?;
        // The dummy hash an unknown email is verified against, made now rather than on the
        // first such login (in Lambda: during init).
        hasher.warm().await.map_err(|e| BuildError(e.to_string()))?;
        let links = VerificationLinks::new(self.notifier().await?, self.config()?, self.clock());
        let (store, lockout, issuer) = (self.store().await?, self.lockout().await?, self.issuer().await?);
        Ok(Arc::new(
            Login::new(store, hasher, lockout, issuer, links, gate, self.clock())
                .with_failure_floor(self.config()?.enumeration_floor),
        ))
    }

    pub async fn unlock(&self) -> Result<Arc<Unlock>, BuildError> {
        let (store, hasher, issuer) = (self.store().await?, self.hasher()?, self.issuer().await?);
        Ok(Arc::new(Unlock::new(store, hasher, issuer, self.clock())))
    }

    pub async fn refresh(&self) -> Result<Arc<Refresh>, BuildError> {
        Ok(Arc::new(Refresh::new(self.store().await?, self.issuer().await?, self.config()?, self.clock())))
    }

    pub async fn sessions(&self) -> Result<Arc<Sessions>, BuildError> {
        Ok(Arc::new(Sessions::new(self.store().await?, self.clock())))
    }

    pub async fn recovery(&self, gate: Option<Gate>, user_gate: Option<Gate>) -> Result<Arc<Recovery>, BuildError> {
        let cfg = self.config()?;
        let (store, hasher, notifier) = (self.store().await?, self.hasher()?, self.notifier().await?);
        Ok(Arc::new(Recovery::new(store, hasher, notifier, gate, user_gate, cfg, self.clock())))
    }

    pub async fn profile(&self) -> Result<Arc<Profile>, BuildError> {
        Ok(Arc::new(Profile::new(self.store().await?, self.clock())))
    }

    pub async fn account(&self, gate: Option<Gate>) -> Result<Arc<Account>, BuildError> {
        let cfg = self.config()?;
        let (store, hasher, notifier, lockout) =
            (self.store().await?, self.hasher()?, self.notifier().await?, self.lockout().await?);
        let step_up = StepUp::new(self.store().await?, self.sealer().await?, lockout, self.clock());
        Ok(Arc::new(Account::new(store, hasher, notifier, step_up, gate, cfg, self.clock())))
    }

    pub async fn email_confirmation(&self, gate: Option<Gate>) -> Result<Arc<EmailConfirmation>, BuildError> {
        let (store, notifier) = (self.store().await?, self.notifier().await?);
        Ok(Arc::new(EmailConfirmation::new(store, notifier, gate, self.clock())))
    }

    /// The administration use case, with the notices its changes mail to owners.
    pub async fn admin(&self, gate: Option<Gate>) -> Result<Arc<Admin>, BuildError> {
        let cfg = self.config()?;
        let (store, hasher, keys, notifier) =
            (self.store().await?, self.hasher()?, self.keys().await?, self.notifier().await?);
        Ok(Arc::new(Admin::new(store, hasher, keys, Some(notifier), gate, cfg, self.clock())))
    }

    /// The administration use case for the endpoints that change no account an owner must hear
    /// about (list, read, create, unlock): no mailer, so their functions link none.
    pub async fn admin_quiet(&self, gate: Option<Gate>) -> Result<Arc<Admin>, BuildError> {
        let cfg = self.config()?;
        let (store, hasher, keys) = (self.store().await?, self.hasher()?, self.keys().await?);
        Ok(Arc::new(Admin::new(store, hasher, keys, None, gate, cfg, self.clock())))
    }

    pub async fn mfa_settings(&self, gate: Option<Gate>) -> Result<Arc<MfaSettings>, BuildError> {
        let (store, hasher, sealer) = (self.store().await?, self.hasher()?, self.sealer().await?);
        let (lockout, notifier) = (self.lockout().await?, self.notifier().await?);
        Ok(Arc::new(MfaSettings::new(store, hasher, sealer, lockout, notifier, gate, self.clock())))
    }

    pub async fn mfa_login(&self) -> Result<Arc<MfaLogin>, BuildError> {
        let (store, sealer, lockout) = (self.store().await?, self.sealer().await?, self.lockout().await?);
        let (issuer, notifier) = (self.issuer().await?, self.notifier().await?);
        Ok(Arc::new(MfaLogin::new(store, sealer, lockout, issuer, notifier, self.clock())))
    }

    pub async fn mfa_reset(&self) -> Result<Arc<MfaReset>, BuildError> {
        Ok(Arc::new(MfaReset::new(self.store().await?, self.notifier().await?, self.clock())))
    }

    pub async fn publisher(&self) -> Result<Arc<Publisher>, BuildError> {
        Ok(Arc::new(Publisher::new(self.keys().await?, self.config()?)))
    }
}

#[cfg(test)]
mod tests {
    use super::AWS_ROOTS;

    #[test]
    fn the_sdk_trusts_exactly_the_amazon_trust_services_roots() {
        let text = std::str::from_utf8(AWS_ROOTS).unwrap_or_default();
        let certs = pem::parse_many(AWS_ROOTS).unwrap_or_default();
        assert_eq!(certs.len(), 6);
        assert!(certs.iter().all(|c| c.tag() == "CERTIFICATE"));
        for name in [
            "Amazon Root CA 1",
            "Amazon Root CA 2",
            "Amazon Root CA 3",
            "Amazon Root CA 4",
            "Starfield Services Root Certificate Authority - G2",
            "Starfield Class 2 CA",
        ] {
            assert!(text.contains(&format!("# {name}\n")), "{name}");
        }
    }
}

#[cfg(test)]
mod sdk_config_tests {
    use aws_types::os_shim_internal::Env;
    use aws_types::service_config::ServiceConfigKey;

    fn endpoint_key(service_id: &str) -> ServiceConfigKey<'_> {
        ServiceConfigKey::builder()
            .service_id(service_id)
            .env("AWS_ENDPOINT_URL")
            .profile("endpoint_url")
            .build()
            .unwrap()
    }

    #[tokio::test]
    async fn given_lambdas_environment_then_the_sdk_reads_region_endpoints_and_flags_from_it() {
        let http = crate::aws_http::Http1Client::trusting(super::AWS_ROOTS).unwrap().shared();
        let env = Env::from_slice(&[
            ("AWS_REGION", "eu-west-1"),
            ("AWS_DEFAULT_REGION", "us-east-2"),
            ("AWS_ENDPOINT_URL_DYNAMODB", "http://127.0.0.1:8000"),
            ("AWS_ENDPOINT_URL_SECRETS_MANAGER", "http://127.0.0.1:5000"),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:7000"),
            ("AWS_USE_FIPS_ENDPOINT", "true"),
        ]);
        let sdk = super::lambda_sdk_config(env, http.clone());
        assert_eq!(sdk.region().map(|r| r.as_ref()), Some("eu-west-1"));
        let t = sdk.timeout_config().unwrap();
        assert_eq!(
            (t.connect_timeout(), t.operation_attempt_timeout(), t.operation_timeout()),
            (
                Some(std::time::Duration::from_millis(3100)),
                Some(super::ATTEMPT_TIMEOUT),
                Some(super::OPERATION_TIMEOUT)
            )
        );
        assert_eq!((sdk.use_fips(), sdk.use_dual_stack()), (Some(true), Some(false)));
        let endpoints = sdk.service_config().unwrap();
        assert_eq!(endpoints.load_config(endpoint_key("DynamoDB")).as_deref(), Some("http://127.0.0.1:8000"));
        assert_eq!(endpoints.load_config(endpoint_key("Secrets Manager")).as_deref(), Some("http://127.0.0.1:5000"));
        assert_eq!(endpoints.load_config(endpoint_key("SQS")).as_deref(), Some("http://127.0.0.1:7000"));
        assert!(sdk.credentials_provider().is_some() && sdk.http_client().is_some());

        // `AWS_DEFAULT_REGION` when `AWS_REGION` is unset; the endpoint variables turned off.
        let env = Env::from_slice(&[
            ("AWS_DEFAULT_REGION", "us-east-2"),
            ("AWS_ENDPOINT_URL_DYNAMODB", "http://127.0.0.1:8000"),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:7000"),
            ("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "true"),
        ]);
        let sdk = super::lambda_sdk_config(env, http.clone());
        assert_eq!(sdk.region().map(|r| r.as_ref()), Some("us-east-2"));
        assert_eq!(sdk.service_config().unwrap().load_config(endpoint_key("DynamoDB")), None);
        assert_eq!((sdk.use_fips(), sdk.use_dual_stack()), (Some(false), Some(false)));
    }

    #[test]
    fn given_timeout_overrides_then_the_sdk_bounds_follow_them() {
        let http = crate::aws_http::Http1Client::trusting(super::AWS_ROOTS).unwrap().shared();
        let env = Env::from_slice(&[("SDK_ATTEMPT_TIMEOUT_MS", "750"), ("SDK_OPERATION_TIMEOUT_MS", "2500")]);
        let t = super::lambda_sdk_config(env, http).timeout_config().cloned().unwrap();
        assert_eq!(t.operation_attempt_timeout(), Some(std::time::Duration::from_millis(750)));
        assert_eq!(t.operation_timeout(), Some(std::time::Duration::from_millis(2500)));
    }
}
