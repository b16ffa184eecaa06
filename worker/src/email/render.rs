//! Messages from templates (`worker/templates/email/`, built into the binary): a text and an
//! HTML part per message, HTML auto-escaped by minijinja (user text such as usernames and
//! alert notes can add no markup), subjects written here from fixed words and validated
//! values only (no user text reaches a header).

use common::email::EmailMessage;
use minijinja::{Environment, Value, context};

use crate::notifications::text::{alert_headline, change_suffix};

const TEMPLATES: &[(&str, &str)] = &[
    (
        "_layout.html",
        include_str!("../../templates/email/_layout.html"),
    ),
    (
        "welcome.txt",
        include_str!("../../templates/email/welcome.txt"),
    ),
    (
        "welcome.html",
        include_str!("../../templates/email/welcome.html"),
    ),
    (
        "verify_email.txt",
        include_str!("../../templates/email/verify_email.txt"),
    ),
    (
        "verify_email.html",
        include_str!("../../templates/email/verify_email.html"),
    ),
    (
        "password_reset.txt",
        include_str!("../../templates/email/password_reset.txt"),
    ),
    (
        "password_reset.html",
        include_str!("../../templates/email/password_reset.html"),
    ),
    (
        "password_changed.txt",
        include_str!("../../templates/email/password_changed.txt"),
    ),
    (
        "password_changed.html",
        include_str!("../../templates/email/password_changed.html"),
    ),
    (
        "price_alert.txt",
        include_str!("../../templates/email/price_alert.txt"),
    ),
    (
        "price_alert.html",
        include_str!("../../templates/email/price_alert.html"),
    ),
    (
        "job_finished.txt",
        include_str!("../../templates/email/job_finished.txt"),
    ),
    (
        "job_finished.html",
        include_str!("../../templates/email/job_finished.html"),
    ),
];

/// A rendered message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// What a message says to whom, beyond the message itself.
#[derive(Debug, Clone)]
pub struct Addressee<'a> {
    pub username: &'a str,
    /// The link carrying a token, for messages that have one.
    pub link: Option<&'a str>,
    pub token: Option<&'a str>,
}

/// The templates, parsed once at start-up.
#[derive(Debug)]
pub struct Templates {
    env: Environment<'static>,
    app_url: String,
}

impl Templates {
    /// Parses every template; an error is a bug in a template (caught by the unit tests).
    pub fn new(app_url: &str) -> Result<Self, minijinja::Error> {
        let mut env = Environment::new();
        // `.html` templates escape HTML; `.txt` ones are plain (the default callback).
        for (name, source) in TEMPLATES {
            env.add_template(name, source)?;
        }
        Ok(Self {
            env,
            app_url: app_url.trim_end_matches('/').to_owned(),
        })
    }

    /// The base URL of links.
    pub fn app_url(&self) -> &str {
        &self.app_url
    }

    /// Renders `message` for `to`.
    pub fn render(
        &self,
        message: &EmailMessage,
        to: &Addressee<'_>,
    ) -> Result<Rendered, minijinja::Error> {
        let base = context! {
            username => to.username,
            app_url => self.app_url,
            link => to.link,
            token => to.token,
        };
        let (subject, extra) = match message {
            EmailMessage::Welcome => ("Welcome to Coinpulse".to_owned(), context! {}),
            EmailMessage::VerifyEmail => ("Verify your email address".to_owned(), context! {}),
            EmailMessage::PasswordReset => ("Reset your password".to_owned(), context! {}),
            EmailMessage::PasswordChanged => ("Your password was changed".to_owned(), context! {}),
            EmailMessage::PriceAlert(fired) => {
                let headline = alert_headline(fired);
                let detail = format!(
                    "The price is {} {}{}, at {} UTC.",
                    fired.price.normalize(),
                    fired.vs_currency.to_uppercase(),
                    change_suffix(fired),
                    fired.fired_at.format("%Y-%m-%d %H:%M:%S")
                );
                let subject = format!("Price alert: {headline}");
                let extra = context! {
                    headline => headline,
                    detail => detail,
                    note => fired.note,
                    alert_id => fired.alert_id.to_string(),
                };
                (subject, extra)
            }
            EmailMessage::JobFinished(finished) => {
                let headline = match finished.status {
                    common::jobs::JobStatus::Succeeded => "Your bulk price fetch finished",
                    _ => "Your bulk price fetch failed",
                };
                let extra = context! {
                    headline => headline,
                    summary => finished.summary,
                    job_id => finished.job_id.to_string(),
                };
                (headline.to_owned(), extra)
            }
        };
        let values = context! { ..base, ..extra };
        let name = message.template();
        Ok(Rendered {
            subject: header_safe(&subject),
            text: self.render_one(&format!("{name}.txt"), &values)?,
            html: self.render_one(&format!("{name}.html"), &values)?,
        })
    }

