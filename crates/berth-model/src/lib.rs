//! # berth-model
//!
//! dlt load packages as berth sees them: the stored schema ([`Schema`]), the package state, job
//! file names, and readers that turn job files (Parquet, Arrow IPC, JSONL, CSV, `insert_values`)
//! into bounded streams of Arrow record batches. Packages live on the local disk or in any
//! [`object_store::ObjectStore`].
//!
//! ```no_run
//! use berth_model::{LoadPackage, PackageLocation, read};
//! use futures::TryStreamExt;
//!
//! # async fn example() -> berth_model::Result<()> {
//! let package = LoadPackage::open(PackageLocation::parse("load/normalized/1795379913.1787062")?).await?;
//! for job in &package.jobs {
//!     let mut reader = read::open_job(&package, job, &read::ReadOptions::default()).await?;
//!     while let Some(batch) = reader.stream.try_next().await? {
//!         println!("{}: {} rows", job.name.table, batch.num_rows());
//!     }
//! }
//! # Ok(())
//! # }
//! ```
//!
//! Main types: [`LoadPackage`], [`PackageLocation`], [`Schema`], [`Table`], [`Column`],
//! [`JobFileName`], [`read::JobReader`].

mod discover;
mod error;
pub mod job;
pub mod lease;
mod load_id;
pub mod naming;
pub mod package;
pub mod read;
pub mod redact;
pub mod schema;
mod secret;
pub mod size;
pub mod state;
pub mod store;
pub mod task;
pub mod typed_json;

pub use discover::discover_packages;
pub use error::{Error, Result};
pub use job::{FileFormat, JobFileName};
pub use load_id::LoadId;
pub use naming::NamingConvention;
pub use package::{
    FailureKind, JobFailure, JobFile, JobState, LoadPackage, PackageLocation, PendingTransition, TransitionState,
};
pub use schema::{Column, DataType, MergeStrategy, ReplaceStrategy, Schema, SortOrder, Table, WriteDisposition};
pub use secret::Secret;
pub use state::{PackageState, RestoreState};
pub use store::{LoadSettings, StorageConfig, open_store};
