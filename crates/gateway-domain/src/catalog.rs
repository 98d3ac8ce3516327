//! What an upstream offers: its tools, resources, resource templates and prompts,
//! stored exactly as the upstream reported them, with a content hash so a refresh can
//! tell cheaply whether anything changed.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::name::ServerName;
use crate::server::ServerId;

/// One tool, resource, template or prompt descriptor, as the upstream sent it. The
/// gateway never rewrites it; it only reads a few fields for indexing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor(Map<String, Value>);

impl Descriptor {
    /// Wraps a JSON object; anything else is not a descriptor.
    pub fn from_value(value: Value) -> Option<Self> {
        match value {
            Value::Object(map) => Some(Self(map)),
            _ => None,
        }
    }

    /// The JSON object.
    pub fn as_map(&self) -> &Map<String, Value> {
        &self.0
    }

    /// The JSON value, for storage and API output.
    pub fn to_value(&self) -> Value {
        Value::Object(self.0.clone())
    }

    fn text(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(Value::as_str)
    }

    /// `name` of a tool, prompt or resource (empty if the upstream sent none).
    pub fn name(&self) -> &str {
        self.text("name").unwrap_or_default()
    }

    /// Optional human-readable `title`.
    pub fn title(&self) -> Option<&str> {
        self.text("title")
    }

    /// Optional `description`.
    pub fn description(&self) -> Option<&str> {
        self.text("description")
    }
}

/// Everything one upstream offers, as last fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Catalog {
    /// `tools/list` result items.
    pub tools: Vec<Descriptor>,
    /// `resources/list` result items.
    pub resources: Vec<Descriptor>,
    /// `resources/templates/list` result items.
    pub resource_templates: Vec<Descriptor>,
    /// `prompts/list` result items.
    pub prompts: Vec<Descriptor>,
    /// SHA-256 (hex) over all four lists; equal hashes mean nothing changed.
    pub content_hash: String,
    /// When the lists were fetched.
    pub fetched_at: DateTime<Utc>,
}

impl Catalog {
    /// Builds a catalog and computes its content hash.
    pub fn new(
        tools: Vec<Descriptor>,
        resources: Vec<Descriptor>,
        resource_templates: Vec<Descriptor>,
        prompts: Vec<Descriptor>,
        fetched_at: DateTime<Utc>,
    ) -> Self {
        let content_hash = content_hash(&[&tools, &resources, &resource_templates, &prompts]);
        Self {
            tools,
            resources,
            resource_templates,
            prompts,
            content_hash,
            fetched_at,
        }
    }
}

fn content_hash(lists: &[&Vec<Descriptor>]) -> String {
    let mut hasher = Sha256::new();
    for list in lists {
        for descriptor in list.iter() {
            // serde_json writes object keys in a stable order, so equal catalogs hash equal.
            hasher.update(serde_json::to_vec(descriptor.as_map()).unwrap_or_default());
            hasher.update([0x1e]);
        }
        hasher.update([0x1d]);
    }
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A tool found by service discovery, with the server that offers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolHit {
    /// The offering server.
    pub server_id: ServerId,
    /// Its name (the tool-name prefix).
    pub server_name: ServerName,
    /// The tool as the upstream describes it.
    pub tool: Descriptor,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn tool(name: &str) -> Descriptor {
        Descriptor::from_value(
            json!({"name": name, "description": "d", "inputSchema": {"type": "object"}}),
        )
        .expect("object")
    }

    #[test]
    fn hash_follows_content() {
        let now = Utc::now();
        let a = Catalog::new(vec![tool("a")], vec![], vec![], vec![], now);
        let same = Catalog::new(vec![tool("a")], vec![], vec![], vec![], now);
        let other = Catalog::new(vec![tool("b")], vec![], vec![], vec![], now);
        let moved = Catalog::new(vec![], vec![], vec![], vec![tool("a")], now);
        assert_eq!(a.content_hash, same.content_hash);
        assert_ne!(a.content_hash, other.content_hash);
        assert_ne!(
            a.content_hash, moved.content_hash,
            "the same item in another list is a change"
        );
    }

    #[test]
    fn descriptor_reads_its_fields() {
        let descriptor = tool("echo");
        assert_eq!(descriptor.name(), "echo");
        assert_eq!(descriptor.description(), Some("d"));
        assert_eq!(descriptor.title(), None);
        assert!(Descriptor::from_value(json!("not an object")).is_none());
    }
}
