//! Test support shared by berth's integration tests: fixture paths, package copies, reading a
//! destination's tables back as normalized JSON rows, and the destination conformance suite —
//! plain async functions taking a destination, so every destination is proven by the same tests.

pub mod azurite;
pub mod delta;
pub mod http;
pub mod pg;
pub mod s3;
mod types;

pub use types::check_type_round_trip;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::DataType as ArrowType;
use berth::destination::Destination;
use berth::loader::{Loader, LoaderOptions, PackageStatus};
use berth::model::PackageLocation;
use berth::plan::sql;
use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use serde_json::{Map, Value};

/// Loads `locations` into a fresh in-memory DuckDB, expecting every package to load; returns the
/// destination to read back.
pub async fn load_all_into_duckdb(locations: Vec<PackageLocation>) -> Arc<dyn Destination> {
    let destination: Arc<dyn Destination> =
        Arc::new(berth::duckdb::DuckDbDestination::in_memory().expect("in-memory duckdb"));
    let summary = Loader::new(Arc::clone(&destination))
        .load_all(locations)
        .await
        .expect("load");
    assert!(summary.all_loaded(), "{summary:?}");
    assert!(
        summary.packages.iter().all(|p| p.status == PackageStatus::Loaded),
        "{summary:?}"
    );
    destination
}

/// The repository's `testdata/`.
pub fn testdata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata")
}

/// A dlt fixture scenario: `testdata/dlt/<normalized_for>/<scenario>`.
pub fn scenario_dir(normalized_for: &str, scenario: &str) -> PathBuf {
    testdata().join("dlt").join(normalized_for).join(scenario)
}

/// The packages of a dlt fixture scenario (`testdata/dlt/<normalized_for>/<scenario>/packages`),
/// in load order.
pub fn scenario_packages(normalized_for: &str, scenario: &str) -> Vec<PathBuf> {
    let dir = scenario_dir(normalized_for, scenario).join("packages");
    let mut packages: Vec<_> = std::fs::read_dir(&dir)
        .expect("packages folder")
        .map(|e| e.expect("entry").path())
        .collect();
    packages.sort();
    packages
}

/// Copies a directory tree (packages are modified by loading: jobs move between folders).
pub fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// `scenario.json`.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Name.
    pub name: String,
    /// Dataset dlt loaded into.
    pub dataset: String,
    /// Package folders in load order.
    pub packages: Vec<String>,
    /// Table name → columns, as dlt left them.
    pub tables: BTreeMap<String, Vec<String>>,
    /// Load ids of the packages, in load order (`steps[].load_id`).
    pub load_ids: Vec<String>,
}

impl Scenario {
    /// Reads `scenario.json` of a scenario directory.
    pub fn read(dir: &Path) -> Scenario {
        let text = std::fs::read_to_string(dir.join("scenario.json")).expect("scenario.json");
        let v: Value = serde_json::from_str(&text).expect("scenario.json is JSON");
        Scenario {
            name: v["scenario"].as_str().unwrap_or_default().to_string(),
            dataset: v["dataset_name"].as_str().unwrap_or_default().to_string(),
            packages: v["steps"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|s| s["package"].as_str().unwrap_or_default().to_string())
                .collect(),
            load_ids: v["steps"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|s| s["load_id"].as_str().unwrap_or_default().to_string())
                .collect(),
            tables: v["tables"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, t)| {
                    let columns = t["columns"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|c| c.as_str().map(str::to_string))
                        .collect();
                    (k.clone(), columns)
                })
                .collect(),
        }
    }
}

