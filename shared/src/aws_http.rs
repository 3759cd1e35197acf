//! The HTTP client every AWS SDK client here is given: HTTP/1.1 over hyper's connection API,
//! TLS by rustls on aws-lc (the crypto provider everything else uses), trusting only the roots
//! it is given, with a small per-origin pool of idle connections.
//!
//! Why not the SDK's default client: it is hyper-util's pooled client with HTTP/2 compiled in
//! (ALPN decides at run time, so the linker keeps all of `h2`, and the feature also turns
//! HTTP/2 on in the Lambda runtime's own client), proxy support and the system's root store,
//! about 0.6 MB of every function's code, none of which a function uses: DynamoDB, SQS and
//! Secrets Manager answer HTTP/1.1, a Lambda function has no proxy, and the roots are Amazon's.
//! It honours no `HTTPS_PROXY` (the local server and the CLI reach AWS directly).
//!
//! Errors are classified as the SDK's client does (a timeout, an I/O failure, a user error),
//! so the SDK's retry policy treats them alike: a refused or reset connection and a failed
//! handshake are I/O errors, retried.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio_rustls::rustls;

/// How long an idle connection is kept for reuse. Below the idle timeouts of AWS endpoints
/// (60 s and more), so that a reused connection has rarely been closed by the other side.
const IDLE_FOR: Duration = Duration::from_secs(50);
/// Idle connections kept per origin (a function makes a few calls side by side).
const MAX_IDLE_PER_ORIGIN: usize = 8;

/// The client: cheap to clone, one pool for every SDK client built from it.
#[derive(Clone)]
pub struct Http1Client {
    pool: Arc<Pool>,
}

impl std::fmt::Debug for Http1Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Http1Client").finish_non_exhaustive()
    }
}

/// Where a connection goes: a pool key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Origin {
    tls: bool,
    host: String,
    port: u16,
}

struct Idle {
    sender: SendRequest<SdkBody>,
    since: Instant,
}

struct Pool {
    tls: tokio_rustls::TlsConnector,
    idle: Mutex<HashMap<Origin, Vec<Idle>>>,
}

/// Why a client could not be built.
#[derive(Debug, thiserror::Error)]
#[error("TLS trust store: {0}")]
pub struct TrustError(String);

impl Http1Client {
    /// A client trusting exactly the certificates in `roots_pem` (one or more PEM blocks).
    pub fn trusting(roots_pem: &[u8]) -> Result<Self, TrustError> {
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
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| TrustError(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config));
        Ok(Self { pool: Arc::new(Pool { tls, idle: Mutex::new(HashMap::new()) }) })
    }

    pub fn shared(self) -> SharedHttpClient {
        SharedHttpClient::new(self)
    }

    /// Idle connections in the pool.
    #[cfg(test)]
    fn idle_connections(&self) -> usize {
        self.pool.idle.lock().map(|m| m.values().map(Vec::len).sum()).unwrap_or(0)
    }
}

impl HttpClient for Http1Client {
    fn http_connector(&self, settings: &HttpConnectorSettings, _: &RuntimeComponents) -> SharedHttpConnector {
        SharedHttpConnector::new(self.connector(settings))
    }
}

impl Http1Client {
    fn connector(&self, settings: &HttpConnectorSettings) -> Connector {
        Connector {
            pool: self.pool.clone(),
            connect_timeout: settings.connect_timeout(),
            read_timeout: settings.read_timeout(),
        }
    }
}

struct Connector {
    pool: Arc<Pool>,
    connect_timeout: Option<Duration>,
    read_timeout: Option<Duration>,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("connect_timeout", &self.connect_timeout)
            .field("read_timeout", &self.read_timeout)
            .finish_non_exhaustive()
    }
}

impl HttpConnector for Connector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let pool = self.pool.clone();
        let (connect_timeout, read_timeout) = (self.connect_timeout, self.read_timeout);
        HttpConnectorFuture::new(async move { pool.send(request, connect_timeout, read_timeout).await })
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

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

