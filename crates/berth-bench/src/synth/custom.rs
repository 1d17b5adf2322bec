//! Shapes read from a dlt schema file (`schema.json` of a package, or an exported schema): every
//! data table of the schema gets rows, its values drawn by column type, and nested tables get 0 to 5
//! rows per parent row linked by `_dlt_parent_id` / `_dlt_root_id` / `_dlt_list_idx` as dlt's
//! normalizer links them.
//!
//! Keys stay keys: a column marked `primary_key`, `merge_key` or `unique` takes its value from the
//! row's number, so two packages whose row numbers overlap update the same rows when merged; row
//! keys (`_dlt_id`) start with the load id, so they are unique across packages as dlt's are.

use std::path::Path;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BinaryBuilder, BooleanBuilder, Date32Builder, Decimal128Builder, Decimal256Builder, Float32Builder,
    Float64Builder, Int8Builder, Int16Builder, Int32Builder, Int64Builder, RecordBatch, StringBuilder,
    Time64MicrosecondBuilder, TimestampMicrosecondBuilder, TimestampMillisecondBuilder, TimestampNanosecondBuilder,
    TimestampSecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema as ArrowSchema, SchemaRef, TimeUnit, i256};
use berth::model::{Schema, Table, schema::is_dlt_name};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::{Disposition, word};
use crate::{Error, Result};

/// Nested rows per parent row: 0 up to this.
const MAX_ITEMS: i64 = 5;
/// One row in 50 of a nullable column is NULL.
const NULL_ONE_IN: u32 = 50;

/// What a column's values are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// `_dlt_id`: unique across packages.
    RowKey,
    /// `_dlt_parent_id`: the parent row's `_dlt_id`.
    ParentKey,
    /// `_dlt_root_id`: the root row's `_dlt_id`.
    RootKey,
    /// `_dlt_list_idx`: the position in the parent's list.
    ListIdx,
    /// `_dlt_load_id`.
    LoadId,
    /// A primary, merge or unique key: from the row's number.
    Key,
    /// A `json` column: small JSON objects.
    Json,
    /// Anything else: random by type.
    Value,
}

fn role(column: &berth::model::Column) -> Role {
    match column.name.as_str() {
        _ if column.row_key => Role::RowKey,
        _ if column.parent_key => Role::ParentKey,
        _ if column.root_key => Role::RootKey,
        "_dlt_id" => Role::RowKey,
        "_dlt_parent_id" => Role::ParentKey,
        "_dlt_root_id" => Role::RootKey,
        "_dlt_list_idx" => Role::ListIdx,
        "_dlt_load_id" => Role::LoadId,
        _ if column.primary_key || column.merge_key || column.unique => Role::Key,
        _ if column.data_type == Some(berth::model::DataType::Json) => Role::Json,
        _ => Role::Value,
    }
}

/// One table to generate.
#[derive(Debug)]
struct TableSpec {
    name: String,
    /// Index of the parent in [`SchemaShape::tables`] (parents come first).
    parent: Option<usize>,
    arrow: SchemaRef,
    roles: Vec<Role>,
}

/// A shape read from a dlt schema file.
#[derive(Debug)]
pub struct SchemaShape {
    /// The file's name, for reports.
    label: String,
    json: serde_json::Value,
    schema: Schema,
    tables: Vec<TableSpec>,
}

