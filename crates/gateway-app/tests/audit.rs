//! The audit trail end to end: real MCP clients and admin calls against the gateway,
//! the events read back through `GET /api/v1/audit` and the database. 1,000
//! concurrent calls give exactly 1,000 events; who, what and how it ended are right
//! (ok, error, denied, rate limited), arguments are hashed (and kept redacted when
//! configured); filters and pages are exact; a full queue spills to the file and the
//! next start replays it, so nothing is lost.

use std::collections::HashSet;
use std::time::Duration;

use gateway_app::config::{AccessRuleConfig, AuditWhenFull, RateLimitRuleConfig, Settings};
use gateway_test_support::mcp::{call, connect, connect_with_token};
use gateway_test_support::oidc::TestIssuer;
use gateway_test_support::{TestApp, TestBackend};
use gateway_test_upstream::{HttpUpstream, serve_http};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const AUDIENCE: &str = "https://gateway.test/mcp";
const ADMIN_KEY: &str = "audit-admin-key";

async fn upstream() -> HttpUpstream {
    serve_http("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("upstream")
}

async fn register(app: &TestApp, name: &str, url: &str) {
    let body = json!({"name": name, "transport": {"type": "streamable-http", "url": url}});
    app.register(&body, Some(ADMIN_KEY)).await;
}

/// Every event matching `query`, paging with `limit`, as the API returns them.
async fn events(app: &TestApp, query: &str, limit: u64) -> Vec<Value> {
    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = format!("/api/v1/audit?limit={limit}&{query}");
        if let Some(cursor) = &cursor {
            url.push_str(&format!("&cursor={cursor}"));
        }
        let response = app
            .client
            .get(app.url(&url))
            .header("x-api-key", ADMIN_KEY)
            .send()
            .await
            .expect("sent");
        assert_eq!(response.status(), 200, "{url}");
        let page: Value = response.json().await.expect("page");
        all.extend(page["items"].as_array().cloned().unwrap_or_default());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return all,
        }
    }
}

