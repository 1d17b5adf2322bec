//! What a load would run, without running it: the statements of every phase for one package, in
//! a dialect, against a destination assumed to have none of the package's datasets yet (or,
//! for the follow-ups, final tables that already hold rows).

use berth_destination::{
    JobPart, JournalEntry, JournalKey, journal_insert, load_marker, migration_for_empty_destination,
    refresh_drop_statements,
};
use std::collections::BTreeSet;

use berth_model::{JobFile, JobState, LoadPackage, Table};
use berth_plan::ChainPlan;
use berth_plan::followup::{TableRef, staged_facts_plan};
use berth_plan::{FinalState, PackagePlan, PlanCapabilities, PlanOptions, SqlDialect, SqlStatement};

use crate::Result;

/// One phase of a load and its statements.
#[derive(Debug, Clone)]
pub struct Phase {
    /// What the phase does.
    pub title: String,
    /// Its statements and notes, in order.
    pub steps: Vec<Step>,
}

/// A statement, or a note about work that is not a statement.
#[derive(Debug, Clone)]
pub enum Step {
    /// A statement berth sends.
    Sql(SqlStatement),
    /// Work done another way (a job's rows through the destination's bulk path).
    Note(String),
}

/// The steps of one job for destinations whose jobs are more than rows through a bulk path (a
/// warehouse: upload to the staging bucket, then its COPY command).
pub trait JobSteps: Send + Sync + std::fmt::Debug {
    /// The steps loading `job` (rows of `table`) into `dataset`; `final_dataset` holds the
    /// journal; `emptied`: the load empties the table first (see `LoadJob::emptied`).
    fn steps(
        &self,
        package: &LoadPackage,
        job: &JobFile,
        table: &Table,
        dataset: &str,
        final_dataset: &str,
        emptied: bool,
    ) -> Result<Vec<Step>>;
}

/// How to explain.
#[derive(Debug, Clone)]
pub struct ExplainOptions {
    /// Planning options (dataset, replace strategy).
    pub plan: PlanOptions,
    /// Assume the final tables are empty, as on a first load: the follow-ups leave out the work
    /// that cannot matter then.
    pub assume_empty: bool,
    /// How jobs load, where the destination says more than "through the bulk path".
    pub jobs: Option<std::sync::Arc<dyn JobSteps>>,
}

