//! The function binaries as Lambda runs them: each test starts real binaries against a Runtime
//! API on loopback (e2e::lambda), with API Gateway HTTP API events, DynamoDB Local, moto's SES
//! and Secrets Manager.

use e2e::lambda::{Event, Function, Outcome, Stack};
use e2e::*;
use serde_json::{Value, json};
use shared::keys::KeyAlg;

fn status_and_problem(r: &e2e::lambda::HttpResponse, status: u16) -> Value {
    assert_eq!(r.status, status, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("content-type"), Some("application/problem+json"), "{r:?}");
    r.json()
}

#[tokio::test]
async fn given_the_account_flow_through_its_functions_then_each_binary_serves_its_step() {
    let stack = Stack::new().await;
    let [signup, verify, login, me, refresh, logout] =
        ["signup", "verify-email", "login", "me", "refresh", "logout"].map(|b| stack.function(b));
    let (signup, verify, login, me, refresh, logout) = tokio::join!(signup, verify, login, me, refresh, logout);
    let email = unique_email();

    let r = signup.http(Event::post("/auth/signup", json!({"email": email, "password": PASSWORD}))).await;
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json(), json!({"status": "verification_pending"}));
    let token = token_from_mail(&email, "verify").await;
    let link = mails_to(&email).await.last().unwrap().body.clone();
    assert!(link.contains("https://auth.example.com/auth/verify-email?token="), "{link}");

    let r = verify.http(Event::post("/auth/verify-email", json!({"token": token, "password": PASSWORD}))).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));

    let r = login.http(Event::post("/auth/login", json!({"email": email, "password": PASSWORD}))).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let tokens = r.json();
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    // What API Gateway's JWT authorizer forwards; the function verifies the bearer itself.
    let payload = access.split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload).unwrap(),
    )
    .unwrap();

    let r = me.http(Event::get("/auth/me").bearer(&access).authorizer_claims(claims)).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["email"], email.as_str());

    let r = refresh.http(Event::post("/auth/refresh", json!({"refresh_token": tokens["refresh_token"]}))).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let rotated = r.json();
    assert_ne!(rotated["refresh_token"], tokens["refresh_token"]);

    let r = logout.http(Event::post("/auth/logout", json!({"refresh_token": rotated["refresh_token"]}))).await;
    assert!(r.status == 204 || r.status == 200, "{r:?}");
    let r = refresh.http(Event::post("/auth/refresh", json!({"refresh_token": rotated["refresh_token"]}))).await;
    assert_eq!(status_and_problem(&r, 401)["error"], "invalid_grant");
}

#[tokio::test]
async fn given_failures_from_one_source_ip_then_only_that_ip_is_locked_whatever_x_forwarded_for_says() {
    let stack = Stack::new().await.with("LOCKOUT_THRESHOLD", "3");
    let (signup, verify, login) =
        tokio::join!(stack.function("signup"), stack.function("verify-email"), stack.function("login"));
    let email = unique_email();
    signup.http(Event::post("/auth/signup", json!({"email": email, "password": PASSWORD}))).await;
    let token = token_from_mail(&email, "verify").await;
    assert_eq!(
        verify.http(Event::post("/auth/verify-email", json!({"token": token, "password": PASSWORD}))).await.status,
        200
    );

    let attacker = "198.51.100.7";
    for i in 0..3 {
        // A forged X-Forwarded-For, different every time, must not spread the count.
        let ev = Event::post("/auth/login", json!({"email": email, "password": "wrong-password-1"}))
            .source_ip(attacker)
            .header("x-forwarded-for", &format!("10.0.0.{i}"));
        assert_eq!(login.http(ev).await.status, 401);
    }
    let right = json!({"email": email, "password": PASSWORD});
    let r = login
        .http(Event::post("/auth/login", right.clone()).source_ip(attacker).header("x-forwarded-for", "192.0.2.99"))
        .await;
    assert_eq!(status_and_problem(&r, 401)["error"], "invalid_grant", "the attacker's IP is locked");
    let r = login.http(Event::post("/auth/login", right).source_ip("203.0.113.50")).await;
    assert_eq!(r.status, 200, "the owner, from another IP, still logs in: {}", String::from_utf8_lossy(&r.body));
}

