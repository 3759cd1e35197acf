//! End-to-end suite: the local server over HTTP, backed by DynamoDB Local and moto.
//! Run through `infra/test.sh`, which starts the emulators.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod admin;
mod attacks;
mod calls;
mod docs;
mod faults;
mod flow;
mod inputs;
mod integrity;
mod keys;
mod lambda;
mod lifecycle;
mod mail;
mod mfa;
mod ratelimit;
mod retries;
mod security;
mod steps;
mod takeover;
mod tls;
