//! dlt's `insert_values` job format, parsed into Arrow so it can go to any destination:
//!
//! ```text
//! INSERT INTO {}("version","engine_version",...)
//! VALUES
//! (1,4,E'pipe',...),
//! (2,4,E'pipe',...);
//! ```
//!
//! Literals are whatever the normalizing destination escapes them as: `'..'` with `''`, `E'..'` with
//! backslash escapes, `N'..'`, bare numbers, `NULL`, `TRUE`/`FALSE`, optionally followed by a
//! `::type` cast. Values are collected as text and cast to the table's Arrow types.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BinaryBuilder, RecordBatch, StringBuilder, new_null_array};
use arrow::compute::{CastOptions, cast_with_options};
use arrow::datatypes::DataType as ArrowType;
use arrow::util::display::FormatOptions;

use super::types::text_arrow_schema;
use crate::error::{Error, Result};
use crate::schema::Table;

struct Cursor<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn rest(&self) -> &'a str {
        &self.text[self.pos..]
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.bump();
        }
    }

    fn eat(&mut self, token: &str) -> bool {
        self.skip_ws();
        let rest = self.rest();
        // Byte-wise: `rest` may hold a multi-byte character where the token would end.
        if rest
            .as_bytes()
            .get(..token.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(token.as_bytes()))
        {
            self.pos += token.len();
            true
        } else {
            false
        }
    }

    fn line(&self) -> usize {
        self.text[..self.pos].matches('\n').count() + 1
    }
}

fn err(job: &str, cursor: &Cursor<'_>, message: impl std::fmt::Display) -> Error {
    Error::Decode {
        job: job.to_string(),
        message: format!("line {}: {message}", cursor.line()),
    }
}

fn parse_identifier(c: &mut Cursor<'_>, job: &str) -> Result<String> {
    c.skip_ws();
    match c.peek() {
        Some(q @ ('"' | '`')) => {
            c.bump();
            let mut out = String::new();
            loop {
                match c.bump() {
                    Some(ch) if ch == q => {
                        if c.peek() == Some(q) {
                            c.bump();
                            out.push(q);
                        } else {
                            return Ok(out);
                        }
                    }
                    Some(ch) => out.push(ch),
                    None => return Err(err(job, c, "unterminated quoted column name")),
                }
            }
        }
        Some('[') => {
            c.bump();
            let end = c.rest().find(']').ok_or_else(|| err(job, c, "unterminated [column]"))?;
            let name = c.rest()[..end].to_string();
            c.pos += end + 1;
            Ok(name)
        }
        _ => {
            let len = c
                .rest()
                .find(|ch: char| !(ch.is_alphanumeric() || ch == '_'))
                .unwrap_or(c.rest().len());
            if len == 0 {
                return Err(err(job, c, "expected a column name"));
            }
            let name = c.rest()[..len].to_string();
            c.pos += len;
            Ok(name)
        }
    }
}

fn parse_quoted(c: &mut Cursor<'_>, backslash_escapes: bool, job: &str) -> Result<String> {
    // At the opening quote.
    c.bump();
    let mut out = String::new();
    loop {
        match c.bump() {
            None => return Err(err(job, c, "unterminated string literal")),
            Some('\'') => {
                if c.peek() == Some('\'') {
                    c.bump();
                    out.push('\'');
                } else {
                    return Ok(out);
                }
            }
            Some('\\') if backslash_escapes => {
                let escaped = c.bump().ok_or_else(|| err(job, c, "dangling backslash"))?;
                match escaped {
                    'n' => out.push('\n'),
                    'r' => out.push('\r'),
                    't' => out.push('\t'),
                    'b' => out.push('\u{8}'),
                    'f' => out.push('\u{c}'),
                    'x' | 'u' | 'U' => {
                        let max = match escaped {
                            'x' => 2,
                            'u' => 4,
                            _ => 8,
                        };
                        let digits: String = c.rest().chars().take(max).take_while(char::is_ascii_hexdigit).collect();
                        c.pos += digits.len();
                        let code = u32::from_str_radix(&digits, 16)
                            .ok()
                            .and_then(char::from_u32)
                            .ok_or_else(|| err(job, c, format!("bad escape \\{escaped}{digits}")))?;
                        out.push(code);
                    }
                    other => out.push(other),
                }
            }
            Some(ch) => out.push(ch),
        }
    }
}

/// One literal as written: text, or the argument of `from_base64('…')` (how DuckDB's
/// `insert_values` writes binary values).
#[derive(Debug, PartialEq)]
enum Literal {
    Text(String),
    Base64(String),
}

