//! Migration against the live database and dlt's bookkeeping, shared by every SQL destination.

use std::collections::HashMap;

use berth_model::schema::{JOURNAL_TABLE, LOADS_TABLE, PIPELINE_STATE_TABLE, VERSION_TABLE};
use berth_model::{Column, DataType, LoadPackage, Table};
use berth_plan::sql::{self, lit_i64, lit_str};
use berth_plan::widen::{self, CatalogSize, Widening, Width};
use berth_plan::{CatalogStyle, PackagePlan, SqlDialect};
use datafusion::logical_expr::{in_list, lit};

use crate::Destination;
use crate::error::{Error, ErrorKind, Result, WideningRefused};
use crate::values::{now_literal, string_column};

/// A column as the destination's catalog describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageColumn {
    /// 1-based position in the table.
    pub position: u32,
    /// Name as stored.
    pub name: String,
    /// Type as the catalog prints it.
    pub db_type: String,
    /// dlt type, when the type mapper knows the catalog type.
    pub data_type: Option<DataType>,
    /// NULLs allowed.
    pub nullable: bool,
    /// The sizes the catalog gives (bits, digits, length, fractional second digits).
    pub size: CatalogSize,
}

impl StorageColumn {
    /// The column's width in dlt's terms, when its type is known.
    pub fn width(&self) -> Option<Width> {
        Some(Width::stored(self.data_type?, &self.db_type, self.size))
    }
}

/// What [`migrate`] changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MigrationReport {
    /// Tables created, qualified.
    pub created_tables: Vec<String>,
    /// Columns added, as `dataset.table.column`.
    pub added_columns: Vec<String>,
    /// Columns altered to a wider type (`--widen-types`), as `dataset.table.column`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub widened_columns: Vec<String>,
    /// A `_dlt_version` row was written for this schema version.
    pub stored_schema_version: bool,
}

/// dlt's definition of one of its system tables (or berth's journal), for packages whose schema
/// lacks it.
pub fn system_table(name: &str) -> Option<Table> {
    let text = |n: &str| Column::new(n, DataType::Text).with_nullable(false);
    let big = |n: &str| Column::new(n, DataType::Bigint).with_nullable(false);
    let ts = |n: &str| Column::new(n, DataType::Timestamp).with_nullable(false);
    let columns: Vec<Column> = match name {
        VERSION_TABLE => vec![
            big("version"),
            big("engine_version"),
            ts("inserted_at"),
            text("schema_name"),
            text("version_hash"),
            text("schema"),
        ],
        LOADS_TABLE => vec![
            text("load_id").with_precision(64),
            Column::new("schema_name", DataType::Text),
            big("status"),
            ts("inserted_at"),
            Column::new("schema_version_hash", DataType::Text),
        ],
        PIPELINE_STATE_TABLE => {
            let mut id = text("_dlt_id");
            id.unique = true;
            id.row_key = true;
            vec![
                big("version"),
                big("engine_version"),
                text("pipeline_name"),
                text("state"),
                ts("created_at"),
                Column::new("version_hash", DataType::Text),
                text("_dlt_load_id").with_precision(64),
                id,
            ]
        }
        JOURNAL_TABLE => return Some(crate::journal::journal_table()),
        _ => return None,
    };
    let mut table = Table::new(name, columns);
    table.resource = Some(name.to_string());
    Some(table)
}

/// The catalog columns [`storage_columns`] reads, in order.
const CATALOG_COLUMNS: [&str; 9] = [
    "table_name",
    "column_name",
    "data_type",
    "is_nullable",
    "numeric_precision",
    "numeric_scale",
    "ordinal_position",
    "character_maximum_length",
    "datetime_precision",
];

