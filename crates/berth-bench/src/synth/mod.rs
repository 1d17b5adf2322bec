//! Synthetic dlt load packages: deterministic by seed, with value distributions like real data
//! (skewed categories, a few NULLs, prices with cents), written as Parquet the way dlt writes them.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::TimestampMicrosecondBuilder;
use arrow::array::{ArrayRef, BooleanBuilder, Float64Builder, Int64Builder, RecordBatch, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use berth::model::{MergeStrategy, ReplaceStrategy};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::{Error, Result};

mod custom;
pub use custom::SchemaShape;

/// Rows generated per record batch.
const GENERATE_BATCH: usize = 65_536;

/// The table shapes berth can generate.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub enum Shape {
    /// 7 columns: `id` bigint, `ts` timestamptz, `amount` double, `qty` bigint, `category` text
    /// (8 values), `name` text (~16 chars), `flag` bool.
    #[default]
    Narrow,
    /// 50 columns: `id`, then 49 of bigint, double, text, bool, timestamp, date and
    /// decimal(38,9) in turn, about 2% NULL.
    Wide,
    /// A root table `nested` (`id`, `ts`, `name`, `_dlt_id`) and its child table
    /// `nested__items` (0 to 5 items per row, linked by `_dlt_parent_id` / `_dlt_root_id`), as
    /// dlt normalizes a list in each record.
    Nested,
    /// The data tables of a dlt schema file, nested tables included (see [`SchemaShape`]).
    Schema(Arc<SchemaShape>),
}

/// What a benchmark package's root tables are loaded with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Disposition {
    /// `append`.
    #[default]
    Append,
    /// `replace` with a strategy.
    Replace(ReplaceStrategy),
    /// `merge` with a strategy.
    Merge(MergeStrategy),
}

impl Disposition {
    /// dlt's `write_disposition`.
    pub fn write_disposition(self) -> &'static str {
        match self {
            Self::Append => "append",
            Self::Replace(_) => "replace",
            Self::Merge(_) => "merge",
        }
    }
}

impl std::fmt::Display for Disposition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Append => f.write_str("append"),
            Self::Replace(strategy) => write!(f, "replace:{strategy}"),
            Self::Merge(strategy) => write!(f, "merge:{strategy}"),
        }
    }
}

impl std::str::FromStr for Disposition {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.split_once(':') {
            None if s == "append" => Ok(Self::Append),
            None if s == "replace" => Ok(Self::Replace(ReplaceStrategy::default())),
            None if s == "merge" => Ok(Self::Merge(MergeStrategy::default())),
            Some(("replace", strategy)) => strategy.parse().map(Self::Replace),
            Some(("merge", strategy)) => strategy.parse().map(Self::Merge),
            _ => Err(format!(
                "unknown disposition `{s}`: append, replace[:<strategy>] or merge[:<strategy>]"
            )),
        }
    }
}

/// The dlt types of [`Shape::Wide`]'s columns, in turn.
const WIDE_TYPES: [&str; 7] = ["bigint", "double", "text", "bool", "timestamp", "date", "decimal"];
/// Columns of [`Shape::Wide`], `id` included.
const WIDE_COLUMNS: usize = 50;
/// The child table of [`Shape::Nested`].
const NESTED_CHILD: &str = "nested__items";

impl std::str::FromStr for Shape {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "narrow" => Ok(Self::Narrow),
            "wide" => Ok(Self::Wide),
            "nested" => Ok(Self::Nested),
            path if std::path::Path::new(path).is_file() => SchemaShape::from_file(std::path::Path::new(path))
                .map(|shape| Self::Schema(Arc::new(shape)))
                .map_err(|e| e.to_string()),
            other => Err(format!(
                "unknown shape `{other}`: narrow, wide, nested, or the path of a dlt schema file (schema.json)"
            )),
        }
    }
}

impl Shape {
    /// The (first root) table's name.
    pub fn table(&self) -> &str {
        match self {
            Self::Narrow => "narrow",
            Self::Wide => "wide",
            Self::Nested => "nested",
            Self::Schema(shape) => shape.root(),
        }
    }

    /// The shape's name in reports: `narrow`, `wide`, `nested` or the schema file's name.
    pub fn name(&self) -> String {
        match self {
            Self::Schema(shape) => shape.label().to_string(),
            other => other.table().to_string(),
        }
    }

