//! Table and column hints in DDL, as dlt 1.31 emits them per destination: clustering
//! (`cluster`, BigQuery's `x-bigquery-cluster-columns`, Databricks' `x-databricks-cluster` on
//! columns; not its table-level `AUTO`, which sqlparser cannot print),
//! partitioning (`partition`), and descriptions as comments (`description` and the
//! destinations' `x-*-comment` / `x-bigquery-table-description` hints). PostgreSQL's
//! `create_indexes` (UNIQUE for `unique`) is [`SqlDialect::create_unique_constraints`].
//!
//! Each dialect says which it emits in a [`DdlHints`] value; [`decorate_create`],
//! [`column_options`], [`after_create`] and [`after_add_columns`] apply them to the AST the
//! migration builds. Hints apply to final tables only (dlt never annotates its own tables), and
//! partitioning only at CREATE, as dlt does.

use berth_model::{Column, DataType, Table};
use datafusion::sql::sqlparser::ast::{
    AlterTableOperation, ColumnDef, ColumnOption, CommentDef, CreateTable, CreateTableOptions, DataType as SqlType,
    Expr, FunctionArg, FunctionArgExpr, FunctionArguments, HiveDistributionStyle, SqlOption, Statement,
    WrappedCollection,
};
use datafusion::sql::sqlparser::parser::Parser;

use crate::dialect::SqlDialect;
use crate::sql::lit_i64;

/// How a dialect writes `CLUSTER BY`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ClusterStyle {
    /// No clustering.
    #[default]
    None,
    /// `CLUSTER BY (a, b)` at CREATE, and `ALTER TABLE … CLUSTER BY (…)` when cluster columns
    /// are added (Snowflake).
    Parenthesized,
    /// `CLUSTER BY a, b` at CREATE only (BigQuery).
    Bare,
    /// `ALTER TABLE … CLUSTER BY (a, b)` right after CREATE and when cluster columns are added
    /// (Databricks' liquid clustering, the same as the CREATE clause on an empty table).
    Altered,
}

/// How a dialect partitions a table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PartitionStyle {
    /// No partitioning.
    #[default]
    None,
    /// `PARTITION BY` one column: a date as it is, a timestamp by `DATE(…)`, an integer as a
    /// UNIX timestamp by `RANGE_BUCKET` (dlt's bounds) — BigQuery.
    BigQuery,
    /// `PARTITIONED BY (a, b)` (Databricks).
    Partitioned,
}

/// How a dialect writes descriptions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CommentStyle {
    /// Not written.
    #[default]
    None,
    /// `COMMENT '…'` in the column definition, or after the columns of `CREATE TABLE`
    /// (Snowflake columns, Databricks).
    Comment,
    /// `OPTIONS(description = '…')` on columns and tables (BigQuery).
    Options,
}

/// The hints a dialect turns into DDL.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DdlHints {
    /// Clustering.
    pub cluster: ClusterStyle,
    /// Partitioning.
    pub partition: PartitionStyle,
    /// Column descriptions.
    pub column_comments: CommentStyle,
    /// Table descriptions.
    pub table_comments: CommentStyle,
    /// The destination's own comment hint (`x-snowflake-column-comment`), read before `description`.
    pub column_comment_hint: Option<&'static str>,
    /// The destination's own table comment hint (`x-databricks-table-comment`).
    pub table_comment_hint: Option<&'static str>,
    /// The destination's own hint naming a column as a cluster column (`x-bigquery-cluster`).
    pub cluster_hint: Option<&'static str>,
    /// The destination's own hint naming a column as the partition column (`x-bigquery-partition`).
    pub partition_hint: Option<&'static str>,
}

fn flag(column: &Column, hint: Option<&str>) -> bool {
    hint.is_some_and(|h| column.extra.get(h).and_then(serde_json::Value::as_bool) == Some(true))
}

fn text_hint<'a>(extra: &'a serde_json::Map<String, serde_json::Value>, hint: Option<&str>) -> Option<&'a str> {
    hint.and_then(|h| extra.get(h)).and_then(serde_json::Value::as_str)
}

