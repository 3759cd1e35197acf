//! Outgoing mail: the port, the SES v2 adapter, the queue (`queue.rs`: the job and its
//! idempotent delivery; `sqs.rs`: the SQS outbox endpoints use and the mailer function's
//! handler) and the templates. The console twin with the dev outbox and the in-process queue
//! live in the local server only, so they are never compiled into a Lambda binary.

use async_trait::async_trait;

pub mod queue;
pub mod ses;
pub mod sqs;
pub mod templates;

/// One message, text and (optionally) HTML.
#[derive(Clone, PartialEq, Eq)]
pub struct Mail {
    pub to: String,
    pub subject: String,
    pub text: String,
    pub html: Option<String>,
}

// Bodies hold one-time links: never print them.
impl std::fmt::Debug for Mail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mail").field("to", &self.to).field("subject", &self.subject).finish_non_exhaustive()
    }
}

/// A delivery failure; the message never contains the mail body.
#[derive(Debug, thiserror::Error)]
#[error("mail delivery failed: {0}")]
pub struct MailError(pub String);

#[async_trait]
pub trait Mailer: Send + Sync {
    async fn send(&self, mail: &Mail) -> Result<(), MailError>;

    /// Sends `mail` at most once per `key`, however often it is asked to (a request retried
    /// after a failure that may have come after its mail was queued). The queues keep that
    /// promise (the job id is `key`); a mailer without a queue just sends.
    async fn send_once(&self, mail: &Mail, key: &str) -> Result<(), MailError> {
        let _ = key;
        self.send(mail).await
    }
}
