//! The domain's one error type. It knows nothing of HTTP: `http::problem` is the one place that
//! turns it into a status code and an RFC 9457 problem.

use crate::password::{HashError, PolicyError};
use crate::secret::Token;
use crate::store::StoreError;
use crate::tokens::TokenError;

pub use crate::validation::FieldError;

/// Every way a use case can fail.
#[derive(Debug, thiserror::Error)]
pub enum DomainError {
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    /// A request that cannot be understood (missing grant fields, a bad cursor, …).
    #[error("malformed request: {0}")]
    BadRequest(String),
    /// Unknown, used, superseded or expired one-time token.
    #[error("invalid token")]
    InvalidToken,
    /// Unknown email, wrong password, locked or deactivated account: never told apart.
    #[error("invalid credentials")]
    InvalidCredentials,
    /// A refresh token that is unknown, expired, revoked or replayed.
    #[error("invalid grant")]
    InvalidGrant,
    #[error("unsupported grant type")]
    UnsupportedGrantType,
    /// The password was right and a second factor is active: answer the challenge
    /// `mfa_token` (single use, short-lived) with a code. Carries no access or refresh token.
    #[error("second factor required")]
    MfaRequired { mfa_token: Token },
    /// A challenge answered with a wrong, used or replayed code, or a challenge that is
    /// unknown, used, expired or dead: never told apart.
    #[error("invalid second-factor code")]
    InvalidMfaCode,
    /// A credential change on an account with an active second factor, without the factor's
    /// proof (step-up): nothing changed.
    #[error("step-up required")]
    StepUpRequired,
    /// A credential change whose step-up proof was wrong, used or replayed: nothing changed.
    #[error("step-up refused")]
    StepUpRefused,
    /// Enrolment while a factor is active.
    #[error("second factor already enabled")]
    MfaAlreadyEnabled,
    /// Missing or refused bearer token; `token_sent` says whether one was presented.
    #[error("unauthorized")]
    Unauthorized { token_sent: bool },
    /// A valid token without the needed role.
    #[error("forbidden")]
    Forbidden,
    #[error("not found")]
    NotFound,
    #[error("conflict: {0}")]
    Conflict(String),
    /// Over a rate limit; `reset` is the number of seconds until the window ends.
    #[error("rate limited")]
    RateLimited { limit: u32, reset: u64 },
    /// A dependency (DynamoDB, SES, Secrets Manager) failed after retries.
    #[error("service unavailable: {0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

pub type DomainResult<T> = Result<T, DomainError>;

impl From<StoreError> for DomainError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::EmailTaken => DomainError::Conflict("The email is already registered.".into()),
            StoreError::Unavailable(m) => DomainError::Unavailable(m),
        }
    }
}

impl From<PolicyError> for DomainError {
    fn from(e: PolicyError) -> Self {
        DomainError::Validation(e.0)
    }
}

impl From<HashError> for DomainError {
    fn from(e: HashError) -> Self {
        DomainError::Internal(e.0)
    }
}

impl From<TokenError> for DomainError {
    fn from(e: TokenError) -> Self {
        DomainError::Internal(e.0)
    }
}

/// One validation message as a `Validation` error.
pub fn invalid(field: &str, message: impl Into<String>) -> DomainError {
    DomainError::Validation(vec![FieldError::new(field, message)])
}
