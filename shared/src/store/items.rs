//! Whole items read back strictly. Users, sessions, second factors, second-factor challenges,
//! one-time tokens and listing rows decode with `serde_dynamo` into the shapes below: a missing
//! required attribute or a value of the wrong type is an error, logged with the item's key (never
//! its values) and answered 503 `unavailable`, never a silent default (`created_at` 0,
//! `is_active` false, …). An attribute has a default here only when an earlier item format
//! did not write it (docs/storage.md "Migrations"), so that deployed items keep reading.
//!
//! Writes stay hand-written (`dynamo.rs`: whole items and update expressions).

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::{MfaChallenge, MfaFactor, Registration, Session, StoreError, User};

type Item = HashMap<String, AttributeValue>;

/// Decodes `item` as a `T`; what it is (`user`, `session`, …) names it in the log and the error.
pub(crate) fn decode<T: DeserializeOwned>(item: &Item, what: &'static str) -> Result<T, StoreError> {
    serde_dynamo::aws_sdk_dynamodb_1::from_item(item.clone()).map_err(|e| {
        let text = e.to_string();
        // serde's "missing field `x`" names an attribute; its other messages can quote the value.
        let reason = if text.starts_with("missing field") { text.as_str() } else { "an attribute of the wrong type" };
        tracing::error!(
            event = "corrupt_item",
            what,
            pk = key_part(item, "pk"),
            sk = key_part(item, "sk"),
            attributes = shape(item),
            reason,
            "an item does not decode"
        );
        StoreError::Unavailable(format!("corrupt {what} item"))
    })
}

fn key_part<'a>(item: &'a Item, name: &str) -> &'a str {
    item.get(name).and_then(|v| v.as_s().ok()).map_or("?", String::as_str)
}

/// The item's attribute names and DynamoDB types (`created_at:S is_active:BOOL …`), sorted:
/// what a corrupt item looks like, without its values.
fn shape(item: &Item) -> String {
    let mut names: Vec<String> = item
        .iter()
        .map(|(k, v)| {
            let kind = match v {
                AttributeValue::S(_) => "S",
                AttributeValue::N(_) => "N",
                AttributeValue::B(_) => "B",
                AttributeValue::Bool(_) => "BOOL",
                AttributeValue::Null(_) => "NULL",
                AttributeValue::L(_) => "L",
                AttributeValue::M(_) => "M",
                AttributeValue::Ss(_) => "SS",
                AttributeValue::Ns(_) => "NS",
                AttributeValue::Bs(_) => "BS",
                _ => "?",
            };
            format!("{k}:{kind}")
        })
        .collect();
    names.sort();
    names.join(" ")
}

/// A user's profile item (`USER#<id>`, `PROFILE`).
#[derive(Deserialize)]
struct UserItem {
    id: String,
    email: String,
    #[serde(default)]
    name: Option<String>,
    password_hash: String,
    is_active: bool,
    is_verified: bool,
    is_superuser: bool,
    created_at: i64,
    updated_at: i64,
    #[serde(default)]
    last_login_at: Option<i64>,
    sv: u64,
    /// Written only when true.
    #[serde(default)]
    mfa_enabled: bool,
    /// Written only when true (format 4 on).
    #[serde(default)]
    pending_signup: bool,
    /// Written only when there are some (format 4 on).
    #[serde(default)]
    registrations: Vec<RegistrationItem>,
}

#[derive(Deserialize)]
struct RegistrationItem {
    h: String,
    #[serde(default)]
    n: Option<String>,
    at: i64,
}

pub(crate) fn user(item: &Item) -> Result<User, StoreError> {
    let u: UserItem = decode(item, "user")?;
    Ok(User {
        id: u.id,
        email: u.email,
        name: u.name,
        password_hash: u.password_hash,
        is_active: u.is_active,
        is_verified: u.is_verified,
        is_superuser: u.is_superuser,
        created_at: u.created_at,
        updated_at: u.updated_at,
        last_login_at: u.last_login_at,
        session_version: u.sv,
        mfa_enabled: u.mfa_enabled,
        pending_signup: u.pending_signup,
        registrations: u
            .registrations
            .into_iter()
            .map(|r| Registration { password_hash: r.h, name: r.n, created_at: r.at })
            .collect(),
    })
}

