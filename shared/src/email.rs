//! Email normalization: trim, reject control characters, Unicode NFKC, lower-case, IDNA
//! (UTS #46) for the domain, then a syntax check by the `email_address` crate.

use unicode_normalization::UnicodeNormalization;

/// A normalized address: the only form that is stored, looked up or mailed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

impl Email {
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// The local part (before the last `@`).
    pub fn local_part(&self) -> &str {
        self.0.rsplit_once('@').map(|(l, _)| l).unwrap_or(&self.0)
    }
    /// Trusted constructor for values read back from the store (already normalized).
    pub fn from_stored(s: String) -> Self {
        Self(s)
    }
}

impl std::fmt::Display for Email {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why an address was refused; the message is safe to show.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmailError {
    #[error("must not be empty")]
    Empty,
    #[error("must not contain control characters")]
    ControlCharacter,
    #[error("must be at most 254 characters")]
    TooLong,
    #[error("is not a valid email address")]
    Invalid,
}

/// RFC 5321 path limit.
pub const MAX_EMAIL_LEN: usize = 254;

/// Normalizes a user-supplied address or says why it cannot be one.
pub fn normalize(raw: &str) -> Result<Email, EmailError> {
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Err(EmailError::Empty);
    }
    if trimmed.chars().any(char::is_control) {
        return Err(EmailError::ControlCharacter);
    }
    // Cheap bound before any Unicode work on hostile input.
    if trimmed.chars().count() > MAX_EMAIL_LEN {
        return Err(EmailError::TooLong);
    }
    let folded: String = trimmed.nfkc().collect::<String>().to_lowercase();
    if folded.chars().any(char::is_control) {
        return Err(EmailError::ControlCharacter);
    }
    let (local, domain) = folded.rsplit_once('@').ok_or(EmailError::Invalid)?;
    if local.is_empty() || domain.is_empty() || local.chars().count() > 64 {
        return Err(EmailError::Invalid);
    }
    let domain = idna::domain_to_ascii(domain).map_err(|_| EmailError::Invalid)?;
    if !domain.contains('.') || domain.starts_with('.') || domain.ends_with('.') {
        return Err(EmailError::Invalid);
    }
    let normalized = format!("{local}@{domain}");
    if normalized.chars().count() > MAX_EMAIL_LEN {
        return Err(EmailError::TooLong);
    }
    if !email_address::EmailAddress::is_valid(&normalized) {
        return Err(EmailError::Invalid);
    }
    Ok(Email(normalized))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_folds_case_and_applies_nfkc_and_idna() {
        assert_eq!(normalize("  Alice@Example.COM ").map(|e| e.0), Ok("alice@example.com".into()));
        // Fullwidth letters fold under NFKC.
        assert_eq!(normalize("ＡＬＩＣＥ@example.com").map(|e| e.0), Ok("alice@example.com".into()));
        assert_eq!(normalize("bob@Bücher.example").map(|e| e.0), Ok("bob@xn--bcher-kva.example".into()));
    }

    #[test]
    fn rejects_control_characters_crlf_and_nul() {
        for bad in ["a\r\nb@example.com", "a@example.com\u{0}", "a\tb@example.com", "a@exa\u{7f}mple.com"] {
            assert_eq!(normalize(bad), Err(EmailError::ControlCharacter), "{bad:?}");
        }
    }

    #[test]
    fn rejects_over_long_and_malformed_addresses() {
        let long = format!("{}@example.com", "a".repeat(250));
        assert_eq!(normalize(&long), Err(EmailError::TooLong));
        for bad in ["", "   ", "noat", "@example.com", "a@", "a@localhost", "a b@example.com", "a@@example.com"] {
            assert!(normalize(bad).is_err(), "{bad:?} accepted");
        }
    }

    proptest::proptest! {
        /// Whatever a client sends, normalizing the stored form again changes nothing: the
        /// address looked up, stored and mailed is one and the same.
        #[test]
        fn normalizing_a_normalized_address_changes_nothing(
            local in "[a-zA-Z0-9._+\\-ÀÉÎÕÜßıİΣσςǅＡＢＣａｂｃ\\u{212A}\\u{0307}\\u{1E9E}]{1,24}",
            domain in "[a-zA-Z0-9\\-äöüÄÖÜＥ]{1,16}\\.[a-zA-Zａ-ｚ]{2,6}",
            pad in " {0,2}",
        ) {
            let raw = format!("{pad}{local}@{domain}{pad}");
            if let Ok(e) = normalize(&raw) {
                proptest::prop_assert_eq!(normalize(e.as_str()), Ok(e.clone()), "{:?}", raw);
            }
        }

        #[test]
        fn any_string_normalizes_idempotently_or_is_refused(raw in "\\PC{0,60}") {
            if let Ok(e) = normalize(&raw) {
                proptest::prop_assert_eq!(normalize(e.as_str()), Ok(e.clone()), "{:?}", raw);
            }
        }
    }

    #[test]
    fn local_part_is_before_the_last_at() {
        assert_eq!(normalize("john.doe@example.com").map(|e| e.local_part().to_owned()), Ok("john.doe".into()));
    }
}
