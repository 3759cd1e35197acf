//! The `logout` function (shared/src/http/auth.rs): links that endpoint and nothing else.
#[tokio::main]
async fn main() -> Result<(), shared::lambda::Error> {
    shared::lambda::run(&shared::http::auth::LOGOUT).await
}
