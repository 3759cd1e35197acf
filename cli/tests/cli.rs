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
    assert_eq!(kid_of(&show2, "AWSPREVIOUS").as_deref(), Some(first.as_str()));
    assert!(show2.contains("RS256"), "rotation keeps the algorithm: {show2}");
    for text in [&init, &show1, &rotated, &show2] {
        assert!(!text.contains("PRIVATE KEY") && !text.contains("secret\""), "{text}");
    }
    let (ok, err) = cli(&["keys", "show", "--secret-id", "does-not-exist"]);
    assert!(!ok && err.contains("signing keys"), "{err}");
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
    let sdk = shared::wiring::aws_config().await;
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
    let sdk = shared::wiring::aws_config().await;
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
    assert!(!store.verify_email(&ids[0], "hash-0", now, u0.session_version).await.unwrap());

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
    assert!(store.verify_email(&ids[0], "hash-0", now, u0.session_version).await.unwrap());
    // Idempotent: a second run (or one after an interruption) finds nothing left.
    let (ok, out) = migrate(&table, &[]);
    assert!(ok && out.contains("0 found, migrated 0"), "{out}");
}
