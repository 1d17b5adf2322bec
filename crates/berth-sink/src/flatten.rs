//! What a sink receives of a job's rows: `_dlt_*` columns dropped when asked, struct columns
//! flattened into `parent__child` columns down to a depth (none by default: nested values stay
//! Arrow structs and lists, or the JSON text dlt stored).

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, RecordBatch, StructArray, make_array};
use arrow::buffer::NullBuffer;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

/// How batches are shaped for the sink.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Shaping {
    pub(crate) skip_dlt: bool,
    pub(crate) max_nesting: usize,
}

impl Shaping {
    /// The schema batches of `input` get.
    pub(crate) fn schema(&self, input: &Schema) -> SchemaRef {
        let mut fields = Vec::new();
        for field in input.fields() {
            if self.skip_dlt && berth_model::schema::is_dlt_name(field.name()) {
                continue;
            }
            flatten_field(field, field.name(), self.max_nesting, &mut fields);
        }
        Arc::new(Schema::new(fields))
    }

    /// `batch` shaped to `schema` (from [`Shaping::schema`] of the batch's schema).
    pub(crate) fn apply(
        &self,
        batch: &RecordBatch,
        schema: &SchemaRef,
    ) -> Result<RecordBatch, arrow::error::ArrowError> {
        let mut columns = Vec::with_capacity(schema.fields().len());
        for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
            if self.skip_dlt && berth_model::schema::is_dlt_name(field.name()) {
                continue;
            }
            flatten_column(column, self.max_nesting, &mut columns);
        }
        RecordBatch::try_new(Arc::clone(schema), columns)
    }
}

fn flatten_field(field: &Field, name: &str, depth: usize, out: &mut Vec<Field>) {
    match field.data_type() {
        DataType::Struct(children) if depth > 0 => {
            for child in children {
                let name = format!("{name}__{}", child.name());
                flatten_field(&child.as_ref().clone().with_nullable(true), &name, depth - 1, out);
            }
        }
        _ => out.push(field.clone().with_name(name)),
    }
}

fn flatten_column(column: &ArrayRef, depth: usize, out: &mut Vec<ArrayRef>) {
    match column.as_any().downcast_ref::<StructArray>() {
        Some(parent) if depth > 0 => {
            for child in parent.columns() {
                // A child is NULL where its parent is.
                let nulls = NullBuffer::union(parent.nulls(), child.nulls());
                let data = child.to_data().into_builder().nulls(nulls).build();
                match data {
                    Ok(data) => flatten_column(&make_array(data), depth - 1, out),
                    Err(_) => flatten_column(child, depth - 1, out),
                }
            }
        }
        _ => out.push(Arc::clone(column)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::Fields;

    #[test]
    fn dlt_columns_go_and_structs_flatten_to_the_depth() {
        let inner = Fields::from(vec![Field::new("city", DataType::Utf8, true)]);
        let outer = Fields::from(vec![
            Field::new("zip", DataType::Int64, true),
            Field::new("geo", DataType::Struct(inner.clone()), true),
        ]);
        let geo = StructArray::new(
            inner,
            vec![Arc::new(StringArray::from(vec!["Oslo", "Rome"])) as ArrayRef],
            None,
        );
        let address = StructArray::new(
            outer.clone(),
            vec![Arc::new(Int64Array::from(vec![1, 2])) as ArrayRef, Arc::new(geo)],
            Some(NullBuffer::from(vec![true, false])),
        );
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("address", DataType::Struct(outer), true),
            Field::new("_dlt_id", DataType::Utf8, false),
        ]));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(Int64Array::from(vec![7, 8])),
                Arc::new(address),
                Arc::new(StringArray::from(vec!["a", "b"])),
            ],
        )
        .unwrap();
        let names = |s: &SchemaRef| s.fields().iter().map(|f| f.name().clone()).collect::<Vec<_>>();

        let none = Shaping {
            skip_dlt: true,
            max_nesting: 0,
        };
        assert_eq!(names(&none.schema(&schema)), ["id", "address"]);

        let all = Shaping {
            skip_dlt: true,
            max_nesting: 2,
        };
        let flat_schema = all.schema(&schema);
        assert_eq!(names(&flat_schema), ["id", "address__zip", "address__geo__city"]);
        let flat = all.apply(&batch, &flat_schema).unwrap();
        // The second address is NULL: so are its flattened values.
        assert!(flat.column(1).is_valid(0) && flat.column(1).is_null(1));
        assert!(flat.column(2).is_valid(0) && flat.column(2).is_null(1));

        let one = Shaping {
            skip_dlt: false,
            max_nesting: 1,
        };
        assert_eq!(
            names(&one.schema(&schema)),
            ["id", "address__zip", "address__geo", "_dlt_id"]
        );
    }
}
