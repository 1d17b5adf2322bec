//! The follow-up of a table chain as DataFusion plans: what runs after a merge or replace chain's
//! jobs loaded into staging.
//!
//! A follow-up is a list of [`FollowupOp`]s. Their queries and predicates are DataFusion
//! [`LogicalPlan`]s and [`Expr`]s over the staging and final tables, built once per chain from the
//! package schema. [`crate::lower`] prints them as each destination's SQL (sqlparser statements
//! whose SELECT bodies and predicates come from DataFusion's unparser); [`crate::exec`] runs the
//! very same plans with DataFusion on in-memory Arrow tables, which is the reference result in
//! tests and the path of a destination without SQL.
//!
//! The shapes follow dlt's load step (reference §3), with its known problems designed out:
//!
//! - keys are matched column by column with `EXISTS`, never `CONCAT` (dlt #4244), and a primary
//!   key plus a merge key become one statement per key instead of an `OR` (dlt #2752);
//! - deduplication breaks ties deterministically (`dedup_sort`, then `_dlt_id`) and sorts NULL
//!   sort values last on every destination (dlt leaves both to the engine);
//! - upsert and insert-only deduplicate staging too, instead of failing on a key that appears
//!   twice in a package;
//! - scd2 inserts a version once even when the package holds the same row twice, and re-inserts a
//!   record that was retired and came back (dlt #1683);
//! - the work that cannot matter when the final root table is empty (deletes, retirement,
//!   `MERGE`) is left out.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use arrow::datatypes::{Field, Schema as ArrowSchema};
use berth_model::read::arrow_type;
use berth_model::schema::DLT_ID;
use berth_model::{Column as SchemaColumn, DataType, MergeStrategy, Schema, SortOrder, Table};
use datafusion::common::{Column, TableReference};
use datafusion::functions_window::expr_fn::row_number;
use datafusion::logical_expr::builder::LogicalTableSource;
use datafusion::logical_expr::expr_fn::{exists, in_subquery, not_exists, out_ref_col};
use datafusion::logical_expr::{Expr, ExprFunctionExt, LogicalPlan, LogicalPlanBuilder, lit, when};

use crate::conditions::{MergeOptions, compare_columns};
use crate::dialect::SqlDialect;
use crate::error::{Error, Result};

/// Name of the row number column of the deduplicating window (dlt's).
pub const DEDUP_RN: &str = "_dlt_dedup_rn";
/// Alias of the numbered rows (dlt's).
pub const DEDUP_NUMBERED: &str = "_dlt_dedup_numbered";
/// Alias of the final (target) table in follow-up statements.
pub const TARGET_ALIAS: &str = "d";
/// Alias of the staging (source) table in follow-up statements.
pub const SOURCE_ALIAS: &str = "s";

/// A table in a dataset, by schema names (before case folding).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TableRef {
    /// Dataset (schema) name.
    pub dataset: String,
    /// Table name.
    pub table: String,
}

impl TableRef {
    /// `dataset.table`.
    pub fn new(dataset: impl Into<String>, table: impl Into<String>) -> Self {
        Self {
            dataset: dataset.into(),
            table: table.into(),
        }
    }
}

impl std::fmt::Display for TableRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.dataset, self.table)
    }
}

/// `MERGE INTO target AS d USING (source) AS s ON d.k = s.k …`.
#[derive(Debug, Clone)]
pub struct MergeInto {
    /// The final table.
    pub target: TableRef,
    /// Rows to merge; its columns are named like the target's.
    pub source: LogicalPlan,
    /// Key columns: a row matches when every key column is equal.
    pub on: Vec<String>,
    /// Matched rows for which this (over `s`) holds are deleted.
    pub delete_when: Option<Expr>,
    /// Columns set from the source on the other matched rows (none: matched rows stay).
    pub update_columns: Vec<String>,
    /// Columns inserted for unmatched source rows.
    pub insert_columns: Vec<String>,
    /// The range the source keys fall in: target rows outside it are not looked at.
    pub target_range: Option<KeyRange>,
    /// Unmatched source rows are inserted only when this (over `s`) holds.
    pub insert_when: Option<Expr>,
    /// Matched rows are updated only when one of these columns differs (`IS DISTINCT FROM`)
    /// between `s` and `d` (dlt's `skip_unchanged_rows`); `None`: every matched row is updated.
    pub changed_columns: Option<Vec<String>>,
}

impl MergeInto {
    /// The source row differs from its matched target row in one of
    /// [`MergeInto::changed_columns`] (columns named by `source` and `target`); `None` when every
    /// matched row is updated.
    pub fn changed(&self, source: &dyn Fn(&str) -> Expr, target: &dyn Fn(&str) -> Expr) -> Option<Expr> {
        self.changed_columns
            .as_ref()?
            .iter()
            .map(|c| {
                Expr::BinaryExpr(datafusion::logical_expr::BinaryExpr::new(
                    Box::new(source(c)),
                    datafusion::logical_expr::Operator::IsDistinctFrom,
                    Box::new(target(c)),
                ))
            })
            .reduce(Expr::or)
    }
}

/// One step of a follow-up.
#[derive(Debug, Clone)]
pub enum FollowupOp {
    /// `CREATE TABLE target AS query` (a work table in the staging dataset).
    CreateTableAs {
        /// The new table.
        target: TableRef,
        /// Its rows.
        query: LogicalPlan,
    },
    /// `INSERT INTO target (columns) query`.
    Insert {
        /// The table.
        target: TableRef,
        /// Columns, in the order of the query's output.
        columns: Vec<String>,
        /// The rows.
        query: LogicalPlan,
    },
    /// `DELETE FROM target [AS d] WHERE predicate`.
    Delete {
        /// The table.
        target: TableRef,
        /// Rows to delete. Columns of the target are qualified by [`TARGET_ALIAS`], or by the
        /// table's full name where the dialect has no alias in DML.
        predicate: Expr,
    },
    /// Deletes the rows of `target` whose [`SqlDialect::row_locator`] is listed in the
    /// [`LOCATOR`] column of the work table `rows` (`DELETE FROM target WHERE ctid =
    /// ANY(ARRAY(SELECT … FROM rows))`): a lookup per row, no scan of `target`.
    DeleteLocated {
        /// The table.
        target: TableRef,
        /// The work table holding the locators, collected earlier in the same transaction.
        rows: TableRef,
    },
    /// Empties a table (`TRUNCATE`, or `DELETE … WHERE 1 = 1`).
    Truncate {
        /// The table.
        target: TableRef,
    },
    /// `UPDATE target [AS d] SET column = value, … WHERE predicate`.
    Update {
        /// The table.
        target: TableRef,
        /// New values.
        assignments: Vec<(String, Expr)>,
        /// Rows to update, qualified like [`FollowupOp::Delete`]'s.
        predicate: Expr,
    },
    /// A `MERGE` (lowered to `DELETE` + `INSERT` where the dialect has none).
    Merge(Box<MergeInto>),
    /// `DROP TABLE IF EXISTS target`.
    DropTable {
        /// The table.
        target: TableRef,
    },
    /// Replaces every row of `target` by the rows of `source` (a staging table of the same
    /// columns) in one step readers see whole: the `staging-optimized` replace where the
    /// destination cannot move tables. Lowered as the dialect's
    /// [`crate::OverwriteStyle`]: a clone, an `INSERT OVERWRITE`, or an empty-then-insert in the
    /// follow-up's transaction.
    Overwrite {
        /// The final table.
        target: TableRef,
        /// The staging table.
        source: TableRef,
        /// The columns, in the target's order.
        columns: Vec<String>,
        /// `SELECT columns FROM source`.
        query: LogicalPlan,
    },
    /// Moves a staging table into the final dataset in place of the final table of that name
    /// (`DROP TABLE`, `ALTER TABLE … SET SCHEMA`), made crash-safe first where staging is
    /// unlogged, with the final table's `UNIQUE` constraints added (staging tables have none).
    MoveTable {
        /// The staging table.
        source: TableRef,
        /// The dataset it moves to.
        dataset: String,
        /// Columns that carry a `UNIQUE` constraint in the final dataset.
        unique_columns: Vec<String>,
    },
}

