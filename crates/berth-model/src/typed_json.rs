//! dlt's typed JSON: values JSON cannot carry are strings prefixed with a Unicode private-use marker
//! (U+F026 decimal … U+F02D time). Used by `load_package_state.json` and `typed-jsonl` job files.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use serde_json::Value;

/// What a typed-JSON marker says a string holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Marker {
    /// U+F026
    Decimal,
    /// U+F027 (ISO 8601)
    DateTime,
    /// U+F028
    Date,
    /// U+F029
    Uuid,
    /// U+F02A hex-encoded bytes
    HexBytes,
    /// U+F02B base64-encoded bytes
    Base64Bytes,
    /// U+F02C
    Wei,
    /// U+F02D
    Time,
}

impl Marker {
    fn from_char(c: char) -> Option<Self> {
        Some(match c {
            '\u{F026}' => Self::Decimal,
            '\u{F027}' => Self::DateTime,
            '\u{F028}' => Self::Date,
            '\u{F029}' => Self::Uuid,
            '\u{F02A}' => Self::HexBytes,
            '\u{F02B}' => Self::Base64Bytes,
            '\u{F02C}' => Self::Wei,
            '\u{F02D}' => Self::Time,
            _ => return None,
        })
    }
}

/// Splits a typed string into its marker and payload; plain strings have no marker.
pub fn split_marker(s: &str) -> (Option<Marker>, &str) {
    let mut chars = s.chars();
    match chars.next().and_then(Marker::from_char) {
        Some(marker) => (Some(marker), chars.as_str()),
        None => (None, s),
    }
}

/// The payload of a typed string without its marker.
pub fn strip_marker(s: &str) -> &str {
    split_marker(s).1
}

/// Replaces every typed string in `value` by its plain payload (for display and plain JSON).
pub fn untype(value: &mut Value) {
    match value {
        Value::String(s) => {
            if let (Some(_), payload) = split_marker(s) {
                *s = payload.to_string();
            }
        }
        Value::Array(items) => items.iter_mut().for_each(untype),
        Value::Object(map) => map.values_mut().for_each(untype),
        _ => {}
    }
}

/// Parses a (typed or plain) ISO 8601 timestamp as dlt writes it. Naive values are taken as UTC.
pub fn parse_datetime(s: &str) -> Option<DateTime<Utc>> {
    let s = strip_marker(s).trim();
    if let Ok(dt) = DateTime::parse_from_rfc3339(s) {
        return Some(dt.with_timezone(&Utc));
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(s, format) {
            return Some(naive.and_utc());
        }
    }
    if let Ok(date) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return date.and_hms_opt(0, 0, 0).map(|n| n.and_utc());
    }
    // dlt's generic literal uses a space and `+00:00`.
    DateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f%:z")
        .ok()
        .map(|dt| dt.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_and_datetimes() {
        let typed = "\u{F027}2026-11-22T20:38:33.178706+00:00";
        assert_eq!(split_marker(typed).0, Some(Marker::DateTime));
        let dt = parse_datetime(typed).unwrap();
        assert_eq!(dt.timestamp_micros(), 1_795_379_913_178_706);
        assert_eq!(split_marker("plain"), (None, "plain"));
        assert_eq!(split_marker(""), (None, ""));
        assert!(parse_datetime("2024-01-01 00:00:00.000000+00:00").is_some());
        assert!(parse_datetime("2024-01-01T00:00:00").is_some());
        assert!(parse_datetime("yesterday").is_none());
        let mut v = serde_json::json!({"a": ["\u{F026}1.50", {"b": "\u{F02D}10:00:00"}]});
        untype(&mut v);
        assert_eq!(v, serde_json::json!({"a": ["1.50", {"b": "10:00:00"}]}));
    }
}
