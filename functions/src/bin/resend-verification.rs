//! The `resend-verification` function (shared/src/http/signup.rs): links that endpoint and nothing else.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), shared::lambda::Error> {
    shared::lambda::run(&shared::http::signup::RESEND_VERIFICATION).await
}
