//! The extension finds libduckdb.so next to itself (`$ORIGIN`: the wheel ships it in the `berth`
//! package); a development build (not a wheel: `BERTH_WHEEL` unset) also in the folder
//! `scripts/setup-duckdb.sh` fetched it to. A development build packs its relative relocations
//! where the machine can (`build/relr.rs`); a wheel, which may go to other machines, does not.
include!("../build/relr.rs");

fn main() {
    println!("cargo:rerun-if-env-changed=DUCKDB_LIB_DIR");
    println!("cargo:rerun-if-env-changed=BERTH_WHEEL");
    println!("cargo:rustc-link-arg-cdylib=-Wl,-rpath,$ORIGIN");
    if std::env::var_os("BERTH_WHEEL").is_some() {
        return;
    }
    if relr::packs_relative_relocs() {
        println!("cargo:rustc-link-arg-cdylib={}", relr::FLAG);
    }
    if let Ok(dir) = std::env::var("DUCKDB_LIB_DIR") {
        let dir = std::fs::canonicalize(&dir).unwrap_or_else(|_| dir.into());
        println!("cargo:rustc-link-arg-cdylib=-Wl,-rpath,{}", dir.display());
    }
}
