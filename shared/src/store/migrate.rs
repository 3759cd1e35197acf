//! Migrations of the DynamoDB item design (`secure-auth migrate`). Deployed tables hold items
//! in every earlier format: each step finds the items still in its old format (a filtered
//! scan, page by page), rewrites each with a conditional write that only applies to the old
//! format, and stamps `schema_version`. Every step is idempotent, and a run that is
//! interrupted is simply run again: what was done is no longer found.
//!
//! Steps, oldest first (docs/storage.md "Migrations"):
//! - 2: one-time tokens are bound to the session version of their user (`sv`); a token stored
//!   before gets the user's current version, so pending links keep working until the next
//!   change of credentials.
//! - 3: users move from the one-partition listing index `gsi1` (every attribute projected, so
//!   every login wrote it) to the sharded `gsi2` (`gsi2pk = USERS#<shard>`, only what the
//!   listing shows): each user item gains `gsi2pk`/`gsi2sk` and loses `gsi1pk`/`gsi1sk`.
//!   Rate-limit items of the earlier design (one item per key and window, sort key `RATE`) are
//!   deleted; they would expire by TTL within two windows anyway.
//! - 4: the per-email limits of login and the password grant count per (address, client IP)
//!   (`login#email#<address>\u{1f}<ip>`), so that other clients never spend the owner's budget:
//!   the counters of the whole address (`login#email#<address>`, `token#email#<address>`) are
//!   read by nothing any more and are deleted (TTL would take them within two windows).
//!   Nothing else changes format: user items gain `pending_signup` and `registrations` only as
//!   sign-ups write them, and an unverified user written before has neither, so it reads as an
//!   account no sign-up changes (it may be an administrator's: the old format does not say); its
//!   owner finishes with a verification link and its password, or forgot-password first. Lock
//!   items, sessions and one-time tokens keep their format (the unlock link is a new kind of
//!   one-time token in the same shape).
//! - 5: a session item stays under 1 KB for its whole life (one write unit per refresh): its
//!   spent list keeps 16-character tags of the rotated-out hashes and its user agent at most 160
//!   bytes. Sessions written before hold whole hashes (which still compare by their tag, and
//!   which the next rotation tags) and up to 256 characters of user agent: each is rewritten
//!   once, conditioned on its current hash (a rotation meanwhile leaves it for the next run),
//!   and stamped.

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::AttributeValue;

use super::StoreError;
use super::dynamo::{DynamoStore, unavailable};

type Item = HashMap<String, AttributeValue>;

/// The item format this code writes.
pub const SCHEMA_VERSION: u32 = 5;

/// What one step did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StepReport {
    pub step: u32,
    pub name: &'static str,
    /// Items found in the old format.
    pub found: usize,
    /// Items rewritten.
    pub migrated: usize,
    /// Items left as they were (written meanwhile in the new format, or orphans).
    pub skipped: usize,
}

/// Runs every step on `table`; with `dry_run`, only counts what each would do.
pub async fn run(client: &Client, table: &str, dry_run: bool) -> Result<Vec<StepReport>, StoreError> {
    Ok(vec![
        bind_tokens_to_session_versions(client, table, dry_run).await?,
        shard_the_listing_index(client, table, dry_run).await?,
        drop_per_window_rate_items(client, table, dry_run).await?,
        drop_whole_address_sign_in_counters(client, table, dry_run).await?,
        shrink_sessions(client, table, dry_run).await?,
    ])
}

/// One page of the items `filter` matches, and where the next page starts (`None`: done).
async fn scan_page(
    client: &Client,
    table: &str,
    filter: &str,
    values: &[(&str, AttributeValue)],
    start: Option<Item>,
) -> Result<(Vec<Item>, Option<Item>), StoreError> {
    let mut q =
        client.scan().table_name(table).filter_expression(filter).consistent_read(true).set_exclusive_start_key(start);
    for (k, v) in values {
        q = q.expression_attribute_values(*k, v.clone());
    }
    let page = q.send().await.map_err(unavailable)?;
    Ok((page.items.unwrap_or_default(), page.last_evaluated_key))
}

