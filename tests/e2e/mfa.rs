//! The second factor end to end against DynamoDB Local and moto: enrolment with codes an
//! authenticator app would show (`totp-rs`), the login's challenge, the token grant, replay and
//! skew, recovery codes, lockout, disable, the admin reset, notices and the sealed secret.

use e2e::*;
use serde_json::{Value, json};

fn at(t: &Value) -> &str {
    t["access_token"].as_str().unwrap()
}

fn claims(access: &str) -> Value {
    let payload = access.split('.').nth(1).unwrap();
    serde_json::from_slice(&base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload).unwrap())
        .unwrap()
}

async fn verify(s: &TestServer, token: &str, body: Value) -> reqwest::Response {
    let mut b = json!({"mfa_token": token});
    b.as_object_mut().unwrap().extend(body.as_object().unwrap().clone());
    s.post("/auth/mfa/verify", b).await
}

async fn signed_in(s: &TestServer) -> (String, Value) {
    let email = unique_email();
    s.verified_user(&email).await;
    let t = s.login(&email, PASSWORD).await;
    (email, t)
}

#[tokio::test]
async fn given_an_authenticator_app_then_enrolment_login_and_the_token_grant_carry_the_second_factor() {
    let s = start(|_| {}).await;
    let (email, t) = signed_in(&s).await;
    let before = claims(at(&t));
    assert_eq!(before["amr"], json!(["pwd"]));
    let me: Value = s.get_bearer("/auth/me", at(&t)).await.json().await.unwrap();
    assert_eq!(me["mfa_enabled"], false);
    let (secret, codes) = s.enable_totp(&t).await;
    assert_eq!(codes.len(), 10);
    // The enabling bumped the session version: older access tokens die, the caller's session
    // refreshes.
    assert_eq!(s.get_bearer("/auth/me", at(&t)).await.status(), 401);
    let r = s.post("/auth/refresh", json!({"refresh_token": t["refresh_token"]})).await;
    assert_eq!(r.status(), 200);
    let refreshed: Value = r.json().await.unwrap();
    let me: Value = s.get_bearer("/auth/me", at(&refreshed)).await.json().await.unwrap();
    assert_eq!(me["mfa_enabled"], true);

    // The login's answer is the challenge, and nothing that signs in.
    let r = s.post("/auth/login", json!({"email": email, "password": PASSWORD})).await;
    assert_eq!(r.status(), 403);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let p: Value = r.json().await.unwrap();
    assert_eq!(p["type"], "urn:secure-auth:problem:mfa-required");
    assert_eq!(p["error"], "mfa_required");
    assert_eq!(p["factors"], json!(["totp", "recovery_code"]));
    assert!(p.get("access_token").is_none() && p.get("refresh_token").is_none(), "{p}");
    // A wrong password is still the one 401.
    let r = s.post("/auth/login", json!({"email": email, "password": "wrong-password-1"})).await;
    assert_eq!(r.status(), 401);

    let now = unix_now();
    let r = verify(&s, p["mfa_token"].as_str().unwrap(), json!({"code": totp_at(&secret, now)})).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    assert_eq!(r.headers()["cache-control"], "no-store");
    let signed: Value = r.json().await.unwrap();
    assert_eq!(claims(at(&signed))["amr"], json!(["pwd", "otp"]));
    // A refreshed token keeps the method.
    let r = s.post("/auth/refresh", json!({"refresh_token": signed["refresh_token"]})).await;
    assert_eq!(claims(at(&r.json::<Value>().await.unwrap()))["amr"], json!(["pwd", "otp"]));

    // The token endpoint: the password grant answers the challenge, the MFA grant answers it.
    let form = [("grant_type", "password"), ("username", email.as_str()), ("password", PASSWORD)];
    let r = s.http.post(s.url("/auth/token")).form(&form).send().await.unwrap();
    assert_eq!(r.status(), 403);
    let p: Value = r.json().await.unwrap();
    assert_eq!(p["error"], "mfa_required");
    let next = totp_at(&secret, now + 30);
    let form = [
        ("grant_type", "urn:secure-auth:grant-type:mfa-otp"),
        ("mfa_token", p["mfa_token"].as_str().unwrap()),
        ("otp", next.as_str()),
    ];
    let r = s.http.post(s.url("/auth/token")).form(&form).send().await.unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let granted: Value = r.json().await.unwrap();
    assert_eq!(claims(at(&granted))["amr"], json!(["pwd", "otp"]));
    assert_eq!(granted["token_type"], "Bearer");

    let subjects: Vec<String> = mails_to(&email).await.into_iter().map(|m| m.subject).collect();
    assert!(subjects.iter().any(|s| s.contains("two-step sign-in was turned on")), "{subjects:?}");
}

