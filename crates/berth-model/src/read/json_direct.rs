//! JSONL rows decoded straight into Arrow builders, for tables of the column types most rows
//! have: integers, doubles, text, booleans and timestamps.
//!
//! One pass over a row finds each value and appends it to its column; there is no tape and no
//! second pass per column as in Arrow's JSON decoder. Every value is read exactly as Arrow's
//! decoder reads it (the same number parser, the same date-time parser, the same escapes), and
//! anything else — an unknown or repeated key, a string in a number column, a number in a text
//! column, a string escaped where a typed-JSON marker could be, a value a column cannot hold —
//! makes [`DirectColumns::decode`] give up on the whole chunk, which then takes the general path
//! (Arrow's decoder, and the careful path for the errors). So a chunk decodes to the same batch
//! either way, or to the general path's error.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::timezone::Tz;
use arrow::array::{
    Array, ArrayRef, BooleanBuilder, Float64Builder, Int64Builder, RecordBatch, StringBuilder, make_array,
};
use arrow::compute::kernels::cast_utils::string_to_datetime;
use arrow::datatypes::{DataType as ArrowType, SchemaRef, TimeUnit};

use crate::schema::{DataType, Table};

/// What a column holds, for the direct decoder.
#[derive(Debug, Clone)]
enum Kind {
    Int64,
    Float64,
    Utf8,
    Boolean,
    /// In a zone other than UTC (`None`).
    Timestamp(TimeUnit, Option<Tz>),
}

/// The columns of a table the direct decoder can take: every one of a [`Kind`], none a JSON
/// column (whose values the careful path turns into text).
pub(crate) struct DirectColumns {
    schema: SchemaRef,
    kinds: Vec<Kind>,
    names: Vec<Vec<u8>>,
    by_name: HashMap<Vec<u8>, usize>,
    typed: bool,
}

impl DirectColumns {
    /// The direct decoder of `table` decoded as `schema`, if all its columns are of a [`Kind`].
    pub(crate) fn new(table: &Table, schema: &SchemaRef, typed: bool) -> Option<Self> {
        let mut kinds = Vec::with_capacity(schema.fields().len());
        for field in schema.fields() {
            let column = table.columns.get(field.name())?;
            if column.data_type == Some(DataType::Json) {
                return None;
            }
            kinds.push(match field.data_type() {
                ArrowType::Int64 => Kind::Int64,
                ArrowType::Float64 => Kind::Float64,
                ArrowType::Utf8 => Kind::Utf8,
                ArrowType::Boolean => Kind::Boolean,
                // As Arrow's decoder: the field's zone, UTC without one.
                ArrowType::Timestamp(unit, zone) => match zone.as_deref() {
                    None | Some("UTC" | "+00:00") => Kind::Timestamp(*unit, None),
                    Some(zone) => Kind::Timestamp(*unit, Some(zone.parse().ok()?)),
                },
                _ => return None,
            });
        }
        let names: Vec<Vec<u8>> = schema.fields().iter().map(|f| f.name().as_bytes().to_vec()).collect();
        let by_name = names.iter().cloned().zip(0..).collect();
        Some(Self {
            schema: Arc::clone(schema),
            kinds,
            names,
            by_name,
            typed,
        })
    }

    /// The rows of `lines` (each a JSON object, or in typed JSONL an array of them; blank lines
    /// have none) as one batch, or `None` when a row is not one this decoder takes.
    pub(crate) fn decode<'a>(&self, lines: impl Iterator<Item = &'a [u8]>) -> Option<RecordBatch> {
        let mut rows = Rows::new(self);
        for line in lines {
            rows.line(line)?;
        }
        rows.finish()
    }

    /// The column named `key`, the `position`-th key of its row: rows usually list their keys in
    /// the table's order, so that column is tried before the lookup by name.
    fn column(&self, key: &[u8], position: usize) -> Option<usize> {
        match self.names.get(position) {
            Some(name) if name == key => Some(position),
            _ => self.by_name.get(key).copied(),
        }
    }
}

/// A column being built.
enum Builder {
    Int64(Int64Builder),
    Float64(Float64Builder),
    Utf8(StringBuilder),
    Boolean(BooleanBuilder),
    /// The values of a timestamp column, typed when finished.
    Timestamp(Int64Builder),
}