/// Counts one conditional rewrite: migrated, or skipped when its condition no longer held (the
/// item changed meanwhile).
fn tally<O>(
    res: Result<O, aws_sdk_dynamodb::error::SdkError<UpdateItemError>>,
    report: &mut StepReport,
) -> Result<(), StoreError> {
    match res.map_err(|e| e.into_service_error()) {
        Ok(_) => report.migrated += 1,
        Err(UpdateItemError::ConditionalCheckFailedException(_)) => report.skipped += 1,
        Err(e) => return Err(unavailable(e)),
    }
    Ok(())
}

/// Step 2: `sv` on every one-time token item that has none.
async fn bind_tokens_to_session_versions(
    client: &Client,
    table: &str,
    dry_run: bool,
) -> Result<StepReport, StoreError> {
    let mut report =
        StepReport { step: 2, name: "bind one-time tokens to their user's session version", ..Default::default() };
    let store = DynamoStore::new(client.clone(), table);
    let filter = "begins_with(sk, :ott) AND attribute_not_exists(sv)";
    let values = [(":ott", AttributeValue::S("OTT#".into()))];
    // Each page is handled before the next is read, so a large table never sits in memory.
    let mut start = None;
    loop {
        let (items, next) = scan_page(client, table, filter, &values, start).await?;
        for item in items {
            report.found += 1;
            let pk = item.get("pk").and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
            let user = match pk.strip_prefix("USER#") {
                Some(id) => crate::store::UserLookup::get_user(&store, id).await?,
                None => None,
            };
            let Some(user) = user else {
                report.skipped += 1;
                continue;
            };
            if dry_run {
                continue;
            }
            let res = client
                .update_item()
                .table_name(table)
                .key("pk", item["pk"].clone())
                .key("sk", item["sk"].clone())
                .update_expression("SET sv = :sv, schema_version = :v")
                .condition_expression("attribute_exists(pk) AND attribute_not_exists(sv)")
                .expression_attribute_values(":sv", AttributeValue::N(user.session_version.to_string()))
                .expression_attribute_values(":v", AttributeValue::N(SCHEMA_VERSION.to_string()))
                .send()
                .await;
            // Replaced or spent meanwhile: nothing left to migrate.
            tally(res, &mut report)?;
        }
        start = next;
        if start.is_none() {
            return Ok(report);
        }
    }
}

/// Step 3: every user item in the sharded listing index, none in the old one.
async fn shard_the_listing_index(client: &Client, table: &str, dry_run: bool) -> Result<StepReport, StoreError> {
    let mut report = StepReport { step: 3, name: "move users to the sharded listing index gsi2", ..Default::default() };
    let filter = "sk = :profile AND (attribute_exists(gsi1pk) OR attribute_not_exists(gsi2pk))";
    let values = [(":profile", AttributeValue::S("PROFILE".into()))];
    let mut start = None;
    loop {
        let (items, next) = scan_page(client, table, filter, &values, start).await?;
        for item in items {
            report.found += 1;
            let (Some(id), Some(email)) = (
                item.get("id").and_then(|v| v.as_s().ok()).cloned(),
                item.get("email").and_then(|v| v.as_s().ok()).cloned(),
            ) else {
                report.skipped += 1;
                continue;
            };
            if dry_run {
                continue;
            }
            // Conditioned on the address read: an address changed meanwhile is found again by
            // the next run (or was written in the new format by the change itself).
            let res = client
                .update_item()
                .table_name(table)
                .key("pk", item["pk"].clone())
                .key("sk", item["sk"].clone())
                .update_expression("SET gsi2pk = :shard, gsi2sk = :email, schema_version = :v REMOVE gsi1pk, gsi1sk")
                .condition_expression("attribute_exists(pk) AND email = :email")
                .expression_attribute_values(":shard", AttributeValue::S(super::dynamo::listing_shard(&id)))
                .expression_attribute_values(":email", AttributeValue::S(email))
                .expression_attribute_values(":v", AttributeValue::N(SCHEMA_VERSION.to_string()))
                .send()
                .await;
            // An address changed meanwhile: the next run finds the item again.
            tally(res, &mut report)?;
        }
        start = next;
        if start.is_none() {
            return Ok(report);
        }
    }
}