impl Pool {
    async fn send(
        self: Arc<Self>,
        request: HttpRequest,
        connect_timeout: Option<Duration>,
        read_timeout: Option<Duration>,
    ) -> Result<HttpResponse, ConnectorError> {
        let mut request = request.try_into_http1x().map_err(|e| ConnectorError::user(e.into()))?;
        let (origin, host, target) = split_uri(request.uri()).map_err(ConnectorError::user)?;
        // The request line carries the path (origin form) and `Host` the authority, as the
        // SDK's signature expects (the host, and the port unless it is the scheme's default).
        if !request.headers().contains_key(http::header::HOST) {
            let value = http::HeaderValue::from_str(&host).map_err(|e| ConnectorError::user(e.into()))?;
            request.headers_mut().insert(http::header::HOST, value);
        }
        *request.uri_mut() = target;
        let mut sender = match self.checkout(&origin) {
            Some(sender) => sender,
            None => self.connect(&origin, connect_timeout).await?,
        };
        let sent = sender.send_request(request);
        let response = match read_timeout {
            Some(limit) => tokio::time::timeout(limit, sent)
                .await
                .map_err(|_| ConnectorError::timeout(format!("no response within {limit:?}").into()))?,
            None => sent.await,
        }
        .map_err(classify)?;
        let back = Some((self, origin, sender));
        let response = response.map(move |inner| SdkBody::from_body_1_x(Returning { inner: Some(inner), back }));
        HttpResponse::try_from(response).map_err(|e| ConnectorError::other(e.into(), None))
    }

    fn put(&self, origin: Origin, sender: SendRequest<SdkBody>) {
        if let Ok(mut idle) = self.idle.lock() {
            let list = idle.entry(origin).or_default();
            list.retain(|c| c.since.elapsed() < IDLE_FOR && !c.sender.is_closed());
            if list.len() < MAX_IDLE_PER_ORIGIN {
                list.push(Idle { sender, since: Instant::now() });
            }
        }
    }

    /// An idle connection to `origin` that can take a request now, if there is one.
    fn checkout(&self, origin: &Origin) -> Option<SendRequest<SdkBody>> {
        let mut idle = self.idle.lock().ok()?;
        let list = idle.get_mut(origin)?;
        while let Some(conn) = list.pop() {
            if conn.since.elapsed() < IDLE_FOR && conn.sender.is_ready() {
                return Some(conn.sender);
            }
        }
        None
    }

    /// Puts the connection back once it can take another request, later (a task) if it cannot
    /// yet; a connection that closes meanwhile is dropped.
    fn checkin(self: Arc<Self>, origin: Origin, mut sender: SendRequest<SdkBody>, cx: &mut Context<'_>) {
        match sender.poll_ready(cx) {
            Poll::Ready(Ok(())) => self.put(origin, sender),
            Poll::Ready(Err(_)) => {}
            Poll::Pending => {
                if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                    runtime.spawn(async move {
                        if sender.ready().await.is_ok() {
                            self.put(origin, sender);
                        }
                    });
                }
            }
        }
    }

    /// A new connection: TCP, then TLS for `https`, within `limit`.
    async fn connect(&self, origin: &Origin, limit: Option<Duration>) -> Result<SendRequest<SdkBody>, ConnectorError> {
        let connecting = self.open(origin);
        match limit {
            Some(limit) => tokio::time::timeout(limit, connecting)
                .await
                .map_err(|_| ConnectorError::timeout(format!("no connection within {limit:?}").into()))?,
            None => connecting.await,
        }
    }

    async fn open(&self, origin: &Origin) -> Result<SendRequest<SdkBody>, ConnectorError> {
        let tcp = tokio::net::TcpStream::connect((origin.host.as_str(), origin.port))
            .await
            .map_err(|e| ConnectorError::io(e.into()))?;
        let _ = tcp.set_nodelay(true);
        if origin.tls {
            let name = rustls::pki_types::ServerName::try_from(origin.host.clone())
                .map_err(|e| ConnectorError::user(e.into()))?;
            let tls = self.tls.connect(name, tcp).await.map_err(|e| ConnectorError::io(e.into()))?;
            handshake(tls).await
        } else {
            handshake(tcp).await
        }
    }
}

async fn handshake<T>(io: T) -> Result<SendRequest<SdkBody>, ConnectorError>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(io)).await.map_err(|e| ConnectorError::io(e.into()))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "AWS connection closed");
        }
    });
    Ok(sender)
}

/// A response body that gives its connection back to the pool as soon as it has been read to
/// the end, so that the next call, even one made at once, finds it there. A body dropped before
/// its end takes the connection with it (hyper closes a connection with an unread body).
struct Returning {
    inner: Option<hyper::body::Incoming>,
    back: Option<(Arc<Pool>, Origin, SendRequest<SdkBody>)>,
}

impl Returning {
    fn give_back(&mut self, cx: &mut Context<'_>) {
        if let Some((pool, origin, sender)) = self.back.take() {
            pool.checkin(origin, sender, cx);
        }
    }
}

