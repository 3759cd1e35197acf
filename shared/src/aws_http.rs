//! The HTTP client every AWS SDK client in a function is given: hyper-util's pooled client
//! (`legacy::Client`) with HTTP/1.1 only, over hyper-rustls with a trimmed rustls provider on
//! aws-lc that trusts only the roots it is given. What is ours is the TLS configuration and
//! the adapter to the SDK's `HttpClient` trait; the pool, the connection handling and the
//! resending of a request that never left (a kept-alive connection the peer had closed) are
//! hyper-util's.
//!
//! The adapter does what the SDK's own hyper client does: it hands the SDK each attempt's
//! connection (`CaptureSmithyConnection`), so that the SDK's connection-poisoning interceptor
//! can close a connection after a 5xx or a timeout and the retry goes to a new one; and it
//! maps hyper's errors to the SDK's kinds (timeout, I/O, user), which decide the retries.
//!
//! Why not the SDK's default client (`aws-smithy-http-client`): it compiles HTTP/2 in (ALPN
//! decides at run time, so the linker keeps all of `h2`), proxy support and the system's root
//! store, none of which a function uses: DynamoDB, SQS, SES and Secrets Manager answer
//! HTTP/1.1, a Lambda function has no proxy, and its roots are Amazon's. The CLI and the local
//! server, which do meet proxies and private CAs, use the SDK's default client.
//!
//! Idle connections age on the wall clock (`WallClockTimer`), not only on the monotonic
//! clock: a Lambda sandbox frozen between invocations may not advance the latter, and a
//! connection idle for minutes must not look fresh after a thaw.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_smithy_runtime_api::client::connection::{CaptureSmithyConnection, ConnectionMetadata};
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{CaptureConnection, HttpConnector as TcpConnector, HttpInfo};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio_rustls::rustls;

use crate::clock::{SharedClock, SystemClock};

/// How long an idle connection is kept for reuse. Below the idle timeouts of AWS endpoints
/// (60 s and more), so that a reused connection has rarely been closed by the other side.
const IDLE_FOR: Duration = Duration::from_secs(50);
/// Idle connections kept per origin (a function makes a few calls side by side).
const MAX_IDLE_PER_ORIGIN: usize = 8;

type Pooled = Client<hyper_rustls::HttpsConnector<TcpConnector>, SdkBody>;

/// The client: cheap to clone; one pool per connect timeout (every SDK client here has the
/// same), shared by every SDK client built from it.
#[derive(Clone)]
pub struct Http1Client {
    tls: Arc<rustls::ClientConfig>,
    clock: SharedClock,
    pools: Arc<Mutex<HashMap<Option<Duration>, Pooled>>>,
}

impl std::fmt::Debug for Http1Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Http1Client").finish_non_exhaustive()
    }
}

/// Why a client could not be built.
#[derive(Debug, thiserror::Error)]
#[error("TLS trust store: {0}")]
pub struct TrustError(String);

impl Http1Client {
    /// A client trusting exactly the certificates in `roots_pem` (one or more PEM blocks),
    /// aging idle connections on the system's wall clock.
    pub fn trusting(roots_pem: &[u8]) -> Result<Self, TrustError> {
        Self::trusting_with_clock(roots_pem, Arc::new(SystemClock))
    }

    /// As `trusting`, with idle ages on `clock`.
    pub fn trusting_with_clock(roots_pem: &[u8], clock: SharedClock) -> Result<Self, TrustError> {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject as _;
        // As a system bundle is read: a block that does not parse, or a certificate webpki
        // cannot use as a trust anchor, is skipped (and counted), not fatal.
        let mut roots = rustls::RootCertStore::empty();
        let (mut added, mut ignored) = (0, 0);
        for cert in CertificateDer::pem_slice_iter(roots_pem) {
            match cert.map(|c| roots.add(c)) {
                Ok(Ok(())) => added += 1,
                _ => ignored += 1,
            }
        }
        if ignored > 0 {
            tracing::warn!(added, ignored, "CA bundle: certificates skipped");
        }
        if added == 0 {
            return Err(TrustError("no usable certificate in the bundle".into()));
        }
        // No ALPN: hyper-rustls offers none for an HTTP/1.1-only connector, and the endpoints
        // then speak HTTP/1.1.
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| TrustError(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Self { tls: Arc::new(config), clock, pools: Arc::default() })
    }