#[tokio::test]
async fn given_rate_limits_on_then_they_count_the_source_ip_not_x_forwarded_for() {
    let stack = Stack::new().await.with("RATE_LIMITS_ENABLED", "true");
    let resend = stack.with("RATE_LIMIT_RESEND_VERIFICATION", "ip=2/60").function("resend-verification").await;
    let body = || json!({"email": unique_email()});
    for i in 0..2 {
        let ev = Event::post("/auth/resend-verification", body())
            .source_ip("198.51.100.20")
            .header("x-forwarded-for", &format!("10.1.0.{i}"));
        assert_eq!(resend.http(ev).await.status, 202);
    }
    let ev = Event::post("/auth/resend-verification", body())
        .source_ip("198.51.100.20")
        .header("x-forwarded-for", "10.9.9.9");
    let r = resend.http(ev).await;
    status_and_problem(&r, 429);
    assert!(r.header("retry-after").is_some(), "{r:?}");
    let r = resend.http(Event::post("/auth/resend-verification", body()).source_ip("198.51.100.21")).await;
    assert_eq!(r.status, 202, "another source IP has its own count");
}

#[tokio::test]
async fn given_no_client_request_id_then_the_api_gateway_request_id_is_the_responses() {
    let stack = Stack::new().await;
    let health = stack.function("health").await;
    let ev = Event::get("/health");
    let id = ev.request_id().to_owned();
    let r = health.http(ev).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-request-id"), Some(id.as_str()));
    // A client's own id is echoed; the server's id is API Gateway's.
    let r = health.http(Event::get("/health").header("x-request-id", "client-abc-123")).await;
    assert_eq!(r.header("x-request-id"), Some("client-abc-123"), "{r:?}");
}

#[tokio::test]
async fn given_base64_bodies_cookies_and_repeated_query_parameters_then_they_are_read_as_http() {
    let stack = Stack::new().await;
    let (signup, verify, login, me, pages) = tokio::join!(
        stack.function("signup"),
        stack.function("verify-email"),
        stack.function("login"),
        stack.function("me"),
        stack.function("pages")
    );
    let email = unique_email();
    let body = json!({"email": email, "password": PASSWORD}).to_string();
    let r = signup.http(Event::new("POST", "/auth/signup").base64_body("application/json", body.as_bytes())).await;
    assert_eq!(r.status, 202, "a base64 body is decoded: {}", String::from_utf8_lossy(&r.body));
    let token = token_from_mail(&email, "verify").await;
    // A form body, base64-encoded as API Gateway sends binary media.
    let form = format!("token={token}&password={PASSWORD}");
    let r = verify
        .http(
            Event::new("POST", "/auth/verify-email").base64_body("application/x-www-form-urlencoded", form.as_bytes()),
        )
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));

    let r = login
        .http(
            Event::post("/auth/login", json!({"email": email, "password": PASSWORD}))
                .cookie("theme=dark")
                .cookie("sid=x"),
        )
        .await;
    assert_eq!(r.status, 200, "cookies change nothing");
    assert!(r.cookies.is_empty(), "the service sets no cookies: {:?}", r.cookies);
    let access = r.json()["access_token"].as_str().unwrap().to_owned();
    // A token in a cookie is no credential: only the Authorization header is.
    let r = me.http(Event::get("/auth/me").cookie(&format!("access_token={access}"))).await;
    status_and_problem(&r, 401);

    let r = pages.http(Event::get("/auth/verify-email").query("token", "a").query("token", "b")).await;
    status_and_problem(&r, 400);
    let well_formed = token.clone();
    let r = pages.http(Event::get("/auth/verify-email").query("token", &well_formed)).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert!(String::from_utf8_lossy(&r.body).contains(&well_formed), "the page carries the token to its form");
    assert!(r.header("content-type").unwrap_or_default().starts_with("text/html"), "{r:?}");
}

