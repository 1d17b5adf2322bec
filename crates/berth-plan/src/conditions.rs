//! dlt 1.31's merge options of a table chain, parsed once into DataFusion expressions over the
//! root table's columns and checked against its schema before anything runs.
//!
//! - `x-merge-source-filter` (dlt's `source_filter`): which loaded root rows are merged; the
//!   others are discarded with their nested rows (delete-insert, upsert, cdc, scd2).
//! - `x-merge-destination-scope` (`destination_scope`): which destination rows may be deleted as
//!   replaced or absent, or retired; `{table}` stands for the destination table (delete-insert,
//!   cdc, scd2).
//! - `x-merge-skip-unchanged-rows` (`skip_unchanged_rows`): a matched row equal to its loaded row
//!   (on the `x-row-version` column when the table has one, else on every column but the keys,
//!   the hard-delete column and `_dlt_load_id`) is not rewritten and keeps its `_dlt_load_id`
//!   (upsert, cdc).
//!
//! The conditions are SQL text; they become expressions here (DataFusion's SQL planner against
//! the table's columns), never text pasted into statements: a condition that does not parse or
//! names a column the table lacks is an error naming the table and the hint.

use arrow::datatypes::{Field, Schema as ArrowSchema};
use berth_model::read::arrow_type;
use berth_model::{Column as SchemaColumn, MergeStrategy, Table};
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DFSchema, TableReference};
use datafusion::logical_expr::Expr;
use datafusion::prelude::SessionContext;

use crate::error::{Error, Result};

/// The hint of the source filter.
pub const SOURCE_FILTER: &str = "x-merge-source-filter";
/// The hint of the destination scope.
pub const DESTINATION_SCOPE: &str = "x-merge-destination-scope";
/// The hint of skipping unchanged rows.
pub const SKIP_UNCHANGED: &str = "x-merge-skip-unchanged-rows";

/// The relation `{table}` is parsed as.
const TABLE_PLACEHOLDER: &str = "berth_destination_table";

/// A chain's merge options (see the module docs). Column references in the expressions are the
/// package's column names, unqualified: bind them to a relation with [`MergeOptions::bind`].
#[derive(Debug, Clone, Default)]
pub struct MergeOptions {
    /// Loaded root rows merged: those for which this holds.
    pub source_filter: Option<Expr>,
    /// Destination root rows that may be deleted or replaced: those for which this holds.
    pub destination_scope: Option<Expr>,
    /// Matched rows equal to their loaded row are left as they are.
    pub skip_unchanged: bool,
}

impl MergeOptions {
    /// The options of the chain rooted at `root`, merged with `strategy`: parsed and checked.
    /// Options a strategy has no use for are ignored with a warning, as dlt does.
    pub fn of(root: &Table, strategy: MergeStrategy) -> Result<Self> {
        let text = |hint: &str| {
            root.extra
                .get(hint)
                .and_then(|v| v.as_str())
                .filter(|s| !s.trim().is_empty())
        };
        let options = Self {
            source_filter: text(SOURCE_FILTER)
                .map(|sql| parse(root, SOURCE_FILTER, sql))
                .transpose()?,
            destination_scope: text(DESTINATION_SCOPE)
                .map(|sql| parse(root, DESTINATION_SCOPE, &sql.replace("{table}", TABLE_PLACEHOLDER)))
                .transpose()?,
            skip_unchanged: root
                .extra
                .get(SKIP_UNCHANGED)
                .and_then(|v| v.as_bool())
                .unwrap_or(false),
        };
        // dlt ignores an option its strategy has no use for (its schema check warns): so does
        // berth.
        let mut options = options;
        let uses = |hint: &str| match hint {
            SOURCE_FILTER => !matches!(strategy, MergeStrategy::InsertOnly),
            DESTINATION_SCOPE => matches!(
                strategy,
                MergeStrategy::DeleteInsert | MergeStrategy::Cdc | MergeStrategy::Scd2
            ),
            _ => matches!(strategy, MergeStrategy::Upsert | MergeStrategy::Cdc),
        };
        for (set, hint) in [
            (options.source_filter.is_some(), SOURCE_FILTER),
            (options.destination_scope.is_some(), DESTINATION_SCOPE),
            (options.skip_unchanged, SKIP_UNCHANGED),
        ] {
            if set && !uses(hint) {
                tracing::warn!(table = %root.name, "merge strategy `{strategy}` has no use for `{hint}`: ignored, as dlt does");
            }
        }
        if !uses(SOURCE_FILTER) {
            options.source_filter = None;
        }
        if !uses(DESTINATION_SCOPE) {
            options.destination_scope = None;
        }
        options.skip_unchanged &= uses(SKIP_UNCHANGED);
        Ok(options)
    }

    /// `expr` with every column reference replaced by `column(name)` (a column of the relation
    /// the condition applies to, as the plan names it).
    pub fn bind(expr: &Expr, column: &dyn Fn(&str) -> Expr) -> Result<Expr> {
        let bound = expr.clone().transform(|e| {
            Ok(match e {
                Expr::Column(c) => Transformed::yes(column(&c.name)),
                other => Transformed::no(other),
            })
        })?;
        Ok(bound.data)
    }
}

