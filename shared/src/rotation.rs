//! Key rotation with Secrets Manager's four-step protocol, used by the `rotate-keys` Lambda
//! (invoked by Secrets Manager on the `RotationSchedule`) and by `secure-auth keys rotate`.
//!
//! Secrets Manager runs the four steps back to back, so a key first staged by a rotation must
//! not sign in that rotation: a warm function that loaded the keys a moment before would not
//! know it. Each version is a key ring (`keys.rs`): the rotation promotes the *next* key that
//! the previous rotation published, and stages a new next key.
//!
//! - `createSecret`: put the current ring's successor as version `token` with stage
//!   `AWSPENDING` (idempotent): its signing key is the current ring's next key, published and
//!   verifying everywhere since the previous rotation; its next key is new. A ring without a
//!   next key (written before rings) keeps its signing key and only gains a next one.
//! - `setSecret`: nothing to configure elsewhere: the secret *is* the key ring.
//! - `testSecret`: the pending ring's signing key must sign a token that verifies; its next
//!   key must load.
//! - `finishSecret`: move `AWSCURRENT` to `token`; Secrets Manager moves `AWSPREVIOUS` to the old
//!   ring, whose signing key keeps verifying until the next rotation; the one before drops out.
//!
//! So rotations must be further apart than the longest key cache (`KEY_CACHE_SECONDS`, and the
//! JWKS cache of API Gateway's JWT authorizer): the schedule's 30 days are, and `secure-auth
//! keys rotate` run twice within minutes can make the second rotation's signing key one that a
//! warm cache has not read yet.

use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::error::DisplayErrorContext;
use serde::Deserialize;

use crate::keys::{KeyAlg, KeyError, KeyRing, KeySet};

/// One step of the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Step {
    #[serde(rename = "createSecret")]
    Create,
    #[serde(rename = "setSecret")]
    Set,
    #[serde(rename = "testSecret")]
    Test,
    #[serde(rename = "finishSecret")]
    Finish,
}

/// The event Secrets Manager sends the rotation function.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RotationEvent {
    pub step: Step,
    pub secret_id: String,
    pub client_request_token: String,
}

fn sm_err(what: &str, e: impl std::error::Error + Send + Sync + 'static) -> KeyError {
    KeyError(format!("{what}: {}", DisplayErrorContext(e)))
}

async fn version_string(
    client: &Client,
    secret_id: &str,
    version: &str,
    stage: &str,
) -> Result<Option<String>, KeyError> {
    match client.get_secret_value().secret_id(secret_id).version_id(version).version_stage(stage).send().await {
        Ok(out) => Ok(out.secret_string().map(str::to_owned)),
        Err(e) if e.as_service_error().is_some_and(|e| e.is_resource_not_found_exception()) => Ok(None),
        Err(e) => Err(sm_err("GetSecretValue", e)),
    }
}

/// The version id currently labelled `stage`, if any.
async fn version_with_stage(client: &Client, secret_id: &str, stage: &str) -> Result<Option<String>, KeyError> {
    let d = client.describe_secret().secret_id(secret_id).send().await.map_err(|e| sm_err("DescribeSecret", e))?;
    Ok(d.version_ids_to_stages()
        .and_then(|m| m.iter().find(|(_, stages)| stages.iter().any(|s| s == stage)).map(|(v, _)| v.clone())))
}

/// The current ring, if the secret has a readable one.
async fn current_ring(client: &Client, secret_id: &str) -> Result<Option<KeyRing>, KeyError> {
    match client.get_secret_value().secret_id(secret_id).version_stage("AWSCURRENT").send().await {
        Ok(out) => Ok(out.secret_string().and_then(|s| KeyRing::from_json(s).ok())),
        Err(e) if e.as_service_error().is_some_and(|e| e.is_resource_not_found_exception()) => Ok(None),
        Err(e) => Err(sm_err("GetSecretValue AWSCURRENT", e)),
    }
}

