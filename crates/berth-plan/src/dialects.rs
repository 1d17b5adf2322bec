//! The SQL dialects of the warehouses berth plans for: Snowflake, BigQuery, Redshift, Databricks,
//! MSSQL and MySQL. Each is a [`SqlDialect`] value (quoting, case folding, limits, statement
//! support, dlt's type mapping from reference §5 and §6.2) with the DataFusion unparser dialect
//! that prints its SELECT bodies, and the sqlparser dialect that parses its statements back.
//!
//! PostgreSQL and DuckDB, which berth also executes against, define theirs in their destination
//! crates.

use std::sync::Arc;

use berth_model::{Column, DataType, Table};
use datafusion::sql::sqlparser::ast::DataType as SqlType;
use datafusion::sql::sqlparser::dialect as parse;
use datafusion::sql::unparser::dialect::{
    BigQueryDialect, CustomDialectBuilder, MySqlDialect, PostgreSqlDialect, SnowflakeDialect,
};

use crate::dialect::{CaseFold, CatalogStyle, LiteralEscapes, NoQualify, OverwriteStyle, SqlDialect, TypeMapper};
use crate::error::Result;
use crate::hints::{ClusterStyle, CommentStyle, DdlHints, PartitionStyle};
use crate::sql::type_named as named;
use crate::widen::{AlterTypeSyntax, Lattice};

/// Names [`by_name`] knows, for help texts.
pub const NAMES: &[&str] = &["snowflake", "bigquery", "redshift", "databricks", "mssql", "mysql"];

/// The dialect called `name` (one of [`NAMES`]).
pub fn by_name(name: &str) -> Option<SqlDialect> {
    Some(match name.to_ascii_lowercase().as_str() {
        "snowflake" => snowflake(),
        "bigquery" => bigquery(),
        "redshift" => redshift(),
        "databricks" => databricks(),
        "mssql" | "sqlserver" => mssql(),
        "mysql" => mysql(),
        _ => return None,
    })
}

/// The sqlparser dialect that parses statements printed for `dialect` ([`SqlDialect::parser`]).
pub fn parser_dialect(dialect: &SqlDialect) -> Arc<dyn parse::Dialect + Send + Sync> {
    Arc::clone(&dialect.parser)
}

/// Snowflake: upper-case folding, `MERGE`.
pub fn snowflake() -> SqlDialect {
    SqlDialect {
        case_sensitive_identifiers: true,
        // Snowflake alters a column only to a longer VARCHAR or a NUMBER of more digits with
        // the same scale; its integers are all NUMBER(19,0).
        widening: Lattice {
            decimal_precision: true,
            length: true,
            ..Lattice::none(
                "Snowflake changes a column only to a longer VARCHAR or a NUMBER of more digits with the same scale",
            )
        },
        alter_type_syntax: AlterTypeSyntax::SetDataType,
        // Not dlt's `SWAP WITH`: a swap run again after a crash before the follow-up's journal
        // row would swap the old rows back; a clone in place is the same table however often it
        // runs, and COPY GRANTS keeps the table's grants.
        overwrite: OverwriteStyle::CloneCopyGrants,
        string_escapes: LiteralEscapes::BackslashAndDoubling,
        // dlt: `cluster` columns, column descriptions as COMMENT.
        hints: DdlHints {
            cluster: ClusterStyle::Parenthesized,
            column_comments: CommentStyle::Comment,
            column_comment_hint: Some("x-snowflake-column-comment"),
            ..DdlHints::default()
        },
        ..SqlDialect::new(
            "snowflake",
            Arc::new(Types(snowflake_type)),
            Arc::new(NoQualify(SnowflakeDialect::new())),
            Arc::new(parse::SnowflakeDialect {}),
        )
        .with_casefold(CaseFold::Upper)
    }
}

