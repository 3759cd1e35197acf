//! The CLI end to end against moto's Secrets Manager (run through infra/test.sh).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::process::{Command, Stdio};

fn cli(args: &[&str]) -> (bool, String) {
    assert!(
        std::env::var("AWS_ENDPOINT_URL_SECRETS_MANAGER").is_ok(),
        "run through infra/test.sh: AWS_ENDPOINT_URL_SECRETS_MANAGER must point at moto"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_secure-auth")).args(args).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

fn kid_of(show: &str, stage: &str) -> Option<String> {
    show.lines()
        .find(|l| l.starts_with(stage))
        .and_then(|l| l.split_whitespace().nth(1))
        .filter(|k| *k != "-")
        .map(str::to_owned)
}

#[test]
fn given_keys_init_rotate_and_show_then_stages_move_and_no_key_material_is_printed() {
    let secret = format!("cli-{}", std::process::id());
    let (ok, init) = cli(&["keys", "init", "--secret-id", &secret, "--alg", "rs256"]);
    assert!(ok, "{init}");
    let (ok, again) = cli(&["keys", "init", "--secret-id", &secret]);
    assert!(ok && again == init, "init is idempotent: {again}");
    let (_, show1) = cli(&["keys", "show", "--secret-id", &secret]);
    let first = kid_of(&show1, "AWSCURRENT").expect(&show1);
    assert!(show1.contains("RS256"), "{show1}");
    assert_eq!(kid_of(&show1, "AWSPREVIOUS"), None);

    let (ok, rotated) = cli(&["keys", "rotate", "--secret-id", &secret]);
    assert!(ok, "{rotated}");
    let (_, show2) = cli(&["keys", "show", "--secret-id", &secret]);
    let second = kid_of(&show2, "AWSCURRENT").unwrap();
    assert_ne!(first, second);
    let next = show1.lines().find(|l| l.starts_with("AWSCURRENT")).and_then(|l| l.split(", next ").nth(1));
    assert_eq!(next.and_then(|n| n.split_whitespace().next()), Some(second.as_str()), "the published next key signs");
    assert_eq!(kid_of(&show2, "AWSPREVIOUS").as_deref(), Some(first.as_str()));
    assert!(show2.contains("RS256"), "rotation keeps the algorithm: {show2}");
    for text in [&init, &show1, &rotated, &show2] {
        assert!(!text.contains("PRIVATE KEY") && !text.contains("secret\""), "{text}");
    }
    let (ok, err) = cli(&["keys", "show", "--secret-id", "does-not-exist"]);
    assert!(!ok && err.contains("signing keys"), "{err}");
}

/// A TCP relay to `upstream` (host:port) that records the first line of every connection: what
/// an HTTP proxy sees (`POST http://host:port/ HTTP/1.1`, the absolute form a client sends to a
/// proxy). The emulator accepts the absolute form, so the relay needs no rewriting.
fn relay(upstream: String) -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use std::io::Read;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = lines.clone();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let (seen, upstream) = (seen.clone(), upstream.clone());
            std::thread::spawn(move || {
                let mut first = [0u8; 512];
                let mut client = client;
                let Ok(n) = client.read(&mut first) else { return };
                let text = String::from_utf8_lossy(&first[..n]);
                seen.lock().unwrap().push(text.lines().next().unwrap_or_default().to_owned());
                let Ok(mut server) = std::net::TcpStream::connect(&upstream) else { return };
                if server.write_all(&first[..n]).is_err() {
                    return;
                }
                let (mut c2, mut s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || std::io::copy(&mut s2, &mut c2));
                let _ = std::io::copy(&mut client, &mut server);
            });
        }
    });
    (url, lines)
}

#[test]
fn given_https_proxy_and_http_proxy_then_the_cli_reaches_aws_through_the_proxy() {
    let endpoint = std::env::var("AWS_ENDPOINT_URL_SECRETS_MANAGER").expect("run through infra/test.sh");
    let upstream = endpoint.trim_start_matches("http://").trim_end_matches('/').to_owned();
    let (proxy, lines) = relay(upstream.clone());
    let secret = format!("cli-proxy-{}", std::process::id());
    let out = Command::new(env!("CARGO_BIN_EXE_secure-auth"))
        .args(["keys", "init", "--secret-id", &secret])
        .env("HTTP_PROXY", &proxy)
        .env("HTTPS_PROXY", &proxy)
        .env_remove("NO_PROXY")
        .env_remove("no_proxy")
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{text}");
    let lines = lines.lock().unwrap().clone();
    assert!(
        !lines.is_empty() && lines.iter().all(|l| l.contains(&format!("http://{upstream}/"))),
        "every call went through the proxy, in the absolute form: {lines:?}"
    );
}

