//! Writes whose answer is lost after they landed: the proxy in front of DynamoDB Local
//! (e2e::calls) lets the write through and answers 500, the SDK retries the same request, and
//! the function binary must recognise its own landed write rather than fail, refuse or log the
//! user out.

use e2e::calls::{CallCounter, claims_of};
use e2e::lambda::{Event, Function, Stack};
use e2e::{PASSWORD, mails_to, token_from_mail, unique_email};
use serde_json::{Value, json};

const NEW_PASSWORD: &str = "amber-glacier-orchard-77";

/// A verified account, through the stack's functions; returns its login tokens.
async fn account(stack: &Stack, email: &str) -> Value {
    let (signup, verify, login) =
        tokio::join!(stack.function("signup"), stack.function("verify-email"), stack.function("login"));
    assert_eq!(
        signup.http(Event::post("/auth/signup", json!({"email": email, "password": PASSWORD}))).await.status,
        202
    );
    let token = token_from_mail(email, "verify").await;
    assert_eq!(
        verify.http(Event::post("/auth/verify-email", json!({"token": token, "password": PASSWORD}))).await.status,
        200
    );
    let r = login.http(Event::post("/auth/login", json!({"email": email, "password": PASSWORD}))).await;
    assert_eq!(r.status, 200);
    r.json()
}

async fn stack_behind(counter: &CallCounter) -> Stack {
    Stack::new().await.with("AWS_ENDPOINT_URL_DYNAMODB", &counter.url)
}

fn landed_and_lost(counter: &CallCounter) -> bool {
    counter.take().0.iter().any(|c| c.op.ends_with("answer lost)"))
}

#[tokio::test]
async fn given_a_password_change_whose_answer_was_lost_then_the_retry_succeeds_and_the_caller_stays_signed_in() {
    let counter = CallCounter::start(std::time::Duration::ZERO).await;
    let stack = stack_behind(&counter).await;
    let email = unique_email();
    let tokens = account(&stack, &email).await;
    let (change, refresh, login): (Function, Function, Function) =
        tokio::join!(stack.function("change-password"), stack.function("refresh"), stack.function("login"));
    let access = tokens["access_token"].as_str().unwrap();
    counter.take();
    counter.lose_answer("TransactWriteItems", "password_hash = :new", 1);
    let body = json!({"current_password": PASSWORD, "new_password": NEW_PASSWORD});
    let r = change
        .http(Event::post("/auth/change-password", body).bearer(access).authorizer_claims(claims_of(access)))
        .await;
    assert!(landed_and_lost(&counter), "the change landed and its answer was lost");
    assert_eq!(r.status, 204, "{}", String::from_utf8_lossy(&r.body));
    let r = refresh.http(Event::post("/auth/refresh", json!({"refresh_token": tokens["refresh_token"]}))).await;
    assert_eq!(r.status, 200, "the caller's session survives its own password change");
    let r = login.http(Event::post("/auth/login", json!({"email": email, "password": NEW_PASSWORD}))).await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn given_a_lock_whose_answer_was_lost_then_the_owner_still_gets_one_notice() {
    let counter = CallCounter::start(std::time::Duration::ZERO).await;
    let stack = stack_behind(&counter).await.with("LOCKOUT_THRESHOLD", "3");
    let email = unique_email();
    account(&stack, &email).await;
    let login = stack.function("login").await;
    counter.lose_answer("UpdateItem", "locked_until = :until", 1);
    for _ in 0..3 {
        let r = login.http(Event::post("/auth/login", json!({"email": email, "password": "wrong-password-1"}))).await;
        assert_eq!(r.status, 401);
    }
    assert!(landed_and_lost(&counter), "the lock landed and its answer was lost");
    let notices = mails_to(&email).await.into_iter().filter(|m| m.subject.contains("locked")).count();
    assert_eq!(notices, 1, "one lock, one notice");
    let r = login.http(Event::post("/auth/login", json!({"email": email, "password": PASSWORD}))).await;
    assert_eq!(r.status, 401, "locked for that IP");
}

#[tokio::test]
async fn given_a_login_whose_write_landed_and_lost_its_answer_then_the_retry_signs_in_once() {
    let counter = CallCounter::start(std::time::Duration::ZERO).await;
    let stack = stack_behind(&counter).await;
    let email = unique_email();
    account(&stack, &email).await;
    let (login, refresh) = tokio::join!(stack.function("login"), stack.function("refresh"));
    counter.take();
    counter.lose_answer("TransactWriteItems", "SESSION#", 1);
    let r = login.http(Event::post("/auth/login", json!({"email": email, "password": PASSWORD}))).await;
    assert!(landed_and_lost(&counter));
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let t = r.json();
    let r = refresh.http(Event::post("/auth/refresh", json!({"refresh_token": t["refresh_token"]}))).await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn given_a_rotation_whose_answer_was_lost_then_the_refresh_answers_the_successor_it_stored() {
    let counter = CallCounter::start(std::time::Duration::ZERO).await;
    let stack = stack_behind(&counter).await;
    let email = unique_email();
    let tokens = account(&stack, &email).await;
    let refresh = stack.function("refresh").await;
    counter.take();
    counter.lose_answer("UpdateItem", "current_hash = :new", 1);
    let r = refresh.http(Event::post("/auth/refresh", json!({"refresh_token": tokens["refresh_token"]}))).await;
    assert!(landed_and_lost(&counter));
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let next = r.json();
    assert_ne!(next["refresh_token"], tokens["refresh_token"]);
    let r = refresh.http(Event::post("/auth/refresh", json!({"refresh_token": next["refresh_token"]}))).await;
    assert_eq!(r.status, 200, "the stored successor is the one answered");
}

#[tokio::test]
async fn given_a_reset_whose_transaction_landed_and_lost_its_answer_then_the_retry_answers_204_not_invalid_token() {
    let counter = CallCounter::start(std::time::Duration::ZERO).await;
    let stack = stack_behind(&counter).await;
    let email = unique_email();
    account(&stack, &email).await;
    let (forgot, reset, login): (Function, Function, Function) =
        tokio::join!(stack.function("forgot-password"), stack.function("reset-password"), stack.function("login"));
    assert_eq!(forgot.http(Event::post("/auth/forgot-password", json!({"email": email}))).await.status, 202);
    let token = token_from_mail(&email, "reset").await;
    counter.take();
    counter.lose_answer("TransactWriteItems", "password_hash = :new", 1);
    let r =
        reset.http(Event::post("/auth/reset-password", json!({"token": token, "new_password": NEW_PASSWORD}))).await;
    assert!(landed_and_lost(&counter), "the reset landed and its answer was lost");
    assert_eq!(r.status, 204, "{}", String::from_utf8_lossy(&r.body));
    let r = login.http(Event::post("/auth/login", json!({"email": email, "password": NEW_PASSWORD}))).await;
    assert_eq!(r.status, 200);
    // The link is spent: a second use is refused.
    let r = reset
        .http(Event::post("/auth/reset-password", json!({"token": token, "new_password": "quartz-falcon-harbor-63"})))
        .await;
    assert_eq!(r.status, 400);
}
