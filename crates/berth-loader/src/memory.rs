//! The in-memory executor: load programs run by DataFusion on Arrow tables held in memory
//! ([`MemoryCatalog`]), through the same loop as every destination. It is the reference result
//! the SQL destinations are tested against (the same plans, no SQL in between).
//!
//! ```no_run
//! use std::sync::Arc;
//! use berth_loader::{Loader, LoaderOptions, memory::MemoryExecutor};
//! use berth_model::PackageLocation;
//!
//! # async fn example() -> berth_loader::Result<()> {
//! let memory = Arc::new(MemoryExecutor::new());
//! let options = LoaderOptions { dataset: Some("shop".into()), ..LoaderOptions::default() };
//! let loader = Loader::with_executor(Arc::clone(&memory) as _).with_options(options);
//! loader.load(PackageLocation::parse("load/normalized/1795379913.1787062")?).await?;
//! let catalog = memory.catalog().await;
//! # Ok(())
//! # }
//! ```

use std::collections::HashSet;

use async_trait::async_trait;
use berth_destination::MigrationReport;
use berth_model::{LoadId, LoadPackage, read};
use berth_plan::exec::{MemoryCatalog, memory_capabilities, memory_dialect};
use berth_plan::followup::PlanBuilder;
use berth_plan::{ChainAction, FinalState, PackagePlan, PlanOptions, SqlDialect, TableRef};
use futures::StreamExt;

use crate::executor::{ChainCall, Executor, StepResult, Unit, UnitEnd};
use crate::program::LoadProgram;

/// Runs load programs on a [`MemoryCatalog`]. Packages stay as they are (it is not their
/// destination of record).
#[derive(Debug)]
pub struct MemoryExecutor {
    catalog: tokio::sync::Mutex<MemoryCatalog>,
    /// `(dataset, load id)` of the committed loads.
    loaded: std::sync::Mutex<HashSet<(String, LoadId)>>,
    dialect: SqlDialect,
}

impl Default for MemoryExecutor {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryExecutor {
    /// An empty catalog.
    pub fn new() -> Self {
        Self {
            catalog: tokio::sync::Mutex::new(MemoryCatalog::new()),
            loaded: std::sync::Mutex::new(HashSet::new()),
            dialect: memory_dialect(),
        }
    }

    /// The tables as the loads left them.
    pub async fn catalog(&self) -> tokio::sync::MutexGuard<'_, MemoryCatalog> {
        self.catalog.lock().await
    }

    fn loaded(&self) -> std::sync::MutexGuard<'_, HashSet<(String, LoadId)>> {
        self.loaded.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[async_trait]
impl Executor for MemoryExecutor {
    fn describe(&self) -> String {
        "memory".into()
    }

    fn writes(&self) -> bool {
        false
    }

    fn dialect(&self) -> Option<&SqlDialect> {
        Some(&self.dialect)
    }

    fn plan(&self, package: &LoadPackage, options: &PlanOptions) -> crate::Result<PackagePlan> {
        Ok(PackagePlan::new(package, options, &memory_capabilities())?)
    }

    async fn is_loaded(&self, package: &LoadPackage, dataset: &str) -> StepResult<bool> {
        Ok(self.loaded().contains(&(dataset.to_string(), package.load_id.clone())))
    }

    /// Creates the chains' final and staging tables from the schema, or adds the columns they
    /// lack.
    async fn migrate(&self, package: &LoadPackage, plan: &PackagePlan) -> StepResult<MigrationReport> {
        let builder = PlanBuilder::new(&self.dialect);
        let mut catalog = self.catalog.lock().await;
        let mut report = MigrationReport::default();
        for chain in &plan.chains {
            for name in &chain.tables {
                let table = package
                    .schema
                    .table(name)
                    .ok_or_else(|| berth_plan::Error::Unsupported {
                        message: format!("table `{name}` is not in the package schema"),
                    })?;
                let schema = builder.arrow_schema(table);
                let at = TableRef::new(&plan.dataset, name);
                if catalog.table(&at).is_none() {
                    report.created_tables.push(format!("{}.{name}", plan.dataset));
                }
                catalog.create_table(at, &schema)?;
                if chain.action.loads_to_staging() {
                    catalog.create_table(TableRef::new(&plan.staging_dataset, name), &schema)?;
                }
            }
        }
        Ok(report)
    }

    async fn prepare(&self, _: &LoadPackage, program: &LoadProgram) -> StepResult<()> {
        let mut catalog = self.catalog.lock().await;
        for chain in program.chains.iter().filter(|c| c.empties()) {
            let dataset = match chain.plan.action {
                ChainAction::TruncateAndInsert => &program.plan.dataset,
                _ => &program.plan.staging_dataset,
            };
            for name in &chain.plan.tables {
                catalog.clear(&TableRef::new(dataset, name))?;
            }
        }
        Ok(())
    }

    async fn load_unit(&self, unit: Unit<'_>) -> StepResult<UnitEnd> {
        let mut reader = read::open_job(unit.package, &unit.job.job, unit.read_options).await?;
        let mut batches = Vec::new();
        let mut rows = 0;
        while let Some(batch) = reader.stream.next().await {
            let batch = batch?;
            rows += batch.num_rows() as u64;
            batches.push(batch);
        }
        let at = TableRef::new(&unit.job.dataset, &unit.job.job.name.table);
        self.catalog.lock().await.append(&at, batches)?;
        Ok(UnitEnd::Loaded(berth_destination::JobMetrics {
            keys: None,
            rows,
            bytes: unit.job.job.size,
            timings: berth_destination::JobTimings::default(),
        }))
    }

    async fn measure(&self, at: ChainCall<'_>, mut state: FinalState) -> StepResult<FinalState> {
        let (program, chain) = (at.program, at.chain);
        let catalog = self.catalog.lock().await;
        for name in &chain.plan.tables {
            let at = TableRef::new(program.dataset(), name);
            if catalog.table(&at).is_none_or(|t| t.rows() == 0) {
                state.empty_tables.insert(name.clone());
            }
        }
        Ok(state)
    }

    async fn followup(&self, at: ChainCall<'_>, state: &FinalState) -> StepResult<usize> {
        let (package, program, chain) = (at.package, at.program, at.chain);
        let ops = program.plan.followup_ops(&chain.plan, package, &self.dialect, state)?;
        self.catalog.lock().await.run(&ops).await?;
        Ok(ops.len())
    }

    async fn commit(&self, package: &LoadPackage, program: &LoadProgram) -> StepResult<()> {
        self.loaded()
            .insert((program.dataset().to_string(), package.load_id.clone()));
        Ok(())
    }

    async fn clean_up(&self, dataset: &str, load_id: &str) {
        let staging = berth_plan::staging_dataset_name(dataset, load_id);
        self.catalog.lock().await.drop_dataset(&staging);
    }
}
