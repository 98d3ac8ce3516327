//! The health state machine of one upstream endpoint. Active checks (`ping`) and
//! passive outcomes (real calls) both feed it; it decides `unknown`, `healthy`,
//! `degraded` (slow or intermittent) or `unhealthy` from configurable thresholds and
//! keeps a short history for operators. Time is passed in, so it is pure.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use gateway_domain::HealthState;

/// Thresholds of the health state machine.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthPolicy {
    /// Consecutive failures that make an endpoint `unhealthy`.
    pub unhealthy_after: u32,
    /// Consecutive successes that bring an `unhealthy` endpoint back.
    pub healthy_after: u32,
    /// A success slower than this counts as slow (`degraded`).
    pub degraded_latency: Duration,
    /// Outcomes remembered to judge intermittence (and shown as history).
    pub window: usize,
    /// Failures among the last `window` outcomes that make a live endpoint `degraded`.
    pub degraded_failures: usize,
}

impl Default for HealthPolicy {
    fn default() -> Self {
        Self {
            unhealthy_after: 2,
            healthy_after: 2,
            degraded_latency: Duration::from_secs(2),
            window: 20,
            degraded_failures: 2,
        }
    }
}

/// Where an observation came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A health check the gateway sent (`ping`).
    Check,
    /// A real forwarded call.
    Call,
    /// A catalog discovery pass: proves liveness, says nothing about speed.
    Discovery,
}

impl Source {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Check => "check",
            Self::Call => "call",
            Self::Discovery => "discovery",
        }
    }
}

/// One observed outcome, kept in the history.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    /// When it happened (wall clock, for operators).
    pub at: DateTime<Utc>,
    /// Check or call.
    pub source: Source,
    /// Whether the endpoint answered.
    pub ok: bool,
    /// How long it took.
    pub latency: Duration,
    /// Why it failed.
    pub error: Option<String>,
}

/// The health of one endpoint, updated by every observation.
#[derive(Debug, Clone)]
pub struct HealthTracker {
    policy: HealthPolicy,
    state: HealthState,
    consecutive_failures: u32,
    consecutive_successes: u32,
    history: VecDeque<Observation>,
    /// Failures among the outcomes since the endpoint last recovered (bounded by the
    /// window): an outage that ended does not count as intermittence.
    recent: VecDeque<bool>,
    last_check: Option<Observation>,
    changed_at: Option<Instant>,
}

impl HealthTracker {
    /// A tracker in state `unknown`.
    pub fn new(policy: HealthPolicy) -> Self {
        Self {
            history: VecDeque::with_capacity(policy.window),
            recent: VecDeque::with_capacity(policy.window),
            policy,
            state: HealthState::Unknown,
            consecutive_failures: 0,
            consecutive_successes: 0,
            last_check: None,
            changed_at: None,
        }
    }

    /// The current state.
    pub fn state(&self) -> HealthState {
        self.state
    }

