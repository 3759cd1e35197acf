//! Mail templates: text and HTML, product name and base URL from configuration. Links are
//! built from `PUBLIC_BASE_URL`, never from the request's Host header.

use super::Mail;

/// HTML-escapes text for element content and attribute values.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn html_page(product: &str, paragraphs: &[&str], link: Option<(&str, &str)>) -> String {
    let product = escape_html(product);
    let mut body = String::new();
    for p in paragraphs {
        body.push_str(&format!("<p>{}</p>\n", escape_html(p)));
    }
    if let Some((label, href)) = link {
        let href = escape_html(href);
        body.push_str(&format!("<p><a href=\"{href}\">{}</a></p>\n", escape_html(label)));
    }
    format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{product}</title></head>\
         <body>\n<h1>{product}</h1>\n{body}</body></html>\n"
    )
}

/// "Verify your address" with the one-time link.
pub fn verification(product: &str, base_url: &str, to: &str, token: &str) -> Mail {
    let link = format!("{base_url}/auth/verify-email?token={token}");
    let intro = format!("Welcome to {product}. Confirm your email address to finish signing up.");
    let expiry = "The link expires in 24 hours. If you did not sign up, ignore this message.";
    Mail {
        to: to.to_owned(),
        subject: format!("{product}: verify your email address"),
        text: format!("{intro}\n\n{link}\n\n{expiry}\n"),
        html: Some(html_page(product, &[&intro, expiry], Some(("Verify my email address", &link)))),
    }
}

/// Sent to an existing account's owner when someone signs up with its address.
pub fn attempted_signup(product: &str, base_url: &str, to: &str) -> Mail {
    let intro =
        format!("Someone tried to create a {product} account with this email address, which already has an account.");
    let advice = format!(
        "If it was you, sign in instead; if you forgot your password, reset it at {base_url}. \
         If it was not you, you can ignore this message: your account is unchanged."
    );
    Mail {
        to: to.to_owned(),
        subject: format!("{product}: sign-up attempt with your address"),
        text: format!("{intro}\n\n{advice}\n"),
        html: Some(html_page(product, &[&intro, &advice], None)),
    }
}

/// Sent when repeated failed sign-ins lock the account.
/// `unlock`: the base URL and the one-time token of the unlock link (account-wide locks only),
/// with which the owner signs in despite the lock.
pub fn account_locked(product: &str, to: &str, minutes: u64, unlock: Option<(&str, &str)>) -> Mail {
    let intro =
        format!("Your {product} account was locked for {minutes} minutes after repeated failed sign-in attempts.");
    let advice = "If this was not you, someone may be guessing your password: choose a new, unique one.";
    match unlock {
        None => Mail {
            to: to.to_owned(),
            subject: format!("{product}: account temporarily locked"),
            text: format!("{intro}\n\n{advice}\n"),
            html: Some(html_page(product, &[&intro, advice], None)),
        },
        Some((base_url, token)) => {
            let link = format!("{base_url}/auth/unlock?token={token}");
            let how = "To sign in now anyway, open this link and enter your password. It works once, \
                       for 1 hour, and only with your password.";
            Mail {
                to: to.to_owned(),
                subject: format!("{product}: account temporarily locked"),
                text: format!("{intro}\n\n{how}\n\n{link}\n\n{advice}\n"),
                html: Some(html_page(product, &[&intro, how, advice], Some(("Unlock and sign in", &link)))),
            }
        }
    }
}

/// The reset link (1 hour, single use).
pub fn password_reset(product: &str, base_url: &str, to: &str, token: &str) -> Mail {
    let link = format!("{base_url}/auth/reset-password?token={token}");
    let intro = format!("Someone asked to reset the password of your {product} account.");
    let advice = "The link expires in 1 hour and works once. If it was not you, ignore this message: \
                  your password is unchanged.";
    Mail {
        to: to.to_owned(),
        subject: format!("{product}: reset your password"),
        text: format!("{intro}\n\n{link}\n\n{advice}\n"),
        html: Some(html_page(product, &[&intro, advice], Some(("Choose a new password", &link)))),
    }
}

