//! Bad input gets a clear problem+json error and changes nothing; the common headers are on
//! every response.

use e2e::*;
use serde_json::{Value, json};

#[tokio::test]
async fn given_hostile_bodies_then_each_gets_a_4xx_problem_and_nothing_is_written() {
    let s = start(|_| {}).await;
    let long_email = format!("{}@example.com", "a".repeat(250));
    let cases: Vec<(&str, &str, String, u16, &str)> = vec![
        ("/auth/signup", "application/json", "{not json".into(), 400, "malformed-request"),
        (
            "/auth/signup",
            "application/json",
            format!(r#"{{"email":"a@example.com","email":"b@example.com","password":"{PASSWORD}"}}"#),
            400,
            "validation-failed",
        ),
        (
            "/auth/signup",
            "application/json",
            json!({"email": 5, "password": PASSWORD}).to_string(),
            400,
            "validation-failed",
        ),
        (
            "/auth/signup",
            "application/json",
            json!({"email": "a@example.com", "password": PASSWORD, "is_superuser": true}).to_string(),
            400,
            "validation-failed",
        ),
        (
            "/auth/signup",
            "application/json",
            json!({"email": "a@example.com", "password": PASSWORD, "is_verified": true}).to_string(),
            400,
            "validation-failed",
        ),
        (
            "/auth/signup",
            "application/json",
            json!({"email": "a\r\nBcc: x@evil.com@example.com", "password": PASSWORD}).to_string(),
            400,
            "validation-failed",
        ),
        (
            "/auth/signup",
            "application/json",
            json!({"email": "a\u{0}@example.com", "password": PASSWORD}).to_string(),
            400,
            "validation-failed",
        ),
        (
            "/auth/signup",
            "application/json",
            json!({"email": long_email, "password": PASSWORD}).to_string(),
            400,
            "validation-failed",
        ),
        (
            "/auth/signup",
            "application/json",
            json!({"email": "ok@example.com", "password": "short"}).to_string(),
            400,
            "validation-failed",
        ),
        (
            "/auth/signup",
            "application/json",
            json!({"email": "ok@example.com", "password": PASSWORD, "name": "a\u{7}b"}).to_string(),
            400,
            "validation-failed",
        ),
        (
            "/auth/signup",
            "text/plain",
            json!({"email": "ok@example.com", "password": PASSWORD}).to_string(),
            415,
            "unsupported-media-type",
        ),
        (
            "/auth/signup",
            "application/json",
            format!(r#"{{"email":"ok@example.com","password":"{PASSWORD}","name":"{}"}}"#, "x".repeat(17 * 1024)),
            413,
            "payload-too-large",
        ),
        ("/auth/login", "application/json", "[]".into(), 400, "validation-failed"),
        ("/auth/signup", "application/json", format!(r#"["a@example.com", "{PASSWORD}"]"#), 400, "validation-failed"),
        ("/auth/signup", "application/json", "".into(), 400, "malformed-request"),
        ("/auth/verify-email", "application/json", json!({"token": "../../etc"}).to_string(), 400, "invalid-token"),
        (
            "/auth/resend-verification",
            "application/json",
            json!({"email": "not-an-email"}).to_string(),
            400,
            "validation-failed",
        ),
        ("/auth/refresh", "application/json", json!({"refresh_token": 12}).to_string(), 400, "validation-failed"),
    ];
    for (path, ct, body, status, slug) in cases {
        let r = s.post_raw(path, ct, body.clone()).await;
        assert_eq!(r.status().as_u16(), status, "{path} {}", &body[..body.len().min(80)]);
        assert_common_headers(&r);
        let p = problem(r).await;
        assert_eq!(p["type"], format!("urn:secure-auth:problem:{slug}"), "{path}: {p}");
        let text = p.to_string();
        assert!(!text.contains(PASSWORD), "a password must never be echoed: {text}");
    }
    assert!(s.keys().await.is_empty(), "nothing may be written by bad input");
}

#[tokio::test]
async fn given_a_policy_failure_then_every_failing_rule_is_listed() {
    let s = start(|_| {}).await;
    let r = s.post("/auth/signup", json!({"email": "margaret@example.com", "password": "margaret"})).await;
    assert_eq!(r.status(), 400);
    let p = problem(r).await;
    let msgs: Vec<&str> = p["errors"].as_array().unwrap().iter().map(|e| e["message"].as_str().unwrap()).collect();
    assert!(p["errors"].as_array().unwrap().iter().all(|e| e["field"] == "password"));
    assert!(msgs.iter().any(|m| m.contains("at least 12")), "{msgs:?}");
    assert!(msgs.iter().any(|m| m.contains("email")), "{msgs:?}");
    assert!(msgs.iter().any(|m| m.contains("common")), "{msgs:?}");
    assert!(s.keys().await.is_empty());
}

#[tokio::test]
async fn given_any_response_then_request_id_is_echoed_or_fresh_and_errors_quote_it() {
    let s = start(|_| {}).await;
    let r = s.http.get(s.url("/health")).header("x-request-id", "client-abc.123").send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_common_headers(&r);
    assert_eq!(r.headers()["x-request-id"], "client-abc.123");
    let r = s.http.get(s.url("/health")).header("x-request-id", "bad id with spaces").send().await.unwrap();
    assert_ne!(r.headers()["x-request-id"], "bad id with spaces");
    let r = s.http.get(s.url("/nope")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_common_headers(&r);
    let id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    let p = problem(r).await;
    assert_eq!(p["request_id"], id);
    let r = s.http.delete(s.url("/auth/signup")).send().await.unwrap();
    assert_eq!(r.status(), 405);
    assert_common_headers(&r);
    problem(r).await;
    let r = s.http.get(s.url("/health")).send().await.unwrap();
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"status": "ok"}));
}
