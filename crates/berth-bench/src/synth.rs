//! Synthetic dlt load packages: deterministic by seed, with value distributions like real data
//! (skewed categories, a few NULLs, prices with cents), written as Parquet the way dlt writes them.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::TimestampMicrosecondBuilder;
use arrow::array::{ArrayRef, BooleanBuilder, Float64Builder, Int64Builder, RecordBatch, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use berth::model::MergeStrategy;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::{Error, Result};

/// Rows generated per record batch.
const GENERATE_BATCH: usize = 65_536;

/// The table shapes berth can generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Shape {
    /// 7 columns: `id` bigint, `ts` timestamptz, `amount` double, `qty` bigint, `category` text
    /// (8 values), `name` text (~16 chars), `flag` bool.
    #[default]
    Narrow,
}

impl Shape {
    /// The table's name.
    pub fn table(self) -> &'static str {
        match self {
            Self::Narrow => "narrow",
        }
    }

    /// The Arrow schema of the job files.
    pub fn arrow_schema(self) -> SchemaRef {
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

    /// dlt's `schema.json` for a package of this shape.
    pub fn schema_json(self, schema_name: &str) -> serde_json::Value {
        self.schema_json_with(schema_name, None)
    }

    /// [`Shape::schema_json`] for a `merge` table with `strategy`, keyed by `id`, or an append
    /// table for `None`.
    pub fn schema_json_with(self, schema_name: &str, merge: Option<MergeStrategy>) -> serde_json::Value {
        let column = |name: &str, data_type: &str, nullable: bool| {
            (
                name.to_string(),
                serde_json::json!({"name": name, "data_type": data_type, "nullable": nullable}),
            )
        };
        let columns: serde_json::Map<String, serde_json::Value> = [
            column("id", "bigint", false),
            column("ts", "timestamp", true),
            column("amount", "double", true),
            column("qty", "bigint", true),
            column("category", "text", true),
            column("name", "text", true),
            column("flag", "bool", true),
        ]
        .into_iter()
        .collect();
        let mut columns = columns;
        if merge.is_some()
            && let Some(id) = columns.get_mut("id")
        {
            id["primary_key"] = true.into();
        }
        let table = self.table();
        let disposition = if merge.is_some() { "merge" } else { "append" };
        let mut schema = serde_json::json!({
            "name": schema_name,
            "version": 1,
            "version_hash": format!("berth-bench-{table}-{disposition}-1"),
            "engine_version": 11,
            "tables": {
                table: {
                    "name": table,
                    "write_disposition": disposition,
                    "resource": table,
                    "x-normalizer": {"seen-data": true},
                    "columns": columns,
                }
            }
        });
        if let Some(strategy) = merge {
            schema["tables"][table]["x-merge-strategy"] = strategy.as_str().into();
        }
        schema
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
    merge: Option<MergeStrategy>,
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
            merge: None,
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
        self.merge = Some(strategy);
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
        let schema = serde_json::to_string_pretty(&self.shape.schema_json_with(&self.schema_name, self.merge))
            .map_err(|e| Error::Generate(e.to_string()))?;
        let schema_path = package.join("schema.json");
        std::fs::write(&schema_path, schema).map_err(|e| Error::io(&schema_path, e))?;

        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        let files = u64::try_from(self.files).unwrap_or(1);
        let mut next_id = self.first_id;
        for file in 0..files {
            let rows = self.rows / files + u64::from(file < self.rows % files);
            let path = jobs.join(format!("{}.s{:04}x{}.0.parquet", self.shape.table(), file, self.seed));
            let out = File::create(&path).map_err(|e| Error::io(&path, e))?;
            let properties = WriterProperties::builder()
                .set_compression(Compression::SNAPPY)
                .set_max_row_group_row_count(Some(self.row_group_rows))
                .build();
            let mut writer = ArrowWriter::try_new(out, self.shape.arrow_schema(), Some(properties))
                .map_err(|e| Error::Generate(e.to_string()))?;
            let mut left = rows;
            while left > 0 {
                let n = usize::try_from(left.min(GENERATE_BATCH as u64)).unwrap_or(GENERATE_BATCH);
                let batch = narrow_batch(&mut rng, next_id, n)?;
                writer.write(&batch).map_err(|e| Error::Generate(e.to_string()))?;
                next_id += n as u64;
                left -= n as u64;
            }
            writer.close().map_err(|e| Error::Generate(e.to_string()))?;
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
