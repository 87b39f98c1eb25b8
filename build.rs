//! Link settings of the shared library that every build needs, not only CMake's.

fn main() {
    // The library keeps a process-wide runtime, a fork handler and thread-local values with
    // destructors: unloading it with dlclose while any of them lives would leave the process
    // calling into unmapped code. -z nodelete makes dlclose keep it loaded.
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,nodelete");
    println!("cargo:rerun-if-changed=build.rs");
}