/// BigQuery: back-quoted, case kept, `MERGE`, a catalog per dataset.
pub fn bigquery() -> SqlDialect {
    SqlDialect {
        catalog: CatalogStyle::PerDataset,
        case_sensitive_identifiers: true,
        // BigQuery's coercions: INT64 to NUMERIC, NUMERIC to more digits, STRING(n) longer.
        widening: Lattice {
            integer_to_decimal: true,
            decimal_precision: true,
            decimal_scale: true,
            length: true,
            ..Lattice::none(
                "BigQuery changes a column only from INT64 to NUMERIC, to a NUMERIC of more digits, or to a longer STRING",
            )
        },
        alter_type_syntax: AlterTypeSyntax::SetDataType,
        string_escapes: LiteralEscapes::Backslash,
        // dlt: one partition column, cluster columns (the table hint first), descriptions and
        // partition expiry as OPTIONS.
        hints: DdlHints {
            cluster: ClusterStyle::Bare,
            partition: PartitionStyle::BigQuery,
            column_comments: CommentStyle::Options,
            table_comments: CommentStyle::Options,
            cluster_hint: Some("x-bigquery-cluster"),
            partition_hint: Some("x-bigquery-partition"),
            ..DdlHints::default()
        },
        ..SqlDialect::new(
            "bigquery",
            Arc::new(Types(bigquery_type)),
            Arc::new(NoQualify(BigQueryDialect {})),
            Arc::new(parse::BigQueryDialect {}),
        )
        .with_quote('`')
        .with_max_identifier_length(1024)
    }
}

/// Redshift: lower-case folding, no alias in `DELETE`/`UPDATE`, no `MERGE` (upsert runs as a
/// keyed delete and an insert), one column per `ALTER TABLE`.
pub fn redshift() -> SqlDialect {
    SqlDialect {
        alter_add_multi_column: false,
        supports_merge: false,
        dml_target_alias: false,
        // Redshift's 127 are bytes of UTF-8.
        identifier_length_in_bytes: true,
        // Redshift's TRUNCATE commits the transaction it runs in: emptying a table must stay in
        // the transaction that refills it (replace, and exactly-once with its journal row).
        supports_truncate: false,
        // Redshift (PostgreSQL 8.0) reads a backslash in a string literal as an escape.
        string_escapes: LiteralEscapes::BackslashAndDoubling,
        // Redshift alters a column's type only outside a transaction (and only VARCHAR lengths):
        // the migration's transaction cannot hold it.
        widening: Lattice::none("Redshift cannot alter a column type inside the migration's transaction"),
        ..SqlDialect::new(
            "redshift",
            Arc::new(Types(redshift_type)),
            Arc::new(NoQualify(PostgreSqlDialect {})),
            Arc::new(parse::RedshiftSqlDialect {}),
        )
        .with_casefold(CaseFold::Lower)
        .with_max_identifier_length(127)
    }
}

/// Databricks (Delta tables): back-quoted, `MERGE`.
pub fn databricks() -> SqlDialect {
    let unparser = CustomDialectBuilder::new()
        .with_identifier_quote_style('`')
        .with_requires_derived_table_alias(true)
        .build();
    SqlDialect {
        // Delta type widening (`delta.enableTypeWidening`): decimals to more digits or scale;
        // its integers are all BIGINT and its strings have no length.
        widening: Lattice {
            decimal_precision: true,
            decimal_scale: true,
            ..Lattice::none("Delta tables widen only decimals (with delta.enableTypeWidening)")
        },
        // One Delta commit that keeps the table, its grants and its history.
        overwrite: OverwriteStyle::InsertOverwrite,
        string_escapes: LiteralEscapes::Backslash,
        // dlt: CLUSTER BY, PARTITIONED BY, comments on columns and tables.
        hints: DdlHints {
            cluster: ClusterStyle::Altered,
            partition: PartitionStyle::Partitioned,
            column_comments: CommentStyle::Comment,
            table_comments: CommentStyle::Comment,
            column_comment_hint: Some("x-databricks-column-comment"),
            table_comment_hint: Some("x-databricks-table-comment"),
            cluster_hint: Some("x-databricks-cluster"),
            ..DdlHints::default()
        },
        ..SqlDialect::new(
            "databricks",
            Arc::new(Types(databricks_type)),
            Arc::new(NoQualify(unparser)),
            Arc::new(parse::DatabricksDialect {}),
        )
        .with_quote('`')
    }
}

