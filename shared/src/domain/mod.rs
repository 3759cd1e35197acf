//! The domain: one module per use case, each holding only the store port and the services it
//! uses. Nothing here knows HTTP, Lambda or DynamoDB; errors are `DomainError`, which
//! `http::problem` maps to problem+json.

use std::time::Duration;

use crate::email::{self, Email};

pub mod account;
pub mod admin;
pub mod authn;
pub mod discovery;
pub mod error;
#[cfg(test)]
mod lifecycle_model;
pub mod lockout;
pub mod login;
pub mod mfa;
pub mod notify;
pub mod ratelimit;
pub mod recovery;
pub mod sessions;
pub mod signup;
pub mod unlock;
pub mod views;

#[cfg(test)]
pub(crate) mod testkit;

use error::{DomainResult, invalid};

/// A user-supplied address, normalized, or a validation error naming `field`.
pub(crate) fn email_field(field: &str, raw: &str) -> DomainResult<Email> {
    email::normalize(raw).map_err(|e| invalid(field, e.to_string()))
}

/// Display names: at most 100 code points as sent (the schema's `maxLength`, so surrounding
/// blanks count), no control characters; stored trimmed; blank means none.
pub fn validate_name(name: Option<&str>) -> DomainResult<Option<String>> {
    if name.is_some_and(|n| n.chars().count() > 100) {
        return Err(invalid("name", "must be at most 100 characters"));
    }
    let Some(n) = name.map(str::trim).filter(|n| !n.is_empty()) else {
        return Ok(None);
    };
    if n.chars().any(char::is_control) {
        return Err(invalid("name", "must not contain control characters"));
    }
    Ok(Some(n.to_owned()))
}

/// Builds the password judge's dictionaries now (mounts of endpoints that judge passwords call
/// it, so that their first request does not pay for it; elsewhere it would link them).
pub fn warm_password_policy() {
    crate::password::warm_policy();
}

/// Runs `fut`, then waits until at least `floor` has passed since the start, so that the
/// answer's timing does not depend on which branch ran.
pub async fn with_floor<T>(floor: Duration, fut: impl std::future::Future<Output = T>) -> T {
    let deadline = tokio::time::Instant::now() + floor;
    let out = fut.await;
    tokio::time::sleep_until(deadline).await;
    out
}

/// Reset links live one hour (docs/security.md).
pub const RESET_TTL_SECS: i64 = 3600;
/// Email-change links live one hour too: they move the account's sign-in address.
pub const EMAIL_CHANGE_TTL_SECS: i64 = 3600;

#[cfg(test)]
mod name_tests {
    use super::validate_name;

    #[test]
    fn names_are_limited_as_sent_and_stored_trimmed() {
        let hundred = "a".repeat(100);
        assert!(validate_name(Some(&format!(" {hundred} "))).is_err(), "101 code points as sent");
        assert_eq!(validate_name(Some(&format!(" {}", "a".repeat(99)))).unwrap(), Some("a".repeat(99)));
        assert_eq!(validate_name(Some(&hundred)).unwrap(), Some(hundred));
        assert_eq!(validate_name(Some("   ")).unwrap(), None);
        assert!(validate_name(Some("a\u{7}b")).is_err());
    }
}
