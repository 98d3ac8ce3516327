//! `mcp-gateway import FILE|URL`: publishes `server.json` documents into the private
//! registry (`/v0.1`) straight through the registry use cases, for scripted set-ups
//! and promotions between environments (the same as `POST /api/v1/servers/import`
//! without `register`).

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::config::Settings;
use crate::startup::{open_store, registry};

/// Largest document list read from a file or URL.
const MAX_SOURCE_BYTES: usize = 16 * 1024 * 1024;

/// Reads `source` and imports every document in it; prints one line per document.
pub async fn run(settings: &Settings, source: &str) -> Result<(), String> {
    let bytes = read(source).await?;
    let parsed: Value =
        serde_json::from_slice(&bytes).map_err(|e| format!("{source}: not JSON: {e}"))?;
    let documents = match parsed {
        Value::Array(items) => items,
        other => vec![other],
    };
    // Every document is checked before anything is stored.
    for (index, document) in documents.iter().enumerate() {
        if let Err(errors) = gateway_registry::Registry::check_server_json(document) {
            return Err(format!("{source}: document {index}: {errors}"));
        }
    }
    let store = open_store(settings, settings.auto_migrate())
        .await
        .map_err(|e| e.to_string())?;
    let registry = registry(settings, &Arc::new(store.clone()));
    let mut outcome = Ok(());
    for document in &documents {
        match registry.import_server_json(document).await {
            Ok(imported) => println!(
                "{} {} {}",
                if imported.created {
                    "created"
                } else {
                    "unchanged"
                },
                imported.entry.name,
                imported.entry.version
            ),
            Err(error) => {
                outcome = Err(error.to_string());
                break;
            }
        }
    }
    store.close().await;
    outcome
}

async fn read(source: &str) -> Result<Vec<u8>, String> {
    if !(source.starts_with("http://") || source.starts_with("https://")) {
        let size = std::fs::metadata(source)
            .map_err(|e| format!("{source}: {e}"))?
            .len();
        if size > MAX_SOURCE_BYTES as u64 {
            return Err(format!("{source}: larger than {MAX_SOURCE_BYTES} bytes"));
        }
        return std::fs::read(source).map_err(|e| format!("{source}: {e}"));
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| format!("HTTP client: {e}"))?;
    let mut response = client
        .get(source)
        .send()
        .await
        .map_err(|e| format!("{source}: {e}"))?;
    if !response.status().is_success() {
        return Err(format!("{source}: HTTP {}", response.status()));
    }
    let mut bytes = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| format!("{source}: {e}"))?
    {
        bytes.extend_from_slice(&chunk);
        if bytes.len() > MAX_SOURCE_BYTES {
            return Err(format!("{source}: larger than {MAX_SOURCE_BYTES} bytes"));
        }
    }
    Ok(bytes)
}
