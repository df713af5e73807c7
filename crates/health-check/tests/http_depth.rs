//! The probe depth of SPEC §9.4 on HttpProbe and H2cProbe, against loopback servers:
//! body, header and JSON assertions, redirects, address families with fallback, the
//! `tls` table, the peer certificate and the phase timings of a result.
#![allow(clippy::unwrap_used)] // Tests may unwrap (STYLE.md).
#![cfg(feature = "http")]

mod support;

use std::{
    net::{IpAddr, Ipv4Addr},
    sync::{Arc, OnceLock},
};

use health_check::{
    H2cProbe, HttpProbe,
    test_util::{DnsAnswer, ScriptedDns, use_name_server},
};
use health_types::{CheckKind, CheckResult, HealthCheckConfig, IpFamily, Method, Probe};
use http::{HeaderValue, Version};
use support::{Handler, Server, config, http_server, ok_handler, respond};
use url::Url;

/// The scripted DNS server of this binary: the probes share one resolver per process, so
/// every test that may look a name up goes through [`check`], which points it here
/// first. `localhost` is answered by the resolver itself (127.0.0.1 and ::1).
fn dns() -> &'static ScriptedDns {
    static DNS: OnceLock<ScriptedDns> = OnceLock::new();
    DNS.get_or_init(|| {
        let dns = ScriptedDns::start([
            (
                "v4only.test",
                DnsAnswer::Address(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            ),
            // Nothing listens on 127.0.0.3 (see the fallback test): refused, then
            // 127.0.0.1.
            (
                "fallback.test",
                DnsAnswer::Addresses(vec![
                    IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3)),
                    IpAddr::V4(Ipv4Addr::LOCALHOST),
                ]),
            ),
        ]);
        assert!(
            use_name_server(dns.addr()),
            "no probe resolved a name before"
        );
        dns
    })
}

async fn check(probe: &dyn Probe, url: &Url) -> CheckResult {
    dns();
    probe.check(url).await.expect("the target could be checked")
}

fn probe(config: HealthCheckConfig) -> HttpProbe {
    HttpProbe::try_new(&config).unwrap()
}

/// A handler answering 200 with `body` and the given headers.
fn answering(body: &'static str, headers: &'static [(&'static str, &'static str)]) -> Handler {
    Arc::new(move |_| {
        let mut response = respond(200, body);
        for (name, value) in headers {
            response
                .headers_mut()
                .append(*name, HeaderValue::from_static(value));
        }
        response
    })
}

/// A handler that redirects with `status` to the `Location` that `location(path)` gives
/// for the request's path, or answers 200 `final` when it gives `None`.
fn redirecting(location: impl Fn(&str) -> Option<String> + Send + Sync + 'static) -> Handler {
    Arc::new(move |request| match location(request.uri().path()) {
        Some(to) => {
            let mut response = respond(302, "");
            response
                .headers_mut()
                .insert("location", HeaderValue::try_from(to).unwrap());
            response
        }
        None => respond(200, "final"),
    })
}

#[track_caller]
fn assert_unhealthy(result: &CheckResult, kind: CheckKind, detail: &str) {
    assert_eq!(
        (result.healthy, result.kind, result.detail.as_str()),
        (false, kind, detail),
        "{result:?}"
    );
}

#[tokio::test]
async fn body_match_and_body_not_match() {
    let server = http_server("127.0.0.1:0", None, answering("status: ready", &[])).await;
    let url = server.url("http");
    let pass = probe(HealthCheckConfig {
        body_match: Some("ready$".into()),
        body_not_match: Some("maintenance".into()),
        ..config(2000)
    });
    let result = check(&pass, &url).await;
    assert!(result.healthy, "{result:?}");
    assert_eq!(result.detail, "HTTP 200 OK");
    let fail = probe(HealthCheckConfig {
        body_match: Some("down".into()),
        ..config(2000)
    });
    assert_unhealthy(
        &check(&fail, &url).await,
        CheckKind::Body,
        "body does not match \"down\"",
    );
    let forbidden = probe(HealthCheckConfig {
        body_not_match: Some("read[y]".into()),
        ..config(2000)
    });
    let result = check(&forbidden, &url).await;
    assert_unhealthy(&result, CheckKind::Body, "body matches \"read[y]\"");
    assert_eq!(result.status_code, Some(200));
}

#[tokio::test]
async fn body_assertions_see_the_first_64_kib_only() {
    // "ready" opens a 100 KiB body, "tail" ends it.
    let body: &'static str =
        Box::leak(format!("ready{}tail", "x".repeat(100 * 1024)).into_boxed_str());
    let server = http_server("127.0.0.1:0", None, answering(body, &[])).await;
    let url = server.url("http");
    let head = probe(HealthCheckConfig {
        body_match: Some("^ready".into()),
        ..config(2000)
    });
    let result = check(&head, &url).await;
    assert!(result.healthy, "{result:?}");
    let tail = probe(HealthCheckConfig {
        body_match: Some("tail$".into()),
        ..config(2000)
    });
    assert_unhealthy(
        &check(&tail, &url).await,
        CheckKind::Body,
        "body does not match \"tail$\"",
    );
}

