//! What differs between SQL dialects, as a value: identifier quoting and case folding, type
//! mapping, statement support, and the DataFusion unparser dialect that prints SELECT bodies.

use std::fmt;
use std::sync::Arc;

use berth_model::{Column, DataType, Table};
use datafusion::sql::sqlparser::ast::{DataType as SqlType, Ident, ObjectName};
use datafusion::sql::sqlparser::dialect::Dialect as ParserDialect;
use datafusion::sql::unparser::dialect::Dialect as UnparserDialect;

use crate::error::Result;
use crate::hints::DdlHints;
use crate::widen::{AlterTypeSyntax, Lattice};

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

/// Where a destination's `information_schema.columns` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CatalogStyle {
    /// One `information_schema.columns` for the database, with `numeric_precision` and
    /// `numeric_scale`.
    #[default]
    Standard,
    /// One `<dataset>.INFORMATION_SCHEMA.COLUMNS` per dataset, without numeric precision columns
    /// (BigQuery, where the precision is part of `data_type`).
    PerDataset,
}

/// How a dialect replaces a table's rows by a staging table's in one step readers see whole
/// (the `staging-optimized` replace where tables cannot be moved; see
/// [`crate::FollowupOp::Overwrite`]). Every form is idempotent, so a follow-up run again after a
/// crash before its journal row gives the same table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OverwriteStyle {
    /// Empty the table and insert the staged rows, in the follow-up's transaction (readers see
    /// the old rows until it commits).
    #[default]
    EmptyThenInsert,
    /// `INSERT OVERWRITE TABLE t (…) SELECT …`: one atomic commit that keeps the table, its
    /// grants and its history (Databricks' Delta tables).
    InsertOverwrite,
    /// `CREATE OR REPLACE TABLE t CLONE staging COPY GRANTS`: a zero-copy clone that takes the
    /// table's place atomically and keeps its grants (Snowflake).
    CloneCopyGrants,
}

