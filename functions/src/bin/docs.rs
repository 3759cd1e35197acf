//! The `docs` function (shared/src/http/docs.rs): links that endpoint and nothing else.
#[tokio::main]
async fn main() -> Result<(), shared::lambda::Error> {
    shared::lambda::run(&shared::http::docs::DOCS).await
}
