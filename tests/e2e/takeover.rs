//! Account-recovery integrity (docs/security.md "Account takeover"): no takeover through
//! pending links, unverified sign-ups, bearer endpoints or locks made before an account existed.

use e2e::*;
use serde_json::{Value, json};

const NEW_PASSWORD: &str = "amber-lantern-orchard-77";

async fn bearer_post(s: &TestServer, path: &str, token: &str, body: Value) -> reqwest::Response {
    s.http.post(s.url(path)).bearer_auth(token).json(&body).send().await.unwrap()
}

fn at(t: &Value) -> String {
    t["access_token"].as_str().unwrap().to_owned()
}

async fn login_status(s: &TestServer, email: &str, password: &str) -> u16 {
    s.post("/auth/login", json!({"email": email, "password": password})).await.status().as_u16()
}

async fn request_reset(s: &TestServer, email: &str) -> String {
    assert_eq!(s.post("/auth/forgot-password", json!({"email": email})).await.status(), 202);
    token_from_mail(email, "reset").await
}

async fn invalid_token(r: reqwest::Response) {
    assert_eq!(r.status(), 400);
    assert_eq!(problem(r).await["type"], "urn:secure-auth:problem:invalid-token");
}

#[tokio::test]
async fn given_a_pending_email_change_when_the_victim_resets_the_password_then_the_change_can_no_longer_be_confirmed() {
    let s = start(|_| {}).await;
    let victim = unique_email();
    s.verified_user(&victim).await;
    // The attacker, who once had the password, starts moving the account to an address of theirs.
    let attacker_session = s.login(&victim, PASSWORD).await;
    let attacker_mailbox = unique_email();
    let r = bearer_post(
        &s,
        "/auth/change-email",
        &at(&attacker_session),
        json!({"current_password": PASSWORD, "new_email": attacker_mailbox}),
    )
    .await;
    assert_eq!(r.status(), 202);
    let change = token_from_mail(&attacker_mailbox, "confirm").await;
    // The victim notices and resets the password.
    let reset = request_reset(&s, &victim).await;
    let r = s.post("/auth/reset-password", json!({"token": reset, "new_password": NEW_PASSWORD})).await;
    assert_eq!(r.status(), 204);
    // The attacker's pending link is dead: the account stays the victim's.
    invalid_token(s.post("/auth/confirm-email-change", json!({"token": change})).await).await;
    assert_eq!(login_status(&s, &victim, NEW_PASSWORD).await, 200);
    assert_eq!(login_status(&s, &attacker_mailbox, NEW_PASSWORD).await, 401);
}

