//! A counting proxy in front of DynamoDB Local: a function binary started with
//! `AWS_ENDPOINT_URL_DYNAMODB` pointing here sends every call through it, and the proxy records
//! each call's operation (from `X-Amz-Target`) and when it arrived and was answered.
//!
//! Every answer is held back by `hold` before it is returned, so calls a request makes
//! concurrently overlap and calls that wait on each other do not: the longest chain of
//! non-overlapping calls is then the number of *sequential round trips*, a property of the
//! code rather than of the machine's speed.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

/// One DynamoDB call as the proxy saw it.
#[derive(Debug, Clone)]
pub struct Call {
    /// The operation, for example `GetItem` or `TransactWriteItems`.
    pub op: String,
    pub start: Instant,
    pub end: Instant,
    /// The request's JSON body.
    pub body: String,
}

impl Call {
    /// What the call is, independent of ids and times: its operation and the kind of item it
    /// names first (the partition key's prefix, `USER`, `LOCK`, `RATE`, …), for example
    /// `UpdateItem LOCK`.
    pub fn class(&self) -> String {
        class_of(&self.op, &self.body)
    }

    /// Whether the call writes.
    pub fn writes(&self) -> bool {
        !matches!(self.op.as_str(), "GetItem" | "BatchGetItem" | "Query" | "Scan" | "DescribeTable")
    }
}

fn class_of(op: &str, body: &str) -> String {
    let kind = body
        .split_once("\"pk\":{\"S\":\"")
        .map(|(_, rest)| rest.split(['#', '"']).next().unwrap_or_default())
        .or_else(|| {
            body.split_once("\":pk\":{\"S\":\"").map(|(_, rest)| rest.split(['#', '"']).next().unwrap_or_default())
        })
        .unwrap_or_default();
    format!("{op} {kind}").trim_end().to_owned()
}

/// A call the proxy makes fail (`CallCounter::fail`).
struct Fault {
    class: String,
    /// Which call of that class (0: the first since `fail`).
    occurrence: usize,
    seen: usize,
    landed: bool,
    /// The failed request's body: its retries by the SDK fail too.
    failed: Option<String>,
}

struct ProxyState {
    upstream: String,
    client: reqwest::Client,
    hold: Duration,
    calls: Mutex<Vec<Call>>,
    lost: Mutex<Vec<LostAnswer>>,
    fault: Mutex<Option<Fault>>,
}

/// Calls whose answers the proxy loses (see `CallCounter::lose_answer`).
struct LostAnswer {
    op: String,
    needle: String,
    remaining: usize,
}

/// A running counting proxy.
pub struct CallCounter {
    /// What to set `AWS_ENDPOINT_URL_DYNAMODB` to.
    pub url: String,
    state: Arc<ProxyState>,
}

/// The hold that separates sequential calls from concurrent ones (see the module docs).
pub const HOLD: Duration = Duration::from_millis(40);

impl CallCounter {
    /// Starts a proxy to the DynamoDB Local of `AWS_ENDPOINT_URL_DYNAMODB`.
    pub async fn start(hold: Duration) -> CallCounter {
        let upstream = std::env::var("AWS_ENDPOINT_URL_DYNAMODB").expect("AWS_ENDPOINT_URL_DYNAMODB (DynamoDB Local)");
        let state = Arc::new(ProxyState {
            upstream: upstream.trim_end_matches('/').to_owned(),
            client: reqwest::Client::new(),
            hold,
            calls: Mutex::new(Vec::new()),
            lost: Mutex::new(Vec::new()),
            fault: Mutex::new(None),
        });
        let app = Router::new().fallback(forward).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        CallCounter { url, state }
    }

    /// The next `times` calls of `op` whose body contains `needle` land and lose their answer:
    /// DynamoDB Local applies them, and the client gets 500 `InternalServerError` instead of
    /// the answer, as when a response is lost on the way. The SDK retries such a call with the
    /// same request, which then meets the state its first attempt left.
    pub fn lose_answer(&self, op: &str, needle: &str, times: usize) {
        self.state.lost.lock().unwrap().push(LostAnswer { op: op.into(), needle: needle.into(), remaining: times });
    }

    /// Fails call number `occurrence` (from 0) of `class` (`Call::class`) from now on, and every
    /// retry of it by the SDK, with 500 `InternalServerError`, so that the request sees the
    /// store fail at that step. `landed`: DynamoDB Local applies the first attempt before it
    /// fails (a write that landed and whose answer never came); otherwise nothing reaches it.
    pub fn fail(&self, class: &str, occurrence: usize, landed: bool) {
        *self.state.fault.lock().unwrap() =
            Some(Fault { class: class.into(), occurrence, seen: 0, landed, failed: None });
    }

    /// Ends `fail`; returns whether the armed call came (and failed).
    pub fn heal(&self) -> bool {
        self.state.fault.lock().unwrap().take().is_some_and(|f| f.failed.is_some())
    }

