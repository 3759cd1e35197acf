//! Key rotation with Secrets Manager's four-step protocol, used by the `rotate-keys` Lambda
//! (invoked by Secrets Manager on the `RotationSchedule`) and by `secure-auth keys rotate`.
//!
//! - `createSecret`: put a new key as version `token` with stage `AWSPENDING` (idempotent).
//!   Functions that re-read the secret now accept it (the "next" key) before anyone signs with it.
//! - `setSecret`: nothing to configure elsewhere: the secret *is* the key.
//! - `testSecret`: the pending key must parse and sign a token that verifies.
//! - `finishSecret`: move `AWSCURRENT` to `token`; Secrets Manager moves `AWSPREVIOUS` to the old
//!   key, which keeps verifying until the next rotation; the one before drops out.

use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::error::DisplayErrorContext;
use serde::Deserialize;

use crate::keys::{KeyAlg, KeyDoc, KeyError, KeySet};

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

/// The algorithm of the current key, or `default` when there is none yet (first rotation).
async fn current_alg(client: &Client, secret_id: &str, default: KeyAlg) -> KeyAlg {
    match client.get_secret_value().secret_id(secret_id).version_stage("AWSCURRENT").send().await {
        Ok(out) => out.secret_string().and_then(|s| KeyDoc::from_json(s).ok()).map(|d| d.alg).unwrap_or(default),
        Err(_) => default,
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
            let alg = current_alg(client, secret_id, default_alg).await;
            let doc = KeyDoc::generate(alg)?;
            client
                .put_secret_value()
                .secret_id(secret_id)
                .client_request_token(token)
                .secret_string(doc.to_json())
                .version_stages("AWSPENDING")
                .send()
                .await
                .map_err(|e| sm_err("PutSecretValue", e))?;
            tracing::info!(event = "signing_key_created", kid = %doc.kid, alg = ?doc.alg, "pending signing key created");
            Ok(())
        }
        Step::Set => Ok(()),
        Step::Test => {
            let pending = version_string(client, secret_id, token, "AWSPENDING")
                .await?
                .ok_or_else(|| KeyError("no AWSPENDING version to test".into()))?;
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

/// Creates the secret with a first key of `alg`, or gives it one if it has no usable current key.
/// Returns the current kid.
pub async fn init(client: &Client, secret_id: &str, alg: KeyAlg) -> Result<String, KeyError> {
    match client.describe_secret().secret_id(secret_id).send().await {
        Ok(_) => {
            if let Ok((current, _, _)) = crate::keys::fetch_stages(client, secret_id).await
                && let Ok(doc) = KeyDoc::from_json(&current)
            {
                return Ok(doc.kid);
            }
            rotate_now(client, secret_id, alg).await?;
        }
        Err(e) if e.as_service_error().is_some_and(|e| e.is_resource_not_found_exception()) => {
            let doc = KeyDoc::generate(alg)?;
            client
                .create_secret()
                .name(secret_id)
                .description("Secure Auth signing key set")
                .secret_string(doc.to_json())
                .send()
                .await
                .map_err(|e| sm_err("CreateSecret", e))?;
        }
        Err(e) => return Err(sm_err("DescribeSecret", e)),
    }
    let (current, _, _) = crate::keys::fetch_stages(client, secret_id).await?;
    Ok(KeyDoc::from_json(&current)?.kid)
}

/// The Lambda handler for Secrets Manager's rotation events.
pub async fn handle_event(client: &Client, event: RotationEvent, default_alg: KeyAlg) -> Result<(), KeyError> {
    tracing::info!(step = ?event.step, version = %event.client_request_token, "rotation step");
    run_step(client, &event.secret_id, &event.client_request_token, event.step, default_alg).await
}
