//! `secure-auth`: operator commands, against AWS or the emulators (same variables as the
//! functions: `TABLE_NAME`, `SIGNING_KEY_SECRET_ID`, `AWS_ENDPOINT_URL_*`, region, credentials).

use std::io::{BufRead, IsTerminal};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand, ValueEnum};
use shared::keys::{KeyAlg, KeyRing, fetch_stages};

#[derive(Parser)]
#[command(name = "secure-auth", version, about = "Secure Auth Service operator CLI")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Signing keys in Secrets Manager.
    Keys {
        #[command(subcommand)]
        action: KeysAction,
    },
    /// Users in DynamoDB (`TABLE_NAME`); the same rules as the admin API.
    Users {
        #[command(subcommand)]
        action: UsersAction,
    },
    /// Bring every item of the table (`TABLE_NAME`) to the current item design. Idempotent:
    /// run it after each upgrade, and again if it was interrupted.
    Migrate {
        /// Count what each step would change, change nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

async fn migrate(dry_run: bool) -> Result<String, String> {
    let table = std::env::var("TABLE_NAME").map_err(|_| "TABLE_NAME is required".to_owned())?;
    let client = aws_sdk_dynamodb::Client::new(&shared::wiring::aws_config().await.map_err(|e| e.to_string())?);
    let reports = shared::store::migrate::run(&client, &table, dry_run).await.map_err(|e| e.to_string())?;
    let verb = if dry_run { "would migrate" } else { "migrated" };
    Ok(reports
        .iter()
        .map(|r| {
            format!(
                "step {} ({}): {} found, {verb} {}, {} skipped",
                r.step,
                r.name,
                r.found,
                if dry_run { r.found - r.skipped } else { r.migrated },
                r.skipped
            )
        })
        .collect::<Vec<_>>()
        .join("\n"))
}

#[derive(Subcommand)]
enum UsersAction {
    /// Create an active, verified administrator (the only way the first one comes to exist).
    /// The password is read from a prompt, or from the first line of stdin; never from argv.
    CreateAdmin {
        #[arg(long)]
        email: String,
        #[arg(long)]
        name: Option<String>,
    },
    /// List users ordered by email (all pages).
    List {
        #[arg(long)]
        email_prefix: Option<String>,
        /// active, inactive, unverified or locked
        #[arg(long)]
        status: Option<String>,
    },
    /// Show one user (by id or email).
    Show { user: String },
    /// Activate a user.
    Activate { user: String },
    /// Deactivate a user (revokes its sessions).
    Deactivate { user: String },
    /// Clear a user's lockout.
    Unlock { user: String },
    /// Revoke every session of a user.
    RevokeSessions { user: String },
    /// Delete a user with its sessions and pending tokens.
    Delete { user: String },
    /// Remove a user's second factor and recovery codes (a user who lost both); the user is
    /// told when MAIL_QUEUE_URL is set.
    MfaReset { user: String },
}

/// The CLI sends no mail; a user flow that would is not reachable from here.
struct NoMail;

#[async_trait::async_trait]
impl shared::mail::Mailer for NoMail {
    async fn send(&self, _: &shared::mail::Mail) -> Result<(), shared::mail::MailError> {
        Ok(())
    }
}

fn read_password() -> Result<String, String> {
    if std::io::stdin().is_terminal() {
        let a = rpassword::prompt_password("Password: ").map_err(|e| e.to_string())?;
        let b = rpassword::prompt_password("Again: ").map_err(|e| e.to_string())?;
        if a != b {
            return Err("the passwords differ".into());
        }
        Ok(a)
    } else {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).map_err(|e| e.to_string())?;
        Ok(line.trim_end_matches(['\r', '\n']).to_owned())
    }
}

fn show(u: &shared::store::User) -> String {
    serde_json::to_string(&shared::domain::views::UserView::from(u)).unwrap_or_default()
}

