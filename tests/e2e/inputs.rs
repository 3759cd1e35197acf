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
        (
            "/auth/verify-email",
            "application/json",
            json!({"token": "../../etc", "password": PASSWORD}).to_string(),
            400,
            "invalid-token",
        ),
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

#[tokio::test]
async fn given_padded_or_differently_normalized_passwords_then_they_are_taken_exactly_as_sent() {
    let s = start(|_| {}).await;
    let email = unique_email();
    // Signed up with padding and a decomposed é: both are part of the password.
    let padded = "  violet-tractor-e\u{301}te-42 ";
    let r = s.post("/auth/signup", json!({"email": email, "password": padded})).await;
    assert_eq!(r.status(), 202);
    let token = token_from_mail(&email, "verify").await;
    assert_eq!(s.post("/auth/verify-email", json!({"token": token, "password": padded})).await.status(), 200);
    let login = |pw: &str| s.post("/auth/login", json!({"email": email, "password": pw}));
    assert_eq!(login(padded).await.status(), 200);
    assert_eq!(login(padded.trim()).await.status(), 401, "padding is not trimmed");
    assert_eq!(login("  violet-tractor-\u{e9}te-42 ").await.status(), 401, "no Unicode normalization");
}

#[tokio::test]
async fn given_password_lengths_at_the_boundaries_then_12_to_128_pass_and_the_rest_are_refused_before_hashing() {
    let s = start(|_| {}).await;
    let strong = |n: usize| -> String { "Vq7#mZ2!pL9xKw4$".chars().cycle().take(n).collect() };
    for (len, ok) in [(11, false), (12, true), (64, true), (128, true), (129, false), (4096, false)] {
        let email = unique_email();
        let r = s.post("/auth/signup", json!({"email": email, "password": strong(len)})).await;
        assert_eq!(r.status() == 202, ok, "a {len}-character password: {}", r.status());
        if !ok {
            let p = problem(r).await;
            assert_eq!(p["errors"][0]["field"], "password", "{p}");
            assert!(!s.keys().await.contains(&format!("EMAIL#{email}")), "nothing written for {len}");
        }
    }
    // A login password far beyond the policy (16,000 characters, inside the body limit) is
    // an ordinary wrong password.
    let r = s.post("/auth/login", json!({"email": unique_email(), "password": "x".repeat(16_000)})).await;
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn given_lookalike_addresses_then_mail_goes_only_to_the_stored_address() {
    let s = start(|_| {}).await;
    let local = format!("mike{}", uuid::Uuid::new_v4().simple());
    let email = format!("{local}@example.com");
    s.verified_user(&email).await;
    let before = mails_to(&email).await.len();
    // A dotless ı is another letter: no account, no mail to anyone.
    let dotless = format!("{}@example.com", local.replacen('i', "\u{131}", 1));
    assert_eq!(s.post("/auth/forgot-password", json!({"email": dotless})).await.status(), 202);
    assert!(mails_to(&dotless).await.is_empty());
    assert_eq!(mails_to(&email).await.len(), before);
    // A fullwidth spelling folds to the real address: the mail goes to the stored address only.
    let fullwidth: String = local.chars().map(|c| char::from_u32(c as u32 + 0xFEE0).unwrap_or(c)).collect();
    let r = s.post("/auth/forgot-password", json!({"email": format!("{fullwidth}@example.com")})).await;
    assert_eq!(r.status(), 202);
    let mails = mails_to(&email).await;
    assert_eq!(mails.len(), before + 1);
    assert!(mails.last().unwrap().to.iter().all(|t| t == &email));
}

#[tokio::test]
async fn given_spoofed_host_headers_then_neither_mail_links_nor_discovery_use_them() {
    let s = start(|_| {}).await;
    let email = unique_email();
    let r = s
        .http
        .post(s.url("/auth/signup"))
        .header("host", "evil.example")
        .header("x-forwarded-host", "evil.example")
        .header("forwarded", "host=evil.example;proto=https")
        .json(&json!({"email": email, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let mail = &mails_to(&email).await[0];
    assert!(mail.body.contains(&format!("{}/auth/verify-email?token=", s.base)));
    assert!(!mail.body.contains("evil.example"));
    let d: Value = s
        .http
        .get(s.url("/.well-known/openid-configuration"))
        .header("x-forwarded-host", "evil.example")
        .header("forwarded", "host=evil.example")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(!d.to_string().contains("evil.example"), "{d}");
    assert_eq!(d["issuer"], s.base);
}

#[tokio::test]
async fn given_malformed_paths_and_queries_then_every_rejection_is_a_problem() {
    let s = start_with_admin(&unique_email()).await;
    let email = unique_email();
    s.verified_user(&email).await;
    let t = s.login(&email, PASSWORD).await;
    let access = t["access_token"].as_str().unwrap();
    // A path that does not decode.
    let r = s.http.delete(s.url("/auth/sessions/%FF")).bearer_auth(access).send().await.unwrap();
    assert_eq!(r.status(), 400);
    problem(r).await;
    // A repeated parameter on a mail page.
    let r = s.http.get(s.url("/auth/verify-email?token=a&token=b")).send().await.unwrap();
    assert_eq!(r.status(), 400);
    problem(r).await;
    // Over-long ids are no ids: 404 at once (DynamoDB would refuse such a key: 503).
    let long = "a".repeat(2048);
    let r = s.http.delete(s.url(&format!("/auth/sessions/{long}"))).bearer_auth(access).send().await.unwrap();
    assert_eq!(r.status(), 404);
    problem(r).await;
    let admin = s.login(s.admin_email.as_deref().unwrap(), PASSWORD).await;
    let r = s.get_bearer(&format!("/users/{long}"), admin["access_token"].as_str().unwrap()).await;
    assert_eq!(r.status(), 404);
    problem(r).await;
    let r = s.get_bearer("/users?limit=abc", admin["access_token"].as_str().unwrap()).await;
    assert_eq!(r.status(), 400);
    problem(r).await;
}

#[tokio::test]
async fn given_a_valid_token_without_the_admin_scope_then_403_names_insufficient_scope() {
    let s = start(|_| {}).await;
    let email = unique_email();
    s.verified_user(&email).await;
    let t = s.login(&email, PASSWORD).await;
    let r = s.get_bearer("/users", t["access_token"].as_str().unwrap()).await;
    assert_eq!(r.status(), 403);
    assert_eq!(r.headers()["www-authenticate"], r#"Bearer realm="secure-auth", error="insufficient_scope""#);
    problem(r).await;
}

#[tokio::test]
async fn given_a_client_request_id_then_it_is_echoed_but_problems_quote_the_servers_own() {
    let s = start(|_| {}).await;
    let r = s.http.get(s.url("/nope")).header("x-request-id", "client-chosen-1").send().await.unwrap();
    assert_eq!(r.headers()["x-request-id"], "client-chosen-1");
    let p = problem(r).await;
    let server_id = p["request_id"].as_str().unwrap();
    assert_ne!(server_id, "client-chosen-1");
    assert!(uuid::Uuid::parse_str(server_id).is_ok(), "{server_id}");
}