#[tokio::test]
async fn a_bad_status_stays_a_status_failure_whatever_the_assertions() {
    let server = http_server(
        "127.0.0.1:0",
        None,
        Arc::new(|_| respond(503, "maintenance")),
    )
    .await;
    let probe = probe(HealthCheckConfig {
        body_not_match: Some("maintenance".into()),
        ..config(2000)
    });
    let result = check(&probe, &server.url("http")).await;
    assert_unhealthy(&result, CheckKind::Status, "HTTP 503 Service Unavailable");
    assert_eq!(result.status_code, Some(503));
}

#[tokio::test]
async fn json_conditions_pass_and_fail_with_named_details() {
    let body = r#"{"status":"degraded","db":{"latency_ms":120},"tags":["primary","eu"],"version":"2.4.1"}"#;
    let server = http_server("127.0.0.1:0", None, answering(body, &[])).await;
    let url = server.url("http");
    let json = |conditions: &[&str]| {
        probe(HealthCheckConfig {
            json: conditions.iter().map(|c| c.parse().unwrap()).collect(),
            ..config(2000)
        })
    };
    let passing = json(&[
        "$.status == \"degraded\"",
        "$.status != \"ok\"",
        "$.db.latency_ms < 250",
        "$.db.latency_ms > 100",
        "$.tags contains \"primary\"",
        "$.version contains \"2.4\"",
    ]);
    let result = check(&passing, &url).await;
    assert!(result.healthy, "{result:?}");
    for (condition, detail) in [
        (
            "$.status == \"ok\"",
            "json: $.status == \"ok\" failed: got \"degraded\"",
        ),
        (
            "$.status != \"degraded\"",
            "json: $.status != \"degraded\" failed: got \"degraded\"",
        ),
        (
            "$.db.latency_ms < 100",
            "json: $.db.latency_ms < 100 failed: got 120",
        ),
        (
            "$.db.latency_ms > 200",
            "json: $.db.latency_ms > 200 failed: got 120",
        ),
        (
            "$.tags contains \"us\"",
            "json: $.tags contains \"us\" failed: got [\"primary\",\"eu\"]",
        ),
        ("$.x == 1", "json: $.x selects nothing"),
    ] {
        let result = check(&json(&[condition]), &url).await;
        assert_unhealthy(&result, CheckKind::Json, detail);
    }

    let text = http_server("127.0.0.1:0", None, answering("<html>ok</html>", &[])).await;
    let result = check(&json(&["$.status == \"ok\""]), &text.url("http")).await;
    assert!(
        !result.healthy && result.kind == CheckKind::Json,
        "{result:?}"
    );
    assert!(
        result.detail.starts_with("json: body is not JSON: "),
        "{result:?}"
    );
}

#[tokio::test]
async fn header_match_passes_fails_and_needs_the_header() {
    let server = http_server(
        "127.0.0.1:0",
        None,
        answering("{}", &[("content-type", "text/html"), ("x-ready", "yes")]),
    )
    .await;
    let url = server.url("http");
    let headers = |pairs: &[(&str, &str)]| {
        probe(HealthCheckConfig {
            header_match: pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            ..config(2000)
        })
    };
    let result = check(
        &headers(&[("X-Ready", "^yes$"), ("content-type", "html")]),
        &url,
    )
    .await;
    assert!(result.healthy, "{result:?}");
    assert_unhealthy(
        &check(&headers(&[("Content-Type", "^application/json")]), &url).await,
        CheckKind::Header,
        "header Content-Type: \"text/html\" does not match \"^application/json\"",
    );
    assert_unhealthy(
        &check(&headers(&[("X-Missing", ".*")]), &url).await,
        CheckKind::Header,
        "header X-Missing: missing",
    );
}

