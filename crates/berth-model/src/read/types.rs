//! dlt data types as Arrow types, and the check that a job file's columns fit its table.

use std::sync::Arc;

use arrow::datatypes::{DataType as ArrowType, Field, Schema as ArrowSchema, SchemaRef, TimeUnit};

use crate::error::{Error, Result};
use crate::schema::{Column, DataType, Table};

/// Default decimal precision and scale (dlt's `decimal_precision`).
pub(crate) const DEFAULT_DECIMAL: (u8, i8) = (38, 9);

/// The Arrow type dlt's writers use for a column (reference §1.6).
pub fn arrow_type(column: &Column) -> ArrowType {
    let tz = || column.timezone.then(|| Arc::from("UTC"));
    match column.data_type.unwrap_or(DataType::Text) {
        DataType::Text | DataType::Json => ArrowType::Utf8,
        DataType::Double => ArrowType::Float64,
        DataType::Bool => ArrowType::Boolean,
        DataType::Timestamp => ArrowType::Timestamp(time_unit(column.precision), tz()),
        DataType::Bigint => match column.precision {
            Some(p) if p <= 8 => ArrowType::Int8,
            Some(p) if p <= 16 => ArrowType::Int16,
            Some(p) if p <= 32 => ArrowType::Int32,
            _ => ArrowType::Int64,
        },
        DataType::Binary => ArrowType::Binary,
        DataType::Decimal => {
            let precision = column.precision.map_or(DEFAULT_DECIMAL.0, |p| p.clamp(1, 76) as u8);
            let scale = column.scale.map_or(
                if column.precision.is_some() {
                    0
                } else {
                    DEFAULT_DECIMAL.1
                },
                |s| s.min(76) as i8,
            );
            if precision > 38 {
                ArrowType::Decimal256(precision, scale)
            } else {
                ArrowType::Decimal128(precision, scale)
            }
        }
        DataType::Wei => ArrowType::Decimal256(76, 0),
        DataType::Date => ArrowType::Date32,
        DataType::Time => ArrowType::Time64(TimeUnit::Microsecond),
    }
}

fn time_unit(precision: Option<u32>) -> TimeUnit {
    match precision {
        Some(0) => TimeUnit::Second,
        Some(p) if p <= 3 => TimeUnit::Millisecond,
        Some(p) if p > 6 => TimeUnit::Nanosecond,
        _ => TimeUnit::Microsecond,
    }
}

/// The Arrow type a text job (JSONL, CSV, `insert_values`) is decoded to for a column:
/// [`arrow_type`], but timestamps keep every digit their text carries (microseconds, or
/// nanoseconds for a precision over 6). The destination brings them to the column's precision as
/// it does with dlt's own loads of the same text: PostgreSQL and DuckDB round (`…:25.1426` into a
/// precision of 3 is `…:25.143`), and DuckDB's `TIMESTAMP WITH TIME ZONE` keeps microseconds
/// whatever the precision. Decoding to the precision's unit would cut the digits instead.
pub fn text_arrow_type(column: &Column) -> ArrowType {
    match arrow_type(column) {
        ArrowType::Timestamp(TimeUnit::Second | TimeUnit::Millisecond, zone) => {
            ArrowType::Timestamp(TimeUnit::Microsecond, zone)
        }
        other => other,
    }
}

/// An Arrow field for a column.
pub(crate) fn arrow_field(column: &Column) -> Field {
    Field::new(&column.name, arrow_type(column), column.nullable)
}

/// An Arrow field for a column of a text job ([`text_arrow_type`]).
pub(crate) fn text_arrow_field(column: &Column) -> Field {
    Field::new(&column.name, text_arrow_type(column), column.nullable)
}

/// The Arrow schema of a table's complete columns, in order.
pub fn arrow_schema(table: &Table) -> SchemaRef {
    Arc::new(ArrowSchema::new(
        table.complete_columns().map(arrow_field).collect::<Vec<_>>(),
    ))
}

/// The Arrow schema text jobs of a table are decoded to ([`text_arrow_type`]).
pub fn text_arrow_schema(table: &Table) -> SchemaRef {
    Arc::new(ArrowSchema::new(
        table.complete_columns().map(text_arrow_field).collect::<Vec<_>>(),
    ))
}

