//! docs/security.md as these endpoints face it: enumeration, brute force, token misuse, session
//! version, client IP.

use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use e2e::*;
use serde_json::{Value, json};

#[tokio::test]
async fn given_unknown_email_or_wrong_password_or_locked_then_login_answers_identically() {
    let s = start(|c| c.lockout.threshold = 3).await;
    let email = unique_email();
    s.verified_user(&email).await;
    let wrong = fingerprint(s.post("/auth/login", json!({"email": email, "password": "wrong-password-1"})).await).await;
    let unknown =
        fingerprint(s.post("/auth/login", json!({"email": unique_email(), "password": "wrong-password-1"})).await)
            .await;
    assert_eq!(wrong.0, 401);
    assert_eq!(wrong, unknown);
    assert_eq!(wrong.2["type"], "urn:secure-auth:problem:invalid-credentials");
    assert_eq!(wrong.2["error"], "invalid_grant");
    assert!(wrong.1.contains(&("www-authenticate".into(), r#"Bearer realm="secure-auth""#.into())));
    // Lock it (two more failures), then the right password gets the very same answer.
    for _ in 0..2 {
        s.post("/auth/login", json!({"email": email, "password": "wrong-password-1"})).await;
    }
    let locked = fingerprint(s.post("/auth/login", json!({"email": email, "password": PASSWORD})).await).await;
    assert_eq!(locked, wrong);
}

#[tokio::test]
async fn given_threshold_failures_then_account_locks_owner_is_mailed_once_and_unknown_accounts_lock_alike() {
    let s = start(|c| c.lockout.threshold = 3).await;
    let email = unique_email();
    s.verified_user(&email).await;
    for _ in 0..5 {
        assert_eq!(s.post("/auth/login", json!({"email": email, "password": "wrong-password-1"})).await.status(), 401);
    }
    assert_eq!(s.post("/auth/login", json!({"email": email, "password": PASSWORD})).await.status(), 401);
    let locks: Vec<_> = mails_to(&email).await.into_iter().filter(|m| m.subject.contains("locked")).collect();
    assert_eq!(locks.len(), 1, "{locks:?}");
    assert!(locks[0].body.contains("15 minutes"));
    // A lock item exists for the unknown address too (counted whether or not it exists).
    let ghost = unique_email();
    for _ in 0..3 {
        s.post("/auth/login", json!({"email": ghost, "password": "wrong-password-1"})).await;
    }
    let sks: Vec<String> = s
        .items()
        .await
        .iter()
        .filter(|i| i["pk"].as_s().unwrap() == &format!("LOCK#{ghost}"))
        .map(|i| i["sk"].as_s().unwrap().clone())
        .collect();
    assert!(sks.contains(&"LOCK".to_owned()) && sks.contains(&"IP#127.0.0.1".to_owned()), "{sks:?}");
}

#[tokio::test]
async fn given_success_before_threshold_then_the_count_resets() {
    let s = start(|c| c.lockout.threshold = 3).await;
    let email = unique_email();
    s.verified_user(&email).await;
    for _ in 0..2 {
        s.post("/auth/login", json!({"email": email, "password": "wrong-password-1"})).await;
    }
    s.login(&email, PASSWORD).await;
    for _ in 0..2 {
        s.post("/auth/login", json!({"email": email, "password": "wrong-password-1"})).await;
    }
    s.login(&email, PASSWORD).await;
}

#[tokio::test]
async fn given_50_concurrent_wrong_passwords_then_the_account_is_locked_and_one_mail_sent() {
    let s = start(|_| {}).await;
    let email = unique_email();
    s.verified_user(&email).await;
    let rs = futures::future::join_all(
        (0..50).map(|_| s.post("/auth/login", json!({"email": email, "password": "wrong-password-1"}))),
    )
    .await;
    assert!(rs.iter().all(|r| r.status() == 401));
    assert_eq!(s.post("/auth/login", json!({"email": email, "password": PASSWORD})).await.status(), 401);
    assert_eq!(mails_to(&email).await.iter().filter(|m| m.subject.contains("locked")).count(), 1);
}

#[tokio::test]
async fn given_eight_concurrent_correct_logins_for_twenty_rounds_then_all_answer_200_and_no_mail_is_sent() {
    let s = start(|_| {}).await;
    let email = unique_email();
    s.verified_user(&email).await;
    let before = mails_to(&email).await.len();
    for round in 0..20 {
        let rs = futures::future::join_all(
            (0..8).map(|_| s.post("/auth/login", json!({"email": email, "password": PASSWORD}))),
        )
        .await;
        let statuses: Vec<u16> = rs.iter().map(|r| r.status().as_u16()).collect();
        assert!(statuses.iter().all(|st| *st == 200), "round {round}: {statuses:?}");
    }
    assert_eq!(mails_to(&email).await.len(), before, "no lock notice");
}

#[tokio::test]
async fn given_taken_address_then_signup_answers_the_same_and_mails_the_owner() {
    let s = start(|c| c.enumeration_floor = Duration::from_millis(300)).await;
    let email = unique_email();
    let t0 = Instant::now();
    let first = fingerprint(s.post("/auth/signup", json!({"email": email, "password": PASSWORD})).await).await;
    let first_took = t0.elapsed();
    // The owner verifies: the address is now taken by a verified account.
    let token = token_from_mail(&email, "verify").await;
    assert_eq!(s.post("/auth/verify-email", json!({"token": token, "password": PASSWORD})).await.status(), 200);
    let t0 = Instant::now();
    let again =
        fingerprint(s.post("/auth/signup", json!({"email": email, "password": "another-long-passphrase-9"})).await)
            .await;
    let again_took = t0.elapsed();
    assert_eq!(first, again);
    assert_eq!(first.0, 202);
    // Both answers wait for the same floor, whichever branch ran.
    assert!(first_took >= Duration::from_millis(300) && again_took >= Duration::from_millis(300));
    let mails = mails_to(&email).await;
    assert_eq!(mails.len(), 2);
    assert!(mails[1].subject.contains("sign-up attempt"), "{mails:?}");
    assert!(!mails[1].body.contains("token="));
    let keys = s.keys().await;
    assert_eq!(keys.iter().filter(|k| k.starts_with("USER#")).count(), 1, "one profile, the token spent: {keys:?}");
    assert_eq!(keys.iter().filter(|k| k.starts_with("EMAIL#")).count(), 1);
}

#[tokio::test]
async fn given_non_access_tokens_or_forged_jwts_then_bearer_endpoints_refuse_them() {
    let s = start(|_| {}).await;
    let email = unique_email();
    s.verified_user(&email).await;
    let t = s.login(&email, PASSWORD).await;
    let access = t["access_token"].as_str().unwrap();
    let parts: Vec<&str> = access.split('.').collect();
    let header: Value = serde_json::from_slice(&B64.decode(parts[0]).unwrap()).unwrap();
    let none_header = B64.encode(json!({"alg": "none", "typ": "at+jwt", "kid": header["kid"]}).to_string());
    let jku_header =
        B64.encode(json!({"alg": "ES256", "typ": "at+jwt", "kid": header["kid"], "jku": "http://evil/"}).to_string());
    let candidates = [
        t["refresh_token"].as_str().unwrap().to_owned(),
        format!("{none_header}.{}.", parts[1]),
        format!("{jku_header}.{}.{}", parts[1], parts[2]),
        format!("{}.{}.{}", parts[0], parts[1], "AAAA"),
        "not-a-token".to_owned(),
    ];
    for bad in candidates {
        let r = s.get_bearer("/auth/me", &bad).await;
        assert_eq!(r.status(), 401, "{bad}");
        assert_eq!(r.headers()["www-authenticate"], r#"Bearer realm="secure-auth", error="invalid_token""#);
        assert_eq!(problem(r).await["type"], "urn:secure-auth:problem:unauthorized");
    }
    // No token at all: 401 without error="invalid_token".
    let r = s.http.get(s.url("/auth/me")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], r#"Bearer realm="secure-auth""#);
    // Access tokens are never read from the query string.
    let r = s.http.get(s.url(&format!("/auth/me?access_token={access}"))).send().await.unwrap();
    assert_eq!(r.status(), 401);
    // The real one still works.
    assert_eq!(s.get_bearer("/auth/me", access).await.status(), 200);
}

#[tokio::test]
async fn given_session_version_bumped_then_older_access_tokens_stop_working() {
    let s = start(|_| {}).await;
    let email = unique_email();
    s.verified_user(&email).await;
    let t = s.login(&email, PASSWORD).await;
    let access = t["access_token"].as_str().unwrap();
    let me: Value = s.get_bearer("/auth/me", access).await.json().await.unwrap();
    let id = me["id"].as_str().unwrap();
    s.ddb
        .update_item()
        .table_name(&s.table)
        .key("pk", aws_sdk_dynamodb::types::AttributeValue::S(format!("USER#{id}")))
        .key("sk", aws_sdk_dynamodb::types::AttributeValue::S("PROFILE".into()))
        .update_expression("SET sv = sv + :one")
        .expression_attribute_values(":one", aws_sdk_dynamodb::types::AttributeValue::N("1".into()))
        .send()
        .await
        .unwrap();
    let r = s.get_bearer("/auth/me", access).await;
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], r#"Bearer realm="secure-auth", error="invalid_token""#);
    // A fresh login carries the new version.
    let t = s.login(&email, PASSWORD).await;
    assert_eq!(s.get_bearer("/auth/me", t["access_token"].as_str().unwrap()).await.status(), 200);
}

#[tokio::test]
async fn given_spoofed_x_forwarded_for_then_the_session_records_the_real_peer() {
    let s = start(|_| {}).await;
    let email = unique_email();
    s.verified_user(&email).await;
    let r = s
        .http
        .post(s.url("/auth/login"))
        .header("x-forwarded-for", "203.0.113.66")
        .header("user-agent", "probe/1.0")
        .json(&json!({"email": email, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let items = s.items().await;
    let session = items
        .iter()
        .find(|i| i.get("sk").and_then(|v| v.as_s().ok()).is_some_and(|v| v.starts_with("SESSION#")))
        .expect("session item");
    assert_eq!(session["ip"].as_s().unwrap(), "127.0.0.1");
    assert_eq!(session["user_agent"].as_s().unwrap(), "probe/1.0");
    // Only hashes are stored: the refresh secret itself appears nowhere in the table.
    let t: Value = r.json().await.unwrap();
    let secret = t["refresh_token"].as_str().unwrap().rsplit('.').next().unwrap().to_owned();
    assert!(!format!("{items:?}").contains(&secret));
}

#[tokio::test]
async fn given_weaker_stored_hash_then_login_upgrades_it() {
    let s = start(|c| c.hash = shared::config::HashParams { m_kib: 512, t: 1, p: 1 }).await;
    let email = unique_email();
    s.verified_user(&email).await;
    let weak = {
        let h = shared::password::Hasher::new(shared::config::HashParams::TEST, 1);
        h.hash(&shared::secret::Password::new(PASSWORD)).await.unwrap()
    };
    let items = s.items().await;
    let profile = items.iter().find(|i| i["sk"].as_s().unwrap() == "PROFILE").unwrap();
    s.ddb
        .update_item()
        .table_name(&s.table)
        .key("pk", profile["pk"].clone())
        .key("sk", profile["sk"].clone())
        .update_expression("SET password_hash = :h")
        .expression_attribute_values(":h", aws_sdk_dynamodb::types::AttributeValue::S(weak.clone()))
        .send()
        .await
        .unwrap();
    s.login(&email, PASSWORD).await;
    let items = s.items().await;
    let profile = items.iter().find(|i| i["sk"].as_s().unwrap() == "PROFILE").unwrap();
    let now = profile["password_hash"].as_s().unwrap();
    assert!(now.contains("m=512"), "{now}");
    s.login(&email, PASSWORD).await;
}
