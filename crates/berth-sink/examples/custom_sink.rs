//! A custom sink in a few lines: print each batch's size and first row, fail terminally on a table
//! the "API" does not know, and let berth do the rest (batching, retries, progress, resume).
//!
//! ```sh
//! cargo run -p berth-sink --example custom_sink -- testdata/quickstart/packages/1795381980.7559764
//! ```

use std::sync::Arc;

use berth_sink::{SinkError, SinkLoader, SinkOptions, sink_fn};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let package = std::env::args()
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("usage: custom_sink <package folder>"))?;

    let sink = sink_fn("stdout preview", |batch| async move {
        if batch.table.name.starts_with("secret") {
            return Err(SinkError::terminal(format!(
                "no endpoint for table {}",
                batch.table.name
            )));
        }
        let first = arrow::util::pretty::pretty_format_batches(&[batch.rows.slice(0, batch.rows.num_rows().min(1))])
            .map_err(|e| SinkError::terminal(e.to_string()))?;
        println!(
            "{} batch {} ({} rows, key {}):\n{first}",
            batch.table.name,
            batch.index,
            batch.rows.num_rows(),
            batch.idempotency_key()
        );
        Ok(())
    });

    // Work on a copy: a sink records its progress in the package, as dlt does.
    let copy = tempfile::tempdir()?;
    let target = copy
        .path()
        .join(std::path::Path::new(&package).file_name().unwrap_or_default());
    copy_dir(std::path::Path::new(&package), &target)?;

    let loader = SinkLoader::new(Arc::new(sink)).with_options(SinkOptions::default().with_batch_size(50));
    let summary = loader
        .load(berth_model::PackageLocation::parse(&target.to_string_lossy())?)
        .await?;
    println!("{:?}: {} rows sent", summary.status, summary.rows());
    Ok(())
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}