#[tokio::test]
async fn given_another_endpoints_route_then_a_function_answers_404_problem() {
    let stack = Stack::new().await;
    let login = stack.function("login").await;
    let r = login.http(Event::get("/auth/me")).await;
    status_and_problem(&r, 404);
    let r = login.http(Event::post("/users", json!({}))).await;
    status_and_problem(&r, 404);
    let r = login.http(Event::get("/auth/login")).await;
    status_and_problem(&r, 405);
}

#[tokio::test]
async fn given_secrets_managers_four_rotation_events_then_the_rotation_function_rotates_the_key() {
    let stack = Stack::new().await;
    let sm = aws_sdk_secretsmanager::Client::new(&shared::wiring::aws_config().await.unwrap());
    let (current, _, _) = shared::keys::fetch_stages(&sm, &stack.secret).await.unwrap();
    let before = shared::keys::KeyRing::from_json(&current).unwrap();
    let rotate = Function::start("rotate-keys", &[("SIGNING_ALG", "ES256")]).await;
    let version = uuid::Uuid::new_v4().to_string();
    let arn = sm.describe_secret().secret_id(&stack.secret).send().await.unwrap().arn.unwrap();
    for step in ["createSecret", "setSecret", "testSecret", "finishSecret"] {
        let ev = json!({"Step": step, "SecretId": arn, "ClientRequestToken": version});
        match rotate.invoke(ev).await {
            Outcome::Response(_) => {}
            Outcome::Error(e) => panic!("{step}: {e}\n{}", rotate.output()),
        }
    }
    let (current, _, previous) = shared::keys::fetch_stages(&sm, &stack.secret).await.unwrap();
    let after = shared::keys::KeyRing::from_json(&current).unwrap();
    assert_eq!(Some(&after.signing.kid), before.next.as_ref().map(|n| &n.kid), "the published next key signs");
    assert!(after.next.as_ref().is_some_and(|n| n.kid != before.signing.kid && n.kid != after.signing.kid));
    let previous = shared::keys::KeyRing::from_json(&previous.unwrap()).unwrap();
    assert_eq!(previous.signing.kid, before.signing.kid, "the old ring is previous");
    // A step for a version nobody staged is an invocation error, not a success.
    let ev = json!({"Step": "finishSecret", "SecretId": arn, "ClientRequestToken": uuid::Uuid::new_v4().to_string()});
    assert!(matches!(rotate.invoke(ev).await, Outcome::Error(_)));
}