/// MSSQL: `SELECT … INTO` for work tables, no alias in `DELETE`/`UPDATE`, no `NULLS LAST`, no
/// `CREATE TABLE IF NOT EXISTS`.
pub fn mssql() -> SqlDialect {
    let unparser = CustomDialectBuilder::new()
        .with_identifier_quote_style('"')
        .with_supports_nulls_first_in_sort(false)
        .with_requires_derived_table_alias(true)
        .build();
    SqlDialect {
        supports_create_table_if_not_exists: false,
        dml_target_alias: false,
        create_table_as: false,
        // `ALTER COLUMN c type` restates nullability and drops defaults: not planned yet.
        widening: Lattice::none("berth does not alter MSSQL column types yet"),
        ..SqlDialect::new(
            "mssql",
            Arc::new(Types(mssql_type)),
            Arc::new(NoQualify(unparser)),
            Arc::new(parse::MsSqlDialect {}),
        )
        .with_max_identifier_length(128)
    }
}

/// MySQL: back-quoted, no `MERGE` (upsert runs as a keyed delete and an insert).
pub fn mysql() -> SqlDialect {
    SqlDialect {
        supports_merge: false,
        // MODIFY COLUMN restates the column; MySQL's DDL commits at once (not transactional).
        widening: Lattice {
            max_second_digits: 6,
            ..Lattice::ALL
        },
        alter_type_syntax: AlterTypeSyntax::Modify,
        string_escapes: LiteralEscapes::BackslashAndDoubling,
        ..SqlDialect::new(
            "mysql",
            Arc::new(Types(mysql_type)),
            Arc::new(NoQualify(MySqlDialect {})),
            Arc::new(parse::MySqlDialect {}),
        )
        .with_quote('`')
        .with_max_identifier_length(64)
    }
}

/// A type mapper from a function (warehouses are only planned for, so reading their catalog
/// types back is not needed yet).
struct Types(fn(&Column, &Table) -> SqlType);

impl std::fmt::Debug for Types {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Types")
    }
}

impl TypeMapper for Types {
    fn to_destination(&self, column: &Column, table: &Table) -> Result<SqlType> {
        Ok((self.0)(column, table))
    }

    fn to_dlt_type(&self, _db_type: &str, _precision: Option<u32>, _scale: Option<u32>) -> Option<DataType> {
        None
    }
}

fn decimal(column: &Column, name: &str) -> SqlType {
    match column.precision {
        Some(p) => named(name, &[p, column.scale.unwrap_or(0)]),
        None => named(name, &[38, 9]),
    }
}

fn kind(column: &Column) -> DataType {
    column.data_type.unwrap_or(DataType::Text)
}

fn snowflake_type(column: &Column, _: &Table) -> SqlType {
    match kind(column) {
        DataType::Text => named("VARCHAR", column.precision.as_slice()),
        DataType::Double => named("FLOAT", &[]),
        DataType::Bool => named("BOOLEAN", &[]),
        DataType::Timestamp if column.timezone => named("TIMESTAMP_LTZ", column.precision.as_slice()),
        DataType::Timestamp => named("TIMESTAMP_NTZ", column.precision.as_slice()),
        DataType::Bigint => named("NUMBER", &[19, 0]),
        DataType::Binary => named("BINARY", &[]),
        DataType::Json => named("VARIANT", &[]),
        DataType::Decimal => decimal(column, "NUMBER"),
        DataType::Wei => named("NUMBER", &[38, 0]),
        DataType::Date => named("DATE", &[]),
        DataType::Time => named("TIME", column.precision.as_slice()),
    }
}