/// Runs one step for version `token`.
pub async fn run_step(
    client: &Client,
    secret_id: &str,
    token: &str,
    step: Step,
    default_alg: KeyAlg,
) -> Result<(), KeyError> {
    // A retried invocation after the rotation finished is a no-op.
    if version_with_stage(client, secret_id, "AWSCURRENT").await?.as_deref() == Some(token) {
        return Ok(());
    }
    match step {
        Step::Create => {
            if version_string(client, secret_id, token, "AWSPENDING").await?.is_some() {
                return Ok(());
            }
            // The next key keeps the current key's algorithm; a secret without a usable ring
            // (its first rotation) gets two new keys of `default_alg`.
            let ring = match current_ring(client, secret_id).await? {
                Some(current) => current.successor(current.signing.alg)?,
                None => KeyRing::generate(default_alg)?,
            };
            client
                .put_secret_value()
                .secret_id(secret_id)
                .client_request_token(token)
                .secret_string(ring.to_json())
                .version_stages("AWSPENDING")
                .send()
                .await
                .map_err(|e| sm_err("PutSecretValue", e))?;
            let next = ring.next.as_ref().map(|n| n.kid.as_str()).unwrap_or_default();
            tracing::info!(event = "signing_key_created", signing_kid = %ring.signing.kid, next_kid = %next, alg = ?ring.signing.alg, "pending key ring staged");
            Ok(())
        }
        Step::Set => Ok(()),
        Step::Test => {
            let pending = version_string(client, secret_id, token, "AWSPENDING")
                .await?
                .ok_or_else(|| KeyError("no AWSPENDING version to test".into()))?;
            let ring = KeyRing::from_json(&pending)?;
            if let Some(next) = &ring.next {
                next.to_key(false)?;
            }
            let keys = KeySet::from_stages(&pending, None, None)?;
            let provider = std::sync::Arc::new(crate::keys::KeyProvider::fixed(keys));
            let jwt = crate::tokens::Jwt::new(
                provider,
                "rotation-test".into(),
                "rotation-test".into(),
                std::time::Duration::from_secs(60),
            );
            let subject = crate::tokens::Subject {
                user_id: "rotation-test",
                email: "rotation@test.invalid",
                email_verified: true,
                is_superuser: false,
                session_version: 1,
                amr: &["pwd"],
                session_id: "rotation-test",
            };
            let (t, _) = jwt.issue(&subject, crate::now()).map_err(|e| KeyError(format!("test sign: {e}")))?;
            jwt.verify(&t).map_err(|e| KeyError(format!("test verify: {e:?}")))?;
            Ok(())
        }
        Step::Finish => {
            let current = version_with_stage(client, secret_id, "AWSCURRENT").await?;
            let mut req = client
                .update_secret_version_stage()
                .secret_id(secret_id)
                .version_stage("AWSCURRENT")
                .move_to_version_id(token);
            if let Some(c) = &current {
                req = req.remove_from_version_id(c);
            }
            req.send().await.map_err(|e| sm_err("UpdateSecretVersionStage AWSCURRENT", e))?;
            client
                .update_secret_version_stage()
                .secret_id(secret_id)
                .version_stage("AWSPENDING")
                .remove_from_version_id(token)
                .send()
                .await
                .map_err(|e| sm_err("UpdateSecretVersionStage AWSPENDING", e))?;
            tracing::info!(event = "signing_key_rotated", version = %token, "signing key rotation finished");
            Ok(())
        }
    }
}

/// All four steps with a fresh version token: an on-demand rotation.
pub async fn rotate_now(client: &Client, secret_id: &str, default_alg: KeyAlg) -> Result<String, KeyError> {
    let token = uuid::Uuid::new_v4().to_string();
    for step in [Step::Create, Step::Set, Step::Test, Step::Finish] {
        run_step(client, secret_id, &token, step, default_alg).await?;
    }
    Ok(token)
}