/// How a dialect's string literals escape, for the text berth writes as literals ([`crate::sql::lit_text`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LiteralEscapes {
    /// Standard SQL: a quote is doubled, a backslash is itself.
    #[default]
    Standard,
    /// A backslash escapes, and a doubled quote is a quote (Snowflake).
    BackslashAndDoubling,
    /// A backslash escapes, and a doubled quote is not a quote (BigQuery, Databricks): quotes
    /// are written `\u0027`.
    Backslash,
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
    /// Longest identifier the destination accepts, in characters, or in UTF-8 bytes where
    /// [`Self::identifier_length_in_bytes`] (PostgreSQL's 63 are bytes: a longer name is cut
    /// silently, so berth must refuse it first).
    pub max_identifier_length: usize,
    /// [`Self::max_identifier_length`] counts UTF-8 bytes, not characters.
    pub identifier_length_in_bytes: bool,
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
    /// `MERGE INTO … USING … WHEN [NOT] MATCHED` exists (upsert runs as one statement). Without
    /// it, upsert is lowered to a keyed `DELETE` and an `INSERT` in the same transaction.
    pub supports_merge: bool,
    /// `DELETE FROM t AS d` / `UPDATE t AS d` may alias the target table. Without it, columns of
    /// the target are qualified with the full table name (Redshift, MSSQL).
    pub dml_target_alias: bool,
    /// `CREATE TABLE … AS SELECT` exists (else `SELECT … INTO`, MSSQL).
    pub create_table_as: bool,
    /// Identifiers that differ only in case are different names (dlt's
    /// `has_case_sensitive_identifiers`): where [`Self::casefold`] folds them anyway, a package
    /// whose naming convention keeps case gets them unfolded ([`Self::for_naming`]).
    pub case_sensitive_identifiers: bool,
    /// Case folding of the catalog's own names (`information_schema`, its columns): the
    /// destination's native folding, which [`Self::for_naming`] keeps.
    pub catalog_casefold: CaseFold,
    /// Where the catalog's column list is and what it holds.
    pub catalog: CatalogStyle,
    /// The database every table name is qualified with (`"db"."dataset"."table"`), where a
    /// two-part name can be ambiguous: DuckDB resolves `bomb.t` in database file `bomb.duckdb`
    /// as catalog `bomb` or schema `bomb` and refuses it. `None`: two-part names.
    pub database: Option<String>,
    /// How string literals escape (a backslash escapes on Snowflake, BigQuery, Databricks and
    /// MySQL): text berth writes as literals goes through [`crate::sql::lit_text`].
    pub string_escapes: LiteralEscapes,
    /// How the `staging-optimized` replace overwrites a table where it cannot move one.
    pub overwrite: OverwriteStyle,
    /// Table and column hints the migration writes into DDL (clustering, partitions, comments).
    pub hints: DdlHints,
    /// Which columns the migration may widen with `ALTER` (`--widen-types`).
    pub widening: Lattice,
    /// A merge's follow-up first analyzes the staging tables it joins and raises the
    /// transaction's `work_mem` to this (PostgreSQL: without statistics on a freshly loaded
    /// staging table the planner deduplicates it before a hash join, and hashes spill to disk at
    /// the default 4 MB; measured on a 500k-row delete-insert into 5M rows: 1.81 s → 1.32 s).
    /// `None`: nothing before the follow-up.
    pub followup_work_mem: Option<&'static str>,
    /// A system column naming where a row is stored, stable within a transaction (PostgreSQL's
    /// `ctid`). A merge collects the locators of the rows it replaces with one `CREATE TABLE AS`
    /// (which the server may scan in parallel, unlike a `DELETE`) and deletes them by locator
    /// without a second scan: `DELETE … WHERE ctid = ANY(ARRAY(SELECT …))`; an upsert does so
    /// and inserts instead of a `MERGE` (unless a source filter or skip-unchanged needs the
    /// `MERGE`). `None`: rows are deleted by key. berth's loads of a dataset never interleave
    /// (the destination's load lock); a row another writer updates between the two statements
    /// keeps its new version.
    pub row_locator: Option<&'static str>,
    /// The follow-up's plans run in DataFusion itself (the lake, the memory executor), not as
    /// SQL text: timestamps a hint gives (scd2's active-record marker) are typed literals of
    /// their column. As text, DataFusion would cast them through nanoseconds, which end in 2262,
    /// and dlt's usual marker is `9999-12-31`; SQL destinations take the text and cast it
    /// themselves, zone included.
    pub typed_timestamps: bool,
    /// How `ALTER` spells a column's new type.
    pub alter_type_syntax: AlterTypeSyntax,
    /// Column type mapping.
    pub type_mapper: Arc<dyn TypeMapper>,
    /// Dialect the DataFusion unparser prints SELECT bodies in.
    pub unparser: Arc<dyn UnparserDialect + Send + Sync>,
    /// The sqlparser dialect that parses this dialect's statements back (tests and `berth plan`
    /// check every printed statement with it).
    pub parser: Arc<dyn ParserDialect + Send + Sync>,
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
    /// A dialect called `name` with these types, printers and parser, and the defaults of a
    /// standard SQL database, each changed with struct-update syntax or the `with_` methods:
    ///
    /// | field | default |
    /// |---|---|
    /// | [`Self::identifier_quote`] | `"` |
    /// | [`Self::casefold`], [`Self::catalog_casefold`] | none ([`Self::with_casefold`] sets both) |
    /// | [`Self::max_identifier_length`] | 255 characters |
    /// | [`Self::identifier_length_in_bytes`] | false |
    /// | [`Self::supports_truncate`], [`Self::alter_add_multi_column`], [`Self::supports_create_table_if_not_exists`], [`Self::supports_merge`], [`Self::dml_target_alias`], [`Self::create_table_as`] | true |
    /// | [`Self::create_unique_constraints`], [`Self::unlogged_staging`], [`Self::supports_set_schema`], [`Self::case_sensitive_identifiers`], [`Self::typed_timestamps`] | false |
    /// | [`Self::catalog`] | [`CatalogStyle::Standard`] |
    /// | [`Self::database`] | none (two-part names) |
    /// | [`Self::string_escapes`] | standard SQL ([`LiteralEscapes::Standard`]) |
    /// | [`Self::overwrite`] | empty, then insert ([`OverwriteStyle::EmptyThenInsert`]) |
    /// | [`Self::hints`] | none ([`DdlHints::default`]) |
    /// | [`Self::widening`] | every edge of the lattice ([`Lattice::ALL`]) |
    /// | [`Self::alter_type_syntax`] | `ALTER COLUMN c TYPE t` ([`AlterTypeSyntax::Type`]) |
    pub fn new(
        name: &'static str,
        type_mapper: Arc<dyn TypeMapper>,
        unparser: Arc<dyn UnparserDialect + Send + Sync>,
        parser: Arc<dyn ParserDialect + Send + Sync>,
    ) -> Self {
        Self {
            name,
            identifier_quote: '"',
            casefold: CaseFold::None,
            max_identifier_length: 255,
            identifier_length_in_bytes: false,
            supports_truncate: true,
            alter_add_multi_column: true,
            supports_create_table_if_not_exists: true,
            create_unique_constraints: false,
            unlogged_staging: false,
            supports_set_schema: false,
            supports_merge: true,
            dml_target_alias: true,
            create_table_as: true,
            case_sensitive_identifiers: false,
            catalog_casefold: CaseFold::None,
            catalog: CatalogStyle::Standard,
            database: None,
            string_escapes: LiteralEscapes::Standard,
            overwrite: OverwriteStyle::EmptyThenInsert,
            hints: DdlHints::default(),
            widening: Lattice::ALL,
            followup_work_mem: None,
            row_locator: None,
            typed_timestamps: false,
            alter_type_syntax: AlterTypeSyntax::Type,
            type_mapper,
            unparser,
            parser,
        }
    }

    /// Quotes identifiers with `quote`.
    pub fn with_quote(self, quote: char) -> Self {
        Self {
            identifier_quote: quote,
            ..self
        }
    }

    /// Folds identifiers (and the catalog's own names) with `casefold`.
    pub fn with_casefold(self, casefold: CaseFold) -> Self {
        Self {
            casefold,
            catalog_casefold: casefold,
            ..self
        }
    }

    /// Identifiers are at most `length` long (characters, unless counted in bytes).
    pub fn with_max_identifier_length(self, length: usize) -> Self {
        Self {
            max_identifier_length: length,
            ..self
        }
    }

    /// A quoted, case-folded identifier. Quotes inside the name are escaped by the printer.
    pub fn ident(&self, name: &str) -> Ident {
        Ident::with_quote(self.identifier_quote, self.casefold.apply(name))
    }

    /// The dialect for a package whose naming convention keeps case (`case_sensitive`), as dlt's
    /// `adjust_capabilities` makes it: no folding where identifiers are case-sensitive; `None`
    /// when nothing changes.
    pub fn for_naming(&self, case_sensitive: bool) -> Option<SqlDialect> {
        (case_sensitive && self.case_sensitive_identifiers && self.casefold != CaseFold::None).then(|| SqlDialect {
            casefold: CaseFold::None,
            ..self.clone()
        })
    }

    /// The dialect of queries on the catalog's own tables: native folding, no database.
    pub fn catalog_dialect(&self) -> SqlDialect {
        SqlDialect {
            casefold: self.catalog_casefold,
            database: None,
            ..self.clone()
        }
    }

    /// `"dataset"."table"`.
    pub fn table_name(&self, dataset: &str, table: &str) -> ObjectName {
        match &self.database {
            Some(database) => ObjectName::from(vec![
                Ident::with_quote(self.identifier_quote, database),
                self.ident(dataset),
                self.ident(table),
            ]),
            None => ObjectName::from(vec![self.ident(dataset), self.ident(table)]),
        }
    }

    /// `dataset.table` as a DataFusion table reference (folded), with [`Self::database`].
    pub fn table_reference(&self, dataset: &str, table: &str) -> datafusion::common::TableReference {
        let (dataset, table) = (self.stored_name(dataset), self.stored_name(table));
        match &self.database {
            Some(database) => datafusion::common::TableReference::full(database.as_str(), dataset, table),
            None => datafusion::common::TableReference::partial(dataset, table),
        }
    }

    /// The length of `name` as the destination counts it (characters or UTF-8 bytes).
    pub fn identifier_length(&self, name: &str) -> usize {
        if self.identifier_length_in_bytes {
            name.len()
        } else {
            name.chars().count()
        }
    }

    /// The longest prefix of `name` whose [`Self::identifier_length`] is at most `max`.
    pub fn identifier_prefix<'a>(&self, name: &'a str, max: usize) -> &'a str {
        let mut end = 0;
        for (count, (index, c)) in name.char_indices().enumerate() {
            let length = if self.identifier_length_in_bytes {
                index + c.len_utf8()
            } else {
                count + 1
            };
            if length > max {
                break;
            }
            end = index + c.len_utf8();
        }
        &name[..end]
    }

    /// The name as the destination stores it (after case folding), for catalog lookups.
    pub fn stored_name(&self, name: &str) -> String {
        self.casefold.apply(name)
    }
}

