//! # berth-benches
//!
//! Criterion benchmarks of the paths every row goes through, each small enough to run in seconds
//! and compared against a saved baseline (`scripts/bench-hot-paths`):
//!
//! - `decode`: a Parquet job file to Arrow batches through `berth::model::read` (narrow and wide
//!   rows), as every destination reads it;
//! - `copy_encode`: Arrow batches to PostgreSQL's binary COPY format;
//! - `plan`: a merge package planned and lowered to SQL for PostgreSQL, DuckDB, Snowflake and
//!   BigQuery (DataFusion plans through the unparser).
//!
//! `berth bench` measures whole loads against a destination; these measure the parts in isolation
//! so a change that slows one shows up without a server.
