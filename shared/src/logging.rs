//! JSON logs via `tracing` (one line per event, compatible with Lambda's JSON log format) and
//! the security-event helper. Never pass a password, token, link, hash or body here.

use tracing_subscriber::EnvFilter;

/// Installs the JSON subscriber; `RUST_LOG` (or `AWS_LAMBDA_LOG_LEVEL`) sets the level.
pub fn init() {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| {
            let lvl = std::env::var("AWS_LAMBDA_LOG_LEVEL").unwrap_or_else(|_| "info".into());
            EnvFilter::try_new(lvl.to_lowercase())
        })
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_target(false)
        .with_env_filter(filter)
        .try_init();
}

pub use crate::context::RequestCtx;

/// Logs one security event. String fields are escaped by the JSON formatter.
pub fn security_event(event: &str, ctx: &RequestCtx, user_id: Option<&str>, outcome: &str) {
    tracing::info!(
        event,
        request_id = %ctx.request_id,
        user_id = user_id.unwrap_or(""),
        ip = %ctx.ip,
        user_agent = %ctx.user_agent,
        outcome,
        "security event"
    );
}