/// The cluster columns of `table` among `columns` (BigQuery's table hint first, as dlt).
fn cluster_columns<'a>(hints: &DdlHints, table: &'a Table, columns: &[&'a Column]) -> Vec<&'a str> {
    if let Some(list) = table.extra.get("x-bigquery-cluster-columns").and_then(|v| v.as_array())
        && hints.cluster == ClusterStyle::Bare
    {
        return list.iter().filter_map(|v| v.as_str()).collect();
    }
    columns
        .iter()
        .filter(|c| c.cluster || flag(c, hints.cluster_hint))
        .map(|c| c.name.as_str())
        .collect()
}

fn is_annotated(table: &Table) -> bool {
    !berth_model::schema::is_dlt_name(&table.name)
}

/// A function call `template` (parsed in `dialect`) whose first argument becomes `column`.
fn call_on(dialect: &SqlDialect, template: &str, column: &str) -> Option<Expr> {
    let mut expr = Parser::new(dialect.parser.as_ref())
        .try_with_sql(template)
        .ok()?
        .parse_expr()
        .ok()?;
    if let Expr::Function(function) = &mut expr
        && let FunctionArguments::List(list) = &mut function.args
        && let Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(first))) = list.args.first_mut()
    {
        *first = Expr::Identifier(dialect.ident(column));
        return Some(expr);
    }
    None
}

/// BigQuery's partition expression for `column`, as dlt writes it.
fn bigquery_partition(dialect: &SqlDialect, column: &Column) -> Option<Expr> {
    match column.data_type? {
        DataType::Date => Some(Expr::Identifier(dialect.ident(&column.name))),
        DataType::Timestamp => call_on(dialect, "DATE(c)", &column.name),
        // dlt treats the integer as a UNIX timestamp in daily buckets (BigQuery allows 10,000).
        DataType::Bigint => call_on(
            dialect,
            "RANGE_BUCKET(c, GENERATE_ARRAY(-172800000, 691200000, 86400))",
            &column.name,
        ),
        _ => None,
    }
}

/// BigQuery's partition transformation (`bigquery_adapter(partition=bigquery_partition.…)`): the
/// table hint `x-bigquery-partition` as `{column: "DATE_TRUNC({column_name}, MONTH)"}`. The
/// template is parsed as an expression (never pasted into SQL) and must be a function call on the
/// column; anything else is left out with a warning, as is more than one column (dlt refuses it).
fn partition_transformation(dialect: &SqlDialect, table: &Table) -> Option<Expr> {
    let hint = table.extra.get("x-bigquery-partition")?.as_object()?;
    let [(column, template)] = hint.iter().collect::<Vec<_>>()[..] else {
        tracing::warn!(table = %table.name, "x-bigquery-partition names more than one column; the table is not partitioned");
        return None;
    };
    let expr = template
        .as_str()
        .and_then(|t| call_on(dialect, &t.replace("{column_name}", "c"), column));
    if expr.is_none() {
        tracing::warn!(table = %table.name, "x-bigquery-partition is not a function call on `{column}`; the table is not partitioned");
    }
    expr
}

