//! The `forgot-password` function (shared/src/http/recovery.rs): links that endpoint and nothing else.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), shared::lambda::Error> {
    shared::lambda::run(&shared::http::recovery::FORGOT_PASSWORD).await
}