    pub fn shared(self) -> SharedHttpClient {
        SharedHttpClient::new(self)
    }

    /// The pooled client for `connect_timeout`, made on first use.
    fn pool(&self, connect_timeout: Option<Duration>) -> Pooled {
        let mut pools = self.pools.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        pools
            .entry(connect_timeout)
            .or_insert_with(|| {
                let mut tcp = TcpConnector::new();
                tcp.enforce_http(false);
                tcp.set_nodelay(true);
                // Per address tried; hyper-util races IPv6 and IPv4 (happy eyeballs, 300 ms).
                tcp.set_connect_timeout(connect_timeout);
                let https = hyper_rustls::HttpsConnectorBuilder::new()
                    .with_tls_config((*self.tls).clone())
                    .https_or_http()
                    .enable_http1()
                    .wrap_connector(tcp);
                Client::builder(TokioExecutor::new())
                    .pool_timer(WallClockTimer::new(self.clock.clone()))
                    .pool_idle_timeout(IDLE_FOR)
                    .pool_max_idle_per_host(MAX_IDLE_PER_ORIGIN)
                    .build(https)
            })
            .clone()
    }

    fn connector(&self, settings: &HttpConnectorSettings) -> Adapter {
        Adapter { client: self.pool(settings.connect_timeout()), read_timeout: settings.read_timeout() }
    }
}

impl HttpClient for Http1Client {
    fn http_connector(&self, settings: &HttpConnectorSettings, _: &RuntimeComponents) -> SharedHttpConnector {
        SharedHttpConnector::new(self.connector(settings))
    }
}

/// One SDK client's view of the pool: sends each attempt, bounded by the read timeout.
struct Adapter {
    client: Pooled,
    read_timeout: Option<Duration>,
}

impl std::fmt::Debug for Adapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Adapter").field("read_timeout", &self.read_timeout).finish_non_exhaustive()
    }
}

impl HttpConnector for Adapter {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let mut request = match request.try_into_http1x() {
            Ok(request) => request,
            Err(e) => return HttpConnectorFuture::ready(Err(ConnectorError::user(e.into()))),
        };
        // The connection this attempt goes out on, for the SDK to poison after a 5xx or a
        // timeout.
        let captured = hyper_util::client::legacy::connect::capture_connection(&mut request);
        if let Some(smithy) = request.extensions().get::<CaptureSmithyConnection>() {
            smithy.set_connection_retriever(move || connection_metadata(&captured));
        }
        let sent = self.client.request(request);
        let read_timeout = self.read_timeout;
        HttpConnectorFuture::new(async move {
            let response = match read_timeout {
                Some(limit) => tokio::time::timeout(limit, sent)
                    .await
                    .map_err(|_| ConnectorError::timeout(format!("no response within {limit:?}").into()))?,
                None => sent.await,
            }
            .map_err(classify)?;
            HttpResponse::try_from(response.map(SdkBody::from_body_1_x))
                .map_err(|e| ConnectorError::other(e.into(), None))
        })
    }
}

