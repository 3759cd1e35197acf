//! DynamoDB adapter: one table (`TABLE_NAME`), generic keys `pk`/`sk`, a TTL attribute `ttl`
//! and one GSI (`gsi2`, sharded) for the admin listing. Whole items read back through
//! `store::items` (strict decoding). Item design and access patterns: see `docs/storage.md`.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, Delete, GlobalSecondaryIndex, KeySchemaElement, KeyType,
    KeysAndAttributes, Projection, ProjectionType, Put, ReturnValue, ReturnValuesOnConditionCheckFailure,
    ScalarAttributeType, TimeToLiveSpecification, TransactWriteItem, Update,
};

use super::*;

type Item = HashMap<String, AttributeValue>;

/// The DynamoDB-backed store.
#[derive(Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
    /// `Limit` of each page of a partition query (`None`: DynamoDB's 1 MB pages); tests set a
    /// small one to walk the pagination.
    page_limit: Option<i32>,
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

pub(crate) fn unavailable(e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::Unavailable(DisplayErrorContext(e).to_string())
}

fn get_s(item: &Item, k: &str) -> Option<String> {
    item.get(k).and_then(|v| v.as_s().ok()).cloned()
}

fn get_n(item: &Item, k: &str) -> Option<i64> {
    item.get(k).and_then(|v| v.as_n().ok()).and_then(|v| v.parse().ok())
}

fn get_b(item: &Item, k: &str) -> bool {
    item.get(k).and_then(|v| v.as_bool().ok()).copied().unwrap_or(false)
}

/// Whether a conditional `UpdateItem` applied: `false` when its condition failed.
fn applied<O>(res: Result<O, UpdateItemError>) -> Result<bool, StoreError> {
    match res {
        Ok(_) => Ok(true),
        Err(UpdateItemError::ConditionalCheckFailedException(_)) => Ok(false),
        Err(e) => Err(unavailable(e)),
    }
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Unavailable(format!("corrupt {what} item"))
}

fn user_pk(id: &str) -> String {
    format!("USER#{id}")
}
const PROFILE: &str = "PROFILE";
fn email_pk(email: &str) -> String {
    format!("EMAIL#{email}")
}
/// Account keys live at (`LOCK#<email>`, `LOCK`); (account, IP) keys beside them at
/// (`LOCK#<email>`, `IP#<ip>`), so clearing an account is one query.
fn lock_key(k: &str) -> Item {
    match k.split_once(LOCK_KEY_SEP) {
        Some((account, ip)) => key(format!("LOCK#{account}"), &format!("IP#{ip}")),
        None => key(format!("LOCK#{k}"), "LOCK"),
    }
}
fn session_sk(id: &str) -> String {
    format!("SESSION#{id}")
}
/// What spending a one-time token is conditioned on: its hash, that it has not expired, and
/// that its user is still at the session version it was issued at.
const SPEND_ONE_TIME: &str = "token_hash = :h AND expires_at > :now AND sv = :sv";

fn one_time_sk(kind: OneTimeKind) -> String {
    format!("OTT#{}", kind.as_str())
}

/// The second factor's item sits in the user's partition, so a delete purges it.
const MFA_SK: &str = "MFA";
fn challenge_sk(hash: &str) -> String {
    format!("MFA_CHALLENGE#{hash}")
}

fn key(pk: String, sk: &str) -> Item {
    HashMap::from([("pk".to_owned(), s(pk)), ("sk".to_owned(), s(sk))])
}

fn user_to_item(u: &User) -> Item {
    let mut m = key(user_pk(&u.id), PROFILE);
    m.insert("type".into(), s("user"));
    m.insert("id".into(), s(&u.id));
    m.insert("email".into(), s(&u.email));
    if let Some(name) = &u.name {
        m.insert("name".into(), s(name));
    }
    m.insert("password_hash".into(), s(&u.password_hash));
    m.insert("is_active".into(), AttributeValue::Bool(u.is_active));
    m.insert("is_verified".into(), AttributeValue::Bool(u.is_verified));
    m.insert("is_superuser".into(), AttributeValue::Bool(u.is_superuser));
    m.insert("created_at".into(), n(u.created_at));
    m.insert("updated_at".into(), n(u.updated_at));
    if let Some(t) = u.last_login_at {
        m.insert("last_login_at".into(), n(t));
    }
    m.insert("sv".into(), n(u.session_version));
    if u.mfa_enabled {
        m.insert("mfa_enabled".into(), AttributeValue::Bool(true));
    }
    if u.pending_signup {
        m.insert("pending_signup".into(), AttributeValue::Bool(true));
    }
    if !u.registrations.is_empty() {
        m.insert("registrations".into(), registrations_value(&u.registrations));
    }
    // Admin listing: the user's shard of gsi2, ordered by email (see `LISTING_SHARDS`).
    m.insert("gsi2pk".into(), s(listing_shard(&u.id)));
    m.insert("gsi2sk".into(), s(&u.email));
    m.insert("schema_version".into(), n(super::migrate::SCHEMA_VERSION));
    m
}

/// The admin listing's index (`gsi2`) spreads users over this many partition keys
/// (`USERS#0` … `USERS#15`) so that sign-ups are not capped by one partition's write
/// throughput; the listing queries every shard and merges them in email order. The index
/// projects only what the listing shows (`LISTING_ATTRIBUTES`), so the attributes a login
/// writes (`last_login_at`) never write to it. docs/storage.md "Ceilings".
pub const LISTING_SHARDS: u32 = 16;

/// What `gsi2` projects besides the keys (template.yaml says the same; a test compares).
pub const LISTING_ATTRIBUTES: &[&str] =
    &["id", "email", "name", "is_active", "is_verified", "is_superuser", "created_at", "updated_at"];

/// The listing shard of user `id`: stable, and spread evenly (the first byte of its SHA-256).
pub(crate) fn listing_shard(id: &str) -> String {
    use sha2::Digest as _;
    let h = sha2::Sha256::digest(id.as_bytes());
    format!("USERS#{}", u32::from(h[0]) % LISTING_SHARDS)
}

/// Pending sign-ups as a list of maps `{h, n?, at}` on the user item.
fn registrations_value(rs: &[Registration]) -> AttributeValue {
    AttributeValue::L(
        rs.iter()
            .map(|r| {
                let mut m = HashMap::from([("h".to_owned(), s(&r.password_hash)), ("at".to_owned(), n(r.created_at))]);
                if let Some(name) = &r.name {
                    m.insert("n".to_owned(), s(name));
                }
                AttributeValue::M(m)
            })
            .collect(),
    )
}

/// An item's size as DynamoDB counts it for capacity units ("Item sizes and formats" in the
/// DynamoDB developer guide): each attribute's name (UTF-8 bytes) plus its value: a string's
/// UTF-8 bytes, a binary's bytes, a number's one byte per two significant digits plus one, one
/// byte for a Boolean or null, and for a list or map 3 bytes plus, per element, one byte and the
/// element (a map element's name included). A write costs one unit per started KB of the
/// larger of the item before and after; a strongly consistent read one unit per started 4 KB.
pub fn item_size(item: &Item) -> usize {
    item.iter().map(|(k, v)| k.len() + value_size(v)).sum()
}

fn value_size(v: &AttributeValue) -> usize {
    match v {
        AttributeValue::S(s) => s.len(),
        AttributeValue::N(n) => {
            let digits: String = n.chars().filter(char::is_ascii_digit).collect();
            let significant = digits.trim_start_matches('0').trim_end_matches('0').len().max(1);
            significant.div_ceil(2) + 1
        }
        AttributeValue::B(b) => b.as_ref().len(),
        AttributeValue::Bool(_) | AttributeValue::Null(_) => 1,
        AttributeValue::L(l) => 3 + l.iter().map(|e| 1 + value_size(e)).sum::<usize>(),
        AttributeValue::M(m) => 3 + m.iter().map(|(k, e)| 1 + k.len() + value_size(e)).sum::<usize>(),
        AttributeValue::Ss(s) => s.iter().map(String::len).sum(),
        AttributeValue::Ns(ns) => ns.iter().map(|n| value_size(&AttributeValue::N(n.clone()))).sum(),
        AttributeValue::Bs(bs) => bs.iter().map(|b| b.as_ref().len()).sum(),
        _ => 0,
    }
}

/// Write units of writing `item` whole (one per started KB).
pub fn write_units(item: &Item) -> usize {
    item_size(item).div_ceil(1024).max(1)
}

fn session_to_item(x: &Session) -> Item {
    let mut m = key(user_pk(&x.user_id), &session_sk(&x.id));
    m.insert("type".into(), s("session"));
    m.insert("user_id".into(), s(&x.user_id));
    m.insert("id".into(), s(&x.id));
    m.insert("current_hash".into(), s(&x.current_hash));
    if let Some(p) = &x.previous_hash {
        m.insert("previous_hash".into(), s(p));
    }
    m.insert("spent_hashes".into(), AttributeValue::L(x.spent_hashes.iter().map(s).collect()));
    m.insert("rotated_at".into(), n(x.rotated_at));
    m.insert("created_at".into(), n(x.created_at));
    m.insert("last_used_at".into(), n(x.last_used_at));
    m.insert("idle_expires_at".into(), n(x.idle_expires_at));
    m.insert("absolute_expires_at".into(), n(x.absolute_expires_at));
    m.insert("ip".into(), s(&x.ip));
    m.insert("user_agent".into(), s(&x.user_agent));
    m.insert("sv".into(), n(x.session_version));
    m.insert("amr".into(), AttributeValue::L(x.amr.iter().map(s).collect()));
    m.insert("ttl".into(), n(x.expires_at()));
    m.insert("schema_version".into(), n(super::migrate::SCHEMA_VERSION));
    m
}

