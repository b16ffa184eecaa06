//! Price alerts: what a user asks to be told about, shared by the API (which stores alerts)
//! and the worker (which evaluates them after each price refresh).

pub mod jobs;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

crate::text_enum! {
    /// When an alert's condition holds. Level conditions (`above`, `below` and the 24 h change
    /// ones) hold while the value is on that side of the target; edge conditions (`crossing*`)
    /// hold when the price moved through the target between two evaluations.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
    #[serde(rename_all = "snake_case")]
    #[cfg_attr(feature = "openapi", derive(poem_openapi::Enum))]
    #[cfg_attr(feature = "openapi", oai(rename_all = "snake_case"))]
    pub enum Condition {
        /// The price is at or above the target.
        Above = "above",
        /// The price is at or below the target.
        Below = "below",
        /// The price moved through the target, either way.
        Crossing = "crossing",
        /// The price rose through the target (from below to at or above).
        CrossingUp = "crossing_up",
        /// The price fell through the target (from above to at or below).
        CrossingDown = "crossing_down",
        /// The 24 h change, in percent, is at or above the target.
        #[serde(rename = "pct_change_24h_above")]
        #[cfg_attr(feature = "openapi", oai(rename = "pct_change_24h_above"))]
        PctChange24hAbove = "pct_change_24h_above",
        /// The 24 h change, in percent, is at or below the target.
        #[serde(rename = "pct_change_24h_below")]
        #[cfg_attr(feature = "openapi", oai(rename = "pct_change_24h_below"))]
        PctChange24hBelow = "pct_change_24h_below",
    }
}

impl Condition {
    /// Whether the condition is about a movement between two evaluations rather than a level.
    pub fn is_edge(self) -> bool {
        matches!(
            self,
            Condition::Crossing | Condition::CrossingUp | Condition::CrossingDown
        )
    }

    /// Whether the condition looks at the 24 h change (percent) rather than the price.
    pub fn watches_change(self) -> bool {
        matches!(
            self,
            Condition::PctChange24hAbove | Condition::PctChange24hBelow
        )
    }
}

crate::text_enum! {
    /// How often an alert fires.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
    #[serde(rename_all = "snake_case")]
    #[cfg_attr(feature = "openapi", derive(poem_openapi::Enum))]
    #[cfg_attr(feature = "openapi", oai(rename_all = "snake_case"))]
    pub enum Trigger {
        /// Fires once, then deactivates.
        Once = "once",
        /// Fires at each crossing: a level alert re-arms once its condition has been false
        /// again; an optional cooldown spaces firings out.
        EveryCrossing = "every_crossing",
    }
}

crate::text_enum! {
    /// Where an alert is in its life.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
    #[serde(rename_all = "snake_case")]
    #[cfg_attr(feature = "openapi", derive(poem_openapi::Enum))]
    #[cfg_attr(feature = "openapi", oai(rename_all = "snake_case"))]
    pub enum AlertState {
        /// Waiting for its condition.
        Armed = "armed",
        /// Fired; a `once` alert stays here, an `every_crossing` level alert until its
        /// condition has been false again.
        Triggered = "triggered",
        /// Its `expires_at` passed before it fired (for `once`) or while active.
        Expired = "expired",
    }
}

/// The id of an alert's `sequence`-th firing: the event id its notification, email and stream
/// event are keyed by. Derived, not random, so every evaluation that reaches the same firing
/// names it the same.
pub fn firing_event_id(alert_id: Uuid, sequence: i32) -> Uuid {
    let name = format!("coinpulse:alert_firing:{alert_id}:{sequence}");
    Uuid::new_v5(&Uuid::NAMESPACE_OID, name.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_their_serialised_form() {
        for condition in Condition::ALL {
            assert_eq!(
                serde_json::to_value(condition).expect("serialises"),
                condition.as_str()
            );
            assert_eq!(condition.as_str().parse::<Condition>(), Ok(*condition));
        }
        for trigger in Trigger::ALL {
            assert_eq!(
                serde_json::to_value(trigger).expect("serialises"),
                trigger.as_str()
            );
        }
        for state in AlertState::ALL {
            assert_eq!(
                serde_json::to_value(state).expect("serialises"),
                state.as_str()
            );
        }
        assert!("sideways".parse::<Condition>().is_err());
    }

    #[test]
    fn firing_ids_are_stable_and_distinct() {
        let alert = Uuid::now_v7();
        assert_eq!(firing_event_id(alert, 1), firing_event_id(alert, 1));
        assert_ne!(firing_event_id(alert, 1), firing_event_id(alert, 2));
        assert_ne!(
            firing_event_id(alert, 1),
            firing_event_id(Uuid::now_v7(), 1)
        );
    }
}
