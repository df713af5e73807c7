//! Fuzzing entry points for what this crate reads from the network: the HTTP/1.1
//! response head and body framing (chunked decoding included), the agent's JSON answer
//! and the Docker Engine's inspect answer. Shared by the cargo-fuzz targets
//! `http_response`, `agent_response` and `docker_inspect` and by the stable mutation
//! harness in `fuzz/`.
//!
//! Built with the `fuzzing` feature (and in this crate's tests); not part of the API.

use std::{
    future::Future,
    io,
    pin::{Pin, pin},
    task::{Context, Poll, Waker},
    time::Duration,
};

use bollard::models::ContainerInspectResponse;
use health_types::{CheckKind, CheckResult};
use http::StatusCode;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::{
    AgentProbe, MAX_BODY_DRAIN, MAX_HEALTH_OUTPUT,
    docker::{Assessment, assess, engine::container_state},
    failure::{Failure, Side},
    http::h1::{self, Kept},
};

/// The request a check writes (its bytes are dropped by [`Script`]).
const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nhost: fuzz.test\r\n\r\n";
/// The head put before the input when flag [`CHUNKED`] is set, so that every input goes
/// straight to the chunked decoder.
const CHUNKED_HEAD: &[u8] = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n";
/// Flag bits of an `http_response` input's first byte.
const HEAD_REQUEST: u8 = 1;
const KEEP_BODY: u8 = 2;
const ENDLESS: u8 = 4;
const CHUNKED: u8 = 8;
/// Read sizes, picked by the first byte's high nibble: the answer arrives in pieces of
/// this many bytes, so every split of a head, a chunk-size line or a CRLF is tried.
const READ_SIZES: [usize; 16] = [
    1,
    2,
    3,
    5,
    7,
    16,
    61,
    256,
    1000,
    1024,
    4096,
    8192,
    16384,
    65536,
    1 << 20,
    usize::MAX,
];
/// The smallest read of an endless answer, so one run stays fast.
const MIN_ENDLESS_READ: usize = 64;
/// The most an exchange may read of an endless answer: 17 heads (16 interim answers and
/// the final one) of at most 64 KiB each, then 128 KiB of chunked framing, plus the
/// last reads' overshoot. Past it, a bound that should have stopped the read did not.
const MAX_READ: u64 = 2 << 20;
/// The most a check's buffer may grow to (twice the head limit).
const MAX_BUFFER: usize = 256 * 1024;
/// Polls allowed before an exchange on always-ready I/O counts as stuck.
const MAX_POLLS: usize = 64;

/// Runs a check's HTTP/1.1 exchange against `data` as the server's answer.
///
/// The first byte holds flags: bit 0 a `HEAD` request, bit 1 keep the body (as the agent
/// probe does), bit 2 send the answer over and over without end, bit 3 put a chunked
/// `200` head before it; its high nibble picks the read size. The rest is the answer.
///
/// # Panics
///
/// When the exchange panics, stalls, reads past its bounds, keeps more than
/// [`MAX_BODY_DRAIN`] bytes of body, or fails with anything but a target-side
/// `protocol` or `reset` (the only failures an in-memory answer can cause).
pub fn http_response(data: &[u8]) {
    let Some((&flags, answer)) = data.split_first() else {
        return;
    };
    let endless = flags & ENDLESS != 0;
    let mut step = READ_SIZES[usize::from(flags >> 4)];
    if endless {
        step = step.max(MIN_ENDLESS_READ);
    }
    let head = if flags & CHUNKED != 0 {
        CHUNKED_HEAD
    } else {
        &[]
    };
    let mut server = Script {
        head,
        answer,
        at: 0,
        step,
        endless,
        delivered: 0,
    };
    let mut buf = REQUEST.to_vec();
    let mut kept = Kept {
        keep: flags & KEEP_BODY != 0,
        ..Kept::default()
    };
    let outcome = complete(async {
        let head = h1::send(&mut server, flags & HEAD_REQUEST != 0, &mut buf)
            .await
            .map_err(|err| err.failure)?;
        let reusable = h1::drain(&mut server, &head, &mut buf, &mut kept).await?;
        Ok::<_, Failure>((head.status, reusable))
    });

    assert!(
        server.delivered <= MAX_READ,
        "read {} bytes of the answer",
        server.delivered
    );
    assert!(
        buf.capacity() <= MAX_BUFFER,
        "the buffer grew to {} bytes",
        buf.capacity()
    );
    assert!(
        kept.bytes.len() <= MAX_BODY_DRAIN,
        "kept {}",
        kept.bytes.len()
    );
    if !kept.keep {
        assert!(kept.bytes.is_empty() && !kept.truncated, "{kept:?}");
    }
    if let Err(failure) = outcome {
        assert_eq!(failure.side, Side::Target, "{failure:?}");
        match failure.kind {
            CheckKind::Protocol => {
                assert!(failure.detail.starts_with("protocol: "), "{failure:?}");
            }
            CheckKind::Reset => {}
            _ => panic!("an in-memory answer failed with {failure:?}"),
        }
    }
}

