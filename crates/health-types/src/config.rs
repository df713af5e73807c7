//! The health-check config (SPEC §2): keys, defaults, layering and validation.
//!
//! Config files give durations as strings (`"30s"`, `"250ms"`, `"1m30s"`); a bare number
//! is rejected with a message that says a string is expected. [`HealthCheckOverrides`] is
//! the partial form read from a file; layer a `[defaults]` table under a monitor's own
//! keys with [`HealthCheckOverrides::over`] and [`resolve`](HealthCheckOverrides::resolve)
//! it into a validated [`HealthCheckConfig`].

use std::{collections::BTreeMap, fmt, str::FromStr, time::Duration};

use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

use crate::{IpFamily, JsonCondition, TlsOptions};

/// Default `interval`: 30 s.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
/// Default `timeout`: 10 s.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default fall threshold (`retries`): 3.
pub const DEFAULT_RETRIES: u32 = 3;
/// Default `max_errors`: 5.
pub const DEFAULT_MAX_ERRORS: u32 = 5;
/// The largest default jitter: 10 s.
const MAX_DEFAULT_JITTER: Duration = Duration::from_secs(10);
/// The longest duration any key accepts: 365 days (SPEC §9.3), so that no accepted
/// config can overflow an `Instant`.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 60 * 60);
/// Default `cert_expiry_warn`: 14 days.
pub const DEFAULT_CERT_EXPIRY_WARN: Duration = Duration::from_secs(14 * 24 * 60 * 60);

/// A config value that was rejected: names the key, the value and the reason.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A key has a value that breaks its rule.
    #[error("invalid `{key}` = {value}: {reason}")]
    Invalid {
        /// The config key.
        key: &'static str,
        /// The offending value, as written.
        value: String,
        /// Why it was rejected.
        reason: String,
    },
    /// A URL that no probe can check.
    #[error("invalid url {url:?}: {reason}")]
    Url {
        /// The URL as given.
        url: String,
        /// Why it was rejected.
        reason: String,
    },
}

impl ConfigError {
    fn invalid(key: &'static str, value: impl fmt::Display, reason: impl Into<String>) -> Self {
        ConfigError::Invalid {
            key,
            value: value.to_string(),
            reason: reason.into(),
        }
    }

    /// A URL error with the URL and the reason.
    ///
    /// A password in the URL is masked (`user:***@`, SPEC §9.3): errors are printed and
    /// logged.
    pub fn url(url: impl fmt::Display, reason: impl Into<String>) -> Self {
        let url = url.to_string();
        let url = match url::Url::parse(&url) {
            Ok(parsed) if parsed.password().is_some() => crate::redacted(&parsed).into_owned(),
            _ => url,
        };
        ConfigError::Url {
            url,
            reason: reason.into(),
        }
    }
}

/// The HTTP method of a check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Method {
    /// `GET` (the default).
    #[default]
    Get,
    /// `HEAD`.
    Head,
}

crate::util::wire_names! {
    /// The method's name in upper case.
    Method {
        Get => "GET",
        Head => "HEAD",
    }
}

impl FromStr for Method {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Method::from_wire_name(s).ok_or_else(|| {
            ConfigError::invalid("method", format!("{s:?}"), "expected \"GET\" or \"HEAD\"")
        })
    }
}

crate::util::serialize_as_str!(Method);

impl<'de> Deserialize<'de> for Method {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(de::Error::custom)
    }
}

/// An inclusive range of HTTP status codes (`404` is `404-404`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StatusRange {
    /// Lowest code in the range.
    pub low: u16,
    /// Highest code in the range.
    pub high: u16,
}

impl StatusRange {
    /// Whether `code` lies in the range.
    pub const fn contains(self, code: u16) -> bool {
        self.low <= code && code <= self.high
    }
}

impl fmt::Display for StatusRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.low == self.high {
            write!(f, "{}", self.low)
        } else {
            write!(f, "{}-{}", self.low, self.high)
        }
    }
}