/// The query of [`CATALOG_COLUMNS`] for `tables` of `dataset`.
fn catalog_query(dialect: &SqlDialect, dataset: &str, tables: &[String]) -> Result<berth_plan::sqlparser::ast::Query> {
    // Names of the catalog itself fold natively; the dataset and tables looked up are the
    // package's names (values, not identifiers).
    let catalog = &dialect.catalog_dialect();
    // A catalog per dataset (BigQuery) has the sizes in `data_type` only.
    let per_dataset = dialect.catalog == CatalogStyle::PerDataset;
    let size_column =
        |c: &str| c.starts_with("numeric_") || c == "character_maximum_length" || c == "datetime_precision";
    let mut scanned: Vec<&str> = CATALOG_COLUMNS
        .iter()
        .copied()
        .filter(|c| !(per_dataset && size_column(c)))
        .collect();
    scanned.push("table_schema");
    let scan = if per_dataset {
        sql::catalog_scan(dialect, dataset, &scanned)?
    } else {
        sql::information_schema_scan(dialect, &scanned)?
    };
    let names = tables.iter().map(|t| lit(dialect.stored_name(t))).collect();
    let filter = sql::column(catalog, "table_schema")
        .eq(lit(dialect.stored_name(dataset)))
        .and(in_list(sql::column(catalog, "table_name"), names, false));
    // A catalog without size columns answers NULL for them.
    let projection = CATALOG_COLUMNS
        .iter()
        .map(|c| {
            if per_dataset && size_column(c) {
                lit(datafusion::scalar::ScalarValue::Int64(None)).alias(*c)
            } else {
                sql::column(catalog, c)
            }
        })
        .collect::<Vec<_>>();
    // Sorted by the caller rather than in SQL: the plan stays a plain filter + projection in
    // every dialect.
    let builder = scan
        .filter(filter)
        .and_then(|b| b.project(projection))
        .map_err(berth_plan::Error::from)?;
    Ok(sql::to_query(catalog, builder)?)
}

/// Existing columns of `tables` in `dataset`, from `information_schema.columns`, keyed by the
/// table's stored (case-folded) name. Missing tables are absent from the map.
pub async fn storage_columns(
    destination: &dyn Destination,
    dataset: &str,
    tables: &[String],
) -> Result<HashMap<String, Vec<StorageColumn>>> {
    let dialect = &destination.capabilities().dialect;
    let query = catalog_query(dialect, dataset, tables)?;
    let batches = destination
        .query(berth_plan::sqlparser::ast::Statement::Query(Box::new(query)))
        .await?;
    let mut out: HashMap<String, Vec<StorageColumn>> = HashMap::new();
    for batch in &batches {
        let columns: Vec<Vec<Option<String>>> = (0..CATALOG_COLUMNS.len())
            .map(|i| string_column(batch, i))
            .collect::<Result<_>>()?;
        let [
            table,
            name,
            db_type,
            nullable,
            precision,
            scale,
            position,
            length,
            digits,
        ] = columns.as_slice()
        else {
            return Err(Error::Internal("catalog rows of the wrong width".into()));
        };
        for row in 0..batch.num_rows() {
            let parse = |v: &Option<String>| v.as_deref().and_then(|s| s.parse::<u32>().ok());
            let db_type = db_type[row].clone().unwrap_or_default();
            let size = CatalogSize {
                numeric_precision: parse(&precision[row]),
                numeric_scale: parse(&scale[row]),
                character_maximum_length: parse(&length[row]),
                datetime_precision: parse(&digits[row]),
            };
            out.entry(table[row].clone().unwrap_or_default())
                .or_default()
                .push(StorageColumn {
                    position: parse(&position[row]).unwrap_or_default(),
                    name: name[row].clone().unwrap_or_default(),
                    data_type: dialect
                        .type_mapper
                        .to_dlt_type(&db_type, size.numeric_precision, size.numeric_scale),
                    db_type,
                    nullable: nullable[row].as_deref() != Some("NO"),
                    size,
                });
        }
    }
    for columns in out.values_mut() {
        columns.sort_by_key(|c| c.position);
    }
    Ok(out)
}

fn schema_table(package: &LoadPackage, name: &str) -> Option<Table> {
    package.schema.table(name).cloned().or_else(|| system_table(name))
}