impl SchemaShape {
    /// Reads a dlt schema (JSON) from `path`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let origin = path.display().to_string();
        if !origin.ends_with(".json") && !text.trim_start().starts_with('{') {
            return Err(Error::Config(format!(
                "{origin}: berth bench reads dlt schemas as JSON (a package's schema.json, or \
                 `dlt pipeline <name> schema --format json`)"
            )));
        }
        let schema = Schema::from_json(&text, &origin).map_err(|e| Error::Config(e.to_string()))?;
        let json: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| Error::Config(format!("{origin}: {e}")))?;
        let label = path
            .file_name()
            .map_or_else(|| origin.clone(), |n| n.to_string_lossy().to_string());
        Self::new(label, json, schema)
    }

    fn new(label: String, json: serde_json::Value, schema: Schema) -> Result<Self> {
        // Parents before children: repeat passes until every table whose parent is placed is placed.
        let data: Vec<&Table> = schema
            .tables
            .values()
            .filter(|t| !is_dlt_name(&t.name) && t.complete_columns().next().is_some())
            .collect();
        let mut tables: Vec<TableSpec> = Vec::with_capacity(data.len());
        let mut placed = vec![false; data.len()];
        loop {
            let mut progress = false;
            for (index, table) in data.iter().enumerate() {
                if placed[index] {
                    continue;
                }
                let parent = match &table.parent {
                    None => None,
                    Some(name) => match tables.iter().position(|t| &t.name == name) {
                        Some(position) => Some(position),
                        None => continue,
                    },
                };
                let columns: Vec<&berth::model::Column> = table
                    .complete_columns()
                    .filter(|c| !c.valid_from && !c.valid_to)
                    .collect();
                let fields: Vec<Field> = columns
                    .iter()
                    .map(|c| Field::new(&c.name, berth::model::read::arrow_type(c), c.nullable))
                    .collect();
                tables.push(TableSpec {
                    name: table.name.clone(),
                    parent,
                    arrow: Arc::new(ArrowSchema::new(fields)),
                    roles: columns.iter().map(|c| role(c)).collect(),
                });
                placed[index] = true;
                progress = true;
            }
            if !progress {
                break;
            }
        }
        if let Some(orphan) = data.iter().zip(&placed).find(|(_, placed)| !**placed) {
            return Err(Error::Config(format!(
                "{label}: table `{}` has a parent with no columns to generate",
                orphan.0.name
            )));
        }
        if tables.is_empty() {
            return Err(Error::Config(format!(
                "{label}: the schema has no data table with typed columns to generate rows for"
            )));
        }
        Ok(Self {
            label,
            json,
            schema,
            tables,
        })
    }

    /// FNV-1a of the schema text: stable across runs and versions.
    pub(crate) fn content_hash(&self) -> u64 {
        self.json.to_string().bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
        })
    }

    /// The file's name.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Every table generated, parents before children.
    pub fn tables(&self) -> Vec<&str> {
        self.tables.iter().map(|t| t.name.as_str()).collect()
    }

    /// The first root table.
    pub fn root(&self) -> &str {
        &self.tables[0].name
    }

    /// The Arrow schema of `table`'s job files.
    pub fn arrow_schema(&self, table: &str) -> Option<SchemaRef> {
        self.tables
            .iter()
            .find(|t| t.name == table)
            .map(|t| Arc::clone(&t.arrow))
    }

    /// The schema JSON with every root table's write disposition set to `disposition`, and every
    /// generated table marked as having seen data.
    pub fn schema_json(&self, disposition: Disposition) -> Result<serde_json::Value> {
        let mut json = self.json.clone();
        let Some(tables) = json.get_mut("tables").and_then(serde_json::Value::as_object_mut) else {
            return Ok(json);
        };
        for spec in &self.tables {
            let Some(table) = tables.get_mut(&spec.name).and_then(serde_json::Value::as_object_mut) else {
                continue;
            };
            table.insert("x-normalizer".into(), serde_json::json!({"seen-data": true}));
            if spec.parent.is_some() {
                table.remove("write_disposition");
                table.remove("x-merge-strategy");
                continue;
            }
            table.insert("write_disposition".into(), disposition.write_disposition().into());
            match disposition {
                Disposition::Merge(strategy) => {
                    table.insert("x-merge-strategy".into(), strategy.as_str().into());
                    let keyed = self
                        .schema
                        .table(&spec.name)
                        .is_some_and(|t| !t.primary_key().is_empty() || !t.merge_key().is_empty());
                    if !keyed && strategy != berth::model::MergeStrategy::Scd2 {
                        return Err(Error::Config(format!(
                            "{}: table `{}` has no primary_key or merge_key column, so it cannot be \
                             merged with {strategy}; mark one in the schema or bench another disposition",
                            self.label, spec.name
                        )));
                    }
                }
                _ => {
                    table.remove("x-merge-strategy");
                }
            }
        }
        Ok(json)
    }

    /// One batch per table for `rows` root rows numbered from `first_row`, in [`Self::tables`] order.
    /// Every root table gets the same rows.
    pub(super) fn batches(
        &self,
        rng: &mut ChaCha8Rng,
        load_id: &str,
        first_row: u64,
        rows: usize,
    ) -> Result<Vec<RecordBatch>> {
        let mut generated: Vec<Rows> = Vec::with_capacity(self.tables.len());
        for spec in &self.tables {
            let rows = match spec.parent {
                None => Rows::root(load_id, first_row, rows),
                Some(parent) => Rows::children(&generated[parent], rng),
            };
            generated.push(rows);
        }
        self.tables
            .iter()
            .zip(&generated)
            .map(|(spec, rows)| {
                let columns = spec
                    .arrow
                    .fields()
                    .iter()
                    .zip(&spec.roles)
                    .map(|(field, role)| column(rng, field, *role, rows, load_id, &spec.name))
                    .collect::<Result<Vec<_>>>()?;
                RecordBatch::try_new(Arc::clone(&spec.arrow), columns)
                    .map_err(|e| Error::Generate(format!("table {}: {e}", spec.name)))
            })
            .collect()
    }
}