impl FromStr for StatusRange {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let code = |part: &str| -> Result<u16, String> {
            let code: u16 = part
                .trim()
                .parse()
                .map_err(|_| format!("{part:?} is not a status code"))?;
            if (100..=599).contains(&code) {
                Ok(code)
            } else {
                Err(format!("{code} is outside 100-599"))
            }
        };
        let (low, high) = match s.split_once('-') {
            Some((low, high)) => (code(low)?, code(high)?),
            None => {
                let c = code(s)?;
                (c, c)
            }
        };
        if low > high {
            return Err(format!("range {s:?} is empty ({low} > {high})"));
        }
        Ok(StatusRange { low, high })
    }
}

/// The status codes that count as healthy: a list of codes and ranges such as
/// `["200-299", 404]`. Without one, every code but 500-599 is healthy.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct ExpectedStatus(pub Vec<StatusRange>);

impl ExpectedStatus {
    /// Whether `code` is one of the expected codes.
    pub fn contains(&self, code: u16) -> bool {
        self.0.iter().any(|range| range.contains(code))
    }
}

impl fmt::Display for ExpectedStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (i, range) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{range}")?;
        }
        f.write_str("]")
    }
}

impl Serialize for ExpectedStatus {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(|r| r.to_string()))
    }
}

impl<'de> Deserialize<'de> for ExpectedStatus {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Item {
            Code(i64),
            Text(String),
        }
        let items = Vec::<Item>::deserialize(deserializer).map_err(|_| {
            de::Error::custom(
                "`expected_status` must be a list of codes or ranges, like [\"200-299\", 404]",
            )
        })?;
        let ranges = items
            .into_iter()
            .map(|item| match item {
                Item::Code(code) => code.to_string().parse::<StatusRange>(),
                Item::Text(text) => text.parse::<StatusRange>(),
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|reason| de::Error::custom(format!("invalid `expected_status`: {reason}")))?;
        Ok(ExpectedStatus(ranges))
    }
}

/// A fully resolved health-check config: every key has a value.
///
/// Build one from [`Default`] and struct update syntax, or resolve one from
/// [`HealthCheckOverrides`]; check it with [`validate`](Self::validate) (monitors do).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthCheckConfig {
    /// Time between checks (default 30 s).
    pub interval: Duration,
    /// Time a check may take before it is cut and counted unhealthy (default 10 s).
    pub timeout: Duration,
    /// Path joined onto the URL for HTTP checks; may carry a query (default `/`).
    pub path: String,
    /// HTTP method (default `GET`).
    pub method: Method,
    /// Fall threshold as configured: `> 0` is F, `0` means the default (3), `< 0` means
    /// immediate (F = 1). See [`fall_threshold`](Self::fall_threshold).
    pub retries: i64,
    /// Turns off the target's own probe (a Docker container's health stays active).
    pub disable: bool,
    /// Consecutive healthy results needed to leave Unhealthy or Error (default 1).
    pub rise: u32,
    /// Largest random phase offset of the periodic schedule; `None` means
    /// `min(interval, 10s)`, zero turns jitter off.
    pub jitter: Option<Duration>,
    /// Interval while confirming a change (0 < failures < F, or 0 < passes < R while
    /// Unhealthy or Error).
    pub fast_interval: Option<Duration>,
    /// Interval while Unhealthy or Error.
    pub down_interval: Option<Duration>,
    /// Consecutive errors after which the monitor stops itself; 0 = never (default 5).
    pub max_errors: u32,
    /// Status codes that count as healthy; `None` = anything but 500-599.
    pub expected_status: Option<ExpectedStatus>,
    /// Extra request headers for HTTP checks.
    pub headers: BTreeMap<String, String>,
    /// Verify upstream TLS certificates (default false).
    pub tls_verify: bool,
    /// UDP: the datagram a check sends (default: empty).
    pub payload: Option<String>,
    /// UDP: silence is unhealthy rather than healthy `no reply (udp)` (default false).
    pub expect_reply: bool,
    /// HTTP: a regex the first 64 KiB of the body must match (SPEC §9.4); else unhealthy
    /// with kind `body`.
    pub body_match: Option<String>,
    /// HTTP: a regex the first 64 KiB of the body must not match; else kind `body`.
    pub body_not_match: Option<String>,
    /// HTTP: conditions on the body parsed as JSON; a failed one is kind `json`.
    pub json: Vec<JsonCondition>,
    /// HTTP: response header name → regex its value must match; else kind `header`.
    pub header_match: BTreeMap<String, String>,
    /// HTTP: follow up to 10 redirects (default false: a redirect is judged by its status).
    pub follow_redirects: bool,
    /// The address family connections use (default `any`, falling back across families).
    pub ip_family: IpFamily,
    /// TLS settings of HTTPS, gRPC-over-TLS and agent-less TLS checks.
    pub tls: TlsOptions,
    /// A `cert_expiry` event goes out once when a peer certificate has less than this
    /// left (default 14 days); `"0s"` turns the warning off.
    pub cert_expiry_warn: Duration,
    /// TCP (and UDP): a regex the reply to `payload` must match; else kind `body`.
    pub expect: Option<String>,
}