#[tokio::test]
async fn assertions_hold_over_http2_too() {
    let server = http_server(
        "127.0.0.1:0",
        None,
        answering(r#"{"ok":true}"#, &[("x-ready", "yes")]),
    )
    .await;
    let config = HealthCheckConfig {
        json: vec!["$.ok == true".parse().unwrap()],
        body_match: Some("ok".into()),
        header_match: [("x-ready".to_owned(), "yes".to_owned())].into(),
        ..config(2000)
    };
    let h2c = H2cProbe::try_new(&config).unwrap();
    let url = server.url("h2c");
    let result = check(&h2c, &url).await;
    assert!(result.healthy, "{result:?}");
    let failing = H2cProbe::try_new(&HealthCheckConfig {
        json: vec!["$.ok == false".parse().unwrap()],
        ..config
    })
    .unwrap();
    let result = check(&failing, &url).await;
    assert_unhealthy(
        &result,
        CheckKind::Json,
        "json: $.ok == false failed: got true",
    );
    assert!(server.seen().iter().all(|s| s.version == Version::HTTP_2));
}

#[test]
fn body_assertions_with_head_are_config_errors_naming_the_key() {
    for (config, key) in [
        (
            HealthCheckConfig {
                body_match: Some("ok".into()),
                ..Default::default()
            },
            "body_match",
        ),
        (
            HealthCheckConfig {
                json: vec!["$.a == 1".parse().unwrap()],
                ..Default::default()
            },
            "json",
        ),
    ] {
        let head = HealthCheckConfig {
            method: Method::Head,
            ..config
        };
        let err = HttpProbe::try_new(&head).unwrap_err().to_string();
        assert!(err.contains(key) && err.contains("HEAD"), "{err}");
    }
    // A JSONPath that does not parse is an error naming `json`.
    let bad = HealthCheckConfig {
        json: vec!["$[?@.a == ] == 1".parse().unwrap()],
        ..Default::default()
    };
    let err = HttpProbe::try_new(&bad).unwrap_err().to_string();
    assert!(err.contains("json") && err.contains("JSONPath"), "{err}");
}

#[tokio::test]
async fn redirects_are_judged_by_status_unless_followed() {
    let server = http_server(
        "127.0.0.1:0",
        None,
        redirecting(|path| (path == "/").then(|| "/next".to_owned())),
    )
    .await;
    let url = server.url("http");
    let result = check(&probe(config(2000)), &url).await;
    assert!(result.healthy, "{result:?}");
    assert_eq!(
        (result.detail.as_str(), result.status_code),
        ("HTTP 302 Found", Some(302))
    );
    assert_eq!(server.seen().len(), 1);

    let following = probe(HealthCheckConfig {
        follow_redirects: true,
        body_match: Some("final".into()),
        ..config(2000)
    });
    let result = check(&following, &url).await;
    assert!(result.healthy, "{result:?}");
    assert_eq!(
        (result.detail.as_str(), result.status_code),
        ("HTTP 200 OK (after 1 redirect)", Some(200))
    );
    let seen = server.seen();
    assert_eq!(seen[2].uri, "/next");
    assert_eq!(seen[2].method, "GET");

    // A 3xx without a Location is judged by its status.
    let bare = http_server("127.0.0.1:0", None, Arc::new(|_| respond(307, ""))).await;
    let result = check(&following, &bare.url("http")).await;
    assert_unhealthy(&result, CheckKind::Body, "body does not match \"final\"");
    assert_eq!(result.status_code, Some(307));
}

#[tokio::test]
async fn absolute_redirects_cross_hosts_without_the_credentials() {
    let other = http_server("127.0.0.1:0", None, ok_handler()).await;
    let elsewhere = format!("http://localhost:{}/landing", other.addr.port());
    let first = http_server(
        "127.0.0.1:0",
        None,
        redirecting(move |path| match path {
            "/" => Some("/same-host".to_owned()),
            "/same-host" => Some(elsewhere.clone()),
            _ => None,
        }),
    )
    .await;
    let mut url = first.url("http");
    url.set_username("admin").unwrap();
    url.set_password(Some("s3cret")).unwrap();
    let following = probe(HealthCheckConfig {
        follow_redirects: true,
        method: Method::Head,
        ..config(2000)
    });
    let result = check(&following, &url).await;
    assert!(result.healthy, "{result:?}");
    assert_eq!(result.detail, "HTTP 200 OK (after 2 redirects)");
    let authorization = |seen: &support::Seen| {
        seen.headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("authorization"))
    };
    let first_seen = first.seen();
    assert_eq!(first_seen.len(), 2);
    assert!(first_seen.iter().all(authorization), "{first_seen:?}");
    assert!(first_seen.iter().all(|s| s.method == "HEAD"));
    let other_seen = other.seen();
    assert_eq!(other_seen.len(), 1);
    assert_eq!(other_seen[0].uri, "/landing");
    assert!(!authorization(&other_seen[0]), "{other_seen:?}");
}

/// Whether `seen` carried a header `name` (any case).
fn has_header(seen: &support::Seen, name: &str) -> bool {
    seen.headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case(name))
}

/// A server that redirects `/` to `to` and answers 200 otherwise.
async fn redirect_server(
    tls: Option<Arc<health_types::tls::rustls::ServerConfig>>,
    to: String,
) -> Server {
    http_server(
        "127.0.0.1:0",
        tls,
        redirecting(move |path| (path == "/").then(|| to.clone())),
    )
    .await
}

