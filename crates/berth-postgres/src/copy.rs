//! Arrow → PostgreSQL binary `COPY`, driven by the **target column's type** from the catalog.
//!
//! Each Arrow column is first cast (strictly: overflow is an error, never a wrapped value) to the
//! one Arrow type that matches its target, then rows are written in PostgreSQL's binary COPY format:
//! a header, per row an `i16` field count and per field an `i32` length (`-1` for NULL) followed by
//! the value in the type's binary send format, and a `-1` trailer.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BinaryArray, BooleanArray, RecordBatch, StringArray};
use arrow::buffer::NullBuffer;
use arrow::compute::{CastOptions, cast_with_options};
use arrow::datatypes::{
    DataType as ArrowType, Decimal128Type, Decimal256Type, DecimalType, Float32Type, Float64Type, Int16Type, Int32Type,
    Int64Type, Time64MicrosecondType, TimeUnit, TimestampMicrosecondType,
};
use bytes::{BufMut, BytesMut};

/// File header: signature, flags, header extension length.
pub const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";
/// File trailer: a field count of -1.
pub const TRAILER: [u8; 2] = (-1i16).to_be_bytes();

/// Microseconds between the Unix epoch and PostgreSQL's (2000-01-01).
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;
/// Days between the Unix epoch and PostgreSQL's.
const PG_EPOCH_DAYS: i32 = 10_957;

/// A PostgreSQL column type berth writes in binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PgType {
    /// `smallint`
    Int2,
    /// `integer`
    Int4,
    /// `bigint`
    Int8,
    /// `real`
    Float4,
    /// `double precision`
    Float8,
    /// `numeric`
    Numeric,
    /// `text`, `varchar`, `char`, `name`
    Text,
    /// `boolean`
    Bool,
    /// `timestamp without time zone`
    Timestamp,
    /// `timestamp with time zone`
    Timestamptz,
    /// `date`
    Date,
    /// `time without time zone`
    Time,
    /// `bytea`
    Bytea,
    /// `json`
    Json,
    /// `jsonb`
    Jsonb,
}

impl PgType {
    /// From `information_schema.columns.udt_name`.
    pub fn from_udt_name(udt: &str) -> Option<Self> {
        Some(match udt {
            "int2" => Self::Int2,
            "int4" => Self::Int4,
            "int8" => Self::Int8,
            "float4" => Self::Float4,
            "float8" => Self::Float8,
            "numeric" => Self::Numeric,
            "text" | "varchar" | "bpchar" | "name" => Self::Text,
            "bool" => Self::Bool,
            "timestamp" => Self::Timestamp,
            "timestamptz" => Self::Timestamptz,
            "date" => Self::Date,
            "time" => Self::Time,
            "bytea" => Self::Bytea,
            "json" => Self::Json,
            "jsonb" => Self::Jsonb,
            _ => return None,
        })
    }

    /// The Arrow type values are cast to before encoding (`None`: numeric, encoded from its source).
    fn arrow_type(self) -> Option<ArrowType> {
        Some(match self {
            Self::Int2 => ArrowType::Int16,
            Self::Int4 => ArrowType::Int32,
            Self::Int8 => ArrowType::Int64,
            Self::Float4 => ArrowType::Float32,
            Self::Float8 => ArrowType::Float64,
            Self::Text | Self::Json | Self::Jsonb => ArrowType::Utf8,
            Self::Bool => ArrowType::Boolean,
            Self::Timestamp => ArrowType::Timestamp(TimeUnit::Microsecond, None),
            Self::Timestamptz => ArrowType::Timestamp(TimeUnit::Microsecond, Some(Arc::from("UTC"))),
            Self::Date => ArrowType::Date32,
            Self::Time => ArrowType::Time64(TimeUnit::Microsecond),
            Self::Bytea => ArrowType::Binary,
            Self::Numeric => return None,
        })
    }
}

/// A column ready to be written: its values in the Arrow type matching the target.
#[derive(Debug)]
pub struct Prepared {
    target: PgType,
    array: ArrayRef,
    column: String,
}

