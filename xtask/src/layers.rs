//! The layer check: reads `cargo metadata` and walks each workspace crate's normal
//! (non-dev, non-build) dependency tree, failing when a crate reaches something its
//! layer forbids. This keeps the hexagon honest: the domain and the services never
//! acquire I/O, and adapters never depend on one another or on the app.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Context;
use serde_json::Value;

/// Crates (by name prefix) that perform I/O or tie code to a transport or store.
const IO_CRATES: &[&str] = &[
    "actix",
    "sea-orm",
    "sea-query",
    "sqlx",
    "redis",
    "deadpool",
    "reqwest",
    "hyper",
    "h2",
    "tokio",
    "mio",
    "rmcp",
    "openidconnect",
    "oauth2",
    "rustls",
    "socket2",
    "tower",
    "utoipa",
    "figment",
    "tracing-subscriber",
];

/// For each layered crate: the workspace crates it may depend on, and whether I/O
/// crates are forbidden anywhere in its tree.
fn rules() -> BTreeMap<&'static str, (&'static [&'static str], bool)> {
    BTreeMap::from([
        ("gateway-domain", (&[][..], true)),
        ("gateway-registry", (&["gateway-domain"][..], true)),
        ("gateway-router", (&["gateway-domain"][..], true)),
        ("gateway-telemetry", (&[][..], true)),
        ("gateway-auth", (&["gateway-domain"][..], false)),
        (
            "gateway-limits",
            (&["gateway-domain", "gateway-telemetry"][..], false),
        ),
        (
            "gateway-audit",
            (&["gateway-domain", "gateway-telemetry"][..], false),
        ),
        (
            "gateway-cluster",
            (&["gateway-domain", "gateway-telemetry"][..], false),
        ),
        ("gateway-migrations", (&[][..], false)),
        (
            "gateway-persistence",
            (&["gateway-domain", "gateway-migrations"][..], false),
        ),
        (
            "gateway-transport",
            (
                &[
                    "gateway-domain",
                    "gateway-registry",
                    "gateway-router",
                    "gateway-telemetry",
                ][..],
                false,
            ),
        ),
    ])
}

/// Test and tool crates: no production crate may depend on them (dev-dependencies only).
const TEST_CRATES: &[&str] = &[
    "gateway-test-support",
    "gateway-test-upstream",
    "gateway-bench",
];

/// Crates that ship in the binary.
const PRODUCTION_CRATES: &[&str] = &[
    "gateway-domain",
    "gateway-registry",
    "gateway-router",
    "gateway-telemetry",
    "gateway-auth",
    "gateway-limits",
    "gateway-audit",
    "gateway-cluster",
    "gateway-migrations",
    "gateway-persistence",
    "gateway-transport",
    "gateway-app",
];

/// A dependency graph: package name → names of its normal dependencies.
pub type Graph = BTreeMap<String, BTreeSet<String>>;

/// Builds the normal-dependency graph from `cargo metadata` output.
pub fn graph_from_metadata(metadata: &Value) -> anyhow::Result<Graph> {
    let names: BTreeMap<&str, &str> = metadata["packages"]
        .as_array()
        .context("metadata has no packages")?
        .iter()
        .filter_map(|p| Some((p["id"].as_str()?, p["name"].as_str()?)))
        .collect();
    let mut graph = Graph::new();
    for node in metadata["resolve"]["nodes"]
        .as_array()
        .context("metadata has no resolve graph")?
    {
        let Some(name) = node["id"].as_str().and_then(|id| names.get(id)) else {
            continue;
        };
        let deps = node["deps"].as_array().into_iter().flatten().filter(|dep| {
            dep["dep_kinds"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|kind| kind["kind"].is_null())
        });
        let entry = graph.entry((*name).to_owned()).or_default();
        for dep in deps {
            if let Some(dep_name) = dep["pkg"].as_str().and_then(|id| names.get(id)) {
                entry.insert((*dep_name).to_owned());
            }
        }
    }
    Ok(graph)
}

/// Every crate reachable from `root` through normal dependencies, with the path that
/// reaches it (for the error message).
fn reachable(graph: &Graph, root: &str) -> BTreeMap<String, Vec<String>> {
    let mut paths = BTreeMap::new();
    let mut stack = vec![(root.to_owned(), vec![root.to_owned()])];
    while let Some((name, path)) = stack.pop() {
        for dep in graph.get(&name).into_iter().flatten() {
            if !paths.contains_key(dep) {
                let mut next = path.clone();
                next.push(dep.clone());
                paths.insert(dep.clone(), next.clone());
                stack.push((dep.clone(), next));
            }
        }
    }
    paths
}

