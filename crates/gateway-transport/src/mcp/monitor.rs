//! What the gateway knows, live, about each enabled upstream and each of its
//! endpoints: health (active checks and real call outcomes), circuit breaker, calls
//! in flight, the bulkhead that caps them, and whether an operator is draining it.
//! Every forwarded call asks [`Monitor::admit`] for a [`Lease`] on an endpoint and
//! reports its outcome through it; changes that matter to routing (a server became
//! unavailable or came back) are sent to the runtime, which re-lists.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::{Duration, Instant};

use chrono::Utc;
use gateway_domain::{HealthState, ServerId, ServerName, UpstreamServer};
use gateway_router::{
    Balance, BreakerPolicy, Candidate, CircuitBreaker, CircuitState, HealthPolicy, HealthTracker,
    Observation, Permit, Source,
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

/// What happens to the tools of an upstream that is unhealthy or whose circuit is open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum WhenUnavailable {
    /// They leave the lists (clients get `list_changed`) until it recovers.
    #[default]
    Hide,
    /// They stay listed; calls fail fast naming the upstream and its state.
    FailFast,
}

/// Health checks, breaker, bulkhead and balancing settings.
#[derive(Debug, Clone)]
pub struct ResilienceSettings {
    /// Health thresholds.
    pub health: HealthPolicy,
    /// Time between active checks of an endpoint (jittered by ±10 %).
    pub check_interval: Duration,
    /// Longest wait for a check's answer.
    pub check_timeout: Duration,
    /// Circuit breaker thresholds.
    pub breaker: BreakerPolicy,
    /// Calls in flight per upstream at most (the bulkhead).
    pub max_concurrent_calls: usize,
    /// Longest wait for a bulkhead slot before the call fails fast.
    pub max_queue_wait: Duration,
    /// How calls are spread over a server's endpoints.
    pub balance: Balance,
    /// Unhealthy upstreams: hidden or listed-but-failing.
    pub when_unavailable: WhenUnavailable,
}

impl Default for ResilienceSettings {
    fn default() -> Self {
        Self {
            health: HealthPolicy::default(),
            check_interval: Duration::from_secs(30),
            check_timeout: Duration::from_secs(5),
            breaker: BreakerPolicy::default(),
            max_concurrent_calls: 64,
            max_queue_wait: Duration::from_millis(500),
            balance: Balance::default(),
            when_unavailable: WhenUnavailable::default(),
        }
    }
}

/// Why a call was refused before reaching the upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// An operator is draining the server.
    Draining,
    /// No endpoint is healthy with a closed (or probing) circuit.
    Unavailable {
        /// The server's health state.
        state: HealthState,
        /// The circuit of its first endpoint.
        circuit: CircuitState,
        /// When a probe will be let through, if the circuit is open.
        retry_in: Duration,
    },
    /// The bulkhead stayed full for the whole bounded wait.
    Overloaded {
        /// The configured limit.
        limit: usize,
        /// How long the call waited.
        waited: Duration,
    },
}

impl Refusal {
    /// The metrics label of the reason.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Draining => "draining",
            Self::Unavailable { .. } => "unavailable",
            Self::Overloaded { .. } => "overloaded",
        }
    }
}

/// How a call ended, as far as the upstream's health is concerned.
#[derive(Debug, Clone)]
pub enum Verdict {
    /// The upstream answered (a JSON-RPC error from it counts: it is alive).
    Answered,
    /// It could not be reached or dropped the request: a failure for its health and
    /// its breaker.
    Failed(String),
    /// It did not answer within the request timeout: a failure for the breaker (a slow
    /// upstream must trip it), not for health (checks judge whether it is alive; a
    /// slow tool says little about that).
    TimedOut(String),
}

impl Verdict {
    fn ok(&self) -> bool {
        matches!(self, Self::Answered)
    }
}

/// One endpoint (a URL of an HTTP upstream, or the child process of a stdio one).
pub struct EndpointState {
    /// Where it is (a URL, which never carries credentials, or `stdio`).
    pub label: String,
    health: Mutex<HealthTracker>,
    breaker: Mutex<CircuitBreaker>,
    in_flight: AtomicUsize,
}

/// Locks a mutex; a poisoned one still holds usable state (counters, trackers).
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// `duration` ±25 %, so retries and reconnects of many upstreams do not line up.
pub(crate) fn jittered(duration: Duration) -> Duration {
    duration.mul_f64(0.75 + fastrand::f64() * 0.5)
}

