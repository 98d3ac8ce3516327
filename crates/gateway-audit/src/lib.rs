//! The audit pipeline, the adapter behind the domain's [`gateway_domain::AuditSink`]
//! port. A call hands its event to a bounded queue and goes on; one writer task takes
//! events in batches (what arrived within `flush_interval` of the first, up to
//! `batch_size` per insert; the writer sleeps meanwhile rather than wake per event) and
//! inserts each batch in one statement through the
//! [`gateway_domain::AuditRepository`], retrying while the database is down.
//!
//! Architecture invariant: an accepted event is never dropped silently. When the queue
//! is full, the caller waits up to `block_for` (or not at all) and then appends the
//! event to a JSON-lines spill file; events spilled (or recorded after shutdown began)
//! are replayed into the database at the next start and every minute. On shutdown the
//! queue is drained into the database, or into the spill file if the database cannot
//! take it in time. Only a spill file that cannot be written loses an event, and that
//! is logged as an error and counted.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use gateway_domain::{AuditEvent, AuditRepository, AuditSink};
use gateway_telemetry::Metrics;
use tokio::sync::{mpsc, watch};

/// Where the optional JSON-lines copy of every event goes (for log shippers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamTarget {
    /// Standard output.
    Stdout,
    /// Appended to a file.
    File(PathBuf),
}

/// How the pipeline behaves.
#[derive(Debug, Clone)]
pub struct AuditSettings {
    /// Events the queue holds.
    pub queue_capacity: usize,
    /// Events per insert at most.
    pub batch_size: usize,
    /// Longest wait to fill a batch.
    pub flush_interval: Duration,
    /// How long a caller waits for room in a full queue before spilling (zero: spill
    /// at once).
    pub block_for: Duration,
    /// The JSON-lines file overflow goes to.
    pub spill_file: PathBuf,
    /// A copy of every written event, as JSON lines.
    pub stream: Option<StreamTarget>,
}

/// What happened to the events of one run, for the shutdown log and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AuditReport {
    /// Events handed to the pipeline.
    pub recorded: u64,
    /// Inserted into the database (replayed ones included).
    pub written: u64,
    /// Appended to the spill file.
    pub spilled: u64,
    /// Taken back from the spill file into the database.
    pub replayed: u64,
    /// Neither written nor spilled (the spill file failed too).
    pub lost: u64,
}

#[derive(Default)]
struct Counters {
    recorded: AtomicU64,
    written: AtomicU64,
    spilled: AtomicU64,
    replayed: AtomicU64,
    lost: AtomicU64,
}

/// The spill file, appended to under a lock.
struct Spill {
    path: PathBuf,
    lock: Mutex<()>,
}

impl Spill {
    /// Appends events as JSON lines. A torn last line left by a crash is closed
    /// first, so it cannot swallow the next event. `sync` forces them to disk (batches
    /// do; single events from request handlers only reach the OS, which a crash of
    /// the process survives).
    fn append(&self, events: &[AuditEvent], sync: bool) -> std::io::Result<()> {
        let _guard = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(parent) = self.path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)?;
        }
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&self.path)?;
        let mut lines = Vec::new();
        if ends_without_newline(&mut file)? {
            lines.push(b'\n');
        }
        for event in events {
            serde_json::to_writer(&mut lines, event).map_err(std::io::Error::other)?;
            lines.push(b'\n');
        }
        file.write_all(&lines)?;
        if sync {
            file.sync_data()?;
        }
        Ok(())
    }

    /// Moves the spill file aside for replay (appends go to a new one meanwhile) and
    /// returns the file to replay, if there is one.
    fn take(&self) -> Option<PathBuf> {
        let _guard = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        let replaying = self.path.with_extension("replaying");
        if replaying.exists() {
            return Some(replaying); // a replay that failed earlier
        }
        std::fs::rename(&self.path, &replaying).ok()?;
        Some(replaying)
    }
}

