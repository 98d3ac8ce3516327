//! GCRA in process: one theoretical arrival time (TAT) per budget key.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use gateway_domain::{Budget, RateDecision, RateLimiter};

/// Keys kept before those whose budget is full again are dropped (a full budget is
/// the same as no entry).
const PRUNE_AT: usize = 100_000;

/// [`RateLimiter`] whose budgets live in this process.
#[derive(Debug)]
pub struct LocalLimiter {
    origin: Instant,
    /// TAT per key, in nanoseconds since `origin` (foldhash: randomly seeded, and
    /// several times faster than SipHash on these short keys).
    arrivals: Mutex<HashMap<String, u64, foldhash::fast::RandomState>>,
    /// When full budgets were last dropped (nanoseconds since `origin`).
    last_prune: std::sync::atomic::AtomicU64,
}

impl Default for LocalLimiter {
    fn default() -> Self {
        Self {
            origin: Instant::now(),
            arrivals: Mutex::new(HashMap::default()),
            last_prune: std::sync::atomic::AtomicU64::new(0),
        }
    }
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

impl LocalLimiter {
    /// The decision, synchronously (the port's `acquire` is this).
    pub fn decide(&self, budgets: &[Budget]) -> RateDecision {
        if budgets.is_empty() {
            return RateDecision::Allowed { remaining: None };
        }
        let now = nanos(self.origin.elapsed());
        let mut arrivals = self.arrivals.lock().unwrap_or_else(PoisonError::into_inner);
        let mut next = Vec::with_capacity(budgets.len());
        let mut remaining = u32::MAX;
        for budget in budgets {
            let interval = nanos(budget.quota.emission_interval());
            let tolerance =
                interval.saturating_mul(u64::from(budget.quota.burst.saturating_sub(1)));
            let arrival = arrivals.get(&budget.key).copied().unwrap_or(now).max(now);
            if arrival - now > tolerance {
                return RateDecision::Limited {
                    scope: budget.scope,
                    quota: budget.quota,
                    retry_after: Duration::from_nanos(arrival - now - tolerance),
                };
            }
            let after = arrival.saturating_add(interval);
            let left = (now.saturating_add(tolerance).saturating_add(interval) - after) / interval;
            remaining = remaining.min(u32::try_from(left).unwrap_or(u32::MAX));
            next.push(after);
        }
        for (budget, after) in budgets.iter().zip(next) {
            match arrivals.get_mut(&budget.key) {
                Some(slot) => *slot = after,
                None => {
                    arrivals.insert(budget.key.clone(), after);
                }
            }
        }
        // At most once a second, so a flood of distinct keys costs one scan a second,
        // not one per decision.
        let last = self.last_prune.load(std::sync::atomic::Ordering::Relaxed);
        if arrivals.len() > PRUNE_AT && now.saturating_sub(last) > 1_000_000_000 {
            self.last_prune
                .store(now, std::sync::atomic::Ordering::Relaxed);
            arrivals.retain(|_, arrival| *arrival > now);
        }
        RateDecision::Allowed {
            remaining: Some(remaining),
        }
    }
}

#[async_trait]
impl RateLimiter for LocalLimiter {
    async fn acquire(&self, budgets: &[Budget]) -> RateDecision {
        self.decide(budgets)
    }
}

#[cfg(test)]
mod tests {
    use gateway_domain::{LimitScope, Quota};

    use super::*;

    fn budget(key: &str, rate: u32, period_secs: u32, burst: u32) -> Budget {
        Budget {
            key: key.into(),
            scope: LimitScope::Tenant,
            quota: Quota::new(rate, period_secs, burst).expect("quota"),
        }
    }

    #[test]
    fn a_burst_then_a_refusal_with_the_wait_until_the_next_token() {
        let limiter = LocalLimiter::default();
        let budgets = [budget("tenant:a", 10, 1, 5)];
        let first = Instant::now();
        for expected in (0..5).rev() {
            assert_eq!(
                limiter.decide(&budgets),
                RateDecision::Allowed {
                    remaining: Some(expected)
                }
            );
        }
        match limiter.decide(&budgets) {
            RateDecision::Limited { retry_after, .. } => {
                assert!(retry_after <= Duration::from_millis(100), "{retry_after:?}");
                // The next token is due 100 ms after the first request.
                assert!(
                    retry_after + first.elapsed() >= Duration::from_millis(100),
                    "{retry_after:?}"
                );
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        std::thread::sleep(Duration::from_millis(110));
        assert!(matches!(
            limiter.decide(&budgets),
            RateDecision::Allowed { .. }
        ));
    }

    #[test]
    fn a_refusal_charges_no_budget() {
        let limiter = LocalLimiter::default();
        let tenant = budget("tenant:a", 100, 1, 100);
        let tool = budget("tool:t", 1, 60, 1);
        let both = [tenant.clone(), tool];
        assert!(matches!(
            limiter.decide(&both),
            RateDecision::Allowed { .. }
        ));
        for _ in 0..50 {
            assert!(matches!(
                limiter.decide(&both),
                RateDecision::Limited { .. }
            ));
        }
        // The tenant paid for one request, not 51.
        assert_eq!(
            limiter.decide(&[tenant]),
            RateDecision::Allowed {
                remaining: Some(98)
            }
        );
    }

    #[test]
    fn keys_are_independent() {
        let limiter = LocalLimiter::default();
        assert!(matches!(
            limiter.decide(&[budget("tenant:a", 1, 60, 1)]),
            RateDecision::Allowed { .. }
        ));
        assert!(matches!(
            limiter.decide(&[budget("tenant:a", 1, 60, 1)]),
            RateDecision::Limited { .. }
        ));
        assert!(matches!(
            limiter.decide(&[budget("tenant:b", 1, 60, 1)]),
            RateDecision::Allowed { .. }
        ));
    }
}
