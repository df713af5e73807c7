//! Enums written by name in a `[[notify]]` table (`format`, `method`, `color_mode`,
//! `tls`): one parser and one wording for a name that is not one of them.

/// The value named `name` (compared without case) among `names`, or an error naming
/// `what` and every choice: `unknown color mode "x": expected "hex" or "dec"`.
pub(crate) fn by_name<T: Copy>(name: &str, what: &str, names: &[(&str, T)]) -> Result<T, String> {
    if let Some((_, value)) = names.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)) {
        return Ok(*value);
    }
    let quoted: Vec<String> = names.iter().map(|(n, _)| format!("{n:?}")).collect();
    let choices = match quoted.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    };
    Err(format!("unknown {what} {name:?}: expected {choices}"))
}

/// Implements `Deserialize` for types that parse from a string (`FromStr<Err = String>`),
/// so a bad value is reported in the type's own words.
macro_rules! deserialize_from_str {
    ($($ty:ty),+ $(,)?) => {$(
        impl<'de> ::serde::Deserialize<'de> for $ty {
            fn deserialize<D: ::serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                <String as ::serde::Deserialize>::deserialize(deserializer)?
                    .parse()
                    .map_err(::serde::de::Error::custom)
            }
        }
    )+};
}

/// Implements `FromStr` (names compared without case; see [`by_name`]) and
/// `Deserialize` for an enum written by name: `parse_by_name!(ColorMode, "color mode",
/// ["hex" => Hex, "dec" => Dec])`.
macro_rules! parse_by_name {
    ($ty:ident, $what:literal, [$($name:literal => $variant:ident),+ $(,)?]) => {
        impl ::std::str::FromStr for $ty {
            type Err = String;

            fn from_str(s: &str) -> Result<Self, String> {
                $crate::names::by_name(s, $what, &[$(($name, $ty::$variant)),+])
            }
        }

        $crate::names::deserialize_from_str!($ty);
    };
}

pub(crate) use {deserialize_from_str, parse_by_name};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_without_case_and_errors_list_the_choices() {
        let two = [("hex", 1), ("dec", 2)];
        assert_eq!(by_name("DEC", "color mode", &two), Ok(2));
        assert_eq!(
            by_name("rgb", "color mode", &two),
            Err("unknown color mode \"rgb\": expected \"hex\" or \"dec\"".to_owned())
        );
        let three = [("starttls", 1), ("tls", 2), ("none", 3)];
        assert_eq!(
            by_name("ssl", "tls mode", &three),
            Err("unknown tls mode \"ssl\": expected \"starttls\", \"tls\" or \"none\"".to_owned())
        );
    }
}
