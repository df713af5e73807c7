//! The HTTP API, `/metrics` and the status page over a real loopback socket.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use async_trait::async_trait;
use health_monitor::{HealthMonitor, LastSeenRegistry, Monitor, MonitorBuilder, Scope};
use health_types::{CheckKind, CheckResult, HealthCheckConfig, Probe, ProbeError, Status, Url};

use tokio_util::sync::CancellationToken;

use super::{ApiState, router};
use crate::{
    config::{ApiAccess, ApiToken},
    metrics::{Backlog, NotifyCounters, NotifyStats},
    server::{self, Limits},
    test_support::{content_type, json, request, request_with},
};

/// The `Accept` header Prometheus 2 sends: OpenMetrics first.
const OPENMETRICS: (&str, &str) = (
    "Accept",
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
);

#[derive(Debug)]
struct Fixed(bool);

#[async_trait]
impl Probe for Fixed {
    async fn check(&self, _url: &Url) -> Result<CheckResult, ProbeError> {
        Ok(if self.0 {
            CheckResult::healthy("HTTP 200 OK", Duration::from_millis(12))
        } else {
            CheckResult::unhealthy(
                CheckKind::Refused,
                "connection refused",
                Duration::from_millis(1),
            )
        })
    }
}

#[derive(Debug)]
struct Stats;

impl NotifyStats for Stats {
    fn counters(&self) -> Vec<(String, NotifyCounters)> {
        vec![(
            "ops".into(),
            NotifyCounters {
                sent: 3,
                failed: 1,
                retried: 2,
                dropped: 0,
            },
        )]
    }

    fn backlog(&self) -> Vec<(String, Backlog)> {
        vec![
            (
                "ops".into(),
                Backlog {
                    pending: 2,
                    oldest_seconds: 7.5,
                },
            ),
            ("phone".into(), Backlog::default()),
        ]
    }
}

async fn serve() -> (SocketAddr, Scope, Vec<Monitor>) {
    serve_with(ApiAccess::default()).await
}

/// Two monitors, `api` (healthy) and `db` (not), with F = 1, each built through `build`
/// (which may add a clock or a history sink) and started on `scope`; returned after their
/// first check.
async fn two_monitors(
    scope: &Scope,
    config: HealthCheckConfig,
    build: impl Fn(MonitorBuilder) -> MonitorBuilder,
) -> Vec<Monitor> {
    let mut monitors = Vec::new();
    for (name, healthy) in [("api", true), ("db", false)] {
        let builder = Monitor::builder(
            name,
            Url::parse(&format!("http://{name}.test/")).unwrap(),
            Arc::new(Fixed(healthy)),
        )
        .config(HealthCheckConfig {
            retries: 1,
            ..config.clone()
        })
        .last_seen(Arc::new(LastSeenRegistry::new()));
        let m = build(builder).build().unwrap();
        m.start(scope).unwrap();
        monitors.push(m);
    }
    for m in &monitors {
        m.subscribe().wait_for(|s| s.checks() >= 1).await.unwrap();
    }
    monitors
}

/// `state` on healthd's own server loop (which hands the API each client's address).
async fn serve_api(state: ApiState) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(server::serve(
        listener,
        None,
        router(state),
        Limits::default(),
        CancellationToken::new(),
    ));
    addr
}

/// The API of two monitors (`api` healthy, `db` not), checked once, open to `access`.
async fn serve_with(access: ApiAccess) -> (SocketAddr, Scope, Vec<Monitor>) {
    let scope = Scope::new();
    let monitors = two_monitors(&scope, HealthCheckConfig::default(), |b| b).await;
    let state = ApiState::new(monitors.clone(), Some(Arc::new(Stats))).with_access(access);
    (serve_api(state).await, scope, monitors)
}

#[tokio::test]
async fn monitors_list_and_one_use_the_godoxy_json_form() {
    let (addr, scope, _m) = serve().await;
    let list = json(addr, "GET", "/api/v1/monitors").await;
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["name"], "api");
    assert_eq!(list[0]["status"], "healthy");
    assert_eq!(list[0]["latency"], 12);
    assert!(list[0]["lastSeen"].as_i64().unwrap() > 0);
    assert_eq!(list[0]["config"]["interval"], 30_000_000_000_u64);
    assert_eq!(list[1]["status"], "unhealthy");
    assert_eq!(list[1]["failures"], 1);
    assert_eq!(list[1]["detail"], "connection refused");

    let (status, _, body) = request(addr, "GET", "/api/v1/monitors/db").await;
    assert_eq!(status, 200);
    assert!(body.contains("\"name\":\"db\""), "{body}");
    let (status, _, body) = request(addr, "GET", "/api/v1/monitors/nope").await;
    assert_eq!(status, 404);
    assert!(body.contains("no monitor named \\\"nope\\\""), "{body}");
    scope.shutdown().await;
}

#[tokio::test]
async fn health_map_has_durations_in_nanoseconds() {
    let (addr, scope, _m) = serve().await;
    let map = json(addr, "GET", "/api/v1/health").await;
    assert_eq!(map["api"]["status"], "healthy");
    assert_eq!(map["api"]["latency"], 12_000_000);
    assert!(map["api"]["uptime"].as_u64().is_some());
    assert_eq!(map["db"]["detail"], "connection refused");
    scope.shutdown().await;
}

#[tokio::test]
async fn check_and_restart_act_on_one_monitor() {
    let (addr, scope, monitors) = serve().await;
    let result = json(addr, "POST", "/api/v1/monitors/db/check").await;
    assert_eq!(
        result,
        serde_json::json!({"healthy": false, "kind": "refused", "detail": "connection refused", "latency": 1_000_000})
    );
    let (status, _, body) = request(addr, "POST", "/api/v1/monitors/api/restart").await;
    assert_eq!(status, 200, "{body}");
    assert!(monitors[0].is_running());
    let (status, _, _) = request(addr, "GET", "/api/v1/monitors/api/restart").await;
    assert_eq!(status, 405);
    scope.shutdown().await;
}