/// Can values of Arrow type `found` be loaded into a column of dlt type `expected`?
fn fits(expected: DataType, found: &ArrowType) -> bool {
    use ArrowType as A;
    match found {
        A::Null => true,
        A::Dictionary(_, value) => fits(expected, value),
        A::RunEndEncoded(_, value) => fits(expected, value.data_type()),
        _ => match expected {
            DataType::Text => matches!(found, A::Utf8 | A::LargeUtf8 | A::Utf8View),
            DataType::Json => matches!(
                found,
                A::Utf8
                    | A::LargeUtf8
                    | A::Utf8View
                    | A::Struct(_)
                    | A::List(_)
                    | A::LargeList(_)
                    | A::ListView(_)
                    | A::FixedSizeList(..)
                    | A::Map(..)
            ),
            DataType::Double => found.is_floating() || found.is_integer() || matches!(found, A::Decimal128(..)),
            DataType::Bool => matches!(found, A::Boolean),
            DataType::Timestamp => matches!(found, A::Timestamp(..) | A::Date32 | A::Date64),
            DataType::Bigint => found.is_integer(),
            DataType::Binary => matches!(
                found,
                A::Binary | A::LargeBinary | A::BinaryView | A::FixedSizeBinary(_)
            ),
            DataType::Decimal | DataType::Wei => {
                matches!(
                    found,
                    A::Decimal32(..) | A::Decimal64(..) | A::Decimal128(..) | A::Decimal256(..)
                ) || found.is_integer()
            }
            DataType::Date => matches!(found, A::Date32 | A::Date64 | A::Timestamp(..)),
            DataType::Time => matches!(found, A::Time32(_) | A::Time64(_)),
        },
    }
}

