//! The local server: every route of every function on one port, plus the dev outbox when the
//! console mailer is in use. The console mailer and the in-process mail queue live here, so no
//! Lambda binary contains them.

pub mod queue;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use axum::Router;
use axum::routing::get;
use serde::Serialize;
use shared::config::{Config, MailerKind};
use shared::http;
use shared::mail::{Mail, MailError, Mailer};
use shared::wiring::{BuildError, Deps, LocalDefaults, Modes};

/// A mail as `GET /_dev/outbox` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct OutboxMail {
    pub to: String,
    pub subject: String,
    pub text: String,
    pub html: Option<String>,
    pub sent_at: String,
}

/// Console mailer: keeps mails in memory for the outbox and logs only recipient and subject.
#[derive(Default)]
pub struct ConsoleMailer {
    outbox: Mutex<Vec<OutboxMail>>,
}

impl ConsoleMailer {
    /// The mails sent so far, oldest first.
    pub fn outbox(&self) -> Vec<OutboxMail> {
        self.outbox.lock().map(|g| g.clone()).unwrap_or_default()
    }
}

#[async_trait]
impl Mailer for ConsoleMailer {
    async fn send(&self, mail: &Mail) -> Result<(), MailError> {
        tracing::info!(to = %mail.to, subject = %mail.subject, "mail written to the dev outbox");
        let entry = OutboxMail {
            to: mail.to.clone(),
            subject: mail.subject.clone(),
            text: mail.text.clone(),
            html: mail.html.clone(),
            sent_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        };
        self.outbox.lock().map_err(|_| MailError("outbox poisoned".into()))?.push(entry);
        Ok(())
    }
}

/// A development administrator made at startup (`BOOTSTRAP_ADMIN_EMAIL`/`_PASSWORD`): the local
/// server only; a deployment gets its first admin from `secure-auth users create-admin`.
pub struct BootstrapAdmin {
    pub email: String,
    pub password: String,
}

/// The whole local application for `cfg`, and what it runs on.
pub async fn build_app(cfg: Config) -> Result<(Router, Modes), BuildError> {
    build_app_with(cfg, None).await
}

/// `build_app`, creating `admin` first if it does not exist yet.
pub async fn build_app_with(cfg: Config, admin: Option<BootstrapAdmin>) -> Result<(Router, Modes), BuildError> {
    let console = Arc::new(ConsoleMailer::default());
    let uses_console = cfg.mailer == MailerKind::Console;
    let local = LocalDefaults {
        store: Arc::new(shared::store::memory::MemoryStore::new()),
        mailer: console.clone(),
        ses: shared::mail::ses::SesMailer::for_config,
        queue: queue::LocalQueue::for_config,
    };
    let deps = Arc::new(Deps::local(cfg, local));
    if let Some(a) = admin {
        let new = shared::domain::admin::NewUser {
            email: a.email.clone(),
            password: shared::secret::Password::new(a.password),
            name: Some("Bootstrap admin".into()),
            is_superuser: true,
            is_verified: true,
        };
        let ctx = shared::context::RequestCtx::internal("bootstrap");
        match deps.admin(None).await?.create_user(shared::domain::admin::Actor::Cli, new, &ctx).await {
            Ok(_) => println!("  bootstrap admin {} created (development only)", a.email),
            Err(shared::domain::error::DomainError::Conflict(_)) => println!("  bootstrap admin {} exists", a.email),
            Err(e) => return Err(BuildError(format!("bootstrap admin: {e:?}"))),
        }
    }
    let mut app = http::routes(deps.clone(), &http::all().collect::<Vec<_>>()).await?;
    if uses_console {
        app = app.route(
            "/_dev/outbox",
            get(move || {
                let c = console.clone();
                async move { axum::Json(c.outbox()) }
            }),
        );
    }
    Ok((http::finish(app), deps.modes()))
}

/// Serves `app` on `listener` until the process ends.
pub async fn serve(listener: tokio::net::TcpListener, app: Router) -> std::io::Result<()> {
    axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await
}
