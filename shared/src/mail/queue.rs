//! Mail off the request path. An endpoint puts a `MailJob` on a queue and answers; a worker
//! sends it: in AWS the `mailer` function, fed by SQS (`sqs.rs`); in the local server an
//! in-process queue with the same retry policy (`local-server`). Either way a delivery is
//! `Delivery::deliver`: claim the job in the ledger (a conditional write), send, record the
//! send, so that a job delivered again after a send that succeeded mails once.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Mail, MailError, Mailer};
use crate::clock::SharedClock;
use crate::store::{MailClaim, MailLedger};

/// One queued mail. It carries the rendered mail and nothing else: its only secret is the
/// one-time link the mail itself holds. The queue encrypts it at rest (SQS SSE). Unknown
/// fields are ignored, so that a job written by a newer release during a deploy (functions are
/// not all replaced at once) is still sent by the older mailer.
#[derive(Clone, Serialize, Deserialize)]
pub struct MailJob {
    /// Unique per job: the idempotency key of its delivery.
    pub id: String,
    pub to: String,
    pub subject: String,
    pub text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub html: Option<String>,
}

// Bodies hold one-time links: never print them.
impl std::fmt::Debug for MailJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MailJob").field("id", &self.id).field("subject", &self.subject).finish_non_exhaustive()
    }
}

impl MailJob {
    /// A new job (fresh id) for `mail`.
    pub fn new(mail: &Mail) -> Self {
        Self::with_id(mail, uuid::Uuid::new_v4().to_string())
    }

    /// The job `id` for `mail`: one delivery per id, however often it is queued.
    pub fn with_id(mail: &Mail, id: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            to: mail.to.clone(),
            subject: mail.subject.clone(),
            text: mail.text.clone(),
            html: mail.html.clone(),
        }
    }

    pub fn mail(&self) -> Mail {
        Mail { to: self.to.clone(), subject: self.subject.clone(), text: self.text.clone(), html: self.html.clone() }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Parses a queued job; `None` for anything else (a poison message).
    pub fn from_json(s: &str) -> Option<Self> {
        serde_json::from_str::<Self>(s).ok().filter(|j| !j.id.is_empty() && !j.to.is_empty())
    }
}

/// When a failed delivery is tried again, and when a job is given up (dead-lettered).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The wait after the first failed attempt; it doubles per attempt.
    pub base: Duration,
    /// Attempts before the job is dead-lettered.
    pub max_attempts: u32,
}

/// SQS's longest visibility timeout: no retry waits longer.
pub const MAX_RETRY_WAIT: Duration = Duration::from_secs(12 * 3600);

impl RetryPolicy {
    pub fn from_config(cfg: &crate::config::Config) -> Self {
        Self { base: cfg.mail_retry_base, max_attempts: cfg.mail_max_attempts }
    }

    /// The wait after failed attempt number `attempt` (1-based): base × 2^(attempt − 1).
    pub fn wait_after(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.saturating_sub(1).min(31)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(MAX_RETRY_WAIT)
    }
}

/// How a delivery ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivered {
    /// Sent now.
    Sent,
    /// An earlier delivery sent it: not sent again.
    Duplicate,
}

/// How long a delivery holds a job: longer than one send with the SDK's retries.
pub const LEASE: Duration = Duration::from_secs(60);
/// How long a job's ledger record is kept: longer than the queue keeps a job (4 days).
pub const LEDGER_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// Sends jobs exactly once per ledger: the mailer function's (and a test's) delivery step.
#[derive(Clone)]
pub struct Delivery {
    ledger: Arc<dyn MailLedger>,
    mailer: Arc<dyn Mailer>,
    clock: SharedClock,
}

impl Delivery {
    pub fn new(ledger: Arc<dyn MailLedger>, mailer: Arc<dyn Mailer>, clock: SharedClock) -> Self {
        Self { ledger, mailer, clock }
    }

    /// Claims, sends and records `job`. An error means "not sent, try again later": the
    /// ledger could not be written, another delivery holds the job, or the send failed (the
    /// claim is then released). Once the mailer accepted the mail the job counts as sent even
    /// if recording it fails: reporting a failure would have the queue deliver it again.
    pub async fn deliver(&self, job: &MailJob) -> Result<Delivered, MailError> {
        let claim = uuid::Uuid::new_v4().to_string();
        let now = self.clock.now();
        let lease_until = now + LEASE.as_secs() as i64;
        let claimed = self
            .ledger
            .claim_mail(&job.id, &claim, now, lease_until, now + LEDGER_TTL.as_secs() as i64)
            .await
            .map_err(|e| MailError(format!("mail ledger: {e}")))?;
        match claimed {
            MailClaim::Sent => return Ok(Delivered::Duplicate),
            MailClaim::Busy => return Err(MailError("another delivery of this job is in progress".into())),
            MailClaim::Claimed => {}
        }
        if let Err(e) = self.mailer.send(&job.mail()).await {
            if let Err(release) = self.ledger.release_mail(&job.id, &claim).await {
                tracing::warn!(job = %job.id, error = %release, "mail claim not released; the retry waits for its lease");
            }
            return Err(e);
        }
        if let Err(e) = self.ledger.mail_sent(&job.id, &claim, self.clock.now()).await {
            tracing::error!(job = %job.id, error = %e, "mail sent but not recorded as sent");
        }
        Ok(Delivered::Sent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_doubles_per_attempt_up_to_sqs_longest_visibility() {
        let p = RetryPolicy { base: Duration::from_secs(30), max_attempts: 10 };
        let waits: Vec<u64> = (1..=5).map(|a| p.wait_after(a).as_secs()).collect();
        assert_eq!(waits, [30, 60, 120, 240, 480]);
        assert_eq!(p.wait_after(40), MAX_RETRY_WAIT);
        assert_eq!(p.wait_after(0).as_secs(), 30);
    }

    #[test]
    fn a_job_round_trips_and_anything_else_is_poison() {
        let mail = Mail { to: "a@example.com".into(), subject: "s".into(), text: "t token=x".into(), html: None };
        let job = MailJob::new(&mail);
        let back = MailJob::from_json(&job.to_json()).unwrap();
        assert_eq!((back.id.as_str(), back.mail()), (job.id.as_str(), mail));
        assert!(!format!("{job:?}").contains("token"));
        for poison in ["", "null", "{}", r#"{"id":"","to":"a","subject":"s","text":"t"}"#, "not json"] {
            assert!(MailJob::from_json(poison).is_none(), "{poison}");
        }
        let newer = MailJob::from_json(r#"{"id":"1","to":"a","subject":"s","text":"t","later":"x"}"#).unwrap();
        assert_eq!(newer.mail().to, "a", "a field from a newer release is ignored");
    }
}
