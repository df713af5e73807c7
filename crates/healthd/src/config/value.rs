//! A serde bridge over the parsed TOML tree ([`ValueDe`]) whose errors keep serde's own
//! categories ([`DeError`]), so that a problem is worded from what went wrong (an unknown
//! key, a missing key, a type mismatch, the type's own message) and never read back out
//! of a message's text.

use std::fmt;

use serde::de::{
    self, DeserializeOwned, IntoDeserializer, Visitor,
    value::{MapDeserializer, SeqDeserializer},
};
use toml::de::{DeTable, DeValue};

/// Why a value could not be deserialized.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(super) enum DeError {
    /// The target type's own message. health-types words its messages as
    /// `invalid `key` = value: reason` already.
    #[error("{0}")]
    Own(String),
    /// serde's generic complaint: a wrong type, value or length.
    #[error("expected {expected}, found {found}")]
    Mismatch {
        /// What the type wanted.
        expected: String,
        /// What the file has.
        found: String,
    },
    /// A key the table does not accept.
    #[error("unknown key `{key}`; accepted keys: {}", .accepted.join(", "))]
    UnknownKey {
        /// The key as written.
        key: String,
        /// Every key the table accepts.
        accepted: &'static [&'static str],
    },
    /// A required key is absent.
    #[error("missing `{0}`")]
    MissingKey(&'static str),
}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError::Own(msg.to_string())
    }

    fn invalid_type(found: de::Unexpected<'_>, expected: &dyn de::Expected) -> Self {
        DeError::Mismatch {
            expected: expected.to_string(),
            found: found.to_string(),
        }
    }

    fn invalid_value(found: de::Unexpected<'_>, expected: &dyn de::Expected) -> Self {
        DeError::invalid_type(found, expected)
    }

    fn invalid_length(len: usize, expected: &dyn de::Expected) -> Self {
        DeError::Mismatch {
            expected: expected.to_string(),
            found: format!("{len} items"),
        }
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        DeError::Mismatch {
            expected: format!("one of {}", expected.join(", ")),
            found: format!("{variant:?}"),
        }
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        DeError::UnknownKey {
            key: field.to_owned(),
            accepted: expected,
        }
    }

    fn missing_field(field: &'static str) -> Self {
        DeError::MissingKey(field)
    }
}

/// Deserializes `T` from one value of the parsed file.
pub(super) fn from_value<T: DeserializeOwned>(value: &DeValue<'_>) -> Result<T, DeError> {
    T::deserialize(ValueDe(value))
}

/// Deserializes `T` from one table of the parsed file.
pub(super) fn from_table<T: DeserializeOwned>(table: &DeTable<'_>) -> Result<T, DeError> {
    T::deserialize(MapDeserializer::new(entries(table)))
}

/// Deserializes `T` from a table holding only `key = value`: one key of a struct whose
/// keys are all optional, read on its own.
pub(super) fn from_entry<T: DeserializeOwned>(
    key: &str,
    value: &DeValue<'_>,
) -> Result<T, DeError> {
    T::deserialize(MapDeserializer::new(std::iter::once((key, ValueDe(value)))))
}

/// A table's entries as serde's map deserializer takes them.
fn entries<'a, 'i>(table: &'a DeTable<'i>) -> impl Iterator<Item = (&'a str, ValueDe<'a, 'i>)> {
    table
        .iter()
        .map(|(k, v)| (k.get_ref().as_ref(), ValueDe(v.get_ref())))
}

/// Deserializes `T` from one value of the parsed file; a failure says where inside the
/// value it happened (`url`, `headers.X-Token`) as a path of keys and indexes.
pub(super) fn from_value_at<T: DeserializeOwned>(
    value: &DeValue<'_>,
) -> Result<T, (Vec<String>, DeError)> {
    serde_path_to_error::deserialize(ValueDe(value)).map_err(|err| {
        let path = err
            .path()
            .iter()
            .filter_map(|segment| match segment {
                serde_path_to_error::Segment::Map { key } => Some(key.clone()),
                serde_path_to_error::Segment::Seq { index } => Some(index.to_string()),
                serde_path_to_error::Segment::Enum { .. }
                | serde_path_to_error::Segment::Unknown => None,
            })
            .collect();
        (path, err.into_inner())
    })
}

/// A value of the parsed TOML tree as a serde deserializer. Borrowing the tree (rather
/// than consuming it, as `toml`'s own deserializer does) lets one table be read several
/// ways without copying it.
#[derive(Clone, Copy)]
struct ValueDe<'a, 'i>(&'a DeValue<'i>);