/// A row of the admin listing's index: only the projected attributes.
#[derive(Deserialize)]
struct ListingItem {
    id: String,
    email: String,
    #[serde(default)]
    name: Option<String>,
    is_active: bool,
    is_verified: bool,
    is_superuser: bool,
    created_at: i64,
    updated_at: i64,
}

/// A listing row as a user without what the index does not project (password hash, last
/// sign-in, factor, session version, registrations).
pub(crate) fn listing_row(item: &Item) -> Result<User, StoreError> {
    let r: ListingItem = decode(item, "listing row")?;
    Ok(User {
        id: r.id,
        email: r.email,
        name: r.name,
        password_hash: String::new(),
        is_active: r.is_active,
        is_verified: r.is_verified,
        is_superuser: r.is_superuser,
        created_at: r.created_at,
        updated_at: r.updated_at,
        last_login_at: None,
        session_version: 0,
        mfa_enabled: false,
        pending_signup: false,
        registrations: Vec::new(),
    })
}

/// A session item (`USER#<id>`, `SESSION#<id>`).
#[derive(Deserialize)]
struct SessionItem {
    user_id: String,
    id: String,
    current_hash: String,
    #[serde(default)]
    previous_hash: Option<String>,
    /// Not in the first format.
    #[serde(default)]
    spent_hashes: Vec<String>,
    rotated_at: i64,
    created_at: i64,
    last_used_at: i64,
    idle_expires_at: i64,
    absolute_expires_at: i64,
    ip: String,
    user_agent: String,
    /// Not in the first format: such a session is behind every user's version, so dead.
    #[serde(default)]
    sv: u64,
    /// Not before second factors: those sessions read `["pwd"]`.
    #[serde(default)]
    amr: Vec<String>,
}

pub(crate) fn session(item: &Item) -> Result<Session, StoreError> {
    let x: SessionItem = decode(item, "session")?;
    Ok(Session {
        user_id: x.user_id,
        id: x.id,
        current_hash: x.current_hash,
        previous_hash: x.previous_hash,
        spent_hashes: x.spent_hashes,
        rotated_at: x.rotated_at,
        created_at: x.created_at,
        last_used_at: x.last_used_at,
        idle_expires_at: x.idle_expires_at,
        absolute_expires_at: x.absolute_expires_at,
        ip: x.ip,
        user_agent: x.user_agent,
        session_version: x.sv,
        amr: if x.amr.is_empty() { vec!["pwd".to_owned()] } else { x.amr },
    })
}

/// The second factor's item (`USER#<id>`, `MFA`): a pending enrolment, an active factor, or both.
#[derive(Deserialize)]
struct FactorItem {
    #[serde(default)]
    secret: Option<String>,
    #[serde(default)]
    pending: Option<String>,
    /// Written when a factor is enabled; a pending enrolment has none.
    #[serde(default)]
    last_step: u64,
    /// A string set, absent when empty (DynamoDB has no empty sets).
    #[serde(default)]
    recovery: Vec<String>,
}

pub(crate) fn factor(item: &Item) -> Result<MfaFactor, StoreError> {
    let f: FactorItem = decode(item, "second factor")?;
    Ok(MfaFactor { secret: f.secret, pending: f.pending, last_step: f.last_step, recovery: f.recovery })
}

/// A second-factor challenge (`USER#<id>`, `MFA_CHALLENGE#<hash>`).
#[derive(Deserialize)]
struct ChallengeItem {
    sv: u64,
    failures: u32,
    expires_at: i64,
}

pub(crate) fn challenge(item: &Item, user_id: &str) -> Result<MfaChallenge, StoreError> {
    let c: ChallengeItem = decode(item, "second-factor challenge")?;
    Ok(MfaChallenge {
        user_id: user_id.to_owned(),
        session_version: c.sv,
        failures: c.failures,
        expires_at: c.expires_at,
    })
}

/// A one-time token (`USER#<id>`, `OTT#<kind>`): verification, reset, email change, unlock.
#[derive(Deserialize)]
pub(crate) struct TokenItem {
    pub token_hash: String,
    pub expires_at: i64,
    /// Not before format 2 (the migration binds them); such a token binds to no version.
    #[serde(default)]
    pub sv: Option<u64>,
    /// Email-change tokens only.
    #[serde(default)]
    pub new_email: Option<String>,
}

pub(crate) fn token(item: &Item) -> Result<TokenItem, StoreError> {
    decode(item, "one-time token")
}
