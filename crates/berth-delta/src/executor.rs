//! [`DeltaExecutor`]: the load program's steps on a lake.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use berth_destination::{
    Error, JobMetrics, JobPart, JobTimings, JournalEntry, JournalKey, LoadLock, MigrationReport, TableLock,
};
use berth_loader::executor::{ChainCall, Executor, StepResult, Unit, UnitEnd};
use berth_loader::program::LoadProgram;
use berth_model::{LoadPackage, ReplaceStrategy, StorageConfig, Table, read};
use berth_plan::followup::{StagedFacts, TableRef, staged_facts_plan};
use berth_plan::{ChainAction, FinalState, PackagePlan, PlanCapabilities, PlanOptions, SqlDialect};
use deltalake_core::DeltaTable;
use deltalake_core::kernel::Action;
use deltalake_core::kernel::engine::arrow_conversion::TryIntoKernel as _;
use deltalake_core::protocol::DeltaOperation;
use futures::StreamExt;

use crate::bookkeeping;
use crate::followup::FollowupRun;
use crate::lake::{Lake, delta_error};
use crate::types;
use crate::write::{self, Commit, WriteSettings};

/// The URL scheme of the lake destination: `delta:<folder or bucket URL>`.
pub const SCHEME: &str = "delta";

/// How often a follow-up that lost a race with another writer is computed again.
const FOLLOWUP_ATTEMPTS: usize = 5;

/// Is `url` a lake destination (`delta:…`)?
pub fn is_delta_url(url: &str) -> bool {
    url.strip_prefix(SCHEME).is_some_and(|rest| rest.starts_with(':'))
}

/// Loads packages into Delta tables: see the crate docs.
#[derive(Debug)]
pub struct DeltaExecutor {
    lake: Lake,
    dialect: SqlDialect,
    settings: WriteSettings,
}

/// The dialect follow-up plans are built in for a lake: names as they are (Delta and dlt's
/// filesystem destination keep case), no table moves (every replace is an overwrite commit).
pub fn delta_dialect() -> SqlDialect {
    SqlDialect {
        name: "delta",
        supports_set_schema: false,
        ..berth_plan::exec::memory_dialect()
    }
}

/// What a lake can do: every replace strategy (staging-optimized, the default, is one overwrite
/// commit per table) and every merge strategy berth plans.
pub fn delta_capabilities() -> PlanCapabilities {
    PlanCapabilities {
        replace_strategies: vec![
            ReplaceStrategy::StagingOptimized,
            ReplaceStrategy::InsertFromStaging,
            ReplaceStrategy::TruncateAndInsert,
        ],
        merge_strategies: berth_plan::PLANNED_MERGE_STRATEGIES.to_vec(),
    }
}

/// dlt's own tables: bookkeeping files in a lake, never Delta tables.
fn is_dlt_table(name: &str) -> bool {
    name.starts_with("_dlt_")
}

impl DeltaExecutor {
    /// The lake at `url` (`delta:/data/lake`, `delta:s3://bucket/lake`, `delta:gs://…`,
    /// `delta:az://…`, `delta:abfss://…`), with bucket options from the environment and `storage`.
    pub fn from_url(url: &str, storage: &StorageConfig) -> berth_destination::Result<Self> {
        let location = url
            .strip_prefix(SCHEME)
            .and_then(|rest| rest.strip_prefix(':'))
            .ok_or_else(|| Error::Config {
                destination: berth_model::redact::redact_url(url),
                reason: "a lake is delta:<folder> or delta:s3://bucket/prefix".into(),
            })?;
        Ok(Self {
            lake: Lake::open(location, storage)?,
            dialect: delta_dialect(),
            settings: WriteSettings::default(),
        })
    }

    /// Data files are cut at about `bytes`.
    pub fn with_target_file_size(mut self, bytes: u64) -> Self {
        self.settings.target_file_size = bytes.max(1 << 20);
        self
    }

    /// The lake.
    pub fn lake(&self) -> &Lake {
        &self.lake
    }

    fn what(dataset: &str, table: &str) -> String {
        format!("{dataset}.{table}")
    }