fn canonical_timestamp(dt: DateTime<Utc>) -> String {
    dt.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

fn canonical_decimal(s: &str) -> String {
    // Databases print tiny and huge decimals in exponent notation (`-1E-9`).
    let expanded = berth::model::read::expand_exponent(s);
    let s = expanded.as_deref().unwrap_or(s).trim();
    if !s.contains('.') {
        return s.trim_start_matches('+').to_string();
    }
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// Brings an expected (dlt-printed) value into the same form as [`cell`] gives for `arrow_type`.
pub fn normalize_expected(value: &Value, arrow_type: &ArrowType) -> Value {
    if value.is_null() {
        return Value::Null;
    }
    match arrow_type {
        ArrowType::Timestamp(_, _) => {
            let s = value.as_str().unwrap_or_default();
            let dt = DateTime::parse_from_rfc3339(s)
                .map(|d| d.with_timezone(&Utc))
                .or_else(|_| NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f").map(|n| n.and_utc()))
                .or_else(|_| NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f").map(|n| n.and_utc()));
            dt.map_or_else(|_| value.clone(), |d| Value::String(canonical_timestamp(d)))
        }
        ArrowType::Decimal128(..) | ArrowType::Decimal256(..) => {
            let s = match value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            Value::String(canonical_decimal(&s))
        }
        ArrowType::Time64(_) | ArrowType::Time32(_) => value
            .as_str()
            .and_then(|s| NaiveTime::parse_from_str(s, "%H:%M:%S%.f").ok())
            .map_or_else(
                || value.clone(),
                |t| Value::String(t.format("%H:%M:%S%.6f").to_string()),
            ),
        ArrowType::Binary | ArrowType::LargeBinary | ArrowType::BinaryView => value.clone(),
        ArrowType::Float64 | ArrowType::Float32 => {
            value.as_f64().map_or_else(|| value.clone(), |f| serde_json::json!(f))
        }
        _ if value.is_string() => {
            // JSON columns print as strings on DuckDB and as JSON on PostgreSQL: compare as JSON.
            let s = value.as_str().unwrap_or_default();
            match serde_json::from_str::<Value>(s) {
                Ok(v @ (Value::Object(_) | Value::Array(_))) => canonical_json(v),
                _ => value.clone(),
            }
        }
        _ if value.is_object() || value.is_array() => canonical_json(value.clone()),
        _ => value.clone(),
    }
}

/// JSON with object keys sorted, so documents compare equal whatever order they were written in.
fn canonical_json(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().map(|(k, v)| (k, canonical_json(v))).collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(canonical_json).collect()),
        other => other,
    }
}

/// One cell of a destination's result as JSON, in the canonical form of [`normalize_expected`].
pub fn cell(array: &dyn Array, row: usize) -> Value {
    use arrow::datatypes::*;
    if array.is_null(row) {
        return Value::Null;
    }
    match array.data_type() {
        ArrowType::Boolean => Value::Bool(array.as_boolean().value(row)),
        ArrowType::Int8 => array.as_primitive::<Int8Type>().value(row).into(),
        ArrowType::Int16 => array.as_primitive::<Int16Type>().value(row).into(),
        ArrowType::Int32 => array.as_primitive::<Int32Type>().value(row).into(),
        ArrowType::Int64 => array.as_primitive::<Int64Type>().value(row).into(),
        ArrowType::UInt64 => array.as_primitive::<UInt64Type>().value(row).into(),
        ArrowType::Float64 => float(array.as_primitive::<Float64Type>().value(row)),
        ArrowType::Float32 => float(f64::from(array.as_primitive::<Float32Type>().value(row))),
        ArrowType::Utf8 | ArrowType::LargeUtf8 | ArrowType::Utf8View => {
            let s = match array.data_type() {
                ArrowType::Utf8 => array.as_string::<i32>().value(row).to_string(),
                ArrowType::LargeUtf8 => array.as_string::<i64>().value(row).to_string(),
                _ => array.as_string_view().value(row).to_string(),
            };
            normalize_expected(&Value::String(s), &ArrowType::Utf8)
        }
        ArrowType::Binary => serde_json::json!({"$bytes": hex(array.as_binary::<i32>().value(row))}),
        ArrowType::LargeBinary => serde_json::json!({"$bytes": hex(array.as_binary::<i64>().value(row))}),
        ArrowType::Date32 => {
            let days = array.as_primitive::<Date32Type>().value(row);
            let date =
                NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default() + chrono::Duration::days(i64::from(days));
            Value::String(date.format("%Y-%m-%d").to_string())
        }
        ArrowType::Timestamp(unit, _) => {
            let v = match unit {
                TimeUnit::Second => array.as_primitive::<TimestampSecondType>().value(row) * 1_000_000,
                TimeUnit::Millisecond => array.as_primitive::<TimestampMillisecondType>().value(row) * 1_000,
                TimeUnit::Microsecond => array.as_primitive::<TimestampMicrosecondType>().value(row),
                TimeUnit::Nanosecond => array.as_primitive::<TimestampNanosecondType>().value(row) / 1_000,
            };
            Value::String(canonical_timestamp(
                Utc.timestamp_micros(v).single().unwrap_or_default(),
            ))
        }
        ArrowType::Time64(TimeUnit::Microsecond) => {
            let micros = array.as_primitive::<Time64MicrosecondType>().value(row);
            let t = NaiveTime::from_num_seconds_from_midnight_opt(
                (micros / 1_000_000) as u32,
                ((micros % 1_000_000) * 1000) as u32,
            )
            .unwrap_or_default();
            Value::String(t.format("%H:%M:%S%.6f").to_string())
        }
        ArrowType::Decimal128(_, scale) => {
            let v = array.as_primitive::<Decimal128Type>().value(row);
            Value::String(canonical_decimal(&Decimal128Type::format_decimal(v, 38, *scale)))
        }
        other => {
            let formatter = arrow::util::display::ArrayFormatter::try_new(array, &Default::default());
            match formatter {
                Ok(f) => Value::String(format!("{other}:{}", f.value(row))),
                Err(_) => Value::String(format!("{other}:?")),
            }
        }
    }
}

/// Finite floats as JSON numbers; NaN and infinities as strings (JSON has no such numbers).
fn float(v: f64) -> Value {
    if v.is_finite() {
        serde_json::json!(v)
    } else {
        Value::String(v.to_string())
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs one PostgreSQL-dialect `sql` statement on `destination` and returns its rows with
/// every value cast to text (NULL as `None`): for catalog checks in tests.
pub async fn query_text(destination: &dyn Destination, sql: &str) -> Result<Vec<Vec<Option<String>>>, String> {
    let statement =
        berth::plan::sqlparser::parser::Parser::parse_sql(&berth::plan::sqlparser::dialect::PostgreSqlDialect {}, sql)
            .map_err(|e| format!("{sql}: {e}"))?
            .remove(0);
    let batches = destination.query(statement).await.map_err(|e| e.to_string())?;
    let mut rows = Vec::new();
    for batch in &batches {
        let columns = batch
            .columns()
            .iter()
            .map(|c| arrow::compute::cast(c, &ArrowType::Utf8).map_err(|e| e.to_string()))
            .collect::<Result<Vec<_>, _>>()?;
        for row in 0..batch.num_rows() {
            rows.push(
                columns
                    .iter()
                    .map(|c| {
                        let text = c.as_string::<i32>();
                        (!text.is_null(row)).then(|| text.value(row).to_string())
                    })
                    .collect(),
            );
        }
    }
    Ok(rows)
}

/// A Parquet file of the named `columns` (every field nullable), in row groups of at most
/// `row_group_rows` rows.
pub fn parquet_bytes(columns: Vec<(&str, arrow::array::ArrayRef)>, row_group_rows: usize) -> Vec<u8> {
    let fields: Vec<arrow::datatypes::Field> = columns
        .iter()
        .map(|(name, array)| arrow::datatypes::Field::new(*name, array.data_type().clone(), true))
        .collect();
    let batch = RecordBatch::try_new(
        Arc::new(arrow::datatypes::Schema::new(fields)),
        columns.into_iter().map(|(_, a)| a).collect(),
    )
    .expect("batch");
    let props = parquet::file::properties::WriterProperties::builder()
        .set_max_row_group_row_count(Some(row_group_rows.max(1)))
        .build();
    let mut out = Vec::new();
    let mut writer = parquet::arrow::ArrowWriter::try_new(&mut out, batch.schema(), Some(props)).expect("writer");
    writer.write(&batch).expect("write");
    writer.close().expect("close");
    out
}

/// Rows of a destination table as canonical JSON, sorted.
pub async fn table_rows(
    destination: &dyn Destination,
    dataset: &str,
    table: &str,
    columns: &[&str],
) -> Result<(Vec<String>, BTreeMap<String, ArrowType>), String> {
    let dialect = &destination.capabilities().dialect;
    let query = sql::select_columns(dialect, dataset, table, columns).map_err(|e| e.to_string())?;
    let batches: Vec<RecordBatch> = destination
        .query(berth::plan::sqlparser::ast::Statement::Query(Box::new(query)))
        .await
        .map_err(|e| format!("reading {dataset}.{table}: {e}"))?;
    let mut types = BTreeMap::new();
    let mut rows = Vec::new();
    for batch in &batches {
        for (i, field) in batch.schema().fields().iter().enumerate() {
            types.insert(columns[i].to_string(), field.data_type().clone());
            let _ = field;
        }
        for row in 0..batch.num_rows() {
            let mut object = BTreeMap::new();
            for (i, column) in columns.iter().enumerate() {
                object.insert((*column).to_string(), cell(batch.column(i).as_ref(), row));
            }
            rows.push(serde_json::to_string(&object).unwrap_or_default());
        }
    }
    rows.sort();
    Ok((rows, types))
}

/// Expected rows of `expected/<table>.jsonl`, normalized with the destination's column types.
pub fn expected_rows(path: &Path, types: &BTreeMap<String, ArrowType>) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut rows: Vec<String> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let v: Map<String, Value> = serde_json::from_str(line).expect("expected row is a JSON object");
            let row: BTreeMap<String, Value> = v
                .iter()
                .map(|(k, v)| {
                    let t = types.get(k).cloned().unwrap_or(ArrowType::Utf8);
                    (k.clone(), normalize_expected(v, &t))
                })
                .collect();
            serde_json::to_string(&row).unwrap_or_default()
        })
        .collect();
    rows.sort();
    rows
}

/// Expected rows given as JSON values, normalized with the destination's column types.
pub fn expected_rows_from_values(values: &[Value], types: &BTreeMap<String, ArrowType>) -> Vec<String> {
    let mut rows: Vec<String> = values
        .iter()
        .filter_map(Value::as_object)
        .map(|v| {
            let row: BTreeMap<String, Value> = v
                .iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        normalize_expected(v, &types.get(k).cloned().unwrap_or(ArrowType::Utf8)),
                    )
                })
                .collect();
            serde_json::to_string(&row).unwrap_or_default()
        })
        .collect();
    rows.sort();
    rows
}

