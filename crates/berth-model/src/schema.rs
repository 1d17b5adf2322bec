//! dlt's stored schema (`schema.json`, engine version 11) as a typed model.
//!
//! Only what the load step needs is typed; every table and column keeps the hints berth does not
//! interpret in `extra`, and the schema keeps its original JSON text, which is what `_dlt_version`
//! stores.

use std::fmt;
use std::str::FromStr;

use indexmap::IndexMap;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// Highest schema engine version berth understands.
pub const MAX_ENGINE_VERSION: u32 = 11;

/// Prefix of every dlt system table and column.
pub const DLT_PREFIX: &str = "_dlt_";
/// dlt's load bookkeeping tables.
pub const LOADS_TABLE: &str = "_dlt_loads";
/// The row key column of every table (`_dlt_id`).
pub const DLT_ID: &str = "_dlt_id";
/// berth's journal of committed job parts, written in the same transaction as their rows.
pub const JOURNAL_TABLE: &str = "_berth_journal";
/// dlt's schema version table.
pub const VERSION_TABLE: &str = "_dlt_version";
/// dlt's pipeline state table (loaded by an ordinary append job).
pub const PIPELINE_STATE_TABLE: &str = "_dlt_pipeline_state";

/// A dlt data type (`data_type` of a column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataType {
    /// `text`
    Text,
    /// `double`
    Double,
    /// `bool`
    Bool,
    /// `timestamp` (UTC unless the column says `timezone: false`)
    Timestamp,
    /// `bigint` (narrower with `precision` bits)
    Bigint,
    /// `binary`
    Binary,
    /// `json` (nested data; a JSON string in Parquet)
    Json,
    /// `decimal` (`precision`/`scale`, default 38,9)
    Decimal,
    /// `wei`: a 256-bit integer-valued decimal
    Wei,
    /// `date`
    Date,
    /// `time`
    Time,
}

impl DataType {
    /// The name dlt uses in `schema.json`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Double => "double",
            Self::Bool => "bool",
            Self::Timestamp => "timestamp",
            Self::Bigint => "bigint",
            Self::Binary => "binary",
            Self::Json => "json",
            Self::Decimal => "decimal",
            Self::Wei => "wei",
            Self::Date => "date",
            Self::Time => "time",
        }
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DataType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "text" => Self::Text,
            "double" => Self::Double,
            "bool" => Self::Bool,
            "timestamp" => Self::Timestamp,
            "bigint" => Self::Bigint,
            "binary" => Self::Binary,
            "json" | "complex" => Self::Json,
            "decimal" => Self::Decimal,
            "wei" => Self::Wei,
            "date" => Self::Date,
            "time" => Self::Time,
            other => return Err(format!("unknown data_type `{other}`")),
        })
    }
}

/// How rows of a table are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WriteDisposition {
    /// Add rows.
    Append,
    /// Replace the table (and its nested tables) with the package's rows.
    Replace,
    /// Merge by key (see [`MergeStrategy`]).
    Merge,
    /// Never loaded through jobs (`_dlt_loads`, `_dlt_version`).
    Skip,
}

impl WriteDisposition {
    /// The name dlt uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Append => "append",
            Self::Replace => "replace",
            Self::Merge => "merge",
            Self::Skip => "skip",
        }
    }
}

impl fmt::Display for WriteDisposition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for WriteDisposition {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "append" => Self::Append,
            "replace" => Self::Replace,
            "merge" => Self::Merge,
            "skip" => Self::Skip,
            other => return Err(format!("unknown write_disposition `{other}`")),
        })
    }
}

/// The merge strategy of a `merge` table (`x-merge-strategy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum MergeStrategy {
    /// Delete matching keys, insert deduplicated staging rows (dlt's default).
    #[default]
    DeleteInsert,
    /// `MERGE` by primary key.
    Upsert,
    /// Insert only keys not yet present.
    InsertOnly,
    /// Slowly changing dimension type 2 (validity columns).
    Scd2,
    /// Upsert treating the load as a full snapshot.
    Cdc,
}

impl MergeStrategy {
    /// The name dlt uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::DeleteInsert => "delete-insert",
            Self::Upsert => "upsert",
            Self::InsertOnly => "insert-only",
            Self::Scd2 => "scd2",
            Self::Cdc => "cdc",
        }
    }
}