/// What a follow-up may assume about the destination.
#[derive(Debug, Clone, Default)]
pub struct FinalState {
    /// Final tables known to hold no rows (created by this package's migration, or checked).
    pub empty_tables: BTreeSet<String>,
    /// Root tables whose staging table may take their place, as decided once when the load was
    /// prepared ([`crate::PackagePlan::may_move_staging`]: a root-only chain whose final table
    /// this package's migration created, on a destination that moves tables) — the same
    /// decision that kept the staging table logged. The follow-up moves it only when, besides,
    /// the final table is still empty and the staged rows are the result.
    pub movable: BTreeSet<String>,
    /// What was measured on staging tables once their jobs loaded (see [`staged_facts_plan`]).
    pub staged: BTreeMap<String, StagedFacts>,
    /// The key runs this load's job parts reported per root table, for the measuring step to
    /// use instead of counting distinct keys ([`crate::keys`]).
    pub observed_keys: BTreeMap<String, Vec<crate::keys::KeyRun>>,
    /// Nested tables whose every staged row follows a staged root row (measured by
    /// [`staged_orphans_plan`] where a delete-insert chain may move): their staging tables may
    /// take the final tables' place, as no row of theirs would be left out.
    pub rooted: BTreeSet<String>,
}

impl FinalState {
    /// Is the final `table` known to be empty?
    pub fn is_empty(&self, table: &str) -> bool {
        self.empty_tables.contains(table)
    }

    /// Staged rows of `table` hold each key once: deduplication has nothing to do.
    fn unique_keys(&self, table: &str) -> bool {
        self.staged.get(table).is_some_and(StagedFacts::unique_keys)
    }

    fn key_range(&self, table: &str) -> Option<&KeyRange> {
        self.staged.get(table).and_then(|f| f.key_range.as_ref())
    }

    /// The staged rows of `table` are already what the merge inserts into an empty table: keys
    /// unique, none marked deleted.
    pub fn staged_is_result(&self, table: &str) -> bool {
        self.staged
            .get(table)
            .is_some_and(|f| f.unique_keys() && f.deleted_rows == 0)
    }
}

/// Facts about one staging table, measured after its jobs loaded and before its follow-up.
#[derive(Debug, Clone, PartialEq)]
pub struct StagedFacts {
    /// Rows staged.
    pub rows: u64,
    /// Distinct primary key values among them.
    pub distinct_keys: u64,
    /// Rows marked deleted by the hard-delete column (0 without one).
    pub deleted_rows: u64,
    /// Smallest and largest staged key, for an integer primary key with rows.
    pub key_range: Option<KeyRange>,
}

impl StagedFacts {
    /// No key is staged twice.
    pub fn unique_keys(&self) -> bool {
        self.distinct_keys == self.rows
    }

    /// Reads the one row of [`staged_facts_plan`]'s result.
    pub fn from_batches(table: &Table, batches: &[arrow::record_batch::RecordBatch]) -> Result<Self> {
        use arrow::array::{Array, AsArray};
        use arrow::datatypes::{DataType as ArrowType, Int64Type};
        let batch = batches
            .iter()
            .find(|b| b.num_rows() > 0)
            .ok_or_else(|| Error::Unsupported {
                message: format!("the staged-rows check of `{}` returned no row", table.name),
            })?;
        let value = |name: &str| -> Result<Option<i64>> {
            let Some(index) = batch
                .schema()
                .fields()
                .iter()
                .position(|f| f.name().eq_ignore_ascii_case(name))
            else {
                return Ok(None);
            };
            let column = arrow::compute::cast(batch.column(index), &ArrowType::Int64)?;
            let column = column.as_primitive::<Int64Type>();
            Ok((!column.is_null(0)).then(|| column.value(0)))
        };
        let count = |name: &str| -> Result<u64> { Ok(value(name)?.unwrap_or(0).max(0).unsigned_abs()) };
        let key_range = match (table.primary_key().first(), value(MIN_KEY)?, value(MAX_KEY)?) {
            (Some(key), Some(min), Some(max)) => Some(KeyRange {
                column: key.name.clone(),
                min,
                max,
            }),
            _ => None,
        };
        Ok(Self {
            rows: count(ROWS)?,
            distinct_keys: count(KEYS)?,
            deleted_rows: count(DELETED)?,
            key_range,
        })
    }
}

/// The range the staged values of an integer key fall in. A final row outside it cannot match a
/// staged row, so a match only needs to look at the rows inside: the scan of the final table
/// filters them out before the join instead of probing every one of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRange {
    /// The key column (schema name).
    pub column: String,
    /// Smallest staged value.
    pub min: i64,
    /// Largest staged value.
    pub max: i64,
}

impl KeyRange {
    /// `qualifier.column BETWEEN min AND max`.
    pub fn predicate(&self, b: &PlanBuilder<'_>, qualifier: &TableReference) -> Expr {
        b.col(qualifier, &self.column).between(lit(self.min), lit(self.max))
    }
}

const ROWS: &str = "staged_rows";
const KEYS: &str = "staged_keys";
const DELETED: &str = "deleted_rows";
const MIN_KEY: &str = "min_key";
const MAX_KEY: &str = "max_key";

/// The query measuring a merge root's staging table: `rows, distinct keys, deleted rows[, min
/// key, max key]`, for a table with a one-column primary key (none otherwise). Its answer lets
/// the follow-up skip deduplication, narrow key matches to the staged key range, and move the
/// staging table into an empty dataset instead of copying it.
pub fn staged_facts_plan(dialect: &SqlDialect, table: &Table, staging: &TableRef) -> Result<Option<LogicalPlan>> {
    use datafusion::functions_aggregate::count::count_all;
    use datafusion::functions_aggregate::expr_fn::{count, count_distinct, max, min};
    let pk = table.primary_key();
    let [key] = pk.as_slice() else {
        return Ok(None);
    };
    let b = PlanBuilder::new(dialect);
    let value = b.bare(&key.name);
    let mut aggregates = vec![
        count_all().alias(b.name(ROWS)),
        count_distinct(value.clone()).alias(b.name(KEYS)),
    ];
    if let Some(hd) = hard_delete(table) {
        // `count` skips the NULL of rows that are kept.
        aggregates.push(count(when(hd.deleted(b.bare(&hd.column.name)), lit(1i64)).end()?).alias(b.name(DELETED)));
    }
    if key.data_type == Some(DataType::Bigint) {
        aggregates.push(min(value.clone()).alias(b.name(MIN_KEY)));
        aggregates.push(max(value).alias(b.name(MAX_KEY)));
    }
    Ok(Some(
        b.scan(staging, table, None)?
            .aggregate(Vec::<Expr>::new(), aggregates)?
            .build()?,
    ))
}

/// The query counting the rows of a merge root's staging table, as `staged_rows` (which
/// [`StagedFacts::from_batches`] reads): whether the key runs a load observed cover them all.
pub fn staged_rows_plan(dialect: &SqlDialect, table: &Table, staging: &TableRef) -> Result<LogicalPlan> {
    use datafusion::functions_aggregate::count::count_all;
    let b = PlanBuilder::new(dialect);
    Ok(b.scan(staging, table, None)?
        .aggregate(Vec::<Expr>::new(), vec![count_all().alias(b.name(ROWS))])?
        .build()?)
}

/// Rows of [`staged_orphans_plan`]'s answer.
pub const ORPHAN_ROWS: &str = "orphan_rows";

/// The query counting the staged rows of nested `table` whose root row is not staged, as
/// [`ORPHAN_ROWS`]: a delete-insert leaves them out, so its staging table may take the final
/// table's place only when there are none.
pub fn staged_orphans_plan(
    dialect: &SqlDialect,
    schema: &Schema,
    root: &Table,
    table: &Table,
    staging_dataset: &str,
) -> Result<LogicalPlan> {
    use datafusion::functions_aggregate::count::count_all;
    let b = PlanBuilder::new(dialect);
    let link = root_link(schema, table)?;
    let nested = TableReference::bare(b.name(SOURCE_ALIAS));
    let root_rows = b
        .scan(&TableRef::new(staging_dataset, &root.name), root, Some(TARGET_ALIAS))?
        .filter(b.acol(TARGET_ALIAS, DLT_ID).eq(b.outer(&nested, link)))?
        .project(vec![lit(1i64).alias(b.name("one"))])?
        .build()?;
    Ok(
        b.scan(&TableRef::new(staging_dataset, &table.name), table, Some(SOURCE_ALIAS))?
            .filter(not_exists(Arc::new(root_rows)))?
            .aggregate(Vec::<Expr>::new(), vec![count_all().alias(b.name(ORPHAN_ROWS))])?
            .build()?,
    )
}

/// The [`ORPHAN_ROWS`] of a [`staged_orphans_plan`]'s answer.
pub fn orphan_rows(batches: &[arrow::record_batch::RecordBatch]) -> Result<u64> {
    use arrow::array::AsArray;
    use arrow::datatypes::{DataType as ArrowType, Int64Type};
    let answer = batches
        .iter()
        .find(|b| b.num_rows() > 0)
        .and_then(|batch| {
            let index = batch
                .schema()
                .fields()
                .iter()
                .position(|f| f.name().eq_ignore_ascii_case(ORPHAN_ROWS))?;
            Some(arrow::compute::cast(batch.column(index), &ArrowType::Int64))
        })
        .ok_or_else(|| Error::Unsupported {
            message: format!("the check for staged nested rows without a root returned no `{ORPHAN_ROWS}`"),
        })??;
    Ok(answer.as_primitive::<Int64Type>().value(0).max(0).unsigned_abs())
}

