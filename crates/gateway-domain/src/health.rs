//! The last known health of an upstream, as the registry stores and reports it.
//! The health monitor that fills it in arrives with active checks; until then every
//! server is `unknown`.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Coarse health state, used for filtering and routing decisions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthState {
    /// Never checked.
    #[default]
    Unknown,
    /// Answering within its thresholds.
    Healthy,
    /// Answering, but slowly or intermittently.
    Degraded,
    /// Not answering.
    Unhealthy,
}

impl HealthState {
    /// Every state, in severity order.
    pub const ALL: [HealthState; 4] = [
        Self::Unknown,
        Self::Healthy,
        Self::Degraded,
        Self::Unhealthy,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Healthy => "healthy",
            Self::Degraded => "degraded",
            Self::Unhealthy => "unhealthy",
        }
    }
}

impl fmt::Display for HealthState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for HealthState {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|state| state.as_str() == value)
            .ok_or_else(|| {
                format!(
                    "`{}` is not one of unknown, healthy, degraded, unhealthy",
                    value.escape_debug()
                )
            })
    }
}

/// Health of one upstream at its last check.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HealthStatus {
    /// The state.
    pub state: HealthState,
    /// When it was last checked.
    pub checked_at: Option<DateTime<Utc>>,
    /// Round-trip time of the last check.
    pub latency_ms: Option<i64>,
    /// Why the last check failed, if it did.
    pub error: Option<String>,
    /// The MCP protocol version negotiated at the last connection.
    pub protocol_version: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_text() {
        for state in HealthState::ALL {
            assert_eq!(state.as_str().parse::<HealthState>(), Ok(state));
        }
        assert!("sick".parse::<HealthState>().is_err());
    }
}
