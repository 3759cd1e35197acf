//! The `reset-password` function (shared/src/http/recovery.rs): links that endpoint and nothing else.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), shared::lambda::Error> {
    shared::lambda::run(&shared::http::recovery::RESET_PASSWORD).await
}