impl Builder {
    fn append_null(&mut self) {
        match self {
            Self::Int64(b) | Self::Timestamp(b) => b.append_null(),
            Self::Float64(b) => b.append_null(),
            Self::Utf8(b) => b.append_null(),
            Self::Boolean(b) => b.append_null(),
        }
    }
}

/// The rows decoded so far.
struct Rows<'c> {
    columns: &'c DirectColumns,
    builders: Vec<Builder>,
    /// The row each column last had a value in (1-based), to find missing and repeated keys.
    seen: Vec<usize>,
    row: usize,
    /// An escaped string's text.
    scratch: String,
}

impl<'c> Rows<'c> {
    fn new(columns: &'c DirectColumns) -> Self {
        let builders = columns
            .kinds
            .iter()
            .map(|kind| match kind {
                Kind::Int64 => Builder::Int64(Int64Builder::new()),
                Kind::Float64 => Builder::Float64(Float64Builder::new()),
                Kind::Utf8 => Builder::Utf8(StringBuilder::new()),
                Kind::Boolean => Builder::Boolean(BooleanBuilder::new()),
                Kind::Timestamp(..) => Builder::Timestamp(Int64Builder::new()),
            })
            .collect();
        Self {
            columns,
            builders,
            seen: vec![0; columns.kinds.len()],
            row: 0,
            scratch: String::new(),
        }
    }

    fn line(&mut self, line: &[u8]) -> Option<()> {
        // Checked once: every string of the line is then a slice of it.
        let text = std::str::from_utf8(line).ok()?;
        let mut at = skip_space(line, 0);
        match line.get(at) {
            None => Some(()),
            Some(b'{') => {
                at = skip_space(line, self.object(text, at)?);
                (at == line.len()).then_some(())
            }
            Some(b'[') if self.columns.typed => {
                at = skip_space(line, at + 1);
                if line.get(at) == Some(&b']') {
                    return (skip_space(line, at + 1) == line.len()).then_some(());
                }
                loop {
                    at = skip_space(line, self.object(text, at)?);
                    match line.get(at)? {
                        b',' => at = skip_space(line, at + 1),
                        b']' => return (skip_space(line, at + 1) == line.len()).then_some(()),
                        _ => return None,
                    }
                }
            }
            Some(_) => None,
        }
    }

    /// Decodes the object at `at` as a row; returns where it ends.
    fn object(&mut self, text: &str, at: usize) -> Option<usize> {
        let bytes = text.as_bytes();
        if bytes.get(at) != Some(&b'{') {
            return None;
        }
        self.row += 1;
        let mut at = skip_space(bytes, at + 1);
        if bytes.get(at) != Some(&b'}') {
            for position in 0.. {
                if bytes.get(at) != Some(&b'"') {
                    return None;
                }
                let key_end = plain_string_end(bytes, at + 1)?;
                let column = self.columns.column(&bytes[at + 1..key_end], position)?;
                if std::mem::replace(&mut self.seen[column], self.row) == self.row {
                    return None;
                }
                at = skip_space(bytes, key_end + 1);
                if bytes.get(at) != Some(&b':') {
                    return None;
                }
                at = self.value(text, skip_space(bytes, at + 1), column)?;
                at = skip_space(bytes, at);
                match bytes.get(at)? {
                    b',' => at = skip_space(bytes, at + 1),
                    b'}' => break,
                    _ => return None,
                }
            }
        }
        for (column, builder) in self.builders.iter_mut().enumerate() {
            if self.seen[column] != self.row {
                builder.append_null();
            }
        }
        Some(at + 1)
    }