impl DynamoStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into(), page_limit: None }
    }

    /// The same store, reading partitions `limit` items per page (tests of the pagination).
    pub fn with_page_limit(mut self, limit: i32) -> Self {
        self.page_limit = Some(limit);
        self
    }

    /// Every item of partition `pk` (only `projection`'s attributes if given): strongly
    /// consistent, page after page until `LastEvaluatedKey` runs out, so that a clean-up sees
    /// every item written before it, however many there are.
    async fn partition(&self, pk: String, projection: Option<&str>) -> Result<Vec<Item>, StoreError> {
        self.partition_prefix(pk, None, projection).await
    }

    /// `partition`, only the items whose sort key starts with `sk_prefix` if given.
    async fn partition_prefix(
        &self,
        pk: String,
        sk_prefix: Option<&str>,
        projection: Option<&str>,
    ) -> Result<Vec<Item>, StoreError> {
        let mut out = Vec::new();
        let mut start = None;
        loop {
            let q = self.client.query().table_name(&self.table).expression_attribute_values(":pk", s(&pk));
            let q = match sk_prefix {
                Some(p) => q
                    .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
                    .expression_attribute_values(":prefix", s(p)),
                None => q.key_condition_expression("pk = :pk"),
            };
            let page = q
                .set_projection_expression(projection.map(str::to_owned))
                .consistent_read(true)
                .set_limit(self.page_limit)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(unavailable)?;
            out.extend(page.items.unwrap_or_default());
            start = page.last_evaluated_key;
            if start.is_none() {
                return Ok(out);
            }
        }
    }

    /// Opens the connection (TCP, TLS, credentials) that the first request would otherwise open
    /// on its clock: one eventually consistent `GetItem` of a key no item ever has (`WARMUP`),
    /// which needs no permission beyond the `GetItem` every table-using function has. Whether
    /// it fails is only logged: the request path reports real failures.
    pub async fn warm(&self) {
        let key = Item::from([
            ("pk".to_owned(), AttributeValue::S("WARMUP".into())),
            ("sk".to_owned(), AttributeValue::S("WARMUP".into())),
        ]);
        if let Err(e) = self.client.get_item().table_name(&self.table).set_key(Some(key)).send().await {
            tracing::warn!(error = %aws_sdk_dynamodb::error::DisplayErrorContext(&e), "DynamoDB warm-up failed");
        }
    }

    async fn get(&self, key: Item) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(out.item)
    }

    /// Up to `limit + 1` listing rows of one shard after the cursor, and whether the shard holds
    /// more than it returned.
    async fn listing_shard_page(
        &self,
        shard: String,
        prefix: &str,
        after: Option<(&str, &str)>,
        limit: usize,
    ) -> Result<(Vec<Item>, bool), StoreError> {
        let mut rows: Vec<Item> = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let mut q = self
                .client
                .query()
                .table_name(&self.table)
                .index_name("gsi2")
                .limit((limit + 1 - rows.len()) as i32)
                .set_exclusive_start_key(start.take())
                .expression_attribute_values(":p", s(&shard));
            // Addresses are unique, so "after the cursor's address" is exact in every shard;
            // with a cursor and a prefix, the rows past the prefix end the shard (they sort after).
            q = match (after, prefix.is_empty()) {
                (Some((email, _)), _) => q
                    .key_condition_expression("gsi2pk = :p AND gsi2sk > :after")
                    .expression_attribute_values(":after", s(email)),
                (None, true) => q.key_condition_expression("gsi2pk = :p"),
                (None, false) => q
                    .key_condition_expression("gsi2pk = :p AND begins_with(gsi2sk, :prefix)")
                    .expression_attribute_values(":prefix", s(prefix)),
            };
            let out = q.send().await.map_err(unavailable)?;
            for item in out.items.unwrap_or_default() {
                if !get_s(&item, "gsi2sk").is_some_and(|e| e.starts_with(prefix)) {
                    return Ok((rows, false));
                }
                rows.push(item);
            }
            // A page can also end at 1 MB: read on until the shard gave `limit + 1` or ended.
            match out.last_evaluated_key {
                Some(k) if rows.len() <= limit => start = Some(k),
                Some(_) => return Ok((rows, true)),
                None => return Ok((rows, false)),
            }
        }
    }

    /// `last_login_at` (if any) and `mfa_enabled` of each of `ids`: what the listing index
    /// does not project.
    async fn unprojected(&self, ids: &[String]) -> Result<HashMap<String, (Option<i64>, bool)>, StoreError> {
        let keys = ids.iter().map(|id| key(user_pk(id), PROFILE)).collect();
        let items = self.batch_get(keys, Some("id, last_login_at, mfa_enabled")).await?;
        Ok(items
            .iter()
            .filter_map(|i| Some((get_s(i, "id")?, (get_n(i, "last_login_at"), get_b(i, "mfa_enabled")))))
            .collect())
    }

    /// The items of `keys` that exist, strongly consistent, in `BatchGetItem`s of 100 keys; keys
    /// DynamoDB leaves unprocessed (under throttling) are asked again, a bounded number of times.
    async fn batch_get(&self, keys: Vec<Item>, projection: Option<&str>) -> Result<Vec<Item>, StoreError> {
        let mut out = Vec::new();
        for chunk in keys.chunks(100) {
            let request = KeysAndAttributes::builder()
                .set_keys(Some(chunk.to_vec()))
                .set_projection_expression(projection.map(str::to_owned))
                .consistent_read(true)
                .build()
                .map_err(unavailable)?;
            let mut request = HashMap::from([(self.table.clone(), request)]);
            for attempt in 0..5u64 {
                let page =
                    self.client.batch_get_item().set_request_items(Some(request)).send().await.map_err(unavailable)?;
                out.extend(page.responses.and_then(|mut r| r.remove(&self.table)).unwrap_or_default());
                request = page.unprocessed_keys.unwrap_or_default();
                if request.is_empty() {
                    break;
                }
                if attempt == 4 {
                    return Err(StoreError::Unavailable("batch read left keys unprocessed".into()));
                }
                tokio::time::sleep(std::time::Duration::from_millis(20 * (attempt + 1))).await;
            }
        }
        Ok(out)
    }

    /// Creates the table with the same schema as `template.yaml` (DynamoDB Local, tests).
    pub async fn create_table(client: &Client, table: &str) -> Result<(), StoreError> {
        let attr = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .map_err(unavailable)
        };
        let ks = |name: &str, kt: KeyType| {
            KeySchemaElement::builder().attribute_name(name).key_type(kt).build().map_err(unavailable)
        };
        // gsi1 is the listing index of schema 2 (one partition, every attribute): it stays in
        // this release so that a deployed stack changes one index per update (CloudFormation's
        // rule); `secure-auth migrate` empties it, and the next release drops it.
        let gsi = GlobalSecondaryIndex::builder()
            .index_name("gsi1")
            .key_schema(ks("gsi1pk", KeyType::Hash)?)
            .key_schema(ks("gsi1sk", KeyType::Range)?)
            .projection(Projection::builder().projection_type(ProjectionType::All).build())
            .build()
            .map_err(unavailable)?;
        let listing = GlobalSecondaryIndex::builder()
            .index_name("gsi2")
            .key_schema(ks("gsi2pk", KeyType::Hash)?)
            .key_schema(ks("gsi2sk", KeyType::Range)?)
            .projection(
                Projection::builder()
                    .projection_type(ProjectionType::Include)
                    .set_non_key_attributes(Some(LISTING_ATTRIBUTES.iter().map(|a| a.to_string()).collect()))
                    .build(),
            )
            .build()
            .map_err(unavailable)?;
        self::Client::create_table(client)
            .table_name(table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(attr("pk")?)
            .attribute_definitions(attr("sk")?)
            .attribute_definitions(attr("gsi1pk")?)
            .attribute_definitions(attr("gsi1sk")?)
            .attribute_definitions(attr("gsi2pk")?)
            .attribute_definitions(attr("gsi2sk")?)
            .key_schema(ks("pk", KeyType::Hash)?)
            .key_schema(ks("sk", KeyType::Range)?)
            .global_secondary_indexes(gsi)
            .global_secondary_indexes(listing)
            .send()
            .await
            .map_err(unavailable)?;
        client
            .update_time_to_live()
            .table_name(table)
            .time_to_live_specification(
                TimeToLiveSpecification::builder().attribute_name("ttl").enabled(true).build().map_err(unavailable)?,
            )
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    /// Creates the table unless it exists already (local development against DynamoDB Local).
    pub async fn ensure_table(client: &Client, table: &str) -> Result<bool, StoreError> {
        match client.describe_table().table_name(table).send().await {
            Ok(_) => Ok(false),
            Err(e) if e.as_service_error().is_some_and(|e| e.is_resource_not_found_exception()) => {
                Self::create_table(client, table).await.map(|()| true)
            }
            Err(e) => Err(unavailable(e)),
        }
    }

    /// Every item in the table (tests use it to look for orphans; never used by handlers).
    pub async fn scan_all(&self) -> Result<Vec<Item>, StoreError> {
        let mut out = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .client
                .scan()
                .table_name(&self.table)
                .set_exclusive_start_key(start)
                .consistent_read(true)
                .send()
                .await
                .map_err(unavailable)?;
            out.extend(page.items.unwrap_or_default());
            start = page.last_evaluated_key;
            if start.is_none() {
                return Ok(out);
            }
        }
    }
}

/// A `ClientRequestToken` (at most 36 characters) naming the write that stores `unique`.
fn tokens_digest(unique: &str) -> String {
    use sha2::Digest as _;
    let d = sha2::Sha256::digest(unique.as_bytes());
    d.iter().take(18).map(|b| format!("{b:02x}")).collect()
}

/// Cancellation reasons say another transaction held an item: safe to retry.
fn transaction_conflict(e: &aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError) -> bool {
    use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError as E;
    match e {
        E::TransactionCanceledException(c) => {
            c.cancellation_reasons().iter().any(|r| r.code() == Some("TransactionConflict"))
                && !c.cancellation_reasons().iter().any(|r| r.code() == Some("ConditionalCheckFailed"))
        }
        _ => false,
    }
}

/// Sends a transaction, retrying (bounded) while it only lost to a concurrent transaction.
async fn transact(
    builder: aws_sdk_dynamodb::operation::transact_write_items::builders::TransactWriteItemsFluentBuilder,
) -> Result<(), aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError> {
    let mut attempt = 0u64;
    loop {
        match builder.clone().send().await {
            Ok(_) => return Ok(()),
            Err(e) => {
                let e = e.into_service_error();
                if attempt < 4 && transaction_conflict(&e) {
                    attempt += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(15 * attempt)).await;
                    continue;
                }
                return Err(e);
            }
        }
    }
}

fn transaction_condition_failed(
    e: &aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError,
) -> bool {
    use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError as E;
    match e {
        E::TransactionCanceledException(c) => {
            c.cancellation_reasons().iter().any(|r| r.code() == Some("ConditionalCheckFailed"))
        }
        _ => false,
    }
}

#[async_trait]
impl UserRegistry for DynamoStore {
    async fn create_user(&self, user: &User) -> Result<(), StoreError> {
        let mut claim = key(email_pk(&user.email), "EMAIL");
        claim.insert("user_id".into(), s(&user.id));
        claim.insert("type".into(), s("email_claim"));
        let put = |item: Item| {
            Put::builder()
                .table_name(&self.table)
                .set_item(Some(item))
                .condition_expression("attribute_not_exists(pk)")
                .build()
                .map_err(unavailable)
        };
        let req = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(put(user_to_item(user))?).build())
            .transact_items(TransactWriteItem::builder().put(put(claim)?).build());
        match transact(req).await {
            Ok(()) => Ok(()),
            Err(e) if transaction_condition_failed(&e) => Err(StoreError::EmailTaken),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn register(&self, user: &User, token_hash: &str, expires_at: i64) -> Result<(), StoreError> {
        let mut claim = key(email_pk(&user.email), "EMAIL");
        claim.insert("user_id".into(), s(&user.id));
        claim.insert("type".into(), s("email_claim"));
        let token =
            Self::token_item(OneTimeKind::VerifyEmail, &user.id, token_hash, None, expires_at, user.session_version);
        let put = |item: Item, new: bool| {
            let b = Put::builder().table_name(&self.table).set_item(Some(item));
            let b = if new { b.condition_expression("attribute_not_exists(pk)") } else { b };
            b.build().map_err(unavailable)
        };
        // The user's id is new, so the token (the user's partition) needs no condition; the
        // idempotency token lets the SDK retry a transaction whose answer was lost.
        let req = self
            .client
            .transact_write_items()
            .client_request_token(user.id.replace('-', ""))
            .transact_items(TransactWriteItem::builder().put(put(user_to_item(user), true)?).build())
            .transact_items(TransactWriteItem::builder().put(put(claim, true)?).build())
            .transact_items(TransactWriteItem::builder().put(put(token, false)?).build());
        match transact(req).await {
            Ok(()) => Ok(()),
            Err(e) if transaction_condition_failed(&e) => Err(StoreError::EmailTaken),
            Err(e) => Err(unavailable(e)),
        }
    }
}

#[async_trait]
impl UserLookup for DynamoStore {
    async fn get_user(&self, id: &str) -> Result<Option<User>, StoreError> {
        self.get(key(user_pk(id), PROFILE)).await?.as_ref().map(items::user).transpose()
    }

