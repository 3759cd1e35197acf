//! The Lambda entry point every function binary calls: configuration, clients and keys are
//! loaded once per cold start, then the endpoint's handler serves every invocation.

use crate::config::Config;
use crate::http::{self, Endpoint};
use crate::wiring::{self, Target};

pub use lambda_http::Error;

/// Serves `endpoint` under the Lambda runtime. If configuration, clients or the signing keys
/// cannot be loaded, the function answers 503 instead (there is no fallback key).
pub async fn run(endpoint: Endpoint) -> Result<(), Error> {
    crate::logging::init();
    let app = if endpoint == Endpoint::Health {
        http::health_router()
    } else if endpoint == Endpoint::Docs {
        http::docs_router()
    } else if endpoint == Endpoint::Pages {
        http::pages_router()
    } else {
        let built = match Config::from_env() {
            Ok(cfg) => wiring::build(cfg, Target::Lambda, None).await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match built {
            Ok((svc, modes)) => {
                tracing::info!(function = endpoint.binary(), store = %modes.store, mailer = %modes.mailer, keys = %modes.keys, "cold start");
                http::router(svc, &[endpoint])
            }
            Err(e) => {
                tracing::error!(function = endpoint.binary(), error = %e, "initialization failed; answering 503");
                http::unavailable_router()
            }
        }
    };
    lambda_http::run(app).await
}

/// The `rotate-keys` function: Secrets Manager's rotation steps for the signing-key secret.
pub async fn run_rotation() -> Result<(), Error> {
    use lambda_http::lambda_runtime::{LambdaEvent, service_fn};
    crate::logging::init();
    let cfg = Config::from_env().map_err(|e| Error::from(e.to_string()))?;
    let client = aws_sdk_secretsmanager::Client::new(&wiring::aws_config().await);
    let client = &client;
    let alg = cfg.signing_alg;
    lambda_http::lambda_runtime::run(service_fn(move |ev: LambdaEvent<crate::rotation::RotationEvent>| async move {
        crate::rotation::handle_event(client, ev.payload, alg).await.map_err(|e| Error::from(e.to_string()))
    }))
    .await
}
