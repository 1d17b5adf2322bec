//! Shared build script for the packages that link libduckdb into a binary or test:
//!
//! - bakes the directory of the prebuilt libduckdb.so (DUCKDB_LIB_DIR, set by
//!   .cargo/config.toml) into the runtime library path, canonicalised so the binary keeps
//!   working when the clone is gone;
//! - packs the binaries' relative relocations ([`relr::packs_relative_relocs`]).
include!("relr.rs");

fn main() {
    println!("cargo:rerun-if-env-changed=DUCKDB_LIB_DIR");
    if let Ok(dir) = std::env::var("DUCKDB_LIB_DIR") {
        let dir = std::fs::canonicalize(&dir).unwrap_or_else(|_| dir.into());
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir.display());
    }
    if relr::packs_relative_relocs() {
        println!("cargo:rustc-link-arg={}", relr::FLAG);
    }
}
