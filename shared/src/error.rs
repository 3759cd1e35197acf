//! One error type for the whole service and the one place that maps it to HTTP
//! (RFC 9457 problem+json). Internal details are logged with the request id, never sent.

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde::Serialize;

/// A field-level validation message, listed in the problem's `errors`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: &str, message: impl Into<String>) -> Self {
        Self { field: field.to_owned(), message: message.into() }
    }
}

/// Every failure a request can end in.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    #[error("malformed request: {0}")]
    BadRequest(String),
    #[error("invalid token")]
    InvalidToken,
    #[error("invalid credentials")]
    InvalidCredentials,
    #[error("invalid grant")]
    InvalidGrant,
    #[error("unsupported grant type")]
    UnsupportedGrantType,
    #[error("email not verified")]
    EmailNotVerified,
    /// Missing or rejected bearer token; `sent` says whether one was presented.
    #[error("unauthorized")]
    Unauthorized { sent: bool },
    #[error("forbidden")]
    Forbidden,
    #[error("not found")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("payload too large")]
    PayloadTooLarge,
    #[error("unsupported media type")]
    UnsupportedMediaType,
    #[error("conflict")]
    Conflict(String),
    /// Over a rate limit; the headers tell when to come back.
    #[error("rate limited")]
    RateLimited { limit: u32, reset: u64 },
    /// A dependency (DynamoDB, SES, Secrets Manager) failed after retries.
    #[error("service unavailable: {0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

/// Where token endpoints add RFC 6749 §5.2 `error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OAuthFlavour {
    Plain,
    TokenEndpoint,
}

