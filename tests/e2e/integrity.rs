//! Account integrity across flows (docs/security.md "Across flows"), over HTTP against the local
//! server on DynamoDB Local and moto: each test is one of the cross-flow attacks the service
//! must withstand, played as the attacker would.

use std::net::IpAddr;

use e2e::*;
use serde_json::{Value, json};

const ATTACKERS: &str = "attacker-chose-this-7";
const ATTACKERS_2: &str = "attacker-chose-that-8";

/// A client whose requests come from another loopback address (a different client IP).
fn client_from(ip: &str) -> reqwest::Client {
    reqwest::Client::builder().local_address(ip.parse::<IpAddr>().unwrap()).build().unwrap()
}

async fn post_from(s: &TestServer, c: &reqwest::Client, path: &str, body: Value) -> reqwest::Response {
    c.post(s.url(path)).json(&body).send().await.unwrap()
}

fn at(t: &Value) -> &str {
    t["access_token"].as_str().unwrap()
}

fn claims(access: &str) -> Value {
    let payload = access.split('.').nth(1).unwrap();
    serde_json::from_slice(&base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload).unwrap())
        .unwrap()
}

async fn login_status(s: &TestServer, email: &str, password: &str) -> u16 {
    s.post("/auth/login", json!({"email": email, "password": password})).await.status().as_u16()
}

/// The newest link to `path` in the mails to `to`.
async fn link_in_mail(to: &str, path: &str) -> Option<String> {
    let needle = format!("{path}?token=");
    mails_to(to).await.iter().rev().find_map(|m| {
        let at = m.body.find(&needle)? + needle.len();
        Some(m.body[at..].chars().take_while(|c| c.is_ascii_alphanumeric() || "-_.".contains(*c)).collect())
    })
}

#[tokio::test]
async fn given_an_attackers_sign_ups_around_the_owners_then_the_owner_activates_only_its_own_password() {
    let s = start(|_| {}).await;
    let owner = unique_email();
    // The attacker registers the owner's address first: its login is refused…
    assert_eq!(s.post("/auth/signup", json!({"email": owner, "password": ATTACKERS})).await.status(), 202);
    let before = fingerprint(s.post("/auth/login", json!({"email": owner, "password": ATTACKERS})).await).await;
    assert_eq!(before.0, 401);
    // …and stays refused alike once the owner signed up too: nothing tells the attacker.
    assert_eq!(
        s.post("/auth/signup", json!({"email": owner, "password": PASSWORD, "name": "Owner"})).await.status(),
        202
    );
    let after = fingerprint(s.post("/auth/login", json!({"email": owner, "password": ATTACKERS})).await).await;
    assert_eq!(before, after);
    // A second sign-up of the attacker's replaces nothing; it only mails the owner a newer link.
    assert_eq!(s.post("/auth/signup", json!({"email": owner, "password": ATTACKERS_2})).await.status(), 202);
    let newest = link_in_mail(&owner, "/auth/verify-email").await.unwrap();
    // The owner clicks the newest link: only its own password activates the account.
    let r = s.post("/auth/verify-email", json!({"token": newest, "password": "not-anyones-password-3"})).await;
    assert_eq!(r.status(), 400);
    assert_eq!(problem(r).await["type"], "urn:secure-auth:problem:invalid-token");
    assert_eq!(s.post("/auth/verify-email", json!({"token": newest, "password": PASSWORD})).await.status(), 200);
    for pw in [ATTACKERS, ATTACKERS_2] {
        assert_eq!(login_status(&s, &owner, pw).await, 401, "{pw}");
    }
    let t = s.login(&owner, PASSWORD).await;
    let me: Value = s.get_bearer("/auth/me", at(&t)).await.json().await.unwrap();
    assert_eq!((me["name"].as_str(), me["is_verified"].as_bool()), (Some("Owner"), Some(true)));
    assert_eq!(s.keys().await.iter().filter(|k| k.starts_with("EMAIL#")).count(), 1, "one account");
}

