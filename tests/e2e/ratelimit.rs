//! Rate limits and lockout hardening, switched on, against DynamoDB Local.

use std::net::IpAddr;
use std::time::Duration;

use e2e::*;
use serde_json::{Value, json};
use shared::config::{EndpointLimits, Limit};

fn limit(max: u32, window: u64) -> Option<Limit> {
    Some(Limit { max, window })
}

async fn limited_server(endpoint: &'static str, limits: EndpointLimits) -> TestServer {
    start(move |c| {
        c.rate_limits.enabled = true;
        c.rate_limits.overrides.insert(endpoint.to_owned(), limits);
    })
    .await
}

/// A client whose requests come from another loopback address (a different client IP).
fn client_from(ip: &str) -> reqwest::Client {
    reqwest::Client::builder().local_address(ip.parse::<IpAddr>().unwrap()).build().unwrap()
}

async fn login_from(s: &TestServer, client: &reqwest::Client, email: &str, password: &str) -> reqwest::Response {
    client.post(s.url("/auth/login")).json(&json!({"email": email, "password": password})).send().await.unwrap()
}

#[tokio::test]
async fn given_100_parallel_logins_against_an_ip_limit_of_10_then_exactly_10_are_processed() {
    let s = limited_server("login", EndpointLimits { ip: limit(10, 60), email: None, user: None }).await;
    let rs = futures::future::join_all(
        (0..100).map(|_| s.post("/auth/login", json!({"email": unique_email(), "password": "wrong-password-1"}))),
    )
    .await;
    let processed = rs.iter().filter(|r| r.status() == 401).count();
    let limited: Vec<&reqwest::Response> = rs.iter().filter(|r| r.status() == 429).collect();
    assert_eq!((processed, limited.len()), (10, 90));
    for r in &limited {
        let h = r.headers();
        assert_eq!(h["ratelimit-limit"], "10");
        assert_eq!(h["ratelimit-remaining"], "0");
        let reset: u64 = h["ratelimit-reset"].to_str().unwrap().parse().unwrap();
        assert!((1..=60).contains(&reset));
        assert_eq!(h["retry-after"], h["ratelimit-reset"]);
    }
    let r = s.post("/auth/login", json!({"email": unique_email(), "password": "x"})).await;
    assert_eq!(r.status(), 429);
    let p = problem(r).await;
    assert_eq!(
        (p["type"].as_str(), p["error"].as_str()),
        (Some("urn:secure-auth:problem:rate-limited"), Some("invalid_request"))
    );
    // Limited requests did no other work: only the 10 processed ones touched the lockout counters.
    let locks = s
        .items()
        .await
        .iter()
        .filter(|i| i["pk"].as_s().unwrap().starts_with("LOCK#") && i["sk"].as_s().unwrap() == "LOCK")
        .count();
    assert_eq!(locks, 10);
}