/// Checks a job file's columns against its table: every file column must be a complete column of
/// the table with a type that fits, and every NOT NULL column of the table must be in the file.
pub fn check_file_schema(file: &ArrowSchema, table: &Table, job: &str) -> Result<()> {
    for field in file.fields() {
        let column = table
            .columns
            .get(field.name())
            .ok_or_else(|| Error::ColumnNotInSchema {
                job: job.to_string(),
                table: table.name.clone(),
                column: field.name().clone(),
            })?;
        let Some(expected) = column.data_type else {
            // Incomplete columns are never created; a file may still carry them, all NULL.
            if matches!(field.data_type(), ArrowType::Null) {
                continue;
            }
            return Err(Error::ColumnType {
                job: job.to_string(),
                table: table.name.clone(),
                column: field.name().clone(),
                expected: "no data type (incomplete column)",
                found: field.data_type().to_string(),
            });
        };
        if !fits(expected, field.data_type()) {
            return Err(Error::ColumnType {
                job: job.to_string(),
                table: table.name.clone(),
                column: field.name().clone(),
                expected: expected.as_str(),
                found: field.data_type().to_string(),
            });
        }
    }
    for column in table.complete_columns().filter(|c| !c.nullable) {
        if file.field_with_name(&column.name).is_err() {
            return Err(Error::MissingColumn {
                job: job.to_string(),
                table: table.name.clone(),
                column: column.name.clone(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> Table {
        Table::new(
            "t",
            [
                Column::new("id", DataType::Bigint).with_nullable(false),
                Column::new("name", DataType::Text),
                Column::new("amount", DataType::Decimal),
                Column::new("small", DataType::Bigint).with_precision(16),
            ],
        )
    }

    #[test]
    fn maps_types() {
        let t = table();
        let schema = arrow_schema(&t);
        assert_eq!(schema.field(0).data_type(), &ArrowType::Int64);
        assert!(!schema.field(0).is_nullable());
        assert_eq!(schema.field(2).data_type(), &ArrowType::Decimal128(38, 9));
        assert_eq!(schema.field(3).data_type(), &ArrowType::Int16);
        let mut ts = Column::new("ts", DataType::Timestamp);
        assert_eq!(
            arrow_type(&ts),
            ArrowType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
        );
        ts.timezone = false;
        ts.precision = Some(3);
        assert_eq!(arrow_type(&ts), ArrowType::Timestamp(TimeUnit::Millisecond, None));
        // Text keeps its digits; the destination rounds them to the precision.
        assert_eq!(text_arrow_type(&ts), ArrowType::Timestamp(TimeUnit::Microsecond, None));
        ts.precision = Some(0);
        assert_eq!(text_arrow_type(&ts), ArrowType::Timestamp(TimeUnit::Microsecond, None));
        ts.precision = Some(9);
        assert_eq!(text_arrow_type(&ts), ArrowType::Timestamp(TimeUnit::Nanosecond, None));
    }

    #[test]
    fn checks_files_against_the_table() {
        let t = table();
        let ok = ArrowSchema::new(vec![
            Field::new("id", ArrowType::Int32, false),
            Field::new(
                "name",
                ArrowType::Dictionary(Box::new(ArrowType::Int32), Box::new(ArrowType::Utf8)),
                true,
            ),
        ]);
        check_file_schema(&ok, &t, "j").unwrap();
        let extra = ArrowSchema::new(vec![
            Field::new("id", ArrowType::Int64, false),
            Field::new("bogus", ArrowType::Utf8, true),
        ]);
        assert!(
            matches!(check_file_schema(&extra, &t, "j"), Err(Error::ColumnNotInSchema { column, .. }) if column == "bogus")
        );
        let missing = ArrowSchema::new(vec![Field::new("name", ArrowType::Utf8, true)]);
        assert!(
            matches!(check_file_schema(&missing, &t, "j"), Err(Error::MissingColumn { column, .. }) if column == "id")
        );
        let wrong = ArrowSchema::new(vec![Field::new("id", ArrowType::Utf8, false)]);
        let err = check_file_schema(&wrong, &t, "pkg/new_jobs/t.a.0.parquet")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`id`") && err.contains("bigint") && err.contains("t.a.0.parquet"),
            "{err}"
        );
    }
}

/// Is `data_type` a nested Arrow type (struct, list, map) that a `json` column holds as a document?
pub fn is_nested(data_type: &ArrowType) -> bool {
    matches!(
        data_type,
        ArrowType::Struct(_)
            | ArrowType::List(_)
            | ArrowType::LargeList(_)
            | ArrowType::FixedSizeList(..)
            | ArrowType::ListView(_)
            | ArrowType::LargeListView(_)
            | ArrowType::Map(..)
    )
}

/// The values of a nested array (a `json` column written by pyarrow or arrow-rs as structs and
/// lists) as JSON documents, one string per row, NULL where the row is NULL.
pub fn nested_to_json(
    array: &arrow::array::ArrayRef,
) -> std::result::Result<arrow::array::ArrayRef, arrow::error::ArrowError> {
    use arrow::array::{Array, RecordBatch, StringBuilder};
    let field = Field::new("v", array.data_type().clone(), true);
    let batch = RecordBatch::try_new(Arc::new(ArrowSchema::new(vec![field])), vec![Arc::clone(array)])?;
    let mut writer = arrow::json::WriterBuilder::new()
        .with_explicit_nulls(true)
        .build::<_, arrow::json::writer::LineDelimited>(Vec::new());
    writer.write(&batch)?;
    writer.finish()?;
    let text = writer.into_inner();
    let mut out = StringBuilder::with_capacity(array.len(), text.len());
    // One line per row: `{"v":<document>}`.
    for (row, line) in text.split(|b| *b == b'\n').take(array.len()).enumerate() {
        let line = std::str::from_utf8(line).map_err(|e| arrow::error::ArrowError::JsonError(e.to_string()))?;
        match line.strip_prefix("{\"v\":").and_then(|l| l.strip_suffix('}')) {
            Some(document) if !array.is_null(row) => out.append_value(document),
            _ => out.append_null(),
        }
    }
    Ok(Arc::new(out.finish()))
}

#[cfg(test)]
mod nested_tests {
    use super::*;
    use arrow::array::{Array, ArrayRef, AsArray, Int64Array, ListArray, StructArray};
    use arrow::datatypes::Int64Type;

    #[test]
    fn nested_values_become_json_documents() {
        let list: ArrayRef = Arc::new(ListArray::from_iter_primitive::<Int64Type, _, _>(vec![
            Some(vec![Some(1), None]),
            None,
            Some(vec![]),
        ]));
        let text = nested_to_json(&list).unwrap();
        let text = text.as_string::<i32>();
        assert_eq!(text.value(0), "[1,null]");
        assert!(text.is_null(1));
        assert_eq!(text.value(2), "[]");
        let a: ArrayRef = Arc::new(Int64Array::from(vec![Some(1), None]));
        let s: ArrayRef = Arc::new(StructArray::from(vec![(
            Arc::new(Field::new("a", ArrowType::Int64, true)),
            a,
        )]));
        let text = nested_to_json(&s).unwrap();
        assert_eq!(text.as_string::<i32>().value(0), "{\"a\":1}");
        assert_eq!(text.as_string::<i32>().value(1), "{\"a\":null}");
        assert!(is_nested(s.data_type()) && !is_nested(&ArrowType::Utf8));
    }
}