    /// The calls recorded since the last `take`, in the order they arrived.
    pub fn take(&self) -> Calls {
        Calls(std::mem::take(&mut *self.state.calls.lock().unwrap()))
    }
}

async fn forward(
    State(s): State<Arc<ProxyState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let start = Instant::now();
    let op = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .and_then(|t| t.rsplit('.').next())
        .unwrap_or("?")
        .to_owned();
    let mut req = s.client.request(method, format!("{}{}", s.upstream, uri.path()));
    for (name, value) in &headers {
        if name != "host" && name != "content-length" {
            req = req.header(name, value);
        }
    }
    let text = String::from_utf8_lossy(&body).into_owned();
    // An armed fault: Some(forward first) when this call is the one to fail.
    let injected = {
        let mut fault = s.fault.lock().unwrap();
        match fault.as_mut() {
            Some(f) if f.failed.as_deref() == Some(text.as_str()) => Some(false),
            Some(f) if f.failed.is_none() && class_of(&op, &text) == f.class => {
                f.seen += 1;
                if f.seen == f.occurrence + 1 {
                    f.failed = Some(text.clone());
                    Some(f.landed)
                } else {
                    None
                }
            }
            _ => None,
        }
    };
    if let Some(forward) = injected {
        let label = if forward { "landed, then failed" } else { "failed" };
        if forward {
            let _ = req.body(body).send().await;
        }
        s.calls.lock().unwrap().push(Call { op: format!("{op} ({label})"), start, end: Instant::now(), body: text });
        let body = r#"{"__type":"com.amazonaws.dynamodb.v20120810#InternalServerError","message":"injected fault"}"#;
        return (StatusCode::INTERNAL_SERVER_ERROR, [("content-type", "application/x-amz-json-1.0")], body)
            .into_response();
    }
    let answer = req.body(body).send().await;
    tokio::time::sleep(s.hold).await;
    let lose = s.lost.lock().unwrap().iter_mut().any(|l| {
        let hit = l.remaining > 0 && l.op == op && text.contains(&l.needle);
        if hit {
            l.remaining -= 1;
        }
        hit
    });
    if lose && answer.as_ref().is_ok_and(|r| r.status().is_success()) {
        s.calls.lock().unwrap().push(Call {
            op: format!("{op} (landed, answer lost)"),
            start,
            end: Instant::now(),
            body: text,
        });
        let body =
            r#"{"__type":"com.amazonaws.dynamodb.v20120810#InternalServerError","message":"injected: answer lost"}"#;
        return (StatusCode::INTERNAL_SERVER_ERROR, [("content-type", "application/x-amz-json-1.0")], body)
            .into_response();
    }
    let response = match answer {
        Ok(r) => {
            let status = r.status();
            let mut out = HeaderMap::new();
            for (name, value) in r.headers() {
                if name != "content-length" && name != "transfer-encoding" && name != "connection" {
                    out.insert(name.clone(), value.clone());
                }
            }
            let bytes = r.bytes().await.unwrap_or_default();
            (status, out, bytes).into_response()
        }
        Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    };
    s.calls.lock().unwrap().push(Call { op, start, end: Instant::now(), body: text });
    response
}

/// The calls of one request.
#[derive(Debug, Clone)]
pub struct Calls(pub Vec<Call>);

impl Calls {
    pub fn count(&self) -> usize {
        self.0.len()
    }

    /// The longest chain of calls in which each one started after the one before it was
    /// answered: the request's sequential round trips.
    pub fn round_trips(&self) -> usize {
        let mut calls = self.0.clone();
        calls.sort_by_key(|c| c.start);
        let mut depth = vec![1usize; calls.len()];
        for j in 0..calls.len() {
            for i in 0..j {
                if calls[i].end <= calls[j].start {
                    depth[j] = depth[j].max(depth[i] + 1);
                }
            }
        }
        depth.into_iter().max().unwrap_or(0)
    }

    /// For example `GetItem×2 UpdateItem×1`, in the order the operations first appear.
    pub fn summary(&self) -> String {
        let mut ops: Vec<(String, usize)> = Vec::new();
        let mut sorted = self.0.clone();
        sorted.sort_by_key(|c| c.start);
        for c in &sorted {
            match ops.iter_mut().find(|(op, _)| *op == c.op) {
                Some((_, n)) => *n += 1,
                None => ops.push((c.op.clone(), 1)),
            }
        }
        ops.iter().map(|(op, n)| format!("{op}×{n}")).collect::<Vec<_>>().join(" ")
    }
}

/// One measured request.
#[derive(Debug, Clone)]
pub struct Measured {
    pub request: &'static str,
    pub calls: Calls,
}

/// The claims of an access token, as API Gateway's JWT authorizer forwards them.
pub fn claims_of(access: &str) -> serde_json::Value {
    use base64::Engine as _;
    let payload = access.split('.').nth(1).expect("a JWT");
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).expect("base64url"))
        .expect("JSON claims")
}

