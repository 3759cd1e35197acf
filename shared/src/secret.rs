//! Secret-carrying types: `Debug` is redacted and memory is zeroized on drop.

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer};

/// A password exactly as the client sent it (never trimmed).
#[derive(Clone)]
pub struct Password(SecretString);

impl Password {
    pub fn new(s: impl Into<String>) -> Self {
        Self(SecretString::from(s.into()))
    }
    /// The plaintext; only the hasher and the policy may look.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

impl<'de> Deserialize<'de> for Password {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Password::new)
    }
}

/// An opaque bearer secret (refresh token, one-time mail token).
#[derive(Clone)]
pub struct Token(SecretString);

impl Token {
    pub fn new(s: impl Into<String>) -> Self {
        Self(SecretString::from(s.into()))
    }
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

impl<'de> Deserialize<'de> for Token {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Token::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_secret() {
        let p = Password::new("hunter2-correct-horse");
        let t = Token::new("rt-secret-value");
        assert!(!format!("{p:?}").contains("hunter2"));
        assert!(!format!("{t:?}").contains("rt-secret"));
        assert_eq!(p.expose(), "hunter2-correct-horse");
    }
}