/// What the SDK learns of an attempt's connection: its addresses, and how to poison it.
fn connection_metadata(captured: &CaptureConnection) -> Option<ConnectionMetadata> {
    let connected = captured.connection_metadata();
    let connected = connected.as_ref()?;
    let mut extras = http::Extensions::new();
    connected.get_extras(&mut extras);
    let info = extras.get::<HttpInfo>();
    let poisoner = captured.clone();
    let mut builder = ConnectionMetadata::builder().proxied(false).poison_fn(move || {
        if let Some(c) = poisoner.connection_metadata().as_ref() {
            c.poison();
        }
    });
    builder.set_local_addr(info.map(HttpInfo::local_addr)).set_remote_addr(info.map(HttpInfo::remote_addr));
    Some(builder.build())
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Maps the pooled client's errors as the SDK's own client does: a timed-out connect is a
/// timeout; a refused or reset connection, a failed handshake, a connection closed under a
/// request are I/O errors (retried); a request hyper would not send is the caller's error.
fn classify(err: hyper_util::client::legacy::Error) -> ConnectorError {
    let timed_out = find::<std::io::Error>(&err).is_some_and(|e| e.kind() == std::io::ErrorKind::TimedOut);
    let boxed: BoxError = err.into();
    if timed_out {
        return ConnectorError::timeout(boxed);
    }
    if let Some(h) = find::<hyper::Error>(boxed.as_ref()) {
        if h.is_timeout() {
            return ConnectorError::timeout(boxed);
        }
        if h.is_user() {
            return ConnectorError::user(boxed);
        }
        if h.is_closed() || h.is_canceled() || h.is_incomplete_message() || find::<std::io::Error>(h).is_some() {
            return ConnectorError::io(boxed);
        }
        return ConnectorError::other(boxed, None);
    }
    let connect = boxed.downcast_ref::<hyper_util::client::legacy::Error>().is_some_and(|e| e.is_connect());
    if connect || find::<std::io::Error>(boxed.as_ref()).is_some() {
        ConnectorError::io(boxed)
    } else {
        ConnectorError::other(boxed, None)
    }
}

/// The first error of type `E` in `err`'s chain.
fn find<'a, E: std::error::Error + 'static>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a E> {
    std::iter::successors(Some(err), |e| e.source()).find_map(|e| e.downcast_ref::<E>())
}

/// The pool's timer: Tokio's sleeps, and a `now` that is never behind the wall clock, so that
/// an idle connection ages through a freeze the monotonic clock did not count.
#[derive(Clone)]
struct WallClockTimer {
    sleeps: TokioTimer,
    clock: SharedClock,
    /// A monotonic instant and the wall-clock second it was taken at.
    anchor: (Instant, i64),
}

impl WallClockTimer {
    fn new(clock: SharedClock) -> Self {
        let anchor = (Instant::now(), clock.now());
        Self { sleeps: TokioTimer::new(), clock, anchor }
    }

    /// How far the wall clock has run ahead of the monotonic one since the anchor.
    fn lead(&self) -> Duration {
        let wall = Duration::from_secs(u64::try_from(self.clock.now() - self.anchor.1).unwrap_or(0));
        wall.saturating_sub(self.anchor.0.elapsed())
    }
}

impl hyper::rt::Timer for WallClockTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        self.sleeps.sleep(duration)
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        // A deadline on this timer's clock, moved back to the monotonic one the sleep uses.
        self.sleeps.sleep_until(deadline.checked_sub(self.lead()).unwrap_or(deadline))
    }

    fn reset(&self, sleep: &mut Pin<Box<dyn hyper::rt::Sleep>>, new_deadline: Instant) {
        self.sleeps.reset(sleep, new_deadline.checked_sub(self.lead()).unwrap_or(new_deadline));
    }

    fn now(&self) -> Instant {
        Instant::now() + self.lead()
    }
}

/// What TLS to AWS needs, from aws-lc, and nothing else: rustls's default provider also
/// offers ChaCha20-Poly1305 and verifies Ed25519, P-521 and ML-DSA signatures, which no
/// certificate chain of an AWS endpoint uses (RSA and ECDSA P-256/P-384 under the Amazon
/// roots), and which would be linked into every function (about 0.2 MB, `cargo bloat`).
/// Key exchange prefers the post-quantum hybrid X25519MLKEM768, as rustls does.
pub fn provider() -> rustls::crypto::CryptoProvider {
    use rustls::crypto::aws_lc_rs::{cipher_suite as cs, kx_group as kx};
    rustls::crypto::CryptoProvider {
        cipher_suites: vec![
            cs::TLS13_AES_128_GCM_SHA256,
            cs::TLS13_AES_256_GCM_SHA384,
            cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
            cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        ],
        kx_groups: vec![kx::X25519MLKEM768, kx::X25519, kx::SECP256R1, kx::SECP384R1],
        signature_verification_algorithms: SIGNATURES,
        secure_random: &SystemRandom,
        key_provider: &NoClientKeys,
    }
}

