//! Secure Auth Service shared library.
//!
//! Layers, each importing only from the ones below it:
//! - `context`, `clock`, `config`, `validation`, `secret`, `email`, `password`, `tokens`,
//!   `keys`: request context and pure building blocks;
//! - `store` and `mail`: the ports with their adapters (DynamoDB / SES and in-memory twins);
//! - `domain`: one module per use case, knowing nothing of HTTP, Lambda or DynamoDB;
//! - `http`: each endpoint declared once next to its handlers, and the one error mapping;
//! - `wiring` (builds use cases from configuration) and `lambda` (a function's entry point).

pub mod aws_http;
pub mod clock;
pub mod config;
pub mod context;
pub mod domain;
pub mod email;
pub mod http;
pub mod keys;
pub mod lambda;
pub mod logging;
pub mod mail;
pub mod metrics;
pub mod mfa;
pub mod password;
pub mod rotation;
pub mod secret;
pub mod store;
pub mod tokens;
pub mod validation;
pub mod wiring;

/// Seconds since the Unix epoch (wall clock; use cases read an injectable `clock::Clock`).
pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}
