//! Lambda function for the `users-update` endpoint (see the README's endpoint table).
#[tokio::main]
async fn main() -> Result<(), shared::lambda::Error> {
    shared::lambda::run(shared::http::Endpoint::UsersUpdate).await
}
