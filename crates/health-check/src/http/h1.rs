//! The HTTP/1.1 exchange of a check: one bodiless `GET` or `HEAD` written by the check's
//! own task, the response head parsed with `httparse` (the parser hyper uses), the body
//! read and thrown away within a bound.
//!
//! Why not hyper's client connection here: a hyper HTTP/1 connection is a task of its
//! own, every request and response crosses a channel between that task and the check,
//! and a pooled connection keeps two 8 KiB buffers. A check needs none of that: it
//! writes a few hundred prepared bytes and reads one answer. Here an idle pooled
//! connection is a bare socket, and a check wakes once per answer. `cargo xtask bench`
//! measures the difference (README, Performance). HTTP/2 (ALPN `h2`, `h2c://`) stays on
//! hyper.
//!
//! Framing follows RFC 9112 §6.3: no body for `HEAD`, 1xx, 204 and 304; chunked when the
//! last transfer coding is `chunked`; otherwise `Content-Length`; otherwise until the
//! server closes. Interim 1xx answers (other than 101) are skipped. A connection goes
//! back to the pool only when its response ended exactly where the framing said, and
//! the server did not ask to close it (`Connection: close`, or HTTP/1.0 without
//! `keep-alive`).

use std::io;

use health_types::CheckKind;
use http::StatusCode;
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    time::Instant,
};

use super::MAX_BODY_DRAIN;
use crate::failure::{Failure, classify_stream_io};

/// The largest response head (status line, headers) read.
pub(super) const MAX_HEAD: usize = 64 * 1024;
/// Headers parsed in one response head (as hyper's default); more is a protocol failure.
const MAX_HEADERS: usize = 100;
/// The longest chunk-size line (with extensions).
const MAX_CHUNK_LINE: usize = 4096;
/// Interim (1xx) answers skipped before the final one; more is a protocol failure.
const MAX_INTERIM: usize = 16;
/// Bytes of a chunked body read (data, sizes, extensions, trailers) before the
/// connection is dropped: the data bound plus room for the framing of small chunks.
const MAX_CHUNKED_READ: u64 = 2 * MAX_BODY_DRAIN as u64;
/// The first read buffer of a check; most response heads fit.
pub(super) const FIRST_READ: usize = 1024;
/// Read buffer while draining a body.
const DRAIN_READ: usize = 8 * 1024;

/// The detail of a connection that ended before the response did.
const CLOSED_EARLY: &str = "connection closed before the response was complete";

/// A failed exchange, and whether it failed before any byte of the answer arrived (on a
/// pooled connection that means the server had closed it while idle: safe to retry).
#[derive(Debug)]
pub(crate) struct ExchangeError {
    pub(crate) failure: Failure,
    pub(super) before_answer: bool,
}

impl From<Failure> for ExchangeError {
    fn from(failure: Failure) -> Self {
        ExchangeError {
            failure,
            before_answer: false,
        }
    }
}

/// How the body of a response is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Framing {
    /// No body.
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked transfer coding.
    Chunked,
    /// Until the server closes the connection.
    UntilClose,
}

/// A parsed response head.
#[derive(Debug)]
pub(crate) struct Head {
    /// The final status (interim 1xx answers skipped).
    pub(crate) status: StatusCode,
    framing: Framing,
    /// The server lets the connection carry another request after this response.
    keep_alive: bool,
    /// The `Location` header, when [`Capture::location`] asked for it.
    pub(crate) location: Option<String>,
    /// The values of the [`Capture::headers`], in their order (several fields of one
    /// name joined with `, `); empty when none were asked for.
    pub(crate) headers: Vec<Option<String>>,
    /// From the request written to the first byte of the answer.
    pub(crate) first_byte: std::time::Duration,
}

/// What of a response head a check keeps beyond its framing: nothing for a plain check
/// (no allocation), the `Location` when it follows redirects, the headers it asserts on.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Capture<'a> {
    /// Keep the `Location` header.
    pub(crate) location: bool,
    /// Keep these headers (lowercase names).
    pub(crate) headers: &'a [String],
}

/// Writes the request that `buf` holds to `io`, then reads the answer's head into the
/// same buffer (which keeps the bytes that followed the head, for [`drain`]).
// The fuzz targets' entry point; checks capture with `send_capturing`.
#[cfg_attr(not(any(feature = "fuzzing", test)), allow(dead_code))]
pub(crate) async fn send<S>(
    io: &mut S,
    head_request: bool,
    buf: &mut Vec<u8>,
) -> Result<Head, ExchangeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    send_capturing(io, head_request, buf, Capture::default()).await
}