/// Builds plans for one dialect: names are case-folded by it, and the target alias follows its
/// DML rules.
#[derive(Debug, Clone, Copy)]
pub struct PlanBuilder<'a> {
    dialect: &'a SqlDialect,
}

impl<'a> PlanBuilder<'a> {
    /// Plans for `dialect`.
    pub fn new(dialect: &'a SqlDialect) -> Self {
        Self { dialect }
    }

    fn name(&self, name: &str) -> String {
        self.dialect.stored_name(name)
    }

    /// `dataset.table` as a DataFusion table reference (folded).
    pub fn reference(&self, table: &TableRef) -> TableReference {
        self.dialect.table_reference(&table.dataset, &table.table)
    }

    /// The relation a target column is qualified with: the alias, or the full name.
    pub fn target_qualifier(&self, target: &TableRef) -> TableReference {
        if self.dialect.dml_target_alias {
            self.relation(TARGET_ALIAS)
        } else {
            self.reference(target)
        }
    }

    /// The Arrow schema a scan of `table` has (complete columns, folded names).
    pub fn arrow_schema(&self, table: &Table) -> ArrowSchema {
        ArrowSchema::new(
            table
                .complete_columns()
                .map(|c| Field::new(self.name(&c.name), arrow_type(c), true))
                .collect::<Vec<_>>(),
        )
    }

    /// A scan of `at` with `table`'s columns, aliased when `alias` is given.
    pub fn scan(&self, at: &TableRef, table: &Table, alias: Option<&str>) -> Result<LogicalPlanBuilder> {
        let source = Arc::new(LogicalTableSource::new(Arc::new(self.arrow_schema(table))));
        let builder = LogicalPlanBuilder::scan(self.reference(at), source, None)?;
        Ok(match alias {
            Some(alias) => builder.alias(self.relation(alias))?,
            None => builder,
        })
    }

    /// The relation called `alias` (folded, and not parsed again: `"S"` stays upper-case).
    pub fn relation(&self, alias: &str) -> TableReference {
        TableReference::bare(self.name(alias))
    }

    /// Column `name` of the relation `qualifier`.
    pub fn col(&self, qualifier: &TableReference, name: &str) -> Expr {
        Expr::Column(Column::new(Some(qualifier.clone()), self.name(name)))
    }

    /// Column `name` of the aliased relation `alias`.
    pub fn acol(&self, alias: &str, name: &str) -> Expr {
        self.col(&self.relation(alias), name)
    }

    /// Column `name` without a qualifier.
    pub fn bare(&self, name: &str) -> Expr {
        Expr::Column(Column::new_unqualified(self.name(name)))
    }

    /// A reference from a subquery to the outer relation's column.
    fn outer(&self, qualifier: &TableReference, column: &SchemaColumn) -> Expr {
        out_ref_col(
            arrow_type(column),
            Column::new(Some(qualifier.clone()), self.name(&column.name)),
        )
    }

    /// `SELECT 1 FROM inner AS s WHERE s.k = outer.k AND …` for `EXISTS`.
    fn correlated(
        &self,
        inner: &TableRef,
        inner_table: &Table,
        inner_alias: &str,
        outer: &TableReference,
        keys: &[&SchemaColumn],
        extra: Option<Expr>,
    ) -> Result<Arc<LogicalPlan>> {
        let mut predicate = keys
            .iter()
            .map(|k| self.acol(inner_alias, &k.name).eq(self.outer(outer, k)))
            .reduce(Expr::and)
            .ok_or_else(|| Error::Unsupported {
                message: "a key match needs at least one key column".into(),
            })?;
        if let Some(extra) = extra {
            predicate = predicate.and(extra);
        }
        let plan = self
            .scan(inner, inner_table, Some(inner_alias))?
            .filter(predicate)?
            .project(vec![lit(1i64).alias(self.name("one"))])?
            .build()?;
        Ok(Arc::new(plan))
    }

    /// `ROW_NUMBER() OVER (PARTITION BY keys ORDER BY sort) = 1`: one row per key, on a plan
    /// with every column of `table` unqualified. Ties on the sort column are broken by `_dlt_id`;
    /// NULL sort values come last in both directions.
    fn dedup(&self, input: LogicalPlanBuilder, table: &Table, keys: &[&SchemaColumn]) -> Result<LogicalPlanBuilder> {
        let partition: Vec<Expr> = keys.iter().map(|k| self.bare(&k.name)).collect();
        let mut order = Vec::new();
        if let Some(sort) = table.complete_columns().find(|c| c.dedup_sort.is_some()) {
            let ascending = sort.dedup_sort == Some(SortOrder::Asc);
            let value = self.bare(&sort.name);
            if !self.dialect.unparser.supports_nulls_first_in_sort() {
                // No NULLS LAST in the dialect: sort on "is null" first.
                order.push(
                    when(value.clone().is_null(), lit(1i64))
                        .otherwise(lit(0i64))?
                        .sort(true, false),
                );
            }
            order.push(value.sort(ascending, false));
        }
        if table.columns.contains_key(DLT_ID) && !keys.iter().any(|k| k.name == DLT_ID) {
            order.push(self.bare(DLT_ID).sort(true, false));
        }
        if order.is_empty() {
            order = keys.iter().map(|k| self.bare(&k.name).sort(true, false)).collect();
        }
        let rn = row_number()
            .partition_by(partition)
            .order_by(order)
            .build()?
            .alias(self.name(DEDUP_RN));
        // The numbered rows are a derived table of their own, so that filters on top of it can
        // never be printed into the same SELECT (a `WHERE` there runs before the window).
        Ok(input
            .window(vec![rn])?
            .alias(self.relation(DEDUP_NUMBERED))?
            .filter(self.bare(DEDUP_RN).eq(lit(1i64)))?)
    }

    fn project_columns(&self, input: LogicalPlanBuilder, columns: &[String]) -> Result<LogicalPlanBuilder> {
        Ok(input.project(columns.iter().map(|c| self.bare(c)).collect::<Vec<_>>())?)
    }
}

/// The hard-delete column of a table and its conditions.
#[derive(Debug, Clone)]
struct HardDelete<'t> {
    column: &'t SchemaColumn,
}

impl HardDelete<'_> {
    /// The row is marked deleted: `c = TRUE` for a bool column, `c IS NOT NULL` otherwise.
    fn deleted(&self, value: Expr) -> Expr {
        if self.column.data_type == Some(DataType::Bool) {
            value.eq(lit(true))
        } else {
            value.is_not_null()
        }
    }

    /// The row is not marked deleted: `c IS NULL OR c = FALSE` for bool, `c IS NULL` otherwise.
    fn kept(&self, value: Expr) -> Expr {
        if self.column.data_type == Some(DataType::Bool) {
            value.clone().is_null().or(value.eq(lit(false)))
        } else {
            value.is_null()
        }
    }
}

fn hard_delete(table: &Table) -> Option<HardDelete<'_>> {
    table
        .complete_columns()
        .find(|c| c.hard_delete)
        .map(|column| HardDelete { column })
}

/// Inputs of one chain's follow-up.
#[derive(Debug)]
pub struct ChainInput<'a> {
    /// The package schema.
    pub schema: &'a Schema,
    /// Tables of the chain, root first, in schema order.
    pub tables: &'a [String],
    /// Final dataset.
    pub dataset: &'a str,
    /// This load's staging dataset.
    pub staging_dataset: &'a str,
    /// scd2 validity boundary (`YYYY-MM-DD HH:MM:SS.ffffff+00:00`): the table's
    /// `x-boundary-timestamp`, else the package's `created_at`.
    pub boundary: Option<String>,
    /// What is known about the final tables.
    pub state: &'a FinalState,
    /// dlt 1.31's merge options of the chain (see [`crate::conditions`]).
    pub options: MergeOptions,
}

