//! Property-based fuzzing of the parsers that read what a package says about itself: `schema.json`,
//! `load_package_state.json` and `.restore/state.json`, job file names, `insert_values` jobs and
//! the `.pending_transitions/` markers. Inputs are real dlt files with random mutations (values
//! replaced, keys dropped, bytes flipped, text cut short) and random strings; every parser must
//! return `Ok` or a clear `Err`, never panic, and what parses must round-trip.
//!
//! The README's test command runs a short pass (`BERTH_FUZZ_CASES`, default 1000 per target); a
//! longer one: `BERTH_FUZZ_CASES=20000 cargo test --test it fuzz`.

use std::io::Read;
use std::path::PathBuf;

use berth::model::{JobFileName, PackageState, PendingTransition, RestoreState, Schema};
use berth_tests::testdata;
use proptest::prelude::*;
use serde_json::Value;

fn cases() -> u32 {
    std::env::var("BERTH_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000)
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: cases(),
        // Failures are reported with their minimal input; no regression files in the tree.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn package_dir() -> PathBuf {
    testdata().join("dlt/postgres/append_types/packages/0_1795379921.2653615")
}

fn read(relative: &str) -> String {
    std::fs::read_to_string(package_dir().join(relative)).unwrap_or_else(|e| panic!("{relative}: {e}"))
}

fn insert_values_job() -> String {
    let path = package_dir().join("new_jobs/_dlt_pipeline_state.45deaf9452.0.insert_values.gz");
    let mut text = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).expect("job"))
        .read_to_string(&mut text)
        .expect("gunzip");
    text
}

/// Any JSON value, a few levels deep.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(".{0,8}", inner, 0..4).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// One change to a JSON document: at the `pick`-th node (in document order, wrapping), replace
/// the value or drop the key.
#[derive(Debug, Clone)]
enum Mutation {
    Replace(usize, Value),
    Drop(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any_json()).prop_map(|(pick, value)| Mutation::Replace(pick, value)),
        any::<usize>().prop_map(Mutation::Drop),
    ]
}

fn count_nodes(value: &Value) -> usize {
    1 + match value {
        Value::Array(items) => items.iter().map(count_nodes).sum(),
        Value::Object(map) => map.values().map(count_nodes).sum(),
        _ => 0,
    }
}

/// Applies `mutation` to the node numbered `*target` (pre-order; 0 is the root).
fn apply(value: &mut Value, target: &mut usize, mutation: &Mutation) -> bool {
    if *target == 0 {
        if let Mutation::Replace(_, new) = mutation {
            *value = new.clone();
        }
        return true;
    }
    *target -= 1;
    match value {
        Value::Array(items) => {
            for index in 0..items.len() {
                if *target == 0 && matches!(mutation, Mutation::Drop(_)) {
                    items.remove(index);
                    return true;
                }
                if apply(&mut items[index], target, mutation) {
                    return true;
                }
            }
        }
        Value::Object(map) => {
            let keys: Vec<String> = map.keys().cloned().collect();
            for key in keys {
                if *target == 0 && matches!(mutation, Mutation::Drop(_)) {
                    map.remove(&key);
                    return true;
                }
                if apply(map.get_mut(&key).expect("key"), target, mutation) {
                    return true;
                }
            }
        }
        _ => {}
    }
    false
}

fn mutate(text: &str, mutations: &[Mutation]) -> String {
    let mut value: Value = serde_json::from_str(text).expect("fixture is JSON");
    for m in mutations {
        let pick = match m {
            Mutation::Replace(p, _) | Mutation::Drop(p) => *p,
        };
        let mut target = pick % count_nodes(&value);
        apply(&mut value, &mut target, m);
    }
    value.to_string()
}