#[tokio::test]
async fn given_an_unverified_superuser_an_admin_made_then_a_sign_up_neither_changes_it_nor_gets_in() {
    let admin_email = unique_email();
    let s = start_with_admin(&admin_email).await;
    let admin = s.login(&admin_email, PASSWORD).await;
    let boss = unique_email();
    let r =
        s.post_bearer("/users", at(&admin), json!({"email": boss, "password": PASSWORD, "is_superuser": true})).await;
    assert_eq!(r.status(), 201);
    let before = s.items().await;
    assert_eq!(s.post("/auth/signup", json!({"email": boss, "password": ATTACKERS})).await.status(), 202);
    let attempted = mail_to(&boss, "sign-up attempt").await;
    assert!(!attempted.body.contains("token="), "the notice carries no link");
    let item = |items: &[std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>]| {
        items.iter().find(|i| i.get("email").and_then(|v| v.as_s().ok()) == Some(&boss)).cloned()
    };
    assert_eq!(item(&s.items().await), item(&before), "the account is untouched");
    // The owner verifies with the password the admin issued; the attacker's never works.
    assert_eq!(s.post("/auth/resend-verification", json!({"email": boss})).await.status(), 202);
    let link = link_in_mail(&boss, "/auth/verify-email").await.unwrap();
    assert_eq!(s.post("/auth/verify-email", json!({"token": link, "password": ATTACKERS})).await.status(), 400);
    assert_eq!(s.post("/auth/verify-email", json!({"token": link, "password": PASSWORD})).await.status(), 200);
    assert_eq!(login_status(&s, &boss, ATTACKERS).await, 401);
    assert!(s.login(&boss, PASSWORD).await["scope"].as_str().unwrap().contains("admin"));
}

#[tokio::test]
async fn given_a_sign_up_then_a_login_answers_alike_whether_or_not_the_address_had_an_account() {
    let s = start(|_| {}).await;
    let (taken, free) = (unique_email(), unique_email());
    s.verified_user(&taken).await;
    let mut answers = Vec::new();
    for email in [&taken, &free] {
        assert_eq!(s.post("/auth/signup", json!({"email": email, "password": ATTACKERS})).await.status(), 202);
        answers.push(fingerprint(s.post("/auth/login", json!({"email": email, "password": ATTACKERS})).await).await);
    }
    assert_eq!(answers[0], answers[1]);
    assert_eq!(answers[0].0, 401);
    assert_eq!(answers[0].2["type"], "urn:secure-auth:problem:invalid-credentials");
    // The right password of a pending registration mails the address a fresh link.
    let links = mails_to(&free).await.len();
    assert_eq!(login_status(&s, &free, ATTACKERS).await, 401);
    assert_eq!(mails_to(&free).await.len(), links + 1);
}

