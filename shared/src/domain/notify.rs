//! Sending mail on behalf of a use case: the templates need the product name and the public
//! base URL (never the request's Host); a delivery failure is logged without body or link and
//! never changes the answer. With rate limits on, the mail that an unauthenticated caller can
//! make an account receive (verification, reset and unlock links, the attempted sign-up notice)
//! is capped per hour (`MAIL_CAP_PER_HOUR`), so no endpoint becomes a mail relay. Notices of a
//! change to the account (`Notifier::notice`) are never capped: an attacker who fills the cap
//! must not be able to silence them.

use std::sync::Arc;

use crate::config::{Config, Limit};
use crate::context::RequestCtx;
use crate::domain::ratelimit::RateLimiter;
use crate::mail::{Mail, Mailer};

/// The mailer with what the templates need.
#[derive(Clone)]
pub struct Notifier {
    mailer: Arc<dyn Mailer>,
    product: String,
    base_url: String,
    cap: Option<(Arc<RateLimiter>, Limit)>,
}

impl Notifier {
    /// `cap`: the per-account hourly cap, counted with `limiter` (`None`: uncapped).
    pub fn new(mailer: Arc<dyn Mailer>, cfg: &Config, cap: Option<Arc<RateLimiter>>) -> Self {
        Self {
            mailer,
            product: cfg.product_name.clone(),
            base_url: cfg.public_base_url.clone(),
            cap: cap.map(|l| (l, Limit { max: cfg.mail_cap_per_hour, window: 3600 })),
        }
    }

    /// The product name mails are signed with.
    pub fn product(&self) -> &str {
        &self.product
    }

    /// The base of every link in a mail.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Sends `mail` on behalf of `account` (a user id, or the address for mail to an address
    /// no account is signed in as); `what` names it in the log. Past the account's hourly cap
    /// the mail is dropped and logged; a cap that cannot be counted drops it too (fail closed).
    pub async fn send(&self, account: &str, mail: Mail, ctx: &RequestCtx, what: &str) {
        if self.allowed(account, ctx, what).await {
            self.deliver(mail, ctx, what).await;
        }
    }

    /// Counts one mail against `account`'s hourly cap: `false` (logged) past the cap or when
    /// the cap cannot be counted. `send` is `allowed` and then `deliver`; a use case that knows
    /// the account before it knows whether the mail goes calls them apart, to count while it
    /// writes.
    pub async fn allowed(&self, account: &str, ctx: &RequestCtx, what: &str) -> bool {
        let Some((limiter, limit)) = &self.cap else { return true };
        match limiter.check("mail", "account", account, *limit).await {
            Ok(d) if !d.limited => true,
            outcome => {
                let reason = if outcome.is_ok() { "hourly cap reached" } else { "cap could not be counted" };
                tracing::warn!(request_id = %ctx.request_id, event = "mail_capped", mail = what, reason, "mail not sent");
                crate::metrics::count("MailCapped");
                false
            }
        }
    }

    /// A notice of a change to the account (password, address, factor, lock, admin action):
    /// never counted against the cap, never dropped by it.
    pub async fn notice(&self, mail: Mail, ctx: &RequestCtx, what: &str) {
        self.deliver(mail, ctx, what).await;
    }

    /// `notice`, at most once per `key` (`Mailer::send_once`): for a notice that a retry of the
    /// same request may ask for again.
    pub async fn notice_once(&self, mail: Mail, key: &str, ctx: &RequestCtx, what: &str) {
        self.report(self.mailer.send_once(&mail, key).await, ctx, what);
    }

    /// Sends `mail` (already counted by `allowed`); a failure is logged.
    pub async fn deliver(&self, mail: Mail, ctx: &RequestCtx, what: &str) {
        self.report(self.mailer.send(&mail).await, ctx, what);
    }

    fn report(&self, sent: Result<(), crate::mail::MailError>, ctx: &RequestCtx, what: &str) {
        if let Err(e) = sent {
            tracing::warn!(request_id = %ctx.request_id, event = "mail_failed", mail = what, error = %e.0, "mail delivery failed");
            crate::metrics::count("MailFailed");
        }
    }
}
