//! Answer times of the requests that mail for a known address and not for an unknown one,
//! through the function binaries (what users deploy) with mail queued on moto's SQS: sign-up,
//! resend-verification, forgot-password, and the failed login that locks an account against
//! one for an address with no account. Samples alternate between the two kinds. Prints the
//! distributions; asserts nothing. `infra/bench-mail-timing.sh` builds and runs this.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stdout)]

use std::time::{Duration, Instant};

use e2e::lambda::{Event, Function, Stack};
use e2e::{PASSWORD, unique_email};
use serde_json::json;

const SAMPLES: usize = 25;

fn stats(mut v: Vec<Duration>) -> String {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let at = |q: f64| ms(v[((v.len() as f64 - 1.0) * q).round() as usize]);
    format!("p10 {:6.1}  p50 {:6.1}  p90 {:6.1}  max {:6.1} ms", at(0.1), at(0.5), at(0.9), ms(v[v.len() - 1]))
}

async fn timed(f: &Function, ev: Event, want: u16) -> Duration {
    let t = Instant::now();
    let r = f.http(ev).await;
    let d = t.elapsed();
    assert_eq!(r.status, want, "{r:?}");
    d
}

/// A verified account with `PASSWORD`, written straight into the table.
async fn account(store: &shared::store::dynamo::DynamoStore, hash: &str) -> String {
    e2e::stored_user(store, hash, false).await.email
}

#[tokio::main]
async fn main() {
    // Lockout after two failures, so that every locking sample needs one account.
    let stack = Stack::new().await.with("LOCKOUT_THRESHOLD", "2").with("ENUMERATION_FLOOR_MS", "300");
    let (signup, resend, forgot, login) = tokio::join!(
        stack.function("signup"),
        stack.function("resend-verification"),
        stack.function("forgot-password"),
        stack.function("login"),
    );
    let sdk = shared::wiring::aws_config().await.unwrap();
    let store = shared::store::dynamo::DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), &stack.table);
    let hasher = shared::password::Hasher::new(shared::config::HashParams::TEST, 2);
    let hash = hasher.hash(&shared::secret::Password::new(PASSWORD)).await.unwrap();
    // Warm every process and connection first.
    for f in [&signup, &resend, &forgot, &login] {
        let _ = f.http(Event::get("/health")).await;
    }
    let signup_body = |email: &str| json!({"email": email, "password": PASSWORD});
    let login_body = |email: &str| json!({"email": email, "password": "wrong-horse-battery-9"});
    let mut rows: Vec<(&str, Vec<Duration>, Vec<Duration>)> = Vec::new();

    let (mut known, mut unknown) = (vec![], vec![]);
    for _ in 0..SAMPLES {
        let taken = account(&store, &hash).await;
        known.push(timed(&signup, Event::post("/auth/signup", signup_body(&taken)), 202).await);
        unknown.push(timed(&signup, Event::post("/auth/signup", signup_body(&unique_email())), 202).await);
    }
    rows.push(("signup: address taken (mail) / new (mail)", known, unknown));

    let (mut known, mut unknown) = (vec![], vec![]);
    for _ in 0..SAMPLES {
        let pending = unique_email();
        signup.http(Event::post("/auth/signup", signup_body(&pending))).await;
        known.push(timed(&resend, Event::post("/auth/resend-verification", json!({"email": pending})), 202).await);
        let none = json!({"email": unique_email()});
        unknown.push(timed(&resend, Event::post("/auth/resend-verification", none), 202).await);
    }
    rows.push(("resend-verification: unverified account (mail) / no account", known, unknown));

    let (mut known, mut unknown) = (vec![], vec![]);
    for _ in 0..SAMPLES {
        let user = account(&store, &hash).await;
        known.push(timed(&forgot, Event::post("/auth/forgot-password", json!({"email": user})), 202).await);
        let none = json!({"email": unique_email()});
        unknown.push(timed(&forgot, Event::post("/auth/forgot-password", none), 202).await);
    }
    rows.push(("forgot-password: account (mail) / no account", known, unknown));

    let (mut known, mut unknown) = (vec![], vec![]);
    for _ in 0..SAMPLES {
        let user = account(&store, &hash).await;
        timed(&login, Event::post("/auth/login", login_body(&user)), 401).await;
        // The second failure locks the account and queues the lock notice.
        known.push(timed(&login, Event::post("/auth/login", login_body(&user)), 401).await);
        unknown.push(timed(&login, Event::post("/auth/login", login_body(&unique_email())), 401).await);
    }
    rows.push(("login: the failure that locks (mail) / no account", known, unknown));

    println!("answer times through the function binaries, {SAMPLES} samples each, mail queued on SQS (moto):");
    for (what, known, unknown) in rows {
        println!("{what}\n  known   {}\n  unknown {}", stats(known), stats(unknown));
    }
}