/// Casts `array` for a column of type `target`. Errors name the column.
pub fn prepare(array: &ArrayRef, target: PgType, column: &str) -> Result<Prepared, String> {
    let options = CastOptions {
        safe: false,
        ..Default::default()
    };
    let unwrapped = match array.data_type() {
        ArrowType::Dictionary(_, value) => cast_with_options(array, value, &options),
        // A json column written as structs and lists (pyarrow, arrow-rs): its documents.
        t if berth_model::read::is_nested(t) && matches!(target, PgType::Json | PgType::Jsonb | PgType::Text) => {
            berth_model::read::nested_to_json(array)
        }
        _ => Ok(Arc::clone(array)),
    }
    .map_err(|e| format!("column `{column}`: {e}"))?;
    let array = match target.arrow_type() {
        Some(t) if unwrapped.data_type() != &t => {
            cast_with_options(&unwrapped, &t, &options).map_err(|e| format!("column `{column}`: {e}"))?
        }
        // Integers for a numeric column: as decimals of scale 0 (every integer type fits in 38
        // digits), so they are encoded straight from the integer too.
        None if target == PgType::Numeric && unwrapped.data_type().is_integer() => {
            cast_with_options(&unwrapped, &ArrowType::Decimal128(38, 0), &options)
                .map_err(|e| format!("column `{column}`: {e}"))?
        }
        _ => unwrapped,
    };
    if target == PgType::Numeric
        && !matches!(
            array.data_type(),
            ArrowType::Decimal128(..)
                | ArrowType::Decimal256(..)
                | ArrowType::Int8
                | ArrowType::Int16
                | ArrowType::Int32
                | ArrowType::Int64
                | ArrowType::UInt8
                | ArrowType::UInt16
                | ArrowType::UInt32
                | ArrowType::UInt64
                | ArrowType::Float32
                | ArrowType::Float64
                | ArrowType::Utf8
                | ArrowType::Null
        )
    {
        return Err(format!(
            "column `{column}`: {} values cannot be written to a numeric column",
            array.data_type()
        ));
    }
    Ok(Prepared {
        target,
        array,
        column: column.to_string(),
    })
}