impl Default for HealthCheckConfig {
    /// interval 30s, timeout 10s, path `/`, GET, retries 3, rise 1, jitter
    /// `min(interval, 10s)`, max_errors 5, anything but 5xx expected, no extra headers,
    /// no certificate verification, an empty UDP payload and no reply required; no body,
    /// header or JSON assertions, redirects not followed, any IP family, no `tls` keys,
    /// `cert_expiry_warn` 14 days.
    fn default() -> Self {
        HealthCheckConfig {
            interval: DEFAULT_INTERVAL,
            timeout: DEFAULT_TIMEOUT,
            path: "/".to_owned(),
            method: Method::Get,
            retries: i64::from(DEFAULT_RETRIES),
            disable: false,
            rise: 1,
            jitter: None,
            fast_interval: None,
            down_interval: None,
            max_errors: DEFAULT_MAX_ERRORS,
            expected_status: None,
            headers: BTreeMap::new(),
            tls_verify: false,
            payload: None,
            expect_reply: false,
            body_match: None,
            body_not_match: None,
            json: Vec::new(),
            header_match: BTreeMap::new(),
            follow_redirects: false,
            ip_family: IpFamily::Any,
            tls: TlsOptions::default(),
            cert_expiry_warn: DEFAULT_CERT_EXPIRY_WARN,
            expect: None,
        }
    }
}

impl HealthCheckConfig {
    /// The fall threshold F: consecutive failures before the target counts as down.
    pub fn fall_threshold(&self) -> u32 {
        match self.retries {
            r if r > 0 => u32::try_from(r).unwrap_or(u32::MAX),
            0 => DEFAULT_RETRIES,
            _ => 1,
        }
    }

    /// The rise threshold R (at least 1).
    pub fn rise_threshold(&self) -> u32 {
        self.rise.max(1)
    }

    /// The jitter in force: the configured one, else `min(interval, 10s)`.
    pub fn effective_jitter(&self) -> Duration {
        self.jitter
            .unwrap_or_else(|| self.interval.min(MAX_DEFAULT_JITTER))
    }

    /// Whether an HTTP status code counts as healthy.
    pub fn is_expected_status(&self, code: u16) -> bool {
        match &self.expected_status {
            Some(expected) => expected.contains(code),
            None => !(500..=599).contains(&code),
        }
    }