/// Compares two sorted row lists as multisets and explains the difference.
pub fn diff_rows(table: &str, actual: &[String], expected: &[String]) -> Result<(), String> {
    if actual == expected {
        return Ok(());
    }
    let mut missing = expected.to_vec();
    let mut extra = Vec::new();
    for row in actual {
        if let Some(i) = missing.iter().position(|r| r == row) {
            missing.remove(i);
        } else {
            extra.push(row.clone());
        }
    }
    Err(format!(
        "table `{table}`: {} rows loaded, {} expected\n  missing (first 3): {:#?}\n  unexpected (first 3): {:#?}",
        actual.len(),
        expected.len(),
        &missing[..missing.len().min(3)],
        &extra[..extra.len().min(3)]
    ))
}

/// What a conformance trial expects of a scenario.
#[derive(Debug, Clone, Copy)]
pub enum ScenarioOutcome {
    /// Every package loads, and the destination ends with dlt's rows and bookkeeping.
    DltRows,
    /// berth does not implement a dlt feature the scenario uses (`why`): a package that uses it
    /// is refused with a plan error before anything of it is committed.
    Refused {
        /// The feature, for the failure message.
        why: &'static str,
    },
}

/// Runs a scenario against `destination` and checks `expect`.
pub async fn check_scenario_outcome(
    destination: Arc<dyn Destination>,
    scenario_dir: &Path,
    options: LoaderOptions,
    expect: ScenarioOutcome,
) -> Result<(), String> {
    match expect {
        ScenarioOutcome::DltRows => check_scenario(destination, scenario_dir, options).await,
        ScenarioOutcome::Refused { why } => check_scenario_refused(destination, scenario_dir, options, why).await,
    }
}

