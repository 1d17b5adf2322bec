//! Random merge packages loaded into PostgreSQL and DuckDB end with the rows an independent
//! oracle (plain Rust over the staged rows, following dlt's merge SQL) computes, and with the same
//! rows as DataFusion executing berth's very plans in memory (`berth_plan::exec`), load after
//! load.
//!
//! Each case is a seeded run of several packages into one dataset: duplicate keys inside a
//! package, NULL and tied `dedup_sort` values, hard deletes, nested lists of 0–3 elements, keys
//! that come back after they were deleted or retired. Some cases have no nested table: their first
//! package may move the staging table into the new final table instead of copying it (PostgreSQL),
//! which must end with the same rows and the final table's constraints.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{BooleanBuilder, Int64Builder, RecordBatch, StringBuilder};
use arrow::datatypes::{DataType as ArrowType, Field, Schema as ArrowSchema};
use berth::destination::Destination;
use berth::loader::memory::MemoryExecutor;
use berth::loader::{Loader, LoaderOptions};
use berth::model::PackageLocation;
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
    Cdc,
}

impl Strategy {
    fn name(self) -> &'static str {
        match self {
            Self::DeleteInsert => "delete-insert",
            Self::Upsert => "upsert",
            Self::InsertOnly => "insert-only",
            Self::Scd2 => "scd2",
            Self::Cdc => "cdc",
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

/// dlt 1.31's merge conditions a case sets: a source filter keeping keys 1 to 4, and a
/// destination scope of keys 1 to 4.
#[derive(Debug, Clone, Copy, Default)]
struct Conditions {
    filter: bool,
    scope: bool,
}

fn schema_json(strategy: Strategy, version: u64, with_nested: bool, conditions: Conditions) -> Value {
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
    let key = if strategy == Strategy::Scd2 { "cid" } else { "id" };
    if conditions.filter {
        tables[root]["x-merge-source-filter"] = json!(format!("{key} <= 4"));
    }
    if conditions.scope {
        tables[root]["x-merge-destination-scope"] = json!(format!("{{table}}.{key} <= 4"));
    }
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

/// A row as the oracle keeps it: column name to canonical JSON value (see [`berth_tests::cell`]).
type Row = BTreeMap<String, Value>;

/// What one package stages: its root and nested rows and its scd2 boundary (canonical).
struct Staged {
    roots: Vec<Row>,
    nested: Vec<Row>,
    boundary: Value,
}

/// Writes package `index` of a case and returns its folder and what it stages.
fn write_package(
    dir: &Path,
    strategy: Strategy,
    with_nested: bool,
    rng: &mut ChaCha8Rng,
    index: u64,
    conditions: Conditions,
) -> (PathBuf, Staged) {
    let load_id = format!("1795400{index:03}.5");
    let package = dir.join(&load_id);
    let jobs = package.join("new_jobs");
    std::fs::create_dir_all(&jobs).expect("mkdir");
    let schema = serde_json::to_string(&schema_json(strategy, 1, with_nested, conditions)).expect("json");
    std::fs::write(package.join("schema.json"), schema).expect("schema");
    let created_at = format!("2026-11-22T10:{:02}:{:02}.123456+00:00", index, rng.random_range(0..60));
    let boundary = chrono::DateTime::parse_from_rfc3339(&created_at)
        .expect("created_at")
        .timestamp_micros();
    let boundary = cell(
        &arrow::array::TimestampMicrosecondArray::from(vec![boundary]).with_timezone("UTC"),
        0,
    );
    let mut staged = Staged {
        roots: Vec::new(),
        nested: Vec::new(),
        boundary,
    };
    let state = json!({"_state_version": 1, "_state_engine_version": 1, "created_at": created_at});
    std::fs::write(package.join("load_package_state.json"), state.to_string()).expect("state");

    let rows = rng.random_range(0..10usize);
    let unique_keys = matches!(strategy, Strategy::Upsert | Strategy::InsertOnly | Strategy::Cdc);
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
        let value = (!rng.random_ratio(1, 6)).then(|| format!("v{}", rng.random_range(0..3)));
        // scd2's row hash is the row's content, as dlt computes it.
        let row_id = match strategy {
            Strategy::DeleteInsert => hash(&[&load_id, &row.to_string()]),
            Strategy::Upsert | Strategy::InsertOnly | Strategy::Cdc => hash(&[&key.to_string()]),
            Strategy::Scd2 => hash(&[&key.to_string(), value.as_deref().unwrap_or("\u{0}null")]),
        };
        let seq_value = match rng.random_range(0..4) {
            0 => None,
            n => Some(n),
        };
        let deleted_value = match rng.random_range(0..6) {
            0 => Some(true),
            1 => None,
            _ => Some(false),
        };
        id.append_value(key);
        v.append_option(value.as_deref());
        seq.append_option(seq_value);
        deleted.append_option(deleted_value);
        load.append_value(&load_id);
        dlt_id.append_value(&row_id);
        let (key_name, value_name) = if strategy == Strategy::Scd2 {
            ("cid", "city")
        } else {
            ("id", "v")
        };
        let mut staged_row = Row::from([
            (key_name.to_string(), json!(key)),
            (value_name.to_string(), value.map_or(Value::Null, Value::String)),
            ("_dlt_load_id".to_string(), json!(load_id)),
            ("_dlt_id".to_string(), json!(row_id)),
        ]);
        if strategy == Strategy::DeleteInsert {
            staged_row.insert("seq".into(), seq_value.map_or(Value::Null, |n| json!(n)));
        }
        if matches!(strategy, Strategy::DeleteInsert | Strategy::Upsert | Strategy::Cdc) {
            staged_row.insert("deleted".into(), deleted_value.map_or(Value::Null, Value::Bool));
        }
        staged.roots.push(staged_row);
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
    if matches!(strategy, Strategy::DeleteInsert | Strategy::Upsert | Strategy::Cdc) {
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
        return (package, staged);
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
            let element = if strategy == Strategy::Scd2 {
                hash(&[root_id, &i.to_string()])[..2].to_string()
            } else {
                street
            };
            let element_id = match strategy {
                Strategy::DeleteInsert => hash(&[&load_id, root_id, &i.to_string(), "n"]),
                _ => hash(&[root_id, &i.to_string()]),
            };
            value.append_value(&element);
            root_key.append_value(root_id);
            parent.append_value(root_id);
            idx.append_value(i);
            nid.append_value(&element_id);
            let mut staged_row = Row::from([
                (nested_value.to_string(), json!(element)),
                ("_dlt_parent_id".to_string(), json!(root_id)),
                ("_dlt_list_idx".to_string(), json!(i)),
                ("_dlt_id".to_string(), json!(element_id)),
            ]);
            if strategy != Strategy::Scd2 {
                staged_row.insert("_dlt_root_id".into(), json!(root_id));
            }
            staged.nested.push(staged_row);
        }
    }
    // Now and then a nested row whose root row is not in the package (its root job failed, or
    // another package carried it): each strategy keeps or drops it as dlt's merge does.
    if rng.random_ratio(1, 4) {
        let lost_root = hash(&[&load_id, "lost root"]);
        let element_id = hash(&[&lost_root, "0"]);
        value.append_value("lost");
        root_key.append_value(&lost_root);
        parent.append_value(&lost_root);
        idx.append_value(0);
        nid.append_value(&element_id);
        let mut staged_row = Row::from([
            (nested_value.to_string(), json!("lost")),
            ("_dlt_parent_id".to_string(), json!(lost_root)),
            ("_dlt_list_idx".to_string(), json!(0)),
            ("_dlt_id".to_string(), json!(element_id)),
        ]);
        if strategy != Strategy::Scd2 {
            staged_row.insert("_dlt_root_id".into(), json!(lost_root));
        }
        staged.nested.push(staged_row);
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
    (package, staged)
}

/// The tables dlt's merge leaves, computed in plain Rust from the staged rows: an oracle that
/// shares nothing with berth's plans (dlt 1.31's `sql_jobs.py`, with berth's documented
/// decisions: ties broken by `_dlt_id`, NULL sort values last, an scd2 version or nested row
/// staged twice inserted once).
#[derive(Default)]
struct Oracle {
    roots: Vec<Row>,
    nested: Vec<Row>,
}

fn text_of<'a>(row: &'a Row, column: &str) -> &'a str {
    row.get(column).and_then(Value::as_str).unwrap_or_default()
}

fn is_deleted(row: &Row) -> bool {
    row.get("deleted") == Some(&Value::Bool(true))
}

impl Oracle {
    fn apply(&mut self, strategy: Strategy, staged: &Staged, conditions: Conditions) {
        let (key, link) = if strategy == Strategy::Scd2 {
            ("cid", "_dlt_parent_id")
        } else {
            ("id", "_dlt_root_id")
        };
        let in_range = move |r: &Row| r[key].as_i64().is_some_and(|k| k <= 4);
        // The source filter: only the staged roots it keeps, and their nested rows, are merged.
        let filtered;
        let staged = if conditions.filter {
            let roots: Vec<Row> = staged.roots.iter().filter(|r| in_range(r)).cloned().collect();
            let ids: BTreeSet<&str> = roots.iter().map(|r| text_of(r, "_dlt_id")).collect();
            let nested = staged
                .nested
                .iter()
                .filter(|n| ids.contains(text_of(n, link)))
                .cloned()
                .collect();
            filtered = Staged {
                roots,
                nested,
                boundary: staged.boundary.clone(),
            };
            &filtered
        } else {
            staged
        };
        let scope: Option<&dyn Fn(&Row) -> bool> = if conditions.scope { Some(&in_range) } else { None };
        match strategy {
            Strategy::DeleteInsert => match scope {
                Some(scope) => {
                    // The scope alone picks the rows replaced; every staged winner comes in.
                    self.remove_roots(|r| scope(r), link);
                    self.insert_winners(staged);
                }
                None => self.delete_insert(staged),
            },
            Strategy::Upsert => self.upsert(staged),
            Strategy::InsertOnly => self.insert_only(staged),
            Strategy::Scd2 => self.scd2(staged, scope),
            Strategy::Cdc => self.cdc(staged, scope),
        }
    }

