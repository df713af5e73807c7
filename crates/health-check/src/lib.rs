//! The protocol probes of the health toolkit: each implements [`health_types::Probe`]
//! for one transport family (SPEC §5).
//!
//! | probe | schemes | feature |
//! |---|---|---|
//! | [`HttpProbe`] | `http`, `https` | `http` (+ `tls` for `https`) |
//! | [`H2cProbe`] | `h2c` | `http` |
//! | [`StreamProbe`] | `tcp`, `tcp4`, `tcp6`, `udp`, `udp4`, `udp6` | always |
//! | [`FileProbe`] | `file` | always |
//! | [`DnsProbe`] | `dns` (one query to one resolver) | always |
//! | [`IcmpProbe`] | `icmp` (an echo on an unprivileged ping socket) | always |
//! | `GrpcProbe` | `grpc`, `grpcs` (`grpc.health.v1.Health/Check`) | `grpc` |
//! | [`DockerProbe`] | a container (display URL `docker://<host>/containers/<id>`) | `docker` |
//! | [`AgentProbe`] | any of the above, through an agent | `http` (`tls` for `https` agents) |
//!
//! [`build_probe`] is the one way in: it picks the probe for a
//! [`Target`](health_types::Target) (a URL by its [`Scheme`](health_types::Scheme), a
//! Docker container, or a URL through an agent) and validates the URL against it. The
//! HTTP, H2C and agent probes share one transport: a connector (DNS, TCP, rustls), a
//! keep-alive pool, an HTTP/1.1 exchange of our own and HTTP/2 on hyper.
//!
//! Default features: `http`, `tls`, `docker`, `grpc`. TLS is rustls with the ring provider only;
//! every client config is built with an explicit provider, and aws-lc-rs is not a
//! dependency. The Docker probe talks to the engine on a unix socket or plain TCP
//! (bollard without TLS).
//!
//! # Example
//!
//! ```no_run
//! use health_check::{FileProbe, StreamProbe, build_probe};
//! use health_types::{HealthCheckConfig, Probe, Target, Url};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let config = HealthCheckConfig {
//!     path: "/healthz".into(),
//!     ..Default::default()
//! };
//! #[cfg(feature = "http")]
//! {
//!     use health_check::{HttpClient, HttpClientConfig, HttpProbe};
//!
//!     // Probes of one config share one pool of keep-alive connections.
//!     let client = HttpClient::try_new(&config, &HttpClientConfig::default())?;
//!     let probe = HttpProbe::try_with_client(&config, client.clone())?;
//!     let result = probe.check(&Url::parse("http://127.0.0.1:8080/api")?).await?;
//!     println!("healthy: {}, {} in {:?}", result.healthy, result.detail, result.latency);
//! }
//! let udp = StreamProbe::try_new(&HealthCheckConfig {
//!     payload: Some("ping".into()),
//!     expect_reply: true,
//!     ..config.clone()
//! })?;
//! // A stream URL without a port is rejected before any check runs.
//! assert!(udp.validate_url(&Url::parse("udp://dns.internal")?).is_err());
//! // The probe for any target, by its scheme:
//! let built = build_probe(&config, &Target::Url(Url::parse("h2c://127.0.0.1:8080/")?))?;
//! let result = built.probe.check(&built.url).await;
//! let file = FileProbe::try_new(&config)?;
//! match file.check(&Url::parse("file:///srv/www")?).await {
//!     Ok(result) => println!("{}: {}", result.kind, result.detail),
//!     Err(err) => println!("could not check: {err}"),
//! }
//! # Ok(())
//! # }
//! ```
//!
//! # Options
//!
//! Every probe takes the [`HealthCheckConfig`](health_types::HealthCheckConfig) it
//! checks with, and bounds its own work by its `timeout` (a check left to run alone
//! never hangs); the monitor enforces the same timeout on top.
//!
//! - [`HttpProbe`], [`H2cProbe`]: `timeout`, `method` (`GET`/`HEAD`), `path` (joined
//!   onto the URL's path, query allowed), `headers` (added to, and overriding, the §5
//!   headers `User-Agent: healthd/<version>`, `Accept: text/plain,text/html,*/*;q=0.8`,
//!   `Accept-Encoding: identity`, `Cache-Control: no-cache`), `expected_status` (default:
//!   anything but 5xx), `tls_verify` (default false: any certificate is accepted; true:
//!   system and webpki roots, plus [`HttpClientConfig::ca_file`], or only `tls.ca` when
//!   set), and SPEC §9.4: `header_match` (header → regex; names without case; a
//!   missing header fails), `body_match` / `body_not_match` (regexes over the body's
//!   first 64 KiB) and `json` (conditions on the first node a JSONPath selects), judged
//!   after the status passed and compiled when the probe is built (with `HEAD`, a body
//!   assertion is a config error); `follow_redirects` (default false: a 3xx is judged
//!   by its status; true: at most [`MAX_REDIRECTS`] hops, same method, relative or
//!   absolute, `http` ⇄ `https`, `h2c` stays `h2c` and only an `h2c` check follows an
//!   `h2c` location, inside the one `timeout`; the URL's credentials, the configured
//!   `Authorization`/`Cookie`/`Proxy-Authorization`/`Host` and the pool are for its own
//!   origin only, `tls.server_name` and the client certificate for its own host only);
//!   `ip_family` (`any`: every address, falling
//!   back to the next when a connect fails; `ipv4`/`ipv6`: that family only, and an IP
//!   literal of the other is a config error); the `tls` table (`ca`, `cert` + `key` for
//!   mutual TLS, `server_name` for SNI and verification, `min_version` `1.2`/`1.3`;
//!   unreadable files are config errors naming them). Every result has its phases
//!   (`dns` unless an IP literal, `connect`, `tls` over TLS, `first_byte`; a reused
//!   connection has `first_byte` only), the status code of an answer and, over TLS,
//!   the peer's leaf certificate (kept with a pooled connection). Probes built with
//!   [`HttpProbe::try_with_client`] share one pooled keep-alive [`HttpClient`]. An
//!   HTTP/1.1 check runs its exchange in its own task on a pooled socket (no connection
//!   task, no buffers kept between checks): interim 1xx answers are skipped, the body is
//!   framed as RFC 9112 says and read to its end or 64 KiB, and the connection is
//!   reused only when the answer ended cleanly and the server did not ask to close it.
//!   HTTP/2 (`h2c://`, or `h2` chosen by ALPN) runs on hyper, one shared connection per
//!   target.
//! - [`StreamProbe`]: `timeout`, `payload` (the UDP datagram, default empty; on TCP,
//!   bytes sent once connected), `expect` (a regex the reply must match: the TCP reply
//!   or greeting, read up to [`MAX_REPLY`]; the UDP reply datagram, which it makes
//!   required), `expect_reply` (default false; UDP only: it makes a `tcp` URL a config
//!   error) and `ip_family`.
//! - [`DnsProbe`]: `timeout`, `expect` (default for the URL's `expect=`) and
//!   `ip_family` (for a resolver given by name); the URL carries `type` (default `A`),
//!   `expect` and `rcode` (default `NOERROR`).
//! - [`IcmpProbe`]: `timeout` and `ip_family`.
//! - `GrpcProbe` (feature `grpc`): `timeout`, `ip_family`, `tls_verify` and the `tls`
//!   table (`ca`, `cert`/`key`, `server_name`, `min_version`) for `grpcs`; the URL's
//!   path names the service.
//! - [`AgentProbe`] refuses the probe-depth keys (SPEC §9.4) the agent protocol cannot
//!   carry, naming the key.
//! - [`FileProbe`]: only `timeout`.
//! - [`AgentProbe`]: `timeout`, `method`, `path`, plus an
//!   [`AgentSpec`](health_types::AgentSpec): the agent's `url` and, for mutual TLS,
//!   `ca`, `cert`, `key` (PEM). One keep-alive connection to the agent serves its
//!   checks.
//! - [`DockerProbe`]: `timeout` (the engine gets it less a 10 % margin of at most 100 ms,
//!   or half of it when a fallback waits) and `disable` (true: never use the fallback;
//!   the container's own state and health are still checked), plus
//!   a [`DockerSpec`](health_types::DockerSpec): `container` (id or name) and `host` (`unix:///path` or
//!   `tcp://host:port`; default `DOCKER_HOST`, else [`DEFAULT_DOCKER_HOST`]). An optional
//!   fallback probe and its target come from [`DockerProbe::try_with_fallback`]. The
//!   engine is reached through the [`DockerApi`] port; [`BollardDockerApi`] is the real
//!   one, whose client is created on the first check and re-created after a failure.
//!
//! A URL a probe can never check is a [`ConfigError`](health_types::ConfigError) from
//! [`Probe::validate_url`](health_types::Probe::validate_url) that names the URL: an
//! unsupported scheme (the message lists the supported ones), no host, or a stream URL
//! without a port. Given to `check` anyway, such a URL is an error of kind `config`.
//!
//! # Classification
//!
//! A failing target is data: an unhealthy [`CheckResult`](health_types::CheckResult).
//! Only a check that could not be carried out is an error
//! ([`ProbeError`](health_types::ProbeError)).
//!
//! | outcome | result | kind | example detail |
//! |---|---|---|---|
//! | expected HTTP status | healthy | `ok` | `HTTP 200 OK` |
//! | expected HTTP status, body cut short (closed or reset mid-body) | healthy | `ok` | `HTTP 200 OK (body cut short: connection closed)` |
//! | TCP connect succeeded | healthy | `ok` | `connected` |
//! | UDP reply, or silence without `expect_reply` | healthy | `ok` | `reply (udp)`, `no reply (udp)` |
//! | file or directory exists | healthy | `ok` | `exists` |
//! | TCP/UDP reply matches `expect` | healthy | `ok` | `reply matches "^\\+PONG"` |
//! | TCP/UDP reply does not match `expect` (read to its end, 64 KiB or the timeout) | unhealthy | `body` | `reply does not match "^SSH-" (got: "220 mail ESMTP\\r\\n")` |
//! | DNS answer with the expected rcode (and an answer matching `expect`) | healthy | `ok` | `NOERROR: 2 answers` |
//! | DNS answer with another rcode, or no answer matching `expect` | unhealthy | `dns` | `dns: rcode NXDOMAIN, expected NOERROR`, `dns: no answer matches "^10\\." (got: 192.0.2.1)` |
//! | ICMP echo reply | healthy | `ok` | `echo reply` |
//! | the kernel refuses an unprivileged ping socket (`net.ipv4.ping_group_range`) | error | `io` | `icmp: the kernel refuses unprivileged ping sockets (net.ipv4.ping_group_range)` |
//! | ICMP echo: no reply, or a host/network unreachable from a router (the ping socket has no `IP_RECVERR`, so Linux drops those soft errors) | unhealthy | `timeout` | `timed out after 2s` |
//! | gRPC health `SERVING` | healthy | `ok` | `SERVING` |
//! | gRPC health `NOT_SERVING`, `UNKNOWN`, `SERVICE_UNKNOWN`; a gRPC error status | unhealthy | `status` | `NOT_SERVING`, `grpc: service "x" unknown (NOT_FOUND)` |
//! | gRPC server without the health service | unhealthy | `protocol` | `grpc: the server has no health service (UNIMPLEMENTED)` |
//! | unexpected HTTP status | unhealthy | `status` | `HTTP 503 Service Unavailable` |
//! | expected HTTP status after redirects (`follow_redirects`) | healthy | `ok` | `HTTP 200 OK (after 2 redirects)` |
//! | more than 10 redirects (`follow_redirects`) | unhealthy | `status` | `too many redirects (10)` |
//! | a response header fails `header_match`, or is missing | unhealthy | `header` | `header Content-Type: "text/html" does not match "^application/json"`, `header X-Ready: missing` |
//! | the body fails `body_match` or `body_not_match` | unhealthy | `body` | `body does not match "ready"`, `body matches "maintenance"` |
//! | a `json` condition fails, selects nothing, or the body is not JSON | unhealthy | `json` | `json: $.status == "ok" failed: got "degraded"`, `json: $.x selects nothing`, `json: body is not JSON: expected value at line 1 column 1` |
//! | no address of `ip_family` for the name | unhealthy | `dns` | `dns: no ipv6 address` |
//! | connection refused, host unreachable | unhealthy | `refused` | `connection refused` |
//! | an ICMP error from the target's network: net/host unreachable, unknown or prohibited, protocol unreachable, source route failed, host isolated, fragmentation needed | unhealthy | `refused` | `network unreachable`, `host unreachable`, `protocol unreachable`, `source route failed`, `host unknown`, `host isolated`, `administratively prohibited` |
//! | ICMP port unreachable (UDP) | unhealthy | `refused` | `port unreachable` |
//! | reset, closed early, HTTP/2 stream reset | unhealthy | `reset` | `connection reset`, `http2 stream reset: INTERNAL_ERROR` |
//! | no answer within `timeout` (black hole, slow headers, slow body) | unhealthy | `timeout` | `timed out after 10s` |
//! | silence with `expect_reply` (UDP) | unhealthy | `timeout` | `no reply (udp): timed out after 2s` |
//! | name does not resolve: NXDOMAIN, SERVFAIL, no address, no DNS answer by the deadline | unhealthy | `dns` | `dns: no such host`, `dns: server failure`, `dns: no answer`, `dns: timed out` |
//! | TLS handshake or certificate failure | unhealthy | `tls` | `tls: invalid peer certificate: UnknownIssuer` |
//! | not HTTP (garbage bytes, a head over 64 KiB or with over 100 headers, a bad chunked body, bad HTTP/2, an HTTP/1 answer to `h2c://`) | unhealthy | `protocol` | `protocol: invalid HTTP version`, `protocol: the server does not speak HTTP/2 (it answered in HTTP/1)` |
//! | file not found (`ENOENT` only) | unhealthy | `not_found` | `/srv/www: no such file or directory` |
//! | container running, health `healthy` (detail: the last health-log output, at most 256 chars, `…` when cut; latency: that run's `End` − `Start`) | healthy | `ok` | `ready` |
//! | container `dead`, `exited`, `paused`, `restarting`, `removing` | unhealthy | `container` | `container is <status>` | `container is exited` |
//! | container `created` | unhealthy | `container` | `container is not started` | |
//! | container running, health `unhealthy` | unhealthy | `container` | last health-log output | `HTTP 503 from /health` |
//! | container running, health `starting` | unhealthy | `container` | `container health is starting[: <output>]` | |
//! | container running without healthcheck, no usable fallback | unhealthy | `container` | `docker health check not available` | |
//! | container without healthcheck, or Docker API failure, with a fallback (and `disable` false) | the fallback's result | the fallback's | the fallback's | |
//! | agent answered 200 JSON | as the agent says | the agent's (`status` when absent) | the agent's |
//! | agent answered another status | unhealthy | `status` | `agent HTTP 502: dial tcp: refused` |
//! | permission denied, `ENOTDIR`, other local I/O failure | error | `io` | `/a/file/x: Not a directory (os error 20)` |
//! | our own shortage, on any probe's socket or file: out of descriptors (`EMFILE`, `ENFILE`), buffers (`ENOBUFS`) or memory (`ENOMEM`), no local address (`EADDRNOTAVAIL`) | error | `local` | `local: too many open files`, `local: no local address` |
//! | agent unreachable, TLS refused, no answer in time, bad JSON | error | the cause's | `agent: connection refused` |
//! | Docker API failure without a usable fallback: engine unreachable, no answer in time, HTTP error, no readable `State` | error | the cause's (`not_found` for 404, `status` for another HTTP error, `protocol` for a bad body) | `docker: HTTP 404: No such container: web` |
//! | URL the probe cannot check | error | `config` | `invalid url "ftp://x": unsupported scheme …` |
//!
//! Why this split: an unhealthy result is evidence about the target, which the monitor
//! debounces into `Unhealthy`; an error is the checker's own trouble, which ends in
//! `Error` and, repeated, stops the monitor. A slow or unresolvable backend must never
//! stop its monitor (GoDoxy reports stream timeouts and DNS failures as errors; we fix
//! that, SPEC §3); nor must ICMP errors from the target's network, which Linux reports
//! as errnos that std has no kind for (`ENOPROTOOPT`, `EHOSTDOWN`, `ENONET`, ...). A
//! `local` error says nothing about the target at all: the monitor changes no counter
//! for it (SPEC §9.3).
//!
//! Names are looked up on one shared async resolver (hickory; the system's
//! `/etc/resolv.conf` and `/etc/hosts`), inside the check's deadline, with no thread
//! per lookup; IP literals are never looked up.
//!
//! # Cancel safety
//!
//! Every `check` may be dropped at any await point. The HTTP probes leave only pooled
//! idle connections behind (that is the point of the pool), and the gRPC probe only its
//! cached, connected channel (idle; dropped by a failed check or after a minute unused;
//! a connect in progress is dropped with its check); the others leave nothing, with one
//! narrow exception: a dropped Docker check leaves bollard's connection task
//! (hyper-util's client spawns one per connection), which sees the request gone, closes
//! its socket and ends.

