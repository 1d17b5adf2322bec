//! The error type of this crate.

/// A `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a plan or a statement cannot be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The package asks for something the destination cannot do.
    #[error("{message}")]
    Unsupported {
        /// What, naming the table and the destination.
        message: String,
    },
    /// A name the destination cannot take.
    #[error("{what} is {len} {unit} long; {destination} allows at most {max} (it would cut the name, not refuse it)")]
    IdentifierTooLong {
        /// The name and what it names: "column name `c` of table `t`".
        what: String,
        /// Its length.
        len: usize,
        /// `characters` or `bytes` (of UTF-8).
        unit: &'static str,
        /// The limit.
        max: usize,
        /// The destination.
        destination: &'static str,
    },
    /// Reading a job file failed (memory execution).
    #[error(transparent)]
    Model(#[from] Box<berth_model::Error>),
    /// An Arrow kernel failed (memory execution).
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    /// DataFusion failed to build or print a plan (a bug in berth).
    #[error("internal error while planning: {0}")]
    DataFusion(#[from] Box<datafusion::error::DataFusionError>),
}

impl From<datafusion::error::DataFusionError> for Error {
    fn from(e: datafusion::error::DataFusionError) -> Self {
        Self::DataFusion(Box::new(e))
    }
}

impl From<berth_model::Error> for Error {
    fn from(e: berth_model::Error) -> Self {
        Self::Model(Box::new(e))
    }
}
