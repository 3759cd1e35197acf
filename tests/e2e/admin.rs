//! The admin API against DynamoDB Local: access control, every endpoint's success and failure
//! paths, the self-protection and last-admin rules, pagination, filters, tamper-evident cursors
//! and deletion without orphans.

use e2e::*;
use serde_json::{Value, json};

async fn admin_server() -> (TestServer, String, Value) {
    let admin = unique_email();
    let s = start_with_admin(&admin).await;
    let t = s.login(&admin, PASSWORD).await;
    (s, admin, t)
}

fn at(t: &Value) -> &str {
    t["access_token"].as_str().unwrap()
}

async fn req(s: &TestServer, method: &str, path: &str, token: &str, body: Option<Value>) -> reqwest::Response {
    let r = s.http.request(method.parse().unwrap(), s.url(path)).bearer_auth(token);
    let r = match body {
        Some(b) => r.json(&b),
        None => r,
    };
    r.send().await.unwrap()
}

async fn create(s: &TestServer, token: &str, email: &str, extra: Value) -> Value {
    let mut body = json!({"email": email, "password": PASSWORD});
    body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    let r = req(s, "POST", "/users", token, Some(body)).await;
    assert_eq!(r.status(), 201);
    r.json().await.unwrap()
}

#[tokio::test]
async fn given_no_admin_token_then_401_and_a_non_admin_or_demoted_admin_gets_403() {
    let (s, _, admin_t) = admin_server().await;
    let r = s.http.get(s.url("/users")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], r#"Bearer realm="secure-auth""#);
    assert_eq!(req(&s, "GET", "/users", "garbage", None).await.status(), 401);
    // A plain user.
    let plain = unique_email();
    create(&s, at(&admin_t), &plain, json!({"is_verified": true})).await;
    let pt = s.login(&plain, PASSWORD).await;
    let r = req(&s, "GET", "/users", at(&pt), None).await;
    assert_eq!(r.status(), 403);
    assert_eq!(problem(r).await["type"], "urn:secure-auth:problem:forbidden");
    // A second admin, demoted while its token is still unexpired: 403.
    let second = unique_email();
    let u = create(&s, at(&admin_t), &second, json!({"is_verified": true, "is_superuser": true})).await;
    let st = s.login(&second, PASSWORD).await;
    assert!(st["scope"].as_str().unwrap().contains("admin"));
    assert_eq!(req(&s, "GET", "/users", at(&st), None).await.status(), 200);
    let r = req(
        &s,
        "PUT",
        &format!("/users/{}", u["id"].as_str().unwrap()),
        at(&admin_t),
        Some(json!({"is_superuser": false})),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(req(&s, "GET", "/users", at(&st), None).await.status(), 403);
    // Every admin route refuses the plain user.
    for (m, p) in [
        ("GET", "/users/x"),
        ("PUT", "/users/x"),
        ("DELETE", "/users/x"),
        ("POST", "/users/x/activate"),
        ("POST", "/users/x/deactivate"),
        ("POST", "/users/x/unlock"),
        ("POST", "/users/x/revoke-sessions"),
    ] {
        assert_eq!(req(&s, m, p, at(&pt), Some(json!({}))).await.status(), 403, "{m} {p}");
    }
}

#[tokio::test]
async fn given_an_admin_then_every_endpoint_works_and_changes_revoke_what_they_must() {
    let (s, admin, t) = admin_server().await;
    let email = unique_email();
    let u = create(&s, at(&t), &email, json!({"name": "Bo", "is_verified": true})).await;
    let id = u["id"].as_str().unwrap().to_owned();
    assert_eq!(
        (u["email"].as_str(), u["is_superuser"].as_bool(), u["name"].as_str()),
        (Some(email.as_str()), Some(false), Some("Bo"))
    );
    assert_eq!(
        req(&s, "POST", "/users", at(&t), Some(json!({"email": email, "password": PASSWORD}))).await.status(),
        409
    );
    assert_eq!(
        req(&s, "POST", "/users", at(&t), Some(json!({"email": unique_email(), "password": "short"}))).await.status(),
        400
    );
    assert_eq!(req(&s, "GET", &format!("/users/{id}"), at(&t), None).await.status(), 200);
    assert_eq!(req(&s, "GET", "/users/00000000-0000-4000-8000-000000000000", at(&t), None).await.status(), 404);

    // Deactivation revokes sessions and tokens.
    let ut = s.login(&email, PASSWORD).await;
    let r = req(&s, "POST", &format!("/users/{id}/deactivate"), at(&t), None).await;
    assert_eq!(r.json::<Value>().await.unwrap()["is_active"], false);
    assert_eq!(s.get_bearer("/auth/me", at(&ut)).await.status(), 401);
    assert_eq!(s.post("/auth/refresh", json!({"refresh_token": ut["refresh_token"]})).await.status(), 401);
    assert_eq!(s.post("/auth/login", json!({"email": email, "password": PASSWORD})).await.status(), 401);
    let r = req(&s, "POST", &format!("/users/{id}/activate"), at(&t), None).await;
    assert_eq!(r.json::<Value>().await.unwrap()["is_active"], true);
    let ut = s.login(&email, PASSWORD).await;

    // Email and password changes: claim moves, sessions revoked.
    let new_email = unique_email();
    let r = req(
        &s,
        "PUT",
        &format!("/users/{id}"),
        at(&t),
        Some(json!({"email": new_email, "password": "amber-lantern-orchard-77", "name": null})),
    )
    .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!((v["email"].as_str(), v["name"].as_str()), (Some(new_email.as_str()), None));
    assert_eq!(s.get_bearer("/auth/me", at(&ut)).await.status(), 401);
    s.login(&new_email, "amber-lantern-orchard-77").await;
    assert_eq!(
        req(&s, "PUT", &format!("/users/{id}"), at(&t), Some(json!({"email": admin}))).await.status(),
        409,
        "taken"
    );
    assert_eq!(
        req(&s, "PUT", &format!("/users/{id}"), at(&t), Some(json!({"is_superuser": "yes"}))).await.status(),
        400
    );
    assert_eq!(
        req(&s, "PUT", &format!("/users/{id}"), at(&t), Some(json!({"sv": 9}))).await.status(),
        400,
        "unknown fields"
    );

    // Unlock clears a lockout.
    for _ in 0..6 {
        s.post("/auth/login", json!({"email": new_email, "password": "wrong-password-1"})).await;
    }
    assert_eq!(
        s.post("/auth/login", json!({"email": new_email, "password": "amber-lantern-orchard-77"})).await.status(),
        401
    );
    let locked: Value = req(&s, "GET", "/users?status=locked", at(&t), None).await.json().await.unwrap();
    assert_eq!(locked["items"].as_array().unwrap().len(), 1);
    assert_eq!(req(&s, "POST", &format!("/users/{id}/unlock"), at(&t), None).await.status(), 200);
    let ut = s.login(&new_email, "amber-lantern-orchard-77").await;

    // Forced logout.
    assert_eq!(req(&s, "POST", &format!("/users/{id}/revoke-sessions"), at(&t), None).await.status(), 204);
    assert_eq!(s.get_bearer("/auth/me", at(&ut)).await.status(), 401);
    assert_eq!(s.post("/auth/refresh", json!({"refresh_token": ut["refresh_token"]})).await.status(), 401);
}

#[tokio::test]
async fn given_self_protection_and_the_last_admin_then_the_dangerous_changes_are_refused() {
    let (s, _, t) = admin_server().await;
    let me: Value = s.get_bearer("/auth/me", at(&t)).await.json().await.unwrap();
    let my_id = me["id"].as_str().unwrap();
    for (m, p, body) in [
        ("POST", format!("/users/{my_id}/deactivate"), None),
        ("PUT", format!("/users/{my_id}"), Some(json!({"is_superuser": false}))),
        ("DELETE", format!("/users/{my_id}"), None),
    ] {
        let r = req(&s, m, &p, at(&t), body).await;
        assert_eq!(r.status(), 409, "{m} {p}");
        assert_eq!(problem(r).await["type"], "urn:secure-auth:problem:conflict");
    }
    // Another admin cannot remove the last one either... once it is the only one left.
    let other = unique_email();
    let o = create(&s, at(&t), &other, json!({"is_verified": true, "is_superuser": true})).await;
    let ot = s.login(&other, PASSWORD).await;
    assert_eq!(
        req(&s, "PUT", &format!("/users/{my_id}"), at(&ot), Some(json!({"is_superuser": false}))).await.status(),
        200
    );
    // Now `other` is the last active admin: the demoted first admin cannot act; nobody can remove other.
    let t2 = s.login(&other, PASSWORD).await;
    let o_id = o["id"].as_str().unwrap();
    assert_eq!(req(&s, "DELETE", &format!("/users/{o_id}"), at(&t2), None).await.status(), 409);
    let ids: Value = req(&s, "GET", "/users", at(&t2), None).await.json().await.unwrap();
    assert!(ids["items"].as_array().unwrap().iter().any(|u| u["is_superuser"] == true));
}

#[tokio::test]
async fn given_many_users_then_pages_walk_each_exactly_once_filters_apply_and_cursors_are_tamper_evident() {
    let (s, admin, t) = admin_server().await;
    let tag = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let mut expected: Vec<String> = vec![admin.clone()];
    for i in 0..7 {
        let e = format!("p{tag}-{i:02}@example.com");
        create(&s, at(&t), &e, json!({"is_verified": i % 2 == 0})).await;
        expected.push(e);
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let url = match &cursor {
            Some(c) => format!("/users?limit=3&cursor={c}"),
            None => "/users?limit=3".into(),
        };
        let r = req(&s, "GET", &url, at(&t), None).await;
        assert_eq!(r.status(), 200);
        let page: Value = r.json().await.unwrap();
        seen.extend(page["items"].as_array().unwrap().iter().map(|u| u["email"].as_str().unwrap().to_owned()));
        pages += 1;
        if pages == 1 {
            // Added while paging, after the cursor: it must still show up, once.
            let late = format!("q{tag}@example.com");
            create(&s, at(&t), &late, json!({})).await;
            expected.push(late);
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(seen, sorted, "stable email order");
    let mut want = expected.clone();
    want.sort();
    assert_eq!(seen, want, "every user exactly once");

    let r: Value = req(&s, "GET", &format!("/users?email_prefix=p{tag}&status=unverified"), at(&t), None)
        .await
        .json()
        .await
        .unwrap();
    let unverified: Vec<&str> = r["items"].as_array().unwrap().iter().map(|u| u["email"].as_str().unwrap()).collect();
    assert_eq!(unverified.len(), 3, "{unverified:?}");
    assert!(unverified.iter().all(|e| e.starts_with(&format!("p{tag}"))));
    let r: Value =
        req(&s, "GET", &format!("/users?email_prefix=P{tag}&status=active"), at(&t), None).await.json().await.unwrap();
    assert_eq!(r["items"].as_array().unwrap().len(), 7);

    // A cursor that was tampered with, forged, or used with other filters: 400, never a scan from elsewhere.
    let page: Value = req(&s, "GET", "/users?limit=2", at(&t), None).await.json().await.unwrap();
    let c = page["next_cursor"].as_str().unwrap().to_owned();
    let (payload, tag_part) = c.split_once('.').unwrap();
    let mut bytes = base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload).unwrap();
    bytes[5] ^= 1;
    let forged =
        format!("{}.{tag_part}", base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, bytes));
    for bad in [forged.as_str(), "garbage", "a.b"] {
        assert_eq!(req(&s, "GET", &format!("/users?limit=2&cursor={bad}"), at(&t), None).await.status(), 400, "{bad}");
    }
    assert_eq!(req(&s, "GET", &format!("/users?limit=2&cursor={c}&status=active"), at(&t), None).await.status(), 400);
    for bad in ["limit=0", "limit=101", "status=sleepy", "limit=x", "unknown=1"] {
        assert_eq!(req(&s, "GET", &format!("/users?{bad}"), at(&t), None).await.status(), 400, "{bad}");
    }
}

#[tokio::test]
async fn given_a_delete_then_no_item_of_the_user_is_left_in_the_table() {
    let (s, _, t) = admin_server().await;
    let email = unique_email();
    let u = create(&s, at(&t), &email, json!({"is_verified": true})).await;
    let id = u["id"].as_str().unwrap().to_owned();
    s.login(&email, PASSWORD).await;
    s.login(&email, PASSWORD).await;
    s.post("/auth/forgot-password", json!({"email": email})).await;
    s.post("/auth/login", json!({"email": email, "password": "wrong-password-1"})).await;
    let before = s.items().await;
    assert!(before.iter().filter(|i| i["pk"].as_s().unwrap() == &format!("USER#{id}")).count() >= 4);
    assert_eq!(req(&s, "DELETE", &format!("/users/{id}"), at(&t), None).await.status(), 204);
    let after = s.items().await;
    let orphans: Vec<_> = after
        .iter()
        .filter(|i| {
            let pk = i["pk"].as_s().unwrap();
            pk.contains(&id) || pk.contains(&email) || i.get("user_id").and_then(|v| v.as_s().ok()) == Some(&id)
        })
        .collect();
    assert!(orphans.is_empty(), "{orphans:?}");
    assert_eq!(req(&s, "DELETE", &format!("/users/{id}"), at(&t), None).await.status(), 404);
    // The address is free again.
    assert_eq!(s.post("/auth/signup", json!({"email": email, "password": PASSWORD})).await.status(), 202);
}