/// Byte damage: cut at `cut` (a fraction of the length), then flip the bytes at `flips`.
fn damage(text: &str, cut: f64, flips: &[(usize, u8)]) -> String {
    let mut bytes = text.as_bytes().to_vec();
    bytes.truncate(((bytes.len() as f64) * cut) as usize);
    for (at, byte) in flips {
        if !bytes.is_empty() {
            let i = at % bytes.len();
            bytes[i] = *byte;
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

fn damage_args() -> impl Strategy<Value = (f64, Vec<(usize, u8)>)> {
    (0.0..=1.0f64, prop::collection::vec((any::<usize>(), any::<u8>()), 0..6))
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn schema_json_never_panics(mutations in prop::collection::vec(mutation(), 1..6), (cut, flips) in damage_args()) {
        let original = read("schema.json");
        let mutated = mutate(&original, &mutations);
        if let Ok(schema) = Schema::from_json(&mutated, "schema.json") {
            // What parses is usable: every table carries the name it is filed under, every
            // column too, every parent chain ends at a root table of the schema within as many
            // steps as there are tables, and each table is in exactly its root's chain.
            let raw: serde_json::Value = serde_json::from_str(&mutated).expect("parsed as JSON already");
            for (name, table) in &schema.tables {
                prop_assert_eq!(&table.name, name);
                prop_assert!(raw["tables"].get(name).is_some(), "table `{}` is not in the file", name);
                for (column_name, column) in &table.columns {
                    prop_assert_eq!(&column.name, column_name);
                }
                let mut current = table;
                let mut steps = 0;
                while let Some(parent) = &current.parent {
                    current = schema.table(parent).expect("parents were checked");
                    steps += 1;
                    prop_assert!(steps <= schema.tables.len(), "a cycle of parents from `{}`", name);
                }
                let root = schema.root_of(table);
                prop_assert!(root.parent.is_none());
                prop_assert_eq!(&root.name, &current.name);
                let in_chains = schema
                    .tables
                    .values()
                    .filter(|r| r.parent.is_none())
                    .filter(|r| schema.table_chain(r).iter().any(|t| t.name == *name))
                    .count();
                prop_assert_eq!(in_chains, 1, "table `{}` is in one root's chain", name);
            }
        }
        let _ = Schema::from_json(&damage(&original, cut, &flips), "schema.json");
    }

    #[test]
    fn package_and_restore_state_never_panic(
        mutations in prop::collection::vec(mutation(), 1..6),
        (cut, flips) in damage_args(),
        junk in any_json(),
    ) {
        for (file, parse) in [
            ("load_package_state.json", (|t: &str| PackageState::from_json(t, "state").is_ok()) as fn(&str) -> bool),
            (".restore/state.json", |t: &str| RestoreState::from_json(t, "restore").is_ok()),
        ] {
            let original = read(file);
            parse(&mutate(&original, &mutations));
            parse(&damage(&original, cut, &flips));
            parse(&junk.to_string());
        }
        let _ = serde_json::from_str::<PendingTransition>(&junk.to_string());
    }

    #[test]
    fn job_names_parse_or_fail_and_round_trip(name in "[a-z_\"'; %é.]{0,12}\\.[A-Za-z0-9_.-]{0,12}\\.[0-9a-z]{0,3}\\.[a-z_.-]{0,16}") {
        if let Ok(parsed) = JobFileName::parse(&name) {
            let printed = parsed.to_string();
            prop_assert_eq!(JobFileName::parse(&printed).ok(), Some(parsed.clone()));
            prop_assert_eq!(parsed.with_retry(parsed.retry_count + 1).job_id(), parsed.job_id());
        }
    }

    #[test]
    fn valid_job_names_round_trip(
        table in "[a-zA-Z_\"'; %é-]{1,20}",
        file_id in "[A-Za-z0-9_-]{1,12}",
        retry in any::<u32>(),
        format in prop::sample::select(vec!["parquet", "jsonl", "typed-jsonl", "insert_values", "csv", "arrow", "sql", "reference", "model"]),
        gz in any::<bool>(),
    ) {
        let name = format!("{table}.{file_id}.{retry}.{format}{}", if gz { ".gz" } else { "" });
        let parsed = JobFileName::parse(&name).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(parsed.to_string(), name);
        prop_assert_eq!(&parsed.table, &table);
        prop_assert_eq!(parsed.retry_count, retry);
    }

    #[test]
    fn insert_values_never_panics((cut, flips) in damage_args(), junk in ".{0,200}") {
        let schema = Schema::from_json(&read("schema.json"), "schema.json").expect("fixture schema");
        let table = schema.table("_dlt_pipeline_state").expect("state table");
        let mut emit = |_batch: arrow::array::RecordBatch| true;
        for text in [damage(&insert_values_job(), cut, &flips), junk] {
            let _ = berth::model::read::parse_insert_values(&text, table, 7, "job", &mut emit);
        }
    }
}

#[test]
fn the_unmutated_fixtures_parse() {
    assert!(Schema::from_json(&read("schema.json"), "schema.json").is_ok());
    assert!(PackageState::from_json(&read("load_package_state.json"), "state").is_ok());
    assert!(RestoreState::from_json(&read(".restore/state.json"), "restore").is_ok());
    let schema = Schema::from_json(&read("schema.json"), "schema.json").expect("schema");
    let table = schema.table("_dlt_pipeline_state").expect("state table");
    let mut rows = 0;
    let mut emit = |batch: arrow::array::RecordBatch| {
        rows += batch.num_rows();
        true
    };
    berth::model::read::parse_insert_values(&insert_values_job(), table, 7, "job", &mut emit).expect("parses");
    assert_eq!(rows, 1);
}