/// The linking values of one table's generated rows.
#[derive(Debug, Default)]
struct Rows {
    number: Vec<i64>,
    row_key: Vec<String>,
    root_key: Vec<String>,
    parent_key: Vec<String>,
    list_idx: Vec<i64>,
}

impl Rows {
    fn root(load_id: &str, first_row: u64, rows: usize) -> Self {
        let first = i64::try_from(first_row).unwrap_or(i64::MAX - rows as i64);
        let number: Vec<i64> = (0..rows as i64).map(|o| first + o).collect();
        let row_key: Vec<String> = number.iter().map(|n| format!("{load_id}.{n}")).collect();
        Self {
            root_key: row_key.clone(),
            parent_key: row_key.clone(),
            list_idx: vec![0; rows],
            number,
            row_key,
        }
    }

    fn children(parent: &Self, rng: &mut ChaCha8Rng) -> Self {
        let mut rows = Self::default();
        for (index, key) in parent.row_key.iter().enumerate() {
            for item in 0..rng.random_range(0..=MAX_ITEMS) {
                rows.number.push(parent.number[index] * (MAX_ITEMS + 1) + item);
                rows.row_key.push(format!("{key}.{item}"));
                rows.root_key.push(parent.root_key[index].clone());
                rows.parent_key.push(key.clone());
                rows.list_idx.push(item);
            }
        }
        rows
    }

    fn len(&self) -> usize {
        self.number.len()
    }
}

