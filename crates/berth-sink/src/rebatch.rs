//! Cuts a stream of record batches of any size into batches of exactly `size` rows (the last may
//! be shorter), after skipping the rows an earlier run already sent.

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;

/// Collects rows until a batch of `size` is full.
#[derive(Debug)]
pub(crate) struct Rebatcher {
    schema: SchemaRef,
    size: usize,
    skip: u64,
    pending: Vec<RecordBatch>,
    pending_rows: usize,
}

impl Rebatcher {
    pub(crate) fn new(schema: SchemaRef, size: usize, skip: u64) -> Self {
        Self {
            schema,
            size: size.max(1),
            skip,
            pending: Vec::new(),
            pending_rows: 0,
        }
    }

    /// Adds `batch`; returns the batches of `size` rows that are now full.
    pub(crate) fn push(&mut self, mut batch: RecordBatch) -> Result<Vec<RecordBatch>, arrow::error::ArrowError> {
        if self.skip > 0 {
            let skipped = usize::try_from(self.skip).unwrap_or(usize::MAX).min(batch.num_rows());
            batch = batch.slice(skipped, batch.num_rows() - skipped);
            self.skip -= skipped as u64;
        }
        let mut full = Vec::new();
        let mut offset = 0;
        while offset < batch.num_rows() {
            let take = (self.size - self.pending_rows).min(batch.num_rows() - offset);
            self.pending.push(batch.slice(offset, take));
            self.pending_rows += take;
            offset += take;
            if self.pending_rows == self.size {
                full.push(self.take()?);
            }
        }
        Ok(full)
    }

    /// The rows left over at the end of the stream, if any.
    pub(crate) fn finish(&mut self) -> Result<Option<RecordBatch>, arrow::error::ArrowError> {
        if self.pending_rows == 0 {
            return Ok(None);
        }
        self.take().map(Some)
    }

    fn take(&mut self) -> Result<RecordBatch, arrow::error::ArrowError> {
        let batch = arrow::compute::concat_batches(&self.schema, &self.pending)?;
        self.pending.clear();
        self.pending_rows = 0;
        Ok(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, Int64Array};
    use arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;

    fn batch(schema: &SchemaRef, values: std::ops::Range<i64>) -> RecordBatch {
        RecordBatch::try_new(Arc::clone(schema), vec![Arc::new(Int64Array::from_iter_values(values))]).unwrap()
    }

    #[test]
    fn batches_come_out_at_the_size_after_the_skipped_rows() {
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
        let mut rebatcher = Rebatcher::new(Arc::clone(&schema), 4, 3);
        let mut out = Vec::new();
        for range in [0..2, 2..9, 9..10, 10..15] {
            out.extend(rebatcher.push(batch(&schema, range)).unwrap());
        }
        out.extend(rebatcher.finish().unwrap());
        let ids: Vec<Vec<i64>> = out
            .iter()
            .map(|b| {
                let a = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
                (0..a.len()).map(|i| a.value(i)).collect()
            })
            .collect();
        assert_eq!(ids, vec![vec![3, 4, 5, 6], vec![7, 8, 9, 10], vec![11, 12, 13, 14]]);
    }
}
