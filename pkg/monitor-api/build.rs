//! Compiles proto/monitor/v1/monitor.proto with prost-build. protoc comes from $PROTOC or PATH
//! (Debian's protobuf-compiler, installed by hack/install-deps.sh).
use std::path::PathBuf;

fn main() {
    let manifest = PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"),
    );
    let proto_root = manifest.join("../../proto");
    let proto = proto_root.join("monitor/v1/monitor.proto");
    println!("cargo:rerun-if-changed={}", proto.display());
    println!("cargo:rerun-if-env-changed=PROTOC");
    if let Err(err) = prost_build::Config::new().compile_protos(&[&proto], &[&proto_root]) {
        panic!("compiling {}: {err}", proto.display());
    }
}