#[tokio::test]
async fn metrics_healthz_and_the_page() {
    let (addr, scope, _m) = serve().await;
    let (status, head, body) = request(addr, "GET", "/metrics").await;
    assert_eq!(status, 200);
    assert_eq!(
        content_type(&head),
        "text/plain; version=0.0.4; charset=utf-8"
    );
    for line in [
        "healthd_monitor_up{monitor=\"api\"} 1",
        "healthd_monitor_up{monitor=\"db\"} 0",
        "healthd_monitor_status{monitor=\"db\",status=\"unhealthy\"} 1",
        "healthd_monitor_consecutive_failures{monitor=\"db\"} 1",
        "healthd_monitor_checks_total{monitor=\"api\",result=\"healthy\"} 1",
        "healthd_monitor_transitions_total{monitor=\"db\"} 1",
        "healthd_monitor_latency_seconds{monitor=\"api\"} 0.012",
        "healthd_notifications_total{provider=\"ops\",outcome=\"retried\"} 2",
        "healthd_outbox_pending{notifier=\"ops\"} 2",
        "healthd_outbox_pending{notifier=\"phone\"} 0",
        "healthd_outbox_oldest_seconds{notifier=\"ops\"} 7.5",
        "healthd_outbox_oldest_seconds{notifier=\"phone\"} 0",
        "# HELP healthd_monitor_checks_total Checks completed since the monitor (re)started, by result",
        "# TYPE healthd_monitor_checks_total counter",
        "# TYPE healthd_monitor_check_duration_seconds histogram",
        "healthd_monitor_check_duration_seconds_bucket{monitor=\"api\",le=\"0.01\"} 0",
        "healthd_monitor_check_duration_seconds_bucket{monitor=\"api\",le=\"0.025\"} 1",
        "healthd_monitor_check_duration_seconds_bucket{monitor=\"api\",le=\"+Inf\"} 1",
        "healthd_monitor_check_duration_seconds_sum{monitor=\"api\"} 0.012",
        "healthd_monitor_check_duration_seconds_count{monitor=\"api\"} 1",
    ] {
        assert!(
            body.lines().any(|l| l == line),
            "missing {line:?} in\n{body}"
        );
    }
    assert!(!body.contains("# EOF"), "{body}");
    let (status, _, body) = request(addr, "GET", "/healthz").await;
    assert_eq!((status, body.as_str()), (200, "ok"));
    let (status, head, body) = request(addr, "GET", "/").await;
    assert_eq!(status, 200);
    assert!(head.to_ascii_lowercase().contains("text/html"));
    // Rendered on the server, and self-contained: it loads nothing from elsewhere.
    assert!(
        body.to_ascii_lowercase().starts_with("<!doctype html"),
        "{body}"
    );
    for external in ["src=\"http", "href=\"//", "@import"] {
        assert!(!body.contains(external), "{external}: {body}");
    }
    assert_eq!(Status::Healthy.to_string(), "healthy");
    scope.shutdown().await;
}

#[tokio::test]
async fn a_large_scrape_streams_whole_in_chunks() {
    let monitors: Vec<Monitor> = (0..1_500)
        .map(|i| {
            Monitor::builder(
                format!("m{i}"),
                Url::parse("http://m.test/").unwrap(),
                Arc::new(Fixed(true)),
            )
            .build()
            .unwrap()
        })
        .collect();
    let state = ApiState::new(monitors, None);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router(state)).await });
    let (status, head, body) = request_with(addr, "GET", "/metrics", &[OPENMETRICS]).await;
    assert_eq!(status, 200);
    assert!(
        head.to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "{head}"
    );
    assert!(body.len() > 10 * 32 * 1024, "{} bytes", body.len());
    let up: Vec<&str> = body
        .lines()
        .filter(|l| l.starts_with("healthd_monitor_up{"))
        .collect();
    assert_eq!(up.len(), 1_500);
    // Never started, so not good: 0.
    for i in [0, 749, 1_499] {
        let line = format!("healthd_monitor_up{{monitor=\"m{i}\"}} 0");
        assert!(up.contains(&line.as_str()), "missing {line}");
    }
    assert_eq!(body.lines().last(), Some("# EOF"));
}

/// Checks an OpenMetrics exposition the way a strict parser reads it: every sample
/// belongs to the family declared last (by name and, for a counter, `_total`; for a
/// histogram, `_bucket`/`_sum`/`_count`), every family has one `HELP` and one `TYPE`
/// before its samples and is declared once, and `# EOF` is the last line. Returns the
/// families with their types.
fn parse_openmetrics(text: &str) -> Vec<(String, String)> {
    let mut families: Vec<(String, String)> = Vec::new();
    let mut helped: Vec<String> = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.last(), Some(&"# EOF"), "the last line is # EOF");
    assert!(text.ends_with("# EOF\n"), "ends with a newline");
    for line in &lines[..lines.len() - 1] {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap();
            assert!(!helped.iter().any(|h| h == name), "HELP twice: {name}");
            assert!(
                !families.iter().any(|(f, _)| f == name),
                "HELP after TYPE: {name}"
            );
            helped.push(name.to_owned());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(
                helped.last().map(String::as_str) == Some(name),
                "TYPE {name} without HELP"
            );
            assert!(
                !families.iter().any(|(f, _)| f == name),
                "declared twice: {name}"
            );
            assert!(
                !name.ends_with("_total"),
                "a family is named without _total: {name}"
            );
            assert!(["gauge", "counter", "histogram"].contains(&kind), "{kind}");
            families.push((name.to_owned(), kind.to_owned()));
        } else {
            assert!(!line.starts_with('#'), "unexpected comment {line:?}");
            let series = line.split(['{', ' ']).next().unwrap();
            let (family, kind) = families.last().expect("a sample after a TYPE");
            let suffixes: &[&str] = match kind.as_str() {
                "counter" => &["_total"],
                "histogram" => &["_bucket", "_sum", "_count"],
                _ => &[""],
            };
            assert!(
                suffixes.iter().any(|s| series == format!("{family}{s}")),
                "{series} is not a sample of {kind} {family}"
            );
            let value = line.rsplit(' ').next().unwrap();
            assert!(
                value == "+Inf" || value.parse::<f64>().is_ok(),
                "value of {line:?}"
            );
        }
    }
    families
}