    /// Checks every rule of SPEC §2; the error names the key, the value and the reason.
    pub fn validate(&self) -> Result<(), ConfigError> {
        positive("interval", self.interval)?;
        positive("timeout", self.timeout)?;
        if let Some(fast) = self.fast_interval {
            positive("fast_interval", fast)?;
        }
        if let Some(down) = self.down_interval {
            positive("down_interval", down)?;
        }
        let durations = [
            ("interval", Some(self.interval)),
            ("timeout", Some(self.timeout)),
            ("jitter", self.jitter),
            ("fast_interval", self.fast_interval),
            ("down_interval", self.down_interval),
            ("cert_expiry_warn", Some(self.cert_expiry_warn)),
        ];
        for (key, value) in durations {
            if let Some(value) = value {
                bounded(key, value)?;
            }
        }
        if !self.path.starts_with('/') {
            return Err(ConfigError::invalid(
                "path",
                format!("{:?}", self.path),
                "must start with `/`",
            ));
        }
        if self
            .path
            .chars()
            .any(|c| c.is_control() || c == ' ' || c == '#')
        {
            return Err(ConfigError::invalid(
                "path",
                format!("{:?}", self.path),
                "must not contain spaces, control characters or a fragment (`#`)",
            ));
        }
        if self.rise == 0 {
            return Err(ConfigError::invalid("rise", 0, "must be at least 1"));
        }
        if let Some(expected) = &self.expected_status
            && expected.0.is_empty()
        {
            return Err(ConfigError::invalid(
                "expected_status",
                "[]",
                "must list at least one code or range",
            ));
        }
        for (key, pattern) in [
            ("body_match", &self.body_match),
            ("body_not_match", &self.body_not_match),
            ("expect", &self.expect),
        ] {
            if let Some(pattern) = pattern {
                crate::depth::check_regex(key, pattern)?;
            }
        }
        for (name, pattern) in &self.header_match {
            if name.is_empty() || !name.bytes().all(is_token_byte) {
                return Err(ConfigError::invalid(
                    "header_match",
                    format!("{name:?}"),
                    "is not a valid header name",
                ));
            }
            crate::depth::check_regex("header_match", pattern)?;
        }
        self.tls.validate()?;
        for (name, value) in &self.headers {
            if name.is_empty() || !name.bytes().all(is_token_byte) {
                return Err(ConfigError::invalid(
                    "headers",
                    format!("{name:?}"),
                    "is not a valid header name",
                ));
            }
            if value.chars().any(|c| c.is_control() && c != '\t') {
                return Err(ConfigError::invalid(
                    "headers",
                    format!("{name} = {value:?}"),
                    "header values must not contain control characters",
                ));
            }
        }
        Ok(())
    }
}

fn positive(key: &'static str, value: Duration) -> Result<(), ConfigError> {
    if value.is_zero() {
        Err(ConfigError::invalid(
            key,
            "\"0s\"",
            "must be greater than 0",
        ))
    } else {
        Ok(())
    }
}

fn bounded(key: &'static str, value: Duration) -> Result<(), ConfigError> {
    if value > MAX_DURATION {
        Err(ConfigError::invalid(
            key,
            format!("\"{}\"", humantime::format_duration(value)),
            "must be at most 365d",
        ))
    } else {
        Ok(())
    }
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The partial config read from a file: every key optional.
///
/// Unknown keys are rejected. Layer a `[defaults]` table under a monitor's own keys with
/// [`over`](Self::over), then [`resolve`](Self::resolve).
///
/// ```
/// use health_types::HealthCheckOverrides;
///
/// let defaults: HealthCheckOverrides = toml::from_str(r#"interval = "10s""#).unwrap();
/// let own: HealthCheckOverrides = toml::from_str(r#"retries = 1"#).unwrap();
/// let config = own.over(&defaults).resolve().unwrap();
/// assert_eq!(config.interval.as_secs(), 10);
/// assert_eq!(config.fall_threshold(), 1);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckOverrides {
    /// See [`HealthCheckConfig::interval`].
    #[serde(default, deserialize_with = "duration_key::interval")]
    pub interval: Option<Duration>,
    /// See [`HealthCheckConfig::timeout`].
    #[serde(default, deserialize_with = "duration_key::timeout")]
    pub timeout: Option<Duration>,
    /// See [`HealthCheckConfig::path`].
    pub path: Option<String>,
    /// See [`HealthCheckConfig::method`].
    pub method: Option<Method>,
    /// See [`HealthCheckConfig::retries`].
    pub retries: Option<i64>,
    /// See [`HealthCheckConfig::disable`].
    pub disable: Option<bool>,
    /// See [`HealthCheckConfig::rise`].
    pub rise: Option<u32>,
    /// See [`HealthCheckConfig::jitter`].
    #[serde(default, deserialize_with = "duration_key::jitter")]
    pub jitter: Option<Duration>,
    /// See [`HealthCheckConfig::fast_interval`].
    #[serde(default, deserialize_with = "duration_key::fast_interval")]
    pub fast_interval: Option<Duration>,
    /// See [`HealthCheckConfig::down_interval`].
    #[serde(default, deserialize_with = "duration_key::down_interval")]
    pub down_interval: Option<Duration>,
    /// See [`HealthCheckConfig::max_errors`].
    pub max_errors: Option<u32>,
    /// See [`HealthCheckConfig::expected_status`].
    pub expected_status: Option<ExpectedStatus>,
    /// See [`HealthCheckConfig::headers`].
    pub headers: Option<BTreeMap<String, String>>,
    /// See [`HealthCheckConfig::tls_verify`].
    pub tls_verify: Option<bool>,
    /// See [`HealthCheckConfig::payload`].
    pub payload: Option<String>,
    /// See [`HealthCheckConfig::expect_reply`].
    pub expect_reply: Option<bool>,
    /// See [`HealthCheckConfig::body_match`].
    pub body_match: Option<String>,
    /// See [`HealthCheckConfig::body_not_match`].
    pub body_not_match: Option<String>,
    /// See [`HealthCheckConfig::json`].
    pub json: Option<Vec<JsonCondition>>,
    /// See [`HealthCheckConfig::header_match`].
    pub header_match: Option<BTreeMap<String, String>>,
    /// See [`HealthCheckConfig::follow_redirects`].
    pub follow_redirects: Option<bool>,
    /// See [`HealthCheckConfig::ip_family`].
    pub ip_family: Option<IpFamily>,
    /// See [`HealthCheckConfig::tls`].
    pub tls: Option<TlsOptions>,
    /// See [`HealthCheckConfig::cert_expiry_warn`].
    #[serde(default, deserialize_with = "duration_key::cert_expiry_warn")]
    pub cert_expiry_warn: Option<Duration>,
    /// See [`HealthCheckConfig::expect`].
    pub expect: Option<String>,
}

