//! An S3 server on loopback (s3s-fs over a temporary folder, SigV4 with the test keys), for
//! measuring loads from a bucket: `berth bench --from-bucket s3://bench/…` next to the same load
//! from local disk.
//!
//! ```sh
//! cargo run --release -p berth-s3-server > /tmp/s3.env &   # the settings, as exports
//! . /tmp/s3.env && berth bench --destination postgres://… --rows 5000000 --from-bucket s3://bench/berth
//! ```
//!
//! It serves until killed (Ctrl-C); the folder goes with it.

use berth_s3_server::S3Server;

fn main() {
    let server = S3Server::start(&["bench"]);
    eprintln!(
        "S3 server on {} (bucket `bench`, folder {}); export these, then use s3://bench/<prefix>:",
        server.endpoint(),
        server.root().display()
    );
    for (key, value) in server.env() {
        println!("export {key}={value}");
    }
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let _keep = tx;
    // Blocks until the process is killed.
    let _ = rx.recv();
    drop(server);
}
