//! JSONL jobs (dlt's `jsonl` and `typed-jsonl`) decoded in chunks, on several threads.
//!
//! One thread reads the file (inflating it) and cuts it into chunks of whole lines, about
//! [`CHUNK_BYTES`] each. Workers decode the chunks, each into its own batches; chunks are dealt to
//! the workers in turn and their batches taken back in the same turn, so rows keep the file's
//! order, and they leave in batches of the job's batch size, as one decoder would cut them. Every
//! channel holds one item: memory is a few chunks per worker, whatever the file size.
//!
//! A worker decodes a chunk one of two ways:
//!
//! - **direct** ([`json_direct`]): for tables of integers, doubles, text, booleans and
//!   timestamps, every value goes straight into its column's builder in one pass;
//! - **general**: each row Arrow's decoder can take as it is goes to it as bytes (typed markers cut
//!   out, [`json_rows`]); a line with any other row is read into values and readied or refused
//!   row by row ([`careful_rows`]), which says exactly what is wrong with it.
//!
//! The direct decoder gives up on a chunk with any row it does not take as Arrow would; that chunk
//! takes the general path, so both ways decode a chunk to the same rows, or to the same error.

use std::collections::HashSet;
use std::io::BufRead;
use std::ops::Range;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType as ArrowType, Schema as ArrowSchema, SchemaRef};

use super::json_direct::DirectColumns;
use super::{Emit, MAX_LINE_BYTES, binary_columns_from_text, careful_rows, decode_error, json_rows};
use crate::error::Result;
use crate::schema::{DataType, Table};

/// A chunk is cut after the first line that takes it to this many bytes.
const CHUNK_BYTES: usize = 1 << 20;

/// Decodes the JSONL job `input` of `table` into batches of `batch_size` rows of `schema`.
pub(super) fn decode_jsonl(
    input: Box<dyn BufRead + Send>,
    table: &Table,
    schema: SchemaRef,
    typed: bool,
    batch_size: usize,
    emit: Emit<'_>,
    job: &str,
) -> Result<()> {
    let decoder = ChunkDecoder::new(table, schema, typed, batch_size, job);
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(1, 4);
    std::thread::scope(|scope| {
        let mut chunks = Vec::with_capacity(workers);
        let mut results = Vec::with_capacity(workers);
        for _ in 0..workers {
            let (chunk_tx, chunk_rx) = sync_channel::<Result<Chunk>>(1);
            let (result_tx, result_rx) = sync_channel::<Result<Vec<RecordBatch>>>(1);
            let decoder = &decoder;
            scope.spawn(move || {
                for chunk in chunk_rx {
                    // Stopping drops the receiver: this worker ends, and with it the reader.
                    if result_tx.send(chunk.and_then(|c| decoder.decode(&c))).is_err() {
                        return;
                    }
                }
            });
            chunks.push(chunk_tx);
            results.push(result_rx);
        }
        scope.spawn(move || read_chunks(input, &chunks, job));
        take_in_turn(&results, batch_size, emit, job)
    })
}

/// Emits the batches of each worker in turn (chunk `n` came from worker `n % workers`), in
/// batches of `batch_size` rows, until the workers run out of chunks, one fails, or `emit` says
/// stop.
fn take_in_turn(
    results: &[Receiver<Result<Vec<RecordBatch>>>],
    batch_size: usize,
    emit: Emit<'_>,
    job: &str,
) -> Result<()> {
    let mut out = Rebatch::new(batch_size, job);
    for turn in 0.. {
        // A worker with no chunk left ends, closing its channel: the file is done.
        let Ok(batches) = results[turn % results.len()].recv() else {
            break;
        };
        for batch in batches? {
            if !out.push(batch, emit)? {
                return Ok(());
            }
        }
    }
    out.finish(emit)?;
    Ok(())
}

/// Whole lines of a JSONL file.
struct Chunk {
    /// 1-based number of the first line, for errors.
    first_line: usize,
    text: Vec<u8>,
    lines: Vec<Range<usize>>,
}

impl Chunk {
    fn lines(&self) -> impl Iterator<Item = (usize, &[u8])> {
        self.lines
            .iter()
            .enumerate()
            .map(|(i, r)| (self.first_line + i, &self.text[r.clone()]))
    }
}

