//! `GET /probe?target=<url>&module=<name>`: one check of any URL, answered in
//! Prometheus text the way blackbox_exporter answers its `/probe` (SPEC §9.4), so a
//! scrape config written for blackbox works by changing its address to healthd's.
//!
//! | query | meaning |
//! |---|---|
//! | `target` | the URL to check (any scheme a monitor takes but `file://`); without `://`, `http://` is put in front (as blackbox's HTTP prober does), so other schemes are written out (`tcp://host:port`, `icmp://host`, `dns://…`); missing or invalid: 400 naming the problem, a password shown as `***` |
//! | `module` | a `[modules.<name>]` table, else a monitor's name (its config); absent: `[defaults]`; unknown: 400 naming it |
//!
//! The target is the whole URL, as in blackbox: the check asks for exactly the target's
//! path and query. The config's `path` is `/` (`[defaults]`' and a monitor's own `path`
//! are not used: a monitor's belongs to its URL), and for HTTP the target's last path
//! segment is handed to the probe as that `path` (the probe joins `path` on with a `/`
//! between, which would make `/metrics` `/metrics/`: see `exact_path`). A
//! `[modules.<name>]` table that sets a `path` of its own has it joined onto the
//! target's path, as for a monitor. A table's `path` is told from `[defaults]`' by its
//! value, so a table that repeats `[defaults]`' `path` is taken as setting none.
//!
//! Credentials stay with the targets they were written for:
//!
//! | module | `headers`, `tls.cert`/`tls.key`, the URL's `user:password` |
//! |---|---|
//! | none (`[defaults]`) | `headers` and `tls.cert`/`tls.key` of `[defaults]` are not used |
//! | a monitor's name | used only when the target has the monitor URL's scheme, host and port (the monitor's user and password then go with a target that has none); for any other target they are dropped and the rest of the monitor's config applies |
//! | a `[modules.<name>]` table | used as written: the operator wrote the table for probing |
//!
//! A browser request sent from another site (`Sec-Fetch-Site: cross-site` or
//! `same-site`, or an `Origin` that is not the server's own, as for writes, SPEC §9.3) is
//! refused with a plain-text 403, so a web page cannot make its visitors' browsers probe
//! with healthd. Prometheus sends neither header.
//!
//! The check is [`check_url`] (`health_check::build_probe`, as every monitor's) and bounded
//! by the module's `timeout`, by at most [`MAX_PROBE_TIMEOUT`] whatever the module says
//! (so targets that never answer cannot hold the [`MAX_CONCURRENT`] permits for long),
//! and, when Prometheus sends `X-Prometheus-Scrape-Timeout-Seconds`, by that less
//! [`SCRAPE_MARGIN`] (so the answer arrives before Prometheus gives up). The answer (200,
//! Prometheus text 0.0.4):
//!
//! | family | value |
//! |---|---|
//! | `probe_success` | 1 healthy, 0 not |
//! | `probe_duration_seconds` | how long the check took |
//! | `probe_http_status_code` | the answer's HTTP status; 0 when none |
//! | `probe_ssl_earliest_cert_expiry` | the peer certificate's not-after, unix s (only when a certificate was seen) |
//! | `probe_failure_kind{kind}` | 1 for the result's kind (only on failure) |
//! | `probe_phase_duration_seconds{phase}` | each measured phase: `dns`, `connect`, `tls`, `first_byte` |
//! | `probe_dns_lookup_time_seconds` | the `dns` phase, under blackbox's name (only when measured) |
//!
//! A check that could not be carried out (a probe error) is `probe_success 0` with its
//! kind. At most [`MAX_CONCURRENT`] probes run at once; past that the answer is 503.
//!
//! A password in a 400's `target` is masked: a target that parses is shown through
//! `health_types::redacted`; one that does not has everything from the first `:` of its
//! authority (when that comes before any `@`, `/`, `?` or `#`) to its last `@` shown as
//! `***`, so a password holding `/`, `?`, `#` or `@` does not leak either.
//!
//! Who may ask is the API's read rule (SPEC §9.3): with `public_read = true` (the
//! default) anyone who can reach healthd can make it connect to any URL, as anyone who
//! can reach a blackbox_exporter can. Set `public_read = false` and a `[server] token`
//! to restrict it. `file://` targets are refused (400): they would let a reader test
//! paths on this host.

use std::{
    borrow::Cow,
    collections::{BTreeMap, HashMap},
    sync::Arc,
    time::Duration,
};

