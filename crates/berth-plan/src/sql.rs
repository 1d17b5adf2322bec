//! Statement builders. Every statement is a sqlparser AST; identifiers and literals are escaped by
//! the printer, never pasted into strings. SELECT bodies come from DataFusion plans, printed by the
//! unparser in the destination's dialect.
//!
//! sqlparser's statement structs grow fields from release to release, so the larger ones start
//! from a constant skeleton parsed once, whose table, columns and rows are then replaced by AST
//! nodes built here.

use std::sync::Arc;

use arrow::datatypes::{Field, Schema as ArrowSchema};
use berth_model::{Column, Table};
use datafusion::common::TableReference;
use datafusion::logical_expr::builder::LogicalTableSource;
use datafusion::logical_expr::{Expr as DfExpr, LogicalPlanBuilder, ident};
use datafusion::sql::sqlparser::ast::{
    AlterTable, AlterTableOperation, ColumnDef, ColumnOption, ColumnOptionDef, Expr, FromTable, ObjectName, Parens,
    Query, SchemaName, SetExpr, Statement, TableFactor, TableObject, Value,
};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::unparser::Unparser;

use crate::dialect::{LiteralEscapes, SqlDialect};
use crate::error::{Error, Result};

pub(crate) fn skeleton(sql: &str) -> Statement {
    Parser::parse_sql(&GenericDialect {}, sql)
        .ok()
        .and_then(|mut statements| statements.pop())
        .unwrap_or_else(|| panic!("constant SQL skeleton `{sql}` must parse"))
}

/// A column type by name, printed as given (`TIMESTAMP WITH TIME ZONE`, `numeric(38,9)`): type
/// mappers use it for names sqlparser has no variant for, or spells differently.
pub fn type_named(name: &str, args: &[u32]) -> datafusion::sql::sqlparser::ast::DataType {
    datafusion::sql::sqlparser::ast::DataType::Custom(
        ObjectName::from(vec![datafusion::sql::sqlparser::ast::Ident::new(name)]),
        args.iter().map(ToString::to_string).collect(),
    )
}

/// A string literal.
pub fn lit_str(value: impl Into<String>) -> Expr {
    Expr::value(Value::SingleQuotedString(value.into()))
}

/// A string literal of arbitrary text, escaped as `dialect`'s literals escape (a backslash is
/// an escape character on some; see [`LiteralEscapes`]).
pub fn lit_text(dialect: &SqlDialect, value: &str) -> Expr {
    lit_str(literal_text(dialect.string_escapes, value, false))
}

/// `text` as a string literal's content in `escapes`; `raw` when the printer writes it as it
/// is (sqlparser's `COMMENT` options), else the printer doubles quotes itself.
pub fn literal_text(escapes: LiteralEscapes, text: &str, raw: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match (escapes, c) {
            (LiteralEscapes::Standard | LiteralEscapes::BackslashAndDoubling, '\'') if raw => out.push_str("''"),
            (LiteralEscapes::BackslashAndDoubling | LiteralEscapes::Backslash, '\\') => out.push_str("\\\\"),
            (LiteralEscapes::BackslashAndDoubling | LiteralEscapes::Backslash, '\n') => out.push_str("\\n"),
            (LiteralEscapes::BackslashAndDoubling | LiteralEscapes::Backslash, '\r') => out.push_str("\\r"),
            (LiteralEscapes::Backslash, '\'') => out.push_str("\\u0027"),
            (_, '\0') => {}
            (_, c) => out.push(c),
        }
    }
    out
}

/// An integer literal.
pub fn lit_i64(value: i64) -> Expr {
    Expr::value(Value::Number(value.to_string(), false))
}

/// `NULL`.
pub fn lit_null() -> Expr {
    Expr::value(Value::Null)
}

