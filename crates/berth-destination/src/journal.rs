//! berth's journal of committed job parts (`_berth_journal` in the final dataset).
//!
//! A destination writes a journal row in the same transaction as the rows of a job part, so after a
//! crash the journal says exactly which parts are in the tables: the loader skips them and loads only
//! the rest. dlt ignores the table; it is not part of any dlt schema.

use std::ops::Range;

use arrow::array::{Array, AsArray};
use arrow::datatypes::DataType as ArrowType;
use berth_model::schema::JOURNAL_TABLE;
use berth_model::{Column, DataType, Table};
use berth_plan::SqlDialect;
use berth_plan::sql::{self, lit_i64, lit_null, lit_str};
use berth_plan::sqlparser::ast::Statement;
use datafusion::logical_expr::lit;

use crate::error::{Error, ErrorKind, Result};
use crate::{Destination, JobPart, LoadJob};

/// The journal table's definition.
pub fn journal_table() -> Table {
    let text = |n: &str| Column::new(n, DataType::Text).with_nullable(false);
    let big = |n: &str| Column::new(n, DataType::Bigint).with_nullable(false);
    Table::new(
        JOURNAL_TABLE,
        vec![
            text("load_id").with_precision(64),
            text("job_id"),
            big("first_row_group"),
            // NULL: to the end of the file (the whole file for first_row_group 0).
            Column::new("end_row_group", DataType::Bigint),
            big("rows"),
            Column::new("inserted_at", DataType::Timestamp).with_nullable(false),
        ],
    )
}

/// What a journal row says committed: a part of a job, or the follow-up of a table chain.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum JournalKey {
    /// A job, by its id (its file name without the retry count).
    Job(String),
    /// The follow-up statements of the chain rooted at this table.
    Followup(String),
}

impl JournalKey {
    const FOLLOWUP: &'static str = "followup:";

    /// The key of `job`.
    pub fn job(job: &berth_model::JobFile) -> Self {
        Self::Job(job.name.job_id())
    }

    /// As stored in the journal's `job_id` column: the job id, or `followup:<root>`.
    pub fn stored(&self) -> String {
        match self {
            Self::Job(id) => id.clone(),
            Self::Followup(root) => format!("{}{root}", Self::FOLLOWUP),
        }
    }

    /// Reads a stored key.
    pub fn parse(stored: &str) -> Self {
        match stored.strip_prefix(Self::FOLLOWUP) {
            Some(root) => Self::Followup(root.to_string()),
            None => Self::Job(stored.to_string()),
        }
    }
}

/// A committed job part, as the journal records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalEntry {
    /// What committed.
    pub key: JournalKey,
    /// The part.
    pub part: JobPart,
    /// Rows it inserted.
    pub rows: u64,
}

impl JournalEntry {
    /// The entry for `job`'s part having inserted `rows` rows.
    pub fn for_job(job: &LoadJob<'_>, rows: u64) -> Self {
        Self {
            key: JournalKey::job(job.job),
            part: job.part.clone(),
            rows,
        }
    }
}

/// The statement that records `entry` as committed for `load_id` in `dataset`'s journal; run it in
/// the part's transaction, after its rows.
pub fn journal_insert(dialect: &SqlDialect, dataset: &str, load_id: &str, entry: &JournalEntry) -> Statement {
    let (first, end) = match &entry.part {
        JobPart::Whole => (lit_i64(0), lit_null()),
        JobPart::RowGroups(range) => (
            lit_i64(i64::try_from(range.start).unwrap_or(i64::MAX)),
            lit_i64(i64::try_from(range.end).unwrap_or(i64::MAX)),
        ),
    };
    sql::insert_values(
        dialect,
        dataset,
        JOURNAL_TABLE,
        &[
            "load_id",
            "job_id",
            "first_row_group",
            "end_row_group",
            "rows",
            "inserted_at",
        ],
        vec![vec![
            lit_str(load_id),
            lit_str(entry.key.stored()),
            first,
            end,
            lit_i64(i64::try_from(entry.rows).unwrap_or(i64::MAX)),
            lit_str(crate::values::now_literal()),
        ]],
    )
}

/// [`journal_insert`] for `job`'s part.
pub fn journal_insert_for(dialect: &SqlDialect, job: &LoadJob<'_>, rows: u64) -> Statement {
    journal_insert(
        dialect,
        job.journal_dataset,
        &job.package.load_id,
        &JournalEntry::for_job(job, rows),
    )
}