impl HealthCheckOverrides {
    /// These keys layered over `base`: a key set here wins, a key unset here comes from
    /// `base`. `headers`, `header_match` and `tls` tables are merged, with this layer's
    /// values winning; a `json` list replaces the base's.
    #[must_use]
    pub fn over(&self, base: &HealthCheckOverrides) -> HealthCheckOverrides {
        let headers = merge_tables(&self.headers, &base.headers);
        let header_match = merge_tables(&self.header_match, &base.header_match);
        let tls = match (&self.tls, &base.tls) {
            (Some(own), Some(base)) => Some(own.over(base)),
            (own, base) => own.clone().or_else(|| base.clone()),
        };
        HealthCheckOverrides {
            interval: self.interval.or(base.interval),
            timeout: self.timeout.or(base.timeout),
            path: self.path.clone().or_else(|| base.path.clone()),
            method: self.method.or(base.method),
            retries: self.retries.or(base.retries),
            disable: self.disable.or(base.disable),
            rise: self.rise.or(base.rise),
            jitter: self.jitter.or(base.jitter),
            fast_interval: self.fast_interval.or(base.fast_interval),
            down_interval: self.down_interval.or(base.down_interval),
            max_errors: self.max_errors.or(base.max_errors),
            expected_status: self
                .expected_status
                .clone()
                .or_else(|| base.expected_status.clone()),
            headers,
            tls_verify: self.tls_verify.or(base.tls_verify),
            payload: self.payload.clone().or_else(|| base.payload.clone()),
            expect_reply: self.expect_reply.or(base.expect_reply),
            body_match: self.body_match.clone().or_else(|| base.body_match.clone()),
            body_not_match: self
                .body_not_match
                .clone()
                .or_else(|| base.body_not_match.clone()),
            json: self.json.clone().or_else(|| base.json.clone()),
            header_match,
            follow_redirects: self.follow_redirects.or(base.follow_redirects),
            ip_family: self.ip_family.or(base.ip_family),
            tls,
            cert_expiry_warn: self.cert_expiry_warn.or(base.cert_expiry_warn),
            expect: self.expect.clone().or_else(|| base.expect.clone()),
        }
    }

