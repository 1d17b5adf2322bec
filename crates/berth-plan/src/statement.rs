//! The statements berth runs: sqlparser ASTs, plus the few statements sqlparser 0.62 has no AST
//! for (three PostgreSQL table operations, Databricks' `COPY INTO`, Redshift's `COPY … PARQUET
//! SERIALIZETOJSON`), printed from AST parts (so identifiers and literals are still quoted and
//! escaped by sqlparser).

use std::fmt;

use berth_model::Secret;
use datafusion::sql::sqlparser::ast::{CopyLegacyOption, Ident, ObjectName, Statement, Value};

/// One statement for a destination to run.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum SqlStatement {
    /// Any statement sqlparser represents.
    Ast(Box<Statement>),
    /// `ALTER TABLE <table> SET SCHEMA <schema>` (PostgreSQL): moves a table between schemas
    /// without copying it.
    SetSchema {
        /// The table to move.
        table: ObjectName,
        /// The schema it moves to.
        schema: Ident,
    },
    /// `ALTER TABLE <table> SET LOGGED | SET UNLOGGED` (PostgreSQL). Cheap on an empty table.
    SetLogged {
        /// The table.
        table: ObjectName,
        /// `true`: crash-safe (WAL-logged); `false`: unlogged, for staging data.
        logged: bool,
    },
    /// `ALTER TABLE <table> ADD UNIQUE (<column>)`: the constraint a `unique` column gets at
    /// `CREATE TABLE`, added to a table that was built without it.
    AddUnique {
        /// The table.
        table: ObjectName,
        /// The column.
        column: Ident,
    },
    /// `ANALYZE <table> [(<columns>)]` (PostgreSQL): fresh planner statistics for a staging table
    /// before the follow-up joins it, on `columns` only when given.
    Analyze {
        /// The table.
        table: ObjectName,
        /// The columns sampled; empty: all of them.
        columns: Vec<Ident>,
    },
    /// `SET LOCAL <name> = '<value>'` (PostgreSQL): a setting for the rest of the transaction.
    SetLocal {
        /// The setting.
        name: Ident,
        /// Its value.
        value: String,
    },
    /// Databricks `COPY INTO <table> FROM '<url>' [WITH (CREDENTIAL (…))] FILEFORMAT = PARQUET
    /// COPY_OPTIONS (…)`: the warehouse reads one staged file itself. Files it already loaded into
    /// the table are skipped unless `force`.
    DatabricksCopyInto {
        /// The table.
        table: ObjectName,
        /// The file's URL (`s3://`, `abfss://`, `gs://`).
        from: String,
        /// Temporary credentials (`AWS_ACCESS_KEY`, `AZURE_SAS_TOKEN`, …), empty when the
        /// catalog's external location grants access.
        credentials: Vec<(String, String)>,
        /// Load the file even if the table loaded it before.
        force: bool,
    },
    /// Redshift `COPY <table> FROM '<url>' PARQUET [SERIALIZETOJSON] <authorization>`.
    RedshiftCopy {
        /// The table.
        table: ObjectName,
        /// The file's `s3://` URL.
        from: String,
        /// JSON (`SUPER`) columns are read from their string form (`SERIALIZETOJSON`).
        serialize_to_json: bool,
        /// `IAM_ROLE '…'` or `CREDENTIALS '…'`.
        authorization: CopyLegacyOption,
    },
    /// A statement whose text holds secrets (a warehouse COPY that forwards bucket keys): printed
    /// (`Display`, `Debug`) as `shown`, the same statement built with every secret as `***`; only
    /// [`SqlStatement::text_to_send`] gives the text with the values.
    WithSecrets {
        /// The statement with its secrets as `***`.
        shown: Box<SqlStatement>,
        /// The statement's text with the secrets.
        sent: Secret,
    },
}

impl SqlStatement {
    /// The text a destination sends: the statement as printed, but for
    /// [`SqlStatement::WithSecrets`], whose secrets only this shows.
    pub fn text_to_send(&self) -> String {
        match self {
            Self::WithSecrets { sent, .. } => sent.expose().to_string(),
            other => other.to_string(),
        }
    }
}

impl From<Statement> for SqlStatement {
    fn from(statement: Statement) -> Self {
        Self::Ast(Box::new(statement))
    }
}

