//! The executor of every SQL [`Destination`]: each phase of the program as statements in the
//! destination's dialect, jobs through its bulk path, each write fenced (see
//! [`Destination::load_fence`]) and in one transaction where the destination has them.

use std::sync::Arc;

use async_trait::async_trait;
use berth_destination::{
    Destination, DiscardJob, JobPart, JournalEntry, LoadJob, LoadLock, MigrationReport, TableLock, committed_parts,
    complete_load, drop_refreshed_tables, is_empty_table, is_loaded, migrate, truncate_refreshed_tables, uncovered,
};
use berth_model::read;
use berth_model::{FileFormat, LoadPackage};
use berth_plan::followup::{StagedFacts, TableRef, orphan_rows, staged_facts_plan, staged_rows_plan};
use berth_plan::keys::KeyRun;
use berth_plan::sqlparser::ast::Statement;
use berth_plan::{FinalState, PackagePlan, PlanOptions, SqlDialect, staging_dataset_name};

use crate::executor::{ChainCall, Executor, StepResult, Unit, UnitEnd};
use crate::program::{LoadProgram, ProgramJob};

/// Largest part a file is split into.
const MAX_PART_BYTES: u64 = 256 << 20;

/// Runs load programs on a SQL [`Destination`].
#[derive(Debug, Clone)]
pub struct SqlExecutor {
    destination: Arc<dyn Destination>,
    /// Parquet files from this size up load in parts of rows (see
    /// [`crate::LoaderOptions::split_min_bytes`]).
    split_min_bytes: u64,
}

impl SqlExecutor {
    /// The facts the key runs of this load's parts prove about the staged rows of `root`
    /// ([`berth_plan::keys::unique_keys`]), once the staging table is counted to hold exactly
    /// the rows they saw: a part an earlier, interrupted run loaded is not among them. `None`:
    /// the destination counts distinct keys instead.
    async fn observed_facts(
        &self,
        root: &berth_model::Table,
        staging: &TableRef,
        runs: &[KeyRun],
    ) -> StepResult<Option<StagedFacts>> {
        let Some(facts) = berth_plan::keys::unique_keys(root, runs) else {
            return Ok(None);
        };
        let dialect = &self.caps().dialect;
        let query = berth_plan::sql::to_query(dialect, staged_rows_plan(dialect, root, staging)?.into())?;
        let batches = self.destination.query(Statement::Query(Box::new(query))).await?;
        let staged = StagedFacts::from_batches(root, &batches)?.rows;
        if staged != facts.rows {
            tracing::debug!(table = %root.name, staged, seen = facts.rows, "the loaded parts did not see every staged row");
            return Ok(None);
        }
        Ok(Some(facts))
    }

    /// The executor of `destination`, splitting Parquet files from `split_min_bytes` up.
    pub fn new(destination: Arc<dyn Destination>, split_min_bytes: u64) -> Self {
        Self {
            destination,
            split_min_bytes,
        }
    }

    fn caps(&self) -> &berth_destination::Capabilities {
        self.destination.capabilities()
    }
}

#[async_trait]
impl Executor for SqlExecutor {
    fn describe(&self) -> String {
        self.destination.describe()
    }

    fn accepts(&self, format: FileFormat) -> bool {
        self.caps().loader_formats.contains(&format)
    }

    fn dialect(&self) -> Option<&SqlDialect> {
        Some(&self.caps().dialect)
    }

    fn for_case_sensitive_names(&self) -> Option<Arc<dyn Executor>> {
        let adjusted = self.destination.for_case_sensitive_names()?;
        Some(Arc::new(Self::new(adjusted, self.split_min_bytes)))
    }

    fn max_parallel_units(&self) -> Option<usize> {
        self.caps().max_parallel_jobs
    }

    fn engine_reads_parquet(&self) -> bool {
        self.destination.engine_reads_parquet()
    }

