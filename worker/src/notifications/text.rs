//! The in-app wording of each notification (emails have their own templates).

use common::alerts::Condition;
use common::jobs::{JobKind, JobStatus};
use common::notifications::{AlertFired, JobFinished, NotificationContent};

/// The notification's title and body.
pub fn title_and_body(content: &NotificationContent) -> (String, String) {
    match content {
        NotificationContent::PriceAlert(fired) => price_alert(fired),
        NotificationContent::JobFinished(finished) => job_finished(finished),
        NotificationContent::Welcome => (
            "Welcome to Coinpulse".to_owned(),
            "Your account is ready. We sent you an email with a link to verify your address."
                .to_owned(),
        ),
        NotificationContent::PasswordChanged => (
            "Your password was changed".to_owned(),
            "Every other session was signed out. If this was not you, reset your password now."
                .to_owned(),
        ),
    }
}

/// How a condition reads in a sentence.
fn condition_words(condition: Condition) -> &'static str {
    match condition {
        Condition::Above => "is at or above",
        Condition::Below => "is at or below",
        Condition::Crossing => "crossed",
        Condition::CrossingUp => "rose through",
        Condition::CrossingDown => "fell through",
        Condition::PctChange24hAbove => "changed over 24 h by at least",
        Condition::PctChange24hBelow => "changed over 24 h by at most",
    }
}

/// One line on a firing, e.g. `bitcoin rose through 100000 USD`: the notification's title
/// and the email's headline.
pub fn alert_headline(fired: &AlertFired) -> String {
    let target = if fired.condition.watches_change() {
        format!("{}%", fired.target.normalize())
    } else {
        format!(
            "{} {}",
            fired.target.normalize(),
            fired.vs_currency.to_uppercase()
        )
    };
    format!(
        "{} {} {target}",
        fired.coin_id,
        condition_words(fired.condition)
    )
}

/// The 24 h change in words, e.g. ` (1.23% over 24 h)`, or nothing when unknown.
pub fn change_suffix(fired: &AlertFired) -> String {
    fired
        .change_24h_pct
        .map(|change| format!(" ({}% over 24 h)", change.round_dp(2).normalize()))
        .unwrap_or_default()
}

fn price_alert(fired: &AlertFired) -> (String, String) {
    let mut body = format!(
        "{} is at {} {}{}.",
        fired.coin_id,
        fired.price.normalize(),
        fired.vs_currency.to_uppercase(),
        change_suffix(fired)
    );
    if let Some(note) = &fired.note {
        body.push_str(&format!(" Your note: {note}"));
    }
    (alert_headline(fired), body)
}

fn job_finished(finished: &JobFinished) -> (String, String) {
    let what = match finished.kind {
        JobKind::BulkFetch => "Bulk price fetch",
        JobKind::PortfolioImport => "Portfolio import",
        JobKind::PortfolioExport => "Portfolio export",
        _ => "Job",
    };
    let title = match finished.status {
        JobStatus::Succeeded => format!("{what} finished"),
        _ => format!("{what} failed"),
    };
    (title, finished.summary.clone())
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use rust_decimal::Decimal;
    use uuid::Uuid;

    use super::*;

    #[test]
    fn a_price_alert_reads_as_a_sentence() {
        let (title, body) = title_and_body(&NotificationContent::PriceAlert(AlertFired {
            alert_id: Uuid::nil(),
            sequence: 1,
            coin_id: "bitcoin".into(),
            vs_currency: "usd".into(),
            condition: Condition::Above,
            target: Decimal::new(5_000_000, 2),
            price: Decimal::new(5_012_340, 2),
            change_24h_pct: Some(Decimal::new(1234, 3)),
            note: Some("take profit".into()),
            fired_at: Utc::now(),
        }));
        assert_eq!(title, "bitcoin is at or above 50000 USD");
        assert_eq!(
            body,
            "bitcoin is at 50123.4 USD (1.23% over 24 h). Your note: take profit"
        );
    }
}
