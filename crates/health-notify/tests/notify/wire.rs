//! Each HTTP provider's exact wire format (the cases of `vectors/wire.toml`): method,
//! path, headers and body, as a local hyper receiver records them; and how answers and
//! refusals become errors.

use std::collections::{BTreeMap, BTreeSet};

use health_notify::{Message, NotifierConfig, PROVIDERS};
use std::time::Duration;

use health_types::{Event, EventKind};
use serde::Deserialize;

use crate::support::{Receiver, build, event};

/// One case of `vectors/wire.toml` (the file's header says what each key means).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    send: String,
    notify: toml::Table,
    method: String,
    path: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    absent: Vec<String>,
    body: Option<String>,
    body_ends_with: Option<String>,
    #[serde(default)]
    json: BTreeMap<String, toml::Value>,
}

#[derive(Deserialize)]
struct Vectors {
    case: Vec<Case>,
}

/// The message a case sends: a §6 message about `api` at 2024-05-01T12:00:00Z; `down`,
/// `up` and `reminder` belong to the outage that began at 2024-05-01T11:56:48Z (192 s
/// before).
fn message(send: &str) -> Message {
    let kind = match send {
        "down" => EventKind::Down,
        "up" => EventKind::Up,
        "stopped" => EventKind::Stopped,
        "cert_expiry" => EventKind::CertExpiry,
        "reminder" => EventKind::Reminder,
        "flapping" => EventKind::Flapping,
        other => panic!("unknown event {other:?}"),
    };
    let event = event(kind, "api");
    let outage_start = matches!(kind, EventKind::Down | EventKind::Up | EventKind::Reminder)
        .then(|| event.time - Duration::from_secs(192));
    Message::from_event(&Event {
        outage_start,
        ..event
    })
}

/// Sends the case's message to a fresh receiver and checks what it got.
async fn check(mut case: Case) {
    let name = &case.name;
    let mut receiver = Receiver::start(vec![]).await;
    let url = case.notify["url"].as_str().expect("a url").to_owned();
    let url = url.replace("{receiver}", receiver.url("").as_str());
    case.notify.insert("url".into(), url.into());
    case.notify.insert("name".into(), "wire".into());
    let config = NotifierConfig::deserialize(toml::Value::Table(case.notify))
        .unwrap_or_else(|err| panic!("{name}: {err}"));
    let notifier = config.build().unwrap();
    notifier.send(&message(&case.send)).await.unwrap();
    let request = receiver.next().await;
    assert_eq!(request.method, case.method, "{name}");
    assert_eq!(request.path, case.path, "{name}");
    let agent = request.header("user-agent").unwrap_or_default();
    assert!(agent.starts_with("health-notify/"), "{name}: {agent}");
    for (header, value) in &case.headers {
        assert_eq!(
            request.header(header),
            Some(value.as_str()),
            "{name}: {header}"
        );
    }
    for header in &case.absent {
        assert_eq!(request.header(header), None, "{name}: {header}");
    }
    if let Some(body) = &case.body {
        assert_eq!(request.text(), body, "{name}");
    }
    if let Some(end) = &case.body_ends_with {
        assert!(
            request.text().ends_with(end.as_str()),
            "{name}: {}",
            request.text()
        );
    }
    if !case.json.is_empty() {
        let body = request.json();
        for (pointer, value) in case.json {
            let expected = serde_json::to_value(value).unwrap();
            assert_eq!(body.pointer(&pointer), Some(&expected), "{name}: {pointer}");
        }
    }
}

#[tokio::test]
async fn every_provider_sends_its_wire_format() {
    let vectors: Vectors = toml::from_str(include_str!("vectors/wire.toml")).unwrap();
    let mut covered = BTreeSet::new();
    for case in vectors.case {
        covered.insert(case.notify["provider"].as_str().unwrap().to_owned());
        check(case).await;
    }
    let http: BTreeSet<_> = PROVIDERS
        .iter()
        .filter(|p| **p != "email")
        .copied()
        .collect();
    assert_eq!(
        covered.iter().map(String::as_str).collect::<BTreeSet<_>>(),
        http
    );
}

#[tokio::test]
async fn failures_carry_the_status_and_retry_after() {
    let mut receiver = Receiver::start(vec![
        crate::support::Reply::status(429).header("retry-after", "3"),
    ])
    .await;
    let notifier = build(&format!(
        "name = \"d\"\nprovider = \"discord\"\nurl = \"{}\"",
        receiver.url("/")
    ));
    let err = notifier.send(&message("down")).await.unwrap_err();
    receiver.next().await;
    assert_eq!(err.status(), Some(429));
    assert!(err.is_retryable());
    assert_eq!(
        err.retry_after(),
        Some(health_notify::RetryAfter::Delay(
            std::time::Duration::from_secs(3)
        ))
    );
    assert_eq!(err.to_string(), "receiver answered HTTP 429: nope");
}

#[tokio::test]
async fn refused_connections_are_transport_errors() {
    // Bind then drop a listener to get a port nobody listens on.
    let port = {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap().port()
    };
    let notifier = build(&format!(
        "name = \"d\"\nprovider = \"discord\"\nurl = \"http://127.0.0.1:{port}/\""
    ));
    let err = notifier.send(&message("down")).await.unwrap_err();
    assert!(
        matches!(err, health_notify::NotifyError::Transport(_)),
        "{err:?}"
    );
    assert!(err.is_retryable());
}
