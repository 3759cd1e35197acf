//! Field-level validation messages, shared by the pure modules (password policy, email) and
//! the domain, which lists them in a 400's `errors`.

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
