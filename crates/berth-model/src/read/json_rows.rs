//! The rows of a JSONL line as byte slices, and which of them Arrow's JSON decoder can take as
//! they are.
//!
//! Most rows dlt writes need nothing done before Arrow decodes them: their keys are the table's
//! columns, their bigint values are integers and their strings carry no typed-JSON marker. Those
//! go to [`arrow::json::reader::Decoder::decode`] as bytes, with no `serde_json::Value` built per
//! row. The scan here finds each row of a line (a typed-JSONL line is an array of rows) and says
//! whether it is such a row; every other row takes the careful path, which reports the exact
//! error or readies the values (markers stripped, JSON columns as text).

use std::collections::HashMap;
use std::ops::Range;

/// What the scan checks of a column's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ColumnCheck {
    /// Any JSON value Arrow's decoder takes as it is.
    Plain,
    /// Integers only: a fraction or an exponent is for the careful path to refuse or accept.
    Bigint,
    /// Strings may carry a typed-JSON marker that Arrow must not see.
    Text,
    /// Values the careful path rewrites (JSON columns become their text).
    Careful,
}

/// The columns of a table, with what [`scan_row`] checks of them. Rows usually list their keys in
/// the table's order, so the column at a key's position is tried before the lookup by name.
pub(crate) struct Columns<'a> {
    order: Vec<(&'a [u8], ColumnCheck)>,
    by_name: HashMap<&'a [u8], ColumnCheck>,
}

impl<'a> Columns<'a> {
    pub(crate) fn new(columns: impl IntoIterator<Item = (&'a str, ColumnCheck)>) -> Self {
        let order: Vec<(&[u8], ColumnCheck)> = columns.into_iter().map(|(n, c)| (n.as_bytes(), c)).collect();
        let by_name = order.iter().copied().collect();
        Self { order, by_name }
    }

    fn get(&self, key: &[u8], position: usize) -> Option<ColumnCheck> {
        match self.order.get(position) {
            Some((name, check)) if *name == key => Some(*check),
            _ => self.by_name.get(key).copied(),
        }
    }
}

/// A row of a line that Arrow's decoder can take as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FastRow {
    /// These bytes of the line.
    At(Range<usize>),
    /// The row's bytes with its typed-JSON markers cut out.
    Unmarked(Vec<u8>),
}

impl FastRow {
    /// The row's bytes, of `line`.
    pub(crate) fn bytes<'a>(&'a self, line: &'a [u8]) -> &'a [u8] {
        match self {
            Self::At(range) => &line[range.clone()],
            Self::Unmarked(bytes) => bytes,
        }
    }
}

/// The rows of `line` (the elements of a top-level array in typed JSONL, else the line itself) as
/// Arrow's decoder can take them, typed-JSON markers cut out; `None` when a row is not one it can
/// take as it is, or the line not one the scan can split (the careful path reports what is wrong).
pub(crate) fn fast_rows(line: &[u8], arrays: bool, columns: &Columns<'_>, typed: bool) -> Option<Vec<FastRow>> {
    let start = line.iter().position(|b| !b.is_ascii_whitespace())?;
    let end = line.iter().rposition(|b| !b.is_ascii_whitespace())? + 1;
    let body = &line[start..end];
    let mut markers = Vec::new();
    let mut row = |at: usize| -> Option<(usize, FastRow)> {
        let end = scan_row(body, at, columns, typed, &mut markers)?;
        let row = if markers.is_empty() {
            FastRow::At(start + at..start + end)
        } else {
            FastRow::Unmarked(without_markers(&body[at..end], &markers))
        };
        Some((end, row))
    };
    match body.first() {
        Some(b'{') => {
            let (end, only) = row(0)?;
            (end == body.len()).then(|| vec![only])
        }
        Some(b'[') if arrays => {
            let mut rows = Vec::new();
            let mut at = skip_space(body, 1);
            if body.get(at) == Some(&b']') {
                return (at + 1 == body.len()).then_some(rows);
            }
            loop {
                let (end, next) = row(at)?;
                rows.push(next);
                at = skip_space(body, end);
                match body.get(at) {
                    Some(b',') => at = skip_space(body, at + 1),
                    Some(b']') if at + 1 == body.len() => return Some(rows),
                    _ => return None,
                }
            }
        }
        _ => None,
    }
}

