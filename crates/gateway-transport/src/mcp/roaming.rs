//! Sessions that roam between replicas. rmcp keeps each MCP session in the memory of
//! the replica that holds it; the gate ([`super::guard`]) hands clients a sealed id
//! ([`super::sealed`]) instead of rmcp's, and turns it back into rmcp's on every
//! request. When the request reaches a replica that does not hold the session (a
//! load balancer spread the requests, or the first replica died), the gate leaves
//! the opened `initialize` parameters here, and rmcp's restore asks for them through
//! [`RestoreFromSealedId`] (its `SessionStore`): the session is rebuilt from the id
//! alone, with no shared store on the hot path.
//!
//! A `DELETE` ends a session everywhere: the replica that served it tells the others
//! ([`ClusterEvent::SessionEnded`]), which close their copy and refuse the id until
//! it would have expired anyway.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use gateway_domain::{ClusterBus, ClusterEvent};
use rmcp::model::InitializeRequestParams;
use rmcp::transport::streamable_http_server::session::{
    SessionState, SessionStore, SessionStoreError,
};

use super::sealed::{OpenError, SessionClaims, SessionSealer};

/// How long opened parameters wait for rmcp's restore before they are dropped.
const PENDING_TTL: Duration = Duration::from_secs(30);

/// Most restores waiting at once (more: refused with 503 until some are done).
const MAX_PENDING: usize = 10_000;

/// Most ended sessions remembered (more: the one that expires first is forgotten).
const MAX_ENDED: usize = 100_000;

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Unix seconds now.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Why a session id was refused, worded for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// Not ours, damaged, expired, or someone else's.
    Unknown(&'static str),
    /// Ended with `DELETE`.
    Ended,
    /// Too many sessions are being rebuilt on this replica right now.
    Busy,
}

/// Whether a session can be rebuilt here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restore {
    /// Its parameters wait for rmcp.
    Expected,
    /// Its `initialize` parameters do not parse.
    Unparseable,
    /// Too many restores are waiting.
    Busy,
}

impl Refused {
    /// What the JSON-RPC error says.
    pub fn message(&self) -> String {
        match self {
            Self::Unknown(why) => format!(
                "Session not found: the Mcp-Session-Id {why}; send initialize without it to start a new session"
            ),
            Self::Ended => "Session not found: the session was ended (DELETE); send initialize without Mcp-Session-Id to start a new one".to_owned(),
            Self::Busy => "this gateway replica is rebuilding too many sessions at once; retry shortly".to_owned(),
        }
    }
}

/// The session ids of this gateway: sealing, opening, restores and ended sessions.
pub struct Roaming {
    sealer: SessionSealer,
    ttl: Duration,
    bus: Arc<dyn ClusterBus>,
    pending: Mutex<HashMap<String, (InitializeRequestParams, Instant)>>,
    /// Sessions ended through any replica, until their ids would expire.
    ended: Mutex<Ended>,
}