    /// Fills unset keys with the defaults and validates the result.
    pub fn resolve(&self) -> Result<HealthCheckConfig, ConfigError> {
        let d = HealthCheckConfig::default();
        let config = HealthCheckConfig {
            interval: self.interval.unwrap_or(d.interval),
            timeout: self.timeout.unwrap_or(d.timeout),
            path: self.path.clone().unwrap_or(d.path),
            method: self.method.unwrap_or(d.method),
            retries: self.retries.unwrap_or(d.retries),
            disable: self.disable.unwrap_or(d.disable),
            rise: self.rise.unwrap_or(d.rise),
            jitter: self.jitter.or(d.jitter),
            fast_interval: self.fast_interval.or(d.fast_interval),
            down_interval: self.down_interval.or(d.down_interval),
            max_errors: self.max_errors.unwrap_or(d.max_errors),
            expected_status: self.expected_status.clone().or(d.expected_status),
            headers: self.headers.clone().unwrap_or(d.headers),
            tls_verify: self.tls_verify.unwrap_or(d.tls_verify),
            payload: self.payload.clone().or(d.payload),
            expect_reply: self.expect_reply.unwrap_or(d.expect_reply),
            body_match: self.body_match.clone().or(d.body_match),
            body_not_match: self.body_not_match.clone().or(d.body_not_match),
            json: self.json.clone().unwrap_or(d.json),
            header_match: self.header_match.clone().unwrap_or(d.header_match),
            follow_redirects: self.follow_redirects.unwrap_or(d.follow_redirects),
            ip_family: self.ip_family.unwrap_or(d.ip_family),
            tls: self.tls.clone().unwrap_or(d.tls),
            cert_expiry_warn: self.cert_expiry_warn.unwrap_or(d.cert_expiry_warn),
            expect: self.expect.clone().or(d.expect),
        };
        config.validate()?;
        Ok(config)
    }
}

/// Two optional tables layered: `own`'s entries win, the rest come from `base`.
fn merge_tables(
    own: &Option<BTreeMap<String, String>>,
    base: &Option<BTreeMap<String, String>>,
) -> Option<BTreeMap<String, String>> {
    match (base, own) {
        (Some(base), Some(own)) => {
            let mut merged = base.clone();
            merged.extend(own.iter().map(|(k, v)| (k.clone(), v.clone())));
            Some(merged)
        }
        (base, own) => own.clone().or_else(|| base.clone()),
    }
}

/// Parses a duration string such as `"30s"`, `"250ms"` or `"1m30s"` for `key`.
/// At most [`MAX_DURATION`].
pub fn parse_duration(key: &'static str, text: &str) -> Result<Duration, ConfigError> {
    let value = humantime::parse_duration(text.trim()).map_err(|err| {
        ConfigError::invalid(
            key,
            format!("{text:?}"),
            format!("{err}; expected a duration like \"30s\", \"250ms\" or \"1m30s\""),
        )
    })?;
    if value > MAX_DURATION {
        return Err(ConfigError::invalid(
            key,
            format!("{text:?}"),
            "must be at most 365d",
        ));
    }
    Ok(value)
}

/// Per-key duration deserializers, so a bad value's message names its key.
mod duration_key {
    use std::{fmt, time::Duration};

    use serde::{Deserializer, de};

