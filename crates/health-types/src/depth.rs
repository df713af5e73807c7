//! The probe-depth keys of SPEC §9.4 that need a type of their own: [`JsonCondition`]s
//! on a response body, the [`IpFamily`] of a connection and the [`TlsOptions`] table.
//!
//! Only the syntax is checked here (a JSON condition's operator and literal, a regex, a
//! TLS version); `health-check` evaluates them.

use std::{fmt, path::PathBuf, str::FromStr};

use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

use crate::ConfigError;

/// Which address family a check connects over (`ip_family`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum IpFamily {
    /// `any` (the default): the addresses in the order the resolver gave them, IPv6 and
    /// IPv4 alike, falling back to the next address when a connection fails.
    #[default]
    Any,
    /// `ipv4`: IPv4 addresses only.
    Ipv4,
    /// `ipv6`: IPv6 addresses only.
    Ipv6,
}

crate::util::wire_names! {
    /// The lowercase name, as written in a config.
    IpFamily {
        Any => "any",
        Ipv4 => "ipv4",
        Ipv6 => "ipv6",
    }
}

impl IpFamily {
    /// Whether an address of this family may be used.
    pub const fn admits(self, addr: &std::net::IpAddr) -> bool {
        match self {
            IpFamily::Any => true,
            IpFamily::Ipv4 => addr.is_ipv4(),
            IpFamily::Ipv6 => addr.is_ipv6(),
        }
    }
}

impl FromStr for IpFamily {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        IpFamily::from_wire_name(s).ok_or_else(|| ConfigError::Invalid {
            key: "ip_family",
            value: format!("{s:?}"),
            reason: "expected \"any\", \"ipv4\" or \"ipv6\"".to_owned(),
        })
    }
}

crate::util::serialize_as_str!(IpFamily);

impl<'de> Deserialize<'de> for IpFamily {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?
            .parse()
            .map_err(de::Error::custom)
    }
}

/// The lowest TLS version a check accepts (`tls.min_version`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TlsVersion {
    /// `"1.2"`.
    Tls12,
    /// `"1.3"`.
    Tls13,
}

crate::util::wire_names! {
    /// The version as written in a config.
    TlsVersion {
        Tls12 => "1.2",
        Tls13 => "1.3",
    }
}

impl FromStr for TlsVersion {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bare = s
            .strip_prefix("TLS")
            .or_else(|| s.strip_prefix("tls"))
            .unwrap_or(s)
            .trim_start_matches(['v', ' ']);
        TlsVersion::from_wire_name(bare).ok_or_else(|| ConfigError::Invalid {
            key: "tls.min_version",
            value: format!("{s:?}"),
            reason: "expected \"1.2\" or \"1.3\"".to_owned(),
        })
    }
}

crate::util::serialize_as_str!(TlsVersion);

impl<'de> Deserialize<'de> for TlsVersion {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?
            .parse()
            .map_err(de::Error::custom)
    }
}

/// The `tls` table of a check: whom to trust, who we are, which name to ask for.
///
/// Every key is optional; a table set on a monitor is layered key by key over the one in
/// `[defaults]` ([`over`](Self::over)).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsOptions {
    /// A PEM file of CA certificates. With `tls_verify`, the peer must chain to one of
    /// them (instead of the system and webpki roots).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<PathBuf>,
    /// A PEM client certificate chain, sent when the server asks (mutual TLS); needs `key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert: Option<PathBuf>,
    /// The PEM private key of `cert`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<PathBuf>,
    /// The name sent by SNI and verified against the certificate, instead of the URL's
    /// host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    /// The lowest TLS version accepted (default: 1.2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_version: Option<TlsVersion>,
}

impl TlsOptions {
    /// Whether no key is set.
    pub fn is_empty(&self) -> bool {
        *self == TlsOptions::default()
    }

    /// These keys layered over `base`, key by key.
    #[must_use]
    pub fn over(&self, base: &TlsOptions) -> TlsOptions {
        TlsOptions {
            ca: self.ca.clone().or_else(|| base.ca.clone()),
            cert: self.cert.clone().or_else(|| base.cert.clone()),
            key: self.key.clone().or_else(|| base.key.clone()),
            server_name: self
                .server_name
                .clone()
                .or_else(|| base.server_name.clone()),
            min_version: self.min_version.or(base.min_version),
        }
    }