/// Reads `input` into chunks, dealt to `workers` in turn; an error goes in turn after the lines
/// before it.
fn read_chunks(input: Box<dyn BufRead + Send>, workers: &[SyncSender<Result<Chunk>>], job: &str) {
    let mut chunks = Chunks::new(input, CHUNK_BYTES, MAX_LINE_BYTES);
    for turn in 0.. {
        let Some(chunk) = chunks.next() else { return };
        let failed = chunk.is_err();
        let chunk = chunk.map_err(|(line, e)| decode_error(job, format!("line {line}: {e}")));
        if workers[turn % workers.len()].send(chunk).is_err() || failed {
            return;
        }
    }
}

/// Bytes read at a time: the inflater writes straight into the chunk.
const READ_BYTES: usize = 256 << 10;

/// The chunks of whole lines of a byte stream. A line longer than `max_line` bytes is an error,
/// found without reading more than a read beyond it.
struct Chunks<R> {
    input: R,
    chunk_bytes: usize,
    max_line: usize,
    /// The start of the line the last chunk did not end.
    carry: Vec<u8>,
    next_line: usize,
    /// An error to report after the lines before it, with its line.
    failed: Option<(usize, std::io::Error)>,
    done: bool,
}

impl<R: std::io::Read> Chunks<R> {
    fn new(input: R, chunk_bytes: usize, max_line: usize) -> Self {
        Self {
            input,
            chunk_bytes,
            max_line,
            carry: Vec::new(),
            next_line: 1,
            failed: None,
            done: false,
        }
    }

    /// Reads until the text holds `chunk_bytes` and a line end, or the input ends; returns the
    /// text and whether the input ended, or the line number and error of an overlong line or a
    /// failed read (with the text read before it).
    fn fill(&mut self) -> (Vec<u8>, std::result::Result<bool, std::io::Error>) {
        let mut text = std::mem::take(&mut self.carry);
        let mut len = text.len();
        let mut last_end = memchr::memrchr(b'\n', &text);
        // Zeroed once per chunk (more only for a line longer than a chunk), then read into.
        text.resize(len + self.chunk_bytes + READ_BYTES, 0);
        let ended = loop {
            if len >= self.chunk_bytes && last_end.is_some() {
                break Ok(false);
            }
            if text.len() < len + READ_BYTES {
                text.resize(len + READ_BYTES, 0);
            }
            let read = match self.input.read(&mut text[len..len + READ_BYTES]) {
                Ok(0) => break Ok(true),
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => break Err(e),
            };
            if let Some(end) = memchr::memrchr(b'\n', &text[len..len + read]) {
                last_end = Some(len + end);
            }
            len += read;
            if len - last_end.map_or(0, |e| e + 1) > self.max_line {
                break Err(self.overlong());
            }
        };
        text.truncate(len);
        (text, ended)
    }

    /// The error of a line longer than `max_line` bytes.
    fn overlong(&self) -> std::io::Error {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("longer than {} MiB: not a row dlt writes", self.max_line >> 20),
        )
    }
}

impl<R: std::io::Read> Iterator for Chunks<R> {
    /// A chunk, or the number of the line that could not be read and why.
    type Item = std::result::Result<Chunk, (usize, std::io::Error)>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(failed) = self.failed.take() {
            self.done = true;
            return Some(Err(failed));
        }
        if self.done {
            return None;
        }
        let (mut text, ended) = self.fill();
        let mut lines = Vec::new();
        let mut start = 0;
        for end in memchr::memchr_iter(b'\n', &text) {
            lines.push(start..end);
            start = end + 1;
        }
        match ended {
            Ok(false) => self.carry = text.split_off(start),
            // The last line may have no line end.
            Ok(true) => {
                self.done = true;
                if start < text.len() {
                    lines.push(start..text.len());
                }
            }
            Err(e) => self.failed = Some((self.next_line + lines.len(), e)),
        }
        // A line longer than allowed, ended within one read.
        if let Some(i) = lines.iter().position(|line| line.len() > self.max_line) {
            self.failed = Some((self.next_line + i, self.overlong()));
            lines.truncate(i);
        }
        let chunk = Chunk {
            first_line: self.next_line,
            text,
            lines,
        };
        self.next_line += chunk.lines.len();
        if chunk.lines.is_empty() {
            return self.next();
        }
        Some(Ok(chunk))
    }
}

