// Rebuild the object when bpf-linker changes: cargo does not track the linker binary itself.
fn main() {
    if let Ok(linker) = which::which("bpf-linker") {
        println!("cargo:rerun-if-changed={}", linker.display());
    }
}