use axum::{
    extract::{Query, rejection::QueryRejection},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use health_types::{CheckKind, CheckResult, HealthCheckConfig, PASSWORD_MASK, Url, redacted};
use tokio::{sync::Semaphore, time::Instant};

use crate::{
    metrics::{Encoder, Format, Kind},
    probe::check_url,
};

/// How many `/probe` checks may run at once; past it the answer is 503.
pub(crate) const MAX_CONCURRENT: usize = 64;
/// The longest a `/probe` check may take, whatever its module's `timeout` (as the
/// agent's bound on a client's timeout).
pub(crate) const MAX_PROBE_TIMEOUT: Duration = Duration::from_secs(60);
/// What is kept from Prometheus' scrape timeout for the answer to travel back.
pub(crate) const SCRAPE_MARGIN: Duration = Duration::from_millis(500);
/// The header Prometheus states its scrape timeout in, in seconds.
const SCRAPE_TIMEOUT_HEADER: &str = "x-prometheus-scrape-timeout-seconds";

/// What `/probe` checks with: the config's `[defaults]` and `[modules]`, and the
/// concurrency bound. A monitor's name as module is looked up by the API.
#[derive(Debug)]
pub(crate) struct ProbeModules {
    defaults: HealthCheckConfig,
    modules: BTreeMap<String, HealthCheckConfig>,
    permits: Arc<Semaphore>,
}

impl Default for ProbeModules {
    /// The built-in defaults and no modules.
    fn default() -> Self {
        ProbeModules::new(HealthCheckConfig::default(), BTreeMap::new())
    }
}

impl ProbeModules {
    /// `/probe` with `defaults` (no `module`) and `modules` (`module=<name>`).
    pub(crate) fn new(
        defaults: HealthCheckConfig,
        modules: BTreeMap<String, HealthCheckConfig>,
    ) -> Self {
        ProbeModules {
            defaults,
            modules,
            permits: Arc::new(Semaphore::new(MAX_CONCURRENT)),
        }
    }

    /// The semaphore bounding concurrent probes, for tests to hold.
    #[cfg(test)]
    pub(crate) fn permits_for_tests(&self) -> &Arc<Semaphore> {
        &self.permits
    }

    /// The `[modules]` table `name`.
    pub(crate) fn module(&self, name: &str) -> Option<&HealthCheckConfig> {
        self.modules.get(name)
    }

    /// The config a check of `target` runs with when `source` is its module, and the URL
    /// it checks: the rules of the module docs on `path` and on credentials.
    fn for_target(&self, source: Source, mut target: Url) -> (HealthCheckConfig, Url) {
        match source {
            Source::Defaults => {
                let mut config = self.defaults.clone();
                without_credentials(&mut config);
                config.path = "/".to_owned();
                (config, target)
            }
            Source::Table(mut config) => {
                if config.path == self.defaults.path {
                    config.path = "/".to_owned();
                }
                (config, target)
            }
            Source::Monitor { mut config, url } => {
                // The monitor's path belongs to its own URL.
                config.path = "/".to_owned();
                if same_origin(&url, &target) {
                    if target.username().is_empty() && target.password().is_none() {
                        // Both succeed on a URL that has a host, as one of the same
                        // origin as a monitor's URL with a user has.
                        let _ = target.set_username(url.username());
                        let _ = target.set_password(url.password());
                    }
                } else {
                    without_credentials(&mut config);
                }
                (config, target)
            }
        }
    }
}

/// Where a `/probe`'s config comes from.
#[derive(Debug)]
pub(crate) enum Source {
    /// No `module`: `[defaults]`.
    Defaults,
    /// A `[modules.<name>]` table.
    Table(HealthCheckConfig),
    /// A monitor's config, and its URL.
    Monitor {
        /// The monitor's config.
        config: HealthCheckConfig,
        /// The monitor's URL.
        url: Arc<Url>,
    },
}

/// `config` without what identifies healthd to a server: `headers` and the TLS client
/// certificate and key.
fn without_credentials(config: &mut HealthCheckConfig) {
    config.headers.clear();
    config.tls.cert = None;
    config.tls.key = None;
}

/// Whether `a` and `b` have the same scheme, host and port (a scheme's default port
/// counting as given).
fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme().eq_ignore_ascii_case(b.scheme())
        && a.host_str().is_some_and(|host| {
            b.host_str()
                .is_some_and(|other| other.eq_ignore_ascii_case(host))
        })
        && a.port_or_known_default() == b.port_or_known_default()
}

