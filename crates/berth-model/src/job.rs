//! Job file names: `<table>.<file_id>.<retry_count>.<format>[.gz]`.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};

/// The format of a job file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileFormat {
    /// Apache Parquet.
    Parquet,
    /// Newline-delimited JSON objects.
    Jsonl,
    /// dlt's typed JSON lines (arrays of row objects).
    TypedJsonl,
    /// An `INSERT INTO {}(...) VALUES ...` SQL fragment.
    InsertValues,
    /// CSV with a header line.
    Csv,
    /// Arrow IPC (file or stream format).
    Arrow,
    /// Follow-up SQL (one statement per line).
    Sql,
    /// Newline-separated list of staged file URLs.
    Reference,
    /// A SELECT to be wrapped into an INSERT.
    Model,
}

impl FileFormat {
    /// The data formats berth reads into Arrow (every destination that loads through berth's
    /// readers takes all of them).
    pub const READABLE: [Self; 6] = [
        Self::Parquet,
        Self::Arrow,
        Self::Jsonl,
        Self::TypedJsonl,
        Self::Csv,
        Self::InsertValues,
    ];

    /// The name used in job file names.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Parquet => "parquet",
            Self::Jsonl => "jsonl",
            Self::TypedJsonl => "typed-jsonl",
            Self::InsertValues => "insert_values",
            Self::Csv => "csv",
            Self::Arrow => "arrow",
            Self::Sql => "sql",
            Self::Reference => "reference",
            Self::Model => "model",
        }
    }

    /// Formats that hold rows berth reads as Arrow record batches.
    pub fn is_data(self) -> bool {
        matches!(
            self,
            Self::Parquet | Self::Jsonl | Self::TypedJsonl | Self::InsertValues | Self::Csv | Self::Arrow
        )
    }
}

impl fmt::Display for FileFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for FileFormat {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        Ok(match s {
            "parquet" => Self::Parquet,
            "jsonl" => Self::Jsonl,
            "typed-jsonl" => Self::TypedJsonl,
            "insert_values" => Self::InsertValues,
            "csv" => Self::Csv,
            "arrow" | "ipc" | "feather" => Self::Arrow,
            "sql" => Self::Sql,
            "reference" => Self::Reference,
            "model" => Self::Model,
            _ => return Err(()),
        })
    }
}

/// A parsed job file name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct JobFileName {
    /// Table the job loads.
    pub table: String,
    /// File id, unique within the table.
    pub file_id: String,
    /// How often the job was retried.
    pub retry_count: u32,
    /// File format.
    pub format: FileFormat,
    /// gzip-compressed (`.gz` suffix).
    pub compressed: bool,
}

impl JobFileName {
    /// Parses a job file's base name.
    pub fn parse(name: &str) -> Result<Self> {
        let bad = |reason: String| Error::JobFileName {
            name: name.to_string(),
            reason,
        };
        let parts: Vec<&str> = name.split('.').collect();
        let compressed = match parts.len() {
            4 => false,
            5 if parts[4] == "gz" => true,
            5 => return Err(bad(format!("the fifth part must be `gz`, found `{}`", parts[4]))),
            n => {
                return Err(bad(format!(
                    "expected <table>.<file_id>.<retry_count>.<format>[.gz], found {n} dot-separated parts"
                )));
            }
        };
        let (table, file_id, retry, format) = (parts[0], parts[1], parts[2], parts[3]);
        if table.is_empty() {
            return Err(bad("the table name is empty".into()));
        }
        if file_id.is_empty()
            || !file_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(bad(format!(
                "the file id `{file_id}` must be non-empty letters, digits, `_` or `-`"
            )));
        }
        let retry_count = retry
            .parse::<u32>()
            .map_err(|_| bad(format!("the retry count `{retry}` is not a non-negative integer")))?;
        let format = format.parse().map_err(|()| Error::UnknownFormat {
            job: name.to_string(),
            format: format.to_string(),
        })?;
        Ok(Self {
            table: table.to_string(),
            file_id: file_id.to_string(),
            retry_count,
            format,
            compressed,
        })
    }

    /// The job id: the file name without the retry count, stable across retries.
    pub fn job_id(&self) -> String {
        let gz = if self.compressed { ".gz" } else { "" };
        format!("{}.{}.{}{gz}", self.table, self.file_id, self.format)
    }

    /// Its file in `.exceptions/`, recording why this attempt failed:
    /// `<table>.<file_id>.<retry_count>.exception`.
    pub fn exception_file_name(&self) -> String {
        format!("{}.{}.{}.exception", self.table, self.file_id, self.retry_count)
    }

    /// The same job with another retry count.
    pub fn with_retry(&self, retry_count: u32) -> Self {
        Self {
            retry_count,
            ..self.clone()
        }
    }
}

impl fmt::Display for JobFileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{}.{}.{}",
            self.table, self.file_id, self.retry_count, self.format
        )?;
        if self.compressed {
            f.write_str(".gz")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_job_ids() {
        let name = "_dlt_pipeline_state.535769b9da.0.insert_values.gz";
        let job = JobFileName::parse(name).unwrap();
        assert_eq!(job.table, "_dlt_pipeline_state");
        assert_eq!(job.format, FileFormat::InsertValues);
        assert!(job.compressed);
        assert_eq!(job.to_string(), name);
        assert_eq!(job.job_id(), "_dlt_pipeline_state.535769b9da.insert_values.gz");
        assert_eq!(
            job.with_retry(3).to_string(),
            "_dlt_pipeline_state.535769b9da.3.insert_values.gz"
        );
        let p = JobFileName::parse("users__orders.19600533ea.2.parquet").unwrap();
        assert_eq!((p.retry_count, p.compressed), (2, false));
    }

    #[test]
    fn rejects_names_outside_the_grammar() {
        for bad in [
            "users.parquet",
            "users.abc.x.parquet",
            "users.abc.0.parquet.zip",
            ".abc.0.parquet",
            "a.b.c.0.parquet.gz.x",
            "users.a;b.0.parquet",
            "users.abc.-1.parquet",
        ] {
            assert!(
                matches!(JobFileName::parse(bad), Err(Error::JobFileName { .. })),
                "{bad}"
            );
        }
        assert!(matches!(
            JobFileName::parse("users.abc.0.xlsx"),
            Err(Error::UnknownFormat { .. })
        ));
    }
}
