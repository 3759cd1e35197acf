//! Init and first-request figures of the function binaries, driven through the loopback
//! Runtime API (e2e::lambda) against the emulators: per function, the median of 5 cold starts
//! from process start to the first Runtime API poll (init), then for the functions with a
//! representative request the first invocation after init and the median of 20 warm ones.
//! Prints figures; asserts nothing. `infra/bench-lambda.sh` builds the release binaries,
//! starts the emulators and runs this.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stdout)]

use std::time::{Duration, Instant};

use e2e::lambda::{Event, Function, MailPump, mail_queues};
use e2e::{PASSWORD, SENDER, token_from_mail, unique_email};
use serde_json::{Value, json};
use shared::keys::KeyAlg;
use shared::store::dynamo::DynamoStore;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

#[tokio::main]
async fn main() {
    let sdk = shared::wiring::aws_config().await.unwrap();
    let table = format!("figures-{}", uuid::Uuid::new_v4().simple());
    DynamoStore::create_table(&aws_sdk_dynamodb::Client::new(&sdk), &table).await.unwrap();
    let secret = format!("figures-keys-{}", uuid::Uuid::new_v4().simple());
    shared::rotation::init(&aws_sdk_secretsmanager::Client::new(&sdk), &secret, KeyAlg::ES256).await.unwrap();
    // Mail is queued; a pump feeds the queue to a mailer as the event source mapping does.
    let (queue, queue_arn, _) = mail_queues().await;
    let mfa_key = e2e::lambda::mfa_key_secret().await;
    let vars: Vec<(&str, &str)> = vec![
        ("TABLE_NAME", &table),
        ("SIGNING_KEY_SECRET_ID", &secret),
        ("MFA_KEY_SECRET_ID", &mfa_key),
        ("MAIL_QUEUE_URL", &queue),
        ("MAILER", "ses"),
        ("MAIL_FROM", SENDER),
        ("PUBLIC_BASE_URL", "https://auth.example.com"),
    ];
    let _pump = MailPump::start(Function::start("mailer", &vars).await, &queue, &queue_arn).await;
    let start = |b: &'static str| {
        let vars = vars.clone();
        async move { Function::start(b, &vars).await }
    };

    println!("init: process start to the first Runtime API poll, median of 5 cold starts");
    for e in shared::http::all().map(|e| e.binary).chain(["rotate-keys", "mailer"]) {
        let mut times = Vec::new();
        for _ in 0..5 {
            let f = start(e).await;
            times.push(f.init_time().await);
            // A figure of a function that failed to start would be the failure's.
            assert!(f.init_error().is_none(), "{e} did not initialize: {}", f.output());
        }
        println!("  {e:<24} {:>9}", ms(median(times)));
    }

    // A verified user for the requests below.
    let email = unique_email();
    let signup = start("signup").await;
    signup.http(Event::post("/auth/signup", json!({"email": email, "password": PASSWORD}))).await;
    let token = token_from_mail(&email, "verify").await;
    start("verify-email")
        .await
        .http(Event::post("/auth/verify-email", json!({"token": token, "password": PASSWORD})))
        .await;
    let login_body = json!({"email": email, "password": PASSWORD});
    let tokens = start("login").await.http(Event::post("/auth/login", login_body.clone())).await.json();
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    let refresh_token = std::sync::Mutex::new(tokens["refresh_token"].as_str().unwrap().to_owned());

    println!("\nrequests: the first invocation after init, then the median of 20 warm ones");
    type Make<'a> = Box<dyn Fn() -> Event + 'a>;
    let refresh = || Event::post("/auth/refresh", json!({"refresh_token": *refresh_token.lock().unwrap()}));
    let cases: Vec<(&str, &str, Make)> = vec![
        ("health", "GET /health", Box::new(|| Event::get("/health"))),
        ("jwks", "GET /.well-known/jwks.json", Box::new(|| Event::get("/.well-known/jwks.json"))),
        ("login", "POST /auth/login (right password)", Box::new(|| Event::post("/auth/login", login_body.clone()))),
        ("me", "GET /auth/me", Box::new(|| Event::get("/auth/me").bearer(&access))),
        ("refresh", "POST /auth/refresh (rotating)", Box::new(refresh)),
        ("refresh", "the same, from a second process", Box::new(refresh)),
        (
            "signup",
            "POST /auth/signup (new address)",
            Box::new(|| Event::post("/auth/signup", json!({"email": unique_email(), "password": PASSWORD}))),
        ),
        ("docs", "GET /openapi.json", Box::new(|| Event::get("/openapi.json"))),
    ];
    for (binary, what, make) in &cases {
        let f = start(binary).await;
        f.init_time().await;
        let first = timed(&f, what, make(), &refresh_token).await;
        let mut warm = Vec::new();
        for _ in 0..20 {
            warm.push(timed(&f, what, make(), &refresh_token).await);
        }
        println!("  {binary:<10} {what:<36} first {:>9}   warm p50 {:>9}", ms(first), ms(median(warm)));
    }

    // A second account with a factor: the login's challenge, and its answer (recovery codes,
    // one per sign-in: a TOTP code works once per 30 s).
    let email = unique_email();
    signup.http(Event::post("/auth/signup", json!({"email": email, "password": PASSWORD}))).await;
    let token = token_from_mail(&email, "verify").await;
    start("verify-email")
        .await
        .http(Event::post("/auth/verify-email", json!({"token": token, "password": PASSWORD})))
        .await;
    let login_body = json!({"email": email, "password": PASSWORD});
    let login = start("login").await;
    let t = login.http(Event::post("/auth/login", login_body.clone())).await.json();
    let access = t["access_token"].as_str().unwrap();
    let enroll = start("mfa-enroll").await;
    let e =
        enroll.http(Event::post("/auth/mfa/totp/enroll", json!({"current_password": PASSWORD})).bearer(access)).await;
    let secret = e2e::otpauth_secret(e.json()["otpauth_uri"].as_str().unwrap());
    e2e::away_from_step_edge().await;
    let code = e2e::totp_at(&secret, e2e::unix_now());
    let r = enroll.http(Event::post("/auth/mfa/totp/confirm", json!({"code": code})).bearer(access)).await;
    let codes: Vec<String> =
        r.json()["recovery_codes"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_owned()).collect();
    let challenge = async || {
        let t = Instant::now();
        let r = login.http(Event::post("/auth/login", login_body.clone())).await;
        assert_eq!(r.status, 403, "{}", String::from_utf8_lossy(&r.body));
        (t.elapsed(), r.json()["mfa_token"].as_str().unwrap().to_owned())
    };
    let mut logins = Vec::new();
    let mut challenges = Vec::new();
    for _ in 0..codes.len() {
        let (took, ch) = challenge().await;
        logins.push(took);
        challenges.push(ch);
    }
    let first = logins.remove(0);
    println!(
        "  {:<10} {:<36} first {:>9}   warm p50 {:>9}",
        "login",
        "POST /auth/login (second factor on)",
        ms(first),
        ms(median(logins))
    );
    let verify = start("mfa-verify").await;
    verify.init_time().await;
    let mut answers = Vec::new();
    for (ch, code) in challenges.iter().zip(&codes) {
        let t = Instant::now();
        let r = verify.http(Event::post("/auth/mfa/verify", json!({"mfa_token": ch, "recovery_code": code}))).await;
        answers.push(t.elapsed());
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    }
    let first = answers.remove(0);
    let what = format!("POST /auth/mfa/verify (median of {})", answers.len());
    println!("  {:<10} {what:<36} first {:>9}   warm p50 {:>9}", "mfa-verify", ms(first), ms(median(answers)));
}

/// One invocation's wall time; keeps the newest refresh token for the next refresh.
async fn timed(f: &Function, what: &str, ev: Event, refresh_token: &std::sync::Mutex<String>) -> Duration {
    let t = Instant::now();
    let r = f.http(ev).await;
    let took = t.elapsed();
    assert!(r.status < 400, "{what}: {} {}", r.status, String::from_utf8_lossy(&r.body));
    if let Some(next) =
        serde_json::from_slice::<Value>(&r.body).ok().and_then(|v| v["refresh_token"].as_str().map(str::to_owned))
    {
        *refresh_token.lock().unwrap() = next;
    }
    took
}
