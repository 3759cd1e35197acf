//! Lambda function for the `users-deactivate` endpoint (see the README's endpoint table).
#[tokio::main]
async fn main() -> Result<(), shared::lambda::Error> {
    shared::lambda::run(shared::http::Endpoint::UsersDeactivate).await
}
