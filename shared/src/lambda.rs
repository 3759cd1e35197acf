//! The Lambda entry point: a function binary names its endpoint, and only that endpoint's
//! mount (and what it builds) is linked into it. Configuration, clients and keys are loaded
//! during init (retried with a backoff if that fails); then the endpoint's handlers serve every
//! invocation.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::http::{self, Endpoint};
use crate::wiring::Deps;

pub use lambda_http::Error;

/// The first wait before initialization is tried again after it failed; it doubles per failed
/// attempt up to `RETRY_MAX`.
pub const RETRY_FIRST: Duration = Duration::from_secs(1);
/// The longest wait between two initialization attempts.
pub const RETRY_MAX: Duration = Duration::from_secs(30);

/// Serves `endpoint` under the Lambda runtime. Its dependencies are built during init; if that
/// fails (the environment is incomplete, Secrets Manager is unreachable), the function answers
/// 503 (there is no fallback key) and tries again on a later invocation once a backoff has
/// passed (1 s, doubling to 30 s), so a brief outage at cold start does not stick to the
/// execution environment; the first success serves normally from then on.
pub async fn run(endpoint: &'static Endpoint) -> Result<(), Error> {
    crate::logging::init();
    let init = Arc::new(Init::new(endpoint));
    init.ready().await;
    lambda_http::run(lambda_http::service_fn(move |req: lambda_http::Request| {
        let init = init.clone();
        async move {
            let router = init.ready().await.unwrap_or_else(http::unavailable_router);
            tower::ServiceExt::oneshot(router, req).await
        }
    }))
    .await
}

/// The function's initialization: done once it succeeds, retried with a backoff until then.
struct Init {
    endpoint: &'static Endpoint,
    /// Set by the first successful attempt; read without a lock on every request after it.
    router: std::sync::OnceLock<axum::Router>,
    /// When the next attempt may run, and the wait after that one if it fails.
    retry: tokio::sync::Mutex<(Instant, Duration)>,
}

impl Init {
    fn new(endpoint: &'static Endpoint) -> Self {
        let retry = tokio::sync::Mutex::new((Instant::now(), RETRY_FIRST));
        Init { endpoint, router: std::sync::OnceLock::new(), retry }
    }

    /// The endpoint's router, initializing it if it is not yet and the backoff has passed.
    async fn ready(&self) -> Option<axum::Router> {
        if let Some(router) = self.router.get() {
            return Some(router.clone());
        }
        let mut retry = self.retry.lock().await;
        let (next_attempt, backoff) = *retry;
        if let Some(router) = self.router.get() {
            return Some(router.clone());
        }
        if Instant::now() < next_attempt {
            return None;
        }
        let deps = Arc::new(Deps::lambda());
        match http::app(deps.clone(), &[self.endpoint]).await {
            Ok(router) => {
                deps.settle().await;
                let modes = deps.modes();
                tracing::info!(function = self.endpoint.binary, store = %modes.store, mailer = %modes.mailer, keys = %modes.keys, mfa_key = %modes.mfa_key, "initialized");
                Some(self.router.get_or_init(|| router).clone())
            }
            Err(e) => {
                tracing::error!(function = self.endpoint.binary, error = %e, retry_in_ms = backoff.as_millis() as u64, "initialization failed; answering 503 until it succeeds");
                *retry = (Instant::now() + backoff, (backoff * 2).min(RETRY_MAX));
                None
            }
        }
    }
}

/// The `rotate-keys` function: Secrets Manager's rotation steps for the signing-key secret.
pub async fn run_rotation() -> Result<(), Error> {
    use lambda_http::lambda_runtime::{LambdaEvent, service_fn};
    crate::logging::init();
    let cfg = crate::config::Config::from_env().map_err(|e| Error::from(e.to_string()))?;
    let client = aws_sdk_secretsmanager::Client::new(
        &crate::wiring::lambda_aws_config().await.map_err(|e| Error::from(e.to_string()))?,
    );
    let client = &client;
    let alg = cfg.signing_alg;
    lambda_http::lambda_runtime::run(service_fn(move |ev: LambdaEvent<crate::rotation::RotationEvent>| async move {
        crate::rotation::handle_event(client, ev.payload, alg).await.map_err(|e| Error::from(e.to_string()))
    }))
    .await
}

/// The `mailer` function: SQS batches of mail jobs, sent through SES (`mail::sqs::Worker`),
/// with a partial batch response naming the jobs to deliver again.
pub async fn run_mailer() -> Result<(), Error> {
    use aws_lambda_events::event::sqs::SqsEvent;
    use lambda_http::lambda_runtime::{LambdaEvent, service_fn};
    crate::logging::init();
    let deps = Deps::lambda();
    let worker = deps.mail_worker().await.map_err(|e| Error::from(e.to_string()))?;
    deps.settle().await;
    let modes = deps.modes();
    tracing::info!(function = "mailer", store = %modes.store, mailer = %modes.mailer, "initialized");
    let worker = &worker;
    lambda_http::lambda_runtime::run(service_fn(move |ev: LambdaEvent<SqsEvent>| async move {
        Ok::<_, Error>(worker.handle(ev.payload).await)
    }))
    .await
}