#[tokio::test]
async fn given_a_used_code_or_one_two_steps_off_then_it_is_refused_and_one_step_off_is_accepted() {
    let s = start(|_| {}).await;
    let (email, t) = signed_in(&s).await;
    let (secret, _, confirmed_at) = s.enable_totp_at(&t).await;
    // The confirmation spent the step before it: a replay of that code is refused.
    let ch = s.mfa_challenge(&email).await;
    let r = verify(&s, &ch, json!({"code": totp_at(&secret, confirmed_at - 30)})).await;
    assert_eq!(r.status(), 401);
    let p: Value = r.json().await.unwrap();
    assert_eq!(p["type"], "urn:secure-auth:problem:invalid-mfa-code");
    assert_eq!(p["error"], "invalid_grant");
    // Two steps ahead is outside the skew.
    away_from_step_edge().await;
    let now = unix_now();
    let r = verify(&s, &ch, json!({"code": totp_at(&secret, now + 60)})).await;
    assert_eq!(r.status(), 401);
    // One step ahead is inside it; then the current step, older now, is refused.
    let r = verify(&s, &ch, json!({"code": totp_at(&secret, now + 30)})).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let ch = s.mfa_challenge(&email).await;
    let r = verify(&s, &ch, json!({"code": totp_at(&secret, now)})).await;
    assert_eq!(r.status(), 401, "a step older than the last accepted one");
}

#[tokio::test]
async fn given_one_code_on_four_challenges_at_once_then_exactly_one_signs_in() {
    let s = start(|_| {}).await;
    let (email, t) = signed_in(&s).await;
    let (secret, _) = s.enable_totp(&t).await;
    let chs: Vec<String> = futures::future::join_all((0..4).map(|_| s.mfa_challenge(&email))).await;
    // The confirmation spent the step before now; this one is fresh.
    let code = totp_at(&secret, unix_now());
    let all = futures::future::join_all(chs.iter().map(|c| verify(&s, c, json!({"code": code})))).await;
    let statuses: Vec<u16> = all.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 1, "{statuses:?}");
    assert!(statuses.iter().all(|s| *s == 200 || *s == 401), "{statuses:?}");
}

#[tokio::test]
async fn given_recovery_codes_then_each_signs_in_once_with_amr_mfa_and_the_owner_is_told() {
    let s = start(|_| {}).await;
    let (email, t) = signed_in(&s).await;
    let (_, codes) = s.enable_totp(&t).await;
    let ch = s.mfa_challenge(&email).await;
    let r = verify(&s, &ch, json!({"recovery_code": codes[0].to_uppercase()})).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    assert_eq!(claims(at(&r.json::<Value>().await.unwrap()))["amr"], json!(["pwd", "mfa"]));
    let ch = s.mfa_challenge(&email).await;
    assert_eq!(verify(&s, &ch, json!({"recovery_code": codes[0]})).await.status(), 401, "single use");
    // Through the token grant too.
    let form = [
        ("grant_type", "urn:secure-auth:grant-type:mfa-otp"),
        ("mfa_token", ch.as_str()),
        ("recovery_code", codes[1].as_str()),
    ];
    let r = s.http.post(s.url("/auth/token")).form(&form).send().await.unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let mail = mail_to(&email, "a recovery code was used").await;
    assert!(mail.body.contains("8 unused codes"), "{}", mail.body);
    // Both or neither: an answer with both fields is malformed and spends nothing.
    let ch = s.mfa_challenge(&email).await;
    let r = verify(&s, &ch, json!({"code": "123456", "recovery_code": codes[2]})).await;
    assert_eq!(r.status(), 400);
    assert_eq!(verify(&s, &ch, json!({"recovery_code": codes[2]})).await.status(), 200);
}