    /// Removes the final roots for which `gone` holds, with their nested rows (by `link`).
    fn remove_roots(&mut self, gone: impl Fn(&Row) -> bool, link: &str) {
        let removed: BTreeSet<String> = self
            .roots
            .iter()
            .filter(|r| gone(r))
            .map(|r| text_of(r, "_dlt_id").to_string())
            .collect();
        self.roots.retain(|r| !gone(r));
        self.nested.retain(|n| !removed.contains(text_of(n, link)));
    }

    /// The package is a snapshot: final roots whose key is not staged go with their nested rows;
    /// then the staged rows upsert.
    fn cdc(&mut self, staged: &Staged, scope: Option<&dyn Fn(&Row) -> bool>) {
        let keys: BTreeSet<Option<i64>> = staged.roots.iter().map(|r| r["id"].as_i64()).collect();
        let in_scope = |r: &Row| scope.is_none_or(|s| s(r));
        self.remove_roots(|r| !keys.contains(&r["id"].as_i64()) && in_scope(r), "_dlt_root_id");
        self.upsert(staged);
    }

    /// Every final row of a staged key goes (with its nested rows); per key the first row by
    /// `seq` descending (NULL last, then `_dlt_id`) comes in unless it is deleted, with its
    /// nested rows.
    fn delete_insert(&mut self, staged: &Staged) {
        let keys: BTreeSet<Option<i64>> = staged.roots.iter().map(|r| r["id"].as_i64()).collect();
        self.remove_roots(|r| keys.contains(&r["id"].as_i64()), "_dlt_root_id");
        self.insert_winners(staged);
    }