/// The URL an HTTP check of `url` goes to with `config`, set so that the request asks
/// for exactly `url`'s path and query: the probe joins `path` onto the URL's path with a
/// `/` between (`/metrics` and `/` would ask for `/metrics/`), so with `path` = `/` the
/// last segment of the URL's path moves into `path` (`/a/metrics` becomes `/a/` and
/// `/metrics`). Other schemes and another `path` (a `[modules]` table's own): `url`.
fn exact_path(config: &mut HealthCheckConfig, url: &Url) -> Url {
    if config.path != "/" || !matches!(url.scheme(), "http" | "https" | "h2c") {
        return url.clone();
    }
    let path = url.path();
    let Some((dir, last)) = path.rsplit_once('/').filter(|(_, last)| !last.is_empty()) else {
        return url.clone();
    };
    config.path = format!("/{last}");
    let mut parent = url.clone();
    parent.set_path(&format!("{dir}/"));
    parent
}

/// A plain-text answer of `status`.
pub(crate) fn plain(status: StatusCode, message: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        message + "\n",
    )
        .into_response()
}

/// `text` with a URL's password (if any) shown as `***`, for a `target` that does not
/// parse: from the first `:` after `://` (when it comes before any `@`, `/`, `?` or `#`:
/// a user name holds none of them) to the last `@`, since a password may hold `/`, `?`,
/// `#` and `@` too. A URL with an `@` in its path and a port loses more than its
/// password to the mask: never less.
fn masked(text: &str) -> String {
    let Some((scheme, rest)) = text.split_once("://") else {
        return text.to_owned();
    };
    let Some(colon) = rest
        .find([':', '@', '/', '?', '#'])
        .filter(|&at| rest[at..].starts_with(':'))
    else {
        return text.to_owned();
    };
    match rest.rfind('@') {
        Some(at) if at > colon => {
            format!(
                "{scheme}://{}:{PASSWORD_MASK}@{}",
                &rest[..colon],
                &rest[at + 1..]
            )
        }
        _ => text.to_owned(),
    }
}

/// `target` as a URL: with `http://` in front when it has no `://` (as blackbox's HTTP
/// prober reads it).
fn with_scheme(target: &str) -> Cow<'_, str> {
    if target.contains("://") {
        Cow::Borrowed(target)
    } else {
        Cow::Owned(format!("http://{target}"))
    }
}

/// The check's time bound: the config's timeout, at most [`MAX_PROBE_TIMEOUT`], or less
/// when Prometheus' scrape timeout (less [`SCRAPE_MARGIN`]) is shorter; for a header that
/// is not a number of seconds, the reason to answer 400 with.
fn time_bound(headers: &HeaderMap, timeout: Duration) -> Result<Duration, String> {
    let timeout = timeout.min(MAX_PROBE_TIMEOUT);
    let Some(value) = headers.get(SCRAPE_TIMEOUT_HEADER) else {
        return Ok(timeout);
    };
    let scrape = value
        .to_str()
        .ok()
        .and_then(|text| text.trim().parse::<f64>().ok())
        .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
        .filter(|scrape| !scrape.is_zero())
        .ok_or_else(|| {
            format!(
                "invalid `X-Prometheus-Scrape-Timeout-Seconds` = {:?}: expected a positive number of seconds",
                String::from_utf8_lossy(value.as_bytes())
            )
        })?;
    // A scrape timeout shorter than the margin is taken whole: the check gets what there is.
    let bound = match scrape.checked_sub(SCRAPE_MARGIN) {
        Some(left) if !left.is_zero() => left,
        _ => scrape,
    };
    Ok(timeout.min(bound))
}