/// Certificate signatures an AWS endpoint's chain uses: RSA (PKCS#1 and PSS) and ECDSA on
/// P-256 and P-384.
static SIGNATURES: rustls::crypto::WebPkiSupportedAlgorithms = {
    use rustls::SignatureScheme as S;
    use webpki::aws_lc_rs as alg;
    rustls::crypto::WebPkiSupportedAlgorithms {
        all: &[
            alg::ECDSA_P256_SHA256,
            alg::ECDSA_P256_SHA384,
            alg::ECDSA_P384_SHA256,
            alg::ECDSA_P384_SHA384,
            alg::RSA_PSS_2048_8192_SHA256_LEGACY_KEY,
            alg::RSA_PSS_2048_8192_SHA384_LEGACY_KEY,
            alg::RSA_PSS_2048_8192_SHA512_LEGACY_KEY,
            alg::RSA_PKCS1_2048_8192_SHA256,
            alg::RSA_PKCS1_2048_8192_SHA384,
            alg::RSA_PKCS1_2048_8192_SHA512,
            alg::RSA_PKCS1_2048_8192_SHA256_ABSENT_PARAMS,
            alg::RSA_PKCS1_2048_8192_SHA384_ABSENT_PARAMS,
            alg::RSA_PKCS1_2048_8192_SHA512_ABSENT_PARAMS,
        ],
        mapping: &[
            (S::ECDSA_NISTP384_SHA384, &[alg::ECDSA_P384_SHA384, alg::ECDSA_P256_SHA384]),
            (S::ECDSA_NISTP256_SHA256, &[alg::ECDSA_P256_SHA256, alg::ECDSA_P384_SHA256]),
            (S::RSA_PSS_SHA512, &[alg::RSA_PSS_2048_8192_SHA512_LEGACY_KEY]),
            (S::RSA_PSS_SHA384, &[alg::RSA_PSS_2048_8192_SHA384_LEGACY_KEY]),
            (S::RSA_PSS_SHA256, &[alg::RSA_PSS_2048_8192_SHA256_LEGACY_KEY]),
            (S::RSA_PKCS1_SHA512, &[alg::RSA_PKCS1_2048_8192_SHA512]),
            (S::RSA_PKCS1_SHA384, &[alg::RSA_PKCS1_2048_8192_SHA384]),
            (S::RSA_PKCS1_SHA256, &[alg::RSA_PKCS1_2048_8192_SHA256]),
        ],
    }
};

/// The kernel's generator, through aws-lc.
#[derive(Debug)]
struct SystemRandom;

impl rustls::crypto::SecureRandom for SystemRandom {
    fn fill(&self, buf: &mut [u8]) -> Result<(), rustls::crypto::GetRandomFailed> {
        aws_lc_rs::rand::fill(buf).map_err(|_| rustls::crypto::GetRandomFailed)
    }
}

/// The client presents no certificate, so it loads no private key.
#[derive(Debug)]
struct NoClientKeys;

