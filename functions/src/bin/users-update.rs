//! The `users-update` function (shared/src/http/admin.rs): links that endpoint and nothing else.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), shared::lambda::Error> {
    shared::lambda::run(&shared::http::admin::USERS_UPDATE).await
}
