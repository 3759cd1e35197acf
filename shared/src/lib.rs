//! Secure Auth Service shared library.
//!
//! Hexagonal shape: `domain`-level modules (`email`, `password`, `tokens`, `service`) know
//! nothing of Lambda or DynamoDB; `store` and `mail` are the ports with their adapters
//! (DynamoDB / SES and in-memory / console twins); `http` is the single mapping between HTTP
//! and the service, shared by every Lambda binary and the local server.

pub mod admin;
pub mod config;
pub mod email;
pub mod error;
pub mod http;
pub mod keys;
pub mod lambda;
pub mod logging;
pub mod mail;
pub mod metrics;
pub mod password;
pub mod ratelimit;
pub mod rotation;
pub mod secret;
pub mod service;
pub mod store;
pub mod tokens;
pub mod wiring;

/// Seconds since the Unix epoch, the one clock every module reads.
pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}
