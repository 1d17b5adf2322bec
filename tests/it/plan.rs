//! The statements berth plans for every dialect (PostgreSQL, DuckDB and the warehouses), pinned
//! by snapshots, and every statement parsed back by sqlparser in that dialect.

use berth::loader::explain::{ExplainOptions, Phase, Step, explain};
use berth::model::{LoadPackage, PackageLocation, ReplaceStrategy};
use berth::plan::sqlparser::parser::Parser;
use berth::plan::{PlanOptions, SqlDialect, dialects};

/// The packages of a scenario, in load order.
fn packages(scenario: &str) -> Vec<std::path::PathBuf> {
    berth_tests::scenario_packages("postgres", scenario)
}

async fn phases(package: &std::path::Path, dialect: &SqlDialect, replace: ReplaceStrategy, empty: bool) -> Vec<Phase> {
    let location = PackageLocation::local(package).expect("package path");
    let package = LoadPackage::open(location).await.expect("open package");
    let (_, caps) = berth::planning_dialect(dialect.name).expect("dialect");
    let options = ExplainOptions {
        plan: PlanOptions {
            dataset: "ds".into(),
            replace_strategy: replace,
            widen_types: false,
        },
        assume_empty: empty,
        jobs: None,
    };
    explain(&package, dialect, &caps, &options).await.expect("plan")
}

/// The planned statements (not the migration's, whose `_dlt_version` row holds the whole
/// schema, nor journal rows and timestamps): one per line.
fn planned_sql(phases: &[Phase]) -> String {
    let mut out = String::new();
    for phase in phases
        .iter()
        .filter(|p| !p.title.starts_with("migrate") && !p.title.starts_with("commit"))
    {
        out.push_str(&format!("-- {}\n", phase.title));
        for step in &phase.steps {
            if let Step::Sql(statement) = step {
                let text = statement.to_string();
                if !text.to_ascii_lowercase().contains("_berth_journal") {
                    out.push_str(&text);
                    out.push_str(";\n");
                }
            }
        }
    }
    out
}

/// Every statement of every phase parses back in the dialect's own parser.
fn parses_back(dialect: &SqlDialect, phases: &[Phase]) {
    let parser = dialects::parser_dialect(dialect);
    for phase in phases {
        for step in &phase.steps {
            // berth's own PostgreSQL table operations have no sqlparser grammar (see
            // `SqlStatement`); every statement sqlparser represents must parse back.
            if let Step::Sql(statement @ berth::plan::SqlStatement::Ast(_)) = step {
                let text = statement.to_string();
                if let Err(e) = Parser::parse_sql(parser.as_ref(), &text) {
                    panic!("{}: does not parse back ({e}):\n{text}", dialect.name);
                }
            }
        }
    }
}

/// Every dialect berth prints SQL for: the two it runs, then the warehouses and the rest.
fn every_dialect() -> Vec<(&'static str, SqlDialect)> {
    ["postgres", "duckdb"]
        .into_iter()
        .chain(dialects::NAMES.iter().copied())
        .map(|name| (name, berth::planning_dialect(name).expect("dialect").0))
        .collect()
}

async fn check(scenario: &str, replace: ReplaceStrategy) {
    let package = packages(scenario).pop().expect("a package");
    for (name, dialect) in every_dialect() {
        for empty in [false, true] {
            let phases = phases(&package, &dialect, replace, empty).await;
            parses_back(&dialect, &phases);
            if !empty {
                insta::assert_snapshot!(format!("{scenario}__{name}"), planned_sql(&phases));
            }
        }
    }
}

#[tokio::test]
async fn delete_insert_for_every_warehouse() {
    check("merge_delete_insert", ReplaceStrategy::default()).await;
}

#[tokio::test]
async fn upsert_for_every_warehouse() {
    check("merge_upsert", ReplaceStrategy::default()).await;
}

#[tokio::test]
async fn scd2_for_every_warehouse() {
    check("merge_scd2", ReplaceStrategy::default()).await;
}

#[tokio::test]
async fn merge_key_for_every_warehouse() {
    check("merge_key_partition", ReplaceStrategy::default()).await;
}

#[tokio::test]
async fn insert_from_staging_for_every_warehouse() {
    check("replace", ReplaceStrategy::InsertFromStaging).await;
}

#[tokio::test]
async fn cdc_for_every_warehouse() {
    check("merge_cdc", ReplaceStrategy::default()).await;
}