impl fmt::Display for MergeStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for MergeStrategy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "delete-insert" => Self::DeleteInsert,
            "upsert" => Self::Upsert,
            "insert-only" => Self::InsertOnly,
            "scd2" => Self::Scd2,
            "cdc" => Self::Cdc,
            other => return Err(format!("unknown merge strategy `{other}`")),
        })
    }
}

/// How a `replace` table is replaced. Not stored in the schema: chosen by configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ReplaceStrategy {
    /// Truncate the table (and its nested tables) first, then load straight into it.
    #[default]
    TruncateAndInsert,
    /// Load into the staging dataset, then truncate and copy over in one transaction.
    InsertFromStaging,
    /// Load into the staging dataset, then swap the staging table in.
    StagingOptimized,
}

impl ReplaceStrategy {
    /// The name dlt uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TruncateAndInsert => "truncate-and-insert",
            Self::InsertFromStaging => "insert-from-staging",
            Self::StagingOptimized => "staging-optimized",
        }
    }
}

impl fmt::Display for ReplaceStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ReplaceStrategy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "truncate-and-insert" => Self::TruncateAndInsert,
            "insert-from-staging" => Self::InsertFromStaging,
            "staging-optimized" => Self::StagingOptimized,
            other => {
                return Err(format!(
                    "unknown replace strategy `{other}` (expected truncate-and-insert, \
                     insert-from-staging or staging-optimized)"
                ));
            }
        })
    }
}

/// Sort order of a `dedup_sort` hint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SortOrder {
    /// Keep the row with the smallest value.
    Asc,
    /// Keep the row with the largest value.
    Desc,
}

/// One column of a table.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    /// Column name (already normalized by dlt's naming convention).
    pub name: String,
    /// `None` for incomplete columns (seen only as NULL); those are never created.
    pub data_type: Option<DataType>,
    /// `nullable` (default true).
    pub nullable: bool,
    /// Length, integer bits, fractional second digits or decimal precision, by type.
    pub precision: Option<u32>,
    /// Decimal scale.
    pub scale: Option<u32>,
    /// `timezone` (default true): false means naive timestamp / time.
    pub timezone: bool,
    /// Part of the primary key.
    pub primary_key: bool,
    /// Part of the merge key.
    pub merge_key: bool,
    /// Unique constraint.
    pub unique: bool,
    /// The row identifier (`_dlt_id`).
    pub row_key: bool,
    /// Parent row identifier in nested tables (`_dlt_parent_id`).
    pub parent_key: bool,
    /// Root row identifier in nested tables (`_dlt_root_id`).
    pub root_key: bool,
    /// Rows with a non-NULL (or TRUE) value are deleted by merge.
    pub hard_delete: bool,
    /// Ordering that picks the surviving row among duplicates of a primary key.
    pub dedup_sort: Option<SortOrder>,
    /// scd2 validity start column (`x-valid-from`).
    pub valid_from: bool,
    /// scd2 validity end column (`x-valid-to`).
    pub valid_to: bool,
    /// scd2 row version / hash column (`x-row-version`).
    pub row_version: bool,
    /// Destination partitioning hint (applied at CREATE only).
    pub partition: bool,
    /// Destination clustering hint (applied at CREATE only).
    pub cluster: bool,
    /// Destination sort-key hint (applied at CREATE only).
    pub sort: bool,
    /// Column comment.
    pub description: Option<String>,
    /// Every other hint, as found in the schema.
    pub extra: Map<String, Value>,
}

impl Column {
    /// A complete column has a data type and can be created in a destination.
    pub fn is_complete(&self) -> bool {
        self.data_type.is_some()
    }

    /// A column of the given type, nullable, without hints.
    pub fn new(name: impl Into<String>, data_type: DataType) -> Self {
        Self {
            name: name.into(),
            data_type: Some(data_type),
            nullable: true,
            precision: None,
            scale: None,
            timezone: true,
            primary_key: false,
            merge_key: false,
            unique: false,
            row_key: false,
            parent_key: false,
            root_key: false,
            hard_delete: false,
            dedup_sort: None,
            valid_from: false,
            valid_to: false,
            row_version: false,
            partition: false,
            cluster: false,
            sort: false,
            description: None,
            extra: Map::new(),
        }
    }

    /// Builder-style `nullable`.
    pub fn with_nullable(mut self, nullable: bool) -> Self {
        self.nullable = nullable;
        self
    }

    /// Builder-style `precision`.
    pub fn with_precision(mut self, precision: u32) -> Self {
        self.precision = Some(precision);
        self
    }
}