/// What the workers of one job share: how to decode a chunk of it.
struct ChunkDecoder<'a> {
    table: &'a Table,
    schema: SchemaRef,
    /// `schema` with binary columns as text (JSON carries them as strings).
    text_schema: SchemaRef,
    binary_columns: Vec<usize>,
    json_columns: HashSet<&'a str>,
    checks: json_rows::Columns<'a>,
    direct: Option<DirectColumns>,
    typed: bool,
    batch_size: usize,
    job: &'a str,
}

impl<'a> ChunkDecoder<'a> {
    fn new(table: &'a Table, schema: SchemaRef, typed: bool, batch_size: usize, job: &'a str) -> Self {
        let json_columns = table
            .complete_columns()
            .filter(|c| c.data_type == Some(DataType::Json))
            .map(|c| c.name.as_str())
            .collect();
        // Binary values are strings in JSON: decoded as text first, then turned into bytes (see
        // `binary_columns_from_text`).
        let binary_columns: Vec<usize> = schema
            .fields()
            .iter()
            .enumerate()
            .filter(|(_, f)| matches!(f.data_type(), ArrowType::Binary | ArrowType::LargeBinary))
            .map(|(i, _)| i)
            .collect();
        let text_fields: Vec<_> = schema
            .fields()
            .iter()
            .enumerate()
            .map(|(i, f)| match binary_columns.contains(&i) {
                true => f.as_ref().clone().with_data_type(ArrowType::Utf8),
                false => f.as_ref().clone(),
            })
            .collect();
        Self {
            table,
            direct: DirectColumns::new(table, &schema, typed),
            text_schema: Arc::new(ArrowSchema::new(text_fields)),
            schema,
            binary_columns,
            json_columns,
            checks: row_checks(table, typed),
            typed,
            batch_size,
            job,
        }
    }

    /// The rows of `chunk`, directly where its rows allow, else on the general path.
    fn decode(&self, chunk: &Chunk) -> Result<Vec<RecordBatch>> {
        if let Some(direct) = &self.direct
            && let Some(batch) = direct.decode(chunk.lines().map(|(_, line)| line))
        {
            return Ok(vec![batch]);
        }
        self.general(chunk)
    }

    /// The rows of `chunk` through Arrow's decoder, in batches of at most the batch size.
    fn general(&self, chunk: &Chunk) -> Result<Vec<RecordBatch>> {
        let job = self.job;
        let mut decoder = arrow::json::ReaderBuilder::new(Arc::clone(&self.text_schema))
            .with_batch_size(self.batch_size)
            .build_decoder()
            .map_err(|e| decode_error(job, e.to_string()))?;
        let mut batches = Vec::new();
        let mut flush = |decoder: &mut arrow::json::reader::Decoder| -> Result<()> {
            if let Some(batch) = decoder.flush().map_err(|e| decode_error(job, e.to_string()))? {
                let typed = self.typed;
                batches.push(binary_columns_from_text(
                    batch,
                    &self.schema,
                    &self.binary_columns,
                    typed,
                    job,
                )?);
            }
            Ok(())
        };
        for (no, bytes) in chunk.lines() {
            let line =
                std::str::from_utf8(bytes).map_err(|e| decode_error(job, format!("line {no} is not UTF-8: {e}")))?;
            if line.trim().is_empty() {
                continue;
            }
            // Rows Arrow takes as they are (typed markers cut out) go to it as bytes; a line with
            // any other row is read whole into values and readied (or refused) row by row.
            let rows: Vec<RowInput> = match json_rows::fast_rows(bytes, self.typed, &self.checks, self.typed) {
                Some(rows) => rows.into_iter().map(RowInput::Fast).collect(),
                None => careful_rows(line, self.table, &self.json_columns, self.typed, no, job)?
                    .into_iter()
                    .map(RowInput::Value)
                    .collect(),
            };
            for row in &rows {
                let fed = match row {
                    // Fed while fewer than a batch of rows is buffered, a whole row is always taken.
                    RowInput::Fast(row) => decoder.decode(row.bytes(bytes)).map(|_| ()),
                    RowInput::Value(value) => decoder.serialize(std::slice::from_ref(value)),
                };
                fed.map_err(|e| decode_error(job, format!("line {no}: {e}")))?;
                if decoder.len() >= self.batch_size {
                    flush(&mut decoder)?;
                }
            }
        }
        if !decoder.is_empty() {
            flush(&mut decoder)?;
        }
        Ok(batches)
    }
}

/// A row of a JSONL line for Arrow's decoder: bytes it takes as they are, or a readied value.
enum RowInput {
    Fast(json_rows::FastRow),
    Value(serde_json::Value),
}

