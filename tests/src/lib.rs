//! Harness for the end-to-end suite: a local server on an ephemeral port backed by DynamoDB
//! Local (a fresh table per test) and moto's SES, and helpers to read the mail moto received.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod calls;
pub mod lambda;

use std::time::Duration;

use serde_json::Value;
use shared::config::{Config, HashParams, MailerKind};
use shared::store::dynamo::DynamoStore;

/// A running local server and what the tests need to look behind it.
pub struct TestServer {
    pub base: String,
    pub http: reqwest::Client,
    pub table: String,
    pub ddb: aws_sdk_dynamodb::Client,
    /// The bootstrap administrator's address (password `PASSWORD`), if the server has one.
    pub admin_email: Option<String>,
}

/// The sender that `infra/emulators.sh` verified in moto.
pub const SENDER: &str = "no-reply@example.com";

fn require_emulators() {
    for v in ["AWS_ENDPOINT_URL_DYNAMODB", "AWS_ENDPOINT_URL_SESV2", "MOTO_URL"] {
        assert!(
            std::env::var(v).is_ok(),
            "{v} is not set: run the suite through infra/test.sh, which starts the emulators"
        );
    }
}

/// The configuration tests start from: DynamoDB, SES, cheap hashing, a short timing floor.
pub fn test_config(table: &str) -> Config {
    Config {
        table_name: Some(table.to_owned()),
        mailer: MailerKind::Ses,
        mail_from: SENDER.into(),
        // The in-process queue tries a refused mail again after 0.2 s, 0.4 s, …
        mail_retry_base: Duration::from_millis(200),
        hash: HashParams::TEST,
        enumeration_floor: Duration::from_millis(50),
        ..Config::default()
    }
}

/// Starts a server with the test configuration, adjusted by `tweak`.
pub async fn start(tweak: impl FnOnce(&mut Config)) -> TestServer {
    start_with(tweak, None).await
}

/// `start`, with a bootstrap administrator (email, password `PASSWORD`).
pub async fn start_with_admin(admin_email: &str) -> TestServer {
    let admin = local_server::BootstrapAdmin { email: admin_email.to_owned(), password: PASSWORD.to_owned() };
    start_with(|_| {}, Some(admin)).await
}

async fn start_with(tweak: impl FnOnce(&mut Config), admin: Option<local_server::BootstrapAdmin>) -> TestServer {
    require_emulators();
    let sdk = shared::wiring::aws_config().await.unwrap();
    let ddb = aws_sdk_dynamodb::Client::new(&sdk);
    let table = format!("e2e-{}", uuid::Uuid::new_v4().simple());
    DynamoStore::create_table(&ddb, &table).await.expect("create table in DynamoDB Local");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let mut cfg = test_config(&table);
    cfg.public_base_url = base.clone();
    cfg.issuer = base.clone();
    tweak(&mut cfg);
    let admin_email = admin.as_ref().map(|a| a.email.clone());
    let (app, _) = local_server::build_app_with(cfg, admin).await.expect("build app");
    tokio::spawn(local_server::serve(listener, app));
    TestServer { base, http: reqwest::Client::new(), table, ddb, admin_email }
}

/// Status, headers (but the per-request ones) and body (but `request_id`) of a response.
pub async fn fingerprint(r: reqwest::Response) -> (u16, Vec<(String, String)>, Value) {
    let status = r.status().as_u16();
    let mut headers: Vec<(String, String)> = r
        .headers()
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "x-request-id" | "date" | "content-length"))
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_owned()))
        .collect();
    headers.sort();
    let mut body: Value = r.json().await.unwrap();
    body.as_object_mut().unwrap().remove("request_id");
    (status, headers, body)
}

/// A fresh address nobody else in the moto instance uses.
pub fn unique_email() -> String {
    format!("user-{}@example.com", uuid::Uuid::new_v4().simple())
}

pub const PASSWORD: &str = "violet-tractor-sunrise-42";

/// A mail as moto recorded it (moto keeps the HTML body when there is one).
#[derive(Debug, Clone)]
pub struct SentMail {
    pub to: Vec<String>,
    pub subject: String,
    pub body: String,
}

/// The mails SES accepted for `to`, once no new one has arrived for 300 ms: mail is queued
/// and sent a moment after the answer (by the in-process queue, or the mailer function).
pub async fn mails_to(to: &str) -> Vec<SentMail> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut seen = sent_to(to).await;
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = sent_to(to).await;
        if now.len() == seen.len() || std::time::Instant::now() > deadline {
            return now;
        }
        seen = now;
    }
}