    /// The table at `dataset.table`, which the migration created.
    async fn existing(&self, dataset: &str, table: &str) -> StepResult<DeltaTable> {
        self.lake.table(dataset, table).await?.ok_or_else(|| {
            Error::Internal(format!(
                "the Delta table {} was not created by the migration",
                Self::what(dataset, table)
            ))
        })
    }

    /// Creates `table`'s Delta table in `dataset`, or adds the columns it lacks; a column whose
    /// type family differs is a clear error.
    async fn migrate_table(&self, dataset: &str, table: &Table, report: &mut MigrationReport) -> StepResult<()> {
        let what = Self::what(dataset, &table.name);
        let wanted = types::delta_schema(table);
        let existing = if let Some(existing) = self.lake.table(dataset, &table.name).await? {
            existing
        } else {
            let fields = wanted
                .fields()
                .iter()
                .map(|f| f.as_ref().try_into_kernel())
                .collect::<std::result::Result<Vec<deltalake_core::kernel::StructField>, _>>()
                .map_err(|e| Error::Internal(format!("{what}: {e}")))?;
            let partitions: Vec<String> = table
                .complete_columns()
                .filter(|c| c.partition)
                .map(|c| c.name.clone())
                .collect();
            let handle = self.lake.new_table(dataset, &table.name)?;
            let created = deltalake_core::operations::create::CreateBuilder::new()
                .with_log_store(handle.log_store())
                .with_table_name(&table.name)
                .with_columns(fields)
                .with_partition_columns(partitions)
                .await;
            match created {
                Ok(_) => {
                    report.created_tables.push(what);
                    return Ok(());
                }
                // Another writer created it meanwhile: evolve theirs.
                Err(e) => match self.lake.table(dataset, &table.name).await? {
                    Some(theirs) => theirs,
                    None => return Err(delta_error(self.lake.display(), &what, e)),
                },
            }
        };
        let found = write::arrow_schema(&existing, &what)?;
        let mut missing = Vec::new();
        for field in wanted.fields() {
            match found.field_with_name(field.name()) {
                Ok(have) if types::compatible(field.data_type(), have.data_type()) => {}
                Ok(have) => {
                    let column = table.columns.get(field.name());
                    return Err(Error::SchemaMismatch {
                        destination: format!("delta:{}", self.lake.display()),
                        table: what,
                        column: field.name().clone(),
                        expected: column.map_or("text", types::dlt_type_name),
                        found: have.data_type().to_string(),
                    });
                }
                Err(_) => missing.push(field.as_ref().clone()),
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        let fields = missing
            .iter()
            .map(|f| f.try_into_kernel())
            .collect::<std::result::Result<Vec<deltalake_core::kernel::StructField>, _>>()
            .map_err(|e| Error::Internal(format!("{what}: {e}")))?;
        report
            .added_columns
            .extend(missing.iter().map(|f| format!("{what}.{}", f.name())));
        existing
            .add_columns()
            .with_fields(fields)
            .await
            .map_err(|e| delta_error(self.lake.display(), &what, e))?;
        Ok(())
    }

    /// Removes every row of `dataset.table` in one commit (when it has any).
    async fn truncate(&self, dataset: &str, table: &str, load_id: &str) -> StepResult<()> {
        let what = Self::what(dataset, table);
        let Some(mut delta) = self.lake.table(dataset, table).await? else {
            return Ok(());
        };
        let removes = write::remove_all(&delta, &what)?;
        if removes.is_empty() {
            return Ok(());
        }
        let commit = Commit {
            app_id: write::app_id(load_id, &format!("truncate:{table}")),
            version: 0,
            operation: DeltaOperation::Delete { predicate: None },
        };
        write::commit(&mut delta, &what, removes, commit).await
    }

    /// The lock `<dataset>/_berth_locks/<parts>`: a file lock in a local lake (released by the
    /// system when the process dies), a lease object in a bucket.
    pub(crate) async fn lock(&self, dataset: &str, parts: &[&str], what: String) -> StepResult<Option<Held>> {
        let mut path = vec![dataset, "_berth_locks"];
        path.extend_from_slice(parts);
        if self.lake.is_local() {
            return Ok(Some(Held::File(self.lake.lock_file(&path, &what).await?)));
        }
        let shown = format!("{}/{}", self.lake.display(), path.join("/"));
        let lease = berth_model::lease::Lease::acquire(
            Arc::clone(self.lake.store()),
            self.lake.path(&path),
            &shown,
            &what,
            berth_model::lease::LeaseOptions::default(),
        )
        .await
        .map_err(Error::from)?;
        Ok(lease.map(Held::Lease))
    }

    async fn run_followup(&self, at: ChainCall<'_>, state: &FinalState) -> StepResult<usize> {
        let (package, program, chain) = (at.package, at.program, at.chain);
        let ops = program.plan.followup_ops(&chain.plan, package, &self.dialect, state)?;
        if ops.is_empty() {
            return Ok(0);
        }
        let load_id = package.load_id.to_string();
        let mut attempt = 1;
        loop {
            let mut run = FollowupRun::new(&self.lake, &self.dialect, self.settings, &load_id, &chain.plan.root);
            match run.run(&ops).await {
                Ok(()) => {
                    tracing::info!(
                        root = %chain.plan.root,
                        commits = run.commits,
                        skipped = run.skipped,
                        "follow-up committed"
                    );
                    return Ok(ops.len());
                }
                Err(e) if e.is_transient() && attempt < FOLLOWUP_ATTEMPTS => {
                    // Another writer committed to a table the step read: compute it again (what
                    // committed already is skipped).
                    tracing::warn!(root = %chain.plan.root, attempt, "follow-up conflicted, computing it again: {e}");
                    tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// A lock of the lake's.
#[derive(Debug)]
pub(crate) enum Held {
    File(std::fs::File),
    Lease(berth_model::lease::Lease),
}

impl Held {
    fn into_load_lock(self) -> LoadLock {
        match self {
            Self::File(file) => LoadLock::new(file),
            Self::Lease(lease) => LoadLock::lease(lease),
        }
    }

    fn into_load_lock_all(held: Vec<Self>) -> LoadLock {
        let (mut files, mut leases) = (Vec::new(), Vec::new());
        for lock in held {
            match lock {
                Self::File(file) => files.push(file),
                Self::Lease(lease) => leases.push(lease),
            }
        }
        if leases.is_empty() {
            LoadLock::new(files)
        } else {
            LoadLock::leases(leases)
        }
    }

    pub(crate) async fn release_all(held: Vec<Self>) {
        for lock in held {
            if let Self::Lease(lease) = lock {
                lease.release().await;
            }
        }
    }
}

#[async_trait]
impl Executor for DeltaExecutor {
    fn describe(&self) -> String {
        format!("{SCHEME}:{}", self.lake.display())
    }

    fn dialect(&self) -> Option<&SqlDialect> {
        Some(&self.dialect)
    }

    fn plan(&self, package: &LoadPackage, options: &PlanOptions) -> berth_loader::Result<PackagePlan> {
        Ok(PackagePlan::new(package, options, &delta_capabilities())?)
    }

    fn default_replace_strategy(&self) -> ReplaceStrategy {
        ReplaceStrategy::StagingOptimized
    }

    /// A lock in the lake (`<dataset>/_berth_locks/loads/<load id>.json`).
    async fn lock_load(&self, package: &LoadPackage, dataset: &str) -> StepResult<Option<LoadLock>> {
        let name = format!("{}.json", package.load_id);
        let what = format!("package {} into {}", package.load_id, self.describe());
        Ok(self
            .lock(dataset, &["loads", &name], what)
            .await?
            .map(Held::into_load_lock))
    }

    /// Locks on the tables the load empties, replaces or merges, in name order; appends commute.
    async fn lock_tables(&self, dataset: &str, tables: &[TableLock]) -> StepResult<Option<LoadLock>> {
        let mut held = Vec::new();
        for lock in TableLock::merged(tables.iter().cloned())
            .into_iter()
            .filter(|t| t.exclusive)
        {
            let name = format!("{}.json", lock.table);
            let what = format!("{}/{dataset}/{}", self.describe(), lock.table);
            match self.lock(dataset, &["tables", &name], what).await {
                Ok(Some(lock)) => held.push(lock),
                Ok(None) => {}
                Err(e) => {
                    Held::release_all(held).await;
                    return Err(e);
                }
            }
        }
        Ok((!held.is_empty()).then(|| Held::into_load_lock_all(held)))
    }

    async fn is_loaded(&self, package: &LoadPackage, dataset: &str) -> StepResult<bool> {
        bookkeeping::is_loaded(&self.lake, package, dataset).await
    }

    /// The jobs whose commit (application transaction `berth:<load id>:job:<job id>`, its
    /// version the rows) is in their table's log.
    async fn journal(&self, package: &LoadPackage, plan: &PackagePlan) -> StepResult<Vec<JournalEntry>> {
        let mut tables: HashMap<(String, String), Option<DeltaTable>> = HashMap::new();
        let mut entries = Vec::new();
        let load_id = package.load_id.to_string();
        for job in package.jobs.iter().filter(|j| j.name.format.is_data()) {
            let name = &job.name.table;
            if is_dlt_table(name) {
                continue;
            }
            let dataset = plan.job_dataset(name).to_string();
            let key = (dataset.clone(), name.clone());
            if !tables.contains_key(&key) {
                let table = self.lake.table(&dataset, name).await?;
                tables.insert(key.clone(), table);
            }
            let Some(Some(table)) = tables.get(&key) else { continue };
            let journal_key = JournalKey::job(job);
            let app_id = write::app_id(&load_id, &format!("job:{}", journal_key.stored()));
            if let Some(rows) = write::committed(table, &Self::what(&dataset, name), &app_id).await? {
                entries.push(JournalEntry {
                    key: journal_key,
                    part: JobPart::Whole,
                    rows: u64::try_from(rows).unwrap_or_default(),
                });
            }
        }
        Ok(entries)
    }

    /// dlt's `refresh`: the package state's dropped tables go, with every stored version of the
    /// schema (the migration then creates them as the package has them).
    async fn refresh(&self, package: &LoadPackage, program: &LoadProgram) -> StepResult<()> {
        let dropped = &package.state.dropped_tables;
        if dropped.is_empty() {
            return Ok(());
        }
        let dataset = program.dataset();
        for table in dropped {
            self.lake.delete_prefix(&self.lake.path(&[dataset, table])).await?;
        }
        bookkeeping::drop_schema_versions(&self.lake, package, dataset).await?;
        tracing::info!(load_id = %package.load_id, "refresh: dropped {}", dropped.join(", "));
        Ok(())
    }

    async fn migrate(&self, package: &LoadPackage, plan: &PackagePlan) -> StepResult<MigrationReport> {
        let mut report = MigrationReport::default();
        bookkeeping::initialize(&self.lake, &plan.dataset).await?;
        for chain in &plan.chains {
            for name in chain.tables.iter().filter(|t| !is_dlt_table(t)) {
                let table = package.schema.table(name).ok_or_else(|| {
                    Error::Internal(format!("table `{name}` of a chain is not in the package schema"))
                })?;
                self.migrate_table(&plan.dataset, table, &mut report).await?;
                if chain.action.loads_to_staging() {
                    self.migrate_table(&plan.staging_dataset, table, &mut MigrationReport::default())
                        .await?;
                }
            }
        }
        report.stored_schema_version = bookkeeping::store_schema(&self.lake, package, &plan.dataset).await?;
        Ok(report)
    }

    async fn prepare(&self, package: &LoadPackage, program: &LoadProgram) -> StepResult<()> {
        let load_id = package.load_id.to_string();
        for chain in program.chains.iter().filter(|c| c.empties()) {
            let dataset = match chain.plan.action {
                ChainAction::TruncateAndInsert => &program.plan.dataset,
                _ => &program.plan.staging_dataset,
            };
            for name in chain.plan.tables.iter().filter(|t| !is_dlt_table(t)) {
                self.truncate(dataset, name, &load_id).await?;
            }
        }
        if program.refresh {
            for name in package.state.truncated_tables.iter().filter(|t| !is_dlt_table(t)) {
                self.truncate(program.dataset(), name, &load_id).await?;
            }
        }
        Ok(())
    }

    /// A job is written as new data files and committed with its application transaction.
    async fn load_unit(&self, unit: Unit<'_>) -> StepResult<UnitEnd> {
        let job = &unit.job.job;
        let name = &job.name.table;
        let started = std::time::Instant::now();
        if is_dlt_table(name) {
            // dlt's own tables are files in a lake, written when the load commits.
            return Ok(UnitEnd::Loaded(JobMetrics {
                keys: None,
                rows: 0,
                bytes: job.size,
                timings: JobTimings::default(),
            }));
        }
        let dataset = &unit.job.dataset;
        let what = Self::what(dataset, name);
        let mut table = self.existing(dataset, name).await?;
        let app_id = write::app_id(unit.package.load_id.as_ref(), &format!("job:{}", unit.job.key.stored()));
        if let Some(rows) = write::committed(&table, &what, &app_id).await? {
            return Ok(UnitEnd::Loaded(JobMetrics {
                keys: None,
                rows: u64::try_from(rows).unwrap_or_default(),
                bytes: job.size,
                timings: JobTimings::default(),
            }));
        }
        let reader = read::open_job(unit.package, job, unit.read_options).await?;
        let batches = reader.stream.map(|batch| batch.map_err(Error::from));
        let cancel = unit.cancel.clone();
        let stop = move || cancel.is_cancelled();
        let written = write::write_files(&table, &what, self.settings, Box::pin(batches), &stop).await?;
        if written.stopped {
            // Nothing committed: the job starts over on the next run.
            return Ok(UnitEnd::Cancelled { rows: 0 });
        }
        let commit = Commit {
            app_id,
            version: i64::try_from(written.rows).unwrap_or(i64::MAX),
            operation: write::append_operation(&table),
        };
        let actions = written.adds.into_iter().map(Action::Add).collect();
        write::commit(&mut table, &what, actions, commit).await?;
        // decode: reading the job; encode: the Parquet writer; transfer: the rest (opening the
        // table, the commit).
        Ok(UnitEnd::Loaded(JobMetrics {
            keys: None,
            rows: written.rows,
            bytes: job.size,
            timings: JobTimings {
                decode: written.decode,
                encode: written.encode,
                transfer: started.elapsed().saturating_sub(written.decode + written.encode),
            },
        }))
    }

    /// Facts about the staged root rows of a merge. The final tables are never measured: the
    /// follow-up's steps must be the same on every run of the package (see [`crate::followup`]).
    async fn measure(&self, at: ChainCall<'_>, mut state: FinalState) -> StepResult<FinalState> {
        let (package, program, chain) = (at.package, at.program, at.chain);
        let root = package.schema.table(&chain.plan.root);
        if let Some(root) = root.filter(|_| chain.plan.action.measures_staged_rows()) {
            let staging = TableRef::new(&program.plan.staging_dataset, &root.name);
            if let Some(query) = staged_facts_plan(&self.dialect, root, &staging)? {
                let run = FollowupRun::new(
                    &self.lake,
                    &self.dialect,
                    self.settings,
                    package.load_id.as_ref(),
                    &root.name,
                );
                let batches = run.query(query).await?;
                let facts = StagedFacts::from_batches(root, &batches)?;
                tracing::debug!(table = %root.name, ?facts, "staged rows measured");
                state.staged.insert(root.name.clone(), facts);
            }
        }
        Ok(state)
    }

    async fn followup(&self, at: ChainCall<'_>, state: &FinalState) -> StepResult<usize> {
        self.run_followup(at, state).await
    }

    async fn commit(&self, package: &LoadPackage, program: &LoadProgram) -> StepResult<()> {
        bookkeeping::complete_load(&self.lake, package, program.dataset()).await
    }

    /// Deletes the load's staging tables.
    async fn clean_up(&self, dataset: &str, load_id: &str) {
        let staging = berth_plan::staging_dataset_name(dataset, load_id);
        if let Err(e) = self.lake.delete_prefix(&self.lake.path(&[&staging])).await {
            tracing::warn!(dataset = %staging, error = %e, "could not delete the staging tables");
        }
    }
}
