//! Lenient scalars, as the agent's own YAML reader (yaml-cpp, `as<T>()`) accepts them: a
//! quoted `"8080"` is a port, an unquoted `12345` is a password, and booleans are any case of
//! `true/false/yes/no/on/off`. A scalar keeps its text exactly as written.

use serde::de::{self, Deserialize, Deserializer, Visitor};
use std::fmt;

/// A YAML scalar's text, as written in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scalar(pub String);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Scalar, D::Error> {
        d.deserialize_str(ScalarVisitor)
    }
}

struct ScalarVisitor;

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Scalar;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a scalar value")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
        Ok(Scalar(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Scalar, E> {
        Ok(Scalar(v))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scalar, E> {
        Ok(Scalar(v.to_string()))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
        Ok(Scalar(v.to_string()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
        Ok(Scalar(v.to_string()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar, E> {
        Ok(Scalar(v.to_string()))
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, _: A) -> Result<Scalar, A::Error> {
        Err(de::Error::custom(
            "expected a scalar value, found a sequence",
        ))
    }
    fn visit_map<A: de::MapAccess<'de>>(self, _: A) -> Result<Scalar, A::Error> {
        Err(de::Error::custom(
            "expected a scalar value, found a mapping",
        ))
    }
}

/// Parses a boolean the way the agent does: `true/false/yes/no/on/off`, any case.
pub fn parse_bool(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" => Some(true),
        "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// Parses a port number; `None` when the text is not a whole number or is over 65535.
pub fn parse_port(text: &str) -> Option<u16> {
    let t = text.trim();
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    t.parse::<u16>().ok()
}

/// Describes a scalar for an error message: its kind and (for non-secret keys) its text.
pub fn describe(text: &str) -> String {
    let t = text.trim();
    if t.is_empty() {
        "an empty value".into()
    } else if t.bytes().all(|b| b.is_ascii_digit()) {
        format!("the number {t}")
    } else {
        format!("the text {}", quote_whole_or_count(t))
    }
}

/// A value for a message: quoted whole when short, else only its length. Never cut and
/// never escaped, so the config layer can still find (and hide) a password typed into the
/// wrong key: a cut or an escaped copy would no longer match it.
pub fn quote_whole_or_count(t: &str) -> String {
    if t.chars().count() > 64 || t.chars().any(|c| c.is_control() || c == '"') {
        format!("of {} characters", t.chars().count())
    } else {
        format!("\"{t}\"")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn booleans_in_every_spelling() {
        for t in ["true", "TRUE", "Yes", "on", "ON"] {
            assert_eq!(parse_bool(t), Some(true), "{t}");
        }
        for t in ["false", "No", "off", "OFF"] {
            assert_eq!(parse_bool(t), Some(false), "{t}");
        }
        for t in ["maybe", "1", "", "y"] {
            assert_eq!(parse_bool(t), None, "{t}");
        }
    }

    #[test]
    fn ports() {
        assert_eq!(parse_port("8080"), Some(8080));
        assert_eq!(parse_port("0"), Some(0));
        assert_eq!(parse_port("65535"), Some(65535));
        assert_eq!(parse_port("65536"), None);
        assert_eq!(parse_port("70000"), None);
        assert_eq!(parse_port("-1"), None);
        assert_eq!(parse_port("80a"), None);
        assert_eq!(parse_port("99999999999999999999"), None);
    }
}
