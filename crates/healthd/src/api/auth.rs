//! Who may use the API (SPEC §9.3), as one middleware in front of every route:
//!
//! | request | token set | no token |
//! |---|---|---|
//! | write (any method but GET, HEAD, OPTIONS) | `Authorization: Bearer <token>`, else 401 | loopback client, else 403 |
//! | read, `public_read = true` (default) | open | open |
//! | read, `public_read = false` | the token, else 401 (`/healthz` stays open) | (a config error) |
//!
//! Before any of that, a write whose `Origin` is not the server's own (scheme, host and
//! port against the request's `Host`) is refused with 403, token or not: a page on
//! another site cannot make a browser write to healthd, not even a browser that holds
//! the token in some other way. `/probe` refuses such requests too, and those a browser
//! marks `Sec-Fetch-Site: cross-site` or `same-site` (`same_site_only`, called by its
//! handler so that the answer is plain text).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::{
    extract::{ConnectInfo, Request, State},
    http::{
        HeaderMap, HeaderValue, Method, StatusCode, Uri,
        header::{AUTHORIZATION, HOST, ORIGIN, WWW_AUTHENTICATE},
        uri::Authority,
    },
    middleware::Next,
    response::{IntoResponse, Response},
};
use subtle::ConstantTimeEq;

use super::ApiError;
use crate::config::{ApiAccess, ApiToken};

/// The scheme of the API's own origin: it serves plain HTTP.
const OWN_SCHEME: &str = "http";
/// The port of an `http` origin or `Host` that names none.
const OWN_DEFAULT_PORT: u16 = 80;
/// The header in which browsers say where a request comes from (Fetch Metadata).
const SEC_FETCH_SITE: &str = "sec-fetch-site";
/// The route that stays open even when reads need the token: liveness probes have none.
const HEALTHZ: &str = "/healthz";

/// Why a request is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Refusal {
    /// The token is needed and no bearer token was given (401).
    NoToken,
    /// A bearer token was given, and it is not the one (401).
    WrongToken,
    /// A write without a token configured, from a client that is not on loopback (403).
    NotLoopback,
    /// A write from a page of another origin, as the browser says (403).
    ForeignOrigin(String),
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let (status, message, challenge) = match self {
            Refusal::NoToken => (
                StatusCode::UNAUTHORIZED,
                "this request needs the API token: send `Authorization: Bearer <token>`".to_owned(),
                "Bearer",
            ),
            Refusal::WrongToken => (
                StatusCode::UNAUTHORIZED,
                "the bearer token is not the API token".to_owned(),
                "Bearer error=\"invalid_token\"",
            ),
            Refusal::NotLoopback => (
                StatusCode::FORBIDDEN,
                "writes are answered for loopback clients only while `[server] token` is not set"
                    .to_owned(),
                "",
            ),
            Refusal::ForeignOrigin(origin) => (
                StatusCode::FORBIDDEN,
                format!("cross-origin request refused: Origin {origin:?} is not this server's"),
                "",
            ),
        };
        let mut response = ApiError(status, message).into_response();
        if !challenge.is_empty() {
            response
                .headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
        }
        response
    }
}

/// The middleware: passes the request on, or answers with its [`Refusal`].
pub(super) async fn admit(
    State(access): State<Arc<ApiAccess>>,
    request: Request,
    next: Next,
) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(peer)| *peer);
    match decide(
        &access,
        request.method(),
        request.uri(),
        request.headers(),
        peer,
    ) {
        Ok(()) => next.run(request).await,
        Err(refusal) => refusal.into_response(),
    }
}

/// Whether a request may go on (the table in the module docs). `peer` is `None` when
/// the server did not say who the client is: such a client is not taken for loopback.
pub(super) fn decide(
    access: &ApiAccess,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    peer: Option<SocketAddr>,
) -> Result<(), Refusal> {
    let write = !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
    if write {
        same_origin(headers, uri)?;
    }
    match &access.token {
        Some(token) if write || (!access.public_read && uri.path() != HEALTHZ) => {
            bearer(headers, token)
        }
        None if write && !peer.is_some_and(is_loopback) => Err(Refusal::NotLoopback),
        _ => Ok(()),
    }
}

/// Whether a client at `peer` is on this host's loopback (IPv4-mapped IPv6 included).
pub(super) fn is_loopback(peer: SocketAddr) -> bool {
    peer.ip().to_canonical().is_loopback()
}

/// The request's bearer token against `token`, in time that does not depend on where
/// they differ (only on their lengths).
fn bearer(headers: &HeaderMap, token: &ApiToken) -> Result<(), Refusal> {
    let given = headers
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, given)| given.trim())
        .ok_or(Refusal::NoToken)?;
    if bool::from(given.as_bytes().ct_eq(token.as_bytes())) {
        Ok(())
    } else {
        Err(Refusal::WrongToken)
    }
}