/// [`send`], keeping what `capture` asks for of the answer's head.
pub(crate) async fn send_capturing<S>(
    io: &mut S,
    head_request: bool,
    buf: &mut Vec<u8>,
    capture: Capture<'_>,
) -> Result<Head, ExchangeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let before_answer = |err: io::Error| ExchangeError {
        failure: classify_stream_io(&err),
        before_answer: true,
    };
    io.write_all(buf).await.map_err(before_answer)?;
    io.flush().await.map_err(before_answer)?;
    let written = Instant::now();
    let mut first_byte = std::time::Duration::ZERO;
    buf.clear();
    let mut received = false;
    let mut interim = 0;
    // Where the search for the end of the head resumes: a head is parsed when its end
    // may have arrived (and once at first, to reject what is not HTTP at once), not
    // after every read, so a head that trickles in costs linear work.
    let mut searched = 0usize;
    // Blank lines before a status line, dropped as they arrive: httparse skips them
    // itself, but from the start on every parse, so an endless stream of them cost
    // quadratic work up to the head limit (found by the `http_response` fuzz target).
    // They count toward that limit.
    let mut blank = 0usize;
    loop {
        let leading = buf
            .iter()
            .take_while(|&&b| b == b'\r' || b == b'\n')
            .count();
        // A lone `\r` may be the start of a `\r\n` and a status line: keep the last
        // byte when the buffer is all blank, so httparse still sees a bare `\r`.
        let leading = if leading == buf.len() {
            leading.saturating_sub(1)
        } else {
            leading
        };
        if leading > 0 {
            buf.drain(..leading);
            blank += leading;
            searched = 0;
        }
        let complete = buf[searched.saturating_sub(3)..]
            .windows(2)
            .any(|w| w == b"\n\n" || w == b"\n\r")
            || (searched == 0 && !buf.is_empty());
        searched = buf.len();
        if complete && let Some((len, head)) = parse_head(buf, head_request, capture)? {
            if blank + len > MAX_HEAD {
                return Err(head_too_large().into());
            }
            buf.drain(..len);
            searched = 0;
            match head {
                Some(mut head) => {
                    head.first_byte = first_byte;
                    return Ok(head);
                }
                // An interim 1xx answer: the final one follows.
                None if interim < MAX_INTERIM => {
                    interim += 1;
                    if !buf.is_empty() {
                        continue;
                    }
                }
                None => return Err(protocol("too many interim (1xx) answers").into()),
            }
        }
        if blank + buf.len() >= MAX_HEAD {
            return Err(head_too_large().into());
        }
        if buf.capacity() - buf.len() < FIRST_READ / 2 {
            buf.reserve(buf.capacity().max(FIRST_READ));
        }
        // Never read past the head limit: the rest waits in the socket.
        let room = MAX_HEAD + 1 - (blank + buf.len());
        match (&mut *io).take(room as u64).read_buf(buf).await {
            Ok(0) => {
                return Err(ExchangeError {
                    failure: Failure::target(CheckKind::Reset, CLOSED_EARLY),
                    before_answer: !received,
                });
            }
            Ok(_) => {
                if !received {
                    first_byte = written.elapsed();
                }
                received = true;
            }
            Err(err) if !received => return Err(before_answer(err)),
            Err(err) => return Err(classify_stream_io(&err).into()),
        }
    }
}

fn head_too_large() -> Failure {
    protocol(format_args!(
        "response head larger than {} KiB",
        MAX_HEAD / 1024
    ))
}

