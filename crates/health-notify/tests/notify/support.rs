//! Test doubles: a recording hyper receiver, a scripted SMTP responder, a scripted
//! [`HttpSend`] fake for paused-clock tests, and sample events.

use std::{
    collections::VecDeque,
    convert::Infallible,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use async_trait::async_trait;
use bytes::Bytes;
use health_notify::{
    Format, HttpRequest, HttpResponse, HttpSend, Notifier, NotifierConfig, NotifyError,
    ProviderConfig, WebhookConfig,
};
use health_types::{Event, EventKind};
use http::{HeaderMap, HeaderValue, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::TcpListener,
    sync::{Semaphore, mpsc},
    task::JoinHandle,
    time::Instant,
};

/// The longest a test waits for something a receiver should get (real time).
pub(crate) const WAIT: Duration = Duration::from_secs(5);

/// 2024-05-01T12:00:00Z.
pub(crate) fn t0() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_714_564_800)
}

/// A sample event about `service`.
pub(crate) fn event(kind: EventKind, service: &str) -> Event {
    Event {
        kind,
        service: Arc::from(service),
        url: "http://api.test/health".into(),
        detail: "HTTP 503 Service Unavailable".into(),
        latency: Duration::from_millis(12),
        last_seen: Some(t0() - Duration::from_secs(60)),
        outage: Some(Duration::from_secs(192)),
        outage_start: None,
        time: t0(),
    }
}

/// Parses one `[[notify]]` table and builds it.
pub(crate) fn build(toml_table: &str) -> Arc<dyn Notifier> {
    let config: NotifierConfig = toml::from_str(toml_table).expect("valid notifier table");
    config.build().expect("buildable notifier")
}

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
pub(crate) struct Recorded {
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

impl Recorded {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub(crate) fn text(&self) -> &str {
        std::str::from_utf8(&self.body).expect("UTF-8 body")
    }

    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }
}

/// How the receiver answers one request.
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    status: u16,
    headers: Vec<(&'static str, &'static str)>,
    delay: Duration,
}

impl Reply {
    pub(crate) fn status(status: u16) -> Self {
        Reply {
            status,
            headers: Vec::new(),
            delay: Duration::ZERO,
        }
    }

    pub(crate) fn header(mut self, name: &'static str, value: &'static str) -> Self {
        self.headers.push((name, value));
        self
    }