#[tokio::test]
async fn openmetrics_is_served_when_asked_for_and_parses() {
    let (addr, scope, _m) = serve().await;
    let (status, head, body) = request_with(addr, "GET", "/metrics", &[OPENMETRICS]).await;
    assert_eq!(status, 200);
    assert_eq!(
        content_type(&head),
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let families = parse_openmetrics(&body);
    for (family, kind) in [
        ("healthd_monitor_up", "gauge"),
        ("healthd_monitor_checks", "counter"),
        ("healthd_local_failures", "counter"),
        ("healthd_monitor_transitions", "counter"),
        ("healthd_notifications", "counter"),
        ("healthd_monitor_check_duration_seconds", "histogram"),
        ("healthd_monitor_phase_seconds", "gauge"),
        ("healthd_cert_expiry_seconds", "gauge"),
    ] {
        assert!(
            families.iter().any(|(f, k)| f == family && k == kind),
            "{family} {kind} in {families:?}"
        );
    }
    assert!(
        body.lines()
            .any(|l| l == "healthd_monitor_checks_total{monitor=\"api\",result=\"healthy\"} 1"),
        "{body}"
    );
    assert!(
        body.lines()
            .any(|l| l
                == "healthd_monitor_check_duration_seconds_bucket{monitor=\"api\",le=\"1.0\"} 1"),
        "{body}"
    );
    // Asking for it with q=0 is refusing it.
    let refuse = ("Accept", "application/openmetrics-text;q=0, text/plain");
    let (_, head, body) = request_with(addr, "GET", "/metrics", &[refuse]).await;
    assert_eq!(
        content_type(&head),
        "text/plain; version=0.0.4; charset=utf-8"
    );
    assert!(!body.contains("# EOF"));
    scope.shutdown().await;
}

/// `/probe` over real loopback upstreams: a module from `[modules]`, a monitor's config
/// as module, the defaults; and every 400.
mod probe {
    use std::collections::BTreeMap;

    use super::*;
    use crate::{
        probe_api::{MAX_CONCURRENT, ProbeModules},
        test_support::{http_upstream as upstream, recording_upstream, refused_port},
    };

    async fn serve_probes(modules: ProbeModules) -> (SocketAddr, Scope) {
        let scope = Scope::new();
        let monitors = two_monitors(&scope, HealthCheckConfig::default(), |b| b).await;
        let state = ApiState::new(monitors, None).with_probe_modules(modules);
        (serve_api(state).await, scope)
    }

    fn modules() -> ProbeModules {
        let mut modules = BTreeMap::new();
        // Only 404 is healthy for this module.
        modules.insert(
            "want_404".to_owned(),
            toml::from_str::<health_types::HealthCheckOverrides>("expected_status = [404]")
                .unwrap()
                .resolve()
                .unwrap(),
        );
        ProbeModules::new(HealthCheckConfig::default(), modules)
    }

    fn has(body: &str, line: &str) -> bool {
        body.lines().any(|l| l == line)
    }

    #[tokio::test]
    async fn probes_answer_like_blackbox() {
        let (addr, scope) = serve_probes(modules()).await;
        let ok = upstream(200).await;
        let busy = upstream(503).await;

        let (status, head, body) =
            request(addr, "GET", &format!("/probe?target=http://{ok}/")).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            content_type(&head),
            "text/plain; version=0.0.4; charset=utf-8"
        );
        assert!(has(&body, "probe_success 1"), "{body}");
        assert!(has(&body, "probe_http_status_code 200"), "{body}");
        assert!(!body.contains("probe_failure_kind"), "{body}");
        assert!(
            body.contains("# TYPE probe_duration_seconds gauge"),
            "{body}"
        );

        let (_, _, body) = request(addr, "GET", &format!("/probe?target=http://{busy}/x")).await;
        assert!(has(&body, "probe_success 0"), "{body}");
        assert!(has(&body, "probe_http_status_code 503"), "{body}");
        assert!(
            has(&body, "probe_failure_kind{kind=\"status\"} 1"),
            "{body}"
        );

        // The module's expected_status makes a 200 a failure.
        let path = format!("/probe?module=want_404&target=http://{ok}/");
        let (_, _, body) = request(addr, "GET", &path).await;
        assert!(has(&body, "probe_success 0"), "{body}");

        // A monitor's name is a module too.
        let path = format!("/probe?module=api&target=http://{ok}/");
        let (status, _, body) = request(addr, "GET", &path).await;
        assert_eq!(status, 200, "{body}");
        assert!(has(&body, "probe_success 1"), "{body}");

        // A refused TCP connection: a failure of kind refused. The socket is bound and
        // never listens, so no one else can take the port while the test runs.
        let (_held, closed) = refused_port();
        let (_, _, body) = request(addr, "GET", &format!("/probe?target=tcp://{closed}")).await;
        assert!(has(&body, "probe_success 0"), "{body}");
        assert!(
            has(&body, "probe_failure_kind{kind=\"refused\"} 1"),
            "{body}"
        );
        assert!(has(&body, "probe_http_status_code 0"), "{body}");
        scope.shutdown().await;
    }

    #[tokio::test]
    async fn bad_requests_name_the_problem() {
        let (addr, scope) = serve_probes(modules()).await;
        for (path, wanted) in [
            ("/probe", "missing `target`"),
            ("/probe?target=", "missing `target`"),
            (
                "/probe?target=http://127.0.0.1:1/&module=nope",
                "unknown `module` = \"nope\"",
            ),
            (
                "/probe?target=not%20a%20url",
                // Without `://`, `http://` was put in front.
                "invalid `target` = \"http://not a url\"",
            ),
            (
                "/probe?target=http://admin:s3cret@bad%20host/",
                "invalid `target` = \"http://admin:***@bad host/\"",
            ),
            (
                "/probe?target=file:///etc/passwd",
                "does not check file:// URLs",
            ),
            (
                "/probe?target=gopher://127.0.0.1:1/",
                "cannot check `target`",
            ),
        ] {
            let (status, head, body) = request(addr, "GET", path).await;
            assert_eq!(status, 400, "{path}: {body}");
            assert!(content_type(&head).starts_with("text/plain"), "{head}");
            assert!(body.contains(wanted), "{path}: {body}");
            assert!(!body.contains("s3cret"), "{path}: {body}");
        }
        let headers = [("X-Prometheus-Scrape-Timeout-Seconds", "soon")];
        let (status, _, body) =
            request_with(addr, "GET", "/probe?target=http://127.0.0.1:1/", &headers).await;
        assert_eq!(status, 400, "{body}");
        assert!(
            body.contains("X-Prometheus-Scrape-Timeout-Seconds"),
            "{body}"
        );
        scope.shutdown().await;
    }

    #[tokio::test]
    async fn past_the_concurrency_bound_the_answer_is_503() {
        let modules = modules();
        let held = Arc::clone(modules.permits_for_tests())
            .acquire_many_owned(u32::try_from(MAX_CONCURRENT).unwrap())
            .await
            .unwrap();
        let (addr, scope) = serve_probes(modules).await;
        let ok = upstream(200).await;
        let path = format!("/probe?target=http://{ok}/");
        let (status, _, body) = request(addr, "GET", &path).await;
        assert_eq!(status, 503, "{body}");
        assert!(body.contains("too many probes at once"), "{body}");
        drop(held);
        let (status, _, body) = request(addr, "GET", &path).await;
        assert_eq!(status, 200, "{body}");
        scope.shutdown().await;
    }

    /// Every byte but ASCII letters and digits percent-encoded, for a query value.
    fn encode(text: &str) -> String {
        text.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() {
                    char::from(b).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect()
    }

    /// Health-check keys as a config.
    fn config(toml: &str) -> HealthCheckConfig {
        toml::from_str::<health_types::HealthCheckOverrides>(toml)
            .unwrap()
            .resolve()
            .unwrap()
    }

    /// `/probe` over `modules`, with one monitor `secret` of `url` and `keys` (not
    /// started: only its config and URL are used).
    async fn serve_with_monitor(modules: ProbeModules, url: &str, keys: &str) -> SocketAddr {
        let monitor = Monitor::builder("secret", Url::parse(url).unwrap(), Arc::new(Fixed(true)))
            .config(config(keys))
            .build()
            .unwrap();
        serve_api(ApiState::new(vec![monitor], None).with_probe_modules(modules)).await
    }

    #[tokio::test]
    async fn a_browser_request_from_another_site_is_refused() {
        let (addr, scope) = serve_probes(modules()).await;
        let ok = upstream(200).await;
        let path = format!("/probe?target=http://{ok}/");
        for headers in [
            &[("Sec-Fetch-Site", "cross-site")][..],
            &[("Sec-Fetch-Site", "Same-Site")],
            &[("Origin", "http://evil.example")],
            &[("Origin", "null")],
            // Same host, another port: another origin.
            &[
                ("Host", "127.0.0.1:8090"),
                ("Origin", "http://127.0.0.1:8091"),
            ],
        ] {
            let (status, head, body) = request_with(addr, "GET", &path, headers).await;
            assert_eq!(status, 403, "{headers:?}: {body}");
            assert!(content_type(&head).starts_with("text/plain"), "{head}");
            assert!(body.contains("refused"), "{headers:?}: {body}");
        }
        // What Prometheus and curl send (neither header), and the server's own pages.
        for headers in [
            &[][..],
            &[("Sec-Fetch-Site", "same-origin")],
            &[("Sec-Fetch-Site", "none")],
            &[
                ("Host", "127.0.0.1:8090"),
                ("Origin", "http://127.0.0.1:8090"),
            ],
        ] {
            let (status, _, body) = request_with(addr, "GET", &path, headers).await;
            assert_eq!(status, 200, "{headers:?}: {body}");
            assert!(has(&body, "probe_success 1"), "{body}");
        }
        scope.shutdown().await;
    }

    /// The next request head `upstream` received.
    async fn next_head(heads: &mut tokio::sync::mpsc::UnboundedReceiver<String>) -> String {
        tokio::time::timeout(Duration::from_secs(10), heads.recv())
            .await
            .unwrap()
            .unwrap()
            .to_ascii_lowercase()
    }

    #[tokio::test]
    async fn credentials_go_only_to_the_targets_they_were_written_for() {
        let (own, mut own_heads) = recording_upstream(200).await;
        let (other, mut other_heads) = recording_upstream(200).await;
        let mut tables = BTreeMap::new();
        tables.insert(
            "probing".to_owned(),
            config("headers = { X-Module = \"m0dule\" }"),
        );
        let defaults = config("headers = { X-Default = \"d3fault\" }");
        let addr = serve_with_monitor(
            ProbeModules::new(defaults, tables),
            &format!("http://user:pw@{own}/health"),
            "headers = { X-Secret = \"t0ken\" }",
        )
        .await;
        let probe = |query: String| async move {
            let (status, _, body) = request(addr, "GET", &format!("/probe?{query}")).await;
            assert_eq!(status, 200, "{query}: {body}");
            assert!(has(&body, "probe_success 1"), "{query}: {body}");
        };

        // The monitor's own origin: its headers and its user and password go along.
        probe(format!("module=secret&target=http://{own}/other")).await;
        let head = next_head(&mut own_heads).await;
        assert!(head.contains("x-secret: t0ken"), "{head}");
        assert!(head.contains("authorization: basic dxnlcjpwdw=="), "{head}");
        // Another port on the same host: neither.
        probe(format!("module=secret&target=http://{other}/")).await;
        let head = next_head(&mut other_heads).await;
        assert!(!head.contains("x-secret"), "{head}");
        assert!(!head.contains("authorization"), "{head}");
        // (Another scheme to the same host and port: see probe_api's unit tests.)

        // [defaults]' headers are not sent without a module.
        probe(format!("target=http://{other}/")).await;
        let head = next_head(&mut other_heads).await;
        assert!(!head.contains("x-default"), "{head}");
        // A [modules] table is used as written, wherever it is sent.
        probe(format!("module=probing&target=http://{other}/")).await;
        let head = next_head(&mut other_heads).await;
        assert!(head.contains("x-module: m0dule"), "{head}");
    }

    #[tokio::test]
    async fn the_target_is_the_whole_url() {
        let (up, mut heads) = recording_upstream(200).await;
        let mut tables = BTreeMap::new();
        tables.insert("plain".to_owned(), config("expected_status = [200]"));
        tables.insert("deep".to_owned(), config("path = \"/deeper?z=9\""));
        // [defaults] and the monitor both have a path of their own.
        let addr = serve_with_monitor(
            ProbeModules::new(config("path = \"/healthz\""), tables),
            &format!("http://{up}/monitor-path"),
            "path = \"/ready\"",
        )
        .await;
        for (query, wanted) in [
            (format!("target=http://{up}/x/?y=1"), "get /x/?y=1 http/1.1"),
            (
                format!(
                    "target={}",
                    encode(&format!("http://{up}/a/metrics?y=1&w=2"))
                ),
                "get /a/metrics?y=1&w=2 http/1.1",
            ),
            // Without `://`, the target is http.
            (
                format!("target={}", encode(&format!("{up}/?y=2"))),
                "get /?y=2 http/1.1",
            ),
            (
                format!("module=secret&target=http://{up}/"),
                "get / http/1.1",
            ),
            (
                format!("module=plain&target=http://{up}/a/"),
                "get /a/ http/1.1",
            ),
            // A table's own path is joined on, as for a monitor.
            (
                format!(
                    "module=deep&target={}",
                    encode(&format!("http://{up}/a?y=3"))
                ),
                "get /a/deeper?y=3&z=9 http/1.1",
            ),
        ] {
            let (status, _, body) = request(addr, "GET", &format!("/probe?{query}")).await;
            assert_eq!(status, 200, "{query}: {body}");
            assert!(has(&body, "probe_success 1"), "{query}: {body}");
            let head = next_head(&mut heads).await;
            assert!(head.starts_with(wanted), "{query}: {head}");
        }
    }

    #[tokio::test]
    async fn a_password_never_leaves_in_a_400() {
        let (addr, scope) = serve_probes(modules()).await;
        for password in [
            "pa/ss",
            "pa?ss",
            "pa#ss",
            "p@ss",
            "pa/s?s#w@rd",
            "p%2Fss%40x",
        ] {
            // Unparsable: a space in the host.
            let target = format!("http://admin:{password}@bad host/x");
            let path = format!("/probe?target={}", encode(&target));
            let (status, _, body) = request(addr, "GET", &path).await;
            assert_eq!(status, 400, "{password}: {body}");
            assert!(body.contains("invalid `target`"), "{password}: {body}");
            assert!(body.contains("admin:***@"), "{password}: {body}");
            assert!(!body.contains(password), "{password}: {body}");
        }
        // Parsable, refused for its scheme: shown redacted.
        let path = format!(
            "/probe?target={}",
            encode("gopher://admin:p%40ss@127.0.0.1:1/")
        );
        let (status, _, body) = request(addr, "GET", &path).await;
        assert_eq!(status, 400, "{body}");
        assert!(body.contains("gopher://admin:***@127.0.0.1:1/"), "{body}");
        assert!(!body.contains("p%40ss") && !body.contains("p@ss"), "{body}");
        scope.shutdown().await;
    }
}

/// `POST .../check` runs the monitor's own next check (SPEC §9.3), the monitor JSON and
/// `/metrics` show no password, and `/metrics` counts local failures.
mod monitor_checks {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::{
        body::Body,
        extract::ConnectInfo,
        http::{Request, StatusCode},
    };
    use http_body_util::BodyExt;
    use hyper::service::Service;
    use hyper_util::service::TowerToHyperService;

    use super::*;

    /// Counts its calls; answers healthy after 1 s (or fails on our side, when `local`).
    #[derive(Debug, Default)]
    struct Counting {
        calls: AtomicUsize,
        local: bool,
    }

    #[async_trait]
    impl Probe for Counting {
        async fn check(&self, _url: &Url) -> Result<CheckResult, ProbeError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if self.local {
                return Err(ProbeError::new(CheckKind::Local, "too many open files"));
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
            Ok(CheckResult::healthy("HTTP 200 OK", Duration::from_secs(1)))
        }
    }

    /// A started monitor `name` of `url` checked hourly by `probe`, after its first check.
    async fn checked_once(name: &str, url: &str, probe: Arc<Counting>) -> (Scope, Monitor) {
        let m = Monitor::builder(name, Url::parse(url).unwrap(), probe)
            .config(HealthCheckConfig {
                interval: Duration::from_secs(3600),
                jitter: Some(Duration::ZERO),
                ..Default::default()
            })
            .last_seen(Arc::new(LastSeenRegistry::new()))
            .build()
            .unwrap();
        let scope = Scope::new();
        m.start(&scope).unwrap();
        m.subscribe().wait_for(|s| s.checks() >= 1).await.unwrap();
        (scope, m)
    }

    /// `router(state)` on a loopback socket, with the clients' addresses.
    async fn serve_state(state: ApiState) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
        tokio::spawn(async move { axum::serve(listener, app).await });
        addr
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_check_requests_share_one_probe_call() {
        // In process rather than over a socket, so that the paused clock holds the check
        // (1 s) until every request has reached the monitor: no timing involved.
        let probe = Arc::new(Counting::default());
        let (scope, m) = checked_once("api", "http://api.test/", probe.clone()).await;
        assert_eq!(probe.calls.load(Ordering::SeqCst), 1);
        let service = TowerToHyperService::new(router(ApiState::new(vec![m.clone()], None)));
        let post = |service: &TowerToHyperService<axum::Router>| {
            let mut request = Request::post("/api/v1/monitors/api/check")
                .body(Body::empty())
                .unwrap();
            // A loopback client, as the server would have it.
            request
                .extensions_mut()
                .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40_000))));
            service.call(request)
        };

        let mut requests = tokio::task::JoinSet::new();
        for _ in 0..20 {
            requests.spawn(post(&service));
        }
        let mut bodies = Vec::new();
        while let Some(response) = requests.join_next().await {
            let response = response.unwrap().unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            let body = response.into_body().collect().await.unwrap().to_bytes();
            bodies.push(serde_json::from_slice::<serde_json::Value>(&body).unwrap());
        }
        assert_eq!(
            probe.calls.load(Ordering::SeqCst),
            2,
            "one probe call for 20 requests"
        );
        let expected = serde_json::json!({"healthy": true, "kind": "ok", "detail": "HTTP 200 OK", "latency": 1_000_000_000_u64});
        assert!(bodies.iter().all(|b| *b == expected), "{bodies:?}");
        assert_eq!(m.snapshot().checks(), 2, "fed to the monitor as one check");

        m.finish("test");
        let response = post(&service).await.unwrap();
        assert_eq!(response.status(), StatusCode::CONFLICT);
        assert_eq!(probe.calls.load(Ordering::SeqCst), 2);
        scope.shutdown().await;
    }

    #[tokio::test]
    async fn no_password_is_shown_and_local_failures_are_counted() {
        let probe = Arc::new(Counting {
            local: true,
            ..Counting::default()
        });
        let (scope, m) = checked_once("db", "http://admin:s3cret@db.test/", probe).await;
        let addr = serve_state(ApiState::new(vec![m.clone()], None)).await;
        let one = json(addr, "GET", "/api/v1/monitors/db").await;
        assert_eq!(one["url"], "http://admin:***@db.test/");
        assert_eq!(
            one["status"], "starting",
            "a local result changes no status"
        );
        let local = json(addr, "POST", "/api/v1/monitors/db/check").await;
        assert_eq!(local["kind"], "local");
        for path in ["/api/v1/monitors", "/api/v1/health", "/metrics"] {
            let (status, _, body) = request(addr, "GET", path).await;
            assert_eq!(status, 200);
            assert!(!body.contains("s3cret"), "{path}: {body}");
            if path == "/metrics" {
                let line = "healthd_local_failures_total{monitor=\"db\"} 2";
                assert!(body.lines().any(|l| l == line), "{body}");
                assert!(
                    body.contains("# TYPE healthd_local_failures_total counter"),
                    "{body}"
                );
            }
        }
        scope.shutdown().await;
    }
}

