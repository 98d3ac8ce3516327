//! The link between the replicas of one gateway, over Redis: the domain's
//! [`ClusterBus`].
//!
//! - **Events** go out on one pub/sub channel, `<prefix>:events`, as JSON
//!   `{"from": <replica>, "event": …}`; each replica ignores its own. Pub/sub is at
//!   most once: a replica whose subscription broke re-subscribes with backoff and is
//!   told to reload everything ([`ClusterListener::resynced`]), so a gap costs a reload,
//!   never a stale replica.
//! - **Ended sessions** are also kept in a sorted set, `<prefix>:sessions:ended`
//!   (score: when the sealed id expires anyway), so a replica that starts later still
//!   refuses them.
//! - **Leases** on periodic work are `SET <prefix>:lease:<key> <replica> NX PX <ttl>`:
//!   the first replica to claim a health check or a discovery round does it for all.
//!
//! Publishing never waits: events queue (bounded) for one task that sends them.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use deadpool_redis::redis::aio::MultiplexedConnection;
use deadpool_redis::redis::{self, AsyncCommands};
use futures_util::StreamExt;
use gateway_domain::{ClusterBus, ClusterEvent, ClusterListener};
use gateway_telemetry::Metrics;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

/// Events waiting to be published; more are dropped (and counted).
const QUEUE: usize = 10_000;

/// Bytes of events waiting to be published; more are dropped (and counted).
const QUEUE_BYTES: usize = 64 << 20;

/// Attempts at publishing one event before it is dropped.
const PUBLISH_ATTEMPTS: u32 = 3;

/// Largest event accepted from the channel.
const MAX_EVENT_BYTES: usize = 1 << 20;

/// Longest wait between two attempts to re-subscribe.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// How long a replica that cannot reach Redis at start stays unready before it
/// serves anyway (alone, until the link comes).
const READY_GRACE: Duration = Duration::from_secs(10);

/// How to reach Redis.
#[derive(Clone)]
pub struct RedisClusterSettings {
    /// `redis://host:port/db` (never logged: it may hold a password).
    pub url: String,
    /// Prefix of the channel and of every key.
    pub key_prefix: String,
    /// This replica's id.
    pub replica: String,
    /// Longest wait for one Redis command (a lease, a publish).
    pub timeout: Duration,
}

impl std::fmt::Debug for RedisClusterSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisClusterSettings")
            .field("key_prefix", &self.key_prefix)
            .field("replica", &self.replica)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// What travels on the channel.
#[derive(Serialize, Deserialize)]
struct Envelope {
    from: String,
    event: ClusterEvent,
}

fn kind(event: &ClusterEvent) -> &'static str {
    match event {
        ClusterEvent::Registry { .. } => "registry",
        ClusterEvent::HealthChecked { .. } => "health_checked",
        ClusterEvent::ServerDrained { .. } => "server_drained",
        ClusterEvent::Drains { .. } => "drains",
        ClusterEvent::SessionEnded { .. } => "session_ended",
        ClusterEvent::ClientReply { .. } => "client_reply",
        ClusterEvent::SigningKeysWithdrawn => "signing_keys_withdrawn",
    }
}

/// [`ClusterBus`] over Redis.
pub struct RedisCluster {
    client: redis::Client,
    settings: RedisClusterSettings,
    /// One multiplexed connection for leases and reads; dropped after an error.
    connection: Mutex<Option<MultiplexedConnection>>,
    outbox: mpsc::Sender<String>,
    metrics: Option<Arc<Metrics>>,
    /// Set once the first subscription is up.
    subscribed: std::sync::atomic::AtomicBool,
    /// Bytes waiting in `outbox`.
    queued: std::sync::atomic::AtomicUsize,
    started: std::time::Instant,
}

impl std::fmt::Debug for RedisCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCluster")
            .field("replica", &self.settings.replica)
            .field("key_prefix", &self.settings.key_prefix)
            .finish_non_exhaustive()
    }
}

impl RedisCluster {
    /// A link over the Redis at `settings.url`, publishing from a background task.
    /// No connection is made yet: a Redis that is down at start-up is retried, not
    /// fatal. Call [`RedisCluster::subscribe`] to hear the other replicas.
    pub fn new(
        settings: RedisClusterSettings,
        metrics: Option<Arc<Metrics>>,
    ) -> Result<Arc<Self>, String> {
        let client = redis::Client::open(settings.url.as_str())
            .map_err(|e| format!("invalid cluster.redis_url: {e}"))?;
        let (outbox, queue) = mpsc::channel(QUEUE);
        let cluster = Arc::new(Self {
            client,
            settings,
            connection: Mutex::new(None),
            outbox,
            metrics,
            subscribed: std::sync::atomic::AtomicBool::new(false),
            queued: std::sync::atomic::AtomicUsize::new(0),
            started: std::time::Instant::now(),
        });
        tokio::spawn(publisher(Arc::downgrade(&cluster), queue));
        Ok(cluster)
    }