/// One literal: `None` for NULL.
fn parse_value(c: &mut Cursor<'_>, job: &str) -> Result<Option<Literal>> {
    c.skip_ws();
    if c.rest().len() >= 12 && c.rest().as_bytes()[..12].eq_ignore_ascii_case(b"from_base64(") {
        c.pos += 12;
        c.skip_ws();
        if c.peek() != Some('\'') {
            return Err(err(job, c, "expected a string literal in from_base64(…)"));
        }
        let encoded = parse_quoted(c, false, job)?;
        if !c.eat(")") {
            return Err(err(job, c, "expected `)` closing from_base64(…)"));
        }
        return Ok(Some(Literal::Base64(encoded)));
    }
    let value = match c.peek() {
        Some('\'') => Some(parse_quoted(c, false, job)?),
        Some('E' | 'e') if c.rest()[1..].starts_with('\'') => {
            c.bump();
            Some(parse_quoted(c, true, job)?)
        }
        Some('N' | 'n') if c.rest()[1..].starts_with('\'') => {
            c.bump();
            Some(parse_quoted(c, false, job)?)
        }
        _ => {
            let len = c
                .rest()
                .find(|ch: char| matches!(ch, ',' | ')') || ch.is_whitespace() || ch == ':')
                .unwrap_or(c.rest().len());
            let word = &c.rest()[..len];
            if word.is_empty() {
                return Err(err(job, c, "expected a value"));
            }
            c.pos += len;
            if word.eq_ignore_ascii_case("null") {
                None
            } else {
                Some(word.to_string())
            }
        }
    };
    // Skip a trailing cast such as `::timestamptz` or `::numeric(38,9)`.
    c.skip_ws();
    if c.rest().starts_with("::") {
        c.pos += 2;
        let mut depth = 0usize;
        while let Some(ch) = c.peek() {
            match ch {
                '(' => depth += 1,
                ')' if depth > 0 => depth -= 1,
                ',' | ')' if depth == 0 => break,
                _ => {}
            }
            c.bump();
        }
    }
    Ok(value.map(Literal::Text))
}

/// A column's values as parsed: text to be cast to the column's type, or bytes for binary columns.
enum ColumnValues {
    Text(StringBuilder),
    Bytes(BinaryBuilder),
}

impl ColumnValues {
    fn for_type(data_type: &ArrowType) -> Self {
        match data_type {
            ArrowType::Binary | ArrowType::LargeBinary | ArrowType::BinaryView => Self::Bytes(BinaryBuilder::new()),
            _ => Self::Text(StringBuilder::new()),
        }
    }

    /// Appends a value; the error says what is wrong with it.
    fn append(&mut self, value: Option<Literal>, column: &str) -> std::result::Result<(), String> {
        match (self, value) {
            (Self::Text(b), None) => b.append_null(),
            (Self::Bytes(b), None) => b.append_null(),
            (Self::Text(b), Some(Literal::Text(t))) => b.append_value(t),
            (Self::Text(_), Some(Literal::Base64(_))) => {
                return Err(format!("column `{column}` is not binary but holds from_base64(…)"));
            }
            (Self::Bytes(b), Some(literal)) => b.append_value(
                binary_literal(&literal)
                    .ok_or_else(|| format!("column `{column}` holds a binary literal that does not decode"))?,
            ),
        }
        Ok(())
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Self::Text(b) => Arc::new(b.finish()),
            Self::Bytes(b) => Arc::new(b.finish()),
        }
    }
}

/// Decimal literals in exponent notation (`-1E-9`, as dlt writes small and large decimals) in
/// plain notation (`-0.000000001`), which Arrow's decimal cast reads.
fn plain_decimals(text: &ArrayRef) -> ArrayRef {
    let Some(strings) = text.as_any().downcast_ref::<arrow::array::StringArray>() else {
        return Arc::clone(text);
    };
    if !strings.iter().flatten().any(|v| v.contains(['e', 'E'])) {
        return Arc::clone(text);
    }
    let expanded: arrow::array::StringArray = strings
        .iter()
        .map(|v| v.map(|v| expand_exponent(v).unwrap_or_else(|| v.to_string())))
        .collect();
    Arc::new(expanded)
}

