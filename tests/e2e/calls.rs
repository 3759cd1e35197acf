//! DynamoDB calls per request, counted by a proxy in front of DynamoDB Local (e2e::calls)
//! while the real function binaries serve API Gateway events, with the template's rate limits
//! on. Call counts are deterministic; round trips are made structural by the proxy's hold.

use e2e::calls::{BUDGETS, measure, table};

#[tokio::test]
async fn given_rate_limits_on_then_every_request_stays_within_its_dynamodb_call_budget() {
    let rows = measure(true).await;
    let figures = table(&rows);
    println!("{figures}");
    let mut over = Vec::new();
    for (request, calls, trips) in BUDGETS {
        let m = rows.iter().find(|m| m.request == *request).unwrap_or_else(|| panic!("{request} not measured"));
        if m.calls.count() > *calls || m.calls.round_trips() > *trips {
            over.push(format!(
                "{request}: {} calls (budget {calls}), {} round trips (budget {trips})",
                m.calls.count(),
                m.calls.round_trips()
            ));
        }
    }
    assert!(over.is_empty(), "over budget:\n{}\n\n{figures}", over.join("\n"));
}

#[tokio::test]
async fn given_an_ip_over_its_limit_then_login_and_refresh_only_read_and_count_and_change_nothing() {
    use e2e::calls::CallCounter;
    use e2e::lambda::{Event, Stack};
    use e2e::{PASSWORD, token_from_mail, unique_email};
    use serde_json::json;

    let counter = CallCounter::start(std::time::Duration::ZERO).await;
    let stack = Stack::new()
        .await
        .with("AWS_ENDPOINT_URL_DYNAMODB", &counter.url)
        .with("RATE_LIMITS_ENABLED", "true")
        .with("RATE_LIMIT_LOGIN", "ip=2/3600,email=50/3600")
        .with("RATE_LIMIT_REFRESH", "ip=1/3600");
    let (signup, verify, login, refresh) = tokio::join!(
        stack.function("signup"),
        stack.function("verify-email"),
        stack.function("login"),
        stack.function("refresh")
    );
    let email = unique_email();
    signup.http(Event::post("/auth/signup", json!({"email": email, "password": PASSWORD}))).await;
    let token = token_from_mail(&email, "verify").await;
    assert_eq!(
        verify.http(Event::post("/auth/verify-email", json!({"token": token, "password": PASSWORD}))).await.status,
        200
    );
    let body = |pw: &str| json!({"email": email, "password": pw});
    let r = login.http(Event::post("/auth/login", body(PASSWORD))).await;
    assert_eq!(r.status, 200);
    let tokens = r.json();
    assert_eq!(login.http(Event::post("/auth/login", body("wrong-password-1"))).await.status, 401);
    let failures = |items: &[std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>]| {
        items
            .iter()
            .filter(|i| i["pk"].as_s().is_ok_and(|p| p.starts_with("LOCK#")))
            .map(|i| i.get("failures").and_then(|v| v.as_n().ok()).cloned().unwrap_or_default())
            .collect::<Vec<_>>()
    };
    let store = shared::store::dynamo::DynamoStore::new(
        aws_sdk_dynamodb::Client::new(&shared::wiring::aws_config().await.unwrap()),
        &stack.table,
    );
    let locks_before = failures(&store.scan_all().await.unwrap());
    counter.take();

    // Third login from the IP, right password: refused, and it only read the account and
    // counted the two limits; no lockout count, no session.
    let r = login.http(Event::post("/auth/login", body(PASSWORD))).await;
    assert_eq!(r.status, 429, "{}", String::from_utf8_lossy(&r.body));
    let calls = counter.take();
    let ops: Vec<&str> = calls.0.iter().map(|c| c.op.as_str()).collect();
    assert!(ops.iter().all(|op| *op == "GetItem" || *op == "UpdateItem"), "{}", calls.summary());
    assert_eq!(
        ops.iter().filter(|op| **op == "UpdateItem").count(),
        2,
        "the two rate counts only: {}",
        calls.summary()
    );
    assert_eq!(failures(&store.scan_all().await.unwrap()), locks_before, "no lockout count");

    let r = refresh.http(Event::post("/auth/refresh", json!({"refresh_token": tokens["refresh_token"]}))).await;
    assert_eq!(r.status, 200);
    let rotated = r.json();
    counter.take();
    let r = refresh.http(Event::post("/auth/refresh", json!({"refresh_token": rotated["refresh_token"]}))).await;
    assert_eq!(r.status, 429);
    let calls = counter.take();
    let ops: Vec<&str> = calls.0.iter().map(|c| c.op.as_str()).collect();
    assert_eq!(ops.iter().filter(|op| **op == "UpdateItem").count(), 1, "the rate count only: {}", calls.summary());
    assert!(ops.iter().all(|op| *op == "BatchGetItem" || *op == "UpdateItem"), "{}", calls.summary());
    // Nothing rotated: the token still refreshes from another address.
    let ev = Event::post("/auth/refresh", json!({"refresh_token": rotated["refresh_token"]})).source_ip("198.51.100.9");
    assert_eq!(refresh.http(ev).await.status, 200);
}

