//! The Grafana dashboard and the Prometheus alert rules under `deploy/` use only metrics the
//! coordinator exports: every `ro_p2p_*` name in them has a `# TYPE` line in `/metrics` of a
//! coordinator in one of its modes (plain, cluster, `rathena` authentication).

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use common::*;
use ro_p2p_core::config::RathenaAuthSettings;
use ro_p2p_tokio::cluster::{Clock, InstanceId, MemoryWorld, StoreConfig, TokioClock};
use ro_p2p_tokio::server::{ClusterConfig, ServerConfig};

/// Every `ro_p2p_...` name in `text`, without a histogram's `_bucket`/`_sum`/`_count`.
fn names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("ro_p2p_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..end];
        let base =
            ["_bucket", "_sum", "_count"].iter().find_map(|s| name.strip_suffix(s)).unwrap_or(name);
        out.insert(base.to_owned());
        rest = &tail[end..];
    }
    out
}

/// The names with a `# TYPE` line in a metrics text.
fn exported(metrics: &str) -> BTreeSet<String> {
    metrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn dashboard_and_alerts_use_only_exported_metrics() {
    let mut all = BTreeSet::new();
    let plain = TestServer::open().await;
    all.extend(exported(&plain.metrics().await));

    let clock: Arc<dyn Clock> = Arc::new(TokioClock::new());
    let world = MemoryWorld::new(clock, StoreConfig::default());
    let store = Arc::new(world.store(InstanceId::new("a").unwrap()));
    let cluster = ClusterConfig { view_interval_ms: 50, ..ClusterConfig::store(store) };
    let clustered =
        TestServer::start(ServerConfig { cluster: Some(cluster), ..ServerConfig::default() }).await;
    all.extend(exported(&clustered.metrics().await));

    // Mode `rathena` with a database that is not there: its metrics are exported anyway.
    let rathena = ServerConfig {
        require_authentication: true,
        rathena_auth: Some(RathenaAuthSettings::new("mysql://u:p@127.0.0.1:1/ragnarok")),
        ..ServerConfig::default()
    };
    let rathena = TestServer::start(rathena).await;
    all.extend(exported(&rathena.metrics().await));

    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy");
    for file in ["grafana/ro-p2p-coordinator.json", "prometheus/ro-p2p-alerts.yml"] {
        let text = std::fs::read_to_string(deploy.join(file)).unwrap();
        let used = names(&text);
        assert!(used.len() >= 8, "{file} uses only {used:?}");
        let missing: Vec<&String> = used.difference(&all).collect();
        assert!(
            missing.is_empty(),
            "{file} uses metrics nobody exports: {missing:?}\nexported: {all:?}"
        );
    }
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(deploy.join("grafana/ro-p2p-coordinator.json")).unwrap(),
    )
    .unwrap();
    assert!(dashboard["panels"].as_array().is_some_and(|p| p.len() >= 8));
}