/// A prepared column's values, downcast once per batch so the row loop only branches on the type.
enum Values<'a> {
    Fixed2(&'a [i16]),
    Fixed4(&'a [i32]),
    Fixed8(&'a [i64]),
    Float4(&'a [f32]),
    Float8(&'a [f64]),
    Bool(&'a BooleanArray),
    Text(&'a StringArray),
    Jsonb(&'a StringArray),
    Bytea(&'a BinaryArray),
    /// Microseconds since the Unix epoch, shifted to PostgreSQL's.
    Micros(&'a [i64]),
    /// Days since the Unix epoch, shifted to PostgreSQL's.
    Days(&'a [i32]),
    /// Unscaled decimals and their scale (≥ 0), encoded straight from the integer.
    Decimal(&'a [i128], i8),
    /// Any other numeric source, encoded from its text.
    Numeric,
}

struct View<'a> {
    values: Values<'a>,
    nulls: Option<&'a NullBuffer>,
    column: &'a Prepared,
}

impl<'a> View<'a> {
    fn new(column: &'a Prepared) -> Self {
        let array = column.array.as_ref();
        let values = match column.target {
            PgType::Int2 => Values::Fixed2(array.as_primitive::<Int16Type>().values()),
            PgType::Int4 => Values::Fixed4(array.as_primitive::<Int32Type>().values()),
            PgType::Int8 => Values::Fixed8(array.as_primitive::<Int64Type>().values()),
            PgType::Float4 => Values::Float4(array.as_primitive::<Float32Type>().values()),
            PgType::Float8 => Values::Float8(array.as_primitive::<Float64Type>().values()),
            PgType::Bool => Values::Bool(array.as_boolean()),
            PgType::Text | PgType::Json => Values::Text(array.as_string::<i32>()),
            PgType::Jsonb => Values::Jsonb(array.as_string::<i32>()),
            PgType::Bytea => Values::Bytea(array.as_binary::<i32>()),
            PgType::Timestamp | PgType::Timestamptz => {
                Values::Micros(array.as_primitive::<TimestampMicrosecondType>().values())
            }
            PgType::Time => Values::Fixed8(array.as_primitive::<Time64MicrosecondType>().values()),
            PgType::Date => Values::Days(array.as_primitive::<arrow::datatypes::Date32Type>().values()),
            PgType::Numeric => match array.data_type() {
                ArrowType::Decimal128(_, scale) if *scale >= 0 => {
                    Values::Decimal(array.as_primitive::<Decimal128Type>().values(), *scale)
                }
                _ => Values::Numeric,
            },
        };
        Self {
            values,
            nulls: array.nulls(),
            column,
        }
    }

    /// Bytes the column adds to the COPY data, roughly (to reserve once per batch).
    fn estimate(&self, rows: usize) -> usize {
        let var = |offsets: &[i32]| {
            let span = offsets.last().copied().unwrap_or_default() - offsets.first().copied().unwrap_or_default();
            usize::try_from(span).unwrap_or_default()
        };
        4 * rows
            + match &self.values {
                Values::Fixed2(_) => 2 * rows,
                Values::Fixed4(_) | Values::Float4(_) | Values::Days(_) => 4 * rows,
                Values::Fixed8(_) | Values::Float8(_) | Values::Micros(_) => 8 * rows,
                Values::Bool(_) => rows,
                Values::Text(a) | Values::Jsonb(a) => var(a.value_offsets()) + rows,
                Values::Bytea(a) => var(a.value_offsets()),
                Values::Numeric | Values::Decimal(..) => 16 * rows,
            }
    }

    /// PostgreSQL rejects NUL in text: one scan of the column's bytes, the row only on failure.
    fn check_text(&self) -> Result<(), String> {
        let (Values::Text(array) | Values::Jsonb(array)) = &self.values else {
            return Ok(());
        };
        let offsets = array.value_offsets();
        let (first, last) = (offsets[0] as usize, offsets[offsets.len() - 1] as usize);
        // memchr scans a word at a time: a byte loop here was a tenth of a narrow load's CPU.
        let Some(at) = memchr::memchr(0, &array.values()[first..last]) else {
            return Ok(());
        };
        let row = offsets
            .partition_point(|o| (*o as usize) <= first + at)
            .saturating_sub(1);
        if self.nulls.is_some_and(|n| n.is_null(row)) {
            // Bytes behind a NULL are never written; look at the rows one by one.
            for row in 0..array.len() {
                if !self.nulls.is_some_and(|n| n.is_null(row)) && array.value(row).as_bytes().contains(&0) {
                    return Err(nul_error(self.column, row));
                }
            }
            return Ok(());
        }
        Err(nul_error(self.column, row))
    }
}

fn nul_error(column: &Prepared, row: usize) -> String {
    format!(
        "column `{}`, row {row}: text contains a NUL byte (\\0), which PostgreSQL does not accept",
        column.column
    )
}

/// Encodes the rows of one batch, whose columns were prepared in COPY column order, in ranges,
/// so the COPY buffer stays near a chunk's size whatever the batch size.
pub struct Encoder<'a> {
    views: Vec<View<'a>>,
    count: i16,
    rows: usize,
    bytes_per_row: usize,
}

impl std::fmt::Debug for Encoder<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder")
            .field("columns", &self.views.len())
            .field("rows", &self.rows)
            .finish()
    }
}

impl<'a> Encoder<'a> {
    /// Checks the columns once (NUL bytes in text) and sizes rows.
    pub fn new(columns: &'a [Prepared], rows: usize) -> Result<Self, String> {
        let count = i16::try_from(columns.len()).map_err(|_| "more than 32767 columns".to_string())?;
        let views: Vec<View<'_>> = columns.iter().map(View::new).collect();
        for view in &views {
            view.check_text()?;
        }
        let total = 2 * rows + views.iter().map(|v| v.estimate(rows)).sum::<usize>();
        Ok(Self {
            views,
            count,
            rows,
            bytes_per_row: total.div_ceil(rows.max(1)).max(1),
        })
    }

    /// Rows in the batch.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// About how many rows make `bytes` of COPY data.
    pub fn rows_for(&self, bytes: usize) -> usize {
        (bytes / self.bytes_per_row).max(1)
    }

    /// Appends rows `range` to `out`.
    pub fn encode(&self, range: std::ops::Range<usize>, out: &mut BytesMut) -> Result<(), String> {
        out.reserve(range.len() * self.bytes_per_row);
        let mut numeric = Vec::new();
        for row in range {
            out.put_i16(self.count);
            for view in &self.views {
                if view.nulls.is_some_and(|n| n.is_null(row)) {
                    out.put_i32(-1);
                    continue;
                }
                match &view.values {
                    Values::Fixed2(v) => {
                        out.put_i32(2);
                        out.put_i16(v[row]);
                    }
                    Values::Fixed4(v) => {
                        out.put_i32(4);
                        out.put_i32(v[row]);
                    }
                    Values::Fixed8(v) => {
                        out.put_i32(8);
                        out.put_i64(v[row]);
                    }
                    Values::Float4(v) => {
                        out.put_i32(4);
                        out.put_f32(v[row]);
                    }
                    Values::Float8(v) => {
                        out.put_i32(8);
                        out.put_f64(v[row]);
                    }
                    Values::Micros(v) => {
                        out.put_i32(8);
                        out.put_i64(
                            v[row]
                                .checked_sub(PG_EPOCH_MICROS)
                                .ok_or_else(|| out_of_range(view.column, row))?,
                        );
                    }
                    Values::Days(v) => {
                        out.put_i32(4);
                        out.put_i32(
                            v[row]
                                .checked_sub(PG_EPOCH_DAYS)
                                .ok_or_else(|| out_of_range(view.column, row))?,
                        );
                    }
                    Values::Bool(v) => {
                        out.put_i32(1);
                        out.put_u8(u8::from(v.value(row)));
                    }
                    Values::Text(v) => {
                        let value = v.value(row).as_bytes();
                        out.put_i32(i32::try_from(value.len()).map_err(|_| too_large(view.column, row))?);
                        out.put_slice(value);
                    }
                    Values::Jsonb(v) => {
                        let value = v.value(row).as_bytes();
                        out.put_i32(i32::try_from(value.len() + 1).map_err(|_| too_large(view.column, row))?);
                        out.put_u8(1);
                        out.put_slice(value);
                    }
                    Values::Bytea(v) => {
                        let value = v.value(row);
                        out.put_i32(i32::try_from(value.len()).map_err(|_| too_large(view.column, row))?);
                        out.put_slice(value);
                    }
                    Values::Decimal(..) | Values::Numeric => {
                        numeric.clear();
                        // Straight from a decimal's integer where it can, else through the text.
                        let direct = matches!(view.values, Values::Decimal(v, scale) if encode_decimal(v[row], scale, &mut numeric));
                        if !direct {
                            encode_numeric(&numeric_text(view.column.array.as_ref(), row), &mut numeric)
                                .map_err(|e| format!("column `{}`, row {row}: {e}", view.column.column))?;
                        }
                        put(out, &numeric);
                    }
                }
            }
        }
        Ok(())
    }
}

/// Encodes all rows of one batch, whose columns were prepared in COPY column order.
pub fn encode_rows(columns: &[Prepared], rows: usize, out: &mut BytesMut) -> Result<(), String> {
    Encoder::new(columns, rows)?.encode(0..rows, out)
}

fn put(out: &mut BytesMut, value: &[u8]) {
    out.put_i32(value.len() as i32);
    out.put_slice(value);
}

fn out_of_range(column: &Prepared, row: usize) -> String {
    format!(
        "column `{}`, row {row}: date or timestamp out of PostgreSQL's range",
        column.column
    )
}

fn too_large(column: &Prepared, row: usize) -> String {
    format!("column `{}`, row {row}: value larger than 2 GiB", column.column)
}

/// The decimal text of a numeric source value.
fn numeric_text(array: &dyn Array, row: usize) -> String {
    match array.data_type() {
        ArrowType::Decimal128(p, s) => {
            Decimal128Type::format_decimal(array.as_primitive::<Decimal128Type>().value(row), *p, *s)
        }
        ArrowType::Decimal256(p, s) => {
            Decimal256Type::format_decimal(array.as_primitive::<Decimal256Type>().value(row), *p, *s)
        }
        ArrowType::Float64 => float_text(array.as_primitive::<Float64Type>().value(row)),
        ArrowType::Float32 => float_text(f64::from(array.as_primitive::<Float32Type>().value(row))),
        ArrowType::Utf8 => array.as_string::<i32>().value(row).to_string(),
        _ => arrow::util::display::ArrayFormatter::try_new(array, &Default::default())
            .map(|f| f.value(row).to_string())
            .unwrap_or_default(),
    }
}

fn float_text(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "Infinity".into() } else { "-Infinity".into() }
    } else {
        format!("{v}")
    }
}

/// PostgreSQL's binary `numeric` of the decimal `value`·10^-`scale`, straight from the integer: the
/// same bytes as [`encode_numeric`] of its text, without making the text. `false` (nothing written)
/// for a negative scale or one over 38: the caller takes the text.
pub fn encode_decimal(value: i128, scale: i8, out: &mut Vec<u8>) -> bool {
    let Some(scale) = u32::try_from(scale).ok().filter(|s| *s <= 38) else {
        return false;
    };
    let (mut int, mut frac) = div_rem(value.unsigned_abs(), 10u128.pow(scale));
    // Base-10000 digits, least significant first: the fraction's, padded with zeros on the right
    // to whole groups of four digits, then the integer's (u128::MAX has 39 decimal digits).
    let mut groups = [0u16; 20];
    let mut count = 0;
    let fraction_groups = scale.div_ceil(4) as usize;
    let pad = (4 - scale % 4) % 4;
    while count < fraction_groups {
        let (take, shift) = if count == 0 {
            (10u128.pow(4 - pad), 10u128.pow(pad))
        } else {
            (10_000, 1)
        };
        let (rest, group) = div_rem(frac, take);
        groups[count] = (group * shift) as u16;
        frac = rest;
        count += 1;
    }
    while int != 0 {
        let (rest, group) = div_rem(int, 10_000);
        groups[count] = group as u16;
        int = rest;
        count += 1;
    }
    let leading = groups[..count].iter().rev().take_while(|g| **g == 0).count();
    let trailing = groups[..count - leading].iter().take_while(|g| **g == 0).count();
    let digits = &groups[trailing..count - leading];
    let weight = if digits.is_empty() {
        0
    } else {
        (count - leading) as i32 - 1 - fraction_groups as i32
    };
    let sign: u16 = if value < 0 && !digits.is_empty() { 0x4000 } else { 0 };
    out.extend_from_slice(&(digits.len() as i16).to_be_bytes());
    out.extend_from_slice(&(weight as i16).to_be_bytes());
    out.extend_from_slice(&sign.to_be_bytes());
    out.extend_from_slice(&(scale as u16).to_be_bytes());
    for g in digits.iter().rev() {
        out.extend_from_slice(&g.to_be_bytes());
    }
    true
}

/// Quotient and remainder, in 64-bit arithmetic where both operands fit (most decimals do): a
/// 128-bit division is a library call, a 64-bit one by a constant a multiplication.
fn div_rem(x: u128, d: u128) -> (u128, u128) {
    match (u64::try_from(x), u64::try_from(d)) {
        (Ok(x), Ok(d)) => (u128::from(x / d), u128::from(x % d)),
        _ => (x / d, x % d),
    }
}

/// PostgreSQL's binary `numeric`: `ndigits`, `weight`, `sign`, `dscale`, then base-10000 digits.
pub fn encode_numeric(text: &str, out: &mut Vec<u8>) -> Result<(), String> {
    let special = |sign: u16, out: &mut Vec<u8>| {
        out.extend_from_slice(&0i16.to_be_bytes());
        out.extend_from_slice(&0i16.to_be_bytes());
        out.extend_from_slice(&sign.to_be_bytes());
        out.extend_from_slice(&0u16.to_be_bytes());
    };
    match text {
        "NaN" => {
            special(0xC000, out);
            return Ok(());
        }
        "Infinity" => {
            special(0xD000, out);
            return Ok(());
        }
        "-Infinity" => {
            special(0xF000, out);
            return Ok(());
        }
        _ => {}
    }
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let (int_part, frac_part) = digits.split_once('.').unwrap_or((digits, ""));
    if int_part.is_empty() && frac_part.is_empty()
        || !int_part.bytes().chain(frac_part.bytes()).all(|b| b.is_ascii_digit())
    {
        return Err(format!("`{text}` is not a decimal number"));
    }
    let dscale = u16::try_from(frac_part.len()).map_err(|_| format!("`{text}` has too many decimals"))?;
    let int_part = int_part.trim_start_matches('0');
    // Group digits by four around the decimal point.
    let int_pad = (4 - int_part.len() % 4) % 4;
    let frac_pad = (4 - frac_part.len() % 4) % 4;
    let mut all = String::with_capacity(int_pad + int_part.len() + frac_part.len() + frac_pad);
    all.extend(std::iter::repeat_n('0', int_pad));
    all.push_str(int_part);
    let int_groups = all.len() / 4;
    all.push_str(frac_part);
    all.extend(std::iter::repeat_n('0', frac_pad));
    let mut groups: Vec<i16> = all
        .as_bytes()
        .chunks(4)
        .map(|c| c.iter().fold(0i16, |acc, d| acc * 10 + i16::from(d - b'0')))
        .collect();
    let mut weight = int_groups as i32 - 1;
    let leading = groups.iter().take_while(|g| **g == 0).count();
    groups.drain(..leading);
    weight -= leading as i32;
    while groups.last() == Some(&0) {
        groups.pop();
    }
    if groups.is_empty() {
        weight = 0;
    }
    let ndigits = i16::try_from(groups.len()).map_err(|_| format!("`{text}` has too many digits"))?;
    let weight = i16::try_from(weight).map_err(|_| format!("`{text}` is out of numeric range"))?;
    out.extend_from_slice(&ndigits.to_be_bytes());
    out.extend_from_slice(&weight.to_be_bytes());
    out.extend_from_slice(&(if negative && !groups.is_empty() { 0x4000u16 } else { 0 }).to_be_bytes());
    out.extend_from_slice(&dscale.to_be_bytes());
    for g in groups {
        out.extend_from_slice(&g.to_be_bytes());
    }
    Ok(())
}

/// Decodes PostgreSQL's binary `numeric` to its decimal text.
pub fn decode_numeric(raw: &[u8]) -> Result<String, String> {
    let word = |i: usize| -> Result<u16, String> {
        raw.get(i..i + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
            .ok_or_else(|| "truncated numeric".to_string())
    };
    let ndigits = word(0)? as usize;
    let weight = word(2)? as i16 as i32;
    let sign = word(4)?;
    let dscale = word(6)? as usize;
    match sign {
        0xC000 => return Ok("NaN".into()),
        0xD000 => return Ok("Infinity".into()),
        0xF000 => return Ok("-Infinity".into()),
        _ => {}
    }
    let digits: Vec<u16> = (0..ndigits).map(|i| word(8 + 2 * i)).collect::<Result<_, _>>()?;
    let mut int = String::new();
    for i in 0..=weight.max(-1) {
        let d = digits.get(i as usize).copied().unwrap_or(0);
        if int.is_empty() {
            if d != 0 {
                int.push_str(&d.to_string());
            }
        } else {
            int.push_str(&format!("{d:04}"));
        }
    }
    if int.is_empty() {
        int.push('0');
    }
    let mut frac = String::new();
    let mut index = weight + 1;
    while frac.len() < dscale {
        let d = if index < 0 {
            0
        } else {
            digits.get(index as usize).copied().unwrap_or(0)
        };
        frac.push_str(&format!("{d:04}"));
        index += 1;
    }
    frac.truncate(dscale);
    let sign = if sign == 0x4000 { "-" } else { "" };
    Ok(if dscale > 0 {
        format!("{sign}{int}.{frac}")
    } else {
        format!("{sign}{int}")
    })
}

/// Encodes a whole batch (columns already in COPY order) into `out`.
pub fn encode_batch(batch: &RecordBatch, targets: &[(String, PgType)], out: &mut BytesMut) -> Result<(), String> {
    encode_rows(&prepare_batch(batch, targets)?, batch.num_rows(), out)
}

/// Prepares every column of `batch` for its target (in COPY column order).
pub fn prepare_batch(batch: &RecordBatch, targets: &[(String, PgType)]) -> Result<Vec<Prepared>, String> {
    batch
        .columns()
        .iter()
        .zip(targets)
        .map(|(array, (name, target))| prepare(array, *target, name))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_round_trips() {
        for text in [
            "0",
            "1",
            "-1",
            "10000",
            "12345.678",
            "0.000100",
            "-0.5",
            "99999999999999999999999999999999999999",
            "0.000000001",
            "480314.230000000",
            "123456789012345678901234567890.123456789",
            "NaN",
            "Infinity",
            "-Infinity",
        ] {
            let mut raw = Vec::new();
            encode_numeric(text, &mut raw).unwrap();
            assert_eq!(decode_numeric(&raw).unwrap(), text, "{text}");
        }
        let mut raw = Vec::new();
        assert!(encode_numeric("1.2.3", &mut raw).is_err());
        assert!(encode_numeric("abc", &mut raw).is_err());
        // 10000.5 = digits [1, 0, 5000], weight 1, dscale 1
        raw.clear();
        encode_numeric("10000.5", &mut raw).unwrap();
        assert_eq!(raw, [0, 3, 0, 1, 0, 0, 0, 1, 0, 1, 0, 0, 0x13, 0x88]);
    }

    /// The bytes `encode_numeric` makes of the decimal's text, or `None` where the direct path
    /// gives way to the text.
    fn both_ways(value: i128, scale: i8) -> (Option<Vec<u8>>, Vec<u8>) {
        let mut direct = Vec::new();
        let handled = encode_decimal(value, scale, &mut direct);
        let mut text = Vec::new();
        encode_numeric(&Decimal128Type::format_decimal(value, 38, scale), &mut text).unwrap();
        (handled.then_some(direct), text)
    }

    #[test]
    fn decimals_encode_straight_as_their_text_does() {
        for scale in 0..=38i8 {
            for value in [
                0,
                1,
                -1,
                9_999,
                10_000,
                -10_000,
                123_456_789,
                10i128.pow(18),
                -(10i128.pow(37) + 5),
            ] {
                let (direct, text) = both_ways(value, scale);
                assert_eq!(direct.as_ref(), Some(&text), "{value} scale {scale}");
            }
            // 38 nines, the most a decimal(38, s) holds.
            let (direct, text) = both_ways(-(10i128.pow(38) - 1), scale);
            assert_eq!(direct.as_ref(), Some(&text), "scale {scale}");
        }
        // Negative scales and scales over 38 take the text path.
        assert!(!encode_decimal(5, -2, &mut Vec::new()));
        assert!(!encode_decimal(5, 39, &mut Vec::new()));
    }

    proptest::proptest! {
        #[test]
        fn any_decimal_encodes_as_its_text(value in -(10i128.pow(38) - 1)..10i128.pow(38), scale in 0i8..=38) {
            let (direct, text) = both_ways(value, scale);
            proptest::prop_assert_eq!(direct, Some(text));
        }
    }

    #[test]
    fn integers_for_numeric_columns_encode_as_decimals() {
        let ints: ArrayRef = Arc::new(arrow::array::UInt64Array::from(vec![u64::MAX, 0]));
        let prepared = prepare(&ints, PgType::Numeric, "n").unwrap();
        let mut out = BytesMut::new();
        encode_rows(&[prepared], 2, &mut out).unwrap();
        let mut expected = BytesMut::new();
        for text in [u64::MAX.to_string(), "0".to_string()] {
            let mut raw = Vec::new();
            encode_numeric(&text, &mut raw).unwrap();
            expected.put_i16(1);
            put(&mut expected, &raw);
        }
        assert_eq!(out, expected);
    }

    #[test]
    fn overflow_and_nul_are_errors_naming_the_column() {
        let big: ArrayRef = Arc::new(arrow::array::Int64Array::from(vec![3_000_000_000i64]));
        let err = prepare(&big, PgType::Int4, "qty").unwrap_err();
        assert!(err.contains("`qty`"), "{err}");
        let nul: ArrayRef = Arc::new(arrow::array::StringArray::from(vec!["a\0b"]));
        let prepared = prepare(&nul, PgType::Text, "name").unwrap();
        let err = encode_rows(&[prepared], 1, &mut BytesMut::new()).unwrap_err();
        assert!(err.contains("`name`") && err.contains("NUL"), "{err}");
    }

    #[test]
    fn nul_is_found_in_its_row_of_a_slice_and_ignored_behind_a_null() {
        let text = arrow::array::StringArray::from(vec![Some("a\0"), Some("bc"), Some("d"), Some("e\0f"), Some("g")]);
        let sliced: ArrayRef = Arc::new(text.slice(1, 4));
        let prepared = prepare(&sliced, PgType::Text, "name").unwrap();
        let err = encode_rows(std::slice::from_ref(&prepared), 4, &mut BytesMut::new()).unwrap_err();
        assert_eq!(err, nul_error(&prepared, 2));
        let hidden: ArrayRef = Arc::new(arrow::array::StringArray::from(vec![Some("a"), None, Some("b")]));
        // A NULL's bytes are never sent: give the NULL row bytes with a NUL behind its validity.
        let data = hidden
            .to_data()
            .into_builder()
            .buffers(vec![
                arrow::buffer::Buffer::from_slice_ref([0i32, 1, 3, 4]),
                arrow::buffer::Buffer::from_slice_ref(b"a\0xb"),
            ])
            .build()
            .unwrap();
        let hidden: ArrayRef = Arc::new(arrow::array::StringArray::from(data));
        let prepared = prepare(&hidden, PgType::Text, "name").unwrap();
        let mut out = BytesMut::new();
        encode_rows(&[prepared], 3, &mut out).unwrap();
        let clean: ArrayRef = Arc::new(arrow::array::StringArray::from(vec![Some("a"), None, Some("b")]));
        let mut expected = BytesMut::new();
        encode_rows(&[prepare(&clean, PgType::Text, "name").unwrap()], 3, &mut expected).unwrap();
        assert_eq!(out, expected);
    }

    #[test]
    fn encodes_rows_in_the_binary_layout() {
        let ints: ArrayRef = Arc::new(arrow::array::Int32Array::from(vec![Some(7), None]));
        let prepared = prepare(&ints, PgType::Int8, "id").unwrap();
        let mut out = BytesMut::new();
        encode_rows(&[prepared], 2, &mut out).unwrap();
        let expected: Vec<u8> = [
            &1i16.to_be_bytes()[..],
            &8i32.to_be_bytes(),
            &7i64.to_be_bytes(),
            &1i16.to_be_bytes(),
            &(-1i32).to_be_bytes(),
        ]
        .concat();
        assert_eq!(&out[..], &expected[..]);
    }
}