/// Loads a scenario's packages until one is refused; that one must fail with a plan error (berth
/// cannot do what dlt did) and leave no `_dlt_loads` row.
async fn check_scenario_refused(
    destination: Arc<dyn Destination>,
    scenario_dir: &Path,
    options: LoaderOptions,
    why: &str,
) -> Result<(), String> {
    let scenario = Scenario::read(scenario_dir);
    let work = tempfile::tempdir().map_err(|e| e.to_string())?;
    copy_tree(&scenario_dir.join("packages"), work.path()).map_err(|e| e.to_string())?;
    let loader = Loader::new(Arc::clone(&destination)).with_options(options);
    for (package, load_id) in scenario.packages.iter().zip(&scenario.load_ids) {
        let location =
            PackageLocation::parse(&work.path().join(package).to_string_lossy()).map_err(|e| e.to_string())?;
        match loader.load(location).await {
            Ok(summary) if summary.status == PackageStatus::Loaded => continue,
            Ok(summary) => {
                return Err(format!(
                    "{}: package {package} ended {:?} instead of being refused for {why}",
                    scenario.name, summary.status
                ));
            }
            Err(berth::loader::Error::Plan(_)) => {
                let loads = load_ids_in(destination.as_ref(), &scenario.dataset).await;
                if loads.contains(load_id) {
                    return Err(format!(
                        "{}: refused package {load_id} has a _dlt_loads row",
                        scenario.name
                    ));
                }
                return Ok(());
            }
            Err(e) => {
                return Err(format!(
                    "{}: {package} failed, but not as refused ({why}): {e}",
                    scenario.name
                ));
            }
        }
    }
    Err(format!(
        "{}: every package loaded; berth does not implement {why}, so it must refuse it (remove the scenario from REFUSED once it does)",
        scenario.name
    ))
}

