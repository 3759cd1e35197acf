//! What use cases return to callers: the public view of a user and of a session, and the
//! RFC 6749 token response. None of them carries a hash, a lockout internal or key material.

use serde::Serialize;

use crate::store::{Session, User};

/// RFC 6749 §5.1 token response.
#[derive(Serialize, utoipa::ToSchema)]
pub struct TokenResponse {
    pub access_token: String,
    #[schema(value_type = String, example = "Bearer")]
    pub token_type: &'static str,
    pub expires_in: u64,
    pub refresh_token: String,
    pub refresh_token_expires_in: u64,
    pub scope: String,
}

// `Debug` shows no token.
impl std::fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenResponse")
            .field("expires_in", &self.expires_in)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

/// The public view of a user (never hashes, tokens or lockout internals).
#[derive(Debug, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct UserView {
    pub id: String,
    #[schema(format = Email)]
    pub email: String,
    pub name: Option<String>,
    pub is_active: bool,
    pub is_verified: bool,
    pub is_superuser: bool,
    /// A second factor (TOTP) is active.
    pub mfa_enabled: bool,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
    #[schema(format = DateTime)]
    pub last_login_at: Option<String>,
}

/// RFC 3339 UTC, seconds precision.
pub fn rfc3339(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0).unwrap_or_default().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

impl From<&User> for UserView {
    fn from(u: &User) -> Self {
        Self {
            id: u.id.clone(),
            email: u.email.clone(),
            name: u.name.clone(),
            is_active: u.is_active,
            is_verified: u.is_verified,
            is_superuser: u.is_superuser,
            mfa_enabled: u.mfa_enabled,
            created_at: rfc3339(u.created_at),
            updated_at: rfc3339(u.updated_at),
            last_login_at: u.last_login_at.map(rfc3339),
        }
    }
}

/// A session as `GET /auth/sessions` lists it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SessionView {
    pub id: String,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub last_used_at: String,
    pub ip: String,
    pub user_agent: String,
    /// True for the session the calling access token belongs to.
    pub current: bool,
}

impl SessionView {
    pub fn of(s: Session, current_sid: &str) -> Self {
        SessionView {
            current: s.id == current_sid,
            created_at: rfc3339(s.created_at),
            last_used_at: rfc3339(s.last_used_at),
            id: s.id,
            ip: s.ip,
            user_agent: s.user_agent,
        }
    }
}