    async fn find_user_by_email(&self, email: &str) -> Result<Option<User>, StoreError> {
        let Some(claim) = self.get(key(email_pk(email), "EMAIL")).await? else {
            return Ok(None);
        };
        let id = get_s(&claim, "user_id").ok_or_else(|| corrupt("email claim"))?;
        self.get_user(&id).await
    }
}

#[async_trait]
impl UserUpdates for DynamoStore {
    async fn upgrade_password_hash(&self, id: &str, expected: &str, new_hash: &str) -> Result<bool, StoreError> {
        let res = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(user_pk(id), PROFILE)))
            .update_expression("SET password_hash = :new")
            .condition_expression("password_hash = :old")
            .expression_attribute_values(":new", s(new_hash))
            .expression_attribute_values(":old", s(expected))
            .send()
            .await;
        applied(res.map_err(|e| e.into_service_error()))
    }

    async fn update_name(&self, id: &str, name: Option<&str>, now: i64) -> Result<Option<User>, StoreError> {
        let mut req = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(user_pk(id), PROFILE)))
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_names("#name", "name")
            .expression_attribute_values(":now", n(now))
            .return_values(ReturnValue::AllNew);
        req = match name {
            Some(v) => {
                req.update_expression("SET #name = :name, updated_at = :now").expression_attribute_values(":name", s(v))
            }
            None => req.update_expression("REMOVE #name SET updated_at = :now"),
        };
        match req.send().await.map_err(|e| e.into_service_error()) {
            Ok(out) => out.attributes.as_ref().map(items::user).transpose(),
            Err(UpdateItemError::ConditionalCheckFailedException(_)) => Ok(None),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn change_password(
        &self,
        id: &str,
        expected: &str,
        new_hash: &str,
        sv: u64,
        keep: &str,
        now: i64,
    ) -> Result<Option<u64>, StoreError> {
        let next = sv + 1;
        let user = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key(user_pk(id), PROFILE)))
            .update_expression("SET password_hash = :new, updated_at = :now, sv = :next")
            .condition_expression("password_hash = :old AND sv = :sv")
            .expression_attribute_values(":new", s(new_hash))
            .expression_attribute_values(":old", s(expected))
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":sv", n(sv))
            .expression_attribute_values(":next", n(next))
            .build()
            .map_err(unavailable)?;
        let session = self.session_version_move(id, keep, next)?;
        // The new hash's salt is unique: the digest of what the write does names the
        // transaction, so the SDK's retry of one whose answer was lost is the same write
        // (DynamoDB idempotency tokens).
        let token = tokens_digest(&format!("{new_hash}\0{expected}\0{sv}\0{keep}"));
        let both = self
            .client
            .transact_write_items()
            .client_request_token(&token)
            .transact_items(TransactWriteItem::builder().update(user.clone()).build())
            .transact_items(TransactWriteItem::builder().update(session).build());
        match transact(both).await {
            Ok(()) => return Ok(Some(next)),
            Err(e) if !transaction_condition_failed(&e) => return Err(unavailable(e)),
            Err(_) => {}
        }
        // A condition failed: the caller's session is gone (it logged out meanwhile: change the
        // password alone), or the user changed, or this write landed before (recognised by
        // its hash).
        let alone =
            self.client.transact_write_items().transact_items(TransactWriteItem::builder().update(user).build());
        match transact(alone).await {
            Ok(()) => Ok(Some(next)),
            Err(e) if !transaction_condition_failed(&e) => Err(unavailable(e)),
            Err(_) => {
                let current = self.get(key(user_pk(id), PROFILE)).await?;
                Ok(current
                    .filter(|item| get_s(item, "password_hash").as_deref() == Some(new_hash))
                    .and_then(|item| get_n(&item, "sv"))
                    .map(|v| v.max(0) as u64))
            }
        }
    }

    async fn bump_session_version(&self, id: &str, now: i64) -> Result<Option<u64>, StoreError> {
        self.bump_user(id, "updated_at = :now", "attribute_exists(pk)", vec![(":now", n(now))], None).await
    }

    async fn record_login(&self, id: &str, now: i64) -> Result<(), StoreError> {
        let res = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(user_pk(id), PROFILE)))
            .update_expression("SET last_login_at = :now")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":now", n(now))
            .send()
            .await;
        applied(res.map_err(|e| e.into_service_error())).map(|_| ())
    }
}

impl DynamoStore {
    /// Moves the live session `keep` of `user_id` to session version `next` (the caller's
    /// session, in the transaction of a change that bumps the version).
    fn session_version_move(&self, user_id: &str, keep: &str, next: u64) -> Result<Update, StoreError> {
        Update::builder()
            .table_name(&self.table)
            .set_key(Some(key(user_pk(user_id), &session_sk(keep))))
            .update_expression("SET sv = :next")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":next", n(next))
            .build()
            .map_err(unavailable)
    }

    /// What a successful sign-in writes, as transaction items: the new session, the user's
    /// `last_login_at` (failing if the user is gone) and the deletion of `clear_locks`.
    fn sign_in_items(
        &self,
        x: &Session,
        clear_locks: &[String],
        now: i64,
    ) -> Result<Vec<TransactWriteItem>, StoreError> {
        let session = Put::builder()
            .table_name(&self.table)
            .set_item(Some(session_to_item(x)))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(unavailable)?;
        let last_login = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key(user_pk(&x.user_id), PROFILE)))
            .update_expression("SET last_login_at = :now")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":now", n(now))
            .build()
            .map_err(unavailable)?;
        let mut items = vec![
            TransactWriteItem::builder().put(session).build(),
            TransactWriteItem::builder().update(last_login).build(),
        ];
        for k in clear_locks {
            let d =
                Delete::builder().table_name(&self.table).set_key(Some(lock_key(k))).build().map_err(unavailable)?;
            items.push(TransactWriteItem::builder().delete(d).build());
        }
        Ok(items)
    }
}

impl DynamoStore {
    /// `ADD sv 1` (plus `set`) on the user, if `condition` holds; the new version. With
    /// `landed = (attribute, value)`, a failed condition on an item whose `attribute` already
    /// is `value` (unique to this write) is this write retried after it landed: success.
    async fn bump_user(
        &self,
        id: &str,
        set: &str,
        condition: &str,
        values: Vec<(&str, AttributeValue)>,
        landed: Option<(&str, &str)>,
    ) -> Result<Option<u64>, StoreError> {
        let mut req = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(user_pk(id), PROFILE)))
            .update_expression(format!("SET {set} ADD sv :one"))
            .condition_expression(condition)
            .expression_attribute_values(":one", n(1))
            .return_values(ReturnValue::UpdatedNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        for (k, v) in values {
            req = req.expression_attribute_values(k, v);
        }
        match req.send().await.map_err(|e| e.into_service_error()) {
            Ok(out) => Ok(out.attributes.as_ref().and_then(|a| get_n(a, "sv")).map(|v| v.max(0) as u64)),
            Err(UpdateItemError::ConditionalCheckFailedException(c)) => {
                let item = c.item.unwrap_or_default();
                match landed {
                    Some((attr, value)) if get_s(&item, attr).as_deref() == Some(value) => {
                        Ok(get_n(&item, "sv").map(|v| v.max(0) as u64))
                    }
                    _ => Ok(None),
                }
            }
            Err(e) => Err(unavailable(e)),
        }
    }

    /// A one-time token item of `kind` issued at session version `sv`.
    fn token_item(
        kind: OneTimeKind,
        user_id: &str,
        hash: &str,
        new_email: Option<&str>,
        expires_at: i64,
        sv: u64,
    ) -> Item {
        let mut item = key(user_pk(user_id), &one_time_sk(kind));
        item.insert("type".into(), s("one_time_token"));
        item.insert("token_hash".into(), s(hash));
        if let Some(e) = new_email {
            item.insert("new_email".into(), s(e));
        }
        item.insert("sv".into(), n(sv));
        item.insert("schema_version".into(), n(super::migrate::SCHEMA_VERSION));
        item.insert("expires_at".into(), n(expires_at));
        item.insert("ttl".into(), n(expires_at));
        item
    }

    /// Stores a one-time token of `kind` for the user, replacing any older one.
    async fn put_token(
        &self,
        kind: OneTimeKind,
        user_id: &str,
        hash: &str,
        new_email: Option<&str>,
        expires_at: i64,
        sv: u64,
    ) -> Result<(), StoreError> {
        let item = Self::token_item(kind, user_id, hash, new_email, expires_at, sv);
        self.client.put_item().table_name(&self.table).set_item(Some(item)).send().await.map_err(unavailable)?;
        Ok(())
    }

    /// In one transaction: deletes the live one-time token of `kind` if its hash matches and it
    /// was issued at `sv`, and applies `update` to the user if it is still at `sv` (and active,
    /// with `require_active`). `false` for an unknown, used, expired or stale token.
    #[allow(clippy::too_many_arguments)]
    async fn consume_and_update(
        &self,
        kind: OneTimeKind,
        user_id: &str,
        hash: &str,
        now: i64,
        sv: u64,
        require_active: bool,
        update: &str,
        values: Vec<(&str, AttributeValue)>,
    ) -> Result<bool, StoreError> {
        let consume = Delete::builder()
            .table_name(&self.table)
            .set_key(Some(key(user_pk(user_id), &one_time_sk(kind))))
            .condition_expression(SPEND_ONE_TIME)
            .expression_attribute_values(":h", s(hash))
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":sv", n(sv))
            .build()
            .map_err(unavailable)?;
        let condition = if require_active { "sv = :sv AND is_active = :active" } else { "sv = :sv" };
        let mut apply = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key(user_pk(user_id), PROFILE)))
            .update_expression(update)
            .condition_expression(condition)
            .expression_attribute_values(":sv", n(sv));
        if require_active {
            apply = apply.expression_attribute_values(":active", AttributeValue::Bool(true));
        }
        for (k, v) in values {
            apply = apply.expression_attribute_values(k, v);
        }
        if update.contains("#name") {
            apply = apply.expression_attribute_names("#name", "name");
        }
        let req = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().delete(consume).build())
            .transact_items(TransactWriteItem::builder().update(apply.build().map_err(unavailable)?).build());
        match transact(req).await {
            Ok(()) => Ok(true),
            Err(e) if transaction_condition_failed(&e) => Ok(false),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn query_sessions(&self, user_id: &str) -> Result<Vec<Session>, StoreError> {
        self.partition_prefix(user_pk(user_id), Some("SESSION#"), None).await?.iter().map(items::session).collect()
    }
}

