//! JSON logs via `tracing` (one line per event, compatible with Lambda's JSON log format) and
//! the security-event helper. Never pass a password, token, link, hash or body here.

use tracing_subscriber::filter::LevelFilter;

/// The level `RUST_LOG` (or Lambda's `AWS_LAMBDA_LOG_LEVEL`) names: one of `trace`, `debug`,
/// `info`, `warn`, `error`, `off`; anything else is `info`. A single level, not per-target
/// directives: the filter that parses those pulls a regex engine into every function.
fn level() -> LevelFilter {
    std::env::var("RUST_LOG")
        .or_else(|_| std::env::var("AWS_LAMBDA_LOG_LEVEL"))
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(LevelFilter::INFO)
}

/// Installs the JSON subscriber at the level of `level()`.
pub fn init() {
    let _ = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_target(false)
        .with_max_level(level())
        .try_init();
}

pub use crate::context::RequestCtx;

/// Logs one security event. String fields are escaped by the JSON formatter.
pub fn security_event(event: &str, ctx: &RequestCtx, user_id: Option<&str>, outcome: &str) {
    tracing::info!(
        event,
        request_id = %ctx.request_id,
        client_request_id = ctx.client_request_id.as_deref().unwrap_or(""),
        user_id = user_id.unwrap_or(""),
        ip = %ctx.ip,
        user_agent = %ctx.user_agent,
        outcome,
        "security event"
    );
}