async fn users(action: UsersAction) -> Result<String, String> {
    use shared::domain::admin::{Actor, ListQuery, NewUser, Status};
    use shared::domain::error::DomainError;
    let cfg = shared::config::Config::from_env().map_err(|e| e.to_string())?;
    if cfg.table_name.is_none() {
        return Err("TABLE_NAME is required".into());
    }
    // The user commands need the table and the key set (listing cursors are sealed with it);
    // a CLI without SIGNING_KEY_SECRET_ID uses a throw-away key, which only those cursors see.
    let local = shared::wiring::LocalDefaults {
        store: Arc::new(shared::store::memory::MemoryStore::new()),
        mailer: Arc::new(NoMail),
        ses: |_, _| Arc::new(NoMail),
        queue: |mailer, _| mailer,
    };
    let deps = shared::wiring::Deps::local(cfg, local);
    let svc = deps.admin(None).await.map_err(|e| e.to_string())?;
    let ctx = shared::context::RequestCtx::internal(format!("cli-{}", std::process::id()));
    let err = |e: DomainError| match e {
        DomainError::Validation(v) => {
            v.iter().map(|f| format!("{}: {}", f.field, f.message)).collect::<Vec<_>>().join("; ")
        }
        DomainError::Conflict(m) => m,
        DomainError::NotFound => "no such user".into(),
        other => other.to_string(),
    };
    let cli = Actor::Cli;
    match action {
        UsersAction::CreateAdmin { email, name } => {
            let password = shared::secret::Password::new(read_password()?);
            let new = NewUser { email, password, name, is_superuser: true, is_verified: true };
            svc.create_user(cli, new, &ctx).await.map(|u| show(&u)).map_err(err)
        }
        UsersAction::List { email_prefix, status } => {
            let status = status.as_deref().map(Status::parse).transpose().map_err(err)?;
            let mut q = ListQuery { limit: Some(100), cursor: None, email_prefix, status };
            let mut lines = Vec::new();
            loop {
                let page = svc.list_users(&q).await.map_err(err)?;
                lines.extend(page.items.iter().map(|u| serde_json::to_string(u).unwrap_or_default()));
                match page.next_cursor {
                    Some(c) => q.cursor = Some(c),
                    None => return Ok(lines.join("\n")),
                }
            }
        }
        UsersAction::Show { user } => svc.find(&user).await.map(|u| show(&u)).map_err(err),
        UsersAction::Activate { user } => {
            let u = svc.find(&user).await.map_err(err)?;
            svc.set_active(cli, &u.id, true, &ctx).await.map(|u| show(&u)).map_err(err)
        }
        UsersAction::Deactivate { user } => {
            let u = svc.find(&user).await.map_err(err)?;
            svc.set_active(cli, &u.id, false, &ctx).await.map(|u| show(&u)).map_err(err)
        }
        UsersAction::Unlock { user } => {
            let u = svc.find(&user).await.map_err(err)?;
            svc.unlock(cli, &u.id, &ctx).await.map(|u| show(&u)).map_err(err)
        }
        UsersAction::RevokeSessions { user } => {
            let u = svc.find(&user).await.map_err(err)?;
            svc.revoke_sessions(cli, &u.id, &ctx).await.map(|()| format!("sessions of {} revoked", u.id)).map_err(err)
        }
        UsersAction::Delete { user } => {
            let u = svc.find(&user).await.map_err(err)?;
            svc.delete_user(cli, &u.id, &ctx).await.map(|()| format!("{} deleted", u.id)).map_err(err)
        }
        UsersAction::MfaReset { user } => {
            let u = svc.find(&user).await.map_err(err)?;
            let reset = deps.mfa_reset().await.map_err(|e| e.to_string())?;
            reset.reset(cli, &u.id, &ctx).await.map(|v| serde_json::to_string(&v).unwrap_or_default()).map_err(err)
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum Alg {
    Es256,
    Rs256,
    Hs256,
}

impl From<Alg> for KeyAlg {
    fn from(a: Alg) -> Self {
        match a {
            Alg::Es256 => KeyAlg::ES256,
            Alg::Rs256 => KeyAlg::RS256,
            Alg::Hs256 => KeyAlg::HS256,
        }
    }
}

#[derive(Subcommand)]
enum KeysAction {
    /// Create the secret with a first key (or give an empty secret one); no-op if it has one.
    Init {
        #[arg(long, env = "SIGNING_KEY_SECRET_ID")]
        secret_id: String,
        #[arg(long, value_enum, default_value = "es256")]
        alg: Alg,
    },
    /// Rotate now: new pending key, test it, make it current; the old one becomes previous.
    Rotate {
        #[arg(long, env = "SIGNING_KEY_SECRET_ID")]
        secret_id: String,
        /// Algorithm if the secret has no current key yet (otherwise the current key's).
        #[arg(long, value_enum, default_value = "es256")]
        alg: Alg,
    },
    /// A signing key leaked: replace the current and the next key at once, and keep the
    /// compromised pair in no stage. Tokens it signed stop verifying once each cache has read
    /// the secret again (KEY_CACHE_SECONDS, default 300 s; the JWKS is cached as long).
    Revoke {
        #[arg(long, env = "SIGNING_KEY_SECRET_ID")]
        secret_id: String,
        /// Algorithm of the new keys (default: the compromised key's).
        #[arg(long, value_enum)]
        alg: Option<Alg>,
    },
    /// Show the kid and algorithm of each stage (never key material).
    Show {
        #[arg(long, env = "SIGNING_KEY_SECRET_ID")]
        secret_id: String,
    },
}

fn describe(label: &str, s: Option<&str>) -> String {
    match s.map(KeyRing::from_json) {
        Some(Ok(r)) => {
            let next = r.next.map(|n| format!(", next {} {:?}", n.kid, n.alg)).unwrap_or_default();
            format!("{label:12} {} {:?}{next}", r.signing.kid, r.signing.alg)
        }
        Some(Err(_)) => format!("{label:12} (not a key)"),
        None => format!("{label:12} -"),
    }
}

async fn keys(action: KeysAction) -> Result<String, String> {
    let sm = aws_sdk_secretsmanager::Client::new(&shared::wiring::aws_config().await.map_err(|e| e.to_string())?);
    let result = match action {
        KeysAction::Init { secret_id, alg } => {
            shared::rotation::init(&sm, &secret_id, alg.into()).await.map(|kid| format!("current key: {kid}"))
        }
        KeysAction::Rotate { secret_id, alg } => {
            match shared::rotation::rotate_now(&sm, &secret_id, alg.into()).await {
                Ok(version) => fetch_stages(&sm, &secret_id)
                    .await
                    .map(|(c, _, _)| format!("rotated (version {version}); {}", describe("current:", Some(&c)))),
                Err(e) => Err(e),
            }
        }
        KeysAction::Revoke { secret_id, alg } => {
            let current = fetch_stages(&sm, &secret_id).await.ok().and_then(|(c, _, _)| KeyRing::from_json(&c).ok());
            let alg = alg.map(KeyAlg::from).or(current.map(|r| r.signing.alg)).unwrap_or(KeyAlg::ES256);
            shared::rotation::revoke(&sm, &secret_id, alg).await.map(|kid| {
                format!(
                    "revoked: the current and next keys are new (signing key {kid}); the compromised pair is in no stage.\n\
                     Tokens it signed are refused by each function once its key cache expires (KEY_CACHE_SECONDS, \
                     default 300 s) and drop out of the JWKS, which is cached as long; every access token expires \
                     within ACCESS_TOKEN_TTL (default 15 min) in any case. Refresh tokens are not signed and keep \
                     working. Until a warm function has read the new keys (at most KEY_CACHE_SECONDS) it may refuse \
                     tokens signed with the new key too: clients refresh and retry."
                )
            })
        }
        KeysAction::Show { secret_id } => fetch_stages(&sm, &secret_id).await.map(|(c, n, p)| {
            [
                describe("AWSCURRENT", Some(&c)),
                describe("AWSPENDING", n.as_deref()),
                describe("AWSPREVIOUS", p.as_deref()),
            ]
            .join("\n")
        }),
    };
    result.map_err(|e| e.to_string())
}

#[tokio::main]
async fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Keys { action } => keys(action).await,
        Command::Users { action } => users(action).await,
        Command::Migrate { dry_run } => migrate(dry_run).await,
    };
    match result {
        Ok(msg) => {
            println!("{msg}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
