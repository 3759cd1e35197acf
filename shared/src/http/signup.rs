//! `signup`, `verify-email`, `resend-verification`.

use axum::extract::State;
use axum::response::Response;
use http::StatusCode;
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{Ctx, FormOrJson, Json};
use super::pages::{TokenPasswordBody, form_or_json};
use super::problem::{ApiResult, Problem};
use super::ratelimit::limited;
use super::{Endpoint, ErrorStyle, PROBLEM, StatusBody, Uc, Uses, json_response, mounted};
use crate::config::{EndpointLimits, per};
use crate::domain::signup::{Signup, Verification};
use crate::secret::Password;

/// This file's endpoints, for `super::AREAS` (the local server, the README table, the checks).
pub const ENDPOINTS: &[&Endpoint] = &[&SIGNUP, &VERIFY_EMAIL, &RESEND_VERIFICATION];

/// `POST /auth/signup`.
pub const SIGNUP: Endpoint = Endpoint {
    binary: "signup",
    routes: &[("POST", "/auth/signup")],
    limits: EndpointLimits { ip: per(10, 60), email: per(3, 3600), user: None },
    errors: ErrorStyle::Plain,
    uses: Uses {
        table: &["GetItem", "PutItem", "UpdateItem", "DeleteItem", "Query"],
        mail: true,
        keys: false,
        mfa_key: false,
    },
    use_case: "shared/src/domain/signup.rs",
    source: file!(),
    mount: |deps| {
        mounted(async move {
            crate::domain::warm_password_policy();
            let r = OpenApiRouter::new()
                .routes(routes!(signup))
                .with_state(deps.signup(SIGNUP.email_gate(&deps).await?).await?);
            Ok(limited(r, &SIGNUP, deps.rate_limiter().await?))
        })
    },
};

/// `POST /auth/verify-email`.
pub const VERIFY_EMAIL: Endpoint = Endpoint {
    binary: "verify-email",
    routes: &[("POST", "/auth/verify-email")],
    limits: EndpointLimits { ip: per(20, 60), email: None, user: None },
    errors: ErrorStyle::Plain,
    // The password is checked under the lockout gate, whose lock mails the owner.
    uses: Uses { table: &["GetItem", "PutItem", "UpdateItem", "DeleteItem"], mail: true, keys: false, mfa_key: false },
    use_case: "shared/src/domain/signup.rs",
    source: file!(),
    mount: |deps| {
        mounted(async move {
            let r = OpenApiRouter::new().routes(routes!(verify_email)).with_state(deps.verification().await?);
            Ok(limited(r, &VERIFY_EMAIL, deps.rate_limiter().await?))
        })
    },
};

/// `POST /auth/resend-verification`.
pub const RESEND_VERIFICATION: Endpoint = Endpoint {
    binary: "resend-verification",
    routes: &[("POST", "/auth/resend-verification")],
    limits: EndpointLimits { ip: per(10, 60), email: per(3, 3600), user: None },
    errors: ErrorStyle::Plain,
    uses: Uses { table: &["GetItem", "PutItem", "UpdateItem"], mail: true, keys: false, mfa_key: false },
    use_case: "shared/src/domain/signup.rs",
    source: file!(),
    mount: |deps| {
        mounted(async move {
            let r = OpenApiRouter::new()
                .routes(routes!(resend_verification))
                .with_state(deps.signup(RESEND_VERIFICATION.email_gate(&deps).await?).await?);
            Ok(limited(r, &RESEND_VERIFICATION, deps.rate_limiter().await?))
        })
    },
};

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct SignupBody {
    #[schema(format = Email, max_length = 254)]
    email: String,
    /// At least `PASSWORD_MIN_LENGTH` (default 12) code points, at most 128; not common, not the email.
    #[schema(value_type = String, format = Password, min_length = 12, max_length = 128)]
    password: Password,
    #[schema(max_length = 100)]
    #[serde(default)]
    name: Option<String>,
}

/// Sign up; the same 202 whether or not the address is already registered.
#[utoipa::path(post, path = "/auth/signup", tag = "auth", request_body = SignupBody, responses(
    (status = 202, body = StatusBody, example = json!({"status": "verification_pending"})),
    (status = 400, body = Problem, content_type = PROBLEM, description = "validation-failed (policy failures listed in `errors`) or malformed-request"),
))]
async fn signup(State(uc): Uc<Signup>, Ctx(ctx): Ctx, Json(b): Json<SignupBody>) -> ApiResult<Response> {
    uc.signup(&b.email, &b.password, b.name.as_deref(), &ctx).await?;
    Ok(json_response(StatusCode::ACCEPTED, &serde_json::json!({"status": "verification_pending"})))
}

/// Confirm an email address with the token from the verification mail (single use) and the
/// password of the sign-up to activate: the link proves the mailbox, the password the sign-up,
/// so nobody can activate a password they did not choose. The mail page's form posts them
/// form-encoded and gets an HTML page back. A wrong password counts toward the lockout.
#[utoipa::path(post, path = "/auth/verify-email", tag = "auth",
    request_body(content((TokenPasswordBody = "application/json"), (TokenPasswordBody = "application/x-www-form-urlencoded"))),
    responses(
        (status = 200, content((StatusBody = "application/json", example = json!({"status": "verified"})), (String = "text/html"))),
        (status = 400, description = "invalid-token when the token is unknown, used or expired or the password matches no sign-up of the address (one answer)",
            content((Problem = "application/problem+json"), (String = "text/html"))),
))]
async fn verify_email(
    State(uc): Uc<Verification>,
    Ctx(ctx): Ctx,
    body: ApiResult<FormOrJson<TokenPasswordBody>>,
) -> Response {
    let form = body.as_ref().is_ok_and(|b| b.1);
    let r = async {
        let FormOrJson(b, _) = body?;
        uc.verify_email(&b.token, &b.password, &ctx).await?;
        Ok(json_response(StatusCode::OK, &serde_json::json!({"status": "verified"})))
    }
    .await;
    form_or_json(
        form,
        r,
        "Email address verified",
        "Your email address is verified. You can close this page and sign in.",
    )
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct EmailBody {
    #[schema(format = Email, max_length = 254)]
    pub email: String,
}

/// Send the verification mail again; the same answer whether or not the account exists.
#[utoipa::path(post, path = "/auth/resend-verification", tag = "auth", request_body = EmailBody, responses(
    (status = 202, body = StatusBody, example = json!({"status": "accepted"})),
    (status = 400, body = Problem, content_type = PROBLEM, description = "validation-failed"),
))]
async fn resend_verification(State(uc): Uc<Signup>, Ctx(ctx): Ctx, Json(b): Json<EmailBody>) -> ApiResult<Response> {
    uc.resend_verification(&b.email, &ctx).await?;
    Ok(json_response(StatusCode::ACCEPTED, &serde_json::json!({"status": "accepted"})))
}
