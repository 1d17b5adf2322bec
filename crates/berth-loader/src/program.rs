//! A package's load as a typed program: every decision the load makes about a package, made
//! once, where the plan is made, and read by the phases that act on it.
//!
//! [`LoadProgram::new`] takes the [`PackagePlan`] and what the journal says committed, and
//! decides which jobs are pending, which chains are fresh (none of their jobs committed, so
//! their job tables are emptied first), which tables each job finds emptied, whether dlt's
//! `refresh` applies and which follow-ups are still to run, each under its typed
//! [`JournalKey`]. [`LoadProgram::migrated`] adds the one decision that needs the migration's
//! outcome: whether a merge's staging table may be moved into the dataset, and so must be
//! created logged ([`Staging`]). The run loop ([`crate::run`]) executes the program through an
//! [`crate::Executor`]; `berth plan` prints it the same way.

use std::collections::{BTreeSet, HashSet};

use berth_destination::{JournalEntry, JournalKey, MigrationReport};
use berth_model::{JobFile, JobState, LoadId, LoadPackage, MergeStrategy};
use berth_plan::followup::staged_orphans_plan;
use berth_plan::sqlparser::ast::Statement;
use berth_plan::{ChainAction, ChainPlan, FinalState, PackagePlan, SqlDialect, SqlStatement, Staging};

/// What the program does with a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobStep {
    /// Loads now (new, started by a run that stopped, or completed elsewhere); the parts the
    /// journal has are skipped.
    Load,
    /// In `completed_jobs/`, and committed here.
    Done,
    /// Failed in an earlier run that allowed failed jobs (`failed_jobs/`).
    FailedEarlier,
    /// Not data (a dlt reference or `.sql` job): nothing to load.
    NotData,
}

/// One job of the program.
#[derive(Debug, Clone)]
pub struct ProgramJob {
    /// The job file.
    pub job: JobFile,
    /// Its journal key.
    pub key: JournalKey,
    /// What the program does with it.
    pub step: JobStep,
    /// The dataset its rows go to (final, or this load's staging dataset).
    pub dataset: String,
    /// Its table was emptied by this load's prepare phase (see `LoadJob::emptied`).
    pub emptied: bool,
    /// Its parts an earlier run committed.
    pub committed: Vec<JournalEntry>,
}

/// One table chain of the program.
#[derive(Debug, Clone)]
pub struct ChainStep {
    /// The chain's plan.
    pub plan: ChainPlan,
    /// None of its jobs committed yet: the prepare phase empties its job tables.
    pub fresh: bool,
    /// How its staging tables are kept (decided by [`LoadProgram::migrated`]).
    pub staging: Staging,
    /// The journal key its follow-up commits with.
    pub followup_key: JournalKey,
    /// The follow-up committed in an earlier run.
    pub followup_done: bool,
}

impl ChainStep {
    /// Does the prepare phase empty this chain's job tables (fresh truncate-and-insert and staging
    /// chains)?
    pub fn empties(&self) -> bool {
        self.fresh && self.plan.action.empties_job_tables()
    }

    /// Is the chain's follow-up a merge, which needs to know the state of its final tables?
    pub fn merges(&self) -> bool {
        matches!(self.plan.action, ChainAction::Merge(_))
    }

    /// Does the measuring step check this chain's staged nested rows for rows without a staged
    /// root ([`FinalState::rooted`])? Only where a delete-insert of nested tables may still move
    /// its staging tables: the root's staged rows are the result and every final table is empty.
    pub fn checks_orphans(&self, state: &FinalState) -> bool {
        self.staging.movable
            && self.plan.tables.len() > 1
            && self.plan.action == ChainAction::Merge(MergeStrategy::DeleteInsert)
            && state.staged_is_result(&self.plan.root)
            && self.plan.tables.iter().all(|t| state.is_empty(t))
    }

    /// The queries of the check [`Self::checks_orphans`] asks for: per nested table, the count of
    /// its staged rows without a staged root row ([`berth_plan::followup::staged_orphans_plan`]).
    pub fn orphan_queries(
        &self,
        package: &LoadPackage,
        staging_dataset: &str,
        dialect: &SqlDialect,
    ) -> berth_plan::Result<Vec<(String, Statement)>> {
        let Some(root) = package.schema.table(&self.plan.root) else {
            return Ok(Vec::new());
        };
        let mut queries = Vec::new();
        for name in self.plan.tables.iter().filter(|t| **t != root.name) {
            let Some(nested) = package.schema.table(name) else {
                continue;
            };
            let plan = staged_orphans_plan(dialect, &package.schema, root, nested, staging_dataset)?;
            let query = berth_plan::sql::to_query(dialect, plan.into())?;
            queries.push((name.clone(), Statement::Query(Box::new(query))));
        }
        Ok(queries)
    }

