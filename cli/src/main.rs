//! `secure-auth`: operator commands, against AWS or the emulators (same variables as the
//! functions: `SIGNING_KEY_SECRET_ID`, `AWS_ENDPOINT_URL_SECRETS_MANAGER`, region, credentials).

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use shared::keys::{KeyAlg, KeyDoc, fetch_stages};

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
    /// Show the kid and algorithm of each stage (never key material).
    Show {
        #[arg(long, env = "SIGNING_KEY_SECRET_ID")]
        secret_id: String,
    },
}

fn describe(label: &str, s: Option<&str>) -> String {
    match s.map(KeyDoc::from_json) {
        Some(Ok(d)) => format!("{label:12} {} {:?}", d.kid, d.alg),
        Some(Err(_)) => format!("{label:12} (not a key)"),
        None => format!("{label:12} -"),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let sdk = shared::wiring::aws_config().await;
    let sm = aws_sdk_secretsmanager::Client::new(&sdk);
    let result = match cli.command {
        Command::Keys { action: KeysAction::Init { secret_id, alg } } => {
            shared::rotation::init(&sm, &secret_id, alg.into()).await.map(|kid| format!("current key: {kid}"))
        }
        Command::Keys { action: KeysAction::Rotate { secret_id, alg } } => {
            match shared::rotation::rotate_now(&sm, &secret_id, alg.into()).await {
                Ok(version) => fetch_stages(&sm, &secret_id)
                    .await
                    .map(|(c, _, _)| format!("rotated (version {version}); {}", describe("current:", Some(&c)))),
                Err(e) => Err(e),
            }
        }
        Command::Keys { action: KeysAction::Show { secret_id } } => {
            fetch_stages(&sm, &secret_id).await.map(|(c, n, p)| {
                [
                    describe("AWSCURRENT", Some(&c)),
                    describe("AWSPENDING", n.as_deref()),
                    describe("AWSPREVIOUS", p.as_deref()),
                ]
                .join("\n")
            })
        }
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
