//! The assertions of an HTTP check beyond its status (SPEC §9.4): `header_match`,
//! `body_match` / `body_not_match` and `json`, compiled once when the probe is built.
//!
//! They are judged only after the status passed (a bad status stays kind `status`), in
//! that order, and the first that fails names itself in the detail:
//!
//! | assertion | kind | detail |
//! |---|---|---|
//! | `header_match` | `header` | `header Content-Type: "text/html" does not match "^application/json"`, `header X-Ready: missing` |
//! | `body_match` | `body` | `body does not match "ready"` |
//! | `body_not_match` | `body` | `body matches "maintenance"` |
//! | `json` | `json` | `json: $.status == "ok" failed: got "degraded"`, `json: $.x selects nothing`, `json: body is not JSON: <err>` |
//!
//! Bodies are matched over their first [`MAX_BODY_DRAIN`](super::MAX_BODY_DRAIN) bytes
//! (bytes, not text: a regex matches whatever encoding the body has); JSON is parsed
//! from the same bytes, so a longer JSON document is "not JSON". A `json` condition is
//! evaluated on the first node its path selects; a path that selects nothing fails.

use health_types::{CheckKind, ConfigError, HealthCheckConfig, JsonCondition, JsonOp, Method};
use regex::bytes::Regex;
use serde_json::Value;
use serde_json_path::JsonPath;

/// The longest excerpt of a JSON value or a header value quoted in a detail.
const MAX_QUOTED: usize = 80;

/// The compiled assertions of one probe.
#[derive(Clone, Debug, Default)]
pub(super) struct Assertions {
    body_match: Option<Regex>,
    body_not_match: Option<Regex>,
    json: Vec<(JsonCondition, JsonPath, Value)>,
    /// `header_match`: the name as configured, then its regex (lowercase names are in
    /// `header_names`, in the same order).
    headers: Vec<(String, Regex)>,
    header_names: Vec<String>,
}

impl Assertions {
    /// Compiles the assertions of `config`. With `HEAD` (no body) a body assertion is
    /// a config error naming its key; so is a JSONPath that does not parse.
    pub(super) fn try_new(config: &HealthCheckConfig) -> Result<Self, ConfigError> {
        let regex = |key: &'static str, pattern: &str| {
            Regex::new(pattern).map_err(|err| ConfigError::Invalid {
                key,
                value: format!("{pattern:?}"),
                reason: format!("is not a valid regex: {err}"),
            })
        };
        if config.method == Method::Head {
            let body_keys = [
                ("body_match", config.body_match.is_some()),
                ("body_not_match", config.body_not_match.is_some()),
                ("json", !config.json.is_empty()),
            ];
            if let Some((key, _)) = body_keys.into_iter().find(|(_, set)| *set) {
                return Err(ConfigError::Invalid {
                    key,
                    value: "method = \"HEAD\"".to_owned(),
                    reason: "a HEAD answer has no body to assert on; use GET".to_owned(),
                });
            }
        }
        let mut assertions = Assertions {
            body_match: config
                .body_match
                .as_deref()
                .map(|p| regex("body_match", p))
                .transpose()?,
            body_not_match: config
                .body_not_match
                .as_deref()
                .map(|p| regex("body_not_match", p))
                .transpose()?,
            ..Assertions::default()
        };
        for condition in &config.json {
            let path = JsonPath::parse(condition.path()).map_err(|err| ConfigError::Invalid {
                key: "json",
                value: format!("{:?}", condition.as_str()),
                reason: format!("is not a valid JSONPath: {err}"),
            })?;
            assertions
                .json
                .push((condition.clone(), path, condition.value().clone()));
        }
        for (name, pattern) in &config.header_match {
            assertions
                .headers
                .push((name.clone(), regex("header_match", pattern)?));
            assertions.header_names.push(name.to_ascii_lowercase());
        }
        Ok(assertions)
    }

    /// Whether the body has to be kept for these assertions.
    pub(super) fn keeps_body(&self) -> bool {
        self.body_match.is_some() || self.body_not_match.is_some() || !self.json.is_empty()
    }

    /// The headers to keep of an answer (lowercase names).
    pub(super) fn header_names(&self) -> &[String] {
        &self.header_names
    }

    /// The first assertion that `headers` (the values of
    /// [`header_names`](Self::header_names), in order) and `body` fail, as a kind and a
    /// detail; `None` when all pass.
    pub(super) fn judge(
        &self,
        headers: &[Option<String>],
        body: &[u8],
    ) -> Option<(CheckKind, String)> {
        for (i, (name, regex)) in self.headers.iter().enumerate() {
            match headers.get(i).and_then(Option::as_deref) {
                None => return Some((CheckKind::Header, format!("header {name}: missing"))),
                Some(value) if !regex.is_match(value.as_bytes()) => {
                    return Some((
                        CheckKind::Header,
                        format!(
                            "header {name}: {:?} does not match {:?}",
                            quoted(value),
                            regex.as_str()
                        ),
                    ));
                }
                Some(_) => {}
            }
        }
        if let Some(regex) = &self.body_match
            && !regex.is_match(body)
        {
            return Some((
                CheckKind::Body,
                format!("body does not match {:?}", regex.as_str()),
            ));
        }
        if let Some(regex) = &self.body_not_match
            && regex.is_match(body)
        {
            return Some((
                CheckKind::Body,
                format!("body matches {:?}", regex.as_str()),
            ));
        }
        if self.json.is_empty() {
            return None;
        }
        let document: Value = match serde_json::from_slice(body) {
            Ok(document) => document,
            Err(err) => {
                return Some((CheckKind::Json, format!("json: body is not JSON: {err}")));
            }
        };
        for (condition, path, literal) in &self.json {
            let Some(node) = path.query(&document).first() else {
                return Some((
                    CheckKind::Json,
                    format!("json: {} selects nothing", condition.path()),
                ));
            };
            if !holds(condition.op(), node, literal) {
                let got = node.to_string();
                return Some((
                    CheckKind::Json,
                    format!("json: {condition} failed: got {}", quoted(&got)),
                ));
            }
        }
        None
    }
}

