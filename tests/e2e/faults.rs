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