/// `CREATE SCHEMA IF NOT EXISTS "dataset"`.
pub fn create_schema(dialect: &SqlDialect, dataset: &str) -> Statement {
    let mut statement = skeleton("CREATE SCHEMA IF NOT EXISTS s");
    if let Statement::CreateSchema { schema_name, .. } = &mut statement {
        *schema_name = SchemaName::Simple(ObjectName::from(vec![dialect.ident(dataset)]));
    }
    statement
}

/// Refuses `name` when it is longer than the destination takes; `what` says what it names.
pub fn check_length(dialect: &SqlDialect, name: &str, what: impl FnOnce() -> String) -> Result<()> {
    let len = dialect.identifier_length(name);
    if len > dialect.max_identifier_length {
        return Err(Error::IdentifierTooLong {
            what: what(),
            len,
            unit: if dialect.identifier_length_in_bytes {
                "bytes"
            } else {
                "characters"
            },
            max: dialect.max_identifier_length,
            destination: dialect.name,
        });
    }
    Ok(())
}

fn unique_option() -> ColumnOption {
    let statement = skeleton("CREATE TABLE t (c INT UNIQUE)");
    match statement {
        Statement::CreateTable(create) => create
            .columns
            .into_iter()
            .flat_map(|c| c.options)
            .map(|o| o.option)
            .next()
            .unwrap_or(ColumnOption::NotNull),
        _ => ColumnOption::NotNull,
    }
}

fn column_def(dialect: &SqlDialect, table: &Table, column: &Column, in_create: bool) -> Result<ColumnDef> {
    check_length(dialect, &column.name, || {
        format!("column name `{}` of table `{}`", column.name, table.name)
    })?;
    let mut options = Vec::new();
    // UNIQUE is applied at CREATE only, as dlt does; adding it later fails on duplicate rows.
    if column.unique && dialect.create_unique_constraints && in_create {
        options.push(ColumnOptionDef {
            name: None,
            option: unique_option(),
        });
    }
    if !column.nullable && in_create {
        options.push(ColumnOptionDef {
            name: None,
            option: ColumnOption::NotNull,
        });
    }
    options.extend(
        crate::hints::column_options(dialect, table, column)
            .into_iter()
            .map(|option| ColumnOptionDef { name: None, option }),
    );
    Ok(ColumnDef {
        name: dialect.ident(&column.name),
        data_type: dialect.type_mapper.to_destination(column, table)?,
        options,
    })
}

/// `CREATE TABLE "dataset"."table" (...)` with the given columns in order.
pub fn create_table(
    dialect: &SqlDialect,
    dataset: &str,
    table: &Table,
    columns: &[&Column],
    if_not_exists: bool,
) -> Result<Statement> {
    check_length(dialect, &table.name, || format!("table name `{}`", table.name))?;
    let mut statement = skeleton("CREATE TABLE t (c INT)");
    if let Statement::CreateTable(create) = &mut statement {
        create.name = dialect.table_name(dataset, &table.name);
        create.if_not_exists = if_not_exists && dialect.supports_create_table_if_not_exists;
        create.columns = columns
            .iter()
            .map(|c| column_def(dialect, table, c, true))
            .collect::<Result<_>>()?;
        crate::hints::decorate_create(dialect, create, table, columns);
    }
    Ok(statement)
}

/// `ALTER TABLE "dataset"."table" <operations>`: the one place an ALTER TABLE is built (columns
/// added, retyped, a table clustered).
pub fn alter_table(
    dialect: &SqlDialect,
    dataset: &str,
    table: &str,
    operations: Vec<AlterTableOperation>,
) -> Statement {
    let mut statement = skeleton("ALTER TABLE t ADD COLUMN c INT");
    if let Statement::AlterTable(AlterTable {
        name, operations: ops, ..
    }) = &mut statement
    {
        *name = dialect.table_name(dataset, table);
        *ops = operations;
    }
    statement
}