impl ChainInput<'_> {
    fn table(&self, name: &str) -> Result<&Table> {
        self.schema.table(name).ok_or_else(|| Error::Unsupported {
            message: format!("table `{name}` is not in the package schema"),
        })
    }

    fn root(&self) -> Result<&Table> {
        self.table(self.tables.first().map(String::as_str).unwrap_or_default())
    }

    fn final_ref(&self, table: &str) -> TableRef {
        TableRef::new(self.dataset, table)
    }

    fn staging_ref(&self, table: &str) -> TableRef {
        TableRef::new(self.staging_dataset, table)
    }

    fn nested(&self) -> Result<Vec<&Table>> {
        self.tables.iter().skip(1).map(|t| self.table(t)).collect()
    }

    /// The source filter over the staged root rows, their columns as `column` names them.
    fn source_filter(&self, column: &dyn Fn(&str) -> Expr) -> Result<Option<Expr>> {
        self.options
            .source_filter
            .as_ref()
            .map(|f| MergeOptions::bind(f, column))
            .transpose()
    }

    /// The destination scope over the final root rows, their columns as `column` names them.
    fn destination_scope(&self, column: &dyn Fn(&str) -> Expr) -> Result<Option<Expr>> {
        self.options
            .destination_scope
            .as_ref()
            .map(|f| MergeOptions::bind(f, column))
            .transpose()
    }

    /// A work table in the staging dataset, named so no normalized table can clash with it.
    fn work_table(&self, dialect: &SqlDialect, op: &str, root: &str) -> TableRef {
        let mut name = format!("_berth_{op}_{root}");
        let max = dialect.max_identifier_length;
        if dialect.identifier_length(&name) > max {
            let digest = fnv(root.as_bytes());
            let keep = max.saturating_sub(17 + op.len() + 8);
            name = format!("_berth_{op}_{}_{digest:016x}", dialect.identifier_prefix(root, keep));
        }
        self.staging_ref(&name)
    }
}

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn column_names(table: &Table) -> Vec<String> {
    table.complete_columns().map(|c| c.name.clone()).collect()
}

/// The column linking a nested table to its root row: the root key, or the parent key of a
/// first-level child without one.
fn root_link<'t>(schema: &Schema, table: &'t Table) -> Result<&'t SchemaColumn> {
    if let Some(root_key) = table.complete_columns().find(|c| c.root_key) {
        return Ok(root_key);
    }
    let parent_is_root = table
        .parent
        .as_deref()
        .and_then(|p| schema.table(p))
        .is_some_and(|p| !p.is_nested());
    match table.complete_columns().find(|c| c.parent_key) {
        Some(parent_key) if parent_is_root => Ok(parent_key),
        _ => Err(Error::Unsupported {
            message: format!(
                "nested table `{}` has no root key (`_dlt_root_id`), so its rows cannot be matched to \
                 their root rows for merge; the normalizer adds it to merge tables",
                table.name
            ),
        }),
    }
}

fn dlt_id(table: &Table) -> Result<&SchemaColumn> {
    table
        .columns
        .get(DLT_ID)
        .filter(|c| c.is_complete())
        .ok_or_else(|| Error::Unsupported {
            message: format!("table `{}` has no `{DLT_ID}` column", table.name),
        })
}

/// The follow-up of a merge chain with `strategy`.
pub fn merge_ops(dialect: &SqlDialect, input: &ChainInput<'_>, strategy: MergeStrategy) -> Result<Vec<FollowupOp>> {
    let b = PlanBuilder::new(dialect);
    match strategy {
        MergeStrategy::DeleteInsert => delete_insert(&b, dialect, input),
        MergeStrategy::Upsert => upsert(&b, dialect, input),
        MergeStrategy::InsertOnly => insert_only(&b, dialect, input),
        MergeStrategy::Scd2 => scd2(&b, input),
        MergeStrategy::Cdc => cdc(&b, dialect, input),
    }
}

/// Staging rows of `table` to insert: deduplicated by `keys` (unless the schema says the data
/// is deduplicated or there are no keys), without rows marked deleted, as `columns`.
fn staged_rows(
    b: &PlanBuilder<'_>,
    input: &ChainInput<'_>,
    table: &Table,
    keys: &[&SchemaColumn],
    columns: &[String],
) -> Result<LogicalPlanBuilder> {
    let mut rows = b.scan(&input.staging_ref(&table.name), table, None)?;
    let measured_unique = input.state.unique_keys(&table.name) && same_columns(keys, &table.primary_key());
    if !keys.is_empty() && !table.stage_data_deduplicated && !measured_unique {
        rows = b.dedup(rows, table, keys)?;
    }
    if let Some(hd) = hard_delete(table) {
        rows = rows.filter(hd.kept(b.bare(&hd.column.name)))?;
    }
    // The source filter is on root columns, after deduplication as dlt applies it; nested rows
    // follow their roots.
    if let Some(filter) = input.source_filter(&|c| b.bare(c))? {
        if input.tables.first() == Some(&table.name) {
            rows = rows.filter(filter)?;
        } else {
            let root = input.root()?;
            let roots = b
                .scan(&input.staging_ref(&root.name), root, None)?
                .filter(filter)?
                .project(vec![b.bare(DLT_ID)])?
                .build()?;
            let link = root_link(input.schema, table)?;
            rows = rows.filter(in_subquery(b.bare(&link.name), Arc::new(roots)))?;
        }
    }
    b.project_columns(rows, columns)
}

fn same_columns(a: &[&SchemaColumn], b: &[&SchemaColumn]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.name == y.name)
}

/// The staged key range of `table`, when `keys` is the key it was measured on.
fn range_of<'s>(input: &ChainInput<'s>, table: &Table, keys: &[&SchemaColumn]) -> Option<&'s KeyRange> {
    input
        .state
        .key_range(&table.name)
        .filter(|r| matches!(keys, [k] if k.name == r.column))
}

/// Which nested rows a strategy inserts into empty tables, for [`move_into_empty`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NestedRows {
    /// Every staged row (upsert, roots unique and none deleted).
    All,
    /// Those of the root rows inserted (delete-insert): every staged row where none is an
    /// orphan ([`FinalState::rooted`]).
    OfInsertedRoots,
    /// Not known to be every staged row (insert-only takes a nested `_dlt_id` staged twice once):
    /// only a chain that is its root alone moves.
    Other,
}

/// The merge of a chain into empty tables its migration created, when the staged rows are
/// already the result (root keys unique, none deleted, and every staged nested row inserted):
/// each staging table takes its final table's place instead of being copied into it, which
/// writes every row once instead of twice and builds each `UNIQUE` index once, sorted, instead
/// of row by row (dlt's fixture schema of 5 tables, 200k roots and 2.75M nested rows: the
/// copies took 8.4 s on PostgreSQL, against 3.9 s for the whole append).
fn move_into_empty(
    dialect: &SqlDialect,
    input: &ChainInput<'_>,
    nested: NestedRows,
) -> Result<Option<Vec<FollowupOp>>> {
    let root = input.root()?;
    let name = &root.name;
    let state = input.state;
    // With a source filter the staged rows are not the result.
    let filtered = input.options.source_filter.is_some();
    if filtered || !state.movable.contains(name) || !state.staged_is_result(name) {
        return Ok(None);
    }
    let moves = |table: &Table| {
        state.is_empty(&table.name)
            && match nested {
                NestedRows::All => true,
                NestedRows::OfInsertedRoots => state.rooted.contains(&table.name),
                NestedRows::Other => false,
            }
    };
    let chain = input.nested()?;
    if !state.is_empty(name) || !chain.iter().all(|t| moves(t)) {
        return Ok(None);
    }
    // `movable` was decided by the plan with these conditions among others.
    debug_assert!(dialect.supports_set_schema);
    Ok(Some(
        std::iter::once(root)
            .chain(chain)
            .map(|table| FollowupOp::MoveTable {
                source: input.staging_ref(&table.name),
                dataset: input.dataset.to_string(),
                unique_columns: unique_columns(table),
            })
            .collect(),
    ))
}

/// Columns of `table` with a `unique` hint.
pub fn unique_columns(table: &Table) -> Vec<String> {
    table
        .complete_columns()
        .filter(|c| c.unique)
        .map(|c| c.name.clone())
        .collect()
}

