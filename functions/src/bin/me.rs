//! The `me` function (shared/src/http/account.rs): links that endpoint and nothing else.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), shared::lambda::Error> {
    shared::lambda::run(&shared::http::account::ME).await
}
