//! In-process test doubles for the use-case tests: the memory store, a manual clock, a mailer
//! that records, cheap hashing and an ephemeral key.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex};

use crate::clock::ManualClock;
use crate::config::{Config, HashParams};
use crate::context::RequestCtx;
use crate::domain::notify::Notifier;
use crate::domain::sessions::SessionIssuer;
use crate::keys::{KeyAlg, KeyProvider, KeySet};
use crate::mail::{Mail, MailError, Mailer};
use crate::password::Hasher;
use crate::store::memory::MemoryStore;
use crate::tokens::Jwt;

/// Keeps every mail it is asked to send.
#[derive(Default)]
pub struct Outbox(Mutex<Vec<Mail>>);

impl Outbox {
    /// A copy of the mail so far.
    pub fn snapshot(&self) -> Self {
        Self(Mutex::new(self.0.lock().unwrap().clone()))
    }

    pub fn to(&self, addr: &str) -> Vec<Mail> {
        self.0.lock().unwrap().iter().filter(|m| m.to == addr).cloned().collect()
    }

    /// The one-time token in the newest mail to `addr`.
    pub fn token_to(&self, addr: &str) -> String {
        let mail = self.to(addr).pop().expect("a mail");
        let at = mail.text.find("token=").expect("a link") + "token=".len();
        mail.text[at..].chars().take_while(|c| c.is_ascii_alphanumeric() || "-_.".contains(*c)).collect()
    }
}

#[async_trait::async_trait]
impl Mailer for Outbox {
    async fn send(&self, mail: &Mail) -> Result<(), MailError> {
        self.0.lock().unwrap().push(mail.clone());
        Ok(())
    }
}

/// Everything a use case is built from, in memory.
pub struct Kit {
    pub cfg: Config,
    pub store: Arc<MemoryStore>,
    pub clock: ManualClock,
    pub outbox: Arc<Outbox>,
    pub hasher: Hasher,
    pub keys: Arc<KeyProvider>,
}

pub const PASSWORD: &str = "violet-tractor-sunrise-42";

impl Kit {
    pub fn new() -> Self {
        let cfg = Config { hash: HashParams::TEST, enumeration_floor: std::time::Duration::ZERO, ..Config::default() };
        Self {
            hasher: Hasher::new(cfg.hash, 2),
            cfg,
            store: Arc::new(MemoryStore::new()),
            clock: ManualClock::at(crate::now()),
            outbox: Arc::new(Outbox::default()),
            keys: Arc::new(KeyProvider::fixed(KeySet::ephemeral(KeyAlg::ES256).unwrap())),
        }
    }

    /// A copy of the kit's state (store, mail, clock) that acts apart from it.
    pub fn snapshot(&self) -> Self {
        Self {
            cfg: self.cfg.clone(),
            store: Arc::new(self.store.snapshot()),
            clock: ManualClock::at(self.clock.now()),
            outbox: Arc::new(self.outbox.snapshot()),
            hasher: self.hasher.clone(),
            keys: self.keys.clone(),
        }
    }

    pub fn notifier(&self) -> Notifier {
        Notifier::new(self.outbox.clone(), &self.cfg, None)
    }

    pub fn lockout(&self) -> crate::domain::lockout::Lockout {
        crate::domain::lockout::Lockout::new(self.store.clone(), self.notifier(), &self.cfg, self.clock.shared())
    }

    pub fn jwt(&self) -> Jwt {
        Jwt::new(self.keys.clone(), self.cfg.issuer.clone(), self.cfg.audience.clone(), self.cfg.access_ttl)
    }

    pub fn issuer(&self) -> SessionIssuer {
        SessionIssuer::new(self.jwt(), &self.cfg)
    }

    pub fn ctx(ip: &str) -> RequestCtx {
        RequestCtx { request_id: "test".into(), ip: ip.into(), ..Default::default() }
    }
}