/// Waits until `count` events match `query` (the writer is asynchronous).
async fn settle(app: &TestApp, query: &str, count: usize) -> Vec<Value> {
    for _ in 0..100 {
        let found = events(app, query, 500).await;
        if found.len() >= count {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    events(app, query, 500).await
}

fn admin_key(settings: &mut Settings) {
    settings.auth.admin_api_key_sha256 = vec![format!("{:x}", Sha256::digest(ADMIN_KEY))];
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_calls_give_exactly_a_thousand_events() {
    let up = upstream().await;
    let app = TestApp::spawn_with(TestBackend::Sqlite, |s| {
        // All 1,000 at once reach the upstream (the bulkhead and the caps on
        // requests in progress are tested elsewhere).
        s.bulkhead.max_concurrent_calls = 1_000;
        s.mcp.max_streams_per_caller = 2_000;
    })
    .await
    .expect("app");
    register(&app, "bulk", &up.url()).await;
    let mut clients = Vec::new();
    for _ in 0..4 {
        clients.push(connect(&app.url("/mcp")).await.0);
    }
    let calls = (0..1000).map(|i| {
        let client = &clients[i % clients.len()];
        async move {
            client
                .call_tool(call("bulk__echo", json!({"text": format!("call {i}")})))
                .await
                .expect("call")
        }
    });
    futures_util::future::join_all(calls).await;
    let found = settle(&app, "action=tools/call&tool=bulk__echo", 1000).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let found_later = events(&app, "action=tools/call&tool=bulk__echo", 500).await;
    assert_eq!(found.len(), 1000);
    assert_eq!(found_later.len(), 1000, "no duplicates arrive later");
    let ids: HashSet<&str> = found.iter().filter_map(|e| e["id"].as_str()).collect();
    assert_eq!(ids.len(), 1000, "pages neither repeat nor skip");
    assert!(
        found
            .iter()
            .all(|e| e["outcome"] == "ok" && e["server"] == "bulk")
    );
    // Newest first.
    let times: Vec<chrono::DateTime<chrono::Utc>> = found
        .iter()
        .filter_map(|e| e["at"].as_str()?.parse().ok())
        .collect();
    assert_eq!(times.len(), 1000);
    assert!(times.windows(2).all(|w| w[0] >= w[1]));
    let rows = app
        .query_texts("SELECT CAST(COUNT(*) AS TEXT) FROM audit_event WHERE action = 'tools/call'")
        .await;
    assert_eq!(rows, ["1000"]);
    for client in clients {
        let _ = client.cancel().await;
    }
    up.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_say_who_did_what_and_how_it_ended() {
    let issuer = TestIssuer::start().await;
    let issuer_url = issuer.url.clone();
    let up = upstream().await;
    let app = TestApp::spawn_with(TestBackend::Sqlite, move |s| {
        admin_key(s);
        s.auth.provider = gateway_app::config::AuthProvider::Oidc;
        s.auth.issuer = Some(issuer_url);
        s.auth.audiences = vec![AUDIENCE.into()];
        s.auth.rules = vec![AccessRuleConfig {
            role: "reader".into(),
            actions: vec!["list".into(), "call".into()],
            patterns: vec!["tools__echo".into(), "tools__fail".into()],
            description: None,
        }];
        s.rate_limits.rules = vec![RateLimitRuleConfig {
            scope: "principal".into(),
            matches: "*".into(),
            rate: 1,
            period_secs: 3600,
            burst: Some(2),
            description: None,
        }];
        s.audit.record_arguments = true;
    })
    .await
    .expect("app");
    register(&app, "tools", &up.url()).await;
    let token = issuer.token(AUDIENCE, &["reader"]);
    let (client, _) = connect_with_token(&app.url("/mcp"), Some(&token))
        .await
        .expect("session");
    let arguments = json!({"text": "hello", "api_key": "sk-live-123"});
    client
        .call_tool(call("tools__echo", arguments.clone()))
        .await
        .expect("allowed");
    let failed = client
        .call_tool(call("tools__fail", json!({"message": "boom"})))
        .await
        .expect("a tool error is a result");
    assert_eq!(failed.is_error, Some(true));
    let denied = client
        .call_tool(call("tools__add", json!({"a": 1, "b": 2})))
        .await;
    assert!(denied.is_err(), "no rule for add");
    let limited = client
        .call_tool(call("tools__echo", json!({"text": "x"})))
        .await;
    assert!(limited.is_err(), "the principal's burst of 2 is spent");

    let found = settle(&app, "action=tools/call", 4).await;
    let by_target = |target: &str, outcome: &str| {
        found
            .iter()
            .find(|e| e["target"] == target && e["outcome"] == outcome)
            .unwrap_or_else(|| panic!("{target} {outcome} in {found:#?}"))
            .clone()
    };
    let ok = by_target("tools__echo", "ok");
    assert_eq!(ok["subject"], "user-1");
    assert_eq!(ok["tenant"], "tenant-1");
    assert_eq!(ok["roles"], json!(["reader"]));
    assert_eq!(ok["server"], "tools");
    assert_eq!(ok["client_address"], "127.0.0.1");
    assert!(ok["session_id"].as_str().is_some_and(|s| !s.is_empty()));
    assert!(ok["latency_us"].as_u64().is_some());
    // The hash is of the redacted arguments (a short secret's hash could be reversed).
    let redacted = json!({"text": "hello", "api_key": "********"});
    let hash = format!(
        "{:x}",
        Sha256::digest(serde_json::to_vec(&redacted).expect("json"))
    );
    assert_eq!(ok["arguments_hash"], hash.as_str());
    assert_eq!(
        ok["arguments"],
        json!({"text": "hello", "api_key": "********"})
    );
    assert_eq!(by_target("tools__fail", "error")["error_code"], Value::Null);
    let denied = by_target("tools__add", "denied");
    assert_eq!(denied["server"], "tools");
    let limited = by_target("tools__echo", "rate_limited");
    assert_eq!(limited["error_code"], -32038);

    // Filters combine.
    assert_eq!(
        events(
            &app,
            "action=tools/call&outcome=denied&principal=user-1",
            10
        )
        .await
        .len(),
        1
    );
    assert_eq!(
        events(&app, "action=tools/call&tenant=tenant-2", 10)
            .await
            .len(),
        0
    );
    // The session's other operations are there too.
    let initialize = settle(&app, "action=initialize", 1).await;
    assert_eq!(initialize[0]["subject"], "user-1");

    // Admin changes, and a refused one.
    let refused = app
        .client
        .delete(app.url("/api/v1/servers/tools"))
        .send()
        .await
        .expect("sent");
    assert_eq!(refused.status(), 401);
    let changes = settle(
        &app,
        "server=tools&action=DELETE%20/api/v1/servers/%7Bserver%7D",
        1,
    )
    .await;
    assert_eq!(changes[0]["outcome"], "denied");
    assert_eq!(changes[0]["error_code"], 401);
    let created = settle(&app, "action=POST%20/api/v1/servers", 1).await;
    assert_eq!(created[0]["subject"], "admin-api-key");
    assert_eq!(created[0]["outcome"], "ok");

    // Reading the trail is for admins; bad queries are named.
    let reader = app
        .client
        .get(app.url("/api/v1/audit"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("sent");
    assert_eq!(reader.status(), 403);
    for (query, field) in [
        ("outcome=maybe", "outcome"),
        ("limit=0", "limit"),
        ("cursor=nonsense", "cursor"),
        ("from=yesterday", "from"),
        ("colour=red", "colour"),
    ] {
        let response = app
            .client
            .get(app.url(&format!("/api/v1/audit?{query}")))
            .header("x-api-key", ADMIN_KEY)
            .send()
            .await
            .expect("sent");
        assert_eq!(response.status(), 400, "{query}");
        let problem: Value = response.json().await.expect("problem");
        assert!(
            problem["detail"]
                .as_str()
                .is_some_and(|d| d.contains(field)),
            "{query}: {problem}"
        );
    }
    let _ = client.cancel().await;
    up.stop().await;
    issuer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_spills_to_the_file_and_the_next_start_replays_it() {
    let up = upstream().await;
    let app = TestApp::spawn_with(TestBackend::Sqlite, |s| {
        s.audit.queue_capacity = 1;
        s.audit.when_full = AuditWhenFull::Spill;
        s.audit.flush_interval_ms = 1_000;
    })
    .await
    .expect("app");
    register(&app, "spill", &up.url()).await;
    let (client, _) = connect(&app.url("/mcp")).await;
    let calls = (0..200).map(|i| {
        let client = &client;
        async move {
            client
                .call_tool(call("spill__echo", json!({"text": format!("{i}")})))
                .await
                .expect("call")
        }
    });
    futures_util::future::join_all(calls).await;
    let spill = std::path::PathBuf::from(&app.settings.audit.spill_file);
    let spilled = std::fs::read_to_string(&spill).unwrap_or_default();
    assert!(
        spilled.lines().count() > 0,
        "a queue of one cannot take 200 concurrent events"
    );
    let _ = client.cancel().await;
    // The restart flushes the queue, then the new process replays the spill file.
    let app = app.restart().await;
    let found = settle(&app, "action=tools/call&tool=spill__echo", 200).await;
    assert_eq!(found.len(), 200, "every event, spilled or not");
    assert!(!spill.exists(), "the replayed spill file is removed");
    assert!(
        !spill.with_extension("replaying").exists(),
        "and not left behind as a failed replay"
    );
    up.stop().await;
}

/// Writing, filtering and paging on each database backend.
async fn pages_and_filters(app: TestApp) {
    let up = upstream().await;
    register(&app, "paged", &up.url()).await;
    let (client, _) = connect(&app.url("/mcp")).await;
    for i in 0..23 {
        let tool = if i % 2 == 0 {
            "paged__echo"
        } else {
            "paged__add"
        };
        let arguments = if i % 2 == 0 {
            json!({"text": "x"})
        } else {
            json!({"a": i, "b": 1})
        };
        client.call_tool(call(tool, arguments)).await.expect("call");
    }
    let echoes = settle(&app, "action=tools/call&tool=paged__echo", 12).await;
    assert_eq!(echoes.len(), 12);
    let paged = events(&app, "action=tools/call&server=paged", 5).await;
    assert_eq!(paged.len(), 23);
    let ids: HashSet<&str> = paged.iter().filter_map(|e| e["id"].as_str()).collect();
    assert_eq!(ids.len(), 23);
    let newest = paged[0]["at"].as_str().expect("at").to_owned();
    let before_newest = events(
        &app,
        &format!("action=tools/call&to={}", newest.replace('+', "%2B")),
        500,
    )
    .await;
    assert_eq!(before_newest.len(), 22, "`to` is exclusive");

    // Retention: events older than the cutoff go, a bounded batch at a time.
    use gateway_domain::AuditRepository;
    let store = app.store().await;
    let old: Vec<gateway_domain::AuditEvent> = (0..5)
        .map(|i| gateway_domain::AuditEvent {
            id: uuid::Uuid::now_v7(),
            at: chrono::Utc::now() - chrono::Duration::days(100 + i),
            request_id: None,
            session_id: None,
            subject: Some("old".into()),
            tenant: None,
            roles: Vec::new(),
            client_address: None,
            action: "tools/call".into(),
            server: None,
            target: None,
            outcome: gateway_domain::AuditOutcome::Ok,
            error_code: None,
            latency_us: 1,
            arguments_hash: None,
            arguments: None,
        })
        .collect();
    store.insert_events(&old).await.expect("inserted");
    assert_eq!(events(&app, "principal=old", 500).await.len(), 5);
    let cutoff = chrono::Utc::now() - chrono::Duration::days(90);
    assert_eq!(
        store
            .delete_events_before(cutoff, 2)
            .await
            .expect("deleted"),
        2
    );
    assert_eq!(
        store
            .delete_events_before(cutoff, 2)
            .await
            .expect("deleted"),
        2
    );
    assert_eq!(
        store
            .delete_events_before(cutoff, 2)
            .await
            .expect("deleted"),
        1
    );
    assert_eq!(
        store
            .delete_events_before(cutoff, 2)
            .await
            .expect("deleted"),
        0
    );
    assert!(events(&app, "principal=old", 500).await.is_empty());
    assert_eq!(
        events(&app, "action=tools/call&server=paged", 500)
            .await
            .len(),
        23,
        "recent events stay"
    );
    let _ = client.cancel().await;
    up.stop().await;
}

gateway_test_support::on_every_backend!(pages_and_filters);
