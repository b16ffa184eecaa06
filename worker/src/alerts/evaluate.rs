//! Deciding what an alert does with a new observation: a pure function of the alert's stored
//! state, the observed price and the time, so every rule is unit-tested here and the job only
//! reads and writes rows.
//!
//! Rules:
//! - past `expires_at`: the alert expires (inactive) and never fires;
//! - level conditions (`above`, `below`, `pct_change_24h_*`) fire when they hold while the
//!   alert is armed — including at the first evaluation — and then latch (`triggered`) until
//!   they are false again, which re-arms an `every_crossing` alert;
//! - edge conditions (`crossing*`) fire when the price moved through the target since the
//!   previous evaluation; the first evaluation only records the price;
//! - a `once` alert deactivates when it fires; a cooldown suppresses firings until it has
//!   passed since the last one (a level alert stays armed and fires once it has; an edge
//!   crossing during the cooldown is not fired later).

use chrono::{DateTime, Utc};
use common::alerts::{AlertState, Condition, Trigger};
use rust_decimal::Decimal;

/// What evaluation needs of an alert.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertRule {
    /// When it holds.
    pub condition: Condition,
    /// The level it compares with.
    pub target: Decimal,
    /// Once or every crossing.
    pub trigger: Trigger,
    /// The least time between two firings.
    pub cooldown: Option<chrono::Duration>,
    /// When it stops.
    pub expires_at: Option<DateTime<Utc>>,
    /// Its state after the previous evaluation.
    pub state: AlertState,
    /// The value looked at in the previous evaluation (`None` before the first).
    pub last_value: Option<Decimal>,
    /// When it last fired.
    pub last_triggered_at: Option<DateTime<Utc>>,
}

/// A coin's latest quote.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Observation {
    /// The price.
    pub price: Decimal,
    /// The 24 h change in percent, if the provider gave one.
    pub change_24h_pct: Option<Decimal>,
}

/// What the alert becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// Whether it fires now.
    pub fires: bool,
    /// Its new state.
    pub state: AlertState,
    /// Whether it stays active.
    pub active: bool,
    /// The value to remember for the next evaluation.
    pub last_value: Option<Decimal>,
}

