//! Function binaries driven as Lambda drives them: each test starts the real binary (built by
//! `cargo build --workspace --bins --tests`, which `infra/test.sh` runs first) with the Lambda Runtime API
//! served on loopback by `RuntimeApi`, sends it API Gateway HTTP API (payload 2.0) events and
//! reads its responses.
//!
//! The Runtime API here is the documented one (`/2018-06-01/runtime/invocation/next`,
//! `…/{id}/response`, `…/{id}/error`, `/2018-06-01/runtime/init/error`): one event at a time,
//! as Lambda sends them to one execution environment.

use std::collections::HashMap;
use std::io::Read as _;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

/// What a function answered to one invocation.
#[derive(Debug)]
pub enum Outcome {
    /// `…/response`: the function's result (for API Gateway, the proxy response document).
    Response(Value),
    /// `…/error`: the function reported an invocation error.
    Error(Value),
}

struct Pending {
    id: String,
    event: Value,
}

#[derive(Default)]
struct Observed {
    polls: usize,
    first_poll: Option<Instant>,
    init_error: Option<Value>,
}

struct RtState {
    events: tokio::sync::Mutex<mpsc::Receiver<Pending>>,
    waiting: Mutex<HashMap<String, oneshot::Sender<Outcome>>>,
    observed: Mutex<Observed>,
}

/// A running function binary and the Runtime API it polls.
pub struct Function {
    pub binary: String,
    child: std::process::Child,
    events: mpsc::Sender<Pending>,
    state: Arc<RtState>,
    started: Instant,
    output: Arc<Mutex<String>>,
}

/// Where cargo put the function binaries: `FUNCTIONS_DIR` if set (the figures script points it
/// at the release build), else next to this test's own executable.
pub fn binary_path(binary: &str) -> PathBuf {
    let dir = match std::env::var_os("FUNCTIONS_DIR") {
        Some(d) => PathBuf::from(d),
        None => {
            let exe = std::env::current_exe().expect("test executable");
            // target/<profile>/deps/e2e-<hash> (or …/examples/<name>) → target/<profile>
            exe.parent().and_then(|d| d.parent()).expect("target/<profile>").to_path_buf()
        }
    };
    let path = dir.join(binary);
    assert!(
        path.exists(),
        "{} does not exist: build the function binaries first (`cargo build --workspace --bins --tests`, as infra/test.sh does)",
        path.display()
    );
    path
}

/// The variables Lambda sets for every function, plus the AWS endpoints and credentials of the
/// emulators the suite runs against (taken from this process's environment).
fn lambda_environment(binary: &str, api: &str) -> Vec<(String, String)> {
    let mut env = vec![
        ("AWS_LAMBDA_RUNTIME_API".into(), api.to_owned()),
        ("AWS_LAMBDA_FUNCTION_NAME".into(), format!("secure-auth-{binary}")),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE".into(), "256".into()),
        ("AWS_LAMBDA_FUNCTION_VERSION".into(), "$LATEST".into()),
        ("AWS_LAMBDA_LOG_GROUP_NAME".into(), format!("/aws/lambda/secure-auth-{binary}")),
        ("AWS_LAMBDA_LOG_STREAM_NAME".into(), "2026/12/01/[$LATEST]0123456789abcdef".into()),
        ("AWS_LAMBDA_INITIALIZATION_TYPE".into(), "on-demand".into()),
        ("RUST_LOG".into(), "info".into()),
    ];
    for (k, v) in std::env::vars() {
        if k.starts_with("AWS_ENDPOINT_URL")
            || matches!(
                k.as_str(),
                "AWS_ACCESS_KEY_ID"
                    | "AWS_SECRET_ACCESS_KEY"
                    | "AWS_SESSION_TOKEN"
                    | "AWS_REGION"
                    | "AWS_DEFAULT_REGION"
            )
        {
            env.push((k, v));
        }
    }
    if !env.iter().any(|(k, _)| k == "AWS_REGION") {
        env.push(("AWS_REGION".into(), "us-east-1".into()));
    }
    env
}

