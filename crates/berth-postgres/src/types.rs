//! dlt types as PostgreSQL column types and back (reference §6.2).

use berth_model::{Column, DataType, Table};
use berth_plan::TypeMapper;
use berth_plan::sqlparser::ast::DataType as SqlType;

/// dlt's PostgreSQL type mapping.
#[derive(Debug, Default)]
pub struct PostgresTypeMapper;

use berth_plan::sql::type_named as named;

impl TypeMapper for PostgresTypeMapper {
    fn to_destination(&self, column: &Column, table: &Table) -> berth_plan::Result<SqlType> {
        Ok(match column.data_type.unwrap_or(DataType::Text) {
            DataType::Text => match column.precision {
                Some(n) => named("varchar", &[n]),
                None => named("varchar", &[]),
            },
            DataType::Double => named("double precision", &[]),
            DataType::Bool => named("boolean", &[]),
            DataType::Timestamp => {
                let zone = if column.timezone {
                    "with time zone"
                } else {
                    "without time zone"
                };
                match column.precision {
                    Some(p) => named(&format!("timestamp ({}) {zone}", p.min(6)), &[]),
                    None => named(&format!("timestamp {zone}"), &[]),
                }
            }
            DataType::Bigint => match column.precision {
                Some(p) if p <= 16 => named("smallint", &[]),
                Some(p) if p <= 32 => named("integer", &[]),
                _ => named("bigint", &[]),
            },
            DataType::Binary => named("bytea", &[]),
            // dlt creates `json` for parquet tables (its ADBC path cannot write jsonb) and `jsonb`
            // otherwise; berth writes both, and keeps dlt's choice so datasets stay alike.
            DataType::Json if table.file_format.as_deref() == Some("parquet") => named("json", &[]),
            DataType::Json => named("jsonb", &[]),
            DataType::Decimal => match (column.precision, column.scale) {
                (Some(p), s) => named("numeric", &[p, s.unwrap_or(0)]),
                (None, _) => named("numeric", &[38, 9]),
            },
            DataType::Wei => named("numeric", &[156, 78]),
            DataType::Date => named("date", &[]),
            DataType::Time => match column.precision {
                Some(p) => named(&format!("time ({}) without time zone", p.min(6)), &[]),
                None => named("time without time zone", &[]),
            },
        })
    }

    fn to_dlt_type(&self, db_type: &str, precision: Option<u32>, scale: Option<u32>) -> Option<DataType> {
        Some(match db_type {
            "character varying" | "varchar" | "text" | "character" | "geometry" => DataType::Text,
            "json" | "jsonb" => DataType::Json,
            "double precision" | "real" => DataType::Double,
            "boolean" => DataType::Bool,
            t if t.starts_with("timestamp") => DataType::Timestamp,
            "bigint" | "integer" | "smallint" => DataType::Bigint,
            "bytea" => DataType::Binary,
            "numeric" if (precision, scale) == (Some(156), Some(78)) => DataType::Wei,
            "numeric" => DataType::Decimal,
            t if t.starts_with("time") => DataType::Time,
            "date" => DataType::Date,
            _ => return None,
        })
    }
}