    fn channel(&self) -> String {
        format!("{}:events", self.settings.key_prefix)
    }

    fn ended_key(&self) -> String {
        format!("{}:sessions:ended", self.settings.key_prefix)
    }

    fn drains_key(&self) -> String {
        format!("{}:drains", self.settings.key_prefix)
    }

    /// The servers drained through any replica.
    async fn drained(&self) -> Result<Vec<gateway_domain::ServerId>, String> {
        let key = self.drains_key();
        let ids: Vec<String> = self.run(|mut c| async move { c.hkeys(&key).await }).await?;
        Ok(ids
            .iter()
            .filter_map(|id| serde_json::from_value(serde_json::Value::String(id.clone())).ok())
            .collect())
    }

    /// Runs `command` in the background on the shared connection (or a new one):
    /// state kept in Redis beside an event, for replicas not listening now.
    fn keep(&self, what: &'static str, command: redis::Cmd) {
        let connection = self
            .connection
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let client = self.client.clone();
        let timeout = self.settings.timeout;
        tokio::spawn(async move {
            let stored = tokio::time::timeout(timeout, async {
                let mut connection = match connection {
                    Some(c) => c,
                    None => client.get_multiplexed_async_connection().await?,
                };
                command.query_async::<redis::Value>(&mut connection).await
            })
            .await;
            if !matches!(stored, Ok(Ok(_))) {
                tracing::warn!(what, "cannot record shared state in Redis");
            }
        });
    }

    fn count(&self, direction: &str, kind: &str) {
        if let Some(metrics) = &self.metrics {
            metrics
                .cluster_events
                .with_label_values(&[direction, kind])
                .inc();
        }
    }

    fn link_up(&self, up: bool) {
        if let Some(metrics) = &self.metrics {
            metrics
                .cluster_link_up
                .with_label_values(&["redis"])
                .set(i64::from(up));
        }
    }

    /// The shared connection, made if there is none.
    async fn connection(&self) -> Result<MultiplexedConnection, String> {
        if let Some(connection) = self
            .connection
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
        {
            return Ok(connection);
        }
        let connection = tokio::time::timeout(
            self.settings.timeout,
            self.client.get_multiplexed_async_connection(),
        )
        .await
        .map_err(|_| "timed out connecting to Redis".to_owned())?
        .map_err(|e| e.to_string())?;
        *self
            .connection
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(connection.clone());
        Ok(connection)
    }

    /// Runs `command` on the shared connection within the timeout; an error drops
    /// the connection so the next command makes a new one.
    async fn run<T, F, Fut>(&self, command: F) -> Result<T, String>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let connection = self.connection().await?;
        let outcome = tokio::time::timeout(self.settings.timeout, command(connection))
            .await
            .map_err(|_| "Redis did not answer in time".to_owned())
            .and_then(|r| r.map_err(|e| e.to_string()));
        if outcome.is_err() {
            *self
                .connection
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = None;
        }
        outcome
    }

    /// Sessions ended through any replica whose sealed ids have not expired yet:
    /// `(session, until)`.
    async fn ended(&self) -> Result<Vec<(String, i64)>, String> {
        let key = self.ended_key();
        let now = unix_now();
        self.run(|mut c| async move {
            let _: i64 = c.zrembyscore(&key, "-inf", now).await?;
            c.zrangebyscore_withscores(&key, now, "+inf").await
        })
        .await
    }

    /// Listens to the other replicas until the process stops: each event goes to
    /// `listener`; after a broken subscription, the listener is told to resync once
    /// it is back.
    pub fn subscribe(self: &Arc<Self>, listener: Arc<dyn ClusterListener>) {
        let cluster = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(100);
            let mut first = true;
            loop {
                let Some(this) = cluster.upgrade() else {
                    break;
                };
                match this.listen(&listener, first).await {
                    Ok(()) => {
                        tracing::warn!("the link to the other replicas closed; re-subscribing")
                    }
                    Err(error) => {
                        tracing::warn!(%error, "the link to the other replicas failed; re-subscribing")
                    }
                }
                this.link_up(false);
                first = false;
                drop(this);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        });
    }

    /// One subscription, until it breaks.
    async fn listen(&self, listener: &Arc<dyn ClusterListener>, first: bool) -> Result<(), String> {
        let mut pubsub = tokio::time::timeout(self.settings.timeout * 10, async {
            let mut pubsub = self.client.get_async_pubsub().await?;
            pubsub.subscribe(self.channel()).await?;
            Ok::<_, redis::RedisError>(pubsub)
        })
        .await
        .map_err(|_| "timed out subscribing".to_owned())?
        .map_err(|e| e.to_string())?;
        self.link_up(true);
        tracing::info!(replica = %self.settings.replica, first, "subscribed to the other replicas' changes");
        // What was published before this subscription (or during a gap) is not
        // heard: catch up with the database, and with the sessions ended meanwhile.
        listener.resynced();
        match self.ended().await {
            Ok(ended) => {
                for (session, until) in ended {
                    listener.received(ClusterEvent::SessionEnded { session, until });
                }
            }
            Err(error) => tracing::warn!(%error, "cannot read the ended sessions"),
        }
        match self.drained().await {
            Ok(servers) => listener.received(ClusterEvent::Drains { servers }),
            Err(error) => tracing::warn!(%error, "cannot read the drained servers"),
        }
        self.subscribed
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let mut messages = pubsub.on_message();
        while let Some(message) = messages.next().await {
            let payload: &[u8] = message.get_payload_bytes();
            if payload.len() > MAX_EVENT_BYTES {
                self.count("dropped", "oversized");
                continue;
            }
            match serde_json::from_slice::<Envelope>(payload) {
                Ok(envelope) if envelope.from == self.settings.replica => {}
                Ok(envelope) => {
                    self.count("received", kind(&envelope.event));
                    listener.received(envelope.event);
                }
                Err(error) => {
                    self.count("dropped", "malformed");
                    tracing::warn!(%error, "ignored a malformed event from the other replicas");
                }
            }
        }
        Ok(())
    }
}

