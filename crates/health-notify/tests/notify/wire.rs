//! Each HTTP provider's exact wire format: method, path, headers and body, as a local
//! hyper receiver records them.

use health_notify::Message;
use health_types::EventKind;

use crate::support::{Receiver, build, event};

const FIELDS_JSON: &str = r#"[{"name":"Service","value":"api"},{"name":"Time","value":"2024-05-01T12:00:00Z"},{"name":"URL","value":"http://api.test/health"},{"name":"Detail","value":"HTTP 503 Service Unavailable"},{"name":"Last Seen","value":"2024-05-01T11:59:00Z"}]"#;
const PLAIN_FIELDS: &str = "Service: api\nTime: 2024-05-01T12:00:00Z\nURL: http://api.test/health\nDetail: HTTP 503 Service Unavailable\nLast Seen: 2024-05-01T11:59:00Z";
const MARKDOWN_FIELDS: &str = "**Service:** api\n**Time:** 2024-05-01T12:00:00Z\n**URL:** http://api.test/health\n**Detail:** HTTP 503 Service Unavailable\n**Last Seen:** 2024-05-01T11:59:00Z";

fn down() -> Message {
    Message::from_event(&event(EventKind::Down, "api"))
}

fn up() -> Message {
    Message::from_event(&event(EventKind::Up, "api"))
}

#[tokio::test]
async fn webhook_default_body() {
    let mut receiver = Receiver::start(vec![]).await;
    let notifier = build(&format!(
        "name = \"hook\"\nprovider = \"webhook\"\nurl = \"{}\"",
        receiver.url("/hook?x=1")
    ));
    notifier.send(&down()).await.unwrap();
    let request = receiver.next().await;
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, "/hook?x=1");
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert_eq!(request.header("authorization"), None);
    let agent = request.header("user-agent").unwrap();
    assert!(agent.starts_with("health-notify/"), "{agent}");
    let message = serde_json::Value::from(MARKDOWN_FIELDS).to_string();
    assert_eq!(
        request.text(),
        format!(
            r##"{{"event":"down","title":"Service down: api","message":{message},"fields":{FIELDS_JSON},"service":"api","url":"http://api.test/health","detail":"HTTP 503 Service Unavailable","level":"error","color":"#ff0000","time":"2024-05-01T12:00:00Z"}}"##
        )
    );
}

#[tokio::test]
async fn webhook_default_body_in_dec_mode_for_up() {
    let mut receiver = Receiver::start(vec![]).await;
    let notifier = build(&format!(
        "name = \"hook\"\nprovider = \"webhook\"\nurl = \"{}\"\ncolor_mode = \"dec\"\nformat = \"plain\"",
        receiver.url("/")
    ));
    notifier.send(&up()).await.unwrap();
    let body = receiver.next().await.json();
    assert_eq!(body["event"], "up");
    assert_eq!(body["title"], "Service up: api");
    assert_eq!(body["color"], 65280);
    assert_eq!(body["level"], "info");
    assert_eq!(
        body["message"],
        "Service: api\nTime: 2024-05-01T12:00:00Z\nURL: http://api.test/health\nLatency: 12 ms\nDowntime: 3m 12s"
    );
}

#[tokio::test]
async fn webhook_json_payload_template() {
    let mut receiver = Receiver::start(vec![]).await;
    let notifier = build(&format!(
        r#"name = "hook"
provider = "webhook"
url = "{}"
token = "s3cret"
payload = '{{"t": $title, "c": "$color", "f": $fields, "e": $event, "s": $service, "d": $detail, "u": $url, "at": $time, "m": $message}}'"#,
        receiver.url("/tpl")
    ));
    notifier.send(&down()).await.unwrap();
    let request = receiver.next().await;
    assert_eq!(request.method, "POST");
    assert_eq!(request.header("authorization"), Some("Bearer s3cret"));
    assert_eq!(request.header("content-type"), Some("application/json"));
    let message = serde_json::Value::from(MARKDOWN_FIELDS).to_string();
    assert_eq!(
        request.text(),
        format!(
            r##"{{"t": "Service down: api", "c": "#ff0000", "f": {FIELDS_JSON}, "e": "down", "s": "api", "d": "HTTP 503 Service Unavailable", "u": "http://api.test/health", "at": "2024-05-01T12:00:00Z", "m": {message}}}"##
        )
    );
}

