//! Every multi-step operation walked through a store failure at each of its steps. A proxy in
//! front of DynamoDB Local (`e2e::calls::CallCounter::fail`) makes one chosen call of the
//! request fail, with every retry the SDK makes of it: either before it reaches DynamoDB, or
//! (for writes) after DynamoDB applied it, as when the answer never comes back. The walk first
//! runs the request cleanly to learn its calls, then once per call and kind of failure, each
//! time on fresh state, followed by the same request again (the client's retry). Each
//! operation's check then holds: no success was answered that was not stored, no half-applied
//! state is left (or the retry repairs it), the lockout gate fails closed.

use std::time::Duration;

use e2e::calls::{CallCounter, claims_of};
use e2e::lambda::{Event, Function, HttpResponse, Stack};
use e2e::{PASSWORD, mails_to, token_from_mail, unique_email};
use serde_json::{Value, json};
use shared::store::dynamo::DynamoStore;
use shared::store::{User, UserLookup};

const NEW_PASSWORD: &str = "amber-glacier-orchard-77";

/// The functions of one walk behind the failing proxy, and a direct view of the table.
struct Env {
    counter: CallCounter,
    stack: Stack,
    store: DynamoStore,
    raw: aws_sdk_dynamodb::Client,
    hash: String,
}

impl Env {
    async fn new(vars: &[(&str, &str)]) -> Env {
        let counter = CallCounter::start(Duration::ZERO).await;
        let mut stack = Stack::new().await.with("AWS_ENDPOINT_URL_DYNAMODB", &counter.url);
        for (k, v) in vars {
            stack = stack.with(k, v);
        }
        let raw = aws_sdk_dynamodb::Client::new(&shared::wiring::aws_config().await.unwrap());
        let store = DynamoStore::new(raw.clone(), &stack.table);
        let hasher = shared::password::Hasher::new(shared::config::HashParams::TEST, 1);
        let hash = hasher.hash(&shared::secret::Password::new(PASSWORD)).await.unwrap();
        Env { counter, stack, store, raw, hash }
    }

    async fn function(&self, binary: &str) -> Function {
        let f = self.stack.function(binary).await;
        f.init_time().await;
        f
    }

    /// A verified account with `PASSWORD`, written straight into the table.
    async fn user(&self, superuser: bool) -> User {
        e2e::stored_user(&self.store, &self.hash, superuser).await
    }