    /// The state the follow-up starts from, before the executor adds what it measured: what the
    /// program decided (the staging table may be moved).
    pub fn initial_state(&self) -> FinalState {
        let mut state = FinalState::default();
        if self.staging.movable {
            state.movable.insert(self.plan.root.clone());
        }
        state
    }
}

/// A package's load, decided.
#[derive(Debug, Clone)]
pub struct LoadProgram {
    /// The package's load id.
    pub load_id: LoadId,
    /// The plan.
    pub plan: PackagePlan,
    /// dlt's `refresh` (dropping and emptying the tables the package state names) applies:
    /// nothing of the package has been loaded yet.
    pub refresh: bool,
    /// The table chains, in plan order.
    pub chains: Vec<ChainStep>,
    /// Every job of the package, in package order.
    pub jobs: Vec<ProgramJob>,
    /// Final tables this load's migration created (set by [`LoadProgram::migrated`]).
    pub new_tables: BTreeSet<String>,
}

impl LoadProgram {
    /// The program of loading `package` as `plan` says, after an earlier run committed `journal`.
    pub fn new(package: &LoadPackage, plan: PackagePlan, journal: &[JournalEntry]) -> Self {
        let journaled: HashSet<&JournalKey> = journal.iter().map(|e| &e.key).collect();
        // A package completed elsewhere loads every job again; otherwise a job in
        // `completed_jobs/` is done (a dlt run that stopped midway moved it there).
        let loaded_elsewhere = package.completed.is_some();
        let done = |j: &JobFile| {
            journaled.contains(&JournalKey::job(j)) || (j.state == JobState::Completed && !loaded_elsewhere)
        };
        let has_progress = |table: &String| package.jobs.iter().any(|j| &j.name.table == table && done(j));
        let chains: Vec<ChainStep> = plan
            .chains
            .iter()
            .map(|chain| {
                let followup_key = JournalKey::Followup(chain.root.clone());
                ChainStep {
                    plan: chain.clone(),
                    fresh: !chain.tables_with_jobs.iter().any(has_progress),
                    staging: Staging::default(),
                    followup_done: journaled.contains(&followup_key),
                    followup_key,
                }
            })
            .collect();
        let emptied: HashSet<&str> = chains
            .iter()
            .filter(|c| c.empties())
            .flat_map(|c| c.plan.tables.iter().map(String::as_str))
            .collect();
        let jobs = package
            .jobs
            .iter()
            .map(|job| {
                let key = JournalKey::job(job);
                // A job still in `new_jobs/` or `started_jobs/` loads (what the journal says
                // committed of it is skipped, and it moves on); one in `completed_jobs/` only
                // when the journal does not have it although the package is not completed here.
                let step = match job.state {
                    _ if !job.name.format.is_data() => JobStep::NotData,
                    JobState::Failed => JobStep::FailedEarlier,
                    JobState::Completed if done(job) => JobStep::Done,
                    _ => JobStep::Load,
                };
                ProgramJob {
                    committed: journal.iter().filter(|e| e.key == key).cloned().collect(),
                    dataset: plan.job_dataset(&job.name.table).to_string(),
                    emptied: emptied.contains(job.name.table.as_str()),
                    job: job.clone(),
                    key,
                    step,
                }
            })
            .collect();
        // dlt's `refresh` acts once, before anything of the package is loaded.
        let refresh = journal.is_empty() && (loaded_elsewhere || package.jobs_in(JobState::Completed).next().is_none());
        Self {
            load_id: package.load_id.clone(),
            plan,
            refresh,
            chains,
            jobs,
            new_tables: BTreeSet::new(),
        }
    }

    /// Decides what needs the migration's outcome: the final tables it created, and with them
    /// each chain's [`Staging`] (see [`PackagePlan::staging`]; without a dialect, as for a sink,
    /// nothing is staged).
    pub fn migrated(&mut self, dialect: Option<&SqlDialect>, migration: &MigrationReport) {
        let prefix = format!("{}.", self.plan.dataset);
        self.new_tables = migration
            .created_tables
            .iter()
            .filter_map(|t| t.strip_prefix(&prefix))
            .map(str::to_string)
            .collect();
        if let Some(dialect) = dialect {
            for chain in &mut self.chains {
                chain.staging = self.plan.staging(&chain.plan, dialect, &self.new_tables);
            }
        }
    }

    /// The final dataset.
    pub fn dataset(&self) -> &str {
        &self.plan.dataset
    }

    /// The jobs that load now.
    pub fn pending(&self) -> impl Iterator<Item = &ProgramJob> {
        self.jobs.iter().filter(|j| j.step == JobStep::Load)
    }

    /// The chains the prepare phase acts on.
    pub fn fresh_chains(&self) -> impl Iterator<Item = &ChainStep> {
        self.chains.iter().filter(|c| c.fresh)
    }

    /// Tables the prepare phase empties.
    pub fn emptied_tables(&self) -> Vec<String> {
        let mut tables: Vec<String> = self
            .chains
            .iter()
            .filter(|c| c.empties())
            .flat_map(|c| c.plan.tables.iter().cloned())
            .collect();
        tables.sort();
        tables.dedup();
        tables
    }

