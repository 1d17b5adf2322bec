//! Reading the text columns of small query results and writing timestamps as literals: shared
//! by the migration's catalog reads and the journal.

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::DataType as ArrowType;

use crate::error::{Error, Result};

/// Column `index` of `batch` as optional strings (any type cast to text).
/// A result with fewer columns than asked for is the destination's bug, reported, not a panic.
pub(crate) fn string_column(batch: &RecordBatch, index: usize) -> Result<Vec<Option<String>>> {
    if index >= batch.num_columns() {
        return Err(Error::Internal(format!(
            "a catalog query answered {} columns, column {index} was asked for",
            batch.num_columns()
        )));
    }
    let column = arrow::compute::cast(batch.column(index), &ArrowType::Utf8)
        .map_err(|e| Error::Internal(format!("catalog column {index} is not text: {e}")))?;
    let strings = column.as_string::<i32>();
    Ok((0..strings.len())
        .map(|i| strings.is_valid(i).then(|| strings.value(i).to_string()))
        .collect())
}

/// Now, as the timestamp literal dlt's bookkeeping rows carry (UTC, microseconds).
pub(crate) fn now_literal() -> String {
    chrono::Utc::now().format("%Y-%m-%d %H:%M:%S%.6f+00:00").to_string()
}