/// Scans the object that starts at `start` in `bytes` and returns its end, if Arrow's decoder can
/// take it as it is once the typed-JSON markers at `markers` (offsets from `start`, 3 bytes each;
/// found when `typed`) are cut out: every key a column, written without escapes; bigint values
/// integers; no value of a [`ColumnCheck::Careful`] column.
fn scan_row(bytes: &[u8], start: usize, columns: &Columns<'_>, typed: bool, markers: &mut Vec<usize>) -> Option<usize> {
    markers.clear();
    if bytes.get(start) != Some(&b'{') {
        return None;
    }
    let mut position = 0;
    let mut at = skip_space(bytes, start + 1);
    if bytes.get(at) == Some(&b'}') {
        return Some(at + 1);
    }
    loop {
        if bytes.get(at) != Some(&b'"') {
            return None;
        }
        let key_end = string_end(bytes, at)?;
        let key = &bytes[at + 1..key_end - 1];
        if key.contains(&b'\\') {
            return None;
        }
        let check = columns.get(key, position)?;
        position += 1;
        at = skip_space(bytes, key_end);
        if bytes.get(at) != Some(&b':') {
            return None;
        }
        at = skip_space(bytes, at + 1);
        let end = value_end(bytes, at)?;
        match value_passes(&bytes[at..end], check, typed) {
            Value::Passes => {}
            Value::Marked => markers.push(at + 1 - start),
            Value::Careful => return None,
        }
        at = skip_space(bytes, end);
        match bytes.get(at) {
            Some(b',') => at = skip_space(bytes, at + 1),
            Some(b'}') => return Some(at + 1),
            _ => return None,
        }
    }
}

/// What [`scan_row`] makes of a value.
enum Value {
    /// Arrow's decoder takes it as it is.
    Passes,
    /// A string whose first character is a typed-JSON marker (3 bytes in UTF-8) to cut out.
    Marked,
    /// For the careful path.
    Careful,
}

fn value_passes(value: &[u8], check: ColumnCheck, typed: bool) -> Value {
    let passes = |ok: bool| if ok { Value::Passes } else { Value::Careful };
    match check {
        ColumnCheck::Plain => Value::Passes,
        ColumnCheck::Careful => passes(value == b"null"),
        // Strings (typed ones among them) too: the careful path strips their markers.
        ColumnCheck::Bigint => passes(!value.iter().any(|b| matches!(b, b'.' | b'e' | b'E' | b'"'))),
        ColumnCheck::Text if !typed => Value::Passes,
        // U+F026..U+F02D in UTF-8 are EF 80 A6..AD; an escaped first character may be one too.
        ColumnCheck::Text => match value {
            [b'"', 0xEF, 0x80, 0xA6..=0xAD, ..] => Value::Marked,
            [b'"', b'\\', b'u', ..] => Value::Careful,
            _ => Value::Passes,
        },
    }
}

/// `row` without the 3-byte markers at `markers` (in order).
pub(crate) fn without_markers(row: &[u8], markers: &[usize]) -> Vec<u8> {
    let mut out = Vec::with_capacity(row.len());
    let mut from = 0;
    for &at in markers {
        out.extend_from_slice(&row[from..at]);
        from = at + 3;
    }
    out.extend_from_slice(&row[from..]);
    out
}

fn skip_space(bytes: &[u8], mut at: usize) -> usize {
    while bytes.get(at).is_some_and(|b| b.is_ascii_whitespace()) {
        at += 1;
    }
    at
}

