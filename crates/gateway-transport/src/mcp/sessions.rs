//! Caps on MCP sessions: in total, and per caller (a token's subject, the admin key,
//! or the client address when there is no token), so one greedy client cannot hold
//! the memory every session costs. A new session (`initialize` without
//! `Mcp-Session-Id`) over a cap is refused before rmcp creates it: HTTP 429 (per
//! caller) or 503 (in total) with JSON-RPC error `-32039` naming the limit. Sessions
//! that go idle are ended by rmcp after `mcp.session_idle_secs`, which frees their
//! place.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

use rmcp_actix_web::transport::LocalSessionManager;

/// JSON-RPC error code of a refused session.
pub const TOO_MANY_SESSIONS: i32 = -32039;

/// The caps.
#[derive(Debug, Clone, Copy)]
pub struct SessionLimits {
    /// Sessions open at once, all callers together.
    pub total: usize,
    /// Sessions open at once per caller.
    pub per_caller: usize,
}

/// Why a new session is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionRefusal {
    /// The gateway holds `limit` sessions.
    Total {
        /// The cap.
        limit: usize,
    },
    /// This caller holds `limit` sessions.
    PerCaller {
        /// The cap.
        limit: usize,
    },
}

/// The open sessions of every MCP endpoint, and who opened them.
pub struct SessionBook {
    managers: Vec<Arc<LocalSessionManager>>,
    owners: Mutex<HashMap<String, Vec<String>>>,
    limits: SessionLimits,
}

impl SessionBook {
    /// Watches the sessions of `managers` under `limits`.
    pub fn new(managers: Vec<Arc<LocalSessionManager>>, limits: SessionLimits) -> Self {
        Self {
            managers,
            owners: Mutex::new(HashMap::new()),
            limits,
        }
    }

    /// The ids of every session open now.
    async fn open(&self) -> HashSet<String> {
        let mut open = HashSet::new();
        for manager in &self.managers {
            open.extend(
                manager
                    .sessions
                    .read()
                    .await
                    .keys()
                    .map(|id| id.to_string()),
            );
        }
        open
    }

    /// Whether `caller` may open one more session (sessions that ended are forgotten
    /// on the way).
    pub async fn admit(&self, caller: &str) -> Result<(), SessionRefusal> {
        let open = self.open().await;
        if open.len() >= self.limits.total {
            return Err(SessionRefusal::Total {
                limit: self.limits.total,
            });
        }
        let mut owners = self.owners.lock().unwrap_or_else(PoisonError::into_inner);
        owners.retain(|_, ids| {
            ids.retain(|id| open.contains(id));
            !ids.is_empty()
        });
        let held = owners.get(caller).map_or(0, Vec::len);
        if held >= self.limits.per_caller {
            return Err(SessionRefusal::PerCaller {
                limit: self.limits.per_caller,
            });
        }
        Ok(())
    }

    /// Notes that `caller` opened session `id`.
    pub fn opened(&self, caller: String, id: String) {
        self.owners
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(caller)
            .or_default()
            .push(id);
    }
}