#[tokio::test]
async fn given_wrong_codes_then_the_challenge_dies_after_five_and_they_lock_the_account_for_that_ip() {
    let s = start(|_| {}).await;
    let (email, t) = signed_in(&s).await;
    let (secret, _) = s.enable_totp(&t).await;
    let ch = s.mfa_challenge(&email).await;
    let right = totp_at(&secret, unix_now());
    let wrong = if right == "000000" { "111111" } else { "000000" };
    for _ in 0..5 {
        assert_eq!(verify(&s, &ch, json!({"code": wrong})).await.status(), 401);
    }
    assert_eq!(verify(&s, &ch, json!({"code": right})).await.status(), 401, "the challenge is dead");
    // The five wrong codes (threshold 5) locked the account for this IP: the password alone
    // now gets the one 401, and the owner was told.
    let r = s.post("/auth/login", json!({"email": email, "password": PASSWORD})).await;
    assert_eq!(r.status(), 401);
    mail_to(&email, "locked").await;
}

#[tokio::test]
async fn given_the_secret_at_rest_then_the_table_holds_it_only_sealed_under_the_secrets_manager_key() {
    let key_id = e2e::lambda::mfa_key_secret().await;
    let s = start(|c| c.mfa_key_secret_id = Some(key_id.clone())).await;
    let (email, t) = signed_in(&s).await;
    let (secret, codes) = s.enable_totp(&t).await;
    let raw = totp_rs::Secret::try_from_base32(&secret).unwrap().as_ref().to_vec();
    let b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &raw);
    let b64url = base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, &raw);
    let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    let dump = format!("{:?}", s.items().await);
    for needle in [secret.as_str(), &secret.to_lowercase(), &b64, &b64url, &hex] {
        assert!(!dump.contains(needle), "the table shows the secret as {needle}");
    }
    for c in &codes {
        assert!(!dump.contains(c.as_str()), "a recovery code in the clear");
    }
    let id = s.user_id(&email).await;
    let item = s
        .items()
        .await
        .into_iter()
        .find(|i| i["pk"].as_s().unwrap() == &format!("USER#{id}") && i["sk"].as_s().unwrap() == "MFA")
        .expect("the factor item");
    let sealed = item["secret"].as_s().unwrap();
    assert!(sealed.starts_with("v1."), "{sealed}");
    // It opens under the key in Secrets Manager, for this user only.
    let sdk = shared::wiring::aws_config().await.unwrap();
    let text = aws_sdk_secretsmanager::Client::new(&sdk).get_secret_value().secret_id(&key_id).send().await.unwrap();
    let sealer = shared::mfa::Sealer::from_secret_text(text.secret_string().unwrap()).unwrap();
    assert_eq!(sealer.open(&id, sealed).unwrap().as_bytes(), raw.as_slice());
    assert!(sealer.open("another-user", sealed).is_err());
    assert!(shared::mfa::Sealer::ephemeral().unwrap().open(&id, sealed).is_err());
}