#[tokio::test]
async fn given_an_attacker_flooding_wrong_logins_then_the_owner_still_signs_in_from_its_own_address() {
    let s = start(|c| c.rate_limits.enabled = true).await;
    let owner = unique_email();
    s.verified_user(&owner).await;
    let attacker = client_from("127.0.0.2");
    let mut statuses = Vec::new();
    for _ in 0..15 {
        let r = post_from(&s, &attacker, "/auth/login", json!({"email": owner, "password": ATTACKERS})).await;
        statuses.push(r.status().as_u16());
    }
    assert!(statuses.contains(&429), "the attacker meets the per-email limit: {statuses:?}");
    let home = client_from("127.0.0.3");
    let r = post_from(&s, &home, "/auth/login", json!({"email": owner, "password": PASSWORD})).await;
    assert_eq!(r.status(), 200, "the owner's own budget and lock are untouched");
    // The password grant counts the same way.
    let r = home
        .post(s.url("/auth/token"))
        .form(&[("grant_type", "password"), ("username", owner.as_str()), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn given_the_account_wide_ceiling_reached_then_the_lock_mails_a_link_that_signs_the_owner_in_once() {
    let s = start(|c| {
        c.lockout.threshold = 3;
        c.lockout.account_ceiling = 6;
    })
    .await;
    let owner = unique_email();
    s.verified_user(&owner).await;
    for ip in ["127.0.0.2", "127.0.0.4"] {
        let c = client_from(ip);
        for _ in 0..3 {
            post_from(&s, &c, "/auth/login", json!({"email": owner, "password": ATTACKERS})).await;
        }
    }
    // Locked for everyone, the owner's right password included…
    let home = client_from("127.0.0.3");
    let r = post_from(&s, &home, "/auth/login", json!({"email": owner, "password": PASSWORD})).await;
    assert_eq!(r.status(), 401);
    // …but the lock notice carries a link: its page asks for the password and changes nothing.
    let link = link_in_mail(&owner, "/auth/unlock").await.expect("an unlock link in the lock notice");
    let page = s.http.get(s.url(&format!("/auth/unlock?token={link}"))).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("name=\"password\""));
    let r = post_from(&s, &home, "/auth/unlock", json!({"token": link, "password": PASSWORD})).await;
    assert_eq!(r.status(), 200);
    let t: Value = r.json().await.unwrap();
    assert_eq!(s.get_bearer("/auth/me", at(&t)).await.status(), 200);
    // Single use; and the lock is lifted for the owner's app.
    let r = post_from(&s, &home, "/auth/unlock", json!({"token": link, "password": PASSWORD})).await;
    assert_eq!(r.status(), 400);
    let r = post_from(&s, &home, "/auth/login", json!({"email": owner, "password": PASSWORD})).await;
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn given_an_unlock_link_then_a_wrong_password_spends_it() {
    let s = start(|c| {
        c.lockout.threshold = 2;
        c.lockout.account_ceiling = 2;
    })
    .await;
    let owner = unique_email();
    s.verified_user(&owner).await;
    for _ in 0..2 {
        s.post("/auth/login", json!({"email": owner, "password": ATTACKERS})).await;
    }
    let link = link_in_mail(&owner, "/auth/unlock").await.expect("an unlock link");
    let r = s.post("/auth/unlock", json!({"token": link, "password": ATTACKERS})).await;
    assert_eq!(r.status(), 401);
    assert_eq!(problem(r).await["type"], "urn:secure-auth:problem:invalid-credentials");
    let r = s.post("/auth/unlock", json!({"token": link, "password": PASSWORD})).await;
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn given_others_spending_the_reset_budget_then_nobody_gets_429_and_the_newest_link_works() {
    let s = start(|c| c.rate_limits.enabled = true).await;
    let owner = unique_email();
    s.verified_user(&owner).await;
    let attacker = client_from("127.0.0.2");
    for _ in 0..6 {
        let r = post_from(&s, &attacker, "/auth/forgot-password", json!({"email": owner})).await;
        assert_eq!(r.status(), 202);
        assert!(r.headers().get("retry-after").is_none());
    }
    let home = client_from("127.0.0.3");
    let r = post_from(&s, &home, "/auth/forgot-password", json!({"email": owner})).await;
    assert_eq!(r.status(), 202, "the owner's first request is not refused for the attacker's");
    let resets: Vec<_> =
        mails_to(&owner).await.into_iter().filter(|m| m.subject.to_lowercase().contains("reset")).collect();
    assert_eq!(resets.len(), 3, "the address's budget: three links an hour");
    // The newest link in the mailbox was not replaced by the refused requests.
    let link = link_in_mail(&owner, "/auth/reset-password").await.unwrap();
    let r = post_from(
        &s,
        &home,
        "/auth/reset-password",
        json!({"token": link, "new_password": "amber-lantern-orchard-77"}),
    )
    .await;
    assert_eq!(r.status(), 204);
}

#[tokio::test]
async fn given_a_full_mail_cap_then_notices_of_changes_still_arrive() {
    let s = start(|c| {
        c.rate_limits.enabled = true;
        c.mail_cap_per_hour = 2;
    })
    .await;
    let owner = unique_email();
    s.verified_user(&owner).await;
    // Someone fills the owner's cap with mail anyone can trigger.
    for ip in ["127.0.0.2", "127.0.0.4", "127.0.0.5"] {
        post_from(&s, &client_from(ip), "/auth/forgot-password", json!({"email": owner})).await;
    }
    let capped = mails_to(&owner).await.len();
    // With a phished password, the attacker moves the address and changes the password.
    let t = s.login(&owner, PASSWORD).await;
    let target = unique_email();
    let r =
        s.post_bearer("/auth/change-email", at(&t), json!({"current_password": PASSWORD, "new_email": target})).await;
    assert_eq!(r.status(), 202);
    let r = s
        .post_bearer(
            "/auth/change-password",
            at(&t),
            json!({"current_password": PASSWORD, "new_password": "amber-lantern-orchard-77"}),
        )
        .await;
    assert_eq!(r.status(), 204);
    let after = mails_to(&owner).await;
    let subjects: Vec<String> = after[capped..].iter().map(|m| m.subject.to_lowercase()).collect();
    assert_eq!(subjects.len(), 2, "{subjects:?}");
    assert!(subjects.iter().any(|s| s.contains("email")), "{subjects:?}");
    assert!(subjects.iter().any(|s| s.contains("password")), "{subjects:?}");
}

#[tokio::test]
async fn given_a_second_factor_then_password_and_address_changes_need_it_and_nothing_changes_without() {
    let s = start(|_| {}).await;
    let owner = unique_email();
    s.verified_user(&owner).await;
    let t = s.login(&owner, PASSWORD).await;
    let (secret, codes, confirmed_at) = s.enable_totp_at(&t).await;
    let t: Value = s.post("/auth/refresh", json!({"refresh_token": t["refresh_token"]})).await.json().await.unwrap();
    let new_pw = "amber-lantern-orchard-77";
    let change = |code: Option<&str>| {
        let mut b = json!({"current_password": PASSWORD, "new_password": new_pw});
        if let Some(c) = code {
            b["code"] = json!(c);
        }
        s.post_bearer("/auth/change-password", at(&t), b)
    };
    let r = change(None).await;
    assert_eq!(r.status(), 403);
    assert_eq!(problem(r).await["type"], "urn:secure-auth:problem:mfa-required");
    let r = change(Some("000000")).await;
    assert_eq!(r.status(), 403);
    assert_eq!(problem(r).await["type"], "urn:secure-auth:problem:invalid-mfa-code");
    // Nothing changed: the old password still checks (a wrong one is a 400, not a 403).
    let r = s
        .post_bearer("/auth/change-email", at(&t), json!({"current_password": PASSWORD, "new_email": unique_email()}))
        .await;
    assert_eq!(r.status(), 403, "the password is still the old one");
    // A current code changes the password; the same code a second time is refused.
    away_from_step_edge().await;
    let code = totp_at(&secret, unix_now().max(confirmed_at));
    assert_eq!(change(Some(&code)).await.status(), 204);
    let t: Value = s.post("/auth/refresh", json!({"refresh_token": t["refresh_token"]})).await.json().await.unwrap();
    let target = unique_email();
    let email_change = |code: &str| {
        s.post_bearer(
            "/auth/change-email",
            at(&t),
            json!({"current_password": new_pw, "new_email": target, "code": code}),
        )
    };
    let r = email_change(&code).await;
    assert_eq!(r.status(), 403, "a spent code");
    assert_eq!(email_change(&codes[0]).await.status(), 202, "a recovery code");
    assert_eq!(email_change(&codes[0]).await.status(), 403, "used once");
}

#[tokio::test]
async fn given_a_revoked_session_then_its_access_token_stops_on_every_bearer_endpoint() {
    let s = start(|_| {}).await;
    let owner = unique_email();
    s.verified_user(&owner).await;
    let (a, b, c) = (s.login(&owner, PASSWORD).await, s.login(&owner, PASSWORD).await, s.login(&owner, PASSWORD).await);
    // Logout ends session a.
    assert_eq!(s.post("/auth/logout", json!({"refresh_token": a["refresh_token"]})).await.status(), 204);
    // c revokes b.
    let b_sid = claims(at(&b))["sid"].as_str().unwrap().to_owned();
    let r = s.http.delete(s.url(&format!("/auth/sessions/{b_sid}"))).bearer_auth(at(&c)).send().await.unwrap();
    assert_eq!(r.status(), 204);
    for gone in [&a, &b] {
        for path in ["/auth/me", "/auth/sessions"] {
            let r = s.get_bearer(path, at(gone)).await;
            assert_eq!(r.status(), 401, "{path}");
            assert_eq!(r.headers()["www-authenticate"], r#"Bearer realm="secure-auth", error="invalid_token""#);
        }
        let r = s
            .post_bearer(
                "/auth/change-password",
                at(gone),
                json!({"current_password": PASSWORD, "new_password": "amber-lantern-orchard-77"}),
            )
            .await;
        assert_eq!(r.status(), 401);
    }
    assert_eq!(s.get_bearer("/auth/me", at(&c)).await.status(), 200);
}

#[tokio::test]
async fn given_an_administrators_changes_then_the_owner_is_told_of_each() {
    let admin_email = unique_email();
    let s = start_with_admin(&admin_email).await;
    let admin = s.login(&admin_email, PASSWORD).await;
    let owner = unique_email();
    s.verified_user(&owner).await;
    let id = s.user_id(&owner).await;
    let before = mails_to(&owner).await.len();
    let post = |path: String| s.http.post(s.url(&path)).bearer_auth(at(&admin)).send();
    assert_eq!(post(format!("/users/{id}/revoke-sessions")).await.unwrap().status(), 204);
    assert_eq!(post(format!("/users/{id}/deactivate")).await.unwrap().status(), 200);
    assert_eq!(post(format!("/users/{id}/activate")).await.unwrap().status(), 200);
    let r = s
        .http
        .put(s.url(&format!("/users/{id}")))
        .bearer_auth(at(&admin))
        .json(&json!({"password": "amber-lantern-orchard-77"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let subjects: Vec<String> = mails_to(&owner).await[before..].iter().map(|m| m.subject.clone()).collect();
    assert_eq!(subjects.len(), 4, "{subjects:?}");
    for (i, want) in
        ["signed out everywhere", "deactivated", "reactivated", "changed by an administrator"].iter().enumerate()
    {
        assert!(subjects[i].contains(want), "{subjects:?}");
    }
    assert_eq!(
        s.http.delete(s.url(&format!("/users/{id}"))).bearer_auth(at(&admin)).send().await.unwrap().status(),
        204
    );
    assert!(mails_to(&owner).await.last().unwrap().subject.contains("deleted"));
}