    struct DurationVisitor(&'static str);

    impl de::Visitor<'_> for DurationVisitor {
        type Value = Option<Duration>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "a duration string like \"30s\" for `{}`", self.0)
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            super::parse_duration(self.0, v)
                .map(Some)
                .map_err(E::custom)
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Err(E::custom(bare_number(self.0, v)))
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Err(E::custom(bare_number(self.0, v)))
        }

        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
            Err(E::custom(bare_number(self.0, v)))
        }
    }

    fn bare_number(key: &str, v: impl fmt::Display) -> String {
        format!(
            "invalid `{key}` = {v}: a bare number is not a duration; expected a string like \"30s\" (units: ms, s, m, h, d)"
        )
    }

    macro_rules! keys {
        ($($key:ident),*) => {$(
            pub(super) fn $key<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
                d.deserialize_any(DurationVisitor(stringify!($key)))
            }
        )*};
    }

    keys!(
        interval,
        timeout,
        jitter,
        fast_interval,
        down_interval,
        cert_expiry_warn
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<HealthCheckOverrides, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_match_the_spec() {
        let c = HealthCheckOverrides::default().resolve().unwrap();
        assert_eq!(c.interval, Duration::from_secs(30));
        assert_eq!(c.timeout, Duration::from_secs(10));
        assert_eq!(c.path, "/");
        assert_eq!(c.method, Method::Get);
        assert_eq!(c.fall_threshold(), 3);
        assert_eq!(c.rise_threshold(), 1);
        assert_eq!(c.effective_jitter(), Duration::from_secs(10));
        assert_eq!(c.max_errors, 5);
        assert!(!c.disable && !c.tls_verify);
        assert!(c.is_expected_status(200) && c.is_expected_status(404));
        assert!(!c.is_expected_status(500) && !c.is_expected_status(599));
        assert_eq!(c.cert_expiry_warn, Duration::from_secs(14 * 86_400));
        assert!(!c.follow_redirects && c.json.is_empty() && c.tls.is_empty());
        assert_eq!(c.ip_family, IpFamily::Any);
    }

    #[test]
    fn every_key_parses() {
        let c = parse(
            r#"
            interval = "1m30s"
            timeout = "250ms"
            path = "/health?full=1"
            method = "head"
            retries = -1
            disable = true
            rise = 2
            jitter = "0s"
            fast_interval = "1s"
            down_interval = "2m"
            max_errors = 0
            expected_status = ["200-299", 404]
            headers = { "X-Probe" = "yes" }
            tls_verify = true
            body_match = "ok|ready"
            body_not_match = "maintenance"
            json = ["$.status == \"ok\"", "$.load < 0.9"]
            header_match = { "Content-Type" = "^application/json" }
            follow_redirects = true
            ip_family = "ipv6"
            tls = { ca = "/etc/ca.pem", server_name = "api.internal", min_version = "1.3" }
            cert_expiry_warn = "30d"
            expect = "^\\+OK"
            "#,
        )
        .unwrap()
        .resolve()
        .unwrap();
        assert_eq!(c.body_match.as_deref(), Some("ok|ready"));
        assert_eq!(c.body_not_match.as_deref(), Some("maintenance"));
        assert_eq!(c.json.len(), 2);
        assert_eq!(c.json[1].path(), "$.load");
        assert!(c.header_match.contains_key("Content-Type"));
        assert!(c.follow_redirects);
        assert_eq!(c.ip_family, IpFamily::Ipv6);
        assert_eq!(c.tls.server_name.as_deref(), Some("api.internal"));
        assert_eq!(c.tls.min_version, Some(crate::TlsVersion::Tls13));
        assert_eq!(c.cert_expiry_warn, Duration::from_secs(30 * 86_400));
        assert_eq!(c.expect.as_deref(), Some("^\\+OK"));
        assert_eq!(c.interval, Duration::from_secs(90));
        assert_eq!(c.timeout, Duration::from_millis(250));
        assert_eq!(c.path, "/health?full=1");
        assert_eq!(c.method, Method::Head);
        assert_eq!(c.fall_threshold(), 1);
        assert!(c.disable);
        assert_eq!(c.rise_threshold(), 2);
        assert_eq!(c.effective_jitter(), Duration::ZERO);
        assert_eq!(c.fast_interval, Some(Duration::from_secs(1)));
        assert_eq!(c.down_interval, Some(Duration::from_secs(120)));
        assert_eq!(c.max_errors, 0);
        assert!(c.is_expected_status(204) && c.is_expected_status(404));
        assert!(!c.is_expected_status(301) && !c.is_expected_status(500));
        assert_eq!(c.headers.get("X-Probe").map(String::as_str), Some("yes"));
        assert!(c.tls_verify);
    }

    #[test]
    fn retries_zero_means_default_and_negative_means_immediate() {
        let fall = |r| {
            HealthCheckConfig {
                retries: r,
                ..Default::default()
            }
            .fall_threshold()
        };
        assert_eq!(fall(0), 3);
        assert_eq!(fall(-1), 1);
        assert_eq!(fall(-100), 1);
        assert_eq!(fall(7), 7);
    }

    #[test]
    fn jitter_defaults_to_the_smaller_of_interval_and_10s() {
        let c = HealthCheckConfig {
            interval: Duration::from_secs(4),
            ..Default::default()
        };
        assert_eq!(c.effective_jitter(), Duration::from_secs(4));
    }

    #[test]
    fn a_bare_number_for_a_duration_says_a_string_is_expected() {
        let err = parse("interval = 30").unwrap_err();
        assert!(err.contains("`interval`"), "{err}");
        assert!(err.contains("\"30s\""), "{err}");
        let err = parse("timeout = 2.5").unwrap_err();
        assert!(err.contains("`timeout`"), "{err}");
    }

    #[test]
    fn a_bad_duration_string_names_key_and_value() {
        let err = parse(r#"fast_interval = "soon""#).unwrap_err();
        assert!(
            err.contains("`fast_interval`") && err.contains("\"soon\""),
            "{err}"
        );
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let err = parse("intervall = \"1s\"").unwrap_err();
        assert!(err.contains("intervall"), "{err}");
    }

    #[test]
    fn validation_names_key_value_and_reason() {
        let cases = [
            ("interval = \"0s\"", "`interval`"),
            ("timeout = \"0s\"", "`timeout`"),
            ("down_interval = \"0s\"", "`down_interval`"),
            ("path = \"health\"", "`path`"),
            ("rise = 0", "`rise`"),
            ("expected_status = []", "`expected_status`"),
            ("headers = { \"Bad Name\" = \"x\" }", "`headers`"),
            ("body_match = \"(unclosed\"", "`body_match`"),
            ("body_not_match = \"[z-a]\"", "`body_not_match`"),
            ("header_match = { Server = \"(\" }", "`header_match`"),
            ("expect = \"*\"", "`expect`"),
            ("tls = { key = \"/k.pem\" }", "`tls`"),
        ];
        for text in ["interval = \"366d\"", "timeout = \"8761h\""] {
            let err = parse(text).unwrap_err();
            assert!(err.contains("at most 365d"), "{text}: {err}");
        }
        let err = HealthCheckConfig {
            fast_interval: Some(Duration::from_secs(u64::MAX)),
            ..Default::default()
        }
        .validate()
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("`fast_interval`") && err.contains("365d"),
            "{err}"
        );
        for (text, key) in cases {
            let err = parse(text).unwrap().resolve().unwrap_err().to_string();
            assert!(err.contains(key), "{text}: {err}");
        }
        for text in [
            r#"method = "POST""#,
            r#"expected_status = ["600"]"#,
            r#"expected_status = ["300-200"]"#,
        ] {
            let err = parse(text).unwrap_err();
            assert!(
                err.contains("method") || err.contains("expected_status"),
                "{text}: {err}"
            );
        }
    }

    #[test]
    fn own_keys_win_over_defaults_and_headers_merge() {
        let defaults = parse(
            r#"
            interval = "10s"
            retries = 5
            headers = { A = "1", B = "2" }
            "#,
        )
        .unwrap();
        let own = parse(
            r#"
            retries = 2
            headers = { B = "3" }
            "#,
        )
        .unwrap();
        let c = own.over(&defaults).resolve().unwrap();
        assert_eq!(c.interval, Duration::from_secs(10));
        assert_eq!(c.fall_threshold(), 2);
        assert_eq!(c.headers.get("A").map(String::as_str), Some("1"));
        assert_eq!(c.headers.get("B").map(String::as_str), Some("3"));
    }

    #[test]
    fn url_errors_mask_a_password() {
        let url = url::Url::parse("ftp://admin:s3cret@host/x").unwrap();
        let err = crate::unsupported_scheme(&url, &crate::Scheme::ALL);
        let text = err.to_string();
        assert!(text.contains("ftp://admin:***@host/x"), "{text}");
        assert!(!text.contains("s3cret"), "{text}");
        let err = ConfigError::url("not a url at all", "bad");
        assert!(err.to_string().contains("not a url at all"), "{err}");
    }
}