/// The violations of the layer rules in `graph`, one line each.
pub fn violations(graph: &Graph) -> Vec<String> {
    let workspace: BTreeSet<&str> = graph
        .keys()
        .map(String::as_str)
        .filter(|n| n.starts_with("gateway-"))
        .collect();
    let mut found = Vec::new();
    for (krate, (allowed, no_io)) in rules() {
        if !graph.contains_key(krate) {
            found.push(format!("{krate}: not in the workspace graph"));
            continue;
        }
        for direct in graph.get(krate).into_iter().flatten() {
            if workspace.contains(direct.as_str()) && !allowed.contains(&direct.as_str()) {
                found.push(format!(
                    "{krate} depends on {direct}, which its layer forbids (allowed: {allowed:?})"
                ));
            }
        }
        if no_io {
            for (dep, path) in reachable(graph, krate) {
                if IO_CRATES.iter().any(|io| {
                    dep == *io
                        || dep.starts_with(&format!("{io}-"))
                        || dep.starts_with(&format!("{io}_"))
                }) {
                    found.push(format!(
                        "{krate} reaches I/O crate {dep} via {}",
                        path.join(" → ")
                    ));
                }
            }
        }
    }
    for krate in PRODUCTION_CRATES.iter().filter(|k| graph.contains_key(**k)) {
        for (dep, path) in reachable(graph, krate) {
            if TEST_CRATES.contains(&dep.as_str()) {
                found.push(format!(
                    "{krate} reaches test-only crate {dep} via {}",
                    path.join(" → ")
                ));
            }
        }
    }
    found
}

/// Runs `cargo metadata` on this workspace and checks it.
pub fn check_workspace() -> anyhow::Result<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.toml");
    let output = std::process::Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--manifest-path",
            manifest,
        ])
        .output()
        .context("running cargo metadata")?;
    anyhow::ensure!(
        output.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: Value =
        serde_json::from_slice(&output.stdout).context("parsing cargo metadata")?;
    let graph = graph_from_metadata(&metadata)?;
    let problems = violations(&graph);
    anyhow::ensure!(
        problems.is_empty(),
        "layer violations:\n  {}",
        problems.join("\n  ")
    );
    Ok(format!("layers ok: {} crates checked", rules().len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(edges: &[(&str, &[&str])]) -> Graph {
        edges
            .iter()
            .map(|(from, to)| {
                (
                    (*from).to_owned(),
                    to.iter().map(|t| (*t).to_owned()).collect(),
                )
            })
            .collect()
    }

    fn clean() -> Vec<(&'static str, &'static [&'static str])> {
        vec![
            ("gateway-domain", &["serde", "thiserror"]),
            ("gateway-registry", &["gateway-domain", "tracing"]),
            ("gateway-router", &["gateway-domain"]),
            ("gateway-telemetry", &["prometheus"]),
            ("gateway-auth", &["gateway-domain", "jsonwebtoken"]),
            (
                "gateway-limits",
                &["gateway-domain", "gateway-telemetry", "deadpool-redis"],
            ),
            (
                "gateway-audit",
                &["gateway-domain", "gateway-telemetry", "tokio"],
            ),
            (
                "gateway-cluster",
                &["gateway-domain", "gateway-telemetry", "deadpool-redis"],
            ),
            ("gateway-migrations", &["sea-orm-migration"]),
            (
                "gateway-persistence",
                &["gateway-domain", "gateway-migrations", "sea-orm"],
            ),
            (
                "gateway-transport",
                &["gateway-domain", "gateway-registry", "actix-web"],
            ),
            ("sea-orm", &["sqlx"]),
        ]
    }

    #[test]
    fn the_real_workspace_keeps_its_layers() {
        let report = check_workspace().expect("no layer violations");
        assert!(report.starts_with("layers ok"));
    }

    #[test]
    fn a_clean_graph_passes() {
        assert_eq!(violations(&graph(&clean())), Vec::<String>::new());
    }

    #[test]
    fn io_reached_transitively_from_the_domain_fails() {
        let mut edges = clean();
        edges[0] = ("gateway-domain", &["serde", "helper"]);
        edges.push(("helper", &["tokio"]));
        let found = violations(&graph(&edges));
        assert!(
            found
                .iter()
                .any(|v| v.contains("gateway-domain → helper → tokio")),
            "{found:?}"
        );
        assert!(
            found.iter().all(|v| v.contains("tokio")),
            "only the I/O path is reported: {found:?}"
        );
    }

    #[test]
    fn an_adapter_depending_on_another_fails() {
        let mut edges = clean();
        for edge in &mut edges {
            if edge.0 == "gateway-transport" {
                edge.1 = &["gateway-domain", "gateway-persistence"];
            }
        }
        let found = violations(&graph(&edges));
        assert!(
            found
                .iter()
                .any(|v| v.contains("gateway-transport depends on gateway-persistence")),
            "{found:?}"
        );
    }

    #[test]
    fn test_crates_stay_out_of_production() {
        let mut edges = clean();
        edges.push((
            "gateway-app",
            &["gateway-transport", "gateway-test-upstream"],
        ));
        let found = violations(&graph(&edges));
        assert!(
            found
                .iter()
                .any(|v| v.contains("gateway-app reaches test-only crate gateway-test-upstream")),
            "{found:?}"
        );
    }

    #[test]
    fn services_stay_off_sqlx() {
        let mut edges = clean();
        edges[1] = ("gateway-registry", &["gateway-domain", "sqlx-core"]);
        assert!(!violations(&graph(&edges)).is_empty());
    }
}
