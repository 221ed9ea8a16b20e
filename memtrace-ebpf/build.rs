//! Makes cargo rebuild the eBPF object when bpf-linker changes, and says early when it is
//! missing. `cargo xtask build` installs it under the workspace's `target/tools/bin`, which
//! memtrace's own build script puts on PATH; a bpf-linker already on PATH wins.
use std::path::PathBuf;

use which::which;

fn main() {
    let installed =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/tools/bin/bpf-linker");
    match which("bpf-linker") {
        Ok(path) => println!("cargo:rerun-if-changed={}", path.display()),
        Err(_) if installed.is_file() => {
            println!("cargo:rerun-if-changed={}", installed.display());
        }
        Err(err) => {
            println!("cargo:warning=bpf-linker not found on PATH ({err}); run `cargo xtask build`");
        }
    }
}