/// Sends queued events in order until the cluster is dropped.
async fn publisher(cluster: std::sync::Weak<RedisCluster>, mut queue: mpsc::Receiver<String>) {
    while let Some(payload) = queue.recv().await {
        let Some(cluster) = cluster.upgrade() else {
            break;
        };
        let size = payload.len();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (channel, payload) = (cluster.channel(), payload.clone());
            let sent = cluster
                .run(|mut c| async move { c.publish::<_, _, i64>(channel, payload).await })
                .await;
            match sent {
                Ok(_) => break,
                Err(error) if attempt >= PUBLISH_ATTEMPTS => {
                    cluster.count("dropped", "unsent");
                    tracing::warn!(%error, "cannot publish a change to the other replicas; they catch up at their next discovery round");
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await,
            }
        }
        cluster
            .queued
            .fetch_sub(size, std::sync::atomic::Ordering::Relaxed);
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[async_trait]
impl ClusterBus for RedisCluster {
    fn replica(&self) -> &str {
        &self.settings.replica
    }

    fn publish(&self, event: ClusterEvent) {
        let kind = kind(&event);
        // Kept beyond the moment, for replicas that are not listening now.
        match &event {
            ClusterEvent::SessionEnded { session, until } => {
                let mut command = redis::cmd("ZADD");
                command.arg(self.ended_key()).arg(*until).arg(session);
                self.keep("ended session", command);
            }
            ClusterEvent::ServerDrained { server, draining } => {
                let mut command = redis::cmd(if *draining { "HSET" } else { "HDEL" });
                command.arg(self.drains_key()).arg(server.to_string());
                if *draining {
                    command.arg(1);
                }
                self.keep("drain", command);
            }
            _ => {}
        }
        let envelope = Envelope {
            from: self.settings.replica.clone(),
            event,
        };
        let Ok(payload) = serde_json::to_string(&envelope) else {
            return;
        };
        let size = payload.len();
        let queued = self
            .queued
            .fetch_add(size, std::sync::atomic::Ordering::Relaxed);
        if queued + size > QUEUE_BYTES || size > MAX_EVENT_BYTES {
            self.queued
                .fetch_sub(size, std::sync::atomic::Ordering::Relaxed);
            self.count("dropped", "queue_full");
            tracing::warn!(
                size,
                "an event for the other replicas does not fit the queue; dropped"
            );
            return;
        }
        match self.outbox.try_send(payload) {
            Ok(()) => self.count("published", kind),
            Err(_) => {
                self.queued
                    .fetch_sub(size, std::sync::atomic::Ordering::Relaxed);
                self.count("dropped", "queue_full");
                tracing::warn!("the queue of changes for the other replicas is full; dropped one");
            }
        }
    }

    async fn claim(&self, key: &str, ttl: Duration) -> bool {
        let key = format!("{}:lease:{key}", self.settings.key_prefix);
        let replica = self.settings.replica.clone();
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let claimed = self
            .run(|mut c| async move {
                redis::cmd("SET")
                    .arg(key)
                    .arg(replica)
                    .arg("NX")
                    .arg("PX")
                    .arg(ttl_ms)
                    .query_async::<Option<String>>(&mut c)
                    .await
            })
            .await;
        match claimed {
            Ok(answer) => answer.is_some(),
            Err(error) => {
                tracing::debug!(%error, "cannot claim periodic work; doing it here");
                true
            }
        }
    }

    fn is_shared(&self) -> bool {
        true
    }

    fn readiness(&self) -> Result<(), String> {
        if self.subscribed.load(std::sync::atomic::Ordering::Relaxed)
            || self.started.elapsed() >= READY_GRACE
        {
            Ok(())
        } else {
            Err("not yet subscribed to the other replicas' changes (Redis)".to_owned())
        }
    }
}
