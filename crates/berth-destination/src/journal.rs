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
            // A part of rows (`first_row` set) stores -1 here, which versions that split only
            // at row groups refuse to read rather than misread.
            big("first_row_group"),
            // NULL: to the end of the file (the whole file for first_row_group 0).
            Column::new("end_row_group", DataType::Bigint),
            big("rows"),
            Column::new("inserted_at", DataType::Timestamp).with_nullable(false),
            // Rows `first_row..end_row` of a Parquet file; NULL for whole files and row groups.
            Column::new(FIRST_ROW, DataType::Bigint),
            Column::new("end_row", DataType::Bigint),
        ],
    )
}

/// The column that journals written before parts of rows existed lack.
const FIRST_ROW: &str = "first_row";

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
    let int = |v: u64| lit_i64(i64::try_from(v).unwrap_or(i64::MAX));
    let (first, end, first_row, end_row) = match &entry.part {
        JobPart::Whole => (lit_i64(0), lit_null(), lit_null(), lit_null()),
        JobPart::RowGroups(range) => (int(range.start as u64), int(range.end as u64), lit_null(), lit_null()),
        JobPart::Rows(range) => (lit_i64(-1), lit_null(), int(range.start), int(range.end)),
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
            FIRST_ROW,
            "end_row",
        ],
        vec![vec![
            lit_str(load_id),
            lit_str(entry.key.stored()),
            first,
            end,
            int(entry.rows),
            lit_str(crate::values::now_literal()),
            first_row,
            end_row,
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
    let journal = [JOURNAL_TABLE.to_string()];
    let stored = crate::migrate::storage_columns(destination, dataset, &journal).await?;
    let Some(stored) = stored.values().next() else {
        return Ok(Vec::new());
    };
    // A journal from before parts of rows has no row columns until this load migrates it.
    let has_rows = stored.iter().any(|c| c.name.eq_ignore_ascii_case(FIRST_ROW));
    let mut columns = vec!["job_id", "first_row_group", "end_row_group", "rows"];
    if has_rows {
        columns.extend([FIRST_ROW, "end_row"]);
    }
    let batches = scan_journal(destination, dataset, load_id, &columns).await?;
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
        let ints = (1..columns.len())
            .map(|i| int_column(batch, i))
            .collect::<Result<Vec<_>>>()?;
        for row in 0..batch.num_rows() {
            let job_id = jobs[row]
                .clone()
                .filter(|j| !j.is_empty())
                .ok_or_else(|| malformed("no job_id".into()))?;
            let value = |column: usize| ints.get(column - 1).and_then(|c| c[row]);
            let part = stored_part(value(1), value(2), has_rows.then(|| (value(4), value(5))))
                .map_err(|reason| malformed(format!("job `{job_id}`: {reason}")))?;
            let rows = value(3)
                .and_then(|r| u64::try_from(r).ok())
                .ok_or_else(|| malformed(format!("job `{job_id}`: rows is {:?}", value(3))))?;
            out.push(JournalEntry {
                key: JournalKey::parse(&job_id),
                part,
                rows,
            });
        }
    }
    Ok(out)
}

/// The journal rows of `load_id`, `columns` of them.
async fn scan_journal(
    destination: &dyn Destination,
    dataset: &str,
    load_id: &str,
    columns: &[&str],
) -> Result<Vec<arrow::array::RecordBatch>> {
    let dialect = &destination.capabilities().dialect;
    let mut scanned = columns.to_vec();
    scanned.push("load_id");
    let builder = sql::scan(dialect, dataset, JOURNAL_TABLE, &scanned)?
        .filter(sql::column(dialect, "load_id").eq(lit(load_id.to_string())))
        .and_then(|b| b.project(columns.iter().map(|c| sql::column(dialect, c)).collect::<Vec<_>>()))
        .map_err(berth_plan::Error::from)?;
    let query = sql::to_query(dialect, builder)?;
    match destination.query(Statement::Query(Box::new(query))).await {
        Ok(batches) => Ok(batches),
        Err(e) if e.kind() == ErrorKind::UndefinedRelation => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// The part a journal row records: from its row-group columns, or its row columns when set.
fn stored_part(
    first_group: Option<i64>,
    end_group: Option<i64>,
    rows: Option<(Option<i64>, Option<i64>)>,
) -> std::result::Result<JobPart, String> {
    if let Some((Some(first), end)) = rows {
        let first = u64::try_from(first).map_err(|_| format!("first_row is {first}"))?;
        let end = end
            .and_then(|e| u64::try_from(e).ok())
            .filter(|&e| e > first)
            .ok_or_else(|| format!("rows {first}..{end:?}"))?;
        return Ok(JobPart::Rows(first..end));
    }
    let index = |v: Option<i64>, column: &str| {
        v.and_then(|v| usize::try_from(v).ok())
            .ok_or_else(|| format!("{column} is {v:?}"))
    };
    let start = index(first_group, "first_row_group")?;
    match end_group {
        None if start == 0 => Ok(JobPart::Whole),
        None => Ok(JobPart::RowGroups(start..usize::MAX)),
        Some(_) => {
            let end = index(end_group, "end_row_group")?;
            if end <= start {
                return Err(format!("row groups {start}..{end}"));
            }
            Ok(JobPart::RowGroups(start..end))
        }
    }
}

/// The rows of a file of `rows` rows that `committed` does not cover, as contiguous ranges in
/// order; empty when the whole file is committed.
pub fn uncovered(rows: u64, committed: &[Range<u64>]) -> Vec<Range<u64>> {
    let mut done: Vec<Range<u64>> = committed.iter().filter(|r| r.start < r.end).cloned().collect();
    done.sort_by_key(|r| r.start);
    let mut out = Vec::new();
    let mut at = 0;
    for range in done {
        if range.start > at {
            out.push(at..range.start.min(rows));
        }
        at = at.max(range.end);
        if at >= rows {
            break;
        }
    }
    if at < rows {
        out.push(at..rows);
    }
    out.retain(|r| r.start < r.end);
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
        assert_eq!(uncovered(10, &[6..8, 0..2, 1..3]), vec![3..6, 8..10]);
        assert_eq!(uncovered(5, &[Range { start: 0, end: 5 }]), Vec::<Range<u64>>::new());
        assert_eq!(
            uncovered(
                4,
                &[Range {
                    start: 1,
                    end: u64::MAX
                }]
            ),
            [Range { start: 0, end: 1 }]
        );
    }

    #[test]
    fn stored_parts_read_every_version_of_the_journal() {
        assert_eq!(stored_part(Some(0), None, None), Ok(JobPart::Whole));
        assert_eq!(stored_part(Some(2), Some(5), None), Ok(JobPart::RowGroups(2..5)));
        assert_eq!(
            stored_part(Some(2), None, Some((None, None))),
            Ok(JobPart::RowGroups(2..usize::MAX))
        );
        assert_eq!(
            stored_part(Some(-1), None, Some((Some(10), Some(20)))),
            Ok(JobPart::Rows(10..20))
        );
        assert!(stored_part(Some(-1), None, Some((Some(10), Some(10)))).is_err());
        assert!(stored_part(Some(-1), None, Some((Some(10), None))).is_err());
        // What a version that splits only at row groups reads of a part of rows: an error.
        assert!(stored_part(Some(-1), None, None).is_err());
    }
}