/// The pipeline: [`AuditSink`] for callers, a writer task behind it.
pub struct AuditPipeline {
    sender: mpsc::Sender<AuditEvent>,
    /// Wakes the writer early once a full batch waits.
    batch_ready: Arc<tokio::sync::Notify>,
    settings: AuditSettings,
    counters: Arc<Counters>,
    spill: Arc<Spill>,
    /// `Some(timeout)` once shutdown began.
    closing: watch::Sender<Option<Duration>>,
    closed: AtomicBool,
    writer: tokio::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    metrics: Option<Arc<Metrics>>,
}

impl AuditPipeline {
    /// Starts the writer task (on the current tokio runtime).
    pub fn start(
        repository: Arc<dyn AuditRepository>,
        settings: AuditSettings,
        metrics: Option<Arc<Metrics>>,
    ) -> Arc<Self> {
        let (sender, receiver) = mpsc::channel(settings.queue_capacity.max(1));
        let (closing, closing_seen) = watch::channel(None);
        let counters = Arc::new(Counters::default());
        let spill = Arc::new(Spill {
            path: settings.spill_file.clone(),
            lock: Mutex::new(()),
        });
        let batch_ready = Arc::new(tokio::sync::Notify::new());
        let writer = Writer {
            repository,
            receiver,
            batch_ready: batch_ready.clone(),
            closing: closing_seen,
            settings: settings.clone(),
            counters: counters.clone(),
            spill: spill.clone(),
            metrics: metrics.clone(),
            shutdown_deadline: None,
            gave_up: false,
        };
        let task = tokio::spawn(writer.run());
        Arc::new(Self {
            sender,
            batch_ready,
            settings,
            counters,
            spill,
            closing,
            closed: AtomicBool::new(false),
            writer: tokio::sync::Mutex::new(Some(task)),
            metrics,
        })
    }

    fn count(&self, result: &str, counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
        if let Some(metrics) = &self.metrics {
            metrics.audit_events.with_label_values(&[result]).inc_by(n);
        }
    }

    fn spill_one(&self, event: AuditEvent) {
        match self.spill.append(std::slice::from_ref(&event), false) {
            Ok(()) => self.count("spilled", &self.counters.spilled, 1),
            Err(error) => {
                tracing::error!(%error, file = %self.settings.spill_file.display(), action = %event.action, "audit event LOST: the queue is full and the spill file cannot be written");
                self.count("lost", &self.counters.lost, 1);
            }
        }
    }

    /// Stops taking events into the queue, writes what it holds (spilling what the
    /// database cannot take within `timeout`) and reports what became of this run's
    /// events. Events recorded afterwards go to the spill file.
    pub async fn shutdown(&self, timeout: Duration) -> AuditReport {
        self.closed.store(true, Ordering::SeqCst);
        let _ = self.closing.send_replace(Some(timeout));
        if let Some(task) = self.writer.lock().await.take() {
            // The writer's own deadline bounds this: past it, everything left is
            // spilled, not inserted.
            if let Err(error) = task.await {
                tracing::error!(%error, "the audit writer failed during shutdown");
            }
        }
        let report = self.report();
        tracing::info!(
            recorded = report.recorded,
            written = report.written,
            spilled = report.spilled,
            replayed = report.replayed,
            lost = report.lost,
            "audit log flushed"
        );
        report
    }

    /// What became of the events so far.
    pub fn report(&self) -> AuditReport {
        let load = |c: &AtomicU64| c.load(Ordering::SeqCst);
        AuditReport {
            recorded: load(&self.counters.recorded),
            written: load(&self.counters.written),
            spilled: load(&self.counters.spilled),
            replayed: load(&self.counters.replayed),
            lost: load(&self.counters.lost),
        }
    }
}

impl AuditPipeline {
    /// The writer sleeps while a batch gathers; a full batch (or a full queue) need
    /// not wait for the flush interval. Only then is it woken.
    fn wake_for_full_batch(&self) {
        let queued = self.sender.max_capacity() - self.sender.capacity();
        // Half the queue at most, so producers do not wait on a full one.
        let threshold = self
            .settings
            .batch_size
            .min(self.sender.max_capacity() / 2)
            .max(1);
        if queued >= threshold {
            self.batch_ready.notify_one();
        }
    }
}