/// Parses the head at the start of `buf`: `None` while incomplete, else its length and
/// the head (`None` for an interim 1xx answer).
fn parse_head(
    buf: &[u8],
    head_request: bool,
    capture: Capture<'_>,
) -> Result<Option<(usize, Option<Head>)>, Failure> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    let len = match httparse::ParserConfig::default()
        .allow_spaces_after_header_name_in_responses(true)
        .allow_obsolete_multiline_headers_in_responses(true)
        .allow_multiple_spaces_in_response_status_delimiters(true)
        .parse_response(&mut response, buf)
    {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(err) => return Err(protocol(err)),
    };
    let code = response.code.unwrap_or_default();
    let status = StatusCode::from_u16(code)
        .map_err(|_| protocol(format_args!("invalid status code {code}")))?;
    if status.is_informational() && status != StatusCode::SWITCHING_PROTOCOLS {
        return Ok(Some((len, None)));
    }

    let mut content_length: Option<u64> = None;
    let mut transfer_encoding = false;
    let mut chunked = false;
    let mut close = false;
    let mut keep_alive = false;
    let mut location = None;
    let mut captured: Vec<Option<String>> = Vec::new();
    if !capture.headers.is_empty() {
        captured.resize(capture.headers.len(), None);
    }
    for header in response.headers.iter() {
        let name = header.name;
        if capture.location && name.eq_ignore_ascii_case("location") {
            location = Some(String::from_utf8_lossy(header.value).trim().to_owned());
        }
        for (wanted, value) in capture.headers.iter().zip(captured.iter_mut()) {
            if name.eq_ignore_ascii_case(wanted) {
                let text = String::from_utf8_lossy(header.value);
                match value {
                    Some(seen) => {
                        seen.push_str(", ");
                        seen.push_str(text.trim());
                    }
                    None => *value = Some(text.trim().to_owned()),
                }
            }
        }
        if name.eq_ignore_ascii_case("content-length") {
            // A list of identical values is allowed (RFC 9110 §8.6).
            for value in header.value.split(|&b| b == b',') {
                let value = value.trim_ascii();
                let value = std::str::from_utf8(value)
                    .ok()
                    .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                    .and_then(|v| v.parse::<u64>().ok())
                    .ok_or_else(|| protocol("invalid content-length"))?;
                if content_length.is_some_and(|seen| seen != value) {
                    return Err(protocol("conflicting content-length values"));
                }
                content_length = Some(value);
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            transfer_encoding = true;
            // The last coding of the last header decides.
            chunked = tokens(header.value)
                .last()
                .is_some_and(|coding| coding.eq_ignore_ascii_case(b"chunked"));
        } else if name.eq_ignore_ascii_case("connection") {
            for token in tokens(header.value) {
                close |= token.eq_ignore_ascii_case(b"close");
                keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        }
    }
    let framing = if head_request
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
        || status == StatusCode::SWITCHING_PROTOCOLS
    {
        Framing::Empty
    } else if transfer_encoding {
        if chunked {
            Framing::Chunked
        } else {
            Framing::UntilClose
        }
    } else {
        content_length.map_or(Framing::UntilClose, Framing::Length)
    };
    let persistent = match response.version {
        Some(1) => !close,
        _ => keep_alive && !close,
    };
    let keep_alive = persistent
        && framing != Framing::UntilClose
        && status != StatusCode::SWITCHING_PROTOCOLS
        // Both framings at once is a smuggling sign, and HTTP/1.0 has no transfer
        // codings (RFC 9112 §6.1): never reuse such a connection.
        && !(transfer_encoding && content_length.is_some())
        && !(transfer_encoding && response.version == Some(0));
    Ok(Some((
        len,
        Some(Head {
            status,
            framing,
            keep_alive,
            location,
            headers: captured,
            first_byte: std::time::Duration::ZERO,
        }),
    )))
}

/// The comma-separated tokens of a header value, trimmed, empty ones left out.
fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty())
}

/// Where a body goes: thrown away (a check), or kept up to [`MAX_BODY_DRAIN`] bytes (an
/// agent's answer).
#[derive(Debug, Default)]
pub(crate) struct Kept {
    /// Keep the body at all.
    pub(crate) keep: bool,
    /// The body's first bytes, at most [`MAX_BODY_DRAIN`].
    pub(crate) bytes: Vec<u8>,
    /// The body was longer than what was kept.
    pub(crate) truncated: bool,
}

impl Kept {
    /// Keeps what fits of `data`.
    pub(super) fn push(&mut self, data: &[u8]) {
        if !self.keep || data.is_empty() {
            return;
        }
        let room = MAX_BODY_DRAIN - self.bytes.len();
        if data.len() > room {
            self.truncated = true;
        }
        self.bytes.extend_from_slice(&data[..data.len().min(room)]);
    }
}