    /// Appends the value at `at` to `column`; returns where it ends.
    fn value(&mut self, text: &str, at: usize, column: usize) -> Option<usize> {
        let bytes = text.as_bytes();
        if bytes[at..].starts_with(b"null") {
            self.builders[column].append_null();
            return Some(at + 4);
        }
        let typed = self.columns.typed;
        match (&mut self.builders[column], &self.columns.kinds[column]) {
            (Builder::Int64(b), _) => {
                let (token, end) = number(bytes, at)?;
                // Fractions and exponents are the careful path's to refuse or accept.
                b.append_value(lexical_core::parse::<i64>(token).ok()?);
                Some(end)
            }
            (Builder::Float64(b), _) => {
                let (token, end) = number(bytes, at)?;
                b.append_value(lexical_core::parse::<f64>(token).ok()?);
                Some(end)
            }
            (Builder::Boolean(b), _) => {
                let (value, len) = match bytes[at..] {
                    [b't', b'r', b'u', b'e', ..] => (true, 4),
                    [b'f', b'a', b'l', b's', b'e', ..] => (false, 5),
                    _ => return None,
                };
                b.append_value(value);
                Some(at + len)
            }
            (Builder::Utf8(b), _) => {
                let (text, end) = string(text, at, typed, &mut self.scratch)?;
                b.append_value(text);
                Some(end)
            }
            (Builder::Timestamp(b), Kind::Timestamp(unit, zone)) => {
                let (text, end) = string(text, at, typed, &mut self.scratch)?;
                b.append_value(match zone {
                    // The same instants as in the zone named UTC, without its lookups.
                    None => instant(&chrono::Utc, text, *unit)?,
                    Some(zone) => instant(zone, text, *unit)?,
                });
                Some(end)
            }
            (Builder::Timestamp(_), _) => None,
        }
    }

    fn finish(self) -> Option<RecordBatch> {
        let schema = &self.columns.schema;
        let arrays: Vec<ArrayRef> = self
            .builders
            .into_iter()
            .zip(schema.fields())
            .map(|(builder, field)| -> ArrayRef {
                match builder {
                    Builder::Int64(mut b) => Arc::new(b.finish()),
                    Builder::Float64(mut b) => Arc::new(b.finish()),
                    Builder::Utf8(mut b) => Arc::new(b.finish()),
                    Builder::Boolean(mut b) => Arc::new(b.finish()),
                    Builder::Timestamp(mut b) => {
                        let data = b
                            .finish()
                            .into_data()
                            .into_builder()
                            .data_type(field.data_type().clone());
                        make_array(data.build().expect("an Int64 array's data is a timestamp array's"))
                    }
                }
            })
            .collect();
        // A null in a column that holds none is the general path's error to report.
        let options = arrow::array::RecordBatchOptions::new().with_row_count(Some(self.row));
        RecordBatch::try_new_with_options(Arc::clone(schema), arrays, &options).ok()
    }
}

/// `text` as a date-time (as Arrow's decoder parses it, in `zone` unless it says its own) in `unit`s
/// since the epoch.
fn instant<Z: chrono::TimeZone>(zone: &Z, text: &str, unit: TimeUnit) -> Option<i64> {
    let time = string_to_datetime(zone, text).ok()?;
    match unit {
        TimeUnit::Second => Some(time.timestamp()),
        TimeUnit::Millisecond => Some(time.timestamp_millis()),
        TimeUnit::Microsecond => Some(time.timestamp_micros()),
        TimeUnit::Nanosecond => time.timestamp_nanos_opt(),
    }
}

/// Past JSON's whitespace (as Arrow's decoder: not form feeds) from `at`.
fn skip_space(bytes: &[u8], mut at: usize) -> usize {
    while bytes.get(at).is_some_and(|b| matches!(b, b' ' | b'\n' | b'\r' | b'\t')) {
        at += 1;
    }
    at
}

/// The end (the closing quote) of a string that starts after its opening quote at `from` and
/// holds no escape.
fn plain_string_end(bytes: &[u8], from: usize) -> Option<usize> {
    let end = quote_or_escape(bytes, from)?;
    (bytes[end] == b'"').then_some(end)
}

