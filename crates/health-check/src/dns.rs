//! Name resolution on hickory's async resolver: no blocking-pool threads, a lookup that
//! never outlives its check's deadline, and a detail for each way a lookup fails.
//!
//! One resolver serves the process ([`shared`]): built on the first lookup from the
//! system's configuration (`/etc/resolv.conf`: servers, search list, `ndots`, timeout
//! and attempts; `/etc/hosts` is consulted first), then shared by every probe (one
//! cache, one set of connections; a handle is cloned cheaply). When the file cannot be
//! read or names no server, it asks a name server on this host (`127.0.0.1`, `::1`), as
//! glibc does. `localhost` and the names under it resolve without asking a server (RFC
//! 6761), and `.invalid` names never resolve. Addresses come IPv4 first, then IPv6
//! (both asked at once), as `getaddrinfo` orders them on most hosts. Answers are cached
//! for their TTL; "no such host" for at most [`NEGATIVE_MAX_TTL`], so a name that
//! appears is seen soon.
//!
//! The resolver runs on a thread of its own, on a single-threaded tokio runtime: one
//! thread for the process however many lookups are pending, and independent of the
//! runtimes its callers run on. hickory shares an in-flight query between the callers
//! asking the same name, and a query started on a runtime that then shuts down (a test's,
//! a short-lived `block_on`) would panic another runtime's caller that joined it. A
//! caller sends its name and its remaining time, and waits until its deadline; the
//! lookup ends then too, or as soon as the caller stops waiting.
//!
//! Every failure is the target's (unhealthy, kind `dns`), except our own shortage (no
//! socket for the query: kind `local`):
//!
//! | outcome | detail |
//! |---|---|
//! | NXDOMAIN | `dns: no such host` |
//! | SERVFAIL | `dns: server failure` |
//! | NOERROR without an address | `dns: no answer` |
//! | no answer before the check's deadline | `dns: timed out` |
//! | REFUSED, another error code | `dns: query refused`, `dns: server answered NOTIMP` |
//! | no server reachable | `dns: connection refused`, `dns: network unreachable` |

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    sync::OnceLock,
    time::Duration,
};

use health_types::CheckKind;
use hickory_resolver::{
    TokioResolver,
    config::{LookupIpStrategy, NameServerConfig, ResolverConfig},
    net::{DnsError, NetError, runtime::TokioRuntimeProvider},
    proto::op::ResponseCode,
};
use tokio::{
    sync::{mpsc, oneshot},
    time::Instant,
};

use crate::failure::{Failure, classify_io};

/// The detail of a name that does not exist (NXDOMAIN).
pub(crate) const NO_SUCH_HOST: &str = "dns: no such host";
/// The detail of a server that could not answer (SERVFAIL).
pub(crate) const SERVER_FAILURE: &str = "dns: server failure";
/// The detail of a name without addresses (NOERROR, no records).
pub(crate) const NO_ANSWER: &str = "dns: no answer";
/// The detail of a lookup cut by the check's deadline.
pub(crate) const TIMED_OUT: &str = "dns: timed out";
/// The longest a "no such host" answer is cached.
pub(crate) const NEGATIVE_MAX_TTL: Duration = Duration::from_secs(30);

/// A handle on a resolver thread; cloned cheaply. The thread ends when the last handle
/// is dropped.
#[derive(Clone, Debug)]
pub(crate) struct Resolver {
    requests: mpsc::UnboundedSender<Request>,
}

/// One lookup asked of the resolver thread.
struct Request {
    name: String,
    /// How long the lookup may take.
    within: Duration,
    reply: oneshot::Sender<Result<Vec<IpAddr>, Outcome>>,
}

/// Why the resolver thread gave no addresses.
enum Outcome {
    /// hickory's error.
    Failed(NetError),
    /// `within` passed.
    TimedOut,
    /// The resolver could not be built.
    Unbuilt(String),
}

impl Resolver {
    /// Starts a resolver thread that builds its resolver with `make`.
    fn spawn<F>(make: F) -> std::io::Result<Resolver>
    where
        F: FnOnce() -> Result<TokioResolver, NetError> + Send + 'static,
    {
        let (requests, receiver) = mpsc::unbounded_channel();
        std::thread::Builder::new()
            .name("health-dns".to_owned())
            .spawn(move || serve(make, receiver))?;
        Ok(Resolver { requests })
    }
}

