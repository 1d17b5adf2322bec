//! Random merge packages loaded into PostgreSQL and DuckDB end with the same rows as DataFusion
//! executing the very same plans in memory (`berth_plan::exec`), load after load.
//!
//! Each case is a seeded run of several packages into one dataset: duplicate keys inside a
//! package, NULL and tied `dedup_sort` values, hard deletes, nested lists of 0–3 elements, keys
//! that come back after they were deleted or retired. Some cases have no nested table: their first
//! package may move the staging table into the new final table instead of copying it (PostgreSQL),
//! which must end with the same rows and the final table's constraints.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{BooleanBuilder, Int64Builder, RecordBatch, StringBuilder};
use arrow::datatypes::{DataType as ArrowType, Field, Schema as ArrowSchema};
use berth::destination::Destination;
use berth::loader::{Loader, LoaderOptions};
use berth::model::{LoadPackage, PackageLocation};
use berth::plan::TableRef;
use berth::plan::exec::MemoryCatalog;
use berth_tests::{cell, query_text, table_rows};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};

use berth_tests::pg::PgCluster;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Strategy {
    DeleteInsert,
    Upsert,
    InsertOnly,
    Scd2,
}

impl Strategy {
    fn name(self) -> &'static str {
        match self {
            Self::DeleteInsert => "delete-insert",
            Self::Upsert => "upsert",
            Self::InsertOnly => "insert-only",
            Self::Scd2 => "scd2",
        }
    }
}

