//! A thin safe layer over the DuckDB C API for what the `duckdb` crate does not expose: sharing one
//! database between many connections, registering an Arrow C stream as a view, and error types.

use std::ffi::{CStr, CString};
use std::ptr;

use arrow::ffi_stream::FFI_ArrowArrayStream;
use berth_destination::ErrorKind;
use libduckdb_sys as ffi;

/// A DuckDB error with the kind the loader acts on.
#[derive(Debug, Clone)]
pub(crate) struct DuckError {
    pub kind: ErrorKind,
    pub message: String,
    /// DuckDB ran out of the memory its `memory_limit` allows.
    pub out_of_memory: bool,
}

impl DuckError {
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            out_of_memory: false,
        }
    }
}

/// Maps DuckDB's error type to what the loader does (reference §6.4).
fn classify(error_type: ffi::duckdb_error_type, message: &str) -> ErrorKind {
    match error_type {
        ffi::duckdb_error_type_DUCKDB_ERROR_CATALOG if message.contains("already exists") => ErrorKind::Terminal,
        ffi::duckdb_error_type_DUCKDB_ERROR_CATALOG => ErrorKind::UndefinedRelation,
        ffi::duckdb_error_type_DUCKDB_ERROR_IO
            if message.contains("No files found") || message.contains("does not exist") =>
        {
            ErrorKind::UndefinedRelation
        }
        ffi::duckdb_error_type_DUCKDB_ERROR_IO
        | ffi::duckdb_error_type_DUCKDB_ERROR_TRANSACTION
        | ffi::duckdb_error_type_DUCKDB_ERROR_CONNECTION
        | ffi::duckdb_error_type_DUCKDB_ERROR_NETWORK
        | ffi::duckdb_error_type_DUCKDB_ERROR_HTTP
        | ffi::duckdb_error_type_DUCKDB_ERROR_INTERRUPT
        | ffi::duckdb_error_type_DUCKDB_ERROR_OUT_OF_MEMORY => ErrorKind::Transient,
        ffi::duckdb_error_type_DUCKDB_ERROR_INTERNAL
        | ffi::duckdb_error_type_DUCKDB_ERROR_FATAL
        | ffi::duckdb_error_type_DUCKDB_ERROR_NULL_POINTER => ErrorKind::Bug,
        _ => ErrorKind::Terminal,
    }
}

/// An open DuckDB database. Connections may be made from any thread.
#[derive(Debug)]
pub(crate) struct Database {
    raw: ffi::duckdb_database,
}

// SAFETY: a duckdb_database is a thread-safe handle; connections are made per thread.
unsafe impl Send for Database {}
// SAFETY: as above; the handle itself is never mutated after open.
unsafe impl Sync for Database {}

/// The linked DuckDB library's version (`v1.5.6`).
pub(crate) fn library_version() -> String {
    // SAFETY: DuckDB returns a static NUL-terminated string.
    let version = unsafe { ffi::duckdb_library_version() };
    if version.is_null() {
        return "unknown".into();
    }
    // SAFETY: non-NULL, NUL-terminated and static (checked above).
    unsafe { CStr::from_ptr(version) }.to_string_lossy().into_owned()
}

impl Database {
    /// Opens (creating if missing) the database at `path` (`:memory:` for in-memory).
    pub(crate) fn open(path: &str) -> Result<Self, DuckError> {
        let c_path = CString::new(path).map_err(|_| DuckError::new(ErrorKind::Terminal, "path contains a NUL byte"))?;
        let mut raw: ffi::duckdb_database = ptr::null_mut();
        let mut error: *mut std::os::raw::c_char = ptr::null_mut();
        // SAFETY: out-pointers are valid; a NULL config means defaults.
        let state = unsafe { ffi::duckdb_open_ext(c_path.as_ptr(), &mut raw, ptr::null_mut(), &mut error) };
        if state != ffi::DuckDBSuccess {
            let message = if error.is_null() {
                "unknown error".to_string()
            } else {
                // SAFETY: DuckDB returns a NUL-terminated string that we must free.
                let m = unsafe { CStr::from_ptr(error) }.to_string_lossy().into_owned();
                // SAFETY: `error` was allocated by DuckDB, is freed once, and not read after.
                unsafe { ffi::duckdb_free(error.cast()) };
                m
            };
            // Another process holds the file (DuckDB admits one writing process per file).
            let kind = if message.contains("Could not set lock on file") {
                ErrorKind::Transient
            } else {
                ErrorKind::Terminal
            };
            return Err(DuckError::new(kind, message));
        }
        Ok(Self { raw })
    }