/// The number token at `at` as Arrow's decoder cuts it (digits, signs, `.`, `e`), and its end;
/// `None` when it does not end where a value ends.
fn number(bytes: &[u8], at: usize) -> Option<(&[u8], usize)> {
    if !matches!(bytes.get(at)?, b'-' | b'0'..=b'9') {
        return None;
    }
    let len = bytes[at..]
        .iter()
        .position(|b| !matches!(b, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'))?;
    let end = at + len;
    matches!(bytes[end], b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r').then_some((&bytes[at..end], end))
}

/// The string at `at` (its opening quote) unescaped as Arrow's decoder does, without the
/// typed-JSON marker it starts with in typed JSONL, and where it ends. `None` for a value that is
/// no string, an escape Arrow refuses, or (in typed JSONL) an escaped first character, which
/// could be a marker.
fn string<'b>(text: &'b str, at: usize, typed: bool, scratch: &'b mut String) -> Option<(&'b str, usize)> {
    let bytes = text.as_bytes();
    if bytes.get(at) != Some(&b'"') {
        return None;
    }
    let mut from = at + 1;
    if typed {
        match bytes[from..] {
            // U+F026..U+F02D in UTF-8.
            [0xEF, 0x80, 0xA6..=0xAD, ..] => from += 3,
            [b'\\', b'u', ..] => return None,
            _ => {}
        }
    }
    let end = quote_or_escape(bytes, from)?;
    if bytes[end] == b'"' {
        return Some((&text[from..end], end + 1));
    }
    let end = unescape(bytes, from, scratch)?;
    Some((scratch.as_str(), end))
}

/// The first quote or backslash from `from` on. Most strings of a row are short: a plain loop
/// finds it sooner than a vectorized search would set up.
fn quote_or_escape(bytes: &[u8], from: usize) -> Option<usize> {
    bytes[from..]
        .iter()
        .position(|&b| b == b'"' || b == b'\\')
        .map(|i| from + i)
}

/// Unescapes the string whose text starts at `from` into `out`; returns the end after its
/// closing quote.
fn unescape(bytes: &[u8], from: usize, out: &mut String) -> Option<usize> {
    let mut raw = Vec::new();
    let mut at = from;
    loop {
        let stop = at + memchr::memchr2(b'"', b'\\', &bytes[at..])?;
        raw.extend_from_slice(&bytes[at..stop]);
        if bytes[stop] == b'"' {
            out.clear();
            out.push_str(std::str::from_utf8(&raw).ok()?);
            return Some(stop + 1);
        }
        at = stop + 2;
        let byte = match *bytes.get(stop + 1)? {
            b'"' => b'"',
            b'\\' => b'\\',
            b'/' => b'/',
            b'b' => 8,
            b'f' => 12,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'u' => {
                let (c, end) = unicode_escape(bytes, stop + 2)?;
                raw.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
                at = end;
                continue;
            }
            _ => return None,
        };
        raw.push(byte);
    }
}

/// The character of the `\u` escape whose hex digits start at `at` (a surrogate pair takes the
/// `\uXXXX` after it), and the end of the escape.
fn unicode_escape(bytes: &[u8], at: usize) -> Option<(char, usize)> {
    let hex = |at: usize| -> Option<u32> {
        let digits = std::str::from_utf8(bytes.get(at..at + 4)?).ok()?;
        u32::from_str_radix(digits, 16)
            .ok()
            .filter(|_| digits.bytes().all(|b| b.is_ascii_hexdigit()))
    };
    let high = hex(at)?;
    if let Some(c) = char::from_u32(high) {
        return Some((c, at + 4));
    }
    if bytes.get(at + 4..at + 6)? != b"\\u" {
        return None;
    }
    let low = hex(at + 6)?;
    // Other pairs are Arrow's to refuse.
    if !(0xD800..0xDC00).contains(&high) || !(0xDC00..0xE000).contains(&low) {
        return None;
    }
    let c = char::from_u32(0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00))?;
    Some((c, at + 10))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_unescape_as_arrow_does() {
        let mut scratch = String::new();
        let text = r#""a\"b\\c\/\n\u00e9\ud83d\ude00" "#;
        let (s, end) = string(text, 0, false, &mut scratch).unwrap();
        assert_eq!(s, "a\"b\\c/\n\u{e9}\u{1F600}");
        assert_eq!(end, text.len() - 1);
        // A lone surrogate and an unknown escape are for the general path to refuse.
        assert!(string(r#""\ud83d""#, 0, false, &mut scratch).is_none());
        assert!(string(r#""\x""#, 0, false, &mut scratch).is_none());
        // Typed JSONL: the marker goes; an escaped first character could be one.
        assert_eq!(string("\"\u{F027}2024\"", 0, true, &mut scratch).unwrap().0, "2024");
        assert!(string(r#""\uf027x""#, 0, true, &mut scratch).is_none());
        assert_eq!(string("\"\u{F027}x\"", 0, false, &mut scratch).unwrap().0, "\u{F027}x");
    }

    #[test]
    fn numbers_end_where_values_end() {
        assert_eq!(number(b"12,", 0), Some((&b"12"[..], 2)));
        assert_eq!(number(b"-1.5e3}", 0), Some((&b"-1.5e3"[..], 6)));
        assert_eq!(number(b"12abc,", 0), None);
        assert_eq!(number(b"12", 0), None);
        assert_eq!(number(b"+1,", 0), None);
    }
}