async fn migrate_dataset(
    destination: &dyn Destination,
    package: &LoadPackage,
    dataset: &str,
    tables: &[String],
    is_staging: bool,
    widen: bool,
    report: &mut MigrationReport,
) -> Result<Vec<berth_plan::sqlparser::ast::Statement>> {
    let dialect: &SqlDialect = &destination.capabilities().dialect;
    let existing = storage_columns(destination, dataset, tables).await?;
    let staging = staging_dialect(dialect);
    let dialect = if is_staging { &staging } else { dialect };
    dataset_ddl(
        dialect,
        &destination.describe(),
        package,
        dataset,
        tables,
        &existing,
        widen,
        report,
    )
}

/// The dialect staging tables are created in: staging rows are deduplicated by the follow-up (a
/// package may hold a row twice), so no UNIQUE constraints; and hints describe the user's
/// tables, not berth's per-load scratch tables — unless a staging table becomes the user's table
/// by a clone ([`berth_plan::OverwriteStyle::CloneCopyGrants`]), which must keep them.
fn staging_dialect(dialect: &SqlDialect) -> SqlDialect {
    let hints = if dialect.overwrite == berth_plan::OverwriteStyle::CloneCopyGrants {
        dialect.hints
    } else {
        berth_plan::hints::DdlHints::default()
    };
    SqlDialect {
        create_unique_constraints: false,
        hints,
        ..dialect.clone()
    }
}

/// Where a column is, for [`retype`]'s errors and statement.
struct ColumnAt<'a> {
    describe: &'a str,
    dataset: &'a str,
    table: &'a Table,
}

/// What an existing column `stored` needs to take the package's `column`: nothing, an `ALTER`
/// to a wider type (only when `widen`), or an error naming the column.
///
/// Without `widen` this is dlt's rule: a column keeps its type, and only a type of another
/// family is an error.
fn retype(
    dialect: &SqlDialect,
    at: &ColumnAt<'_>,
    stored: &StorageColumn,
    column: &Column,
    widen: bool,
) -> Result<Option<berth_plan::sqlparser::ast::Statement>> {
    let (Some(have), Some(mut want)) = (stored.width(), Width::of(column)) else {
        return Ok(None);
    };
    if matches!(want.data_type, DataType::Timestamp | DataType::Time) {
        // More digits than the destination keeps are no change.
        want.precision = want.precision.map(|p| p.min(dialect.widening.max_second_digits));
    }
    let mismatch = || Error::SchemaMismatch {
        destination: at.describe.to_string(),
        table: format!("{}.{}", at.dataset, at.table.name),
        column: column.name.clone(),
        expected: want.data_type.as_str(),
        found: stored.db_type.clone(),
    };
    match widen::widening(&have, &want) {
        Widening::Keep => Ok(None),
        Widening::Incompatible if have.data_type == want.data_type && !widen => Ok(None),
        Widening::Incompatible => Err(mismatch()),
        Widening::Widen(_) if !widen && have.data_type == want.data_type => Ok(None),
        Widening::Widen(_) if !widen => Err(mismatch()),
        Widening::Widen(edge) if !dialect.widening.takes(edge) => Err(Error::CannotWiden(Box::new(WideningRefused {
            destination: at.describe.to_string(),
            table: format!("{}.{}", at.dataset, at.table.name),
            column: column.name.clone(),
            found: stored.db_type.clone(),
            wanted: dialect.type_mapper.to_destination(column, at.table)?.to_string(),
            edge,
            reason: dialect.widening.refusal,
        }))),
        Widening::Widen(_) => Ok(Some(widen::alter_column_type(dialect, at.dataset, at.table, column)?)),
    }
}

