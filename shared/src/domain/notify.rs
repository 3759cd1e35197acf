//! Sending mail on behalf of a use case: the templates need the product name and the public
//! base URL (never the request's Host); a delivery failure is logged without body or link and
//! never changes the answer.

use std::sync::Arc;

use crate::config::Config;
use crate::context::RequestCtx;
use crate::mail::{Mail, Mailer};

/// The mailer with what the templates need.
#[derive(Clone)]
pub struct Notifier {
    mailer: Arc<dyn Mailer>,
    product: String,
    base_url: String,
}

impl Notifier {
    pub fn new(mailer: Arc<dyn Mailer>, cfg: &Config) -> Self {
        Self { mailer, product: cfg.product_name.clone(), base_url: cfg.public_base_url.clone() }
    }

    /// The product name mails are signed with.
    pub fn product(&self) -> &str {
        &self.product
    }

    /// The base of every link in a mail.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Sends `mail`; `what` names it in the log if delivery fails.
    pub async fn send(&self, mail: Mail, ctx: &RequestCtx, what: &str) {
        if let Err(e) = self.mailer.send(&mail).await {
            tracing::warn!(request_id = %ctx.request_id, event = "mail_failed", mail = what, error = %e.0, "mail delivery failed");
            crate::metrics::count("MailFailed");
        }
    }
}
