//! # berth-plan
//!
//! Load planning. For a package, [`PackagePlan`] decides which table chains load into the final
//! dataset and which into this load's staging dataset ([`staging_dataset_name`]), what is emptied
//! before the jobs run, and the follow-up that finishes a chain: replace from staging, or merge
//! (delete-insert, upsert, insert-only, scd2).
//!
//! A follow-up is built once as [`FollowupOp`]s over DataFusion logical plans ([`followup`]), then
//! either lowered to a dialect's statements ([`lower`]: sqlparser ASTs whose SELECT bodies and
//! predicates DataFusion's unparser prints in the destination's [`SqlDialect`]) or executed by
//! DataFusion on in-memory Arrow tables ([`exec`]). [`dialects`] holds the warehouse dialects.
//!
//! ```no_run
//! use berth_model::{LoadPackage, PackageLocation};
//! use berth_plan::{PackagePlan, PlanCapabilities, PlanOptions};
//!
//! # async fn example(dialect: berth_plan::SqlDialect) -> Result<(), Box<dyn std::error::Error>> {
//! let package = LoadPackage::open(PackageLocation::parse("load/normalized/1795379914.2803686")?).await?;
//! let caps = PlanCapabilities { replace_strategies: vec![Default::default()], merge_strategies: vec![] };
//! let plan = PackagePlan::new(&package, &PlanOptions::new("my_dataset"), &caps)?;
//! for statement in plan.init_statements(&dialect) {
//!     println!("{statement};");
//! }
//! # Ok(())
//! # }
//! ```

pub mod conditions;
mod dialect;
pub mod dialects;
mod error;
pub mod exec;
pub mod followup;
pub mod hints;
pub mod keys;
mod load;
pub mod lower;
pub mod sql;
mod statement;
pub mod widen;

pub use dialect::{CaseFold, CatalogStyle, LiteralEscapes, NoQualify, OverwriteStyle, SqlDialect, TypeMapper};
pub use error::{Error, Result};
pub use followup::{FinalState, FollowupOp, TableRef};
pub use load::{
    ALL_REPLACE_STRATEGIES, ChainAction, ChainPlan, PLANNED_MERGE_STRATEGIES, PackagePlan, PlanCapabilities,
    PlanOptions, STAGING_SUFFIX, Staging, staging_dataset_name,
};
pub use statement::{SqlStatement, statements};

/// The sqlparser version berth builds statements with (DataFusion's).
pub use datafusion::sql::sqlparser;