#[async_trait]
impl OneTimeTokenStore for DynamoStore {
    async fn put_one_time(
        &self,
        kind: OneTimeKind,
        user_id: &str,
        hash: &str,
        expires_at: i64,
        sv: u64,
    ) -> Result<(), StoreError> {
        self.put_token(kind, user_id, hash, None, expires_at, sv).await
    }

    async fn put_email_change(
        &self,
        user_id: &str,
        hash: &str,
        new_email: &str,
        expires_at: i64,
        sv: u64,
    ) -> Result<(), StoreError> {
        self.put_token(OneTimeKind::ChangeEmail, user_id, hash, Some(new_email), expires_at, sv).await
    }

    async fn peek_one_time(
        &self,
        kind: OneTimeKind,
        user_id: &str,
        hash: &str,
        now: i64,
    ) -> Result<Option<PendingToken>, StoreError> {
        let Some(item) = self.get(key(user_pk(user_id), &one_time_sk(kind))).await? else { return Ok(None) };
        let t = items::token(&item)?;
        if t.token_hash != hash || t.expires_at <= now {
            return Ok(None);
        }
        // A token stored before tokens were bound to a session version binds to none.
        let Some(sv) = t.sv else { return Ok(None) };
        Ok(Some(PendingToken { session_version: sv, expires_at: t.expires_at, new_email: t.new_email }))
    }

    async fn reset_password(
        &self,
        user_id: &str,
        hash: &str,
        new_hash: &str,
        now: i64,
        sv: u64,
    ) -> Result<Option<u64>, StoreError> {
        let set = "SET password_hash = :new, updated_at = :now ADD sv :one";
        let values = vec![(":new", s(new_hash)), (":now", n(now)), (":one", n(1))];
        let done =
            self.consume_and_update(OneTimeKind::ResetPassword, user_id, hash, now, sv, true, set, values).await?;
        if done {
            return Ok(Some(sv + 1));
        }
        // Refused: an unknown, used or stale token, or the SDK's retry of this very write after
        // its answer was lost (the token is spent by then). The new hash's salt is unique, so a
        // user holding it at `sv + 1` is this reset, landed: success, not `invalid-token`. (A
        // transaction client request token would say the same without the read, but DynamoDB
        // Local answers success to the retry of a transaction that lost a conflict, which the
        // contract suite's concurrent resets caught.)
        let current = self.get(key(user_pk(user_id), PROFILE)).await?;
        Ok(current
            .filter(|item| get_s(item, "password_hash").as_deref() == Some(new_hash))
            .and_then(|item| get_n(&item, "sv"))
            .map(|v| v.max(0) as u64)
            .filter(|v| *v == sv + 1))
    }

    async fn confirm_email_change(&self, user_id: &str, hash: &str, now: i64) -> Result<EmailChange, StoreError> {
        let token_key = key(user_pk(user_id), &one_time_sk(OneTimeKind::ChangeEmail));
        let Some(token) = self.get(token_key.clone()).await? else { return Ok(EmailChange::InvalidToken) };
        let token = items::token(&token)?;
        let live = token.token_hash == hash && token.expires_at > now;
        let (Some(new_email), true) = (token.new_email, live) else { return Ok(EmailChange::InvalidToken) };
        let Some(user) = self.get_user(user_id).await? else { return Ok(EmailChange::InvalidToken) };
        // A link is spent only by an active user still at the session version it was issued at.
        let sv = user.session_version;
        if !user.is_active || token.sv != Some(sv) {
            return Ok(EmailChange::InvalidToken);
        }
        let consume = Delete::builder()
            .table_name(&self.table)
            .set_key(Some(token_key.clone()))
            .condition_expression("token_hash = :h AND expires_at > :now AND new_email = :new AND sv = :sv")
            .expression_attribute_values(":h", s(hash))
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":new", s(&new_email))
            .expression_attribute_values(":sv", n(sv))
            .build()
            .map_err(unavailable)?;
        let release = Delete::builder()
            .table_name(&self.table)
            .set_key(Some(key(email_pk(&user.email), "EMAIL")))
            .condition_expression("user_id = :uid")
            .expression_attribute_values(":uid", s(user_id))
            .build()
            .map_err(unavailable)?;
        let mut claim = key(email_pk(&new_email), "EMAIL");
        claim.insert("user_id".into(), s(user_id));
        claim.insert("type".into(), s("email_claim"));
        let take = Put::builder()
            .table_name(&self.table)
            .set_item(Some(claim))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(unavailable)?;
        let update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key(user_pk(user_id), PROFILE)))
            .update_expression(
                "SET email = :new, gsi2pk = :shard, gsi2sk = :new, updated_at = :now ADD sv :one REMOVE gsi1pk, gsi1sk",
            )
            .expression_attribute_values(":shard", s(listing_shard(user_id)))
            .condition_expression("email = :old AND sv = :sv AND is_active = :active")
            .expression_attribute_values(":new", s(&new_email))
            .expression_attribute_values(":old", s(&user.email))
            .expression_attribute_values(":sv", n(sv))
            .expression_attribute_values(":active", AttributeValue::Bool(true))
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":one", n(1))
            .build()
            .map_err(unavailable)?;
        let req = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().delete(consume).build())
            .transact_items(TransactWriteItem::builder().delete(release).build())
            .transact_items(TransactWriteItem::builder().put(take).build())
            .transact_items(TransactWriteItem::builder().update(update).build());
        match transact(req).await {
            Ok(()) => {
                let old_email = user.email;
                let user = self.get_user(user_id).await?.ok_or_else(|| corrupt("user"))?;
                Ok(EmailChange::Changed { user, old_email })
            }
            Err(e) => {
                use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError as E;
                let taken = match &e {
                    E::TransactionCanceledException(c) => {
                        let r = c.cancellation_reasons();
                        r.get(2).and_then(|x| x.code()) == Some("ConditionalCheckFailed")
                            && r.iter().enumerate().all(|(i, x)| i == 2 || x.code().is_none_or(|c| c == "None"))
                    }
                    _ => false,
                };
                if taken {
                    // The token is spent either way; a new request can be made.
                    self.client
                        .delete_item()
                        .table_name(&self.table)
                        .set_key(Some(token_key))
                        .send()
                        .await
                        .map_err(unavailable)?;
                    Ok(EmailChange::Taken)
                } else if transaction_condition_failed(&e) {
                    Ok(EmailChange::InvalidToken)
                } else {
                    Err(unavailable(e))
                }
            }
        }
    }

    async fn verify_email(
        &self,
        user_id: &str,
        hash: &str,
        now: i64,
        sv: u64,
        chosen: Option<&Registration>,
    ) -> Result<bool, StoreError> {
        let mut values = vec![(":t", AttributeValue::Bool(true)), (":now", n(now))];
        // `name` is a reserved word: the chosen registration's name is written through the
        // `#name` placeholder that `consume_and_update` declares when it is asked to.
        let set = match chosen {
            None => "SET is_verified = :t, updated_at = :now REMOVE pending_signup, registrations",
            Some(r) => {
                values.push((":h", s(&r.password_hash)));
                values.push((":one", n(1)));
                match &r.name {
                    Some(name) => {
                        values.push((":name", s(name)));
                        "SET is_verified = :t, updated_at = :now, password_hash = :h, #name = :name \
                         REMOVE pending_signup, registrations ADD sv :one"
                    }
                    None => {
                        "SET is_verified = :t, updated_at = :now, password_hash = :h \
                         REMOVE pending_signup, registrations, #name ADD sv :one"
                    }
                }
            }
        };
        self.consume_and_update(OneTimeKind::VerifyEmail, user_id, hash, now, sv, false, set, values).await
    }

    async fn spend_one_time(
        &self,
        kind: OneTimeKind,
        user_id: &str,
        hash: &str,
        now: i64,
        sv: u64,
    ) -> Result<bool, StoreError> {
        let res = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key(user_pk(user_id), &one_time_sk(kind))))
            .condition_expression(SPEND_ONE_TIME)
            .expression_attribute_values(":h", s(hash))
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":sv", n(sv))
            .send()
            .await;
        match res {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => Ok(false),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn add_registration(&self, r: &NewRegistration<'_>) -> Result<bool, StoreError> {
        let sv = r.read.session_version;
        let mut update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key(user_pk(r.user_id), PROFILE)))
            .update_expression("SET registrations = :regs, updated_at = :now")
            .expression_attribute_values(":f", AttributeValue::Bool(false))
            .expression_attribute_values(":t", AttributeValue::Bool(true))
            .expression_attribute_values(":sv", n(sv))
            .expression_attribute_values(":regs", registrations_value(r.registrations))
            .expression_attribute_values(":now", n(r.now));
        // The registrations must still be the ones read: two concurrent sign-ups both add theirs
        // (the loser reads again), and neither replaces the other's.
        update = if r.read.registrations.is_empty() {
            update.condition_expression(
                "is_verified = :f AND pending_signup = :t AND sv = :sv AND attribute_not_exists(registrations)",
            )
        } else {
            update
                .condition_expression("is_verified = :f AND pending_signup = :t AND sv = :sv AND registrations = :old")
                .expression_attribute_values(":old", registrations_value(&r.read.registrations))
        };
        let mut req = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().update(update.build().map_err(unavailable)?).build());
        if let Some(hash) = r.token_hash {
            let token = Self::token_item(OneTimeKind::VerifyEmail, r.user_id, hash, None, r.expires_at, sv);
            let put = Put::builder().table_name(&self.table).set_item(Some(token)).build().map_err(unavailable)?;
            req = req.transact_items(TransactWriteItem::builder().put(put).build());
        }
        match transact(req).await {
            Ok(()) => Ok(true),
            Err(e) if transaction_condition_failed(&e) => Ok(false),
            Err(e) => Err(unavailable(e)),
        }
    }
}