/// Reads the body of `head` (its first bytes are in `buf`), up to [`MAX_BODY_DRAIN`]
/// bytes, into `kept` when it keeps bodies. `true` when the response ended exactly where
/// its framing said and the connection may carry the next request; `false` when it must
/// be closed (body too long, read to the close, extra bytes, or the server asked to
/// close).
pub(crate) async fn drain<S>(
    io: &mut S,
    head: &Head,
    buf: &mut Vec<u8>,
    kept: &mut Kept,
) -> Result<bool, Failure>
where
    S: AsyncRead + Unpin,
{
    let limit = MAX_BODY_DRAIN as u64;
    let clean = match head.framing {
        Framing::Empty => buf.is_empty(),
        Framing::Length(length) if length > limit => {
            // Too long to drain: the connection is dropped. A body kept for assertions
            // still gets its first bytes.
            if kept.keep {
                kept.truncated = true;
                kept.push(buf);
                let mut seen = buf.len() as u64;
                while seen < limit {
                    let n = fill(io, buf).await?;
                    seen += n as u64;
                    kept.push(buf);
                }
            }
            return Ok(false);
        }
        Framing::Length(length) => {
            let mut seen = buf.len() as u64;
            kept.push(buf);
            while seen < length {
                let n = fill(io, buf).await?;
                seen += n as u64;
                kept.push(buf);
            }
            if kept.bytes.len() as u64 > length {
                kept.bytes.truncate(length as usize);
            }
            seen == length
        }
        Framing::UntilClose => {
            let mut seen = buf.len() as u64;
            kept.push(buf);
            while seen <= limit {
                match read(io, buf).await? {
                    0 => break,
                    n => seen += n as u64,
                }
                kept.push(buf);
            }
            kept.truncated |= kept.keep && seen > limit;
            false
        }
        Framing::Chunked => {
            let mut decoder = Chunked::default();
            let mut used = decoder.feed(buf, kept)?;
            let mut read = buf.len() as u64;
            while !decoder.is_done() {
                // Data past the bound, or framing past its own (endless zeros, huge
                // extensions on tiny chunks): stop reading, drop the connection.
                if decoder.body > limit || read > MAX_CHUNKED_READ {
                    kept.truncated = kept.keep;
                    return Ok(false);
                }
                let n = fill(io, buf).await?;
                read += n as u64;
                used = decoder.feed(&buf[..n], kept)?;
            }
            used == buf.len()
        }
    };
    Ok(clean && head.keep_alive)
}

/// Reads the next bytes of a body into `buf` (replacing what it held); the connection
/// closing here means the body was cut short (`connection closed`, kind `reset`).
async fn fill<S: AsyncRead + Unpin>(io: &mut S, buf: &mut Vec<u8>) -> Result<usize, Failure> {
    match read(io, buf).await? {
        0 => Err(Failure::target(CheckKind::Reset, "connection closed")),
        n => Ok(n),
    }
}

/// Reads once into `buf` (replacing what it held); 0 at the end of the stream.
async fn read<S: AsyncRead + Unpin>(io: &mut S, buf: &mut Vec<u8>) -> Result<usize, Failure> {
    buf.clear();
    buf.reserve(DRAIN_READ);
    io.read_buf(buf)
        .await
        .map_err(|err| classify_stream_io(&err))
}

/// A protocol failure: `protocol: <what>`.
fn protocol(what: impl std::fmt::Display) -> Failure {
    Failure::target(CheckKind::Protocol, format!("protocol: {what}"))
}

/// Where a chunked body decoder is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum ChunkState {
    /// In the hex digits of a chunk size.
    #[default]
    Size,
    /// In a chunk extension, after the size.
    Extension,
    /// After the CR of a size line.
    SizeLf,
    /// In chunk data: this many bytes left.
    Data(u64),
    /// After chunk data, before its CR.
    DataCr,
    /// After the CR that follows chunk data.
    DataLf,
    /// In the trailer section (after the last chunk): bytes in the current line.
    Trailer(usize),
    /// The body ended.
    Done,
}

/// A chunked-body decoder that counts data bytes and hands them to a [`Kept`].
#[derive(Debug, Default)]
struct Chunked {
    state: ChunkState,
    /// The chunk size being read.
    size: u64,
    /// Bytes in the current size line.
    line: usize,
    /// Bytes in the trailer section so far.
    trailers: usize,
    /// Data bytes so far.
    body: u64,
}

