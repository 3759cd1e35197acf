//! The one mapping from errors to HTTP: RFC 9457 problem+json with a stable
//! `urn:secure-auth:problem:<slug>` type. Internal details are logged with the request id,
//! never sent.
//!
//! A handler's error becomes a response that carries the error itself (`PendingProblem`); the
//! endpoint's layer stamps its error style on it (token endpoints add RFC 6749's `error`), and
//! the common layer, which knows the request id, renders the body.

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde::Serialize;

use crate::domain::error::{DomainError, FieldError};

/// Whether an endpoint's problems carry RFC 6749 §5.2 `error` (the token-issuing endpoints).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorStyle {
    Plain,
    OAuth,
}

/// Every failure a request can end in: the domain's, and the HTTP layer's own.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Domain(#[from] DomainError),
    #[error("payload too large")]
    PayloadTooLarge,
    #[error("unsupported media type")]
    UnsupportedMediaType,
    #[error("method not allowed")]
    MethodNotAllowed,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        ApiError::Domain(e.into())
    }
}

/// RFC 9457 problem details, as every error is sent.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(description = "RFC 9457 problem. `type` is `urn:secure-auth:problem:<slug>`, slugs: \
validation-failed, malformed-request, invalid-token, invalid-credentials, invalid-grant, \
unsupported-grant-type, email-not-verified, mfa-required, invalid-mfa-code, mfa-already-enabled, unauthorized, forbidden, not-found, method-not-allowed, \
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
    /// RFC 6749 §5.2 error code (token-issuing endpoints only; `mfa_required` for the
    /// second-factor challenge).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "invalid_grant")]
    pub error: Option<String>,
    /// The challenge to answer at `POST /auth/mfa/verify` (mfa-required only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mfa_token: Option<String>,
    /// What answers the challenge (mfa-required only).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = json!(["totp", "recovery_code"]))]
    pub factors: Option<Vec<&'static str>>,
}

