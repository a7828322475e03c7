//! Compiles proto/monitor/v1/monitor.proto with prost-build. protoc comes from $PROTOC or PATH
//! (Debian's protobuf-compiler, installed by hack/install-deps.sh).
use std::path::PathBuf;

fn main() {
    // Cargo sets CARGO_MANIFEST_DIR when compiling the build script too, so no lookup can fail.
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let proto_root = manifest.join("../../proto");
    let proto = proto_root.join("monitor/v1/monitor.proto");
    println!("cargo:rerun-if-changed={}", proto.display());
    println!("cargo:rerun-if-env-changed=PROTOC");
    if let Err(err) = prost_build::Config::new().compile_protos(&[&proto], &[&proto_root]) {
        panic!("compiling {}: {err}", proto.display());
    }
}