    /// `cert` and `key` come together; `server_name` is a DNS name or an IP address.
    pub fn validate(&self) -> Result<(), ConfigError> {
        match (&self.cert, &self.key) {
            (Some(_), None) | (None, Some(_)) => {
                return Err(ConfigError::Invalid {
                    key: "tls",
                    value: format!(
                        "{{ cert = {:?}, key = {:?} }}",
                        self.cert
                            .as_deref()
                            .map(std::path::Path::display)
                            .map(|d| d.to_string()),
                        self.key
                            .as_deref()
                            .map(std::path::Path::display)
                            .map(|d| d.to_string()),
                    ),
                    reason: "`cert` and `key` must be given together".to_owned(),
                });
            }
            _ => {}
        }
        if let Some(name) = &self.server_name {
            let valid = !name.is_empty()
                && (name.parse::<std::net::IpAddr>().is_ok()
                    || name.split('.').all(|label| {
                        !label.is_empty()
                            && label.len() <= 63
                            && label
                                .bytes()
                                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                    }));
            if !valid {
                return Err(ConfigError::Invalid {
                    key: "tls.server_name",
                    value: format!("{name:?}"),
                    reason: "is not a DNS name or an IP address".to_owned(),
                });
            }
        }
        Ok(())
    }
}

/// The comparison of a [`JsonCondition`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum JsonOp {
    /// `==`: the value equals the literal.
    Eq,
    /// `!=`: the value differs from the literal.
    Ne,
    /// `<`: both are numbers (or both strings) and the value is less.
    Lt,
    /// `>`: both are numbers (or both strings) and the value is greater.
    Gt,
    /// `contains`: a string value contains the literal string, or an array value has an
    /// element equal to the literal.
    Contains,
}

crate::util::wire_names! {
    /// The operator as written in a condition.
    JsonOp {
        Eq => "==",
        Ne => "!=",
        Lt => "<",
        Gt => ">",
        Contains => "contains",
    }
}

impl JsonOp {
    /// Every operator, in the order a condition is searched for them.
    pub const ALL: [JsonOp; 5] = [
        JsonOp::Eq,
        JsonOp::Ne,
        JsonOp::Contains,
        JsonOp::Lt,
        JsonOp::Gt,
    ];
}

/// One `json` condition: `"<JSONPath> <op> <value>"`, e.g. `"$.status == \"ok\""`,
/// `"$.checks.db.latency_ms < 250"`, `"$.tags contains \"primary\""`.
///
/// The value is a JSON literal (`true`, `"ok"`, `3`, `null`). The path is RFC 9535
/// JSONPath, starting with `$`; `health-check` compiles it. The condition is written
/// with spaces around the operator; where a path itself holds ` == ` (a filter), the
/// first split whose right side is a JSON literal wins.
///
/// Evaluated on the first node the path selects; a path that selects nothing fails the
/// condition (`!=` included), since a missing field is seldom what a check means.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JsonCondition {
    text: String,
    path: String,
    op: JsonOp,
    value: serde_json::Value,
}

impl JsonCondition {
    /// The JSONPath (starts with `$`).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The operator.
    pub const fn op(&self) -> JsonOp {
        self.op
    }

    /// The literal, parsed.
    pub fn value(&self) -> &serde_json::Value {
        &self.value
    }

    /// The condition as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for JsonCondition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl FromStr for JsonCondition {
    type Err = ConfigError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = |reason: &str| ConfigError::Invalid {
            key: "json",
            value: format!("{text:?}"),
            reason: reason.to_owned(),
        };
        let trimmed = text.trim();
        if !trimmed.starts_with('$') {
            return Err(invalid(
                "expected \"<JSONPath> <op> <value>\", the path starting with `$` (ops: ==, !=, <, >, contains)",
            ));
        }
        let mut literal_error = None;
        for (at, _) in trimmed.char_indices() {
            let rest = &trimmed[at..];
            for op in JsonOp::ALL {
                let token = op.as_str();
                let Some(after) = rest
                    .strip_prefix(' ')
                    .and_then(|r| r.strip_prefix(token))
                    .and_then(|r| r.strip_prefix(' '))
                else {
                    continue;
                };
                let path = trimmed[..at].trim();
                let value = after.trim();
                match serde_json::from_str::<serde_json::Value>(value) {
                    Ok(parsed) => {
                        if matches!(op, JsonOp::Lt | JsonOp::Gt)
                            && !(parsed.is_number() || parsed.is_string())
                        {
                            return Err(invalid(&format!(
                                "`{token}` compares numbers or strings, not {value}"
                            )));
                        }
                        return Ok(JsonCondition {
                            text: trimmed.to_owned(),
                            path: path.to_owned(),
                            op,
                            value: parsed,
                        });
                    }
                    Err(err) => literal_error.get_or_insert(format!(
                        "{value} is not a JSON literal ({err}); write strings in double quotes, like \"ok\""
                    )),
                };
            }
        }
        Err(invalid(literal_error.as_deref().unwrap_or(
            "no operator: expected \"<JSONPath> <op> <value>\" with spaces around one of ==, !=, <, >, contains",
        )))
    }
}

