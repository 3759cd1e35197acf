//! Account lifecycle: password reset and change, email change, sessions, and the
//! scanner-safe pages mail links open.

use std::time::{Duration, Instant};

use e2e::*;
use serde_json::{Value, json};

const NEW_PASSWORD: &str = "amber-lantern-orchard-77";

async fn bearer_post(s: &TestServer, path: &str, token: &str, body: Value) -> reqwest::Response {
    s.http.post(s.url(path)).bearer_auth(token).json(&body).send().await.unwrap()
}

fn at(t: &Value) -> &str {
    t["access_token"].as_str().unwrap()
}

fn rt(t: &Value) -> &str {
    t["refresh_token"].as_str().unwrap()
}

fn assert_page_headers(r: &reqwest::Response) {
    let h = r.headers();
    assert_eq!(h["content-type"], "text/html; charset=utf-8");
    assert_eq!(h["referrer-policy"], "no-referrer");
    assert_eq!(h["cache-control"], "no-store");
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("form-action 'self'") && !csp.contains("script-src"),
        "{csp}"
    );
}

#[tokio::test]
async fn given_forgot_and_reset_then_the_password_changes_every_session_dies_and_lockout_clears() {
    let s = start(|c| c.lockout.threshold = 3).await;
    let email = unique_email();
    s.verified_user(&email).await;
    let t = s.login(&email, PASSWORD).await;
    for _ in 0..3 {
        s.post("/auth/login", json!({"email": email, "password": "wrong-password-1"})).await;
    }
    assert_eq!(s.post("/auth/login", json!({"email": email, "password": PASSWORD})).await.status(), 401, "locked");

    assert_eq!(s.post("/auth/forgot-password", json!({"email": email})).await.status(), 202);
    let mail = mails_to(&email).await.into_iter().last().unwrap();
    assert!(mail.subject.contains("reset"), "{mail:?}");
    assert!(mail.body.contains(&format!("{}/auth/reset-password?token=", s.base)));
    let token = token_from_mail(&email, "reset").await;

    // The page a mail scanner would fetch changes nothing, however often it is fetched.
    for _ in 0..2 {
        let r = s.http.get(s.url(&format!("/auth/reset-password?token={token}"))).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_page_headers(&r);
        let html = r.text().await.unwrap();
        assert!(
            html.contains("method=\"post\"")
                && html.contains("action=\"/auth/reset-password\"")
                && html.contains("type=\"password\"")
        );
    }
    // A weak password is refused without spending the token.
    let r = s.post("/auth/reset-password", json!({"token": token, "new_password": "password"})).await;
    assert_eq!(r.status(), 400);
    assert_eq!(problem(r).await["errors"][0]["field"], "new_password");
    // Two concurrent confirmations: exactly one wins.
    let (a, b) = tokio::join!(
        s.post("/auth/reset-password", json!({"token": token, "new_password": NEW_PASSWORD})),
        s.post("/auth/reset-password", json!({"token": token, "new_password": NEW_PASSWORD})),
    );
    let mut statuses = [a.status().as_u16(), b.status().as_u16()];
    statuses.sort_unstable();
    assert_eq!(statuses, [204, 400]);

    assert_eq!(s.get_bearer("/auth/me", at(&t)).await.status(), 401, "old access tokens die");
    assert_eq!(s.post("/auth/refresh", json!({"refresh_token": rt(&t)})).await.status(), 401, "sessions die");
    assert_eq!(s.post("/auth/login", json!({"email": email, "password": PASSWORD})).await.status(), 401);
    s.login(&email, NEW_PASSWORD).await; // and the lock is gone
    assert!(mails_to(&email).await.iter().any(|m| m.subject.contains("password was changed")));
    assert!(!s.items().await.iter().any(|i| i["sk"].as_s().unwrap().starts_with("OTT#RESET")), "the token is gone");
}

#[tokio::test]
async fn given_known_or_unknown_address_then_forgot_password_answers_the_same_in_the_same_floor() {
    let s = start(|c| c.enumeration_floor = Duration::from_millis(250)).await;
    let known = unique_email();
    s.verified_user(&known).await;
    let mut answers = Vec::new();
    for email in [known.clone(), unique_email()] {
        let t0 = Instant::now();
        let r = s.post("/auth/forgot-password", json!({"email": email})).await;
        let took = t0.elapsed();
        assert!(took >= Duration::from_millis(250), "{took:?}");
        answers.push((r.status(), r.text().await.unwrap()));
    }
    assert_eq!(answers[0], answers[1]);
    assert_eq!(answers[0].0, 202);
}

