//! What the replicas of one gateway tell each other besides what the database holds:
//! registry changes (so every replica rebuilds its catalog snapshot within a second),
//! the outcome of a health check one replica ran for all, MCP sessions that ended,
//! and client replies that reached the wrong replica. The transport is an adapter's
//! business (Redis pub/sub); a single process uses [`SingleReplica`].

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::ports::RegistryEvent;
use crate::server::ServerId;

/// One message between replicas.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ClusterEvent {
    /// A registry change made through one replica.
    Registry {
        /// What changed.
        event: RegistryEvent,
    },
    /// One replica checked an upstream endpoint for all of them.
    HealthChecked {
        /// The server.
        server: ServerId,
        /// Index of the endpoint among the server's URL and replicas.
        endpoint: usize,
        /// Why the check failed; `None` when it was answered.
        error: Option<String>,
        /// Round trip, in microseconds.
        latency_us: u64,
        /// Protocol version the upstream speaks, when the check learned it.
        protocol_version: Option<String>,
    },
    /// A server was drained (or its drain ended) through one replica: every replica
    /// stops (or resumes) sending it new calls.
    ServerDrained {
        /// The server.
        server: ServerId,
        /// Drained (`true`) or back in service.
        draining: bool,
    },
    /// Every server drained now (what a replica reads when it subscribes: drains made
    /// before, or during a gap in its link).
    Drains {
        /// The drained servers.
        servers: Vec<ServerId>,
    },
    /// An MCP session was ended (`DELETE`): no replica may serve or restore it again.
    SessionEnded {
        /// The session's id inside the gateway (not the sealed id the client holds).
        session: String,
        /// Unix time (seconds) after which the sealed id expires anyway.
        until: i64,
    },
    /// A client's reply to a server-to-client request (sampling, elicitation, roots)
    /// that arrived at another replica than the one waiting for it.
    ClientReply {
        /// The replica waiting for it.
        replica: String,
        /// The session's id inside the gateway.
        session: String,
        /// The MCP endpoint's path (`/mcp`, `/mcp/servers/{name}`, `/mcp/views/{name}`).
        endpoint: String,
        /// The JSON-RPC response, with the id the waiting replica issued.
        message: serde_json::Value,
    },
    /// The OAuth façade's signing keys were withdrawn through one replica (an emergency
    /// rotation): every replica reads them again and forgets what it verified with them.
    SigningKeysWithdrawn,
}

/// Told about each event another replica published, and when the link to the other
/// replicas came back after a gap (events may have been missed: reload everything).
pub trait ClusterListener: Send + Sync {
    /// Another replica published `event`.
    fn received(&self, event: ClusterEvent);
    /// The subscription was established (at start, or again after a gap): anything
    /// published before is not heard, so catch up with the database.
    fn resynced(&self);
}

/// The link between replicas.
#[async_trait]
pub trait ClusterBus: Send + Sync {
    /// This replica's id, unique among the running replicas.
    fn replica(&self) -> &str;
    /// Tells every other replica (never this one) about `event`; best effort.
    fn publish(&self, event: ClusterEvent);
    /// Claims periodic work named `key` for `ttl`: `true` when this replica should do
    /// it now (no other replica claimed it within `ttl`). Without a working link it
    /// answers `true`: work done twice beats work not done.
    async fn claim(&self, key: &str, ttl: Duration) -> bool;
    /// Whether other replicas may exist (a real link is configured).
    fn is_shared(&self) -> bool;

    /// For `/ready`: `Err` while a replica that just started has not heard the
    /// others yet (it would miss their changes). After that first link (or a grace
    /// period), `Ok` even if the link breaks: losing Redis must not take every
    /// replica out of the load balancer.
    fn readiness(&self) -> Result<(), String> {
        Ok(())
    }
}

/// The bus of a gateway that runs alone: publishes nowhere, every claim is won.
pub struct SingleReplica {
    id: String,
}

impl SingleReplica {
    /// A lone replica named `id`.
    pub fn new(id: impl Into<String>) -> Arc<Self> {
        Arc::new(Self { id: id.into() })
    }
}

#[async_trait]
impl ClusterBus for SingleReplica {
    fn replica(&self) -> &str {
        &self.id
    }

    fn publish(&self, _event: ClusterEvent) {}

    async fn claim(&self, _key: &str, _ttl: Duration) -> bool {
        true
    }

    fn is_shared(&self) -> bool {
        false
    }
}

/// Publishes every registry change made through this replica to the others (a
/// [`crate::RegistryListener`] beside the local ones).
pub struct AnnounceToReplicas(pub Arc<dyn ClusterBus>);

impl crate::ports::RegistryListener for AnnounceToReplicas {
    fn registry_changed(&self, event: RegistryEvent) {
        self.0.publish(ClusterEvent::Registry { event });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_through_json() {
        let events = [
            ClusterEvent::Registry {
                event: RegistryEvent::Removed(ServerId::generate()),
            },
            ClusterEvent::Registry {
                event: RegistryEvent::AccessRulesChanged,
            },
            ClusterEvent::HealthChecked {
                server: ServerId::generate(),
                endpoint: 1,
                error: Some("refused".into()),
                latency_us: 1200,
                protocol_version: None,
            },
            ClusterEvent::SessionEnded {
                session: "abc".into(),
                until: 1_900_000_000,
            },
        ];
        for event in events {
            let json = serde_json::to_string(&event).expect("test value");
            assert_eq!(
                serde_json::from_str::<ClusterEvent>(&json).expect("test value"),
                event
            );
        }
    }

    #[test]
    fn an_unknown_kind_is_refused() {
        assert!(serde_json::from_str::<ClusterEvent>(r#"{"kind":"reboot"}"#).is_err());
    }
}
