//! Test doubles: a recording hyper receiver, a scripted SMTP responder, a scripted
//! [`HttpSend`] fake for paused-clock tests, a scriptable [`Outbox`] fake, a log capture,
//! and sample events.

use std::{
    collections::{BTreeMap, VecDeque},
    convert::Infallible,
    fmt,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use async_trait::async_trait;
use bytes::Bytes;
use health_notify::{
    Dispatcher, DispatcherBuilder, Format, HttpRequest, HttpResponse, HttpSend, Notifier,
    NotifierConfig, NotifyError, ProviderConfig, RetryPolicy, WebhookConfig,
};
use health_types::{Event, EventKind, Outbox, OutboxEntry, OutboxError, TokioClock};
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

/// `s` seconds.
pub(crate) fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// The default policy without jitter, so times are exact.
pub(crate) fn exact() -> RetryPolicy {
    RetryPolicy {
        jitter: 0.0,
        ..RetryPolicy::default()
    }
}

/// Long enough for any schedule in the paused-clock tests (a message's default age limit
/// is a day); paused time makes it free.
pub(crate) const DRAIN: Duration = Duration::from_secs(2 * 86_400);

/// When the outages of the paused-clock tests began.
pub(crate) fn outage_start() -> SystemTime {
    t0() - secs(60)
}

/// A dispatcher whose one notifier, the webhook "hook", sends through `http`; exact
/// backoff; a wall clock at t0 that follows tokio's.
pub(crate) fn exact_hook(http: &Arc<FakeSend>) -> DispatcherBuilder {
    Dispatcher::builder()
        .notifier(fake_webhook("hook", Arc::clone(http)))
        .retry(exact())
        .clock(Arc::new(TokioClock::starting_at(t0())))
}

/// [`exact_hook`], delivering from `outbox`.
pub(crate) fn durable(http: &Arc<FakeSend>, outbox: &Arc<FakeOutbox>) -> DispatcherBuilder {
    exact_hook(http).outbox(Arc::clone(outbox) as Arc<dyn Outbox>)
}

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

/// A sample event about `service` for the outage that began at `outage_start`.
pub(crate) fn outage_event(kind: EventKind, service: &str, outage_start: SystemTime) -> Event {
    Event {
        outage_start: Some(outage_start),
        ..event(kind, service)
    }
}

/// Parses one `[[notify]]` table and builds it.
pub(crate) fn build(toml_table: &str) -> Arc<dyn Notifier> {
    quiet_global_subscriber();
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
    /// Answers 200 after this long (tokio's clock).
    Slow(Duration),
}

/// Picks the answer to each request from the request's index (0 for the first), when
/// it came (time since the sender was made) and its JSON body.
type RuleFn = dyn Fn(usize, Duration, &serde_json::Value) -> Fake + Send + Sync;

/// A [`RuleFn`], so that [`FakeSend`] can derive `Debug`.
struct Rule(Box<RuleFn>);

impl fmt::Debug for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Rule")
    }
}

