//! Reading a lake back without delta-rs: the Delta log replayed by hand (JSON commits; `add`
//! and `remove` by path), the live Parquet files read with the `parquet` crate, partition values
//! from the `add` actions. An independent check that what berth committed is what the protocol
//! says a reader sees; and the conformance check of a lake against dlt's expected rows and
//! bookkeeping files.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use arrow::array::{RecordBatch, StringArray};
use arrow::datatypes::{DataType as ArrowType, Field, Schema as ArrowSchema, SchemaRef};
use berth::loader::{Loader, LoaderOptions, PackageStatus};
use berth::model::{LoadPackage, PackageLocation};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::Value;

use crate::{Scenario, cell, copy_tree, diff_rows, expected_rows};

/// Live data files by path, with their partition values.
pub type LiveFiles = BTreeMap<String, BTreeMap<String, Option<String>>>;

/// The live files of the Delta table at `dir` (path → partition values) after replaying its log,
/// and the application transactions (app id → version) it holds.
pub fn live_files(dir: &Path) -> Result<(LiveFiles, BTreeMap<String, i64>), String> {
    let log = dir.join("_delta_log");
    if log.join("_last_checkpoint").exists() {
        return Err(format!("{}: the test reader does not read checkpoints", dir.display()));
    }
    let mut commits: Vec<_> = std::fs::read_dir(&log)
        .map_err(|e| format!("{}: {e}", log.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    commits.sort();
    let mut files = BTreeMap::new();
    let mut txns = BTreeMap::new();
    for commit in commits {
        let text = std::fs::read_to_string(&commit).map_err(|e| e.to_string())?;
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let action: Value = serde_json::from_str(line).map_err(|e| format!("{}: {e}", commit.display()))?;
            if let Some(add) = action.get("add") {
                let partitions = add["partitionValues"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(k, v)| (k.clone(), v.as_str().map(str::to_string)))
                    .collect();
                files.insert(decode(add["path"].as_str().unwrap_or_default()), partitions);
            } else if let Some(remove) = action.get("remove") {
                files.remove(&decode(remove["path"].as_str().unwrap_or_default()));
            } else if let Some(txn) = action.get("txn") {
                txns.insert(
                    txn["appId"].as_str().unwrap_or_default().to_string(),
                    txn["version"].as_i64().unwrap_or_default(),
                );
            }
        }
    }
    Ok((files, txns))
}

/// `%XX` escapes of a log path decoded.
fn decode(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&path[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The rows of the Delta table at `dir`, each batch with `schema`'s columns (by name, cast;
/// columns a file lacks are NULL).
pub fn read_table(dir: &Path, schema: &SchemaRef) -> Result<Vec<RecordBatch>, String> {
    let (files, _) = live_files(dir)?;
    let mut batches = Vec::new();
    for (path, partitions) in files {
        let file = std::fs::File::open(dir.join(&path)).map_err(|e| format!("{path}: {e}"))?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .and_then(|b| b.build())
            .map_err(|e| format!("{path}: {e}"))?;
        for batch in reader {
            let batch = batch.map_err(|e| format!("{path}: {e}"))?;
            let mut fields: Vec<Field> = batch.schema().fields().iter().map(|f| f.as_ref().clone()).collect();
            let mut columns = batch.columns().to_vec();
            for (name, value) in &partitions {
                fields.push(Field::new(name, ArrowType::Utf8, true));
                columns.push(Arc::new(StringArray::from(vec![value.clone(); batch.num_rows()])));
            }
            let options = arrow::array::RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
            let with_partitions =
                RecordBatch::try_new_with_options(Arc::new(ArrowSchema::new(fields)), columns, &options)
                    .map_err(|e| e.to_string())?;
            batches.push(berth::plan::exec::conform(&with_partitions, schema).map_err(|e| format!("{path}: {e}"))?);
        }
    }
    Ok(batches)
}

/// Rows of a lake table as canonical JSON (see [`crate::cell`]), typed as the package schema
/// types the columns (time, wei and wide decimals are text in Delta and cast back).
pub fn table_rows(dir: &Path, schema: &SchemaRef, columns: &[String]) -> Result<Vec<String>, String> {
    let mut rows = Vec::new();
    for batch in read_table(dir, schema)? {
        for row in 0..batch.num_rows() {
            let object: BTreeMap<&str, Value> = columns
                .iter()
                .filter_map(|c| {
                    let i = schema.index_of(c).ok()?;
                    Some((c.as_str(), cell(batch.column(i).as_ref(), row)))
                })
                .collect();
            rows.push(serde_json::to_string(&object).unwrap_or_default());
        }
    }
    rows.sort();
    Ok(rows)
}

/// Loads a dlt fixture scenario's packages in order into the lake at `root` (`delta:<root>`) and
/// checks every table against dlt's expected rows, dlt's bookkeeping files (a `_dlt_loads` file
/// per package, a `_dlt_version` file per schema hash, the `init` file), that no staging tables
/// are left, and that loading a package again is a no-op.
pub async fn check_delta_scenario(scenario_dir: &Path, root: &Path, options: LoaderOptions) -> Result<(), String> {
    let scenario = Scenario::read(scenario_dir);
    let work = tempfile::tempdir().map_err(|e| e.to_string())?;
    copy_tree(&scenario_dir.join("packages"), work.path()).map_err(|e| e.to_string())?;
    let url = format!("delta:{}", root.display());
    let open = |options: LoaderOptions| -> Result<Loader, String> {
        Ok(berth::open_loader(&url, &berth::OpenOptions::default())
            .map_err(|e| e.to_string())?
            .with_options(options))
    };
    let loader = open(options.clone())?;
    let mut last = None;
    for package in &scenario.packages {
        let location =
            PackageLocation::parse(&work.path().join(package).to_string_lossy()).map_err(|e| e.to_string())?;
        let summary = loader
            .load(location.clone())
            .await
            .map_err(|e| format!("{}: loading {package}: {e}", scenario.name))?;
        if summary.status != PackageStatus::Loaded {
            return Err(format!(
                "{}: package {package} ended {:?}",
                scenario.name, summary.status
            ));
        }
        last = Some(location);
    }
    last.ok_or("no packages")?;
    check_lake(scenario_dir, root).await?;
    let again = PackageLocation::parse(&work.path().join(&scenario.packages[0]).to_string_lossy())
        .map_err(|e| e.to_string())?;
    let summary = open(options)?.load(again).await.map_err(|e| e.to_string())?;
    if summary.status != PackageStatus::AlreadyLoaded {
        return Err(format!(
            "{}: reloading a loaded package did {:?}",
            scenario.name, summary.status
        ));
    }
    Ok(())
}

/// The lake at `root` after a scenario's packages loaded: every table has dlt's expected rows
/// (typed as the last package's schema types them), dlt's bookkeeping files are there, and
/// nothing else is at the root.
pub async fn check_lake(scenario_dir: &Path, root: &Path) -> Result<(), String> {
    let scenario = Scenario::read(scenario_dir);
    let last = scenario.packages.last().ok_or("no packages")?;
    let location = PackageLocation::parse(&scenario_dir.join("packages").join(last).to_string_lossy())
        .map_err(|e| e.to_string())?;
    let last = LoadPackage::open(location).await.map_err(|e| e.to_string())?;
    let dataset = root.join(&scenario.dataset);
    for (table, columns) in &scenario.tables {
        let definition = last
            .schema
            .table(table)
            .ok_or_else(|| format!("{table} is not in the last package's schema"))?;
        let schema = berth::model::read::arrow_schema(definition);
        let actual = table_rows(&dataset.join(table), &schema, columns)?;
        let types = schema
            .fields()
            .iter()
            .map(|f| (f.name().clone(), f.data_type().clone()))
            .collect();
        let expected = expected_rows(&scenario_dir.join("expected").join(format!("{table}.jsonl")), &types);
        diff_rows(&format!("{}/{table}", scenario.name), &actual, &expected)?;
    }
    check_bookkeeping(scenario_dir, &scenario, &dataset)
}

/// dlt's bookkeeping files, and nothing at the root but the dataset.
fn check_bookkeeping(scenario_dir: &Path, scenario: &Scenario, dataset: &Path) -> Result<(), String> {
    let names = |table: &str| -> BTreeSet<String> {
        std::fs::read_dir(dataset.join(table))
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect()
    };
    let loads: BTreeSet<String> = names("_dlt_loads")
        .iter()
        .filter_map(|n| {
            n.strip_suffix(".jsonl")?
                .rsplit_once("__")
                .map(|(_, id)| id.to_string())
        })
        .collect();
    let expected: BTreeSet<String> = scenario.load_ids.iter().cloned().collect();
    if loads != expected {
        return Err(format!(
            "{}: _dlt_loads files of {loads:?}, expected {expected:?}",
            scenario.name
        ));
    }
    let (hashes, _) = crate::scenario_bookkeeping(scenario_dir, scenario);
    let mut versions = BTreeSet::new();
    for name in names("_dlt_version") {
        let text = std::fs::read_to_string(dataset.join("_dlt_version").join(&name)).map_err(|e| e.to_string())?;
        let row: Value = serde_json::from_str(&text).map_err(|e| format!("_dlt_version/{name}: {e}"))?;
        versions.insert(row["version_hash"].as_str().unwrap_or_default().to_string());
    }
    if versions != hashes {
        return Err(format!(
            "{}: _dlt_version holds {versions:?}, expected {hashes:?}",
            scenario.name
        ));
    }
    if !dataset.join("init").is_file() {
        return Err(format!("{}: the dataset has no init file", scenario.name));
    }
    let root = dataset.parent().ok_or("no root")?;
    let left: Vec<String> = std::fs::read_dir(root)
        .map_err(|e| e.to_string())?
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != &scenario.dataset)
        .collect();
    if !left.is_empty() {
        return Err(format!(
            "{}: the lake holds {left:?} besides the dataset",
            scenario.name
        ));
    }
    Ok(())
}