const TOKEN: &str = "Zm9vYmFy-7c1e";
const RESTART: &str = "/api/v1/monitors/api/restart";

fn with_token(public_read: bool) -> ApiAccess {
    ApiAccess {
        token: Some(ApiToken::try_new(TOKEN).unwrap()),
        public_read,
    }
}

#[tokio::test]
async fn with_a_token_writes_need_it_and_reads_stay_public() {
    let (addr, scope, monitors) = serve_with(with_token(true)).await;
    let (status, head, body) = request(addr, "POST", RESTART).await;
    assert_eq!(status, 401, "{body}");
    assert!(
        head.to_ascii_lowercase()
            .contains("www-authenticate: bearer"),
        "{head}"
    );
    let error: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(
        error["error"].as_str().unwrap().contains("Bearer"),
        "{body}"
    );
    let wrong = [("Authorization", "Bearer Zm9vYmFy-7c1f")];
    let (status, _, body) = request_with(addr, "POST", RESTART, &wrong).await;
    assert_eq!(status, 401, "{body}");
    assert!(!body.contains(TOKEN), "{body}");
    let good = format!("Bearer {TOKEN}");
    let (status, _, body) = request_with(addr, "POST", RESTART, &[("Authorization", &good)]).await;
    assert_eq!(status, 200, "{body}");
    assert!(monitors[0].is_running());
    for path in ["/api/v1/monitors", "/metrics", "/", "/healthz"] {
        let (status, _, _) = request(addr, "GET", path).await;
        assert_eq!(status, 200, "{path}");
    }
    scope.shutdown().await;
}

