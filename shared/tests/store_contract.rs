//! One contract suite, run against both stores: the in-memory twin and DynamoDB Local.
//! Every test is instantiated twice by `contract!`. The DynamoDB variants need
//! `AWS_ENDPOINT_URL_DYNAMODB` (set by `infra/test.sh`); each test gets its own table.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use futures::future::join_all;
use shared::store::dynamo::DynamoStore;
use shared::store::memory::MemoryStore;
use shared::store::{
    AdminWrite, EmailChange, LockGate, MailClaim, MfaChallenge, MfaProof, MfaSignIn, MfaSpend, NewRegistration,
    OneTimeKind, RateCount, Registration, Rotation, Session, Store, StoreError, User, UserChanges,
};

async fn memory() -> Arc<dyn Store> {
    Arc::new(MemoryStore::new())
}

async fn dynamo() -> Arc<dyn Store> {
    assert!(
        std::env::var("AWS_ENDPOINT_URL_DYNAMODB").is_ok(),
        "AWS_ENDPOINT_URL_DYNAMODB is not set: run the suite through infra/test.sh, which starts DynamoDB Local"
    );
    let sdk = shared::wiring::aws_config().await.unwrap();
    let client = aws_sdk_dynamodb::Client::new(&sdk);
    let table = format!("contract-{}", uuid::Uuid::new_v4().simple());
    DynamoStore::create_table(&client, &table).await.expect("create table in DynamoDB Local");
    Arc::new(DynamoStore::new(client, table))
}

macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod in_memory { $( #[tokio::test(flavor = "multi_thread", worker_threads = 4)] async fn $name() { super::$name(super::memory().await).await } )* }
        mod dynamodb_local { $( #[tokio::test(flavor = "multi_thread", worker_threads = 4)] async fn $name() { super::$name(super::dynamo().await).await } )* }
    };
}

contract!(
    given_new_user_when_created_then_found_by_id_and_email,
    given_concurrent_signups_for_one_address_then_exactly_one_user_exists,
    given_50_concurrent_attempts_then_no_increment_is_lost,
    given_50_concurrent_wrong_passwords_then_at_most_threshold_pass_the_gate,
    given_lock_then_gate_refuses_until_expiry_and_backoff_is_remembered,
    given_expired_lock_item_not_yet_deleted_then_it_counts_as_absent,
    given_clear_then_count_restarts,
    given_concurrent_rotations_with_one_token_then_exactly_one_wins,
    given_retried_rotation_that_landed_then_the_store_shows_the_successor_it_holds,
    given_expired_session_not_yet_deleted_then_it_is_absent_and_cannot_rotate,
    given_verification_token_when_consumed_concurrently_then_exactly_once,
    given_newer_verification_token_then_older_is_invalid,
    given_concurrent_sign_ups_for_a_pending_address_then_each_keeps_its_registration,
    given_a_registration_chosen_at_verification_then_it_becomes_the_account_and_the_others_go,
    given_an_account_not_pending_sign_up_then_no_registration_is_added,
    given_expired_verification_token_not_yet_deleted_then_refused,
    given_stale_expected_hash_then_upgrade_is_refused,
    given_missing_user_then_updates_report_absence,
    given_100_concurrent_hits_on_a_limit_of_10_then_exactly_10_count,
    given_expired_rate_item_not_yet_deleted_then_counting_restarts,
    given_concurrent_hits_as_a_window_opens_then_exactly_the_limit_count_and_all_carry_the_previous,
    given_reset_token_confirmed_concurrently_then_exactly_one_reset_and_version_bumped,
    given_email_change_then_the_claim_moves_atomically_and_the_token_is_single_use,
    given_email_change_racing_a_signup_for_the_same_address_then_exactly_one_owns_it,
    given_sessions_then_they_list_per_user_and_revoke_all_but_one,
    given_password_change_then_it_is_conditional_and_bumps_the_version,
    given_account_clear_then_every_ip_lock_of_that_account_goes_too,
    given_users_then_the_listing_is_ordered_by_email_filtered_by_prefix_and_pages_exactly_once,
    given_two_admins_demoting_each_other_concurrently_then_one_admin_remains,
    given_admin_updates_then_email_claims_move_and_taken_addresses_and_stale_reads_are_refused,
    given_an_admin_delete_then_nothing_of_the_user_remains,
    given_many_rotations_then_the_session_remembers_a_bounded_list_of_spent_hashes,
    given_an_admins_read_then_both_stores_call_the_same_changes_stale_and_keep_the_others,
    given_a_mail_job_then_one_of_concurrent_claims_wins_and_a_sent_job_is_never_claimed_again,
    given_a_claim_whose_lease_ran_out_or_was_released_then_another_delivery_may_send,
    given_a_pending_factor_then_it_activates_once_and_moves_the_callers_session,
    given_one_totp_step_or_recovery_code_spent_concurrently_then_exactly_one_passes,
    given_a_challenge_then_it_completes_once_and_dies_after_max_failures_or_expiry,
    given_disable_reset_or_delete_then_no_factor_remains_and_the_flag_clears,
);

const NOW: i64 = 1_800_000_000;

fn user(email: &str) -> User {
    User {
        id: uuid::Uuid::new_v4().to_string(),
        email: email.to_owned(),
        name: Some("Ada".into()),
        password_hash: "$argon2id$v=19$m=256,t=1,p=1$c2FsdHNhbHQ$aGFzaA".into(),
        is_active: true,
        is_verified: false,
        is_superuser: false,
        created_at: NOW,
        updated_at: NOW,
        last_login_at: None,
        session_version: 1,
        mfa_enabled: false,
        pending_signup: false,
        registrations: Vec::new(),
    }
}

fn session(user_id: &str, hash: &str) -> Session {
    Session {
        user_id: user_id.into(),
        id: uuid::Uuid::new_v4().simple().to_string(),
        current_hash: hash.into(),
        previous_hash: None,
        spent_hashes: vec![],
        rotated_at: NOW,
        created_at: NOW,
        last_used_at: NOW,
        idle_expires_at: NOW + 100,
        absolute_expires_at: NOW + 1000,
        ip: "192.0.2.1".into(),
        user_agent: "ua".into(),
        session_version: 1,
        amr: vec!["pwd".into()],
    }
}

async fn given_new_user_when_created_then_found_by_id_and_email(s: Arc<dyn Store>) {
    let u = user("ada@example.com");
    s.create_user(&u).await.unwrap();
    assert_eq!(s.get_user(&u.id).await.unwrap(), Some(u.clone()));
    assert_eq!(s.find_user_by_email("ada@example.com").await.unwrap(), Some(u.clone()));
    assert_eq!(s.find_user_by_email("nobody@example.com").await.unwrap(), None);
    s.record_login(&u.id, NOW + 5).await.unwrap();
    assert_eq!(s.get_user(&u.id).await.unwrap().unwrap().last_login_at, Some(NOW + 5));
}

async fn given_concurrent_signups_for_one_address_then_exactly_one_user_exists(s: Arc<dyn Store>) {
    let results = join_all((0..20).map(|_| {
        let s = s.clone();
        async move { s.create_user(&user("race@example.com")).await }
    }))
    .await;
    let ok = results.iter().filter(|r| r.is_ok()).count();
    let taken = results.iter().filter(|r| matches!(r, Err(StoreError::EmailTaken))).count();
    assert_eq!((ok, taken), (1, 19), "{results:?}");
    let winner = s.find_user_by_email("race@example.com").await.unwrap().unwrap();
    assert!(s.get_user(&winner.id).await.unwrap().is_some());
}

async fn given_50_concurrent_attempts_then_no_increment_is_lost(s: Arc<dyn Store>) {
    let gates = join_all((0..50).map(|_| {
        let s = s.clone();
        async move { s.lock_gate("victim@example.com", NOW, 3600).await.unwrap() }
    }))
    .await;
    let mut attempts: Vec<u32> = gates
        .iter()
        .map(|g| match g {
            LockGate::Open { attempt, .. } => *attempt,
            LockGate::Locked { .. } => panic!("never locked"),
        })
        .collect();
    attempts.sort_unstable();
    assert_eq!(attempts, (1..=50).collect::<Vec<_>>());
}

async fn given_50_concurrent_wrong_passwords_then_at_most_threshold_pass_the_gate(s: Arc<dyn Store>) {
    const THRESHOLD: u32 = 5;
    // The service's flow: gate, then a password check only for attempt <= threshold, then
    // lock once the threshold is reached.
    let outcomes = join_all((0..50).map(|_| {
        let s = s.clone();
        async move {
            match s.lock_gate("bf@example.com", NOW, 3600).await.unwrap() {
                LockGate::Locked { .. } => (false, false),
                LockGate::Open { attempt, .. } => {
                    let checked = attempt <= THRESHOLD;
                    let locked = if attempt >= THRESHOLD {
                        s.lock("bf@example.com", THRESHOLD, NOW + 900, NOW, 3600).await.unwrap()
                    } else {
                        false
                    };
                    (checked, locked)
                }
            }
        }
    }))
    .await;
    let checked = outcomes.iter().filter(|o| o.0).count();
    let locks = outcomes.iter().filter(|o| o.1).count();
    assert_eq!(checked, THRESHOLD as usize, "password checks past the gate");
    assert_eq!(locks, 1, "exactly one call locks");
    assert_eq!(s.lock_gate("bf@example.com", NOW + 1, 3600).await.unwrap(), LockGate::Locked { until: NOW + 900 });
}

async fn given_lock_then_gate_refuses_until_expiry_and_backoff_is_remembered(s: Arc<dyn Store>) {
    for _ in 0..3 {
        s.lock_gate("k@example.com", NOW, 3600).await.unwrap();
    }
    // Below the threshold nothing locks.
    assert!(!s.lock("k@example.com", 5, NOW + 60, NOW, 3600).await.unwrap());
    assert!(s.lock("k@example.com", 3, NOW + 60, NOW, 3600).await.unwrap());
    assert!(!s.lock("k@example.com", 3, NOW + 60, NOW, 3600).await.unwrap(), "already locked");
    assert_eq!(s.lock_gate("k@example.com", NOW + 59, 3600).await.unwrap(), LockGate::Locked { until: NOW + 60 });
    assert_eq!(
        s.lock_gate("k@example.com", NOW + 60, 3600).await.unwrap(),
        LockGate::Open { attempt: 1, previous_locks: 1 }
    );
}

async fn given_expired_lock_item_not_yet_deleted_then_it_counts_as_absent(s: Arc<dyn Store>) {
    for _ in 0..4 {
        s.lock_gate("old@example.com", NOW, 10).await.unwrap();
    }
    assert_eq!(
        s.lock_gate("old@example.com", NOW + 11, 10).await.unwrap(),
        LockGate::Open { attempt: 1, previous_locks: 0 }
    );
    // An expired lock does not hold either.
    s.lock("old@example.com", 1, NOW + 15, NOW + 11, 10).await.unwrap();
    assert!(matches!(s.lock_gate("old@example.com", NOW + 12, 10).await.unwrap(), LockGate::Locked { .. }));
    assert!(matches!(s.lock_gate("old@example.com", NOW + 26, 10).await.unwrap(), LockGate::Open { attempt: 1, .. }));
}

async fn given_clear_then_count_restarts(s: Arc<dyn Store>) {
    s.lock_gate("c@example.com", NOW, 3600).await.unwrap();
    s.lock_gate("c@example.com", NOW, 3600).await.unwrap();
    s.clear_lockout("c@example.com").await.unwrap();
    assert_eq!(
        s.lock_gate("c@example.com", NOW, 3600).await.unwrap(),
        LockGate::Open { attempt: 1, previous_locks: 0 }
    );
}

async fn given_concurrent_rotations_with_one_token_then_exactly_one_wins(s: Arc<dyn Store>) {
    let x = session("u1", "h0");
    s.create_session(&x).await.unwrap();
    let results = join_all((0..10).map(|i| {
        let (s, id) = (s.clone(), x.id.clone());
        async move { s.rotate_session("u1", &id, "h0", &format!("h1-{i}"), NOW + 1, NOW + 200, &[]).await.unwrap() }
    }))
    .await;
    let winners = results.iter().filter(|r| **r == Rotation::Rotated).count();
    assert_eq!(winners, 1, "{results:?}");
    let live = s.get_session("u1", &x.id, NOW + 1).await.unwrap().unwrap();
    assert!(live.current_hash.starts_with("h1-"));
    assert_eq!(live.previous_hash.as_deref(), Some("h0"));
    assert_eq!(live.idle_expires_at, NOW + 200);
    for r in results.iter().filter(|r| **r != Rotation::Rotated) {
        match r {
            Rotation::Conflict(cur) => assert_eq!(cur.previous_hash.as_deref(), Some("h0")),
            other => panic!("loser saw {other:?}"),
        }
    }
}

async fn given_retried_rotation_that_landed_then_the_store_shows_the_successor_it_holds(s: Arc<dyn Store>) {
    let x = session("u2", "a");
    s.create_session(&x).await.unwrap();
    assert_eq!(s.rotate_session("u2", &x.id, "a", "b", NOW, NOW + 100, &[]).await.unwrap(), Rotation::Rotated);
    // The same rotation again (an SDK retry whose first attempt landed, or a client's retry):
    // the condition fails and the store returns the session as it is, successor included, so
    // the use case can recognise its own successor (domain::sessions) rather than see reuse.
    match s.rotate_session("u2", &x.id, "a", "b", NOW + 1, NOW + 100, &[]).await.unwrap() {
        Rotation::Conflict(current) => {
            assert_eq!(current.current_hash, "b");
            assert_eq!(current.previous_hash.as_deref(), Some("a"));
            assert_eq!(current.rotated_at, NOW);
        }
        other => panic!("expected the session as it is, got {other:?}"),
    }
    s.delete_session("u2", &x.id).await.unwrap();
    assert_eq!(s.rotate_session("u2", &x.id, "b", "d", NOW, NOW + 100, &[]).await.unwrap(), Rotation::Missing);
}

async fn given_expired_session_not_yet_deleted_then_it_is_absent_and_cannot_rotate(s: Arc<dyn Store>) {
    let x = session("u3", "a");
    s.create_session(&x).await.unwrap();
    assert!(s.get_session("u3", &x.id, NOW + 99).await.unwrap().is_some());
    assert!(s.get_session("u3", &x.id, NOW + 100).await.unwrap().is_none());
    assert_eq!(s.rotate_session("u3", &x.id, "a", "b", NOW + 100, NOW + 200, &[]).await.unwrap(), Rotation::Missing);
}

async fn given_verification_token_when_consumed_concurrently_then_exactly_once(s: Arc<dyn Store>) {
    let u = user("v@example.com");
    s.create_user(&u).await.unwrap();
    s.put_one_time(OneTimeKind::VerifyEmail, &u.id, "th", NOW + 100, u.session_version).await.unwrap();
    let results = join_all((0..10).map(|_| {
        let (s, id) = (s.clone(), u.id.clone());
        async move { s.verify_email(&id, "th", NOW, 1, None).await }
    }))
    .await;
    let ok = results.iter().filter(|r| matches!(r, Ok(true))).count();
    let refused = results.iter().filter(|r| matches!(r, Ok(false))).count();
    assert_eq!((ok, refused), (1, 9), "{results:?}");
    assert!(s.get_user(&u.id).await.unwrap().unwrap().is_verified);
}

async fn given_newer_verification_token_then_older_is_invalid(s: Arc<dyn Store>) {
    let u = user("n@example.com");
    s.create_user(&u).await.unwrap();
    s.put_one_time(OneTimeKind::VerifyEmail, &u.id, "old", NOW + 100, u.session_version).await.unwrap();
    s.put_one_time(OneTimeKind::VerifyEmail, &u.id, "new", NOW + 100, u.session_version).await.unwrap();
    assert!(!s.verify_email(&u.id, "old", NOW, u.session_version, None).await.unwrap());
    assert!(!s.get_user(&u.id).await.unwrap().unwrap().is_verified);
    assert!(s.verify_email(&u.id, "new", NOW, u.session_version, None).await.unwrap());
}

fn registration(hash: &str, at: i64) -> Registration {
    Registration { password_hash: hash.into(), name: Some(format!("n-{hash}")), created_at: at }
}

/// Adds `r` to the account as it is stored now (one try), with a new link `token`.
async fn add(s: &Arc<dyn Store>, id: &str, r: Registration, token: &str) -> bool {
    let read = s.get_user(id).await.unwrap().unwrap();
    let all = read.with_registration(r);
    let nr = NewRegistration {
        user_id: id,
        read: &read,
        registrations: &all,
        token_hash: Some(token),
        expires_at: NOW + 100,
        now: NOW,
    };
    s.add_registration(&nr).await.unwrap()
}

async fn pending(s: &Arc<dyn Store>, email: &str) -> User {
    let u = User { pending_signup: true, ..user(email) };
    s.create_user(&u).await.unwrap();
    u
}

async fn given_concurrent_sign_ups_for_a_pending_address_then_each_keeps_its_registration(s: Arc<dyn Store>) {
    let u = pending(&s, "pend@example.com").await;
    // Each sign-up retries on a conflict, as the use case does; none may overwrite another.
    join_all((0..6).map(|i| {
        let (s, id) = (s.clone(), u.id.clone());
        async move {
            for _ in 0..20 {
                if add(&s, &id, registration(&format!("h{i}"), NOW + i), &format!("t{i}")).await {
                    return;
                }
            }
            panic!("registration {i} never landed");
        }
    }))
    .await;
    let stored = s.get_user(&u.id).await.unwrap().unwrap();
    let mut hashes: Vec<_> = stored.registrations.iter().map(|r| r.password_hash.clone()).collect();
    hashes.sort();
    assert_eq!(hashes, ["h0", "h1", "h2", "h3", "h4", "h5"]);
    assert_eq!(stored.password_hash, u.password_hash, "the first sign-up's password stays");
}

async fn given_a_registration_chosen_at_verification_then_it_becomes_the_account_and_the_others_go(s: Arc<dyn Store>) {
    let u = pending(&s, "choose@example.com").await;
    assert!(add(&s, &u.id, registration("second", NOW + 1), "t1").await);
    assert!(add(&s, &u.id, registration("third", NOW + 2), "t2").await);
    let stored = s.get_user(&u.id).await.unwrap().unwrap();
    assert!(!s.verify_email(&u.id, "t1", NOW, u.session_version, None).await.unwrap(), "the newer link replaced it");
    let chosen = stored.registrations[0].clone();
    assert!(s.verify_email(&u.id, "t2", NOW, u.session_version, Some(&chosen)).await.unwrap());
    let done = s.get_user(&u.id).await.unwrap().unwrap();
    assert!(done.is_verified && !done.pending_signup && done.registrations.is_empty());
    assert_eq!((done.password_hash.as_str(), done.name.as_deref()), ("second", Some("n-second")));
    assert_eq!(done.session_version, u.session_version + 1);
    // Verified: no sign-up adds to it any more.
    assert!(!add(&s, &u.id, registration("late", NOW + 3), "t3").await);
}

async fn given_an_account_not_pending_sign_up_then_no_registration_is_added(s: Arc<dyn Store>) {
    // An unverified account an administrator made (or one written before the flag existed).
    let u = user("adminmade@example.com");
    s.create_user(&u).await.unwrap();
    assert!(!add(&s, &u.id, registration("attacker", NOW), "t").await);
    assert_eq!(s.get_user(&u.id).await.unwrap().unwrap(), u);
    // An administrator's change of its credentials, role or verification makes a pending
    // sign-up the administrator's.
    let p = pending(&s, "pend-admin@example.com").await;
    assert!(add(&s, &p.id, registration("second", NOW), "t").await);
    let read = s.get_user(&p.id).await.unwrap().unwrap();
    let name = UserChanges { name: Some(Some("Set by admin".into())), is_active: Some(false), ..Default::default() };
    assert!(matches!(s.admin_update_user(&read, &name, NOW).await.unwrap(), AdminWrite::Done(_)));
    let still = s.get_user(&p.id).await.unwrap().unwrap();
    assert!(still.pending_signup && still.registrations.len() == 1, "a name or an activation takes nothing over");
    let changes = UserChanges { is_verified: Some(true), ..Default::default() };
    assert!(matches!(s.admin_update_user(&still, &changes, NOW).await.unwrap(), AdminWrite::Done(_)));
    let after = s.get_user(&p.id).await.unwrap().unwrap();
    assert!(!after.pending_signup && after.registrations.is_empty());
    assert!(!add(&s, &p.id, registration("attacker", NOW), "t2").await);
}

async fn given_expired_verification_token_not_yet_deleted_then_refused(s: Arc<dyn Store>) {
    let u = user("e@example.com");
    s.create_user(&u).await.unwrap();
    s.put_one_time(OneTimeKind::VerifyEmail, &u.id, "t", NOW + 10, u.session_version).await.unwrap();
    assert!(!s.verify_email(&u.id, "t", NOW + 10, u.session_version, None).await.unwrap());
    assert!(!s.verify_email("no-such-user", "t", NOW, 1, None).await.unwrap());
    assert!(!s.get_user(&u.id).await.unwrap().unwrap().is_verified);
}

async fn given_stale_expected_hash_then_upgrade_is_refused(s: Arc<dyn Store>) {
    let u = user("h@example.com");
    s.create_user(&u).await.unwrap();
    assert!(!s.upgrade_password_hash(&u.id, "not-the-hash", "new").await.unwrap());
    assert!(s.upgrade_password_hash(&u.id, &u.password_hash, "new").await.unwrap());
    assert_eq!(s.get_user(&u.id).await.unwrap().unwrap().password_hash, "new");
}

async fn given_missing_user_then_updates_report_absence(s: Arc<dyn Store>) {
    assert_eq!(s.update_name("ghost", Some("x"), NOW).await.unwrap(), None);
    assert!(!s.upgrade_password_hash("ghost", "a", "b").await.unwrap());
    s.record_login("ghost", NOW).await.unwrap();
    assert_eq!(s.get_user("ghost").await.unwrap(), None);
    let u = user("named@example.com");
    s.create_user(&u).await.unwrap();
    assert_eq!(s.update_name(&u.id, None, NOW + 1).await.unwrap().unwrap().name, None);
    assert_eq!(s.update_name(&u.id, Some("Bo"), NOW + 2).await.unwrap().unwrap().name.as_deref(), Some("Bo"));
}

async fn given_100_concurrent_hits_on_a_limit_of_10_then_exactly_10_count(s: Arc<dyn Store>) {
    let results = join_all((0..100).map(|_| {
        let s = s.clone();
        async move { s.rate_hit("login#ip#192.0.2.7", NOW, 60, 10, NOW + 120).await.unwrap() }
    }))
    .await;
    let mut counted: Vec<u32> = results.iter().flatten().map(|c| c.hits).collect();
    counted.sort_unstable();
    assert_eq!(counted, (1..=10).collect::<Vec<_>>());
    let other = s.rate_hit("login#ip#192.0.2.8", NOW, 60, 10, NOW + 120).await.unwrap();
    assert_eq!(other, Some(RateCount { start: NOW, hits: 1, previous: 0 }), "keys are independent");
}

async fn given_expired_rate_item_not_yet_deleted_then_counting_restarts(s: Arc<dyn Store>) {
    let hit = |start: i64| {
        let s = s.clone();
        async move { s.rate_hit("k", start, 10, 3, start + 20).await.unwrap() }
    };
    for i in 1..=3 {
        assert_eq!(hit(NOW).await, Some(RateCount { start: NOW, hits: i, previous: 0 }));
    }
    assert_eq!(hit(NOW).await, None, "the window is full");
    // The next window starts from one hit and carries the previous count.
    assert_eq!(hit(NOW + 10).await, Some(RateCount { start: NOW + 10, hits: 1, previous: 3 }));
    // A hit taken back frees its place.
    s.rate_unhit("k", NOW + 10).await.unwrap();
    assert_eq!(hit(NOW + 10).await, Some(RateCount { start: NOW + 10, hits: 1, previous: 3 }));
    // Two windows on, the item has expired (TTL may not have deleted it): nothing carries over.
    assert_eq!(hit(NOW + 30).await, Some(RateCount { start: NOW + 30, hits: 1, previous: 0 }));
    // Taking back a hit of another window changes nothing.
    s.rate_unhit("k", NOW + 10).await.unwrap();
    assert_eq!(hit(NOW + 30).await, Some(RateCount { start: NOW + 30, hits: 2, previous: 0 }));
}

async fn given_concurrent_hits_as_a_window_opens_then_exactly_the_limit_count_and_all_carry_the_previous(
    s: Arc<dyn Store>,
) {
    for _ in 0..4 {
        s.rate_hit("roll", NOW, 60, 10, NOW + 120).await.unwrap();
    }
    let results = join_all((0..30).map(|_| {
        let s = s.clone();
        async move { s.rate_hit("roll", NOW + 60, 60, 10, NOW + 180).await }
    }))
    .await;
    let counted: Vec<RateCount> = results.into_iter().filter_map(|r| r.ok().flatten()).collect();
    let mut hits: Vec<u32> = counted.iter().map(|c| c.hits).collect();
    hits.sort_unstable();
    assert_eq!(hits, (1..=10).collect::<Vec<_>>(), "one roll-over, no lost or extra hit");
    assert!(counted.iter().all(|c| c.previous == 4 && c.start == NOW + 60), "{counted:?}");
}

async fn given_reset_token_confirmed_concurrently_then_exactly_one_reset_and_version_bumped(s: Arc<dyn Store>) {
    let u = user("r@example.com");
    s.create_user(&u).await.unwrap();
    s.put_one_time(OneTimeKind::ResetPassword, &u.id, "rt", NOW + 3600, u.session_version).await.unwrap();
    let results = join_all((0..5).map(|i| {
        let (s, id) = (s.clone(), u.id.clone());
        async move { s.reset_password(&id, "rt", &format!("new-{i}"), NOW, 1).await.unwrap() }
    }))
    .await;
    assert_eq!(results.iter().filter(|r| r.is_some()).count(), 1, "{results:?}");
    let after = s.get_user(&u.id).await.unwrap().unwrap();
    assert_eq!(after.session_version, 2);
    assert!(after.password_hash.starts_with("new-"));
    // A verification token is not a reset token, and expired ones are refused.
    s.put_one_time(OneTimeKind::VerifyEmail, &u.id, "vt", NOW + 3600, u.session_version).await.unwrap();
    assert_eq!(s.reset_password(&u.id, "vt", "x", NOW, u.session_version).await.unwrap(), None);
    s.put_one_time(OneTimeKind::ResetPassword, &u.id, "old", NOW + 10, u.session_version).await.unwrap();
    assert_eq!(s.reset_password(&u.id, "old", "x", NOW + 10, u.session_version).await.unwrap(), None);
}

async fn given_email_change_then_the_claim_moves_atomically_and_the_token_is_single_use(s: Arc<dyn Store>) {
    let u = user("before@example.com");
    s.create_user(&u).await.unwrap();
    s.put_email_change(&u.id, "ct", "after@example.com", NOW + 3600, u.session_version).await.unwrap();
    assert_eq!(s.confirm_email_change(&u.id, "wrong", NOW).await.unwrap(), EmailChange::InvalidToken);
    match s.confirm_email_change(&u.id, "ct", NOW).await.unwrap() {
        EmailChange::Changed { user, old_email } => {
            assert_eq!((user.email.as_str(), old_email.as_str()), ("after@example.com", "before@example.com"));
            assert_eq!(user.session_version, 2);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(s.confirm_email_change(&u.id, "ct", NOW).await.unwrap(), EmailChange::InvalidToken);
    assert!(s.find_user_by_email("before@example.com").await.unwrap().is_none());
    assert_eq!(s.find_user_by_email("after@example.com").await.unwrap().unwrap().id, u.id);
    // The old address is free again.
    s.create_user(&user("before@example.com")).await.unwrap();
}

async fn given_email_change_racing_a_signup_for_the_same_address_then_exactly_one_owns_it(s: Arc<dyn Store>) {
    for round in 0..5 {
        let target = format!("contested-{round}@example.com");
        let u = user(&format!("mover-{round}@example.com"));
        s.create_user(&u).await.unwrap();
        s.put_email_change(&u.id, "ct", &target, NOW + 3600, u.session_version).await.unwrap();
        let newcomer = user(&target);
        let (change, signup) = tokio::join!(s.confirm_email_change(&u.id, "ct", NOW), s.create_user(&newcomer));
        let change = change.unwrap();
        let moved = matches!(change, EmailChange::Changed { .. });
        assert_eq!(moved, signup.is_err(), "round {round}: {change:?} / {signup:?}");
        if !moved {
            assert_eq!(change, EmailChange::Taken);
        }
        let owner = s.find_user_by_email(&target).await.unwrap().unwrap();
        assert_eq!(owner.id, if moved { u.id.clone() } else { newcomer.id.clone() });
        let mover = s.get_user(&u.id).await.unwrap().unwrap();
        assert_eq!(mover.email, if moved { target.clone() } else { format!("mover-{round}@example.com") });
        assert_eq!(s.find_user_by_email(&mover.email).await.unwrap().unwrap().id, u.id, "the mover keeps a claim");
    }
}

async fn given_sessions_then_they_list_per_user_and_revoke_all_but_one(s: Arc<dyn Store>) {
    let a: Vec<Session> = (0..3).map(|i| Session { created_at: NOW + i, ..session("ua", "h") }).collect();
    for x in &a {
        s.create_session(x).await.unwrap();
    }
    s.create_session(&session("ub", "h")).await.unwrap();
    let mut expired = session("ua", "h");
    expired.idle_expires_at = NOW - 1;
    s.create_session(&expired).await.unwrap();
    let listed = s.list_sessions("ua", NOW).await.unwrap();
    assert_eq!(
        listed.iter().map(|x| x.id.clone()).collect::<Vec<_>>(),
        a.iter().map(|x| x.id.clone()).collect::<Vec<_>>()
    );
    s.confirm_session_version("ua", &a[0].id, 7).await.unwrap();
    assert_eq!(s.get_session("ua", &a[0].id, NOW).await.unwrap().unwrap().session_version, 7);
    let removed = s.delete_sessions("ua", Some(&a[0].id)).await.unwrap();
    assert_eq!(removed, 3, "two live and one expired");
    assert_eq!(s.list_sessions("ua", NOW).await.unwrap().len(), 1);
    assert_eq!(s.list_sessions("ub", NOW).await.unwrap().len(), 1, "other users untouched");
    assert_eq!(s.delete_sessions("ua", None).await.unwrap(), 1);
    assert_eq!(s.delete_sessions("ua", None).await.unwrap(), 0, "safe to retry");
}

async fn given_password_change_then_it_is_conditional_and_bumps_the_version(s: Arc<dyn Store>) {
    let u = user("pc@example.com");
    s.create_user(&u).await.unwrap();
    let (keep, other) = (session(&u.id, "h1"), session(&u.id, "h2"));
    s.create_session(&keep).await.unwrap();
    s.create_session(&other).await.unwrap();
    assert_eq!(s.change_password(&u.id, "stale", "new", 1, &keep.id, NOW).await.unwrap(), None);
    assert_eq!(s.change_password(&u.id, &u.password_hash, "new", 7, &keep.id, NOW).await.unwrap(), None, "stale sv");
    assert_eq!(s.change_password(&u.id, &u.password_hash, "new", 1, &keep.id, NOW).await.unwrap(), Some(2));
    // The caller's session moved with it, in the same write; the other one is now behind.
    let kept = s.get_session(&u.id, &keep.id, NOW).await.unwrap().unwrap().session_version;
    let behind = s.get_session(&u.id, &other.id, NOW).await.unwrap().unwrap().session_version;
    assert_eq!((kept, behind), (2, 1));
    // The same write again (a retry after it landed): recognised by the hash it wrote, no bump.
    assert_eq!(s.change_password(&u.id, &u.password_hash, "new", 1, &keep.id, NOW).await.unwrap(), Some(2));
    // Another change from the old hash is a change made meanwhile: refused.
    assert_eq!(s.change_password(&u.id, &u.password_hash, "newer", 1, &keep.id, NOW).await.unwrap(), None);
    // With the caller's session gone (it logged out meanwhile) the password still changes.
    assert_eq!(s.change_password(&u.id, "new", "newest", 2, "gone", NOW).await.unwrap(), Some(3));
    assert_eq!(s.bump_session_version(&u.id, NOW).await.unwrap(), Some(4));
    assert_eq!(s.bump_session_version("ghost", NOW).await.unwrap(), None);
    assert_eq!(s.get_user(&u.id).await.unwrap().unwrap().password_hash, "newest");
    assert!(s.get_session(&u.id, "gone", NOW).await.unwrap().is_none(), "no session made up");
}

async fn given_account_clear_then_every_ip_lock_of_that_account_goes_too(s: Arc<dyn Store>) {
    use shared::store::pair_lock_key;
    let a = pair_lock_key("acc@example.com", "192.0.2.1");
    let b = pair_lock_key("acc@example.com", "192.0.2.2");
    let other = pair_lock_key("other@example.com", "192.0.2.1");
    for k in [a.as_str(), b.as_str(), other.as_str(), "acc@example.com"] {
        s.lock_gate(k, NOW, 3600).await.unwrap();
        assert!(s.lock(k, 1, NOW + 900, NOW, 3600).await.unwrap());
    }
    s.clear_lockout(&a).await.unwrap();
    assert!(matches!(s.lock_gate(&a, NOW, 3600).await.unwrap(), LockGate::Open { .. }), "a pair clears alone");
    assert!(matches!(s.lock_gate(&b, NOW, 3600).await.unwrap(), LockGate::Locked { .. }));
    s.clear_lockout("acc@example.com").await.unwrap();
    assert!(matches!(s.lock_gate(&b, NOW, 3600).await.unwrap(), LockGate::Locked { .. }), "clear is exact");
    s.lock_gate("acc@example.com", NOW, 3600).await.unwrap();
    assert!(s.lock("acc@example.com", 1, NOW + 900, NOW, 3600).await.unwrap());
    s.clear_all_lockouts("acc@example.com").await.unwrap();
    for k in ["acc@example.com", b.as_str()] {
        assert!(matches!(s.lock_gate(k, NOW, 3600).await.unwrap(), LockGate::Open { attempt: 1, .. }), "{k:?}");
    }
    assert!(
        matches!(s.lock_gate(&other, NOW, 3600).await.unwrap(), LockGate::Locked { .. }),
        "other accounts untouched"
    );
}

fn admin(email: &str) -> User {
    User { is_superuser: true, is_verified: true, ..user(email) }
}

async fn given_users_then_the_listing_is_ordered_by_email_filtered_by_prefix_and_pages_exactly_once(s: Arc<dyn Store>) {
    for e in ["carol@x.example", "alice@x.example", "bob@y.example", "alan@x.example", "dave@x.example"] {
        s.create_user(&user(e)).await.unwrap();
    }
    let (all, more) = s.list_users("", None, 10).await.unwrap();
    let emails: Vec<&str> = all.iter().map(|u| u.email.as_str()).collect();
    assert_eq!(emails, ["alan@x.example", "alice@x.example", "bob@y.example", "carol@x.example", "dave@x.example"]);
    assert!(!more);
    let (al, _) = s.list_users("al", None, 10).await.unwrap();
    assert_eq!(al.len(), 2);
    // Pages of two, with a user added between pages after the cursor: each exactly once.
    let mut seen = Vec::new();
    let mut after: Option<(String, String)> = None;
    loop {
        let (page, more) = s.list_users("", after.as_ref().map(|(e, i)| (e.as_str(), i.as_str())), 2).await.unwrap();
        seen.extend(page.iter().map(|u| u.email.clone()));
        if seen.len() == 2 {
            s.create_user(&user("zed@x.example")).await.unwrap();
        }
        let Some(last) = page.last() else { break };
        after = Some((last.email.clone(), last.id.clone()));
        if !more {
            break;
        }
    }
    let mut dedup = seen.clone();
    dedup.dedup();
    assert_eq!(seen, dedup, "no user twice");
    assert_eq!(seen.len(), 6, "{seen:?}");
}

async fn given_two_admins_demoting_each_other_concurrently_then_one_admin_remains(s: Arc<dyn Store>) {
    let (a, b) = (admin("a@admins.example"), admin("b@admins.example"));
    for u in [&a, &b] {
        assert!(matches!(s.admin_create_user(u).await.unwrap(), AdminWrite::Done(_)));
    }
    let demote = UserChanges { is_superuser: Some(false), bump_session_version: true, ..Default::default() };
    let (ra, rb) = tokio::join!(s.admin_update_user(&a, &demote, NOW), s.admin_update_user(&b, &demote, NOW));
    let outcomes = [ra.unwrap(), rb.unwrap()];
    assert_eq!(outcomes.iter().filter(|o| matches!(o, AdminWrite::Done(_))).count(), 1, "{outcomes:?}");
    assert!(outcomes.contains(&AdminWrite::LastAdmin));
    let remaining = [s.get_user(&a.id).await.unwrap().unwrap(), s.get_user(&b.id).await.unwrap().unwrap()];
    assert_eq!(remaining.iter().filter(|u| u.is_superuser).count(), 1);
    let last = remaining.iter().find(|u| u.is_superuser).unwrap();
    let deactivate = UserChanges { is_active: Some(false), ..Default::default() };
    assert_eq!(s.admin_update_user(last, &deactivate, NOW).await.unwrap(), AdminWrite::LastAdmin);
    assert_eq!(s.admin_delete_user(last).await.unwrap(), AdminWrite::LastAdmin);
}

async fn given_admin_updates_then_email_claims_move_and_taken_addresses_and_stale_reads_are_refused(s: Arc<dyn Store>) {
    let u = user("old@upd.example");
    let other = user("other@upd.example");
    s.create_user(&u).await.unwrap();
    s.create_user(&other).await.unwrap();
    let to_taken = UserChanges { email: Some("other@upd.example".into()), ..Default::default() };
    assert_eq!(s.admin_update_user(&u, &to_taken, NOW).await.unwrap(), AdminWrite::EmailTaken);
    let change = UserChanges {
        email: Some("new@upd.example".into()),
        name: Some(None),
        is_verified: Some(true),
        bump_session_version: true,
        ..Default::default()
    };
    let AdminWrite::Done(updated) = s.admin_update_user(&u, &change, NOW + 1).await.unwrap() else { panic!() };
    assert_eq!(
        (updated.email.as_str(), updated.name.as_deref(), updated.is_verified, updated.session_version),
        ("new@upd.example", None, true, 2)
    );
    assert_eq!(s.get_user(&u.id).await.unwrap().unwrap(), updated);
    assert_eq!(s.find_user_by_email("new@upd.example").await.unwrap().unwrap().id, u.id);
    assert!(s.find_user_by_email("old@upd.example").await.unwrap().is_none());
    // Writing from a stale read is refused.
    let rename = UserChanges { name: Some(Some("X".into())), ..Default::default() };
    assert_eq!(s.admin_update_user(&u, &rename, NOW).await.unwrap(), AdminWrite::Changed);
}

async fn given_an_admin_delete_then_nothing_of_the_user_remains(s: Arc<dyn Store>) {
    let u = user("gone@del.example");
    s.create_user(&u).await.unwrap();
    s.create_session(&session(&u.id, "h")).await.unwrap();
    s.put_one_time(OneTimeKind::VerifyEmail, &u.id, "t", NOW + 100, u.session_version).await.unwrap();
    s.lock_gate("gone@del.example", NOW, 3600).await.unwrap();
    s.lock_gate(&shared::store::pair_lock_key("gone@del.example", "192.0.2.1"), NOW, 3600).await.unwrap();
    assert!(matches!(s.admin_delete_user(&u).await.unwrap(), AdminWrite::Done(_)));
    assert!(s.get_user(&u.id).await.unwrap().is_none());
    assert!(s.find_user_by_email("gone@del.example").await.unwrap().is_none());
    assert!(s.list_sessions(&u.id, NOW).await.unwrap().is_empty());
    assert!(!s.verify_email(&u.id, "t", NOW, u.session_version, None).await.unwrap());
    assert_eq!(
        s.lock_gate("gone@del.example", NOW, 3600).await.unwrap(),
        LockGate::Open { attempt: 1, previous_locks: 0 }
    );
    assert_eq!(s.admin_delete_user(&u).await.unwrap(), AdminWrite::NotFound);
    // The address can sign up again.
    s.create_user(&user("gone@del.example")).await.unwrap();
    // What a delete whose answer was lost may leave under the id goes with purge_user, which
    // never touches a user item.
    let orphan = uuid::Uuid::new_v4().to_string();
    s.create_session(&session(&orphan, "h")).await.unwrap();
    s.put_one_time(OneTimeKind::ResetPassword, &orphan, "r", NOW + 100, 1).await.unwrap();
    s.purge_user(&orphan).await.unwrap();
    assert!(s.list_sessions(&orphan, NOW).await.unwrap().is_empty());
    assert!(s.peek_one_time(OneTimeKind::ResetPassword, &orphan, "r", NOW).await.unwrap().is_none());
    let kept = user("kept@del.example");
    s.create_user(&kept).await.unwrap();
    s.purge_user(&kept.id).await.unwrap();
    assert!(s.get_user(&kept.id).await.unwrap().is_some());
}

async fn given_many_rotations_then_the_session_remembers_a_bounded_list_of_spent_hashes(s: Arc<dyn Store>) {
    let x = session("u9", "h0");
    s.create_session(&x).await.unwrap();
    for i in 0..20 {
        let cur = s.get_session("u9", &x.id, NOW).await.unwrap().unwrap();
        let r = s
            .rotate_session("u9", &x.id, &format!("h{i}"), &format!("h{}", i + 1), NOW, NOW + 100, &cur.next_spent())
            .await
            .unwrap();
        assert_eq!(r, Rotation::Rotated);
    }
    let cur = s.get_session("u9", &x.id, NOW).await.unwrap().unwrap();
    assert_eq!(cur.current_hash, "h20");
    assert_eq!(cur.previous_hash.as_deref(), Some("h19"));
    assert_eq!(cur.spent_hashes.len(), shared::store::SPENT_HASHES_KEPT);
    assert_eq!(cur.spent_hashes[0], "h18");
    assert!(cur.has_spent("h19") && cur.has_spent("h3") && !cur.has_spent("h2") && !cur.has_spent("h20"));
}

/// The clean-ups walk every page: DynamoDB Local read two items per page.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn given_two_item_pages_then_every_clean_up_and_listing_of_a_partition_reads_all_of_it() {
    use shared::store::pair_lock_key;
    assert!(std::env::var("AWS_ENDPOINT_URL_DYNAMODB").is_ok(), "run through infra/test.sh");
    let client = aws_sdk_dynamodb::Client::new(&shared::wiring::aws_config().await.unwrap());
    let table = format!("contract-{}", uuid::Uuid::new_v4().simple());
    DynamoStore::create_table(&client, &table).await.unwrap();
    let s: Arc<dyn Store> = Arc::new(DynamoStore::new(client, table).with_page_limit(2));
    let email = "paged@example.com";
    let u = user(email);
    s.create_user(&u).await.unwrap();
    for i in 0..5 {
        s.create_session(&session(&u.id, &format!("h{i}"))).await.unwrap();
    }
    s.put_one_time(OneTimeKind::VerifyEmail, &u.id, "t", NOW + 100, u.session_version).await.unwrap();
    s.lock_gate(email, NOW, 3600).await.unwrap();
    for i in 0..6 {
        s.lock_gate(&pair_lock_key(email, &format!("192.0.2.{i}")), NOW, 3600).await.unwrap();
    }
    assert_eq!(s.list_sessions(&u.id, NOW).await.unwrap().len(), 5);
    assert_eq!(s.lockout_keys(email).await.unwrap().len(), 7);
    s.lock(&pair_lock_key(email, "192.0.2.5"), 1, NOW + 60, NOW, 3600).await.unwrap();
    assert!(s.is_locked(email, NOW).await.unwrap(), "the lock on the last page is seen");
    s.clear_all_lockouts(email).await.unwrap();
    assert!(s.lockout_keys(email).await.unwrap().is_empty(), "every lock item went");
    for i in 0..6 {
        s.lock_gate(&pair_lock_key(email, &format!("192.0.2.{i}")), NOW, 3600).await.unwrap();
    }
    assert!(matches!(s.admin_delete_user(&u).await.unwrap(), AdminWrite::Done(_)));
    assert!(s.list_sessions(&u.id, NOW).await.unwrap().is_empty(), "every session went");
    assert!(!s.verify_email(&u.id, "t", NOW, u.session_version, None).await.unwrap());
    assert!(s.lockout_keys(email).await.unwrap().is_empty());
}

async fn given_a_mail_job_then_one_of_concurrent_claims_wins_and_a_sent_job_is_never_claimed_again(s: Arc<dyn Store>) {
    let job = uuid::Uuid::new_v4().to_string();
    let claims: Vec<String> = (0..20).map(|i| format!("delivery-{i}")).collect();
    let outcomes = join_all(claims.iter().map(|c| s.claim_mail(&job, c, NOW, NOW + 60, NOW + 86_400))).await;
    let won: Vec<&String> =
        claims.iter().zip(&outcomes).filter(|(_, o)| matches!(o, Ok(MailClaim::Claimed))).map(|(c, _)| c).collect();
    assert_eq!(won.len(), 1, "{outcomes:?}");
    assert!(outcomes.iter().all(|o| matches!(o, Ok(MailClaim::Claimed | MailClaim::Busy))));
    let winner = won[0].clone();
    // The winner's claim retried after it landed (an SDK retry) is granted again.
    assert_eq!(s.claim_mail(&job, &winner, NOW, NOW + 60, NOW + 86_400).await.unwrap(), MailClaim::Claimed);
    s.mail_sent(&job, &winner, NOW + 1).await.unwrap();
    // Redelivered, even long after every lease ran out: never again.
    for (c, at) in [("redelivery", NOW + 2), ("much-later", NOW + 3_600), (winner.as_str(), NOW + 7_200)] {
        assert_eq!(s.claim_mail(&job, c, at, at + 60, at + 86_400).await.unwrap(), MailClaim::Sent, "{c}");
    }
    // Releasing a sent job changes nothing.
    s.release_mail(&job, &winner).await.unwrap();
    assert_eq!(s.claim_mail(&job, "x", NOW + 5, NOW + 65, NOW + 86_400).await.unwrap(), MailClaim::Sent);
    // Past its TTL (not yet deleted) the record counts as absent.
    assert_eq!(s.claim_mail(&job, "y", NOW + 86_401, NOW + 86_461, NOW + 172_800).await.unwrap(), MailClaim::Claimed);
}

async fn given_a_claim_whose_lease_ran_out_or_was_released_then_another_delivery_may_send(s: Arc<dyn Store>) {
    let job = uuid::Uuid::new_v4().to_string();
    assert_eq!(s.claim_mail(&job, "a", NOW, NOW + 60, NOW + 86_400).await.unwrap(), MailClaim::Claimed);
    assert_eq!(s.claim_mail(&job, "b", NOW + 59, NOW + 119, NOW + 86_400).await.unwrap(), MailClaim::Busy);
    // "a" crashed without sending: once its lease runs out another delivery takes the job.
    assert_eq!(s.claim_mail(&job, "b", NOW + 60, NOW + 120, NOW + 86_400).await.unwrap(), MailClaim::Claimed);
    // A stale release by "a" does not free "b"'s lease.
    s.release_mail(&job, "a").await.unwrap();
    assert_eq!(s.claim_mail(&job, "c", NOW + 61, NOW + 121, NOW + 86_400).await.unwrap(), MailClaim::Busy);
    // "b"'s send failed and it released: the retry need not wait for the lease.
    s.release_mail(&job, "b").await.unwrap();
    assert_eq!(s.claim_mail(&job, "c", NOW + 62, NOW + 122, NOW + 86_400).await.unwrap(), MailClaim::Claimed);
}

async fn given_an_admins_read_then_both_stores_call_the_same_changes_stale_and_keep_the_others(s: Arc<dyn Store>) {
    let rename = UserChanges { name: Some(Some("By admin".into())), ..Default::default() };
    // What happens between the admin's read and its write, and whether the write is refused.
    type Between = fn(Arc<dyn Store>, User) -> futures::future::BoxFuture<'static, ()>;
    let cases: Vec<(&str, Between, bool)> = vec![
        ("a login", |s, u| Box::pin(async move { s.record_login(&u.id, NOW + 5).await.unwrap() }), false),
        (
            "the user's own name change",
            |s, u| {
                Box::pin(async move {
                    s.update_name(&u.id, Some("Own"), NOW + 5).await.unwrap();
                })
            },
            false,
        ),
        (
            "a password change",
            |s, u| {
                Box::pin(async move {
                    s.change_password(&u.id, &u.password_hash, "other-hash", 1, "none", NOW + 5).await.unwrap();
                })
            },
            true,
        ),
        (
            "a forced logout",
            |s, u| {
                Box::pin(async move {
                    s.bump_session_version(&u.id, NOW + 5).await.unwrap();
                })
            },
            true,
        ),
        (
            "another admin's deactivation",
            |s, u| {
                Box::pin(async move {
                    let off = UserChanges { is_active: Some(false), bump_session_version: true, ..Default::default() };
                    assert!(matches!(s.admin_update_user(&u, &off, NOW + 5).await.unwrap(), AdminWrite::Done(_)));
                })
            },
            true,
        ),
        (
            "another admin's promotion",
            |s, u| {
                Box::pin(async move {
                    let up = UserChanges { is_superuser: Some(true), ..Default::default() };
                    assert!(matches!(s.admin_update_user(&u, &up, NOW + 5).await.unwrap(), AdminWrite::Done(_)));
                })
            },
            true,
        ),
        (
            "an address change",
            |s, u| {
                Box::pin(async move {
                    let mv = UserChanges { email: Some(format!("moved-{}", u.email)), ..Default::default() };
                    assert!(matches!(s.admin_update_user(&u, &mv, NOW + 5).await.unwrap(), AdminWrite::Done(_)));
                })
            },
            true,
        ),
    ];
    for (what, between, stale) in cases {
        let u = user(&format!("{}@stale.example", uuid::Uuid::new_v4().simple()));
        s.create_user(&u).await.unwrap();
        let read = s.get_user(&u.id).await.unwrap().unwrap();
        between(s.clone(), read.clone()).await;
        let before = s.get_user(&u.id).await.unwrap().unwrap();
        let outcome = s.admin_update_user(&read, &rename, NOW + 10).await.unwrap();
        let after = s.get_user(&u.id).await.unwrap().unwrap();
        if stale {
            assert_eq!(outcome, AdminWrite::Changed, "after {what}");
            assert_eq!(after, before, "after {what}: nothing written");
            assert_eq!(s.admin_delete_user(&read).await.unwrap(), AdminWrite::Changed, "delete after {what}");
        } else {
            assert!(matches!(outcome, AdminWrite::Done(_)), "after {what}: {outcome:?}");
            assert_eq!(after.name.as_deref(), Some("By admin"), "after {what}");
            assert_eq!(after.last_login_at, before.last_login_at, "after {what}: the login is kept");
            assert_eq!(after.session_version, before.session_version);
        }
    }
}

/// A user with an active factor sealed as `sealed`, step 10 spent, and `codes` as hashes.
async fn with_factor(s: &Arc<dyn Store>, email: &str, sealed: &str, codes: &[&str]) -> User {
    let u = User { is_verified: true, ..user(email) };
    s.create_user(&u).await.unwrap();
    assert!(s.put_pending_mfa(&u.id, sealed, NOW).await.unwrap());
    let codes: Vec<String> = codes.iter().map(|c| (*c).to_owned()).collect();
    let sid = session(&u.id, "h");
    s.create_session(&sid).await.unwrap();
    assert_eq!(s.enable_mfa(&u.id, sealed, 10, &codes, u.session_version, &sid.id, NOW).await.unwrap(), Some(2));
    s.get_user(&u.id).await.unwrap().unwrap()
}

async fn given_a_pending_factor_then_it_activates_once_and_moves_the_callers_session(s: Arc<dyn Store>) {
    let u = User { is_verified: true, ..user("mfa@example.com") };
    s.create_user(&u).await.unwrap();
    let (mine, other) = (session(&u.id, "h1"), session(&u.id, "h2"));
    s.create_session(&mine).await.unwrap();
    s.create_session(&other).await.unwrap();
    assert!(s.put_pending_mfa(&u.id, "v1.first", NOW).await.unwrap());
    assert!(s.put_pending_mfa(&u.id, "v1.second", NOW).await.unwrap(), "a new enrolment replaces a pending one");
    let codes = vec!["c1".to_owned(), "c2".to_owned()];
    // Not the pending secret, or a stale session version: nothing changes.
    assert_eq!(s.enable_mfa(&u.id, "v1.first", 7, &codes, 1, &mine.id, NOW).await.unwrap(), None);
    assert_eq!(s.enable_mfa(&u.id, "v1.second", 7, &codes, 0, &mine.id, NOW).await.unwrap(), None);
    assert!(!s.get_user(&u.id).await.unwrap().unwrap().mfa_enabled);
    assert_eq!(s.enable_mfa(&u.id, "v1.second", 7, &codes, 1, &mine.id, NOW).await.unwrap(), Some(2));
    // The same write again (an SDK retry whose answer was lost) is the same success; another
    // confirmation, with other codes, is not.
    assert_eq!(s.enable_mfa(&u.id, "v1.second", 7, &codes, 1, &mine.id, NOW).await.unwrap(), Some(2));
    let others = vec!["c3".to_owned()];
    assert_eq!(s.enable_mfa(&u.id, "v1.second", 8, &others, 1, &mine.id, NOW).await.unwrap(), None);
    let stored = s.get_user(&u.id).await.unwrap().unwrap();
    assert!(stored.mfa_enabled);
    assert_eq!(stored.session_version, 2);
    assert_eq!(
        s.get_session(&u.id, &mine.id, NOW).await.unwrap().unwrap().session_version,
        2,
        "the caller's session moved"
    );
    assert_eq!(
        s.get_session(&u.id, &other.id, NOW).await.unwrap().unwrap().session_version,
        1,
        "the other is left behind"
    );
    let f = s.get_mfa(&u.id).await.unwrap().unwrap();
    assert_eq!((f.secret.as_deref(), f.pending.as_deref(), f.last_step), (Some("v1.second"), None, 7));
    let mut rec = f.recovery.clone();
    rec.sort();
    assert_eq!(rec, codes);
    assert!(!s.put_pending_mfa(&u.id, "v1.third", NOW).await.unwrap(), "no enrolment over an active factor");
    // The listing shows the flag (it is not in the listing index).
    let (listed, _) = s.list_users("mfa@", None, 10).await.unwrap();
    assert!(listed[0].mfa_enabled);
    // A caller whose session went meanwhile still enables (alone).
    let v = User { is_verified: true, ..user("mfa2@example.com") };
    s.create_user(&v).await.unwrap();
    assert!(s.put_pending_mfa(&v.id, "v1.x", NOW).await.unwrap());
    assert_eq!(s.enable_mfa(&v.id, "v1.x", 1, &codes, 1, "gone-session", NOW).await.unwrap(), Some(2));
}

async fn given_one_totp_step_or_recovery_code_spent_concurrently_then_exactly_one_passes(s: Arc<dyn Store>) {
    let u = with_factor(&s, "spend@example.com", "v1.k", &["r1", "r2"]).await;
    let step = MfaProof::Totp { sealed: "v1.k".into(), step: 11 };
    let all = join_all((0..20).map(|_| s.spend_mfa_proof(&u.id, &step))).await;
    assert_eq!(all.iter().filter(|r| matches!(r, Ok(MfaSpend::Spent))).count(), 1);
    assert_eq!(s.spend_mfa_proof(&u.id, &step).await.unwrap(), MfaSpend::Refused, "a replay");
    let older = MfaProof::Totp { sealed: "v1.k".into(), step: 10 };
    assert_eq!(s.spend_mfa_proof(&u.id, &older).await.unwrap(), MfaSpend::Refused, "an older step");
    let other_secret = MfaProof::Totp { sealed: "v1.other".into(), step: 12 };
    assert_eq!(s.spend_mfa_proof(&u.id, &other_secret).await.unwrap(), MfaSpend::Refused);
    let code = MfaProof::Recovery { hash: "r1".into() };
    let all = join_all((0..20).map(|_| s.spend_mfa_proof(&u.id, &code))).await;
    assert_eq!(all.iter().filter(|r| matches!(r, Ok(MfaSpend::Spent))).count(), 1);
    assert_eq!(s.get_mfa(&u.id).await.unwrap().unwrap().recovery, vec!["r2".to_owned()]);
    let last = MfaProof::Recovery { hash: "r2".into() };
    assert_eq!(s.spend_mfa_proof(&u.id, &last).await.unwrap(), MfaSpend::Spent, "the last code empties the set");
    assert_eq!(s.spend_mfa_proof(&u.id, &last).await.unwrap(), MfaSpend::Refused);
    assert!(s.replace_recovery_codes(&u.id, "v1.k", &["r3".to_owned()]).await.unwrap());
    assert!(!s.replace_recovery_codes(&u.id, "v1.other", &["r4".to_owned()]).await.unwrap());
    assert_eq!(s.get_mfa(&u.id).await.unwrap().unwrap().recovery, vec!["r3".to_owned()]);
}

async fn given_a_challenge_then_it_completes_once_and_dies_after_max_failures_or_expiry(s: Arc<dyn Store>) {
    let u = with_factor(&s, "ch@example.com", "v1.k", &["r1"]).await;
    let c = MfaChallenge { user_id: u.id.clone(), session_version: 2, failures: 0, expires_at: NOW + 300 };
    // The sign-in's write: the challenge, the proof and a new session (clearing `locks`).
    let complete = |hash: &'static str, proof: MfaProof, locks: Vec<String>| {
        let (s, id) = (s.clone(), u.id.clone());
        async move {
            let session = session(&id, "h");
            let x =
                MfaSignIn { hash, proof: &proof, session: &session, clear_locks: &locks, now: NOW, max_failures: 5 };
            let out = s.complete_mfa_sign_in(&x).await.unwrap();
            let stored = s.get_session(&id, &session.id, NOW).await.unwrap().is_some();
            assert_eq!(stored, out == MfaSpend::Spent, "a session exactly when the code was spent");
            out
        }
    };
    s.put_mfa_challenge("c1", &c).await.unwrap();
    assert_eq!(s.get_mfa_challenge(&u.id, "c1", NOW, 5).await.unwrap(), Some(c.clone()));
    // A refused proof spends nothing, and leaves the challenge.
    let replay = MfaProof::Totp { sealed: "v1.k".into(), step: 10 };
    assert_eq!(complete("c1", replay, vec![]).await, MfaSpend::Refused);
    assert!(s.get_mfa_challenge(&u.id, "c1", NOW, 5).await.unwrap().is_some());
    // Concurrent answers with one good code: one completes, and clears the lockout keys.
    let lock = shared::store::pair_lock_key("ch@example.com", "192.0.2.1");
    s.lock_gate(&lock, NOW, 3600).await.unwrap();
    let good = MfaProof::Totp { sealed: "v1.k".into(), step: 12 };
    let all = join_all((0..10).map(|_| complete("c1", good.clone(), vec![lock.clone()]))).await;
    assert_eq!(all.iter().filter(|r| **r == MfaSpend::Spent).count(), 1, "{all:?}");
    assert_eq!(s.get_mfa_challenge(&u.id, "c1", NOW, 5).await.unwrap(), None, "single use");
    assert_eq!(s.lock_gate(&lock, NOW, 3600).await.unwrap(), LockGate::Open { attempt: 1, previous_locks: 0 });
    assert_eq!(s.get_user(&u.id).await.unwrap().unwrap().last_login_at, Some(NOW));
    let next = MfaProof::Totp { sealed: "v1.k".into(), step: 13 };
    assert_eq!(complete("c1", next.clone(), vec![]).await, MfaSpend::ChallengeGone);
    assert_eq!(s.get_mfa(&u.id).await.unwrap().unwrap().last_step, 12, "a gone challenge spends no step");
    // Five failures kill one.
    s.put_mfa_challenge("c2", &c).await.unwrap();
    for _ in 0..5 {
        s.mfa_challenge_failed(&u.id, "c2", NOW).await.unwrap();
    }
    assert_eq!(s.get_mfa_challenge(&u.id, "c2", NOW, 5).await.unwrap(), None);
    assert_eq!(complete("c2", next, vec![]).await, MfaSpend::ChallengeGone);
    // An expired one (TTL not yet applied) is gone too.
    s.put_mfa_challenge("c3", &MfaChallenge { expires_at: NOW - 1, ..c.clone() }).await.unwrap();
    assert_eq!(s.get_mfa_challenge(&u.id, "c3", NOW, 5).await.unwrap(), None);
    let code = MfaProof::Recovery { hash: "r1".into() };
    assert_eq!(complete("c3", code, vec![]).await, MfaSpend::ChallengeGone);
    assert_eq!(s.get_mfa(&u.id).await.unwrap().unwrap().recovery, vec!["r1".to_owned()], "nothing spent");
}

async fn given_disable_reset_or_delete_then_no_factor_remains_and_the_flag_clears(s: Arc<dyn Store>) {
    let a = with_factor(&s, "dis@example.com", "v1.a", &["r"]).await;
    assert!(!s.disable_mfa(&a.id, "v1.other", NOW).await.unwrap(), "another secret: nothing removed");
    assert!(s.get_user(&a.id).await.unwrap().unwrap().mfa_enabled);
    assert!(s.disable_mfa(&a.id, "v1.a", NOW).await.unwrap());
    assert!(s.disable_mfa(&a.id, "v1.a", NOW).await.unwrap(), "a retry after it landed");
    assert!(!s.get_user(&a.id).await.unwrap().unwrap().mfa_enabled);
    assert_eq!(s.get_mfa(&a.id).await.unwrap(), None);
    let b = with_factor(&s, "rst@example.com", "v1.b", &["r"]).await;
    let stale = User { session_version: 1, ..b.clone() };
    assert_eq!(s.admin_reset_mfa(&stale, NOW).await.unwrap(), AdminWrite::Changed);
    match s.admin_reset_mfa(&b, NOW + 5).await.unwrap() {
        AdminWrite::Done(u) => assert!(!u.mfa_enabled && u.updated_at == NOW + 5),
        other => panic!("{other:?}"),
    }
    assert!(!s.get_user(&b.id).await.unwrap().unwrap().mfa_enabled);
    assert_eq!(s.get_mfa(&b.id).await.unwrap(), None);
    let c = with_factor(&s, "del@example.com", "v1.c", &["r"]).await;
    let ch = MfaChallenge { user_id: c.id.clone(), session_version: 2, failures: 0, expires_at: NOW + 300 };
    s.put_mfa_challenge("cd", &ch).await.unwrap();
    assert!(matches!(s.admin_delete_user(&c).await.unwrap(), AdminWrite::Done(_)));
    assert_eq!(s.get_mfa(&c.id).await.unwrap(), None);
    assert_eq!(s.get_mfa_challenge(&c.id, "cd", NOW, 5).await.unwrap(), None);
}

/// Whole items decode strictly: an item missing a required attribute, or holding one of the
/// wrong type, is an error (`unavailable`, answered 503), never a default such as `created_at`
/// 0 or `is_active` false; items of the earlier formats, without the attributes those lacked,
/// still read.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn given_corrupt_items_in_dynamodb_then_reads_fail_instead_of_defaulting() {
    use aws_sdk_dynamodb::types::AttributeValue as V;
    assert!(std::env::var("AWS_ENDPOINT_URL_DYNAMODB").is_ok(), "run through infra/test.sh");
    let client = aws_sdk_dynamodb::Client::new(&shared::wiring::aws_config().await.unwrap());
    let table = format!("contract-{}", uuid::Uuid::new_v4().simple());
    DynamoStore::create_table(&client, &table).await.unwrap();
    let s: Arc<dyn Store> = Arc::new(DynamoStore::new(client.clone(), table.clone()));
    let pk = |id: &str| V::S(format!("USER#{id}"));
    let edit = |pk: V, sk: &str, update: &'static str, value: Option<V>| {
        let (client, table, sk) = (client.clone(), table.clone(), sk.to_owned());
        async move {
            let mut u =
                client.update_item().table_name(table).key("pk", pk).key("sk", V::S(sk)).update_expression(update);
            if let Some(v) = value {
                u = u.expression_attribute_values(":v", v);
            }
            u.send().await.unwrap();
        }
    };
    let corrupt = |r: Result<(), StoreError>, what: &str| match r {
        Err(StoreError::Unavailable(m)) => assert!(m.contains("corrupt"), "{what}: {m}"),
        other => panic!("{what}: {other:?}"),
    };

    // Users: a missing `created_at`, a Boolean stored as a string.
    let u = user("corrupt@example.com");
    s.create_user(&u).await.unwrap();
    edit(pk(&u.id), "PROFILE", "REMOVE created_at", None).await;
    corrupt(s.get_user(&u.id).await.map(|_| ()), "user without created_at");
    corrupt(s.find_user_by_email(&u.email).await.map(|_| ()), "the same user by email");
    edit(pk(&u.id), "PROFILE", "SET created_at = :v", Some(V::N(NOW.to_string()))).await;
    assert!(s.get_user(&u.id).await.unwrap().is_some(), "repaired, it reads again");
    edit(pk(&u.id), "PROFILE", "SET is_active = :v", Some(V::S("true".into()))).await;
    corrupt(s.get_user(&u.id).await.map(|_| ()), "user with is_active a string");
    edit(pk(&u.id), "PROFILE", "SET is_active = :v", Some(V::Bool(true))).await;

    // Sessions: a missing user agent, a non-numeric expiry.
    let x = session(&u.id, "h");
    s.create_session(&x).await.unwrap();
    let sk = format!("SESSION#{}", x.id);
    edit(pk(&u.id), &sk, "REMOVE user_agent", None).await;
    corrupt(s.get_session(&u.id, &x.id, NOW).await.map(|_| ()), "session without user_agent");
    corrupt(s.list_sessions(&u.id, NOW).await.map(|_| ()), "the listing of that session");
    edit(pk(&u.id), &sk, "SET user_agent = :v", Some(V::S("ua".into()))).await;
    edit(pk(&u.id), &sk, "SET idle_expires_at = :v", Some(V::S("soon".into()))).await;
    corrupt(s.get_session(&u.id, &x.id, NOW).await.map(|_| ()), "session with a string expiry");
    // The first session format had no spent list, version or amr: it reads, as `["pwd"]`.
    edit(pk(&u.id), &sk, "SET idle_expires_at = :v REMOVE spent_hashes, sv, amr", Some(V::N((NOW + 600).to_string())))
        .await;
    let old = s.get_session(&u.id, &x.id, NOW).await.unwrap().expect("a first-format session reads");
    assert_eq!((old.amr, old.session_version, old.spent_hashes.len()), (vec!["pwd".to_owned()], 0, 0));

    // Second factor: the last step as a string.
    s.put_pending_mfa(&u.id, "sealed", NOW).await.unwrap();
    assert!(s.get_mfa(&u.id).await.unwrap().is_some_and(|f| f.pending.is_some() && f.secret.is_none()));
    edit(pk(&u.id), "MFA", "SET last_step = :v", Some(V::S("7".into()))).await;
    corrupt(s.get_mfa(&u.id).await.map(|_| ()), "factor with a string step");

    // One-time tokens: no hash. A token of the format before versions binds to none (absent).
    s.put_one_time(OneTimeKind::ResetPassword, &u.id, "t", NOW + 100, u.session_version).await.unwrap();
    edit(pk(&u.id), "OTT#RESET_PASSWORD", "REMOVE token_hash", None).await;
    corrupt(s.peek_one_time(OneTimeKind::ResetPassword, &u.id, "t", NOW).await.map(|_| ()), "token without a hash");
    edit(pk(&u.id), "OTT#RESET_PASSWORD", "SET token_hash = :v REMOVE sv", Some(V::S("t".into()))).await;
    assert!(s.peek_one_time(OneTimeKind::ResetPassword, &u.id, "t", NOW).await.unwrap().is_none());
}