#[tokio::test]
async fn webhook_form_put_is_raw() {
    let mut receiver = Receiver::start(vec![]).await;
    let notifier = build(&format!(
        r#"name = "hook"
provider = "webhook"
url = "{}"
method = "PUT"
mime_type = "application/x-www-form-urlencoded"
color_mode = "dec"
payload = "event=$event&service=$service&color=$color""#,
        receiver.url("/form")
    ));
    notifier.send(&down()).await.unwrap();
    let request = receiver.next().await;
    assert_eq!(request.method, "PUT");
    assert_eq!(request.path, "/form");
    assert_eq!(
        request.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(request.text(), "event=down&service=api&color=16711680");
}

#[tokio::test]
async fn webhook_text_payload_is_raw() {
    let mut receiver = Receiver::start(vec![]).await;
    let notifier = build(&format!(
        "name = \"hook\"\nprovider = \"webhook\"\nurl = \"{}\"\nmime_type = \"text/plain\"\npayload = \"$title ($color)\\n$fields\"",
        receiver.url("/")
    ));
    notifier.send(&down()).await.unwrap();
    let request = receiver.next().await;
    assert_eq!(request.header("content-type"), Some("text/plain"));
    assert_eq!(
        request.text(),
        format!("Service down: api (#ff0000)\n{PLAIN_FIELDS}")
    );
}

#[tokio::test]
async fn discord_embed() {
    let mut receiver = Receiver::start(vec![]).await;
    let notifier = build(&format!(
        "name = \"d\"\nprovider = \"discord\"\nurl = \"{}\"",
        receiver.url("/api/webhooks/1/abc")
    ));
    notifier.send(&down()).await.unwrap();
    let request = receiver.next().await;
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, "/api/webhooks/1/abc");
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert_eq!(
        request.text(),
        r#"{"embeds":[{"title":"Service down: api","color":16711680,"fields":[{"name":"Service","value":"api","inline":false},{"name":"Time","value":"2024-05-01T12:00:00Z","inline":false},{"name":"URL","value":"http://api.test/health","inline":false},{"name":"Detail","value":"HTTP 503 Service Unavailable","inline":false},{"name":"Last Seen","value":"2024-05-01T11:59:00Z","inline":false}]}]}"#
    );
}

#[tokio::test]
async fn slack_blocks() {
    let mut receiver = Receiver::start(vec![]).await;
    let notifier = build(&format!(
        "name = \"s\"\nprovider = \"slack\"\nurl = \"{}\"",
        receiver.url("/services/T/B/X")
    ));
    notifier.send(&down()).await.unwrap();
    let request = receiver.next().await;
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, "/services/T/B/X");
    assert_eq!(request.header("content-type"), Some("application/json"));
    let section = serde_json::Value::from(
        "*Service:* api\n*Time:* 2024-05-01T12:00:00Z\n*URL:* http://api.test/health\n*Detail:* HTTP 503 Service Unavailable\n*Last Seen:* 2024-05-01T11:59:00Z",
    );
    assert_eq!(
        request.text(),
        format!(
            r#"{{"text":"Service down: api","blocks":[{{"type":"header","text":{{"type":"plain_text","text":"Service down: api"}}}},{{"type":"section","text":{{"type":"mrkdwn","text":{section}}}}}]}}"#
        )
    );
}

#[tokio::test]
async fn slack_plain_uses_plain_text() {
    let mut receiver = Receiver::start(vec![]).await;
    let notifier = build(&format!(
        "name = \"s\"\nprovider = \"slack\"\nurl = \"{}\"\nformat = \"plain\"",
        receiver.url("/")
    ));
    notifier.send(&down()).await.unwrap();
    let body = receiver.next().await.json();
    assert_eq!(body["blocks"][1]["text"]["type"], "plain_text");
    assert_eq!(body["blocks"][1]["text"]["text"], PLAIN_FIELDS);
}

#[tokio::test]
async fn ntfy_headers_and_body() {
    let mut receiver = Receiver::start(vec![]).await;
    let notifier = build(&format!(
        "name = \"n\"\nprovider = \"ntfy\"\nurl = \"{}\"\ntopic = \"alerts\"\ntoken = \"tk_1\"",
        receiver.url("/base/")
    ));
    notifier.send(&down()).await.unwrap();
    let request = receiver.next().await;
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, "/base/alerts");
    assert_eq!(request.header("title"), Some("Service down: api"));
    assert_eq!(request.header("priority"), Some("high"));
    assert_eq!(request.header("markdown"), Some("yes"));
    assert_eq!(request.header("authorization"), Some("Bearer tk_1"));
    assert_eq!(request.text(), MARKDOWN_FIELDS);

    notifier.send(&up()).await.unwrap();
    let request = receiver.next().await;
    assert_eq!(request.header("title"), Some("Service up: api"));
    assert_eq!(request.header("priority"), Some("default"));
}

