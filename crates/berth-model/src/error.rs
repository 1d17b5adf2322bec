//! The error type of this crate.

/// A `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can be wrong with a load package or one of its job files. Every variant names
/// the file (and where it applies the table and column) so a user can find it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A package location that cannot be understood.
    #[error("cannot open package `{location}`: {reason}")]
    Location {
        /// What the user gave.
        location: String,
        /// Why it is not usable.
        reason: String,
    },
    /// berth's config file cannot be used.
    #[error("config file `{path}`: {reason}")]
    Config {
        /// The file.
        path: String,
        /// What is wrong (never a value from the file).
        reason: String,
    },
    /// Reading or writing a package file failed.
    #[error("{operation} `{path}` failed: {source}")]
    Store {
        /// What was attempted (read, list, rename, ...).
        operation: &'static str,
        /// The file or folder.
        path: String,
        /// The object store's error.
        #[source]
        source: Box<object_store::Error>,
    },
    /// `schema.json` is missing.
    #[error("package `{package}` has no schema.json; is this a dlt normalized load package?")]
    MissingSchema {
        /// The package.
        package: String,
    },
    /// `schema.json` is not JSON of the expected shape.
    #[error("`{path}` is not a valid dlt schema: {source}")]
    SchemaJson {
        /// The schema file.
        path: String,
        /// The parse error (with line and column).
        #[source]
        source: serde_json::Error,
    },
    /// `schema.json` parses but says something berth cannot accept.
    #[error("`{path}` is not a valid dlt schema: {message}")]
    InvalidSchema {
        /// The schema file.
        path: String,
        /// What is wrong, naming the table and column.
        message: String,
    },
    /// `load_package_state.json` or `.restore/state.json` is broken.
    #[error("`{path}` is not a valid package state: {message}")]
    PackageState {
        /// The state file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// A path inside a package is a symbolic link: berth reads and writes only what is inside a
    /// package folder, so it refuses the package before loading anything.
    #[error(
        "`{path}` is a symbolic link; berth reads and writes only files inside the package folder (dlt writes no links): replace it by the file or folder itself"
    )]
    Symlink {
        /// The link, inside the package.
        path: String,
    },
    /// The package's load id cannot be told, or its folder name disagrees with it.
    #[error("{package}: {message}")]
    LoadId {
        /// The package.
        package: String,
        /// What is wrong and what to do.
        message: String,
    },
    /// A job file name outside `<table>.<file_id>.<retry_count>.<format>[.gz]`.
    #[error("job file `{name}` does not follow <table>.<file_id>.<retry_count>.<format>[.gz]: {reason}")]
    JobFileName {
        /// The file name.
        name: String,
        /// Which part is wrong.
        reason: String,
    },
    /// A job file format berth does not know.
    #[error(
        "job file `{job}` has format `{format}`, which berth cannot load (parquet, jsonl, typed-jsonl, csv, arrow, insert_values)"
    )]
    UnknownFormat {
        /// The job file.
        job: String,
        /// The format part of its name.
        format: String,
    },
    /// A job for a table the schema does not have.
    #[error("job file `{job}` loads table `{table}`, which is not in the package schema")]
    TableNotInSchema {
        /// The job file.
        job: String,
        /// The table.
        table: String,
    },
    /// A column in a job file that the table does not have.
    #[error("job file `{job}`: column `{column}` is not in table `{table}` of the package schema")]
    ColumnNotInSchema {
        /// The job file.
        job: String,
        /// The table.
        table: String,
        /// The column.
        column: String,
    },
    /// A NOT NULL column missing from a job file.
    #[error("job file `{job}`: column `{column}` of table `{table}` is NOT NULL but missing from the file")]
    MissingColumn {
        /// The job file.
        job: String,
        /// The table.
        table: String,
        /// The column.
        column: String,
    },
    /// A job file column whose type cannot hold the schema's type.
    #[error(
        "job file `{job}`: column `{column}` of table `{table}` is `{found}` in the file but `{expected}` in the schema"
    )]
    ColumnType {
        /// The job file.
        job: String,
        /// The table.
        table: String,
        /// The column.
        column: String,
        /// The schema's dlt type.
        expected: &'static str,
        /// The file's type.
        found: String,
    },
    /// A date or timestamp outside what every destination stores (see [`crate::read::range`]).
    #[error("{0}")]
    ValueOutOfRange(Box<crate::read::range::OutOfRange>),
    /// A job file that cannot be decoded.
    #[error("job file `{job}` cannot be read: {message}")]
    Decode {
        /// The job file.
        job: String,
        /// What went wrong (with line or row group where known).
        message: String,
    },
}

impl Error {
    /// Wraps an object store error with what was being done to which file.
    pub fn store(operation: &'static str, path: impl Into<String>, source: object_store::Error) -> Self {
        Self::Store {
            operation,
            path: path.into(),
            source: Box::new(source),
        }
    }

    /// Is this worth retrying (a store hiccup rather than bad content)?
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Store { source, .. } => !matches!(
                **source,
                object_store::Error::NotFound { .. }
                    | object_store::Error::InvalidPath { .. }
                    | object_store::Error::NotSupported { .. }
                    | object_store::Error::PermissionDenied { .. }
                    | object_store::Error::Unauthenticated { .. }
            ),
            _ => false,
        }
    }
}