/// `1.5E-3` → `0.0015`; `None` when `value` is not a number in exponent notation.
pub fn expand_exponent(value: &str) -> Option<String> {
    let (mantissa, exponent) = value.trim().split_once(['e', 'E'])?;
    let exponent: i64 = exponent.parse().ok()?;
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", mantissa.strip_prefix('+').unwrap_or(mantissa)),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if whole.is_empty() && fraction.is_empty()
        || !whole.bytes().chain(fraction.bytes()).all(|b| b.is_ascii_digit())
        || exponent.unsigned_abs() > 1000
    {
        return None;
    }
    let digits = format!("{whole}{fraction}");
    // Position of the decimal point within `digits`.
    let point = i64::try_from(whole.len()).ok()? + exponent;
    let text = if point <= 0 {
        format!("0.{}{digits}", "0".repeat(usize::try_from(-point).ok()?))
    } else if point >= i64::try_from(digits.len()).ok()? {
        format!("{digits}{}", "0".repeat(usize::try_from(point).ok()? - digits.len()))
    } else {
        let point = usize::try_from(point).ok()?;
        format!("{}.{}", &digits[..point], &digits[point..])
    };
    Some(format!("{sign}{text}"))
}

/// The bytes of a binary literal: `from_base64('…')` (DuckDB), `'\x0001ff'` (PostgreSQL's
/// `bytea` hex form), else the literal's own bytes.
fn binary_literal(literal: &Literal) -> Option<Vec<u8>> {
    use base64::Engine as _;
    match literal {
        Literal::Base64(encoded) => base64::engine::general_purpose::STANDARD.decode(encoded).ok(),
        Literal::Text(text) => match text.strip_prefix("\\x") {
            Some(hex) => decode_hex(hex),
            None => Some(text.as_bytes().to_vec()),
        },
    }
}

/// Bytes from hex digits (an even number of them).
pub(crate) fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Parses an `insert_values` job into batches of `batch_size` rows with the table's Arrow schema.
pub fn parse_insert_values(
    text: &str,
    table: &Table,
    batch_size: usize,
    job: &str,
    emit: &mut dyn FnMut(RecordBatch) -> bool,
) -> Result<()> {
    let schema = text_arrow_schema(table);
    let mut c = Cursor { text, pos: 0 };
    loop {
        c.skip_ws();
        if c.rest().is_empty() {
            return Ok(());
        }
        let header = parse_header(&mut c, job)?;
        let targets = header_targets(&schema, &header, table, job)?;
        if !c.eat("VALUES") {
            return Err(err(
                job,
                &c,
                "expected `VALUES` (the select_union writer is not supported)",
            ));
        }
        // dlt writes a header without rows for a table whose resource yielded nothing.
        c.skip_ws();
        if c.rest().is_empty() || c.eat(";") {
            continue;
        }
        let mut builders: Vec<ColumnValues> = targets
            .iter()
            .map(|&t| ColumnValues::for_type(schema.field(t).data_type()))
            .collect();
        let mut flush = |builders: &mut [ColumnValues], rows: usize| -> Result<bool> {
            Ok(emit(build_batch(
                &schema, &targets, &header, builders, rows, table, job,
            )?))
        };
        let mut rows = 0usize;
        loop {
            parse_row(&mut c, &mut builders, &header, job)?;
            rows += 1;
            if rows >= batch_size {
                if !flush(&mut builders, rows)? {
                    return Ok(());
                }
                rows = 0;
            }
            if c.eat(",") {
                continue;
            }
            if c.eat(";") || c.rest().trim().is_empty() {
                break;
            }
            return Err(err(job, &c, "expected `,` or `;` after a row"));
        }
        if rows > 0 && !flush(&mut builders, rows)? {
            return Ok(());
        }
    }
}

/// `INSERT INTO {}(<columns>)` (or a table name where dlt leaves its placeholder): the columns.
fn parse_header(c: &mut Cursor<'_>, job: &str) -> Result<Vec<String>> {
    if !(c.eat("INSERT") && c.eat("INTO")) {
        return Err(err(job, c, "expected `INSERT INTO {}(...)`"));
    }
    c.skip_ws();
    if !c.eat("{}") {
        // A table name where dlt leaves a placeholder: skip it.
        parse_identifier(c, job)?;
        while c.eat(".") {
            parse_identifier(c, job)?;
        }
    }
    if !c.eat("(") {
        return Err(err(job, c, "expected `(` and a column list"));
    }
    let mut header = Vec::new();
    loop {
        header.push(parse_identifier(c, job)?);
        if c.eat(")") {
            break;
        }
        if !c.eat(",") {
            return Err(err(job, c, "expected `,` or `)` in the column list"));
        }
    }
    Ok(header)
}