fn int_column(batch: &arrow::array::RecordBatch, index: usize) -> Result<Vec<Option<i64>>> {
    let column = arrow::compute::cast(batch.column(index), &ArrowType::Int64)
        .map_err(|e| Error::Internal(format!("journal column {index} is not an integer: {e}")))?;
    let ints = column.as_primitive::<arrow::datatypes::Int64Type>();
    Ok((0..ints.len())
        .map(|i| ints.is_valid(i).then(|| ints.value(i)))
        .collect())
}

/// The parts of `load_id` committed in `dataset` (none when the journal does not exist yet).
pub async fn committed_parts(destination: &dyn Destination, dataset: &str, load_id: &str) -> Result<Vec<JournalEntry>> {
    let dialect = &destination.capabilities().dialect;
    let columns = ["job_id", "first_row_group", "end_row_group", "rows"];
    let mut scanned = columns.to_vec();
    scanned.push("load_id");
    let builder = sql::scan(dialect, dataset, JOURNAL_TABLE, &scanned)?
        .filter(sql::column(dialect, "load_id").eq(lit(load_id.to_string())))
        .and_then(|b| b.project(columns.iter().map(|c| sql::column(dialect, c)).collect::<Vec<_>>()))
        .map_err(berth_plan::Error::from)?;
    let query = sql::to_query(dialect, builder)?;
    let batches = match destination.query(Statement::Query(Box::new(query))).await {
        Ok(batches) => batches,
        Err(e) if e.kind() == ErrorKind::UndefinedRelation => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let malformed = |reason: String| Error::MalformedJournal {
        dataset: dataset.to_string(),
        load_id: load_id.to_string(),
        reason,
    };
    let mut out = Vec::new();
    for batch in &batches {
        if batch.num_columns() < columns.len() {
            return Err(malformed(format!(
                "{} columns answered, not {}",
                batch.num_columns(),
                columns.len()
            )));
        }
        let jobs = crate::values::string_column(batch, 0)?;
        let (first, end, rows) = (int_column(batch, 1)?, int_column(batch, 2)?, int_column(batch, 3)?);
        for row in 0..batch.num_rows() {
            let job_id = jobs[row]
                .clone()
                .filter(|j| !j.is_empty())
                .ok_or_else(|| malformed("no job_id".into()))?;
            let index = |v: Option<i64>, column: &str| {
                v.and_then(|v| usize::try_from(v).ok())
                    .ok_or_else(|| malformed(format!("job `{job_id}`: {column} is {v:?}")))
            };
            let start = index(first[row], "first_row_group")?;
            let part = match end[row] {
                None if start == 0 => JobPart::Whole,
                None => JobPart::RowGroups(start..usize::MAX),
                Some(_) => {
                    let end = index(end[row], "end_row_group")?;
                    if end <= start {
                        return Err(malformed(format!("job `{job_id}`: row groups {start}..{end}")));
                    }
                    JobPart::RowGroups(start..end)
                }
            };
            let rows = rows[row]
                .and_then(|r| u64::try_from(r).ok())
                .ok_or_else(|| malformed(format!("job `{job_id}`: rows is {:?}", rows[row])))?;
            out.push(JournalEntry {
                key: JournalKey::parse(&job_id),
                part,
                rows,
            });
        }
    }
    Ok(out)
}

/// The row groups of a file of `row_groups` row groups that `committed` does not cover, as
/// contiguous ranges; empty when the whole file is committed.
pub fn uncovered(row_groups: usize, committed: &[Range<usize>]) -> Vec<Range<usize>> {
    let mut covered = vec![false; row_groups];
    for range in committed {
        for flag in covered.iter_mut().take(range.end.min(row_groups)).skip(range.start) {
            *flag = true;
        }
    }
    let mut out = Vec::new();
    let mut start = None;
    for (index, &done) in covered.iter().enumerate() {
        match (done, start) {
            (false, None) => start = Some(index),
            (true, Some(s)) => {
                out.push(s..index);
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push(s..row_groups);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_keys_round_trip_as_stored() {
        for key in [
            JournalKey::Job("users.1a2b3c.0.parquet".into()),
            JournalKey::Followup("users".into()),
        ] {
            assert_eq!(JournalKey::parse(&key.stored()), key);
        }
        assert_eq!(JournalKey::Followup("users".into()).stored(), "followup:users");
    }

    #[test]
    fn uncovered_ranges_are_the_gaps() {
        assert_eq!(uncovered(5, &[]), vec![0..5]);
        assert_eq!(uncovered(5, &[0..2, 3..4]), vec![2..3, 4..5]);
        let whole = [Range { start: 0, end: 5 }];
        assert_eq!(uncovered(5, &whole), Vec::<Range<usize>>::new());
        let open_ended = [Range {
            start: 1,
            end: usize::MAX,
        }];
        assert_eq!(uncovered(4, &open_ended), vec![Range { start: 0, end: 1 }]);
    }
}
