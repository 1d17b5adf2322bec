//! What differs between SQL dialects, as a value: identifier quoting and case folding, type
//! mapping, statement support, and the DataFusion unparser dialect that prints SELECT bodies.

use std::fmt;
use std::sync::Arc;

use berth_model::{Column, DataType, Table};
use datafusion::sql::sqlparser::ast::{DataType as SqlType, Ident, ObjectName};
use datafusion::sql::unparser::dialect::Dialect as UnparserDialect;

use crate::error::Result;

/// How a destination folds unquoted identifier case (applied before quoting, as dlt does).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CaseFold {
    /// Keep names as they are (DuckDB, BigQuery).
    #[default]
    None,
    /// Lower-case (PostgreSQL, Redshift).
    Lower,
    /// Upper-case (Snowflake).
    Upper,
}

impl CaseFold {
    /// Applies the folding.
    pub fn apply(self, name: &str) -> String {
        match self {
            Self::None => name.to_string(),
            Self::Lower => name.to_lowercase(),
            Self::Upper => name.to_uppercase(),
        }
    }
}

/// Maps dlt types to a destination's column types and back.
pub trait TypeMapper: Send + Sync + fmt::Debug {
    /// The column type to create for `column` of `table`.
    fn to_destination(&self, column: &Column, table: &Table) -> Result<SqlType>;

    /// The dlt type of an existing column, from `information_schema` (`None`: unknown type).
    fn to_dlt_type(&self, db_type: &str, precision: Option<u32>, scale: Option<u32>) -> Option<DataType>;
}

/// Everything berth needs to print SQL for one destination.
#[derive(Clone)]
pub struct SqlDialect {
    /// Destination name, for messages.
    pub name: &'static str,
    /// Quote character for identifiers (`"` or `` ` ``).
    pub identifier_quote: char,
    /// Case folding applied to every identifier before quoting.
    pub casefold: CaseFold,
    /// Longest identifier the destination accepts.
    pub max_identifier_length: usize,
    /// `TRUNCATE TABLE` exists (else `DELETE FROM t WHERE 1=1`).
    pub supports_truncate: bool,
    /// One `ALTER TABLE` may add several columns.
    pub alter_add_multi_column: bool,
    /// `CREATE TABLE IF NOT EXISTS` exists.
    pub supports_create_table_if_not_exists: bool,
    /// dlt creates `UNIQUE` constraints for `unique` columns here (`create_indexes`).
    pub create_unique_constraints: bool,
    /// Staging tables are made unlogged (`ALTER TABLE … SET UNLOGGED`, PostgreSQL): their rows are
    /// rebuilt from the package after a crash anyway, so writing them to the WAL is wasted work.
    pub unlogged_staging: bool,
    /// A staging table can be moved into the final dataset (`ALTER TABLE … SET SCHEMA`), which
    /// makes the `staging-optimized` replace a swap instead of a copy.
    pub supports_set_schema: bool,
    /// Column type mapping.
    pub type_mapper: Arc<dyn TypeMapper>,
    /// Dialect the DataFusion unparser prints SELECT bodies in.
    pub unparser: Arc<dyn UnparserDialect + Send + Sync>,
}

impl fmt::Debug for SqlDialect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlDialect")
            .field("name", &self.name)
            .field("identifier_quote", &self.identifier_quote)
            .field("casefold", &self.casefold)
            .field("type_mapper", &self.type_mapper)
            .finish_non_exhaustive()
    }
}

impl SqlDialect {
    /// A quoted, case-folded identifier. Quotes inside the name are escaped by the printer.
    pub fn ident(&self, name: &str) -> Ident {
        Ident::with_quote(self.identifier_quote, self.casefold.apply(name))
    }

    /// `"dataset"."table"`.
    pub fn table_name(&self, dataset: &str, table: &str) -> ObjectName {
        ObjectName::from(vec![self.ident(dataset), self.ident(table)])
    }

    /// The name as the destination stores it (after case folding), for catalog lookups.
    pub fn stored_name(&self, name: &str) -> String {
        self.casefold.apply(name)
    }
}
