//! Link berth-init as a static, libc-free executable: it brings its own `_start`.
fn main() {
    println!("cargo:rustc-link-arg-bins=-nostartfiles");
    println!("cargo:rustc-link-arg-bins=-nostdlib");
    println!("cargo:rustc-link-arg-bins=-static");
    // Nothing applies relocations without a libc start-up: link at a fixed address.
    println!("cargo:rustc-link-arg-bins=-no-pie");
    println!("cargo:rustc-link-arg-bins=-Wl,--build-id=none");
    println!("cargo:rerun-if-changed=build.rs");
}