impl http_body::Body for Returning {
    type Data = bytes::Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let Some(inner) = self.inner.as_mut() else { return Poll::Ready(None) };
        let polled = std::pin::Pin::new(&mut *inner).poll_frame(cx);
        let ended = match &polled {
            Poll::Ready(None) => true,
            Poll::Ready(Some(Ok(_))) => inner.is_end_stream(),
            Poll::Ready(Some(Err(_))) => {
                self.back = None;
                false
            }
            Poll::Pending => false,
        };
        if ended {
            self.give_back(cx);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(http_body::Body::is_end_stream)
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.as_ref().map(http_body::Body::size_hint).unwrap_or_default()
    }
}

impl Drop for Returning {
    fn drop(&mut self) {
        // An empty body nobody polled still ends the message: the connection can go back.
        if self.inner.as_ref().is_some_and(http_body::Body::is_end_stream) {
            let waker = futures::task::noop_waker();
            self.give_back(&mut Context::from_waker(&waker));
        }
    }
}

/// The pool key, the `Host` value and the origin-form target of an absolute URI.
fn split_uri(uri: &http::Uri) -> Result<(Origin, String, http::Uri), BoxError> {
    let tls = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        other => return Err(format!("unsupported scheme {other:?} in {uri}").into()),
    };
    let host = uri.host().filter(|h| !h.is_empty()).ok_or_else(|| format!("no host in {uri}"))?;
    let default_port = if tls { 443 } else { 80 };
    let port = uri.port_u16().unwrap_or(default_port);
    let host_header = if port == default_port { host.to_owned() } else { format!("{host}:{port}") };
    let target = uri.path_and_query().map_or("/", |p| p.as_str()).parse::<http::Uri>()?;
    // An IPv6 literal is bracketed in a URI but not in a socket address or a server name.
    let bare = host.trim_start_matches('[').trim_end_matches(']').to_owned();
    Ok((Origin { tls, host: bare, port }, host_header, target))
}