/// `Ok` unless a browser sent the request from another site, for reads that must not
/// be triggered by other web sites (`/probe`: it connects where the query says, with
/// credentials a module may carry): a `Sec-Fetch-Site` of `cross-site` or `same-site`,
/// or an `Origin` that is not this server's (as for writes, [`same_origin`]). Clients
/// that are no browser (Prometheus, curl) send neither header. The error is the reason
/// to answer 403 with.
pub(super) fn same_site_only(headers: &HeaderMap, uri: &Uri) -> Result<(), String> {
    if let Some(site) = headers.get(SEC_FETCH_SITE)
        && let Some(site @ ("cross-site" | "same-site")) = site
            .to_str()
            .ok()
            .map(|s| s.trim().to_ascii_lowercase())
            .as_deref()
    {
        return Err(format!(
            "request from another site refused: Sec-Fetch-Site is {site:?}; /probe answers only \
             requests that no other web site made a browser send"
        ));
    }
    same_origin(headers, uri).map_err(|refusal| match refusal {
        Refusal::ForeignOrigin(origin) => format!(
            "cross-origin request refused: Origin {origin:?} is not this server's; /probe answers \
             only requests that no other web site made a browser send"
        ),
        other => format!("{other:?}"),
    })
}

/// `Ok` when the request has no `Origin` (not sent by a page) or one equal to this
/// server's: `http`, and the host and port of the request's `Host` (on HTTP/2, its
/// `:authority`).
fn same_origin(headers: &HeaderMap, uri: &Uri) -> Result<(), Refusal> {
    let Some(origin) = headers.get(ORIGIN) else {
        return Ok(());
    };
    let own = headers
        .get(HOST)
        .and_then(|host| host.to_str().ok())
        .and_then(|host| host.parse::<Authority>().ok())
        .or_else(|| uri.authority().cloned());
    let theirs = origin
        .to_str()
        .ok()
        .and_then(|origin| origin.parse::<Uri>().ok());
    let same = match (own, theirs) {
        (Some(own), Some(theirs)) => {
            theirs.scheme_str() == Some(OWN_SCHEME)
                && theirs.path_and_query().is_none_or(|p| p.as_str() == "/")
                && theirs
                    .host()
                    .is_some_and(|host| host.eq_ignore_ascii_case(own.host()))
                && theirs.port_u16().unwrap_or(OWN_DEFAULT_PORT)
                    == own.port_u16().unwrap_or(OWN_DEFAULT_PORT)
        }
        _ => false,
    };
    if same {
        Ok(())
    } else {
        Err(Refusal::ForeignOrigin(
            String::from_utf8_lossy(origin.as_bytes()).into_owned(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access(token: Option<&str>, public_read: bool) -> ApiAccess {
        ApiAccess {
            token: token.map(|t| ApiToken::try_new(t).unwrap()),
            public_read,
        }
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(name, value)| (name.parse().unwrap(), HeaderValue::from_str(value).unwrap()))
            .collect()
    }

    const LOOPBACK: &str = "127.0.0.1:40000";
    const LAN: &str = "192.168.1.20:40000";

    fn decide_at(
        access: &ApiAccess,
        method: Method,
        path: &str,
        pairs: &[(&'static str, &str)],
        peer: &str,
    ) -> Result<(), Refusal> {
        decide(
            access,
            &method,
            &path.parse().unwrap(),
            &headers(pairs),
            Some(peer.parse().unwrap()),
        )
    }

    const RESTART: &str = "/api/v1/monitors/api/restart";

    #[test]
    fn loopback_is_127_8_and_1_in_both_families() {
        for peer in ["127.0.0.1:1", "127.0.0.2:1", "127.255.0.3:1", "[::1]:1"] {
            assert!(is_loopback(peer.parse().unwrap()), "{peer}");
        }
        // IPv4-mapped, as a dual-stack socket reports an IPv4 client.
        assert!(is_loopback("[::ffff:127.0.0.1]:1".parse().unwrap()));
        for peer in [
            "192.168.1.20:1",
            "10.0.0.1:1",
            "[::ffff:10.0.0.1]:1",
            "[fe80::1]:1",
        ] {
            assert!(!is_loopback(peer.parse().unwrap()), "{peer}");
        }
    }

    #[test]
    fn without_a_token_writes_are_for_loopback_clients_only() {
        let open = access(None, true);
        assert_eq!(
            decide_at(&open, Method::POST, RESTART, &[], LOOPBACK),
            Ok(())
        );
        assert_eq!(
            decide_at(&open, Method::POST, RESTART, &[], LAN),
            Err(Refusal::NotLoopback)
        );
        assert_eq!(
            decide_at(&open, Method::DELETE, RESTART, &[], LAN),
            Err(Refusal::NotLoopback)
        );
        // A client the server did not name is not loopback.
        let unknown = decide(
            &open,
            &Method::POST,
            &RESTART.parse().unwrap(),
            &HeaderMap::new(),
            None,
        );
        assert_eq!(unknown, Err(Refusal::NotLoopback));
        // Reads stay open to everyone.
        assert_eq!(
            decide_at(&open, Method::GET, "/api/v1/monitors", &[], LAN),
            Ok(())
        );
    }

    #[test]
    fn with_a_token_writes_need_it_from_anywhere() {
        let locked = access(Some("s3cret-token"), true);
        for peer in [LOOPBACK, LAN] {
            assert_eq!(
                decide_at(&locked, Method::POST, RESTART, &[], peer),
                Err(Refusal::NoToken)
            );
            let good = [("authorization", "Bearer s3cret-token")];
            assert_eq!(
                decide_at(&locked, Method::POST, RESTART, &good, peer),
                Ok(())
            );
        }
        for wrong in [
            "Bearer s3cret-tokem",
            "Bearer s3cret-token2",
            "Bearer s3cret",
            "Bearer ",
        ] {
            assert_eq!(
                decide_at(
                    &locked,
                    Method::POST,
                    RESTART,
                    &[("authorization", wrong)],
                    LAN
                ),
                Err(Refusal::WrongToken),
                "{wrong}"
            );
        }
        for not_bearer in ["Basic czNjcmV0LXRva2Vu", "s3cret-token", "Bearer"] {
            assert_eq!(
                decide_at(
                    &locked,
                    Method::POST,
                    RESTART,
                    &[("authorization", not_bearer)],
                    LAN
                ),
                Err(Refusal::NoToken),
                "{not_bearer}"
            );
        }
        // The scheme's case does not matter (RFC 9110 §11.1).
        let lower = [("authorization", "bearer s3cret-token")];
        assert_eq!(
            decide_at(&locked, Method::POST, RESTART, &lower, LAN),
            Ok(())
        );
        // Reads stay public.
        assert_eq!(
            decide_at(&locked, Method::GET, "/metrics", &[], LAN),
            Ok(())
        );
    }

    #[test]
    fn public_read_false_closes_every_read_but_healthz() {
        let closed = access(Some("s3cret-token"), false);
        for path in ["/", "/metrics", "/api/v1/monitors", "/api/v1/health"] {
            for method in [Method::GET, Method::HEAD] {
                assert_eq!(
                    decide_at(&closed, method.clone(), path, &[], LOOPBACK),
                    Err(Refusal::NoToken),
                    "{method} {path}"
                );
            }
            let good = [("authorization", "Bearer s3cret-token")];
            assert_eq!(decide_at(&closed, Method::GET, path, &good, LAN), Ok(()));
        }
        assert_eq!(decide_at(&closed, Method::GET, HEALTHZ, &[], LAN), Ok(()));
    }

    #[test]
    fn a_write_from_another_origin_is_refused_token_or_not() {
        let token = [("authorization", "Bearer s3cret-token")];
        for access in [access(None, true), access(Some("s3cret-token"), true)] {
            for origin in [
                "http://evil.example",
                "http://127.0.0.1:8091",
                "https://127.0.0.1:8090",
                "http://127.0.0.1",
                "null",
                "http://127.0.0.1:8090.evil.example",
            ] {
                let pairs = [("host", "127.0.0.1:8090"), ("origin", origin), token[0]];
                assert_eq!(
                    decide_at(&access, Method::POST, RESTART, &pairs, LOOPBACK),
                    Err(Refusal::ForeignOrigin(origin.to_owned())),
                    "{origin}"
                );
            }
            // The server's own origin, in any case; a port left out is 80 on both sides.
            for (host, origin) in [
                ("127.0.0.1:8090", "http://127.0.0.1:8090"),
                ("Healthd.LAN:8090", "http://healthd.lan:8090"),
                ("healthd.lan", "http://healthd.lan"),
                ("healthd.lan", "http://healthd.lan:80"),
                ("[::1]:8090", "http://[::1]:8090"),
            ] {
                let pairs = [("host", host), ("origin", origin), token[0]];
                assert_eq!(
                    decide_at(&access, Method::POST, RESTART, &pairs, LOOPBACK),
                    Ok(()),
                    "{host} {origin}"
                );
            }
            // Reads are not refused for their origin.
            let pairs = [
                ("host", "127.0.0.1:8090"),
                ("origin", "http://evil.example"),
            ];
            assert_eq!(decide_at(&access, Method::GET, "/", &pairs, LAN), Ok(()));
        }
        // Without a Host, no origin is the server's own.
        let pairs = [("origin", "http://127.0.0.1:8090")];
        assert_eq!(
            decide_at(&access(None, true), Method::POST, RESTART, &pairs, LOOPBACK),
            Err(Refusal::ForeignOrigin("http://127.0.0.1:8090".to_owned()))
        );
    }
}