/// One table of a schema.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    /// Table name (already normalized).
    pub name: String,
    /// Columns in physical order.
    pub columns: IndexMap<String, Column>,
    /// Own write disposition; nested tables usually inherit it (see [`Schema::write_disposition`]).
    pub write_disposition: Option<WriteDisposition>,
    /// Parent table: this is a nested table.
    pub parent: Option<String>,
    /// Resource that produced the table.
    pub resource: Option<String>,
    /// Preferred loader file format (`parquet`, `preferred`, ...).
    pub file_format: Option<String>,
    /// Open table format (`delta`, `iceberg`, ...).
    pub table_format: Option<String>,
    /// Own merge strategy (`x-merge-strategy`).
    pub merge_strategy: Option<MergeStrategy>,
    /// `x-stage-data-deduplicated`: merge skips the ROW_NUMBER() dedupe.
    pub stage_data_deduplicated: bool,
    /// `x-boundary-timestamp`: fixed scd2 validity boundary.
    pub boundary_timestamp: Option<String>,
    /// `x-normalizer.seen-data`: tables that never saw data are never created.
    pub seen_data: bool,
    /// Table comment.
    pub description: Option<String>,
    /// Every other table hint.
    pub extra: Map<String, Value>,
}

impl Table {
    /// A root table with the given columns and no hints.
    pub fn new(name: impl Into<String>, columns: impl IntoIterator<Item = Column>) -> Self {
        Self {
            name: name.into(),
            columns: columns.into_iter().map(|c| (c.name.clone(), c)).collect(),
            write_disposition: None,
            parent: None,
            resource: None,
            file_format: None,
            table_format: None,
            merge_strategy: None,
            stage_data_deduplicated: false,
            boundary_timestamp: None,
            seen_data: true,
            description: None,
            extra: Map::new(),
        }
    }

    /// Columns that have a data type, in order.
    pub fn complete_columns(&self) -> impl Iterator<Item = &Column> {
        self.columns.values().filter(|c| c.is_complete())
    }

    /// Is this a nested (child) table?
    pub fn is_nested(&self) -> bool {
        self.parent.is_some()
    }

    /// Primary key columns in order.
    pub fn primary_key(&self) -> Vec<&Column> {
        self.complete_columns().filter(|c| c.primary_key).collect()
    }

    /// Merge key columns in order.
    pub fn merge_key(&self) -> Vec<&Column> {
        self.complete_columns().filter(|c| c.merge_key).collect()
    }
}

/// Is `name` one of dlt's system tables or columns?
pub fn is_dlt_name(name: &str) -> bool {
    name.starts_with(DLT_PREFIX)
}

/// A dlt stored schema.
#[derive(Debug, Clone, PartialEq)]
pub struct Schema {
    /// Schema name.
    pub name: String,
    /// Content version, bumped on change.
    pub version: u64,
    /// Content hash; `_dlt_version` rows are keyed by it.
    pub version_hash: String,
    /// Schema engine version.
    pub engine_version: u32,
    /// Tables in schema order.
    pub tables: IndexMap<String, Table>,
    /// `normalizers.names` (naming convention module), when given.
    pub naming_convention: Option<String>,
    /// The schema JSON as read, stored verbatim in `_dlt_version`.
    pub json: String,
}

#[derive(Deserialize)]
struct RawSchema {
    name: String,
    #[serde(default)]
    version: u64,
    #[serde(default)]
    version_hash: String,
    engine_version: u32,
    #[serde(default)]
    tables: IndexMap<String, Map<String, Value>>,
    #[serde(default)]
    normalizers: Option<Map<String, Value>>,
}

impl Schema {
    /// The naming convention of `normalizers.names`.
    pub fn naming(&self) -> crate::naming::NamingConvention {
        crate::naming::NamingConvention::from_schema_name(self.naming_convention.as_deref())
    }