/// The resolver thread: answers requests until every handle is gone.
fn serve<F>(make: F, mut requests: mpsc::UnboundedReceiver<Request>)
where
    F: FnOnce() -> Result<TokioResolver, NetError>,
{
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            tracing::error!(error = %err, "no runtime for the resolver");
            return;
        }
    };
    runtime.block_on(async move {
        let resolver = make().map_err(|err| err.to_string());
        while let Some(request) = requests.recv().await {
            match &resolver {
                Ok(resolver) => {
                    tokio::spawn(answer(resolver.clone(), request));
                }
                Err(err) => drop(request.reply.send(Err(Outcome::Unbuilt(err.clone())))),
            }
        }
    });
}

/// Looks `request` up, until its time is up or its caller stops waiting.
async fn answer(resolver: TokioResolver, mut request: Request) {
    let lookup = tokio::time::timeout(request.within, resolver.lookup_ip(request.name.as_str()));
    let outcome = tokio::select! {
        outcome = lookup => outcome,
        () = request.reply.closed() => return,
    };
    let reply = match outcome {
        Ok(Ok(found)) => Ok(found.iter().collect()),
        Ok(Err(err)) => Err(Outcome::Failed(err)),
        Err(_) => Err(Outcome::TimedOut),
    };
    // A caller that gave up no longer listens.
    let _ = request.reply.send(reply);
}

/// The process's resolver, started on first use from the system's configuration.
pub(crate) fn shared() -> Result<&'static Resolver, Failure> {
    if let Some(resolver) = shared_slot().get() {
        return Ok(resolver);
    }
    let resolver = Resolver::spawn(system).map_err(|err| {
        Failure::checker(
            CheckKind::Internal,
            format!("dns: no resolver thread: {err}"),
        )
    })?;
    // Two first lookups at once: one resolver wins, the other's thread ends.
    Ok(shared_slot().get_or_init(|| resolver))
}

/// Where the process's resolver is kept.
fn shared_slot() -> &'static OnceLock<Resolver> {
    static SHARED: OnceLock<Resolver> = OnceLock::new();
    &SHARED
}

/// Makes `resolver` the process's resolver, unless one was started already (then
/// `false`).
#[cfg(feature = "test-util")]
pub(crate) fn set_shared(resolver: Resolver) -> bool {
    shared_slot().set(resolver).is_ok()
}

/// A resolver on the system's configuration, or on a name server on this host when the
/// configuration cannot be read or names none.
fn system() -> Result<TokioResolver, NetError> {
    let builder = match TokioResolver::builder_tokio() {
        Ok(builder) => builder,
        Err(err) => {
            tracing::warn!(error = %err, "no usable /etc/resolv.conf; asking a name server on this host");
            let servers = [
                IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(Ipv6Addr::LOCALHOST),
            ]
            .map(NameServerConfig::udp_and_tcp);
            TokioResolver::builder_with_config(
                ResolverConfig::from_name_servers(servers.into()),
                TokioRuntimeProvider::default(),
            )
        }
    };
    build(builder)
}

/// A resolver asking only the DNS server at `server` over UDP (no hosts file, no search
/// list): for tests against a scripted server.
#[cfg(any(test, feature = "test-util"))]
pub(crate) fn with_name_server(server: std::net::SocketAddr) -> std::io::Result<Resolver> {
    use hickory_resolver::config::{ConnectionConfig, ResolveHosts};

    Resolver::spawn(move || {
        let mut udp = ConnectionConfig::udp();
        udp.port = server.port();
        let config = ResolverConfig::from_name_servers(vec![NameServerConfig::new(
            server.ip(),
            true,
            vec![udp],
        )]);
        let mut builder =
            TokioResolver::builder_with_config(config, TokioRuntimeProvider::default());
        builder.options_mut().use_hosts_file = ResolveHosts::Never;
        build(builder)
    })
}

