//! Release builds on x86-64 Linux place the functions in `startup-order.txt` — what a
//! sidecar runs to start, idle and serve its first calls — together at the front of the
//! binary (LLD's `--symbol-ordering-file`; LLD is Rust's default linker there). The
//! kernel maps every touched page's 64 KiB neighbourhood, so start-up code scattered over
//! the whole binary kept most of it resident; together it takes a few hundred KiB
//! (docs/benchmarks.md). `scripts/startup-order` regenerates the file; names that no
//! longer exist are skipped, so a stale file only loses some of the gain.
//! `TANDEM_NO_STARTUP_ORDER=1` turns it off (e.g. with a linker other than LLD).

fn main() {
    println!("cargo:rerun-if-changed=startup-order.txt");
    println!("cargo:rerun-if-env-changed=TANDEM_NO_STARTUP_ORDER");
    let release = std::env::var("PROFILE").is_ok_and(|profile| profile == "release");
    let linux_x86_64 = std::env::var("CARGO_CFG_TARGET_OS").is_ok_and(|os| os == "linux")
        && std::env::var("CARGO_CFG_TARGET_ARCH").is_ok_and(|arch| arch == "x86_64");
    let wanted = std::env::var_os("TANDEM_NO_STARTUP_ORDER").is_none();
    if release && linux_x86_64 && wanted {
        let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("startup-order.txt");
        if file.exists() {
            println!(
                "cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}",
                file.display()
            );
            println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
        }
    }
}
