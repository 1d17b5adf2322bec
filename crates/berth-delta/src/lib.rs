//! The lake destination: dlt packages into Delta tables on disk and in buckets (S3, GCS, Azure),
//! every disposition executed by DataFusion over Delta scans, exactly once.
//!
//! ```text
//! berth load --destination delta:/data/lake          pipeline/load/normalized
//! berth load --destination delta:s3://bucket/lake    pipeline/load/normalized
//! ```
//!
//! - **Layout** as dlt's `filesystem` destination with `table_format="delta"`: a Delta table per
//!   data table at `<root>/<dataset>/<table>/`, and dlt's bookkeeping as files
//!   ([`bookkeeping`]), so dlt reads a lake berth loaded (and loads it next).
//! - **Engine**: delta-rs (`deltalake-core`) on berth's DataFusion, arrow and object_store. Job
//!   files stream through berth's readers into Delta data files ([`write`]); follow-ups — replace,
//!   delete-insert, upsert, insert-only, scd2, cdc, with nested tables — are the plans the SQL
//!   destinations lower, run by DataFusion ([`followup`]).
//! - **Exactly once**: every commit carries a Delta application transaction
//!   (`berth:<load id>:job:<job id>` for a job, its version the rows; `…:followup:<root>:<k>` for
//!   the `k`-th follow-up commit of a table): the journal lives in the table's own log, a rerun
//!   after a crash skips what committed, and two writers committing the same one conflict. The
//!   `_dlt_loads` file, written last, marks the package loaded.
//! - **Atomic replace**: a replace is one overwrite commit per table (readers never see it
//!   empty); a delete and the insert after it are one commit.
//! - Loads of one package are serialized by a lease object in the lake; loads that replace or
//!   merge a table take a lease on it (appends commute and need none).
//!
//! - **`berth plan`** for a lake ([`plan`]): the same program, recorded — commits with their
//!   transactions, the follow-up's steps grouped into the commits they land in.
//! - **Compaction** on request ([`compact`], `berth compact`): small data files merged into
//!   files of the target size, one commit per table, no row changed.
//!
//! Iceberg is out of scope: iceberg-rust writes appends only and pins another DataFusion.

pub mod bookkeeping;
pub mod compact;
mod executor;
pub mod followup;
pub mod lake;
pub mod plan;
pub mod types;
pub mod write;

pub use compact::{CompactOptions, TableCompaction};
pub use executor::{DeltaExecutor, SCHEME, delta_capabilities, delta_dialect, is_delta_url};
pub use lake::Lake;