/// Cuts batches of any size into batches of `size` rows (the last one smaller).
struct Rebatch<'a> {
    size: usize,
    job: &'a str,
    pending: Vec<RecordBatch>,
    rows: usize,
}

impl<'a> Rebatch<'a> {
    fn new(size: usize, job: &'a str) -> Self {
        Self {
            size,
            job,
            pending: Vec::new(),
            rows: 0,
        }
    }

    /// Takes `batch`; emits every whole batch there is. False once `emit` said stop.
    fn push(&mut self, batch: RecordBatch, emit: Emit<'_>) -> Result<bool> {
        self.rows += batch.num_rows();
        self.pending.push(batch);
        while self.rows >= self.size {
            let batch = self.take(self.size)?;
            if !emit(batch) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Emits the rows left.
    fn finish(mut self, emit: Emit<'_>) -> Result<bool> {
        if self.rows == 0 {
            return Ok(true);
        }
        let batch = self.take(self.rows)?;
        Ok(emit(batch))
    }

    /// The first `rows` pending rows as one batch.
    fn take(&mut self, rows: usize) -> Result<RecordBatch> {
        let mut pieces = Vec::new();
        let mut wanted = rows;
        while wanted > 0 {
            let first = &self.pending[0];
            if first.num_rows() <= wanted {
                wanted -= first.num_rows();
                pieces.push(self.pending.remove(0));
            } else {
                pieces.push(first.slice(0, wanted));
                self.pending[0] = first.slice(wanted, first.num_rows() - wanted);
                wanted = 0;
            }
        }
        self.rows -= rows;
        match pieces.len() {
            1 => Ok(pieces.pop().expect("one piece")),
            _ => arrow::compute::concat_batches(&pieces[0].schema(), &pieces)
                .map_err(|e| decode_error(self.job, e.to_string())),
        }
    }
}

/// What [`json_rows::fast_rows`] checks of each column of `table`.
fn row_checks(table: &Table, typed: bool) -> json_rows::Columns<'_> {
    use json_rows::ColumnCheck;
    json_rows::Columns::new(table.columns.values().map(|c| {
        let check = match c.data_type {
            Some(DataType::Json) => ColumnCheck::Careful,
            Some(DataType::Bigint) => ColumnCheck::Bigint,
            // Binary text keeps its marker: `binary_columns_from_text` reads it.
            Some(DataType::Binary) => ColumnCheck::Plain,
            _ if typed => ColumnCheck::Text,
            _ => ColumnCheck::Plain,
        };
        (c.name.as_str(), check)
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines_of(
        text: &[u8],
        chunk_bytes: usize,
        max_line: usize,
    ) -> (Vec<Vec<String>>, Option<(usize, std::io::ErrorKind)>) {
        let mut chunks = Vec::new();
        for chunk in Chunks::new(std::io::Cursor::new(text.to_vec()), chunk_bytes, max_line) {
            match chunk {
                Ok(chunk) => chunks.push(
                    chunk
                        .lines()
                        .map(|(_, l)| String::from_utf8(l.to_vec()).unwrap())
                        .collect(),
                ),
                Err((line, e)) => return (chunks, Some((line, e.kind()))),
            }
        }
        (chunks, None)
    }

    #[test]
    fn lines_are_cut_into_chunks_and_bounded() {
        let (chunks, failed) = lines_of(b"ab\ncdef\n\nlast", 1 << 20, 4);
        assert_eq!(chunks, [vec!["ab", "cdef", "", "last"]]);
        assert!(failed.is_none());
        // A final line end ends the last line; small chunks hold whole lines.
        let (chunks, _) = lines_of(b"ab\ncd\nef\n", 3, 4);
        assert_eq!(chunks.concat(), ["ab", "cd", "ef"]);
        // An overlong line is an error with its number, after the lines before it.
        let (chunks, failed) = lines_of(b"ab\nabcdefghijk\ncd", 1 << 20, 4);
        assert_eq!(chunks, [vec!["ab"]]);
        assert_eq!(failed, Some((2, std::io::ErrorKind::InvalidData)));
        let (chunks, failed) = lines_of(&vec![b'x'; 3 * READ_BYTES], 1 << 20, 10);
        assert!(chunks.is_empty());
        assert_eq!(failed, Some((1, std::io::ErrorKind::InvalidData)));
    }
}
