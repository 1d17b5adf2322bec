//! dlt's column types as Delta stores them, the way dlt's filesystem destination writes them:
//! Delta has no time, no 256-bit decimal and no unsigned integers, so `time`, `wei` and decimals
//! wider than 38 digits are text; timestamps are microseconds (UTC, or without a zone).
//! (berth's own types never include unsigned integers.)

use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, RecordBatch, StringArray};
use arrow::datatypes::{DataType as ArrowType, Field, Schema as ArrowSchema, SchemaRef, TimeUnit};
use berth_model::{Column, DataType, Table};

/// The Arrow type a column has in its Delta table.
pub fn delta_type(column: &Column) -> ArrowType {
    match berth_model::read::arrow_type(column) {
        ArrowType::Time32(_) | ArrowType::Time64(_) | ArrowType::Decimal256(..) | ArrowType::Null => ArrowType::Utf8,
        ArrowType::Timestamp(_, zone) => ArrowType::Timestamp(TimeUnit::Microsecond, zone),
        other => other,
    }
}

/// The Arrow schema of `table`'s Delta table: its complete columns, all nullable (as dlt creates
/// them: a NOT NULL column could not be added to a table that has rows).
pub fn delta_schema(table: &Table) -> SchemaRef {
    Arc::new(ArrowSchema::new(
        table
            .complete_columns()
            .map(|c| Field::new(&c.name, delta_type(c), true))
            .collect::<Vec<_>>(),
    ))
}

/// The dlt type a Delta column of Arrow type `found` can hold values of `expected` in, by family:
/// text holds anything dlt stores as text in Delta.
pub fn compatible(expected: &ArrowType, found: &ArrowType) -> bool {
    use ArrowType as A;
    let family = |t: &ArrowType| match t {
        A::Utf8 | A::LargeUtf8 | A::Utf8View => 0,
        A::Int8 | A::Int16 | A::Int32 | A::Int64 => 1,
        A::Float32 | A::Float64 => 2,
        A::Decimal128(..) | A::Decimal256(..) => 3,
        A::Boolean => 4,
        A::Timestamp(_, Some(_)) => 5,
        A::Timestamp(_, None) => 6,
        A::Date32 | A::Date64 => 7,
        A::Binary | A::LargeBinary | A::BinaryView => 8,
        _ => 9,
    };
    family(expected) == family(found)
}

/// The dlt type name of a column, for messages.
pub fn dlt_type_name(column: &Column) -> &'static str {
    column.data_type.map_or("text", DataType::as_str)
}

/// `batch` as rows of a Delta table with `schema`: columns by name, cast to the table's types,
/// missing ones NULL. Times become text as dlt writes them into Delta (pyarrow's cast: always
/// six fractional digits, `12:30:00.000000`).
pub fn to_delta(batch: &RecordBatch, schema: &SchemaRef) -> berth_plan::Result<RecordBatch> {
    let mut fields = Vec::with_capacity(batch.num_columns());
    let mut columns = Vec::with_capacity(batch.num_columns());
    for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
        let wants_text = schema.field_with_name(field.name()).is_ok_and(|f| {
            matches!(
                f.data_type(),
                ArrowType::Utf8 | ArrowType::LargeUtf8 | ArrowType::Utf8View
            )
        });
        match field.data_type() {
            ArrowType::Time32(_) | ArrowType::Time64(_) if wants_text => {
                columns.push(times_as_text(column)?);
                fields.push(Field::new(field.name(), ArrowType::Utf8, true));
            }
            _ => {
                columns.push(Arc::clone(column));
                fields.push(field.as_ref().clone());
            }
        }
    }
    let options = arrow::array::RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    let converted = RecordBatch::try_new_with_options(Arc::new(ArrowSchema::new(fields)), columns, &options)?;
    berth_plan::exec::conform(&converted, schema)
}

fn times_as_text(column: &ArrayRef) -> berth_plan::Result<ArrayRef> {
    let micros = arrow::compute::cast(column, &ArrowType::Time64(TimeUnit::Microsecond))?;
    let micros = micros.as_primitive::<arrow::datatypes::Time64MicrosecondType>();
    let text: StringArray = micros
        .iter()
        .map(|v| {
            v.and_then(|us| {
                let secs = u32::try_from(us.div_euclid(1_000_000)).ok()?;
                let nanos = u32::try_from(us.rem_euclid(1_000_000) * 1000).ok()?;
                chrono::NaiveTime::from_num_seconds_from_midnight_opt(secs, nanos)
                    .map(|t| t.format("%H:%M:%S%.6f").to_string())
            })
        })
        .collect();
    Ok(Arc::new(text))
}