#[tokio::test]
async fn given_init_failed_then_the_function_answers_503_retries_with_backoff_and_recovers_in_the_same_process() {
    let sdk = shared::wiring::aws_config().await.unwrap();
    let sm = aws_sdk_secretsmanager::Client::new(&sdk);
    let secret = format!("lambda-later-{}", uuid::Uuid::new_v4().simple());
    // The secret does not exist yet: Secrets Manager answers ResourceNotFound at cold start.
    let started = std::time::Instant::now();
    let mut jwks = Function::start("jwks", &[("SIGNING_KEY_SECRET_ID", secret.as_str())]).await;
    jwks.init_time().await;
    for _ in 0..5 {
        let r = jwks.http(Event::get("/.well-known/jwks.json")).await;
        assert_eq!(status_and_problem(&r, 503)["type"], "urn:secure-auth:problem:unavailable");
        assert!(r.header("retry-after").is_some(), "{r:?}");
        assert!(!String::from_utf8_lossy(&r.body).contains("\"keys\""), "no fallback key");
    }
    // Attempts happen at init and then only once each backoff (1 s, 2 s, 4 s, …) has passed:
    // however slow this machine is, five requests cost at most the attempts that were due.
    let elapsed = started.elapsed().as_secs_f64();
    let due = 1 + [1.0, 3.0, 7.0, 15.0, 31.0].iter().filter(|d| **d <= elapsed + 0.05).count();
    assert!(jwks.wait_for_output("initialization failed").await, "{}", jwks.output());
    let attempts = jwks.output().matches("initialization failed").count();
    assert!(
        attempts >= 1 && attempts <= due && attempts < 6,
        "{attempts} attempts in {elapsed:.2} s (at most {due} due), not one per request\n{}",
        jwks.output()
    );

    shared::rotation::init(&sm, &secret, KeyAlg::ES256).await.unwrap();
    // The next attempt is at most one backoff away (30 s at the very most).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(40);
    let r = loop {
        let r = jwks.http(Event::get("/.well-known/jwks.json")).await;
        if r.status == 200 || std::time::Instant::now() > deadline {
            break r;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    };
    assert_eq!(r.status, 200, "recovered without a new environment: {}", jwks.output());
    assert_eq!(r.json()["keys"].as_array().unwrap().len(), 2, "the signing key and the next one");
    assert!(jwks.exited().is_none(), "the same process serves");
    assert!(jwks.init_error().is_none());
    assert!(jwks.wait_for_output("\"initialized\"").await, "{}", jwks.output());
}

/// Runs Secrets Manager's four rotation steps through the `rotate-keys` function.
async fn rotate_through_the_function(secret: &str) {
    let rotate = Function::start("rotate-keys", &[("SIGNING_ALG", "ES256")]).await;
    let version = uuid::Uuid::new_v4().to_string();
    for step in ["createSecret", "setSecret", "testSecret", "finishSecret"] {
        let ev = json!({"Step": step, "SecretId": secret, "ClientRequestToken": version});
        if let Outcome::Error(e) = rotate.invoke(ev).await {
            panic!("{step}: {e}\n{}", rotate.output());
        }
    }
}

#[tokio::test]
async fn given_a_rotation_between_two_processes_with_the_default_cache_then_tokens_from_each_verify_at_the_other() {
    // KEY_CACHE_SECONDS is not set: each process keeps the key set it loaded for 300 s.
    let stack = Stack::new().await;
    let (signup, verify) = tokio::join!(stack.function("signup"), stack.function("verify-email"));
    let email = unique_email();
    let r = signup.http(Event::post("/auth/signup", json!({"email": email, "password": PASSWORD}))).await;
    assert_eq!(r.status, 202);
    let token = token_from_mail(&email, "verify").await;
    assert_eq!(
        verify.http(Event::post("/auth/verify-email", json!({"token": token, "password": PASSWORD}))).await.status,
        200
    );
    let login = Event::post("/auth/login", json!({"email": email, "password": PASSWORD}));
    let me = |access: &str| Event::get("/auth/me").bearer(access).authorizer_claims(e2e::calls::claims_of(access));
    let kid = |access: &str| jsonwebtoken::decode_header(access).unwrap().kid.unwrap();

    let [login_a, me_a, refresh_a] = ["login", "me", "refresh"].map(|b| stack.function(b));
    let (login_a, me_a, refresh_a) = tokio::join!(login_a, me_a, refresh_a);
    let before = login_a.http(login.clone()).await.json();
    let access_a = before["access_token"].as_str().unwrap().to_owned();

    rotate_through_the_function(&stack.secret).await;

    let [login_b, me_b, refresh_b] = ["login", "me", "refresh"].map(|b| stack.function(b));
    let (login_b, me_b, refresh_b) = tokio::join!(login_b, me_b, refresh_b);
    let after = login_b.http(login.clone()).await.json();
    let access_b = after["access_token"].as_str().unwrap().to_owned();
    assert_ne!(kid(&access_a), kid(&access_b), "the process started after the rotation signs with the new key");
    // Still within the old processes' cache: they signed with the old key up to now.
    assert_eq!(kid(login_a.http(login.clone()).await.json()["access_token"].as_str().unwrap()), kid(&access_a));

    let r = me_a.http(me(&access_b)).await;
    assert_eq!(r.status, 200, "a token from after the rotation at a process from before: {r:?}");
    let r = me_b.http(me(&access_a)).await;
    assert_eq!(r.status, 200, "a token from before the rotation at a process from after: {r:?}");
    assert_eq!(me_a.http(me(&access_a)).await.status, 200);

    // A refresh rotated by a process from after the key rotation, retried at one from before
    // (a lost answer, a client behind a different instance): the same successor.
    let body = json!({"refresh_token": before["refresh_token"]});
    let first = refresh_b.http(Event::post("/auth/refresh", body.clone())).await;
    assert_eq!(first.status, 200, "{first:?}");
    let retried = refresh_a.http(Event::post("/auth/refresh", body)).await;
    assert_eq!(retried.status, 200, "{retried:?}");
    assert_eq!(retried.json()["refresh_token"], first.json()["refresh_token"]);
}

/// The AWS SDK clients whose code is in `binary` (its symbol table, read with binutils' `nm`).
fn linked_clients(binary: &str) -> Vec<&'static str> {
    let out = std::process::Command::new("nm")
        .args(["--demangle", "--defined-only"])
        .arg(e2e::lambda::binary_path(binary))
        .output()
        .expect("nm (binutils, which the Rust linker needs) runs");
    assert!(out.status.success(), "nm {binary}: {}", String::from_utf8_lossy(&out.stderr));
    // Functions of the client's crate (not the drop glue of a type that merely appears in a
    // struct, like `Deps`'s empty DynamoDB slot in `health`).
    let symbols = String::from_utf8_lossy(&out.stdout);
    let names: Vec<&str> = symbols.lines().filter_map(|l| l.splitn(3, ' ').nth(2)).collect();
    // The last three are aws-config's default chain (STS for web identity and roles, instance
    // metadata, profile files), which no function may link: Lambda's environment has it all.
    [
        "aws_sdk_dynamodb",
        "aws_sdk_secretsmanager",
        "aws_sdk_sesv2",
        "aws_sdk_sqs",
        "aws_sdk_sts",
        "aws_config::imds",
        "aws_config::profile",
    ]
    .into_iter()
    .filter(|c| names.iter().any(|n| n.starts_with(&format!("{c}::")) || n.starts_with(&format!("<{c}::"))))
    .collect()
}

#[test]
fn given_the_declarations_then_each_function_links_exactly_the_aws_clients_it_uses() {
    let mut want: Vec<(&str, Vec<&str>)> = shared::http::all()
        .map(|e| {
            let mut clients = Vec::new();
            if !e.uses.table.is_empty() {
                clients.push("aws_sdk_dynamodb");
            }
            if e.uses.keys || e.uses.mfa_key {
                clients.push("aws_sdk_secretsmanager");
            }
            // Endpoints queue mail; only the mailer sends it.
            if e.uses.mail {
                clients.push("aws_sdk_sqs");
            }
            (e.binary, clients)
        })
        .collect();
    want.push(("mailer", vec!["aws_sdk_dynamodb", "aws_sdk_sesv2", "aws_sdk_sqs"]));
    want.push(("rotate-keys", vec!["aws_sdk_secretsmanager"]));
    let have: Vec<Vec<&str>> = std::thread::scope(|s| {
        let running: Vec<_> = want.iter().map(|(b, _)| s.spawn(move || linked_clients(b))).collect();
        running.into_iter().map(|t| t.join().unwrap()).collect()
    });
    for ((binary, clients), linked) in want.iter().zip(have) {
        assert_eq!(&linked, clients, "{binary}");
    }
}