#[tokio::test]
async fn given_an_ip_over_its_limit_then_the_second_step_only_reads_and_counts_and_spends_no_code() {
    use e2e::calls::CallCounter;
    use e2e::lambda::{Event, Stack};
    use e2e::{PASSWORD, stored_user, unix_now};
    use serde_json::json;
    use shared::store::MfaStore;

    let counter = CallCounter::start(std::time::Duration::ZERO).await;
    let stack = Stack::new()
        .await
        .with("AWS_ENDPOINT_URL_DYNAMODB", &counter.url)
        .with("RATE_LIMITS_ENABLED", "true")
        .with("RATE_LIMIT_MFA_VERIFY", "ip=1/3600");
    let store = shared::store::dynamo::DynamoStore::new(
        aws_sdk_dynamodb::Client::new(&shared::wiring::aws_config().await.unwrap()),
        &stack.table,
    );
    let hash = shared::password::Hasher::new(shared::config::HashParams::TEST, 1)
        .hash(&shared::secret::Password::new(PASSWORD))
        .await
        .unwrap();
    let user = stored_user(&store, &hash, false).await;
    let secret = stack.enable_totp(&store, &user).await;
    let (login, verify) = tokio::join!(stack.function("login"), stack.function("mfa-verify"));
    let challenge = || async {
        let r = login.http(Event::post("/auth/login", json!({"email": user.email, "password": PASSWORD}))).await;
        assert_eq!(r.status, 403, "{}", String::from_utf8_lossy(&r.body));
        r.json()["mfa_token"].as_str().unwrap().to_owned()
    };
    let first = challenge().await;
    let wrong = if secret.code_at(unix_now()) == "000000" { "111111" } else { "000000" };
    let r = verify.http(Event::post("/auth/mfa/verify", json!({"mfa_token": first, "code": wrong}))).await;
    assert_eq!(r.status, 401);
    let ch = challenge().await;
    counter.take();
    // Over the limit with the right code: refused after the reads and the count, and nothing
    // spent: no step, no challenge, no lockout count, no session.
    let code = secret.code_at(unix_now());
    let r = verify.http(Event::post("/auth/mfa/verify", json!({"mfa_token": ch, "code": code}))).await;
    assert_eq!(r.status, 429, "{}", String::from_utf8_lossy(&r.body));
    let calls = counter.take();
    let ops: Vec<&str> = calls.0.iter().map(|c| c.op.as_str()).collect();
    assert!(ops.iter().all(|op| *op == "GetItem" || *op == "UpdateItem"), "{}", calls.summary());
    assert_eq!(ops.iter().filter(|op| **op == "UpdateItem").count(), 1, "the rate count only: {}", calls.summary());
    assert_eq!(store.get_mfa(&user.id).await.unwrap().unwrap().last_step, 0, "no step spent");
    let ev = Event::post("/auth/mfa/verify", json!({"mfa_token": ch, "code": code})).source_ip("198.51.100.9");
    assert_eq!(verify.http(ev).await.status, 200, "the challenge and the code still work from elsewhere");
}
