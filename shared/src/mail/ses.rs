//! SES v2 mailer (`SendEmail` with simple content). The endpoint comes from the SDK's standard
//! configuration (`AWS_ENDPOINT_URL_SESV2` for moto).

use async_trait::async_trait;
use aws_sdk_sesv2::Client;
use aws_sdk_sesv2::types::{Body, Content, Destination, EmailContent, Message};

use super::{Mail, MailError, Mailer};

pub struct SesMailer {
    client: Client,
    from: String,
}

impl SesMailer {
    pub fn new(client: Client, from: impl Into<String>) -> Self {
        Self { client, from: from.into() }
    }

    /// `LocalDefaults::ses`: SES from `MAIL_FROM`, for the local server.
    pub fn for_config(sdk: &aws_config::SdkConfig, cfg: &crate::config::Config) -> std::sync::Arc<dyn Mailer> {
        std::sync::Arc::new(Self::new(Client::new(sdk), cfg.mail_from.clone()))
    }
}

fn content(s: &str) -> Result<Content, MailError> {
    Content::builder().data(s).charset("UTF-8").build().map_err(|e| MailError(e.to_string()))
}

#[async_trait]
impl Mailer for SesMailer {
    async fn send(&self, mail: &Mail) -> Result<(), MailError> {
        let mut body = Body::builder().text(content(&mail.text)?);
        if let Some(html) = &mail.html {
            body = body.html(content(html)?);
        }
        let message = Message::builder().subject(content(&mail.subject)?).body(body.build()).build();
        self.client
            .send_email()
            .from_email_address(&self.from)
            .destination(Destination::builder().to_addresses(&mail.to).build())
            .content(EmailContent::builder().simple(message).build())
            .send()
            .await
            // Only the error's code and message: the SDK error never carries our body.
            .map_err(|e| MailError(aws_sdk_sesv2::error::DisplayErrorContext(e).to_string()))?;
        Ok(())
    }
}
