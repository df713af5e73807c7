//! The HTTP API, `/metrics` and the status page over a real loopback socket.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use async_trait::async_trait;
use health_monitor::{HealthMonitor, LastSeenRegistry, Monitor, Scope};
use health_types::{CheckKind, CheckResult, HealthCheckConfig, Probe, ProbeError, Status, Url};

use tokio_util::sync::CancellationToken;

use super::{ApiState, router};
use crate::{
    config::{ApiAccess, ApiToken},
    metrics::{Backlog, NotifyCounters, NotifyStats},
    server::{self, Limits},
    test_support::{json, request, request_with},
};

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

/// The API of two monitors (`api` healthy, `db` not), checked once, open to `access`,
/// on healthd's own server loop (which hands the API each client's address).
async fn serve_with(access: ApiAccess) -> (SocketAddr, Scope, Vec<Monitor>) {
    let scope = Scope::new();
    let mut monitors = Vec::new();
    for (name, healthy) in [("api", true), ("db", false)] {
        let m = Monitor::builder(
            name,
            Url::parse(&format!("http://{name}.test/")).unwrap(),
            Arc::new(Fixed(healthy)),
        )
        .config(HealthCheckConfig {
            retries: 1,
            ..Default::default()
        })
        .last_seen(Arc::new(LastSeenRegistry::new()))
        .build()
        .unwrap();
        m.start(&scope).unwrap();
        monitors.push(m);
    }
    for m in &monitors {
        let mut rx = m.subscribe();
        rx.wait_for(|s| s.checks() >= 1).await.unwrap();
    }
    let state = ApiState::new(monitors.clone(), Some(Arc::new(Stats))).with_access(access);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(server::serve(
        listener,
        None,
        router(state),
        Limits::default(),
        CancellationToken::new(),
    ));
    (addr, scope, monitors)
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
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/openmetrics-text"),
        "{head}"
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
        "healthd_outbox_oldest_seconds{notifier=\"phone\"} 0.0",
        "# EOF",
    ] {
        assert!(
            body.lines().any(|l| l == line),
            "missing {line:?} in\n{body}"
        );
    }
    let (status, _, body) = request(addr, "GET", "/healthz").await;
    assert_eq!((status, body.as_str()), (200, "ok"));
    let (status, head, body) = request(addr, "GET", "/").await;
    assert_eq!(status, 200);
    assert!(head.to_ascii_lowercase().contains("text/html"));
    assert!(
        body.contains("/api/v1/monitors")
            && !body.contains("http://")
            && !body.contains("https://"),
        "self-contained"
    );
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
    let (status, head, body) = request(addr, "GET", "/metrics").await;
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
                    body.contains("# TYPE healthd_local_failures counter"),
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