/// The DDL that brings `tables` of `dataset` from the `existing` catalog to the package schema;
/// existing columns are widened where `widen` (see [`retype`]).
#[expect(clippy::too_many_arguments, reason = "one call per dataset, each argument distinct")]
fn dataset_ddl(
    dialect: &SqlDialect,
    describe: &str,
    package: &LoadPackage,
    dataset: &str,
    tables: &[String],
    existing: &HashMap<String, Vec<StorageColumn>>,
    widen: bool,
    report: &mut MigrationReport,
) -> Result<Vec<berth_plan::sqlparser::ast::Statement>> {
    let mut statements = Vec::new();
    for name in tables {
        let Some(table) = schema_table(package, name) else {
            continue;
        };
        let wanted: Vec<&Column> = table.complete_columns().collect();
        match existing.get(&dialect.stored_name(name)) {
            None => {
                let is_dlt = berth_model::schema::is_dlt_name(name);
                statements.push(sql::create_table(dialect, dataset, &table, &wanted, is_dlt)?);
                statements.extend(berth_plan::hints::after_create(dialect, dataset, &table));
                report.created_tables.push(format!("{dataset}.{name}"));
            }
            Some(stored) => {
                let mut new = Vec::new();
                for column in wanted {
                    let stored_name = dialect.stored_name(&column.name);
                    match stored.iter().find(|s| s.name == stored_name) {
                        None => new.push(column),
                        Some(s) => {
                            let at = ColumnAt {
                                describe,
                                dataset,
                                table: &table,
                            };
                            if let Some(alter) = retype(dialect, &at, s, column, widen)? {
                                report.widened_columns.push(format!("{dataset}.{name}.{}", column.name));
                                statements.push(alter);
                            }
                        }
                    }
                }
                for column in &new {
                    report.added_columns.push(format!("{dataset}.{name}.{}", column.name));
                }
                statements.extend(sql::add_columns(dialect, dataset, &table, &new)?);
                statements.extend(berth_plan::hints::after_add_columns(dialect, dataset, &table, &new));
            }
        }
    }
    Ok(statements)
}

async fn has_schema_version(destination: &dyn Destination, dataset: &str, hash: &str) -> Result<bool> {
    let dialect = &destination.capabilities().dialect;
    let scan = sql::scan(dialect, dataset, VERSION_TABLE, &["version_hash"])?;
    let builder = scan
        .filter(sql::column(dialect, "version_hash").eq(lit(hash.to_string())))
        .and_then(|b| b.limit(0, Some(1)))
        .map_err(berth_plan::Error::from)?;
    any_rows(destination, builder).await
}

/// Does the query return a row? A missing table or dataset means no.
async fn any_rows(
    destination: &dyn Destination,
    builder: datafusion::logical_expr::LogicalPlanBuilder,
) -> Result<bool> {
    let query = sql::to_query(&destination.capabilities().dialect, builder)?;
    let statement = berth_plan::sqlparser::ast::Statement::Query(Box::new(query));
    match destination.query(statement).await {
        Ok(batches) => Ok(batches.iter().any(|b| b.num_rows() > 0)),
        Err(e) if e.kind() == ErrorKind::UndefinedRelation => Ok(false),
        Err(e) => Err(e),
    }
}

/// Creates the datasets, creates missing tables and adds missing columns (never drops or retypes
/// anything), and records the schema version in `_dlt_version`, in one transaction where the
/// destination runs DDL in transactions. Idempotent: safe to run again for a resumed package.
pub async fn migrate(
    destination: &dyn Destination,
    package: &LoadPackage,
    plan: &PackagePlan,
) -> Result<MigrationReport> {
    let caps = destination.capabilities();
    let dialect = &caps.dialect;
    let mut report = MigrationReport::default();
    let staging_tables = plan.staging_tables();

    let mut schemas = vec![sql::create_schema(dialect, &plan.dataset)];
    if !staging_tables.is_empty() {
        schemas.push(sql::create_schema(dialect, &plan.staging_dataset));
    }
    destination
        .execute(berth_plan::statements(schemas), caps.supports_ddl_transactions)
        .await?;

    let mut ddl = migrate_dataset(
        destination,
        package,
        &plan.dataset,
        &plan.final_tables(),
        false,
        plan.widen_types,
        &mut report,
    )
    .await?;
    if !staging_tables.is_empty() {
        // The per-load staging tables are berth's own scratch space, dropped after the commit:
        // not a change to the user's datasets, so not in the report.
        let mut scratch = MigrationReport::default();
        ddl.extend(
            migrate_dataset(
                destination,
                package,
                &plan.staging_dataset,
                &staging_tables,
                true,
                // Staging tables are made per load from the package schema: only final tables widen.
                false,
                &mut scratch,
            )
            .await?,
        );
    }
    // One `_dlt_version` row per schema hash, as dlt keeps it: a new final dataset has none.
    let version_table = format!("{}.{VERSION_TABLE}", plan.dataset);
    let version_known = !report.created_tables.contains(&version_table)
        && has_schema_version(destination, &plan.dataset, &package.schema.version_hash).await?;
    if !version_known {
        ddl.push(version_insert(dialect, &plan.dataset, package));
        report.stored_schema_version = true;
    }
    if !ddl.is_empty() {
        destination
            .execute(berth_plan::statements(ddl), caps.supports_ddl_transactions)
            .await?;
    }
    Ok(report)
}

