//! Faults in DynamoDB, SES and Secrets Manager: 503 with nothing half-written, the API answer
//! unchanged by mail failures (the mail is queued and sent once SES accepts), and no fallback key.

use e2e::*;
use serde_json::json;
use shared::config::Config;
use shared::wiring::Deps;

#[tokio::test]
async fn given_dynamodb_failing_then_503_unavailable_with_retry_after_and_no_internals() {
    let s = start(|c| c.table_name = Some("no-such-table".into())).await;
    for (path, body) in [
        ("/auth/signup", json!({"email": unique_email(), "password": PASSWORD})),
        ("/auth/login", json!({"email": unique_email(), "password": PASSWORD})),
        ("/auth/refresh", json!({"refresh_token": "u.s.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"})),
    ] {
        let r = s.post(path, body).await;
        assert_eq!(r.status(), 503, "{path}: lockout bookkeeping and stores fail closed");
        assert_eq!(r.headers()["retry-after"], "5");
        let p = problem(r).await;
        assert_eq!(p["type"], "urn:secure-auth:problem:unavailable");
        let text = p.to_string();
        assert!(!text.contains("ResourceNotFound") && !text.contains("no-such-table"), "{text}");
    }
}

#[tokio::test]
async fn given_ses_refusing_mail_then_signup_answers_202_and_the_local_queue_delivers_once_ses_accepts() {
    // moto, like SES, refuses an unverified sender.
    let sender = format!("refused-{}@example.com", uuid::Uuid::new_v4().simple());
    let s = start(|c| c.mail_from = sender.clone()).await;
    let email = unique_email();
    let r = s.post("/auth/signup", json!({"email": email, "password": PASSWORD})).await;
    assert_eq!(r.status(), 202);
    assert!(mails_to(&email).await.is_empty(), "refused, and tried again (0.2 s, 0.4 s, …)");
    assert!(s.keys().await.iter().any(|k| k.starts_with("EMAIL#")), "the account exists");
    let ses = aws_sdk_sesv2::Client::new(&shared::wiring::aws_config().await.unwrap());
    ses.create_email_identity().email_identity(&sender).send().await.unwrap();
    let token = token_from_mail(&email, "verify").await;
    assert_eq!(mails_to(&email).await.len(), 1, "delivered once, without asking again");
    assert_eq!(s.post("/auth/verify-email", json!({"token": token, "password": PASSWORD})).await.status(), 200);
}

async fn secrets_client() -> aws_sdk_secretsmanager::Client {
    aws_sdk_secretsmanager::Client::new(&shared::wiring::aws_config().await.unwrap())
}

fn lambda_config(secret: &str) -> Config {
    let mut c = test_config("any-table");
    c.signing_key_secret_id = Some(secret.into());
    c
}

#[tokio::test]
async fn given_key_set_in_secrets_manager_then_lambda_wiring_signs_with_its_current_kid() {
    let sm = secrets_client().await;
    let name = format!("keys-{}", uuid::Uuid::new_v4().simple());
    let first = shared::rotation::init(&sm, &name, shared::keys::KeyAlg::ES256).await.unwrap();
    shared::rotation::rotate_now(&sm, &name, shared::keys::KeyAlg::ES256).await.unwrap();
    let deps = Deps::new(lambda_config(&name), None);
    let jwt = deps.jwt().await.expect("wiring");
    let current = jwt.keys().current.kid.clone();
    assert_ne!(current, first);
    assert!(deps.modes().keys.contains(&current));
    assert!(jwt.keys().find(&first).is_some(), "the previous key still verifies");
}

#[tokio::test]
async fn given_secrets_manager_without_the_secret_then_lambda_refuses_with_503_and_no_fallback_key() {
    let err = Deps::new(lambda_config("does-not-exist"), None).keys().await.err().expect("must fail");
    assert!(err.to_string().contains("signing keys"), "{err}");
    // Lambda needs every real adapter: no in-memory store, console mailer or ephemeral key.
    let mut c = lambda_config("x");
    c.signing_key_secret_id = None;
    c.table_name = None;
    c.mailer = shared::config::MailerKind::Console;
    let deps = Deps::new(c, None);
    assert!(deps.keys().await.is_err());
    assert!(deps.store::<dyn shared::store::Store>().await.is_err());
    assert!(deps.mailer().await.is_err());
    // What the function serves instead: 503 on every path.
    let app = shared::http::unavailable_router();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let r = reqwest::Client::new().post(format!("{base}/auth/login")).json(&json!({})).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert_common_headers(&r);
    assert_eq!(problem(r).await["type"], "urn:secure-auth:problem:unavailable");
}

/// A TCP server that accepts every connection and never answers: a black-holed endpoint.
async fn black_hole() -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((conn, _)) = listener.accept().await {
            held.push(conn);
        }
    });
    (url, task)
}