fn hash(parts: &[&str]) -> String {
    let mut h = 0xcbf2_9ce4_8422_2325_u64;
    for part in parts {
        for b in part.bytes().chain([0xff]) {
            h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

fn col(name: &str, data_type: &str, nullable: bool, hints: Value) -> (String, Value) {
    let mut column = json!({"name": name, "data_type": data_type, "nullable": nullable});
    if let (Some(c), Some(h)) = (column.as_object_mut(), hints.as_object()) {
        for (k, v) in h {
            c.insert(k.clone(), v.clone());
        }
    }
    (name.to_string(), column)
}

fn schema_json(strategy: Strategy, version: u64, with_nested: bool) -> Value {
    let (root, nested, root_columns, nested_columns) = if strategy == Strategy::Scd2 {
        (
            "dim",
            "dim__addr",
            vec![
                col("_dlt_valid_from", "timestamp", true, json!({"x-valid-from": true})),
                col("_dlt_valid_to", "timestamp", true, json!({"x-valid-to": true})),
                col("cid", "bigint", false, json!({"primary_key": true})),
                col("city", "text", true, json!({})),
                col("_dlt_load_id", "text", false, json!({})),
                col("_dlt_id", "text", false, json!({"x-row-version": true})),
            ],
            vec![
                col("street", "text", true, json!({})),
                col("_dlt_parent_id", "text", false, json!({"parent_key": true})),
                col("_dlt_list_idx", "bigint", false, json!({})),
                col("_dlt_id", "text", false, json!({"unique": true, "row_key": true})),
            ],
        )
    } else {
        let mut root_columns = vec![
            col("id", "bigint", false, json!({"primary_key": true})),
            col("v", "text", true, json!({})),
        ];
        if strategy == Strategy::DeleteInsert {
            root_columns.push(col("seq", "bigint", true, json!({"dedup_sort": "desc"})));
        }
        if strategy != Strategy::InsertOnly {
            root_columns.push(col("deleted", "bool", true, json!({"hard_delete": true})));
        }
        root_columns.push(col("_dlt_load_id", "text", false, json!({})));
        root_columns.push(col("_dlt_id", "text", false, json!({"unique": true, "row_key": true})));
        (
            "items",
            "items__tags",
            root_columns,
            vec![
                col("value", "text", true, json!({})),
                col("_dlt_root_id", "text", false, json!({"root_key": true})),
                col("_dlt_parent_id", "text", false, json!({"parent_key": true})),
                col("_dlt_list_idx", "bigint", false, json!({})),
                col("_dlt_id", "text", false, json!({"unique": true, "row_key": true})),
            ],
        )
    };
    let columns = |c: Vec<(String, Value)>| Value::Object(c.into_iter().collect());
    let mut tables = json!({
        root: {
            "name": root, "write_disposition": "merge", "x-merge-strategy": strategy.name(),
            "resource": root, "x-normalizer": {"seen-data": true}, "columns": columns(root_columns),
        },
    });
    if with_nested {
        tables[nested] = json!({
            "name": nested, "parent": root, "x-normalizer": {"seen-data": true},
            "columns": columns(nested_columns),
        });
    }
    json!({
        "name": "prop",
        "version": version,
        "version_hash": format!("prop-{}-{version}", strategy.name()),
        "engine_version": 11,
        "tables": tables,
    })
}

fn write_parquet(path: &Path, batch: &RecordBatch) {
    let file = std::fs::File::create(path).expect("create parquet");
    let mut writer = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None).expect("writer");
    writer.write(batch).expect("write");
    writer.close().expect("close");
}

fn text(name: &str, nullable: bool) -> Field {
    Field::new(name, ArrowType::Utf8, nullable)
}

/// Writes package `index` of a case and returns its folder.
fn write_package(dir: &Path, strategy: Strategy, with_nested: bool, rng: &mut ChaCha8Rng, index: u64) -> PathBuf {
    let load_id = format!("1795400{index:03}.5");
    let package = dir.join(&load_id);
    let jobs = package.join("new_jobs");
    std::fs::create_dir_all(&jobs).expect("mkdir");
    let schema = serde_json::to_string(&schema_json(strategy, 1, with_nested)).expect("json");
    std::fs::write(package.join("schema.json"), schema).expect("schema");
    let created_at = format!("2026-11-22T10:{:02}:{:02}.123456+00:00", index, rng.random_range(0..60));
    let state = json!({"_state_version": 1, "_state_engine_version": 1, "created_at": created_at});
    std::fs::write(package.join("load_package_state.json"), state.to_string()).expect("state");

    let rows = rng.random_range(0..10usize);
    let unique_keys = matches!(strategy, Strategy::Upsert | Strategy::InsertOnly);
    let mut keys: Vec<i64> = (1..=8).collect();
    let mut root_ids = Vec::new();
    let (mut id, mut v, mut seq, mut deleted, mut load, mut dlt_id) = (
        Int64Builder::new(),
        StringBuilder::new(),
        Int64Builder::new(),
        BooleanBuilder::new(),
        StringBuilder::new(),
        StringBuilder::new(),
    );
    for row in 0..rows {
        let key = if unique_keys {
            if keys.is_empty() {
                break;
            }
            keys.remove(rng.random_range(0..keys.len()))
        } else {
            rng.random_range(1..=6)
        };
        let value = format!("v{}", rng.random_range(0..3));
        let row_id = match strategy {
            Strategy::DeleteInsert => hash(&[&load_id, &row.to_string()]),
            Strategy::Upsert | Strategy::InsertOnly => hash(&[&key.to_string()]),
            Strategy::Scd2 => hash(&[&key.to_string(), &value]),
        };
        id.append_value(key);
        if rng.random_ratio(1, 6) {
            v.append_null();
        } else {
            v.append_value(&value);
        }
        match rng.random_range(0..4) {
            0 => seq.append_null(),
            n => seq.append_value(n),
        }
        match rng.random_range(0..6) {
            0 => deleted.append_value(true),
            1 => deleted.append_null(),
            _ => deleted.append_value(false),
        }
        load.append_value(&load_id);
        dlt_id.append_value(&row_id);
        root_ids.push(row_id);
    }
    let (key_name, value_name, root, nested, nested_value) = if strategy == Strategy::Scd2 {
        ("cid", "city", "dim", "dim__addr", "street")
    } else {
        ("id", "v", "items", "items__tags", "value")
    };
    let mut fields = vec![Field::new(key_name, ArrowType::Int64, false), text(value_name, true)];
    let mut columns: Vec<arrow::array::ArrayRef> = vec![Arc::new(id.finish()), Arc::new(v.finish())];
    if strategy == Strategy::DeleteInsert {
        fields.push(Field::new("seq", ArrowType::Int64, true));
        columns.push(Arc::new(seq.finish()));
    }
    if matches!(strategy, Strategy::DeleteInsert | Strategy::Upsert) {
        fields.push(Field::new("deleted", ArrowType::Boolean, true));
        columns.push(Arc::new(deleted.finish()));
    }
    fields.push(text("_dlt_load_id", false));
    fields.push(text("_dlt_id", false));
    columns.push(Arc::new(load.finish()));
    columns.push(Arc::new(dlt_id.finish()));
    let batch = RecordBatch::try_new(Arc::new(ArrowSchema::new(fields)), columns).expect("root batch");
    write_parquet(&jobs.join(format!("{root}.{:010x}.0.parquet", index)), &batch);
    if !with_nested {
        return package;
    }

    let (mut value, mut root_key, mut parent, mut idx, mut nid) = (
        StringBuilder::new(),
        StringBuilder::new(),
        StringBuilder::new(),
        Int64Builder::new(),
        StringBuilder::new(),
    );
    for root_id in &root_ids {
        for i in 0..rng.random_range(0..=3i64) {
            // scd2 nested ids derive from the root's row hash: an identical version carries
            // identical children.
            let street = format!("t{}", rng.random_range(0..4));
            if strategy == Strategy::Scd2 {
                value.append_value(&hash(&[root_id, &i.to_string()])[..2]);
            } else {
                value.append_value(street);
            }
            root_key.append_value(root_id);
            parent.append_value(root_id);
            idx.append_value(i);
            nid.append_value(match strategy {
                Strategy::DeleteInsert => hash(&[&load_id, root_id, &i.to_string(), "n"]),
                _ => hash(&[root_id, &i.to_string()]),
            });
        }
    }
    let mut fields = vec![text(nested_value, true)];
    let mut columns: Vec<arrow::array::ArrayRef> = vec![Arc::new(value.finish())];
    if strategy != Strategy::Scd2 {
        fields.push(text("_dlt_root_id", false));
        columns.push(Arc::new(root_key.finish()));
    }
    fields.push(text("_dlt_parent_id", false));
    fields.push(Field::new("_dlt_list_idx", ArrowType::Int64, false));
    fields.push(text("_dlt_id", false));
    columns.push(Arc::new(parent.finish()));
    columns.push(Arc::new(idx.finish()));
    columns.push(Arc::new(nid.finish()));
    let batch = RecordBatch::try_new(Arc::new(ArrowSchema::new(fields)), columns).expect("nested batch");
    write_parquet(&jobs.join(format!("{nested}.{:010x}.0.parquet", index + 1)), &batch);
    package
}

fn memory_rows(catalog: &MemoryCatalog, at: &TableRef) -> Vec<String> {
    let Some(table) = catalog.table(at) else {
        return Vec::new();
    };
    let mut rows = Vec::new();
    for batch in &table.batches {
        for row in 0..batch.num_rows() {
            let object: BTreeMap<String, Value> = table
                .schema
                .fields()
                .iter()
                .enumerate()
                .map(|(i, f)| (f.name().clone(), cell(batch.column(i).as_ref(), row)))
                .collect();
            rows.push(serde_json::to_string(&object).unwrap_or_default());
        }
    }
    rows.sort();
    rows
}

async fn run_case(seed: u64, strategy: Strategy, with_nested: bool, destinations: &[(&str, Arc<dyn Destination>)]) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let dataset = format!("prop_{}_{seed}", strategy.name().replace('-', "_"));
    let root = if strategy == Strategy::Scd2 { "dim" } else { "items" };
    let mut memory = MemoryCatalog::new();
    let tables: &[&str] = if strategy == Strategy::Scd2 {
        &["dim", "dim__addr"]
    } else {
        &["items", "items__tags"]
    };
    for index in 0..4 {
        let folder = write_package(dir.path(), strategy, with_nested, &mut rng, index);
        let options = berth::plan::PlanOptions::new(&dataset);
        let package = LoadPackage::open(PackageLocation::local(&folder).expect("path"))
            .await
            .expect("open package");
        memory.load_package(&package, &options).await.expect("memory load");
        for (name, destination) in destinations {
            // Each destination loads its own copy: loading moves the job files.
            let copy = dir
                .path()
                .join(format!("{name}-{index}"))
                .join(folder.file_name().expect("name"));
            berth_tests::copy_tree(&folder, &copy).expect("copy");
            let loader = Loader::new(Arc::clone(destination)).with_options(LoaderOptions {
                dataset: Some(dataset.clone()),
                ..LoaderOptions::default()
            });
            let summary = loader
                .load(PackageLocation::local(&copy).expect("path"))
                .await
                .unwrap_or_else(|e| panic!("seed {seed} {} package {index} into {name}: {e}", strategy.name()));
            assert_eq!(
                summary.status,
                berth::loader::PackageStatus::Loaded,
                "seed {seed} into {name}: {summary:?}"
            );
        }
        for table in tables {
            let expected = memory_rows(&memory, &TableRef::new(&dataset, *table));
            let columns: Vec<String> = match memory.table(&TableRef::new(&dataset, *table)) {
                Some(t) => t.schema.fields().iter().map(|f| f.name().clone()).collect(),
                None => continue,
            };
            let columns: Vec<&str> = columns.iter().map(String::as_str).collect();
            for (name, destination) in destinations {
                let (actual, _) = table_rows(destination.as_ref(), &dataset, table, &columns)
                    .await
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
                if let Err(diff) = berth_tests::diff_rows(table, &actual, &expected) {
                    panic!(
                        "seed {seed}, {}, after package {index}: {name} differs from DataFusion\n{diff}",
                        strategy.name()
                    );
                }
            }
        }
    }
    // PostgreSQL keeps the root's UNIQUE `_dlt_id` whichever way its rows came in (a moved
    // staging table gets it added).
    let unique_root = strategy != Strategy::Scd2;
    for (name, destination) in destinations.iter().filter(|(n, _)| unique_root && *n == "postgres") {
        let sql = format!(
            "SELECT constraint_name FROM information_schema.table_constraints \
             WHERE table_schema = '{dataset}' AND table_name = '{root}' AND constraint_type = 'UNIQUE'"
        );
        let count = query_text(destination.as_ref(), &sql).await.expect("constraints").len();
        assert_eq!(
            count, 1,
            "seed {seed}: {name} `{root}` should have one UNIQUE constraint"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_merges_match_datafusion_in_postgres_and_duckdb() {
    let cluster = PgCluster::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let duckdb: Arc<dyn Destination> =
        Arc::new(berth::duckdb::DuckDbDestination::open(dir.path().join("prop.duckdb")).expect("duckdb"));
    let postgres: Arc<dyn Destination> =
        Arc::new(berth::postgres::PostgresDestination::from_url(&cluster.database_url("prop")).expect("postgres"));
    let destinations = [("duckdb", duckdb), ("postgres", postgres)];
    let strategies = [
        Strategy::DeleteInsert,
        Strategy::Upsert,
        Strategy::InsertOnly,
        Strategy::Scd2,
    ];
    for seed in 0..12u64 {
        run_case(seed, strategies[(seed % 4) as usize], true, &destinations).await;
    }
    // Root tables alone: the first package may move staging into the new table.
    for seed in 12..21u64 {
        run_case(seed, strategies[(seed % 3) as usize], false, &destinations).await;
    }
}
