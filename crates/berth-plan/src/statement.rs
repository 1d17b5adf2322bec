//! The statements berth runs: sqlparser ASTs, plus the few PostgreSQL table operations sqlparser
//! 0.62 has no AST for, printed from AST parts (so identifiers are still quoted by sqlparser).

use std::fmt;

use datafusion::sql::sqlparser::ast::{Ident, ObjectName, Statement};

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
            Self::SetSchema { table, schema } => write!(f, "ALTER TABLE {table} SET SCHEMA {schema}"),
            Self::SetLogged { table, logged } => {
                write!(
                    f,
                    "ALTER TABLE {table} SET {}",
                    if *logged { "LOGGED" } else { "UNLOGGED" }
                )
            }
            Self::AddUnique { table, column } => write!(f, "ALTER TABLE {table} ADD UNIQUE ({column})"),
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
        let ast: SqlStatement = Parser::parse_sql(&PostgreSqlDialect {}, "SELECT 1")
            .unwrap()
            .remove(0)
            .into();
        assert_eq!(ast.to_string(), "SELECT 1");
    }
}