    /// Parses `schema.json`. `origin` names the file in errors.
    pub fn from_json(text: &str, origin: &str) -> Result<Self> {
        let raw: RawSchema = serde_json::from_str(text).map_err(|source| Error::SchemaJson {
            path: origin.to_string(),
            source,
        })?;
        let invalid = |message: String| Error::InvalidSchema {
            path: origin.to_string(),
            message,
        };
        if raw.engine_version > MAX_ENGINE_VERSION {
            return Err(invalid(format!(
                "schema engine version {} is newer than the {} berth understands; \
                 upgrade berth or normalize with an older dlt",
                raw.engine_version, MAX_ENGINE_VERSION
            )));
        }
        if raw.name.is_empty() {
            return Err(invalid("the schema has no name".into()));
        }
        let mut tables = IndexMap::with_capacity(raw.tables.len());
        for (key, body) in raw.tables {
            let table = parse_table(&key, body).map_err(|m| invalid(format!("table `{key}`: {m}")))?;
            tables.insert(key, table);
        }
        let mut schema = Self {
            name: raw.name,
            version: raw.version,
            version_hash: raw.version_hash,
            engine_version: raw.engine_version,
            tables,
            naming_convention: raw
                .normalizers
                .as_ref()
                .and_then(|n| n.get("names"))
                .and_then(Value::as_str)
                .map(str::to_string),
            json: text.to_string(),
        };
        schema.check_parents().map_err(invalid)?;
        schema.inherit_formats();
        Ok(schema)
    }

    /// Nested tables without their own `file_format` or `table_format` take the nearest
    /// ancestor's, as dlt prepares a table for its load (`fill_hints_from_parent_and_clone_table`):
    /// PostgreSQL's json columns are `json`, not `jsonb`, in every table of a Parquet chain.
    fn inherit_formats(&mut self) {
        let inherited = |tables: &IndexMap<String, Table>, table: &Table, hint: fn(&Table) -> &Option<String>| {
            let mut current = table;
            while hint(current).is_none() {
                current = tables.get(current.parent.as_deref()?)?;
            }
            hint(current).clone()
        };
        let filled: Vec<(String, Option<String>, Option<String>)> = self
            .tables
            .values()
            .filter(|t| t.is_nested())
            .map(|t| {
                let file_format = inherited(&self.tables, t, |t| &t.file_format);
                let table_format = inherited(&self.tables, t, |t| &t.table_format);
                (t.name.clone(), file_format, table_format)
            })
            .collect();
        for (name, file_format, table_format) in filled {
            if let Some(table) = self.tables.get_mut(&name) {
                table.file_format = file_format;
                table.table_format = table_format;
            }
        }
    }

    fn check_parents(&self) -> Result<(), String> {
        for table in self.tables.values() {
            let mut seen = 0;
            let mut current = table;
            while let Some(parent) = &current.parent {
                current = self.tables.get(parent).ok_or_else(|| {
                    format!(
                        "table `{}` names parent `{parent}`, which is not in the schema",
                        table.name
                    )
                })?;
                seen += 1;
                if seen > self.tables.len() {
                    return Err(format!("table `{}` has a cycle of parents", table.name));
                }
            }
        }
        Ok(())
    }

    /// A table by name.
    pub fn table(&self, name: &str) -> Option<&Table> {
        self.tables.get(name)
    }

    /// The root of `table`'s chain (itself for root tables).
    pub fn root_of<'a>(&'a self, table: &'a Table) -> &'a Table {
        let mut current = table;
        // Parents were checked at parse time; a missing one stops the walk.
        while let Some(parent) = current.parent.as_deref().and_then(|p| self.tables.get(p)) {
            current = parent;
        }
        current
    }

    /// Effective write disposition: the table's own, else its root's, else `append`.
    pub fn write_disposition(&self, table: &Table) -> WriteDisposition {
        table
            .write_disposition
            .or(self.root_of(table).write_disposition)
            .unwrap_or(WriteDisposition::Append)
    }

    /// Effective merge strategy: the table's own, else its root's, else `delete-insert`.
    pub fn merge_strategy(&self, table: &Table) -> MergeStrategy {
        table
            .merge_strategy
            .or(self.root_of(table).merge_strategy)
            .unwrap_or_default()
    }

    /// All tables below `root`, in schema order (children, grandchildren, ...).
    pub fn nested_tables<'a>(&'a self, root: &'a Table) -> Vec<&'a Table> {
        self.tables
            .values()
            .filter(|t| t.name != root.name && self.root_of(t).name == root.name)
            .collect()
    }

    /// `root` followed by its nested tables.
    pub fn table_chain<'a>(&'a self, root: &'a Table) -> Vec<&'a Table> {
        let mut chain = vec![root];
        chain.extend(self.nested_tables(root));
        chain
    }

    /// Data tables (not dlt's own) that saw data.
    pub fn data_tables(&self) -> impl Iterator<Item = &Table> {
        self.tables.values().filter(|t| !is_dlt_name(&t.name) && t.seen_data)
    }
}