#[tokio::test]
async fn ntfy_plain_has_no_markdown_header_and_stopped_is_high() {
    let mut receiver = Receiver::start(vec![]).await;
    let notifier = build(&format!(
        "name = \"n\"\nprovider = \"ntfy\"\nurl = \"{}\"\ntopic = \"alerts\"\nformat = \"plain\"",
        receiver.url("")
    ));
    let stopped = Message::from_event(&event(EventKind::Stopped, "api"));
    notifier.send(&stopped).await.unwrap();
    let request = receiver.next().await;
    assert_eq!(request.path, "/alerts");
    assert_eq!(request.header("markdown"), None);
    assert_eq!(request.header("authorization"), None);
    assert_eq!(request.header("priority"), Some("high"));
    assert_eq!(request.header("title"), Some("Monitor stopped: api"));
}

#[tokio::test]
async fn gotify_message() {
    let mut receiver = Receiver::start(vec![]).await;
    let notifier = build(&format!(
        "name = \"g\"\nprovider = \"gotify\"\nurl = \"{}\"\ntoken = \"AbC\"\nformat = \"plain\"",
        receiver.url("")
    ));
    notifier.send(&down()).await.unwrap();
    let request = receiver.next().await;
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, "/message");
    assert_eq!(request.header("x-gotify-key"), Some("AbC"));
    assert_eq!(request.header("content-type"), Some("application/json"));
    let message = serde_json::Value::from(PLAIN_FIELDS);
    assert_eq!(
        request.text(),
        format!(r#"{{"title":"Service down: api","message":{message},"priority":8}}"#)
    );
    notifier.send(&up()).await.unwrap();
    assert_eq!(receiver.next().await.json()["priority"], 4);
}

#[tokio::test]
async fn gotify_markdown_extras() {
    let mut receiver = Receiver::start(vec![]).await;
    let notifier = build(&format!(
        "name = \"g\"\nprovider = \"gotify\"\nurl = \"{}\"\ntoken = \"AbC\"",
        receiver.url("/")
    ));
    notifier.send(&down()).await.unwrap();
    let body = receiver.next().await.json();
    assert_eq!(body["message"], MARKDOWN_FIELDS);
    assert_eq!(
        body["extras"]["client::display"]["contentType"],
        "text/markdown"
    );
}

#[tokio::test]
async fn telegram_send_message() {
    let mut receiver = Receiver::start(vec![]).await;
    let notifier = build(&format!(
        "name = \"t\"\nprovider = \"telegram\"\nurl = \"{}\"\ntoken = \"123:AbC\"\nchat_id = -100",
        receiver.url("")
    ));
    notifier.send(&down()).await.unwrap();
    let request = receiver.next().await;
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, "/bot123:AbC/sendMessage");
    assert_eq!(request.header("content-type"), Some("application/json"));
    let text = serde_json::Value::from(
        "*Service down: api*\n\n*Service:* api\n*Time:* 2024\\-05\\-01T12:00:00Z\n*URL:* http://api\\.test/health\n*Detail:* HTTP 503 Service Unavailable\n*Last Seen:* 2024\\-05\\-01T11:59:00Z",
    );
    assert_eq!(
        request.text(),
        format!(r#"{{"chat_id":-100,"text":{text},"parse_mode":"MarkdownV2"}}"#)
    );
}

#[tokio::test]
async fn telegram_plain_uses_html_mode_and_string_chat_ids() {
    let mut receiver = Receiver::start(vec![]).await;
    let notifier = build(&format!(
        "name = \"t\"\nprovider = \"telegram\"\nurl = \"{}\"\ntoken = \"123:AbC\"\nchat_id = \"@ops\"\nformat = \"plain\"",
        receiver.url("")
    ));
    notifier.send(&down()).await.unwrap();
    let body = receiver.next().await.json();
    assert_eq!(body["chat_id"], "@ops");
    assert_eq!(body["parse_mode"], "HTML");
    assert_eq!(body["text"], format!("Service down: api\n\n{PLAIN_FIELDS}"));
}

#[tokio::test]
async fn pushover_form() {
    let mut receiver = Receiver::start(vec![]).await;
    let notifier = build(&format!(
        "name = \"p\"\nprovider = \"pushover\"\nurl = \"{}\"\ntoken = \"app1\"\nuser = \"usr1\"",
        receiver.url("")
    ));
    notifier.send(&down()).await.unwrap();
    let request = receiver.next().await;
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, "/1/messages.json");
    assert_eq!(
        request.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    let message: String = url::form_urlencoded::byte_serialize(PLAIN_FIELDS.as_bytes()).collect();
    assert_eq!(
        request.text(),
        format!("token=app1&user=usr1&title=Service+down%3A+api&message={message}&priority=1")
    );
    notifier.send(&up()).await.unwrap();
    let request = receiver.next().await;
    assert!(
        request.text().ends_with("&priority=0"),
        "{}",
        request.text()
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
    let err = notifier.send(&down()).await.unwrap_err();
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
    let err = notifier.send(&down()).await.unwrap_err();
    assert!(
        matches!(err, health_notify::NotifyError::Transport(_)),
        "{err:?}"
    );
    assert!(err.is_retryable());
}
