//! Conformance: every dlt data type, with edge values, survives a load unchanged.

use std::path::Path;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BinaryArray, BooleanArray, Date32Array, Decimal128Array, Float64Array, Int16Array, Int32Array,
    Int64Array, RecordBatch, StringArray, Time64MicrosecondArray, TimestampMicrosecondArray,
};
use arrow::datatypes::{Field, Schema};
use berth::destination::Destination;
use berth::loader::{Loader, PackageStatus};
use berth::model::PackageLocation;
use serde_json::{Value, json};

use crate::{diff_rows, expected_rows_from_values, table_rows};

const SCHEMA: &str = r#"{"name": "edge", "version": 1, "version_hash": "edge-v1", "engine_version": 11,
  "tables": {"edge": {"name": "edge", "write_disposition": "append", "file_format": "parquet",
    "x-normalizer": {"seen-data": true},
    "columns": {
      "k": {"name": "k", "data_type": "bigint", "nullable": false},
      "i64": {"name": "i64", "data_type": "bigint"},
      "i32": {"name": "i32", "data_type": "bigint", "precision": 32},
      "i16": {"name": "i16", "data_type": "bigint", "precision": 16},
      "d": {"name": "d", "data_type": "double"},
      "dec": {"name": "dec", "data_type": "decimal", "precision": 38, "scale": 10},
      "txt": {"name": "txt", "data_type": "text"},
      "b": {"name": "b", "data_type": "bool"},
      "ts": {"name": "ts", "data_type": "timestamp"},
      "tsn": {"name": "tsn", "data_type": "timestamp", "timezone": false},
      "dt": {"name": "dt", "data_type": "date"},
      "tm": {"name": "tm", "data_type": "time"},
      "bin": {"name": "bin", "data_type": "binary"},
      "j": {"name": "j", "data_type": "json"}
    }}}}"#;

const COLUMNS: [&str; 14] = [
    "k", "i64", "i32", "i16", "d", "dec", "txt", "b", "ts", "tsn", "dt", "tm", "bin", "j",
];