#[tokio::test]
async fn given_disable_then_it_needs_the_password_and_a_code_and_a_password_signs_in_again() {
    let s = start(|_| {}).await;
    let (email, t) = signed_in(&s).await;
    let (secret, codes) = s.enable_totp(&t).await;
    let r = s.post("/auth/refresh", json!({"refresh_token": t["refresh_token"]})).await;
    let t: Value = r.json().await.unwrap();
    let now = unix_now();
    let r = s
        .post_bearer(
            "/auth/mfa/totp/disable",
            at(&t),
            json!({"current_password": "wrong-password-1", "code": totp_at(&secret, now)}),
        )
        .await;
    assert_eq!(r.status(), 400);
    let p: Value = r.json().await.unwrap();
    assert_eq!(p["errors"][0]["field"], "current_password");
    let r =
        s.post_bearer("/auth/mfa/totp/disable", at(&t), json!({"current_password": PASSWORD, "code": "000000x"})).await;
    assert_eq!(r.status(), 400);
    // New recovery codes replace the old ones (with a recovery code as the proof).
    let r = s
        .post_bearer("/auth/mfa/recovery-codes", at(&t), json!({"current_password": PASSWORD, "code": codes[0]}))
        .await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let fresh: Value = r.json().await.unwrap();
    let fresh = fresh["recovery_codes"].as_array().unwrap().clone();
    assert_eq!(fresh.len(), 10);
    let r =
        s.post_bearer("/auth/mfa/totp/disable", at(&t), json!({"current_password": PASSWORD, "code": codes[1]})).await;
    assert_eq!(r.status(), 400, "an old code is gone");
    let r = s
        .post_bearer(
            "/auth/mfa/totp/disable",
            at(&t),
            json!({"current_password": PASSWORD, "code": totp_at(&secret, now)}),
        )
        .await;
    assert_eq!(r.status(), 204, "{}", r.text().await.unwrap());
    s.login(&email, PASSWORD).await;
    let subjects: Vec<String> = mails_to(&email).await.into_iter().map(|m| m.subject).collect();
    assert!(subjects.iter().any(|s| s.contains("new recovery codes")), "{subjects:?}");
    assert!(subjects.iter().any(|s| s.contains("turned off")), "{subjects:?}");
    let id = s.user_id(&email).await;
    assert!(
        !s.items()
            .await
            .iter()
            .any(|i| i["pk"].as_s().unwrap() == &format!("USER#{id}") && i["sk"].as_s().unwrap() == "MFA")
    );
}