#[tokio::test]
async fn public_read_false_closes_reads_but_not_healthz() {
    let (addr, scope, _m) = serve_with(with_token(false)).await;
    for path in ["/api/v1/monitors", "/api/v1/health", "/metrics", "/"] {
        let (status, _, body) = request(addr, "GET", path).await;
        assert_eq!(status, 401, "{path}: {body}");
    }
    let good = format!("Bearer {TOKEN}");
    let (status, _, body) =
        request_with(addr, "GET", "/api/v1/monitors", &[("Authorization", &good)]).await;
    assert_eq!(status, 200, "{body}");
    let (status, _, body) = request(addr, "GET", "/healthz").await;
    assert_eq!((status, body.as_str()), (200, "ok"));
    scope.shutdown().await;
}

#[tokio::test]
async fn a_write_from_another_origin_is_refused_even_with_the_token() {
    for access in [ApiAccess::default(), with_token(true)] {
        let (addr, scope, _m) = serve_with(access).await;
        let good = format!("Bearer {TOKEN}");
        let own = format!("http://{addr}");
        let host = addr.to_string();
        for origin in ["http://evil.example", "null", &format!("https://{addr}")] {
            let headers = [
                ("Host", host.as_str()),
                ("Origin", origin),
                ("Authorization", &good),
            ];
            let (status, _, body) = request_with(addr, "POST", RESTART, &headers).await;
            assert_eq!(status, 403, "{origin}: {body}");
            assert!(body.contains("cross-origin"), "{body}");
        }
        let headers = [
            ("Host", host.as_str()),
            ("Origin", own.as_str()),
            ("Authorization", &good),
        ];
        let (status, _, body) = request_with(addr, "POST", RESTART, &headers).await;
        assert_eq!(status, 200, "{body}");
        scope.shutdown().await;
    }
}