fn batch() -> RecordBatch {
    let utc = Some(Arc::<str>::from("UTC"));
    let ts = |v: Vec<Option<i64>>| TimestampMicrosecondArray::from(v);
    let columns: Vec<(&str, ArrayRef)> = vec![
        ("k", Arc::new(Int64Array::from(vec![1, 2, 3, 4]))),
        (
            "i64",
            Arc::new(Int64Array::from(vec![Some(i64::MIN), Some(i64::MAX), Some(0), None])),
        ),
        (
            "i32",
            Arc::new(Int32Array::from(vec![Some(i32::MIN), Some(i32::MAX), Some(-1), None])),
        ),
        (
            "i16",
            Arc::new(Int16Array::from(vec![Some(i16::MIN), Some(i16::MAX), Some(7), None])),
        ),
        (
            "d",
            Arc::new(Float64Array::from(vec![
                Some(f64::NAN),
                Some(f64::INFINITY),
                Some(f64::NEG_INFINITY),
                Some(-0.125),
            ])),
        ),
        (
            "dec",
            Arc::new(
                Decimal128Array::from(vec![
                    Some(99_999_999_999_999_999_999_999_999_999_999_999_999i128),
                    Some(-99_999_999_999_999_999_999_999_999_999_999_999_999i128),
                    Some(1),
                    None,
                ])
                .with_precision_and_scale(38, 10)
                .expect("decimal"),
            ),
        ),
        (
            "txt",
            Arc::new(StringArray::from(vec![
                Some(""),
                Some("żółw 🐢 \"quoted\" 'single' \\ back"),
                Some("x".repeat(10_000).as_str()),
                None,
            ])),
        ),
        (
            "b",
            Arc::new(BooleanArray::from(vec![Some(true), Some(false), None, Some(true)])),
        ),
        (
            "ts",
            Arc::new(
                ts(vec![
                    Some(-2_208_988_800_000_000),
                    Some(253_402_300_799_999_999),
                    Some(0),
                    None,
                ])
                .with_timezone_opt(utc),
            ),
        ),
        (
            "tsn",
            Arc::new(ts(vec![Some(-1), Some(1_700_000_000_123_456), None, Some(0)])),
        ),
        (
            "dt",
            Arc::new(Date32Array::from(vec![Some(-719_162), Some(2_932_896), Some(0), None])),
        ),
        (
            "tm",
            Arc::new(Time64MicrosecondArray::from(vec![
                Some(0),
                Some(86_399_999_999),
                Some(43_200_000_001),
                None,
            ])),
        ),
        (
            "bin",
            Arc::new(BinaryArray::from(vec![
                Some(&b""[..]),
                Some(&[0u8, 255, 1][..]),
                Some(&vec![7u8; 1 << 20][..]),
                None,
            ])),
        ),
        (
            "j",
            Arc::new(StringArray::from(vec![
                Some(r#"{"a": [1, 2, {"b": null}]}"#),
                Some("[]"),
                Some(r#"{"uni": "ü"}"#),
                None,
            ])),
        ),
    ];
    let fields: Vec<Field> = columns
        .iter()
        .map(|(name, array)| Field::new(*name, array.data_type().clone(), *name != "k"))
        .collect();
    RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns.into_iter().map(|(_, a)| a).collect(),
    )
    .expect("batch")
}

fn expected() -> Vec<Value> {
    let big = "9999999999999999999999999999.9999999999";
    vec![
        json!({"k": 1, "i64": i64::MIN, "i32": i32::MIN, "i16": i16::MIN, "d": "NaN", "dec": big, "txt": "",
               "b": true, "ts": "1900-01-01T00:00:00Z", "tsn": "1969-12-31T23:59:59.999999Z", "dt": "0001-01-01",
               "tm": "00:00:00", "bin": {"$bytes": ""}, "j": {"a": [1, 2, {"b": null}]}}),
        json!({"k": 2, "i64": i64::MAX, "i32": i32::MAX, "i16": i16::MAX, "d": "inf", "dec": format!("-{big}"),
               "txt": "żółw 🐢 \"quoted\" 'single' \\ back", "b": false, "ts": "9999-12-31T23:59:59.999999Z",
               "tsn": "2023-11-14T22:13:20.123456Z", "dt": "9999-12-31", "tm": "23:59:59.999999",
               "bin": {"$bytes": "00ff01"}, "j": []}),
        json!({"k": 3, "i64": 0, "i32": -1, "i16": 7, "d": "-inf", "dec": "0.0000000001", "txt": "x".repeat(10_000),
               "b": null, "ts": "1970-01-01T00:00:00Z", "tsn": null, "dt": "1970-01-01", "tm": "12:00:00.000001",
               "bin": {"$bytes": "07".repeat(1 << 20)}, "j": {"uni": "ü"}}),
        json!({"k": 4, "i64": null, "i32": null, "i16": null, "d": -0.125, "dec": null, "txt": null, "b": true,
               "ts": null, "tsn": "1970-01-01T00:00:00Z", "dt": null, "tm": null, "bin": null, "j": null}),
    ]
}

fn write_package(dir: &Path) -> std::path::PathBuf {
    let package = dir.join("1700000000.5");
    std::fs::create_dir_all(package.join("new_jobs")).expect("mkdir");
    std::fs::write(package.join("schema.json"), SCHEMA).expect("schema");
    let file = std::fs::File::create(package.join("new_jobs/edge.0123456789.0.parquet")).expect("create");
    let batch = batch();
    let mut writer = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None).expect("writer");
    writer.write(&batch).expect("write");
    writer.close().expect("close");
    package
}

/// Loads one Parquet job holding every dlt type's edge values and reads it back unchanged.
pub async fn check_type_round_trip(destination: Arc<dyn Destination>) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let package = write_package(dir.path());
    let location = PackageLocation::parse(&package.to_string_lossy()).map_err(|e| e.to_string())?;
    let summary = Loader::new(Arc::clone(&destination))
        .load(location)
        .await
        .map_err(|e| e.to_string())?;
    if summary.status != PackageStatus::Loaded {
        return Err(format!(
            "edge package ended {:?}: {:?}",
            summary.status,
            summary.failed_jobs().collect::<Vec<_>>()
        ));
    }
    let (actual, types) = table_rows(destination.as_ref(), "edge", "edge", &COLUMNS).await?;
    diff_rows("edge", &actual, &expected_rows_from_values(&expected(), &types))
}