#[async_trait]
impl AuditSink for AuditPipeline {
    fn record_now(&self, event: AuditEvent) {
        self.counters.recorded.fetch_add(1, Ordering::Relaxed);
        if self.closed.load(Ordering::SeqCst) {
            return self.spill_one(event);
        }
        let sent = self.sender.try_send(event);
        self.wake_for_full_batch();
        if let Err(
            mpsc::error::TrySendError::Full(event) | mpsc::error::TrySendError::Closed(event),
        ) = sent
        {
            self.spill_one(event);
        }
    }

    async fn record(&self, event: AuditEvent) {
        self.counters.recorded.fetch_add(1, Ordering::Relaxed);
        if self.closed.load(Ordering::SeqCst) {
            return self.spill_one(event);
        }
        let sent = self.sender.try_send(event);
        self.wake_for_full_batch();
        let event = match sent {
            Ok(()) => return,
            Err(mpsc::error::TrySendError::Full(event)) => event,
            Err(mpsc::error::TrySendError::Closed(event)) => return self.spill_one(event),
        };
        if !self.settings.block_for.is_zero() {
            match self
                .sender
                .send_timeout(event, self.settings.block_for)
                .await
            {
                Ok(()) => return,
                Err(
                    mpsc::error::SendTimeoutError::Timeout(event)
                    | mpsc::error::SendTimeoutError::Closed(event),
                ) => return self.spill_one(event),
            }
        }
        self.spill_one(event);
    }
}

/// How often spilled events are offered to the database again.
const REPLAY_INTERVAL: Duration = Duration::from_secs(60);
/// Longest pause between insert attempts while the database is down.
const MAX_RETRY_WAIT: Duration = Duration::from_secs(5);

/// What woke the writer.
enum Next {
    Event(Option<Box<AuditEvent>>),
    Closing,
    Replay,
}

struct Writer {
    repository: Arc<dyn AuditRepository>,
    receiver: mpsc::Receiver<AuditEvent>,
    batch_ready: Arc<tokio::sync::Notify>,
    closing: watch::Receiver<Option<Duration>>,
    settings: AuditSettings,
    counters: Arc<Counters>,
    spill: Arc<Spill>,
    metrics: Option<Arc<Metrics>>,
    /// Past this, during shutdown, nothing more is offered to the database.
    shutdown_deadline: Option<tokio::time::Instant>,
    /// The database failed during shutdown: the rest goes to the spill file.
    gave_up: bool,
}

/// Longest wait for one insert while running (a hung database must not hold the
/// writer forever; the batch is retried).
const INSERT_TIMEOUT: Duration = Duration::from_secs(30);

impl Writer {
    /// One insert, bounded by [`INSERT_TIMEOUT`] and, once shutdown began, by its
    /// deadline.
    async fn insert(&mut self, batch: &[AuditEvent]) -> Result<(), String> {
        let insert = self.repository.insert_events(batch);
        tokio::pin!(insert);
        if self.closing.borrow().is_none() {
            tokio::select! {
                result = &mut insert => return result.map_err(|e| e.to_string()),
                _ = self.closing.wait_for(Option::is_some) => {}
                _ = tokio::time::sleep(INSERT_TIMEOUT) => {
                    return Err(format!("no answer within {} s", INSERT_TIMEOUT.as_secs()));
                }
            }
        }
        let timeout = (*self.closing.borrow()).unwrap_or(Duration::ZERO);
        let deadline = *self
            .shutdown_deadline
            .get_or_insert_with(|| tokio::time::Instant::now() + timeout);
        match tokio::time::timeout_at(deadline, &mut insert).await {
            Ok(result) => result.map_err(|e| e.to_string()),
            Err(_) => Err("no answer before the shutdown deadline".into()),
        }
    }