/// `ALTER TABLE ... ADD COLUMN ...`: one statement, or one per column where the destination needs it.
/// New columns are always nullable: `NOT NULL` cannot be added to a table that has rows.
pub fn add_columns(dialect: &SqlDialect, dataset: &str, table: &Table, columns: &[&Column]) -> Result<Vec<Statement>> {
    let operations = columns
        .iter()
        .map(|c| {
            Ok(AlterTableOperation::AddColumn {
                column_keyword: true,
                if_not_exists: false,
                column_def: column_def(dialect, table, c, false)?,
                column_position: None,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let alter = |operations: Vec<AlterTableOperation>| alter_table(dialect, dataset, &table.name, operations);
    if operations.is_empty() {
        return Ok(Vec::new());
    }
    Ok(if dialect.alter_add_multi_column {
        vec![alter(operations)]
    } else {
        operations.into_iter().map(|op| alter(vec![op])).collect()
    })
}

/// Empties a table: `TRUNCATE TABLE`, or `DELETE FROM t WHERE 1 = 1` where there is none.
pub fn delete_all(dialect: &SqlDialect, dataset: &str, table: &str) -> Statement {
    let target = dialect.table_name(dataset, table);
    if dialect.supports_truncate {
        let mut statement = skeleton("TRUNCATE TABLE t");
        if let Statement::Truncate(truncate) = &mut statement {
            for t in &mut truncate.table_names {
                t.name = target.clone();
            }
        }
        statement
    } else {
        let mut statement = skeleton("DELETE FROM t WHERE 1 = 1");
        if let Statement::Delete(delete) = &mut statement {
            let (FromTable::WithFromKeyword(tables) | FromTable::WithoutKeyword(tables)) = &mut delete.from;
            for t in tables {
                if let TableFactor::Table { name, .. } = &mut t.relation {
                    *name = target.clone();
                }
            }
        }
        statement
    }
}

/// `DELETE FROM "dataset"."table" WHERE "column" = 'value'`.
pub fn delete_where_equals(dialect: &SqlDialect, dataset: &str, table: &str, column: &str, value: &str) -> Statement {
    let mut statement = skeleton("DELETE FROM t WHERE c = 'v'");
    if let Statement::Delete(delete) = &mut statement {
        let (FromTable::WithFromKeyword(tables) | FromTable::WithoutKeyword(tables)) = &mut delete.from;
        for t in tables {
            if let TableFactor::Table { name, .. } = &mut t.relation {
                *name = dialect.table_name(dataset, table);
            }
        }
        delete.selection = Some(Expr::BinaryOp {
            left: Box::new(Expr::Identifier(dialect.ident(column))),
            op: datafusion::sql::sqlparser::ast::BinaryOperator::Eq,
            right: Box::new(lit_text(dialect, value)),
        });
    }
    statement
}

/// `DROP SCHEMA IF EXISTS "dataset" CASCADE`: removes a dataset and everything in it (scratch
/// datasets of benchmarks and tests only).
pub fn drop_schema_cascade(dialect: &SqlDialect, dataset: &str) -> Statement {
    let mut statement = skeleton("DROP SCHEMA IF EXISTS s CASCADE");
    if let Statement::Drop { names, .. } = &mut statement {
        *names = vec![ObjectName::from(vec![dialect.ident(dataset)])];
    }
    statement
}

/// `DROP TABLE IF EXISTS "dataset"."table"` (never `CASCADE`: a view on the table makes this fail
/// clearly instead of vanishing).
pub fn drop_table(dialect: &SqlDialect, dataset: &str, table: &str) -> Statement {
    let mut statement = skeleton("DROP TABLE IF EXISTS t");
    if let Statement::Drop { names, .. } = &mut statement {
        *names = vec![dialect.table_name(dataset, table)];
    }
    statement
}

fn set_insert_target(statement: &mut Statement, dialect: &SqlDialect, dataset: &str, table: &str, columns: &[&str]) {
    if let Statement::Insert(insert) = statement {
        insert.table = TableObject::TableName(dialect.table_name(dataset, table));
        insert.columns = columns
            .iter()
            .map(|c| ObjectName::from(vec![dialect.ident(c)]))
            .collect();
    }
}

/// `INSERT INTO "dataset"."table" (columns) <query>`.
pub fn insert_select(dialect: &SqlDialect, dataset: &str, table: &str, columns: &[&str], query: Query) -> Statement {
    let mut statement = skeleton("INSERT INTO t (c) SELECT 1");
    set_insert_target(&mut statement, dialect, dataset, table, columns);
    if let Statement::Insert(insert) = &mut statement {
        insert.source = Some(Box::new(query));
    }
    statement
}

/// `INSERT INTO "dataset"."table" (columns) VALUES (...), ...`.
pub fn insert_values(
    dialect: &SqlDialect,
    dataset: &str,
    table: &str,
    columns: &[&str],
    rows: Vec<Vec<Expr>>,
) -> Statement {
    let mut statement = skeleton("INSERT INTO t (c) VALUES (1)");
    set_insert_target(&mut statement, dialect, dataset, table, columns);
    if let Statement::Insert(insert) = &mut statement
        && let Some(source) = insert.source.as_mut()
        && let SetExpr::Values(values) = source.body.as_mut()
    {
        values.rows = rows.into_iter().map(Parens::with_empty_span).collect();
    }
    statement
}

/// A scan of `"dataset"."table"` with the given (already case-folded) columns, as a DataFusion
/// plan builder, so callers can add filters and projections.
pub fn scan(dialect: &SqlDialect, dataset: &str, table: &str, columns: &[&str]) -> Result<LogicalPlanBuilder> {
    // Types do not matter for printing; the unparser only needs names.
    let schema = ArrowSchema::new(
        columns
            .iter()
            .map(|c| Field::new(dialect.stored_name(c), arrow::datatypes::DataType::Utf8, true))
            .collect::<Vec<_>>(),
    );
    let reference = dialect.table_reference(dataset, table);
    Ok(LogicalPlanBuilder::scan(
        reference,
        Arc::new(LogicalTableSource::new(Arc::new(schema))),
        None,
    )?)
}

/// A scan of the database's `information_schema.columns`, with the given columns, in
/// [`SqlDialect::catalog_dialect`] (never qualified with a database: DuckDB keeps it in its
/// system catalog; names folded natively: Snowflake's are upper case for every package).
pub fn information_schema_scan(dialect: &SqlDialect, columns: &[&str]) -> Result<LogicalPlanBuilder> {
    scan(&dialect.catalog_dialect(), "information_schema", "columns", columns)
}

/// A scan of `dataset`'s own column catalog, `<dataset>.INFORMATION_SCHEMA.COLUMNS`
/// ([`crate::CatalogStyle::PerDataset`], BigQuery), with the given (lower-case) columns.
pub fn catalog_scan(dialect: &SqlDialect, dataset: &str, columns: &[&str]) -> Result<LogicalPlanBuilder> {
    let schema = ArrowSchema::new(
        columns
            .iter()
            .map(|c| Field::new(dialect.stored_name(c), arrow::datatypes::DataType::Utf8, true))
            .collect::<Vec<_>>(),
    );
    let reference = TableReference::full(dialect.stored_name(dataset), "INFORMATION_SCHEMA", "COLUMNS");
    Ok(LogicalPlanBuilder::scan(
        reference,
        Arc::new(LogicalTableSource::new(Arc::new(schema))),
        None,
    )?)
}

/// A column reference for plans built on [`scan`].
pub fn column(dialect: &SqlDialect, name: &str) -> DfExpr {
    ident(dialect.stored_name(name))
}

/// Prints a plan as a query in the dialect.
pub fn to_query(dialect: &SqlDialect, builder: LogicalPlanBuilder) -> Result<Query> {
    let plan = builder.build()?;
    match Unparser::new(dialect.unparser.as_ref()).plan_to_sql(&plan)? {
        Statement::Query(query) => Ok(*query),
        other => Err(Error::Unsupported {
            message: format!("the unparser printed a non-query statement: {other}"),
        }),
    }
}

/// `SELECT columns FROM <reference>` for any relation (a bare view name, say).
pub fn select_columns_from(dialect: &SqlDialect, reference: TableReference, columns: &[&str]) -> Result<Query> {
    let schema = ArrowSchema::new(
        columns
            .iter()
            .map(|c| Field::new(dialect.stored_name(c), arrow::datatypes::DataType::Utf8, true))
            .collect::<Vec<_>>(),
    );
    let builder = LogicalPlanBuilder::scan(reference, Arc::new(LogicalTableSource::new(Arc::new(schema))), None)?;
    let projection: Vec<DfExpr> = columns.iter().map(|c| column(dialect, c)).collect();
    to_query(dialect, builder.project(projection)?)
}

/// `SELECT columns FROM "dataset"."table"`.
pub fn select_columns(dialect: &SqlDialect, dataset: &str, table: &str, columns: &[&str]) -> Result<Query> {
    let builder = scan(dialect, dataset, table, columns)?;
    let projection: Vec<DfExpr> = columns.iter().map(|c| column(dialect, c)).collect();
    to_query(dialect, builder.project(projection)?)
}

#[cfg(test)]
mod tests {
    use datafusion::sql::sqlparser::ast::{Expr, SelectItem, SetExpr, Statement, Value};
    use datafusion::sql::sqlparser::parser::Parser;

    use super::lit_text;
    use crate::dialects;

    /// Spark SQL's decoding of the escapes berth writes (`\\`, `\n`, `\r`, `\u0027`).
    fn spark_unescape(text: &str) -> String {
        let mut out = String::new();
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            if c != '\\' {
                out.push(c);
                continue;
            }
            match chars.next() {
                Some('n') => out.push('\n'),
                Some('r') => out.push('\r'),
                Some('u') => {
                    let hex: String = chars.by_ref().take(4).collect();
                    out.extend(u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32));
                }
                Some(other) => out.push(other),
                None => {}
            }
        }
        out
    }

    /// Text with quotes, backslashes and a newline comes back unchanged from each dialect's own
    /// parser: what the warehouse would store.
    #[test]
    fn text_literals_round_trip_in_every_dialect() {
        let text = "it's \"quoted\", C:\\path\\ and\na newline";
        for name in dialects::NAMES {
            let dialect = dialects::by_name(name).expect("dialect");
            let sql = format!("SELECT {}", lit_text(&dialect, text));
            let parsed =
                Parser::parse_sql(dialect.parser.as_ref(), &sql).unwrap_or_else(|e| panic!("{name}: {e}: {sql}"));
            let Statement::Query(query) = &parsed[0] else {
                panic!("{name}: {sql}")
            };
            let SetExpr::Select(select) = query.body.as_ref() else {
                panic!("{name}: {sql}")
            };
            let SelectItem::UnnamedExpr(Expr::Value(value)) = &select.projection[0] else {
                panic!("{name}: {sql}")
            };
            let Value::SingleQuotedString(back) = &value.value else {
                panic!("{name}: {sql}")
            };
            // BigQuery and Databricks decode `\u0027` to a quote; sqlparser's BigQuery tokenizer
            // drops the backslash of an escape it does not know (keeping `u0027`), and its
            // Databricks dialect decodes no escapes at all, where Spark SQL decodes `\\`, `\n`
            // and `\uXXXX`: both are decoded here as the warehouse would.
            let back = match *name {
                "bigquery" => back.replace("u0027", "'"),
                "databricks" => spark_unescape(back),
                _ => back.clone(),
            };
            assert_eq!(back, text, "{name}: {sql}");
        }
    }
}