/// The position of every header column in the table's Arrow schema; every non-nullable column
/// must be there.
fn header_targets(
    schema: &arrow::datatypes::Schema,
    header: &[String],
    table: &Table,
    job: &str,
) -> Result<Vec<usize>> {
    let mut targets = Vec::with_capacity(header.len());
    for name in header {
        let index = schema
            .index_of(name)
            .ok()
            .or_else(|| schema.fields().iter().position(|f| f.name().eq_ignore_ascii_case(name)))
            .ok_or_else(|| Error::ColumnNotInSchema {
                job: job.to_string(),
                table: table.name.clone(),
                column: name.clone(),
            })?;
        targets.push(index);
    }
    for field in schema.fields() {
        if !field.is_nullable() && !targets.iter().any(|&i| schema.field(i).name() == field.name()) {
            return Err(Error::MissingColumn {
                job: job.to_string(),
                table: table.name.clone(),
                column: field.name().clone(),
            });
        }
    }
    Ok(targets)
}

/// One `(v1, v2, …)` row, appended to `builders`.
fn parse_row(c: &mut Cursor<'_>, builders: &mut [ColumnValues], header: &[String], job: &str) -> Result<()> {
    if !c.eat("(") {
        return Err(err(job, c, "expected `(` starting a row"));
    }
    for (i, builder) in builders.iter_mut().enumerate() {
        if i > 0 && !c.eat(",") {
            return Err(err(
                job,
                c,
                format!("row has fewer values than the {} columns", header.len()),
            ));
        }
        let value = parse_value(c, job)?;
        builder.append(value, &header[i]).map_err(|m| err(job, c, m))?;
    }
    if !c.eat(")") {
        return Err(err(
            job,
            c,
            format!("row has more values than the {} columns", header.len()),
        ));
    }
    Ok(())
}