impl Chunked {
    fn is_done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Feeds `bytes`; returns how many were part of the body (all of them unless it ended).
    fn feed(&mut self, bytes: &[u8], kept: &mut Kept) -> Result<usize, Failure> {
        let bad = |what: &str| protocol(format_args!("invalid chunked body: {what}"));
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            match self.state {
                ChunkState::Done => break,
                ChunkState::Data(left) => {
                    let take = left.min((bytes.len() - i) as u64);
                    kept.push(&bytes[i..i + take as usize]);
                    i += take as usize;
                    self.body += take;
                    self.state = match left - take {
                        0 => ChunkState::DataCr,
                        left => ChunkState::Data(left),
                    };
                    continue;
                }
                ChunkState::Size => {
                    self.line += 1;
                    if self.line > MAX_CHUNK_LINE {
                        return Err(bad("chunk size line too long"));
                    }
                    if let Some(digit) = (b as char).to_digit(16) {
                        self.size = self
                            .size
                            .checked_mul(16)
                            .map(|s| s + u64::from(digit))
                            .ok_or_else(|| bad("chunk size overflows"))?;
                    } else if self.line == 1 {
                        return Err(bad("chunk size expected"));
                    } else {
                        match b {
                            b';' | b' ' | b'\t' => self.state = ChunkState::Extension,
                            b'\r' => self.state = ChunkState::SizeLf,
                            b'\n' => self.end_size_line(),
                            _ => return Err(bad("chunk size expected")),
                        }
                    }
                }
                ChunkState::Extension => {
                    self.line += 1;
                    if self.line > MAX_CHUNK_LINE {
                        return Err(bad("chunk extension too long"));
                    }
                    match b {
                        b'\r' => self.state = ChunkState::SizeLf,
                        b'\n' => self.end_size_line(),
                        _ => {}
                    }
                }
                ChunkState::SizeLf => match b {
                    b'\n' => self.end_size_line(),
                    _ => return Err(bad("LF expected after the chunk size")),
                },
                ChunkState::DataCr => match b {
                    b'\r' => self.state = ChunkState::DataLf,
                    b'\n' => self.state = ChunkState::Size,
                    _ => return Err(bad("CRLF expected after chunk data")),
                },
                ChunkState::DataLf => match b {
                    b'\n' => self.state = ChunkState::Size,
                    _ => return Err(bad("CRLF expected after chunk data")),
                },
                ChunkState::Trailer(line) => {
                    self.trailers += 1;
                    if self.trailers > MAX_HEAD {
                        return Err(bad("trailers too long"));
                    }
                    self.state = match b {
                        b'\n' if line == 0 => ChunkState::Done,
                        b'\n' => ChunkState::Trailer(0),
                        b'\r' => ChunkState::Trailer(line),
                        _ => ChunkState::Trailer(line + 1),
                    };
                }
            }
            i += 1;
        }
        Ok(i)
    }

    fn end_size_line(&mut self) {
        self.state = match self.size {
            0 => ChunkState::Trailer(0),
            size => ChunkState::Data(size),
        };
        self.size = 0;
        self.line = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(raw: &[u8]) -> Head {
        match parse_head(raw, false, Capture::default()) {
            Ok(Some((len, Some(head)))) => {
                assert_eq!(len, raw.len());
                head
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn framing_follows_rfc_9112() {
        let h = head(b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n");
        assert_eq!((h.framing, h.keep_alive), (Framing::Length(12), true));
        let h = head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n");
        assert_eq!((h.framing, h.keep_alive), (Framing::Chunked, true));
        let h = head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n");
        assert_eq!((h.framing, h.keep_alive), (Framing::UntilClose, false));
        let h = head(b"HTTP/1.1 200 OK\r\n\r\n");
        assert_eq!((h.framing, h.keep_alive), (Framing::UntilClose, false));
        let h = head(b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n");
        assert_eq!((h.framing, h.keep_alive), (Framing::Empty, true));
        let h = head(b"HTTP/1.1 200 OK\r\nConnection: Close\r\nContent-Length: 0\r\n\r\n");
        assert_eq!((h.framing, h.keep_alive), (Framing::Length(0), false));
        let h = head(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n");
        assert!(!h.keep_alive);
        let h = head(b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n");
        assert!(h.keep_alive);
        let h = head(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert_eq!((h.framing, h.keep_alive), (Framing::Chunked, false));
        let (_, h) = parse_head(
            b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n",
            true,
            Capture::default(),
        )
        .unwrap()
        .unwrap();
        assert_eq!(h.unwrap().framing, Framing::Empty);
    }

    /// [`send`] over an in-memory pipe to a server that answers `answer`.
    async fn send_to(answer: Vec<u8>) -> Result<Head, ExchangeError> {
        use tokio::io::AsyncWriteExt as _;
        let (mut client, mut server) = tokio::io::duplex(4096);
        // The server's write ends when the client stops reading and goes away.
        tokio::spawn(async move { server.write_all(&answer).await });
        let mut buf = b"GET / HTTP/1.1\r\nhost: t\r\n\r\n".to_vec();
        send(&mut client, false, &mut buf).await
    }

    #[tokio::test]
    async fn blank_lines_before_the_status_line_are_skipped_and_count_toward_the_limit() {
        let status = b"HTTP/1.1 204 No Content\r\n\r\n".to_vec();
        for blank in [&b"\r\n"[..], b"\n"] {
            let answer = [blank.repeat(2_000), status.clone()].concat();
            let head = send_to(answer).await.map_err(|e| e.failure).unwrap();
            assert_eq!(head.status, StatusCode::NO_CONTENT);
        }
        let answer = [b"\n".repeat(MAX_HEAD), status].concat();
        let err = send_to(answer).await.unwrap_err().failure;
        assert_eq!(err.detail, "protocol: response head larger than 64 KiB");
        // A bare `\r` before the status line is still httparse's to refuse.
        let err = send_to(b"\rX HTTP/1.1 200 OK\r\n\r\n".to_vec())
            .await
            .unwrap_err()
            .failure;
        assert_eq!(err.kind, CheckKind::Protocol, "{err:?}");
    }

    #[test]
    fn asked_for_headers_are_captured_and_joined() {
        let wanted = ["x-tag".to_owned(), "x-none".to_owned()];
        let capture = Capture {
            location: true,
            headers: &wanted,
        };
        let raw = b"HTTP/1.1 302 Found\r\nLocation:  /next \r\nX-Tag: a\r\nx-tag: b\r\nContent-Length: 0\r\n\r\n";
        let Ok(Some((_, Some(head)))) = parse_head(raw, false, capture) else {
            panic!("a complete head");
        };
        assert_eq!(head.location.as_deref(), Some("/next"));
        assert_eq!(head.headers, vec![Some("a, b".to_owned()), None]);
        // Nothing asked, nothing kept.
        let Ok(Some((_, Some(head)))) = parse_head(raw, false, Capture::default()) else {
            panic!("a complete head");
        };
        assert_eq!((head.location, head.headers.capacity()), (None, 0));
    }

    #[test]
    fn interim_answers_are_skipped_and_partial_heads_wait() {
        assert!(matches!(
            parse_head(b"HTTP/1.1 100 Continue\r\n\r\n", false, Capture::default()),
            Ok(Some((25, None)))
        ));
        assert!(matches!(
            parse_head(b"HTTP/1.1 200 OK\r\nContent-Le", false, Capture::default()),
            Ok(None)
        ));
    }

    #[test]
    fn bad_heads_are_protocol_failures() {
        for raw in [
            &b"SSH-2.0-OpenSSH_9.6\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        ] {
            let err = parse_head(raw, false, Capture::default()).unwrap_err();
            assert_eq!(err.kind, CheckKind::Protocol, "{err:?}");
            assert!(err.detail.starts_with("protocol: "), "{err:?}");
        }
    }

    #[test]
    fn chunked_bodies_decode_in_any_split() {
        let body = b"5;ext=1\r\nhello\r\n10\r\n0123456789abcdef\r\n0\r\nX-Trailer: 1\r\n\r\nNEXT";
        let end = body.len() - 4;
        for split in 0..body.len() {
            let mut decoder = Chunked::default();
            let mut kept = Kept {
                keep: true,
                ..Kept::default()
            };
            let first = decoder.feed(&body[..split], &mut kept).unwrap();
            assert_eq!(first, split.min(end));
            let second = decoder.feed(&body[split..], &mut kept).unwrap();
            assert!(decoder.is_done(), "split {split}");
            assert_eq!(first + second, end, "split {split}");
            assert_eq!(decoder.body, 21);
            assert_eq!(kept.bytes, b"hello0123456789abcdef", "split {split}");
        }
    }

    #[test]
    fn bad_chunks_are_protocol_failures() {
        for raw in [
            &b"zz\r\n"[..],
            b"\r\n",
            b"5\r\nhelloXX",
            b"ffffffffffffffffff\r\n",
            b"5\rX",
        ] {
            let err = Chunked::default()
                .feed(raw, &mut Kept::default())
                .unwrap_err();
            assert_eq!(err.kind, CheckKind::Protocol, "{raw:?}: {err:?}");
        }
    }
}
