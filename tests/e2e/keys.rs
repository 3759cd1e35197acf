//! Signing-key rotation against moto's Secrets Manager, the JWKS and discovery documents, and
//! the cache that brings a rotation to warm functions without fetching per request.

use std::sync::Arc;
use std::time::Duration;

use e2e::*;
use serde_json::{Value, json};
use shared::keys::{KeyAlg, KeyProvider, KeyRing, fetch_stages};
use shared::rotation::{Step, init, rotate_now, run_step};
use shared::tokens::{Jwt, Subject, TokenRejected};

async fn sm() -> aws_sdk_secretsmanager::Client {
    aws_sdk_secretsmanager::Client::new(&shared::wiring::aws_config().await.unwrap())
}

fn secret_name() -> String {
    format!("keys-{}", uuid::Uuid::new_v4().simple())
}

fn subject() -> Subject<'static> {
    Subject {
        user_id: "u",
        email: "u@example.com",
        email_verified: true,
        is_superuser: false,
        session_version: 1,
        amr: &["pwd"],
        session_id: "s",
    }
}

async fn jwt(sm: &aws_sdk_secretsmanager::Client, secret: &str, ttl: Duration) -> Jwt {
    let kp = KeyProvider::from_secrets_manager(sm.clone(), secret.to_owned(), ttl).await.unwrap();
    Jwt::new(Arc::new(kp), "iss".into(), "aud".into(), Duration::from_secs(900))
}

