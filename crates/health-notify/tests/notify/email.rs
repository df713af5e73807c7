//! The email provider against an in-test SMTP responder: envelope, headers and body;
//! permanent SMTP failures are not retried.

use std::sync::Arc;

use health_notify::{Dispatcher, Message, Notifier, NotifyError, RetryPolicy};
use health_types::{EventKind, EventSink};

use crate::support::{SmtpSink, WAIT, build, event};

fn table(port: u16) -> String {
    format!(
        r#"name = "mail"
provider = "email"
host = "127.0.0.1"
port = {port}
tls = "none"
from = "Health <health@example.test>"
to = ["ops@example.test", "On Call <oncall@example.test>"]"#
    )
}

#[tokio::test]
async fn the_message_arrives_with_its_headers_and_body() {
    let mut sink = SmtpSink::start(None).await;
    let notifier = build(&table(sink.port()));
    assert_eq!(notifier.provider(), "email");
    notifier
        .send(&Message::from_event(&event(EventKind::Down, "api")))
        .await
        .unwrap();
    let mail = sink.next().await;
    assert_eq!(mail.from, "<health@example.test>");
    assert_eq!(mail.rcpt, ["<ops@example.test>", "<oncall@example.test>"]);
    assert_eq!(
        mail.header("From").as_deref(),
        Some("Health <health@example.test>")
    );
    assert_eq!(
        mail.header("To").as_deref(),
        Some("ops@example.test, \"On Call\" <oncall@example.test>")
    );
    assert_eq!(mail.header("Subject").as_deref(), Some("Service down: api"));
    assert_eq!(mail.header("MIME-Version").as_deref(), Some("1.0"));
    assert_eq!(
        mail.header("Content-Type").as_deref(),
        Some("text/plain; charset=utf-8")
    );
    let date = mail.header("Date").unwrap();
    assert!(date.starts_with("Wed, 01 May 2024 12:00:00"), "{date}");
    assert!(mail.header("Message-ID").is_some());
    assert_eq!(
        mail.body(),
        "Service down: api\r\n\r\nService: api\r\nTime: 2024-05-01T12:00:00Z\r\nURL: http://api.test/health\r\nDetail: HTTP 503 Service Unavailable\r\nLast Seen: 2024-05-01T11:59:00Z"
    );
}

#[tokio::test]
async fn a_long_or_multiline_title_makes_a_bounded_one_line_subject() {
    let mut sink = SmtpSink::start(None).await;
    let notifier = build(&table(sink.port()));
    let one_word = "x".repeat(2000);
    let words = format!("Service down: {}", "é ".repeat(600));
    for title in [one_word.as_str(), words.as_str(), "Service down:\napi\tnow"] {
        notifier
            .send(&Message::custom(title, std::time::UNIX_EPOCH))
            .await
            .unwrap();
        let mail = sink.next().await;
        let head = mail.data.split("\r\n\r\n").next().unwrap();
        for line in head.split("\r\n") {
            // RFC 5322 §2.1.1: at most 998 characters on a line.
            assert!(line.len() <= 998, "{} characters: {line:.80}", line.len());
        }
        let subject = mail.header("Subject").unwrap();
        if title.contains('\t') {
            assert_eq!(subject, "Service down: api now");
        }
    }
}

/// One attempt to mail an `up` message through a responder that answers RCPT with
/// `rcpt_reply`: the responder, the notifier and the error.
async fn refused(rcpt_reply: &'static str) -> (SmtpSink, Arc<dyn Notifier>, NotifyError) {
    let sink = SmtpSink::start(Some(rcpt_reply)).await;
    let notifier = build(&table(sink.port()));
    let err = notifier
        .send(&Message::from_event(&event(EventKind::Up, "api")))
        .await
        .unwrap_err();
    (sink, notifier, err)
}

#[tokio::test]
async fn a_permanent_smtp_failure_is_not_retried() {
    let (sink, notifier, err) = refused("550 no such user").await;
    assert!(!err.is_retryable(), "{err:?}");

    let dispatcher = Dispatcher::builder()
        .notifier(notifier)
        .retry(RetryPolicy {
            base: std::time::Duration::from_millis(10),
            ..RetryPolicy::default()
        })
        .start()
        .unwrap();
    dispatcher.notify(event(EventKind::Down, "api"));
    assert!(dispatcher.shutdown(WAIT).await.drained);
    assert_eq!(dispatcher.stats().failed, 1);
    assert_eq!(dispatcher.stats().retried, 0);
    assert_eq!(sink.connections(), 2, "one per attempt, no retry");
}

#[tokio::test]
async fn a_transient_smtp_failure_is_retried() {
    let (_sink, _notifier, err) = refused("451 try again later").await;
    assert!(err.is_retryable(), "{err:?}");
}