#[tokio::test]
async fn given_limits_then_they_are_per_ip_per_email_and_x_forwarded_for_changes_nothing() {
    let s = limited_server("resend-verification", EndpointLimits { ip: limit(3, 60), email: limit(2, 60), user: None })
        .await;
    // Per IP: a spoofed X-Forwarded-For does not reset the count.
    for i in 0..3 {
        let r = s
            .http
            .post(s.url("/auth/resend-verification"))
            .header("x-forwarded-for", format!("203.0.113.{i}"))
            .json(&json!({"email": unique_email()}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        // The most restrictive scope is reported: min(IP: 2 - i, email: 1).
        assert_eq!(r.headers()["ratelimit-remaining"], (2 - i).min(1).to_string().as_str());
    }
    let r = s
        .http
        .post(s.url("/auth/resend-verification"))
        .header("x-forwarded-for", "198.51.100.9")
        .json(&json!({"email": unique_email()}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    // Another client IP has its own budget.
    let other = client_from("127.0.0.2");
    let r =
        other.post(s.url("/auth/resend-verification")).json(&json!({"email": unique_email()})).send().await.unwrap();
    assert_eq!(r.status(), 202);
    // Per email (normalized): two hits from two more IPs, the third is limited wherever it comes from.
    let victim = unique_email();
    for ip in ["127.0.0.3", "127.0.0.4"] {
        let r = client_from(ip)
            .post(s.url("/auth/resend-verification"))
            .json(&json!({"email": victim}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
    }
    let r = client_from("127.0.0.5")
        .post(s.url("/auth/resend-verification"))
        .json(&json!({"email": victim.to_uppercase()}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
}

#[tokio::test]
async fn given_existing_and_unknown_accounts_then_rate_limit_answers_are_identical() {
    let s = limited_server("login", EndpointLimits { ip: None, email: limit(1, 60), user: None }).await;
    let known = unique_email();
    s.verified_user(&known).await;
    let unknown = unique_email();
    let mut answers = Vec::new();
    for email in [&known, &unknown] {
        s.post("/auth/login", json!({"email": email, "password": "wrong-password-1"})).await;
        let r = s.post("/auth/login", json!({"email": email, "password": "wrong-password-1"})).await;
        let status = r.status();
        let mut headers: Vec<(String, String)> = r
            .headers()
            .iter()
            .filter(|(k, _)| {
                !matches!(k.as_str(), "x-request-id" | "date" | "content-length" | "retry-after" | "ratelimit-reset")
            })
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_owned()))
            .collect();
        headers.sort();
        let mut body: Value = r.json().await.unwrap();
        body.as_object_mut().unwrap().remove("request_id");
        answers.push((status, headers, body));
    }
    assert_eq!(answers[0].0, 429);
    assert_eq!(answers[0], answers[1]);
}

#[tokio::test]
async fn given_a_limited_signup_then_no_user_is_written_and_no_mail_sent() {
    let s = limited_server("signup", EndpointLimits { ip: limit(1, 60), email: None, user: None }).await;
    let first = unique_email();
    assert_eq!(s.post("/auth/signup", json!({"email": first, "password": PASSWORD})).await.status(), 202);
    let second = unique_email();
    assert_eq!(s.post("/auth/signup", json!({"email": second, "password": PASSWORD})).await.status(), 429);
    assert!(mails_to(&second).await.is_empty());
    assert!(!s.keys().await.contains(&format!("EMAIL#{second}")));
}

#[tokio::test]
async fn given_a_short_window_then_counters_expire_and_requests_pass_again() {
    let s = limited_server("verify-email", EndpointLimits { ip: limit(2, 1), email: None, user: None }).await;
    let hit = || {
        s.post(
            "/auth/verify-email",
            json!({"token": "u.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "password": PASSWORD}),
        )
    };
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(hit().await.status().as_u16());
    }
    // All three may straddle a window boundary; at least the budget of 2 held at some point.
    assert!(statuses.iter().filter(|s| **s == 400).count() >= 2);
    // Two full windows later nothing carries over.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(hit().await.status(), 400);
}

#[tokio::test]
async fn given_an_attacker_locking_an_account_from_one_ip_then_the_owner_still_signs_in_from_another() {
    let s = start(|c| {
        c.lockout.threshold = 3;
        c.lockout.account_ceiling = 6;
    })
    .await;
    let email = unique_email();
    s.verified_user(&email).await;
    let attacker = client_from("127.0.0.10");
    for _ in 0..4 {
        assert_eq!(login_from(&s, &attacker, &email, "wrong-password-1").await.status(), 401);
    }
    // Locked for the attacker's IP, even with the right password.
    assert_eq!(login_from(&s, &attacker, &email, PASSWORD).await.status(), 401);
    assert_eq!(mails_to(&email).await.iter().filter(|m| m.subject.contains("locked")).count(), 1);
    // The owner, from an IP with no recent failures, still gets in.
    let owner = client_from("127.0.0.11");
    assert_eq!(login_from(&s, &owner, &email, PASSWORD).await.status(), 200);
    assert_eq!(
        login_from(&s, &attacker, &email, PASSWORD).await.status(),
        401,
        "the owner's success does not lift the attacker's lock"
    );
    // A distributed attack meets the account-wide ceiling: then everyone is locked out.
    for ip in ["127.0.0.12", "127.0.0.13", "127.0.0.14"] {
        for _ in 0..2 {
            login_from(&s, &client_from(ip), &email, "wrong-password-1").await;
        }
    }
    assert_eq!(login_from(&s, &client_from("127.0.0.15"), &email, PASSWORD).await.status(), 401);
}

/// A request that reaches `binary`'s use case with `email` in it (for the per-email limit).
fn email_request(s: &TestServer, binary: &str, email: &str) -> reqwest::RequestBuilder {
    let json_to = |path: &str, body: Value| s.http.post(s.url(path)).json(&body);
    match binary {
        "signup" => json_to("/auth/signup", json!({"email": email, "password": PASSWORD})),
        "login" => json_to("/auth/login", json!({"email": email, "password": "wrong-password-1"})),
        "token" => s.http.post(s.url("/auth/token")).form(&[
            ("grant_type", "password"),
            ("username", email),
            ("password", "wrong-password-1"),
        ]),
        "resend-verification" => json_to("/auth/resend-verification", json!({"email": email})),
        "forgot-password" => json_to("/auth/forgot-password", json!({"email": email})),
        other => panic!("{other} declares an email limit this test does not know how to reach"),
    }
}

#[tokio::test]
async fn given_every_declared_limit_then_its_endpoint_answers_429_past_it() {
    let limited: Vec<_> = shared::http::all().filter(|e| !e.limits.is_none()).collect();
    // Per IP: a budget of one for every endpoint that declares an IP limit.
    let s = start(|c| {
        c.rate_limits.enabled = true;
        for e in &limited {
            c.rate_limits
                .overrides
                .insert(e.binary.to_owned(), EndpointLimits { ip: limit(1, 3600), email: None, user: None });
        }
    })
    .await;
    for e in limited.iter().filter(|e| e.limits.ip.is_some()) {
        let (method, path) = e.routes[0];
        let hit = || {
            s.http.request(method.parse().unwrap(), s.url(path)).header("content-type", "application/json").body("{}")
        };
        assert_ne!(hit().send().await.unwrap().status(), 429, "{}: the first request is within the limit", e.binary);
        assert_eq!(
            hit().send().await.unwrap().status(),
            429,
            "{} declares an IP limit but does not apply it",
            e.binary
        );
    }
    // Per email: a budget of one for every endpoint that declares an email limit.
    let s = start(|c| {
        c.rate_limits.enabled = true;
        for e in &limited {
            c.rate_limits
                .overrides
                .insert(e.binary.to_owned(), EndpointLimits { ip: None, email: limit(1, 3600), user: None });
        }
    })
    .await;
    for e in limited.iter().filter(|e| e.limits.email.is_some()) {
        let email = unique_email();
        assert_ne!(email_request(&s, e.binary, &email).send().await.unwrap().status(), 429, "{}", e.binary);
        let r = email_request(&s, e.binary, &email.to_uppercase()).send().await.unwrap();
        if e.binary == "forgot-password" {
            // Others can spend an address's budget, so past it the request is answered as
            // usual and does nothing new (tests/e2e/integrity.rs checks what it does not do).
            assert_eq!(r.status(), 202, "forgot-password never answers 429 for the address's budget");
            assert!(r.headers().get("ratelimit-remaining").is_none());
            continue;
        }
        assert_eq!(r.status(), 429, "{} declares an email limit but does not apply it", e.binary);
    }
}