#[tokio::test]
async fn given_a_password_change_then_the_callers_session_survives_and_every_other_dies() {
    let s = start(|_| {}).await;
    let email = unique_email();
    s.verified_user(&email).await;
    let mine = s.login(&email, PASSWORD).await;
    let other = s.login(&email, PASSWORD).await;
    let r = bearer_post(
        &s,
        "/auth/change-password",
        at(&mine),
        json!({"current_password": "wrong-password-1", "new_password": NEW_PASSWORD}),
    )
    .await;
    assert_eq!(r.status(), 400);
    assert_eq!(problem(r).await["errors"][0]["field"], "current_password");
    let r = bearer_post(
        &s,
        "/auth/change-password",
        at(&mine),
        json!({"current_password": PASSWORD, "new_password": "short"}),
    )
    .await;
    assert_eq!(r.status(), 400);
    let r = bearer_post(
        &s,
        "/auth/change-password",
        at(&mine),
        json!({"current_password": PASSWORD, "new_password": NEW_PASSWORD}),
    )
    .await;
    assert_eq!(r.status(), 204);
    // Every older access token stops working, the caller's included (session version).
    assert_eq!(s.get_bearer("/auth/me", at(&mine)).await.status(), 401);
    assert_eq!(s.get_bearer("/auth/me", at(&other)).await.status(), 401);
    // The caller's session lives on: its refresh token yields a working pair.
    let r = s.post("/auth/refresh", json!({"refresh_token": rt(&mine)})).await;
    assert_eq!(r.status(), 200);
    let fresh: Value = r.json().await.unwrap();
    assert_eq!(s.get_bearer("/auth/me", at(&fresh)).await.status(), 200);
    assert_eq!(s.post("/auth/refresh", json!({"refresh_token": rt(&other)})).await.status(), 401);
    s.login(&email, NEW_PASSWORD).await;
    assert!(mails_to(&email).await.iter().any(|m| m.subject.contains("password was changed")));
}

#[tokio::test]
async fn given_an_email_change_then_the_link_goes_to_the_new_address_the_old_is_told_and_the_claim_moves() {
    let s = start(|_| {}).await;
    let old = unique_email();
    let new = unique_email();
    s.verified_user(&old).await;
    let t = s.login(&old, PASSWORD).await;
    let r = bearer_post(
        &s,
        "/auth/change-email",
        at(&t),
        json!({"current_password": "wrong-password-1", "new_email": new}),
    )
    .await;
    assert_eq!(r.status(), 400);
    let r = bearer_post(
        &s,
        "/auth/change-email",
        at(&t),
        json!({"current_password": PASSWORD, "new_email": new.to_uppercase()}),
    )
    .await;
    assert_eq!(r.status(), 202);
    assert!(
        mails_to(&old)
            .await
            .iter()
            .any(|m| m.subject.contains("email change requested") && m.body.contains("reset your password"))
    );
    let token = token_from_mail(&new, "confirm your new email").await;
    let r = s.http.get(s.url(&format!("/auth/confirm-email-change?token={token}"))).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_page_headers(&r);
    let r = s.post("/auth/confirm-email-change", json!({"token": token})).await;
    assert_eq!(r.status(), 200);
    let user: Value = r.json().await.unwrap();
    assert_eq!(user["email"], new);
    assert_eq!(s.post("/auth/confirm-email-change", json!({"token": token})).await.status(), 400, "single use");
    assert_eq!(s.get_bearer("/auth/me", at(&t)).await.status(), 401, "tokens naming the old address die");
    assert_eq!(s.post("/auth/login", json!({"email": old, "password": PASSWORD})).await.status(), 401);
    s.login(&new, PASSWORD).await;
    assert!(mails_to(&old).await.iter().any(|m| m.subject.contains("sign-in address was changed")));
    let keys = s.keys().await;
    assert!(keys.contains(&format!("EMAIL#{new}")) && !keys.contains(&format!("EMAIL#{old}")), "{keys:?}");
}

#[tokio::test]
async fn given_a_taken_new_address_then_the_request_looks_the_same_and_confirmation_fails_cleanly() {
    let s = start(|_| {}).await;
    let mover = unique_email();
    let taken = unique_email();
    let free = unique_email();
    s.verified_user(&mover).await;
    s.verified_user(&taken).await;
    let t = s.login(&mover, PASSWORD).await;
    let a =
        bearer_post(&s, "/auth/change-email", at(&t), json!({"current_password": PASSWORD, "new_email": taken})).await;
    let a = (a.status(), a.text().await.unwrap());
    let token_taken = token_from_mail(&taken, "confirm your new email").await;
    let b =
        bearer_post(&s, "/auth/change-email", at(&t), json!({"current_password": PASSWORD, "new_email": free})).await;
    assert_eq!(a, (b.status(), b.text().await.unwrap()), "no difference for a taken address");
    // The newer request replaced the older token; re-request for the taken address and confirm.
    bearer_post(&s, "/auth/change-email", at(&t), json!({"current_password": PASSWORD, "new_email": taken})).await;
    let token = token_from_mail(&taken, "confirm your new email").await;
    assert_ne!(token, token_taken);
    let r = s.post("/auth/confirm-email-change", json!({"token": token})).await;
    assert_eq!(r.status(), 409);
    problem(r).await;
    assert_eq!(s.get_bearer("/auth/me", at(&t)).await.json::<Value>().await.unwrap()["email"], mover, "unchanged");
    s.login(&taken, PASSWORD).await;
}

