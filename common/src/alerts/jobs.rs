//! `alert_eval`: evaluates the active alerts of the coins a price refresh moved.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::jobs::{JobArgs, JobKind, Queue};

/// Evaluate the active alerts on `coins` (quoted in `vs_currency`) against their latest
/// stored prices. Evaluation reads the prices when it runs, so a late or repeated job
/// evaluates the newest prices and never fires twice for one crossing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertEval {
    /// Quote currency of the prices that moved.
    pub vs_currency: String,
    /// The coins whose prices were refreshed.
    pub coins: Vec<String>,
    /// The refresh slot this evaluation follows (seconds since the epoch); with the currency
    /// it names the job, so one refresh queues one evaluation per currency.
    pub slot: u64,
}

impl AlertEval {
    /// The job's id: one evaluation per refresh slot and currency, whichever process asks.
    pub fn job_id(&self) -> Uuid {
        let name = format!("coinpulse:alert_eval:{}:{}", self.vs_currency, self.slot);
        Uuid::new_v5(&Uuid::NAMESPACE_OID, name.as_bytes())
    }
}

impl JobArgs for AlertEval {
    const KIND: JobKind = JobKind::AlertEval;
    const QUEUE: Queue = Queue::AlertEval;
    const MAX_ATTEMPTS: i32 = 5;
    const TIMEOUT: Option<Duration> = Some(Duration::from_secs(120));
    const DEDUPLICATED: bool = true;
    type Output = AlertEvalResult;
}

/// What one evaluation did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Object))]
pub struct AlertEvalResult {
    /// Active alerts evaluated.
    pub evaluated: u64,
    /// Alerts that fired (each one queued a notification).
    pub fired: u64,
    /// Alerts found past their `expires_at` and retired.
    pub expired: u64,
}
