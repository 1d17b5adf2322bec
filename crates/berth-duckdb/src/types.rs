//! dlt types as DuckDB column types and back (reference §6.2).

use berth_model::{Column, DataType, Table};
use berth_plan::TypeMapper;
use berth_plan::sqlparser::ast::DataType as SqlType;

/// dlt's DuckDB type mapping.
#[derive(Debug, Default)]
pub struct DuckDbTypeMapper;

use berth_plan::sql::type_named as named;

impl TypeMapper for DuckDbTypeMapper {
    fn to_destination(&self, column: &Column, _table: &Table) -> berth_plan::Result<SqlType> {
        let data_type = column.data_type.unwrap_or(DataType::Text);
        Ok(match data_type {
            DataType::Text => named("VARCHAR", &[]),
            DataType::Double => named("DOUBLE", &[]),
            DataType::Bool => named("BOOLEAN", &[]),
            DataType::Timestamp if column.timezone => named("TIMESTAMP WITH TIME ZONE", &[]),
            DataType::Timestamp => match column.precision {
                Some(0) => named("TIMESTAMP_S", &[]),
                Some(p) if p <= 3 => named("TIMESTAMP_MS", &[]),
                Some(p) if p > 6 => named("TIMESTAMP_NS", &[]),
                _ => named("TIMESTAMP", &[]),
            },
            DataType::Bigint => match column.precision {
                Some(p) if p <= 8 => named("TINYINT", &[]),
                Some(p) if p <= 16 => named("SMALLINT", &[]),
                Some(p) if p <= 32 => named("INTEGER", &[]),
                Some(p) if p > 64 => named("HUGEINT", &[]),
                _ => named("BIGINT", &[]),
            },
            DataType::Binary => named("BLOB", &[]),
            DataType::Json => named("JSON", &[]),
            DataType::Decimal => match (column.precision, column.scale) {
                (Some(p), s) => named("DECIMAL", &[p.min(38), s.unwrap_or(0).min(p.min(38))]),
                (None, _) => named("DECIMAL", &[38, 9]),
            },
            DataType::Wei => named("DECIMAL", &[38, 0]),
            DataType::Date => named("DATE", &[]),
            DataType::Time => named("TIME", &[]),
        })
    }

    fn to_dlt_type(&self, db_type: &str, precision: Option<u32>, scale: Option<u32>) -> Option<DataType> {
        let t = db_type.trim().to_ascii_uppercase();
        Some(if t.starts_with("VARCHAR") || t == "TEXT" || t == "UUID" {
            DataType::Text
        } else if t == "JSON" {
            DataType::Json
        } else if matches!(t.as_str(), "DOUBLE" | "FLOAT" | "REAL") {
            DataType::Double
        } else if t == "BOOLEAN" {
            DataType::Bool
        } else if t.starts_with("TIMESTAMP") {
            DataType::Timestamp
        } else if t.starts_with("TIME") {
            DataType::Time
        } else if t == "DATE" {
            DataType::Date
        } else if matches!(
            t.as_str(),
            "TINYINT"
                | "SMALLINT"
                | "INTEGER"
                | "BIGINT"
                | "HUGEINT"
                | "UTINYINT"
                | "USMALLINT"
                | "UINTEGER"
                | "UBIGINT"
        ) {
            DataType::Bigint
        } else if t == "BLOB" {
            DataType::Binary
        } else if t.starts_with("DECIMAL") || t.starts_with("NUMERIC") {
            if (precision, scale) == (Some(38), Some(0)) || t.replace(' ', "") == "DECIMAL(38,0)" {
                DataType::Wei
            } else {
                DataType::Decimal
            }
        } else {
            return None;
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_both_ways() {
        let m = DuckDbTypeMapper;
        let t = berth_destination::system_table("_dlt_loads").unwrap();
        let mut ts = Column::new("ts", DataType::Timestamp);
        assert_eq!(
            m.to_destination(&ts, &t).unwrap().to_string(),
            "TIMESTAMP WITH TIME ZONE"
        );
        ts.timezone = false;
        ts.precision = Some(9);
        assert_eq!(m.to_destination(&ts, &t).unwrap().to_string(), "TIMESTAMP_NS");
        let dec = Column::new("d", DataType::Decimal);
        assert_eq!(m.to_destination(&dec, &t).unwrap().to_string(), "DECIMAL(38, 9)");
        let small = Column::new("i", DataType::Bigint).with_precision(16);
        assert_eq!(m.to_destination(&small, &t).unwrap().to_string(), "SMALLINT");
        assert_eq!(
            m.to_dlt_type("DECIMAL(38,9)", Some(38), Some(9)),
            Some(DataType::Decimal)
        );
        assert_eq!(m.to_dlt_type("DECIMAL(38,0)", Some(38), Some(0)), Some(DataType::Wei));
        assert_eq!(
            m.to_dlt_type("TIMESTAMP WITH TIME ZONE", None, None),
            Some(DataType::Timestamp)
        );
        assert_eq!(m.to_dlt_type("TIME", None, None), Some(DataType::Time));
        assert_eq!(m.to_dlt_type("INTEGER", Some(32), Some(0)), Some(DataType::Bigint));
        assert_eq!(m.to_dlt_type("GEOMETRY", None, None), None);
    }
}
