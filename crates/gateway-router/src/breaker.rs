//! A circuit breaker per upstream endpoint: `closed` (calls pass, outcomes counted)
//! → `open` after too many failures (calls fail fast) → `half-open` after a cool-down
//! (a few probe calls pass) → `closed` when the probes succeed, `open` again when one
//! fails. Time is passed in, so it is pure and testable without sleeping.

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

/// When a breaker opens and how it recovers.
#[derive(Debug, Clone, PartialEq)]
pub struct BreakerPolicy {
    /// Consecutive failures that open the circuit.
    pub consecutive_failures: u32,
    /// Failure rate (0..=1) over the window that opens the circuit...
    pub failure_rate: f64,
    /// ...once the window holds at least this many calls.
    pub min_calls: usize,
    /// How far back the failure rate looks.
    pub window: Duration,
    /// How long the circuit stays open before probing.
    pub open_for: Duration,
    /// Probe calls let through at once while half-open; this many successes close it.
    pub half_open_probes: u32,
}

impl Default for BreakerPolicy {
    fn default() -> Self {
        Self {
            consecutive_failures: 5,
            failure_rate: 0.5,
            min_calls: 20,
            window: Duration::from_secs(30),
            open_for: Duration::from_secs(15),
            half_open_probes: 1,
        }
    }
}

/// The three breaker states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CircuitState {
    /// Calls pass.
    Closed,
    /// Calls fail fast.
    Open,
    /// A few probe calls pass.
    HalfOpen,
}

impl CircuitState {
    /// Every state.
    pub const ALL: [CircuitState; 3] = [Self::Closed, Self::Open, Self::HalfOpen];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half-open",
        }
    }
}

impl fmt::Display for CircuitState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a call was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejected {
    /// How long until the breaker lets a probe through.
    pub retry_in: Duration,
}

/// A call the breaker let through. Its outcome counts only in the breaker cycle
/// (generation) that admitted it: a call admitted while closed that ends after the
/// circuit opened and went half-open can neither close the circuit nor take a
/// probe's place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Permit {
    generation: u64,
    probe: bool,
}

/// Calls and failures of one second, for the failure-rate window.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    second: u64,
    calls: u32,
    failures: u32,
}

/// One endpoint's breaker.
#[derive(Debug, Clone)]
pub struct CircuitBreaker {
    policy: BreakerPolicy,
    state: CircuitState,
    /// Bumped on every transition; permits of older generations are ignored.
    generation: u64,
    consecutive_failures: u32,
    /// Per-second counts while closed, with running totals: O(1) per call and
    /// bounded by the window's seconds, whatever the call rate.
    buckets: VecDeque<Bucket>,
    calls: u64,
    failures: u64,
    started: Instant,
    opened_at: Option<Instant>,
    probes_in_flight: u32,
    probe_successes: u32,
}

impl CircuitBreaker {
    /// A closed breaker.
    pub fn new(policy: BreakerPolicy) -> Self {
        Self {
            policy,
            state: CircuitState::Closed,
            generation: 0,
            consecutive_failures: 0,
            buckets: VecDeque::new(),
            calls: 0,
            failures: 0,
            started: Instant::now(),
            opened_at: None,
            probes_in_flight: 0,
            probe_successes: 0,
        }
    }

    /// The state as of `now` (an open breaker whose cool-down passed reads half-open).
    pub fn state(&self, now: Instant) -> CircuitState {
        match (self.state, self.opened_at) {
            (CircuitState::Open, Some(at)) if now.duration_since(at) >= self.policy.open_for => {
                CircuitState::HalfOpen
            }
            (state, _) => state,
        }
    }

    /// Whether a call may go through now. A call let through while half-open is a
    /// probe; report every permit's outcome with [`CircuitBreaker::record`] or give it
    /// back with [`CircuitBreaker::release`].
    pub fn try_acquire(&mut self, now: Instant) -> Result<Permit, Rejected> {
        if self.state == CircuitState::Open && self.state(now) == CircuitState::HalfOpen {
            self.transition(CircuitState::HalfOpen);
        }
        match self.state {
            CircuitState::Closed => Ok(Permit {
                generation: self.generation,
                probe: false,
            }),
            CircuitState::Open => Err(Rejected {
                retry_in: self.retry_in(now),
            }),
            CircuitState::HalfOpen => {
                if self.probes_in_flight < self.policy.half_open_probes.max(1) {
                    self.probes_in_flight += 1;
                    Ok(Permit {
                        generation: self.generation,
                        probe: true,
                    })
                } else {
                    Err(Rejected {
                        retry_in: Duration::ZERO,
                    })
                }
            }
        }
    }