/// Revokes a compromised key ring in one step (docs/operations.md "If a signing key leaked"):
/// a ring of two new keys of `alg` becomes `AWSCURRENT`, and the compromised ring is kept in no
/// stage (not `AWSPREVIOUS`, not a pending rotation's `AWSPENDING`), so neither its signing key
/// nor its next key verifies or is published once each cache has read the secret again. Unlike
/// a rotation, the new signing key signs at once: until a warm function's cache
/// (`KEY_CACHE_SECONDS`) reads it, that function refuses the new tokens too, which is the price
/// of evicting the old ones. Returns the new signing kid.
pub async fn revoke(client: &Client, secret_id: &str, alg: KeyAlg) -> Result<String, KeyError> {
    // A rotation under way is abandoned first: its pending ring holds the compromised ring's
    // next key, and a version that keeps a second label is one the new current must not share.
    if let Some(pending) = version_with_stage(client, secret_id, "AWSPENDING").await? {
        client
            .update_secret_version_stage()
            .secret_id(secret_id)
            .version_stage("AWSPENDING")
            .remove_from_version_id(pending)
            .send()
            .await
            .map_err(|e| sm_err("UpdateSecretVersionStage AWSPENDING", e))?;
    }
    let ring = KeyRing::generate(alg)?;
    let out = client
        .put_secret_value()
        .secret_id(secret_id)
        .client_request_token(uuid::Uuid::new_v4().to_string())
        .secret_string(ring.to_json())
        .version_stages("AWSCURRENT")
        .send()
        .await
        .map_err(|e| sm_err("PutSecretValue", e))?;
    let new_version = out.version_id().ok_or_else(|| KeyError("PutSecretValue returned no version".into()))?;
    // A label is on one version at a time; where the emulator left AWSCURRENT on the ring that
    // was current (moto does, for a version a rotation made current), move it off explicitly.
    let d = client.describe_secret().secret_id(secret_id).send().await.map_err(|e| sm_err("DescribeSecret", e))?;
    let stale: Vec<String> = d
        .version_ids_to_stages()
        .map(|m| {
            m.iter()
                .filter(|(v, stages)| *v != new_version && stages.iter().any(|s| s == "AWSCURRENT"))
                .map(|(v, _)| v.clone())
                .collect()
        })
        .unwrap_or_default();
    for old in stale {
        client
            .update_secret_version_stage()
            .secret_id(secret_id)
            .version_stage("AWSCURRENT")
            .move_to_version_id(new_version)
            .remove_from_version_id(old)
            .send()
            .await
            .map_err(|e| sm_err("UpdateSecretVersionStage AWSCURRENT", e))?;
    }
    // Secrets Manager labels the ring it replaced AWSPREVIOUS (the compromised one): the new
    // ring takes that label too, so whatever verifies as "previous" is a new key.
    let labelled = version_with_stage(client, secret_id, "AWSPREVIOUS").await?;
    let mut previous = client
        .update_secret_version_stage()
        .secret_id(secret_id)
        .version_stage("AWSPREVIOUS")
        .move_to_version_id(new_version);
    if let Some(old) = labelled.as_deref().filter(|v| *v != new_version) {
        previous = previous.remove_from_version_id(old);
    }
    previous.send().await.map_err(|e| sm_err("UpdateSecretVersionStage AWSPREVIOUS", e))?;
    tracing::info!(event = "signing_key_revoked", version = %new_version, "signing keys replaced");
    Ok(ring.signing.kid)
}

/// Creates the secret with a first key ring of `alg` (signing and next), or gives it one if it
/// has no usable current ring. Returns the current signing kid.
pub async fn init(client: &Client, secret_id: &str, alg: KeyAlg) -> Result<String, KeyError> {
    match client.describe_secret().secret_id(secret_id).send().await {
        Ok(_) => {
            if let Ok((current, _, _)) = crate::keys::fetch_stages(client, secret_id).await
                && let Ok(ring) = KeyRing::from_json(&current)
            {
                return Ok(ring.signing.kid);
            }
            rotate_now(client, secret_id, alg).await?;
        }
        Err(e) if e.as_service_error().is_some_and(|e| e.is_resource_not_found_exception()) => {
            // Two keys from the start: the first rotation promotes a key published since now.
            let ring = KeyRing::generate(alg)?;
            client
                .create_secret()
                .name(secret_id)
                .description("Secure Auth signing key ring")
                .secret_string(ring.to_json())
                .send()
                .await
                .map_err(|e| sm_err("CreateSecret", e))?;
        }
        Err(e) => return Err(sm_err("DescribeSecret", e)),
    }
    let (current, _, _) = crate::keys::fetch_stages(client, secret_id).await?;
    Ok(KeyRing::from_json(&current)?.signing.kid)
}

/// The Lambda handler for Secrets Manager's rotation events.
pub async fn handle_event(client: &Client, event: RotationEvent, default_alg: KeyAlg) -> Result<(), KeyError> {
    tracing::info!(step = ?event.step, version = %event.client_request_token, "rotation step");
    run_step(client, &event.secret_id, &event.client_request_token, event.step, default_alg).await
}
