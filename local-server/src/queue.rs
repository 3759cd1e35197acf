//! The local server's mail queue: what SQS and the mailer function do in AWS, in-process.
//! A request hands its mail over and answers; a worker task sends it, and a failed send is
//! tried again after the same waits as in AWS (`MAIL_RETRY_BASE_SECONDS`, doubling) until
//! `MAIL_MAX_ATTEMPTS`, after which the job is logged as dead-lettered. Jobs live in memory:
//! what is queued when the process stops is lost, like everything else the local server holds.

use std::sync::Arc;

use async_trait::async_trait;
use shared::config::Config;
use shared::mail::queue::{MailJob, RetryPolicy};
use shared::mail::{Mail, MailError, Mailer};
use tokio::sync::mpsc;

/// The mailer endpoints hold in the local server.
pub struct LocalQueue {
    tx: mpsc::UnboundedSender<(MailJob, u32)>,
    /// The keys of `send_once` jobs queued so far (the mailer function's ledger, in memory).
    once: std::sync::Mutex<std::collections::HashSet<String>>,
}

impl LocalQueue {
    /// Starts the worker that sends through `delivery` (needs a Tokio runtime).
    pub fn start(delivery: Arc<dyn Mailer>, retry: RetryPolicy) -> Arc<Self> {
        let (tx, mut rx) = mpsc::unbounded_channel::<(MailJob, u32)>();
        let again = tx.clone();
        tokio::spawn(async move {
            while let Some((job, attempt)) = rx.recv().await {
                match delivery.send(&job.mail()).await {
                    Ok(()) => tracing::debug!(job = %job.id, attempt, "mail sent"),
                    Err(e) if attempt >= retry.max_attempts => {
                        tracing::error!(job = %job.id, attempt, event = "mail_dead_lettered", error = %e.0, "mail given up after the last attempt");
                        shared::metrics::count("MailDeadLettered");
                    }
                    Err(e) => {
                        let wait = retry.wait_after(attempt);
                        tracing::warn!(job = %job.id, attempt, retry_in_ms = wait.as_millis() as u64, event = "mail_failed", error = %e.0, "mail delivery failed");
                        shared::metrics::count("MailFailed");
                        let again = again.clone();
                        tokio::spawn(async move {
                            tokio::time::sleep(wait).await;
                            let _ = again.send((job, attempt + 1));
                        });
                    }
                }
            }
        });
        Arc::new(Self { tx, once: std::sync::Mutex::new(std::collections::HashSet::new()) })
    }

    /// `LocalDefaults::queue`: `delivery` behind a queue with `cfg`'s retry policy.
    pub fn for_config(delivery: Arc<dyn Mailer>, cfg: &Config) -> Arc<dyn Mailer> {
        Self::start(delivery, RetryPolicy::from_config(cfg))
    }
}

#[async_trait]
impl Mailer for LocalQueue {
    async fn send(&self, mail: &Mail) -> Result<(), MailError> {
        self.tx.send((MailJob::new(mail), 1)).map_err(|_| MailError("the mail queue has stopped".into()))
    }

    async fn send_once(&self, mail: &Mail, key: &str) -> Result<(), MailError> {
        if !self.once.lock().unwrap_or_else(|p| p.into_inner()).insert(key.to_owned()) {
            return Ok(());
        }
        self.tx.send((MailJob::with_id(mail, key), 1)).map_err(|_| MailError("the mail queue has stopped".into()))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;

    use super::*;

    /// Refuses the first `failures` sends, then records what it sends.
    struct Flaky {
        failures: AtomicU32,
        sent: Mutex<Vec<String>>,
    }

    #[async_trait]
    impl Mailer for Flaky {
        async fn send(&self, mail: &Mail) -> Result<(), MailError> {
            if self.failures.load(Ordering::SeqCst) > 0 {
                self.failures.fetch_sub(1, Ordering::SeqCst);
                return Err(MailError("throttled".into()));
            }
            self.sent.lock().unwrap_or_else(|p| p.into_inner()).push(mail.to.clone());
            Ok(())
        }
    }

    fn mail(to: &str) -> Mail {
        Mail { to: to.into(), subject: "s".into(), text: "t".into(), html: None }
    }

    #[tokio::test(start_paused = true)]
    async fn a_refused_send_is_tried_again_after_doubling_waits_and_given_up_after_the_last_attempt() {
        let retry = RetryPolicy { base: Duration::from_secs(30), max_attempts: 4 };
        let flaky = Arc::new(Flaky { failures: AtomicU32::new(3), sent: Mutex::new(vec![]) });
        let q = LocalQueue::start(flaky.clone(), retry);
        q.send(&mail("a@example.com")).await.unwrap_or_else(|e| panic!("{e}"));
        // Attempts at 0, 30, 90 and 210 s: the fourth is accepted.
        tokio::time::sleep(Duration::from_secs(209)).await;
        assert!(flaky.sent.lock().unwrap_or_else(|p| p.into_inner()).is_empty());
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(*flaky.sent.lock().unwrap_or_else(|p| p.into_inner()), ["a@example.com"]);

        // Refused more often than the attempts allow: never sent, and not tried forever.
        flaky.failures.store(10, Ordering::SeqCst);
        q.send(&mail("b@example.com")).await.unwrap_or_else(|e| panic!("{e}"));
        tokio::time::sleep(Duration::from_secs(3600)).await;
        assert_eq!(flaky.failures.load(Ordering::SeqCst), 6, "four attempts, then dead-lettered");
        assert_eq!(flaky.sent.lock().unwrap_or_else(|p| p.into_inner()).len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_keyed_mail_queued_twice_is_sent_once() {
        let retry = RetryPolicy { base: Duration::from_secs(1), max_attempts: 3 };
        let flaky = Arc::new(Flaky { failures: AtomicU32::new(0), sent: Mutex::new(vec![]) });
        let q = LocalQueue::start(flaky.clone(), retry);
        for _ in 0..3 {
            q.send_once(&mail("c@example.com"), "lock-1").await.unwrap_or_else(|e| panic!("{e}"));
        }
        q.send_once(&mail("c@example.com"), "lock-2").await.unwrap_or_else(|e| panic!("{e}"));
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(flaky.sent.lock().unwrap_or_else(|p| p.into_inner()).len(), 2);
    }
}