fn delete_insert(b: &PlanBuilder<'_>, dialect: &SqlDialect, input: &ChainInput<'_>) -> Result<Vec<FollowupOp>> {
    if let Some(ops) = move_into_empty(dialect, input, NestedRows::OfInsertedRoots)? {
        return Ok(ops);
    }
    let root = input.root()?;
    let nested = input.nested()?;
    let pk = root.primary_key();
    let mk = root.merge_key();
    if pk.is_empty() && mk.is_empty() && input.options.destination_scope.is_none() {
        // Nothing to match on: append from staging, as dlt does (with a warning there).
        return append_from_staging(b, input, std::iter::once(root).chain(nested.iter().copied()));
    }
    if input.options.destination_scope.is_some() {
        // The scope alone selects the rows replaced: no key matching (the destination can prune
        // partitions by it), nested rows first, through their root rows.
        let mut ops = Vec::new();
        if !input.state.is_empty(&root.name) {
            ops.extend(delete_in_scope(b, input)?);
        }
        if nested.is_empty() {
            let columns = column_names(root);
            let rows = staged_rows(b, input, root, &pk, &columns)?;
            ops.push(FollowupOp::Insert {
                target: input.final_ref(&root.name),
                columns,
                query: rows.build()?,
            });
        } else {
            ops.extend(insert_staged_chain(b, dialect, input, &pk)?);
        }
        return Ok(ops);
    }
    let key_clauses: Vec<&[&SchemaColumn]> = [pk.as_slice(), mk.as_slice()]
        .into_iter()
        .filter(|k| !k.is_empty())
        .collect();
    let root_empty = input.state.is_empty(&root.name);
    if nested.is_empty() {
        let final_root = input.final_ref(&root.name);
        let mut ops = Vec::new();
        if !root_empty && dialect.row_locator.is_some() {
            ops.extend(delete_matched_chain(b, dialect, input, &key_clauses, &nested)?);
        } else if !root_empty {
            let target = b.target_qualifier(&final_root);
            let staging_root = input.staging_ref(&root.name);
            let filter = input.source_filter(&|c| b.acol(SOURCE_ALIAS, c))?;
            for keys in &key_clauses {
                let matched = b.correlated(&staging_root, root, SOURCE_ALIAS, &target, keys, filter.clone())?;
                let predicate = match range_of(input, root, keys) {
                    Some(range) => range.predicate(b, &target).and(exists(matched)),
                    None => exists(matched),
                };
                ops.push(FollowupOp::Delete {
                    target: final_root.clone(),
                    predicate,
                });
            }
        }
        let columns = column_names(root);
        let rows = staged_rows(b, input, root, &pk, &columns)?;
        ops.push(FollowupOp::Insert {
            target: final_root,
            columns,
            query: rows.build()?,
        });
        return Ok(ops);
    }
    let mut ops = Vec::new();
    if !root_empty {
        ops.extend(delete_matched_chain(b, dialect, input, &key_clauses, &nested)?);
    }
    ops.extend(insert_staged_chain(b, dialect, input, &pk)?);
    Ok(ops)
}

/// Every staged row of `tables` appended to its final table.
fn append_from_staging<'t>(
    b: &PlanBuilder<'_>,
    input: &ChainInput<'_>,
    tables: impl Iterator<Item = &'t Table>,
) -> Result<Vec<FollowupOp>> {
    let mut ops = Vec::new();
    for table in tables {
        let columns = column_names(table);
        let rows = staged_rows(b, input, table, &[], &columns)?;
        ops.push(FollowupOp::Insert {
            target: input.final_ref(&table.name),
            columns,
            query: rows.build()?,
        });
    }
    Ok(ops)
}

/// The `_dlt_id`s held in the work table `work`, as a subquery.
fn ids_of(b: &PlanBuilder<'_>, id: &SchemaColumn, work: &TableRef) -> Result<Arc<LogicalPlan>> {
    let work_table = Table::new(work.table.clone(), [id.clone()]);
    Ok(Arc::new(
        b.scan(work, &work_table, None)?
            .project(vec![b.bare(DLT_ID)])?
            .build()?,
    ))
}

/// The column of a work table holding [`SqlDialect::row_locator`]s.
pub const LOCATOR: &str = "_berth_row";

/// Deletes the final root rows whose keys (any of `key_clauses`) are staged, and their rows in
/// `nested` tables: their `_dlt_id`s (for nested rows) and row locators (where the dialect has
/// them) are collected into a work table first, before any of them is deleted.
fn delete_matched_chain(
    b: &PlanBuilder<'_>,
    dialect: &SqlDialect,
    input: &ChainInput<'_>,
    key_clauses: &[&[&SchemaColumn]],
    nested: &[&Table],
) -> Result<Vec<FollowupOp>> {
    let root = input.root()?;
    let final_root = input.final_ref(&root.name);
    let staging_root = input.staging_ref(&root.name);
    let target = b.target_qualifier(&final_root);
    let deletes = input.work_table(dialect, "delete", &root.name);
    let mut ops = vec![FollowupOp::DropTable {
        target: deletes.clone(),
    }];
    // What the work table holds: `_dlt_id` where nested rows follow their root rows, the
    // locator where there is one; the scan of the final root sees the locator as a column.
    let scanned_table = dialect
        .row_locator
        .map_or_else(|| root.clone(), |locator| with_locator(root, locator));
    let mut columns = Vec::new();
    if !nested.is_empty() || dialect.row_locator.is_none() {
        columns.push((DLT_ID.to_string(), DLT_ID.to_string()));
    }
    if let Some(locator) = dialect.row_locator {
        columns.push((locator.to_string(), LOCATOR.to_string()));
    }
    let filter = input.source_filter(&|c| b.acol(SOURCE_ALIAS, c))?;
    for (i, keys) in key_clauses.iter().enumerate() {
        let matched = b.correlated(&staging_root, root, SOURCE_ALIAS, &target, keys, filter.clone())?;
        let scanned = b.relation(TARGET_ALIAS);
        let predicate = match range_of(input, root, keys) {
            Some(range) => range.predicate(b, &scanned).and(exists(matched)),
            None => exists(matched),
        };
        let projection = columns
            .iter()
            .map(|(column, alias)| b.acol(TARGET_ALIAS, column).alias(b.name(alias)))
            .collect::<Vec<_>>();
        let query = b
            .scan(&final_root, &scanned_table, Some(TARGET_ALIAS))?
            .filter(predicate)?
            .project(projection)?
            .build()?;
        ops.push(if i == 0 {
            FollowupOp::CreateTableAs {
                target: deletes.clone(),
                query,
            }
        } else {
            FollowupOp::Insert {
                target: deletes.clone(),
                columns: columns.iter().map(|(_, alias)| alias.clone()).collect(),
                query,
            }
        });
    }
    ops.extend(delete_collected(b, input, &deletes, nested)?);
    ops.push(FollowupOp::DropTable { target: deletes });
    Ok(ops)
}

/// `table` as a scan of it sees its rows' `locator` ([`SqlDialect::row_locator`]): a column.
fn with_locator(table: &Table, locator: &str) -> Table {
    let mut scanned = table.clone();
    scanned
        .columns
        .insert(locator.into(), SchemaColumn::new(locator, DataType::Text));
    scanned
}

/// Deletes the rows collected into the work table `deletes` by [`delete_matched_chain`]: the
/// rows of `nested` tables through their root's `_dlt_id`, then the root rows (by locator where
/// the dialect has one).
fn delete_collected(
    b: &PlanBuilder<'_>,
    input: &ChainInput<'_>,
    deletes: &TableRef,
    nested: &[&Table],
) -> Result<Vec<FollowupOp>> {
    let root = input.root()?;
    let final_root = input.final_ref(&root.name);
    let target = b.target_qualifier(&final_root);
    let mut ops = Vec::new();
    for table in nested {
        let link = root_link(input.schema, table)?;
        let final_nested = input.final_ref(&table.name);
        let qualifier = b.target_qualifier(&final_nested);
        ops.push(FollowupOp::Delete {
            predicate: in_subquery(b.col(&qualifier, &link.name), ids_of(b, dlt_id(root)?, deletes)?),
            target: final_nested,
        });
    }
    ops.push(match b.dialect.row_locator {
        Some(_) => FollowupOp::DeleteLocated {
            target: final_root,
            rows: deletes.clone(),
        },
        None => FollowupOp::Delete {
            predicate: in_subquery(b.col(&target, DLT_ID), ids_of(b, dlt_id(root)?, deletes)?),
            target: final_root,
        },
    });
    Ok(ops)
}

/// Inserts the staged root rows that survive deduplication and are not deleted, and the nested
/// rows that follow them.
fn insert_staged_chain(
    b: &PlanBuilder<'_>,
    dialect: &SqlDialect,
    input: &ChainInput<'_>,
    pk: &[&SchemaColumn],
) -> Result<Vec<FollowupOp>> {
    let root = input.root()?;
    let id = dlt_id(root)?;
    let inserts = input.work_table(dialect, "insert", &root.name);
    let mut ops = vec![
        FollowupOp::DropTable {
            target: inserts.clone(),
        },
        FollowupOp::CreateTableAs {
            target: inserts.clone(),
            query: staged_rows(b, input, root, pk, &[DLT_ID.to_string()])?.build()?,
        },
    ];
    let selected = |table: &Table, link: &str| -> Result<LogicalPlan> {
        Ok(b.scan(&input.staging_ref(&table.name), table, None)?
            .filter(in_subquery(b.bare(link), ids_of(b, id, &inserts)?))?
            .project(column_names(table).iter().map(|c| b.bare(c)).collect::<Vec<_>>())?
            .build()?)
    };
    ops.push(FollowupOp::Insert {
        target: input.final_ref(&root.name),
        columns: column_names(root),
        query: selected(root, DLT_ID)?,
    });
    for table in input.nested()? {
        let link = root_link(input.schema, table)?;
        ops.push(FollowupOp::Insert {
            target: input.final_ref(&table.name),
            columns: column_names(table),
            query: selected(table, &link.name)?,
        });
    }
    ops.push(FollowupOp::DropTable { target: inserts });
    Ok(ops)
}