impl fmt::Display for SqlStatement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ast(statement) => statement.fmt(f),
            Self::WithSecrets { shown, .. } => shown.fmt(f),
            Self::SetSchema { table, schema } => write!(f, "ALTER TABLE {table} SET SCHEMA {schema}"),
            Self::SetLogged { table, logged } => {
                write!(
                    f,
                    "ALTER TABLE {table} SET {}",
                    if *logged { "LOGGED" } else { "UNLOGGED" }
                )
            }
            Self::AddUnique { table, column } => write!(f, "ALTER TABLE {table} ADD UNIQUE ({column})"),
            Self::Analyze { table, columns } if columns.is_empty() => write!(f, "ANALYZE {table}"),
            Self::Analyze { table, columns } => {
                let columns: Vec<String> = columns.iter().map(Ident::to_string).collect();
                write!(f, "ANALYZE {table} ({})", columns.join(", "))
            }
            Self::SetLocal { name, value } => {
                write!(f, "SET LOCAL {name} = {}", Value::SingleQuotedString(value.clone()))
            }
            Self::DatabricksCopyInto {
                table,
                from,
                credentials,
                force,
            } => {
                let quoted = |s: &str| Value::SingleQuotedString(s.to_string());
                write!(f, "COPY INTO {table} FROM {}", quoted(from))?;
                if !credentials.is_empty() {
                    f.write_str(" WITH (CREDENTIAL (")?;
                    for (i, (key, value)) in credentials.iter().enumerate() {
                        let sep = if i == 0 { "" } else { ", " };
                        write!(f, "{sep}{} = {}", Ident::new(key), quoted(value))?;
                    }
                    f.write_str("))")?;
                }
                // Columns match by name; a file never changes the table's schema (berth migrates).
                write!(
                    f,
                    " FILEFORMAT = PARQUET COPY_OPTIONS ('mergeSchema' = 'false', 'force' = '{force}')"
                )
            }
            Self::RedshiftCopy {
                table,
                from,
                serialize_to_json,
                authorization,
            } => {
                write!(
                    f,
                    "COPY {table} FROM {} PARQUET",
                    Value::SingleQuotedString(from.clone())
                )?;
                if *serialize_to_json {
                    f.write_str(" SERIALIZETOJSON")?;
                }
                write!(f, " {authorization}")
            }
        }
    }
}

/// Statements as [`SqlStatement`]s.
pub fn statements(statements: impl IntoIterator<Item = Statement>) -> Vec<SqlStatement> {
    statements.into_iter().map(SqlStatement::from).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    #[test]
    fn pg_table_operations_quote_identifiers() {
        let table = ObjectName::from(vec![
            Ident::with_quote('"', "ds_staging"),
            Ident::with_quote('"', "a\"b"),
        ]);
        let set = SqlStatement::SetSchema {
            table: table.clone(),
            schema: Ident::with_quote('"', "ds"),
        };
        assert_eq!(set.to_string(), r#"ALTER TABLE "ds_staging"."a""b" SET SCHEMA "ds""#);
        let unlogged = SqlStatement::SetLogged { table, logged: false };
        assert_eq!(unlogged.to_string(), r#"ALTER TABLE "ds_staging"."a""b" SET UNLOGGED"#);
        let unique = SqlStatement::AddUnique {
            table: ObjectName::from(vec![Ident::with_quote('"', "ds"), Ident::with_quote('"', "t")]),
            column: Ident::with_quote('"', "_dlt_id"),
        };
        assert_eq!(unique.to_string(), r#"ALTER TABLE "ds"."t" ADD UNIQUE ("_dlt_id")"#);
        let staging = ObjectName::from(vec![Ident::with_quote('"', "ds_staging"), Ident::with_quote('"', "t")]);
        let whole = SqlStatement::Analyze {
            table: staging.clone(),
            columns: Vec::new(),
        };
        assert_eq!(whole.to_string(), r#"ANALYZE "ds_staging"."t""#);
        let keys = SqlStatement::Analyze {
            table: staging,
            columns: vec![Ident::with_quote('"', "id"), Ident::with_quote('"', "_dlt_id")],
        };
        assert_eq!(keys.to_string(), r#"ANALYZE "ds_staging"."t" ("id", "_dlt_id")"#);
        let ast: SqlStatement = Parser::parse_sql(&PostgreSqlDialect {}, "SELECT 1")
            .unwrap()
            .remove(0)
            .into();
        assert_eq!(ast.to_string(), "SELECT 1");
    }
}