/// The `load_id`s in `_dlt_loads` (none when the table does not exist).
async fn load_ids_in(destination: &dyn Destination, dataset: &str) -> Vec<String> {
    text_column(destination, dataset, "_dlt_loads", "load_id")
        .await
        .unwrap_or_default()
}

/// The non-NULL values of a text column of `dataset.table`, sorted.
async fn text_column(
    destination: &dyn Destination,
    dataset: &str,
    table: &str,
    column: &str,
) -> Result<Vec<String>, String> {
    let (rows, _) = table_rows(destination, dataset, table, &[column]).await?;
    Ok(rows
        .iter()
        .filter_map(|r| serde_json::from_str::<Value>(r).ok())
        .filter_map(|v| v[column].as_str().map(str::to_string))
        .collect())
}

/// Conformance: loads a dlt fixture scenario's packages in order into `destination` and checks
/// every table against dlt's `expected/` rows, plus the bookkeeping tables.
pub async fn check_scenario(
    destination: Arc<dyn Destination>,
    scenario_dir: &Path,
    options: LoaderOptions,
) -> Result<(), String> {
    let scenario = Scenario::read(scenario_dir);
    let work = tempfile::tempdir().map_err(|e| e.to_string())?;
    copy_tree(&scenario_dir.join("packages"), work.path()).map_err(|e| e.to_string())?;
    let keep_staging = options.keep_staging;
    let loader = Loader::new(Arc::clone(&destination)).with_options(options);
    // Schema hashes the dataset has, to check that a version row is written for new ones only.
    let mut stored = std::collections::BTreeSet::new();
    for package in &scenario.packages {
        let location =
            PackageLocation::parse(&work.path().join(package).to_string_lossy()).map_err(|e| e.to_string())?;
        let summary = loader
            .load(location)
            .await
            .map_err(|e| format!("{}: loading {package}: {e}", scenario.name))?;
        if summary.status != PackageStatus::Loaded {
            return Err(format!(
                "{}: package {package} ended {:?}: {:?}",
                scenario.name, summary.status, summary.jobs
            ));
        }
        let (hash, drops) = package_hash_and_drops(&scenario_dir.join("packages").join(package));
        if drops {
            stored.clear();
        }
        let new_hash = stored.insert(hash.clone());
        if summary.migration.stored_schema_version != new_hash {
            return Err(format!(
                "{}: package {package} (schema hash {hash}) reports stored_schema_version = {}, but the hash is {}",
                scenario.name,
                summary.migration.stored_schema_version,
                if new_hash { "new" } else { "stored already" }
            ));
        }
    }
    check_tables(destination.as_ref(), scenario_dir, keep_staging).await?;
    // Loading a package again is a no-op.
    let again = PackageLocation::parse(&work.path().join(&scenario.packages[0]).to_string_lossy())
        .map_err(|e| e.to_string())?;
    let summary = loader.load(again).await.map_err(|e| e.to_string())?;
    if summary.status != PackageStatus::AlreadyLoaded {
        return Err(format!(
            "{}: reloading a loaded package did {:?}",
            scenario.name, summary.status
        ));
    }
    Ok(())
}

