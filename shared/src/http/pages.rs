//! The small server-rendered pages that mail links open. The GET shows one button or a
//! new-password form and changes nothing (mail scanners fetch every link); the form POSTs the
//! token in the body to the API, which answers a form with a result page. No JavaScript, no
//! external resources, `Referrer-Policy: no-referrer`, a CSP that allows only inline styles
//! and posting to this origin.

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde::Deserialize;

use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::Query;
use super::problem::{ApiError, ApiResult, Problem};
use super::{Endpoint, ErrorStyle, Uses, mounted};
use crate::config::EndpointLimits;
use crate::domain::error::DomainError;
use crate::mail::templates::escape_html;
use crate::secret::Token;

/// This file's endpoints, for `super::AREAS` (the local server, the README table, the checks).
pub const ENDPOINTS: &[&Endpoint] = &[&PAGES];

/// The pages mail links open: rendering them touches nothing.
pub const PAGES: Endpoint = Endpoint {
    binary: "pages",
    routes: &[
        ("GET", "/auth/verify-email"),
        ("GET", "/auth/reset-password"),
        ("GET", "/auth/confirm-email-change"),
        ("GET", "/auth/unlock"),
    ],
    limits: EndpointLimits::NONE,
    errors: ErrorStyle::Plain,
    uses: Uses::NOTHING,
    use_case: "—",
    source: file!(),
    mount: |_| {
        mounted(async {
            Ok(OpenApiRouter::new()
                .routes(routes!(verify_email_page))
                .routes(routes!(reset_password_page))
                .routes(routes!(confirm_email_change_page))
                .routes(routes!(unlock_page)))
        })
    },
};

/// The pages' CSP: the API's default (docs/api.md) plus inline styles and same-origin form posts.
pub const PAGE_CSP: &str =
    "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:28rem;margin:4rem auto;padding:0 1rem;\
color:#1f2328}button{font-size:1rem;padding:.6rem 1.2rem;border-radius:.4rem;border:0;background:#0969da;color:#fff;\
cursor:pointer}input{font-size:1rem;padding:.5rem;width:100%;box-sizing:border-box;margin:.3rem 0 1rem}\
.error{color:#cf222e}";

/// An HTML page with `status`.
pub fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{t}</title><style>{STYLE}</style></head>\n<body><main><h1>{t}</h1>\n{body}</main></body></html>\n",
        t = escape_html(title)
    );
    let mut resp = (status, html).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(PAGE_CSP));
    resp
}

/// The result page for a form submission that failed.
pub fn error_page(e: &ApiError) -> Response {
    let (status, _, title) = e.parts();
    let detail = match e {
        ApiError::Domain(DomainError::Validation(errors)) => errors
            .iter()
            .map(|f| format!("<li>{}: {}</li>", escape_html(&f.field.replace('_', " ")), escape_html(&f.message)))
            .collect::<String>(),
        ApiError::Domain(DomainError::InvalidToken) => {
            "<li>This link is invalid, already used or expired. Ask for a new one.</li>".into()
        }
        _ => format!("<li>{}</li>", escape_html(title)),
    };
    page(status, title, &format!("<ul class=\"error\">{detail}</ul>"))
}

/// The page a mail link opens: `form` of the link's token, or the invalid-link page (or, for a
/// query that does not parse, the problem).
fn link_page(q: ApiResult<Query<LinkQuery>>, title: &str, form: impl FnOnce(&str) -> String) -> Response {
    let q = match q {
        Ok(Query(q)) => q,
        Err(e) => return e.into_response(),
    };
    let Some(token) = well_formed(&q.token) else { return error_page(&ApiError::Domain(DomainError::InvalidToken)) };
    page(StatusCode::OK, title, &form(token))
}

/// The `?token=` of a mail link.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LinkQuery {
    /// The one-time token from the mail.
    token: Option<String>,
}

fn well_formed(token: &Option<String>) -> Option<&str> {
    token.as_deref().filter(|t| crate::tokens::parse_one_time(t).is_some())
}

fn hidden_token(token: &str) -> String {
    format!("<input type=\"hidden\" name=\"token\" value=\"{}\">", escape_html(token))
}