/// Builds `builder` with this module's options: IPv4 first, negative answers cached
/// briefly.
fn build(
    mut builder: hickory_resolver::ResolverBuilder<TokioRuntimeProvider>,
) -> Result<TokioResolver, NetError> {
    let options = builder.options_mut();
    options.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
    options.negative_max_ttl = Some(NEGATIVE_MAX_TTL);
    builder.build()
}

/// The addresses of `name` (not an IP literal: those need no lookup), asked of
/// `resolver` until `deadline`.
pub(crate) async fn lookup(
    resolver: &Resolver,
    name: &str,
    deadline: Instant,
) -> Result<Vec<IpAddr>, Failure> {
    let stopped = || Failure::checker(CheckKind::Internal, "dns: the resolver thread stopped");
    let (reply, answer) = oneshot::channel();
    let request = Request {
        name: name.to_owned(),
        within: deadline.saturating_duration_since(Instant::now()),
        reply,
    };
    resolver.requests.send(request).map_err(|_| stopped())?;
    let failure = match tokio::time::timeout_at(deadline, answer).await {
        Ok(Ok(Ok(addrs))) if addrs.is_empty() => Failure::target(CheckKind::Dns, NO_ANSWER),
        Ok(Ok(Ok(addrs))) => return Ok(addrs),
        Ok(Ok(Err(Outcome::Failed(err)))) => {
            tracing::debug!(name, error = %err, "name lookup failed");
            classify(&err)
        }
        Ok(Ok(Err(Outcome::TimedOut))) | Err(_) => Failure::target(CheckKind::Dns, TIMED_OUT),
        Ok(Ok(Err(Outcome::Unbuilt(err)))) => {
            Failure::checker(CheckKind::Internal, format!("dns: no resolver: {err}"))
        }
        Ok(Err(_)) => stopped(),
    };
    Err(failure)
}

/// Classifies a failed lookup (the table in the module docs).
fn classify(err: &NetError) -> Failure {
    let detail = match err {
        NetError::Dns(DnsError::NoRecordsFound(none))
            if none.response_code == ResponseCode::NXDomain =>
        {
            NO_SUCH_HOST
        }
        NetError::Dns(DnsError::NoRecordsFound(_)) => NO_ANSWER,
        NetError::Dns(DnsError::ResponseCode(ResponseCode::ServFail)) => SERVER_FAILURE,
        NetError::Dns(DnsError::ResponseCode(ResponseCode::Refused)) => "dns: query refused",
        NetError::Dns(DnsError::ResponseCode(code)) => {
            return Failure::target(CheckKind::Dns, format!("dns: server answered {code}"));
        }
        NetError::Timeout => TIMED_OUT,
        NetError::Io(io) => {
            let failure = classify_io(io);
            return if failure.kind == CheckKind::Local {
                failure
            } else {
                Failure::target(CheckKind::Dns, format!("dns: {}", failure.detail))
            };
        }
        NetError::NoConnections => "dns: no name server to ask",
        other => return Failure::target(CheckKind::Dns, format!("dns: {other}")),
    };
    Failure::target(CheckKind::Dns, detail)
}

#[cfg(test)]
mod tests {
    use std::{io, net::SocketAddr};

    use super::*;
    use crate::{
        failure::Side,
        test_util::{DnsAnswer, ScriptedDns},
    };