/// An unparser dialect that never prints `QUALIFY` (nor a frame for `ROW_NUMBER()`), forwarding
/// everything else to `D`.
///
/// DataFusion 55's unparser looks for a window below a filter through derived-table aliases, and
/// then prints the filter as `QUALIFY` on the outer `SELECT` with the window's column references
/// re-qualified by the inner table's name: wrong SQL, and a filter that was meant to run after
/// the window can land in a `WHERE` that runs before it. berth's plans put every window in its
/// own derived table, so they need no `QUALIFY`; without it the unparser keeps that shape.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoQualify<D>(pub D);

mod no_qualify {
    use std::sync::Arc;

    use arrow::datatypes::TimeUnit;
    use datafusion::common::Result;
    use datafusion::logical_expr::Expr;
    use datafusion::sql::sqlparser::ast;
    use datafusion::sql::sqlparser::ast::WindowFrameBound;
    use datafusion::sql::unparser::Unparser;
    use datafusion::sql::unparser::dialect::{
        CharacterLengthStyle, DateFieldExtractStyle, Dialect, DistinctFromStyle, IntervalStyle,
    };

    use super::NoQualify;

    impl<D: Dialect> Dialect for NoQualify<D> {
        fn identifier_quote_style(&self, identifier: &str) -> Option<char> {
            self.0.identifier_quote_style(identifier)
        }
        fn supports_qualify(&self) -> bool {
            false
        }
        fn use_array_keyword_for_array_literals(&self) -> bool {
            self.0.use_array_keyword_for_array_literals()
        }
        fn supports_nulls_first_in_sort(&self) -> bool {
            self.0.supports_nulls_first_in_sort()
        }
        fn use_timestamp_for_date64(&self) -> bool {
            self.0.use_timestamp_for_date64()
        }
        fn interval_style(&self) -> IntervalStyle {
            self.0.interval_style()
        }
        fn float64_ast_dtype(&self) -> ast::DataType {
            self.0.float64_ast_dtype()
        }
        fn utf8_cast_dtype(&self) -> ast::DataType {
            self.0.utf8_cast_dtype()
        }
        fn large_utf8_cast_dtype(&self) -> ast::DataType {
            self.0.large_utf8_cast_dtype()
        }
        fn date_field_extract_style(&self) -> DateFieldExtractStyle {
            self.0.date_field_extract_style()
        }
        fn distinct_from_style(&self) -> DistinctFromStyle {
            self.0.distinct_from_style()
        }
        fn character_length_style(&self) -> CharacterLengthStyle {
            self.0.character_length_style()
        }
        fn int64_cast_dtype(&self) -> ast::DataType {
            self.0.int64_cast_dtype()
        }
        fn int8_cast_dtype(&self) -> ast::DataType {
            self.0.int8_cast_dtype()
        }
        fn int32_cast_dtype(&self) -> ast::DataType {
            self.0.int32_cast_dtype()
        }
        fn timestamp_cast_dtype(&self, time_unit: &TimeUnit, tz: &Option<Arc<str>>) -> ast::DataType {
            self.0.timestamp_cast_dtype(time_unit, tz)
        }
        fn date32_cast_dtype(&self) -> ast::DataType {
            self.0.date32_cast_dtype()
        }
        fn supports_column_alias_in_table_alias(&self) -> bool {
            self.0.supports_column_alias_in_table_alias()
        }
        fn requires_derived_table_alias(&self) -> bool {
            self.0.requires_derived_table_alias()
        }
        fn division_operator(&self) -> ast::BinaryOperator {
            self.0.division_operator()
        }
        fn scalar_function_to_sql_overrides(
            &self,
            unparser: &Unparser,
            func_name: &str,
            args: &[Expr],
        ) -> Result<Option<ast::Expr>> {
            self.0.scalar_function_to_sql_overrides(unparser, func_name, args)
        }
        fn window_func_support_window_frame(
            &self,
            func_name: &str,
            start_bound: &WindowFrameBound,
            end_bound: &WindowFrameBound,
        ) -> bool {
            // ROW_NUMBER() takes no frame on BigQuery and MSSQL, and ignores it everywhere else.
            !func_name.eq_ignore_ascii_case("row_number")
                && self
                    .0
                    .window_func_support_window_frame(func_name, start_bound, end_bound)
        }
        fn full_qualified_col(&self) -> bool {
            self.0.full_qualified_col()
        }
        fn supports_empty_select_list(&self) -> bool {
            self.0.supports_empty_select_list()
        }
    }
}