#[tokio::test]
async fn without_a_token_a_loopback_client_may_write() {
    // The other half, a client elsewhere refused with 403, is `auth`'s unit test: this
    // host has only loopback addresses to test from.
    let (addr, scope, monitors) = serve().await;
    let (status, _, body) = request(addr, "POST", RESTART).await;
    assert_eq!(status, 200, "{body}");
    assert!(monitors[0].is_running());
    scope.shutdown().await;
}

/// SPEC §9.2: the history keys, the history endpoint, the event stream and the badges.
mod history {
    use std::{
        sync::Mutex,
        time::{SystemTime, UNIX_EPOCH},
    };

    use health_store::{Store, StoreOptions};
    use health_types::{Clock, HistoryReader, HistorySink};
    use tokio::{
        io::{AsyncReadExt, AsyncWriteExt},
        net::TcpStream,
    };

    use super::*;
    use crate::{history::HistoryCache, test_support::content_type};

    /// 2023-11-14 22:13:20 UTC.
    const T0: u64 = 1_700_000_000;

    /// A wall clock that stands still until moved.
    #[derive(Debug)]
    struct FakeClock(Mutex<SystemTime>);

    impl FakeClock {
        fn at(secs: u64) -> Arc<Self> {
            Arc::new(FakeClock(Mutex::new(
                UNIX_EPOCH + Duration::from_secs(secs),
            )))
        }

        fn advance(&self, by: Duration) {
            *self.0.lock().unwrap() += by;
        }
    }

    impl Clock for FakeClock {
        fn now(&self) -> SystemTime {
            *self.0.lock().unwrap()
        }
    }

    /// What [`serve_history`] sets up.
    struct Served {
        addr: SocketAddr,
        scope: Scope,
        monitors: Vec<Monitor>,
        cache: HistoryCache,
        clock: Arc<FakeClock>,
    }

    /// `api` (healthy, group `edge`) and `db` (refused, F = 1) reporting to an in-memory
    /// store on a fake wall clock at [`T0`], after their first check, served with the
    /// store's history (read once).
    async fn serve_history() -> Served {
        let clock = FakeClock::at(T0);
        let store = Arc::new(
            Store::open(
                ":memory:",
                StoreOptions {
                    clock: clock.clone(),
                    ..StoreOptions::default()
                },
            )
            .unwrap(),
        );
        let scope = Scope::new();
        let config = HealthCheckConfig {
            jitter: Some(Duration::ZERO),
            ..Default::default()
        };
        let monitors = two_monitors(&scope, config, |builder| {
            builder
                .clock(clock.clone())
                .history(store.clone() as Arc<dyn HistorySink>)
        })
        .await;
        let cache = HistoryCache::new(store as Arc<dyn HistoryReader>, clock.clone());
        cache.refresh().await.unwrap();
        let state = ApiState::new(monitors.clone(), None)
            .with_history(cache.clone())
            .with_groups(vec![Some("edge".into()), None])
            .with_clock(clock.clone());
        let addr = serve_api(state).await;
        Served {
            addr,
            scope,
            monitors,
            cache,
            clock,
        }
    }