/// Step 3: rate-limit items of the per-window design are deleted.
async fn drop_per_window_rate_items(client: &Client, table: &str, dry_run: bool) -> Result<StepReport, StoreError> {
    let report = StepReport { step: 3, name: "delete per-window rate-limit items", ..Default::default() };
    let filter = "begins_with(pk, :rate) AND sk = :old";
    let values = [(":rate", AttributeValue::S("RATE#".into())), (":old", AttributeValue::S("RATE".into()))];
    delete_matching(client, table, filter, &values, dry_run, report).await
}

/// Deletes every item `filter` matches (counting them only, with `dry_run`), page by page.
async fn delete_matching(
    client: &Client,
    table: &str,
    filter: &str,
    values: &[(&str, AttributeValue)],
    dry_run: bool,
    mut report: StepReport,
) -> Result<StepReport, StoreError> {
    let mut start = None;
    loop {
        let (items, next) = scan_page(client, table, filter, values, start).await?;
        for item in items {
            report.found += 1;
            if dry_run {
                continue;
            }
            client
                .delete_item()
                .table_name(table)
                .key("pk", item["pk"].clone())
                .key("sk", item["sk"].clone())
                .send()
                .await
                .map_err(unavailable)?;
            report.migrated += 1;
        }
        start = next;
        if start.is_none() {
            return Ok(report);
        }
    }
}

/// Step 4: the per-address counters of login and the password grant (no client IP in the key).
async fn drop_whole_address_sign_in_counters(
    client: &Client,
    table: &str,
    dry_run: bool,
) -> Result<StepReport, StoreError> {
    let report = StepReport {
        step: 4,
        name: "delete per-address sign-in counters (now per address and IP)",
        ..Default::default()
    };
    let filter = "(begins_with(pk, :login) OR begins_with(pk, :token)) AND NOT contains(pk, :sep)";
    let values = [
        (":login", AttributeValue::S("RATE#login#email#".into())),
        (":token", AttributeValue::S("RATE#token#email#".into())),
        (":sep", AttributeValue::S(super::LOCK_KEY_SEP.to_string())),
    ];
    delete_matching(client, table, filter, &values, dry_run, report).await
}

/// Step 5: session items of earlier releases, cut to the tags and the user agent a session now
/// keeps.
async fn shrink_sessions(client: &Client, table: &str, dry_run: bool) -> Result<StepReport, StoreError> {
    let mut report =
        StepReport { step: 5, name: "keep sessions under 1 KB (spent tags, user agent)", ..Default::default() };
    let filter = "begins_with(sk, :session) AND attribute_not_exists(schema_version)";
    let values = [(":session", AttributeValue::S("SESSION#".into()))];
    let mut start = None;
    loop {
        let (items, next) = scan_page(client, table, filter, &values, start).await?;
        for item in items {
            report.found += 1;
            let Some(current) = item.get("current_hash").cloned() else {
                report.skipped += 1;
                continue;
            };
            if dry_run {
                continue;
            }
            let tags: Vec<AttributeValue> = item
                .get("spent_hashes")
                .and_then(|v| v.as_l().ok())
                .map(|l| {
                    l.iter()
                        .filter_map(|h| h.as_s().ok())
                        .map(|h| AttributeValue::S(super::spent_tag(h).to_owned()))
                        .collect()
                })
                .unwrap_or_default();
            let ua = item
                .get("user_agent")
                .and_then(|v| v.as_s().ok())
                .map(|u| super::kept_user_agent(u))
                .unwrap_or_default();
            let res = client
                .update_item()
                .table_name(table)
                .key("pk", item["pk"].clone())
                .key("sk", item["sk"].clone())
                .update_expression("SET spent_hashes = :tags, user_agent = :ua, schema_version = :v")
                .condition_expression("attribute_exists(pk) AND current_hash = :current")
                .expression_attribute_values(":tags", AttributeValue::L(tags))
                .expression_attribute_values(":ua", AttributeValue::S(ua))
                .expression_attribute_values(":current", current)
                .expression_attribute_values(":v", AttributeValue::N(SCHEMA_VERSION.to_string()))
                .send()
                .await;
            // Rotated (or revoked) meanwhile: the next run finds it again if it is still there.
            tally(res, &mut report)?;
        }
        start = next;
        if start.is_none() {
            return Ok(report);
        }
    }
}