/// The mails SES (moto) has accepted for `to` so far, oldest first.
pub async fn sent_to(to: &str) -> Vec<SentMail> {
    let url = format!("{}/moto-api/data.json", std::env::var("MOTO_URL").unwrap());
    let data: Value = reqwest::get(url).await.unwrap().json().await.unwrap();
    let msgs = data["ses"]["Message"].as_array().cloned().unwrap_or_default();
    msgs.iter()
        .map(|m| SentMail {
            to: m["destinations"]["ToAddresses"]
                .as_array()
                .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
                .unwrap_or_default(),
            subject: m["subject"].as_str().unwrap_or_default().to_owned(),
            body: m["body"].as_str().unwrap_or_default().to_owned(),
        })
        .filter(|m| m.to.iter().any(|t| t == to))
        .collect()
}

/// The newest mail to `to` whose subject contains `subject`, once one has arrived and no new
/// mail to `to` has for 300 ms (so a mail still on its way replaces an older one), waiting up
/// to 10 s.
pub async fn mail_to(to: &str, subject: &str) -> SentMail {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let mails = mails_to(to).await;
        if let Some(m) = mails.iter().rev().find(|m| m.subject.contains(subject)) {
            return m.clone();
        }
        assert!(std::time::Instant::now() < deadline, "no '{subject}' mail to {to}: {mails:?}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The newest one-time token in the mails to `to` whose subject contains `subject`.
pub async fn token_from_mail(to: &str, subject: &str) -> String {
    let mail = mail_to(to, subject).await;
    let at = mail.body.find("token=").expect("link with token") + "token=".len();
    mail.body[at..].chars().take_while(|c| c.is_ascii_alphanumeric() || "-_.".contains(*c)).collect()
}

impl TestServer {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn post(&self, path: &str, body: Value) -> reqwest::Response {
        self.http.post(self.url(path)).json(&body).send().await.unwrap()
    }

    pub async fn post_raw(&self, path: &str, content_type: &str, body: impl Into<reqwest::Body>) -> reqwest::Response {
        self.http.post(self.url(path)).header("content-type", content_type).body(body).send().await.unwrap()
    }

    pub async fn get_bearer(&self, path: &str, token: &str) -> reqwest::Response {
        self.http.get(self.url(path)).bearer_auth(token).send().await.unwrap()
    }

    /// Signs up, reads the verification link from moto and confirms it.
    pub async fn verified_user(&self, email: &str) {
        let r = self.post("/auth/signup", serde_json::json!({"email": email, "password": PASSWORD})).await;
        assert_eq!(r.status(), 202);
        let token = token_from_mail(email, "verify").await;
        let r = self.post("/auth/verify-email", serde_json::json!({"token": token, "password": PASSWORD})).await;
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    }

    /// Logs in and returns the token response.
    pub async fn login(&self, email: &str, password: &str) -> Value {
        let r = self.post("/auth/login", serde_json::json!({"email": email, "password": password})).await;
        assert_eq!(r.status(), 200, "login failed");
        r.json().await.unwrap()
    }

    /// The id of the account `email` signs in with (from its unique-email claim).
    pub async fn user_id(&self, email: &str) -> String {
        let items = self.items().await;
        let claim = items
            .iter()
            .find(|i| i.get("pk").and_then(|v| v.as_s().ok()) == Some(&format!("EMAIL#{email}")))
            .unwrap_or_else(|| panic!("no account for {email}"));
        claim["user_id"].as_s().unwrap().clone()
    }

    /// Every item in the test's table.
    pub async fn items(&self) -> Vec<std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>> {
        DynamoStore::new(self.ddb.clone(), &self.table).scan_all().await.unwrap()
    }

    /// The `pk` of every item.
    pub async fn keys(&self) -> Vec<String> {
        self.items().await.iter().filter_map(|i| i.get("pk").and_then(|v| v.as_s().ok()).cloned()).collect()
    }
}

/// Asserts the headers every response must carry.
pub fn assert_common_headers(r: &reqwest::Response) {
    let h = r.headers();
    assert!(h.get("x-request-id").is_some(), "x-request-id");
    assert_eq!(h["strict-transport-security"], "max-age=63072000; includeSubDomains");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["x-frame-options"], "DENY");
    assert_eq!(h["content-security-policy"], "default-src 'none'; frame-ancestors 'none'");
    assert_eq!(h["referrer-policy"], "no-referrer");
    assert_eq!(h["cache-control"], "no-store");
}

/// Reads a problem+json body, checking its shape.
pub async fn problem(r: reqwest::Response) -> Value {
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let status = r.status().as_u16();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["status"], status);
    assert!(v["type"].as_str().unwrap().starts_with("urn:secure-auth:problem:"), "{v}");
    assert!(v["title"].is_string() && v["detail"].is_string() && v["request_id"].is_string(), "{v}");
    v
}

