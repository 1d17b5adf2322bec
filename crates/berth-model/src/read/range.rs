//! The dates and timestamps every destination stores, checked on every batch read.
//!
//! PostgreSQL stores dates from 4714-11-24 BC to 5874897-12-31 and timestamps from 4714-11-24 BC
//! to 294276-12-31 and refuses anything else; DuckDB turns the extreme values of its types into
//! `infinity` / `-infinity` without a word. The same file must give the same rows or the same
//! error everywhere, so a job with a value outside the range both keep fails by column, before
//! anything of it reaches a destination.

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::{
    DataType as ArrowType, Date32Type, Date64Type, TimeUnit, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType,
};

use crate::error::{Error, Result};

/// The first day every destination stores, in days since 1970-01-01 (4714-11-24 BC, Julian
/// day 0, PostgreSQL's first date).
pub const MIN_DATE_DAYS: i64 = -2_440_588;
/// The first day past the range (5874898-01-01, PostgreSQL's end).
pub const END_DATE_DAYS: i64 = 2_145_042_906;
/// The first timestamp every destination stores, in microseconds since 1970-01-01 UTC
/// (4714-11-24 BC 00:00, PostgreSQL's first).
pub const MIN_TIMESTAMP_MICROS: i64 = -210_866_803_200_000_000;
/// The last one (294247-01-10 04:00:54.775806, DuckDB's last before `infinity`).
pub const MAX_TIMESTAMP_MICROS: i64 = i64::MAX - 1;

const DATE_RANGE: &str = "4714-11-24 BC to 5874897-12-31";
const TIMESTAMP_RANGE: &str = "4714-11-24 BC to 294247-01-10";

/// Is `field` a type this module checks?
pub fn is_checked(data_type: &ArrowType) -> bool {
    matches!(
        data_type,
        ArrowType::Date32 | ArrowType::Date64 | ArrowType::Timestamp(_, _)
    )
}

/// The first value of `array` outside the range, as text with its unit, if any. The range is
/// an interval, so the array's min and max (vectorized kernels) settle the common case.
pub fn first_out_of_range(array: &dyn Array) -> Option<String> {
    let days = |d: i64| (MIN_DATE_DAYS..END_DATE_DAYS).contains(&d);
    let micros = |us: Option<i64>| us.is_some_and(|us| (MIN_TIMESTAMP_MICROS..=MAX_TIMESTAMP_MICROS).contains(&us));
    match array.data_type() {
        ArrowType::Date32 => first::<Date32Type>(array, |d| days(i64::from(d)), "days from 1970-01-01"),
        ArrowType::Date64 => first::<Date64Type>(array, |ms| days(ms.div_euclid(86_400_000)), "ms from 1970-01-01"),
        ArrowType::Timestamp(TimeUnit::Second, _) => {
            first::<TimestampSecondType>(array, |s| micros(s.checked_mul(1_000_000)), "s from 1970-01-01 UTC")
        }
        ArrowType::Timestamp(TimeUnit::Millisecond, _) => {
            first::<TimestampMillisecondType>(array, |ms| micros(ms.checked_mul(1_000)), "ms from 1970-01-01 UTC")
        }
        ArrowType::Timestamp(TimeUnit::Microsecond, _) => {
            first::<TimestampMicrosecondType>(array, |us| micros(Some(us)), "µs from 1970-01-01 UTC")
        }
        ArrowType::Timestamp(TimeUnit::Nanosecond, _) => {
            first::<TimestampNanosecondType>(array, |ns| micros(Some(ns.div_euclid(1_000))), "ns from 1970-01-01 UTC")
        }
        _ => None,
    }
}

fn first<T>(array: &dyn Array, in_range: impl Fn(T::Native) -> bool, unit: &str) -> Option<String>
where
    T: arrow::datatypes::ArrowNumericType,
    T::Native: std::fmt::Display,
{
    let values = array.as_primitive::<T>();
    let (min, max) = (arrow::compute::min(values), arrow::compute::max(values));
    if min.is_none_or(&in_range) && max.is_none_or(&in_range) {
        return None;
    }
    values
        .iter()
        .flatten()
        .find(|v| !in_range(*v))
        .map(|v| format!("{v} {unit}"))
}

/// Fails on the first date or timestamp of `batch` outside the range, naming job, table and
/// column.
pub fn check_batch(batch: &RecordBatch, job: &str, table: &str) -> Result<()> {
    for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
        if !is_checked(field.data_type()) {
            continue;
        }
        if let Some(value) = first_out_of_range(column.as_ref()) {
            return Err(out_of_range(job, table, field.name(), field.data_type(), value));
        }
    }
    Ok(())
}

/// A date or timestamp outside the range ([`Error::ValueOutOfRange`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "job file `{job}`: column `{column}` of table `{table}` holds {value}, outside the {kind}s every destination stores ({}); DuckDB would turn it into infinity and PostgreSQL refuse it",
    range_of(kind)
)]
pub struct OutOfRange {
    /// The job file.
    pub job: String,
    /// The table.
    pub table: String,
    /// The column.
    pub column: String,
    /// `date` or `timestamp`.
    pub kind: &'static str,
    /// The value, as stored in the file.
    pub value: String,
}