    #[tokio::test]
    async fn monitor_json_has_the_history_keys_with_null_uptimes_without_history() {
        let (addr, scope, _m) = serve().await;
        let list = json(addr, "GET", "/api/v1/monitors").await;
        for m in list.as_array().unwrap() {
            for key in ["uptime24h", "uptime7d", "uptime30d"] {
                assert!(m[key].is_null(), "{key}: {m}");
            }
            assert!(m["lastCheck"].as_i64().unwrap() > 1_700_000_000, "{m}");
        }
        assert_eq!(list[0]["downSince"], 0, "api is healthy");
        let down_since = list[1]["downSince"].as_i64().unwrap();
        assert!(
            down_since > 1_700_000_000 && down_since <= list[1]["lastCheck"].as_i64().unwrap(),
            "{}",
            list[1]
        );
        let one = json(addr, "GET", "/api/v1/monitors/db").await;
        assert_eq!(one["downSince"], down_since);
        let (status, _, body) = request(addr, "POST", "/api/v1/monitors/db/restart").await;
        assert_eq!(status, 200, "{body}");
        let restarted: serde_json::Value = serde_json::from_str(&body).unwrap();
        for key in [
            "uptime24h",
            "uptime7d",
            "uptime30d",
            "downSince",
            "lastCheck",
        ] {
            assert!(restarted.get(key).is_some(), "{key}: {body}");
        }
        scope.shutdown().await;
    }

    #[tokio::test]
    async fn uptime_end_to_end_from_checks_through_the_store_to_the_api() {
        let s = serve_history().await;
        // Ten minutes on, read again: `api` was up the whole time, `db` down.
        s.clock.advance(Duration::from_secs(600));
        s.cache.refresh().await.unwrap();
        let list = json(s.addr, "GET", "/api/v1/monitors").await;
        assert_eq!(list[0]["name"], "api");
        for key in ["uptime24h", "uptime7d", "uptime30d"] {
            assert_eq!(list[0][key], 1.0, "{key}: {}", list[0]);
            assert_eq!(list[1][key], 0.0, "{key}: {}", list[1]);
        }
        assert_eq!(list[1]["downSince"], T0);
        assert_eq!(list[1]["lastCheck"], T0);
        // The views the page renders carry the same, with the group and the summary.
        let (status, _, body) = request(s.addr, "GET", "/badge/api/uptime/24h.svg").await;
        assert_eq!(status, 200);
        assert!(body.contains(">100%<"), "{body}");
        let (_, _, body) = request(s.addr, "GET", "/badge/db/uptime/30d.svg").await;
        assert!(body.contains(">0%<"), "{body}");
        s.scope.shutdown().await;
        drop(s.monitors);
    }

    #[tokio::test]
    async fn views_carry_groups_summaries_and_why_a_monitor_stopped() {
        let s = serve_history().await;
        s.monitors[1].finish("test");
        // A state of its own over the same monitors: views are built from them.
        let state = ApiState::new(s.monitors.clone(), None)
            .with_history(s.cache.clone())
            .with_groups(vec![Some("edge".into()), None]);
        let views = state.views();
        assert_eq!(views[0].group.as_deref(), Some("edge"));
        assert_eq!(views[1].group, None);
        assert!(views[0].summary.is_some());
        assert_eq!(views[0].stopped_why, None);
        assert_eq!(views[1].stopped_why.as_deref(), Some("stopped: test"));
        s.scope.shutdown().await;
        assert_eq!(
            state.views()[0].stopped_why.as_deref(),
            Some("stopped: healthd is shutting down")
        );
    }

    #[tokio::test]
    async fn history_answers_changes_and_latency_in_the_span() {
        let s = serve_history().await;
        s.clock.advance(Duration::from_secs(90));
        let history = json(s.addr, "GET", "/api/v1/monitors/db/history").await;
        assert_eq!(
            history["changes"],
            serde_json::json!([
                {"time": T0, "from": "unknown", "to": "starting", "detail": ""},
                {"time": T0, "from": "starting", "to": "unhealthy", "detail": "connection refused"},
            ])
        );
        let latency = history["latency"].as_array().unwrap();
        assert_eq!(latency.len(), 1, "{history}");
        assert_eq!(
            latency[0],
            serde_json::json!({"time": T0 - T0 % 60, "step": 60, "count": 1, "avg_ms": 1.0, "min_ms": 1.0, "max_ms": 1.0, "failures": 1})
        );
        // A span before anything happened is empty; one reaching back past 48 h is in
        // hours.
        let before = format!(
            "/api/v1/monitors/db/history?since={}&until={}",
            T0 - 7200,
            T0 - 3600
        );
        let empty = json(s.addr, "GET", &before).await;
        assert_eq!(empty, serde_json::json!({"changes": [], "latency": []}));
        let long = format!("/api/v1/monitors/api/history?since={}", T0 - 72 * 3600);
        let long = json(s.addr, "GET", &long).await;
        assert_eq!(long["latency"][0]["step"], 3600, "{long}");
        assert_eq!(long["changes"].as_array().unwrap().len(), 2, "{long}");
        s.scope.shutdown().await;
    }

    #[tokio::test]
    async fn history_refuses_bad_spans_and_unknown_monitors() {
        let s = serve_history().await;
        for (query, wanted) in [
            ("since=abc", "invalid `since` = \"abc\""),
            ("until=-5", "invalid `until` = \"-5\""),
            ("since=1.5", "invalid `since` = \"1.5\""),
            (
                "since=200&until=100",
                "`since` = 200 is after `until` = 100",
            ),
        ] {
            let path = format!("/api/v1/monitors/api/history?{query}");
            let (status, _, body) = request(s.addr, "GET", &path).await;
            assert_eq!(status, 400, "{query}: {body}");
            let error: serde_json::Value = serde_json::from_str(&body).unwrap();
            let error = error["error"].as_str().unwrap();
            assert!(error.starts_with(wanted), "{query}: {error}");
        }
        let (status, _, body) = request(s.addr, "GET", "/api/v1/monitors/nope/history").await;
        assert_eq!(status, 404, "{body}");
        s.scope.shutdown().await;

        // Without a history store: 503.
        let (addr, scope, _m) = serve().await;
        let (status, _, body) = request(addr, "GET", "/api/v1/monitors/api/history").await;
        assert_eq!(status, 503, "{body}");
        scope.shutdown().await;
    }

    /// Reads the head of the answer on `stream` (10 s at most); what came after it is
    /// left in `seen`.
    async fn read_head(stream: &mut TcpStream, seen: &mut String) -> String {
        let mut buf = [0; 8192];
        while !seen.contains("\r\n\r\n") {
            let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
                .await
                .expect("a head within 10 s")
                .unwrap();
            assert!(read > 0, "the stream ended: {seen}");
            seen.push_str(std::str::from_utf8(&buf[..read]).unwrap());
        }
        let end = seen.find("\r\n\r\n").unwrap() + 4;
        seen.drain(..end).collect()
    }