/// Deletes the final root rows in the destination scope, and their nested rows first (selected
/// through the root rows, which still exist then).
fn delete_in_scope(b: &PlanBuilder<'_>, input: &ChainInput<'_>) -> Result<Vec<FollowupOp>> {
    let root = input.root()?;
    let final_root = input.final_ref(&root.name);
    let target = b.target_qualifier(&final_root);
    let scoped = |qualifier: &TableReference| input.destination_scope(&|c| b.col(qualifier, c));
    let mut ops = Vec::new();
    for table in input.nested()? {
        let link = root_link(input.schema, table)?;
        let roots = b.relation(SOURCE_ALIAS);
        let mut in_scope = b.scan(&final_root, root, Some(SOURCE_ALIAS))?;
        if let Some(scope) = scoped(&roots)? {
            in_scope = in_scope.filter(scope)?;
        }
        let ids = Arc::new(in_scope.project(vec![b.acol(SOURCE_ALIAS, DLT_ID)])?.build()?);
        let final_nested = input.final_ref(&table.name);
        let qualifier = b.target_qualifier(&final_nested);
        ops.push(FollowupOp::Delete {
            predicate: in_subquery(b.col(&qualifier, &link.name), ids),
            target: final_nested,
        });
    }
    ops.push(FollowupOp::Delete {
        predicate: scoped(&target)?.unwrap_or_else(|| lit(true)),
        target: final_root,
    });
    Ok(ops)
}

/// `cdc`: the package is a snapshot of the source. Final root rows whose key is absent from the
/// merge source — within the merge key's partitions or the destination scope, where set — are
/// deleted with their nested rows; then the rows are upserted, those marked deleted deleting
/// their match and never inserted (dlt 1.31's `gen_upsert_sql` with `delete_absent`).
fn cdc(b: &PlanBuilder<'_>, dialect: &SqlDialect, input: &ChainInput<'_>) -> Result<Vec<FollowupOp>> {
    let root = input.root()?;
    let pk = require_primary_key(root, "cdc")?;
    let mut ops = Vec::new();
    if !input.state.is_empty(&root.name) {
        ops.extend(delete_absent(b, input, &pk)?);
    }
    ops.extend(upsert(b, dialect, input)?);
    Ok(ops)
}

/// The final root rows (as `qualifier` names them) absent from the merge source: no staged row
/// with their primary key (among the rows the source filter keeps), within the merge key's
/// partitions or the destination scope.
fn absent_rows(
    b: &PlanBuilder<'_>,
    input: &ChainInput<'_>,
    pk: &[&SchemaColumn],
    qualifier: &TableReference,
) -> Result<Expr> {
    let root = input.root()?;
    let staging_root = input.staging_ref(&root.name);
    let filter = input.source_filter(&|c| b.acol(SOURCE_ALIAS, c))?;
    let present = b.correlated(&staging_root, root, SOURCE_ALIAS, qualifier, pk, filter.clone())?;
    let mut absent = not_exists(present);
    if let Some(scope) = input.destination_scope(&|c| b.col(qualifier, c))? {
        absent = absent.and(scope);
    } else {
        let mk = root.merge_key();
        if !mk.is_empty() {
            let in_partition = b.correlated(&staging_root, root, SOURCE_ALIAS, qualifier, &mk, filter)?;
            absent = absent.and(exists(in_partition));
        }
    }
    Ok(absent)
}

/// Deletes the final rows absent from the merge source (see [`absent_rows`]): nested rows first,
/// through their root rows, which still exist then.
fn delete_absent(b: &PlanBuilder<'_>, input: &ChainInput<'_>, pk: &[&SchemaColumn]) -> Result<Vec<FollowupOp>> {
    let root = input.root()?;
    let final_root = input.final_ref(&root.name);
    let mut ops = Vec::new();
    for table in input.nested()? {
        let link = root_link(input.schema, table)?;
        // The root rows are aliased apart from the staging rows they are matched with.
        let absent_roots = b.scan(&final_root, root, Some("r"))?;
        let absent = absent_rows(b, input, pk, &b.relation("r"))?;
        let ids = Arc::new(
            absent_roots
                .filter(absent)?
                .project(vec![b.acol("r", DLT_ID)])?
                .build()?,
        );
        let final_nested = input.final_ref(&table.name);
        let qualifier = b.target_qualifier(&final_nested);
        ops.push(FollowupOp::Delete {
            predicate: in_subquery(b.col(&qualifier, &link.name), ids),
            target: final_nested,
        });
    }
    let target = b.target_qualifier(&final_root);
    ops.push(FollowupOp::Delete {
        predicate: absent_rows(b, input, pk, &target)?,
        target: final_root,
    });
    Ok(ops)
}

/// The columns a matched row of `table` must differ in to be rewritten, where the chain skips
/// unchanged rows (see [`compare_columns`]).
fn changed_columns(input: &ChainInput<'_>, table: &Table) -> Option<Vec<String>> {
    input
        .options
        .skip_unchanged
        .then(|| compare_columns(table).into_iter().map(|c| c.name.clone()).collect())
}

fn require_primary_key<'t>(root: &'t Table, strategy: &str) -> Result<Vec<&'t SchemaColumn>> {
    let pk = root.primary_key();
    if pk.is_empty() {
        return Err(Error::Unsupported {
            message: format!(
                "table `{}`: merge strategy `{strategy}` needs a primary key, and the table has none",
                root.name
            ),
        });
    }
    Ok(pk)
}

fn upsert(b: &PlanBuilder<'_>, dialect: &SqlDialect, input: &ChainInput<'_>) -> Result<Vec<FollowupOp>> {
    if let Some(ops) = move_into_empty(dialect, input, NestedRows::All)? {
        return Ok(ops);
    }
    let root = input.root()?;
    let pk = require_primary_key(root, "upsert")?;
    let columns = column_names(root);
    let final_root = input.final_ref(&root.name);
    let mut ops = Vec::new();
    let hd = hard_delete(root);

    if input.state.is_empty(&root.name) {
        // Nothing to match: the deduplicated, not-deleted rows go straight in, and the nested
        // rows the MERGE path leaves (all staged ones but those of roots marked deleted).
        ops.push(FollowupOp::Insert {
            target: final_root,
            columns: columns.clone(),
            query: staged_rows(b, input, root, &pk, &columns)?.build()?,
        });
        let nested = input.nested()?;
        if nested.is_empty() {
            // A root without nested tables needs no `_dlt_id` (Arrow tables dlt loads without one).
            return Ok(ops);
        }
        for table in nested {
            let columns = column_names(table);
            let staged = staged_nested_upserted(b, input, root, table, hd.as_ref())?;
            ops.push(FollowupOp::Insert {
                target: input.final_ref(&table.name),
                query: b.project_columns(staged, &columns)?.build()?,
                columns,
            });
        }
        return Ok(ops);
    }

    // Where rows have a locator, every matched final row is collected by a parallel scan and
    // deleted by locator, then the staged rows that are kept go in: the same rows as the MERGE,
    // whose scan of the final table PostgreSQL runs on one process (500k into 5M: follow-up 2.0 s
    // as a MERGE). A source filter applies after deduplication and skip-unchanged keeps matched
    // rows, so those still merge.
    let located =
        dialect.row_locator.is_some() && input.options.source_filter.is_none() && !input.options.skip_unchanged;
    if located {
        ops.extend(delete_matched_chain(b, dialect, input, &[pk.as_slice()], &[])?);
        ops.push(FollowupOp::Insert {
            target: final_root,
            query: staged_rows(b, input, root, &pk, &columns)?.build()?,
            columns,
        });
    } else {
        ops.push(merge_staged_root(b, input, root, &pk, columns)?);
    }
    for table in input.nested()? {
        ops.extend(if located {
            replace_nested_located(b, dialect, input, root, table, hd.as_ref())?
        } else {
            upsert_nested(b, input, root, table, hd.as_ref())?
        });
    }
    Ok(ops)
}