#[tokio::test]
async fn given_a_password_reset_then_the_factor_stays_and_an_admin_reset_removes_it() {
    let admin = unique_email();
    let s = start_with_admin(&admin).await;
    let admin_t = s.login(&admin, PASSWORD).await;
    let (email, t) = signed_in(&s).await;
    s.enable_totp(&t).await;
    // A password reset (someone with the mailbox) does not remove the second factor.
    s.post("/auth/forgot-password", json!({"email": email})).await;
    let token = token_from_mail(&email, "reset").await;
    let new_pw = "amber-lantern-orchard-77";
    let r = s.post("/auth/reset-password", json!({"token": token, "new_password": new_pw})).await;
    assert_eq!(r.status(), 204, "{}", r.text().await.unwrap());
    let r = s.post("/auth/login", json!({"email": email, "password": new_pw})).await;
    assert_eq!(r.status(), 403, "still asks for the factor");
    // Only an administrator's reset does; it is not for anyone else.
    let id = s.user_id(&email).await;
    let path = format!("/users/{id}/mfa/reset");
    assert_eq!(s.post_bearer(&path, at(&t), json!({})).await.status(), 401, "a user's (stale) token");
    let r = s.http.post(s.url(&path)).bearer_auth(at(&admin_t)).send().await.unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let u: Value = r.json().await.unwrap();
    assert_eq!(u["mfa_enabled"], false);
    assert_eq!(u["id"], id.as_str());
    s.login(&email, new_pw).await;
    mail_to(&email, "two-step sign-in was reset").await;
    let r = s.http.post(s.url("/users/no-such-user/mfa/reset")).bearer_auth(at(&admin_t)).send().await.unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn given_enrolment_then_it_needs_the_password_and_refuses_a_second_factor() {
    let s = start(|_| {}).await;
    let (_, t) = signed_in(&s).await;
    let r = s.post_bearer("/auth/mfa/totp/enroll", at(&t), json!({"current_password": "wrong-password-1"})).await;
    assert_eq!(r.status(), 400);
    let r = s.post_bearer("/auth/mfa/totp/confirm", at(&t), json!({"code": "123456"})).await;
    assert_eq!(r.status(), 409, "nothing pending");
    let r = s.post_bearer("/auth/mfa/totp/enroll", at(&t), json!({"current_password": PASSWORD, "extra": 1})).await;
    assert_eq!(r.status(), 400, "unknown fields");
    assert_eq!(s.post("/auth/mfa/totp/enroll", json!({"current_password": PASSWORD})).await.status(), 401);
    s.enable_totp(&t).await;
    let r = s.post("/auth/refresh", json!({"refresh_token": t["refresh_token"]})).await;
    let t: Value = r.json().await.unwrap();
    let r = s.post_bearer("/auth/mfa/totp/enroll", at(&t), json!({"current_password": PASSWORD})).await;
    assert_eq!(r.status(), 409);
    let p: Value = r.json().await.unwrap();
    assert_eq!(p["type"], "urn:secure-auth:problem:mfa-already-enabled");
}

mod functions {
    //! The same through the function binaries, as Lambda runs them, with the MFA key read
    //! from Secrets Manager (moto) at cold start.
    use e2e::lambda::{Event, HttpResponse, Stack};
    use e2e::*;
    use serde_json::{Value, json};

    fn ok(r: &HttpResponse, status: u16) -> Value {
        assert_eq!(r.status, status, "{}", String::from_utf8_lossy(&r.body));
        if r.body.is_empty() { Value::Null } else { r.json() }
    }

    fn bearer(path: &str, token: &str, body: Value) -> Event {
        Event::post(path, body).bearer(token).authorizer_claims(super::claims(token))
    }

    #[tokio::test]
    async fn given_the_mfa_functions_then_enrolment_challenge_grant_disable_and_reset_work_through_lambda() {
        let stack = Stack::new().await;
        let store = shared::store::dynamo::DynamoStore::new(
            aws_sdk_dynamodb::Client::new(&shared::wiring::aws_config().await.unwrap()),
            &stack.table,
        );
        let hasher = shared::password::Hasher::new(shared::config::HashParams::TEST, 1);
        let hash = hasher.hash(&shared::secret::Password::new(PASSWORD)).await.unwrap();
        let user = stored_user(&store, &hash, false).await;
        let admin = stored_user(&store, &hash, true).await;
        let names = ["login", "mfa-enroll", "mfa-verify", "token", "mfa-manage", "users-mfa-reset", "refresh"];
        let [login, enroll, verify, token, manage, reset, refresh] = names.map(|b| stack.function(b));
        let (login, enroll, verify, token, manage, reset, refresh) =
            tokio::join!(login, enroll, verify, token, manage, reset, refresh);
        let creds = json!({"email": user.email, "password": PASSWORD});
        let t = ok(&login.http(Event::post("/auth/login", creds.clone())).await, 200);
        let access = t["access_token"].as_str().unwrap();

        let e =
            ok(&enroll.http(bearer("/auth/mfa/totp/enroll", access, json!({"current_password": PASSWORD}))).await, 200);
        let uri = e["otpauth_uri"].as_str().unwrap();
        assert!(uri.starts_with("otpauth://totp/Secure%20Auth:"), "{uri}");
        let secret = otpauth_secret(uri);
        away_from_step_edge().await;
        let confirmed_at = unix_now();
        let code = totp_at(&secret, confirmed_at - 30);
        let codes = ok(&enroll.http(bearer("/auth/mfa/totp/confirm", access, json!({"code": code}))).await, 200);
        let codes: Vec<String> =
            codes["recovery_codes"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_owned()).collect();
        assert_eq!(codes.len(), 10);

        // The login's challenge, answered at mfa-verify.
        let p = ok(&login.http(Event::post("/auth/login", creds.clone())).await, 403);
        assert_eq!(p["error"], "mfa_required");
        let r = verify.http(Event::post("/auth/mfa/verify", json!({"mfa_token": p["mfa_token"], "code": code}))).await;
        assert_eq!(ok(&r, 401)["type"], "urn:secure-auth:problem:invalid-mfa-code", "the confirmation's code is spent");
        let now = unix_now();
        let r = verify
            .http(Event::post("/auth/mfa/verify", json!({"mfa_token": p["mfa_token"], "code": totp_at(&secret, now)})))
            .await;
        let signed = ok(&r, 200);
        assert_eq!(super::claims(signed["access_token"].as_str().unwrap())["amr"], json!(["pwd", "otp"]));
        let rotated = ok(
            &refresh.http(Event::post("/auth/refresh", json!({"refresh_token": signed["refresh_token"]}))).await,
            200,
        );
        assert_eq!(super::claims(rotated["access_token"].as_str().unwrap())["amr"], json!(["pwd", "otp"]));

        // The token function: the password grant's challenge and the MFA grant with a recovery code.
        let form = format!(
            "grant_type=password&username={}&password={PASSWORD}",
            user.email.replace('+', "%2B").replace('@', "%40")
        );
        let ev = Event::new("POST", "/auth/token").base64_body("application/x-www-form-urlencoded", form.as_bytes());
        let p = ok(&token.http(ev).await, 403);
        assert_eq!(p["error"], "mfa_required");
        let grant = json!({"grant_type": "urn:secure-auth:grant-type:mfa-otp", "mfa_token": p["mfa_token"], "recovery_code": codes[0]});
        let granted = ok(&token.http(Event::post("/auth/token", grant.clone())).await, 200);
        assert_eq!(super::claims(granted["access_token"].as_str().unwrap())["amr"], json!(["pwd", "mfa"]));
        assert_eq!(ok(&token.http(Event::post("/auth/token", grant)).await, 401)["error"], "invalid_grant");

        // Disable at mfa-manage, with the password and a recovery code.
        let a = granted["access_token"].as_str().unwrap();
        let r = manage
            .http(bearer("/auth/mfa/totp/disable", a, json!({"current_password": PASSWORD, "code": codes[0]})))
            .await;
        assert_eq!(ok(&r, 400)["errors"][0]["field"], "code", "a spent code");
        let r = manage
            .http(bearer("/auth/mfa/totp/disable", a, json!({"current_password": PASSWORD, "code": codes[1]})))
            .await;
        ok(&r, 204);
        ok(&login.http(Event::post("/auth/login", creds.clone())).await, 200);

        // The admin reset function removes a factor set up again.
        let t = ok(&login.http(Event::post("/auth/login", creds.clone())).await, 200);
        let access = t["access_token"].as_str().unwrap();
        let e =
            ok(&enroll.http(bearer("/auth/mfa/totp/enroll", access, json!({"current_password": PASSWORD}))).await, 200);
        let secret = otpauth_secret(e["otpauth_uri"].as_str().unwrap());
        let code = totp_at(&secret, unix_now());
        ok(&enroll.http(bearer("/auth/mfa/totp/confirm", access, json!({"code": code}))).await, 200);
        ok(&login.http(Event::post("/auth/login", creds.clone())).await, 403);
        let at =
            ok(&login.http(Event::post("/auth/login", json!({"email": admin.email, "password": PASSWORD}))).await, 200);
        let admin_access = at["access_token"].as_str().unwrap();
        let path = format!("/users/{}/mfa/reset", user.id);
        let u = ok(&reset.http(bearer(&path, admin_access, json!({}))).await, 200);
        assert_eq!(u["mfa_enabled"], false);
        ok(&login.http(Event::post("/auth/login", creds)).await, 200);
        let subjects: Vec<String> = mails_to(&user.email).await.into_iter().map(|m| m.subject).collect();
        for s in ["turned on", "a recovery code was used", "turned off", "was reset"] {
            assert!(subjects.iter().any(|x| x.contains(s)), "{s}: {subjects:?}");
        }
    }

    #[tokio::test]
    async fn given_no_readable_mfa_key_then_the_functions_that_need_it_answer_503_and_login_still_works() {
        let stack = Stack::new().await.with("MFA_KEY_SECRET_ID", "no-such-mfa-key");
        let (verify, login) = tokio::join!(stack.function("mfa-verify"), stack.function("login"));
        let r = verify.http(Event::post("/auth/mfa/verify", json!({"mfa_token": "x.y", "code": "123456"}))).await;
        assert_eq!(ok(&r, 503)["type"], "urn:secure-auth:problem:unavailable");
        // Login links no MFA key and does not read it.
        let r = login.http(Event::post("/auth/login", json!({"email": unique_email(), "password": PASSWORD}))).await;
        assert_eq!(r.status, 401);
    }
}