#[tokio::test]
async fn cdc_with_a_destination_scope_for_every_warehouse() {
    check("merge_cdc_scope", ReplaceStrategy::default()).await;
}

#[tokio::test]
async fn delete_insert_with_a_source_filter_for_every_warehouse() {
    check("merge_source_filter", ReplaceStrategy::default()).await;
}

#[tokio::test]
async fn upsert_skipping_unchanged_rows_for_every_warehouse() {
    check("merge_upsert_skip_unchanged", ReplaceStrategy::default()).await;
}

/// The last package of `scenario`, copied, with its schema edited.
fn variant(scenario: &str, edit: impl Fn(&mut serde_json::Value)) -> (tempfile::TempDir, std::path::PathBuf) {
    let source = packages(scenario).pop().expect("a package");
    let dir = tempfile::tempdir().expect("tempdir");
    let target = dir.path().join(source.file_name().expect("name"));
    berth_tests::copy_tree(&source, &target).expect("copy package");
    let path = target.join("schema.json");
    let mut schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("schema")).expect("json");
    edit(&mut schema);
    std::fs::write(&path, serde_json::to_string(&schema).expect("json")).expect("write schema");
    (dir, target)
}

async fn check_variant(name: &str, package: &std::path::Path) {
    for (dialect_name, dialect) in every_dialect() {
        let phases = phases(package, &dialect, ReplaceStrategy::default(), false).await;
        parses_back(&dialect, &phases);
        insta::assert_snapshot!(format!("{name}__{dialect_name}"), planned_sql(&phases));
    }
}

#[tokio::test]
async fn insert_only_for_every_warehouse() {
    let (_dir, package) = variant("merge_upsert", |schema| {
        schema["tables"]["users"]["x-merge-strategy"] = "insert-only".into();
    });
    check_variant("merge_insert_only", &package).await;
}

#[tokio::test]
async fn scd2_with_a_compound_merge_key_and_an_active_record_timestamp() {
    let (_dir, package) = variant("merge_scd2", |schema| {
        let columns = &mut schema["tables"]["customers"]["columns"];
        columns["cid"]["merge_key"] = true.into();
        columns["city"]["merge_key"] = true.into();
        columns["_dlt_valid_to"]["x-active-record-timestamp"] = "9999-12-31".into();
    });
    check_variant("merge_scd2_merge_key", &package).await;
}

#[tokio::test]
async fn delete_insert_with_primary_and_merge_key() {
    let (_dir, package) = variant("merge_delete_insert", |schema| {
        schema["tables"]["users"]["columns"]["birthday"]["merge_key"] = true.into();
    });
    check_variant("merge_delete_insert_merge_key", &package).await;
}

/// A package whose naming convention keeps case (`sql_cs_v1`) keeps its names where identifiers
/// are case-sensitive, as dlt's `adjust_capabilities` does: Snowflake stops folding to upper case,
/// BigQuery and PostgreSQL keep names anyway; Redshift and Databricks, whose identifiers are not
/// case-sensitive, fold as usual. Every statement names `My_Table` one way only.
#[tokio::test]
async fn case_sensitive_naming_keeps_names_where_identifiers_are_case_sensitive() {
    let package = berth_tests::scenario_packages("duckdb", "naming_case_sensitive")
        .pop()
        .expect("a package");
    let expected = [
        ("snowflake", "\"My_Table\""),
        ("bigquery", "`My_Table`"),
        ("postgres", "\"My_Table\""),
        ("redshift", "\"my_table\""),
        ("databricks", "`My_Table`"),
    ];
    for (name, table) in expected {
        let (dialect, _) = berth::planning_dialect(name).expect("dialect");
        let phases = phases(&package, &dialect, ReplaceStrategy::default(), true).await;
        let sql: String = phases
            .iter()
            .flat_map(|p| &p.steps)
            .filter_map(|s| match s {
                Step::Sql(statement) => Some(statement.to_string()),
                _ => None,
            })
            // The `_dlt_version` row holds the schema's JSON, names as dlt wrote them.
            .filter(|statement| !statement.to_ascii_lowercase().contains("_dlt_version"))
            .collect::<Vec<_>>()
            .join("\n");
        assert!(sql.contains(table), "{name}: no {table}");
        let other_spellings = ["My_Table", "MY_TABLE", "my_table"]
            .iter()
            .filter(|s| !table.contains(**s))
            .filter(|s| sql.contains(&format!("{}{s}", &table[..1])))
            .count();
        assert_eq!(other_spellings, 0, "{name}: {table} spelled another way too");
    }
}