    /// Names the generated packages in a work folder: the table, and for a schema file a hash of
    /// its text, so two schemas never share a cached package.
    pub fn cache_key(&self) -> String {
        match self {
            Self::Schema(shape) => format!("{}-{:016x}", shape.root(), shape.content_hash()),
            other => other.table().to_string(),
        }
    }

    /// Every table a package of this shape loads, parents before their children.
    pub fn tables(&self) -> Vec<&str> {
        match self {
            Self::Nested => vec!["nested", NESTED_CHILD],
            Self::Schema(shape) => shape.tables(),
            other => vec![other.table()],
        }
    }

    /// The columns of `table` of a built-in shape: name, dlt type, nullable, extra dlt hints.
    fn columns(&self, table: &str) -> Vec<(String, &'static str, bool, serde_json::Value)> {
        let plain = |name: &str, data_type: &'static str, nullable: bool| {
            (name.to_string(), data_type, nullable, serde_json::json!({}))
        };
        let key = |name: &str, hints: serde_json::Value| (name.to_string(), "text", false, hints);
        match (self, table) {
            (Self::Narrow, _) => vec![
                plain("id", "bigint", false),
                plain("ts", "timestamp", true),
                plain("amount", "double", true),
                plain("qty", "bigint", true),
                plain("category", "text", true),
                plain("name", "text", true),
                plain("flag", "bool", true),
            ],
            (Self::Wide, _) => std::iter::once(plain("id", "bigint", false))
                .chain((1..WIDE_COLUMNS).map(|i| {
                    let data_type = WIDE_TYPES[i % WIDE_TYPES.len()];
                    plain(&format!("{data_type}_{i:02}"), data_type, true)
                }))
                .collect(),
            (Self::Nested, NESTED_CHILD) => vec![
                plain("value", "text", true),
                plain("qty", "bigint", true),
                key("_dlt_root_id", serde_json::json!({"root_key": true})),
                key("_dlt_parent_id", serde_json::json!({"parent_key": true})),
                plain("_dlt_list_idx", "bigint", false),
                key("_dlt_id", serde_json::json!({"unique": true, "row_key": true})),
            ],
            (Self::Nested, _) => vec![
                plain("id", "bigint", false),
                plain("ts", "timestamp", true),
                plain("name", "text", true),
                key("_dlt_id", serde_json::json!({"unique": true, "row_key": true})),
            ],
            (Self::Schema(_), _) => Vec::new(),
        }
    }

    /// The Arrow schema of `table`'s job files.
    pub fn table_arrow_schema(&self, table: &str) -> SchemaRef {
        if let Self::Schema(shape) = self {
            return shape.arrow_schema(table).unwrap_or_else(|| Arc::new(Schema::empty()));
        }
        let fields: Vec<Field> = self
            .columns(table)
            .into_iter()
            .map(|(name, data_type, nullable, _)| Field::new(name, arrow_type(data_type), nullable))
            .collect();
        Arc::new(Schema::new(fields))
    }

    /// The Arrow schema of the (root) table's job files.
    pub fn arrow_schema(&self) -> SchemaRef {
        if !matches!(self, Self::Narrow) {
            return self.table_arrow_schema(self.table());
        }
        let utc = Some(Arc::<str>::from("UTC"));
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("ts", DataType::Timestamp(TimeUnit::Microsecond, utc), true),
            Field::new("amount", DataType::Float64, true),
            Field::new("qty", DataType::Int64, true),
            Field::new("category", DataType::Utf8, true),
            Field::new("name", DataType::Utf8, true),
            Field::new("flag", DataType::Boolean, true),
        ]))
    }

    /// dlt's `schema.json` for an append package of this shape.
    pub fn schema_json(&self, schema_name: &str) -> Result<serde_json::Value> {
        self.schema_json_with(schema_name, Disposition::Append)
    }

    /// [`Shape::schema_json`] with the root table's write disposition; merge tables are keyed by
    /// `id` (for a schema file: by its own keys, which it must have). A schema file keeps its name.
    pub fn schema_json_with(&self, schema_name: &str, disposition: Disposition) -> Result<serde_json::Value> {
        if let Self::Schema(shape) = self {
            return shape.schema_json(disposition);
        }
        let merge = match disposition {
            Disposition::Merge(strategy) => Some(strategy),
            _ => None,
        };
        let columns_of = |table: &str| -> serde_json::Map<String, serde_json::Value> {
            self.columns(table)
                .into_iter()
                .map(|(name, data_type, nullable, hints)| {
                    let mut column = serde_json::json!({"name": name, "data_type": data_type, "nullable": nullable});
                    if data_type == "decimal" {
                        column["precision"] = 38.into();
                        column["scale"] = 9.into();
                    }
                    if let (Some(column), Some(hints)) = (column.as_object_mut(), hints.as_object()) {
                        column.extend(hints.clone());
                    }
                    (name, column)
                })
                .collect()
        };
        let root = self.table();
        let mut root_columns = columns_of(root);
        if merge.is_some()
            && let Some(id) = root_columns.get_mut("id")
        {
            id["primary_key"] = true.into();
        }
        let disposition = disposition.write_disposition();
        let mut tables = serde_json::Map::new();
        let mut root_table = serde_json::json!({
            "name": root,
            "write_disposition": disposition,
            "resource": root,
            "x-normalizer": {"seen-data": true},
            "columns": root_columns,
        });
        if let Some(strategy) = merge {
            root_table["x-merge-strategy"] = strategy.as_str().into();
        }
        tables.insert(root.to_string(), root_table);
        for child in self.tables().into_iter().skip(1) {
            tables.insert(
                child.to_string(),
                serde_json::json!({
                    "name": child,
                    "parent": root,
                    "x-normalizer": {"seen-data": true},
                    "columns": columns_of(child),
                }),
            );
        }
        Ok(serde_json::json!({
            "name": schema_name,
            "version": 1,
            "version_hash": format!("berth-bench-{root}-{disposition}-1"),
            "engine_version": 11,
            "tables": tables,
        }))
    }
}

