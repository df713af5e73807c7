//! `GET /probe?target=<url>&module=<name>`: one check of any URL, answered in
//! Prometheus text the way blackbox_exporter answers its `/probe` (SPEC §9.4), so a
//! scrape config written for blackbox works by changing its address to healthd's.
//!
//! | query | meaning |
//! |---|---|
//! | `target` | the URL to check (any scheme a monitor takes but `file://`); missing or invalid: 400 naming the problem, a password shown as `***` |
//! | `module` | a `[modules.<name>]` table, else a monitor's name (its config); absent: `[defaults]`; unknown: 400 naming it |
//!
//! The check is built by `health_check::build_probe` (as every monitor's is) and bounded
//! by the module's `timeout` and, when Prometheus sends
//! `X-Prometheus-Scrape-Timeout-Seconds`, by that less [`SCRAPE_MARGIN`] (so the answer
//! arrives before Prometheus gives up). The answer (200, Prometheus text 0.0.4):
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
//! Who may ask is the API's read rule (SPEC §9.3): with `public_read = true` (the
//! default) anyone who can reach healthd can make it connect to any URL, as anyone who
//! can reach a blackbox_exporter can. Set `public_read = false` and a `[server] token`
//! to restrict it. `file://` targets are refused (400): they would let a reader test
//! paths on this host.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
    time::Duration,
};

use axum::{
    extract::{Query, rejection::QueryRejection},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use health_check::build_probe;
use health_monitor::check_once;
use health_types::{
    CheckKind, CheckResult, HealthCheckConfig, PASSWORD_MASK, Target, Url, redacted,
};
use tokio::{sync::Semaphore, time::Instant};

use crate::metrics::{Encoder, Format, Kind};

/// How many `/probe` checks may run at once; past it the answer is 503.
pub(crate) const MAX_CONCURRENT: usize = 64;
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
}

/// A plain-text answer of `status`.
fn plain(status: StatusCode, message: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        message + "\n",
    )
        .into_response()
}

/// `text` with a URL's password (if any) shown as `***`, for a `target` that may not
/// parse: the user info is what comes before the last `@` of the authority.
fn masked(text: &str) -> String {
    let Some((scheme, rest)) = text.split_once("://") else {
        return text.to_owned();
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let Some((user_info, host)) = authority.rsplit_once('@') else {
        return text.to_owned();
    };
    match user_info.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:{PASSWORD_MASK}@{host}{tail}"),
        None => text.to_owned(),
    }
}

/// The check's time bound: the config's timeout, or less when Prometheus' scrape timeout
/// (less [`SCRAPE_MARGIN`]) is shorter; for a header that is not a number of seconds,
/// the reason to answer 400 with.
fn time_bound(headers: &HeaderMap, timeout: Duration) -> Result<Duration, String> {
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

/// `/probe`: see the module docs. `monitor_config` is the config of the monitor of that
/// name, for a `module` that is no `[modules]` table.
pub(crate) async fn probe(
    modules: &ProbeModules,
    monitor_config: impl FnOnce(&str) -> Option<HealthCheckConfig>,
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
        Some(target) => target,
    };
    let url = match Url::parse(target) {
        Ok(url) => url,
        Err(err) => {
            return plain(
                StatusCode::BAD_REQUEST,
                format!("invalid `target` = {:?}: {err}", masked(target)),
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
    let mut config = match query.get("module").map(String::as_str) {
        None => modules.defaults.clone(),
        Some(name) => match modules
            .module(name)
            .cloned()
            .or_else(|| monitor_config(name))
        {
            Some(config) => config,
            None => {
                return plain(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "unknown `module` = {name:?}: no [modules.{name}] table and no monitor of that name"
                    ),
                );
            }
        },
    };
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
    let built = match build_probe(&config, &Target::Url(url.clone())) {
        Ok(built) => built,
        Err(err) => {
            let mut message = format!("cannot check `target` = {:?}: {err}", redacted(&url));
            // The error may quote the URL as given; its password never leaves.
            if let Some(password) = url.password().filter(|p| !p.is_empty()) {
                message = message.replace(password, PASSWORD_MASK);
            }
            return plain(StatusCode::BAD_REQUEST, message);
        }
    };
    let started = Instant::now();
    let outcome = check_once(&*built.probe, &built.url, config.timeout).await;
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
    out.sample("probe_success", "", &[], result.healthy)?;
    gauge(out, "probe_duration_seconds", "How long the check took")?;
    out.sample("probe_duration_seconds", "", &[], took.as_secs_f64())?;
    gauge(
        out,
        "probe_http_status_code",
        "The HTTP status code of the answer; 0 when there was none",
    )?;
    let code = result.status_code.map_or(0, i64::from);
    out.sample("probe_http_status_code", "", &[], code)?;
    if let Some(cert) = &result.cert {
        let name = "probe_ssl_earliest_cert_expiry";
        gauge(
            out,
            name,
            "When the peer certificate expires (not after), in unix seconds",
        )?;
        out.sample(name, "", &[], cert.not_after)?;
    }
    if !result.healthy {
        let name = "probe_failure_kind";
        gauge(out, name, "1 for the kind of the failure (only on failure)")?;
        let kind: CheckKind = result.kind;
        out.sample(name, "", &[("kind", kind.as_str())], 1_i64)?;
    }
    if !result.phases.is_empty() {
        let name = "probe_phase_duration_seconds";
        gauge(
            out,
            name,
            "How long each phase of the check took (dns, connect, tls, first_byte)",
        )?;
        for (phase, took) in result.phases.iter() {
            out.sample(name, "", &[("phase", phase)], took.as_secs_f64())?;
        }
    }
    if let Some(dns) = result.phases.dns {
        let name = "probe_dns_lookup_time_seconds";
        gauge(out, name, "How long the name lookup took")?;
        out.sample(name, "", &[], dns.as_secs_f64())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