fn column(
    rng: &mut ChaCha8Rng,
    field: &Field,
    role: Role,
    rows: &Rows,
    load_id: &str,
    table: &str,
) -> Result<ArrayRef> {
    let strings = |values: &[String]| -> ArrayRef { Arc::new(arrow::array::StringArray::from_iter_values(values)) };
    match (role, field.data_type()) {
        (Role::RowKey, DataType::Utf8) => Ok(strings(&rows.row_key)),
        (Role::ParentKey, DataType::Utf8) => Ok(strings(&rows.parent_key)),
        (Role::RootKey, DataType::Utf8) => Ok(strings(&rows.root_key)),
        (Role::LoadId, DataType::Utf8) => Ok(Arc::new(arrow::array::StringArray::from_iter_values(
            std::iter::repeat_n(load_id, rows.len()),
        ))),
        (Role::ListIdx, DataType::Int64) => Ok(Arc::new(arrow::array::Int64Array::from(rows.list_idx.clone()))),
        (Role::Key, DataType::Utf8) => Ok(Arc::new(arrow::array::StringArray::from_iter_values(
            rows.number.iter().map(|n| format!("{table}-{n}")),
        ))),
        (Role::Key, DataType::Int64) => Ok(Arc::new(arrow::array::Int64Array::from(rows.number.clone()))),
        (Role::Key, DataType::Int32) => Ok(Arc::new(arrow::array::Int32Array::from_iter_values(
            rows.number.iter().map(|n| i32::try_from(*n).unwrap_or(i32::MAX)),
        ))),
        (Role::Json, DataType::Utf8) => {
            let nullable = field.is_nullable();
            let mut builder = StringBuilder::with_capacity(rows.len(), rows.len() * 24);
            for _ in 0..rows.len() {
                if nullable && rng.random_ratio(1, NULL_ONE_IN) {
                    builder.append_null();
                } else {
                    let n = rng.random_range(0..1000);
                    builder.append_value(format!(r#"{{"n": {n}, "tags": ["a", "b{}"]}}"#, n % 7));
                }
            }
            Ok(Arc::new(builder.finish()))
        }
        _ => random_column(rng, field, rows.len()),
    }
}

/// `rows` values of `field`'s type, about 2% NULL where it is nullable.
fn random_column(rng: &mut ChaCha8Rng, field: &Field, rows: usize) -> Result<ArrayRef> {
    let nullable = field.is_nullable();
    let null = |rng: &mut ChaCha8Rng| nullable && rng.random_ratio(1, NULL_ONE_IN);
    // Timestamps over 2024, in microseconds.
    let instant = |rng: &mut ChaCha8Rng| 1_704_067_200_000_000i64 + rng.random_range(0..31_536_000_000_000i64);
    macro_rules! fill {
        ($builder:expr, $value:expr) => {{
            let mut builder = $builder;
            for _ in 0..rows {
                if null(rng) {
                    builder.append_null();
                } else {
                    let value = ($value)(&mut *rng);
                    builder.append_value(value);
                }
            }
            Arc::new(builder.finish()) as ArrayRef
        }};
    }
    let mut text = String::with_capacity(24);
    let array = match field.data_type() {
        DataType::Boolean => fill!(BooleanBuilder::with_capacity(rows), |r: &mut ChaCha8Rng| r
            .random_ratio(1, 2)),
        DataType::Int8 => fill!(Int8Builder::with_capacity(rows), |r: &mut ChaCha8Rng| r.random::<i8>()),
        DataType::Int16 => fill!(Int16Builder::with_capacity(rows), |r: &mut ChaCha8Rng| r
            .random::<i16>()),
        DataType::Int32 => fill!(Int32Builder::with_capacity(rows), |r: &mut ChaCha8Rng| r
            .random_range(0..1_000_000i32)),
        DataType::Int64 => fill!(Int64Builder::with_capacity(rows), |r: &mut ChaCha8Rng| r
            .random_range(0..1_000_000i64)),
        DataType::Float32 => fill!(Float32Builder::with_capacity(rows), |r: &mut ChaCha8Rng| r
            .random::<f32>()
            * 1000.0),
        DataType::Float64 => fill!(Float64Builder::with_capacity(rows), |r: &mut ChaCha8Rng| r
            .random::<f64>()
            * 1000.0),
        DataType::Date32 => fill!(Date32Builder::with_capacity(rows), |r: &mut ChaCha8Rng| 19_723
            + r.random_range(0..3650)),
        DataType::Time64(TimeUnit::Microsecond) => {
            fill!(Time64MicrosecondBuilder::with_capacity(rows), |r: &mut ChaCha8Rng| r
                .random_range(0..86_400_000_000i64))
        }
        DataType::Timestamp(unit, tz) => {
            let array: ArrayRef = match unit {
                TimeUnit::Second => fill!(TimestampSecondBuilder::with_capacity(rows), |r| instant(r) / 1_000_000),
                TimeUnit::Millisecond => fill!(TimestampMillisecondBuilder::with_capacity(rows), |r| instant(r) / 1000),
                TimeUnit::Microsecond => fill!(TimestampMicrosecondBuilder::with_capacity(rows), instant),
                TimeUnit::Nanosecond => fill!(TimestampNanosecondBuilder::with_capacity(rows), |r| instant(r) * 1000),
            };
            match tz {
                Some(tz) => arrow::compute::cast(&array, &DataType::Timestamp(*unit, Some(Arc::clone(tz))))
                    .map_err(|e| Error::Generate(e.to_string()))?,
                None => array,
            }
        }
        DataType::Decimal128(precision, _) => {
            // Whole digits fill at most half the precision, so every value fits.
            let digits = u32::from((*precision).min(18)).max(1);
            let bound = 10i64.pow(digits.div_ceil(2).max(1));
            fill!(
                Decimal128Builder::with_capacity(rows).with_data_type(field.data_type().clone()),
                |r: &mut ChaCha8Rng| i128::from(r.random_range(0..bound))
            )
        }
        DataType::Decimal256(..) => fill!(
            Decimal256Builder::with_capacity(rows).with_data_type(field.data_type().clone()),
            |r: &mut ChaCha8Rng| i256::from_i128(i128::from(r.random::<u64>()))
        ),
        DataType::Binary => fill!(BinaryBuilder::with_capacity(rows, rows * 16), |r: &mut ChaCha8Rng| {
            let len = r.random_range(4..32usize);
            (0..len).map(|_| r.random::<u8>()).collect::<Vec<u8>>()
        }),
        DataType::Utf8 => fill!(StringBuilder::with_capacity(rows, rows * 12), |r: &mut ChaCha8Rng| {
            let len = r.random_range(4..20);
            word(r, &mut text, len);
            text.clone()
        }),
        other => {
            return Err(Error::Generate(format!(
                "column `{}`: berth bench cannot generate values of type {other}",
                field.name()
            )));
        }
    };
    Ok(array)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::{Shape, SyntheticPackage};
    use arrow::array::{Array, AsArray};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use std::collections::{BTreeMap, HashSet};

    const SCHEMA: &str = r#"{
      "name": "shop", "version": 3, "version_hash": "h", "engine_version": 11,
      "tables": {
        "_dlt_loads": {"name": "_dlt_loads", "columns": {"load_id": {"name": "load_id", "data_type": "text", "nullable": false}}},
        "orders": {"name": "orders", "write_disposition": "append", "columns": {
          "order_id": {"name": "order_id", "data_type": "text", "nullable": false, "primary_key": true},
          "amount": {"name": "amount", "data_type": "decimal", "precision": 12, "scale": 2},
          "placed": {"name": "placed", "data_type": "timestamp", "precision": 3, "timezone": false},
          "at": {"name": "at", "data_type": "time"},
          "small": {"name": "small", "data_type": "bigint", "precision": 16},
          "big": {"name": "big", "data_type": "wei"},
          "meta": {"name": "meta", "data_type": "json"},
          "untyped": {"name": "untyped"},
          "_dlt_load_id": {"name": "_dlt_load_id", "data_type": "text", "nullable": false},
          "_dlt_id": {"name": "_dlt_id", "data_type": "text", "nullable": false, "unique": true, "row_key": true}}},
        "orders__lines__parts": {"name": "orders__lines__parts", "parent": "orders__lines", "columns": {
          "part": {"name": "part", "data_type": "text"},
          "_dlt_parent_id": {"name": "_dlt_parent_id", "data_type": "text", "nullable": false, "parent_key": true},
          "_dlt_list_idx": {"name": "_dlt_list_idx", "data_type": "bigint", "nullable": false},
          "_dlt_id": {"name": "_dlt_id", "data_type": "text", "nullable": false, "unique": true, "row_key": true}}},
        "orders__lines": {"name": "orders__lines", "parent": "orders", "columns": {
          "sku": {"name": "sku", "data_type": "text"},
          "_dlt_root_id": {"name": "_dlt_root_id", "data_type": "text", "nullable": false, "root_key": true},
          "_dlt_parent_id": {"name": "_dlt_parent_id", "data_type": "text", "nullable": false, "parent_key": true},
          "_dlt_list_idx": {"name": "_dlt_list_idx", "data_type": "bigint", "nullable": false},
          "_dlt_id": {"name": "_dlt_id", "data_type": "text", "nullable": false, "unique": true, "row_key": true}}}
      }
    }"#;

    fn read(package: &Path, table: &str) -> Vec<RecordBatch> {
        let path = std::fs::read_dir(package.join("new_jobs"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with(&format!("{table}."))
            })
            .unwrap_or_else(|| panic!("no job file of {table}"));
        ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(path).unwrap())
            .unwrap()
            .build()
            .unwrap()
            .map(|b| b.unwrap())
            .collect()
    }

    fn strings(batches: &[RecordBatch], column: &str) -> Vec<String> {
        batches
            .iter()
            .flat_map(|b| {
                let array = b.column_by_name(column).unwrap().as_string::<i32>().clone();
                (0..array.len())
                    .filter(|i| array.is_valid(*i))
                    .map(|i| array.value(i).to_string())
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn a_schema_file_generates_linked_typed_tables_that_berth_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("shop.schema.json");
        std::fs::write(&file, SCHEMA).unwrap();
        let shape: Shape = file.to_string_lossy().parse().unwrap();
        assert_eq!(shape.tables(), ["orders", "orders__lines", "orders__lines__parts"]);
        assert_eq!(shape.name(), "shop.schema.json");
        let package = SyntheticPackage::new(shape.clone(), 500)
            .with_merge(berth::model::MergeStrategy::Upsert)
            .with_row_group_rows(200)
            .write(dir.path().join("out"))
            .unwrap();

        // The package's schema: berth reads it, the root merges, every table saw data.
        let schema = berth::model::Schema::from_json(
            &std::fs::read_to_string(package.join("schema.json")).unwrap(),
            "schema.json",
        )
        .unwrap();
        let orders = schema.table("orders").unwrap();
        assert_eq!(schema.write_disposition(orders), berth::model::WriteDisposition::Merge);
        assert_eq!(schema.merge_strategy(orders), berth::model::MergeStrategy::Upsert);
        assert_eq!(schema.data_tables().count(), 3);

        let orders = read(&package, "orders");
        let ids = strings(&orders, "order_id");
        assert_eq!(ids.len(), 500);
        assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 500, "keys are unique");
        assert_eq!(ids[0], "orders-1");
        assert!(
            orders[0].column_by_name("untyped").is_none(),
            "incomplete columns are left out"
        );
        let meta = strings(&orders, "meta");
        assert!(meta.len() > 450 && meta.len() < 500, "about 2% NULL: {}", meta.len());
        assert!(
            meta.iter()
                .all(|m| serde_json::from_str::<serde_json::Value>(m).is_ok())
        );
        let amount = orders[0].column_by_name("amount").unwrap();
        assert_eq!(amount.data_type(), &DataType::Decimal128(12, 2));

        // Children point at real parents, list indexes count from 0, the root key is the root's.
        let root_keys: HashSet<String> = strings(&orders, "_dlt_id").into_iter().collect();
        let lines = read(&package, "orders__lines");
        let line_keys = strings(&lines, "_dlt_id");
        assert!(line_keys.len() > 500, "about 2.5 lines per order: {}", line_keys.len());
        for (parent, root) in strings(&lines, "_dlt_parent_id")
            .iter()
            .zip(strings(&lines, "_dlt_root_id"))
        {
            assert!(root_keys.contains(parent));
            assert_eq!(parent, &root);
        }
        let line_keys: HashSet<String> = line_keys.into_iter().collect();
        let parts = read(&package, "orders__lines__parts");
        let mut per_parent: BTreeMap<String, Vec<i64>> = BTreeMap::new();
        for batch in &parts {
            let parent = batch.column_by_name("_dlt_parent_id").unwrap().as_string::<i32>();
            let index = batch
                .column_by_name("_dlt_list_idx")
                .unwrap()
                .as_primitive::<arrow::datatypes::Int64Type>();
            for i in 0..batch.num_rows() {
                assert!(line_keys.contains(parent.value(i)));
                per_parent
                    .entry(parent.value(i).to_string())
                    .or_default()
                    .push(index.value(i));
            }
        }
        for indexes in per_parent.values() {
            assert_eq!(indexes, &(0..indexes.len() as i64).collect::<Vec<_>>());
        }

        // A second package starting at row 401 shares keys 401..=500 with the first.
        let delta = SyntheticPackage::new(shape, 200)
            .with_first_id(401)
            .with_load_id("1800000000.000002")
            .write(dir.path().join("delta"))
            .unwrap();
        let delta_ids: HashSet<String> = strings(&read(&delta, "orders"), "order_id").into_iter().collect();
        let shared = ids.iter().filter(|id| delta_ids.contains(*id)).count();
        assert_eq!(shared, 100);
    }

    #[test]
    fn a_merge_without_keys_and_an_unusable_file_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("schema.json");
        std::fs::write(&file, SCHEMA.replace(r#", "primary_key": true"#, "")).unwrap();
        let shape: Shape = file.to_string_lossy().parse().unwrap();
        let error = SyntheticPackage::new(shape, 10)
            .with_merge(berth::model::MergeStrategy::DeleteInsert)
            .write(dir.path().join("out"))
            .unwrap_err()
            .to_string();
        assert!(error.contains("`orders` has no primary_key or merge_key"), "{error}");

        let yaml = dir.path().join("shop.schema.yaml");
        std::fs::write(&yaml, "name: shop\n").unwrap();
        let error = yaml.to_string_lossy().parse::<Shape>().unwrap_err();
        assert!(error.contains("as JSON"), "{error}");
        let error = "no/such/file.json".parse::<Shape>().unwrap_err();
        assert!(error.contains("unknown shape"), "{error}");
    }
}