/// A scripted [`HttpSend`] for paused-clock tests: records when each request came (on
/// tokio's clock) and how many were in flight at once, and answers from a script (then
/// 200) or a rule. With a gate, each request first waits for a permit.
#[derive(Debug)]
pub(crate) struct FakeSend {
    script: Mutex<VecDeque<Fake>>,
    rule: Option<Rule>,
    log: Mutex<Vec<(Instant, HttpRequest)>>,
    gate: Option<Semaphore>,
    created: Instant,
    /// Requests within this long after `created` are refused, whatever the script says.
    outage: Duration,
    /// Requests in flight now, and the most there ever were.
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

/// Counts one request as in flight until dropped (answered, or given up by a timeout).
struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl FakeSend {
    pub(crate) fn new(script: impl IntoIterator<Item = Fake>) -> Arc<Self> {
        FakeSend::with_gate(script, None)
    }

    /// A sender whose requests wait until [`open`](Self::open) adds permits.
    pub(crate) fn gated() -> Arc<Self> {
        FakeSend::with_gate([], Some(Semaphore::new(0)))
    }

    /// A sender whose receiver is unreachable (connection refused) for `outage` from
    /// now, then answers 200.
    pub(crate) fn refusing_for(outage: Duration) -> Arc<Self> {
        let mut fake = FakeSend::make([], None);
        fake.outage = outage;
        Arc::new(fake)
    }

    /// A sender that answers each request as `rule` says (see [`RuleFn`]).
    pub(crate) fn answering(
        rule: impl Fn(usize, Duration, &serde_json::Value) -> Fake + Send + Sync + 'static,
    ) -> Arc<Self> {
        let mut fake = FakeSend::make([], None);
        fake.rule = Some(Rule(Box::new(rule)));
        Arc::new(fake)
    }

    fn with_gate(script: impl IntoIterator<Item = Fake>, gate: Option<Semaphore>) -> Arc<Self> {
        Arc::new(FakeSend::make(script, gate))
    }

    fn make(script: impl IntoIterator<Item = Fake>, gate: Option<Semaphore>) -> Self {
        FakeSend {
            script: Mutex::new(script.into_iter().collect()),
            rule: None,
            log: Mutex::default(),
            gate,
            created: Instant::now(),
            outage: Duration::ZERO,
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
        }
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
        self.bodies()
            .iter()
            .map(|body| body["title"].as_str().unwrap().to_owned())
            .collect()
    }

    /// Each request's (default webhook) JSON body.
    pub(crate) fn bodies(&self) -> Vec<serde_json::Value> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .map(|(_, request)| serde_json::from_slice(&request.body).unwrap())
            .collect()
    }

    /// Each request's time (since the sender was made) and (default webhook) JSON body.
    pub(crate) fn requests(&self) -> Vec<(Duration, serde_json::Value)> {
        self.times().into_iter().zip(self.bodies()).collect()
    }

    pub(crate) fn count(&self) -> usize {
        self.log.lock().unwrap().len()
    }

    /// The most requests that were in flight at once.
    pub(crate) fn max_in_flight(&self) -> usize {
        self.max_in_flight.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl HttpSend for FakeSend {
    async fn send(&self, request: HttpRequest) -> Result<HttpResponse, NotifyError> {
        let now = Instant::now();
        let in_flight = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        let _in_flight = InFlight(&self.in_flight);
        self.max_in_flight.fetch_max(in_flight, Ordering::SeqCst);
        let body = serde_json::from_slice(&request.body).unwrap_or_default();
        let index = {
            let mut log = self.log.lock().unwrap();
            log.push((now, request));
            log.len() - 1
        };
        if now - self.created < self.outage {
            return Err(NotifyError::transport("connection refused"));
        }
        if let Some(gate) = &self.gate {
            gate.acquire().await.expect("gate open").forget();
        }
        let next = match &self.rule {
            Some(rule) => Some(rule.0(index, now - self.created, &body)),
            None => self.script.lock().unwrap().pop_front(),
        };
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
            Fake::Slow(delay) => {
                tokio::time::sleep(delay).await;
                Ok(HttpResponse::new(StatusCode::OK))
            }
        }
    }
}

/// A webhook notifier named `name` that sends through `http`.
pub(crate) fn fake_webhook(name: &str, http: Arc<FakeSend>) -> Arc<dyn Notifier> {
    quiet_global_subscriber();
    let webhook = WebhookConfig::new("http://fake.test/hook");
    NotifierConfig::new(name, Format::Plain, ProviderConfig::Webhook(webhook))
        .build_with(http)
        .unwrap()
}

/// An [`Outbox`] fake like a store's: entries inserted with any id, delivered by id,
/// their fate recorded; each call can be made to fail.
#[derive(Debug, Default)]
pub(crate) struct FakeOutbox {
    state: Mutex<OutboxState>,
}

#[derive(Debug, Default)]
struct OutboxState {
    pending: BTreeMap<u64, OutboxEntry>,
    /// Done entries: `None` delivered, `Some(reason)` given up.
    done: Vec<(OutboxEntry, Option<String>)>,
    /// How many of the next reads (`pending`, `down_given_up`, `backlog`) fail.
    failing_reads: u32,
    /// How many of the next marks (`delivered`, `gave_up`) fail.
    failing_marks: u32,
    /// Calls that failed.
    failed_calls: u32,
}

impl OutboxState {
    fn read(&mut self) -> Result<(), OutboxError> {
        if self.failing_reads > 0 {
            self.failing_reads -= 1;
            self.failed_calls += 1;
            return Err(OutboxError("database is locked".into()));
        }
        Ok(())
    }

