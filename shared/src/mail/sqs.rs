//! The SQS side of queued mail: `SqsOutbox` is the mailer endpoints hold (one `SendMessage`
//! per mail), `Worker` is the `mailer` function's handler for the batches SQS's event source
//! mapping delivers. A failed job is reported in the partial batch response and its
//! visibility is pushed out by the retry policy's wait (30 s doubling, by default), so the
//! queue delivers it again later; after `maxReceiveCount` deliveries SQS moves it to the
//! dead-letter queue, whose depth raises an alarm.

use std::time::Duration;

use async_trait::async_trait;
use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use aws_sdk_sqs::Client;
use aws_sdk_sqs::error::DisplayErrorContext;

use super::queue::{Delivered, Delivery, MailJob, RetryPolicy};
use super::{Mail, MailError, Mailer};

/// Puts each mail on the queue as a job (the endpoints' mailer in Lambda).
pub struct SqsOutbox {
    client: Client,
    queue_url: String,
}

impl SqsOutbox {
    pub fn new(client: Client, queue_url: impl Into<String>) -> Self {
        Self { client, queue_url: queue_url.into() }
    }
}

impl SqsOutbox {
    async fn enqueue(&self, job: MailJob) -> Result<(), MailError> {
        self.client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(job.to_json())
            .send()
            .await
            // The error's code and message only: the SDK error never carries the body.
            .map_err(|e| MailError(format!("SendMessage: {}", DisplayErrorContext(e))))?;
        tracing::debug!(job = %job.id, "mail queued");
        Ok(())
    }
}

#[async_trait]
impl Mailer for SqsOutbox {
    async fn send(&self, mail: &Mail) -> Result<(), MailError> {
        self.enqueue(MailJob::new(mail)).await
    }

    /// The job id is `key`, so the mailer's ledger sends it once.
    async fn send_once(&self, mail: &Mail, key: &str) -> Result<(), MailError> {
        self.enqueue(MailJob::with_id(mail, key)).await
    }
}

/// The `mailer` function's handler: delivers each job of a batch and reports the ones to
/// deliver again.
pub struct Worker {
    delivery: Delivery,
    sqs: Client,
    queue_url: String,
    retry: RetryPolicy,
}

impl Worker {
    pub fn new(delivery: Delivery, sqs: Client, queue_url: impl Into<String>, retry: RetryPolicy) -> Self {
        Self { delivery, sqs, queue_url: queue_url.into(), retry }
    }

    /// Delivers every job of `event` concurrently; the response names the failed ones.
    pub async fn handle(&self, event: SqsEvent) -> SqsBatchResponse {
        let outcomes = futures::future::join_all(event.records.iter().map(|r| self.one(r))).await;
        let mut response = SqsBatchResponse::default();
        for (record, ok) in event.records.iter().zip(outcomes) {
            if !ok {
                let mut failure = BatchItemFailure::default();
                failure.item_identifier = record.message_id.clone().unwrap_or_default();
                response.batch_item_failures.push(failure);
            }
        }
        response
    }

    async fn one(&self, record: &SqsMessage) -> bool {
        let message = record.message_id.as_deref().unwrap_or_default();
        let attempt: u32 = record.attributes.get("ApproximateReceiveCount").and_then(|n| n.parse().ok()).unwrap_or(1);
        let last = attempt >= self.retry.max_attempts;
        let Some(job) = record.body.as_deref().and_then(MailJob::from_json) else {
            // Never deliverable: back at once, so it reaches the dead-letter queue quickly.
            tracing::error!(
                message,
                attempt,
                dead_letter = last,
                event = "mail_poison",
                "queued message is not a mail job"
            );
            crate::metrics::count("MailPoison");
            self.retry_in(record, Duration::ZERO).await;
            return false;
        };
        match self.delivery.deliver(&job).await {
            Ok(Delivered::Sent) => {
                tracing::info!(job = %job.id, attempt, event = "mail_sent", "mail sent");
                true
            }
            Ok(Delivered::Duplicate) => {
                tracing::info!(job = %job.id, attempt, event = "mail_duplicate", "job delivered again after it was sent; not sent twice");
                crate::metrics::count("MailDuplicate");
                true
            }
            Err(e) => {
                let wait = self.retry.wait_after(attempt);
                tracing::warn!(job = %job.id, attempt, dead_letter = last, retry_in_s = wait.as_secs(), event = "mail_failed", error = %e.0, "mail delivery failed");
                crate::metrics::count("MailFailed");
                self.retry_in(record, wait).await;
                false
            }
        }
    }

    /// Makes the message visible again after `wait` (instead of the queue's visibility timeout).
    async fn retry_in(&self, record: &SqsMessage, wait: Duration) {
        let Some(handle) = record.receipt_handle.as_deref() else { return };
        let res = self
            .sqs
            .change_message_visibility()
            .queue_url(&self.queue_url)
            .receipt_handle(handle)
            .visibility_timeout(wait.as_secs().min(i32::MAX as u64) as i32)
            .send()
            .await;
        if let Err(e) = res {
            // The queue's own visibility timeout then decides when it comes back.
            tracing::warn!(error = %DisplayErrorContext(e), "ChangeMessageVisibility failed");
        }
    }
}