fn with_password(mut url: Url) -> Url {
    url.set_username("admin").unwrap();
    url.set_password(Some("s3cret")).unwrap();
    url
}

#[tokio::test]
async fn credentials_do_not_follow_to_another_port_of_the_same_host() {
    let other = http_server("127.0.0.1:0", None, ok_handler()).await;
    let first = redirect_server(None, format!("http://127.0.0.1:{}/port", other.addr.port())).await;
    let following = probe(HealthCheckConfig {
        follow_redirects: true,
        ..config(2000)
    });
    let result = check(&following, &with_password(first.url("http"))).await;
    assert!(result.healthy, "{result:?}");
    assert!(has_header(&first.seen()[0], "authorization"));
    let other_seen = other.seen();
    assert_eq!(other_seen.len(), 1);
    assert!(
        !has_header(&other_seen[0], "authorization"),
        "{other_seen:?}"
    );
}

#[tokio::test]
async fn configured_credentials_and_host_do_not_cross_hosts() {
    let headers: std::collections::BTreeMap<String, String> = [
        ("Authorization", "Bearer t0ken"),
        ("cookie", "session=1"),
        ("PROXY-AUTHORIZATION", "Basic eA=="),
        ("Host", "configured.test"),
        ("X-Probe", "yes"),
    ]
    .map(|(name, value)| (name.to_owned(), value.to_owned()))
    .into();
    for h2c in [false, true] {
        let other = http_server("127.0.0.1:0", None, ok_handler()).await;
        let scheme = if h2c { "h2c" } else { "http" };
        let first = redirect_server(
            None,
            format!("{scheme}://localhost:{}/elsewhere", other.addr.port()),
        )
        .await;
        let config = HealthCheckConfig {
            follow_redirects: true,
            headers: headers.clone().into_iter().collect(),
            ..config(2000)
        };
        let result = if h2c {
            check(&H2cProbe::try_new(&config).unwrap(), &first.url("h2c")).await
        } else {
            check(&probe(config), &first.url("http")).await
        };
        assert!(result.healthy, "{scheme}: {result:?}");
        let first_seen = &first.seen()[0];
        assert!(has_header(first_seen, "authorization"), "{first_seen:?}");
        assert!(has_header(first_seen, "cookie"), "{first_seen:?}");
        let seen = &other.seen()[0];
        for name in ["authorization", "cookie", "proxy-authorization"] {
            assert!(!has_header(seen, name), "{scheme}: {name} in {seen:?}");
        }
        assert!(has_header(seen, "x-probe"), "{scheme}: {seen:?}");
        let host = seen
            .headers
            .iter()
            .find(|(name, _)| name == "host")
            .map(|(_, value)| value.as_str());
        if h2c {
            assert!(host.is_none(), "{seen:?}");
            assert_eq!(seen.version, Version::HTTP_2);
        } else {
            let own = format!("localhost:{}", other.addr.port());
            assert_eq!(host, Some(own.as_str()), "{seen:?}");
        }
    }
}

#[tokio::test]
async fn a_redirect_loop_is_too_many_redirects() {
    let server = http_server(
        "127.0.0.1:0",
        None,
        redirecting(|_| Some("/again".to_owned())),
    )
    .await;
    let following = probe(HealthCheckConfig {
        follow_redirects: true,
        ..config(2000)
    });
    let result = check(&following, &server.url("http")).await;
    assert_unhealthy(&result, CheckKind::Status, "too many redirects (10)");
    assert_eq!(result.status_code, Some(302));
    // The first answer and ten redirects followed.
    assert_eq!(server.seen().len(), 11);
}

#[tokio::test]
async fn h2c_redirects_stay_on_h2c() {
    let server = http_server(
        "127.0.0.1:0",
        None,
        redirecting(|path| (path == "/").then(|| "/next".to_owned())),
    )
    .await;
    let probe = H2cProbe::try_new(&HealthCheckConfig {
        follow_redirects: true,
        ..config(2000)
    })
    .unwrap();
    let result = check(&probe, &server.url("h2c")).await;
    assert!(result.healthy, "{result:?}");
    assert_eq!(result.detail, "HTTP 200 OK (after 1 redirect)");
    let seen = server.seen();
    assert_eq!(seen.len(), 2);
    assert!(
        seen.iter().all(|s| s.version == Version::HTTP_2),
        "{seen:?}"
    );
}