impl Kit {
    /// A verified, active user with `password`, written straight into the store.
    pub async fn user(&self, email: &str, password: &str) -> crate::store::User {
        let now = self.clock.now();
        let user = crate::store::User {
            id: uuid::Uuid::new_v4().to_string(),
            email: email.to_owned(),
            name: None,
            password_hash: self.hasher.hash(&crate::secret::Password::new(password)).await.unwrap(),
            is_active: true,
            is_verified: true,
            is_superuser: false,
            created_at: now,
            updated_at: now,
            last_login_at: None,
            session_version: 1,
            mfa_enabled: false,
            pending_signup: false,
            registrations: Vec::new(),
        };
        crate::store::AdminStore::admin_create_user(self.store.as_ref(), &user).await.unwrap();
        user
    }

    /// The user as stored now.
    pub async fn stored(&self, id: &str) -> crate::store::User {
        crate::store::UserLookup::get_user(self.store.as_ref(), id).await.unwrap().unwrap()
    }
}

#[cfg(test)]
mod redaction {
    use super::*;

    #[tokio::test]
    async fn given_types_holding_secrets_then_debug_prints_none_of_them() {
        let k = Kit::new();
        let u = k.user("red@example.com", PASSWORD).await;
        let t = k.issuer().start(k.store.as_ref(), &u, &Kit::ctx("192.0.2.1"), k.clock.now()).await.unwrap();
        let sessions = crate::store::SessionStore::list_sessions(k.store.as_ref(), &u.id, k.clock.now()).await.unwrap();
        let parts = crate::tokens::parse_refresh(&t.refresh_token).unwrap();
        let secret = t.refresh_token.rsplit('.').next().unwrap().to_owned();
        let keys = k.keys.keys();
        let printed = format!("{u:?} {t:?} {:?} {parts:?} {keys:?}", sessions[0]);
        for needle in [
            u.password_hash.as_str(),
            t.access_token.as_str(),
            secret.as_str(),
            sessions[0].current_hash.as_str(),
            parts.secret_hash.as_str(),
            "PRIVATE",
            "cursor_key",
        ] {
            assert!(!printed.contains(needle), "Debug printed {needle}: {printed}");
        }
        assert!(printed.contains(&u.id), "ids still print: {printed}");
    }

    #[test]
    fn given_second_factor_types_then_debug_prints_no_secret_code_or_challenge() {
        use crate::domain::error::DomainError;
        use crate::domain::mfa::{Enrolment, RecoveryCodes, StepUpProof};
        use crate::store::{MfaProof, Registration};
        let enrolment = Enrolment {
            secret: "JBSWY3DPEHPK3PXPSECRET".into(),
            otpauth_uri: "otpauth://totp/x:y?secret=JBSWY3DPEHPK3PXPSECRET".into(),
        };
        let codes = RecoveryCodes { recovery_codes: vec!["abcd-efgh-ijkl-mnop".into()] };
        let challenge = DomainError::MfaRequired { mfa_token: crate::secret::Token::new("user.CHALLENGESECRET") };
        let proofs = [
            MfaProof::Totp { sealed: "v1.SEALEDSECRET".into(), step: 7 },
            MfaProof::Recovery { hash: "RECOVERYHASH".into() },
        ];
        let step_up = StepUpProof::Code("123456");
        let registration = Registration { password_hash: "$argon2id$REGHASH".into(), name: None, created_at: 1 };
        let printed = format!("{enrolment:?} {codes:?} {challenge:?} {proofs:?} {step_up:?} {registration:?}");
        for needle in
            ["JBSWY3DPEHPK3PXP", "abcd-efgh", "CHALLENGESECRET", "SEALEDSECRET", "RECOVERYHASH", "123456", "REGHASH"]
        {
            assert!(!printed.contains(needle), "Debug printed {needle}: {printed}");
        }
        assert!(printed.contains("step: 7") && printed.contains("count: 1"), "{printed}");
    }
}