/// `/probe`: see the module docs. `monitor` gives the config and URL of the monitor of
/// that name, for a `module` that is no `[modules]` table. The API has refused requests
/// from other sites before this.
pub(crate) async fn probe(
    modules: &ProbeModules,
    monitor: impl FnOnce(&str) -> Option<(HealthCheckConfig, Arc<Url>)>,
    headers: &HeaderMap,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Response {
    let Query(query) = match query {
        Ok(query) => query,
        Err(err) => return plain(StatusCode::BAD_REQUEST, format!("invalid query: {err}")),
    };
    let target = match query.get("target").map(|t| t.trim()) {
        None | Some("") => {
            return plain(
                StatusCode::BAD_REQUEST,
                "missing `target`: give the URL to check, as in /probe?target=https://example.com/"
                    .to_owned(),
            );
        }
        Some(target) => with_scheme(target),
    };
    let url = match Url::parse(&target) {
        Ok(url) => url,
        Err(err) => {
            return plain(
                StatusCode::BAD_REQUEST,
                format!("invalid `target` = {:?}: {err}", masked(&target)),
            );
        }
    };
    if url.scheme().eq_ignore_ascii_case("file") {
        return plain(
            StatusCode::BAD_REQUEST,
            format!(
                "invalid `target` = {:?}: /probe does not check file:// URLs (they would let any reader test paths on this host)",
                redacted(&url)
            ),
        );
    }
    let source = match query.get("module").map(String::as_str) {
        None => Source::Defaults,
        Some(name) => match modules.module(name) {
            Some(config) => Source::Table(config.clone()),
            None => match monitor(name) {
                Some((config, url)) => Source::Monitor { config, url },
                None => {
                    return plain(
                        StatusCode::BAD_REQUEST,
                        format!(
                            "unknown `module` = {name:?}: no [modules.{name}] table and no monitor of that name"
                        ),
                    );
                }
            },
        },
    };
    let (mut config, url) = modules.for_target(source, url);
    config.timeout = match time_bound(headers, config.timeout) {
        Ok(bound) => bound,
        Err(reason) => return plain(StatusCode::BAD_REQUEST, reason),
    };
    let Ok(_permit) = Arc::clone(&modules.permits).try_acquire_owned() else {
        return plain(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("too many probes at once (at most {MAX_CONCURRENT}); try again"),
        );
    };
    let checked = exact_path(&mut config, &url);
    let started = Instant::now();
    let outcome = match check_url(&config, &checked).await {
        Ok(outcome) => outcome,
        Err(err) => {
            let mut message = format!("cannot check `target` = {:?}: {err}", redacted(&url));
            // The error may quote the URL as given; its password never leaves.
            if let Some(password) = url.password().filter(|p| !p.is_empty()) {
                message = message.replace(password, PASSWORD_MASK);
            }
            return plain(StatusCode::BAD_REQUEST, message);
        }
    };
    let took = started.elapsed();
    let result = match outcome {
        Ok(result) => result,
        // The check could not be carried out: a failure of its kind all the same.
        Err(err) => err.to_result(took),
    };
    let mut text = String::new();
    // Writing to a String cannot fail.
    let _ = write_result(
        &mut Encoder::new(&mut text, Format::Prometheus),
        &result,
        took,
    );
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, Format::PROMETHEUS)],
        text,
    )
        .into_response()
}

/// The families of the module docs' table for `result`, which took `took`.
fn write_result<W: std::fmt::Write>(
    out: &mut Encoder<W>,
    result: &CheckResult,
    took: Duration,
) -> std::fmt::Result {
    let gauge = |out: &mut Encoder<W>, name: &str, help: &str| out.family(name, Kind::Gauge, help);
    gauge(out, "probe_success", "1 if the target was healthy, else 0")?;
    out.sample("probe_success", &[], result.healthy)?;
    gauge(out, "probe_duration_seconds", "How long the check took")?;
    out.sample("probe_duration_seconds", &[], took.as_secs_f64())?;
    gauge(
        out,
        "probe_http_status_code",
        "The HTTP status code of the answer; 0 when there was none",
    )?;
    let code = result.status_code.map_or(0, i64::from);
    out.sample("probe_http_status_code", &[], code)?;
    if let Some(cert) = &result.cert {
        let name = "probe_ssl_earliest_cert_expiry";
        gauge(
            out,
            name,
            "When the peer certificate expires (not after), in unix seconds",
        )?;
        out.sample(name, &[], cert.not_after)?;
    }
    if !result.healthy {
        let name = "probe_failure_kind";
        gauge(out, name, "1 for the kind of the failure (only on failure)")?;
        let kind: CheckKind = result.kind;
        out.sample(name, &[("kind", kind.as_str())], 1_i64)?;
    }
    if !result.phases.is_empty() {
        let name = "probe_phase_duration_seconds";
        gauge(
            out,
            name,
            "How long each phase of the check took (dns, connect, tls, first_byte)",
        )?;
        for (phase, took) in result.phases.iter() {
            out.sample(name, &[("phase", phase)], took.as_secs_f64())?;
        }
    }
    if let Some(dns) = result.phases.dns {
        let name = "probe_dns_lookup_time_seconds";
        gauge(out, name, "How long the name lookup took")?;
        out.sample(name, &[], dns.as_secs_f64())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