    /// Per key the first staged row by `seq` descending (NULL last, then `_dlt_id`) comes in
    /// unless it is deleted, with its nested rows.
    fn insert_winners(&mut self, staged: &Staged) {
        let rank = |r: &Row| {
            (
                r["seq"].as_i64().map_or(1, |_| 0),
                -r["seq"].as_i64().unwrap_or(0),
                text_of(r, "_dlt_id").to_string(),
            )
        };
        let mut winners: BTreeMap<String, &Row> = BTreeMap::new();
        for row in &staged.roots {
            let key = row["id"].to_string();
            if winners.get(&key).is_none_or(|best| rank(row) < rank(best)) {
                winners.insert(key, row);
            }
        }
        let inserted: Vec<Row> = winners.into_values().filter(|r| !is_deleted(r)).cloned().collect();
        let ids: BTreeSet<&str> = inserted.iter().map(|r| text_of(r, "_dlt_id")).collect();
        let children = staged
            .nested
            .iter()
            .filter(|n| ids.contains(text_of(n, "_dlt_root_id")));
        self.nested.extend(children.cloned());
        self.roots.extend(inserted);
    }

    /// The root rows merge by key (a deleted staged row deletes its match and is not inserted);
    /// nested rows merge by `_dlt_id`, then the nested rows of staged roots that were not staged
    /// again go, and those of deleted roots.
    fn upsert(&mut self, staged: &Staged) {
        for row in &staged.roots {
            match self.roots.iter().position(|f| f["id"] == row["id"]) {
                Some(at) if is_deleted(row) => {
                    self.roots.remove(at);
                }
                Some(at) => self.roots[at] = row.clone(),
                // dlt 1.31's MERGE inserts it, delete marker and all; berth follows the hint's
                // meaning ("deleted / not inserted"), as dlt's own `cdc` does.
                None if is_deleted(row) => {}
                None => self.roots.push(row.clone()),
            }
        }
        for row in &staged.nested {
            match self.nested.iter().position(|f| f["_dlt_id"] == row["_dlt_id"]) {
                Some(at) => self.nested[at] = row.clone(),
                None => self.nested.push(row.clone()),
            }
        }
        let staged_roots: BTreeSet<&str> = staged.roots.iter().map(|r| text_of(r, "_dlt_id")).collect();
        let staged_nested: BTreeSet<&str> = staged.nested.iter().map(|n| text_of(n, "_dlt_id")).collect();
        let deleted_roots: BTreeSet<&str> = staged
            .roots
            .iter()
            .filter(|r| is_deleted(r))
            .map(|r| text_of(r, "_dlt_id"))
            .collect();
        self.nested.retain(|n| {
            let root = text_of(n, "_dlt_root_id");
            let gone_from_list = staged_roots.contains(root) && !staged_nested.contains(text_of(n, "_dlt_id"));
            !gone_from_list && !deleted_roots.contains(root)
        });
    }