    fn scripted() -> (ScriptedDns, Resolver) {
        let server = ScriptedDns::start([
            (
                "web.test",
                DnsAnswer::Address(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7))),
            ),
            (
                "v6.test",
                DnsAnswer::Address(IpAddr::V6(Ipv6Addr::LOCALHOST)),
            ),
            ("nx.test", DnsAnswer::NxDomain),
            ("fail.test", DnsAnswer::ServFail),
            ("empty.test", DnsAnswer::Empty),
            ("silent.test", DnsAnswer::Silent),
        ]);
        let resolver = with_name_server(server.addr()).unwrap();
        (server, resolver)
    }

    async fn failure(resolver: &Resolver, name: &str, within: Duration) -> Failure {
        lookup(resolver, name, Instant::now() + within)
            .await
            .unwrap_err()
    }

    #[tokio::test]
    async fn addresses_come_from_the_server() {
        let (server, resolver) = scripted();
        let deadline = Instant::now() + Duration::from_secs(5);
        let found = lookup(&resolver, "web.test", deadline).await.unwrap();
        assert_eq!(found, [IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7))]);
        let found = lookup(&resolver, "v6.test", deadline).await.unwrap();
        assert_eq!(found, [IpAddr::V6(Ipv6Addr::LOCALHOST)]);
        assert!(server.queries() >= 2);
    }

    #[tokio::test]
    async fn each_failure_has_its_own_detail_and_is_the_targets() {
        let (_server, resolver) = scripted();
        for (name, detail) in [
            ("nx.test", NO_SUCH_HOST),
            ("fail.test", SERVER_FAILURE),
            ("empty.test", NO_ANSWER),
        ] {
            let failure = failure(&resolver, name, Duration::from_secs(5)).await;
            assert_eq!(
                (failure.side, failure.kind, failure.detail.as_str()),
                (Side::Target, CheckKind::Dns, detail),
                "{name}"
            );
        }
    }

    #[tokio::test]
    async fn a_silent_server_is_cut_at_the_deadline() {
        let (_server, resolver) = scripted();
        let started = Instant::now();
        let failure = failure(&resolver, "silent.test", Duration::from_millis(300)).await;
        let elapsed = started.elapsed();
        assert_eq!(
            (failure.side, failure.kind, failure.detail.as_str()),
            (Side::Target, CheckKind::Dns, TIMED_OUT)
        );
        assert!(elapsed >= Duration::from_millis(300), "{elapsed:?}");
        assert!(elapsed < Duration::from_secs(1), "{elapsed:?}");
    }

    #[tokio::test]
    async fn localhost_needs_no_server() {
        let (server, resolver) = scripted();
        let deadline = Instant::now() + Duration::from_secs(5);
        let found = lookup(&resolver, "localhost", deadline).await.unwrap();
        assert!(
            found.contains(&IpAddr::V4(Ipv4Addr::LOCALHOST)),
            "{found:?}"
        );
        assert_eq!(found[0], IpAddr::V4(Ipv4Addr::LOCALHOST), "IPv4 first");
        let failure = failure(&resolver, "no-such-host.invalid", Duration::from_secs(5)).await;
        assert_eq!(failure.detail, NO_SUCH_HOST);
        assert_eq!(server.queries(), 0);
    }

    #[tokio::test]
    async fn the_system_resolver_reads_the_hosts_file() {
        // The system resolver builds from this machine's configuration (or its
        // fallback); `localhost` needs no server, and a name /etc/hosts lists resolves
        // to its address there, without one.
        let resolver = shared().unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        let found = lookup(resolver, "localhost", deadline).await.unwrap();
        assert!(
            found.contains(&IpAddr::V4(Ipv4Addr::LOCALHOST)),
            "{found:?}"
        );
        let hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
        let listed = hosts.lines().find_map(|line| {
            let mut words = line.split('#').next()?.split_whitespace();
            let ip: IpAddr = words.next()?.parse().ok()?;
            let name =
                words.find(|name| !name.starts_with("localhost") && !name.starts_with("ip6-"))?;
            Some((ip, name.to_owned()))
        });
        match listed {
            Some((ip, name)) => {
                let found = lookup(resolver, &name, deadline).await.unwrap();
                assert!(found.contains(&ip), "{name}: {found:?}");
            }
            None => println!("skipped: /etc/hosts lists no name besides localhost"),
        }
    }

    #[tokio::test]
    async fn an_unreachable_server_is_a_dns_failure_and_no_socket_is_local() {
        // Nothing listens on a released port: ICMP port unreachable on loopback.
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr: SocketAddr = socket.local_addr().unwrap();
        drop(socket);
        let resolver = with_name_server(addr).unwrap();
        let failure = failure(&resolver, "web.test", Duration::from_millis(500)).await;
        assert_eq!((failure.side, failure.kind), (Side::Target, CheckKind::Dns));
        assert!(failure.detail.starts_with("dns: "), "{failure:?}");

        let emfile = NetError::from(io::Error::from_raw_os_error(
            nix::errno::Errno::EMFILE as i32,
        ));
        let failure = classify(&emfile);
        assert_eq!(
            (failure.side, failure.kind, failure.detail.as_str()),
            (
                Side::Checker,
                CheckKind::Local,
                "local: too many open files"
            )
        );
    }
}