/// Builds a synthetic package.
///
/// ```no_run
/// use berth_bench::synth::{Shape, SyntheticPackage};
///
/// # fn example() -> berth_bench::Result<()> {
/// let package = SyntheticPackage::new(Shape::Narrow, 1_000_000).with_seed(7).write("/tmp/packages")?;
/// println!("{}", package.display());
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct SyntheticPackage {
    shape: Shape,
    rows: u64,
    seed: u64,
    row_group_rows: usize,
    files: usize,
    load_id: String,
    schema_name: String,
    disposition: Disposition,
    first_id: u64,
}

impl SyntheticPackage {
    /// `rows` rows of `shape`, seed 0, row groups of 131,072 rows, one file.
    pub fn new(shape: Shape, rows: u64) -> Self {
        Self {
            shape,
            rows,
            seed: 0,
            row_group_rows: 131_072,
            files: 1,
            load_id: "1800000000.000001".into(),
            schema_name: "bench".into(),
            disposition: Disposition::Append,
            first_id: 1,
        }
    }

    /// The seed: the same seed gives the same rows.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Rows per Parquet row group.
    pub fn with_row_group_rows(mut self, rows: usize) -> Self {
        self.row_group_rows = rows.max(1);
        self
    }

    /// Number of job files the rows are spread over.
    pub fn with_files(mut self, files: usize) -> Self {
        self.files = files.max(1);
        self
    }

    /// The load id (the package folder's name).
    pub fn with_load_id(mut self, load_id: impl Into<String>) -> Self {
        self.load_id = load_id.into();
        self
    }

    /// Make the table a `merge` table keyed by `id` with `strategy`.
    pub fn with_merge(mut self, strategy: MergeStrategy) -> Self {
        self.disposition = Disposition::Merge(strategy);
        self
    }

    /// Load the root tables with `disposition` (merge tables are keyed by `id`).
    pub fn with_disposition(mut self, disposition: Disposition) -> Self {
        self.disposition = disposition;
        self
    }

    /// The first `id` (ids run from it, one per row): a delta overlapping an earlier package
    /// updates the ids they share.
    pub fn with_first_id(mut self, id: u64) -> Self {
        self.first_id = id.max(1);
        self
    }

    /// The schema name (the default dataset).
    pub fn with_schema_name(mut self, name: impl Into<String>) -> Self {
        self.schema_name = name.into();
        self
    }