fn take_bool(body: &mut Map<String, Value>, key: &str) -> Result<bool, String> {
    match body.remove(key) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(b),
        Some(other) => Err(format!("`{key}` must be true or false, found {other}")),
    }
}

fn take_str(body: &mut Map<String, Value>, key: &str) -> Result<Option<String>, String> {
    match body.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(format!("`{key}` must be a string, found {other}")),
    }
}

fn take_u32(body: &mut Map<String, Value>, key: &str) -> Result<Option<u32>, String> {
    match body.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| format!("`{key}` must be a small non-negative integer, found {n}")),
        Some(other) => Err(format!("`{key}` must be an integer, found {other}")),
    }
}

fn parse_table(key: &str, mut body: Map<String, Value>) -> Result<Table, String> {
    let name = take_str(&mut body, "name")?.unwrap_or_else(|| key.to_string());
    if name != key {
        return Err(format!("is stored under `{key}` but named `{name}`"));
    }
    let columns_raw = match body.remove("columns") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(map)) => map,
        Some(other) => return Err(format!("`columns` must be an object, found {other}")),
    };
    let mut columns = IndexMap::with_capacity(columns_raw.len());
    for (col_key, col_body) in columns_raw {
        let Value::Object(col_body) = col_body else {
            return Err(format!("column `{col_key}` must be an object"));
        };
        let column = parse_column(&col_key, col_body).map_err(|m| format!("column `{col_key}`: {m}"))?;
        columns.insert(col_key, column);
    }
    let write_disposition = take_str(&mut body, "write_disposition")?
        .map(|s| s.parse())
        .transpose()?;
    let merge_strategy = take_str(&mut body, "x-merge-strategy")?
        .map(|s| s.parse())
        .transpose()?;
    let seen_data = match body.get("x-normalizer") {
        Some(Value::Object(n)) => n.get("seen-data").and_then(Value::as_bool).unwrap_or(false),
        _ => false,
    };
    let boundary_timestamp = match body.remove("x-boundary-timestamp") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(crate::typed_json::strip_marker(&s).to_string()),
        Some(other) => Some(other.to_string()),
    };
    Ok(Table {
        name,
        columns,
        write_disposition,
        parent: take_str(&mut body, "parent")?,
        resource: take_str(&mut body, "resource")?,
        file_format: take_str(&mut body, "file_format")?,
        table_format: take_str(&mut body, "table_format")?,
        merge_strategy,
        stage_data_deduplicated: take_bool(&mut body, "x-stage-data-deduplicated")?,
        boundary_timestamp,
        seen_data,
        description: take_str(&mut body, "description")?,
        extra: body,
    })
}

