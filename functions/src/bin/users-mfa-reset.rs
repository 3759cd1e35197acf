//! The `users-mfa-reset` function (shared/src/http/mfa.rs): links that endpoint and nothing else.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), shared::lambda::Error> {
    shared::lambda::run(&shared::http::mfa::USERS_MFA_RESET).await
}