/// Sent after a password change or reset.
pub fn password_changed(product: &str, base_url: &str, to: &str) -> Mail {
    let intro = format!("The password of your {product} account was just changed; other sessions were signed out.");
    let advice = format!(
        "If this was not you, reset your password now ({base_url}, \"Forgot password\") and review your sessions."
    );
    Mail {
        to: to.to_owned(),
        subject: format!("{product}: your password was changed"),
        text: format!("{intro}\n\n{advice}\n"),
        html: Some(html_page(product, &[&intro, &advice], None)),
    }
}

/// What happened to the account's second factor (`MfaNotice`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MfaNotice {
    Enabled,
    Disabled,
    CodesRegenerated,
    RecoveryCodeUsed,
    ResetByAdmin,
}

/// What an administrator did to an account (`admin_notice`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminNotice {
    /// Fields named in the notice were changed (address, password, role, verification, name).
    Changed,
    Deactivated,
    Reactivated,
    SessionsRevoked,
    Deleted,
}

/// Sent to the owner whenever an administrator changes the account (to the address it had
/// before the change).
pub fn admin_notice(product: &str, base_url: &str, to: &str, what: AdminNotice, fields: &[&str]) -> Mail {
    let (subject, intro) = match what {
        AdminNotice::Changed => (
            "your account was changed by an administrator",
            format!(
                "An administrator changed your {product} account ({}).",
                fields.iter().map(|f| f.replace('_', " ")).collect::<Vec<_>>().join(", ")
            ),
        ),
        AdminNotice::Deactivated => {
            ("your account was deactivated", format!("An administrator deactivated your {product} account."))
        }
        AdminNotice::Reactivated => {
            ("your account was reactivated", format!("An administrator reactivated your {product} account."))
        }
        AdminNotice::SessionsRevoked => (
            "you were signed out everywhere",
            format!("An administrator signed your {product} account out of every session."),
        ),
        AdminNotice::Deleted => {
            ("your account was deleted", format!("An administrator deleted your {product} account."))
        }
    };
    let advice = format!("If you did not expect this, contact your administrator ({base_url}).");
    Mail {
        to: to.to_owned(),
        subject: format!("{product}: {subject}"),
        text: format!("{intro}\n\n{advice}\n"),
        html: Some(html_page(product, &[&intro, &advice], None)),
    }
}

/// Sent to the owner whenever the second factor changes or a recovery code signs in.
pub fn mfa_notice(product: &str, base_url: &str, to: &str, what: MfaNotice, codes_left: usize) -> Mail {
    let (subject, intro) = match what {
        MfaNotice::Enabled => (
            "two-step sign-in was turned on",
            format!(
                "Two-step sign-in (an authenticator app) was turned on for your {product} account; other sessions were signed out."
            ),
        ),
        MfaNotice::Disabled => (
            "two-step sign-in was turned off",
            format!("Two-step sign-in was turned off for your {product} account: a password alone signs in now."),
        ),
        MfaNotice::CodesRegenerated => (
            "new recovery codes were made",
            format!("New recovery codes were made for your {product} account; the earlier ones no longer work."),
        ),
        MfaNotice::RecoveryCodeUsed => (
            "a recovery code was used",
            format!(
                "A recovery code was used to sign in to your {product} account; {codes_left} unused codes are left."
            ),
        ),
        MfaNotice::ResetByAdmin => (
            "two-step sign-in was reset",
            format!(
                "An administrator removed two-step sign-in from your {product} account: a password alone signs in until you set it up again."
            ),
        ),
    };
    let advice = format!(
        "If this was not you, reset your password now ({base_url}, \"Forgot password\"), review your sessions and contact your administrator."
    );
    Mail {
        to: to.to_owned(),
        subject: format!("{product}: {subject}"),
        text: format!("{intro}\n\n{advice}\n"),
        html: Some(html_page(product, &[&intro, &advice], None)),
    }
}