impl EndpointState {
    /// Its health state.
    pub fn state(&self) -> HealthState {
        lock(&self.health).state()
    }

    /// Its circuit state now.
    pub fn circuit(&self) -> CircuitState {
        lock(&self.breaker).state(Instant::now())
    }

    /// Calls in flight on it.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Its recent observations and last check.
    pub fn history(&self) -> (Vec<Observation>, Option<Observation>) {
        let health = lock(&self.health);
        (
            health.history().cloned().collect(),
            health.last_check().cloned(),
        )
    }

    /// Listed: not unhealthy and the circuit closed.
    fn listable(&self) -> bool {
        self.state() != HealthState::Unhealthy && self.circuit() == CircuitState::Closed
    }

    fn candidate(&self, now: Instant) -> Candidate {
        Candidate {
            available: self.state() != HealthState::Unhealthy
                && lock(&self.breaker).would_allow(now),
            in_flight: self.in_flight(),
        }
    }
}

/// The server-level view operators and routing use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerView {
    /// Combined health of the endpoints.
    pub state: HealthState,
    /// Whether its tools are listed (`hide` mode) and calls admitted.
    pub available: bool,
    /// An operator is draining it.
    pub draining: bool,
}

/// Live state of one enabled upstream.
pub struct UpstreamState {
    /// Its id.
    pub id: ServerId,
    /// Its name.
    pub name: ServerName,
    /// The newest spec version seen; a spec change that keeps the endpoints keeps this
    /// state (health, circuits, bulkhead, calls in flight).
    spec_version: AtomicI64,
    /// Its endpoints, in registration order.
    pub endpoints: Vec<EndpointState>,
    bulkhead: Arc<Semaphore>,
    in_flight: AtomicUsize,
    draining: AtomicBool,
    turn: AtomicUsize,
    last_view: Mutex<Option<ServerView>>,
    /// The protocol revision the upstream negotiated last.
    pub protocol_version: Mutex<Option<String>>,
    checks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    checks_started: AtomicBool,
}

impl Drop for UpstreamState {
    fn drop(&mut self) {
        for task in lock(&self.checks).drain(..) {
            task.abort();
        }
    }
}

impl UpstreamState {
    /// Requests in flight on the server, each counted once for its whole life (a
    /// bridged request also while the gateway waits for its client's input).
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Whether an operator is draining it.
    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// The combined view: healthy when every endpoint is, unhealthy when none is
    /// usable, degraded in between; unknown until one is seen.
    pub fn view(&self) -> ServerView {
        let states: Vec<HealthState> = self.endpoints.iter().map(EndpointState::state).collect();
        let usable = self.endpoints.iter().filter(|e| e.listable()).count();
        let state = if states.iter().all(|s| *s == HealthState::Unknown) {
            HealthState::Unknown
        } else if usable == 0 {
            HealthState::Unhealthy
        } else if usable == self.endpoints.len()
            && states
                .iter()
                .all(|s| matches!(s, HealthState::Healthy | HealthState::Unknown))
        {
            HealthState::Healthy
        } else {
            HealthState::Degraded
        };
        ServerView {
            state,
            available: usable > 0,
            draining: self.draining(),
        }
    }

    /// The most recent check of any endpoint (time, latency, error) for the registry.
    pub fn last_check(&self) -> Option<Observation> {
        self.endpoints
            .iter()
            .filter_map(|e| lock(&e.health).last_check().cloned())
            .max_by_key(|check| check.at)
    }

    /// True exactly once: the caller is the one that starts its checks.
    pub fn claim_checks(&self) -> bool {
        !self.checks_started.swap(true, Ordering::Relaxed)
    }

    /// The most recent observation of any endpoint.
    pub fn last_observation(&self) -> Option<Observation> {
        self.endpoints
            .iter()
            .filter_map(|e| lock(&e.health).history().last().cloned())
            .max_by_key(|o| o.at)
    }

    /// Registers the task that checks one of its endpoints (aborted with it).
    pub fn add_check_task(&self, task: tokio::task::JoinHandle<()>) {
        lock(&self.checks).push(task);
    }
}

/// One downstream request on a server, from admission to its answer (all rounds of a
/// bridged request): what a drain waits for.
pub struct Exchange {
    upstream: Arc<UpstreamState>,
}