/// Opens the verification link: a form that asks for the password chosen at sign-up and POSTs
/// it with the token (the link proves the mailbox, the password the sign-up).
#[utoipa::path(get, path = "/auth/verify-email", tag = "pages", params(LinkQuery), responses(
    (status = 200, description = "A password form", content_type = "text/html", body = String),
    (status = 400, description = "The link is malformed (an HTML page), or the query is (a problem)",
        content((String = "text/html"), (Problem = "application/problem+json"))),
))]
pub async fn verify_email_page(q: ApiResult<Query<LinkQuery>>) -> Response {
    link_page(q, "Verify your email address", |token| {
        format!(
            "<form method=\"post\" action=\"/auth/verify-email\">{}\
             <label for=\"password\">The password you chose when you signed up</label>\
             <input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"current-password\" \
             maxlength=\"128\" required>\
             <button type=\"submit\">Verify my email address</button></form>",
            hidden_token(token)
        )
    })
}

/// Opens the reset link: a new-password form that POSTs the token and the password.
#[utoipa::path(get, path = "/auth/reset-password", tag = "pages", params(LinkQuery), responses(
    (status = 200, description = "A new-password form", content_type = "text/html", body = String),
    (status = 400, description = "The link is malformed (an HTML page), or the query is (a problem)",
        content((String = "text/html"), (Problem = "application/problem+json"))),
))]
pub async fn reset_password_page(q: ApiResult<Query<LinkQuery>>) -> Response {
    link_page(q, "Choose a new password", |token| {
        format!(
            "<form method=\"post\" action=\"/auth/reset-password\">{}\
             <label for=\"new_password\">New password (at least 12 characters)</label>\
             <input id=\"new_password\" name=\"new_password\" type=\"password\" autocomplete=\"new-password\" \
             minlength=\"8\" maxlength=\"128\" required>\
             <button type=\"submit\">Set my new password</button></form>",
            hidden_token(token)
        )
    })
}

/// Opens the email-change link: one button that POSTs the token.
#[utoipa::path(get, path = "/auth/confirm-email-change", tag = "pages", params(LinkQuery), responses(
    (status = 200, description = "A page with one button", content_type = "text/html", body = String),
    (status = 400, description = "The link is malformed (an HTML page), or the query is (a problem)",
        content((String = "text/html"), (Problem = "application/problem+json"))),
))]
pub async fn confirm_email_change_page(q: ApiResult<Query<LinkQuery>>) -> Response {
    link_page(q, "Confirm your new email address", |token| {
        format!(
            "<form method=\"post\" action=\"/auth/confirm-email-change\">{}<button type=\"submit\">Confirm my new address</button></form>",
            hidden_token(token)
        )
    })
}

/// Opens the unlock link of an account-lock notice: a password form that POSTs it with the
/// token.
#[utoipa::path(get, path = "/auth/unlock", tag = "pages", params(LinkQuery), responses(
    (status = 200, description = "A password form", content_type = "text/html", body = String),
    (status = 400, description = "The link is malformed (an HTML page), or the query is (a problem)",
        content((String = "text/html"), (Problem = "application/problem+json"))),
))]
pub async fn unlock_page(q: ApiResult<Query<LinkQuery>>) -> Response {
    link_page(q, "Unlock your account", |token| {
        format!(
            "<p>Your account was locked after repeated failed sign-ins. Enter your password to lift the lock. \
             The link works once.</p>\
             <form method=\"post\" action=\"/auth/unlock\">{}\
             <label for=\"password\">Your password</label>\
             <input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"current-password\" \
             maxlength=\"128\" required>\
             <button type=\"submit\">Unlock my account</button></form>",
            hidden_token(token)
        )
    })
}

// A body carrying one mail token.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct TokenBody {
    /// The one-time token from the mail link.
    #[schema(value_type = String)]
    pub token: Token,
}

// A body carrying one mail token and the password it goes with.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct TokenPasswordBody {
    /// The one-time token from the mail link.
    #[schema(value_type = String)]
    pub token: Token,
    /// The account's password (for verification: the one chosen at sign-up).
    #[schema(value_type = String, format = Password, max_length = 128)]
    pub password: crate::secret::Password,
}

/// Answers a mail page's form with HTML, an API client with JSON.
pub(crate) fn form_or_json(form: bool, r: ApiResult<Response>, page_title: &str, page_text: &str) -> Response {
    use axum::response::IntoResponse;
    match (form, r) {
        (false, Ok(resp)) => resp,
        (false, Err(e)) => e.into_response(),
        (true, Ok(_)) => page(StatusCode::OK, page_title, &format!("<p>{page_text}</p>")),
        (true, Err(e)) => error_page(&e),
    }
}