impl std::fmt::Debug for Roaming {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Roaming")
            .field("sealer", &self.sealer)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl Roaming {
    /// Session ids sealed by `sealer`, valid for `ttl`, ended sessions shared on `bus`.
    pub fn new(sealer: SessionSealer, ttl: Duration, bus: Arc<dyn ClusterBus>) -> Arc<Self> {
        Arc::new(Self {
            sealer,
            ttl,
            bus,
            pending: Mutex::new(HashMap::new()),
            ended: Mutex::new(Ended::default()),
        })
    }

    /// The link to the other replicas.
    pub fn bus(&self) -> &Arc<dyn ClusterBus> {
        &self.bus
    }

    /// The sealed id of rmcp's session `rid`, opened by `owner` on `endpoint` with
    /// `init` (the `initialize` parameters, as [`super::sealed::carried_init`] keeps
    /// them).
    pub fn seal(
        &self,
        rid: &str,
        owner: &str,
        endpoint: &str,
        init: serde_json::Value,
    ) -> Result<String, String> {
        let now = unix_now();
        let claims = SessionClaims {
            rid: rid.to_owned(),
            sub: owner.to_owned(),
            ep: endpoint.to_owned(),
            init,
            iat: now,
            exp: now.saturating_add(i64::try_from(self.ttl.as_secs()).unwrap_or(i64::MAX)),
        };
        self.sealer.seal(&claims)
    }

    /// Opens the id a client sent, for `owner` on `endpoint`.
    pub fn open(
        &self,
        sealed: &str,
        owner: &str,
        endpoint: &str,
    ) -> Result<SessionClaims, Refused> {
        let claims = self.sealer.open(sealed, unix_now()).map_err(|e| {
            Refused::Unknown(match e {
                OpenError::Expired => "has expired",
                OpenError::UnknownKey => "was sealed with a key this gateway no longer has",
                OpenError::Malformed => "is not one this gateway issued",
            })
        })?;
        // Someone else's id, or one of another endpoint: as if it did not exist.
        if claims.sub != owner || claims.ep != endpoint {
            return Err(Refused::Unknown(
                "is not one this gateway issued to you here",
            ));
        }
        if lock(&self.ended).by_session.contains_key(&claims.rid) {
            return Err(Refused::Ended);
        }
        Ok(claims)
    }

    /// Leaves what rmcp needs to rebuild session `claims.rid` on this replica (call
    /// right before rmcp gets the request; it takes them once).
    pub fn expect_restore(&self, claims: &SessionClaims) -> Restore {
        let Ok(params) = serde_json::from_value::<InitializeRequestParams>(claims.init.clone())
        else {
            return Restore::Unparseable;
        };
        let now = Instant::now();
        let mut pending = lock(&self.pending);
        if pending.len() >= MAX_PENDING {
            pending.retain(|_, (_, at)| now.duration_since(*at) < PENDING_TTL);
        }
        if pending.len() >= MAX_PENDING {
            return Restore::Busy;
        }
        pending.insert(claims.rid.clone(), (params, now));
        Restore::Expected
    }

    /// Drops parameters rmcp did not take (the request ended before a restore).
    pub fn cancel_restore(&self, rid: &str) {
        lock(&self.pending).remove(rid);
    }

    /// Session `rid` was ended here: every replica forgets it.
    pub fn end(&self, rid: &str, until: i64) {
        self.forget(rid, until);
        self.bus.publish(ClusterEvent::SessionEnded {
            session: rid.to_owned(),
            until,
        });
    }

    /// Session `rid` was ended (here or on another replica): refuse it until `until`.
    pub fn forget(&self, rid: &str, until: i64) {
        lock(&self.ended).insert(rid, until, unix_now());
    }

    fn take_pending(&self, rid: &str) -> Option<InitializeRequestParams> {
        let (params, at) = lock(&self.pending).remove(rid)?;
        (at.elapsed() < PENDING_TTL).then_some(params)
    }
}

/// Ended sessions by id, and in the order their ids expire (so expired ones are
/// dropped from the front, and the set stays bounded).
#[derive(Default)]
struct Ended {
    by_session: HashMap<String, i64>,
    by_expiry: std::collections::BTreeSet<(i64, String)>,
}

impl Ended {
    fn insert(&mut self, rid: &str, until: i64, now: i64) {
        while let Some(first) = self.by_expiry.first() {
            if first.0 > now && self.by_expiry.len() < MAX_ENDED {
                break;
            }
            if let Some((_, old)) = self.by_expiry.pop_first() {
                self.by_session.remove(&old);
            }
        }
        if until <= now || self.by_session.contains_key(rid) {
            return;
        }
        self.by_session.insert(rid.to_owned(), until);
        self.by_expiry.insert((until, rid.to_owned()));
    }
}

/// rmcp's `SessionStore` over sealed ids: `load` hands over what the gate opened;
/// nothing is stored anywhere (the client holds the state).
pub struct RestoreFromSealedId(pub Arc<Roaming>);

#[async_trait::async_trait]
impl SessionStore for RestoreFromSealedId {
    async fn load(&self, session_id: &str) -> Result<Option<SessionState>, SessionStoreError> {
        Ok(self.0.take_pending(session_id).map(SessionState::new))
    }