#[async_trait]
impl LockoutStore for DynamoStore {
    async fn lock_gate(&self, k: &str, now: i64, window: i64) -> Result<LockGate, StoreError> {
        // Bounded: each retry means another writer just replaced a stale item.
        for _ in 0..5 {
            let res = self
                .client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(lock_key(k)))
                .update_expression(
                    "SET failures = if_not_exists(failures, :zero) + :one, expires_at = :exp, #ttl = :exp",
                )
                .condition_expression(
                    "attribute_not_exists(pk) OR (expires_at > :now AND \
                     (attribute_not_exists(locked_until) OR locked_until <= :now))",
                )
                .expression_attribute_names("#ttl", "ttl")
                .expression_attribute_values(":zero", n(0))
                .expression_attribute_values(":one", n(1))
                .expression_attribute_values(":now", n(now))
                .expression_attribute_values(":exp", n(now + window))
                .return_values(ReturnValue::AllNew)
                .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
                .send()
                .await;
            let old = match res.map_err(|e| e.into_service_error()) {
                Ok(out) => {
                    let a = out.attributes.unwrap_or_default();
                    return Ok(LockGate::Open {
                        attempt: get_n(&a, "failures").unwrap_or(1).max(0) as u32,
                        previous_locks: get_n(&a, "lock_count").unwrap_or(0).max(0) as u32,
                    });
                }
                Err(UpdateItemError::ConditionalCheckFailedException(c)) => c.item.unwrap_or_default(),
                Err(e) => return Err(unavailable(e)),
            };
            if get_n(&old, "expires_at").unwrap_or(0) > now {
                return Ok(LockGate::Locked { until: get_n(&old, "locked_until").unwrap_or(now) });
            }
            // Expired but not yet deleted by TTL: replace it with a fresh count.
            let mut fresh = lock_key(k);
            fresh.insert("failures".into(), n(1));
            fresh.insert("expires_at".into(), n(now + window));
            fresh.insert("ttl".into(), n(now + window));
            let res = self
                .client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(fresh))
                .condition_expression("attribute_not_exists(pk) OR expires_at <= :now")
                .expression_attribute_values(":now", n(now))
                .send()
                .await;
            match res.map_err(|e| e.into_service_error()) {
                Ok(_) => {
                    return Ok(LockGate::Open { attempt: 1, previous_locks: 0 });
                }
                Err(PutItemError::ConditionalCheckFailedException(_)) => continue,
                Err(e) => return Err(unavailable(e)),
            }
        }
        Err(StoreError::Unavailable("lockout item contention".into()))
    }

    async fn lock_gate_release(&self, k: &str, now: i64) -> Result<(), StoreError> {
        let res = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(lock_key(k)))
            .update_expression("ADD failures :minus")
            .condition_expression(
                "failures > :zero AND expires_at > :now AND \
                 (attribute_not_exists(locked_until) OR locked_until <= :now)",
            )
            .expression_attribute_values(":minus", n(-1))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":now", n(now))
            .send()
            .await;
        applied(res.map_err(|e| e.into_service_error())).map(|_| ())
    }

    async fn lock(&self, k: &str, threshold: u32, until: i64, now: i64, window: i64) -> Result<bool, StoreError> {
        let token = uuid::Uuid::new_v4().simple().to_string();
        let res = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(lock_key(k)))
            .update_expression(
                "SET locked_until = :until, failures = :zero, lock_token = :token, \
                 lock_count = if_not_exists(lock_count, :zero) + :one, expires_at = :exp, #ttl = :exp",
            )
            .condition_expression(
                "expires_at > :now AND failures >= :threshold AND \
                 (attribute_not_exists(locked_until) OR locked_until <= :now)",
            )
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":until", n(until))
            .expression_attribute_values(":threshold", n(threshold))
            .expression_attribute_values(":exp", n(until + window))
            .expression_attribute_values(":token", s(&token))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match res.map_err(|e| e.into_service_error()) {
            Ok(_) => Ok(true),
            // Locked meanwhile by another caller (false), or by this call's own write, which the
            // SDK retried after it landed (the item holds this call's token: true).
            Err(UpdateItemError::ConditionalCheckFailedException(c)) => {
                Ok(c.item.as_ref().and_then(|i| get_s(i, "lock_token")).as_deref() == Some(token.as_str()))
            }
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn clear_lockout(&self, k: &str) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(lock_key(k)))
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn lockout_keys(&self, account: &str) -> Result<Vec<String>, StoreError> {
        let items = self.partition(format!("LOCK#{account}"), Some("pk, sk")).await?;
        Ok(items
            .iter()
            .filter_map(|i| get_s(i, "sk"))
            .map(|sk| match sk.strip_prefix("IP#") {
                Some(ip) => pair_lock_key(account, ip),
                None => account.to_owned(),
            })
            .collect())
    }

    async fn clear_all_lockouts(&self, account: &str) -> Result<(), StoreError> {
        for item_key in self.partition(format!("LOCK#{account}"), Some("pk, sk")).await? {
            self.client
                .delete_item()
                .table_name(&self.table)
                .set_key(Some(item_key))
                .send()
                .await
                .map_err(unavailable)?;
        }
        Ok(())
    }
}

#[async_trait]
impl SessionStore for DynamoStore {
    async fn create_session(&self, x: &Session) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(session_to_item(x)))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn start_login_session(&self, x: &Session, clear_locks: &[String], now: i64) -> Result<(), StoreError> {
        // The session id is new for every login: it names the transaction, so a retry of one
        // whose answer was lost is recognised as the same write (DynamoDB idempotency tokens).
        let req = self
            .client
            .transact_write_items()
            .client_request_token(&x.id)
            .set_transact_items(Some(self.sign_in_items(x, clear_locks, now)?));
        transact(req).await.map_err(unavailable)
    }

    async fn get_user_and_session(
        &self,
        user_id: &str,
        id: &str,
        now: i64,
    ) -> Result<(Option<User>, Option<Session>), StoreError> {
        let items =
            self.batch_get(vec![key(user_pk(user_id), PROFILE), key(user_pk(user_id), &session_sk(id))], None).await?;
        let (mut user, mut session) = (None, None);
        for item in items {
            match get_s(&item, "sk").as_deref() {
                Some(PROFILE) => user = Some(items::user(&item)?),
                _ => session = Some(items::session(&item)?),
            }
        }
        Ok((user, session.filter(|x| x.expires_at() > now)))
    }

    async fn get_session(&self, user_id: &str, id: &str, now: i64) -> Result<Option<Session>, StoreError> {
        let item = self.get(key(user_pk(user_id), &session_sk(id))).await?;
        let session = item.as_ref().map(items::session).transpose()?;
        Ok(session.filter(|x| x.expires_at() > now))
    }

    async fn rotate_session(
        &self,
        user_id: &str,
        id: &str,
        old_hash: &str,
        new_hash: &str,
        now: i64,
        idle_expires_at: i64,
        spent: &[String],
    ) -> Result<Rotation, StoreError> {
        let res = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(user_pk(user_id), &session_sk(id))))
            // `spent` was computed from the item read before; the condition on `current_hash`
            // guarantees nothing rotated in between.
            .update_expression(
                "SET current_hash = :new, previous_hash = :old, rotated_at = :now, last_used_at = :now, \
                 idle_expires_at = :idle, #ttl = :idle, spent_hashes = :spent",
            )
            .condition_expression("current_hash = :old AND idle_expires_at > :now AND absolute_expires_at > :now")
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_values(":new", s(new_hash))
            .expression_attribute_values(":old", s(old_hash))
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":idle", n(idle_expires_at))
            .expression_attribute_values(":spent", AttributeValue::L(spent.iter().map(s).collect()))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        let old = match res.map_err(|e| e.into_service_error()) {
            Ok(_) => return Ok(Rotation::Rotated),
            Err(UpdateItemError::ConditionalCheckFailedException(c)) => c.item,
            Err(e) => return Err(unavailable(e)),
        };
        let Some(old) = old.filter(|m| !m.is_empty()) else {
            return Ok(Rotation::Missing);
        };
        let current = items::session(&old)?;
        if current.expires_at() <= now {
            return Ok(Rotation::Missing);
        }
        // Also when the SDK retried our own write after it had landed (the item then holds
        // `new_hash`): the use case recognises the successor it derives and answers it again.
        let _ = new_hash;
        Ok(Rotation::Conflict(Box::new(current)))
    }

    async fn list_sessions(&self, user_id: &str, now: i64) -> Result<Vec<Session>, StoreError> {
        let mut out: Vec<Session> =
            self.query_sessions(user_id).await?.into_iter().filter(|x| x.expires_at() > now).collect();
        out.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(out)
    }

    async fn delete_sessions(&self, user_id: &str, keep: Option<&str>) -> Result<usize, StoreError> {
        let mut n = 0;
        for x in self.query_sessions(user_id).await? {
            if Some(x.id.as_str()) != keep {
                self.delete_session(user_id, &x.id).await?;
                n += 1;
            }
        }
        Ok(n)
    }

    async fn confirm_session_version(&self, user_id: &str, id: &str, sv: u64) -> Result<(), StoreError> {
        let res = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(user_pk(user_id), &session_sk(id))))
            .update_expression("SET sv = :sv")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":sv", n(sv))
            .send()
            .await;
        applied(res.map_err(|e| e.into_service_error())).map(|_| ())
    }

    async fn delete_session(&self, user_id: &str, id: &str) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key(user_pk(user_id), &session_sk(id))))
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}

fn rate_pk(key: &str) -> String {
    format!("RATE#{key}")
}

/// The sort key of a rate-limit item: one item per key holding the current and previous
/// window (`ws`, `hits`, `prev`). Items of the earlier design (one per key and window, sort key
/// `RATE`) are deleted by `secure-auth migrate` or expire by TTL.
pub(crate) const RATE_SK: &str = "WINDOW";