    fn render_one(&self, name: &str, values: &Value) -> Result<String, minijinja::Error> {
        self.env.get_template(name)?.render(values)
    }
}

/// A header value without control characters: subjects are made of fixed words and
/// validated ids already; a display name is the user's own text, and lettre panics formatting
/// one that holds a line break (and must never be given the chance to emit it).
pub fn header_safe(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).collect()
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use common::alerts::Condition;
    use common::jobs::{JobKind, JobStatus};
    use common::notifications::{AlertFired, JobFinished};
    use rust_decimal::Decimal;
    use uuid::Uuid;

    use super::*;

    #[test]
    fn header_safe_drops_line_breaks_and_control_characters() {
        assert_eq!(
            header_safe("<b>x</b>\r\nBcc: evil@example.com\t\u{7}"),
            "<b>x</b>Bcc: evil@example.com"
        );
        assert_eq!(header_safe("Zoë Ünal"), "Zoë Ünal");
    }

    fn templates() -> Templates {
        Templates::new("https://coinpulse.example/").expect("templates parse")
    }

    fn everyone() -> Vec<EmailMessage> {
        vec![
            EmailMessage::Welcome,
            EmailMessage::VerifyEmail,
            EmailMessage::PasswordReset,
            EmailMessage::PasswordChanged,
            EmailMessage::PriceAlert(AlertFired {
                alert_id: Uuid::nil(),
                sequence: 1,
                coin_id: "bitcoin".into(),
                vs_currency: "eur".into(),
                condition: Condition::CrossingUp,
                target: Decimal::new(100, 0),
                price: Decimal::new(10_150, 2),
                change_24h_pct: None,
                note: Some("<script>alert(1)</script> & \"sell\"".into()),
                fired_at: Utc::now(),
            }),
            EmailMessage::JobFinished(JobFinished {
                job_id: Uuid::nil(),
                kind: JobKind::BulkFetch,
                status: JobStatus::Succeeded,
                summary: "2 of 3 coins priced in USD.".into(),
            }),
        ]
    }

    #[test]
    fn every_message_renders_both_parts_and_escapes_user_text_in_html() {
        let templates = templates();
        let to = Addressee {
            username: "<b>mallory</b>",
            link: Some("https://coinpulse.example/verify-email?token=abc"),
            token: Some("abc"),
        };
        for message in everyone() {
            let rendered = templates.render(&message, &to).expect("renders");
            assert!(!rendered.subject.is_empty());
            assert!(
                rendered.text.contains("Hello <b>mallory</b>"),
                "{}",
                rendered.text
            );
            assert!(
                rendered.html.contains("Hello &lt;b&gt;mallory")
                    && !rendered.html.contains("<b>mallory"),
                "{}",
                rendered.html
            );
            assert!(!rendered.html.contains("<script>"), "{}", rendered.html);
        }
    }

    #[test]
    fn links_and_alert_details_are_in_the_message() {
        let templates = templates();
        let to = Addressee {
            username: "ann",
            link: Some("https://coinpulse.example/reset-password?token=xyz"),
            token: Some("xyz"),
        };
        let reset = templates
            .render(&EmailMessage::PasswordReset, &to)
            .expect("renders");
        assert!(
            reset
                .text
                .contains("https://coinpulse.example/reset-password?token=xyz")
        );
        // minijinja escapes `/` in HTML too (`&#x2f;`), which browsers read back as `/`.
        assert!(
            reset.html.contains("reset-password?token=xyz\">"),
            "{}",
            reset.html
        );
        let alert = templates.render(&everyone()[4], &to).expect("renders");
        assert_eq!(alert.subject, "Price alert: bitcoin rose through 100 EUR");
        assert!(
            alert.text.contains("The price is 101.5 EUR"),
            "{}",
            alert.text
        );
        assert!(alert.html.contains("&lt;script&gt;"), "{}", alert.html);
    }

    #[test]
    fn headers_never_carry_control_characters() {
        assert_eq!(header_safe("a\r\nBcc: x"), "aBcc: x");
    }
}
