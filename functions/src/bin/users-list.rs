//! Lambda function for the `users-list` endpoint (see the README's endpoint table).
#[tokio::main]
async fn main() -> Result<(), shared::lambda::Error> {
    shared::lambda::run(shared::http::Endpoint::UsersList).await
}