#[tokio::test]
async fn given_several_sessions_then_the_owner_lists_and_revokes_them_and_nobody_else_can() {
    let s = start(|_| {}).await;
    let email = unique_email();
    s.verified_user(&email).await;
    let a = s.login(&email, PASSWORD).await;
    let b = s.login(&email, PASSWORD).await;
    let r = s.get_bearer("/auth/sessions", at(&a)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let list: Value = r.json().await.unwrap();
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items.iter().filter(|i| i["current"] == true).count(), 1);
    let mine = items.iter().find(|i| i["current"] == true).unwrap();
    assert_eq!(mine["ip"], "127.0.0.1");
    assert!(mine["created_at"].as_str().unwrap().ends_with('Z'));
    let other_id = items.iter().find(|i| i["current"] == false).unwrap()["id"].as_str().unwrap().to_owned();

    // Someone else cannot touch these sessions: 404, as for an unknown id.
    let stranger = unique_email();
    s.verified_user(&stranger).await;
    let st = s.login(&stranger, PASSWORD).await;
    let r = s.http.delete(s.url(&format!("/auth/sessions/{other_id}"))).bearer_auth(at(&st)).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let r = s.http.delete(s.url("/auth/sessions/does-not-exist")).bearer_auth(at(&a)).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(s.post("/auth/refresh", json!({"refresh_token": rt(&b)})).await.status(), 200, "b untouched so far");

    let r = s.http.delete(s.url(&format!("/auth/sessions/{other_id}"))).bearer_auth(at(&a)).send().await.unwrap();
    assert_eq!(r.status(), 204);
    let list: Value = s.get_bearer("/auth/sessions", at(&a)).await.json().await.unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 1);

    // Logout-all: every session and every access token of the user dies.
    let c = s.login(&email, PASSWORD).await;
    assert_eq!(s.http.post(s.url("/auth/logout-all")).bearer_auth(at(&a)).send().await.unwrap().status(), 204);
    for t in [&a, &c] {
        assert_eq!(s.get_bearer("/auth/me", at(t)).await.status(), 401);
        assert_eq!(s.post("/auth/refresh", json!({"refresh_token": rt(t)})).await.status(), 401);
    }
    assert_eq!(s.get_bearer("/auth/me", at(&st)).await.status(), 200, "other users unaffected");
}

#[tokio::test]
async fn given_mail_pages_then_gets_change_nothing_forms_post_and_hostile_tokens_are_not_reflected() {
    let s = start(|_| {}).await;
    let email = unique_email();
    s.post("/auth/signup", json!({"email": email, "password": PASSWORD})).await;
    let token = token_from_mail(&email, "verify").await;
    for _ in 0..3 {
        let r = s.http.get(s.url(&format!("/auth/verify-email?token={token}"))).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_page_headers(&r);
        let html = r.text().await.unwrap();
        assert!(html.contains(&format!("name=\"token\" value=\"{token}\"")));
    }
    let verified = |items: Vec<std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>>| {
        items.iter().any(|i| {
            i.get("email").and_then(|v| v.as_s().ok()) == Some(&email)
                && i.get("is_verified").and_then(|v| v.as_bool().ok()) == Some(&true)
        })
    };
    assert!(!verified(s.items().await), "still unverified");
    // The form post (what the page's button sends) verifies and answers with a page.
    let r = s
        .post_raw(
            "/auth/verify-email",
            "application/x-www-form-urlencoded",
            format!("token={token}&password={PASSWORD}"),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_page_headers(&r);
    assert!(r.text().await.unwrap().contains("verified"));
    s.login(&email, PASSWORD).await;
    let r = s
        .post_raw(
            "/auth/verify-email",
            "application/x-www-form-urlencoded",
            format!("token={token}&password={PASSWORD}"),
        )
        .await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("invalid"));
    for bad in ["%3Cscript%3Ealert(1)%3C%2Fscript%3E", "\"onmouseover=x", ""] {
        let r = s.http.get(s.url(&format!("/auth/reset-password?token={bad}"))).send().await.unwrap();
        assert_eq!(r.status(), 400);
        let html = r.text().await.unwrap();
        assert!(!html.contains("<script>") && !html.contains("onmouseover"), "{html}");
    }
}