async fn next(State(s): State<Arc<RtState>>) -> Response {
    {
        let mut o = s.observed.lock().unwrap();
        o.polls += 1;
        o.first_poll.get_or_insert_with(Instant::now);
    }
    let Some(p) = s.events.lock().await.recv().await else {
        return StatusCode::GONE.into_response();
    };
    let mut h = HeaderMap::new();
    h.insert("lambda-runtime-aws-request-id", HeaderValue::from_str(&p.id).unwrap());
    let deadline =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap() + Duration::from_secs(30);
    h.insert("lambda-runtime-deadline-ms", HeaderValue::from_str(&deadline.as_millis().to_string()).unwrap());
    h.insert(
        "lambda-runtime-invoked-function-arn",
        HeaderValue::from_static("arn:aws:lambda:us-east-1:123456789012:function:secure-auth"),
    );
    h.insert("lambda-runtime-trace-id", HeaderValue::from_static("Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=0"));
    h.insert("content-type", HeaderValue::from_static("application/json"));
    (h, p.event.to_string()).into_response()
}

fn finish(s: &RtState, id: &str, outcome: Outcome) -> StatusCode {
    match s.waiting.lock().unwrap().remove(id) {
        Some(tx) => {
            let _ = tx.send(outcome);
            StatusCode::ACCEPTED
        }
        None => StatusCode::BAD_REQUEST,
    }
}

async fn response(State(s): State<Arc<RtState>>, Path(id): Path<String>, body: Bytes) -> StatusCode {
    let v = serde_json::from_slice(&body).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into()));
    finish(&s, &id, Outcome::Response(v))
}

async fn error(State(s): State<Arc<RtState>>, Path(id): Path<String>, body: Bytes) -> StatusCode {
    let v = serde_json::from_slice(&body).unwrap_or(Value::Null);
    finish(&s, &id, Outcome::Error(v))
}

async fn init_error(State(s): State<Arc<RtState>>, body: Bytes) -> StatusCode {
    s.observed.lock().unwrap().init_error = Some(serde_json::from_slice(&body).unwrap_or(Value::Null));
    StatusCode::ACCEPTED
}

impl Function {
    /// Starts `binary` with Lambda's environment and `vars` (the function's own configuration).
    pub async fn start(binary: &str, vars: &[(&str, &str)]) -> Function {
        let (tx, rx) = mpsc::channel(16);
        let state = Arc::new(RtState {
            events: tokio::sync::Mutex::new(rx),
            waiting: Mutex::new(HashMap::new()),
            observed: Mutex::new(Observed::default()),
        });
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route("/2018-06-01/runtime/invocation/{id}/response", post(response))
            .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let api = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move { axum::serve(listener, app).await });

        let mut cmd = std::process::Command::new(binary_path(binary));
        cmd.env_clear()
            .envs(lambda_environment(binary, &api))
            .envs(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let started = Instant::now();
        let mut child = cmd.spawn().expect("start the function binary");
        let output = Arc::new(Mutex::new(String::new()));
        // The function's logs (stdout, JSON lines) and anything on stderr, in one buffer.
        let pipes: Vec<Box<dyn std::io::Read + Send>> =
            vec![Box::new(child.stdout.take().expect("stdout")), Box::new(child.stderr.take().expect("stderr"))];
        for mut pipe in pipes {
            let sink = output.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = pipe.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    sink.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            });
        }
        Function { binary: binary.to_owned(), child, events: tx, state, started, output }
    }

    /// Sends one event and waits for the function's answer.
    pub async fn invoke(&self, event: impl Into<Value>) -> Outcome {
        let event = event.into();
        let id = uuid::Uuid::new_v4().to_string();
        let (tx, rx) = oneshot::channel();
        self.state.waiting.lock().unwrap().insert(id.clone(), tx);
        self.events.send(Pending { id, event }).await.expect("runtime api running");
        match tokio::time::timeout(Duration::from_secs(30), rx).await {
            Ok(Ok(outcome)) => outcome,
            _ => panic!("{} did not answer within 30 s; its output:\n{}", self.binary, self.output()),
        }
    }

    /// Sends an API Gateway event and returns the proxy response, which must be one.
    pub async fn http(&self, event: impl Into<Value>) -> HttpResponse {
        match self.invoke(event).await {
            Outcome::Response(v) => HttpResponse::from_proxy(v),
            Outcome::Error(e) => panic!("{} reported an invocation error: {e}\n{}", self.binary, self.output()),
        }
    }

    /// Time from process start to the first Runtime API poll (the function's init), waiting for
    /// it if it has not happened yet.
    pub async fn init_time(&self) -> Duration {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(t) = self.state.observed.lock().unwrap().first_poll {
                return t - self.started;
            }
            assert!(Instant::now() < deadline, "{} never polled the Runtime API:\n{}", self.binary, self.output());
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// What the function reported to `/runtime/init/error`, if anything.
    pub fn init_error(&self) -> Option<Value> {
        self.state.observed.lock().unwrap().init_error.clone()
    }

    /// Whether the process has exited (with its status).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Waits (up to 5 s) until the function's output contains `needle`: its log lines reach this
    /// process through a pipe, a little after the responses they go with.
    pub async fn wait_for_output(&self, needle: &str) -> bool {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if self.output().contains(needle) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    }

    /// What the function wrote so far: its logs (stdout) and stderr.
    pub fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }
}