#[cfg(feature = "http")]
mod agent;
mod build;
mod dns;
mod dns_probe;
#[cfg(feature = "docker")]
mod docker;
mod failure;
mod file;
#[cfg(any(feature = "fuzzing", all(test, feature = "http", feature = "docker")))]
#[doc(hidden)]
pub mod fuzz;
#[cfg(feature = "grpc")]
mod grpc;
#[cfg(feature = "http")]
mod http;
mod icmp;
mod net;
mod stream;
mod target;
#[cfg(feature = "test-util")]
pub mod test_util;
#[cfg(feature = "tls")]
mod tls;

pub use self::{
    build::{BuiltProbe, build_probe},
    dns_probe::{DNS_PORT, DNS_RECORD_TYPES, DnsProbe},
    file::FileProbe,
    icmp::{IcmpProbe, PING_REFUSED},
    net::USER_AGENT_VALUE,
    stream::{MAX_REPLY, StreamProbe, UDP_MAX_WAIT},
};
// A `use` group cannot carry `#[cfg]` on one of its members, so each feature-gated
// module gets a block of its own.
#[cfg(feature = "docker")]
pub use self::docker::{
    BollardDockerApi, ContainerHealth, ContainerState, DEFAULT_DOCKER_HOST, DOCKER_SCHEME,
    DockerApi, DockerProbe, HEALTH_CHECK_NOT_AVAILABLE, HealthLogEntry, MAX_HEALTH_OUTPUT,
};
#[cfg(feature = "grpc")]
pub use self::grpc::GrpcProbe;
#[cfg(feature = "http")]
pub use self::{
    agent::{AGENT_HEALTH_PATH, AgentProbe},
    http::{H2cProbe, HttpClient, HttpClientConfig, HttpProbe, MAX_BODY_DRAIN, MAX_REDIRECTS},
};
