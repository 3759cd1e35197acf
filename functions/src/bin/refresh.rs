//! The `refresh` function (shared/src/http/auth.rs): links that endpoint and nothing else.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), shared::lambda::Error> {
    shared::lambda::run(&shared::http::auth::REFRESH).await
}