/// The phases of loading `package` with `dialect` and `caps`.
pub fn explain(
    package: &LoadPackage,
    dialect: &SqlDialect,
    caps: &PlanCapabilities,
    options: &ExplainOptions,
) -> Result<Vec<Phase>> {
    let adjusted = dialect.for_naming(package.schema.naming().is_case_sensitive());
    let dialect = adjusted.as_ref().unwrap_or(dialect);
    let plan = PackagePlan::new(package, &options.plan, caps)?;
    plan.check_names(package, dialect)?;
    let mut phases = Vec::new();
    let sql = |statements: Vec<SqlStatement>| statements.into_iter().map(Step::Sql).collect::<Vec<_>>();

    // dlt's refresh acts on a dataset that has the tables; with --assume-empty there is none.
    let dropped = &package.state.dropped_tables;
    if !dropped.is_empty() && !options.assume_empty {
        phases.push(Phase {
            title: "refresh: drop the tables the package drops, and the schema's stored versions (one transaction)"
                .into(),
            steps: sql(berth_plan::statements(refresh_drop_statements(
                dialect,
                package,
                &plan.dataset,
                dropped,
            ))),
        });
    }
    let migration = migration_for_empty_destination(dialect, package, &plan)?;
    phases.push(Phase {
        title: "migrate: datasets, tables, schema version (one transaction)".into(),
        steps: sql(berth_plan::statements(migration)),
    });
    // With --assume-empty, the migration's tables are new: the planned staging moves apply.
    let new_tables: BTreeSet<String> = if options.assume_empty {
        plan.chains.iter().flat_map(|c| c.tables.iter().cloned()).collect()
    } else {
        BTreeSet::new()
    };
    let mut init = plan.init_statements_for(dialect, plan.chains.iter(), &new_tables);
    if !options.assume_empty {
        let truncated = package.state.truncated_tables.iter();
        init.extend(truncated.map(|t| berth_plan::sql::delete_all(dialect, &plan.dataset, t).into()));
    }
    if !init.is_empty() {
        phases.push(Phase {
            title: "prepare: empty the tables the jobs load into".into(),
            steps: sql(init),
        });
    }
    let mut jobs = Vec::new();
    for job in package.jobs.iter().filter(|j| j.name.format.is_data()) {
        let table = &job.name.table;
        let target = dialect.table_name(plan.job_dataset(table), table);
        let state = if job.state == JobState::Completed {
            " (completed earlier)"
        } else {
            ""
        };
        if let Some(hook) = &options.jobs {
            let schema_table = package
                .schema
                .table(table)
                .ok_or_else(|| berth_model::Error::TableNotInSchema {
                    job: package.job_display(job),
                    table: table.clone(),
                })?;
            if !state.is_empty() {
                jobs.push(Step::Note(format!("job {}{state}", job.name)));
            }
            // A first run empties every truncate-and-insert and staging table before its jobs.
            let emptied = plan
                .chains
                .iter()
                .any(|c| c.action.empties_job_tables() && c.tables.contains(table));
            jobs.extend(hook.steps(
                package,
                job,
                schema_table,
                plan.job_dataset(table),
                &plan.dataset,
                emptied,
            )?);
            continue;
        }
        jobs.push(Step::Note(format!(
            "job {} ({} bytes){state}: rows into {target} through the bulk path, with its journal row \
             in the same transaction",
            job.name, job.size
        )));
    }
    phases.push(Phase {
        title: "load jobs (in parallel, each part in its own transaction)".into(),
        steps: jobs,
    });
    for chain in &plan.chains {
        let mut state = FinalState::default();
        if options.assume_empty {
            state.empty_tables.extend(chain.tables.iter().cloned());
        }
        if let Some(check) = staged_check(package, &plan, chain, dialect)? {
            phases.push(Phase {
                title: format!(
                    "measure the staged rows of `{}`: with unique keys the follow-up leaves deduplication out, and \
                     key matches look only at final rows inside the staged key range",
                    chain.root
                ),
                steps: vec![Step::Sql(check)],
            });
        }
        let mut steps = Vec::new();
        if plan.may_move_staging(chain, dialect, &new_tables) {
            let mut moved = state.clone();
            moved.movable.insert(chain.root.clone());
            moved.staged.insert(
                chain.root.clone(),
                berth_plan::followup::StagedFacts {
                    rows: 1,
                    distinct_keys: 1,
                    deleted_rows: 0,
                    key_range: None,
                },
            );
            steps.push(Step::Note(
                "if the staged keys are unique and no row is marked deleted, the staging table takes the final \
                 table's place instead of being copied:"
                    .into(),
            ));
            steps.extend(sql(plan.followup_statements(chain, package, dialect, &moved)?));
            steps.push(Step::Note("otherwise:".into()));
        }
        let mut statements = plan.followup_statements(chain, package, dialect, &state)?;
        if statements.is_empty() {
            continue;
        }
        let entry = JournalEntry {
            key: JournalKey::Followup(chain.root.clone()),
            part: JobPart::Whole,
            rows: 0,
        };
        statements.push(journal_insert(dialect, &plan.dataset, &package.load_id, &entry).into());
        steps.extend(sql(statements));
        phases.push(Phase {
            title: format!("follow-up of `{}` ({:?}, one transaction)", chain.root, chain.action),
            steps,
        });
    }
    phases.push(Phase {
        title: "commit: the load's `_dlt_loads` row".into(),
        steps: sql(vec![load_marker(dialect, package, &plan.dataset).into()]),
    });
    if let Some(drop) = plan.drop_staging(dialect) {
        phases.push(Phase {
            title: "clean up: this load's staging dataset".into(),
            steps: sql(vec![drop]),
        });
    }
    Ok(phases)
}

/// The query that measures a merge root's staged rows before its follow-up, where the loader runs
/// one.
fn staged_check(
    package: &LoadPackage,
    plan: &PackagePlan,
    chain: &ChainPlan,
    dialect: &SqlDialect,
) -> Result<Option<SqlStatement>> {
    let Some(root) = package
        .schema
        .table(&chain.root)
        .filter(|_| chain.action.measures_staged_rows())
    else {
        return Ok(None);
    };
    let staging = TableRef::new(&plan.staging_dataset, &root.name);
    let Some(query) = staged_facts_plan(dialect, root, &staging)? else {
        return Ok(None);
    };
    let query = berth_plan::sql::to_query(dialect, query.into())?;
    Ok(Some(
        berth_plan::sqlparser::ast::Statement::Query(Box::new(query)).into(),
    ))
}
