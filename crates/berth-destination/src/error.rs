//! The error type of destinations, and what the loader should do about each error.

/// A `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What the loader does about an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Worth retrying: connection lost, deadlock, server restarting.
    Transient,
    /// Retrying cannot help: bad data, constraint violated, permission denied. Fail the job.
    Terminal,
    /// A table or schema does not exist (probing bookkeeping tables expects this).
    UndefinedRelation,
    /// berth did something it never should (a bug): report it.
    Bug,
}

impl From<ErrorKind> for berth_model::FailureKind {
    /// What dlt's folder protocol records of a failure: only transient errors are worth another
    /// run; every other kind is terminal.
    fn from(kind: ErrorKind) -> Self {
        match kind {
            ErrorKind::Transient => Self::Transient,
            ErrorKind::Terminal | ErrorKind::UndefinedRelation | ErrorKind::Bug => Self::Terminal,
        }
    }
}

impl From<berth_model::FailureKind> for ErrorKind {
    fn from(kind: berth_model::FailureKind) -> Self {
        match kind {
            berth_model::FailureKind::Transient => Self::Transient,
            berth_model::FailureKind::Terminal => Self::Terminal,
        }
    }
}

/// An error from a destination. Messages name the destination, the table and the job; they never
/// contain credentials (destinations pass only redacted descriptions).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The database refused or failed a statement.
    #[error("{destination}: {context}: {message}")]
    Database {
        /// Transient, terminal or undefined relation, decided where the driver error was seen.
        kind: ErrorKind,
        /// The destination (redacted).
        destination: String,
        /// What was running: the job file, or the statement's purpose and table.
        context: String,
        /// The database's message.
        message: String,
    },
    /// The package itself is bad (schema, job file).
    #[error(transparent)]
    Package(#[from] berth_model::Error),
    /// The package cannot be planned for this destination.
    #[error(transparent)]
    Plan(#[from] berth_plan::Error),
    /// The existing table disagrees with the package schema.
    #[error(
        "{destination}: column `{column}` of table `{table}` is `{found}` in the destination but `{expected}` in the package schema; berth changes a column type only to a wider one, with --widen-types (rename or drop the column, or load into another dataset)"
    )]
    SchemaMismatch {
        /// The destination (redacted).
        destination: String,
        /// Qualified table name.
        table: String,
        /// The column.
        column: String,
        /// dlt type in the package schema.
        expected: &'static str,
        /// Column type in the destination.
        found: String,
    },
    /// With `--widen-types`, a column the package widens along the lattice, by an edge the
    /// destination cannot take.
    #[error("{0}")]
    CannotWiden(Box<WideningRefused>),
    /// A setting of dlt's configuration read besides a destination's (its CSV writer's
    /// options) that berth cannot use.
    #[error("dlt setting from {origin}: {reason}")]
    DltSetting {
        /// Where it came from (an environment variable, a file's key).
        origin: String,
        /// What is wrong and what would do.
        reason: String,
    },
    /// A destination URL or option that cannot be used.
    #[error("destination `{destination}`: {reason}")]
    Config {
        /// The destination as given, with any password removed.
        destination: String,
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// A journal row berth cannot read (see [`crate::committed_parts`]).
    #[error(
        "`{dataset}._berth_journal` holds a row for load {load_id} berth cannot read ({reason}); the journal decides what is loaded, so the load stops (a bug if berth wrote it: please report it)"
    )]
    MalformedJournal {
        /// The final dataset.
        dataset: String,
        /// The load.
        load_id: String,
        /// What is wrong with the row.
        reason: String,
    },
    /// A bug in berth.
    #[error("internal error (a bug in berth, please report it): {0}")]
    Internal(String),
}

/// A column the package widens by an edge of the lattice the destination cannot take
/// ([`Error::CannotWiden`]).
#[derive(Debug, thiserror::Error)]
#[error(
    "{destination}: column `{column}` of table `{table}` is `{found}` in the destination and wider in the package schema (`{wanted}`, {edge}); {reason}"
)]
pub struct WideningRefused {
    /// The destination (redacted).
    pub destination: String,
    /// Qualified table name.
    pub table: String,
    /// The column.
    pub column: String,
    /// Column type in the destination.
    pub found: String,
    /// The type the package schema asks for, in the destination's terms.
    pub wanted: String,
    /// The lattice edge.
    pub edge: berth_plan::widen::Edge,
    /// Why the destination does not take it.
    pub reason: &'static str,
}

/// DataFusion failing while a destination runs a plan of berth's (the Delta lake's follow-ups).
impl From<datafusion::error::DataFusionError> for Error {
    fn from(e: datafusion::error::DataFusionError) -> Self {
        Self::Plan(berth_plan::Error::from(e))
    }
}

/// An Arrow kernel failing while a destination converts rows.
impl From<arrow::error::ArrowError> for Error {
    fn from(e: arrow::error::ArrowError) -> Self {
        Self::Plan(berth_plan::Error::from(e))
    }
}

impl Error {
    /// What the loader should do about this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Database { kind, .. } => *kind,
            Self::Package(e) if e.is_transient() => ErrorKind::Transient,
            Self::Package(_)
            | Self::Plan(_)
            | Self::SchemaMismatch { .. }
            | Self::CannotWiden(_)
            | Self::Config { .. }
            | Self::DltSetting { .. } => ErrorKind::Terminal,
            Self::Internal(_) | Self::MalformedJournal { .. } => ErrorKind::Bug,
        }
    }

    /// Shorthand for [`ErrorKind::Transient`].
    pub fn is_transient(&self) -> bool {
        self.kind() == ErrorKind::Transient
    }
}