    /// Answers only after `delay` (real time).
    pub(crate) fn after(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

/// A hyper HTTP/1 server on 127.0.0.1:0 that records every request and answers from a
/// script, then 200.
pub(crate) struct Receiver {
    addr: SocketAddr,
    requests: mpsc::UnboundedReceiver<Recorded>,
    task: JoinHandle<()>,
}

impl Receiver {
    pub(crate) async fn start(script: Vec<Reply>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let (tx, requests) = mpsc::unbounded_channel();
        let script = Arc::new(Mutex::new(VecDeque::from(script)));
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let tx = tx.clone();
                let script = Arc::clone(&script);
                tokio::spawn(async move {
                    let service = service_fn(move |request: Request<Incoming>| {
                        let tx = tx.clone();
                        let script = Arc::clone(&script);
                        async move {
                            let (parts, body) = request.into_parts();
                            let body = body
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            let _ = tx.send(Recorded {
                                method: parts.method.to_string(),
                                path: parts
                                    .uri
                                    .path_and_query()
                                    .map(|p| p.to_string())
                                    .unwrap_or_default(),
                                headers: parts.headers,
                                body,
                            });
                            let reply = script
                                .lock()
                                .unwrap()
                                .pop_front()
                                .unwrap_or(Reply::status(200));
                            tokio::time::sleep(reply.delay).await;
                            let mut response = Response::new(Full::new(Bytes::from_static(
                                if reply.status < 300 { b"ok" } else { b"nope" },
                            )));
                            *response.status_mut() = StatusCode::from_u16(reply.status).unwrap();
                            for (name, value) in reply.headers {
                                response
                                    .headers_mut()
                                    .insert(name, HeaderValue::from_static(value));
                            }
                            Ok::<_, Infallible>(response)
                        }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Receiver {
            addr,
            requests,
            task,
        }
    }

    /// `http://127.0.0.1:<port><path>`.
    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The next request, failing the test after [`WAIT`].
    pub(crate) async fn next(&mut self) -> Recorded {
        tokio::time::timeout(WAIT, self.requests.recv())
            .await
            .expect("a request within the wait")
            .expect("receiver running")
    }

    /// Every request received so far, without waiting.
    pub(crate) fn received(&mut self) -> Vec<Recorded> {
        let mut all = Vec::new();
        while let Ok(request) = self.requests.try_recv() {
            all.push(request);
        }
        all
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What the fake sender does for one request.
#[derive(Debug, Clone)]
pub(crate) enum Fake {
    /// Answers with this status and, optionally, a `Retry-After`.
    Status(u16, Option<String>),
    /// Fails as if the connection were refused.
    Refused,
    /// Never answers.
    Hang,
}

/// A scripted [`HttpSend`] for paused-clock tests: records when each request came (on
/// tokio's clock), answers from the script, then 200. With a gate, each request first
/// waits for a permit.
#[derive(Debug)]
pub(crate) struct FakeSend {
    script: Mutex<VecDeque<Fake>>,
    log: Mutex<Vec<(Instant, HttpRequest)>>,
    gate: Option<Semaphore>,
    created: Instant,
}

impl FakeSend {
    pub(crate) fn new(script: impl IntoIterator<Item = Fake>) -> Arc<Self> {
        FakeSend::with_gate(script, None)
    }

    /// A sender whose requests wait until [`open`](Self::open) adds permits.
    pub(crate) fn gated() -> Arc<Self> {
        FakeSend::with_gate([], Some(Semaphore::new(0)))
    }

    fn with_gate(script: impl IntoIterator<Item = Fake>, gate: Option<Semaphore>) -> Arc<Self> {
        Arc::new(FakeSend {
            script: Mutex::new(script.into_iter().collect()),
            log: Mutex::default(),
            gate,
            created: Instant::now(),
        })
    }

    pub(crate) fn open(&self, permits: usize) {
        if let Some(gate) = &self.gate {
            gate.add_permits(permits);
        }
    }

    /// When each request came, as time since the sender was made.
    pub(crate) fn times(&self) -> Vec<Duration> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .map(|(at, _)| *at - self.created)
            .collect()
    }

    /// The `title` of each request's (default webhook) JSON body.
    pub(crate) fn titles(&self) -> Vec<String> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .map(|(_, request)| {
                let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
                body["title"].as_str().unwrap().to_owned()
            })
            .collect()
    }

    pub(crate) fn count(&self) -> usize {
        self.log.lock().unwrap().len()
    }
}

#[async_trait]
impl HttpSend for FakeSend {
    async fn send(&self, request: HttpRequest) -> Result<HttpResponse, NotifyError> {
        self.log.lock().unwrap().push((Instant::now(), request));
        if let Some(gate) = &self.gate {
            gate.acquire().await.expect("gate open").forget();
        }
        let next = self.script.lock().unwrap().pop_front();
        match next.unwrap_or(Fake::Status(200, None)) {
            Fake::Status(status, retry_after) => {
                let mut response = HttpResponse::new(StatusCode::from_u16(status).unwrap());
                if let Some(value) = retry_after {
                    response
                        .headers
                        .insert("retry-after", HeaderValue::try_from(value).unwrap());
                }
                Ok(response)
            }
            Fake::Refused => Err(NotifyError::transport("connection refused")),
            Fake::Hang => std::future::pending().await,
        }
    }
}

/// A webhook notifier named `name` that sends through `http`.
pub(crate) fn fake_webhook(name: &str, http: Arc<FakeSend>) -> Arc<dyn Notifier> {
    let webhook = WebhookConfig::new("http://fake.test/hook");
    NotifierConfig::new(name, Format::Plain, ProviderConfig::Webhook(webhook))
        .build_with(http)
        .unwrap()
}

/// One mail as the SMTP responder saw it.
#[derive(Debug, Clone)]
pub(crate) struct Mail {
    pub(crate) from: String,
    pub(crate) rcpt: Vec<String>,
    pub(crate) data: String,
}

impl Mail {
    /// The value of a header in the message's head (first occurrence, unfolded).
    pub(crate) fn header(&self, name: &str) -> Option<String> {
        let head = self.data.split("\r\n\r\n").next().unwrap_or_default();
        let mut lines = head.split("\r\n").peekable();
        while let Some(line) = lines.next() {
            if let Some((key, value)) = line.split_once(':')
                && key.eq_ignore_ascii_case(name)
            {
                let mut value = value.trim().to_owned();
                while let Some(next) = lines.peek() {
                    if next.starts_with([' ', '\t']) {
                        value.push(' ');
                        value.push_str(next.trim());
                        lines.next();
                    } else {
                        break;
                    }
                }
                return Some(value);
            }
        }
        None
    }

    pub(crate) fn body(&self) -> &str {
        self.data
            .split_once("\r\n\r\n")
            .map_or("", |(_, body)| body)
    }
}

/// A minimal SMTP server on 127.0.0.1:0: greets, answers EHLO/HELO, MAIL, RCPT, DATA,
/// RSET, NOOP and QUIT, and records each message. `rcpt_reply` replaces the answer to
/// RCPT (e.g. `550 no such user`).
pub(crate) struct SmtpSink {
    addr: SocketAddr,
    mails: mpsc::UnboundedReceiver<Mail>,
    connections: Arc<Mutex<usize>>,
    task: JoinHandle<()>,
}

impl SmtpSink {
    pub(crate) async fn start(rcpt_reply: Option<&'static str>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let (tx, mails) = mpsc::unbounded_channel();
        let connections = Arc::new(Mutex::new(0));
        let counter = Arc::clone(&connections);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                *counter.lock().unwrap() += 1;
                let tx = tx.clone();
                tokio::spawn(async move {
                    let _ = smtp_session(stream, tx, rcpt_reply).await;
                });
            }
        });
        SmtpSink {
            addr,
            mails,
            connections,
            task,
        }
    }

    pub(crate) fn port(&self) -> u16 {
        self.addr.port()
    }

    pub(crate) fn connections(&self) -> usize {
        *self.connections.lock().unwrap()
    }

    pub(crate) async fn next(&mut self) -> Mail {
        tokio::time::timeout(WAIT, self.mails.recv())
            .await
            .expect("a mail within the wait")
            .expect("sink running")
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn smtp_session(
    stream: tokio::net::TcpStream,
    tx: mpsc::UnboundedSender<Mail>,
    rcpt_reply: Option<&'static str>,
) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    write.write_all(b"220 sink.test ESMTP ready\r\n").await?;
    let mut mail = Mail {
        from: String::new(),
        rcpt: Vec::new(),
        data: String::new(),
    };
    // Bounded: a session ends when the client stops sending lines.
    while let Some(line) = lines.next_line().await? {
        let verb = line.get(..4).unwrap_or(&line).to_ascii_uppercase();
        let reply: &str = match verb.as_str() {
            "EHLO" => "250-sink.test\r\n250 8BITMIME",
            "HELO" => "250 sink.test",
            "MAIL" => {
                mail.from = line[10..].trim().to_owned();
                "250 OK"
            }
            "RCPT" => match rcpt_reply {
                Some(reply) => reply,
                None => {
                    mail.rcpt.push(line[8..].trim().to_owned());
                    "250 OK"
                }
            },
            "DATA" => {
                write.write_all(b"354 end with <CRLF>.<CRLF>\r\n").await?;
                let mut data = Vec::new();
                while let Some(line) = lines.next_line().await? {
                    if line == "." {
                        break;
                    }
                    // Undo dot-stuffing.
                    data.push(line.strip_prefix('.').map_or(line.clone(), str::to_owned));
                }
                mail.data = data.join("\r\n");
                let _ = tx.send(mail.clone());
                "250 OK queued"
            }
            "RSET" | "NOOP" => "250 OK",
            "QUIT" => {
                write.write_all(b"221 bye\r\n").await?;
                return Ok(());
            }
            _ => "502 command not implemented",
        };
        write.write_all(reply.as_bytes()).await?;
        write.write_all(b"\r\n").await?;
    }
    Ok(())
}