fn build_batch(
    schema: &arrow::datatypes::SchemaRef,
    targets: &[usize],
    header: &[String],
    builders: &mut [ColumnValues],
    rows: usize,
    table: &Table,
    job: &str,
) -> Result<RecordBatch> {
    let mut columns: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .map(|f| new_null_array(f.data_type(), rows))
        .collect();
    let options = CastOptions {
        safe: false,
        format_options: FormatOptions::default(),
    };
    for ((builder, &target), name) in builders.iter_mut().zip(targets).zip(header) {
        let mut text: ArrayRef = builder.finish();
        let field = schema.field(target);
        if matches!(field.data_type(), ArrowType::Decimal128(..) | ArrowType::Decimal256(..)) {
            text = plain_decimals(&text);
        }
        let typed = match field.data_type() {
            t if t == text.data_type() => text,
            other => cast_with_options(&text, other, &options).map_err(|e| Error::Decode {
                job: job.to_string(),
                message: format!("column `{name}` of table `{}`: {e}", table.name),
            })?,
        };
        columns[target] = typed;
    }
    RecordBatch::try_new(Arc::clone(schema), columns).map_err(|e| Error::Decode {
        job: job.to_string(),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::Schema;
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{Int64Type, TimestampMicrosecondType};

    const SCHEMA: &str = r#"{"name":"s","engine_version":11,"tables":{"_dlt_pipeline_state":{"name":"_dlt_pipeline_state",
      "columns":{"version":{"name":"version","data_type":"bigint","nullable":false},
                 "state":{"name":"state","data_type":"text","nullable":false},
                 "created_at":{"name":"created_at","data_type":"timestamp","nullable":false},
                 "hash":{"name":"hash","data_type":"text"}}}}}"#;

    fn parse(text: &str, batch: usize) -> Result<Vec<RecordBatch>> {
        let schema = Schema::from_json(SCHEMA, "schema.json").unwrap();
        let table = schema.table("_dlt_pipeline_state").unwrap();
        let mut out = Vec::new();
        parse_insert_values(text, table, batch, "job", &mut |b| {
            out.push(b);
            true
        })?;
        Ok(out)
    }

    #[test]
    fn parses_dlt_escaping() {
        let text = "INSERT INTO {}(\"version\",\"state\",\"created_at\",\"hash\")\nVALUES\n\
            (1,E'it''s\\na \\\\x',  '2026-11-22T20:38:33.198469+00:00',NULL),\n\
            (2,'plain',  '2026-11-22 20:38:33+00:00'::timestamptz,E'h\\u00e9');";
        let batches = parse(text, 1).unwrap();
        assert_eq!(batches.len(), 2);
        let b = &batches[0];
        assert_eq!(b.column(0).as_primitive::<Int64Type>().value(0), 1);
        assert_eq!(b.column(1).as_string::<i32>().value(0), "it's\na \\x");
        assert_eq!(
            b.column(2).as_primitive::<TimestampMicrosecondType>().value(0),
            1_795_379_913_198_469
        );
        assert!(b.column(3).is_null(0));
        assert_eq!(batches[1].column(3).as_string::<i32>().value(0), "hé");
        assert_eq!(parse(text, 100).unwrap()[0].num_rows(), 2);
    }

    const BINARY: &str = r#"{"name":"s","engine_version":11,"tables":{"t":{"name":"t",
      "columns":{"id":{"name":"id","data_type":"bigint"},"b":{"name":"b","data_type":"binary"}}}}}"#;

    fn parse_binary(text: &str) -> Result<Vec<RecordBatch>> {
        let schema = Schema::from_json(BINARY, "schema.json").unwrap();
        let mut out = Vec::new();
        parse_insert_values(text, schema.table("t").unwrap(), 100, "job", &mut |b| {
            out.push(b);
            true
        })?;
        Ok(out)
    }

    #[test]
    fn binary_literals_of_both_destinations_are_bytes() {
        // DuckDB writes from_base64('…'), PostgreSQL the bytea hex form; both are 00 01 ff.
        for text in [
            "INSERT INTO {}(\"id\",\"b\")\nVALUES\n(1,from_base64('AAH/')),(2,from_base64('')),(3,NULL);",
            "INSERT INTO {}(\"id\",\"b\")\nVALUES\n(1,'\\x0001ff'),(2,'\\x'),(3,NULL);",
            "INSERT INTO {}(\"id\",\"b\")\nVALUES\n(1,E'\\\\x0001ff'),(2,E'\\\\x'),(3,NULL);",
        ] {
            let batches = parse_binary(text).unwrap();
            let b = batches[0].column(1).as_binary::<i32>();
            assert_eq!(b.value(0), [0u8, 1, 255], "{text}");
            assert_eq!(b.value(1), [0u8; 0], "{text}");
            assert!(b.is_null(2), "{text}");
        }
        let bad = "INSERT INTO {}(\"id\",\"b\")\nVALUES\n(1,from_base64('**'));";
        assert!(matches!(parse_binary(bad), Err(Error::Decode { .. })));
    }

    #[test]
    fn exponent_notation_becomes_plain_decimals() {
        for (value, plain) in [
            ("-1E-9", "-0.000000001"),
            ("1.5e3", "1500"),
            ("+12.345E1", "123.45"),
            ("1E+2", "100"),
            ("0.5E0", "0.5"),
        ] {
            assert_eq!(expand_exponent(value).as_deref(), Some(plain), "{value}");
        }
        assert_eq!(expand_exponent("12.5"), None);
        assert_eq!(expand_exponent("E5"), None);
        assert_eq!(expand_exponent("1e99999"), None);
    }

    #[test]
    fn a_header_without_rows_is_an_empty_job() {
        // dlt's file for a replace whose resource yielded nothing.
        for text in [
            "INSERT INTO {}(\"id\",\"b\")\nVALUES\n",
            "INSERT INTO {}(\"id\",\"b\")\nVALUES\n;",
        ] {
            assert!(parse_binary(text).unwrap().is_empty(), "{text}");
        }
    }

    #[test]
    fn names_what_is_wrong() {
        let unknown = "INSERT INTO {}(\"version\",\"state\",\"created_at\",\"nope\")\nVALUES\n(1,'a','2024-01-01',1);";
        assert!(matches!(parse(unknown, 10), Err(Error::ColumnNotInSchema { column, .. }) if column == "nope"));
        let missing = "INSERT INTO {}(\"version\",\"state\")\nVALUES\n(1,'a');";
        assert!(matches!(parse(missing, 10), Err(Error::MissingColumn { column, .. }) if column == "created_at"));
        let short = "INSERT INTO {}(\"version\",\"state\",\"created_at\")\nVALUES\n(1,'a');";
        assert!(parse(short, 10).unwrap_err().to_string().contains("fewer values"));
        let bad_int = "INSERT INTO {}(\"version\",\"state\",\"created_at\")\nVALUES\n(x,'a','2024-01-01');";
        let e = parse(bad_int, 10).unwrap_err().to_string();
        assert!(e.contains("`version`"), "{e}");
        assert!(parse("INSERT INTO {}(\"state\"\nVALUES", 10).is_err());
        assert!(parse("DROP TABLE x;", 10).is_err());
        let unterminated = "INSERT INTO {}(\"version\",\"state\",\"created_at\")\nVALUES\n(1,'a";
        assert!(
            parse(unterminated, 10)
                .unwrap_err()
                .to_string()
                .contains("unterminated")
        );
    }
}