/// The end (exclusive) of the string that starts at `at` (its opening quote).
fn string_end(bytes: &[u8], at: usize) -> Option<usize> {
    let mut i = at + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

/// The end (exclusive) of the JSON value that starts at `at`. Nested objects and arrays are
/// matched by depth, strings skipped; scalars end at the next delimiter. Syntax inside is left to
/// the decoder that reads the value.
fn value_end(bytes: &[u8], at: usize) -> Option<usize> {
    match bytes.get(at)? {
        b'"' => string_end(bytes, at),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut i = at;
            while i < bytes.len() {
                match bytes[i] {
                    b'"' => {
                        i = string_end(bytes, i)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(i + 1);
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
            None
        }
        _ => {
            let len = bytes[at..]
                .iter()
                .position(|b| matches!(b, b',' | b'}' | b']') || b.is_ascii_whitespace())
                .unwrap_or(bytes.len() - at);
            (len > 0).then_some(at + len)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn columns() -> Columns<'static> {
        Columns::new([
            ("id", ColumnCheck::Bigint),
            ("name", ColumnCheck::Text),
            ("amount", ColumnCheck::Plain),
            ("doc", ColumnCheck::Careful),
        ])
    }

    #[test]
    fn lines_split_into_their_rows() {
        fn rows_of(line: &[u8], arrays: bool) -> Option<Vec<Vec<u8>>> {
            let rows = fast_rows(line, arrays, &columns(), true)?;
            Some(rows.iter().map(|r| r.bytes(line).to_vec()).collect())
        }
        let line = br#" [{"id":1,"name":"a,}]"}, {"id":2,"name":"b\"{"} ,{"id":3}] "#;
        let rows = rows_of(line, true).expect("rows");
        assert_eq!(
            rows,
            [
                &br#"{"id":1,"name":"a,}]"}"#[..],
                br#"{"id":2,"name":"b\"{"}"#,
                br#"{"id":3}"#
            ]
        );
        assert_eq!(rows_of(br#"{"id":1}"#, false).expect("row").len(), 1);
        assert_eq!(rows_of(b"[]", true).expect("no rows").len(), 0);
        assert!(rows_of(br#"[{"id":1}"#, true).is_none());
        assert!(rows_of(br#"[{"id":1}] x"#, true).is_none());
        assert!(rows_of(br#"[{"id":1}]"#, false).is_none());
        assert!(rows_of(b"42", true).is_none());
        // One row the decoder cannot take as it is sends the whole line the careful way.
        assert!(rows_of(br#"[{"id":1},{"id":1.5}]"#, true).is_none());
    }

    fn scan(row: &[u8], columns: &Columns<'_>, typed: bool) -> bool {
        let mut markers = Vec::new();
        scan_row(row, 0, columns, typed, &mut markers) == Some(row.len()) && markers.is_empty()
    }

    #[test]
    fn only_rows_arrow_takes_as_they_are_pass() {
        let c = columns();
        assert!(scan(br#"{"id":1,"name":"x","amount":1.5,"doc":null}"#, &c, true));
        assert!(scan(br#"{ "id" : -7 , "name" : null }"#, &c, true));
        assert!(scan(b"{}", &c, true));
        // A fraction or exponent in a bigint column, a column not in the table, an escaped key.
        assert!(!scan(br#"{"id":1.5}"#, &c, true));
        assert!(!scan(br#"{"id":1e3}"#, &c, true));
        assert!(!scan(br#"{"id":"7"}"#, &c, true));
        assert!(!scan(br#"{"other":1}"#, &c, true));
        assert!(!scan(br#"{"i\u0064":1}"#, &c, true));
        // A typed-JSON marker (U+F026 as UTF-8) is cut out in typed JSONL only; an escaped first
        // character goes the careful way.
        let marked = "{\"id\":1,\"name\":\"\u{F027}2024-01-01\"}";
        let rows = fast_rows(marked.as_bytes(), true, &c, true).expect("a row");
        assert_eq!(rows, [FastRow::Unmarked(br#"{"id":1,"name":"2024-01-01"}"#.to_vec())]);
        assert!(scan(marked.as_bytes(), &c, false));
        assert!(!scan(br#"{"name":"\uf026"}"#, &c, true));
        // JSON columns are rewritten by the careful path.
        assert!(!scan(br#"{"doc":{"a":1}}"#, &c, true));
        // Broken rows are the careful path's to report.
        assert!(!scan(br#"{"id":1,}"#, &c, true));
        assert!(!scan(br#"{"id" 1}"#, &c, true));
    }
}