    fn mark(&mut self, id: u64, reason: Option<&str>) -> Result<(), OutboxError> {
        if self.failing_marks > 0 {
            self.failing_marks -= 1;
            self.failed_calls += 1;
            return Err(OutboxError("disk I/O error".into()));
        }
        let entry = self
            .pending
            .remove(&id)
            .expect("marks only pending entries");
        self.done.push((entry, reason.map(str::to_owned)));
        Ok(())
    }
}

impl FakeOutbox {
    pub(crate) fn new() -> Arc<Self> {
        Arc::default()
    }

    /// Adds an entry (committed at t0) as a store would.
    pub(crate) fn insert(&self, id: u64, notifier: &str, event: Event) {
        self.insert_at(id, notifier, event, t0());
    }

    /// Adds, for the notifier "hook", one entry per `(id, kind)` of api's outage that
    /// began at [`outage_start`].
    pub(crate) fn insert_api_outage(&self, entries: &[(u64, EventKind)]) {
        for &(id, kind) in entries {
            self.insert(id, "hook", outage_event(kind, "api", outage_start()));
        }
    }

    /// Adds an entry committed at `created`.
    pub(crate) fn insert_at(&self, id: u64, notifier: &str, event: Event, created: SystemTime) {
        let entry = OutboxEntry {
            id,
            notifier: notifier.to_owned(),
            event,
            created,
        };
        self.state.lock().unwrap().pending.insert(id, entry);
    }

    /// Makes the next `n` reads fail.
    pub(crate) fn fail_reads(&self, n: u32) {
        self.state.lock().unwrap().failing_reads = n;
    }

    /// Makes the next `n` marks fail.
    pub(crate) fn fail_marks(&self, n: u32) {
        self.state.lock().unwrap().failing_marks = n;
    }

    pub(crate) fn failed_calls(&self) -> u32 {
        self.state.lock().unwrap().failed_calls
    }

    /// The ids still pending for `notifier`.
    pub(crate) fn pending_ids(&self, notifier: &str) -> Vec<u64> {
        let state = self.state.lock().unwrap();
        let entries = state.pending.values();
        entries
            .filter(|e| e.notifier == notifier)
            .map(|e| e.id)
            .collect()
    }