    /// Every item of the table whose partition key is `pk`.
    async fn partition(&self, pk: &str) -> usize {
        let out = self
            .raw
            .query()
            .table_name(&self.stack.table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", aws_sdk_dynamodb::types::AttributeValue::S(pk.into()))
            .consistent_read(true)
            .send()
            .await
            .unwrap();
        out.items.unwrap_or_default().len()
    }
}

fn post(path: &str, body: Value) -> Event {
    Event::post(path, body)
}

fn bearer(ev: Event, access: &str) -> Event {
    ev.bearer(access).authorizer_claims(claims_of(access))
}

async fn login(f: &Function, email: &str, password: &str) -> HttpResponse {
    f.http(post("/auth/login", json!({"email": email, "password": password}))).await
}

/// Which call failed, and how (for the messages).
#[derive(Debug, Clone)]
struct Step {
    class: String,
    occurrence: usize,
    landed: bool,
}

/// Walks `attempt` through a failure at each of its calls (see the module docs). `check` gets
/// the step (`None` for the clean run), the first answer and the retry's.
async fn walk<S>(
    env: &Env,
    name: &str,
    setup: impl AsyncFn(&Env) -> S,
    attempt: impl AsyncFn(&Env, &S) -> HttpResponse,
    check: impl AsyncFn(&Env, &S, Option<&Step>, &HttpResponse, &HttpResponse),
) {
    let s = setup(env).await;
    env.counter.take();
    let first = attempt(env, &s).await;
    let calls = env.counter.take();
    let retry = attempt(env, &s).await;
    check(env, &s, None, &first, &retry).await;
    let mut steps = Vec::new();
    let mut seen: Vec<(String, usize)> = Vec::new();
    for c in &calls.0 {
        let class = c.class();
        let occurrence = match seen.iter_mut().find(|(k, _)| *k == class) {
            Some((_, n)) => {
                *n += 1;
                *n - 1
            }
            None => {
                seen.push((class.clone(), 1));
                0
            }
        };
        steps.push(Step { class: class.clone(), occurrence, landed: false });
        if c.writes() {
            steps.push(Step { class, occurrence, landed: true });
        }
    }
    assert!(!steps.is_empty(), "{name}: the clean run made no DynamoDB call");
    for step in &steps {
        let s = setup(env).await;
        env.counter.take();
        env.counter.fail(&step.class, step.occurrence, step.landed);
        let first = attempt(env, &s).await;
        let failed = env.counter.heal();
        assert!(failed, "{name}: {step:?} never came ({})", env.counter.take().summary());
        let retry = attempt(env, &s).await;
        check(env, &s, Some(step), &first, &retry).await;
    }
    let list: Vec<String> = steps
        .iter()
        .map(|s| format!("{}#{}{}", s.class, s.occurrence, if s.landed { " (landed)" } else { "" }))
        .collect();
    println!("{name}: {} failures walked: {}", steps.len(), list.join(", "));
}

fn ok_or_unavailable(r: &HttpResponse, ok: u16, what: &str, step: Option<&Step>) {
    assert!(r.status == ok || r.status == 503, "{what} at {step:?}: {r:?}");
    if step.is_none() {
        assert_eq!(r.status, ok, "{what} without a fault");
    }
}

#[tokio::test]
async fn given_a_store_failure_at_each_step_of_signup_then_nothing_half_written_and_the_retry_completes_it() {
    let env = Env::new(&[]).await;
    let (signup, verify, login_fn) =
        tokio::join!(env.function("signup"), env.function("verify-email"), env.function("login"));
    walk(
        &env,
        "signup",
        async |_| unique_email(),
        async |_, email| signup.http(post("/auth/signup", json!({"email": email, "password": PASSWORD}))).await,
        async |env, email, step, first, retry| {
            ok_or_unavailable(first, 202, "signup", step);
            assert_eq!(retry.status, 202, "the retried signup at {step:?}: {retry:?}");
            // The account, its claim and its verification link exist together.
            let user = env.store.find_user_by_email(email).await.unwrap().expect("the account exists");
            assert_eq!(env.partition(&format!("EMAIL#{email}")).await, 1);
            let token = token_from_mail(email, "verify").await;
            let r = verify.http(post("/auth/verify-email", json!({"token": token, "password": PASSWORD}))).await;
            assert_eq!(r.status, 200, "the newest link works at {step:?}: {r:?}");
            assert_eq!(login(&login_fn, email, PASSWORD).await.status, 200);
            assert!(env.store.get_user(&user.id).await.unwrap().is_some_and(|u| u.is_verified));
        },
    )
    .await;
}

#[tokio::test]
async fn given_a_store_failure_at_each_step_of_login_then_no_session_is_answered_that_was_not_stored_and_the_gate_fails_closed()
 {
    let env = Env::new(&[]).await;
    let (login_fn, refresh) = tokio::join!(env.function("login"), env.function("refresh"));
    walk(
        &env,
        "login",
        async |env| env.user(false).await,
        async |_, user| login(&login_fn, &user.email, PASSWORD).await,
        async |_, _, step, first, retry| {
            ok_or_unavailable(first, 200, "login", step);
            if step.is_some_and(|s| s.class.contains("LOCK") && !s.landed) {
                assert_eq!(first.status, 503, "the lockout gate could not count: fail closed at {step:?}");
            }
            for r in [first, retry] {
                if r.status == 200 {
                    let token = r.json()["refresh_token"].clone();
                    let again = refresh.http(post("/auth/refresh", json!({"refresh_token": token}))).await;
                    assert_eq!(again.status, 200, "an answered session was stored ({step:?}): {again:?}");
                }
            }
            assert_eq!(retry.status, 200, "the retried login at {step:?}: {retry:?}");
        },
    )
    .await;
}

#[tokio::test]
async fn given_a_store_failure_at_each_step_of_the_failure_that_locks_then_the_account_ends_locked_and_its_owner_told_once()
 {
    let env = Env::new(&[("LOCKOUT_THRESHOLD", "2")]).await;
    let login_fn = env.function("login").await;
    walk(
        &env,
        "locking login",
        async |env| {
            let user = env.user(false).await;
            assert_eq!(login(&login_fn, &user.email, "wrong-password-1").await.status, 401);
            user
        },
        async |_, user| login(&login_fn, &user.email, "wrong-password-2").await,
        async |_, user, step, first, retry| {
            ok_or_unavailable(first, 401, "the locking attempt", step);
            assert_eq!(retry.status, 401, "{step:?}");
            // Locked for this IP now, whatever failed on the way.
            let r = login(&login_fn, &user.email, PASSWORD).await;
            assert_eq!(r.status, 401, "the right password from the locked IP at {step:?}");
            let notices = mails_to(&user.email).await.iter().filter(|m| m.subject.contains("locked")).count();
            assert_eq!(notices, 1, "one lock notice at {step:?}");
        },
    )
    .await;
}

#[tokio::test]
async fn given_a_store_failure_at_each_step_of_refresh_then_the_retry_rotates_and_nobody_is_logged_out() {
    let env = Env::new(&[]).await;
    let (login_fn, refresh) = tokio::join!(env.function("login"), env.function("refresh"));
    walk(
        &env,
        "refresh",
        async |env| {
            let user = env.user(false).await;
            login(&login_fn, &user.email, PASSWORD).await.json()["refresh_token"].as_str().unwrap().to_owned()
        },
        async |_, token| refresh.http(post("/auth/refresh", json!({"refresh_token": token}))).await,
        async |_, _, step, first, retry| {
            ok_or_unavailable(first, 200, "refresh", step);
            assert_eq!(retry.status, 200, "the retried refresh at {step:?}: {retry:?}");
            if first.status == 200 {
                assert_eq!(first.json()["refresh_token"], retry.json()["refresh_token"], "one successor");
            }
            let next = retry.json()["refresh_token"].clone();
            let r = refresh.http(post("/auth/refresh", json!({"refresh_token": next}))).await;
            assert_eq!(r.status, 200, "the successor works at {step:?}: {r:?}");
        },
    )
    .await;
}

#[tokio::test]
async fn given_a_store_failure_at_each_step_of_a_reset_then_the_password_is_either_old_or_new_and_the_retry_settles_it()
{
    let env = Env::new(&[]).await;
    let (login_fn, forgot, reset) =
        tokio::join!(env.function("login"), env.function("forgot-password"), env.function("reset-password"));
    walk(
        &env,
        "reset-password",
        async |env| {
            let user = env.user(false).await;
            assert_eq!(forgot.http(post("/auth/forgot-password", json!({"email": user.email}))).await.status, 202);
            (user.email.clone(), token_from_mail(&user.email, "reset").await)
        },
        async |_, (_, token)| {
            reset.http(post("/auth/reset-password", json!({"token": token, "new_password": NEW_PASSWORD}))).await
        },
        async |_, (email, _), step, first, retry| {
            ok_or_unavailable(first, 204, "reset", step);
            if first.status == 204 {
                assert_eq!(retry.status, 400, "the link is spent: {retry:?}");
            } else {
                assert!(retry.status == 204 || retry.status == 400, "{step:?}: {retry:?}");
            }
            // The reset happened exactly once: the new password works and the old one not.
            assert_eq!(login(&login_fn, email, NEW_PASSWORD).await.status, 200, "{step:?}");
            assert_eq!(login(&login_fn, email, PASSWORD).await.status, 401, "{step:?}");
        },
    )
    .await;
}

#[tokio::test]
async fn given_a_store_failure_at_each_step_of_a_password_change_then_the_change_is_whole_and_the_caller_stays_signed_in()
 {
    let env = Env::new(&[]).await;
    let (login_fn, change, refresh) =
        tokio::join!(env.function("login"), env.function("change-password"), env.function("refresh"));
    walk(
        &env,
        "change-password",
        async |env| {
            let user = env.user(false).await;
            (user.email.clone(), login(&login_fn, &user.email, PASSWORD).await.json())
        },
        async |_, (_, tokens)| {
            let access = tokens["access_token"].as_str().unwrap();
            let body = json!({"current_password": PASSWORD, "new_password": NEW_PASSWORD});
            change.http(bearer(post("/auth/change-password", body), access)).await
        },
        async |_, (email, tokens), step, first, retry| {
            ok_or_unavailable(first, 204, "change-password", step);
            if first.status == 503 {
                assert!(matches!(retry.status, 204 | 401), "{step:?}: {retry:?}");
            }
            let new = login(&login_fn, email, NEW_PASSWORD).await.status;
            let old = login(&login_fn, email, PASSWORD).await.status;
            assert_eq!((new, old), (200, 401), "changed exactly once at {step:?}");
            let r = refresh.http(post("/auth/refresh", json!({"refresh_token": tokens["refresh_token"]}))).await;
            assert_eq!(r.status, 200, "the caller's own session survives at {step:?}: {r:?}");
        },
    )
    .await;
}

#[tokio::test]
async fn given_a_store_failure_at_each_step_of_an_email_change_confirmation_then_the_address_moves_whole_or_not_at_all()
{
    let env = Env::new(&[]).await;
    let (login_fn, change, confirm) =
        tokio::join!(env.function("login"), env.function("change-email"), env.function("confirm-email-change"));
    walk(
        &env,
        "confirm-email-change",
        async |env| {
            let user = env.user(false).await;
            let access =
                login(&login_fn, &user.email, PASSWORD).await.json()["access_token"].as_str().unwrap().to_owned();
            let new = unique_email();
            let body = json!({"current_password": PASSWORD, "new_email": new});
            assert_eq!(change.http(bearer(post("/auth/change-email", body), &access)).await.status, 202);
            (user, new.clone(), token_from_mail(&new, "confirm your new email").await)
        },
        async |_, (_, _, token)| confirm.http(post("/auth/confirm-email-change", json!({"token": token}))).await,
        async |env, (user, new, _), step, first, retry| {
            ok_or_unavailable(first, 200, "confirm-email-change", step);
            if first.status == 200 {
                assert_eq!(retry.status, 400, "the link is spent: {retry:?}");
            } else {
                assert!(retry.status == 200 || retry.status == 400, "{step:?}: {retry:?}");
            }
            let stored = env.store.get_user(&user.id).await.unwrap().unwrap();
            assert_eq!(stored.email, *new, "moved at {step:?}");
            assert_eq!(env.partition(&format!("EMAIL#{}", user.email)).await, 0, "the old claim is gone");
            assert_eq!(env.store.find_user_by_email(new).await.unwrap().map(|u| u.id), Some(user.id.clone()));
            assert_eq!(login(&login_fn, new, PASSWORD).await.status, 200);
            assert_eq!(login(&login_fn, &user.email, PASSWORD).await.status, 401);
        },
    )
    .await;
}

#[tokio::test]
async fn given_a_store_failure_at_each_step_of_an_admin_delete_then_nothing_of_the_user_is_left_after_the_retry() {
    let env = Env::new(&[]).await;
    let (login_fn, delete, refresh) =
        tokio::join!(env.function("login"), env.function("users-delete"), env.function("refresh"));
    let admin = env.user(true).await;
    let admin_access =
        login(&login_fn, &admin.email, PASSWORD).await.json()["access_token"].as_str().unwrap().to_owned();
    walk(
        &env,
        "users-delete",
        async |env| {
            let user = env.user(false).await;
            // A session and a lock item the delete must take along.
            let tokens = login(&login_fn, &user.email, PASSWORD).await.json();
            assert_eq!(login(&login_fn, &user.email, "wrong-password-1").await.status, 401);
            (user, tokens)
        },
        async |_, (user, _)| {
            delete.http(bearer(Event::new("DELETE", &format!("/users/{}", user.id)), &admin_access)).await
        },
        async |env, (user, tokens), step, first, retry| {
            ok_or_unavailable(first, 204, "users-delete", step);
            assert!(retry.status == 204 || retry.status == 404, "{step:?}: {retry:?}");
            assert_eq!(env.partition(&format!("USER#{}", user.id)).await, 0, "user items left at {step:?}");
            assert_eq!(env.partition(&format!("EMAIL#{}", user.email)).await, 0, "claim left at {step:?}");
            assert_eq!(env.partition(&format!("LOCK#{}", user.email)).await, 0, "lock items left at {step:?}");
            let r = refresh.http(post("/auth/refresh", json!({"refresh_token": tokens["refresh_token"]}))).await;
            assert_eq!(r.status, 401, "{step:?}");
        },
    )
    .await;
}

#[tokio::test]
async fn given_a_store_failure_at_each_step_of_an_email_change_request_then_the_retry_sends_a_link_that_works() {
    let env = Env::new(&[]).await;
    let (login_fn, change, confirm) =
        tokio::join!(env.function("login"), env.function("change-email"), env.function("confirm-email-change"));
    walk(
        &env,
        "change-email",
        async |env| {
            let user = env.user(false).await;
            let access =
                login(&login_fn, &user.email, PASSWORD).await.json()["access_token"].as_str().unwrap().to_owned();
            (user, access, unique_email())
        },
        async |_, (_, access, new)| {
            let body = json!({"current_password": PASSWORD, "new_email": new});
            change.http(bearer(post("/auth/change-email", body), access)).await
        },
        async |env, (user, _, new), step, first, retry| {
            ok_or_unavailable(first, 202, "change-email", step);
            assert_eq!(retry.status, 202, "the retried request at {step:?}: {retry:?}");
            // Nothing moved yet, and the newest link moves the address whole.
            assert_eq!(env.store.get_user(&user.id).await.unwrap().unwrap().email, user.email, "{step:?}");
            let token = token_from_mail(new, "confirm your new email").await;
            let r = confirm.http(post("/auth/confirm-email-change", json!({"token": token}))).await;
            assert_eq!(r.status, 200, "the link works at {step:?}: {r:?}");
            assert_eq!(env.store.find_user_by_email(new).await.unwrap().map(|u| u.id), Some(user.id.clone()));
            assert_eq!(login(&login_fn, new, PASSWORD).await.status, 200);
        },
    )
    .await;
}

#[tokio::test]
async fn given_a_store_failure_at_each_step_of_a_second_factor_sign_in_then_code_and_challenge_go_together() {
    use shared::store::MfaStore;
    let env = Env::new(&[]).await;
    let (login_fn, verify, refresh) =
        tokio::join!(env.function("login"), env.function("mfa-verify"), env.function("refresh"));
    walk(
        &env,
        "mfa-verify",
        async |env| {
            // A user with an active factor, written straight into the table, and its challenge.
            let user = env.user(false).await;
            let secret = env.stack.enable_totp(&env.store, &user).await;
            let r = login(&login_fn, &user.email, PASSWORD).await;
            assert_eq!(r.status, 403, "{r:?}");
            let step = (e2e::unix_now() / 30) as u64;
            (user, secret.code_at(e2e::unix_now()), r.json()["mfa_token"].as_str().unwrap().to_owned(), step)
        },
        async |_, (_, code, challenge, _)| {
            verify.http(post("/auth/mfa/verify", json!({"mfa_token": challenge, "code": code}))).await
        },
        async |env, (user, _, challenge, step), failed, first, retry| {
            ok_or_unavailable(first, 200, "mfa-verify", failed);
            assert!(matches!(retry.status, 200 | 401), "{failed:?}: {retry:?}");
            // Both or neither: the challenge is gone exactly when the code's step is spent.
            let hash = shared::tokens::hash_secret(challenge.rsplit('.').next().unwrap());
            let live = env.store.get_mfa_challenge(&user.id, &hash, shared::now(), 5).await.unwrap().is_some();
            let spent = env.store.get_mfa(&user.id).await.unwrap().unwrap().last_step >= *step;
            assert!(!live && spent, "{failed:?}: after the retry the code and the challenge are spent");
            let answered = [first, retry].into_iter().filter(|r| r.status == 200).count();
            assert!(answered <= 1, "{failed:?}: one code signed in twice");
            if first.status != 200 && retry.status == 401 {
                // The first attempt's transaction landed: a fresh sign-in with the next code works.
                let r = login(&login_fn, &user.email, PASSWORD).await;
                assert_eq!(r.status, 403, "{failed:?}: {r:?}");
            }
            for r in [first, retry].into_iter().filter(|r| r.status == 200) {
                let token = r.json()["refresh_token"].clone();
                let again = refresh.http(post("/auth/refresh", json!({"refresh_token": token}))).await;
                assert_eq!(again.status, 200, "an answered session was stored ({failed:?}): {again:?}");
            }
        },
    )
    .await;
}

#[tokio::test]
async fn given_a_store_failure_at_each_step_of_a_second_factor_confirmation_then_it_is_whole_and_the_caller_stays_signed_in()
 {
    use shared::store::MfaStore;
    let env = Env::new(&[]).await;
    let (login_fn, enroll, refresh) =
        tokio::join!(env.function("login"), env.function("mfa-enroll"), env.function("refresh"));
    walk(
        &env,
        "mfa-confirm",
        async |env| {
            let user = env.user(false).await;
            let tokens = login(&login_fn, &user.email, PASSWORD).await.json();
            let access = tokens["access_token"].as_str().unwrap().to_owned();
            let r = enroll
                .http(bearer(post("/auth/mfa/totp/enroll", json!({"current_password": PASSWORD})), &access))
                .await;
            assert_eq!(r.status, 200, "{r:?}");
            (user, tokens, r.json()["secret"].as_str().unwrap().to_owned())
        },
        async |_, (_, tokens, secret)| {
            let access = tokens["access_token"].as_str().unwrap();
            let code = e2e::totp_at(secret, e2e::unix_now());
            enroll.http(bearer(post("/auth/mfa/totp/confirm", json!({"code": code})), access)).await
        },
        async |env, (user, tokens, _), failed, first, retry| {
            ok_or_unavailable(first, 200, "mfa-confirm", failed);
            // A retry after a lost answer finds the factor on (409) or its token stale (401):
            // the codes are lost then, and new ones are one request away.
            assert!(matches!(retry.status, 200 | 401 | 409), "{failed:?}: {retry:?}");
            let stored = env.store.get_user(&user.id).await.unwrap().unwrap();
            let factor = env.store.get_mfa(&user.id).await.unwrap().unwrap_or_default();
            let whole = stored.mfa_enabled && factor.secret.is_some() && factor.pending.is_none();
            let none = !stored.mfa_enabled && factor.secret.is_none() && factor.pending.is_some();
            assert!(whole || none, "{failed:?}: half-enabled: {stored:?} {factor:?}");
            assert_eq!(
                whole,
                stored.session_version == user.session_version + 1,
                "{failed:?}: the version moves with it"
            );
            if first.status == 200 || retry.status == 200 {
                assert!(whole, "{failed:?}: an answered confirmation was stored");
            }
            let r = refresh.http(post("/auth/refresh", json!({"refresh_token": tokens["refresh_token"]}))).await;
            assert_eq!(r.status, 200, "the caller's own session survives at {failed:?}: {r:?}");
        },
    )
    .await;
}