/// Sent to the new address: the confirmation link.
pub fn email_change_confirm(product: &str, base_url: &str, to: &str, token: &str) -> Mail {
    let link = format!("{base_url}/auth/confirm-email-change?token={token}");
    let intro = format!("Confirm that this address should become the sign-in address of your {product} account.");
    let advice = "The link expires in 1 hour and works once. If you did not ask for this, ignore this message.";
    Mail {
        to: to.to_owned(),
        subject: format!("{product}: confirm your new email address"),
        text: format!("{intro}\n\n{link}\n\n{advice}\n"),
        html: Some(html_page(product, &[&intro, advice], Some(("Confirm my new address", &link)))),
    }
}

/// Sent to the old address when a change is requested, and again when it is confirmed.
pub fn email_change_notice(product: &str, base_url: &str, to: &str, confirmed: bool) -> Mail {
    let intro = if confirmed {
        format!("The sign-in address of your {product} account was changed; this address no longer signs in.")
    } else {
        format!("Someone signed in to your {product} account asked to change its sign-in address.")
    };
    let advice = format!(
        "If this was not you, reset your password now ({base_url}, \"Forgot password\"): the request \
         needed your current password."
    );
    Mail {
        to: to.to_owned(),
        subject: if confirmed {
            format!("{product}: your sign-in address was changed")
        } else {
            format!("{product}: email change requested")
        },
        text: format!("{intro}\n\n{advice}\n"),
        html: Some(html_page(product, &[&intro, &advice], None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_mail_has_text_and_html_with_the_product_name_and_links_on_the_base_url() {
        let (p, base, to) = ("Acme ID", "https://id.acme.test", "a@example.com");
        let mails = [
            verification(p, base, to, "u.t1"),
            attempted_signup(p, base, to),
            admin_notice(p, base, to, AdminNotice::Changed, &["email", "password"]),
            account_locked(p, to, 15, None),
            account_locked(p, to, 15, Some((base, "u.t4"))),
            password_reset(p, base, to, "u.t2"),
            password_changed(p, base, to),
            email_change_confirm(p, base, to, "u.t3"),
            email_change_notice(p, base, to, false),
            email_change_notice(p, base, to, true),
        ];
        for m in &mails {
            let html = m.html.as_deref().unwrap_or_default();
            assert!(
                m.subject.starts_with("Acme ID") && m.text.contains("Acme ID") && html.contains("Acme ID"),
                "{m:?}"
            );
            assert_eq!(m.to, to);
            for text in [m.text.as_str(), html] {
                for link in text.split(|c: char| c.is_whitespace() || c == '"').filter(|w| w.starts_with("http")) {
                    assert!(link.starts_with(base), "{link}");
                }
            }
        }
        assert!(mails[2].text.contains("email, password"));
        assert!(mails[4].text.contains("https://id.acme.test/auth/unlock?token=u.t4"));
        assert!(!mails[3].text.contains("token="), "a lock of one IP carries no link");
        assert!(mails[5].text.contains("https://id.acme.test/auth/reset-password?token=u.t2"));
        assert!(mails[7].text.contains("https://id.acme.test/auth/confirm-email-change?token=u.t3"));
    }

    #[test]
    fn verification_link_uses_base_url_and_html_is_escaped() {
        let m = verification("<Acme>", "https://auth.example.com", "a@example.com", "u.tok");
        assert!(m.text.contains("https://auth.example.com/auth/verify-email?token=u.tok"));
        let html = m.html.clone().unwrap_or_default();
        assert!(html.contains("&lt;Acme&gt;") && !html.contains("<Acme>"));
        assert!(!format!("{m:?}").contains("u.tok"));
    }
}