/// Runs `secure-auth users …` against `table`, feeding `stdin`.
fn users(table: &str, args: &[&str], stdin: &str) -> (bool, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_secure-auth"))
        .arg("users")
        .args(args)
        .env("TABLE_NAME", table)
        .env("ARGON2_MEMORY_KIB", "256")
        .env("ARGON2_ITERATIONS", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

#[tokio::test]
async fn given_users_commands_then_the_first_admin_is_made_and_the_admin_rules_hold() {
    assert!(std::env::var("AWS_ENDPOINT_URL_DYNAMODB").is_ok(), "run through infra/test.sh (DynamoDB Local)");
    let sdk = shared::wiring::aws_config().await.unwrap();
    let table = format!("cli-{}", uuid::Uuid::new_v4().simple());
    shared::store::dynamo::DynamoStore::create_table(&aws_sdk_dynamodb::Client::new(&sdk), &table).await.unwrap();
    let pw = "violet-tractor-sunrise-42\n";

    let (ok, out) = users(&table, &["create-admin", "--email", "Root@Example.com"], pw);
    assert!(ok, "{out}");
    let root: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        (root["email"].as_str(), root["is_superuser"].as_bool(), root["is_verified"].as_bool()),
        (Some("root@example.com"), Some(true), Some(true))
    );
    assert!(!out.contains("violet"), "the password is never printed");
    let (ok, out) = users(&table, &["create-admin", "--email", "root@example.com"], pw);
    assert!(!ok && out.contains("already registered"), "{out}");
    let (ok, out) = users(&table, &["create-admin", "--email", "weak@example.com"], "password\n");
    assert!(!ok && out.contains("password"), "{out}");
    let (ok, _) = users(&table, &["create-admin", "--email", "second@example.com"], pw);
    assert!(ok);

    let (ok, out) = users(&table, &["list"], "");
    assert!(ok);
    let emails: Vec<String> = out
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["email"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(emails, ["root@example.com", "second@example.com"]);
    let (ok, out) = users(&table, &["show", "second@example.com"], "");
    assert!(ok && out.contains("\"is_active\":true"), "{out}");
    for cmd in ["unlock", "revoke-sessions"] {
        let (ok, out) = users(&table, &[cmd, "second@example.com"], "");
        assert!(ok, "{cmd}: {out}");
    }
    let (ok, out) = users(&table, &["deactivate", "second@example.com"], "");
    assert!(ok && out.contains("\"is_active\":false"), "{out}");
    let (_, out) = users(&table, &["list", "--status", "inactive"], "");
    assert_eq!(out.lines().count(), 1);
    // With `second` inactive, root is the last active admin: it cannot be deactivated or deleted.
    let (ok, out) = users(&table, &["deactivate", "root@example.com"], "");
    assert!(!ok && out.contains("last active administrator"), "{out}");
    let (ok, out) = users(&table, &["delete", "root@example.com"], "");
    assert!(!ok && out.contains("last active administrator"), "{out}");
    let (ok, out) = users(&table, &["activate", "second@example.com"], "");
    assert!(ok, "{out}");
    // A user who lost the authenticator and the codes: the operator removes the factor.
    use shared::store::{MfaStore, SessionStore, UserLookup};
    let store = shared::store::dynamo::DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), &table);
    let second = store.find_user_by_email("second@example.com").await.unwrap().unwrap();
    assert!(store.put_pending_mfa(&second.id, "v1.sealed", 0).await.unwrap());
    let codes = ["h1".to_owned()];
    let sv = second.session_version;
    assert!(store.enable_mfa(&second.id, "v1.sealed", 1, &codes, sv, "none", 0).await.unwrap().is_some());
    let (ok, out) = users(&table, &["show", "second@example.com"], "");
    assert!(ok && out.contains("\"mfa_enabled\":true"), "{out}");
    let (ok, out) = users(&table, &["mfa-reset", "second@example.com"], "");
    assert!(ok && out.contains("\"mfa_enabled\":false"), "{out}");
    assert!(store.get_mfa(&second.id).await.unwrap().is_none());
    assert!(store.list_sessions(&second.id, 0).await.unwrap().is_empty());
    let (ok, out) = users(&table, &["delete", "second@example.com"], "");
    assert!(ok, "{out}");
    let (ok, out) = users(&table, &["show", "second@example.com"], "");
    assert!(!ok && out.contains("no such user"), "{out}");
}

