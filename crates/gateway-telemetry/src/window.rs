//! Per-server call counts, error rate and latency percentiles over a sliding
//! window: five one-minute slots of HDR histograms, so the window is the last four
//! to five minutes and old slots are reused, never reallocated.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

/// Slots in the window.
const SLOTS: usize = 5;
/// The span of one slot.
const SLOT: Duration = Duration::from_secs(60);
/// Highest latency tracked, in microseconds (10 minutes); slower calls are clamped.
const MAX_MICROS: u64 = 600_000_000;

/// One minute of one server's calls.
struct Slot {
    /// Which minute (since the stats began) it holds.
    minute: u64,
    calls: u64,
    errors: u64,
    latency: Histogram<u32>,
}

impl Slot {
    fn new() -> Option<Self> {
        Some(Self {
            minute: u64::MAX,
            calls: 0,
            errors: 0,
            // Two significant digits: percentiles within 1 %, about 12 KB per slot.
            latency: Histogram::new_with_bounds(1, MAX_MICROS, 2).ok()?,
        })
    }
}

/// One server's window.
struct ServerWindow {
    slots: Vec<Slot>,
}

/// Sliding-window call statistics of every server that received calls.
pub struct CallStats {
    started: Instant,
    servers: Mutex<HashMap<String, ServerWindow>>,
}

impl Default for CallStats {
    fn default() -> Self {
        Self {
            started: Instant::now(),
            servers: Mutex::new(HashMap::new()),
        }
    }
}

/// One server's statistics over the window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServerSummary {
    /// The server.
    pub server: String,
    /// Calls that ended in the window.
    pub calls: u64,
    /// Those that failed (gateway or transport errors; a tool's own error result counts
    /// as answered).
    pub errors: u64,
    /// `errors / calls`, 0 without calls.
    pub error_rate: f64,
    /// Latency percentiles in milliseconds.
    pub p50_ms: f64,
    /// 95th percentile.
    pub p95_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// The window, in seconds.
    pub window_secs: u64,
}

impl CallStats {
    /// The longest span a summary covers.
    pub const WINDOW: Duration = Duration::from_secs(SLOT.as_secs() * SLOTS as u64);

    fn minute(&self, now: Instant) -> u64 {
        now.duration_since(self.started).as_secs() / SLOT.as_secs()
    }

    /// Records one call of `server`.
    pub fn record(&self, server: &str, ok: bool, latency: Duration) {
        self.record_at(server, ok, latency, Instant::now());
    }

    fn record_at(&self, server: &str, ok: bool, latency: Duration, now: Instant) {
        let minute = self.minute(now);
        let mut servers = self.servers.lock().unwrap_or_else(PoisonError::into_inner);
        if !servers.contains_key(server) {
            let slots: Option<Vec<Slot>> = (0..SLOTS).map(|_| Slot::new()).collect();
            let Some(slots) = slots else { return };
            servers.insert(server.to_owned(), ServerWindow { slots });
        }
        let Some(window) = servers.get_mut(server) else {
            return;
        };
        let slot = &mut window.slots[(minute % SLOTS as u64) as usize];
        if slot.minute != minute {
            slot.minute = minute;
            slot.calls = 0;
            slot.errors = 0;
            slot.latency.reset();
        }
        slot.calls += 1;
        if !ok {
            slot.errors += 1;
        }
        let micros = u64::try_from(latency.as_micros()).unwrap_or(MAX_MICROS);
        slot.latency.saturating_record(micros.clamp(1, MAX_MICROS));
    }

    /// Every server's statistics over the window, by name.
    pub fn summary(&self) -> Vec<ServerSummary> {
        self.summary_at(Instant::now())
    }

    fn summary_at(&self, now: Instant) -> Vec<ServerSummary> {
        let current = self.minute(now);
        let servers = self.servers.lock().unwrap_or_else(PoisonError::into_inner);
        let mut summaries: Vec<ServerSummary> = servers
            .iter()
            .filter_map(|(server, window)| {
                let live = window
                    .slots
                    .iter()
                    .filter(|s| s.minute <= current && current - s.minute < SLOTS as u64);
                let mut merged = Slot::new()?;
                for slot in live {
                    merged.calls += slot.calls;
                    merged.errors += slot.errors;
                    merged.latency.add(&slot.latency).ok()?;
                }
                let percentile = |q: f64| merged.latency.value_at_quantile(q) as f64 / 1000.0;
                Some(ServerSummary {
                    server: server.clone(),
                    calls: merged.calls,
                    errors: merged.errors,
                    error_rate: if merged.calls == 0 {
                        0.0
                    } else {
                        merged.errors as f64 / merged.calls as f64
                    },
                    p50_ms: percentile(0.50),
                    p95_ms: percentile(0.95),
                    p99_ms: percentile(0.99),
                    window_secs: SLOT.as_secs() * SLOTS as u64,
                })
            })
            .collect();
        summaries.sort_by(|a, b| a.server.cmp(&b.server));
        summaries
    }

    /// Forgets a server (removed from the registry).
    pub fn forget(&self, server: &str) {
        self.servers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(server);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_errors_and_percentiles() {
        let stats = CallStats::default();
        for ms in 1..=100 {
            stats.record("alpha", ms % 10 != 0, Duration::from_millis(ms));
        }
        let summary = stats.summary();
        assert_eq!(summary.len(), 1);
        let alpha = &summary[0];
        assert_eq!((alpha.calls, alpha.errors), (100, 10));
        assert!((alpha.error_rate - 0.1).abs() < 1e-9);
        assert!((49.0..=51.0).contains(&alpha.p50_ms), "{alpha:?}");
        assert!((94.0..=96.0).contains(&alpha.p95_ms), "{alpha:?}");
        assert!((98.0..=100.5).contains(&alpha.p99_ms), "{alpha:?}");
    }

    #[test]
    fn old_minutes_leave_the_window() {
        let stats = CallStats::default();
        let start = stats.started;
        stats.record_at("alpha", false, Duration::from_millis(5), start);
        let later = start + Duration::from_secs(60 * 3);
        stats.record_at("alpha", true, Duration::from_millis(5), later);
        assert_eq!(stats.summary_at(later)[0].calls, 2);
        let much_later = start + Duration::from_secs(60 * 5);
        let summary = stats.summary_at(much_later);
        assert_eq!((summary[0].calls, summary[0].errors), (1, 0));
        // The slot of minute 0 is reused for minute 5.
        stats.record_at("alpha", true, Duration::from_millis(5), much_later);
        assert_eq!(stats.summary_at(much_later)[0].calls, 2);
        stats.forget("alpha");
        assert!(stats.summary().is_empty());
    }
}