    /// Reads the event stream on `stream` until `n` more `status` events have come (10 s
    /// at most); returns their data, parsed.
    async fn next_events(
        stream: &mut TcpStream,
        seen: &mut String,
        n: usize,
    ) -> Vec<serde_json::Value> {
        let mut buf = [0; 8192];
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            // Complete events end with a blank line; chunk sizes sit on lines of their own.
            if let Some(end) = nth_event_end(seen, n) {
                let events: String = seen.drain(..end).collect();
                return events
                    .lines()
                    .filter_map(|line| line.strip_prefix("data: "))
                    .map(|data| serde_json::from_str(data).unwrap())
                    .collect();
            }
            let read = tokio::time::timeout_at(deadline, stream.read(&mut buf))
                .await
                .expect("events within 10 s")
                .unwrap();
            assert!(read > 0, "the stream ended: {seen}");
            seen.push_str(std::str::from_utf8(&buf[..read]).unwrap());
        }
    }

    /// Where the `n`-th complete `status` event of `text` ends.
    fn nth_event_end(text: &str, n: usize) -> Option<usize> {
        let mut at = 0;
        for _ in 0..n {
            let start = at + text[at..].find("event: status\n")?;
            at = start + text[start..].find("\n\n")? + 2;
        }
        Some(at)
    }

    #[tokio::test]
    async fn events_send_every_monitor_then_each_change() {
        let s = serve_history().await;
        let mut stream = TcpStream::connect(s.addr).await.unwrap();
        stream
            .write_all(
                b"GET /api/v1/events HTTP/1.1\r\nHost: test\r\nAccept: text/event-stream\r\n\r\n",
            )
            .await
            .unwrap();
        let mut seen = String::new();
        let head = read_head(&mut stream, &mut seen).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert_eq!(content_type(&head), "text/event-stream");
        let first = next_events(&mut stream, &mut seen, 2).await;
        let mut one = json(s.addr, "GET", "/api/v1/monitors/api").await;
        let mut first = first;
        // All but the seconds since the start, which run on.
        for json in [&mut first[0], &mut one] {
            json.as_object_mut().unwrap().remove("uptime");
        }
        assert_eq!(first[0], one, "the same JSON as /api/v1/monitors/api");
        assert_eq!(first[1]["name"], "db");
        assert_eq!(first[1]["status"], "unhealthy");

        // A check of `db` changes its snapshot: one event, db's.
        s.clock.advance(Duration::from_secs(5));
        json(s.addr, "POST", "/api/v1/monitors/db/check").await;
        // (Its check being due now is a change too: wait for the one it made.)
        let mut next = serde_json::Value::Null;
        while next["lastCheck"] != T0 + 5 {
            next = next_events(&mut stream, &mut seen, 1).await.remove(0);
            assert_eq!(next["name"], "db", "{next}");
        }
        assert_eq!(next["downSince"], T0);
        assert_eq!(next["failures"], 2);

        // A restart of `api` shows `stopped`... and then `starting` or what its first
        // check made of it: whatever came, the last event says `healthy`.
        json(s.addr, "POST", "/api/v1/monitors/api/restart").await;
        let mut last = serde_json::Value::Null;
        while last["status"] != "healthy" {
            last = next_events(&mut stream, &mut seen, 1).await.remove(0);
            assert_eq!(last["name"], "api", "{last}");
        }
        s.scope.shutdown().await;
    }

    #[tokio::test]
    async fn a_slow_event_client_gets_each_changed_monitor_once_not_a_backlog() {
        use futures_util::{FutureExt, StreamExt};

        let (_addr, scope, monitors) = serve().await;
        let state = ApiState::new(monitors.clone(), None);
        let mut updates = std::pin::pin!(super::super::updates(&state));
        assert_eq!(updates.next().await, Some(0));
        assert_eq!(updates.next().await, Some(1));
        assert_eq!(updates.next().now_or_never(), None, "nothing changed");
        // Many changes while the client takes nothing...
        for _ in 0..50 {
            monitors[1].check_now().await.unwrap();
        }
        // ...are one update, after which the client is up to date.
        assert_eq!(updates.next().await, Some(1));
        assert_eq!(updates.next().now_or_never(), None);
        assert_eq!(monitors[1].snapshot().failures, 51);
        monitors[0].check_now().await.unwrap();
        assert_eq!(updates.next().await, Some(0));
        scope.shutdown().await;
    }

    #[tokio::test]
    async fn badges_are_svg_that_is_not_cached() {
        let s = serve_history().await;
        s.clock.advance(Duration::from_secs(60));
        s.cache.refresh().await.unwrap();
        let (status, head, body) = request(s.addr, "GET", "/badge/api/status.svg").await;
        assert_eq!(status, 200);
        assert_eq!(content_type(&head), "image/svg+xml");
        assert!(
            head.to_ascii_lowercase()
                .contains("cache-control: no-cache"),
            "{head}"
        );
        assert!(body.starts_with("<svg "), "{body}");
        assert!(
            body.contains(">healthy<") && body.contains(">api<"),
            "{body}"
        );
        let (_, _, body) = request(s.addr, "GET", "/badge/db/status.svg").await;
        assert!(body.contains(">unhealthy<"), "{body}");
        for span in ["24h", "7d", "30d"] {
            let path = format!("/badge/api/uptime/{span}.svg");
            let (status, head, body) = request(s.addr, "GET", &path).await;
            assert_eq!(status, 200, "{path}");
            assert_eq!(content_type(&head), "image/svg+xml");
            assert!(body.contains(&format!(">uptime {span}<")), "{body}");
            assert!(body.contains(">100%<"), "{body}");
        }
        for path in [
            "/badge/nope/status.svg",
            "/badge/nope/uptime/24h.svg",
            "/badge/api/uptime/1y.svg",
        ] {
            let (status, _, body) = request(s.addr, "GET", path).await;
            assert_eq!(status, 404, "{path}: {body}");
        }
        s.scope.shutdown().await;

        // Before any observation: `n/a`.
        let (addr, scope, _m) = serve().await;
        let (status, _, body) = request(addr, "GET", "/badge/api/uptime/7d.svg").await;
        assert_eq!(status, 200);
        assert!(body.contains(">n/a<"), "{body}");
        scope.shutdown().await;
    }
}