impl rustls::crypto::KeyProvider for NoClientKeys {
    fn load_private_key(
        &self,
        _: rustls::pki_types::PrivateKeyDer<'static>,
    ) -> Result<Arc<dyn rustls::sign::SigningKey>, rustls::Error> {
        Err(rustls::Error::General("no client certificates".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_the_amazon_roots_then_the_provider_verifies_signatures_of_each_roots_key_type() {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject as _;
        // DER of the SPKI algorithm: rsaEncryption; id-ecPublicKey with P-256 / P-384.
        const RSA: &[u8] = &[0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
        const P256: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
        const P384: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];
        let has = |spki: &[u8], oid: &[u8]| spki.windows(oid.len()).any(|w| w == oid);
        let roots: Vec<_> =
            CertificateDer::pem_slice_iter(include_bytes!("aws-roots.pem")).map(Result::unwrap).collect();
        assert!(roots.len() >= 4);
        let p = provider();
        let schemes: Vec<_> = p.signature_verification_algorithms.mapping.iter().map(|(s, _)| *s).collect();
        for cert in &roots {
            let anchor = webpki::anchor_from_trusted_cert(cert).unwrap();
            let spki: &[u8] = anchor.subject_public_key_info.as_ref();
            let needed = if has(spki, RSA) {
                rustls::SignatureScheme::RSA_PKCS1_SHA256
            } else if has(spki, P256) {
                rustls::SignatureScheme::ECDSA_NISTP256_SHA256
            } else if has(spki, P384) {
                rustls::SignatureScheme::ECDSA_NISTP384_SHA384
            } else {
                panic!("a root whose key the provider cannot verify: {spki:02x?}")
            };
            assert!(schemes.contains(&needed), "{needed:?}");
        }
        // Only AES-GCM, and the post-quantum hybrid first.
        assert!(p.cipher_suites.iter().all(|c| format!("{:?}", c.suite()).contains("GCM")));
        assert_eq!(p.kx_groups[0].name(), rustls::NamedGroup::X25519MLKEM768);
    }

    #[test]
    fn given_a_bundle_without_certificates_then_no_client_is_built() {
        assert!(Http1Client::trusting(b"").is_err());
        let broken = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(Http1Client::trusting(broken).is_err());
        // A broken block beside usable ones is skipped.
        let mixed = [broken.as_slice(), include_bytes!("aws-roots.pem")].concat();
        assert!(Http1Client::trusting(&mixed).is_ok());
        assert!(Http1Client::trusting(include_bytes!("aws-roots.pem")).is_ok());
    }
}

/// The transport's failure modes through the SDK, against loopback servers: what a function
/// meets after a thaw (a kept-alive connection the peer closed), after a 5xx, and when an
/// endpoint takes a request and never answers.
#[cfg(test)]
mod failure_modes {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use aws_sdk_dynamodb::config::retry::RetryConfig;
    use aws_sdk_dynamodb::config::timeout::TimeoutConfig;
    use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
    use aws_smithy_runtime_api::client::http::{HttpConnector as _, HttpConnectorSettings};
    use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
    use aws_smithy_types::body::SdkBody;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    /// How the loopback server treats a connection.
    #[derive(Clone, Copy)]
    enum Behaviour {
        /// Answers one request on the connection (no `connection: close`), then closes it
        /// without a word: what a client finds after a freeze longer than the peer's idle time.
        AnswerThenCloseSilently,
        /// Answers the first request of the whole server with this status and a DynamoDB error
        /// body, every later one 200; connections are kept alive.
        FailFirstWith(u16),
        /// Reads requests and never answers.
        Silent,
        /// Answers every request 200 on kept-alive connections.
        KeepAlive,
    }

    struct Server {
        url: String,
        /// Rung by the server when it closes a connection silently (see `serve`).
        doorbell: Option<tokio::net::UnixStream>,
        connections: Arc<AtomicUsize>,
        requests: Arc<AtomicUsize>,
    }

    /// Reads one request (head and `content-length` body); false at end of stream.
    async fn read_request(tcp: &mut tokio::net::TcpStream, buf: &mut Vec<u8>) -> bool {
        let mut chunk = [0u8; 8192];
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                let length = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                if buf.len() >= end + 4 + length {
                    buf.drain(..end + 4 + length);
                    return true;
                }
            }
            match tcp.read(&mut chunk).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Starts the server on a thread and runtime of its own, so that it runs on while the
    /// test's runtime is blocked (a frozen client).
    async fn server(behaviour: Behaviour) -> Server {
        let connections = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(AtomicUsize::new(0));
        let (c, r) = (connections.clone(), requests.clone());
        let (tx, rx) = tokio::sync::oneshot::channel();
        let (doorbell, bell) = tokio::net::UnixStream::pair().unwrap();
        let bell = bell.into_std().unwrap();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async move {
                let bell = Arc::new(tokio::sync::Mutex::new(tokio::net::UnixStream::from_std(bell).unwrap()));
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                tx.send(format!("http://{}", listener.local_addr().unwrap())).unwrap();
                while let Ok((tcp, _)) = listener.accept().await {
                    c.fetch_add(1, Ordering::SeqCst);
                    tokio::spawn(serve(tcp, behaviour, r.clone(), bell.clone()));
                }
            });
        });
        Server { url: rx.await.unwrap(), doorbell: Some(doorbell), connections, requests }
    }