    /// Whether a call would be let through, without taking a probe slot.
    pub fn would_allow(&self, now: Instant) -> bool {
        match self.state(now) {
            CircuitState::Closed => true,
            CircuitState::Open => false,
            CircuitState::HalfOpen => {
                self.state == CircuitState::Open
                    || self.probes_in_flight < self.policy.half_open_probes.max(1)
            }
        }
    }

    /// How long until an open circuit lets a probe through (zero when not open).
    pub fn retry_in(&self, now: Instant) -> Duration {
        self.opened_at.map_or(Duration::ZERO, |at| {
            (at + self.policy.open_for).saturating_duration_since(now)
        })
    }

    /// Reports the outcome of a permitted call. Returns the new state if it changed.
    pub fn record(&mut self, permit: Permit, ok: bool, now: Instant) -> Option<CircuitState> {
        if permit.generation != self.generation {
            return None; // Admitted in an earlier cycle: it says nothing about this one.
        }
        let before = self.state;
        match self.state {
            CircuitState::Closed => {
                self.consecutive_failures = if ok {
                    0
                } else {
                    self.consecutive_failures.saturating_add(1)
                };
                self.count(ok, now);
                let rate_tripped = self.calls >= self.policy.min_calls.max(1) as u64
                    && self.failures as f64 / self.calls as f64 >= self.policy.failure_rate;
                let streak_tripped =
                    self.consecutive_failures >= self.policy.consecutive_failures.max(1);
                if !ok && (rate_tripped || streak_tripped) {
                    self.open(now);
                }
            }
            CircuitState::HalfOpen if permit.probe => {
                self.probes_in_flight = self.probes_in_flight.saturating_sub(1);
                if ok {
                    self.probe_successes += 1;
                    if self.probe_successes >= self.policy.half_open_probes.max(1) {
                        self.transition(CircuitState::Closed);
                    }
                } else {
                    self.open(now);
                }
            }
            CircuitState::HalfOpen | CircuitState::Open => {}
        }
        (self.state != before).then_some(self.state)
    }

    /// Gives back a permit whose call reached no verdict (cancelled by its client, or
    /// never sent): frees its probe slot without judging the endpoint.
    pub fn release(&mut self, permit: Permit) {
        if permit.probe
            && permit.generation == self.generation
            && self.state == CircuitState::HalfOpen
        {
            self.probes_in_flight = self.probes_in_flight.saturating_sub(1);
        }
    }

    /// Closes the circuit (an operator re-enabled the server).
    pub fn reset(&mut self) {
        self.transition(CircuitState::Closed);
    }

    fn count(&mut self, ok: bool, now: Instant) {
        let second = now.saturating_duration_since(self.started).as_secs();
        let window = self.policy.window.as_secs().max(1);
        while let Some(oldest) = self.buckets.front().copied()
            && oldest.second + window <= second
        {
            self.buckets.pop_front();
            self.calls -= u64::from(oldest.calls);
            self.failures -= u64::from(oldest.failures);
        }
        match self.buckets.back_mut() {
            Some(bucket) if bucket.second == second => {
                bucket.calls = bucket.calls.saturating_add(1);
                bucket.failures = bucket.failures.saturating_add(u32::from(!ok));
            }
            _ => self.buckets.push_back(Bucket {
                second,
                calls: 1,
                failures: u32::from(!ok),
            }),
        }
        self.calls += 1;
        self.failures += u64::from(!ok);
    }

    fn open(&mut self, now: Instant) {
        self.transition(CircuitState::Open);
        self.opened_at = Some(now);
    }

