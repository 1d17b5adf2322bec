//! The in-memory DataFusion executor (`berth::loader::memory`) against dlt's own results: every
//! merge and replace scenario of the conformance fixtures, dlt 1.31's `cdc` and merge options
//! included, loaded through the loader's program and loop, ends with dlt's rows.

use std::collections::BTreeMap;
use std::sync::Arc;

use berth::loader::memory::MemoryExecutor;
use berth::loader::{Loader, LoaderOptions, PackageStatus};
use berth::model::PackageLocation;
use berth::plan::TableRef;
use berth_tests::{Scenario, cell, diff_rows, expected_rows, scenario_dir};

const SCENARIOS: &[&str] = &[
    "replace",
    "merge_delete_insert",
    "merge_upsert",
    "merge_scd2",
    "merge_key_partition",
    "merge_cdc",
    "merge_cdc_scope",
    "merge_source_filter",
    "merge_upsert_skip_unchanged",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_datafusion_executor_ends_with_dlts_rows() {
    for name in SCENARIOS {
        let dir = scenario_dir("postgres", name);
        let scenario = Scenario::read(&dir);
        let memory = Arc::new(MemoryExecutor::new());
        let loader = Loader::with_executor(Arc::clone(&memory) as Arc<dyn berth::loader::Executor>).with_options(
            LoaderOptions {
                dataset: Some(scenario.dataset.clone()),
                ..LoaderOptions::default()
            },
        );
        for package in &scenario.packages {
            let location = PackageLocation::local(&dir.join("packages").join(package)).expect("package path");
            let summary = loader.load(location).await.unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(summary.status, PackageStatus::Loaded, "{name}: {summary:?}");
        }
        let catalog = memory.catalog().await;
        for (table, columns) in &scenario.tables {
            let at = TableRef::new(&scenario.dataset, table);
            let stored = catalog.table(&at).unwrap_or_else(|| panic!("{name}: no table {at}"));
            let types: BTreeMap<String, _> = stored
                .schema
                .fields()
                .iter()
                .map(|f| (f.name().clone(), f.data_type().clone()))
                .collect();
            let mut actual = Vec::new();
            for batch in &stored.batches {
                for row in 0..batch.num_rows() {
                    let values: BTreeMap<&str, serde_json::Value> = columns
                        .iter()
                        .filter_map(|c| {
                            let index = stored.schema.index_of(c).ok()?;
                            Some((c.as_str(), cell(batch.column(index).as_ref(), row)))
                        })
                        .collect();
                    actual.push(serde_json::to_string(&values).unwrap_or_default());
                }
            }
            actual.sort();
            let expected = expected_rows(&dir.join("expected").join(format!("{table}.jsonl")), &types);
            diff_rows(&format!("{name}/{table}"), &actual, &expected).unwrap_or_else(|diff| panic!("{diff}"));
        }
    }
}