impl Drop for Function {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An API Gateway proxy response, decoded.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: HashMap<String, String>,
    pub cookies: Vec<String>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    fn from_proxy(v: Value) -> Self {
        let status = v["statusCode"].as_u64().unwrap_or_else(|| panic!("no statusCode in {v}")) as u16;
        let mut headers = HashMap::new();
        if let Some(h) = v["headers"].as_object() {
            for (k, val) in h {
                headers.insert(k.to_ascii_lowercase(), val.as_str().unwrap_or_default().to_owned());
            }
        }
        if let Some(h) = v["multiValueHeaders"].as_object() {
            for (k, vals) in h {
                if let Some(first) = vals.as_array().and_then(|a| a.first()).and_then(Value::as_str) {
                    headers.entry(k.to_ascii_lowercase()).or_insert_with(|| first.to_owned());
                }
            }
        }
        let cookies = v["cookies"].as_array().map(|a| a.iter().filter_map(|c| c.as_str().map(str::to_owned)).collect());
        let raw = v["body"].as_str().unwrap_or_default();
        let body = if v["isBase64Encoded"].as_bool() == Some(true) {
            base64::engine::general_purpose::STANDARD.decode(raw).expect("base64 body")
        } else {
            raw.as_bytes().to_vec()
        };
        HttpResponse { status, headers, cookies: cookies.unwrap_or_default(), body }
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(&name.to_ascii_lowercase()).map(String::as_str)
    }
}

/// An API Gateway HTTP API (payload format 2.0) request event, shaped like the fixtures
/// aws-lambda-rust-runtime publishes (`example-apigw-v2-request-*.json`).
#[derive(Debug, Clone)]
pub struct Event {
    method: String,
    path: String,
    query: Vec<(String, String)>,
    headers: Vec<(String, String)>,
    cookies: Vec<String>,
    body: Option<String>,
    base64: bool,
    source_ip: String,
    request_id: String,
    claims: Option<Value>,
}

impl Event {
    pub fn new(method: &str, path: &str) -> Self {
        Event {
            method: method.to_owned(),
            path: path.to_owned(),
            query: Vec::new(),
            headers: vec![("user-agent".into(), "e2e-lambda/1.0".into())],
            cookies: Vec::new(),
            body: None,
            base64: false,
            source_ip: "203.0.113.10".into(),
            request_id: format!("apigw-{}", uuid::Uuid::new_v4().simple()),
            claims: None,
        }
    }

    pub fn get(path: &str) -> Self {
        Self::new("GET", path)
    }

    pub fn post(path: &str, body: Value) -> Self {
        Self::new("POST", path).json(body)
    }

    pub fn json(mut self, body: Value) -> Self {
        self.headers.push(("content-type".into(), "application/json".into()));
        self.body = Some(body.to_string());
        self
    }