    /// Root rows of new keys go in; nested rows whose `_dlt_id` is new go in.
    fn insert_only(&mut self, staged: &Staged) {
        for row in &staged.roots {
            if !self.roots.iter().any(|f| f["id"] == row["id"]) {
                self.roots.push(row.clone());
            }
        }
        self.insert_new_nested(staged);
    }

    /// Active versions whose row hash is not staged retire at the boundary; staged versions not
    /// active go in from the boundary on; nested rows whose `_dlt_id` is new go in.
    fn scd2(&mut self, staged: &Staged, scope: Option<&dyn Fn(&Row) -> bool>) {
        let hashes: BTreeSet<&str> = staged.roots.iter().map(|r| text_of(r, "_dlt_id")).collect();
        for row in &mut self.roots {
            let in_scope = scope.is_none_or(|s| s(row));
            if row["_dlt_valid_to"].is_null() && !hashes.contains(text_of(row, "_dlt_id")) && in_scope {
                row.insert("_dlt_valid_to".into(), staged.boundary.clone());
            }
        }
        let mut active: BTreeSet<String> = self
            .roots
            .iter()
            .filter(|r| r["_dlt_valid_to"].is_null())
            .map(|r| text_of(r, "_dlt_id").to_string())
            .collect();
        for row in &staged.roots {
            if active.insert(text_of(row, "_dlt_id").to_string()) {
                let mut version = row.clone();
                version.insert("_dlt_valid_from".into(), staged.boundary.clone());
                version.insert("_dlt_valid_to".into(), Value::Null);
                self.roots.push(version);
            }
        }
        self.insert_new_nested(staged);
    }

    fn insert_new_nested(&mut self, staged: &Staged) {
        for row in &staged.nested {
            if !self.nested.iter().any(|f| f["_dlt_id"] == row["_dlt_id"]) {
                self.nested.push(row.clone());
            }
        }
    }