    /// Writes the package under `dir` and returns its folder. Memory stays at one batch.
    pub fn write(&self, dir: impl AsRef<Path>) -> Result<PathBuf> {
        let package = dir.as_ref().join(&self.load_id);
        let jobs = package.join("new_jobs");
        std::fs::create_dir_all(&jobs).map_err(|e| Error::io(&jobs, e))?;
        let schema = serde_json::to_string_pretty(&self.shape.schema_json_with(&self.schema_name, self.disposition)?)
            .map_err(|e| Error::Generate(e.to_string()))?;
        let schema_path = package.join("schema.json");
        std::fs::write(&schema_path, schema).map_err(|e| Error::io(&schema_path, e))?;

        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        let files = u64::try_from(self.files).unwrap_or(1);
        let mut next_id = self.first_id;
        for file in 0..files {
            let rows = self.rows / files + u64::from(file < self.rows % files);
            let mut writers = Vec::new();
            for table in self.shape.tables() {
                let path = jobs.join(format!("{table}.s{file:04}x{}.0.parquet", self.seed));
                let out = File::create(&path).map_err(|e| Error::io(&path, e))?;
                let properties = WriterProperties::builder()
                    .set_compression(Compression::SNAPPY)
                    .set_max_row_group_row_count(Some(self.row_group_rows))
                    .build();
                let writer = ArrowWriter::try_new(out, self.shape.table_arrow_schema(table), Some(properties))
                    .map_err(|e| Error::Generate(e.to_string()))?;
                writers.push(writer);
            }
            let mut left = rows;
            while left > 0 {
                let n = usize::try_from(left.min(GENERATE_BATCH as u64)).unwrap_or(GENERATE_BATCH);
                let batches = match &self.shape {
                    Shape::Narrow => vec![narrow_batch(&mut rng, next_id, n)?],
                    Shape::Wide => vec![wide_batch(&mut rng, next_id, n)?],
                    Shape::Nested => nested_batches(&mut rng, &self.load_id, next_id, n)?,
                    Shape::Schema(shape) => shape.batches(&mut rng, &self.load_id, next_id, n)?,
                };
                for (writer, batch) in writers.iter_mut().zip(&batches) {
                    writer.write(batch).map_err(|e| Error::Generate(e.to_string()))?;
                }
                next_id += n as u64;
                left -= n as u64;
            }
            for writer in writers {
                writer.close().map_err(|e| Error::Generate(e.to_string()))?;
            }
        }
        Ok(package)
    }
}

const CATEGORIES: [&str; 8] = [
    "groceries",
    "electronics",
    "clothing",
    "home",
    "toys",
    "books",
    "garden",
    "automotive",
];
/// Skewed like real sales: the first categories are far more common.
const CATEGORY_WEIGHTS: [u32; 8] = [30, 20, 15, 12, 9, 6, 5, 3];
const SYLLABLES: [&str; 16] = [
    "ka", "lo", "mi", "ren", "sa", "to", "vi", "del", "an", "bo", "cer", "du", "el", "fa", "gri", "hu",
];

fn narrow_batch(rng: &mut ChaCha8Rng, first_id: u64, rows: usize) -> Result<RecordBatch> {
    let mut id = Int64Builder::with_capacity(rows);
    let mut ts = TimestampMicrosecondBuilder::with_capacity(rows).with_timezone("UTC");
    let mut amount = Float64Builder::with_capacity(rows);
    let mut qty = Int64Builder::with_capacity(rows);
    let mut category = StringBuilder::with_capacity(rows, rows * 8);
    let mut name = StringBuilder::with_capacity(rows, rows * 17);
    let mut flag = BooleanBuilder::with_capacity(rows);
    let total: u32 = CATEGORY_WEIGHTS.iter().sum();
    // 2024-01-01T00:00:00Z, then about one event every 6 seconds.
    let base = 1_704_067_200_000_000i64;
    let mut text = String::with_capacity(24);
    for offset in 0..rows {
        let row = i64::try_from(first_id).unwrap_or(i64::MAX) + offset as i64;
        id.append_value(row);
        ts.append_value(base + row * 6_000_000 + rng.random_range(0..6_000_000));
        if rng.random_ratio(1, 50) {
            amount.append_null();
        } else {
            // Log-uniform prices from 0.50 to 5,000 with cents.
            let price = (0.5f64.ln() + rng.random::<f64>() * (10_000f64).ln()).exp();
            amount.append_value((price * 100.0).round() / 100.0);
        }
        qty.append_value(1 + i64::from(rng.random_range(0u32..100).pow(2) / 500));
        let mut pick = rng.random_range(0..total);
        let mut chosen = CATEGORIES[0];
        for (c, w) in CATEGORIES.iter().zip(CATEGORY_WEIGHTS) {
            if pick < w {
                chosen = c;
                break;
            }
            pick -= w;
        }
        category.append_value(chosen);
        if rng.random_ratio(1, 100) {
            name.append_null();
        } else {
            text.clear();
            while text.len() < 14 {
                text.push_str(SYLLABLES[rng.random_range(0..SYLLABLES.len())]);
            }
            text.push('_');
            text.push(char::from(b'a' + rng.random_range(0..26u8)));
            name.append_value(&text);
        }
        flag.append_value(rng.random_ratio(3, 10));
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(id.finish()),
        Arc::new(ts.finish()),
        Arc::new(amount.finish()),
        Arc::new(qty.finish()),
        Arc::new(category.finish()),
        Arc::new(name.finish()),
        Arc::new(flag.finish()),
    ];
    RecordBatch::try_new(Shape::Narrow.arrow_schema(), columns).map_err(|e| Error::Generate(e.to_string()))
}

