//! Every token guarantee of docs/security.md, against every bearer endpoint in the OpenAPI document:
//! forged algorithms, keys, headers and claims, and tokens of other kinds.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use e2e::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use shared::keys::{KeyAlg, KeyDoc, KeyRing, fetch_stages};

/// (method, path) of every operation that requires a bearer token.
fn bearer_operations() -> Vec<(String, String)> {
    let doc: Value = serde_json::from_str(shared::http::docs::DOCUMENT).unwrap();
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            if op.get("security").is_some() {
                out.push((method.to_uppercase(), path.clone()));
            }
        }
    }
    assert!(!out.is_empty());
    out
}

async fn call(s: &TestServer, method: &str, path: &str, token: &str) -> reqwest::Response {
    let req = s.http.request(method.parse().unwrap(), s.url(&path.replace("{id}", "some-session"))).bearer_auth(token);
    let req = if method == "GET" { req } else { req.json(&json!({"name": "x"})) };
    req.send().await.unwrap()
}

fn sign(header: Header, claims: &Value, key: &EncodingKey) -> String {
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

fn unsigned(header: Value, claims: &Value) -> String {
    format!("{}.{}.", B64.encode(header.to_string()), B64.encode(claims.to_string()))
}

async fn server_with(alg: KeyAlg) -> (TestServer, KeyDoc) {
    let sm = aws_sdk_secretsmanager::Client::new(&shared::wiring::aws_config().await.unwrap());
    let secret = format!("attack-{}", uuid::Uuid::new_v4().simple());
    shared::rotation::init(&sm, &secret, alg).await.unwrap();
    let (current, _, _) = fetch_stages(&sm, &secret).await.unwrap();
    let s = start(|c| c.signing_key_secret_id = Some(secret.clone())).await;
    (s, KeyRing::from_json(&current).unwrap().signing)
}

#[tokio::test]
async fn given_forged_or_foreign_tokens_then_every_bearer_endpoint_answers_401_invalid_token() {
    for alg in [KeyAlg::ES256, KeyAlg::RS256] {
        let (s, doc) = server_with(alg).await;
        let key = doc.to_key(true).unwrap();
        let enc = key.encoding.as_ref().unwrap();
        let email = unique_email();
        s.post("/auth/signup", json!({"email": email, "password": PASSWORD})).await;
        let verification = token_from_mail(&email, "verify").await;
        s.post("/auth/verify-email", json!({"token": verification, "password": PASSWORD})).await;
        let t = s.login(&email, PASSWORD).await;
        let good = t["access_token"].as_str().unwrap().to_owned();
        let claims: Value = jsonwebtoken::dangerous::insecure_decode::<Value>(&good).unwrap().claims;
        let hdr = |alg: Algorithm| {
            let mut h = Header::new(alg);
            h.typ = Some("at+jwt".into());
            h.kid = Some(doc.kid.clone());
            h
        };
        let now = shared::now();
        let mut forged: Vec<(String, String)> = Vec::new();
        for a in ["none", "None", "NONE", "nOnE"] {
            forged.push((format!("alg {a}"), unsigned(json!({"alg": a, "typ": "at+jwt", "kid": doc.kid}), &claims)));
        }
        // HS256 with the public key as the HMAC secret (algorithm confusion).
        let jwk = key.public_jwk.as_ref().unwrap().to_string();
        forged.push((
            "HS256 keyed with the JWK".into(),
            sign(hdr(Algorithm::HS256), &claims, &EncodingKey::from_secret(jwk.as_bytes()).unwrap()),
        ));
        if alg == KeyAlg::RS256 {
            let der = pem::parse(doc.private_key_pem.as_deref().unwrap()).unwrap();
            let pair = aws_lc_rs::rsa::KeyPair::from_pkcs8(der.contents()).unwrap();
            let spki = aws_lc_rs::encoding::AsDer::<aws_lc_rs::encoding::PublicKeyX509Der>::as_der(
                aws_lc_rs::signature::KeyPair::public_key(&pair),
            )
            .unwrap();
            let public_pem = pem::encode(&pem::Pem::new("PUBLIC KEY", spki.as_ref().to_vec()));
            forged.push((
                "HS256 keyed with the public PEM".into(),
                sign(hdr(Algorithm::HS256), &claims, &EncodingKey::from_secret(public_pem.as_bytes()).unwrap()),
            ));
        }
        let alg_jwt = key.alg;
        for kid in ["../../../../etc/passwd", "unknown-kid", ""] {
            let mut h = hdr(alg_jwt);
            h.kid = Some(kid.into());
            forged.push((format!("kid {kid:?}"), sign(h, &claims, enc)));
        }
        let mut h = hdr(alg_jwt);
        h.kid = None;
        forged.push(("no kid".into(), sign(h, &claims, enc)));
        let mut h = hdr(alg_jwt);
        h.jku = Some("https://attacker.example/jwks.json".into());
        forged.push(("jku header".into(), sign(h, &claims, enc)));
        let mut h = hdr(alg_jwt);
        h.jwk = Some(serde_json::from_value(key.public_jwk.clone().unwrap()).unwrap());
        forged.push(("jwk header".into(), sign(h, &claims, enc)));
        let mut h = hdr(alg_jwt);
        h.x5u = Some("https://attacker.example/cert.pem".into());
        forged.push(("x5u header".into(), sign(h, &claims, enc)));
        for typ in [None, Some("JWT"), Some("refresh+jwt")] {
            let mut h = hdr(alg_jwt);
            h.typ = typ.map(Into::into);
            forged.push((format!("typ {typ:?}"), sign(h, &claims, enc)));
        }
        for missing in ["exp", "iss", "aud", "sub", "nbf", "iat"] {
            let mut c = claims.clone();
            c.as_object_mut().unwrap().remove(missing);
            forged.push((format!("no {missing}"), sign(hdr(alg_jwt), &c, enc)));
        }
        for (field, value) in [
            ("iss", json!("https://attacker.example")),
            ("aud", json!("another-service")),
            ("exp", json!(now - 61)),
            ("nbf", json!(now + 120)),
            ("sv", json!(0)),
            ("sub", json!("someone-else")),
        ] {
            let mut c = claims.clone();
            c[field] = value.clone();
            forged.push((format!("{field} = {value}"), sign(hdr(alg_jwt), &c, enc)));
        }
        let mut tampered: Vec<&str> = good.split('.').collect();
        let mut c = claims.clone();
        c["scope"] = json!("openid profile email admin");
        let payload = B64.encode(c.to_string());
        tampered[1] = &payload;
        forged.push(("payload swapped under the real signature".into(), tampered.join(".")));
        forged.push(("the refresh token".into(), t["refresh_token"].as_str().unwrap().to_owned()));
        forged.push(("the verification token".into(), verification.clone()));

        for (method, path) in bearer_operations() {
            if method == "GET" {
                let status = call(&s, &method, &path, &good).await.status();
                if path.starts_with("/users") {
                    assert_eq!(status, 403, "{method} {path}: a valid token of a non-admin");
                } else {
                    assert!(status.is_success(), "{method} {path} with the real token");
                }
            }
            for (what, token) in &forged {
                let r = call(&s, &method, &path, token).await;
                assert_eq!(r.status(), 401, "{alg:?} {method} {path}: {what}");
                assert_eq!(
                    r.headers()["www-authenticate"],
                    r#"Bearer realm="secure-auth", error="invalid_token""#,
                    "{what}"
                );
            }
        }
        // A token of a few seconds past expiry but within the 60 s skew still works.
        let mut c = claims.clone();
        c["exp"] = json!(now - 30);
        assert_eq!(call(&s, "GET", "/auth/me", &sign(hdr(alg_jwt), &c, enc)).await.status(), 200);
    }
}