/// Reads `data` as an agent's answer to a check.
///
/// The first byte picks the status (bits 0–2: mostly 200) and whether the body was cut
/// at 64 KiB (bit 3); the rest is the body.
///
/// # Panics
///
/// When reading it panics, or the outcome breaks the agent probe's table: a 200 answer
/// is the agent's result or a `protocol` error, another status an unhealthy `status`
/// result with a bounded detail, a healthy result is of kind `ok` and an unhealthy one
/// never is.
pub fn agent_response(data: &[u8]) {
    const STATUSES: [u16; 8] = [200, 200, 200, 200, 502, 503, 404, 302];
    let Some((&flags, body)) = data.split_first() else {
        return;
    };
    let status = StatusCode::from_u16(STATUSES[usize::from(flags & 7)])
        .expect("the statuses above are valid");
    let truncated = flags & 8 != 0;
    let latency = Duration::from_millis(7);
    match AgentProbe::interpret(status, body, truncated, latency) {
        Ok(result) if status != StatusCode::OK => {
            assert!(
                !result.healthy && result.kind == CheckKind::Status,
                "{result:?}"
            );
            let prefix = format!("agent HTTP {}: ", status.as_u16());
            assert!(result.detail.starts_with(&prefix), "{result:?}");
            // At most the body's first 200 characters (the last one a cut's marker).
            assert!(
                result.detail.chars().count() <= prefix.len() + 200,
                "{result:?}"
            );
        }
        Ok(result) => {
            assert!(!truncated, "a cut answer was read: {result:?}");
            assert_consistent(&result);
        }
        Err(err) => {
            assert_eq!(status, StatusCode::OK, "{err:?}");
            assert_eq!(err.kind(), CheckKind::Protocol, "{err:?}");
            assert!(err.detail().starts_with("agent: "), "{err:?}");
        }
    }
}

/// Reads `data` as the Docker Engine's answer to `GET /containers/{id}/json` (decoded
/// as bollard decodes it), then maps it to a result as the Docker probe does.
///
/// # Panics
///
/// When decoding or mapping panics, or the outcome breaks the Docker probe's table: an
/// answer without a `State.Status` is a `protocol` error, a container that does not run
/// is unhealthy (`container`), and a detail quotes at most [`MAX_HEALTH_OUTPUT`]
/// characters of health-log output.
pub fn docker_inspect(data: &[u8]) {
    let Ok(answer) = serde_json::from_slice::<ContainerInspectResponse>(data) else {
        return;
    };
    let state = match container_state(answer) {
        Ok(state) => state,
        Err(err) => {
            assert_eq!(err.kind(), CheckKind::Protocol, "{err:?}");
            return;
        }
    };
    assert!(!state.status.is_empty(), "{state:?}");
    let inspect = Duration::from_millis(3);
    let result = match assess(&state, inspect) {
        Assessment::Result(result) => result,
        Assessment::NoHealthcheck => {
            assert_eq!(state.status, "running", "{state:?}");
            return;
        }
    };
    assert_consistent(&result);
    if state.status != "running" {
        assert!(
            !result.healthy && result.kind == CheckKind::Container,
            "{result:?}"
        );
    }
    let health = state.health.as_ref();
    let log = health.and_then(|health| health.last_log.as_ref());
    if let Some(duration) = log.and_then(|log| log.duration) {
        assert!(
            result.latency == duration || state.status != "running",
            "{result:?} for {state:?}"
        );
    }
    let status_len = health.map_or(0, |health| health.status.chars().count());
    let bound = "container health is : ".len() + status_len + MAX_HEALTH_OUTPUT + 1;
    assert!(
        result.detail.chars().count() <= bound.max(state.status.chars().count() + 16),
        "{result:?}"
    );
}

