//! The AWS SDK's HTTP client in the function binaries trusts the Amazon roots only
//! (shared/src/aws-roots.pem), or the bundle `AWS_CA_BUNDLE` names: an endpoint whose
//! certificate another CA issued is refused before any request is sent. The endpoint here is a
//! TLS server on loopback with a certificate from a CA made for the test.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use e2e::lambda::Function;
use tokio::io::AsyncWriteExt as _;
use tokio_rustls::rustls;

struct Endpoint {
    url: String,
    ca_pem: String,
    handshakes: Arc<AtomicUsize>,
}

/// A TLS endpoint on 127.0.0.1 that completes handshakes, counts them and answers 500.
async fn tls_endpoint() -> Endpoint {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "secure-auth e2e test CA");
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let mut leaf_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    leaf_params.subject_alt_names = vec![rcgen::SanType::IpAddress("127.0.0.1".parse().unwrap())];
    let leaf = leaf_params.signed_by(&leaf_key, &ca).unwrap();

    let chain = vec![leaf.der().clone(), ca.der().clone()];
    let key = rustls::pki_types::PrivateKeyDer::try_from(leaf_key.serialize_der()).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());
    let handshakes = Arc::new(AtomicUsize::new(0));
    let counted = handshakes.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, counted) = (acceptor.clone(), counted.clone());
            tokio::spawn(async move {
                if let Ok(mut tls) = acceptor.accept(tcp).await {
                    counted.fetch_add(1, Ordering::SeqCst);
                    let _ = tls.write_all(b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\n\r\n").await;
                    let _ = tls.shutdown().await;
                }
            });
        }
    });
    Endpoint { url, ca_pem: ca.pem(), handshakes }
}

async fn jwks_against(endpoint: &Endpoint, extra: &[(&str, &str)]) -> Function {
    let mut vars =
        vec![("SIGNING_KEY_SECRET_ID", "tls-test-keys"), ("AWS_ENDPOINT_URL_SECRETS_MANAGER", endpoint.url.as_str())];
    vars.extend_from_slice(extra);
    let f = Function::start("jwks", &vars).await;
    assert!(f.wait_for_output("initialization failed").await, "{}", f.output());
    f
}

#[tokio::test]
async fn given_an_endpoint_certified_by_another_ca_then_the_sdk_refuses_it_unless_aws_ca_bundle_names_that_ca() {
    let endpoint = tls_endpoint().await;
    let refused = jwks_against(&endpoint, &[]).await;
    assert!(refused.output().contains("UnknownIssuer"), "{}", refused.output());
    assert_eq!(endpoint.handshakes.load(Ordering::SeqCst), 0, "no handshake completed with an untrusted endpoint");

    let dir = std::env::temp_dir().join(format!("tls-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let bundle = dir.join("ca.pem");
    std::fs::write(&bundle, &endpoint.ca_pem).unwrap();
    let trusted = jwks_against(&endpoint, &[("AWS_CA_BUNDLE", bundle.to_str().unwrap())]).await;
    assert!(!trusted.output().contains("UnknownIssuer"), "{}", trusted.output());
    assert!(endpoint.handshakes.load(Ordering::SeqCst) >= 1, "the named CA is trusted: {}", trusted.output());
    let _ = std::fs::remove_dir_all(dir);
}