impl Serialize for JsonCondition {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for JsonCondition {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?
            .parse()
            .map_err(de::Error::custom)
    }
}

/// Compiles `pattern` for `key`, or the error naming both.
pub(crate) fn check_regex(key: &'static str, pattern: &str) -> Result<(), ConfigError> {
    regex::Regex::new(pattern)
        .map(drop)
        .map_err(|err| ConfigError::Invalid {
            key,
            value: format!("{pattern:?}"),
            reason: format!("is not a valid regex: {err}"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_parse_path_operator_and_literal() {
        let c: JsonCondition = "$.status == \"ok\"".parse().unwrap();
        assert_eq!((c.path(), c.op()), ("$.status", JsonOp::Eq));
        assert_eq!(c.value(), &serde_json::json!("ok"));
        let c: JsonCondition = "$.db.latency < 250".parse().unwrap();
        assert_eq!((c.path(), c.op()), ("$.db.latency", JsonOp::Lt));
        let c: JsonCondition = "$.tags contains \"a == b\"".parse().unwrap();
        assert_eq!((c.path(), c.op()), ("$.tags", JsonOp::Contains));
        assert_eq!(c.value(), &serde_json::json!("a == b"));
        let c: JsonCondition = "$.items[?@.name == 'x'].up == true".parse().unwrap();
        assert_eq!(c.path(), "$.items[?@.name == 'x'].up");
        assert_eq!(c.value(), &serde_json::json!(true));
        assert_eq!(c.to_string(), "$.items[?@.name == 'x'].up == true");
    }

    #[test]
    fn bad_conditions_say_what_is_wrong() {
        let err = |text: &str| text.parse::<JsonCondition>().unwrap_err().to_string();
        assert!(err("status == 1").contains("starting with `$`"));
        assert!(err("$.status ok").contains("no operator"));
        let e = err("$.status == ok");
        assert!(
            e.contains("`json`") && e.contains("not a JSON literal"),
            "{e}"
        );
        assert!(err("$.a < true").contains("compares numbers or strings"));
    }

    #[test]
    fn families_versions_and_tls_tables() {
        assert_eq!("IPv6".parse::<IpFamily>().unwrap(), IpFamily::Ipv6);
        assert!(
            "ipv5"
                .parse::<IpFamily>()
                .unwrap_err()
                .to_string()
                .contains("ip_family")
        );
        assert_eq!("1.3".parse::<TlsVersion>().unwrap(), TlsVersion::Tls13);
        assert_eq!("TLSv1.2".parse::<TlsVersion>().unwrap(), TlsVersion::Tls12);
        assert!("1.1".parse::<TlsVersion>().is_err());
        let own = TlsOptions {
            server_name: Some("api.internal".into()),
            ..Default::default()
        };
        let base = TlsOptions {
            ca: Some("/ca.pem".into()),
            server_name: Some("x".into()),
            ..Default::default()
        };
        let merged = own.over(&base);
        assert_eq!(merged.ca.as_deref(), Some(std::path::Path::new("/ca.pem")));
        assert_eq!(merged.server_name.as_deref(), Some("api.internal"));
        let lone = TlsOptions {
            cert: Some("/c.pem".into()),
            ..Default::default()
        };
        assert!(
            lone.validate()
                .unwrap_err()
                .to_string()
                .contains("together")
        );
        let bad = TlsOptions {
            server_name: Some("a b".into()),
            ..Default::default()
        };
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("tls.server_name")
        );
    }
}