/// The rows [`upsert_nested`] leaves, where rows have a locator: the final rows of nested
/// `table` that follow a staged root row or share a `_dlt_id` with a staged nested row are
/// collected in one scan and deleted by locator, then the staged nested rows go in, but for
/// those of roots marked deleted. The MERGE by `_dlt_id` and the delete of list elements gone
/// from an updated root each scanned the final table (PostgreSQL, 2M nested rows and 160k staged:
/// 0.94–1.0 s and 0.5–0.7 s, against 0.4–0.7 s for the collect and 0.1 s to delete and insert).
fn replace_nested_located(
    b: &PlanBuilder<'_>,
    dialect: &SqlDialect,
    input: &ChainInput<'_>,
    root: &Table,
    table: &Table,
    hd: Option<&HardDelete<'_>>,
) -> Result<Vec<FollowupOp>> {
    let Some(locator) = dialect.row_locator else {
        return upsert_nested(b, input, root, table, hd);
    };
    let link = root_link(input.schema, table)?;
    let final_nested = input.final_ref(&table.name);
    let staging_nested = input.staging_ref(&table.name);
    let staged_ids = |staged: &TableRef, of: &Table| -> Result<Arc<LogicalPlan>> {
        Ok(Arc::new(
            b.scan(staged, of, None)?.project(vec![b.bare(DLT_ID)])?.build()?,
        ))
    };
    let scanned_table = with_locator(table, locator);
    // `IN`, not `EXISTS`: PostgreSQL hashes each subquery once and tests both in one scan (2M
    // rows: 0.5–0.7 s); as semi-joins it runs two parallel scans (0.8–0.95 s).
    let matched = in_subquery(
        b.acol(TARGET_ALIAS, &link.name),
        staged_ids(&input.staging_ref(&root.name), root)?,
    )
    .or(in_subquery(
        b.acol(TARGET_ALIAS, DLT_ID),
        staged_ids(&staging_nested, table)?,
    ));
    let rows = input.work_table(dialect, "delete", &table.name);
    let mut ops = vec![
        FollowupOp::DropTable { target: rows.clone() },
        FollowupOp::CreateTableAs {
            target: rows.clone(),
            query: b
                .scan(&final_nested, &scanned_table, Some(TARGET_ALIAS))?
                .filter(matched)?
                .project(vec![b.acol(TARGET_ALIAS, locator).alias(b.name(LOCATOR))])?
                .build()?,
        },
        FollowupOp::DeleteLocated {
            target: final_nested.clone(),
            rows: rows.clone(),
        },
        FollowupOp::DropTable { target: rows },
    ];
    let columns = column_names(table);
    let staged = staged_nested_upserted(b, input, root, table, hd)?;
    ops.push(FollowupOp::Insert {
        target: final_nested,
        query: b.project_columns(staged, &columns)?.build()?,
        columns,
    });
    Ok(ops)
}

/// The staged rows of nested `table` that an upsert leaves in its final table, as dlt 1.31's
/// `gen_upsert_sql` does: every staged row (one whose root row is not in the package too: its
/// `MERGE` reads the whole staging table), or with a source filter those of the root rows it
/// keeps; but for the rows of roots marked deleted.
fn staged_nested_upserted(
    b: &PlanBuilder<'_>,
    input: &ChainInput<'_>,
    root: &Table,
    table: &Table,
    hd: Option<&HardDelete<'_>>,
) -> Result<LogicalPlanBuilder> {
    let link = root_link(input.schema, table)?;
    let mut staged = b.scan(&input.staging_ref(&table.name), table, None)?;
    if input.options.source_filter.is_some() {
        staged = staged.filter(in_subquery(b.bare(&link.name), source_root_ids(b, input, root, None)?))?;
    }
    if let Some(hd) = hd {
        let deleted_roots = source_root_ids(b, input, root, Some(hd))?;
        // `IS NOT TRUE`: a row without a root key stays, as no delete by root key matches it.
        staged = staged.filter(in_subquery(b.bare(&link.name), deleted_roots).is_not_true())?;
    }
    Ok(staged)
}

/// The `_dlt_id`s of the staged root rows in the merge source (all of them, or those the source
/// filter keeps); with `deleted`, of those among them marked deleted.
fn source_root_ids(
    b: &PlanBuilder<'_>,
    input: &ChainInput<'_>,
    root: &Table,
    deleted: Option<&HardDelete<'_>>,
) -> Result<Arc<LogicalPlan>> {
    let mut roots = b.scan(&input.staging_ref(&root.name), root, None)?;
    if let Some(hd) = deleted {
        roots = roots.filter(hd.deleted(b.bare(&hd.column.name)))?;
    }
    if let Some(filter) = input.source_filter(&|c| b.bare(c))? {
        roots = roots.filter(filter)?;
    }
    Ok(Arc::new(roots.project(vec![b.bare(DLT_ID)])?.build()?))
}

/// The `MERGE` of the staged rows of `root` into its final table by primary key `pk`.
fn merge_staged_root(
    b: &PlanBuilder<'_>,
    input: &ChainInput<'_>,
    root: &Table,
    pk: &[&SchemaColumn],
    columns: Vec<String>,
) -> Result<FollowupOp> {
    let hd = hard_delete(root);
    // Deleted rows must still reach the MERGE (to delete their match), so only deduplicate.
    let mut source = b.scan(&input.staging_ref(&root.name), root, None)?;
    if !root.stage_data_deduplicated && !input.state.unique_keys(&root.name) {
        source = b.dedup(source, root, pk)?;
    }
    if let Some(filter) = input.source_filter(&|c| b.bare(c))? {
        source = source.filter(filter)?;
    }
    let source = b.project_columns(source, &columns)?.build()?;
    let s = |name: &str| b.acol(SOURCE_ALIAS, name);
    Ok(FollowupOp::Merge(Box::new(MergeInto {
        target: input.final_ref(&root.name),
        source,
        on: pk.iter().map(|c| c.name.clone()).collect(),
        delete_when: hd.as_ref().map(|hd| hd.deleted(s(&hd.column.name))),
        update_columns: columns.clone(),
        insert_columns: columns,
        insert_when: hd.as_ref().map(|hd| hd.kept(s(&hd.column.name))),
        target_range: range_of(input, root, pk).cloned(),
        changed_columns: changed_columns(input, root),
    })))
}

/// Merges the staged rows of nested `table` by `_dlt_id`, then deletes the list elements that
/// are gone from an updated root row and the nested rows of roots marked deleted.
fn upsert_nested(
    b: &PlanBuilder<'_>,
    input: &ChainInput<'_>,
    root: &Table,
    table: &Table,
    hd: Option<&HardDelete<'_>>,
) -> Result<Vec<FollowupOp>> {
    let mut ops = Vec::new();
    let link = root_link(input.schema, table)?;
    let columns = column_names(table);
    let final_nested = input.final_ref(&table.name);
    let staging_nested = input.staging_ref(&table.name);
    // The nested rows that follow the root rows in the merge source are merged.
    let mut nested_source = b.scan(&staging_nested, table, None)?;
    if input.options.source_filter.is_some() {
        nested_source =
            nested_source.filter(in_subquery(b.bare(&link.name), source_root_ids(b, input, root, None)?))?;
    }
    ops.push(FollowupOp::Merge(Box::new(MergeInto {
        target: final_nested.clone(),
        source: b.project_columns(nested_source, &columns)?.build()?,
        on: vec![DLT_ID.into()],
        delete_when: None,
        update_columns: columns.clone(),
        insert_columns: columns,
        insert_when: None,
        target_range: None,
        changed_columns: changed_columns(input, table),
    })));
    // List elements that are gone from an updated root row.
    let qualifier = b.target_qualifier(&final_nested);
    let staged_roots = source_root_ids(b, input, root, None)?;
    let still_there = b.correlated(
        &staging_nested,
        table,
        SOURCE_ALIAS,
        &qualifier,
        &[dlt_id(table)?],
        None,
    )?;
    ops.push(FollowupOp::Delete {
        target: final_nested.clone(),
        predicate: in_subquery(b.col(&qualifier, &link.name), staged_roots).and(not_exists(still_there)),
    });
    if let Some(hd) = hd {
        ops.push(FollowupOp::Delete {
            target: final_nested,
            predicate: in_subquery(
                b.col(&qualifier, &link.name),
                source_root_ids(b, input, root, Some(hd))?,
            ),
        });
    }
    Ok(ops)
}

fn insert_only(b: &PlanBuilder<'_>, dialect: &SqlDialect, input: &ChainInput<'_>) -> Result<Vec<FollowupOp>> {
    if let Some(ops) = move_into_empty(dialect, input, NestedRows::Other)? {
        return Ok(ops);
    }
    let root = input.root()?;
    let pk = require_primary_key(root, "insert-only")?;
    let root_empty = input.state.is_empty(&root.name);
    let mut ops = Vec::new();
    for (i, table) in std::iter::once(root).chain(input.nested()?).enumerate() {
        let keys = if i == 0 { pk.clone() } else { vec![dlt_id(table)?] };
        ops.push(insert_unseen(b, input, table, &keys, !root_empty)?);
    }
    Ok(ops)
}