#[async_trait]
impl RateLimitStore for DynamoStore {
    async fn rate_hit(
        &self,
        k: &str,
        start: i64,
        window: i64,
        max: u32,
        expires_at: i64,
    ) -> Result<Option<RateCount>, StoreError> {
        let mut start = start;
        let mut expires_at = expires_at;
        // Bounded: each retry means another writer just rolled the item over.
        for _ in 0..5 {
            // The common case: the item is absent (or never written) or holds this window.
            let res = self
                .client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(key(rate_pk(k), RATE_SK)))
                .update_expression("SET ws = if_not_exists(ws, :start), expires_at = :exp, #ttl = :exp ADD hits :one")
                .condition_expression("attribute_not_exists(pk) OR (ws = :start AND hits < :max)")
                .expression_attribute_names("#ttl", "ttl")
                .expression_attribute_values(":one", n(1))
                .expression_attribute_values(":start", n(start))
                .expression_attribute_values(":exp", n(expires_at))
                .expression_attribute_values(":max", n(max))
                .return_values(ReturnValue::AllNew)
                .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
                .send()
                .await;
            let old = match res.map_err(|e| e.into_service_error()) {
                Ok(out) => {
                    let a = out.attributes.unwrap_or_default();
                    let count = |name| get_n(&a, name).unwrap_or(0).clamp(0, u32::MAX as i64) as u32;
                    return Ok(Some(RateCount { start, hits: count("hits").max(1), previous: count("prev") }));
                }
                Err(UpdateItemError::ConditionalCheckFailedException(c)) => c.item.unwrap_or_default(),
                Err(e) => return Err(unavailable(e)),
            };
            let (old_ws, old_hits) = (get_n(&old, "ws").unwrap_or(i64::MIN), get_n(&old, "hits").unwrap_or(0));
            if old_ws == start {
                return Ok(None);
            }
            if old_ws > start {
                // Another function's clock is ahead and already opened the next window: count there.
                expires_at += old_ws - start;
                start = old_ws;
                continue;
            }
            // An older window (or an expired item TTL has not deleted yet): roll over, keeping
            // the count of the window just before this one.
            let previous = if old_ws == start - window { old_hits } else { 0 };
            let res = self
                .client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(key(rate_pk(k), RATE_SK)))
                .update_expression("SET ws = :start, hits = :one, prev = :prev, expires_at = :exp, #ttl = :exp")
                .condition_expression("ws = :old_ws AND hits = :old_hits")
                .expression_attribute_names("#ttl", "ttl")
                .expression_attribute_values(":one", n(1))
                .expression_attribute_values(":start", n(start))
                .expression_attribute_values(":prev", n(previous))
                .expression_attribute_values(":exp", n(expires_at))
                .expression_attribute_values(":old_ws", n(old_ws))
                .expression_attribute_values(":old_hits", n(old_hits))
                .send()
                .await;
            match res.map_err(|e| e.into_service_error()) {
                Ok(_) => {
                    let previous = previous.clamp(0, u32::MAX as i64) as u32;
                    return Ok(Some(RateCount { start, hits: 1, previous }));
                }
                Err(UpdateItemError::ConditionalCheckFailedException(_)) => continue,
                Err(e) => return Err(unavailable(e)),
            }
        }
        Err(StoreError::Unavailable("rate-limit item contention".into()))
    }

    async fn rate_unhit(&self, k: &str, start: i64) -> Result<(), StoreError> {
        let res = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(rate_pk(k), RATE_SK)))
            .update_expression("ADD hits :minus")
            .condition_expression("ws = :start AND hits > :zero")
            .expression_attribute_values(":minus", n(-1))
            .expression_attribute_values(":start", n(start))
            .expression_attribute_values(":zero", n(0))
            .send()
            .await;
        applied(res.map_err(|e| e.into_service_error())).map(|_| ())
    }
}

fn mail_pk(job_id: &str) -> String {
    format!("MAIL#{job_id}")
}

const MAIL_SK: &str = "JOB";

#[async_trait]
impl MailLedger for DynamoStore {
    async fn claim_mail(
        &self,
        job_id: &str,
        claim: &str,
        now: i64,
        lease_until: i64,
        expires_at: i64,
    ) -> Result<MailClaim, StoreError> {
        let mut item = key(mail_pk(job_id), MAIL_SK);
        item.insert("type".into(), s("mail_job"));
        item.insert("sent".into(), AttributeValue::Bool(false));
        item.insert("claim".into(), s(claim));
        item.insert("lease".into(), n(lease_until));
        item.insert("ttl".into(), n(expires_at));
        let res = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            // Free: never claimed, expired, or not sent and either claimed by a delivery whose
            // lease ran out or by this one (this write retried after it landed).
            .condition_expression(
                "attribute_not_exists(pk) OR #ttl <= :now OR (sent = :false AND (claim = :claim OR lease <= :now))",
            )
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":claim", s(claim))
            .expression_attribute_values(":false", AttributeValue::Bool(false))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match res.map_err(|e| e.into_service_error()) {
            Ok(_) => Ok(MailClaim::Claimed),
            Err(PutItemError::ConditionalCheckFailedException(c)) => {
                Ok(if c.item.as_ref().is_some_and(|i| get_b(i, "sent")) { MailClaim::Sent } else { MailClaim::Busy })
            }
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn mail_sent(&self, job_id: &str, claim: &str, now: i64) -> Result<(), StoreError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(mail_pk(job_id), MAIL_SK)))
            .update_expression("SET sent = :true, claim = :claim, sent_at = :now")
            .expression_attribute_values(":true", AttributeValue::Bool(true))
            .expression_attribute_values(":claim", s(claim))
            .expression_attribute_values(":now", n(now))
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn release_mail(&self, job_id: &str, claim: &str) -> Result<(), StoreError> {
        let res = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key(mail_pk(job_id), MAIL_SK)))
            .condition_expression("claim = :claim AND sent = :false")
            .expression_attribute_values(":claim", s(claim))
            .expression_attribute_values(":false", AttributeValue::Bool(false))
            .send()
            .await;
        match res.map_err(|e| e.into_service_error()) {
            Ok(_)
            | Err(aws_sdk_dynamodb::operation::delete_item::DeleteItemError::ConditionalCheckFailedException(_)) => {
                Ok(())
            }
            Err(e) => Err(unavailable(e)),
        }
    }
}

const ADMINS_PK: &str = "META";
const ADMINS_SK: &str = "ADMINS";

fn cancellation_codes(
    e: &aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError,
) -> Vec<Option<String>> {
    use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError as E;
    match e {
        E::TransactionCanceledException(c) => {
            c.cancellation_reasons().iter().map(|r| r.code().filter(|c| *c != "None").map(str::to_owned)).collect()
        }
        _ => vec![],
    }
}

impl DynamoStore {
    /// `ADD n :delta` on the count of active administrators; a decrement only while two remain.
    fn admins_delta(&self, delta: i64) -> Result<TransactWriteItem, StoreError> {
        let mut u = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key(ADMINS_PK.to_owned(), ADMINS_SK)))
            .update_expression("ADD n :d")
            .expression_attribute_values(":d", n(delta));
        if delta < 0 {
            u = u.condition_expression("n > :one").expression_attribute_values(":one", n(1));
        }
        Ok(TransactWriteItem::builder().update(u.build().map_err(unavailable)?).build())
    }

    /// The condition that `current` is still what is stored (the fields admin writes depend on).
    /// The condition of an administrative write: the fields `User::admin_guard_matches`
    /// compares (the contract suite checks both stores agree).
    fn unchanged(current: &User) -> (&'static str, Vec<(&'static str, AttributeValue)>) {
        (
            "email = :c_email AND is_superuser = :c_su AND is_active = :c_act AND sv = :c_sv AND password_hash = :c_ph",
            vec![
                (":c_email", s(&current.email)),
                (":c_su", AttributeValue::Bool(current.is_superuser)),
                (":c_act", AttributeValue::Bool(current.is_active)),
                (":c_sv", n(current.session_version)),
                (":c_ph", s(&current.password_hash)),
            ],
        )
    }

    fn claim_put(&self, email: &str, user_id: &str) -> Result<TransactWriteItem, StoreError> {
        let mut claim = key(email_pk(email), "EMAIL");
        claim.insert("user_id".into(), s(user_id));
        claim.insert("type".into(), s("email_claim"));
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(claim))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(unavailable)?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    fn claim_delete(&self, email: &str, user_id: &str) -> Result<TransactWriteItem, StoreError> {
        let del = Delete::builder()
            .table_name(&self.table)
            .set_key(Some(key(email_pk(email), "EMAIL")))
            .condition_expression("user_id = :uid")
            .expression_attribute_values(":uid", s(user_id))
            .build()
            .map_err(unavailable)?;
        Ok(TransactWriteItem::builder().delete(del).build())
    }

    /// A failed "unchanged" condition means changed, or deleted.
    async fn changed_or_gone(&self, outcome: AdminWrite, id: &str) -> Result<AdminWrite, StoreError> {
        match outcome {
            AdminWrite::Changed if self.get_user(id).await?.is_none() => Ok(AdminWrite::NotFound),
            other => Ok(other),
        }
    }

    /// Sends `items`; on cancellation maps the first failed item's index through `on_fail`.
    async fn admin_transaction(
        &self,
        items: Vec<TransactWriteItem>,
        on_fail: impl Fn(usize) -> AdminWrite,
        done: User,
    ) -> Result<AdminWrite, StoreError> {
        let req = self.client.transact_write_items().set_transact_items(Some(items));
        match transact(req).await {
            Ok(()) => Ok(AdminWrite::Done(done)),
            Err(e) => {
                let codes = cancellation_codes(&e);
                match codes.iter().position(|c| c.as_deref() == Some("ConditionalCheckFailed")) {
                    Some(i) => Ok(on_fail(i)),
                    None => Err(unavailable(e)),
                }
            }
        }
    }
}

