//! The mailer function: sends the mail jobs SQS delivers (shared/src/mail/sqs.rs); no route.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), shared::lambda::Error> {
    shared::lambda::run_mailer().await
}