    /// The done entries in the order they were marked: id and, when given up, why.
    pub(crate) fn done(&self) -> Vec<(u64, Option<String>)> {
        let state = self.state.lock().unwrap();
        let done = state.done.iter();
        done.map(|(e, reason)| (e.id, reason.clone())).collect()
    }
}

impl Outbox for FakeOutbox {
    fn pending(
        &self,
        notifier: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<OutboxEntry>, OutboxError> {
        let mut state = self.state.lock().unwrap();
        state.read()?;
        let entries = state.pending.range(after + 1..).map(|(_, e)| e);
        let entries = entries.filter(|e| e.notifier == notifier).take(limit);
        Ok(entries.cloned().collect())
    }

    fn delivered(&self, id: u64) -> Result<(), OutboxError> {
        self.state.lock().unwrap().mark(id, None)
    }

    fn gave_up(&self, id: u64, reason: &str) -> Result<(), OutboxError> {
        self.state.lock().unwrap().mark(id, Some(reason))
    }

    fn down_given_up(
        &self,
        notifier: &str,
        service: &str,
        outage_start: SystemTime,
    ) -> Result<bool, OutboxError> {
        let mut state = self.state.lock().unwrap();
        state.read()?;
        Ok(state.done.iter().any(|(e, reason)| {
            reason.is_some()
                && e.notifier == notifier
                && e.event.kind == EventKind::Down
                && &*e.event.service == service
                && e.event.outage_start == Some(outage_start)
        }))
    }

    fn backlog(&self, notifier: &str) -> Result<(u64, Option<SystemTime>), OutboxError> {
        let mut state = self.state.lock().unwrap();
        state.read()?;
        let mine: Vec<_> = state
            .pending
            .values()
            .filter(|e| e.notifier == notifier)
            .collect();
        let oldest = mine.iter().map(|e| e.created).min();
        Ok((mine.len() as u64, oldest))
    }
}

/// One event logged with `tracing`: its level and fields, the message under `message`.
#[derive(Debug, Clone)]
pub(crate) struct Log {
    pub(crate) level: tracing::Level,
    pub(crate) fields: BTreeMap<String, String>,
}

impl Log {
    pub(crate) fn field(&self, name: &str) -> &str {
        self.fields.get(name).map_or("", String::as_str)
    }
}

/// Captures this thread's `tracing` events while the guard lives (a paused-clock test
/// runs every task on its thread).
#[derive(Debug, Clone, Default)]
pub(crate) struct Logs(Arc<Mutex<Vec<Log>>>);

impl Logs {
    pub(crate) fn capture() -> (Logs, tracing::subscriber::DefaultGuard) {
        quiet_global_subscriber();
        let logs = Logs::default();
        let guard = tracing::subscriber::set_default(Capture(Some(logs.clone())));
        (logs, guard)
    }

    /// The events whose message is `message`.
    pub(crate) fn with_message(&self, message: &str) -> Vec<Log> {
        let logs = self.0.lock().unwrap();
        let found = logs.iter().filter(|log| log.field("message") == message);
        found.cloned().collect()
    }
}

/// Installs, once per test binary, a global subscriber that drops everything but keeps
/// every callsite's interest at "sometimes".
///
/// `tracing` caches whether a callsite is wanted when it is first hit. Hit first on
/// another test's thread with no subscriber at all, it would be cached as never wanted,
/// and a [`Logs::capture`] in a test running alongside could miss its events. Every
/// notifier a dispatcher test builds comes from [`fake_webhook`] or [`build`], which call
/// this first.
pub(crate) fn quiet_global_subscriber() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Nothing else in this binary sets one, so this cannot fail.
        let _ = tracing::subscriber::set_global_default(Capture(None));
    });
}

/// A minimal subscriber that ignores spans. With logs it records every event into them;
/// without, it wants nothing now but may later (see [`quiet_global_subscriber`]).
struct Capture(Option<Logs>);

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl tracing::field::Visit for Fields<'_> {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
}

impl tracing::Subscriber for Capture {
    fn register_callsite(
        &self,
        _: &'static tracing::Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        match self.0 {
            Some(_) => tracing::subscriber::Interest::always(),
            None => tracing::subscriber::Interest::sometimes(),
        }
    }

    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        self.0.is_some()
    }

    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }

    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}

    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}

    fn event(&self, event: &tracing::Event<'_>) {
        let Some(logs) = &self.0 else { return };
        let mut fields = BTreeMap::new();
        event.record(&mut Fields(&mut fields));
        let log = Log {
            level: *event.metadata().level(),
            fields,
        };
        logs.0.lock().unwrap().push(log);
    }

    fn enter(&self, _: &tracing::span::Id) {}

    fn exit(&self, _: &tracing::span::Id) {}
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