#[async_trait]
impl AdminStore for DynamoStore {
    async fn list_users(
        &self,
        prefix: &str,
        after: Option<(&str, &str)>,
        limit: usize,
    ) -> Result<(Vec<User>, bool), StoreError> {
        let limit = limit.clamp(1, 1000);
        // Every shard holds its users in email order: the first `limit` of each, merged, are
        // the first `limit` overall. Addresses are unique, so the cursor's address alone says
        // where each shard resumes.
        let shards = (0..LISTING_SHARDS).map(|i| self.listing_shard_page(format!("USERS#{i}"), prefix, after, limit));
        let pages = futures::future::try_join_all(shards).await?;
        let mut more = pages.iter().any(|(_, more)| *more);
        let mut rows: Vec<Item> = pages.into_iter().flat_map(|(items, _)| items).collect();
        rows.sort_by_key(|r| get_s(r, "gsi2sk"));
        more |= rows.len() > limit;
        rows.truncate(limit);
        // The index leaves out what logins and the second factor write; one batch read adds
        // `last_login_at` and `mfa_enabled`.
        let ids: Vec<String> = rows.iter().filter_map(|r| get_s(r, "id")).collect();
        let extra = self.unprojected(&ids).await?;
        let users = rows
            .iter()
            .map(|r| {
                let mut user = items::listing_row(r)?;
                if let Some((last_login_at, mfa_enabled)) = extra.get(&user.id) {
                    user.last_login_at = *last_login_at;
                    user.mfa_enabled = *mfa_enabled;
                }
                Ok(user)
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok((users, more))
    }

    async fn admin_create_user(&self, user: &User) -> Result<AdminWrite, StoreError> {
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(user_to_item(user)))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(unavailable)?;
        let mut items = vec![TransactWriteItem::builder().put(put).build(), self.claim_put(&user.email, &user.id)?];
        if is_active_admin(user) {
            items.push(self.admins_delta(1)?);
        }
        self.admin_transaction(items, |_| AdminWrite::EmailTaken, user.clone()).await
    }

    async fn admin_update_user(
        &self,
        current: &User,
        changes: &UserChanges,
        now: i64,
    ) -> Result<AdminWrite, StoreError> {
        let next = changes.apply(current, now);
        let (cond, mut values) = Self::unchanged(current);
        let mut set = vec!["updated_at = :now"];
        values.push((":now", n(now)));
        if next.email != current.email {
            set.push("email = :email, gsi2pk = :shard, gsi2sk = :email");
            values.push((":email", s(&next.email)));
            values.push((":shard", s(listing_shard(&current.id))));
        }
        // An account whose credentials an administrator changed is no pending sign-up any more
        // (`UserChanges::takes_over`).
        let mut remove = if changes.takes_over() { vec!["pending_signup", "registrations"] } else { vec![] };
        match &changes.name {
            Some(Some(name)) => {
                set.push("#name = :name");
                values.push((":name", s(name)));
            }
            Some(None) => remove.push("#name"),
            None => {}
        }
        for (field, attr, value) in [
            ("is_superuser = :su", ":su", changes.is_superuser),
            ("is_verified = :ver", ":ver", changes.is_verified),
            ("is_active = :act", ":act", changes.is_active),
        ] {
            if let Some(v) = value {
                set.push(field);
                values.push((attr, AttributeValue::Bool(v)));
            }
        }
        if let Some(h) = &changes.password_hash {
            set.push("password_hash = :ph");
            values.push((":ph", s(h)));
        }
        if next.email != current.email {
            // The schema-2 listing keys go with the old address (`secure-auth migrate` step 3).
            remove.extend(["gsi1pk", "gsi1sk"]);
        }
        let mut expr = format!("SET {}", set.join(", "));
        if !remove.is_empty() {
            expr.push_str(&format!(" REMOVE {}", remove.join(", ")));
        }
        if changes.bump_session_version {
            expr.push_str(" ADD sv :one");
            values.push((":one", n(1)));
        }
        let mut update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key(user_pk(&current.id), PROFILE)))
            .update_expression(expr)
            .condition_expression(cond);
        if changes.name.is_some() {
            update = update.expression_attribute_names("#name", "name");
        }
        for (k, v) in values {
            update = update.expression_attribute_values(k, v);
        }
        let mut items = vec![TransactWriteItem::builder().update(update.build().map_err(unavailable)?).build()];
        let mut taken_at = usize::MAX;
        if next.email != current.email {
            items.push(self.claim_delete(&current.email, &current.id)?);
            taken_at = items.len();
            items.push(self.claim_put(&next.email, &current.id)?);
        }
        let mut admins_at = usize::MAX;
        match (is_active_admin(current), is_active_admin(&next)) {
            (true, false) => {
                admins_at = items.len();
                items.push(self.admins_delta(-1)?);
            }
            (false, true) => items.push(self.admins_delta(1)?),
            _ => {}
        }
        let outcome = self
            .admin_transaction(
                items,
                |i| match i {
                    i if i == taken_at => AdminWrite::EmailTaken,
                    i if i == admins_at => AdminWrite::LastAdmin,
                    _ => AdminWrite::Changed,
                },
                next,
            )
            .await?;
        self.changed_or_gone(outcome, &current.id).await
    }

    async fn admin_delete_user(&self, current: &User) -> Result<AdminWrite, StoreError> {
        // Lock items are keyed by the address, which is gone with the user item: clear them
        // first (harmless if the delete then fails: they only count failures).
        self.clear_all_lockouts(&current.email).await?;
        let (cond, values) = Self::unchanged(current);
        let mut del = Delete::builder()
            .table_name(&self.table)
            .set_key(Some(key(user_pk(&current.id), PROFILE)))
            .condition_expression(cond);
        for (k, v) in values {
            del = del.expression_attribute_values(k, v);
        }
        let mut items = vec![
            TransactWriteItem::builder().delete(del.build().map_err(unavailable)?).build(),
            self.claim_delete(&current.email, &current.id)?,
        ];
        if is_active_admin(current) {
            items.push(self.admins_delta(-1)?);
        }
        let outcome = self
            .admin_transaction(
                items,
                |i| if i == 2 { AdminWrite::LastAdmin } else { AdminWrite::Changed },
                current.clone(),
            )
            .await?;
        let outcome = self.changed_or_gone(outcome, &current.id).await?;
        if let AdminWrite::Done(_) = outcome {
            // The account is gone; what hangs off it goes next (a retry finds the user gone
            // and purges again: `Admin::delete_user`).
            self.purge_user(&current.id).await?;
        }
        Ok(outcome)
    }

    async fn purge_user(&self, id: &str) -> Result<(), StoreError> {
        for k in self.partition(user_pk(id), Some("pk, sk")).await? {
            if get_s(&k, "sk").as_deref() == Some(PROFILE) {
                // A user item is deleted with its claim, by admin_delete_user, never alone.
                continue;
            }
            self.client.delete_item().table_name(&self.table).set_key(Some(k)).send().await.map_err(unavailable)?;
        }
        Ok(())
    }

    async fn admin_reset_mfa(&self, current: &User, now: i64) -> Result<AdminWrite, StoreError> {
        let (cond, values) = Self::unchanged(current);
        let mut update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key(user_pk(&current.id), PROFILE)))
            .update_expression("SET updated_at = :now REMOVE mfa_enabled")
            .condition_expression(cond)
            .expression_attribute_values(":now", n(now));
        for (k, v) in values {
            update = update.expression_attribute_values(k, v);
        }
        let factor = Delete::builder().table_name(&self.table).set_key(Some(key(user_pk(&current.id), MFA_SK))).build();
        let items = vec![
            TransactWriteItem::builder().update(update.build().map_err(unavailable)?).build(),
            TransactWriteItem::builder().delete(factor.map_err(unavailable)?).build(),
        ];
        let done = User { mfa_enabled: false, updated_at: now, ..current.clone() };
        let outcome = self.admin_transaction(items, |_| AdminWrite::Changed, done).await?;
        match self.changed_or_gone(outcome, &current.id).await? {
            // The answer is the user as stored (a login since the read shows).
            AdminWrite::Done(_) => {
                Ok(self.get_user(&current.id).await?.map(AdminWrite::Done).unwrap_or(AdminWrite::NotFound))
            }
            other => Ok(other),
        }
    }

    async fn is_locked(&self, account: &str, now: i64) -> Result<bool, StoreError> {
        let items = self.partition(format!("LOCK#{account}"), None).await?;
        Ok(items
            .iter()
            .any(|i| get_n(i, "expires_at").unwrap_or(0) > now && get_n(i, "locked_until").is_some_and(|u| u > now)))
    }
}

/// A string set for `recovery` (DynamoDB sets cannot be empty: `None` for none).
fn code_set(recovery: &[String]) -> Option<AttributeValue> {
    (!recovery.is_empty()).then(|| AttributeValue::Ss(recovery.to_vec()))
}

impl DynamoStore {
    /// The conditional update that spends `proof` on the factor item.
    fn spend_update(&self, user_id: &str, proof: &MfaProof) -> Result<Update, StoreError> {
        let b = Update::builder().table_name(&self.table).set_key(Some(key(user_pk(user_id), MFA_SK)));
        let b = match proof {
            MfaProof::Totp { sealed, step } => b
                .update_expression("SET last_step = :step")
                .condition_expression("secret = :sealed AND last_step < :step")
                .expression_attribute_values(":sealed", s(sealed))
                .expression_attribute_values(":step", n(step)),
            MfaProof::Recovery { hash } => b
                .update_expression("DELETE recovery :codes")
                .condition_expression("attribute_exists(secret) AND contains(recovery, :code)")
                .expression_attribute_values(":codes", AttributeValue::Ss(vec![hash.clone()]))
                .expression_attribute_values(":code", s(hash)),
        };
        b.build().map_err(unavailable)
    }
}

#[async_trait]
impl MfaStore for DynamoStore {
    async fn get_mfa(&self, user_id: &str) -> Result<Option<MfaFactor>, StoreError> {
        self.get(key(user_pk(user_id), MFA_SK)).await?.as_ref().map(items::factor).transpose()
    }