    fn cap_engine_memory(&self, bytes: u64) -> StepResult<u64> {
        self.destination.cap_engine_memory(bytes)
    }

    fn plan(&self, package: &LoadPackage, options: &PlanOptions) -> crate::Result<PackagePlan> {
        let plan = PackagePlan::new(package, options, &self.caps().plan_capabilities())?;
        plan.check_names(package, &self.caps().dialect)?;
        Ok(plan)
    }

    fn default_replace_strategy(&self) -> berth_model::ReplaceStrategy {
        self.caps().replace_strategies.first().copied().unwrap_or_default()
    }

    async fn lock_load(&self, package: &LoadPackage, dataset: &str) -> StepResult<Option<LoadLock>> {
        self.destination.lock_load(package, dataset).await
    }

    async fn lock_tables(&self, dataset: &str, tables: &[TableLock]) -> StepResult<Option<LoadLock>> {
        self.destination.lock_tables(dataset, tables).await
    }

    async fn is_loaded(&self, package: &LoadPackage, dataset: &str) -> StepResult<bool> {
        is_loaded(self.destination.as_ref(), dataset, &package.load_id).await
    }

    async fn journal(&self, package: &LoadPackage, plan: &PackagePlan) -> StepResult<Vec<JournalEntry>> {
        committed_parts(self.destination.as_ref(), &plan.dataset, &package.load_id).await
    }

    async fn refresh(&self, package: &LoadPackage, program: &LoadProgram) -> StepResult<()> {
        let dropped = drop_refreshed_tables(self.destination.as_ref(), package, program.dataset()).await?;
        if !dropped.is_empty() {
            tracing::info!(load_id = %package.load_id, "refresh: dropped {}", dropped.join(", "));
        }
        Ok(())
    }

    async fn migrate(&self, package: &LoadPackage, plan: &PackagePlan) -> StepResult<MigrationReport> {
        migrate(self.destination.as_ref(), package, plan).await
    }

    async fn prepare(&self, package: &LoadPackage, program: &LoadProgram) -> StepResult<()> {
        let mut init = program.prepare_statements(&self.caps().dialect);
        if program.refresh {
            let truncated = truncate_refreshed_tables(self.destination.as_ref(), package, program.dataset()).await?;
            init.extend(truncated.into_iter().map(Into::into));
        }
        if init.is_empty() {
            return Ok(());
        }
        tracing::info!(load_id = %package.load_id, phase = "prepare", "emptying the tables jobs load into");
        let mut fenced = self
            .destination
            .load_fence(program.dataset(), &package.load_id, &program.emptied_tables());
        fenced.extend(init);
        self.destination
            .execute(fenced, self.caps().supports_transactions)
            .await
    }

    /// Parts of a large Parquet file where the destination loads those on their own, else the
    /// whole file; nothing when the journal covers it.
    async fn parts(&self, package: &LoadPackage, job: &ProgramJob, parallel: usize) -> StepResult<Vec<JobPart>> {
        let done = &job.committed;
        if done.iter().any(|e| e.part == JobPart::Whole) {
            return Ok(Vec::new());
        }
        let splittable = self.caps().row_group_parts
            && job.job.name.format == FileFormat::Parquet
            && (job.job.size >= self.split_min_bytes || !done.is_empty());
        if !splittable {
            return Ok(vec![JobPart::Whole]);
        }
        let info = read::inspect_parquet(package, &job.job).await?;
        let committed: Vec<std::ops::Range<u64>> =
            done.iter().filter_map(|e| e.part.rows(&info.row_group_rows)).collect();
        let target = (job.job.size / parallel as u64).clamp(self.split_min_bytes / 2, MAX_PART_BYTES);
        let parts: Vec<JobPart> = split_rows(&info, &committed, target)
            .into_iter()
            .map(JobPart::Rows)
            .collect();
        if done.is_empty() && parts.len() <= 1 {
            return Ok(vec![JobPart::Whole]);
        }
        Ok(parts)
    }