    /// The statement recording `chain`'s follow-up in the journal, in `dialect`: it commits in
    /// the follow-up's transaction, so the follow-up runs exactly once.
    pub fn followup_record(&self, dialect: &SqlDialect, chain: &ChainStep) -> SqlStatement {
        let entry = JournalEntry {
            key: chain.followup_key.clone(),
            part: berth_destination::JobPart::Whole,
            rows: 0,
        };
        berth_destination::journal_insert(dialect, self.dataset(), &self.load_id, &entry).into()
    }

    /// The prepare phase's statements in `dialect`: empty the fresh chains' job tables and keep
    /// their staging tables as decided (see [`PackagePlan::init_statements_for`]).
    pub fn prepare_statements(&self, dialect: &SqlDialect) -> Vec<SqlStatement> {
        self.plan
            .init_statements_for(dialect, self.fresh_chains().map(|c| (&c.plan, c.staging)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_plan::followup::StagedFacts;

    /// A one-table merge package (`users`, primary key `id`), written to `dir`.
    fn merge_package(dir: &std::path::Path, strategy: &str) -> std::path::PathBuf {
        let package = dir.join("1700000000.1");
        std::fs::create_dir_all(package.join("new_jobs")).expect("dirs");
        let schema = serde_json::json!({
            "name": "shop", "version": 1, "engine_version": 11, "version_hash": "h",
            "tables": {
                "users": {
                    "name": "users", "write_disposition": "merge",
                    "x-merge-strategy": strategy,
                    "columns": {
                        "id": {"name": "id", "data_type": "bigint", "nullable": false, "primary_key": true},
                        "name": {"name": "name", "data_type": "text", "nullable": true},
                        "_dlt_load_id": {"name": "_dlt_load_id", "data_type": "text", "nullable": false},
                        "_dlt_id": {"name": "_dlt_id", "data_type": "text", "nullable": false, "unique": true}
                    }
                }
            }
        });
        std::fs::write(package.join("schema.json"), schema.to_string()).expect("schema");
        std::fs::write(
            package.join("new_jobs/users.abc.0.jsonl"),
            "{\"id\": 1, \"name\": \"a\", \"_dlt_load_id\": \"1700000000.1\", \"_dlt_id\": \"x\"}\n",
        )
        .expect("job");
        package
    }

    /// The rule the prepare phase and the follow-up share: whenever a follow-up moves a staging
    /// table into the dataset, the prepare phase created that table logged.
    #[tokio::test]
    async fn a_moved_staging_table_was_created_logged() {
        let dir = tempfile::tempdir().expect("tempdir");
        let dialects = [berth_plan::dialects::redshift(), berth_plan::exec::memory_dialect()];
        let mut moved = 0;
        for strategy in ["delete-insert", "upsert", "insert-only"] {
            let path = merge_package(dir.path(), strategy);
            let location = berth_model::PackageLocation::local(&path).expect("location");
            let package = LoadPackage::open(location).await.expect("package");
            for base in &dialects {
                let mut dialect = base.clone();
                dialect.unlogged_staging = true;
                for created in [true, false] {
                    let caps = berth_plan::exec::memory_capabilities();
                    let plan = PackagePlan::new(&package, &berth_plan::PlanOptions::new("shop"), &caps).expect("plan");
                    let mut program = LoadProgram::new(&package, plan, &[]);
                    let migration = MigrationReport {
                        created_tables: if created { vec!["shop.users".into()] } else { vec![] },
                        ..MigrationReport::default()
                    };
                    program.migrated(Some(&dialect), &migration);
                    let chain = &program.chains[0];
                    let mut state = chain.initial_state();
                    state.empty_tables.insert("users".into());
                    state.staged.insert(
                        "users".into(),
                        StagedFacts {
                            rows: 1,
                            distinct_keys: 1,
                            deleted_rows: 0,
                            key_range: None,
                        },
                    );
                    let ops = program
                        .plan
                        .followup_ops(&chain.plan, &package, &dialect, &state)
                        .expect("follow-up");
                    let moves = ops
                        .iter()
                        .any(|op| matches!(op, berth_plan::FollowupOp::MoveTable { .. }));
                    let logged = program
                        .prepare_statements(&dialect)
                        .iter()
                        .any(|s| matches!(s, SqlStatement::SetLogged { logged: true, .. }));
                    assert!(
                        !moves || logged,
                        "{strategy}, created {created}: moved but created unlogged"
                    );
                    moved += usize::from(moves);
                    assert_eq!(
                        moves,
                        chain.staging.movable && dialect.supports_set_schema,
                        "{strategy}"
                    );
                }
            }
            std::fs::remove_dir_all(&path).expect("clean");
        }
        // delete-insert, upsert and insert-only into a new table, where tables can move.
        assert_eq!(moved, 3);
    }
}