/// `INSERT` of the staged rows of `table`, one per `keys`, without the ones whose keys the final
/// table already holds (when `check_final`; an empty final table holds none).
fn insert_unseen(
    b: &PlanBuilder<'_>,
    input: &ChainInput<'_>,
    table: &Table,
    keys: &[&SchemaColumn],
    check_final: bool,
) -> Result<FollowupOp> {
    let columns = column_names(table);
    let final_table = input.final_ref(&table.name);
    let mut rows = staged_rows(b, input, table, keys, &columns)?;
    if check_final {
        let source = b.relation(SOURCE_ALIAS);
        let range = range_of(input, table, keys).map(|r| r.predicate(b, &b.relation(TARGET_ALIAS)));
        let seen = b.correlated(&final_table, table, TARGET_ALIAS, &source, keys, range)?;
        rows = rows
            .alias(b.relation(SOURCE_ALIAS))?
            .filter(not_exists(seen))?
            .project(
                columns
                    .iter()
                    .map(|c| b.acol(SOURCE_ALIAS, c).alias(b.name(c)))
                    .collect::<Vec<_>>(),
            )?;
    }
    Ok(FollowupOp::Insert {
        target: final_table,
        columns,
        query: rows.build()?,
    })
}

/// The columns and values an scd2 follow-up works with.
struct Scd2Columns<'t> {
    valid_from: &'t SchemaColumn,
    valid_to: &'t SchemaColumn,
    /// The row version compared: the `x-row-version` column, else `_dlt_id` (dlt's row hash).
    version: &'t SchemaColumn,
    /// When retired versions end and new ones start.
    boundary: String,
    /// The validity end of active rows (`x-active-record-timestamp`), else NULL.
    active_marker: Option<Expr>,
}

impl<'t> Scd2Columns<'t> {
    fn of(root: &'t Table, input: &ChainInput<'_>, dialect: &SqlDialect) -> Result<Self> {
        let find = |pred: fn(&SchemaColumn) -> bool, what: &str| {
            root.complete_columns()
                .find(|c| pred(c))
                .ok_or_else(|| Error::Unsupported {
                    message: format!("scd2 table `{}` has no {what} column", root.name),
                })
        };
        let valid_from = find(|c| c.valid_from, "validity start (`x-valid-from`)")?;
        let valid_to = find(|c| c.valid_to, "validity end (`x-valid-to`)")?;
        let version = root
            .complete_columns()
            .find(|c| c.row_version)
            .map_or_else(|| dlt_id(root), Ok)?;
        let boundary = root
            .boundary_timestamp
            .clone()
            .or_else(|| input.boundary.clone())
            .ok_or_else(|| Error::Unsupported {
                message: format!(
                    "scd2 table `{}`: the package has no `created_at` and the table no boundary timestamp",
                    root.name
                ),
            })?;
        let active_marker = valid_to
            .extra
            .get("x-active-record-timestamp")
            .and_then(|v| v.as_str())
            .map(|v| match dialect.typed_timestamps {
                true => timestamp_of(valid_to, v),
                false => lit(timestamp_literal(v)),
            });
        Ok(Self {
            valid_from,
            valid_to,
            version,
            boundary,
            active_marker,
        })
    }
}

fn scd2(b: &PlanBuilder<'_>, input: &ChainInput<'_>) -> Result<Vec<FollowupOp>> {
    let root = input.root()?;
    let Scd2Columns {
        valid_from,
        valid_to,
        version,
        boundary,
        active_marker,
    } = Scd2Columns::of(root, input, b.dialect)?;
    let final_root = input.final_ref(&root.name);
    let staging_root = input.staging_ref(&root.name);
    let target = b.target_qualifier(&final_root);
    let is_active = |value: Expr| match &active_marker {
        None => value.is_null(),
        Some(marker) => value.eq(marker.clone()),
    };
    let hd = hard_delete(root);
    let kept = |alias: &str| hd.as_ref().map(|hd| hd.kept(b.acol(alias, &hd.column.name)));
    let mut ops = Vec::new();
    let root_empty = input.state.is_empty(&root.name);

    if !root_empty {
        // Retire active versions whose row hash is not staged (or staged as deleted, or left
        // out by the source filter).
        let filter = input.source_filter(&|c| b.acol(SOURCE_ALIAS, c))?;
        let present = match (kept(SOURCE_ALIAS), filter.clone()) {
            (Some(kept), Some(filter)) => Some(kept.and(filter)),
            (kept, filter) => kept.or(filter),
        };
        let staged = b.correlated(&staging_root, root, SOURCE_ALIAS, &target, &[version], present)?;
        let mut predicate = is_active(b.col(&target, &valid_to.name)).and(not_exists(staged));
        let mk = root.merge_key();
        if let Some(scope) = input.destination_scope(&|c| b.col(&target, c))? {
            // The destination scope replaces the merge key's partitions.
            predicate = predicate.and(scope);
        } else if !mk.is_empty() {
            // Only keys that are in this load, compared column by column (dlt #4244).
            let in_load = b.correlated(&staging_root, root, SOURCE_ALIAS, &target, &mk, filter)?;
            predicate = predicate.and(exists(in_load));
        }
        ops.push(FollowupOp::Update {
            target: final_root.clone(),
            assignments: vec![(valid_to.name.clone(), lit(timestamp_literal(&boundary)))],
            predicate,
        });
    }

    // New versions: staged hashes without an active row (a retired record that came back gets a
    // new version).
    let columns = column_names(root);
    let mut rows = staged_rows(b, input, root, &[version], &columns)?.alias(b.relation(SOURCE_ALIAS))?;
    if !root_empty {
        let source = b.relation(SOURCE_ALIAS);
        let active = b.correlated(
            &final_root,
            root,
            TARGET_ALIAS,
            &source,
            &[version],
            Some(is_active(b.acol(TARGET_ALIAS, &valid_to.name))),
        )?;
        rows = rows.filter(not_exists(active))?;
    }
    let projection: Vec<Expr> = columns
        .iter()
        .map(|c| {
            let value = if c == &valid_from.name {
                lit(timestamp_literal(&boundary))
            } else if c == &valid_to.name {
                active_marker
                    .clone()
                    .unwrap_or_else(|| lit(datafusion::scalar::ScalarValue::Utf8(None)))
            } else {
                b.acol(SOURCE_ALIAS, c)
            };
            value.alias(b.name(c))
        })
        .collect();
    ops.push(FollowupOp::Insert {
        target: final_root,
        columns,
        query: rows.project(projection)?.build()?,
    });

    // Nested tables are insert-only by their deterministic `_dlt_id`; identical versions staged
    // twice carry the same nested rows, so one of each is kept.
    for table in input.nested()? {
        ops.push(insert_unseen(
            b,
            input,
            table,
            &[dlt_id(table)?],
            !input.state.is_empty(&table.name),
        )?);
    }
    Ok(ops)
}

/// `value` (a timestamp as dlt writes it in a hint) as a literal of `column`'s Arrow type, for
/// plans DataFusion runs ([`SqlDialect::typed_timestamps`]); text it cannot read stays text.
fn timestamp_of(column: &SchemaColumn, value: &str) -> Expr {
    use datafusion::scalar::ScalarValue;
    let text = timestamp_literal(value);
    let Ok(instant) = chrono::DateTime::parse_from_str(&text, "%Y-%m-%d %H:%M:%S%.f%:z") else {
        return lit(text);
    };
    let zone = column.timezone.then(|| Arc::from("UTC"));
    let micros = ScalarValue::TimestampMicrosecond(Some(instant.timestamp_micros()), zone);
    match micros.cast_to(&arrow_type(column)) {
        Ok(typed) => lit(typed),
        Err(_) => lit(text),
    }
}

/// A timestamp as dlt prints it in SQL: `YYYY-MM-DD HH:MM:SS.ffffff+00:00` (UTC).
pub fn timestamp_literal(value: &str) -> String {
    match chrono::DateTime::parse_from_rfc3339(value)
        .or_else(|_| chrono::DateTime::parse_from_str(value, "%Y-%m-%d %H:%M:%S%.f%:z"))
    {
        Ok(t) => t
            .with_timezone(&chrono::Utc)
            .format("%Y-%m-%d %H:%M:%S%.6f+00:00")
            .to_string(),
        Err(_) => match chrono::NaiveDate::parse_from_str(value, "%Y-%m-%d") {
            Ok(d) => format!("{d} 00:00:00.000000+00:00"),
            Err(_) => value.to_string(),
        },
    }
}