#[tokio::test]
async fn ip_family_picks_the_addresses_of_localhost() {
    let v4 = http_server("127.0.0.1:0", None, ok_handler()).await;
    let url = Url::parse(&format!("http://localhost:{}/", v4.addr.port())).unwrap();
    let family = |ip_family| {
        probe(HealthCheckConfig {
            ip_family,
            ..config(2000)
        })
    };
    let result = check(&family(IpFamily::Ipv4), &url).await;
    assert!(result.healthy, "{result:?}");
    assert!(result.phases.dns.is_some(), "{result:?}");

    let Some((v6, _held)) = ipv6_server_refused_over_ipv4().await else {
        return;
    };
    let url = Url::parse(&format!("http://localhost:{}/", v6.addr.port())).unwrap();
    let result = check(&family(IpFamily::Ipv6), &url).await;
    assert!(result.healthy, "{result:?}");
    assert_eq!(v6.connections(), 1);
    // Over IPv4 only, that port is bound without a listener: refused.
    let result = check(&family(IpFamily::Ipv4), &url).await;
    assert_eq!(result.kind, CheckKind::Refused, "{result:?}");
}

/// A server on `[::1]:p` whose port `p` is certainly refused on 127.0.0.1 (bound there,
/// never listening, while the returned socket lives); `None` (and a `skipped:` line)
/// without an IPv6 loopback or, after a few tries, a port free on both.
async fn ipv6_server_refused_over_ipv4() -> Option<(Server, tokio::net::TcpSocket)> {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        println!("skipped: no IPv6 loopback (::1) on this host");
        return None;
    }
    for _ in 0..20 {
        let held = tokio::net::TcpSocket::new_v4().unwrap();
        held.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let port = held.local_addr().unwrap().port();
        let bind = format!("[::1]:{port}");
        if std::net::TcpListener::bind(&bind).is_ok() {
            return Some((http_server(&bind, None, ok_handler()).await, held));
        }
    }
    println!("skipped: no port free on both 127.0.0.1 and ::1");
    None
}

#[tokio::test]
async fn with_any_family_a_refused_address_falls_back_to_the_next() {
    // `fallback.test` resolves to 127.0.0.3 first, then 127.0.0.1, where the server
    // listens; the port is bound on 127.0.0.3 without a listener, so it is refused there.
    let server = http_server("127.0.0.1:0", None, ok_handler()).await;
    let port = server.addr.port();
    let held = tokio::net::TcpSocket::new_v4().unwrap();
    held.bind(([127, 0, 0, 3], port).into()).unwrap();
    let url = Url::parse(&format!("http://fallback.test:{port}/")).unwrap();
    let result = check(&probe(config(2000)), &url).await;
    assert!(result.healthy, "{result:?}");
    assert!(result.phases.dns.is_some(), "{result:?}");
    assert_eq!(server.connections(), 1);
    // The first address alone is refused: the healthy check fell back.
    let first = Url::parse(&format!("http://127.0.0.3:{port}/")).unwrap();
    let result = check(&probe(config(2000)), &first).await;
    assert_eq!(result.kind, CheckKind::Refused, "{result:?}");
    drop(held);
}