/// A result is healthy exactly when its kind is `ok`.
fn assert_consistent(result: &CheckResult) {
    assert_eq!(
        result.healthy,
        result.kind == CheckKind::Ok,
        "healthy and kind disagree: {result:?}"
    );
}

/// Polls `future` on this thread. Every I/O under it is [`Script`], which is always
/// ready, so it ends without ever waiting; still pending after [`MAX_POLLS`] polls, it
/// waits for something that never comes.
fn complete<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..MAX_POLLS {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
    }
    panic!("the exchange is stuck: pending after {MAX_POLLS} polls on always-ready I/O");
}

/// The server's side of an exchange, in memory: it sends `head`, then `answer` (over
/// and over when `endless`), at most `step` bytes per read, then closes; it drops what
/// the check writes.
#[derive(Debug)]
struct Script<'a> {
    head: &'a [u8],
    answer: &'a [u8],
    /// Bytes of `head` and then `answer` sent (`answer`'s restart at 0 when endless).
    at: usize,
    step: usize,
    endless: bool,
    /// Bytes sent in all.
    delivered: u64,
}

impl AsyncRead for Script<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let (source, at) = match this.at.checked_sub(this.head.len()) {
            None => (this.head, this.at),
            Some(at) if at == this.answer.len() && this.endless => {
                this.at = this.head.len();
                (this.answer, 0)
            }
            Some(at) => (this.answer, at),
        };
        let n = this.step.min(buf.remaining()).min(source.len() - at);
        buf.put_slice(&source[at..at + n]);
        this.at += n;
        this.delivered += n as u64;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Script<'_> {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `target` on every file of `fuzz/corpus/<name>`; there are at least three.
    fn seeds(name: &str, target: fn(&[u8])) {
        let dir = format!("{}/../../fuzz/corpus/{name}", env!("CARGO_MANIFEST_DIR"));
        let seeds = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path());
        assert!(
            seeds
                .map(|seed| target(&std::fs::read(seed).unwrap()))
                .count()
                >= 3
        );
    }

    #[test]
    fn the_seed_corpora_run_without_a_panic() {
        seeds("http_response", http_response);
        seeds("agent_response", agent_response);
        seeds("docker_inspect", docker_inspect);
    }

    #[test]
    fn endless_answers_stop_at_their_bounds() {
        for (flags, answer) in [
            // Headers without end, interim answers without end.
            (ENDLESS, &b"x-a: b\r\n"[..]),
            (ENDLESS, b"HTTP/1.1 100 Continue\r\n\r\n"),
            // Endless chunks, endless zeros in a chunk size, endless trailers.
            (ENDLESS | CHUNKED | KEEP_BODY, b"1\r\na\r\n"),
            (ENDLESS | CHUNKED, b"0"),
            (ENDLESS | CHUNKED, b"x: y\r\n"),
            // A body read until the close that never comes.
            (ENDLESS | KEEP_BODY, b"HTTP/1.1 200 OK\r\n\r\nbody"),
        ] {
            let mut input = vec![flags];
            input.extend_from_slice(answer);
            http_response(&input);
        }
    }

    #[test]
    fn the_script_sends_its_head_once_and_repeats_its_answer() {
        let mut script = Script {
            head: b"ab",
            answer: b"xyz",
            at: 0,
            step: 2,
            endless: true,
            delivered: 0,
        };
        let mut got = Vec::new();
        for _ in 0..5 {
            let mut bytes = [0; 8];
            let mut buf = ReadBuf::new(&mut bytes);
            assert!(
                Pin::new(&mut script)
                    .poll_read(&mut Context::from_waker(Waker::noop()), &mut buf)
                    .is_ready()
            );
            got.extend_from_slice(buf.filled());
        }
        assert_eq!(got, b"abxyzxyz");
        assert_eq!(script.delivered, 8);
    }
}