impl ApiError {
    /// Status, stable slug and title: the public face of each error.
    pub fn parts(&self) -> (StatusCode, &'static str, &'static str) {
        use DomainError::*;
        match self {
            ApiError::PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "payload-too-large", "Payload too large"),
            ApiError::UnsupportedMediaType => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported-media-type", "Unsupported media type")
            }
            ApiError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method-not-allowed", "Method not allowed"),
            ApiError::Domain(d) => match d {
                Validation(_) => (StatusCode::BAD_REQUEST, "validation-failed", "Validation failed"),
                BadRequest(_) => (StatusCode::BAD_REQUEST, "malformed-request", "Malformed request"),
                InvalidToken => (StatusCode::BAD_REQUEST, "invalid-token", "Invalid or expired token"),
                InvalidCredentials => (StatusCode::UNAUTHORIZED, "invalid-credentials", "Invalid credentials"),
                InvalidGrant => (StatusCode::UNAUTHORIZED, "invalid-grant", "Invalid grant"),
                UnsupportedGrantType => (StatusCode::BAD_REQUEST, "unsupported-grant-type", "Unsupported grant type"),
                MfaRequired { .. } => (StatusCode::FORBIDDEN, "mfa-required", "Second factor required"),
                InvalidMfaCode => (StatusCode::UNAUTHORIZED, "invalid-mfa-code", "Invalid second-factor code"),
                StepUpRequired => (StatusCode::FORBIDDEN, "mfa-required", "Second factor required"),
                StepUpRefused => (StatusCode::FORBIDDEN, "invalid-mfa-code", "Invalid second-factor code"),
                MfaAlreadyEnabled => (StatusCode::CONFLICT, "mfa-already-enabled", "Second factor already enabled"),
                Unauthorized { .. } => (StatusCode::UNAUTHORIZED, "unauthorized", "Unauthorized"),
                Forbidden => (StatusCode::FORBIDDEN, "forbidden", "Forbidden"),
                NotFound => (StatusCode::NOT_FOUND, "not-found", "Not found"),
                Conflict(_) => (StatusCode::CONFLICT, "conflict", "Conflict"),
                RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate-limited", "Too many requests"),
                Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable", "Service temporarily unavailable"),
                Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal", "Internal error"),
            },
        }
    }

    /// The RFC 6749 §5.2 error code for token-issuing endpoints.
    fn oauth_error(&self) -> &'static str {
        match self {
            ApiError::Domain(
                DomainError::InvalidCredentials | DomainError::InvalidGrant | DomainError::InvalidMfaCode,
            ) => "invalid_grant",
            ApiError::Domain(DomainError::MfaRequired { .. }) => "mfa_required",
            ApiError::Domain(DomainError::UnsupportedGrantType) => "unsupported_grant_type",
            _ => "invalid_request",
        }
    }

    /// Public detail; never SDK messages or internals.
    fn detail(&self) -> String {
        use DomainError::*;
        match self {
            ApiError::PayloadTooLarge => "The request body exceeds 16 KiB.".into(),
            ApiError::UnsupportedMediaType => "Send application/json.".into(),
            ApiError::MethodNotAllowed => "The method is not allowed on this resource.".into(),
            ApiError::Domain(d) => match d {
                Validation(_) => "One or more fields are invalid.".into(),
                BadRequest(m) => m.clone(),
                InvalidToken => "The token is unknown, already used or expired.".into(),
                InvalidCredentials => "The email or password is incorrect.".into(),
                InvalidGrant => "The grant is invalid, expired or revoked.".into(),
                UnsupportedGrantType => {
                    "grant_type must be password, refresh_token or urn:secure-auth:grant-type:mfa-otp.".into()
                }
                MfaRequired { .. } => {
                    "Answer the challenge with a code from your authenticator app or a recovery code.".into()
                }
                InvalidMfaCode => "The code or the challenge is invalid, used or expired.".into(),
                StepUpRequired => {
                    "This change needs your second factor: send `code`, a current authenticator code or an unused recovery code."
                        .into()
                }
                StepUpRefused => "The code is invalid or already used; nothing changed.".into(),
                MfaAlreadyEnabled => "A second factor is already enabled; disable it first.".into(),
                Unauthorized { .. } => "A valid bearer access token is required.".into(),
                Forbidden => "You do not have access to this resource.".into(),
                NotFound => "The resource does not exist.".into(),
                Conflict(m) => m.clone(),
                RateLimited { .. } => "Too many requests; retry after the time in Retry-After.".into(),
                Unavailable(_) => "A dependency is temporarily unavailable; retry later.".into(),
                Internal(_) => "An unexpected error occurred; quote the request id.".into(),
            },
        }
    }

    /// The problem+json response for a request with id `request_id`.
    pub fn render(&self, style: ErrorStyle, request_id: &str) -> Response {
        let (status, slug, title) = self.parts();
        if let ApiError::Domain(DomainError::Unavailable(m) | DomainError::Internal(m)) = self {
            tracing::error!(request_id = %request_id, status = status.as_u16(), error = %m, "request failed");
        }
        let problem = Problem {
            kind: format!("urn:secure-auth:problem:{slug}"),
            title: title.to_owned(),
            status: status.as_u16(),
            detail: self.detail(),
            request_id: request_id.to_owned(),
            errors: match self {
                ApiError::Domain(DomainError::Validation(errors)) => Some(errors.clone()),
                _ => None,
            },
            // The challenge names its `error` on every endpoint that can raise it.
            error: (style == ErrorStyle::OAuth || matches!(self, ApiError::Domain(DomainError::MfaRequired { .. })))
                .then(|| self.oauth_error().to_owned()),
            mfa_token: match self {
                ApiError::Domain(DomainError::MfaRequired { mfa_token }) => Some(mfa_token.expose().to_owned()),
                _ => None,
            },
            factors: matches!(self, ApiError::Domain(DomainError::MfaRequired { .. } | DomainError::StepUpRequired))
                .then(|| vec!["totp", "recovery_code"]),
        };
        let body = serde_json::to_string(&problem).unwrap_or_default();
        let mut resp = (status, body).into_response();
        let h = resp.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        match self {
            ApiError::Domain(DomainError::Unauthorized { token_sent: true }) => {
                h.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(r#"Bearer realm="secure-auth", error="invalid_token""#),
                );
            }
            ApiError::Domain(
                DomainError::Unauthorized { token_sent: false }
                | DomainError::InvalidCredentials
                | DomainError::InvalidGrant
                | DomainError::InvalidMfaCode,
            ) => {
                h.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(r#"Bearer realm="secure-auth""#));
            }
            ApiError::Domain(DomainError::Forbidden) => {
                // RFC 6750 §3.1: a valid token without the needed scope.
                h.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(r#"Bearer realm="secure-auth", error="insufficient_scope""#),
                );
            }
            ApiError::Domain(DomainError::Unavailable(_)) => {
                h.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            }
            ApiError::Domain(DomainError::RateLimited { limit, reset }) => {
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

/// An error on its way out, waiting for the layer that knows the request id.
#[derive(Clone)]
pub(crate) struct PendingProblem(pub std::sync::Arc<ApiError>);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = self.parts().0.into_response();
        resp.extensions_mut().insert(PendingProblem(std::sync::Arc::new(self)));
        resp
    }
}

/// Stamps an endpoint's error style on its problems (its route layer).
pub(crate) async fn stamp_style(style: ErrorStyle, req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    if resp.extensions().get::<PendingProblem>().is_some() && resp.extensions().get::<ErrorStyle>().is_none() {
        resp.extensions_mut().insert(style);
    }
    resp
}

/// Renders a pending problem (the common layer, which knows the request id).
pub(crate) fn render_pending(resp: Response, request_id: &str) -> Response {
    match resp.extensions().get::<PendingProblem>().cloned() {
        Some(PendingProblem(e)) => {
            let style = resp.extensions().get::<ErrorStyle>().copied().unwrap_or(ErrorStyle::Plain);
            let mut rendered = e.render(style, request_id);
            // Headers that layers added on the way out (RateLimit-*, say) stay.
            for (k, v) in resp.headers() {
                if !rendered.headers().contains_key(k) && k != header::CONTENT_LENGTH {
                    rendered.headers_mut().insert(k.clone(), v.clone());
                }
            }
            rendered
        }
        None => resp,
    }
}