    /// The body sent base64-encoded, as API Gateway does for binary media.
    pub fn base64_body(mut self, content_type: &str, body: &[u8]) -> Self {
        self.headers.push(("content-type".into(), content_type.to_owned()));
        self.body = Some(base64::engine::general_purpose::STANDARD.encode(body));
        self.base64 = true;
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_ascii_lowercase(), value.to_owned()));
        self
    }

    pub fn bearer(self, token: &str) -> Self {
        self.header("authorization", &format!("Bearer {token}"))
    }

    /// The claims API Gateway's JWT authorizer put in the request context (it passes every
    /// claim as a string: numbers and booleans as their text).
    pub fn authorizer_claims(mut self, claims: Value) -> Self {
        let as_strings = claims
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| {
                        (k.clone(), Value::String(v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string())))
                    })
                    .collect::<serde_json::Map<_, _>>()
            })
            .unwrap_or_default();
        self.claims = Some(Value::Object(as_strings));
        self
    }

    pub fn cookie(mut self, cookie: &str) -> Self {
        self.cookies.push(cookie.to_owned());
        self
    }

    pub fn query(mut self, name: &str, value: &str) -> Self {
        self.query.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn source_ip(mut self, ip: &str) -> Self {
        self.source_ip = ip.to_owned();
        self
    }

    pub fn request_id(&self) -> &str {
        &self.request_id
    }

    pub fn to_json(&self) -> Value {
        let raw_query: Vec<String> = self.query.iter().map(|(k, v)| format!("{k}={v}")).collect();
        // API Gateway joins repeated query parameters (and headers) with commas.
        let qsp = joined(&self.query);
        let mut headers = joined(&self.headers);
        headers.insert("host".into(), "abc123.execute-api.us-east-1.amazonaws.com".into());
        headers.insert("x-forwarded-proto".into(), "https".into());
        let route_key = format!("{} {}", self.method, self.path);
        let mut ev = json!({
            "version": "2.0",
            "routeKey": "$default",
            "rawPath": self.path,
            "rawQueryString": raw_query.join("&"),
            "headers": headers,
            "requestContext": {
                "accountId": "123456789012",
                "apiId": "abc123",
                "domainName": "abc123.execute-api.us-east-1.amazonaws.com",
                "domainPrefix": "abc123",
                "http": {
                    "method": self.method,
                    "path": self.path,
                    "protocol": "HTTP/1.1",
                    "sourceIp": self.source_ip,
                    "userAgent": "e2e-lambda/1.0"
                },
                "requestId": self.request_id,
                "routeKey": route_key,
                "stage": "$default",
                "time": "01/Dec/2026:12:00:00 +0000",
                "timeEpoch": 1796126400000u64
            },
            "isBase64Encoded": self.base64
        });
        if !qsp.is_empty() {
            ev["queryStringParameters"] = Value::Object(qsp);
        }
        if !self.cookies.is_empty() {
            ev["cookies"] = json!(self.cookies);
        }
        if let Some(b) = &self.body {
            ev["body"] = Value::String(b.clone());
        }
        if let Some(c) = &self.claims {
            ev["requestContext"]["authorizer"] = json!({"jwt": {"claims": c, "scopes": null}});
        }
        ev
    }
}

impl From<Event> for Value {
    fn from(e: Event) -> Value {
        e.to_json()
    }
}

/// Pairs as API Gateway puts them in an event: one entry per name, repeated values joined with
/// commas (query parameters and headers alike).
fn joined(pairs: &[(String, String)]) -> serde_json::Map<String, Value> {
    let mut out = serde_json::Map::new();
    for (k, v) in pairs {
        let value = match out.get(k).and_then(Value::as_str) {
            Some(prev) => format!("{prev},{v}"),
            None => v.clone(),
        };
        out.insert(k.clone(), Value::String(value));
    }
    out
}

/// A fresh table, signing-key secret and mail queue (with its dead-letter queue), and the
/// environment every function gets from the template (each function only reads what it uses).
/// Functions that mail put jobs on the queue; the first of them starts the stack's `mailer`
/// binary and a `MailPump`, which feeds it the queue as Lambda's SQS event source mapping does.
pub struct Stack {
    pub table: String,
    pub secret: String,
    /// The MFA key secret (generated text, as the template's `MfaKeySecret`).
    pub mfa_secret: String,
    /// The mail queue's URL and ARN, and its dead-letter queue's URL.
    pub queue: String,
    pub queue_arn: String,
    pub dead_letters: String,
    extra: Vec<(String, String)>,
    mailer_extra: Vec<(String, String)>,
    pump: tokio::sync::OnceCell<MailPump>,
}

/// Deliveries of one job before SQS moves it to the dead-letter queue (the template's
/// `maxReceiveCount`, here small so that tests reach it quickly).
pub const TEST_MAX_ATTEMPTS: u32 = 4;

pub async fn sqs() -> aws_sdk_sqs::Client {
    aws_sdk_sqs::Client::new(&shared::wiring::aws_config().await.unwrap())
}