impl AppError {
    /// Status, stable slug and title: the public face of each variant.
    pub fn parts(&self) -> (StatusCode, &'static str, &'static str) {
        use AppError::*;
        match self {
            Validation(_) => (StatusCode::BAD_REQUEST, "validation-failed", "Validation failed"),
            BadRequest(_) => (StatusCode::BAD_REQUEST, "malformed-request", "Malformed request"),
            InvalidToken => (StatusCode::BAD_REQUEST, "invalid-token", "Invalid or expired token"),
            InvalidCredentials => (StatusCode::UNAUTHORIZED, "invalid-credentials", "Invalid credentials"),
            InvalidGrant => (StatusCode::UNAUTHORIZED, "invalid-grant", "Invalid grant"),
            UnsupportedGrantType => (StatusCode::BAD_REQUEST, "unsupported-grant-type", "Unsupported grant type"),
            EmailNotVerified => (StatusCode::FORBIDDEN, "email-not-verified", "Email not verified"),
            Unauthorized { .. } => (StatusCode::UNAUTHORIZED, "unauthorized", "Unauthorized"),
            Forbidden => (StatusCode::FORBIDDEN, "forbidden", "Forbidden"),
            NotFound => (StatusCode::NOT_FOUND, "not-found", "Not found"),
            MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method-not-allowed", "Method not allowed"),
            PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "payload-too-large", "Payload too large"),
            UnsupportedMediaType => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported-media-type", "Unsupported media type")
            }
            Conflict(_) => (StatusCode::CONFLICT, "conflict", "Conflict"),
            RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate-limited", "Too many requests"),
            Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable", "Service temporarily unavailable"),
            Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal", "Internal error"),
        }
    }

    /// The RFC 6749 §5.2 error code for token-issuing endpoints.
    fn oauth_error(&self) -> &'static str {
        match self {
            AppError::InvalidCredentials | AppError::InvalidGrant | AppError::EmailNotVerified => "invalid_grant",
            AppError::UnsupportedGrantType => "unsupported_grant_type",
            _ => "invalid_request",
        }
    }

    /// Public detail; never SDK messages or internals.
    fn detail(&self) -> String {
        use AppError::*;
        match self {
            Validation(_) => "One or more fields are invalid.".into(),
            BadRequest(m) => m.clone(),
            InvalidToken => "The token is unknown, already used or expired.".into(),
            InvalidCredentials => "The email or password is incorrect.".into(),
            InvalidGrant => "The grant is invalid, expired or revoked.".into(),
            UnsupportedGrantType => "grant_type must be password or refresh_token.".into(),
            EmailNotVerified => "Verify your email address before signing in.".into(),
            Unauthorized { .. } => "A valid bearer access token is required.".into(),
            Forbidden => "You do not have access to this resource.".into(),
            NotFound => "The resource does not exist.".into(),
            MethodNotAllowed => "The method is not allowed on this resource.".into(),
            PayloadTooLarge => "The request body exceeds 16 KiB.".into(),
            UnsupportedMediaType => "Send application/json.".into(),
            Conflict(m) => m.clone(),
            RateLimited { .. } => "Too many requests; retry after the time in Retry-After.".into(),
            Unavailable(_) => "A dependency is temporarily unavailable; retry later.".into(),
            Internal(_) => "An unexpected error occurred; quote the request id.".into(),
        }
    }

    /// The problem+json response, with the endpoint's flavour of `error`.
    pub fn to_response(&self, flavour: OAuthFlavour) -> Response {
        let (status, slug, title) = self.parts();
        let request_id = crate::http::request_id::current();
        if let AppError::Unavailable(m) | AppError::Internal(m) = self {
            tracing::error!(request_id = %request_id, status = status.as_u16(), error = %m, "request failed");
        }
        let problem = Problem {
            kind: format!("urn:secure-auth:problem:{slug}"),
            title: title.to_owned(),
            status: status.as_u16(),
            detail: self.detail(),
            request_id,
            errors: match self {
                AppError::Validation(errors) => Some(errors.clone()),
                _ => None,
            },
            error: (flavour == OAuthFlavour::TokenEndpoint).then(|| self.oauth_error().to_owned()),
        };
        let body = serde_json::to_string(&problem).unwrap_or_default();
        let mut resp = (status, body).into_response();
        let h = resp.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        match self {
            AppError::Unauthorized { sent: true } => {
                h.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(r#"Bearer realm="secure-auth", error="invalid_token""#),
                );
            }
            AppError::Unauthorized { sent: false } | AppError::InvalidCredentials | AppError::InvalidGrant => {
                h.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(r#"Bearer realm="secure-auth""#));
            }
            AppError::Unavailable(_) => {
                h.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            }
            AppError::RateLimited { limit, reset } => {
                h.insert(header::RETRY_AFTER, HeaderValue::from(*reset));
                h.insert("ratelimit-limit", HeaderValue::from(*limit));
                h.insert("ratelimit-remaining", HeaderValue::from_static("0"));
                h.insert("ratelimit-reset", HeaderValue::from(*reset));
            }
            _ => {}
        }
        resp
    }
}

/// RFC 9457 problem details, as every error is sent.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(description = "RFC 9457 problem. `type` is `urn:secure-auth:problem:<slug>`, slugs: \
validation-failed, malformed-request, invalid-token, invalid-credentials, invalid-grant, \
unsupported-grant-type, email-not-verified, unauthorized, forbidden, not-found, method-not-allowed, \
payload-too-large, unsupported-media-type, conflict, rate-limited, unavailable, internal.")]
pub struct Problem {
    #[serde(rename = "type")]
    #[schema(example = "urn:secure-auth:problem:invalid-credentials")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Quote it to support; the only internal id ever sent.
    pub request_id: String,
    /// Field-level failures (validation problems only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<FieldError>>,
    /// RFC 6749 §5.2 error code (token-issuing endpoints only).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "invalid_grant")]
    pub error: Option<String>,
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        self.to_response(OAuthFlavour::Plain)
    }
}

/// Errors from the storage ports.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("email already registered")]
    EmailTaken,
    #[error("storage unavailable: {0}")]
    Unavailable(String),
}

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::EmailTaken => AppError::Conflict("The email is already registered.".into()),
            StoreError::Unavailable(m) => AppError::Unavailable(m),
        }
    }
}

pub type AppResult<T> = Result<T, AppError>;