/// The error for `value` of `column`.
pub fn out_of_range(job: &str, table: &str, column: &str, data_type: &ArrowType, value: String) -> Error {
    let kind = match data_type {
        ArrowType::Timestamp(_, _) => "timestamp",
        _ => "date",
    };
    Error::ValueOutOfRange(Box::new(OutOfRange {
        job: job.to_string(),
        table: table.to_string(),
        column: column.to_string(),
        kind,
        value,
    }))
}

/// The range of `kind` (`date` or `timestamp`) every destination stores, for messages.
pub fn range_of(kind: &str) -> &'static str {
    if kind == "timestamp" {
        TIMESTAMP_RANGE
    } else {
        DATE_RANGE
    }
}

/// Do the row-group statistics of a Parquet file prove every date and timestamp column within
/// the range? `false` when they do not, or say too little (no statistics): then the file must be
/// read and checked value by value.
pub fn parquet_statistics_in_range(
    metadata: &parquet::file::metadata::ParquetMetaData,
    schema: &arrow::datatypes::Schema,
) -> bool {
    use parquet::arrow::arrow_reader::statistics::StatisticsConverter;
    let parquet_schema = metadata.file_metadata().schema_descr();
    let row_groups = metadata.row_groups();
    schema
        .fields()
        .iter()
        .filter(|f| is_checked(f.data_type()))
        .all(|field| {
            let Ok(converter) = StatisticsConverter::try_new(field.name(), schema, parquet_schema) else {
                return false;
            };
            let (Ok(mins), Ok(maxes)) = (
                converter.row_group_mins(row_groups.iter()),
                converter.row_group_maxes(row_groups.iter()),
            ) else {
                return false;
            };
            let nulls = converter.row_group_null_counts(row_groups.iter()).ok();
            let known = |stats: &ArrayRef| {
                (0..stats.len()).all(|i| {
                    // No min or max: fine only when the row group holds nothing but NULLs.
                    stats.is_valid(i)
                        || nulls.as_ref().is_some_and(|n| {
                            n.is_valid(i) && i64::try_from(n.value(i)).ok() == Some(row_groups[i].num_rows())
                        })
                })
            };
            known(&mins)
                && known(&maxes)
                && first_out_of_range(mins.as_ref()).is_none()
                && first_out_of_range(maxes.as_ref()).is_none()
        })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Date32Array, Int64Array, TimestampMicrosecondArray, TimestampNanosecondArray};
    use arrow::datatypes::{Field, Schema};
    use bytes::Bytes;
    use parquet::arrow::ArrowWriter;
    use parquet::file::reader::{FileReader, SerializedFileReader};

    use super::*;

    fn statistics_in_range(column: ArrayRef) -> bool {
        let schema = Arc::new(Schema::new(vec![Field::new("c", column.data_type().clone(), true)]));
        let batch = RecordBatch::try_new(Arc::clone(&schema), vec![column]).expect("batch");
        let mut out = Vec::new();
        let mut writer = ArrowWriter::try_new(&mut out, Arc::clone(&schema), None).expect("writer");
        writer.write(&batch).expect("write");
        writer.close().expect("close");
        let reader = SerializedFileReader::new(Bytes::from(out)).expect("reader");
        parquet_statistics_in_range(reader.metadata(), &schema)
    }

    #[test]
    fn the_range_is_what_both_destinations_store() {
        let dates = Date32Array::from(vec![Some(0), None, Some(i32::try_from(MIN_DATE_DAYS).unwrap())]);
        assert_eq!(first_out_of_range(&dates), None);
        let dates = Date32Array::from(vec![0, i32::MAX]);
        assert_eq!(
            first_out_of_range(&dates),
            Some(format!("{} days from 1970-01-01", i32::MAX))
        );
        let micros = TimestampMicrosecondArray::from(vec![MIN_TIMESTAMP_MICROS, MAX_TIMESTAMP_MICROS]);
        assert_eq!(first_out_of_range(&micros), None);
        let micros = TimestampMicrosecondArray::from(vec![MIN_TIMESTAMP_MICROS - 1]);
        assert!(first_out_of_range(&micros).is_some());
        // Nanoseconds cannot leave the range: i64 nanoseconds span 1677 to 2262.
        let nanos = TimestampNanosecondArray::from(vec![i64::MIN, i64::MAX]);
        assert_eq!(first_out_of_range(&nanos), None);
    }

    #[test]
    fn parquet_statistics_decide_whether_a_file_needs_reading() {
        assert!(statistics_in_range(Arc::new(Date32Array::from(vec![Some(1), None]))));
        assert!(statistics_in_range(Arc::new(Date32Array::from(vec![None, None]))));
        assert!(!statistics_in_range(Arc::new(Date32Array::from(vec![1, i32::MIN]))));
        assert!(!statistics_in_range(Arc::new(
            TimestampMicrosecondArray::from(vec![0, i64::MAX]).with_timezone("UTC")
        )));
        assert!(statistics_in_range(Arc::new(Int64Array::from(vec![i64::MAX]))));
    }
}
