//! Our own shortage is no verdict on the target: with every descriptor this process may
//! open in use, TCP, UDP, HTTP, agent and Docker checks end in errors of kind `local`
//! (SPEC §9.3).
//!
//! A binary of its own: the one test lowers this process's open-files limit, which no
//! other test may share, and restores it before it ends.
#![allow(clippy::unwrap_used)] // Tests may unwrap (STYLE.md).

mod support;

use std::fs::File;

use health_check::{
    AgentProbe, StreamProbe,
    test_util::{FakeEngine, Reply, health_body},
};
use health_types::{AgentSpec, CheckKind, Probe, ProbeError};
use nix::sys::resource::{Resource, getrlimit, setrlimit};
use support::config;
use tokio::net::TcpListener;
use url::Url;

/// Restores the open-files limit it was made with when dropped.
struct RestoreLimit {
    soft: u64,
    hard: u64,
}

impl Drop for RestoreLimit {
    fn drop(&mut self) {
        setrlimit(Resource::RLIMIT_NOFILE, self.soft, self.hard).unwrap();
    }
}

/// Every descriptor the soft limit still allows, opened (on `/dev/null`), after the
/// limit was lowered to 32 above what is open now.
fn exhaust_descriptors(hard: u64) -> Vec<File> {
    let open = std::fs::read_dir("/proc/self/fd").unwrap().count() as u64;
    setrlimit(Resource::RLIMIT_NOFILE, (open + 32).min(hard), hard).unwrap();
    let mut files = Vec::new();
    loop {
        match File::open("/dev/null") {
            Ok(file) => files.push(file),
            Err(err) => {
                assert_eq!(err.raw_os_error(), Some(nix::libc::EMFILE), "{err}");
                return files;
            }
        }
    }
}

#[track_caller]
fn assert_local(outcome: Result<health_types::CheckResult, ProbeError>, what: &str) {
    let err = outcome.expect_err(what);
    assert_eq!(
        (err.kind(), err.detail()),
        (CheckKind::Local, "local: too many open files"),
        "{what}"
    );
}

#[tokio::test]
async fn out_of_descriptors_is_a_local_error_for_every_socket_probe() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let tcp_url = Url::parse(&format!("tcp://{addr}")).unwrap();
    let udp_url = Url::parse(&format!("udp://{addr}")).unwrap();
    let stream = StreamProbe::try_new(&config(1000)).unwrap();
    assert!(stream.check(&tcp_url).await.unwrap().healthy);
    let engine = FakeEngine::unix("1.41").await;
    engine.set("web", Reply::Now(200, health_body("healthy", "ready")));
    let docker = engine.probe("web", &config(1000));
    let agent_url = Url::parse(&format!("http://{addr}")).unwrap();
    let agent = AgentProbe::try_new(&config(1000), AgentSpec::new(agent_url)).unwrap();

    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    let restore = RestoreLimit { soft, hard };
    let files = exhaust_descriptors(hard);
    assert_local(stream.check(&tcp_url).await, "tcp");
    assert_local(stream.check(&udp_url).await, "udp");
    assert_local(agent.check(&tcp_url).await, "agent");
    assert_local(docker.check(docker.url()).await, "docker");
    #[cfg(feature = "http")]
    {
        let http = health_check::HttpProbe::try_new(&config(1000)).unwrap();
        let http_url = Url::parse(&format!("http://{addr}/")).unwrap();
        assert_local(http.check(&http_url).await, "http");
    }
    drop(files);
    drop(restore);

    assert!(stream.check(&tcp_url).await.unwrap().healthy);
    assert_eq!(docker.check(docker.url()).await.unwrap().detail, "ready");
}