/// The Arrow type berth reads a dlt type as (as `berth_model::read::arrow_type` does).
fn arrow_type(data_type: &str) -> DataType {
    match data_type {
        "bigint" => DataType::Int64,
        "double" => DataType::Float64,
        "bool" => DataType::Boolean,
        "timestamp" => DataType::Timestamp(TimeUnit::Microsecond, Some(Arc::from("UTC"))),
        "date" => DataType::Date32,
        "decimal" => DataType::Decimal128(38, 9),
        _ => DataType::Utf8,
    }
}

/// A word of `min_len` characters or more from [`SYLLABLES`].
fn word(rng: &mut ChaCha8Rng, text: &mut String, min_len: usize) {
    text.clear();
    while text.len() < min_len {
        text.push_str(SYLLABLES[rng.random_range(0..SYLLABLES.len())]);
    }
}

fn wide_batch(rng: &mut ChaCha8Rng, first_id: u64, rows: usize) -> Result<RecordBatch> {
    let schema = Shape::Wide.arrow_schema();
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(WIDE_COLUMNS);
    let first = i64::try_from(first_id).unwrap_or(i64::MAX);
    columns.push(Arc::new(arrow::array::Int64Array::from_iter_values(
        (0..rows as i64).map(|o| first + o),
    )));
    let mut text = String::with_capacity(24);
    for i in 1..WIDE_COLUMNS {
        let null = |rng: &mut ChaCha8Rng| rng.random_ratio(1, 50);
        let column: ArrayRef = match WIDE_TYPES[i % WIDE_TYPES.len()] {
            "bigint" => {
                let mut b = Int64Builder::with_capacity(rows);
                for _ in 0..rows {
                    let v = (!null(rng)).then(|| rng.random_range(0..1_000_000i64));
                    b.append_option(v);
                }
                Arc::new(b.finish())
            }
            "double" => {
                let mut b = Float64Builder::with_capacity(rows);
                for _ in 0..rows {
                    let v = (!null(rng)).then(|| rng.random::<f64>() * 1000.0);
                    b.append_option(v);
                }
                Arc::new(b.finish())
            }
            "text" => {
                let mut b = StringBuilder::with_capacity(rows, rows * 12);
                for _ in 0..rows {
                    if null(rng) {
                        b.append_null();
                    } else {
                        let len = rng.random_range(4..20);
                        word(rng, &mut text, len);
                        b.append_value(&text);
                    }
                }
                Arc::new(b.finish())
            }
            "bool" => {
                let mut b = BooleanBuilder::with_capacity(rows);
                for _ in 0..rows {
                    let v = (!null(rng)).then(|| rng.random_ratio(1, 2));
                    b.append_option(v);
                }
                Arc::new(b.finish())
            }
            "timestamp" => {
                let mut b = TimestampMicrosecondBuilder::with_capacity(rows).with_timezone("UTC");
                for _ in 0..rows {
                    let v = (!null(rng)).then(|| 1_704_067_200_000_000i64 + rng.random_range(0..31_536_000_000_000i64));
                    b.append_option(v);
                }
                Arc::new(b.finish())
            }
            "date" => {
                let mut b = arrow::array::Date32Builder::with_capacity(rows);
                for _ in 0..rows {
                    let v = (!null(rng)).then(|| 19_723 + rng.random_range(0..3650));
                    b.append_option(v);
                }
                Arc::new(b.finish())
            }
            _ => {
                let mut b = arrow::array::Decimal128Builder::with_capacity(rows);
                for _ in 0..rows {
                    // Amounts with cents, at scale 9.
                    let v = (!null(rng)).then(|| i128::from(rng.random_range(0..10_000_000i64)) * 10_000_000);
                    b.append_option(v);
                }
                Arc::new(
                    b.finish()
                        .with_precision_and_scale(38, 9)
                        .map_err(|e| Error::Generate(e.to_string()))?,
                )
            }
        };
        columns.push(column);
    }
    RecordBatch::try_new(schema, columns).map_err(|e| Error::Generate(e.to_string()))
}