#[tokio::test]
async fn given_a_rotation_then_old_tokens_verify_until_the_next_one_and_new_tokens_carry_the_new_kid() {
    let sm = sm().await;
    let secret = secret_name();
    let kid1 = init(&sm, &secret, KeyAlg::ES256).await.unwrap();
    // The cache is re-read on every call here (ttl 0): a warm function after its ttl.
    let j = jwt(&sm, &secret, Duration::ZERO).await;
    let now = shared::now();
    let (token_a, _) = j.issue(&subject(), now).unwrap();
    assert_eq!(jsonwebtoken::decode_header(&token_a).unwrap().kid.as_deref(), Some(kid1.as_str()));

    // The key the rotation will promote has verified since the secret was made.
    let (current, _, _) = fetch_stages(&sm, &secret).await.unwrap();
    let next_kid = KeyRing::from_json(&current).unwrap().next.unwrap().kid;
    assert!(j.keys().find(&next_kid).is_some_and(|k| k.encoding.is_none()));
    assert!(j.keys().jwks().to_string().contains(&next_kid), "published before it signs");

    // createSecret: the pending ring signs with that next key and stages a new next key.
    let version = uuid::Uuid::new_v4().to_string();
    run_step(&sm, &secret, &version, Step::Create, KeyAlg::ES256).await.unwrap();
    run_step(&sm, &secret, &version, Step::Create, KeyAlg::ES256).await.unwrap(); // idempotent
    let (_, pending, _) = fetch_stages(&sm, &secret).await.unwrap();
    let pending_json = pending.unwrap();
    let pending = KeyRing::from_json(&pending_json).unwrap();
    assert_eq!(pending.signing.kid, next_kid);
    let new_next = pending.next.as_ref().unwrap().kid.clone();
    let signer = Jwt::new(
        Arc::new(KeyProvider::fixed(shared::keys::KeySet::from_stages(&pending_json, None, None).unwrap())),
        "iss".into(),
        "aud".into(),
        Duration::from_secs(900),
    );
    let (token_next, _) = signer.issue(&subject(), now).unwrap();
    j.refresh_keys().await;
    assert!(j.verify(&token_next).is_ok(), "a token from an instance that already switched verifies");
    assert_eq!(j.keys().current.kid, kid1, "still signing with the current key");
    assert!(j.keys().find(&new_next).is_some(), "the pending ring's next key verifies too");

    for step in [Step::Set, Step::Test, Step::Finish] {
        run_step(&sm, &secret, &version, step, KeyAlg::ES256).await.unwrap();
    }
    run_step(&sm, &secret, &version, Step::Finish, KeyAlg::ES256).await.unwrap(); // retried: no-op
    j.refresh_keys().await;
    assert_eq!(j.keys().current.kid, next_kid);
    let (token_b, _) = j.issue(&subject(), shared::now()).unwrap();
    assert_eq!(jsonwebtoken::decode_header(&token_b).unwrap().kid.as_deref(), Some(next_kid.as_str()));
    assert!(j.verify(&token_a).is_ok(), "tokens issued before the rotation keep verifying");
    let jwks = j.keys().jwks();
    let kids: Vec<&str> = jwks["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap()).collect();
    assert_eq!(kids, vec![next_kid.as_str(), new_next.as_str(), kid1.as_str()], "current, next, previous");

    // The next rotation retires the first key for good.
    rotate_now(&sm, &secret, KeyAlg::ES256).await.unwrap();
    j.refresh_keys().await;
    assert_eq!(j.verify(&token_a), Err(TokenRejected::UnknownKey));
    assert!(j.verify(&token_b).is_ok());
    assert!(!j.keys().jwks().to_string().contains(&kid1));
}

#[tokio::test]
async fn given_a_cached_key_set_then_an_unknown_kid_causes_no_fetch_until_the_cache_expires() {
    let sm = sm().await;
    let secret = secret_name();
    init(&sm, &secret, KeyAlg::ES256).await.unwrap();
    let s = start(|c| {
        c.signing_key_secret_id = Some(secret.clone());
        c.key_cache_ttl = Duration::from_secs(3600);
    })
    .await;
    // Two rotations in a row: the second signs with a key the server's cold start never saw
    // (rotations must be further apart than the cache, rotation.rs).
    rotate_now(&sm, &secret, KeyAlg::ES256).await.unwrap();
    rotate_now(&sm, &secret, KeyAlg::ES256).await.unwrap();
    let (current, _, _) = fetch_stages(&sm, &secret).await.unwrap();
    let fresh = shared::keys::KeySet::from_stages(&current, None, None).unwrap();
    let signer =
        Jwt::new(Arc::new(KeyProvider::fixed(fresh)), s.base.clone(), "secure-auth".into(), Duration::from_secs(900));
    let (t, _) = signer.issue(&subject(), shared::now()).unwrap();
    assert_eq!(s.get_bearer("/auth/me", &t).await.status(), 401, "the new kid is unknown until the cache expires");
    let jwks: Value = s.http.get(s.url("/.well-known/jwks.json")).send().await.unwrap().json().await.unwrap();
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 2, "still the cold-start key set (current and next)");
}

#[tokio::test]
async fn given_the_live_server_then_jwks_and_discovery_are_public_cacheable_and_follow_a_rotation() {
    let sm = sm().await;
    let secret = secret_name();
    let kid1 = init(&sm, &secret, KeyAlg::RS256).await.unwrap();
    let s = start(|c| {
        c.signing_key_secret_id = Some(secret.clone());
        c.key_cache_ttl = Duration::ZERO;
    })
    .await;
    let email = unique_email();
    s.verified_user(&email).await;
    let before = s.login(&email, PASSWORD).await;

    let r = s.http.get(s.url("/.well-known/jwks.json")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "public, max-age=300");
    let jwks: Value = r.json().await.unwrap();
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2, "the current key and the next one");
    assert_eq!(
        (keys[0]["kid"].as_str(), keys[0]["kty"].as_str(), keys[0]["alg"].as_str()),
        (Some(kid1.as_str()), Some("RSA"), Some("RS256"))
    );
    for private in ["d", "p", "q", "dp", "dq", "qi", "k"] {
        assert!(keys[0].get(private).is_none(), "private member {private} published");
    }
    let n = base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, keys[0]["n"].as_str().unwrap())
        .unwrap();
    assert!(n.len() * 8 >= 3072);

    let r = s.http.get(s.url("/.well-known/openid-configuration")).send().await.unwrap();
    assert_eq!(r.headers()["cache-control"], "public, max-age=300");
    let d: Value = r.json().await.unwrap();
    assert_eq!(d["issuer"], s.base);
    assert_eq!(d["jwks_uri"], format!("{}/.well-known/jwks.json", s.base));
    assert_eq!(d["token_endpoint"], format!("{}/auth/token", s.base));
    assert_eq!(d["grant_types_supported"], json!(["password", "refresh_token"]));
    assert_eq!(d["id_token_signing_alg_values_supported"], json!(["RS256"]));

    rotate_now(&sm, &secret, KeyAlg::ES256).await.unwrap();
    let jwks: Value = s.http.get(s.url("/.well-known/jwks.json")).send().await.unwrap().json().await.unwrap();
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 3, "new current, its next and the previous key");
    // Zero failed requests across the rotation: the old token still works, new ones carry the new kid.
    assert_eq!(s.get_bearer("/auth/me", before["access_token"].as_str().unwrap()).await.status(), 200);
    let after = s.login(&email, PASSWORD).await;
    let kid = jsonwebtoken::decode_header(after["access_token"].as_str().unwrap()).unwrap().kid.unwrap();
    assert_ne!(kid, kid1);
    assert_eq!(s.get_bearer("/auth/me", after["access_token"].as_str().unwrap()).await.status(), 200);
}