    async fn run(mut self) {
        self.replay().await;
        let mut replay_due = tokio::time::Instant::now() + REPLAY_INTERVAL;
        loop {
            let next = tokio::select! {
                event = self.receiver.recv() => Next::Event(event.map(Box::new)),
                _ = self.closing.wait_for(Option::is_some) => Next::Closing,
                _ = tokio::time::sleep_until(replay_due) => Next::Replay,
            };
            let first = match next {
                Next::Replay => {
                    self.replay().await;
                    replay_due = tokio::time::Instant::now() + REPLAY_INTERVAL;
                    continue;
                }
                Next::Event(Some(event)) => *event,
                Next::Event(None) | Next::Closing => break,
            };
            // The batch gathers while the writer sleeps: waiting on the queue would
            // wake this task (on another thread than the request's) once per event.
            let deadline = tokio::time::Instant::now() + self.settings.flush_interval;
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => {}
                _ = self.batch_ready.notified() => {}
                _ = self.closing.wait_for(Option::is_some) => {}
            }
            let mut batch = vec![first];
            loop {
                while batch.len() < self.settings.batch_size {
                    match self.receiver.try_recv() {
                        Ok(event) => batch.push(event),
                        Err(_) => break,
                    }
                }
                let full = batch.len() >= self.settings.batch_size;
                self.write(std::mem::take(&mut batch)).await;
                if !full {
                    break;
                }
            }
        }
        // Shutting down: nothing more enters the queue; write what it holds.
        self.receiver.close();
        let mut batch = Vec::new();
        while let Some(event) = self.receiver.recv().await {
            batch.push(event);
            if batch.len() >= self.settings.batch_size {
                self.write(std::mem::take(&mut batch)).await;
            }
        }
        if !batch.is_empty() {
            self.write(batch).await;
        }
    }

    fn count(&self, result: &str, counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
        if let Some(metrics) = &self.metrics {
            metrics.audit_events.with_label_values(&[result]).inc_by(n);
        }
    }

    /// Inserts a batch, retrying while the database is down; once shutting down, a
    /// batch the database refuses goes to the spill file instead.
    async fn write(&mut self, batch: Vec<AuditEvent>) {
        if let Some(metrics) = &self.metrics {
            let depth = i64::try_from(self.receiver.len()).unwrap_or(i64::MAX);
            metrics
                .audit_queue_depth
                .with_label_values(&[] as &[&str])
                .set(depth);
        }
        self.stream(&batch);
        let mut wait = Duration::from_millis(100);
        while !self.gave_up {
            match self.insert(&batch).await {
                Ok(()) => {
                    self.count("written", &self.counters.written, batch.len() as u64);
                    return;
                }
                Err(error) if self.closing.borrow().is_some() => {
                    tracing::warn!(%error, events = batch.len(), "audit events go to the spill file: the database did not take them during shutdown");
                    self.gave_up = true;
                }
                Err(error) => {
                    tracing::warn!(%error, events = batch.len(), retry_in_ms = wait.as_millis() as u64, "cannot write audit events; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = self.closing.wait_for(Option::is_some) => {}
                    }
                    wait = (wait * 2).min(MAX_RETRY_WAIT);
                }
            }
        }
        match self.spill.append(&batch, true) {
            Ok(()) => self.count("spilled", &self.counters.spilled, batch.len() as u64),
            Err(error) => {
                tracing::error!(%error, events = batch.len(), file = %self.spill.path.display(), "audit events LOST: neither the database nor the spill file took them");
                self.count("lost", &self.counters.lost, batch.len() as u64);
            }
        }
    }

    fn stream(&self, batch: &[AuditEvent]) {
        let Some(target) = &self.settings.stream else {
            return;
        };
        let mut lines = Vec::new();
        for event in batch {
            if serde_json::to_writer(&mut lines, event).is_ok() {
                lines.push(b'\n');
            }
        }
        let written = match target {
            StreamTarget::Stdout => std::io::stdout().lock().write_all(&lines),
            StreamTarget::File(path) => OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .and_then(|mut file| file.write_all(&lines)),
        };
        if let Err(error) = written {
            tracing::warn!(%error, "cannot write the audit stream");
        }
    }

    /// Offers spilled events to the database; the file is removed once they are in.
    async fn replay(&mut self) {
        let Some(path) = self.spill.take() else {
            return;
        };
        let (events, unreadable) = match read_events(&path) {
            Ok(read) => read,
            Err(error) => {
                // Moved aside, so later spills are still replayed.
                let aside = path.with_extension(format!(
                    "unreadable-{}",
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_secs())
                        .unwrap_or_default()
                ));
                let _ = std::fs::rename(&path, &aside);
                tracing::error!(%error, file = %aside.display(), "cannot read the audit spill file; it was moved aside");
                return;
            }
        };
        if unreadable > 0 {
            self.count("lost", &self.counters.lost, unreadable);
        }
        for chunk in events.chunks(self.settings.batch_size.max(1)) {
            if let Err(error) = self.repository.insert_events(chunk).await {
                tracing::warn!(%error, file = %path.display(), "cannot replay spilled audit events yet");
                return;
            }
        }
        let _ = std::fs::remove_file(&path);
        if !events.is_empty() {
            tracing::info!(
                events = events.len(),
                "spilled audit events written to the database"
            );
            self.count("replayed", &self.counters.replayed, events.len() as u64);
            self.count("written", &self.counters.written, events.len() as u64);
        }
    }
}

