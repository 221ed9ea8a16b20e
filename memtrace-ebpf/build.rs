//! Makes cargo rebuild the eBPF object when bpf-linker changes, and fails early without it.
use which::which;

fn main() {
    match which("bpf-linker") {
        Ok(path) => println!("cargo:rerun-if-changed={}", path.display()),
        Err(err) => {
            println!("cargo:warning=bpf-linker not found on PATH ({err}); run `cargo xtask build`");
        }
    }
}