/// The columns whose values decide whether a matched row changed (dlt's
/// `get_merge_compare_columns`): the `x-row-version` column when the table has one, else every
/// column but the keys, the hard-delete column and `_dlt_load_id`.
pub fn compare_columns(table: &Table) -> Vec<&SchemaColumn> {
    let columns: Vec<&SchemaColumn> = table.complete_columns().collect();
    if let Some(version) = columns.iter().find(|c| c.row_version) {
        return vec![version];
    }
    columns
        .into_iter()
        .filter(|c| {
            let key = c.primary_key || c.row_key || c.parent_key || c.root_key || c.hard_delete;
            !(key || c.name.eq_ignore_ascii_case("_dlt_load_id"))
        })
        .collect()
}

/// `sql` as an expression over `root`'s columns (qualified by the `{table}` placeholder or not).
fn parse(root: &Table, hint: &str, sql: &str) -> Result<Expr> {
    if sql.contains("{staging_table}") {
        return Err(refused(
            root,
            hint,
            sql,
            "conditions on `{staging_table}` are not supported by berth yet",
        ));
    }
    let fields: Vec<Field> = root
        .complete_columns()
        .map(|c| Field::new(c.name.clone(), arrow_type(c), true))
        .collect();
    let schema =
        DFSchema::try_from_qualified_schema(TableReference::bare(TABLE_PLACEHOLDER), &ArrowSchema::new(fields))
            .map_err(|e| refused(root, hint, sql, &e.to_string()))?;
    let context = SessionContext::new();
    let expr = context
        .parse_sql_expr(sql, &schema)
        .map_err(|e| refused(root, hint, sql, &e.to_string()))?;
    let mut subquery = false;
    expr.apply(|e| {
        subquery |= matches!(e, Expr::ScalarSubquery(_) | Expr::Exists(_) | Expr::InSubquery(_));
        Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
    })?;
    if subquery {
        return Err(refused(
            root,
            hint,
            sql,
            "subqueries in merge conditions are not supported by berth yet",
        ));
    }
    Ok(expr)
}

fn refused(root: &Table, hint: &str, sql: &str, why: &str) -> Error {
    Error::Unsupported {
        message: format!(
            "table `{}`: the merge option `{hint}` = `{sql}` cannot be used: {why}; nothing of the package was loaded",
            root.name
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accounts(extra: serde_json::Value) -> Table {
        let mut table = Table::new(
            "accounts".to_string(),
            vec![
                SchemaColumn::new("aid", berth_model::DataType::Bigint),
                SchemaColumn::new("region", berth_model::DataType::Text),
            ],
        );
        if let serde_json::Value::Object(map) = extra {
            table.extra.extend(map);
        }
        table
    }

    #[test]
    fn conditions_parse_against_the_table_and_refuse_what_they_cannot_use() {
        let table = accounts(serde_json::json!({
            SOURCE_FILTER: "region = 'eu'",
            DESTINATION_SCOPE: "{table}.region = 'eu' AND aid > 3",
        }));
        let options = MergeOptions::of(&table, MergeStrategy::Cdc).expect("parses");
        let filter = options.source_filter.expect("a filter");
        let bound = MergeOptions::bind(&filter, &|c| datafusion::prelude::col(format!("s.{c}"))).expect("binds");
        assert!(bound.to_string().contains("s.region"), "{bound}");
        assert!(options.destination_scope.is_some());

        let unknown = accounts(serde_json::json!({ SOURCE_FILTER: "country = 'eu'" }));
        assert!(matches!(
            MergeOptions::of(&unknown, MergeStrategy::Upsert),
            Err(Error::Unsupported { .. })
        ));
        let broken = accounts(serde_json::json!({ SOURCE_FILTER: "region = " }));
        assert!(matches!(
            MergeOptions::of(&broken, MergeStrategy::Upsert),
            Err(Error::Unsupported { .. })
        ));
        let staging =
            accounts(serde_json::json!({ DESTINATION_SCOPE: "{table}.aid IN (SELECT aid FROM {staging_table})" }));
        assert!(matches!(
            MergeOptions::of(&staging, MergeStrategy::Cdc),
            Err(Error::Unsupported { .. })
        ));
        let unused = accounts(serde_json::json!({ SKIP_UNCHANGED: true }));
        assert!(
            !MergeOptions::of(&unused, MergeStrategy::DeleteInsert)
                .expect("ignored")
                .skip_unchanged
        );
        assert!(
            MergeOptions::of(&unused, MergeStrategy::Upsert)
                .expect("upsert")
                .skip_unchanged
        );
        let filtered = accounts(serde_json::json!({ SOURCE_FILTER: "region = 'eu'" }));
        let scd2 = MergeOptions::of(&filtered, MergeStrategy::Scd2).expect("scd2");
        assert!(scd2.source_filter.is_some());
        let insert_only = MergeOptions::of(&filtered, MergeStrategy::InsertOnly).expect("ignored");
        assert!(insert_only.source_filter.is_none());
    }
}