/// A queue and its dead-letter queue, configured as the template configures them but with
/// `TEST_MAX_ATTEMPTS` and a 2 s visibility timeout. Returns (url, arn, dead-letter url).
pub async fn mail_queues() -> (String, String, String) {
    use aws_sdk_sqs::types::QueueAttributeName as A;
    let sqs = sqs().await;
    let name = format!("mail-{}", uuid::Uuid::new_v4().simple());
    let arn_of = |url: String| {
        let sqs = sqs.clone();
        async move {
            let attrs = sqs.get_queue_attributes().queue_url(&url).attribute_names(A::QueueArn).send().await.unwrap();
            attrs.attributes.unwrap().remove(&A::QueueArn).unwrap()
        }
    };
    let dlq = sqs.create_queue().queue_name(format!("{name}-dlq")).send().await.unwrap().queue_url.unwrap();
    let dlq_arn = arn_of(dlq.clone()).await;
    let redrive = json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": TEST_MAX_ATTEMPTS.to_string()});
    let url = sqs
        .create_queue()
        .queue_name(&name)
        .attributes(A::VisibilityTimeout, "2")
        .attributes(A::RedrivePolicy, redrive.to_string())
        .attributes(A::SqsManagedSseEnabled, "true")
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let arn = arn_of(url.clone()).await;
    (url, arn, dlq)
}

/// A new MFA key secret in moto: 64 random alphanumerics, as the template generates.
pub async fn mfa_key_secret() -> String {
    let sdk = shared::wiring::aws_config().await.unwrap();
    let name = format!("lambda-mfa-key-{}", uuid::Uuid::new_v4().simple());
    let text = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
    aws_sdk_secretsmanager::Client::new(&sdk).create_secret().name(&name).secret_string(text).send().await.unwrap();
    name
}

impl Stack {
    pub async fn new() -> Stack {
        let sdk = shared::wiring::aws_config().await.unwrap();
        let table = format!("lambda-{}", uuid::Uuid::new_v4().simple());
        shared::store::dynamo::DynamoStore::create_table(&aws_sdk_dynamodb::Client::new(&sdk), &table).await.unwrap();
        let secret = format!("lambda-keys-{}", uuid::Uuid::new_v4().simple());
        shared::rotation::init(&aws_sdk_secretsmanager::Client::new(&sdk), &secret, shared::keys::KeyAlg::ES256)
            .await
            .unwrap();
        let (queue, queue_arn, dead_letters) = mail_queues().await;
        let mfa_secret = mfa_key_secret().await;
        Stack {
            table,
            secret,
            mfa_secret,
            queue,
            queue_arn,
            dead_letters,
            extra: Vec::new(),
            mailer_extra: Vec::new(),
            pump: tokio::sync::OnceCell::new(),
        }
    }

    /// The sealer the stack's functions use (its MFA key secret, read as they read it).
    pub async fn sealer(&self) -> shared::mfa::Sealer {
        let sdk = shared::wiring::aws_config().await.unwrap();
        let out = aws_sdk_secretsmanager::Client::new(&sdk).get_secret_value().secret_id(&self.mfa_secret).send().await;
        shared::mfa::Sealer::from_secret_text(out.unwrap().secret_string().unwrap()).unwrap()
    }

    /// Gives `user` an active TOTP factor, written straight into the table (no step spent, one
    /// recovery code hash `unused`); returns its secret.
    pub async fn enable_totp(
        &self,
        store: &dyn shared::store::MfaStore,
        user: &shared::store::User,
    ) -> shared::mfa::TotpSecret {
        let secret = shared::mfa::TotpSecret::generate().unwrap();
        let sealed = self.sealer().await.seal(&user.id, &secret).unwrap();
        store.put_pending_mfa(&user.id, &sealed, 0).await.unwrap();
        let codes = ["unused".to_owned()];
        store.enable_mfa(&user.id, &sealed, 0, &codes, user.session_version, "none", 0).await.unwrap().unwrap();
        secret
    }

    /// Sets `k` for the stack's mailer function (before it starts).
    pub fn mailer_with(mut self, k: &str, v: &str) -> Stack {
        self.mailer_extra.push((k.to_owned(), v.to_owned()));
        self
    }

