//! Caps on MCP sessions: in total, and per caller (a token's subject, the admin key,
//! or the client address when there is no token), so one greedy client cannot hold
//! the memory every session costs. A new session (`initialize` without
//! `Mcp-Session-Id`) over a cap is refused before rmcp creates it: HTTP 429 (per
//! caller) or 503 (in total) with JSON-RPC error `-32039` naming the limit. Sessions
//! that go idle are ended by rmcp after `mcp.session_idle_secs`, which frees their
//! place.
//!
//! Caps on open streams, in total and per caller, bound the work a client can queue:
//! every `GET` stream (rmcp lets a session open any number of them) and every `POST`
//! whose answer is still coming holds a place until its response body ends or the
//! client goes away. Over a cap: HTTP 503 or 429 with JSON-RPC error `-32040`.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

use rmcp::transport::streamable_http_server::session::{SessionId, SessionManager};
use rmcp_actix_web::transport::LocalSessionManager;

/// JSON-RPC error code of a refused session.
pub const TOO_MANY_SESSIONS: i32 = -32039;

/// JSON-RPC error code of a refused stream or request.
pub const TOO_MANY_STREAMS: i32 = -32040;

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

    /// The manager holding session `id` (rmcp's id) on this replica, if any.
    async fn manager_of(&self, id: &SessionId) -> Option<&Arc<LocalSessionManager>> {
        for manager in &self.managers {
            if manager.sessions.read().await.contains_key(id) {
                return Some(manager);
            }
        }
        None
    }

    /// Whether this replica holds session `id` (rmcp's id) in memory.
    pub async fn holds(&self, id: &str) -> bool {
        self.manager_of(&id.into()).await.is_some()
    }

    /// Hands a client's reply (relayed by another replica) to session `id`, if this
    /// replica holds it; `false` when it does not, or the message is no reply.
    pub async fn deliver(&self, id: &str, message: serde_json::Value) -> bool {
        let Ok(message) = serde_json::from_value::<rmcp::model::ClientJsonRpcMessage>(message)
        else {
            return false;
        };
        if !matches!(
            message,
            rmcp::model::ClientJsonRpcMessage::Response(_)
                | rmcp::model::ClientJsonRpcMessage::Error(_)
        ) {
            return false;
        }
        let id: SessionId = id.into();
        match self.manager_of(&id).await {
            Some(manager) => manager.accept_message(&id, message).await.is_ok(),
            None => false,
        }
    }

    /// Ends session `id` if this replica holds it (another replica ended it).
    pub async fn close(&self, id: &str) {
        let id: SessionId = id.into();
        if let Some(manager) = self.manager_of(&id).await {
            let _ = manager.close_session(&id).await;
        }
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

/// Caps on open streams and requests in progress.
#[derive(Debug, Clone, Copy)]
pub struct StreamLimits {
    /// Open at once, all callers together.
    pub total: usize,
    /// Open at once per caller.
    pub per_caller: usize,
}

/// The streams and requests open now, and whose they are.
pub struct StreamBook {
    open: Mutex<StreamCounts>,
    limits: StreamLimits,
}

#[derive(Default)]
struct StreamCounts {
    total: usize,
    by_caller: HashMap<String, usize>,
}

/// One open stream or request's place under the caps, given back when dropped
/// (when actix drops the response body: it ended, or the client went away).
pub struct StreamPermit {
    book: Arc<StreamBook>,
    caller: String,
}

impl StreamBook {
    /// A book under `limits`.
    pub fn new(limits: StreamLimits) -> Arc<Self> {
        Arc::new(Self {
            open: Mutex::default(),
            limits,
        })
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, StreamCounts> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A place for one more stream of `caller`, or the refusal naming the cap.
    pub fn admit(self: &Arc<Self>, caller: &str) -> Result<StreamPermit, SessionRefusal> {
        let mut counts = self.counts();
        if counts.total >= self.limits.total {
            return Err(SessionRefusal::Total {
                limit: self.limits.total,
            });
        }
        let held = counts.by_caller.get(caller).copied().unwrap_or(0);
        if held >= self.limits.per_caller {
            return Err(SessionRefusal::PerCaller {
                limit: self.limits.per_caller,
            });
        }
        counts.total += 1;
        counts.by_caller.insert(caller.to_owned(), held + 1);
        Ok(StreamPermit {
            book: self.clone(),
            caller: caller.to_owned(),
        })
    }
}

impl Drop for StreamPermit {
    fn drop(&mut self) {
        let mut counts = self.book.counts();
        counts.total = counts.total.saturating_sub(1);
        if let Some(held) = counts.by_caller.get_mut(&self.caller) {
            *held = held.saturating_sub(1);
            if *held == 0 {
                counts.by_caller.remove(&self.caller);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permits_are_capped_per_caller_and_in_total_and_given_back_on_drop() {
        let book = StreamBook::new(StreamLimits {
            total: 3,
            per_caller: 2,
        });
        let a1 = book.admit("a").expect("first");
        let _a2 = book.admit("a").expect("second");
        assert_eq!(
            book.admit("a").err(),
            Some(SessionRefusal::PerCaller { limit: 2 })
        );
        let _b1 = book.admit("b").expect("another caller");
        assert_eq!(
            book.admit("c").err(),
            Some(SessionRefusal::Total { limit: 3 })
        );
        drop(a1);
        assert_eq!(book.counts().total, 2);
        let _a3 = book.admit("a").expect("a place was given back");
        assert_eq!(book.counts().by_caller.len(), 2);
    }
}