/// Whether `file` has content whose last byte is not a newline (a torn line).
fn ends_without_newline(file: &mut std::fs::File) -> std::io::Result<bool> {
    use std::io::{Read, Seek, SeekFrom};
    if file.metadata()?.len() == 0 {
        return Ok(false);
    }
    file.seek(SeekFrom::End(-1))?;
    let mut last = [0u8; 1];
    file.read_exact(&mut last)?;
    Ok(last[0] != b'\n')
}

/// The events of a spill file, and how many of its lines could not be read (a torn
/// line from a crash mid-write; bytes that are not UTF-8 spoil only their own line).
fn read_events(path: &Path) -> std::io::Result<(Vec<AuditEvent>, u64)> {
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut std::fs::File::open(path)?, &mut bytes)?;
    let mut events = Vec::new();
    let mut unreadable = 0;
    for line in bytes.split(|b| *b == b'\n') {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice::<AuditEvent>(line) {
            Ok(event) => events.push(event),
            Err(error) => {
                unreadable += 1;
                tracing::error!(%error, file = %path.display(), "an unreadable line of the audit spill file is LOST");
            }
        }
    }
    Ok((events, unreadable))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;

    use chrono::{DateTime, Utc};
    use gateway_domain::{AuditFilter, AuditOutcome, RepositoryError};
    use uuid::Uuid;

    use super::*;

    /// A store that keeps events in memory, or refuses them while `down` (the
    /// database being unreachable, which SQLite cannot be made to be).
    #[derive(Default)]
    struct Store {
        events: Mutex<Vec<AuditEvent>>,
        down: AtomicBool,
        /// Inserts never answer (a database that hangs instead of failing).
        hangs: AtomicBool,
    }

    #[async_trait]
    impl AuditRepository for Store {
        async fn insert_events(&self, events: &[AuditEvent]) -> Result<(), RepositoryError> {
            if self.hangs.load(Ordering::SeqCst) {
                std::future::pending::<()>().await;
            }
            if self.down.load(Ordering::SeqCst) {
                return Err(RepositoryError::Unavailable("down".into()));
            }
            self.events
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .extend_from_slice(events);
            Ok(())
        }

        async fn query_events(
            &self,
            _: &AuditFilter,
            _: Option<(DateTime<Utc>, Uuid)>,
            _: u64,
        ) -> Result<Vec<AuditEvent>, RepositoryError> {
            Ok(Vec::new())
        }

        async fn delete_events_before(
            &self,
            _: DateTime<Utc>,
            _: u64,
        ) -> Result<u64, RepositoryError> {
            Ok(0)
        }
    }

    fn event(n: usize) -> AuditEvent {
        AuditEvent {
            id: Uuid::now_v7(),
            at: Utc::now(),
            request_id: None,
            session_id: None,
            subject: Some(format!("user-{n}")),
            tenant: None,
            roles: Vec::new(),
            client_address: None,
            action: "tools/call".into(),
            server: None,
            target: None,
            outcome: AuditOutcome::Ok,
            error_code: None,
            latency_us: 1,
            arguments_hash: None,
            arguments: None,
        }
    }

    fn settings(dir: &Path) -> AuditSettings {
        AuditSettings {
            queue_capacity: 100,
            batch_size: 10,
            flush_interval: Duration::from_millis(10),
            block_for: Duration::from_millis(10),
            spill_file: dir.join("spill.jsonl"),
            stream: Some(StreamTarget::File(dir.join("stream.jsonl"))),
        }
    }

    #[tokio::test]
    async fn every_event_is_written_and_streamed() {
        let dir = tempfile::tempdir().expect("dir");
        let store = Arc::new(Store::default());
        let pipeline = AuditPipeline::start(store.clone(), settings(dir.path()), None);
        for n in 0..250 {
            pipeline.record(event(n)).await;
        }
        let report = pipeline.shutdown(Duration::from_secs(5)).await;
        assert_eq!(
            (report.recorded, report.written, report.spilled),
            (250, 250, 0)
        );
        assert_eq!(store.events.lock().expect("lock").len(), 250);
        let streamed = std::fs::read_to_string(dir.path().join("stream.jsonl")).expect("stream");
        assert_eq!(streamed.lines().count(), 250);
    }

    #[tokio::test]
    async fn a_database_that_stays_down_loses_nothing_and_gets_it_all_later() {
        let dir = tempfile::tempdir().expect("dir");
        let store = Arc::new(Store::default());
        store.down.store(true, Ordering::SeqCst);
        let pipeline = AuditPipeline::start(store.clone(), settings(dir.path()), None);
        for n in 0..300 {
            pipeline.record(event(n)).await;
        }
        let report = pipeline.shutdown(Duration::from_secs(5)).await;
        assert_eq!(report.recorded, 300);
        assert_eq!(report.spilled, 300, "{report:?}");
        assert_eq!(report.lost, 0);
        // After shutdown began, an event still goes to the file.
        pipeline.record(event(300)).await;
        assert_eq!(pipeline.report().spilled, 301);

        // The next run, with the database back, replays the file and removes it.
        store.down.store(false, Ordering::SeqCst);
        let next = AuditPipeline::start(store.clone(), settings(dir.path()), None);
        let report = next.shutdown(Duration::from_secs(5)).await;
        assert_eq!(report.replayed, 301);
        let subjects: std::collections::HashSet<String> = store
            .events
            .lock()
            .expect("lock")
            .iter()
            .filter_map(|e| e.subject.clone())
            .collect();
        assert_eq!(subjects.len(), 301);
        assert!(!dir.path().join("spill.jsonl").exists());
    }

    #[tokio::test]
    async fn a_database_that_hangs_at_shutdown_gets_nothing_and_loses_nothing() {
        let dir = tempfile::tempdir().expect("dir");
        let store = Arc::new(Store::default());
        store.hangs.store(true, Ordering::SeqCst);
        let pipeline = AuditPipeline::start(store.clone(), settings(dir.path()), None);
        for n in 0..120 {
            pipeline.record(event(n)).await;
        }
        let started = std::time::Instant::now();
        let report = pipeline.shutdown(Duration::from_millis(300)).await;
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(
            (report.recorded, report.spilled, report.lost),
            (120, 120, 0),
            "{report:?}"
        );
        let spilled = std::fs::read_to_string(dir.path().join("spill.jsonl")).expect("spill");
        assert_eq!(spilled.lines().count(), 120);
    }

    #[tokio::test]
    async fn a_torn_spill_line_costs_only_itself() {
        let dir = tempfile::tempdir().expect("dir");
        let settings = settings(dir.path());
        let mut torn = serde_json::to_vec(&event(0)).expect("json");
        torn.truncate(torn.len() / 2);
        torn.extend_from_slice(&[0xff, 0xfe]); // not even UTF-8
        std::fs::write(&settings.spill_file, &torn).expect("write");
        let spill = Spill {
            path: settings.spill_file.clone(),
            lock: Mutex::new(()),
        };
        spill.append(&[event(1), event(2)], true).expect("append");
        let store = Arc::new(Store::default());
        let pipeline = AuditPipeline::start(store.clone(), settings, None);
        let report = pipeline.shutdown(Duration::from_secs(5)).await;
        assert_eq!((report.replayed, report.lost), (2, 1), "{report:?}");
        assert_eq!(store.events.lock().expect("lock").len(), 2);
    }
}