#[tokio::test]
async fn given_dynamodb_black_holed_then_a_function_gives_up_within_the_operation_bound_and_answers_503() {
    let (url, _server) = black_hole().await;
    // Short bounds keep the test quick; the defaults (2 s an attempt, 5 s a call) are the
    // wiring unit test's.
    let stack = e2e::lambda::Stack::new()
        .await
        .with("AWS_ENDPOINT_URL_DYNAMODB", &url)
        .with("SDK_ATTEMPT_TIMEOUT_MS", "400")
        .with("SDK_OPERATION_TIMEOUT_MS", "1200");
    let login = stack.function("login").await;
    let started = std::time::Instant::now();
    let r = login
        .http(e2e::lambda::Event::post("/auth/login", json!({"email": unique_email(), "password": PASSWORD})))
        .await;
    let took = started.elapsed();
    assert_eq!(r.status, 503, "{}", String::from_utf8_lossy(&r.body));
    assert!(r.header("retry-after").is_some());
    assert_eq!(r.json()["type"], "urn:secure-auth:problem:unavailable");
    // Each call gives up at its operation bound, not at the function's 10 s timeout.
    assert!(took < std::time::Duration::from_secs(6), "{took:?}");
    assert!(login.output().to_lowercase().contains("timeout"), "the SDK's timeout error is logged");
}

/// A proxy to DynamoDB Local that answers each request as a kept-alive HTTP/1.1 connection
/// would (no `Connection: close`) and then closes the connection without a word, as a peer does
/// with idle connections while a Lambda sandbox is frozen. Records the `amz-sdk-request` header
/// of every request it forwards (`attempt=1; max=3` on a first attempt) and counts connections.
struct SilentCloser {
    url: String,
    attempts: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    connections: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl SilentCloser {
    async fn start() -> SilentCloser {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let upstream = std::env::var("AWS_ENDPOINT_URL_DYNAMODB").expect("DynamoDB Local");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let attempts = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let connections = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (seen, count) = (attempts.clone(), connections.clone());
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            while let Ok((mut conn, _)) = listener.accept().await {
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let (client, upstream, seen) = (client.clone(), upstream.clone(), seen.clone());
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let head_end = loop {
                        let mut chunk = [0u8; 4096];
                        match conn.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
                    let mut lines = head.split("\r\n");
                    let path = lines.next().unwrap_or_default().split(' ').nth(1).unwrap_or("/").to_owned();
                    let headers: Vec<(String, String)> = lines
                        .filter_map(|l| l.split_once(':'))
                        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
                        .collect();
                    let length: usize = headers
                        .iter()
                        .find(|(k, _)| k == "content-length")
                        .and_then(|(_, v)| v.parse().ok())
                        .unwrap_or(0);
                    while buf.len() < head_end + length {
                        let mut chunk = [0u8; 4096];
                        match conn.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let mut req = client.post(format!("{}{path}", upstream.trim_end_matches('/')));
                    for (k, v) in &headers {
                        if k == "amz-sdk-request" {
                            seen.lock().unwrap().push(v.clone());
                        }
                        if k != "host" && k != "content-length" && k != "connection" {
                            req = req.header(k, v);
                        }
                    }
                    let Ok(answer) = req.body(buf[head_end..head_end + length].to_vec()).send().await else { return };
                    let status = answer.status();
                    let mut out =
                        format!("HTTP/1.1 {} {}\r\n", status.as_u16(), status.canonical_reason().unwrap_or(""));
                    for (k, v) in answer.headers() {
                        if !matches!(k.as_str(), "content-length" | "transfer-encoding" | "connection" | "keep-alive") {
                            out.push_str(&format!("{k}: {}\r\n", v.to_str().unwrap_or_default()));
                        }
                    }
                    let body = answer.bytes().await.unwrap_or_default();
                    out.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
                    let _ = conn.write_all(out.as_bytes()).await;
                    let _ = conn.write_all(&body).await;
                    let _ = conn.shutdown().await;
                });
            }
        });
        SilentCloser { url, attempts, connections }
    }
}

#[tokio::test]
async fn given_dynamodb_closing_every_kept_alive_connection_silently_then_back_to_back_requests_succeed_at_once() {
    let proxy = SilentCloser::start().await;
    let stack = e2e::lambda::Stack::new().await.with("AWS_ENDPOINT_URL_DYNAMODB", &proxy.url);
    let login = stack.function("login").await;
    for round in 0..2 {
        let r = login
            .http(e2e::lambda::Event::post("/auth/login", json!({"email": unique_email(), "password": PASSWORD})))
            .await;
        assert_eq!(r.status, 401, "round {round}: {}", String::from_utf8_lossy(&r.body));
    }
    let attempts = proxy.attempts.lock().unwrap().clone();
    assert!(attempts.len() >= 4, "each login calls DynamoDB more than once: {attempts:?}");
    assert_eq!(
        proxy.connections.load(std::sync::atomic::Ordering::SeqCst),
        attempts.len(),
        "every call met a closed pooled connection and went out on a new one"
    );
    assert!(
        attempts.iter().all(|a| a.starts_with("attempt=1;")),
        "no call spent a retry on a dead connection: {attempts:?}"
    );
    let output = login.output();
    assert!(!output.contains("\"level\":\"ERROR\""), "{output}");
}
