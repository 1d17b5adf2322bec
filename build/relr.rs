/// Packed relative relocations (`DT_RELR`) for the binaries berth builds, where the machine
/// has them. A position-independent binary lists, for every pointer in its data, where the
/// loader must add the load address: berth's 7 MiB of such entries were read at every start and
/// stayed resident for the whole run. Packed, they take 80 KiB, and every load's peak memory is
/// 10 MiB lower (`berth bench --destination duckdb:… --shape wide`: 209 → 199 MiB).
mod relr {
    /// The linker flag (GNU ld 2.38, lld 15).
    pub(crate) const FLAG: &str = "-Wl,-z,pack-relative-relocs";

    /// Whether this machine's C toolchain links, and its loader runs, a program with packed
    /// relocations (glibc 2.36 reads them; an older glibc refuses the program, an older linker
    /// ignores the flag): probed by building one, for native builds of Linux binaries only.
    pub(crate) fn packs_relative_relocs() -> bool {
        println!("cargo:rerun-if-env-changed=CC");
        let env = |name: &str| std::env::var(name).ok();
        if env("CARGO_CFG_TARGET_OS").as_deref() != Some("linux") || env("TARGET") != env("HOST") {
            return false;
        }
        let Some(out) = env("OUT_DIR").map(std::path::PathBuf::from) else { return false };
        let (source, program) = (out.join("relr-probe.c"), out.join("relr-probe"));
        if std::fs::write(&source, "int main(void) { return 0; }\n").is_err() {
            return false;
        }
        let linked = std::process::Command::new(env("CC").unwrap_or_else(|| "cc".into()))
            .args(["-fPIE", "-pie", FLAG, "-o"])
            .arg(&program)
            .arg(&source)
            .output()
            .is_ok_and(|out| out.status.success());
        linked && std::process::Command::new(&program).status().is_ok_and(|s| s.success())
    }
}