/// dlt's `refresh`, first half: drops the tables the package state lists in `dropped_tables`
/// (`refresh="drop_resources"` / `"drop_sources"`) that exist in `dataset`, and deletes every
/// stored version of the package's schema with them, in one transaction where DDL is
/// transactional (dlt's `drop_tables(..., delete_schema=True)`). The migration that follows
/// creates them again from the package schema. Returns the tables dropped.
///
/// Run it only before any job of the package committed: afterwards the tables hold this
/// package's rows.
pub async fn drop_refreshed_tables(
    destination: &dyn Destination,
    package: &LoadPackage,
    dataset: &str,
) -> Result<Vec<String>> {
    let dropped = &package.state.dropped_tables;
    if dropped.is_empty() {
        return Ok(Vec::new());
    }
    let caps = destination.capabilities();
    let dialect = &caps.dialect;
    let mut names = dropped.clone();
    names.push(VERSION_TABLE.to_string());
    let existing = storage_columns(destination, dataset, &names).await?;
    if !existing.contains_key(&dialect.stored_name(VERSION_TABLE)) {
        // Nothing was ever loaded into this dataset (dlt: storage not initialized).
        return Ok(Vec::new());
    }
    let present: Vec<String> = dropped
        .iter()
        .filter(|t| existing.contains_key(&dialect.stored_name(t)))
        .cloned()
        .collect();
    destination
        .execute(
            berth_plan::statements(refresh_drop_statements(dialect, package, dataset, &present)),
            caps.supports_ddl_transactions,
        )
        .await?;
    Ok(present)
}

/// The statements of [`drop_refreshed_tables`] for the `present` ones of the package's
/// `dropped_tables` (for `berth plan`, all of them).
pub fn refresh_drop_statements(
    dialect: &SqlDialect,
    package: &LoadPackage,
    dataset: &str,
    present: &[String],
) -> Vec<berth_plan::sqlparser::ast::Statement> {
    let mut statements: Vec<_> = present.iter().map(|t| sql::drop_table(dialect, dataset, t)).collect();
    statements.push(sql::delete_where_equals(
        dialect,
        dataset,
        VERSION_TABLE,
        "schema_name",
        &package.schema.name,
    ));
    statements
}

/// dlt's `refresh`, second half: the statements that empty the tables the package state lists in
/// `truncated_tables` (`refresh="drop_data"`) and that exist in `dataset`, to run with the other
/// tables the load empties, before any job of the package committed.
pub async fn truncate_refreshed_tables(
    destination: &dyn Destination,
    package: &LoadPackage,
    dataset: &str,
) -> Result<Vec<berth_plan::sqlparser::ast::Statement>> {
    let truncated = &package.state.truncated_tables;
    if truncated.is_empty() {
        return Ok(Vec::new());
    }
    let dialect = &destination.capabilities().dialect;
    let existing = storage_columns(destination, dataset, truncated).await?;
    Ok(truncated
        .iter()
        .filter(|t| existing.contains_key(&dialect.stored_name(t)))
        .map(|t| sql::delete_all(dialect, dataset, t))
        .collect())
}

