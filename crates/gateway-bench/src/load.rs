//! Closed-loop load: each worker owns one MCP session and sends `tools/call` back to
//! back until the deadline, recording every latency in an HDR histogram.

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::client::Session;

/// What one run measured.
pub struct LoadResult {
    /// Successful calls.
    pub calls: u64,
    /// Failed calls (or sessions that could not open).
    pub errors: u64,
    /// The first error, to tell what went wrong.
    pub first_error: Option<String>,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// Latencies of successful calls, in microseconds.
    pub latency_us: Histogram<u64>,
}

impl LoadResult {
    /// Nothing measured yet.
    pub fn empty() -> Self {
        Self {
            calls: 0,
            errors: 0,
            first_error: None,
            elapsed: Duration::ZERO,
            // 1 µs to 60 s at 3 significant digits: constant, valid bounds.
            latency_us: Histogram::new_with_bounds(1, 60_000_000, 3)
                .expect("valid histogram bounds"),
        }
    }

    /// Records one request's outcome and latency.
    pub fn record(&mut self, outcome: anyhow::Result<()>, latency: Duration) {
        match outcome {
            Ok(()) => {
                self.calls += 1;
                let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
                let _ = self.latency_us.record(micros.max(1));
            }
            Err(error) => {
                self.errors += 1;
                self.first_error.get_or_insert_with(|| format!("{error:#}"));
            }
        }
    }

    /// Adds another run's numbers (the same configuration, measured again).
    pub fn merge(&mut self, other: LoadResult) {
        self.calls += other.calls;
        self.errors += other.errors;
        self.first_error = self.first_error.take().or(other.first_error);
        self.elapsed += other.elapsed;
        let _ = self.latency_us.add(&other.latency_us);
    }

    /// Successful calls per second.
    pub fn throughput(&self) -> f64 {
        self.calls as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// A latency percentile in milliseconds.
    pub fn percentile_ms(&self, quantile: f64) -> f64 {
        self.latency_us.value_at_quantile(quantile) as f64 / 1000.0
    }

    /// The slowest call, in milliseconds.
    pub fn max_ms(&self) -> f64 {
        self.latency_us.max() as f64 / 1000.0
    }
}

/// Runs `concurrency` sessions against `url` for `duration`.
pub async fn run(
    http: &reqwest::Client,
    url: &str,
    tool: &str,
    concurrency: usize,
    duration: Duration,
) -> LoadResult {
    let started = Instant::now();
    let deadline = started + duration;
    let workers = (0..concurrency).map(|worker| {
        let (http, url, tool) = (http.clone(), url.to_owned(), tool.to_owned());
        tokio::spawn(async move {
            let mut result = LoadResult::empty();
            let mut session = match Session::open(&http, &url).await {
                Ok(session) => session,
                Err(error) => {
                    result.errors += 1;
                    result.first_error = Some(format!("{error:#}"));
                    return result;
                }
            };
            let text = format!("w{worker}");
            while Instant::now() < deadline {
                let call_started = Instant::now();
                let outcome = session.echo(&tool, &text).await;
                result.record(outcome, call_started.elapsed());
            }
            session.close().await;
            result
        })
    });
    let mut total = LoadResult::empty();
    for worker in futures_util::future::join_all(workers).await {
        match worker {
            Ok(result) => total.merge(result),
            Err(error) => {
                total.errors += 1;
                total.first_error.get_or_insert_with(|| error.to_string());
            }
        }
    }
    total.elapsed = started.elapsed();
    total
}

/// Latency of repeated single requests (`f` performs one), for request kinds that are
/// not `tools/call`.
pub async fn sample<F, Fut>(count: usize, mut f: F) -> LoadResult
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let mut result = LoadResult::empty();
    let started = Instant::now();
    for _ in 0..count {
        let call_started = Instant::now();
        let outcome = f().await;
        result.record(outcome, call_started.elapsed());
    }
    result.elapsed = started.elapsed();
    result
}