    async fn put_pending_mfa(&self, user_id: &str, sealed: &str, now: i64) -> Result<bool, StoreError> {
        let res = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(user_pk(user_id), MFA_SK)))
            .update_expression("SET pending = :p, pending_at = :now, #type = :type, user_id = :u")
            .condition_expression("attribute_not_exists(secret)")
            .expression_attribute_names("#type", "type")
            .expression_attribute_values(":p", s(sealed))
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":type", s("mfa"))
            .expression_attribute_values(":u", s(user_id))
            .send()
            .await;
        applied(res.map_err(|e| e.into_service_error()))
    }

    async fn enable_mfa(
        &self,
        user_id: &str,
        sealed: &str,
        step: u64,
        recovery: &[String],
        sv: u64,
        keep: &str,
        now: i64,
    ) -> Result<Option<u64>, StoreError> {
        let next = sv + 1;
        let mut factor = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key(user_pk(user_id), MFA_SK)))
            .update_expression(
                "SET secret = :p, last_step = :step, enabled_at = :now, recovery = :codes REMOVE pending",
            )
            .condition_expression("pending = :p AND attribute_not_exists(secret)")
            .expression_attribute_values(":p", s(sealed))
            .expression_attribute_values(":step", n(step))
            .expression_attribute_values(":now", n(now));
        factor = match code_set(recovery) {
            Some(codes) => factor.expression_attribute_values(":codes", codes),
            None => return Err(StoreError::Unavailable("enabling a factor needs recovery codes".into())),
        };
        let user = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key(user_pk(user_id), PROFILE)))
            .update_expression("SET mfa_enabled = :t, sv = :next, updated_at = :now")
            .condition_expression("sv = :sv AND attribute_not_exists(mfa_enabled)")
            .expression_attribute_values(":t", AttributeValue::Bool(true))
            .expression_attribute_values(":sv", n(sv))
            .expression_attribute_values(":next", n(next))
            .expression_attribute_values(":now", n(now))
            .build()
            .map_err(unavailable)?;
        let session = self.session_version_move(user_id, keep, next)?;
        let factor = factor.build().map_err(unavailable)?;
        // A token of this call only: the SDK's retry of a transaction whose answer was lost is
        // the same write, while another request (a second confirmation) never shares it.
        let token = uuid::Uuid::new_v4().to_string();
        let all = self
            .client
            .transact_write_items()
            .client_request_token(&token)
            .transact_items(TransactWriteItem::builder().update(factor.clone()).build())
            .transact_items(TransactWriteItem::builder().update(user.clone()).build())
            .transact_items(TransactWriteItem::builder().update(session).build());
        match transact(all).await {
            Ok(()) => return Ok(Some(next)),
            Err(e) if !transaction_condition_failed(&e) => return Err(unavailable(e)),
            Err(e) if cancellation_codes(&e).iter().take(2).any(Option::is_some) => {}
            Err(_) => {
                // Only the caller's session is gone (it logged out meanwhile): enable alone.
                let two = self
                    .client
                    .transact_write_items()
                    .transact_items(TransactWriteItem::builder().update(factor).build())
                    .transact_items(TransactWriteItem::builder().update(user).build());
                match transact(two).await {
                    Ok(()) => return Ok(Some(next)),
                    Err(e) if !transaction_condition_failed(&e) => return Err(unavailable(e)),
                    Err(_) => {}
                }
            }
        }
        // A condition failed: changed meanwhile, or this very write landed before (its
        // recovery codes are unique to it).
        let mut ours = recovery.to_vec();
        ours.sort();
        let landed = self.get_mfa(user_id).await?.is_some_and(|mut f| {
            f.recovery.sort();
            f.secret.as_deref() == Some(sealed) && f.recovery == ours
        });
        if !landed {
            return Ok(None);
        }
        Ok(self.get_user(user_id).await?.map(|u| u.session_version))
    }

    async fn spend_mfa_proof(&self, user_id: &str, proof: &MfaProof) -> Result<MfaSpend, StoreError> {
        let u = self.spend_update(user_id, proof)?;
        let res = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(u.key))
            .update_expression(u.update_expression)
            .set_condition_expression(u.condition_expression)
            .set_expression_attribute_values(u.expression_attribute_values)
            .send()
            .await;
        Ok(if applied(res.map_err(|e| e.into_service_error()))? { MfaSpend::Spent } else { MfaSpend::Refused })
    }

    async fn replace_recovery_codes(
        &self,
        user_id: &str,
        sealed: &str,
        recovery: &[String],
    ) -> Result<bool, StoreError> {
        let Some(codes) = code_set(recovery) else {
            return Err(StoreError::Unavailable("no recovery codes to store".into()));
        };
        let res = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(user_pk(user_id), MFA_SK)))
            .update_expression("SET recovery = :codes")
            .condition_expression("secret = :sealed")
            .expression_attribute_values(":codes", codes)
            .expression_attribute_values(":sealed", s(sealed))
            .send()
            .await;
        applied(res.map_err(|e| e.into_service_error()))
    }

    async fn disable_mfa(&self, user_id: &str, sealed: &str, now: i64) -> Result<bool, StoreError> {
        let factor = Delete::builder()
            .table_name(&self.table)
            .set_key(Some(key(user_pk(user_id), MFA_SK)))
            .condition_expression("secret = :sealed")
            .expression_attribute_values(":sealed", s(sealed))
            .build()
            .map_err(unavailable)?;
        let user = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key(user_pk(user_id), PROFILE)))
            .update_expression("SET updated_at = :now REMOVE mfa_enabled")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":now", n(now))
            .build()
            .map_err(unavailable)?;
        let req = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().delete(factor).build())
            .transact_items(TransactWriteItem::builder().update(user).build());
        match transact(req).await {
            Ok(()) => Ok(true),
            Err(e) if !transaction_condition_failed(&e) => Err(unavailable(e)),
            // No factor left at all: this write, retried after it landed.
            Err(_) => Ok(self.get_mfa(user_id).await?.is_none_or(|f| f.secret.is_none() && f.pending.is_none())),
        }
    }

    async fn put_mfa_challenge(&self, hash: &str, c: &MfaChallenge) -> Result<(), StoreError> {
        let mut m = key(user_pk(&c.user_id), &challenge_sk(hash));
        m.insert("type".into(), s("mfa_challenge"));
        m.insert("user_id".into(), s(&c.user_id));
        m.insert("sv".into(), n(c.session_version));
        m.insert("failures".into(), n(c.failures));
        m.insert("expires_at".into(), n(c.expires_at));
        m.insert("ttl".into(), n(c.expires_at));
        self.client.put_item().table_name(&self.table).set_item(Some(m)).send().await.map_err(unavailable)?;
        Ok(())
    }

    async fn get_mfa_challenge(
        &self,
        user_id: &str,
        hash: &str,
        now: i64,
        max_failures: u32,
    ) -> Result<Option<MfaChallenge>, StoreError> {
        let Some(m) = self.get(key(user_pk(user_id), &challenge_sk(hash))).await? else { return Ok(None) };
        let c = items::challenge(&m, user_id)?;
        Ok(Some(c).filter(|c| c.expires_at > now && c.failures < max_failures))
    }

    async fn mfa_challenge_failed(&self, user_id: &str, hash: &str, now: i64) -> Result<(), StoreError> {
        let res = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(user_pk(user_id), &challenge_sk(hash))))
            .update_expression("ADD failures :one")
            .condition_expression("expires_at > :now")
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":now", n(now))
            .send()
            .await;
        applied(res.map_err(|e| e.into_service_error())).map(|_| ())
    }

    async fn complete_mfa_sign_in(&self, x: &MfaSignIn<'_>) -> Result<MfaSpend, StoreError> {
        let user_id = x.session.user_id.as_str();
        let challenge = Delete::builder()
            .table_name(&self.table)
            .set_key(Some(key(user_pk(user_id), &challenge_sk(x.hash))))
            .condition_expression("expires_at > :now AND failures < :max")
            .expression_attribute_values(":now", n(x.now))
            .expression_attribute_values(":max", n(x.max_failures))
            .build()
            .map_err(unavailable)?;
        // The new session's id names the transaction (never anything derived from the
        // challenge: a replayed request would then "succeed" again), so the SDK's retry of one
        // whose answer was lost is the same write, not a refusal.
        let mut items = vec![
            TransactWriteItem::builder().delete(challenge).build(),
            TransactWriteItem::builder().update(self.spend_update(user_id, x.proof)?).build(),
        ];
        items.extend(self.sign_in_items(x.session, x.clear_locks, x.now)?);
        let req =
            self.client.transact_write_items().client_request_token(&x.session.id).set_transact_items(Some(items));
        match transact(req).await {
            Ok(()) => Ok(MfaSpend::Spent),
            Err(e) if !transaction_condition_failed(&e) => Err(unavailable(e)),
            Err(e) => match cancellation_codes(&e).get(1) {
                // Only the code's condition failed: a wrong, used or replayed code.
                Some(Some(_)) if cancellation_codes(&e).iter().filter(|c| c.is_some()).count() == 1 => {
                    Ok(MfaSpend::Refused)
                }
                _ => Ok(MfaSpend::ChallengeGone),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn item_sizes_follow_dynamodbs_rules() {
        let item = Item::from([
            ("pk".to_owned(), s("USER#1")),                                                 // 2 + 6
            ("n".to_owned(), n(1_800_000_000)), // 1 + (1 + 1): "18" is significant
            ("b".to_owned(), AttributeValue::Bool(true)), // 1 + 1
            ("l".to_owned(), AttributeValue::L(vec![s("ab"), s("cde")])), // 1 + 3 + (1+2) + (1+3)
            ("m".to_owned(), AttributeValue::M(HashMap::from([("k".to_owned(), s("v"))]))), // 1 + 3 + (1+1+1)
        ]);
        assert_eq!(item_size(&item), 8 + 3 + 2 + 11 + 7);
        assert_eq!(value_size(&n(12345)), 4, "five significant digits: three bytes, and one");
        assert_eq!(value_size(&n(100)), 2, "trailing zeros are not significant");
    }

    #[test]
    fn given_thirty_refreshes_with_a_long_user_agent_then_the_session_item_stays_under_one_write_unit() {
        use crate::domain::sessions::PWD;
        let hash = |i: u32| crate::tokens::hash_secret(&format!("secret-{i}"));
        let mut x = Session {
            user_id: uuid::Uuid::new_v4().to_string(),
            id: uuid::Uuid::new_v4().simple().to_string(),
            current_hash: hash(0),
            previous_hash: None,
            spent_hashes: vec![],
            rotated_at: 1_800_000_000,
            created_at: 1_800_000_000,
            last_used_at: 1_800_000_000,
            idle_expires_at: 1_800_604_800,
            absolute_expires_at: 1_802_592_000,
            ip: "2001:0db8:85a3:0000:0000:8a2e:0370:7334".into(),
            user_agent: kept_user_agent(&"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 é".repeat(20)),
            session_version: 12,
            amr: vec![PWD.into(), "mfa".into()],
        };
        let first = hash(0);
        for i in 1..=30 {
            x.spent_hashes = x.next_spent();
            x.previous_hash = Some(x.current_hash.clone());
            x.current_hash = hash(i);
            let size = item_size(&session_to_item(&x));
            assert!(size < 1024, "after refresh {i}: {size} bytes");
        }
        assert_eq!(x.spent_hashes.len(), SPENT_HASHES_KEPT);
        // Reuse detection is unchanged: a token rotated out 16 generations ago is still seen.
        assert!(x.has_spent(&hash(29)) && x.has_spent(&hash(14)), "previous and the oldest kept");
        assert!(!x.has_spent(&first) && !x.has_spent(&hash(31)));
        assert!(x.user_agent.len() <= USER_AGENT_KEPT);
    }

    use super::*;

    #[test]
    fn given_user_and_session_items_written_before_the_second_factor_then_they_read_as_password_only() {
        // What the previous release wrote: every attribute of its user item but `mfa_enabled`,
        // every attribute of its session item but `amr`.
        let mut user = key(user_pk("u1"), PROFILE);
        for (k, v) in [("id", "u1"), ("email", "old@example.com"), ("password_hash", "$argon2id$x")] {
            user.insert(k.into(), s(v));
        }
        for k in ["is_active", "is_verified", "is_superuser"] {
            user.insert(k.into(), AttributeValue::Bool(k == "is_active"));
        }
        for (k, v) in [("sv", 3), ("created_at", 1), ("updated_at", 2)] {
            user.insert(k.into(), n(v));
        }
        let u = items::user(&user).unwrap();
        assert!(!u.mfa_enabled);
        let mut session = key(user_pk("u1"), &session_sk("s1"));
        for (k, v) in
            [("user_id", "u1"), ("id", "s1"), ("current_hash", "h"), ("ip", "192.0.2.1"), ("user_agent", "ua")]
        {
            session.insert(k.into(), s(v));
        }
        for k in ["rotated_at", "created_at", "last_used_at", "idle_expires_at", "absolute_expires_at", "sv"] {
            session.insert(k.into(), n(1));
        }
        session.insert("spent_hashes".into(), AttributeValue::L(vec![]));
        assert_eq!(items::session(&session).unwrap().amr, vec!["pwd".to_owned()]);
        // And what this release writes reads back the same.
        let with = User { mfa_enabled: true, ..u.clone() };
        assert!(items::user(&user_to_item(&with)).unwrap().mfa_enabled);
        assert!(!user_to_item(&u).contains_key("mfa_enabled"), "absent means off: old readers see no change");
        let mut x = items::session(&session).unwrap();
        x.amr = vec!["pwd".into(), "otp".into()];
        assert_eq!(items::session(&session_to_item(&x)).unwrap().amr, x.amr);
    }

    #[test]
    fn the_template_projects_exactly_the_listing_attributes_into_gsi2() {
        let template = include_str!("../../../template.yaml");
        let expected = format!("NonKeyAttributes: [{}]", LISTING_ATTRIBUTES.join(", "));
        let gsi2 = &template[template.find("IndexName: gsi2").expect("gsi2 in template.yaml")..];
        let projection = gsi2.lines().find(|l| l.contains("NonKeyAttributes")).expect("an INCLUDE projection");
        assert_eq!(projection.trim(), expected);
        assert!(!LISTING_ATTRIBUTES.contains(&"last_login_at"), "what logins write stays out of the index");
    }

    #[test]
    fn listing_shards_spread_users_and_stay_put() {
        let mut counts = [0u32; LISTING_SHARDS as usize];
        for i in 0..1600 {
            let shard = listing_shard(&format!("user-{i}"));
            assert_eq!(shard, listing_shard(&format!("user-{i}")));
            let n: usize = shard.strip_prefix("USERS#").unwrap().parse().unwrap();
            counts[n] += 1;
        }
        assert!(counts.iter().all(|&c| (50..=150).contains(&c)), "{counts:?}");
    }
}
