//! AgentProbe against a stub agent: the protocol's query and JSON, non-200 answers,
//! garbage, a hanging agent and mutual TLS.
#![allow(clippy::unwrap_used)] // Tests may unwrap (STYLE.md).

mod support;

use std::{collections::HashMap, sync::Arc, time::Duration};

use health_check::{AGENT_HEALTH_PATH, AgentProbe};
use health_types::AgentSpec;
use health_types::{CheckKind, HealthCheckConfig, Method, Probe};
use support::{Handler, black_hole, canned, closed_port, config, http_server, respond};
use tokio::time::Instant;
use url::Url;

/// A stub agent answering `status` with `body` on the health path (404 elsewhere).
fn agent(status: u16, body: &'static str) -> Handler {
    Arc::new(move |request| {
        if request.uri().path().ends_with(AGENT_HEALTH_PATH) {
            respond(status, body)
        } else {
            respond(404, "not an agent path")
        }
    })
}

fn probe(agent_url: Url, config: &HealthCheckConfig) -> AgentProbe {
    AgentProbe::try_new(config, AgentSpec::new(agent_url)).unwrap()
}

#[tokio::test]
async fn checks_reuse_one_keep_alive_connection_to_the_agent() {
    let server = http_server(
        "127.0.0.1:0",
        None,
        agent(200, r#"{"healthy":true,"detail":"ok","latency":1}"#),
    )
    .await;
    let probe = probe(server.url("http"), &config(1000));
    let target = Url::parse("tcp://10.0.0.5:5432").unwrap();
    for _ in 0..3 {
        assert!(probe.check(&target).await.unwrap().healthy);
    }
    assert_eq!(server.seen().len(), 3);
    assert_eq!(
        server.connections(),
        1,
        "one pooled connection serves every check"
    );
}

fn query(uri: &str) -> HashMap<String, String> {
    Url::parse(&format!("http://agent{uri}"))
        .unwrap()
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

#[tokio::test]
async fn the_agents_json_answer_is_the_result() {
    let server = http_server(
        "127.0.0.1:0",
        None,
        agent(
            200,
            r#"{"healthy":false,"detail":"HTTP 503 Service Unavailable","latency":1500000,"kind":"status"}"#,
        ),
    )
    .await;
    let config = HealthCheckConfig {
        path: "/health?full=1".to_owned(),
        method: Method::Head,
        ..config(1000)
    };
    let probe = probe(server.url("http"), &config);
    let target = Url::parse("http://10.0.0.5:8080/api").unwrap();
    let result = probe.check(&target).await.unwrap();
    assert_eq!(
        (result.healthy, result.kind, result.detail.as_str()),
        (false, CheckKind::Status, "HTTP 503 Service Unavailable")
    );
    assert_eq!(result.latency, Duration::from_micros(1500));
    let seen = server.seen();
    assert_eq!(seen[0].method, "GET");
    assert!(
        seen[0].uri.starts_with(AGENT_HEALTH_PATH),
        "{}",
        seen[0].uri
    );
    let query = query(&seen[0].uri);
    let want: HashMap<String, String> = [
        ("scheme", "http"),
        ("host", "10.0.0.5:8080"),
        ("path", "/api/health?full=1"),
        ("timeout", "900"),
        ("method", "HEAD"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    assert_eq!(query, want);
}

#[tokio::test]
async fn godoxy_answers_without_kind_and_file_targets_work() {
    let server = http_server(
        "127.0.0.1:0",
        None,
        agent(200, r#"{"healthy":true,"detail":"","latency":250000}"#),
    )
    .await;
    let probe = probe(server.url_with("http", "/prefix/"), &config(10_000));
    let result = probe
        .check(&Url::parse("file:///srv/www").unwrap())
        .await
        .unwrap();
    assert!(result.healthy, "{result:?}");
    assert_eq!(result.latency, Duration::from_micros(250));
    let seen = server.seen();
    assert!(
        seen[0].uri.starts_with("/prefix/godoxy/agent/health?"),
        "{}",
        seen[0].uri
    );
    let query = query(&seen[0].uri);
    assert_eq!(query["scheme"], "fileserver");
    assert_eq!(query["path"], "/srv/www");
    assert_eq!(query["timeout"], "9900");
    assert!(!query.contains_key("host"));
}

#[tokio::test]
async fn another_status_is_unhealthy_with_the_agents_words() {
    let server = http_server(
        "127.0.0.1:0",
        None,
        agent(502, "dial tcp 10.0.0.5:8080: connect: connection refused\n"),
    )
    .await;
    let probe = probe(server.url("http"), &config(1000));
    let result = probe
        .check(&Url::parse("tcp://10.0.0.5:8080").unwrap())
        .await
        .unwrap();
    assert_eq!(
        (result.healthy, result.kind, result.detail.as_str()),
        (
            false,
            CheckKind::Status,
            "agent HTTP 502: dial tcp 10.0.0.5:8080: connect: connection refused"
        )
    );
}

#[tokio::test]
async fn a_long_error_body_is_truncated() {
    let long: &'static str = Box::leak("x".repeat(10_000).into_boxed_str());
    let server = http_server("127.0.0.1:0", None, agent(400, long)).await;
    let probe = probe(server.url("http"), &config(1000));
    let result = probe
        .check(&Url::parse("http://app.internal/").unwrap())
        .await
        .unwrap();
    assert!(
        result.detail.starts_with("agent HTTP 400: xxx"),
        "{result:?}"
    );
    assert!(
        result.detail.chars().count() < 250,
        "{}",
        result.detail.len()
    );
}

#[tokio::test]
async fn garbage_from_the_agent_is_an_error() {
    let json = http_server("127.0.0.1:0", None, agent(200, "<html>not json</html>")).await;
    let probe_json = probe(json.url("http"), &config(1000));
    let target = Url::parse("http://app.internal/").unwrap();
    let err = probe_json.check(&target).await.unwrap_err();
    assert_eq!(err.kind(), CheckKind::Protocol, "{err}");
    assert!(err.detail().starts_with("agent: "), "{err}");

    let bytes = canned("127.0.0.1:0", b"\x16\x03\x01garbage\r\n\r\n").await;
    let probe_bytes = probe(bytes.url("http"), &config(1000));
    let err = probe_bytes.check(&target).await.unwrap_err();
    assert_eq!(err.kind(), CheckKind::Protocol, "{err}");
}

#[tokio::test]
async fn a_hanging_agent_is_an_error_inside_the_deadline() {
    // Accepts, never reads, never answers.
    let server = black_hole("127.0.0.1:0").await;
    let probe = probe(server.url("http"), &config(400));
    let started = Instant::now();
    let err = probe
        .check(&Url::parse("http://app.internal/").unwrap())
        .await
        .unwrap_err();
    let elapsed = started.elapsed();
    assert_eq!(err.kind(), CheckKind::Timeout, "{err}");
    assert!(err.detail().starts_with("agent: no answer within"), "{err}");
    // The agent is asked for 360 ms; the probe gives up at 380 ms, before the
    // monitor's 400 ms deadline.
    assert!(
        elapsed >= Duration::from_millis(380) && elapsed < Duration::from_millis(400),
        "{elapsed:?}"
    );
}

#[tokio::test]
async fn an_unreachable_agent_is_an_error() {
    let closed = closed_port("127.0.0.1:0").await;
    let probe = probe(
        Url::parse(&format!("http://{closed}")).unwrap(),
        &config(1000),
    );
    let err = probe
        .check(&Url::parse("http://app.internal/").unwrap())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), CheckKind::Refused, "{err}");
    assert_eq!(err.detail(), "agent: connection refused");
}

#[cfg(feature = "tls")]
mod tls {
    use super::*;
    use crate::support::{TestCa, write_file};

    /// A TLS agent whose certificate `ca` signed, requiring client certificates from
    /// `ca` when `mutual`.
    async fn tls_agent(ca: &TestCa, mutual: bool) -> support::Server {
        let tls = ca
            .server()
            .server_config(&[b"http/1.1"], mutual.then(|| ca.roots()));
        http_server(
            "127.0.0.1:0",
            Some(tls),
            agent(
                200,
                r#"{"healthy":true,"detail":"HTTP 200 OK","latency":1000,"kind":"ok"}"#,
            ),
        )
        .await
    }

    #[tokio::test]
    async fn mutual_tls_with_the_right_client_certificate_is_accepted() {
        let ca = TestCa::new();
        let server = tls_agent(&ca, true).await;
        let dir = tempfile::tempdir().unwrap();
        let client = ca.client();
        let options = AgentSpec {
            ca: Some(write_file(dir.path(), "ca.pem", &ca.pem())),
            cert: Some(write_file(dir.path(), "client.pem", &client.cert_pem)),
            key: Some(write_file(dir.path(), "client.key", &client.key_pem)),
            ..AgentSpec::new(server.url("https"))
        };
        let probe = AgentProbe::try_new(&config(2000), options).unwrap();
        let result = probe
            .check(&Url::parse("https://app.internal/").unwrap())
            .await
            .unwrap();
        assert!(result.healthy, "{result:?}");
        assert_eq!(server.seen().len(), 1);
    }

    #[tokio::test]
    async fn mutual_tls_without_or_with_a_foreign_client_certificate_is_rejected() {
        let ca = TestCa::new();
        let server = tls_agent(&ca, true).await;
        let dir = tempfile::tempdir().unwrap();
        let ca_file = write_file(dir.path(), "ca.pem", &ca.pem());
        let target = Url::parse("http://app.internal/").unwrap();

        let without = AgentSpec {
            ca: Some(ca_file.clone()),
            ..AgentSpec::new(server.url("https"))
        };
        let err = AgentProbe::try_new(&config(2000), without)
            .unwrap()
            .check(&target)
            .await
            .unwrap_err();
        assert!(err.detail().starts_with("agent: "), "{err}");

        let stranger = TestCa::new().client();
        let foreign = AgentSpec {
            ca: Some(ca_file),
            cert: Some(write_file(dir.path(), "other.pem", &stranger.cert_pem)),
            key: Some(write_file(dir.path(), "other.key", &stranger.key_pem)),
            ..AgentSpec::new(server.url("https"))
        };
        let err = AgentProbe::try_new(&config(2000), foreign)
            .unwrap()
            .check(&target)
            .await
            .unwrap_err();
        assert!(err.detail().starts_with("agent: "), "{err}");
        assert!(server.seen().is_empty());
    }

    #[tokio::test]
    async fn an_agent_certificate_from_an_unknown_ca_is_rejected() {
        let server = tls_agent(&TestCa::new(), false).await;
        let dir = tempfile::tempdir().unwrap();
        let options = AgentSpec {
            ca: Some(write_file(dir.path(), "ca.pem", &TestCa::new().pem())),
            ..AgentSpec::new(server.url("https"))
        };
        let err = AgentProbe::try_new(&config(2000), options)
            .unwrap()
            .check(&Url::parse("http://app.internal/").unwrap())
            .await
            .unwrap_err();
        assert_eq!(err.kind(), CheckKind::Tls, "{err}");
        assert!(err.detail().starts_with("agent: tls: "), "{err}");
    }

    #[tokio::test]
    async fn a_client_certificate_needs_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::new();
        let options = AgentSpec {
            cert: Some(write_file(dir.path(), "client.pem", &ca.client().cert_pem)),
            ..AgentSpec::new(Url::parse("https://agent.internal:8890").unwrap())
        };
        let err = AgentProbe::try_new(&config(1000), options).unwrap_err();
        assert!(err.to_string().contains("key"), "{err}");
    }
}

#[test]
fn probe_depth_keys_are_refused_through_an_agent_naming_the_key() {
    use health_types::{IpFamily, Target, TlsOptions};
    use std::collections::BTreeMap;

    let agent_url = Url::parse("http://agent.internal:8890").unwrap();
    let cases: Vec<(&str, HealthCheckConfig)> = vec![
        (
            "body_match",
            HealthCheckConfig {
                body_match: Some("ok".to_owned()),
                ..config(1000)
            },
        ),
        (
            "body_not_match",
            HealthCheckConfig {
                body_not_match: Some("down".to_owned()),
                ..config(1000)
            },
        ),
        (
            "json",
            HealthCheckConfig {
                json: vec!["$.status == \"ok\"".parse().unwrap()],
                ..config(1000)
            },
        ),
        (
            "header_match",
            HealthCheckConfig {
                header_match: BTreeMap::from([("x-ok".to_owned(), "1".to_owned())]),
                ..config(1000)
            },
        ),
        (
            "follow_redirects",
            HealthCheckConfig {
                follow_redirects: true,
                ..config(1000)
            },
        ),
        (
            "ip_family",
            HealthCheckConfig {
                ip_family: IpFamily::Ipv6,
                ..config(1000)
            },
        ),
        (
            "tls",
            HealthCheckConfig {
                tls: TlsOptions {
                    server_name: Some("api.test".to_owned()),
                    ..Default::default()
                },
                ..config(1000)
            },
        ),
        (
            "payload",
            HealthCheckConfig {
                payload: Some("PING\r\n".to_owned()),
                ..config(1000)
            },
        ),
        (
            "expect",
            HealthCheckConfig {
                expect: Some("^PONG".to_owned()),
                ..config(1000)
            },
        ),
    ];
    for (key, config) in cases {
        let err = AgentProbe::try_new(&config, AgentSpec::new(agent_url.clone()))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!(
                "`{key}` is not supported through an agent (the agent protocol carries scheme, host, path, timeout and method)"
            )),
            "{key}: {err}"
        );
        // build_probe (and so `healthd validate`) refuses it the same way.
        let target = Target::Agent {
            spec: AgentSpec::new(agent_url.clone()),
            url: Url::parse("http://app.internal:8080").unwrap(),
        };
        let err = health_check::build_probe(&config, &target)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains(&format!("`{key}`")), "{key}: {err}");
    }
    // The keys the protocol carries, and ip_family any, are fine.
    let plain = HealthCheckConfig {
        method: Method::Head,
        path: "/ready".to_owned(),
        ..config(1000)
    };
    AgentProbe::try_new(&plain, AgentSpec::new(agent_url)).unwrap();
}