/// Runs `secure-auth migrate …` against `table`.
fn migrate(table: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_secure-auth"))
        .arg("migrate")
        .args(args)
        .env("TABLE_NAME", table)
        .output()
        .unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[tokio::test]
async fn given_one_time_tokens_in_the_old_format_then_migrate_binds_them_once_and_their_links_keep_working() {
    use aws_sdk_dynamodb::types::AttributeValue as V;
    use shared::store::{OneTimeKind, OneTimeTokenStore, UserLookup, UserRegistry};
    let sdk = shared::wiring::aws_config().await.unwrap();
    let ddb = aws_sdk_dynamodb::Client::new(&sdk);
    let table = format!("migrate-{}", uuid::Uuid::new_v4().simple());
    shared::store::dynamo::DynamoStore::create_table(&ddb, &table).await.unwrap();
    let store = shared::store::dynamo::DynamoStore::new(ddb.clone(), &table);
    let now = shared::now();
    let mut ids = Vec::new();
    for i in 0..3 {
        let user = shared::store::User {
            id: uuid::Uuid::new_v4().to_string(),
            email: format!("old-{i}-{}@example.com", uuid::Uuid::new_v4().simple()),
            name: None,
            password_hash: "$argon2id$v=19$m=256,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA".into(),
            is_active: true,
            is_verified: false,
            is_superuser: false,
            created_at: now,
            updated_at: now,
            last_login_at: None,
            session_version: 1 + i,
            mfa_enabled: false,
            pending_signup: false,
            registrations: Vec::new(),
        };
        store.create_user(&user).await.unwrap();
        // A verification token as the previous release wrote it: no `sv`, no `schema_version`.
        ddb.put_item()
            .table_name(&table)
            .item("pk", V::S(format!("USER#{}", user.id)))
            .item("sk", V::S("OTT#VERIFY_EMAIL".into()))
            .item("type", V::S("one_time_token".into()))
            .item("token_hash", V::S(format!("hash-{i}")))
            .item("expires_at", V::N((now + 3600).to_string()))
            .item("ttl", V::N((now + 3600).to_string()))
            .send()
            .await
            .unwrap();
        ids.push(user.id);
    }
    // Unmigrated, an old token binds to no session version: it cannot be spent.
    let u0 = store.get_user(&ids[0]).await.unwrap().unwrap();
    assert!(store.peek_one_time(OneTimeKind::VerifyEmail, &ids[0], "hash-0", now).await.unwrap().is_none());
    assert!(!store.verify_email(&ids[0], "hash-0", now, u0.session_version, None).await.unwrap());

    let (ok, out) = migrate(&table, &["--dry-run"]);
    assert!(ok && out.contains("3 found, would migrate 3"), "{out}");
    assert!(store.peek_one_time(OneTimeKind::VerifyEmail, &ids[0], "hash-0", now).await.unwrap().is_none(), "dry run");
    let (ok, out) = migrate(&table, &[]);
    assert!(ok && out.contains("3 found, migrated 3, 0 skipped"), "{out}");
    for (i, id) in ids.iter().enumerate() {
        let t = store.peek_one_time(OneTimeKind::VerifyEmail, id, &format!("hash-{i}"), now).await.unwrap().unwrap();
        assert_eq!(t.session_version, 1 + i as u64, "bound to the user's version at migration");
    }
    let item = ddb
        .get_item()
        .table_name(&table)
        .key("pk", V::S(format!("USER#{}", ids[1])))
        .key("sk", V::S("OTT#VERIFY_EMAIL".into()))
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    assert_eq!(item["schema_version"], V::N(shared::store::migrate::SCHEMA_VERSION.to_string()));
    // The link works after the upgrade, and only while the user's version stands.
    assert!(store.verify_email(&ids[0], "hash-0", now, u0.session_version, None).await.unwrap());
    // Idempotent: a second run (or one after an interruption) finds nothing left.
    let (ok, out) = migrate(&table, &[]);
    assert!(ok && out.contains("0 found, migrated 0"), "{out}");
}

#[tokio::test]
async fn given_users_and_rate_items_in_the_schema_2_format_then_migrate_moves_users_to_the_sharded_listing_once() {
    use aws_sdk_dynamodb::types::AttributeValue as V;
    use shared::store::AdminStore;
    let sdk = shared::wiring::aws_config().await.unwrap();
    let ddb = aws_sdk_dynamodb::Client::new(&sdk);
    let table = format!("migrate-{}", uuid::Uuid::new_v4().simple());
    shared::store::dynamo::DynamoStore::create_table(&ddb, &table).await.unwrap();
    let store = shared::store::dynamo::DynamoStore::new(ddb.clone(), &table);
    let now = shared::now();
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let mut emails = Vec::new();
    let mut ids = Vec::new();
    for i in 0..7 {
        let id = uuid::Uuid::new_v4().to_string();
        let email = format!("s2-{i}-{tag}@example.com");
        // A user as schema 2 wrote it: in gsi1's single partition, no gsi2 keys, no version.
        let mut put = ddb
            .put_item()
            .table_name(&table)
            .item("pk", V::S(format!("USER#{id}")))
            .item("sk", V::S("PROFILE".into()))
            .item("type", V::S("user".into()))
            .item("id", V::S(id.clone()))
            .item("email", V::S(email.clone()))
            .item("password_hash", V::S("$argon2id$v=19$m=256,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA".into()))
            .item("is_active", V::Bool(true))
            .item("is_verified", V::Bool(true))
            .item("is_superuser", V::Bool(false))
            .item("created_at", V::N(now.to_string()))
            .item("updated_at", V::N(now.to_string()))
            .item("sv", V::N("1".into()))
            .item("gsi1pk", V::S("USERS".into()))
            .item("gsi1sk", V::S(email.clone()));
        if i % 2 == 0 {
            put = put.item("last_login_at", V::N((now - i).to_string()));
        }
        put.send().await.unwrap();
        emails.push(email);
        ids.push(id);
    }
    // Rate-limit items of the per-window design.
    for w in [1_000, 1_060] {
        ddb.put_item()
            .table_name(&table)
            .item("pk", V::S(format!("RATE#login#ip#192.0.2.1#{w}")))
            .item("sk", V::S("RATE".into()))
            .item("hits", V::N("3".into()))
            .item("expires_at", V::N((now + 60).to_string()))
            .send()
            .await
            .unwrap();
    }
    assert!(store.list_users("s2-", None, 100).await.unwrap().0.is_empty(), "not in the new index yet");
    let first = format!("USER#{}", ids[0]);
    let (written, login_at) = login_index_writes(&ddb, &table, &first).await;
    assert_eq!(written, vec!["gsi1".to_owned()], "schema 2: logins write gsi1");

    let (ok, out) = migrate(&table, &["--dry-run"]);
    assert!(ok && out.contains("7 found, would migrate 7") && out.contains("2 found, would migrate 2"), "{out}");
    let (ok, out) = migrate(&table, &[]);
    assert!(ok && out.contains("7 found, migrated 7, 0 skipped") && out.contains("2 found, migrated 2"), "{out}");

    // Listed in email order across the shards, page by page with the cursor, each user once,
    // with the login time read beside the index.
    let mut seen = Vec::new();
    let mut after: Option<(String, String)> = None;
    loop {
        let cursor = after.as_ref().map(|(e, i)| (e.as_str(), i.as_str()));
        let (page, more) = store.list_users("s2-", cursor, 3).await.unwrap();
        assert!(page.len() <= 3);
        seen.extend(page.iter().map(|u| (u.email.clone(), u.last_login_at)));
        after = page.last().map(|u| (u.email.clone(), u.id.clone()));
        if !more {
            break;
        }
    }
    let expected: Vec<(String, Option<i64>)> = emails
        .iter()
        .enumerate()
        .map(|(i, e)| (e.clone(), if i == 0 { Some(login_at) } else { (i % 2 == 0).then(|| now - i as i64) }))
        .collect();
    assert_eq!(seen, expected);
    let items = store.scan_all().await.unwrap();
    for item in items.iter().filter(|i| i["sk"] == V::S("PROFILE".into())) {
        assert!(!item.contains_key("gsi1pk") && !item.contains_key("gsi1sk"), "{item:?}");
        assert!(item["gsi2pk"].as_s().unwrap().starts_with("USERS#"));
        assert_eq!(item["schema_version"], V::N(shared::store::migrate::SCHEMA_VERSION.to_string()));
    }
    assert!(!items.iter().any(|i| i["sk"] == V::S("RATE".into())), "old rate items deleted");
    let shards: std::collections::HashSet<&str> =
        items.iter().filter_map(|i| i.get("gsi2pk")).filter_map(|v| v.as_s().ok()).map(String::as_str).collect();
    assert!(shards.len() > 1, "users spread over shards: {shards:?}");
    assert!(login_index_writes(&ddb, &table, &first).await.0.is_empty(), "a login writes no index any more");
    // Idempotent: nothing is left for a second run (or a run after an interruption).
    let (ok, out) = migrate(&table, &[]);
    assert!(ok && out.matches(": 0 found, migrated 0").count() == 5, "{out}");
}

/// The indexes that the write a login makes to a user item (`SET last_login_at` to a new time)
/// consumes capacity in, as DynamoDB Local reports them.
async fn login_index_writes(ddb: &aws_sdk_dynamodb::Client, table: &str, pk: &str) -> (Vec<String>, i64) {
    static LOGINS: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(1);
    let at = shared::now() + 1000 * LOGINS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    use aws_sdk_dynamodb::types::{AttributeValue as V, ReturnConsumedCapacity};
    let out = ddb
        .update_item()
        .table_name(table)
        .key("pk", V::S(pk.to_owned()))
        .key("sk", V::S("PROFILE".into()))
        .update_expression("SET last_login_at = :now")
        .expression_attribute_values(":now", V::N(at.to_string()))
        .return_consumed_capacity(ReturnConsumedCapacity::Indexes)
        .send()
        .await
        .unwrap();
    let mut names: Vec<String> = out
        .consumed_capacity
        .and_then(|c| c.global_secondary_indexes)
        .map(|m| m.into_keys().collect())
        .unwrap_or_default();
    names.sort();
    (names, at)
}

#[tokio::test]
async fn given_pending_registrations_locks_sessions_and_counters_of_schema_3_then_migrate_keeps_them_working() {
    use aws_sdk_dynamodb::types::AttributeValue as V;
    use shared::store::{
        LockGate, LockoutStore, NewRegistration, OneTimeKind, OneTimeTokenStore, Registration, SessionStore,
        UserLookup, UserRegistry,
    };
    let sdk = shared::wiring::aws_config().await.unwrap();
    let ddb = aws_sdk_dynamodb::Client::new(&sdk);
    let table = format!("migrate-{}", uuid::Uuid::new_v4().simple());
    shared::store::dynamo::DynamoStore::create_table(&ddb, &table).await.unwrap();
    let store = shared::store::dynamo::DynamoStore::new(ddb.clone(), &table);
    let now = shared::now();
    let email = format!("pending-{}@example.com", uuid::Uuid::new_v4().simple());
    // A pending registration as schema 3 wrote it: an unverified user with no `pending_signup`
    // or `registrations`, and its verification link.
    let user = shared::store::User {
        id: uuid::Uuid::new_v4().to_string(),
        email: email.clone(),
        name: Some("Old".into()),
        password_hash: "$argon2id$v=19$m=256,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA".into(),
        is_active: true,
        is_verified: false,
        is_superuser: false,
        created_at: now,
        updated_at: now,
        last_login_at: None,
        session_version: 1,
        mfa_enabled: false,
        pending_signup: false,
        registrations: Vec::new(),
    };
    store.create_user(&user).await.unwrap();
    let user_key = |sk: &str| {
        std::collections::HashMap::from([
            ("pk".to_owned(), V::S(format!("USER#{}", user.id))),
            ("sk".to_owned(), V::S(sk.to_owned())),
        ])
    };
    ddb.update_item()
        .table_name(&table)
        .set_key(Some(user_key("PROFILE")))
        .update_expression("SET schema_version = :three")
        .expression_attribute_values(":three", V::N("3".into()))
        .send()
        .await
        .unwrap();
    store.put_one_time(OneTimeKind::VerifyEmail, &user.id, "link", now + 3600, 1).await.unwrap();
    // Lock items of the address and of one IP, and a session (of a verified user).
    let pair = shared::store::pair_lock_key(&email, "198.51.100.7");
    for key in [email.as_str(), pair.as_str()] {
        store.lock_gate(key, now, 3600).await.unwrap();
    }
    let session = shared::store::Session {
        user_id: user.id.clone(),
        id: "s-old".into(),
        current_hash: "h".into(),
        previous_hash: None,
        spent_hashes: vec![],
        rotated_at: now,
        created_at: now,
        last_used_at: now,
        idle_expires_at: now + 600,
        absolute_expires_at: now + 6000,
        ip: "198.51.100.7".into(),
        user_agent: "old".into(),
        session_version: 1,
        amr: vec!["pwd".into()],
    };
    store.create_session(&session).await.unwrap();
    // A session as schema 4 wrote it: whole spent hashes and a long user agent, no stamp.
    let old_hashes: Vec<String> = (0..16).map(|i| shared::tokens::hash_secret(&format!("old-{i}"))).collect();
    ddb.put_item()
        .table_name(&table)
        .item("pk", V::S(format!("USER#{}", user.id)))
        .item("sk", V::S("SESSION#s-older".into()))
        .item("type", V::S("session".into()))
        .item("user_id", V::S(user.id.clone()))
        .item("id", V::S("s-older".into()))
        .item("current_hash", V::S("current".into()))
        .item("previous_hash", V::S("previous".into()))
        .item("spent_hashes", V::L(old_hashes.iter().map(|h| V::S(h.clone())).collect()))
        .item("rotated_at", V::N(now.to_string()))
        .item("created_at", V::N(now.to_string()))
        .item("last_used_at", V::N(now.to_string()))
        .item("idle_expires_at", V::N((now + 600).to_string()))
        .item("absolute_expires_at", V::N((now + 6000).to_string()))
        .item("ip", V::S("198.51.100.7".into()))
        .item("user_agent", V::S("Mozilla/5.0 ".repeat(21)))
        .item("sv", V::N("1".into()))
        .item("ttl", V::N((now + 600).to_string()))
        .send()
        .await
        .unwrap();
    // Counters: two of the whole address (schema 3's sign-in limits), and two that stay.
    let counter = |key: String| {
        ddb.put_item()
            .table_name(&table)
            .item("pk", V::S(format!("RATE#{key}")))
            .item("sk", V::S("WINDOW".into()))
            .item("ws", V::N(now.to_string()))
            .item("hits", V::N("3".into()))
            .item("ttl", V::N((now + 120).to_string()))
            .send()
    };
    for key in [
        format!("login#email#{email}"),
        format!("token#email#{email}"),
        format!("login#email#{pair}"),
        format!("signup#email#{email}"),
    ] {
        counter(key).await.unwrap();
    }

    let (ok, out) = migrate(&table, &["--dry-run"]);
    assert!(ok && out.contains("step 4") && out.contains("2 found, would migrate 2"), "{out}");
    let (ok, out) = migrate(&table, &[]);
    assert!(ok && out.contains("2 found, migrated 2") && out.contains("1 found, migrated 1"), "{out}");
    let older = store.get_session(&user.id, "s-older", now).await.unwrap().unwrap();
    assert!(older.spent_hashes.iter().all(|h| h.len() == shared::store::SPENT_TAG_LEN));
    assert!(older.user_agent.len() <= shared::store::USER_AGENT_KEPT);
    assert!(older.has_spent(&old_hashes[15]), "reuse detection keeps working on the tags");
    let rate_keys: Vec<String> = store
        .scan_all()
        .await
        .unwrap()
        .iter()
        .filter_map(|i| i["pk"].as_s().ok().filter(|k| k.starts_with("RATE#")).cloned())
        .collect();
    let mut rate_keys = rate_keys;
    rate_keys.sort();
    let mut kept = vec![format!("RATE#login#email#{pair}"), format!("RATE#signup#email#{email}")];
    kept.sort();
    assert_eq!(rate_keys, kept);
    // The pending registration reads as an account no sign-up changes, and its link and
    // password still verify it; the locks and the session stand.
    let read = store.get_user(&user.id).await.unwrap().unwrap();
    assert!(!read.pending_signup && read.registrations.is_empty() && !read.is_verified);
    let all = read.with_registration(Registration { password_hash: "attacker".into(), name: None, created_at: now });
    let sneak = NewRegistration {
        user_id: &user.id,
        read: &read,
        registrations: &all,
        token_hash: Some("attacker-link"),
        expires_at: now + 60,
        now,
    };
    assert!(!store.add_registration(&sneak).await.unwrap(), "a sign-up does not change it");
    assert!(matches!(store.lock_gate(&pair, now, 3600).await.unwrap(), LockGate::Open { attempt: 2, .. }));
    assert!(store.get_session(&user.id, "s-old", now).await.unwrap().is_some());
    assert!(store.verify_email(&user.id, "link", now, 1, None).await.unwrap());
    // Idempotent.
    let (ok, out) = migrate(&table, &[]);
    assert!(ok && !out.contains("migrated 1") && !out.contains("migrated 2"), "{out}");
}
