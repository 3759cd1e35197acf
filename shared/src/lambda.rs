//! The Lambda entry point: a function binary names its endpoint, and only that endpoint's
//! mount (and what it builds) is linked into it. Configuration, clients and keys are loaded
//! once per cold start; then the endpoint's handlers serve every invocation.

use std::sync::Arc;

use crate::http::{self, Endpoint};
use crate::wiring::Deps;

pub use lambda_http::Error;

/// Serves `endpoint` under the Lambda runtime. If its dependencies cannot be built (the
/// environment is incomplete, Secrets Manager is unreachable), the function answers 503
/// instead: there is no fallback key.
pub async fn run(endpoint: &'static Endpoint) -> Result<(), Error> {
    crate::logging::init();
    let deps = Arc::new(Deps::lambda());
    let app = match http::app(deps.clone(), &[endpoint]).await {
        Ok(router) => {
            let modes = deps.modes();
            tracing::info!(function = endpoint.binary, store = %modes.store, mailer = %modes.mailer, keys = %modes.keys, "cold start");
            router
        }
        Err(e) => {
            tracing::error!(function = endpoint.binary, error = %e, "initialization failed; answering 503");
            http::unavailable_router()
        }
    };
    lambda_http::run(app).await
}

/// The `rotate-keys` function: Secrets Manager's rotation steps for the signing-key secret.
pub async fn run_rotation() -> Result<(), Error> {
    use lambda_http::lambda_runtime::{LambdaEvent, service_fn};
    crate::logging::init();
    let cfg = crate::config::Config::from_env().map_err(|e| Error::from(e.to_string()))?;
    let client = aws_sdk_secretsmanager::Client::new(&crate::wiring::aws_config().await);
    let client = &client;
    let alg = cfg.signing_alg;
    lambda_http::lambda_runtime::run(service_fn(move |ev: LambdaEvent<crate::rotation::RotationEvent>| async move {
        crate::rotation::handle_event(client, ev.payload, alg).await.map_err(|e| Error::from(e.to_string()))
    }))
    .await
}