#[tokio::test]
async fn a_family_without_addresses_is_a_dns_failure_and_a_wrong_literal_a_config_error() {
    let v4 = http_server("127.0.0.1:0", None, ok_handler()).await;
    let v6_only = probe(HealthCheckConfig {
        ip_family: IpFamily::Ipv6,
        ..config(2000)
    });
    let url = Url::parse(&format!("http://v4only.test:{}/", v4.addr.port())).unwrap();
    let result = check(&v6_only, &url).await;
    assert_unhealthy(&result, CheckKind::Dns, "dns: no ipv6 address");

    let err = v6_only
        .validate_url(&v4.url("http"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("ip_family ipv6"), "{err}");
    let err = v6_only.check(&v4.url("http")).await.unwrap_err();
    assert_eq!(err.kind(), CheckKind::Config);
}

#[test]
fn a_shared_client_must_match_the_family_and_tls_table() {
    use health_check::{HttpClient, HttpClientConfig};

    let client = HttpClient::try_new(&config(2000), &HttpClientConfig::default()).unwrap();
    let v6 = HealthCheckConfig {
        ip_family: IpFamily::Ipv6,
        ..config(2000)
    };
    let err = HttpProbe::try_with_client(&v6, client.clone()).unwrap_err();
    assert!(err.to_string().contains("ip_family"), "{err}");
    let named = HealthCheckConfig {
        tls: health_types::TlsOptions {
            server_name: Some("api.internal".into()),
            ..Default::default()
        },
        ..config(2000)
    };
    let err = HttpProbe::try_with_client(&named, client.clone()).unwrap_err();
    assert!(err.to_string().contains("`tls`"), "{err}");
    assert!(HttpProbe::try_with_client(&config(2000), client).is_ok());
}

#[tokio::test]
async fn plain_results_carry_their_phases_and_status_code() {
    let server = http_server("127.0.0.1:0", None, ok_handler()).await;
    let probe = probe(config(2000));
    let result = check(&probe, &server.url("http")).await;
    assert!(result.healthy, "{result:?}");
    let phases = result.phases;
    assert_eq!((phases.dns, phases.tls), (None, None), "{result:?}");
    let (connect, first_byte) = (phases.connect.unwrap(), phases.first_byte.unwrap());
    assert!(connect + first_byte <= result.latency, "{result:?}");
    assert_eq!(
        (result.status_code, result.cert.as_ref()),
        (Some(200), None)
    );
    // The pooled connection: only the answer's phase.
    let again = check(&probe, &server.url("http")).await;
    assert_eq!(server.connections(), 1);
    assert_eq!(
        (again.phases.dns, again.phases.connect, again.phases.tls),
        (None, None, None)
    );
    assert!(again.phases.first_byte.is_some(), "{again:?}");
}

#[cfg(feature = "tls")]
mod tls {
    use std::{path::PathBuf, time::Duration};

    use health_types::{
        Clock, SystemClock, TlsOptions, TlsVersion,
        tls::rustls::{self, RootCertStore, ServerConfig},
    };

    use super::*;
    use crate::support::{TestCa, self_signed, write_file};

    /// A server config for `identity`'s chain and key, speaking only `versions`.
    fn server_tls(
        identity: &health_types::test_util::Identity,
        versions: &[&'static rustls::SupportedProtocolVersion],
        alpn: &[&[u8]],
        client_ca: Option<RootCertStore>,
    ) -> Arc<ServerConfig> {
        let provider = health_types::tls::provider();
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)
            .unwrap();
        let builder = match client_ca {
            Some(roots) => builder.with_client_cert_verifier(
                rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider,
                )
                .build()
                .unwrap(),
            ),
            None => builder.with_no_client_auth(),
        };
        let mut config = builder
            .with_single_cert(identity.chain.clone(), identity.key())
            .unwrap();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }

    fn verifying(tls: TlsOptions) -> HttpProbe {
        probe(HealthCheckConfig {
            tls_verify: true,
            tls,
            ..config(2000)
        })
    }

    fn ca_file(ca: &TestCa, dir: &tempfile::TempDir) -> PathBuf {
        ca.write(dir.path(), "ca.pem")
    }

    #[tokio::test]
    async fn tls_ca_replaces_the_roots() {
        let ca = TestCa::new();
        let server = http_server(
            "127.0.0.1:0",
            Some(ca.server().server_config(&[b"http/1.1"], None)),
            ok_handler(),
        )
        .await;
        let dir = tempfile::tempdir().unwrap();
        let trusted = verifying(TlsOptions {
            ca: Some(ca_file(&ca, &dir)),
            ..Default::default()
        });
        let result = check(&trusted, &server.url("https")).await;
        assert!(result.healthy, "{result:?}");
        let other = TestCa::new();
        let untrusted = verifying(TlsOptions {
            ca: Some(other.write(dir.path(), "other.pem")),
            ..Default::default()
        });
        let result = check(&untrusted, &server.url("https")).await;
        assert_eq!(result.kind, CheckKind::Tls, "{result:?}");
        assert_eq!(result.cert, None, "a failed handshake shows no certificate");
    }

    #[tokio::test]
    async fn unreadable_tls_files_are_config_errors_naming_them() {
        let missing = HealthCheckConfig {
            tls: TlsOptions {
                ca: Some("/nonexistent/ca.pem".into()),
                ..Default::default()
            },
            ..config(2000)
        };
        let err = HttpProbe::try_new(&missing).unwrap_err().to_string();
        assert!(
            err.contains("tls.ca") && err.contains("/nonexistent/ca.pem"),
            "{err}"
        );
        let dir = tempfile::tempdir().unwrap();
        let cert = write_file(dir.path(), "cert.pem", "not a certificate");
        let bad_cert = HealthCheckConfig {
            tls: TlsOptions {
                cert: Some(cert),
                key: Some("/nonexistent/key.pem".into()),
                ..Default::default()
            },
            ..config(2000)
        };
        let err = HttpProbe::try_new(&bad_cert).unwrap_err().to_string();
        assert!(err.contains("cert.pem"), "{err}");
    }

    #[tokio::test]
    async fn server_name_replaces_the_host_for_sni_and_verification() {
        let ca = TestCa::new();
        let identity = ca.issue(
            vec!["api.internal".into()],
            health_types::test_util::KeyUsage::ServerAuth,
        );
        let server = http_server(
            "127.0.0.1:0",
            Some(identity.server_config(&[b"http/1.1"], None)),
            ok_handler(),
        )
        .await;
        let dir = tempfile::tempdir().unwrap();
        let ca = ca_file(&ca, &dir);
        let named = verifying(TlsOptions {
            ca: Some(ca.clone()),
            server_name: Some("api.internal".into()),
            ..Default::default()
        });
        let result = check(&named, &server.url("https")).await;
        assert!(result.healthy, "{result:?}");
        let by_host = verifying(TlsOptions {
            ca: Some(ca),
            ..Default::default()
        });
        let result = check(&by_host, &server.url("https")).await;
        assert_eq!(result.kind, CheckKind::Tls, "{result:?}");
    }

    #[tokio::test]
    async fn min_version_1_3_refuses_a_tls_1_2_server() {
        let identity = self_signed();
        let server = http_server(
            "127.0.0.1:0",
            Some(server_tls(
                &identity,
                &[&rustls::version::TLS12],
                &[b"http/1.1"],
                None,
            )),
            ok_handler(),
        )
        .await;
        let with_min = |min_version| {
            probe(HealthCheckConfig {
                tls: TlsOptions {
                    min_version: Some(min_version),
                    ..Default::default()
                },
                ..config(2000)
            })
        };
        let result = check(&with_min(TlsVersion::Tls12), &server.url("https")).await;
        assert!(result.healthy, "{result:?}");
        let result = check(&with_min(TlsVersion::Tls13), &server.url("https")).await;
        assert_eq!(
            (result.healthy, result.kind),
            (false, CheckKind::Tls),
            "{result:?}"
        );
    }

    #[tokio::test]
    async fn mutual_tls_sends_the_client_certificate() {
        let ca = TestCa::new();
        let server = http_server(
            "127.0.0.1:0",
            Some(ca.server().server_config(&[b"http/1.1"], Some(ca.roots()))),
            ok_handler(),
        )
        .await;
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = ca.client().write(dir.path(), "client");
        let with_cert = verifying(TlsOptions {
            ca: Some(ca_file(&ca, &dir)),
            cert: Some(cert),
            key: Some(key),
            ..Default::default()
        });
        let result = check(&with_cert, &server.url("https")).await;
        assert!(result.healthy, "{result:?}");
        assert_eq!(server.seen().len(), 1);
        let without = verifying(TlsOptions {
            ca: Some(ca_file(&ca, &dir)),
            ..Default::default()
        });
        let result = check(&without, &server.url("https")).await;
        assert!(!result.healthy, "{result:?}");
        assert_eq!(server.seen().len(), 1, "the server answered no one else");
    }

    /// A self-signed certificate for `127.0.0.1` expiring `days` from now, with a chosen
    /// serial and subject; with its `not_after` in unix seconds.
    fn expiring_in(days: u64) -> (health_types::test_util::Identity, i64) {
        let now = SystemClock
            .now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let not_after = now + days * 86_400;
        let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
        params.not_after = rcgen::date_time_ymd(1970, 1, 1) + Duration::from_secs(not_after);
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&[0x0b, 0xad, 0xf0, 0x0d]));
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "depth.test");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let identity = health_types::test_util::Identity {
            chain: vec![cert.der().clone()],
            key_der: key.serialize_der(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        };
        (identity, i64::try_from(not_after).unwrap())
    }

    #[tokio::test]
    async fn the_peer_certificate_is_in_every_result_pooled_or_not() {
        let (identity, not_after) = expiring_in(10);
        for alpn in [&[&b"http/1.1"[..]][..], &[b"h2", b"http/1.1"]] {
            let server = http_server(
                "127.0.0.1:0",
                Some(identity.server_config(alpn, None)),
                Arc::new(|request| {
                    // The configured path `/` is joined on: `/down/`.
                    if request.uri().path().starts_with("/down") {
                        respond(503, "down")
                    } else {
                        respond(200, "ok")
                    }
                }),
            )
            .await;
            let probe = probe(config(2000));
            let first = check(&probe, &server.url("https")).await;
            assert!(first.healthy, "{first:?}");
            let cert = first
                .cert
                .clone()
                .expect("an https result has the certificate");
            assert_eq!(cert.not_after, not_after);
            assert_eq!(cert.subject, "CN=depth.test");
            assert_eq!(cert.serial, "0badf00d");
            let tls = first.phases.tls.expect("a new connection did a handshake");
            assert!(first.phases.connect.is_some() && first.phases.dns.is_none());
            assert!(tls + first.phases.first_byte.unwrap() <= first.latency);

            let pooled = check(&probe, &server.url("https")).await;
            assert_eq!(server.connections(), 1, "the connection was reused");
            assert_eq!(pooled.cert.as_ref(), Some(&cert), "{pooled:?}");
            assert_eq!(
                (pooled.phases.connect, pooled.phases.tls),
                (None, None),
                "{pooled:?}"
            );
            assert!(pooled.phases.first_byte.is_some());

            let down = check(&probe, &server.url_with("https", "/down")).await;
            assert_eq!(down.kind, CheckKind::Status, "{down:?}");
            assert_eq!(
                (down.cert.as_ref(), down.status_code),
                (Some(&cert), Some(503))
            );
        }
    }

    #[tokio::test]
    async fn credentials_do_not_follow_from_https_to_http() {
        let plain = http_server("127.0.0.1:0", None, ok_handler()).await;
        let secure = redirect_server(
            Some(self_signed().server_config(&[b"http/1.1"], None)),
            format!("http://127.0.0.1:{}/plain", plain.addr.port()),
        )
        .await;
        let following = probe(HealthCheckConfig {
            follow_redirects: true,
            ..config(2000)
        });
        let result = check(&following, &with_password(secure.url("https"))).await;
        assert!(result.healthy, "{result:?}");
        assert!(has_header(&secure.seen()[0], "authorization"));
        let seen = plain.seen();
        assert_eq!(seen.len(), 1);
        assert!(!has_header(&seen[0], "authorization"), "{seen:?}");
    }

    #[tokio::test]
    async fn server_name_does_not_apply_to_a_redirect_to_another_host() {
        let ca = TestCa::new();
        let named = ca.issue(
            vec!["api.internal".into()],
            health_types::test_util::KeyUsage::ServerAuth,
        );
        // Its certificate names `localhost`, not `api.internal`.
        let other = http_server(
            "127.0.0.1:0",
            Some(ca.server().server_config(&[b"http/1.1"], None)),
            ok_handler(),
        )
        .await;
        let first = redirect_server(
            Some(named.server_config(&[b"http/1.1"], None)),
            format!("https://localhost:{}/other", other.addr.port()),
        )
        .await;
        let dir = tempfile::tempdir().unwrap();
        let probe = probe(HealthCheckConfig {
            follow_redirects: true,
            tls_verify: true,
            tls: TlsOptions {
                ca: Some(ca_file(&ca, &dir)),
                server_name: Some("api.internal".into()),
                ..Default::default()
            },
            ..config(2000)
        });
        let result = check(&probe, &first.url("https")).await;
        assert!(result.healthy, "{result:?}");
        assert_eq!(result.detail, "HTTP 200 OK (after 1 redirect)");
        assert_eq!(other.seen()[0].uri, "/other");
    }

    #[tokio::test]
    async fn the_client_certificate_goes_to_the_configured_host_only() {
        let ca = TestCa::new();
        let mutual = || Some(ca.server().server_config(&[b"http/1.1"], Some(ca.roots())));
        // Another host that asks for a client certificate: it gets none, and fails the
        // handshake.
        let other = http_server("127.0.0.1:0", mutual(), ok_handler()).await;
        let to_other = format!("https://localhost:{}/other", other.addr.port());
        let first = http_server(
            "127.0.0.1:0",
            mutual(),
            redirecting(move |path| match path {
                "/" => Some("/again".to_owned()),
                "/again" => Some(to_other.clone()),
                _ => None,
            }),
        )
        .await;
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = ca.client().write(dir.path(), "client");
        let probe = probe(HealthCheckConfig {
            follow_redirects: true,
            tls_verify: true,
            tls: TlsOptions {
                ca: Some(ca_file(&ca, &dir)),
                cert: Some(cert),
                key: Some(key),
                ..Default::default()
            },
            ..config(2000)
        });
        let result = check(&probe, &first.url("https")).await;
        // The configured host (both requests) took the certificate; the other did not.
        assert_eq!(first.seen().len(), 2, "{result:?}");
        assert!(!result.healthy, "{result:?}");
        assert!(other.seen().is_empty(), "{result:?}");
        assert_eq!(other.connections(), 1);
    }

    #[tokio::test]
    async fn redirects_may_go_to_https() {
        let secure = http_server(
            "127.0.0.1:0",
            Some(self_signed().server_config(&[b"http/1.1"], None)),
            ok_handler(),
        )
        .await;
        let to = format!("https://127.0.0.1:{}/secure", secure.addr.port());
        let plain = http_server(
            "127.0.0.1:0",
            None,
            redirecting(move |path| (path == "/").then(|| to.clone())),
        )
        .await;
        let following = probe(HealthCheckConfig {
            follow_redirects: true,
            ..config(2000)
        });
        let result = check(&following, &plain.url("http")).await;
        assert!(result.healthy, "{result:?}");
        assert_eq!(result.detail, "HTTP 200 OK (after 1 redirect)");
        assert!(
            result.cert.is_some() && result.phases.tls.is_some(),
            "{result:?}"
        );
        assert_eq!(secure.seen()[0].uri, "/secure");
    }
}