    async fn serve(
        mut tcp: tokio::net::TcpStream,
        behaviour: Behaviour,
        requests: Arc<AtomicUsize>,
        bell: Arc<tokio::sync::Mutex<tokio::net::UnixStream>>,
    ) {
        let mut buf = Vec::new();
        while read_request(&mut tcp, &mut buf).await {
            let n = requests.fetch_add(1, Ordering::SeqCst);
            let (status, body) = match behaviour {
                Behaviour::Silent => std::future::pending().await,
                Behaviour::FailFirstWith(status) if n == 0 => {
                    (status, r#"{"__type":"com.amazonaws.dynamodb.v20120810#InternalServerError","message":"x"}"#)
                }
                _ => (200, r#"{"TableNames":[]}"#),
            };
            let reply = format!(
                "HTTP/1.1 {status} X\r\ncontent-type: application/x-amz-json-1.0\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            );
            if tcp.write_all(reply.as_bytes()).await.is_err() {
                return;
            }
            if matches!(behaviour, Behaviour::AnswerThenCloseSilently) {
                // Later than the client takes to read the answer and go idle: first the
                // doorbell (a frozen function's next invocation), then the FIN.
                tokio::time::sleep(Duration::from_millis(20)).await;
                let _ = bell.lock().await.write_all(b"!").await;
                let _ = tcp.shutdown().await;
                return;
            }
        }
    }

    /// A DynamoDB client on `url` with the project's HTTP client, `attempts` attempts with a
    /// short backoff, and tight time bounds.
    fn dynamodb(url: &str, attempts: u32) -> aws_sdk_dynamodb::Client {
        dynamodb_with(url, attempts, super::Http1Client::trusting(include_bytes!("aws-roots.pem")).unwrap())
    }

    fn dynamodb_with(url: &str, attempts: u32, http: super::Http1Client) -> aws_sdk_dynamodb::Client {
        let http = http.shared();
        let config = aws_sdk_dynamodb::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("eu-west-1"))
            .credentials_provider(Credentials::new("AKIDTEST", "secret", None, None, "test"))
            .endpoint_url(url)
            .http_client(http)
            .retry_config(
                RetryConfig::standard().with_max_attempts(attempts).with_initial_backoff(Duration::from_millis(1)),
            )
            .timeout_config(
                TimeoutConfig::builder()
                    .operation_attempt_timeout(Duration::from_millis(300))
                    .operation_timeout(Duration::from_millis(800))
                    .build(),
            )
            .build();
        aws_sdk_dynamodb::Client::from_conf(config)
    }

    /// Collects every ERROR event logged while it is the default subscriber.
    #[derive(Clone, Default)]
    struct Errors(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Errors {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Errors {
        fn capture(&self) -> tracing::subscriber::DefaultGuard {
            let sink = self.clone();
            let subscriber = tracing_subscriber::fmt()
                .with_max_level(tracing::Level::ERROR)
                .with_writer(move || sink.clone())
                .finish();
            tracing::subscriber::set_default(subscriber)
        }
        fn lines(&self) -> String {
            String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
        }
    }

    #[tokio::test]
    async fn given_the_peer_closed_the_kept_alive_connection_during_a_freeze_then_the_next_call_succeeds_at_once() {
        let errors = Errors::default();
        let _guard = errors.capture();
        let mut s = server(Behaviour::AnswerThenCloseSilently).await;
        let mut doorbell = s.doorbell.take().unwrap();
        // One attempt: a call that needed the SDK's retry (and its wait) fails here.
        let db = dynamodb(&s.url, 1);
        db.list_tables().send().await.unwrap();
        // The freeze: the next invocation (the doorbell) and then the peer's FIN arrive while
        // nothing in the client runs (this test's runtime has one thread, blocked here). On the
        // thaw the invocation runs first: the idle connection still looks open to the pool,
        // and the request queued on it meets the FIN before it is written.
        tokio::time::sleep(Duration::from_millis(5)).await;
        std::thread::sleep(Duration::from_millis(100));
        let mut rung = [0u8; 1];
        doorbell.read_exact(&mut rung).await.unwrap();
        db.list_tables().send().await.unwrap();
        assert_eq!((s.connections.load(Ordering::SeqCst), s.requests.load(Ordering::SeqCst)), (2, 2));
        assert_eq!(errors.lines(), "", "no ERROR line");
    }

    #[tokio::test]
    async fn given_a_server_error_then_the_retry_goes_to_a_new_connection() {
        for status in [500, 503] {
            let errors = Errors::default();
            let _guard = errors.capture();
            let s = server(Behaviour::FailFirstWith(status)).await;
            let db = dynamodb(&s.url, 2);
            db.list_tables().send().await.unwrap();
            assert_eq!(s.requests.load(Ordering::SeqCst), 2, "{status}: one failure, one retry");
            assert_eq!(s.connections.load(Ordering::SeqCst), 2, "{status}: the retry's connection is new");
            // Later calls reuse the healthy connection.
            db.list_tables().send().await.unwrap();
            assert_eq!(s.connections.load(Ordering::SeqCst), 2);
            assert_eq!(errors.lines(), "", "{status}: no ERROR line");
        }
    }

    #[tokio::test]
    async fn given_calls_in_sequence_and_side_by_side_then_connections_are_reused() {
        let s = server(Behaviour::KeepAlive).await;
        let db = dynamodb(&s.url, 1);
        for _ in 0..5 {
            db.list_tables().send().await.unwrap();
        }
        assert_eq!(s.connections.load(Ordering::SeqCst), 1, "calls in sequence share one connection");
        let (a, b, c) = tokio::join!(db.list_tables().send(), db.list_tables().send(), db.list_tables().send());
        assert!(a.is_ok() && b.is_ok() && c.is_ok());
        let opened = s.connections.load(Ordering::SeqCst);
        assert!(opened <= 3, "{opened}");
        for _ in 0..5 {
            db.list_tables().send().await.unwrap();
        }
        assert_eq!(s.connections.load(Ordering::SeqCst), opened, "the kept connections serve later calls");
    }

    #[tokio::test]
    async fn given_a_freeze_the_monotonic_clock_did_not_count_then_a_connection_idle_past_the_limit_is_not_reused() {
        let s = server(Behaviour::KeepAlive).await;
        let clock = crate::clock::ManualClock::at(1_800_000_000);
        let http = super::Http1Client::trusting_with_clock(include_bytes!("aws-roots.pem"), clock.shared()).unwrap();
        let db = dynamodb_with(&s.url, 1, http);
        db.list_tables().send().await.unwrap();
        clock.advance(30);
        db.list_tables().send().await.unwrap();
        assert_eq!(s.connections.load(Ordering::SeqCst), 1, "30 s idle on the wall clock: reused");
        // 60 s pass on the wall clock and none on the monotonic one (a frozen sandbox).
        clock.advance(60);
        db.list_tables().send().await.unwrap();
        assert_eq!(s.connections.load(Ordering::SeqCst), 2, "past the 50 s idle limit: a new connection");
    }

    #[tokio::test]
    async fn given_faults_then_the_connector_reports_the_kinds_the_sdk_retries() {
        let call = |url: String, settings: HttpConnectorSettings| async move {
            let client = super::Http1Client::trusting(include_bytes!("aws-roots.pem")).unwrap();
            let request = http::Request::builder().uri(url).body(SdkBody::empty()).unwrap();
            client.connector(&settings).call(HttpRequest::try_from(request).unwrap()).await.map(|_| ())
        };
        // Nothing listens: an I/O error.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let closed = format!("http://{}/", listener.local_addr().unwrap());
        drop(listener);
        let err = call(closed, HttpConnectorSettings::builder().build()).await.unwrap_err();
        assert!(err.is_io(), "{err:?}");
        // No answer within the read timeout: a timeout.
        let s = server(Behaviour::Silent).await;
        let settings = HttpConnectorSettings::builder().read_timeout(Duration::from_millis(100)).build();
        let err = call(format!("{}/", s.url), settings).await.unwrap_err();
        assert!(err.is_timeout(), "{err:?}");
    }

    #[tokio::test]
    async fn given_a_server_that_never_answers_then_the_call_fails_with_a_timeout_within_the_bound() {
        let s = server(Behaviour::Silent).await;
        let db = dynamodb(&s.url, 3);
        let started = std::time::Instant::now();
        let err = db.list_tables().send().await.unwrap_err();
        assert!(matches!(err, aws_sdk_dynamodb::error::SdkError::TimeoutError(_)), "{err:?}");
        // The operation bound (800 ms) ends it whatever the attempts; the wall time is only
        // reported, the kind of error is the assertion.
        eprintln!("failed after {:?}", started.elapsed());
        assert!(s.requests.load(Ordering::SeqCst) >= 1);
    }
}