    async fn store(&self, _: &str, _: &SessionState) -> Result<(), SessionStoreError> {
        Ok(())
    }

    async fn delete(&self, _: &str) -> Result<(), SessionStoreError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roaming() -> Arc<Roaming> {
        Roaming::new(
            SessionSealer::new(&[9; 32], &[]).expect("test value"),
            Duration::from_secs(60),
            gateway_domain::SingleReplica::new("r1"),
        )
    }

    fn init() -> serde_json::Value {
        serde_json::json!({"protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "c", "version": "1"}})
    }

    #[tokio::test]
    async fn an_id_opens_only_for_its_owner_on_its_endpoint_and_restores_once() {
        let roaming = roaming();
        let id = roaming
            .seal("rid-1", "subject:alice", "/mcp", init())
            .expect("test value");
        let claims = roaming
            .open(&id, "subject:alice", "/mcp")
            .expect("test value");
        assert_eq!(claims.rid, "rid-1");
        assert!(roaming.open(&id, "subject:mallory", "/mcp").is_err());
        assert!(
            roaming
                .open(&id, "subject:alice", "/mcp/servers/x")
                .is_err()
        );

        let store = RestoreFromSealedId(roaming.clone());
        assert!(
            store.load("rid-1").await.expect("test value").is_none(),
            "nothing expected yet"
        );
        assert_eq!(roaming.expect_restore(&claims), Restore::Expected);
        let state = store
            .load("rid-1")
            .await
            .expect("test value")
            .expect("test value");
        assert_eq!(state.initialize_params.client_info.name, "c");
        assert!(
            store.load("rid-1").await.expect("test value").is_none(),
            "handed over once"
        );
    }

    #[test]
    fn an_ended_session_is_refused_until_its_id_expires() {
        let roaming = roaming();
        let id = roaming
            .seal("rid-2", "anonymous", "/mcp", init())
            .expect("test value");
        let claims = roaming.open(&id, "anonymous", "/mcp").expect("test value");
        roaming.end(&claims.rid, claims.exp);
        assert_eq!(roaming.open(&id, "anonymous", "/mcp"), Err(Refused::Ended));
        // An end that is already past is not kept.
        roaming.forget("rid-3", unix_now() - 1);
        assert!(!lock(&roaming.ended).by_session.contains_key("rid-3"));
    }

    #[test]
    fn ended_sessions_stay_bounded_and_leave_in_expiry_order() {
        let mut ended = Ended::default();
        for i in 0..MAX_ENDED + 10 {
            ended.insert(
                &format!("s{i}"),
                1_000 + i64::try_from(i).expect("small"),
                0,
            );
        }
        assert!(ended.by_session.len() <= MAX_ENDED);
        assert_eq!(ended.by_session.len(), ended.by_expiry.len());
        assert!(
            !ended.by_session.contains_key("s0"),
            "the soonest to expire went first"
        );
        assert!(
            ended
                .by_session
                .contains_key(&format!("s{}", MAX_ENDED + 9))
        );
        // Time passes: the expired ones leave at the next insert.
        ended.insert("late", 10_000_000, 1_000 + 50_000);
        assert!(!ended.by_session.contains_key("s40000"));
        assert!(ended.by_session.contains_key("s60000"));
    }

    #[test]
    fn initialize_parameters_that_do_not_parse_cannot_be_restored() {
        let roaming = roaming();
        let id = roaming
            .seal(
                "rid-4",
                "anonymous",
                "/mcp",
                serde_json::json!({"protocolVersion": 5}),
            )
            .expect("test value");
        let claims = roaming.open(&id, "anonymous", "/mcp").expect("test value");
        assert_eq!(roaming.expect_restore(&claims), Restore::Unparseable);
    }
}