/// The migration's statements for a destination with none of the package's tables (not the
/// `_dlt_version` row, which holds the whole schema).
fn migration_sql(phases: &[Phase]) -> String {
    let mut out = String::new();
    for phase in phases.iter().filter(|p| p.title.starts_with("migrate")) {
        for step in &phase.steps {
            if let Step::Sql(statement) = step {
                let text = statement.to_string();
                if !text.starts_with("INSERT") {
                    out.push_str(&text);
                    out.push_str(";\n");
                }
            }
        }
    }
    out
}

/// dlt's table and column hints become DDL as dlt writes it per destination: Snowflake clusters
/// and comments columns; BigQuery partitions (a timestamp by its date), clusters (its table hint
/// first) and describes tables and columns in OPTIONS; Databricks clusters, partitions and
/// comments; PostgreSQL keeps UNIQUE for `unique`. dlt's own tables get none of it.
#[tokio::test]
async fn table_and_column_hints_in_ddl_for_every_dialect() {
    let (_dir, package) = variant("merge_upsert", |schema| {
        let users = &mut schema["tables"]["users"];
        users["description"] = "People who signed up".into();
        // dlt's bigquery_partition.date_trunc("birthday", "MONTH"): a template on one column.
        users["x-bigquery-partition"] = serde_json::json!({"birthday": "DATE_TRUNC({column_name}, MONTH)"});
        users["x-bigquery-table-description"] = "People (BigQuery's description)".into();
        users["x-bigquery-partition-expiration-days"] = 30.into();
        let columns = &mut users["columns"];
        columns["created"]["partition"] = true.into();
        columns["id"]["cluster"] = true.into();
        columns["email"]["cluster"] = true.into();
        columns["email"]["unique"] = true.into();
        // A quote and a backslash, escaped as each dialect's literals escape them.
        columns["name"]["description"] = "Full name, as they gave it: it's in C:\\names".into();
        columns["email"]["x-snowflake-column-comment"] = "Snowflake's own comment".into();
    });
    for (name, dialect) in every_dialect() {
        let phases = phases(&package, &dialect, ReplaceStrategy::default(), true).await;
        parses_back(&dialect, &phases);
        insta::assert_snapshot!(format!("hints__{name}"), migration_sql(&phases));
    }
}

/// A replace with each destination's default strategy is atomic wherever the destination allows
/// it: readers see the old rows until the follow-up commits (Snowflake clones the staging table
/// in place keeping grants, Databricks INSERT OVERWRITEs, the others empty and refill in the
/// follow-up's transaction — Redshift with DELETE, as its TRUNCATE commits); PostgreSQL keeps
/// dlt's truncate-and-insert.
#[tokio::test]
async fn replace_by_default_is_atomic_for_every_warehouse() {
    let package = packages("replace").pop().expect("a package");
    for (name, dialect) in every_dialect() {
        let (_, caps) = berth::planning_dialect(name).expect("dialect");
        let default = caps.replace_strategies[0];
        let expected = match name {
            "postgres" | "mssql" | "mysql" => ReplaceStrategy::TruncateAndInsert,
            "snowflake" | "databricks" => ReplaceStrategy::StagingOptimized,
            _ => ReplaceStrategy::InsertFromStaging,
        };
        assert_eq!(default, expected, "{name}");
        let phases = phases(&package, &dialect, default, false).await;
        parses_back(&dialect, &phases);
        insta::assert_snapshot!(format!("replace_default__{name}"), planned_sql(&phases));
    }
}

/// A first merge of a root with nested tables into new PostgreSQL tables: for a delete-insert
/// the check for staged nested rows without a root, then the moves of every staging table of the
/// chain (each `UNIQUE` added after), and the copies for when the staged rows are not the result.
#[tokio::test]
async fn first_merge_into_new_postgres_tables_moves_the_whole_chain() {
    let dialect = berth::planning_dialect("postgres").expect("dialect").0;
    for scenario in ["merge_delete_insert", "merge_upsert"] {
        let package = packages(scenario).remove(0);
        let phases = phases(&package, &dialect, ReplaceStrategy::default(), true).await;
        parses_back(&dialect, &phases);
        let sql = planned_sql(&phases);
        insta::assert_snapshot!(format!("first_{scenario}__postgres"), sql);
    }
}