    fn transition(&mut self, state: CircuitState) {
        self.state = state;
        self.generation += 1;
        self.opened_at = None;
        self.consecutive_failures = 0;
        self.probes_in_flight = 0;
        self.probe_successes = 0;
        self.buckets.clear();
        self.calls = 0;
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> BreakerPolicy {
        BreakerPolicy {
            consecutive_failures: 3,
            failure_rate: 0.5,
            min_calls: 10,
            window: Duration::from_secs(10),
            open_for: Duration::from_secs(5),
            half_open_probes: 1,
        }
    }

    fn call(breaker: &mut CircuitBreaker, ok: bool, now: Instant) -> Option<CircuitState> {
        let permit = breaker.try_acquire(now).expect("admitted");
        breaker.record(permit, ok, now)
    }

    #[test]
    fn consecutive_failures_open_the_circuit() {
        let now = Instant::now();
        let mut breaker = CircuitBreaker::new(policy());
        assert_eq!(call(&mut breaker, false, now), None);
        assert_eq!(call(&mut breaker, false, now), None);
        assert_eq!(call(&mut breaker, false, now), Some(CircuitState::Open));
        let rejected = breaker.try_acquire(now).expect_err("open");
        assert_eq!(rejected.retry_in, Duration::from_secs(5));
    }

    #[test]
    fn a_failure_rate_opens_the_circuit_only_with_enough_calls() {
        let now = Instant::now();
        let mut breaker = CircuitBreaker::new(policy());
        for i in 0..9 {
            assert_eq!(call(&mut breaker, i % 2 == 0, now), None);
        }
        // The tenth call makes the window large enough: 5 of 10 failed.
        assert_eq!(call(&mut breaker, false, now), Some(CircuitState::Open));
    }

    #[test]
    fn old_outcomes_leave_the_window() {
        let start = Instant::now();
        let mut breaker = CircuitBreaker::new(policy());
        for _ in 0..2 {
            call(&mut breaker, false, start);
            call(&mut breaker, true, start);
        }
        let later = start + Duration::from_secs(11);
        for _ in 0..8 {
            call(&mut breaker, true, later);
        }
        assert_eq!(call(&mut breaker, false, later), None, "1 of 9 failed");
        assert_eq!(breaker.state(later), CircuitState::Closed);
    }

    #[test]
    fn half_open_lets_one_probe_through_and_closes_on_success() {
        let start = Instant::now();
        let mut breaker = CircuitBreaker::new(policy());
        for _ in 0..3 {
            call(&mut breaker, false, start);
        }
        let later = start + Duration::from_secs(5);
        assert_eq!(breaker.state(later), CircuitState::HalfOpen);
        assert!(breaker.would_allow(later));
        let probe = breaker.try_acquire(later).expect("probe");
        assert!(breaker.try_acquire(later).is_err(), "one probe at a time");
        assert!(!breaker.would_allow(later));
        assert_eq!(
            breaker.record(probe, true, later),
            Some(CircuitState::Closed)
        );
        assert!(breaker.try_acquire(later).is_ok());
    }

    #[test]
    fn a_failed_probe_opens_the_circuit_again() {
        let start = Instant::now();
        let mut breaker = CircuitBreaker::new(policy());
        for _ in 0..3 {
            call(&mut breaker, false, start);
        }
        let later = start + Duration::from_secs(6);
        let probe = breaker.try_acquire(later).expect("probe");
        assert_eq!(
            breaker.record(probe, false, later),
            Some(CircuitState::Open)
        );
        assert_eq!(breaker.state(later), CircuitState::Open);
        assert_eq!(
            breaker.state(later + Duration::from_secs(5)),
            CircuitState::HalfOpen
        );
    }

    #[test]
    fn a_released_probe_frees_its_slot() {
        let start = Instant::now();
        let mut breaker = CircuitBreaker::new(policy());
        for _ in 0..3 {
            call(&mut breaker, false, start);
        }
        let later = start + Duration::from_secs(5);
        let probe = breaker.try_acquire(later).expect("probe");
        breaker.release(probe);
        assert!(breaker.try_acquire(later).is_ok());
    }

    #[test]
    fn a_call_from_an_earlier_cycle_neither_closes_nor_frees_a_probe() {
        let start = Instant::now();
        let mut breaker = CircuitBreaker::new(policy());
        let slow = breaker.try_acquire(start).expect("closed");
        for _ in 0..3 {
            call(&mut breaker, false, start);
        }
        let later = start + Duration::from_secs(5);
        let probe = breaker.try_acquire(later).expect("probe");
        // The slow call admitted while closed ends now, successfully: it is not the probe.
        assert_eq!(breaker.record(slow, true, later), None);
        assert_eq!(breaker.state(later), CircuitState::HalfOpen);
        breaker.release(slow);
        assert!(
            breaker.try_acquire(later).is_err(),
            "the probe slot is still taken"
        );
        assert_eq!(
            breaker.record(probe, true, later),
            Some(CircuitState::Closed)
        );
    }

    #[test]
    fn the_window_holds_per_second_counts_not_every_call() {
        let start = Instant::now();
        let mut breaker = CircuitBreaker::new(BreakerPolicy {
            consecutive_failures: 1_000_000,
            min_calls: 1,
            ..policy()
        });
        for _ in 0..100_000 {
            call(&mut breaker, true, start);
        }
        assert_eq!(breaker.buckets.len(), 1);
        assert_eq!(breaker.calls, 100_000);
    }
}