    async fn load_unit(&self, unit: Unit<'_>) -> StepResult<UnitEnd> {
        let metrics = self
            .destination
            .load_job(LoadJob {
                package: unit.package,
                job: &unit.job.job,
                table: unit.table,
                dataset: &unit.job.dataset,
                part: unit.part,
                journal_dataset: unit.journal_dataset,
                read_options: unit.read_options.clone(),
                emptied: unit.job.emptied,
            })
            .await?;
        Ok(UnitEnd::Loaded(metrics))
    }

    async fn discard_job(&self, job: DiscardJob<'_>) -> StepResult<u64> {
        self.destination.discard_job(job).await
    }

    /// Which final tables are empty, and for merges that can use them, facts about the staged
    /// root rows (duplicate keys, deleted rows, key range).
    async fn measure(&self, at: ChainCall<'_>, mut state: FinalState) -> StepResult<FinalState> {
        let (package, program, chain) = (at.package, at.program, at.chain);
        for table in &chain.plan.tables {
            // Checked even when created: a concurrent load may have filled it since.
            if is_empty_table(self.destination.as_ref(), program.dataset(), table).await? {
                state.empty_tables.insert(table.clone());
            }
        }
        let root = package.schema.table(&chain.plan.root);
        if let Some(root) = root.filter(|_| chain.plan.action.measures_staged_rows()) {
            let dialect = &self.caps().dialect;
            let staging = TableRef::new(&program.plan.staging_dataset, &root.name);
            let runs = state.observed_keys.remove(&root.name).unwrap_or_default();
            if let Some(facts) = self.observed_facts(root, &staging, &runs).await? {
                tracing::debug!(table = %root.name, ?facts, "staged keys known unique from the loaded parts");
                state.staged.insert(root.name.clone(), facts);
            } else if let Some(query) = staged_facts_plan(dialect, root, &staging)? {
                let query = berth_plan::sql::to_query(dialect, query.into())?;
                let batches = self.destination.query(Statement::Query(Box::new(query))).await?;
                let facts = StagedFacts::from_batches(root, &batches)?;
                tracing::debug!(table = %root.name, ?facts, "staged rows measured");
                state.staged.insert(root.name.clone(), facts);
            }
            if chain.checks_orphans(&state) {
                let staging_dataset = &program.plan.staging_dataset;
                for (table, query) in chain.orphan_queries(package, staging_dataset, dialect)? {
                    let orphans = orphan_rows(&self.destination.query(query).await?)?;
                    tracing::debug!(%table, orphans, "staged nested rows without a staged root");
                    if orphans == 0 {
                        state.rooted.insert(table);
                    }
                }
            }
        }
        Ok(state)
    }

    async fn followup(&self, at: ChainCall<'_>, state: &FinalState) -> StepResult<usize> {
        let (package, program, chain) = (at.package, at.program, at.chain);
        let dialect = &self.caps().dialect;
        let mut statements = program.plan.followup_statements(&chain.plan, package, dialect, state)?;
        if statements.is_empty() {
            return Ok(0);
        }
        let count = statements.len();
        statements.push(program.followup_record(dialect, chain));
        let mut fenced = self
            .destination
            .load_fence(program.dataset(), &package.load_id, &chain.plan.tables);
        fenced.extend(statements);
        self.destination
            .execute(fenced, self.caps().supports_transactions)
            .await?;
        Ok(count)
    }

    async fn commit(&self, package: &LoadPackage, program: &LoadProgram) -> StepResult<()> {
        complete_load(self.destination.as_ref(), package, program.dataset()).await
    }

    /// Drops the load's staging dataset. Failing to is only worth a warning: the rows are
    /// committed, and a later run of the same package drops it again.
    async fn clean_up(&self, dataset: &str, load_id: &str) {
        let staging = staging_dataset_name(dataset, load_id);
        let statement = berth_plan::sql::drop_schema_cascade(&self.caps().dialect, &staging);
        if let Err(e) = self.destination.execute(vec![statement.into()], false).await {
            tracing::warn!(dataset = %staging, error = %e, "could not drop the staging dataset");
        }
    }
}