    /// The rows of `table` (0: root, 1: nested) as [`table_rows`] prints them, and their columns.
    fn rows(&self, table: usize) -> (Vec<String>, Vec<String>) {
        let rows = if table == 0 { &self.roots } else { &self.nested };
        let columns = rows.first().map(|r| r.keys().cloned().collect()).unwrap_or_default();
        let mut printed: Vec<String> = rows
            .iter()
            .map(|r| serde_json::to_string(r).unwrap_or_default())
            .collect();
        printed.sort();
        (printed, columns)
    }
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

/// Every destination's `dataset.table` holds `expected` (rows of `columns`), or the test fails
/// saying which differs from `what`.
async fn same_rows(
    destinations: &[(&str, Arc<dyn Destination>)],
    dataset: &str,
    table: &str,
    columns: &[String],
    expected: &[String],
    what: &str,
) {
    let columns: Vec<&str> = columns.iter().map(String::as_str).collect();
    for (name, destination) in destinations {
        let (actual, _) = table_rows(destination.as_ref(), dataset, table, &columns)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        if let Err(diff) = berth_tests::diff_rows(table, &actual, expected) {
            panic!("{what}: {name} differs\n{diff}");
        }
    }
}

async fn run_case(
    seed: u64,
    strategy: Strategy,
    with_nested: bool,
    conditions: Conditions,
    destinations: &[(&str, Arc<dyn Destination>)],
) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let dataset = format!("prop_{}_{seed}", strategy.name().replace('-', "_"));
    let root = if strategy == Strategy::Scd2 { "dim" } else { "items" };
    // DataFusion running berth's plans in memory, through the loader's own program and loop.
    let memory = Arc::new(MemoryExecutor::new());
    let in_memory =
        Loader::with_executor(Arc::clone(&memory) as Arc<dyn berth::loader::Executor>).with_options(LoaderOptions {
            dataset: Some(dataset.clone()),
            ..LoaderOptions::default()
        });
    let tables: &[&str] = if strategy == Strategy::Scd2 {
        &["dim", "dim__addr"]
    } else {
        &["items", "items__tags"]
    };
    let mut oracle = Oracle::default();
    for index in 0..4 {
        let (folder, staged) = write_package(dir.path(), strategy, with_nested, &mut rng, index, conditions);
        oracle.apply(strategy, &staged, conditions);
        let summary = in_memory
            .load(PackageLocation::local(&folder).expect("path"))
            .await
            .expect("memory load");
        assert_eq!(
            summary.status,
            berth::loader::PackageStatus::Loaded,
            "memory: {summary:?}"
        );
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
        // The oracle first, then DataFusion's run of berth's plans: every destination ends as
        // both say (a table the oracle leaves empty may not exist yet).
        let when = format!("seed {seed}, {}, after package {index}", strategy.name());
        for (n, table) in tables.iter().enumerate() {
            let mut expectations = Vec::new();
            let (expected, columns) = oracle.rows(n);
            if !expected.is_empty() {
                expectations.push(("the oracle", columns, expected));
            }
            let catalog = memory.catalog().await;
            if let Some(t) = catalog.table(&TableRef::new(&dataset, *table)) {
                let columns: Vec<String> = t.schema.fields().iter().map(|f| f.name().clone()).collect();
                let rows = memory_rows(&catalog, &TableRef::new(&dataset, *table));
                expectations.push(("DataFusion", columns, rows));
            }
            drop(catalog);
            for (who, columns, expected) in expectations {
                let what = format!("{when}: {who}");
                same_rows(destinations, &dataset, table, &columns, &expected, &what).await;
            }
        }
    }
    // PostgreSQL keeps each table's UNIQUE `_dlt_id` whichever way its rows came in (a moved
    // staging table gets it added): the root's (but scd2's, whose `_dlt_id` is a row version)
    // and the nested table's.
    let unique: Vec<&str> = tables
        .iter()
        .copied()
        .filter(|t| (*t != root || strategy != Strategy::Scd2) && (*t == root || with_nested))
        .collect();
    for (name, destination) in destinations.iter().filter(|(n, _)| *n == "postgres") {
        for table in &unique {
            // A staging table that took the final table's place was logged: the final table
            // survives a crash (relpersistence 'p', not 'u').
            let persistence = format!(
                "SELECT c.relpersistence::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = '{dataset}' AND c.relname = '{table}'"
            );
            let persistence = query_text(destination.as_ref(), &persistence).await.expect("pg_class");
            if persistence.is_empty() && *table != root {
                // No package staged a nested row: the table was never created.
                continue;
            }
            assert_eq!(
                persistence,
                vec![vec![Some("p".to_string())]],
                "seed {seed}: `{table}` is logged"
            );
            let sql = format!(
                "SELECT constraint_name FROM information_schema.table_constraints \
                 WHERE table_schema = '{dataset}' AND table_name = '{table}' AND constraint_type = 'UNIQUE'"
            );
            let count = query_text(destination.as_ref(), &sql).await.expect("constraints").len();
            assert_eq!(
                count, 1,
                "seed {seed}: {name} `{table}` should have one UNIQUE constraint"
            );
        }
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
        Strategy::Cdc,
    ];
    for seed in 0..15u64 {
        run_case(
            seed,
            strategies[(seed % 5) as usize],
            true,
            Conditions::default(),
            &destinations,
        )
        .await;
    }
    // dlt 1.31's merge conditions: a source filter, a destination scope, both.
    let conditioned = [
        (Strategy::DeleteInsert, true, false),
        (Strategy::DeleteInsert, false, true),
        (Strategy::Upsert, true, false),
        (Strategy::Cdc, true, false),
        (Strategy::Cdc, false, true),
        (Strategy::Cdc, true, true),
        (Strategy::Scd2, true, false),
        (Strategy::Scd2, false, true),
    ];
    for (i, (strategy, filter, scope)) in conditioned.into_iter().enumerate() {
        let conditions = Conditions { filter, scope };
        run_case(30 + i as u64, strategy, true, conditions, &destinations).await;
    }
    // Root tables alone: the first package may move staging into the new table.
    for seed in 12..21u64 {
        run_case(
            seed,
            strategies[(seed % 3) as usize],
            false,
            Conditions::default(),
            &destinations,
        )
        .await;
    }
}
