//! The hot paths of a load, each measured alone (see the crate docs). Run against the saved
//! baseline with `scripts/bench-hot-paths`, save a new one with `scripts/bench-hot-paths --save`.

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::DataType;
use berth::loader::explain::{ExplainOptions, explain};
use berth::model::read::{self, ReadOptions};
use berth::model::{JobFile, JobState, LoadPackage, PackageLocation};
use berth::plan::PlanOptions;
use berth::postgres::copy::{self, PgType};
use berth_bench::synth::{Shape, SyntheticPackage};
use bytes::BytesMut;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use futures::StreamExt;

/// Rows of each generated package: large enough for several batches, small enough for seconds.
const SHAPES: [(Shape, u64); 2] = [(Shape::Narrow, 200_000), (Shape::Wide, 20_000)];

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// A generated package of `shape`, opened, and its one job file.
fn package(runtime: &tokio::runtime::Runtime, dir: &Path, shape: &Shape, rows: u64) -> (LoadPackage, JobFile) {
    let folder = SyntheticPackage::new(shape.clone(), rows)
        .with_row_group_rows(65_536)
        .write(dir.join(shape.name()))
        .expect("generate the package");
    let location = PackageLocation::parse(&folder.to_string_lossy()).expect("package location");
    let package = runtime.block_on(LoadPackage::open(location)).expect("open the package");
    let job = package.jobs_in(JobState::New).next().expect("a job").clone();
    (package, job)
}

fn decode(c: &mut Criterion) {
    let runtime = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut group = c.benchmark_group("decode");
    for (shape, rows) in SHAPES {
        let (package, job) = package(&runtime, dir.path(), &shape, rows);
        group.throughput(Throughput::Bytes(job.size));
        group.bench_function(shape.name(), |b| {
            b.iter(|| {
                runtime.block_on(async {
                    let mut reader = read::open_job(&package, &job, &ReadOptions::default())
                        .await
                        .expect("open the job");
                    let mut decoded = 0;
                    while let Some(batch) = reader.stream.next().await {
                        decoded += batch.expect("a batch").num_rows();
                    }
                    assert_eq!(decoded as u64, rows);
                })
            });
        });
    }
    group.finish();
}

/// The PostgreSQL column type berth's tables give each Arrow type of the generated shapes.
fn pg_type(data_type: &DataType) -> PgType {
    match data_type {
        DataType::Int64 => PgType::Int8,
        DataType::Float64 => PgType::Float8,
        DataType::Boolean => PgType::Bool,
        DataType::Timestamp(_, Some(_)) => PgType::Timestamptz,
        DataType::Timestamp(_, None) => PgType::Timestamp,
        DataType::Date32 => PgType::Date,
        DataType::Decimal128(..) => PgType::Numeric,
        _ => PgType::Text,
    }
}

fn copy_encode(c: &mut Criterion) {
    let runtime = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut group = c.benchmark_group("copy_encode");
    for (shape, rows) in SHAPES {
        let (package, job) = package(&runtime, dir.path(), &shape, rows);
        let batches: Vec<RecordBatch> = runtime
            .block_on(read::read_job_to_end(&package, &job))
            .expect("decode the job");
        let schema = batches[0].schema();
        let targets: Vec<(String, PgType)> = schema
            .fields()
            .iter()
            .map(|f| (f.name().clone(), pg_type(f.data_type())))
            .collect();
        group.throughput(Throughput::Elements(rows));
        let mut out = BytesMut::with_capacity(1 << 20);
        group.bench_function(shape.name(), |b| {
            b.iter(|| {
                for batch in &batches {
                    out.clear();
                    copy::encode_batch(batch, &targets, &mut out).expect("encode");
                    black_box(out.len());
                }
            });
        });
    }
    group.finish();
}

fn plan(c: &mut Criterion) {
    let runtime = runtime();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../testdata/dlt/postgres/merge_delete_insert/packages/1_1795379924.5126293");
    let location = PackageLocation::parse(&fixture.to_string_lossy()).expect("fixture location");
    let package = Arc::new(runtime.block_on(LoadPackage::open(location)).expect("open the fixture"));
    let mut group = c.benchmark_group("plan");
    for destination in ["postgres", "duckdb", "snowflake", "bigquery"] {
        let (dialect, caps) = berth::planning_dialect(destination).expect("dialect");
        let options = ExplainOptions {
            plan: PlanOptions {
                dataset: "bench".into(),
                replace_strategy: caps.replace_strategies.first().copied().unwrap_or_default(),
                widen_types: false,
            },
            assume_empty: false,
            jobs: None,
        };
        group.bench_function(destination, |b| {
            b.iter(|| {
                black_box(
                    runtime
                        .block_on(explain(&package, &dialect, &caps, &options))
                        .expect("plan"),
                )
            });
        });
    }
    group.finish();
}

criterion_group!(hot_paths, decode, copy_encode, plan);
criterion_main!(hot_paths);