    /// A `mailer` binary with the template's environment for it (and `mailer_with`'s).
    pub async fn mailer(&self) -> Function {
        let attempts = TEST_MAX_ATTEMPTS.to_string();
        let mut vars: Vec<(&str, &str)> = vec![
            ("TABLE_NAME", &self.table),
            ("MAILER", "ses"),
            ("MAIL_FROM", crate::SENDER),
            ("MAIL_QUEUE_URL", &self.queue),
            ("MAIL_RETRY_BASE_SECONDS", "1"),
            ("MAIL_MAX_ATTEMPTS", &attempts),
        ];
        vars.extend(self.mailer_extra.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        Function::start("mailer", &vars).await
    }

    /// Starts the stack's mailer and its pump (once).
    pub async fn pump(&self) -> &MailPump {
        self.pump
            .get_or_init(|| async { MailPump::start(self.mailer().await, &self.queue, &self.queue_arn).await })
            .await
    }

    /// Messages waiting on the dead-letter queue.
    pub async fn dead_lettered(&self) -> Vec<String> {
        let out = sqs()
            .await
            .receive_message()
            .queue_url(&self.dead_letters)
            .max_number_of_messages(10)
            .visibility_timeout(0)
            .send()
            .await
            .unwrap();
        out.messages.unwrap_or_default().into_iter().filter_map(|m| m.body).collect()
    }

    pub fn with(mut self, k: &str, v: &str) -> Stack {
        self.extra.push((k.to_owned(), v.to_owned()));
        self
    }

    pub async fn function(&self, binary: &str) -> Function {
        let mut vars: Vec<(&str, &str)> = vec![
            ("TABLE_NAME", &self.table),
            ("SIGNING_KEY_SECRET_ID", &self.secret),
            ("MAIL_QUEUE_URL", &self.queue),
            ("PUBLIC_BASE_URL", "https://auth.example.com"),
            ("ARGON2_MEMORY_KIB", "256"),
            ("ARGON2_ITERATIONS", "1"),
            ("ENUMERATION_FLOOR_MS", "50"),
        ];
        if shared::http::endpoint(binary).is_some_and(|e| e.uses.mfa_key) {
            vars.push(("MFA_KEY_SECRET_ID", &self.mfa_secret));
        }
        vars.extend(self.extra.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        if shared::http::endpoint(binary).is_some_and(|e| e.uses.mail) {
            self.pump().await;
        }
        Function::start(binary, &vars).await
    }
}

/// What Lambda's SQS event source mapping does, for one queue and one `mailer` process: long
/// polls the queue, invokes the function with batches of up to 10 records (the attributes
/// Lambda passes, `ApproximateReceiveCount` among them) and deletes the records the partial
/// batch response does not name. An invocation error leaves the whole batch to come back after
/// its visibility timeout.
pub struct MailPump {
    pub mailer: Arc<Function>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for MailPump {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The SQS event Lambda sends for `messages` of the queue `arn`.
pub fn sqs_event(messages: &[aws_sdk_sqs::types::Message], arn: &str) -> Value {
    let records: Vec<Value> = messages
        .iter()
        .map(|m| {
            let attributes: serde_json::Map<String, Value> =
                m.attributes.iter().flatten().map(|(k, v)| (k.as_str().to_owned(), Value::String(v.clone()))).collect();
            json!({
                "messageId": m.message_id,
                "receiptHandle": m.receipt_handle,
                "body": m.body,
                "attributes": attributes,
                "messageAttributes": {},
                "md5OfBody": m.md5_of_body,
                "eventSource": "aws:sqs",
                "eventSourceARN": arn,
                "awsRegion": "us-east-1",
            })
        })
        .collect();
    json!({ "Records": records })
}

impl MailPump {
    pub async fn start(mailer: Function, queue: &str, arn: &str) -> MailPump {
        let mailer = Arc::new(mailer);
        let (sqs, queue, arn, function) = (sqs().await, queue.to_owned(), arn.to_owned(), mailer.clone());
        let task = tokio::spawn(async move {
            loop {
                let received = sqs
                    .receive_message()
                    .queue_url(&queue)
                    .max_number_of_messages(10)
                    .wait_time_seconds(1)
                    .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
                    .send()
                    .await;
                let messages = match received {
                    Ok(out) => out.messages.unwrap_or_default(),
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                if messages.is_empty() {
                    continue;
                }
                let Outcome::Response(answer) = function.invoke(sqs_event(&messages, &arn)).await else { continue };
                let failed: Vec<&str> = answer["batchItemFailures"]
                    .as_array()
                    .map(|f| f.iter().filter_map(|x| x["itemIdentifier"].as_str()).collect())
                    .unwrap_or_default();
                for m in &messages {
                    if !failed.contains(&m.message_id.as_deref().unwrap_or_default()) {
                        let handle = m.receipt_handle.clone().unwrap_or_default();
                        let _ = sqs.delete_message().queue_url(&queue).receipt_handle(handle).send().await;
                    }
                }
            }
        });
        MailPump { mailer, task }
    }
}