/// Whether `value op literal` holds. Numbers compare by value (`3 == 3.0`); `<` and
/// `>` compare two numbers or two strings, and fail on anything else.
fn holds(op: JsonOp, value: &Value, literal: &Value) -> bool {
    match op {
        JsonOp::Eq => equal(value, literal),
        JsonOp::Ne => !equal(value, literal),
        JsonOp::Lt | JsonOp::Gt => {
            let order = match (value, literal) {
                (Value::Number(a), Value::Number(b)) => match (a.as_f64(), b.as_f64()) {
                    (Some(a), Some(b)) => a.partial_cmp(&b),
                    _ => None,
                },
                (Value::String(a), Value::String(b)) => Some(a.cmp(b)),
                _ => None,
            };
            order
                == Some(if op == JsonOp::Lt {
                    std::cmp::Ordering::Less
                } else {
                    std::cmp::Ordering::Greater
                })
        }
        JsonOp::Contains => match (value, literal) {
            (Value::String(s), Value::String(part)) => s.contains(part.as_str()),
            (Value::Array(items), _) => items.iter().any(|item| equal(item, literal)),
            _ => false,
        },
    }
}

/// JSON equality, with numbers compared by value.
fn equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_f64(), y.as_f64()) {
            (Some(x), Some(y)) => x == y,
            _ => x == y,
        },
        _ => a == b,
    }
}

/// `text`, cut to [`MAX_QUOTED`] characters with `…` when longer.
fn quoted(text: &str) -> String {
    match text.char_indices().nth(MAX_QUOTED) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(json: &[&str]) -> HealthCheckConfig {
        HealthCheckConfig {
            json: json.iter().map(|c| c.parse().unwrap()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn json_operators_compare_as_documented() {
        let body = br#"{"status":"ok","n":3,"tags":["a","b"],"name":"primary-db"}"#;
        let pass = [
            "$.status == \"ok\"",
            "$.n == 3.0",
            "$.n != 4",
            "$.n < 4",
            "$.n > 2.5",
            "$.status < \"pk\"",
            "$.tags contains \"b\"",
            "$.name contains \"db\"",
        ];
        for condition in pass {
            let a = Assertions::try_new(&config(&[condition])).unwrap();
            assert_eq!(a.judge(&[], body), None, "{condition}");
        }
        let fail = [
            (
                "$.status == \"bad\"",
                "json: $.status == \"bad\" failed: got \"ok\"",
            ),
            ("$.n > \"x\"", "json: $.n > \"x\" failed: got 3"),
            (
                "$.tags contains \"c\"",
                "json: $.tags contains \"c\" failed: got [\"a\",\"b\"]",
            ),
            ("$.missing != 1", "json: $.missing selects nothing"),
        ];
        for (condition, detail) in fail {
            let a = Assertions::try_new(&config(&[condition])).unwrap();
            assert_eq!(
                a.judge(&[], body),
                Some((CheckKind::Json, detail.to_owned())),
                "{condition}"
            );
        }
    }

    #[test]
    fn bad_paths_and_head_with_body_assertions_are_config_errors() {
        let err = Assertions::try_new(&config(&["$[?@.a == ] == 1"])).unwrap_err();
        assert!(err.to_string().contains("json"), "{err}");
        let head = HealthCheckConfig {
            method: Method::Head,
            body_match: Some("ok".into()),
            ..Default::default()
        };
        let err = Assertions::try_new(&head).unwrap_err();
        assert!(err.to_string().contains("body_match"), "{err}");
        let plain = Assertions::try_new(&HealthCheckConfig::default()).unwrap();
        assert!(!plain.keeps_body() && plain.header_names().is_empty());
    }
}
