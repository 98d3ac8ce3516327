//! What this replica does with the other replicas' events: registry changes join the
//! runtime's queue as if made here, health checks another replica ran are recorded,
//! ended sessions are closed and refused. Each time the link is (re-)established,
//! the replica catches up with the database (what it may have missed meanwhile).

use std::sync::{Arc, Weak};
use std::time::Duration;

use gateway_domain::{ClusterEvent, ClusterListener, RegistryListener};

use super::roaming::Roaming;
use super::runtime::{McpRuntime, Work, WorkQueue};
use super::sessions::SessionBook;

/// The [`ClusterListener`] of the MCP face.
pub struct ClusterInbox {
    queue: WorkQueue,
    runtime: Weak<McpRuntime>,
    sessions: Arc<SessionBook>,
    roaming: Arc<Roaming>,
}

impl ClusterInbox {
    /// Feeds `runtime` (through its `queue`) and the sessions of `services`.
    pub fn new(
        queue: WorkQueue,
        runtime: &Arc<McpRuntime>,
        services: &super::McpServices,
    ) -> Arc<Self> {
        Arc::new(Self {
            queue,
            runtime: Arc::downgrade(runtime),
            sessions: services.gate.sessions.clone(),
            roaming: services.gate.roaming.clone(),
        })
    }
}

impl ClusterListener for ClusterInbox {
    fn received(&self, event: ClusterEvent) {
        match event {
            ClusterEvent::Registry { event } => self.queue.registry_changed(event),
            ClusterEvent::HealthChecked {
                server,
                endpoint,
                error,
                latency_us,
                protocol_version,
            } => {
                if let Some(runtime) = self.runtime.upgrade() {
                    runtime.apply_remote_check(
                        server,
                        endpoint,
                        error,
                        Duration::from_micros(latency_us),
                        protocol_version,
                    );
                }
            }
            ClusterEvent::ServerDrained { server, draining } => {
                if let Some(runtime) = self.runtime.upgrade() {
                    runtime.monitor.set_draining(server, draining);
                }
            }
            ClusterEvent::Drains { servers } => {
                if let Some(runtime) = self.runtime.upgrade() {
                    runtime.monitor.set_drained(&servers);
                }
            }
            ClusterEvent::SessionEnded { session, until } => {
                self.roaming.forget(&session, until);
                let sessions = self.sessions.clone();
                tokio::spawn(async move { sessions.close(&session).await });
            }
            ClusterEvent::ClientReply {
                replica,
                session,
                message,
                ..
            } if replica == self.roaming.bus().replica() => {
                let sessions = self.sessions.clone();
                tokio::spawn(async move {
                    if !sessions.deliver(&session, message).await {
                        tracing::debug!(%session, "a relayed client reply found no waiting request");
                    }
                });
            }
            ClusterEvent::ClientReply { .. } => {}
            // The OAuth façade listens for these itself.
            ClusterEvent::SigningKeysWithdrawn => {}
        }
    }

    fn resynced(&self) {
        tracing::info!("subscribed to the other replicas: catching up with the registry");
        self.queue.push(Work::Reconcile);
        self.queue.push(Work::ReloadAccess);
    }
}