/// Adds clustering, partitioning and table options to the `CREATE TABLE` of `table`.
pub fn decorate_create(dialect: &SqlDialect, create: &mut CreateTable, table: &Table, columns: &[&Column]) {
    let hints = &dialect.hints;
    if !is_annotated(table) {
        return;
    }
    let partitioned: Vec<&Column> = columns
        .iter()
        .copied()
        .filter(|c| c.partition || flag(c, hints.partition_hint))
        .collect();
    match hints.partition {
        PartitionStyle::None => {}
        // dlt refuses more than one partition column on BigQuery; berth partitions by the first.
        PartitionStyle::BigQuery => {
            create.partition_by = partition_transformation(dialect, table)
                .or_else(|| partitioned.first().and_then(|c| bigquery_partition(dialect, c)))
                .map(Box::new);
        }
        PartitionStyle::Partitioned if !partitioned.is_empty() => {
            create.hive_distribution = HiveDistributionStyle::PARTITIONED {
                columns: partitioned
                    .iter()
                    .map(|c| ColumnDef {
                        name: dialect.ident(&c.name),
                        data_type: SqlType::Unspecified,
                        options: Vec::new(),
                    })
                    .collect(),
            };
        }
        PartitionStyle::Partitioned => {}
    }
    let cluster: Vec<Expr> = cluster_columns(hints, table, columns)
        .into_iter()
        .map(|c| Expr::Identifier(dialect.ident(c)))
        .collect();
    create.cluster_by = match hints.cluster {
        ClusterStyle::None | ClusterStyle::Altered => None,
        _ if cluster.is_empty() => None,
        ClusterStyle::Parenthesized => Some(WrappedCollection::Parentheses(cluster)),
        ClusterStyle::Bare => Some(WrappedCollection::NoWrapping(cluster)),
    };
    if hints.table_comments == CommentStyle::Comment
        && let Some(text) = text_hint(&table.extra, hints.table_comment_hint).or(table.description.as_deref())
    {
        create.table_options = CreateTableOptions::Plain(vec![SqlOption::Comment(CommentDef::WithoutEq(
            crate::sql::literal_text(dialect.string_escapes, text, true),
        ))]);
    }
    if hints.table_comments == CommentStyle::Options {
        let mut options = Vec::new();
        if let Some(description) = text_hint(&table.extra, Some("x-bigquery-table-description")) {
            options.push(option("description", crate::sql::lit_text(dialect, description)));
        }
        if let Some(days) = table
            .extra
            .get("x-bigquery-partition-expiration-days")
            .and_then(|v| v.as_i64())
        {
            options.push(option("partition_expiration_days", lit_i64(days)));
        }
        if !options.is_empty() {
            create.table_options = CreateTableOptions::Options(options);
        }
    }
}

fn option(key: &str, value: Expr) -> SqlOption {
    SqlOption::KeyValue {
        key: datafusion::sql::sqlparser::ast::Ident::new(key),
        value,
    }
}

/// The comment options of a column definition of `table`.
pub fn column_options(dialect: &SqlDialect, table: &Table, column: &Column) -> Vec<ColumnOption> {
    let hints = &dialect.hints;
    if !is_annotated(table) {
        return Vec::new();
    }
    let Some(text) = text_hint(&column.extra, hints.column_comment_hint).or(column.description.as_deref()) else {
        return Vec::new();
    };
    match hints.column_comments {
        CommentStyle::None => Vec::new(),
        CommentStyle::Comment => vec![ColumnOption::Comment(crate::sql::literal_text(
            dialect.string_escapes,
            text,
            false,
        ))],
        CommentStyle::Options => vec![ColumnOption::Options(vec![option(
            "description",
            crate::sql::lit_text(dialect, text),
        )])],
    }
}

/// Statements that follow the `CREATE TABLE` of `table` (`ALTER TABLE … CLUSTER BY` where
/// the dialect clusters that way).
pub fn after_create(dialect: &SqlDialect, dataset: &str, table: &Table) -> Vec<Statement> {
    if dialect.hints.cluster != ClusterStyle::Altered || !is_annotated(table) {
        return Vec::new();
    }
    let all: Vec<&Column> = table.complete_columns().collect();
    alter_cluster(dialect, dataset, table, &cluster_columns(&dialect.hints, table, &all))
}

fn alter_cluster(dialect: &SqlDialect, dataset: &str, table: &Table, cluster: &[&str]) -> Vec<Statement> {
    if cluster.is_empty() {
        return Vec::new();
    }
    let cluster_by = AlterTableOperation::ClusterBy {
        exprs: cluster.iter().map(|c| Expr::Identifier(dialect.ident(c))).collect(),
    };
    vec![crate::sql::alter_table(dialect, dataset, &table.name, vec![cluster_by])]
}

/// Statements that follow adding `added` to `table`: its clustering, where the destination
/// clusters an existing table (`ALTER TABLE … CLUSTER BY`).
pub fn after_add_columns(dialect: &SqlDialect, dataset: &str, table: &Table, added: &[&Column]) -> Vec<Statement> {
    let clusters_later = matches!(
        dialect.hints.cluster,
        ClusterStyle::Parenthesized | ClusterStyle::Altered
    );
    if !clusters_later || !is_annotated(table) || added.is_empty() {
        return Vec::new();
    }
    let all: Vec<&Column> = table.complete_columns().collect();
    let cluster = cluster_columns(&dialect.hints, table, &all);
    if !added.iter().any(|c| cluster.contains(&c.name.as_str())) {
        return Vec::new();
    }
    alter_cluster(dialect, dataset, table, &cluster)
}