/// A package folder's schema hash, and whether its state drops tables (which deletes every
/// stored version of the schema, as dlt's `drop_tables(..., delete_schema=True)` does).
fn package_hash_and_drops(dir: &Path) -> (String, bool) {
    let read = |file: &str| -> Value {
        serde_json::from_str(&std::fs::read_to_string(dir.join(file)).unwrap_or_default()).unwrap_or_default()
    };
    let hash = read("schema.json")["version_hash"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let drops = read("load_package_state.json")["dropped_tables"]
        .as_array()
        .is_some_and(|t| !t.is_empty());
    (hash, drops)
}

/// The `version_hash` of each package's `schema.json`, and the load ids of the packages that
/// carry a `_dlt_pipeline_state` job: what dlt writes to `_dlt_version` and `_dlt_pipeline_state`.
fn scenario_bookkeeping(scenario_dir: &Path, scenario: &Scenario) -> (std::collections::BTreeSet<String>, Vec<String>) {
    let mut hashes = std::collections::BTreeSet::new();
    let mut state_loads = Vec::new();
    for (package, load_id) in scenario.packages.iter().zip(&scenario.load_ids) {
        let dir = scenario_dir.join("packages").join(package);
        let (hash, drops) = package_hash_and_drops(&dir);
        if drops {
            hashes.clear();
        }
        hashes.insert(hash);
        let has_state = std::fs::read_dir(dir.join("new_jobs"))
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .any(|e| e.file_name().to_string_lossy().starts_with("_dlt_pipeline_state."));
        if has_state {
            state_loads.push(load_id.clone());
        }
    }
    state_loads.sort();
    (hashes, state_loads)
}

/// Conformance after a scenario's packages loaded: every table against dlt's `expected/` rows;
/// dlt's bookkeeping as dlt writes it (one committed `_dlt_loads` row per package, one
/// `_dlt_version` row per schema hash, one `_dlt_pipeline_state` row per state job); and nothing
/// else in the destination: no staging dataset, no table or view dlt would not have, but the journal.
pub async fn check_scenario_tables(destination: &dyn Destination, scenario_dir: &Path) -> Result<(), String> {
    check_tables(destination, scenario_dir, false).await
}

/// [`check_scenario_tables`]; `kept_staging`: the load kept its staging datasets (`keep_staging`).
async fn check_tables(destination: &dyn Destination, scenario_dir: &Path, kept_staging: bool) -> Result<(), String> {
    let scenario = Scenario::read(scenario_dir);
    for (table, columns) in &scenario.tables {
        let columns: Vec<&str> = columns.iter().map(String::as_str).collect();
        let (actual, types) = table_rows(destination, &scenario.dataset, table, &columns).await?;
        let expected = expected_rows(&scenario_dir.join("expected").join(format!("{table}.jsonl")), &types);
        diff_rows(&format!("{}/{table}", scenario.name), &actual, &expected)?;
    }
    let (loads, _) = table_rows(destination, &scenario.dataset, "_dlt_loads", &["load_id", "status"]).await?;
    let mut expected_loads: Vec<String> = scenario
        .load_ids
        .iter()
        .map(|id| serde_json::to_string(&serde_json::json!({"load_id": id, "status": 0})).unwrap_or_default())
        .collect();
    expected_loads.sort();
    if loads != expected_loads {
        return Err(format!(
            "{}: _dlt_loads is {loads:?}, dlt has one committed row per package: {expected_loads:?}",
            scenario.name
        ));
    }
    let (hashes, state_loads) = scenario_bookkeeping(scenario_dir, &scenario);
    let versions = text_column(destination, &scenario.dataset, "_dlt_version", "version_hash").await?;
    if versions != hashes.iter().cloned().collect::<Vec<_>>() {
        return Err(format!(
            "{}: _dlt_version holds {versions:?}; dlt stores one row per schema hash: {hashes:?}",
            scenario.name
        ));
    }
    let states = text_column(destination, &scenario.dataset, "_dlt_pipeline_state", "_dlt_load_id").await?;
    if states != state_loads {
        return Err(format!(
            "{}: _dlt_pipeline_state rows of loads {states:?}, the packages' state jobs are of {state_loads:?}",
            scenario.name
        ));
    }
    check_nothing_else(destination, &scenario, kept_staging).await
}

/// Every schema and relation outside the system catalogs: only the scenario's dataset, holding
/// dlt's tables and the journal.
async fn check_nothing_else(
    destination: &dyn Destination,
    scenario: &Scenario,
    kept_staging: bool,
) -> Result<(), String> {
    let staging_prefix = format!("{}_staging", scenario.dataset);
    let rows = query_text(
        destination,
        "SELECT table_schema, table_name, table_type FROM information_schema.tables \
         WHERE table_schema NOT IN ('information_schema', 'pg_catalog')",
    )
    .await?;
    let allowed = |name: &str| {
        scenario.tables.contains_key(name)
            || [
                "_dlt_loads",
                "_dlt_version",
                "_dlt_pipeline_state",
                berth::model::schema::JOURNAL_TABLE,
            ]
            .contains(&name)
    };
    let unexpected: Vec<String> = rows
        .iter()
        .filter(|r| {
            let schema = r[0].as_deref().unwrap_or_default();
            let table = r[1].as_deref().unwrap_or_default();
            let kept = kept_staging && schema.starts_with(&staging_prefix);
            !kept && (schema != scenario.dataset || !allowed(table))
        })
        .map(|r| format!("{:?}.{:?} ({:?})", r[0], r[1], r[2]))
        .collect();
    if !unexpected.is_empty() {
        return Err(format!(
            "{}: the destination holds what dlt would not have left there: {unexpected:?}",
            scenario.name
        ));
    }
    Ok(())
}
