//! The core flow: sign-up → mail → verify → login → me → refresh → replay → logout.

use std::time::Duration;

use e2e::*;
use serde_json::{Value, json};

#[tokio::test]
async fn given_new_user_when_walking_the_whole_flow_then_every_step_answers_as_api_md_says() {
    let s = start(|c| c.refresh_grace = Duration::from_secs(0)).await;
    let email = unique_email();

    // Sign-up: 202, a verification mail with a link to PUBLIC_BASE_URL.
    let r = s.post("/auth/signup", json!({"email": email.to_uppercase(), "password": PASSWORD, "name": "Ada"})).await;
    assert_eq!(r.status(), 202);
    assert_common_headers(&r);
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"status": "verification_pending"}));
    let mails = mails_to(&email).await;
    assert_eq!(mails.len(), 1, "{mails:?}");
    assert!(mails[0].body.contains(&format!("{}/auth/verify-email?token=", s.base)));

    // Login before verification with the right password: the wrong password's 401, and a
    // fresh link in the mailbox.
    let r = s.post("/auth/login", json!({"email": email, "password": PASSWORD})).await;
    assert_eq!(r.status(), 401);
    assert_eq!(problem(r).await["type"], "urn:secure-auth:problem:invalid-credentials");
    assert_eq!(mails_to(&email).await.len(), 2, "a fresh verification link");

    // Verify (single use).
    let token = token_from_mail(&email, "verify").await;
    let r = s.post("/auth/verify-email", json!({"token": token, "password": PASSWORD})).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"status": "verified"}));
    let r = s.post("/auth/verify-email", json!({"token": token, "password": PASSWORD})).await;
    assert_eq!(r.status(), 400);
    assert_eq!(problem(r).await["type"], "urn:secure-auth:problem:invalid-token");

    // Login: RFC 6749 token response.
    let r = s.post("/auth/login", json!({"email": email, "password": PASSWORD})).await;
    assert_eq!(r.status(), 200);
    assert_common_headers(&r);
    let t: Value = r.json().await.unwrap();
    assert_eq!(t["token_type"], "Bearer");
    assert_eq!(t["expires_in"], 900);
    assert_eq!(t["refresh_token_expires_in"], 7 * 24 * 3600);
    assert_eq!(t["scope"], "openid profile email");
    let access = t["access_token"].as_str().unwrap();
    let refresh1 = t["refresh_token"].as_str().unwrap().to_owned();

    // Me.
    let r = s.get_bearer("/auth/me", access).await;
    assert_eq!(r.status(), 200);
    assert_common_headers(&r);
    let me: Value = r.json().await.unwrap();
    assert_eq!(me["email"], email);
    assert_eq!(me["name"], "Ada");
    assert_eq!(me["is_verified"], true);
    assert_eq!(me["is_superuser"], false);
    assert!(me["last_login_at"].as_str().unwrap().ends_with('Z'));
    let keys: Vec<&String> = me.as_object().unwrap().keys().collect();
    assert_eq!(me["mfa_enabled"], false);
    assert_eq!(keys.len(), 10, "exactly the user object's fields: {keys:?}");

    // PATCH me: name only.
    let r = s.http.patch(s.url("/auth/me")).bearer_auth(access).json(&json!({"name": "Ada L."})).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["name"], "Ada L.");
    let r = s
        .http
        .patch(s.url("/auth/me"))
        .bearer_auth(access)
        .json(&json!({"email": "x@example.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    // Refresh rotates.
    let r = s.post("/auth/refresh", json!({"refresh_token": refresh1})).await;
    assert_eq!(r.status(), 200);
    let t2: Value = r.json().await.unwrap();
    let refresh2 = t2["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(refresh1, refresh2);
    assert_eq!(s.get_bearer("/auth/me", t2["access_token"].as_str().unwrap()).await.status(), 200);

    // Replay of the rotated token after the grace window: reuse detected, session revoked.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = s.post("/auth/refresh", json!({"refresh_token": refresh1})).await;
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], r#"Bearer realm="secure-auth""#);
    let p = problem(r).await;
    assert_eq!(p["error"], "invalid_grant");
    let r = s.post("/auth/refresh", json!({"refresh_token": refresh2})).await;
    assert_eq!(r.status(), 401, "the whole family is revoked after reuse");

    // Logout of a fresh session: 204, then its refresh token is dead.
    let t3 = s.login(&email, PASSWORD).await;
    let r = s.post("/auth/logout", json!({"refresh_token": t3["refresh_token"]})).await;
    assert_eq!(r.status(), 204);
    assert_eq!(s.post("/auth/refresh", json!({"refresh_token": t3["refresh_token"]})).await.status(), 401);
    // Unknown or malformed tokens: still 204 (RFC 7009).
    assert_eq!(s.post("/auth/logout", json!({"refresh_token": "garbage"})).await.status(), 204);
    assert_eq!(s.post("/auth/logout", json!({"refresh_token": t3["refresh_token"]})).await.status(), 204);
}

#[tokio::test]
async fn given_concurrent_refreshes_with_one_token_then_all_get_the_one_successor_and_the_session_survives() {
    let s = start(|_| {}).await;
    let email = unique_email();
    s.verified_user(&email).await;
    let t = s.login(&email, PASSWORD).await;
    let rt = t["refresh_token"].as_str().unwrap().to_owned();
    let responses =
        futures::future::join_all((0..8).map(|_| s.post("/auth/refresh", json!({"refresh_token": rt})))).await;
    let mut successors = std::collections::HashSet::new();
    let mut access = std::collections::HashSet::new();
    for r in responses {
        assert_eq!(r.status(), 200, "nobody loses a concurrent refresh");
        let v: Value = r.json().await.unwrap();
        successors.insert(v["refresh_token"].as_str().unwrap().to_owned());
        access.insert(v["access_token"].as_str().unwrap().to_owned());
    }
    assert_eq!(successors.len(), 1, "never a second live successor: {successors:?}");
    assert!(!access.is_empty());
    let next = successors.into_iter().next().unwrap();
    assert_eq!(s.post("/auth/refresh", json!({"refresh_token": next})).await.status(), 200);
}

#[tokio::test]
async fn given_a_refresh_whose_answer_was_lost_then_its_retry_gets_the_same_successor_and_the_session_lives() {
    let s = start(|_| {}).await;
    let email = unique_email();
    s.verified_user(&email).await;
    let t = s.login(&email, PASSWORD).await;
    let rt = t["refresh_token"].as_str().unwrap().to_owned();
    // The first answer never reaches the client; it sends the same request again.
    let lost: Value = s.post("/auth/refresh", json!({"refresh_token": rt})).await.json().await.unwrap();
    let retry = s.post("/auth/refresh", json!({"refresh_token": rt})).await;
    assert_eq!(retry.status(), 200);
    let retry: Value = retry.json().await.unwrap();
    assert_eq!(retry["refresh_token"], lost["refresh_token"]);
    let items = s.items().await;
    assert_eq!(items.iter().filter(|i| i["sk"].as_s().is_ok_and(|k| k.starts_with("SESSION#"))).count(), 1);
    assert_eq!(s.post("/auth/refresh", json!({"refresh_token": retry["refresh_token"]})).await.status(), 200);
}

#[tokio::test]
async fn given_token_endpoint_then_password_and_refresh_grants_work_form_encoded_and_json() {
    let s = start(|_| {}).await;
    let email = unique_email();
    s.verified_user(&email).await;
    let form = format!("grant_type=password&username={}&password={PASSWORD}", email.replace('@', "%40"));
    let r = s.post_raw("/auth/token", "application/x-www-form-urlencoded", form).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let t: Value = r.json().await.unwrap();
    let r = s.post("/auth/token", json!({"grant_type": "refresh_token", "refresh_token": t["refresh_token"]})).await;
    assert_eq!(r.status(), 200);
    let t2: Value = r.json().await.unwrap();
    let form = format!("grant_type=refresh_token&refresh_token={}", t2["refresh_token"].as_str().unwrap());
    assert_eq!(s.post_raw("/auth/token", "application/x-www-form-urlencoded", form).await.status(), 200);

    let r = s.post_raw("/auth/token", "application/x-www-form-urlencoded", "grant_type=client_credentials").await;
    assert_eq!(r.status(), 400);
    assert_eq!(problem(r).await["error"], "unsupported_grant_type");
    let r =
        s.post_raw("/auth/token", "application/x-www-form-urlencoded", "grant_type=password&username=a%40b.co").await;
    assert_eq!(r.status(), 400);
    assert_eq!(problem(r).await["error"], "invalid_request");
    let r =
        s.post_raw("/auth/token", "application/x-www-form-urlencoded", "grant_type=password&grant_type=password").await;
    assert_eq!(r.status(), 400);
    let form = format!("grant_type=password&username={}&password=wrong-password-here", email.replace('@', "%40"));
    let r = s.post_raw("/auth/token", "application/x-www-form-urlencoded", form).await;
    assert_eq!(r.status(), 401);
    let p = problem(r).await;
    assert_eq!(
        (p["error"].as_str(), p["type"].as_str()),
        (Some("invalid_grant"), Some("urn:secure-auth:problem:invalid-credentials"))
    );
}

#[tokio::test]
async fn given_resend_then_same_answer_for_every_account_state_and_the_old_link_dies() {
    let s = start(|_| {}).await;
    let unverified = unique_email();
    let verified = unique_email();
    let unknown = unique_email();
    s.post("/auth/signup", json!({"email": unverified, "password": PASSWORD})).await;
    s.verified_user(&verified).await;
    let first = token_from_mail(&unverified, "verify").await;
    let mut bodies = Vec::new();
    for e in [&unverified, &verified, &unknown] {
        let r = s.post("/auth/resend-verification", json!({"email": e})).await;
        assert_eq!(r.status(), 202);
        bodies.push(r.text().await.unwrap());
    }
    assert!(bodies.windows(2).all(|w| w[0] == w[1]), "{bodies:?}");
    assert_eq!(mails_to(&unverified).await.len(), 2);
    assert_eq!(mails_to(&verified).await.len(), 1, "a verified account gets nothing");
    assert!(mails_to(&unknown).await.is_empty());
    let second = token_from_mail(&unverified, "verify").await;
    assert_ne!(first, second);
    assert_eq!(
        s.post("/auth/verify-email", json!({"token": first, "password": PASSWORD})).await.status(),
        400,
        "a newer link replaces the older"
    );
    assert_eq!(s.post("/auth/verify-email", json!({"token": second, "password": PASSWORD})).await.status(), 200);
}

#[tokio::test]
async fn given_a_token_several_rotations_old_when_replayed_then_the_whole_session_is_revoked() {
    let s = start(|c| c.refresh_grace = Duration::from_secs(0)).await;
    let email = unique_email();
    s.verified_user(&email).await;
    let first = s.login(&email, PASSWORD).await["refresh_token"].as_str().unwrap().to_owned();
    let mut latest = first.clone();
    for _ in 0..3 {
        let r = s.post("/auth/refresh", json!({"refresh_token": latest})).await;
        assert_eq!(r.status(), 200);
        latest = r.json::<Value>().await.unwrap()["refresh_token"].as_str().unwrap().to_owned();
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = s.post("/auth/refresh", json!({"refresh_token": first})).await;
    assert_eq!(r.status(), 401);
    assert_eq!(problem(r).await["error"], "invalid_grant");
    assert_eq!(
        s.post("/auth/refresh", json!({"refresh_token": latest})).await.status(),
        401,
        "reuse revoked the family"
    );
}
