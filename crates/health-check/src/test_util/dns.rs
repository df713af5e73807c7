//! A scripted DNS server on loopback UDP, and the hook that points this process's
//! probes at it.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr, UdpSocket},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    thread::JoinHandle,
};

use hickory_resolver::proto::{
    op::{Message, MessageType, OpCode, Query, ResponseCode},
    rr::{RData, Record, RecordType, rdata},
};

/// How [`ScriptedDns`] answers queries for one name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DnsAnswer {
    /// An A record for an IPv4 address, an AAAA record for an IPv6 one; a query for
    /// the other family gets NOERROR without records.
    Address(IpAddr),
    /// Every address of the list of the queried family (A records for the IPv4 ones,
    /// AAAA for the IPv6 ones), in order; NOERROR without records when none is.
    Addresses(Vec<IpAddr>),
    /// NXDOMAIN: no such name.
    NxDomain,
    /// SERVFAIL: the server could not answer.
    ServFail,
    /// NOERROR without records.
    Empty,
    /// No reply at all.
    Silent,
}

/// A DNS server on `127.0.0.1:0` (UDP) answering from a script, on a thread of its own
/// (so it outlives the runtime of any one test). Names are matched without case and
/// without a trailing dot; a name not in the script gets NXDOMAIN. Stops when dropped.
///
/// ```no_run
/// use std::net::{IpAddr, Ipv4Addr};
///
/// use health_check::test_util::{DnsAnswer, ScriptedDns, use_name_server};
///
/// let dns = ScriptedDns::start([
///     ("web.test", DnsAnswer::Address(IpAddr::V4(Ipv4Addr::LOCALHOST))),
///     ("silent.test", DnsAnswer::Silent),
/// ]);
/// // Before any probe of this process resolves a name:
/// assert!(use_name_server(dns.addr()));
/// ```
#[derive(Debug)]
pub struct ScriptedDns {
    addr: SocketAddr,
    queries: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ScriptedDns {
    /// Starts a server answering `script` (name → answer).
    ///
    /// # Panics
    ///
    /// When loopback UDP cannot be bound (a test setup failure).
    pub fn start<'a>(script: impl IntoIterator<Item = (&'a str, DnsAnswer)>) -> ScriptedDns {
        let script: HashMap<String, DnsAnswer> = script
            .into_iter()
            .map(|(name, answer)| (normalized(name), answer))
            .collect();
        let socket = UdpSocket::bind("127.0.0.1:0").expect("loopback UDP is bindable");
        let addr = socket.local_addr().expect("a bound socket has an address");
        let queries = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (queries, stop) = (queries.clone(), stop.clone());
            std::thread::spawn(move || serve(&socket, &script, &queries, &stop))
        };
        ScriptedDns {
            addr,
            queries,
            stop,
            thread: Some(thread),
        }
    }

    /// Where the server listens (UDP).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Queries received so far (silent ones included).
    pub fn queries(&self) -> usize {
        self.queries.load(Ordering::SeqCst)
    }
}

impl Drop for ScriptedDns {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking receive with an empty datagram.
        let woken = UdpSocket::bind("127.0.0.1:0").and_then(|s| s.send_to(&[], self.addr));
        if let (Ok(_), Some(thread)) = (woken, self.thread.take()) {
            let _ = thread.join();
        }
    }
}

/// Makes every probe of this process resolve names through the DNS server at `server`
/// (UDP; no hosts file, no search list), when no probe has resolved a name yet.
/// `false` when the process's resolver was already built (then nothing changes).
pub fn use_name_server(server: SocketAddr) -> bool {
    match crate::dns::with_name_server(server) {
        Ok(resolver) => crate::dns::set_shared(resolver),
        Err(err) => {
            tracing::warn!(error = %err, "cannot start a resolver for the scripted server");
            false
        }
    }
}

fn normalized(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

fn serve(
    socket: &UdpSocket,
    script: &HashMap<String, DnsAnswer>,
    queries: &AtomicUsize,
    stop: &AtomicBool,
) {
    let mut buf = [0u8; 1500];
    loop {
        let Ok((n, peer)) = socket.recv_from(&mut buf) else {
            return;
        };
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(query) = Message::from_vec(&buf[..n]) else {
            continue;
        };
        queries.fetch_add(1, Ordering::SeqCst);
        let Some(reply) = answer(&query, script) else {
            continue;
        };
        match reply.to_vec() {
            // A client that went away is no concern of the script.
            Ok(bytes) => drop(socket.send_to(&bytes, peer)),
            Err(err) => tracing::warn!(error = %err, "scripted DNS reply not encoded"),
        }
    }
}

/// Adds the records of `ips` that `question` asks for (A or AAAA) to `reply`, in order.
fn add_records(reply: &mut Message, question: &Query, ips: &[IpAddr]) {
    for ip in ips {
        let data = match (ip, question.query_type()) {
            (IpAddr::V4(v4), RecordType::A) => RData::A(rdata::A(*v4)),
            (IpAddr::V6(v6), RecordType::AAAA) => RData::AAAA(rdata::AAAA(*v6)),
            _ => continue,
        };
        reply.add_answer(Record::from_rdata(question.name().clone(), 60, data));
    }
}

/// The scripted reply to `query`, or `None` to stay silent.
fn answer(query: &Message, script: &HashMap<String, DnsAnswer>) -> Option<Message> {
    let mut reply = Message::new(query.metadata.id, MessageType::Response, OpCode::Query);
    reply.metadata.recursion_desired = query.metadata.recursion_desired;
    reply.metadata.recursion_available = true;
    let Some(question) = query.queries.first() else {
        reply.metadata.response_code = ResponseCode::FormErr;
        return Some(reply);
    };
    reply.add_query(question.clone());
    let name = normalized(&question.name().to_ascii());
    match script.get(&name).unwrap_or(&DnsAnswer::NxDomain) {
        DnsAnswer::Silent => return None,
        DnsAnswer::NxDomain => reply.metadata.response_code = ResponseCode::NXDomain,
        DnsAnswer::ServFail => reply.metadata.response_code = ResponseCode::ServFail,
        DnsAnswer::Empty => {}
        DnsAnswer::Address(ip) => add_records(&mut reply, question, std::slice::from_ref(ip)),
        DnsAnswer::Addresses(ips) => add_records(&mut reply, question, ips),
    }
    Some(reply)
}