/// Maps hyper's errors as the SDK's own client does.
fn classify(err: hyper::Error) -> ConnectorError {
    if err.is_timeout() {
        ConnectorError::timeout(err.into())
    } else if err.is_user() {
        ConnectorError::user(err.into())
    } else if err.is_closed()
        || err.is_canceled()
        || err.is_incomplete_message()
        || std::error::Error::source(&err).is_some_and(|s| s.is::<std::io::Error>())
    {
        ConnectorError::io(err.into())
    } else {
        ConnectorError::other(err.into(), None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_uris_then_origin_host_header_and_target_follow_the_signature_rules() {
        let (o, h, t) = split_uri(&"https://dynamodb.eu-west-1.amazonaws.com/".parse().unwrap()).unwrap();
        assert_eq!(
            (o.tls, o.host.as_str(), o.port, h.as_str(), t.to_string().as_str()),
            (true, "dynamodb.eu-west-1.amazonaws.com", 443, "dynamodb.eu-west-1.amazonaws.com", "/")
        );
        let (o, h, t) = split_uri(&"http://127.0.0.1:8000/a/b?x=1".parse().unwrap()).unwrap();
        assert_eq!(
            (o.tls, o.host.as_str(), o.port, h.as_str(), t.to_string().as_str()),
            (false, "127.0.0.1", 8000, "127.0.0.1:8000", "/a/b?x=1")
        );
        let (o, h, _) = split_uri(&"https://[::1]:4443/".parse().unwrap()).unwrap();
        assert_eq!((o.host.as_str(), h.as_str()), ("::1", "[::1]:4443"));
        let (_, h, _) = split_uri(&"http://localhost:80/".parse().unwrap()).unwrap();
        assert_eq!(h, "localhost");
        assert!(split_uri(&"ftp://example.com/".parse().unwrap()).is_err());
        assert!(split_uri(&"/relative".parse().unwrap()).is_err());
    }

    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    /// An HTTP/1.1 server on loopback answering every request `200 ok` on a kept-alive
    /// connection after `delay`, counting connections; `close_after` answers per connection
    /// before it closes (0: never).
    async fn server(delay: Duration, close_after: usize) -> (String, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let connections = Arc::new(AtomicUsize::new(0));
        let counted = connections.clone();
        tokio::spawn(async move {
            while let Ok((mut tcp, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut answered = 0;
                    let mut chunk = [0u8; 4096];
                    loop {
                        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            buf.drain(..end + 4);
                            tokio::time::sleep(delay).await;
                            let last = close_after > 0 && answered + 1 == close_after;
                            let head = if last { "connection: close\r\n" } else { "" };
                            let reply = format!("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n{head}\r\nok");
                            if tcp.write_all(reply.as_bytes()).await.is_err() {
                                return;
                            }
                            answered += 1;
                            if last {
                                return;
                            }
                        }
                        match tcp.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                });
            }
        });
        (url, connections)
    }

    fn client() -> Http1Client {
        Http1Client::trusting(include_bytes!("aws-roots.pem")).unwrap()
    }

    fn get(url: &str) -> HttpRequest {
        HttpRequest::try_from(http::Request::builder().uri(url).body(SdkBody::empty()).unwrap()).unwrap()
    }

    async fn call(c: &Connector, url: &str) -> Result<(u16, Vec<u8>), ConnectorError> {
        let response = c.call(get(url)).await?;
        let status = response.status().as_u16();
        let body = aws_smithy_types::byte_stream::ByteStream::new(response.into_body()).collect().await.unwrap();
        Ok((status, body.into_bytes().to_vec()))
    }

    /// Lets the check-in task put a finished connection back.
    async fn settle() {
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn given_sequential_requests_then_they_share_one_connection() {
        let (url, connections) = server(Duration::ZERO, 0).await;
        let c = client();
        let conn = c.connector(&HttpConnectorSettings::builder().build());
        for _ in 0..5 {
            assert_eq!(call(&conn, &format!("{url}/x?y=1")).await.unwrap(), (200, b"ok".to_vec()));
            settle().await;
        }
        assert_eq!(connections.load(Ordering::SeqCst), 1);
        assert_eq!(c.idle_connections(), 1);
    }

    #[tokio::test]
    async fn given_back_to_back_requests_then_each_reuses_the_connection_the_last_one_used() {
        // No pause between them: a request that follows another at once (a use case's next
        // DynamoDB call) must find the previous call's connection back in the pool.
        let (url, connections) = server(Duration::ZERO, 0).await;
        let conn = client().connector(&HttpConnectorSettings::builder().build());
        for _ in 0..5 {
            assert_eq!(call(&conn, &url).await.unwrap().0, 200);
        }
        assert_eq!(connections.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn given_concurrent_requests_then_each_gets_a_connection_and_all_are_kept() {
        let (url, connections) = server(Duration::from_millis(50), 0).await;
        let c = client();
        let conn = c.connector(&HttpConnectorSettings::builder().build());
        let (a, b, d) = tokio::join!(call(&conn, &url), call(&conn, &url), call(&conn, &url));
        assert!(a.is_ok() && b.is_ok() && d.is_ok());
        settle().await;
        assert_eq!(connections.load(Ordering::SeqCst), 3);
        assert_eq!(c.idle_connections(), 3);
        call(&conn, &url).await.unwrap();
        assert_eq!(connections.load(Ordering::SeqCst), 3, "the next request reuses one of them");
    }

    #[tokio::test]
    async fn given_the_server_closes_a_connection_then_the_next_request_opens_another() {
        let (url, connections) = server(Duration::ZERO, 1).await;
        let c = client();
        let conn = c.connector(&HttpConnectorSettings::builder().build());
        for _ in 0..3 {
            assert_eq!(call(&conn, &url).await.unwrap().0, 200);
            settle().await;
        }
        assert_eq!(connections.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn given_faults_then_errors_are_classified_as_the_sdk_retries_them() {
        // Nothing listens: an I/O error (retried by the SDK).
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let closed = format!("http://{}", listener.local_addr().unwrap());
        drop(listener);
        let conn = client().connector(&HttpConnectorSettings::builder().build());
        assert!(call(&conn, &closed).await.unwrap_err().is_io());

        // A TLS endpoint that never answers the handshake: the connect timeout.
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let silent_url = format!("https://{}", silent.local_addr().unwrap());
        let held = tokio::spawn(async move {
            let mut open = Vec::new();
            while let Ok((tcp, _)) = silent.accept().await {
                open.push(tcp);
            }
        });
        let settings = HttpConnectorSettings::builder().connect_timeout(Duration::from_millis(200)).build();
        assert!(call(&client().connector(&settings), &silent_url).await.unwrap_err().is_timeout());

        // A server slower than the read timeout: a timeout.
        let (slow, _) = server(Duration::from_secs(5), 0).await;
        let settings = HttpConnectorSettings::builder().read_timeout(Duration::from_millis(200)).build();
        assert!(call(&client().connector(&settings), &slow).await.unwrap_err().is_timeout());

        // Not http or https: the caller's error, not retried.
        assert!(call(&conn, "ftp://127.0.0.1/").await.unwrap_err().is_user());
        held.abort();
    }

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