    /// A new connection.
    pub(crate) fn connect(&self) -> Result<Connection, DuckError> {
        let mut raw: ffi::duckdb_connection = ptr::null_mut();
        // SAFETY: the database is open for as long as `self` lives; out-pointer valid.
        if unsafe { ffi::duckdb_connect(self.raw, &mut raw) } != ffi::DuckDBSuccess {
            return Err(DuckError::new(ErrorKind::Transient, "could not open a connection"));
        }
        Ok(Connection { raw })
    }

    /// A `duckdb` crate connection on this database (for reading results as Arrow).
    pub(crate) fn crate_connection(&self) -> Result<duckdb::Connection, DuckError> {
        // SAFETY: `open_from_raw` does not take ownership of the handle (we close it in Drop), and
        // the returned connection is dropped before `self` (it is used within one call).
        unsafe { duckdb::Connection::open_from_raw(self.raw) }
            .map_err(|e| DuckError::new(ErrorKind::Transient, e.to_string()))
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        // SAFETY: every connection borrowed `self`, so none outlives it.
        unsafe { ffi::duckdb_close(&mut self.raw) };
    }
}

/// One connection (a session with its own transaction).
#[derive(Debug)]
pub(crate) struct Connection {
    raw: ffi::duckdb_connection,
}

// SAFETY: a connection may move between threads; it is used by one thread at a time.
unsafe impl Send for Connection {}

impl Connection {
    /// Runs one or more statements; returns the rows changed by the last.
    pub(crate) fn execute(&self, sql: &str) -> Result<u64, DuckError> {
        let c_sql =
            CString::new(sql).map_err(|_| DuckError::new(ErrorKind::Terminal, "statement contains a NUL byte"))?;
        // SAFETY: zeroed is the documented initial state of a duckdb_result out-parameter.
        let mut result: ffi::duckdb_result = unsafe { std::mem::zeroed() };
        // SAFETY: connection open, string NUL-terminated, result valid for writing.
        let state = unsafe { ffi::duckdb_query(self.raw, c_sql.as_ptr(), &mut result) };
        let outcome = if state == ffi::DuckDBSuccess {
            // SAFETY: a successful result.
            Ok(unsafe { ffi::duckdb_rows_changed(&mut result) })
        } else {
            // SAFETY: a failed result carries an error string and type.
            let message = unsafe {
                let m = ffi::duckdb_result_error(&mut result);
                if m.is_null() {
                    "unknown error".to_string()
                } else {
                    CStr::from_ptr(m).to_string_lossy().into_owned()
                }
            };
            // SAFETY: `result` is the failed result DuckDB just filled in.
            let error_type = unsafe { ffi::duckdb_result_error_type(&mut result) };
            Err(DuckError {
                kind: classify(error_type, &message),
                out_of_memory: error_type == ffi::duckdb_error_type_DUCKDB_ERROR_OUT_OF_MEMORY,
                message,
            })
        };
        // SAFETY: every result, failed or not, must be destroyed once.
        unsafe { ffi::duckdb_destroy_result(&mut result) };
        outcome
    }

    /// Registers `stream` as a temporary view `name` on this connection. DuckDB reads the stream
    /// while a query scans the view; the caller keeps it alive (and releases it) afterwards.
    pub(crate) fn register_arrow_stream(&self, name: &str, stream: &mut FFI_ArrowArrayStream) -> Result<(), DuckError> {
        let c_name = CString::new(name).map_err(|_| DuckError::new(ErrorKind::Bug, "view name contains a NUL byte"))?;
        let pointer = (stream as *mut FFI_ArrowArrayStream).cast::<ffi::_duckdb_arrow_stream>();
        // SAFETY: FFI_ArrowArrayStream is the C Data Interface's ArrowArrayStream (repr(C)); DuckDB
        // does not take ownership (it copies the struct with a no-op release).
        let state = unsafe { ffi::duckdb_arrow_scan(self.raw, c_name.as_ptr(), pointer) };
        if state != ffi::DuckDBSuccess {
            return Err(DuckError::new(
                ErrorKind::Terminal,
                "DuckDB could not read the Arrow stream's schema",
            ));
        }
        Ok(())
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        // SAFETY: the connection is open and dropped once.
        unsafe { ffi::duckdb_disconnect(&mut self.raw) };
    }
}