impl<'de> de::Deserializer<'de> for ValueDe<'_, '_> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.0 {
            DeValue::String(text) => visitor.visit_str(text),
            DeValue::Integer(int) => {
                if let Ok(v) = i64::from_str_radix(int.as_str(), int.radix()) {
                    visitor.visit_i64(v)
                } else if let Ok(v) = u64::from_str_radix(int.as_str(), int.radix()) {
                    visitor.visit_u64(v)
                } else {
                    Err(DeError::Mismatch {
                        expected: "a 64-bit integer".to_owned(),
                        found: int.to_string(),
                    })
                }
            }
            DeValue::Float(float) => match float.as_str().parse::<f64>() {
                Ok(v) => visitor.visit_f64(v),
                Err(_) => Err(DeError::Mismatch {
                    expected: "a 64-bit float".to_owned(),
                    found: float.to_string(),
                }),
            },
            DeValue::Boolean(v) => visitor.visit_bool(*v),
            DeValue::Datetime(v) => visitor.visit_string(v.to_string()),
            DeValue::Array(items) => {
                let mut seq = SeqDeserializer::new(items.iter().map(|v| ValueDe(v.get_ref())));
                let value = visitor.visit_seq(&mut seq)?;
                seq.end()?;
                Ok(value)
            }
            DeValue::Table(table) => {
                let mut map = MapDeserializer::new(entries(table));
                let value = visitor.visit_map(&mut map)?;
                map.end()?;
                Ok(value)
            }
        }
    }

    // A value that is present is `Some`: absent keys never reach a deserializer.
    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor.visit_newtype_struct(self)
    }

    // Unit variants are written as strings (`method = "GET"`).
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        match self.0 {
            DeValue::String(text) => visitor.visit_enum(
                IntoDeserializer::<DeError>::into_deserializer(text.as_ref()),
            ),
            _ => self.deserialize_any(visitor),
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
        byte_buf unit unit_struct seq tuple tuple_struct map struct identifier ignored_any
    }
}

impl<'de> IntoDeserializer<'de, DeError> for ValueDe<'_, '_> {
    type Deserializer = Self;

    fn into_deserializer(self) -> Self {
        self
    }
}

/// The keys a struct with a derived `Deserialize` and `deny_unknown_fields` accepts,
/// read from the derive itself, so that the list in an "unknown key" message is the one
/// its owner maintains. Asked about a key no struct has, the derive answers with every
/// field it knows; anything else (a struct that takes any key) gives an empty list.
pub(super) fn fields_of<T: DeserializeOwned>() -> &'static [&'static str] {
    // A key that no config struct can have: a NUL character.
    match from_entry::<T>("\0", &DeValue::Boolean(true)) {
        Err(DeError::UnknownKey { accepted, .. }) => accepted,
        _ => &[],
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use health_types::{AgentSpec, DockerSpec};

    use super::*;

    fn value(text: &str) -> DeValue<'_> {
        DeValue::Table(DeTable::parse(text).unwrap().into_inner())
    }

    #[test]
    fn field_names_come_from_the_derive() {
        assert_eq!(fields_of::<DockerSpec>(), ["container", "host"]);
        assert_eq!(fields_of::<AgentSpec>(), ["url", "ca", "cert", "key"]);
        assert!(fields_of::<String>().is_empty());
    }

    #[test]
    fn errors_keep_their_kind() {
        let err = from_value::<DockerSpec>(&value("image = \"x\"")).unwrap_err();
        assert_eq!(
            err,
            DeError::UnknownKey {
                key: "image".into(),
                accepted: &["container", "host"],
            }
        );
        let err = from_value::<DockerSpec>(&value("host = \"unix:///s\"")).unwrap_err();
        assert_eq!(err, DeError::MissingKey("container"));
        let err = from_value::<BTreeMap<String, u32>>(&value("a = \"x\"")).unwrap_err();
        assert_eq!(err.to_string(), "expected u32, found string \"x\"");
        let (path, err) = from_value_at::<AgentSpec>(&value("url = \"no url\"")).unwrap_err();
        assert_eq!(path, ["url"]);
        assert!(matches!(err, DeError::Own(_)), "{err:?}");
    }

    #[test]
    fn every_toml_type_reads() {
        let table: BTreeMap<String, serde_json::Value> = from_value(&value(
            "s = \"x\"\ni = 0x10\nf = 1.5\nb = true\nd = 1979-05-27\na = [1, \"two\"]\nt = { k = -3 }",
        ))
        .unwrap();
        assert_eq!(
            serde_json::to_string(&table).unwrap(),
            r#"{"a":[1,"two"],"b":true,"d":"1979-05-27","f":1.5,"i":16,"s":"x","t":{"k":-3}}"#
        );
    }
}
