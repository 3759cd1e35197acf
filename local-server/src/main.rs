//! `cargo run -p local-server`: every route on 127.0.0.1:$PORT (default 3000).

use shared::config::Config;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    if std::env::args().any(|a| a == "--openapi") {
        // `cargo run -p local-server -- --openapi > openapi.json` regenerates the checked-in copy.
        match shared::http::openapi()
            .await
            .map_err(|e| e.to_string())
            .and_then(|d| d.to_pretty_json().map_err(|e| e.to_string()))
        {
            Ok(doc) => {
                println!("{doc}");
                return std::process::ExitCode::SUCCESS;
            }
            Err(e) => {
                eprintln!("{e}");
                return std::process::ExitCode::FAILURE;
            }
        }
    }
    if std::env::args().any(|a| a == "--readme-table") {
        print!("{}", shared::http::readme_table());
        return std::process::ExitCode::SUCCESS;
    }
    if std::env::args().any(|a| a == "--endpoints") {
        println!("{}", shared::http::declarations_json());
        return std::process::ExitCode::SUCCESS;
    }
    shared::logging::init();
    let port: u16 = std::env::var("PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(3000);
    let cfg = match Config::from_env() {
        Ok(mut c) => {
            // Links and `iss` follow the chosen port unless configured explicitly.
            let here = format!("http://127.0.0.1:{port}");
            if std::env::var_os("PUBLIC_BASE_URL").is_none() {
                c.public_base_url = here.clone();
            }
            if std::env::var_os("JWT_ISSUER").is_none() {
                c.issuer = c.public_base_url.clone();
            }
            c
        }
        Err(e) => {
            eprintln!("{e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    if std::env::args().any(|a| a == "--create-table")
        && let Some(table) = cfg.table_name.as_deref()
    {
        {
            let sdk = match shared::wiring::aws_config().await {
                Ok(sdk) => sdk,
                Err(e) => {
                    eprintln!("{e}");
                    return std::process::ExitCode::FAILURE;
                }
            };
            let client = aws_sdk_dynamodb::Client::new(&sdk);
            match shared::store::dynamo::DynamoStore::ensure_table(&client, table).await {
                Ok(created) => println!("table {table}: {}", if created { "created" } else { "exists" }),
                Err(e) => {
                    eprintln!("cannot create table {table}: {e}");
                    return std::process::ExitCode::FAILURE;
                }
            }
        }
    }
    let bootstrap = match (std::env::var("BOOTSTRAP_ADMIN_EMAIL"), std::env::var("BOOTSTRAP_ADMIN_PASSWORD")) {
        (Ok(email), Ok(password)) => Some(local_server::BootstrapAdmin { email, password }),
        _ => None,
    };
    let (app, modes) = match local_server::build_app_with(cfg, bootstrap).await {
        Ok(x) => x,
        Err(e) => {
            eprintln!("{e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let listener = match tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("cannot listen on 127.0.0.1:{port}: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    println!("Secure Auth local server listening on http://127.0.0.1:{port}");
    println!("  store:  {}", modes.store);
    println!("  mailer: {}", modes.mailer);
    println!("  keys:   {}", modes.keys);
    println!("  mfa key: {}", modes.mfa_key);
    tracing::info!(url = %format!("http://127.0.0.1:{port}"), store = %modes.store, mailer = %modes.mailer, keys = %modes.keys, mfa_key = %modes.mfa_key, "local server started");
    if let Err(e) = local_server::serve(listener, app).await {
        eprintln!("server error: {e}");
        return std::process::ExitCode::FAILURE;
    }
    std::process::ExitCode::SUCCESS
}
