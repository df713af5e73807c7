//! The GoDoxy-compatible JSON form of a monitor (SPEC §4), with the history keys of
//! SPEC §9.2.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{HealthCheckConfig, Status, duration_nanos};

/// A monitor's config in JSON: durations are integer nanoseconds (GoDoxy's wire format).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigJson {
    /// `interval` in ns.
    pub interval: u64,
    /// `timeout` in ns.
    pub timeout: u64,
    /// `path`.
    pub path: String,
    /// `method`.
    pub method: String,
    /// `retries` as configured.
    pub retries: i64,
    /// `disable`.
    pub disable: bool,
    /// `rise`.
    pub rise: u32,
    /// The jitter in force, in ns.
    pub jitter: u64,
    /// `fast_interval` in ns, when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fast_interval: Option<u64>,
    /// `down_interval` in ns, when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub down_interval: Option<u64>,
    /// `max_errors`.
    pub max_errors: u32,
    /// `expected_status`, as ranges like `"200-299"`, when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_status: Option<Vec<String>>,
    /// `headers`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// `tls_verify`.
    pub tls_verify: bool,
}

impl From<&HealthCheckConfig> for ConfigJson {
    fn from(c: &HealthCheckConfig) -> Self {
        ConfigJson {
            interval: duration_nanos(c.interval),
            timeout: duration_nanos(c.timeout),
            path: c.path.clone(),
            method: c.method.as_str().to_owned(),
            retries: c.retries,
            disable: c.disable,
            rise: c.rise,
            jitter: duration_nanos(c.effective_jitter()),
            fast_interval: c.fast_interval.map(duration_nanos),
            down_interval: c.down_interval.map(duration_nanos),
            max_errors: c.max_errors,
            expected_status: c
                .expected_status
                .as_ref()
                .map(|e| e.0.iter().map(|r| r.to_string()).collect()),
            headers: c.headers.clone(),
            tls_verify: c.tls_verify,
        }
    }
}

/// The JSON form of one monitor, with GoDoxy's keys.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MonitorJson {
    /// Monitor (service) name.
    pub name: String,
    /// The config, durations in ns.
    pub config: ConfigJson,
    /// Start time, unix seconds (0 = not started).
    pub started: i64,
    /// Current status.
    pub status: Status,
    /// Seconds since the monitor started.
    pub uptime: f64,
    /// Last check latency in whole milliseconds.
    pub latency: i64,
    /// Last healthy result, unix seconds (0 = never).
    #[serde(rename = "lastSeen")]
    pub last_seen: i64,
    /// Detail of the last result.
    pub detail: String,
    /// The URL being checked.
    pub url: String,
    /// Consecutive failures.
    pub failures: u32,
    /// Uptime over the last 24 hours, a fraction 0..1; `null` before any observation
    /// (SPEC §9.2).
    #[serde(rename = "uptime24h", default)]
    pub uptime_24h: Option<f64>,
    /// Uptime over the last 7 days, as `uptime24h`.
    #[serde(rename = "uptime7d", default)]
    pub uptime_7d: Option<f64>,
    /// Uptime over the last 30 days, as `uptime24h`.
    #[serde(rename = "uptime30d", default)]
    pub uptime_30d: Option<f64>,
    /// While the status is `unhealthy` or `error`: when the outage began, unix seconds;
    /// else 0.
    #[serde(rename = "downSince", default)]
    pub down_since: i64,
    /// When the last check ended, unix seconds (0 = none yet).
    #[serde(rename = "lastCheck", default)]
    pub last_check: i64,
    /// Phase timings of the last result in milliseconds, by phase name (`dns`,
    /// `connect`, `tls`, `first_byte`; only the phases it went through; SPEC §9.4).
    #[serde(default)]
    pub phases: std::collections::BTreeMap<String, f64>,
    /// When the peer certificate last seen expires, unix seconds (0 = none seen).
    #[serde(rename = "certExpiry", default)]
    pub cert_expiry: i64,
    /// A `[[maintenance]]` window covers the monitor now: it sends no notifications
    /// (SPEC §9.5). Always `false` outside healthd.
    #[serde(default)]
    pub maintenance: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_durations_are_nanoseconds() {
        let json = serde_json::to_value(ConfigJson::from(&HealthCheckConfig::default())).unwrap();
        assert_eq!(json["interval"], 30_000_000_000_u64);
        assert_eq!(json["timeout"], 10_000_000_000_u64);
        assert_eq!(json["method"], "GET");
        assert!(json.get("fast_interval").is_none());
    }

    #[test]
    fn monitor_json_uses_godoxy_keys() {
        let m = MonitorJson {
            name: "api".into(),
            config: ConfigJson::from(&HealthCheckConfig::default()),
            started: 1_700_000_000,
            status: Status::Healthy,
            uptime: 1.5,
            latency: 12,
            last_seen: 1_700_000_001,
            detail: String::new(),
            url: "http://api.test/".into(),
            failures: 0,
            uptime_24h: Some(0.5),
            uptime_7d: None,
            uptime_30d: None,
            down_since: 0,
            last_check: 1_700_000_002,
            phases: [("connect".to_owned(), 0.25)].into(),
            cert_expiry: 1_800_000_000,
            maintenance: false,
        };
        let json = serde_json::to_value(&m).unwrap();
        let mut keys: Vec<_> = json.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "certExpiry",
                "config",
                "detail",
                "downSince",
                "failures",
                "lastCheck",
                "lastSeen",
                "latency",
                "maintenance",
                "name",
                "phases",
                "started",
                "status",
                "uptime",
                "uptime24h",
                "uptime30d",
                "uptime7d",
                "url"
            ]
        );
        assert_eq!(json["status"], "healthy");
        assert_eq!(json["uptime24h"], 0.5);
        assert!(json["uptime7d"].is_null());
        assert_eq!(json["downSince"], 0);
        assert_eq!(json["lastCheck"], 1_700_000_002);
        let back: MonitorJson = serde_json::from_value(json).unwrap();
        assert_eq!(back, m);
    }
}
