//! Secrets Manager rotation function for the signing-key secret (see shared/src/rotation.rs).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), shared::lambda::Error> {
    shared::lambda::run_rotation().await
}