/// A batch of `nested` rows and the batch of their `nested__items`. Row keys (`_dlt_id`) are
/// unique across packages, as dlt's are: they start with the load id.
fn nested_batches(rng: &mut ChaCha8Rng, load_id: &str, first_id: u64, rows: usize) -> Result<Vec<RecordBatch>> {
    let mut id = Int64Builder::with_capacity(rows);
    let mut ts = TimestampMicrosecondBuilder::with_capacity(rows).with_timezone("UTC");
    let mut name = StringBuilder::with_capacity(rows, rows * 16);
    let mut row_key = StringBuilder::with_capacity(rows, rows * 12);
    let items = rows * 5 / 2;
    let mut value = StringBuilder::with_capacity(items, items * 10);
    let mut qty = Int64Builder::with_capacity(items);
    let mut root_key = StringBuilder::with_capacity(items, items * 12);
    let mut parent_key = StringBuilder::with_capacity(items, items * 12);
    let mut list_idx = Int64Builder::with_capacity(items);
    let mut item_key = StringBuilder::with_capacity(items, items * 14);
    let mut text = String::with_capacity(24);
    for offset in 0..rows {
        let row = i64::try_from(first_id).unwrap_or(i64::MAX) + offset as i64;
        let key = format!("{load_id}.{row}");
        id.append_value(row);
        ts.append_value(1_704_067_200_000_000i64 + row * 6_000_000);
        word(rng, &mut text, 12);
        name.append_value(&text);
        for index in 0..rng.random_range(0..=5i64) {
            word(rng, &mut text, 6);
            value.append_value(&text);
            qty.append_value(rng.random_range(1..10));
            root_key.append_value(&key);
            parent_key.append_value(&key);
            list_idx.append_value(index);
            item_key.append_value(format!("{key}.{index}"));
        }
        row_key.append_value(&key);
    }
    let root: Vec<ArrayRef> = vec![
        Arc::new(id.finish()),
        Arc::new(ts.finish()),
        Arc::new(name.finish()),
        Arc::new(row_key.finish()),
    ];
    let child: Vec<ArrayRef> = vec![
        Arc::new(value.finish()),
        Arc::new(qty.finish()),
        Arc::new(root_key.finish()),
        Arc::new(parent_key.finish()),
        Arc::new(list_idx.finish()),
        Arc::new(item_key.finish()),
    ];
    let batch = |table: &str, columns| {
        RecordBatch::try_new(Shape::Nested.table_arrow_schema(table), columns)
            .map_err(|e| Error::Generate(e.to_string()))
    };
    Ok(vec![batch("nested", root)?, batch(NESTED_CHILD, child)?])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let a = SyntheticPackage::new(Shape::Narrow, 1000)
            .with_seed(3)
            .with_row_group_rows(300)
            .write(dir.path().join("a"))
            .unwrap();
        let b = SyntheticPackage::new(Shape::Narrow, 1000)
            .with_seed(3)
            .with_row_group_rows(300)
            .write(dir.path().join("b"))
            .unwrap();
        let file = |p: &Path| {
            let jobs: Vec<_> = std::fs::read_dir(p.join("new_jobs"))
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            std::fs::read(&jobs[0]).unwrap()
        };
        assert_eq!(file(&a), file(&b));
        let reader = parquet::file::reader::SerializedFileReader::new(
            File::open(
                std::fs::read_dir(a.join("new_jobs"))
                    .unwrap()
                    .next()
                    .unwrap()
                    .unwrap()
                    .path(),
            )
            .unwrap(),
        )
        .unwrap();
        use parquet::file::reader::FileReader;
        assert_eq!(reader.metadata().num_row_groups(), 4);
        assert_eq!(reader.metadata().file_metadata().num_rows(), 1000);
    }
}