fn parse_column(key: &str, mut body: Map<String, Value>) -> Result<Column, String> {
    let name = take_str(&mut body, "name")?.unwrap_or_else(|| key.to_string());
    if name != key {
        return Err(format!("is stored under `{key}` but named `{name}`"));
    }
    if name.is_empty() {
        return Err("has an empty name".into());
    }
    let data_type = take_str(&mut body, "data_type")?.map(|s| s.parse()).transpose()?;
    let nullable = match body.remove("nullable") {
        None | Some(Value::Null) => true,
        Some(Value::Bool(b)) => b,
        Some(other) => return Err(format!("`nullable` must be true or false, found {other}")),
    };
    let timezone = match body.remove("timezone") {
        None | Some(Value::Null) => true,
        Some(Value::Bool(b)) => b,
        Some(other) => return Err(format!("`timezone` must be true or false, found {other}")),
    };
    let dedup_sort = match take_str(&mut body, "dedup_sort")?.as_deref() {
        None => None,
        Some("asc") => Some(SortOrder::Asc),
        Some("desc") => Some(SortOrder::Desc),
        Some(other) => return Err(format!("`dedup_sort` must be \"asc\" or \"desc\", found `{other}`")),
    };
    Ok(Column {
        name,
        data_type,
        nullable,
        precision: take_u32(&mut body, "precision")?,
        scale: take_u32(&mut body, "scale")?,
        timezone,
        primary_key: take_bool(&mut body, "primary_key")?,
        merge_key: take_bool(&mut body, "merge_key")?,
        unique: take_bool(&mut body, "unique")?,
        row_key: take_bool(&mut body, "row_key")?,
        parent_key: take_bool(&mut body, "parent_key")?,
        root_key: take_bool(&mut body, "root_key")?,
        hard_delete: take_bool(&mut body, "hard_delete")?,
        dedup_sort,
        valid_from: take_bool(&mut body, "x-valid-from")?,
        valid_to: take_bool(&mut body, "x-valid-to")?,
        row_version: take_bool(&mut body, "x-row-version")?,
        partition: take_bool(&mut body, "partition")?,
        cluster: take_bool(&mut body, "cluster")?,
        sort: take_bool(&mut body, "sort")?,
        description: take_str(&mut body, "description")?,
        extra: body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCHEMA: &str = r#"{
      "version": 3, "version_hash": "abc=", "engine_version": 11, "name": "s",
      "tables": {
        "_dlt_loads": {"name": "_dlt_loads", "write_disposition": "skip",
                       "columns": {"load_id": {"name": "load_id", "data_type": "text", "nullable": false}}},
        "users": {"name": "users", "write_disposition": "merge", "x-merge-strategy": "upsert",
                  "x-normalizer": {"seen-data": true}, "file_format": "parquet",
                  "columns": {
                    "id": {"name": "id", "data_type": "bigint", "nullable": false, "primary_key": true},
                    "upd": {"name": "upd", "data_type": "timestamp", "dedup_sort": "desc", "timezone": false, "partition": true},
                    "gone": {"name": "gone"},
                    "_dlt_id": {"name": "_dlt_id", "data_type": "text", "nullable": false, "unique": true, "row_key": true}
                  }},
        "users__tags": {"name": "users__tags", "parent": "users", "table_format": "delta",
                        "columns": {"value": {"name": "value", "data_type": "text"}}},
        "users__tags__x": {"name": "users__tags__x", "parent": "users__tags", "columns": {}}
      }}"#;

    #[test]
    fn parses_tables_columns_and_inheritance() {
        let s = Schema::from_json(SCHEMA, "schema.json").unwrap();
        assert_eq!(s.version, 3);
        let users = s.table("users").unwrap();
        assert_eq!(
            users.columns.keys().collect::<Vec<_>>(),
            ["id", "upd", "gone", "_dlt_id"]
        );
        assert!(users.seen_data);
        assert_eq!(users.primary_key()[0].name, "id");
        assert_eq!(users.columns["upd"].dedup_sort, Some(SortOrder::Desc));
        assert!(!users.columns["upd"].timezone);
        assert!(users.columns["upd"].partition && !users.columns["upd"].cluster);
        assert!(!users.columns["gone"].is_complete());
        assert_eq!(users.complete_columns().count(), 3);
        let grandchild = s.table("users__tags__x").unwrap();
        assert_eq!(s.root_of(grandchild).name, "users");
        assert_eq!(s.write_disposition(grandchild), WriteDisposition::Merge);
        assert_eq!(s.merge_strategy(grandchild), MergeStrategy::Upsert);
        // Formats come from the nearest ancestor that has them, as dlt prepares a load table.
        assert_eq!(grandchild.file_format.as_deref(), Some("parquet"));
        assert_eq!(grandchild.table_format.as_deref(), Some("delta"));
        assert_eq!(users.table_format, None);
        let chain: Vec<_> = s.table_chain(users).iter().map(|t| t.name.as_str()).collect();
        assert_eq!(chain, ["users", "users__tags", "users__tags__x"]);
        assert_eq!(s.data_tables().count(), 1);
    }

    #[test]
    fn rejects_bad_schemas_with_the_place_named() {
        let err = Schema::from_json("{", "pkg/schema.json").unwrap_err().to_string();
        assert!(err.contains("pkg/schema.json"), "{err}");
        let bad_type = SCHEMA.replace("\"bigint\"", "\"int128\"");
        let err = Schema::from_json(&bad_type, "schema.json").unwrap_err().to_string();
        assert!(
            err.contains("users") && err.contains("id") && err.contains("int128"),
            "{err}"
        );
        let orphan = SCHEMA.replace("\"parent\": \"users\"", "\"parent\": \"nobody\"");
        let err = Schema::from_json(&orphan, "schema.json").unwrap_err().to_string();
        assert!(err.contains("nobody"), "{err}");
        let newer = SCHEMA.replace("\"engine_version\": 11", "\"engine_version\": 12");
        assert!(Schema::from_json(&newer, "schema.json").is_err());
        let bad_disp = SCHEMA.replace("\"merge\"", "\"upsertish\"");
        let err = Schema::from_json(&bad_disp, "schema.json").unwrap_err().to_string();
        assert!(err.contains("upsertish"), "{err}");
    }
}