impl Drop for Exchange {
    fn drop(&mut self) {
        self.upstream.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A granted call: a bulkhead slot and an endpoint whose breaker let it through.
/// Report the outcome with [`Lease::finish`]; dropping it unreported (the client
/// cancelled, or it was never sent) frees the slot without judging the upstream.
pub struct Lease {
    upstream: Arc<UpstreamState>,
    /// The endpoint to use.
    pub endpoint: usize,
    started: Instant,
    permit: Option<Permit>,
    changes: mpsc::UnboundedSender<Change>,
    _slot: OwnedSemaphorePermit,
}

impl Lease {
    /// Records the outcome on the endpoint's breaker and (except a timeout) health.
    pub fn finish(mut self, verdict: &Verdict) {
        let latency = self.started.elapsed();
        let endpoint = &self.upstream.endpoints[self.endpoint];
        let circuit_changed = self.permit.take().is_some_and(|permit| {
            lock(&endpoint.breaker)
                .record(permit, verdict.ok(), Instant::now())
                .is_some()
        });
        let health_changed = !matches!(verdict, Verdict::TimedOut(_))
            && observe(
                &self.upstream,
                self.endpoint,
                Source::Call,
                verdict,
                latency,
            );
        // Most calls change nothing: the server's view is recomputed only when they do.
        if circuit_changed || health_changed {
            upstream_changed(&self.upstream, &self.changes);
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let endpoint = &self.upstream.endpoints[self.endpoint];
        if let Some(permit) = self.permit.take() {
            lock(&endpoint.breaker).release(permit);
        }
        endpoint.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A server whose view changed, and whether its listing must change with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Change {
    /// The server.
    pub id: ServerId,
    /// Availability or drain changed: it must be hidden or shown.
    pub relist: bool,
}

/// Feeds one observation to an endpoint; returns whether its health state changed.
fn observe(
    upstream: &UpstreamState,
    endpoint: usize,
    source: Source,
    verdict: &Verdict,
    latency: Duration,
) -> bool {
    let Some(state) = upstream.endpoints.get(endpoint) else {
        return false;
    };
    let observation = Observation {
        at: Utc::now(),
        source,
        ok: verdict.ok(),
        latency,
        error: match verdict {
            Verdict::Answered => None,
            Verdict::Failed(reason) | Verdict::TimedOut(reason) => Some(reason.clone()),
        },
    };
    let changed = lock(&state.health).observe(observation, Instant::now());
    if let Some(next) = changed {
        tracing::info!(server = %upstream.name, endpoint = %state.label, state = %next, "upstream endpoint health changed");
    }
    changed.is_some()
}

/// Tells the runtime when the server's view differs from the last one sent.
fn upstream_changed(upstream: &UpstreamState, changes: &mpsc::UnboundedSender<Change>) {
    let view = upstream.view();
    let mut last = lock(&upstream.last_view);
    if *last != Some(view) {
        let relist =
            last.is_none_or(|l| (l.available, l.draining) != (view.available, view.draining));
        *last = Some(view);
        let _ = changes.send(Change {
            id: upstream.id,
            relist,
        });
    }
}

/// The live state of every enabled upstream.
pub struct Monitor {
    settings: ResilienceSettings,
    upstreams: RwLock<HashMap<ServerId, Arc<UpstreamState>>>,
    changes: mpsc::UnboundedSender<Change>,
    /// Drained servers, also those not tracked yet (a drain made through another
    /// replica before this one connected), so a state made later starts drained.
    drained: std::sync::Mutex<std::collections::HashSet<ServerId>>,
}

impl Monitor {
    /// A monitor that reports servers whose view changed on `changes`.
    pub fn new(settings: ResilienceSettings, changes: mpsc::UnboundedSender<Change>) -> Self {
        Self {
            settings,
            upstreams: RwLock::new(HashMap::new()),
            changes,
            drained: std::sync::Mutex::new(std::collections::HashSet::new()),
        }
    }

    /// The settings.
    pub fn settings(&self) -> &ResilienceSettings {
        &self.settings
    }

    /// One server's state.
    pub fn get(&self, id: ServerId) -> Option<Arc<UpstreamState>> {
        self.upstreams
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&id)
            .cloned()
    }

    /// The state of `server`, created if it is not tracked yet (enabled a moment ago).
    pub fn ensure(&self, server: &UpstreamServer) -> Arc<UpstreamState> {
        if let Some(state) = self.get(server.id) {
            return state;
        }
        let mut upstreams = self
            .upstreams
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        upstreams
            .entry(server.id)
            .or_insert_with(|| Arc::new(self.new_state(server)))
            .clone()
    }

    /// Makes the drained servers exactly `servers` (what the other replicas hold).
    pub fn set_drained(&self, servers: &[ServerId]) {
        let wanted: std::collections::HashSet<ServerId> = servers.iter().copied().collect();
        let before = std::mem::replace(&mut *lock(&self.drained), wanted.clone());
        for id in before.difference(&wanted) {
            self.set_draining(*id, false);
        }
        for id in &wanted {
            self.set_draining(*id, true);
        }
    }

    /// Every server's state.
    pub fn all(&self) -> Vec<Arc<UpstreamState>> {
        self.upstreams
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }

    /// Makes the tracked set equal the enabled servers: new ones start `unknown`;
    /// a spec change that keeps the endpoints keeps the state, one that changes them
    /// starts afresh (keeping a drain); removed ones go (their checks stop). A list
    /// older than what is tracked (a slower concurrent rebuild) changes nothing.
    /// Returns the servers whose endpoints changed, to close their old sessions.
    pub fn sync(&self, servers: &[&UpstreamServer]) -> Vec<ServerId> {
        let mut upstreams = self
            .upstreams
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let mut next = HashMap::with_capacity(servers.len());
        let mut replaced = Vec::new();
        for server in servers {
            let labels = endpoint_labels(server);
            match upstreams.remove(&server.id) {
                Some(state)
                    if server.version <= state.spec_version.load(Ordering::Relaxed)
                        || state.endpoints.iter().map(|e| &e.label).eq(labels.iter()) =>
                {
                    state
                        .spec_version
                        .fetch_max(server.version, Ordering::Relaxed);
                    next.insert(server.id, state);
                }
                previous => {
                    let state = Arc::new(self.new_state(server));
                    if let Some(previous) = previous {
                        state.draining.store(previous.draining(), Ordering::Relaxed);
                        replaced.push(server.id);
                    }
                    next.insert(server.id, state);
                }
            }
        }
        *upstreams = next;
        replaced
    }

    /// Stops every health check (at shutdown).
    pub fn stop_checks(&self) {
        for upstream in self.all() {
            for task in lock(&upstream.checks).drain(..) {
                task.abort();
            }
        }
    }

    fn new_state(&self, server: &UpstreamServer) -> UpstreamState {
        let labels = endpoint_labels(server);
        UpstreamState {
            id: server.id,
            name: server.spec.name.clone(),
            spec_version: AtomicI64::new(server.version),
            endpoints: labels
                .into_iter()
                .map(|label| EndpointState {
                    label,
                    health: Mutex::new(HealthTracker::new(self.settings.health.clone())),
                    breaker: Mutex::new(CircuitBreaker::new(self.settings.breaker.clone())),
                    in_flight: AtomicUsize::new(0),
                })
                .collect(),
            bulkhead: Arc::new(Semaphore::new(self.settings.max_concurrent_calls.max(1))),
            in_flight: AtomicUsize::new(0),
            draining: AtomicBool::new(lock(&self.drained).contains(&server.id)),
            turn: AtomicUsize::new(0),
            last_view: Mutex::new(None),
            protocol_version: Mutex::new(server.health.protocol_version.clone()),
            checks: Mutex::new(Vec::new()),
            checks_started: AtomicBool::new(false),
        }
    }

    /// Whether a server's tools are left out of the lists.
    pub fn hidden(&self, id: ServerId) -> bool {
        self.get(id).is_some_and(|state| {
            let view = state.view();
            view.draining
                || (self.settings.when_unavailable == WhenUnavailable::Hide && !view.available)
        })
    }

    /// Endpoints in the order a call should try them (the balancer's choice first).
    pub fn order(&self, upstream: &UpstreamState) -> Vec<usize> {
        let now = Instant::now();
        let candidates: Vec<Candidate> = upstream
            .endpoints
            .iter()
            .map(|e| e.candidate(now))
            .collect();
        let turn = upstream.turn.fetch_add(1, Ordering::Relaxed);
        gateway_router::balance::order(self.settings.balance, &candidates, turn)
    }

    /// Starts a downstream request on `server`, unless it is being drained.
    pub fn begin(&self, server: &UpstreamServer) -> Result<Exchange, Refusal> {
        let upstream = self.ensure(server);
        if upstream.draining() {
            return Err(Refusal::Draining);
        }
        upstream.in_flight.fetch_add(1, Ordering::Relaxed);
        Ok(Exchange { upstream })
    }

    /// Grants one call of an exchange: a bulkhead slot within the bounded wait (and
    /// before `deadline`), and an endpoint (the `pinned` one, or the balancer's choice
    /// among those not in `tried`) whose breaker lets it through.
    pub async fn admit(
        &self,
        server: &UpstreamServer,
        pinned: Option<usize>,
        tried: &[usize],
        deadline: tokio::time::Instant,
    ) -> Result<Lease, Refusal> {
        let upstream = self.ensure(server);
        let order: Vec<usize> = match pinned {
            Some(endpoint) if endpoint < upstream.endpoints.len() => vec![endpoint],
            _ => self
                .order(&upstream)
                .into_iter()
                .filter(|e| !tried.contains(e))
                .collect(),
        };
        let now = Instant::now();
        let unavailable = || {
            let first = &upstream.endpoints[order.first().copied().unwrap_or(0)];
            // The soonest any endpoint's circuit lets a probe through.
            let retry_in = upstream
                .endpoints
                .iter()
                .map(|e| lock(&e.breaker).retry_in(now))
                .min()
                .unwrap_or_default();
            Refusal::Unavailable {
                state: upstream.view().state,
                circuit: first.circuit(),
                retry_in,
            }
        };
        // Fail fast before queueing when nothing could take the call.
        if !order
            .iter()
            .any(|&e| upstream.endpoints[e].candidate(now).available)
        {
            return Err(unavailable());
        }
        let started = Instant::now();
        let wait_until = deadline.min(tokio::time::Instant::now() + self.settings.max_queue_wait);
        let slot = match upstream.bulkhead.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                match tokio::time::timeout_at(wait_until, upstream.bulkhead.clone().acquire_owned())
                    .await
                {
                    Ok(Ok(permit)) => permit,
                    _ => {
                        return Err(Refusal::Overloaded {
                            limit: self.settings.max_concurrent_calls,
                            waited: started.elapsed(),
                        });
                    }
                }
            }
        };
        let now = Instant::now();
        for &endpoint in &order {
            let state = &upstream.endpoints[endpoint];
            if state.state() == HealthState::Unhealthy {
                continue;
            }
            if let Ok(permit) = lock(&state.breaker).try_acquire(now) {
                state.in_flight.fetch_add(1, Ordering::Relaxed);
                return Ok(Lease {
                    upstream: upstream.clone(),
                    endpoint,
                    started: Instant::now(),
                    permit: Some(permit),
                    changes: self.changes.clone(),
                    _slot: slot,
                });
            }
        }
        Err(unavailable())
    }

    /// Records an active check or discovery outcome on an endpoint. While the
    /// circuit is half-open it is the probe, so a hidden upstream (which gets no
    /// calls) can still close its circuit.
    pub fn record_probe(
        &self,
        id: ServerId,
        endpoint: usize,
        source: Source,
        verdict: &Verdict,
        latency: Duration,
    ) {
        let Some(upstream) = self.get(id) else { return };
        let mut circuit_changed = false;
        if let Some(state) = upstream.endpoints.get(endpoint) {
            let mut breaker = lock(&state.breaker);
            let now = Instant::now();
            if breaker.state(now) == CircuitState::HalfOpen
                && let Ok(probe) = breaker.try_acquire(now)
            {
                circuit_changed = breaker.record(probe, verdict.ok(), now).is_some();
            }
        }
        let health_changed = observe(&upstream, endpoint, source, verdict, latency);
        if circuit_changed || health_changed {
            upstream_changed(&upstream, &self.changes);
        }
    }

    /// Starts or stops draining a server; returns its calls in flight (`None` when
    /// it is not tracked yet: it starts drained when it is).
    pub fn set_draining(&self, id: ServerId, draining: bool) -> Option<usize> {
        if draining {
            lock(&self.drained).insert(id);
        } else {
            lock(&self.drained).remove(&id);
        }
        let upstream = self.get(id)?;
        upstream.draining.store(draining, Ordering::Relaxed);
        if !draining {
            for endpoint in &upstream.endpoints {
                lock(&endpoint.breaker).reset();
            }
        }
        upstream_changed(&upstream, &self.changes);
        Some(upstream.in_flight())
    }
}

/// What operators and metrics call each endpoint: its URL without query or fragment
/// (a query may carry a key), or `stdio`.
fn endpoint_labels(server: &UpstreamServer) -> Vec<String> {
    let mut labels: Vec<String> = server
        .spec
        .transport
        .endpoints()
        .iter()
        .map(|url| {
            let mut shown = (*url).clone();
            shown.set_query(None);
            shown.set_fragment(None);
            shown.to_string()
        })
        .collect();
    if labels.is_empty() {
        labels.push("stdio".to_owned());
    }
    labels
}