/// Evaluates `rule` against `seen` at `now`.
pub fn evaluate(rule: &AlertRule, seen: Observation, now: DateTime<Utc>) -> Verdict {
    if rule.expires_at.is_some_and(|at| at <= now) {
        return Verdict {
            fires: false,
            state: AlertState::Expired,
            active: false,
            last_value: rule.last_value,
        };
    }
    let value = if rule.condition.watches_change() {
        seen.change_24h_pct
    } else {
        Some(seen.price)
    };
    let unchanged = Verdict {
        fires: false,
        state: rule.state,
        active: true,
        last_value: rule.last_value,
    };
    // Without a 24 h change there is nothing to compare: wait for a quote that has one.
    let Some(value) = value else { return unchanged };
    let cooling_down = match (rule.cooldown, rule.last_triggered_at) {
        (Some(cooldown), Some(last)) => now < last + cooldown,
        _ => false,
    };
    let holds = match rule.condition {
        Condition::Above | Condition::PctChange24hAbove => value >= rule.target,
        Condition::Below | Condition::PctChange24hBelow => value <= rule.target,
        Condition::CrossingUp => rule
            .last_value
            .is_some_and(|before| before < rule.target && value >= rule.target),
        Condition::CrossingDown => rule
            .last_value
            .is_some_and(|before| before > rule.target && value <= rule.target),
        Condition::Crossing => rule.last_value.is_some_and(|before| {
            (before < rule.target && value >= rule.target)
                || (before > rule.target && value <= rule.target)
        }),
    };
    let fires = holds && !cooling_down && rule.state != AlertState::Triggered;
    let edge = rule.condition.is_edge();
    let state = match (fires, edge, holds) {
        // A level alert latches while its condition holds; an edge is over once it happened.
        (true, false, _) => AlertState::Triggered,
        (true, true, _) if rule.trigger == Trigger::Once => AlertState::Triggered,
        (true, true, _) => AlertState::Armed,
        // The condition went false again: re-arm.
        (false, false, false) => AlertState::Armed,
        (false, _, _) => rule.state,
    };
    Verdict {
        fires,
        state,
        active: !(fires && rule.trigger == Trigger::Once),
        last_value: Some(value),
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;

    fn dec(text: &str) -> Decimal {
        Decimal::from_str(text).expect("a decimal")
    }

    fn rule(condition: Condition, target: &str, trigger: Trigger) -> AlertRule {
        AlertRule {
            condition,
            target: dec(target),
            trigger,
            cooldown: None,
            expires_at: None,
            state: AlertState::Armed,
            last_value: None,
            last_triggered_at: None,
        }
    }

    fn price(text: &str) -> Observation {
        Observation {
            price: dec(text),
            change_24h_pct: None,
        }
    }

    /// Feeds `prices` one after another (a minute apart) and returns which evaluations fired.
    fn run(mut rule: AlertRule, prices: &[&str]) -> (Vec<bool>, AlertRule, bool) {
        let start = DateTime::parse_from_rfc3339("2026-12-04T12:00:00Z")
            .expect("a time")
            .with_timezone(&Utc);
        let mut fired = Vec::new();
        let mut active = true;
        for (minute, text) in prices.iter().enumerate() {
            if !active {
                fired.push(false);
                continue;
            }
            let now = start + chrono::Duration::minutes(i64::try_from(minute).unwrap_or(0));
            let verdict = evaluate(&rule, price(text), now);
            fired.push(verdict.fires);
            rule.state = verdict.state;
            rule.last_value = verdict.last_value;
            active = verdict.active;
            if verdict.fires {
                rule.last_triggered_at = Some(now);
            }
        }
        (fired, rule, active)
    }

    #[test]
    fn a_level_alert_fires_at_its_first_evaluation_when_it_already_holds() {
        let (fired, _, _) = run(
            rule(Condition::Above, "100", Trigger::EveryCrossing),
            &["120"],
        );
        assert_eq!(fired, [true]);
    }

    #[test]
    fn a_level_alert_does_not_fire_again_while_the_price_stays_above() {
        let (fired, rule, active) = run(
            rule(Condition::Above, "100", Trigger::EveryCrossing),
            &["90", "101", "150", "100", "120"],
        );
        assert_eq!(fired, [false, true, false, false, false]);
        assert_eq!((rule.state, active), (AlertState::Triggered, true));
    }

    #[test]
    fn every_crossing_re_arms_after_the_condition_was_false_again() {
        let (fired, _, _) = run(
            rule(Condition::Above, "100", Trigger::EveryCrossing),
            &["101", "99", "101", "102", "50", "100"],
        );
        assert_eq!(fired, [true, false, true, false, false, true]);
    }

    #[test]
    fn once_fires_once_then_deactivates() {
        let (fired, rule, active) = run(
            rule(Condition::Below, "10", Trigger::Once),
            &["11", "9", "20", "5"],
        );
        assert_eq!(fired, [false, true, false, false]);
        assert_eq!((rule.state, active), (AlertState::Triggered, false));
    }

    #[test]
    fn edges_fire_on_movement_through_the_target_only() {
        let up = run(
            rule(Condition::CrossingUp, "100", Trigger::EveryCrossing),
            &["120", "90", "100", "130", "80", "101"],
        )
        .0;
        assert_eq!(
            up,
            [false, false, true, false, false, true],
            "the first price is only recorded; each rise through 100 fires"
        );
        let down = run(
            rule(Condition::CrossingDown, "100", Trigger::EveryCrossing),
            &["90", "120", "100", "99", "101", "50"],
        )
        .0;
        assert_eq!(down, [false, false, true, false, false, true]);
        let both = run(
            rule(Condition::Crossing, "100", Trigger::EveryCrossing),
            &["90", "110", "105", "95", "95"],
        )
        .0;
        assert_eq!(both, [false, true, false, true, false]);
    }

    #[test]
    fn a_cooldown_spaces_firings_out() {
        let mut cooled = rule(Condition::Crossing, "100", Trigger::EveryCrossing);
        cooled.cooldown = Some(chrono::Duration::minutes(3));
        // Crossings at minutes 1, 2, 3, 4, 5: the cooldown lets minutes 1 and 4 through.
        let (fired, _, _) = run(cooled, &["90", "110", "90", "110", "90", "110"]);
        assert_eq!(fired, [false, true, false, false, true, false]);

        let mut level = rule(Condition::Above, "100", Trigger::EveryCrossing);
        level.cooldown = Some(chrono::Duration::minutes(3));
        // Fires at 0, re-arms at 1, holds again at 2 (cooling down) and fires at 3.
        let (fired, _, _) = run(level, &["110", "90", "110", "110", "110"]);
        assert_eq!(fired, [true, false, false, true, false]);
    }

    #[test]
    fn an_expired_alert_never_fires() {
        let mut expiring = rule(Condition::Above, "100", Trigger::Once);
        let now = Utc::now();
        expiring.expires_at = Some(now);
        let verdict = evaluate(&expiring, price("500"), now);
        assert_eq!(
            verdict,
            Verdict {
                fires: false,
                state: AlertState::Expired,
                active: false,
                last_value: None
            }
        );
    }

    #[test]
    fn change_conditions_look_at_the_24h_change_and_wait_for_one() {
        let alert = rule(Condition::PctChange24hBelow, "-5", Trigger::Once);
        let now = Utc::now();
        let none = evaluate(&alert, price("1"), now);
        assert!(!none.fires && none.active && none.last_value.is_none());
        let fell = evaluate(
            &alert,
            Observation {
                price: dec("1"),
                change_24h_pct: Some(dec("-7.5")),
            },
            now,
        );
        assert!(fell.fires && !fell.active);
        assert_eq!(fell.last_value, Some(dec("-7.5")));
    }
}