#[tokio::test]
async fn given_an_hs256_key_set_then_tokens_work_but_nothing_is_published() {
    let sm = sm().await;
    let secret = secret_name();
    init(&sm, &secret, KeyAlg::HS256).await.unwrap();
    let s = start(|c| c.signing_key_secret_id = Some(secret.clone())).await;
    let email = unique_email();
    s.verified_user(&email).await;
    let t = s.login(&email, PASSWORD).await;
    assert_eq!(s.get_bearer("/auth/me", t["access_token"].as_str().unwrap()).await.status(), 200);
    let jwks: Value = s.http.get(s.url("/.well-known/jwks.json")).send().await.unwrap().json().await.unwrap();
    assert_eq!(jwks, json!({"keys": []}));
}

#[tokio::test]
async fn given_a_revoke_then_the_compromised_pair_verifies_nowhere_and_is_published_nowhere() {
    let sm = sm().await;
    let secret = secret_name();
    init(&sm, &secret, KeyAlg::ES256).await.unwrap();
    // A rotation first, so that every stage holds a ring: the revoke must empty them all of
    // the compromised keys.
    shared::rotation::rotate_now(&sm, &secret, KeyAlg::ES256).await.unwrap();
    let (current, _, previous) = fetch_stages(&sm, &secret).await.unwrap();
    let ring = KeyRing::from_json(&current).unwrap();
    let mut compromised = vec![ring.signing.kid.clone(), ring.next.unwrap().kid];
    compromised.push(KeyRing::from_json(&previous.unwrap()).unwrap().signing.kid);
    let before = jwt(&sm, &secret, Duration::ZERO).await;
    let (stolen_key_token, _) = before.issue(&subject(), shared::now()).unwrap();

    let kid = shared::rotation::revoke(&sm, &secret, KeyAlg::ES256).await.unwrap();
    let after = jwt(&sm, &secret, Duration::ZERO).await;
    let jwks = after.keys().jwks().to_string();
    for k in &compromised {
        assert!(after.keys().find(k).is_none(), "{k} still verifies");
        assert!(!jwks.contains(k.as_str()), "{k} still published");
    }
    assert!(after.verify(&stolen_key_token).is_err());
    let (fresh, _) = after.issue(&subject(), shared::now()).unwrap();
    assert_eq!(jsonwebtoken::decode_header(&fresh).unwrap().kid.as_deref(), Some(kid.as_str()), "signs at once");
    after.verify(&fresh).unwrap();
    // The next rotation goes on from the new ring.
    shared::rotation::rotate_now(&sm, &secret, KeyAlg::ES256).await.unwrap();
    let rotated = jwt(&sm, &secret, Duration::ZERO).await;
    rotated.verify(&fresh).unwrap();
}