#[tokio::test]
async fn given_pending_links_when_credentials_change_or_the_account_is_deactivated_then_every_link_dies() {
    let s = start_with_admin(&unique_email()).await;
    let email = unique_email();
    s.verified_user(&email).await;
    // A password change kills a pending reset link.
    let reset = request_reset(&s, &email).await;
    let t = s.login(&email, PASSWORD).await;
    let r = bearer_post(
        &s,
        "/auth/change-password",
        &at(&t),
        json!({"current_password": PASSWORD, "new_password": NEW_PASSWORD}),
    )
    .await;
    assert_eq!(r.status(), 204);
    invalid_token(
        s.post("/auth/reset-password", json!({"token": reset, "new_password": "quartz-falcon-harbor-63"})).await,
    )
    .await;
    // A newer reset link invalidates the older one.
    let older = request_reset(&s, &email).await;
    let newer = request_reset(&s, &email).await;
    invalid_token(
        s.post("/auth/reset-password", json!({"token": older, "new_password": "quartz-falcon-harbor-63"})).await,
    )
    .await;
    // Deactivation kills the newer one, and reactivation does not bring it back.
    let admin_email = s.admin_email.clone().unwrap();
    let admin = s.login(&admin_email, PASSWORD).await;
    let id = s.user_id(&email).await;
    let deactivate =
        s.http.post(s.url(&format!("/users/{id}/deactivate"))).bearer_auth(at(&admin)).send().await.unwrap();
    assert_eq!(deactivate.status(), 200);
    invalid_token(
        s.post("/auth/reset-password", json!({"token": newer, "new_password": "quartz-falcon-harbor-63"})).await,
    )
    .await;
    let r = s.http.post(s.url(&format!("/users/{id}/activate"))).bearer_auth(at(&admin)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    invalid_token(
        s.post("/auth/reset-password", json!({"token": newer, "new_password": "quartz-falcon-harbor-63"})).await,
    )
    .await;
    assert_eq!(login_status(&s, &email, NEW_PASSWORD).await, 200);
}

#[tokio::test]
async fn given_a_deactivated_user_then_reset_and_email_change_confirmation_refuse_it() {
    let s = start_with_admin(&unique_email()).await;
    let email = unique_email();
    s.verified_user(&email).await;
    let t = s.login(&email, PASSWORD).await;
    let target = unique_email();
    let r = bearer_post(&s, "/auth/change-email", &at(&t), json!({"current_password": PASSWORD, "new_email": target}))
        .await;
    assert_eq!(r.status(), 202);
    let change = token_from_mail(&target, "confirm").await;
    let admin = s.login(s.admin_email.as_deref().unwrap(), PASSWORD).await;
    let id = s.user_id(&email).await;
    let r = s.http.post(s.url(&format!("/users/{id}/deactivate"))).bearer_auth(at(&admin)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    invalid_token(s.post("/auth/confirm-email-change", json!({"token": change})).await).await;
    // No reset link is even sent to a deactivated account, and a forged one is refused.
    assert_eq!(s.post("/auth/forgot-password", json!({"email": email})).await.status(), 202);
    assert!(mails_to(&email).await.iter().all(|m| !m.subject.contains("reset")));
    let forged = format!("{id}.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    invalid_token(s.post("/auth/reset-password", json!({"token": forged, "new_password": NEW_PASSWORD})).await).await;
}

#[tokio::test]
async fn given_an_unverified_sign_up_by_someone_else_when_the_owner_signs_up_then_only_the_owner_gets_in() {
    let s = start(|_| {}).await;
    let owner = unique_email();
    let attacker_password = "attacker-chose-this-7";
    let first = s.post("/auth/signup", json!({"email": owner, "password": attacker_password})).await;
    assert_eq!(first.status(), 202);
    let first_body: Value = first.json().await.unwrap();
    let attackers_link = token_from_mail(&owner, "verify").await;
    // The owner signs up: the same answer as any sign-up.
    let second = s.post("/auth/signup", json!({"email": owner, "password": PASSWORD, "name": "Owner"})).await;
    assert_eq!(second.status(), 202);
    assert_eq!(second.json::<Value>().await.unwrap(), first_body);
    let owners_link = token_from_mail(&owner, "verify").await;
    assert_ne!(attackers_link, owners_link);
    // The first registration's link is dead; the owner's activates the owner's password.
    invalid_token(s.post("/auth/verify-email", json!({"token": attackers_link, "password": PASSWORD})).await).await;
    assert_eq!(s.post("/auth/verify-email", json!({"token": owners_link, "password": PASSWORD})).await.status(), 200);
    assert_eq!(login_status(&s, &owner, attacker_password).await, 401);
    let t = s.login(&owner, PASSWORD).await;
    let me: Value = s.get_bearer("/auth/me", &at(&t)).await.json().await.unwrap();
    assert_eq!(me["name"], "Owner");
    assert_eq!(s.keys().await.iter().filter(|k| k.starts_with("EMAIL#")).count(), 1, "still one account");
}

#[tokio::test]
async fn given_a_stolen_access_token_then_wrong_current_passwords_lock_the_account_like_failed_logins() {
    let s = start(|c| c.lockout.threshold = 3).await;
    let email = unique_email();
    s.verified_user(&email).await;
    let t = s.login(&email, PASSWORD).await;
    for (path, body) in [
        ("/auth/change-password", json!({"current_password": "guess-number-one-1", "new_password": NEW_PASSWORD})),
        ("/auth/change-email", json!({"current_password": "guess-number-two-2", "new_email": unique_email()})),
        ("/auth/change-password", json!({"current_password": "guess-number-three-3", "new_password": NEW_PASSWORD})),
    ] {
        let r = bearer_post(&s, path, &at(&t), body).await;
        assert_eq!(r.status(), 400);
        assert_eq!(problem(r).await["errors"][0]["field"], "current_password");
    }
    // Locked: the right password gets the same answer as a wrong one, here and at login.
    let r = bearer_post(
        &s,
        "/auth/change-password",
        &at(&t),
        json!({"current_password": PASSWORD, "new_password": NEW_PASSWORD}),
    )
    .await;
    assert_eq!(r.status(), 400);
    assert_eq!(problem(r).await["errors"][0]["message"], "is incorrect");
    assert_eq!(login_status(&s, &email, PASSWORD).await, 401);
    assert_eq!(mails_to(&email).await.iter().filter(|m| m.subject.contains("locked")).count(), 1);
}

#[tokio::test]
async fn given_limits_on_then_bearer_password_checks_are_limited_per_account_and_mail_per_account_is_capped() {
    let s = start(|c| {
        c.rate_limits.enabled = true;
        c.lockout.threshold = 50;
        c.lockout.account_ceiling = 500;
        c.mail_cap_per_hour = 3;
    })
    .await;
    let email = unique_email();
    s.verified_user(&email).await;
    let t = s.login(&email, PASSWORD).await;
    // change-email: 5 per account per hour, then 429 before any password check or mail.
    let mut statuses = Vec::new();
    let mut targets = Vec::new();
    for _ in 0..6 {
        let target = unique_email();
        let r =
            bearer_post(&s, "/auth/change-email", &at(&t), json!({"current_password": PASSWORD, "new_email": target}))
                .await;
        statuses.push(r.status().as_u16());
        targets.push(target);
    }
    assert_eq!(statuses, [202, 202, 202, 202, 202, 429]);
    // Each accepted request mails twice: a link to the new address and a notice to the old
    // one. Neither is capped (an attacker who filled the cap must not silence a notice).
    assert_eq!(mails_to(&email).await.len(), 1 + 5, "the verification mail and five notices");
    for target in &targets[..5] {
        assert_eq!(mails_to(target).await.len(), 1, "each confirmation link");
    }
    // Mail an unauthenticated caller can trigger is capped: with the verification mail counted,
    // two reset links of five requests go out, every request answered alike.
    for _ in 0..5 {
        assert_eq!(s.post("/auth/forgot-password", json!({"email": email})).await.status(), 202);
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let resets = mails_to(&email).await.iter().filter(|m| m.subject.to_lowercase().contains("reset")).count();
    assert_eq!(resets, 2);
}

#[tokio::test]
async fn given_failed_logins_for_an_address_nobody_owned_then_its_new_owner_starts_unlocked() {
    let s = start(|c| c.lockout.threshold = 3).await;
    let email = unique_email();
    // Someone hammers the address before it has an account, from this client's IP.
    for _ in 0..4 {
        assert_eq!(login_status(&s, &email, "wrong-password-1").await, 401);
    }
    s.verified_user(&email).await;
    assert_eq!(login_status(&s, &email, PASSWORD).await, 200);
}

#[tokio::test]
async fn given_a_made_up_reset_token_then_it_is_refused_before_the_new_password_is_even_checked() {
    let s = start(|_| {}).await;
    let email = unique_email();
    s.verified_user(&email).await;
    let id = s.user_id(&email).await;
    // A weak password with a made-up token: the token is judged first (no argon2 run, no
    // policy verdict that would tell the password apart).
    let forged = format!("{id}.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    invalid_token(s.post("/auth/reset-password", json!({"token": forged, "new_password": "short"})).await).await;
    // With a real token the policy still runs before the token is spent.
    let reset = request_reset(&s, &email).await;
    let r = s.post("/auth/reset-password", json!({"token": reset, "new_password": "short"})).await;
    assert_eq!(r.status(), 400);
    assert_eq!(problem(r).await["type"], "urn:secure-auth:problem:validation-failed");
    let r = s.post("/auth/reset-password", json!({"token": reset, "new_password": NEW_PASSWORD})).await;
    assert_eq!(r.status(), 204);
}

#[tokio::test]
async fn given_each_kind_of_one_time_token_then_every_other_kinds_endpoint_refuses_it() {
    let s = start(|_| {}).await;
    let email = unique_email();
    let r = s.post("/auth/signup", json!({"email": email, "password": PASSWORD})).await;
    assert_eq!(r.status(), 202);
    let verify = token_from_mail(&email, "verify").await;
    // While the verification token is pending: not a reset token, not an email-change token.
    invalid_token(s.post("/auth/reset-password", json!({"token": verify, "new_password": NEW_PASSWORD})).await).await;
    invalid_token(s.post("/auth/confirm-email-change", json!({"token": verify})).await).await;
    assert_eq!(s.post("/auth/verify-email", json!({"token": verify, "password": PASSWORD})).await.status(), 200);
    let reset = request_reset(&s, &email).await;
    let t = s.login(&email, PASSWORD).await;
    let target = unique_email();
    let r = bearer_post(&s, "/auth/change-email", &at(&t), json!({"current_password": PASSWORD, "new_email": target}))
        .await;
    assert_eq!(r.status(), 202);
    let change = token_from_mail(&target, "confirm").await;
    let refresh = t["refresh_token"].as_str().unwrap().to_owned();
    invalid_token(s.post("/auth/verify-email", json!({"token": reset, "password": PASSWORD})).await).await;
    invalid_token(s.post("/auth/confirm-email-change", json!({"token": reset})).await).await;
    invalid_token(s.post("/auth/verify-email", json!({"token": change, "password": PASSWORD})).await).await;
    invalid_token(s.post("/auth/reset-password", json!({"token": change, "new_password": NEW_PASSWORD})).await).await;
    invalid_token(s.post("/auth/verify-email", json!({"token": refresh, "password": PASSWORD})).await).await;
    invalid_token(s.post("/auth/confirm-email-change", json!({"token": refresh})).await).await;
    // Mail tokens are no refresh tokens either.
    for token in [&reset, &change] {
        assert_eq!(s.post("/auth/refresh", json!({"refresh_token": token})).await.status(), 401);
    }
    // And each still works at its own endpoint.
    assert_eq!(s.post("/auth/confirm-email-change", json!({"token": change})).await.status(), 200);
}