/// A verified, active account with the password whose PHC string is `hash`, written straight
/// into `store` (no sign-up, no mail): for tests and benchmarks that need many accounts.
pub async fn stored_user(store: &dyn shared::store::UserRegistry, hash: &str, superuser: bool) -> shared::store::User {
    let now = shared::now();
    let user = shared::store::User {
        id: uuid::Uuid::new_v4().to_string(),
        email: unique_email(),
        name: None,
        password_hash: hash.to_owned(),
        is_active: true,
        is_verified: true,
        is_superuser: superuser,
        created_at: now,
        updated_at: now,
        last_login_at: None,
        session_version: 1,
        mfa_enabled: false,
        pending_signup: false,
        registrations: Vec::new(),
    };
    store.create_user(&user).await.unwrap();
    user
}

/// The secret parameter of an `otpauth://` URI, as an authenticator app reads it.
pub fn otpauth_secret(uri: &str) -> String {
    let query = uri.split_once('?').map(|(_, q)| q).unwrap_or_default();
    query.split('&').find_map(|kv| kv.strip_prefix("secret=")).expect("a secret parameter").to_owned()
}

/// The TOTP code an authenticator app shows at `at` (Unix seconds) for the base32 `secret`:
/// RFC 6238, SHA-1, six digits, 30 s (`totp-rs`, not the service's code path).
pub fn totp_at(secret: &str, at: i64) -> String {
    let bytes = totp_rs::Secret::try_from_base32(secret).expect("base32 secret");
    totp_rs::Builder::new().with_secret(bytes.as_ref().to_vec()).build_noncompliant().generate(at as u64).to_string()
}

/// Waits out the last 4 s of a 30 s TOTP step, so that codes a test computes from the time
/// now mean the same step when the server checks them.
pub async fn away_from_step_edge() {
    let into = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() % 30_000);
    if let Ok(ms) = into
        && ms >= 26_000
    {
        tokio::time::sleep(Duration::from_millis((30_000 - ms) as u64 + 100)).await;
    }
}

/// Unix seconds now.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

impl TestServer {
    /// `POST path` with a bearer token and a JSON body.
    pub async fn post_bearer(&self, path: &str, token: &str, body: Value) -> reqwest::Response {
        self.http.post(self.url(path)).bearer_auth(token).json(&body).send().await.unwrap()
    }

    /// Enrols an authenticator app for the signed-in `tokens` and confirms it with the code of
    /// the step before now (accepted within the skew), so that the current and the next step
    /// are still free for the test. Returns the base32 secret and the recovery codes.
    pub async fn enable_totp(&self, tokens: &Value) -> (String, Vec<String>) {
        let (secret, codes, _) = self.enable_totp_at(tokens).await;
        (secret, codes)
    }

    /// `enable_totp`, also returning the time `t` it confirmed at: the code of `t - 30` is spent.
    pub async fn enable_totp_at(&self, tokens: &Value) -> (String, Vec<String>, i64) {
        let access = tokens["access_token"].as_str().unwrap();
        let r =
            self.post_bearer("/auth/mfa/totp/enroll", access, serde_json::json!({"current_password": PASSWORD})).await;
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
        let e: Value = r.json().await.unwrap();
        let secret = otpauth_secret(e["otpauth_uri"].as_str().unwrap());
        assert_eq!(secret, e["secret"].as_str().unwrap());
        away_from_step_edge().await;
        let confirmed_at = unix_now();
        let code = totp_at(&secret, confirmed_at - 30);
        let r = self.post_bearer("/auth/mfa/totp/confirm", access, serde_json::json!({"code": code})).await;
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
        let codes: Value = r.json().await.unwrap();
        let codes =
            codes["recovery_codes"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_owned()).collect();
        (secret, codes, confirmed_at)
    }

    /// A password login that must answer with the MFA challenge; its `mfa_token`.
    pub async fn mfa_challenge(&self, email: &str) -> String {
        let r = self.post("/auth/login", serde_json::json!({"email": email, "password": PASSWORD})).await;
        assert_eq!(r.status(), 403, "{}", r.text().await.unwrap());
        let p: Value = r.json().await.unwrap();
        assert_eq!(p["type"], "urn:secure-auth:problem:mfa-required");
        p["mfa_token"].as_str().unwrap().to_owned()
    }
}