/// The `_dlt_version` row of the package's schema.
fn version_insert(dialect: &SqlDialect, dataset: &str, package: &LoadPackage) -> berth_plan::sqlparser::ast::Statement {
    let schema = &package.schema;
    sql::insert_values(
        dialect,
        dataset,
        VERSION_TABLE,
        &[
            "version",
            "engine_version",
            "inserted_at",
            "schema_name",
            "version_hash",
            "schema",
        ],
        vec![vec![
            lit_i64(i64::try_from(schema.version).unwrap_or(i64::MAX)),
            lit_i64(i64::from(schema.engine_version)),
            lit_str(now_literal()),
            sql::lit_text(dialect, &schema.name),
            lit_str(&schema.version_hash),
            // The whole schema as JSON: quotes and backslashes are escaped as the dialect's
            // literals need (a backslash escapes on Snowflake, BigQuery, Databricks).
            sql::lit_text(dialect, &schema.json),
        ]],
    )
}

/// The migration [`migrate`] runs against a destination that has none of the package's datasets
/// yet, without asking one (for `berth plan`).
pub fn migration_for_empty_destination(
    dialect: &SqlDialect,
    package: &LoadPackage,
    plan: &PackagePlan,
) -> Result<Vec<berth_plan::sqlparser::ast::Statement>> {
    let mut report = MigrationReport::default();
    let none = HashMap::new();
    let mut statements = vec![sql::create_schema(dialect, &plan.dataset)];
    let staging_tables = plan.staging_tables();
    if !staging_tables.is_empty() {
        statements.push(sql::create_schema(dialect, &plan.staging_dataset));
    }
    statements.extend(dataset_ddl(
        dialect,
        "plan",
        package,
        &plan.dataset,
        &plan.final_tables(),
        &none,
        false,
        &mut report,
    )?);
    statements.extend(dataset_ddl(
        &staging_dialect(dialect),
        "plan",
        package,
        &plan.staging_dataset,
        &staging_tables,
        &none,
        false,
        &mut report,
    )?);
    statements.push(version_insert(dialect, &plan.dataset, package));
    Ok(statements)
}

/// Has `load_id` already been committed (a `_dlt_loads` row with status 0)?
pub async fn is_loaded(destination: &dyn Destination, dataset: &str, load_id: &str) -> Result<bool> {
    let dialect = &destination.capabilities().dialect;
    let scan = sql::scan(dialect, dataset, LOADS_TABLE, &["load_id", "status"])?;
    let builder = scan
        .filter(
            sql::column(dialect, "load_id")
                .eq(lit(load_id.to_string()))
                .and(sql::column(dialect, "status").eq(lit(0i64))),
        )
        .and_then(|b| b.project(vec![sql::column(dialect, "load_id")]))
        .map_err(berth_plan::Error::from)?;
    any_rows(destination, builder).await
}

/// Does `dataset.table` hold no rows (or not exist)?
pub async fn is_empty_table(destination: &dyn Destination, dataset: &str, table: &str) -> Result<bool> {
    let dialect = &destination.capabilities().dialect;
    let builder = sql::scan(dialect, dataset, table, &[])?
        .project(vec![lit(1i64)])
        .and_then(|b| b.limit(0, Some(1)))
        .map_err(berth_plan::Error::from)?;
    Ok(!any_rows(destination, builder).await?)
}

/// The commit marker: the `_dlt_loads` row with status 0.
pub fn load_marker(
    dialect: &SqlDialect,
    package: &LoadPackage,
    dataset: &str,
) -> berth_plan::sqlparser::ast::Statement {
    sql::insert_values(
        dialect,
        dataset,
        LOADS_TABLE,
        &["load_id", "schema_name", "status", "inserted_at", "schema_version_hash"],
        vec![vec![
            lit_str(&package.load_id),
            sql::lit_text(dialect, &package.schema.name),
            lit_i64(0),
            lit_str(now_literal()),
            lit_str(&package.schema.version_hash),
        ]],
    )
}

/// Writes the commit marker (see [`load_marker`]).
pub async fn complete_load(destination: &dyn Destination, package: &LoadPackage, dataset: &str) -> Result<()> {
    let mut statements = destination.load_fence(dataset, &package.load_id, &[]);
    statements.push(load_marker(&destination.capabilities().dialect, package, dataset).into());
    destination.execute(statements, true).await
}