/// The rows of a Parquet file described by `info` that `committed` does not cover, cut into parts
/// of about `target` compressed bytes each with equal rows. A cut near a row-group boundary
/// (within an eighth of a part) moves onto it, so files of many small row groups split as they
/// did by row group, and a part that begins inside a row group decodes as little of it as it can.
fn split_rows(info: &read::ParquetInfo, committed: &[std::ops::Range<u64>], target: u64) -> Vec<std::ops::Range<u64>> {
    let bounds = read::row_group_offsets(&info.row_group_rows);
    // Compressed bytes of rows `range`, each row group's bytes spread evenly over its rows.
    let bytes_of = |range: &std::ops::Range<u64>| -> u64 {
        let mut bytes = 0u128;
        for (index, group_bytes) in info.row_group_bytes.iter().enumerate() {
            let (start, end) = (bounds[index], bounds[index + 1]);
            let overlap = end.min(range.end).saturating_sub(start.max(range.start));
            if overlap > 0 {
                bytes += u128::from(*group_bytes) * u128::from(overlap) / u128::from(end - start);
            }
        }
        u64::try_from(bytes).unwrap_or(u64::MAX)
    };
    let mut parts = Vec::new();
    for gap in uncovered(info.num_rows, committed) {
        let count = bytes_of(&gap).div_ceil(target.max(1)).max(1);
        let len = gap.end - gap.start;
        let slack = len / count / 8;
        let mut start = gap.start;
        for i in 1..=count {
            let mut cut = gap.start + len * i / count;
            if i < count
                && let Some(&near) = bounds
                    .iter()
                    .filter(|&&b| b > start && b < gap.end && b.abs_diff(cut) <= slack)
                    .min_by_key(|&&b| b.abs_diff(cut))
            {
                cut = near;
            }
            if cut > start {
                parts.push(start..cut);
                start = cut;
            }
        }
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(row_group_rows: &[u64], bytes_per_row: u64) -> read::ParquetInfo {
        read::ParquetInfo {
            schema: std::sync::Arc::new(arrow::datatypes::Schema::empty()),
            num_rows: row_group_rows.iter().sum(),
            row_groups: row_group_rows.len(),
            row_group_rows: row_group_rows.to_vec(),
            row_group_bytes: row_group_rows.iter().map(|r| r * bytes_per_row).collect(),
            row_group_decoded_bytes: row_group_rows.iter().map(|r| r * bytes_per_row * 2).collect(),
            temporal_in_range: true,
        }
    }

    #[test]
    fn large_row_groups_split_into_equal_parts() {
        // dlt's row groups of 1,048,576 rows: five of them make two equal parts for two connections.
        let file = info(&[1_048_576, 1_048_576, 1_048_576, 1_048_576, 805_696], 20);
        let target = file.row_group_bytes.iter().sum::<u64>() / 2;
        assert_eq!(split_rows(&file, &[], target + 1), [0..2_500_000, 2_500_000..5_000_000]);
    }

    #[test]
    fn cuts_near_a_row_group_boundary_move_onto_it() {
        let file = info(&[1_000; 20], 10);
        let parts = split_rows(&file, &[], 68_000);
        assert_eq!(parts, [0..7_000, 7_000..13_000, 13_000..20_000]);
    }

    #[test]
    fn only_the_uncovered_rows_are_split() {
        let file = info(&[1_000; 10], 10);
        let parts = split_rows(&file, &[0..2_500, 5_000..10_000], 30_000);
        assert_eq!(
            parts,
            [std::ops::Range {
                start: 2_500,
                end: 5_000
            }]
        );
        let whole = [std::ops::Range { start: 0, end: 10_000 }];
        let rest = split_rows(&file, &whole, 10_000);
        assert!(rest.is_empty());
    }
}