fn bigquery_type(column: &Column, _: &Table) -> SqlType {
    match kind(column) {
        DataType::Text => named("STRING", &[]),
        DataType::Double => named("FLOAT64", &[]),
        DataType::Bool => named("BOOL", &[]),
        DataType::Timestamp => named("TIMESTAMP", &[]),
        DataType::Bigint => named("INT64", &[]),
        DataType::Binary => named("BYTES", &[]),
        DataType::Json => named("JSON", &[]),
        DataType::Decimal => decimal(column, "NUMERIC"),
        DataType::Wei => named("BIGNUMERIC", &[]),
        DataType::Date => named("DATE", &[]),
        DataType::Time => named("TIME", &[]),
    }
}

fn redshift_type(column: &Column, _: &Table) -> SqlType {
    match kind(column) {
        DataType::Text => match column.precision {
            Some(n) => named("varchar", &[n]),
            None => named("varchar(max)", &[]),
        },
        DataType::Double => named("double precision", &[]),
        DataType::Bool => named("boolean", &[]),
        DataType::Timestamp if column.timezone => named("timestamp with time zone", &[]),
        DataType::Timestamp => named("timestamp without time zone", &[]),
        DataType::Bigint => named("bigint", &[]),
        DataType::Binary => named("varbinary", column.precision.as_slice()),
        DataType::Json => named("super", &[]),
        DataType::Decimal => decimal(column, "numeric"),
        DataType::Wei => named("numeric", &[38, 0]),
        DataType::Date => named("date", &[]),
        DataType::Time => named("time without time zone", &[]),
    }
}

fn databricks_type(column: &Column, _: &Table) -> SqlType {
    match kind(column) {
        DataType::Text | DataType::Time => named("STRING", &[]),
        DataType::Double => named("DOUBLE", &[]),
        DataType::Bool => named("BOOLEAN", &[]),
        DataType::Timestamp if column.timezone => named("TIMESTAMP", &[]),
        DataType::Timestamp => named("TIMESTAMP_NTZ", &[]),
        DataType::Bigint => named("BIGINT", &[]),
        DataType::Binary => named("BINARY", &[]),
        DataType::Json => named("STRING", &[]),
        DataType::Decimal => decimal(column, "DECIMAL"),
        DataType::Wei => named("DECIMAL", &[38, 0]),
        DataType::Date => named("DATE", &[]),
    }
}

fn mssql_type(column: &Column, _: &Table) -> SqlType {
    match kind(column) {
        DataType::Text => match column.precision {
            Some(n) => named("nvarchar", &[n]),
            None => named("nvarchar(max)", &[]),
        },
        DataType::Double => named("float", &[]),
        DataType::Bool => named("bit", &[]),
        DataType::Timestamp if column.timezone => named("datetimeoffset", column.precision.as_slice()),
        DataType::Timestamp => named("datetime2", column.precision.as_slice()),
        DataType::Bigint => named("bigint", &[]),
        DataType::Binary => match column.precision {
            Some(n) => named("varbinary", &[n]),
            None => named("varbinary(max)", &[]),
        },
        DataType::Json => named("nvarchar(max)", &[]),
        DataType::Decimal => decimal(column, "decimal"),
        DataType::Wei => named("decimal", &[38, 0]),
        DataType::Date => named("date", &[]),
        DataType::Time => named("time", column.precision.as_slice()),
    }
}

fn mysql_type(column: &Column, _: &Table) -> SqlType {
    match kind(column) {
        DataType::Text => match column.precision {
            Some(n) => named("VARCHAR", &[n]),
            None => named("LONGTEXT", &[]),
        },
        DataType::Double => named("DOUBLE", &[]),
        DataType::Bool => named("BOOLEAN", &[]),
        DataType::Timestamp => named("DATETIME", &[column.precision.unwrap_or(6).min(6)]),
        DataType::Bigint => named("BIGINT", &[]),
        DataType::Binary => named("LONGBLOB", &[]),
        DataType::Json => named("JSON", &[]),
        DataType::Decimal => decimal(column, "DECIMAL"),
        DataType::Wei => named("DECIMAL", &[65, 0]),
        DataType::Date => named("DATE", &[]),
        DataType::Time => named("TIME", &[column.precision.unwrap_or(6).min(6)]),
    }
}