    /// Consecutive failures so far (0 after a success).
    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures
    }

    /// The most recent observations, oldest first.
    pub fn history(&self) -> impl Iterator<Item = &Observation> {
        self.history.iter()
    }

    /// The last active check.
    pub fn last_check(&self) -> Option<&Observation> {
        self.last_check.as_ref()
    }

    /// When the state last changed.
    pub fn changed_at(&self) -> Option<Instant> {
        self.changed_at
    }

    /// Records an outcome; returns the new state if it changed.
    pub fn observe(&mut self, observation: Observation, now: Instant) -> Option<HealthState> {
        if observation.ok {
            self.consecutive_successes = self.consecutive_successes.saturating_add(1);
            self.consecutive_failures = 0;
        } else {
            self.consecutive_failures = self.consecutive_failures.saturating_add(1);
            self.consecutive_successes = 0;
        }
        if observation.source == Source::Check {
            self.last_check = Some(observation.clone());
        }
        // Only checks judge speed: a call's latency is mostly the tool's own work.
        let slow = self
            .last_check
            .as_ref()
            .is_some_and(|check| check.ok && check.latency >= self.policy.degraded_latency);
        if self.history.len() >= self.policy.window.max(1) {
            self.history.pop_front();
        }
        if self.recent.len() >= self.policy.window.max(1) {
            self.recent.pop_front();
        }
        self.recent.push_back(observation.ok);
        self.history.push_back(observation);
        let next = self.next_state(slow);
        (next != self.state).then(|| {
            if self.state == HealthState::Unhealthy {
                self.recent.clear();
            }
            self.state = next;
            self.changed_at = Some(now);
            next
        })
    }

    fn next_state(&self, slow: bool) -> HealthState {
        if self.consecutive_failures >= self.policy.unhealthy_after.max(1) {
            return HealthState::Unhealthy;
        }
        let recovering = self.state == HealthState::Unhealthy
            && self.consecutive_successes < self.policy.healthy_after.max(1);
        if recovering {
            return HealthState::Unhealthy;
        }
        if self.consecutive_successes == 0 {
            // A failure below the threshold: intermittent at worst, never healthy
            // on a failure, and an endpoint never seen answering stays unknown.
            return match self.state {
                HealthState::Unknown => HealthState::Unknown,
                _ => HealthState::Degraded,
            };
        }
        let recent_failures = if self.state == HealthState::Unhealthy {
            0 // Recovering: the outage's failures are over.
        } else {
            self.recent.iter().filter(|ok| !**ok).count()
        };
        if slow || recent_failures >= self.policy.degraded_failures.max(1) {
            HealthState::Degraded
        } else {
            HealthState::Healthy
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(ok: bool, ms: u64) -> Observation {
        Observation {
            at: Utc::now(),
            source: Source::Check,
            ok,
            latency: Duration::from_millis(ms),
            error: (!ok).then(|| "refused".to_owned()),
        }
    }

    fn tracker() -> HealthTracker {
        HealthTracker::new(HealthPolicy {
            unhealthy_after: 3,
            healthy_after: 2,
            degraded_latency: Duration::from_millis(500),
            window: 10,
            degraded_failures: 2,
        })
    }

    #[test]
    fn starts_unknown_and_becomes_healthy_on_the_first_success() {
        let mut health = tracker();
        assert_eq!(health.state(), HealthState::Unknown);
        assert_eq!(
            health.observe(outcome(true, 10), Instant::now()),
            Some(HealthState::Healthy)
        );
        assert_eq!(health.observe(outcome(true, 10), Instant::now()), None);
    }

    #[test]
    fn consecutive_failures_make_it_unhealthy_and_successes_bring_it_back() {
        let mut health = tracker();
        health.observe(outcome(true, 10), Instant::now());
        health.observe(outcome(false, 10), Instant::now());
        assert_eq!(health.state(), HealthState::Degraded);
        health.observe(outcome(false, 10), Instant::now());
        assert_eq!(
            health.observe(outcome(false, 10), Instant::now()),
            Some(HealthState::Unhealthy)
        );
        // One success is not enough to recover.
        assert_eq!(health.observe(outcome(true, 10), Instant::now()), None);
        assert_eq!(health.state(), HealthState::Unhealthy);
        // The second is, and the outage's failures do not count as intermittence.
        assert_eq!(
            health.observe(outcome(true, 10), Instant::now()),
            Some(HealthState::Healthy)
        );
        health.observe(outcome(false, 10), Instant::now());
        assert_eq!(health.state(), HealthState::Degraded);
    }

    #[test]
    fn a_slow_success_is_degraded_and_a_fast_one_heals_it() {
        let mut health = tracker();
        health.observe(outcome(true, 900), Instant::now());
        assert_eq!(health.state(), HealthState::Degraded);
        health.observe(outcome(true, 5), Instant::now());
        assert_eq!(health.state(), HealthState::Healthy);
    }

    #[test]
    fn intermittent_failures_degrade_until_they_leave_the_window() {
        let mut health = tracker();
        for ok in [true, false, true, false, true] {
            health.observe(outcome(ok, 5), Instant::now());
        }
        assert_eq!(health.state(), HealthState::Degraded);
        for _ in 0..10 {
            health.observe(outcome(true, 5), Instant::now());
        }
        assert_eq!(health.state(), HealthState::Healthy);
        assert_eq!(health.history().count(), 10, "history is bounded");
    }

    #[test]
    fn an_endpoint_never_seen_answering_goes_from_unknown_to_unhealthy() {
        let mut health = tracker();
        assert_eq!(health.observe(outcome(false, 5), Instant::now()), None);
        assert_eq!(health.observe(outcome(false, 5), Instant::now()), None);
        assert_eq!(
            health.observe(outcome(false, 5), Instant::now()),
            Some(HealthState::Unhealthy)
        );
        assert!(health.last_check().is_some_and(|c| !c.ok));
    }
}
