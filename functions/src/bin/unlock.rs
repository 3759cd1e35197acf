//! The `unlock` function (shared/src/http/unlock.rs): links that endpoint and nothing else.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), shared::lambda::Error> {
    shared::lambda::run(&shared::http::unlock::UNLOCK).await
}