/// Sends one request of each kind through the function binaries (with the template's rate
/// limits on or off), each against a counting proxy, and returns the DynamoDB calls of each.
pub async fn measure(limits_on: bool) -> Vec<Measured> {
    use crate::lambda::{Event, Stack};
    use serde_json::json;

    let counter = CallCounter::start(HOLD).await;
    let stack = Stack::new()
        .await
        .with("AWS_ENDPOINT_URL_DYNAMODB", &counter.url)
        .with("RATE_LIMITS_ENABLED", if limits_on { "true" } else { "false" });
    let (signup, verify, login, refresh, me, forgot, mfa_verify) = tokio::join!(
        stack.function("signup"),
        stack.function("verify-email"),
        stack.function("login"),
        stack.function("refresh"),
        stack.function("me"),
        stack.function("forgot-password"),
        stack.function("mfa-verify"),
    );
    for f in [&signup, &verify, &login, &refresh, &me, &forgot, &mfa_verify] {
        f.init_time().await;
    }
    let mut out = Vec::new();
    let mut record = |request: &'static str, status: u16, expected: u16| {
        assert_eq!(status, expected, "{request}");
        out.push(Measured { request, calls: counter.take() });
    };
    counter.take(); // the functions' init

    let email = crate::unique_email();
    let r = signup.http(Event::post("/auth/signup", json!({"email": email, "password": crate::PASSWORD}))).await;
    record("signup, new address", r.status, 202);
    let token = crate::token_from_mail(&email, "verify").await;
    let r = verify.http(Event::post("/auth/verify-email", json!({"token": token, "password": crate::PASSWORD}))).await;
    record("verify-email", r.status, 200);
    let r = login.http(Event::post("/auth/login", json!({"email": email, "password": crate::PASSWORD}))).await;
    let tokens = r.json();
    record("login, success", r.status, 200);
    let r = login.http(Event::post("/auth/login", json!({"email": email, "password": "wrong-password-1"}))).await;
    record("login, wrong password", r.status, 401);
    let r = login
        .http(Event::post("/auth/login", json!({"email": crate::unique_email(), "password": crate::PASSWORD})))
        .await;
    record("login, unknown email", r.status, 401);
    let r = refresh.http(Event::post("/auth/refresh", json!({"refresh_token": tokens["refresh_token"]}))).await;
    record("refresh", r.status, 200);
    let access = tokens["access_token"].as_str().expect("access token");
    let r = me.http(Event::get("/auth/me").bearer(access).authorizer_claims(claims_of(access))).await;
    record("me", r.status, 200);
    let r = forgot.http(Event::post("/auth/forgot-password", json!({"email": email}))).await;
    record("forgot-password, known address", r.status, 202);

    // An account with a second factor, written straight into the table (not counted).
    let direct = shared::store::dynamo::DynamoStore::new(
        aws_sdk_dynamodb::Client::new(&shared::wiring::aws_config().await.unwrap()),
        &stack.table,
    );
    let hash = shared::password::Hasher::new(shared::config::HashParams::TEST, 1)
        .hash(&shared::secret::Password::new(crate::PASSWORD))
        .await
        .expect("hash");
    let user = crate::stored_user(&direct, &hash, false).await;
    let secret = stack.enable_totp(&direct, &user).await;
    // From an address of its own: the per-IP count of the logins above may have reached the
    // end of its window by now, and its rollover is one more write.
    let ip = "203.0.113.77";
    crate::away_from_step_edge().await;
    counter.take();
    let body = json!({"email": user.email, "password": crate::PASSWORD});
    let r = login.http(Event::post("/auth/login", body).source_ip(ip)).await;
    let challenge = r.json()["mfa_token"].clone();
    record("login, second factor required", r.status, 403);
    let code = secret.code_at(crate::unix_now());
    let ev = Event::post("/auth/mfa/verify", json!({"mfa_token": challenge, "code": code})).source_ip(ip);
    let r = mfa_verify.http(ev).await;
    record("mfa-verify, right code", r.status, 200);
    out
}

/// The budgets with rate limits on: (request, calls, sequential round trips).
pub const BUDGETS: &[(&str, usize, usize)] = &[
    ("login, success", 7, 4),
    ("login, wrong password", 6, 3),
    ("login, unknown email", 6, 3),
    ("refresh", 4, 2),
    ("signup, new address", 5, 3),
    ("me", 1, 1),
    ("login, second factor required", 9, 4),
    ("mfa-verify, right code", 7, 4),
];

/// The measurements as a table.
pub fn table(rows: &[Measured]) -> String {
    let mut s = format!("{:<34} {:>5} {:>12}  {}\n", "request", "calls", "round trips", "operations");
    for m in rows {
        s +=
            &format!("{:<34} {:>5} {:>12}  {}\n", m.request, m.calls.count(), m.calls.round_trips(), m.calls.summary());
    }
    s
}
