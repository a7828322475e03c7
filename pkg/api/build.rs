//! Compiles proto/images/v1/images.proto with tonic-prost-build (client and server). protoc comes
//! from $PROTOC or PATH (Debian's protobuf-compiler, installed by hack/install-deps.sh).
use std::path::PathBuf;

fn main() {
    let manifest = PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"),
    );
    let proto_root = manifest.join("../../proto");
    let proto = proto_root.join("images/v1/images.proto");
    println!("cargo:rerun-if-changed={}", proto.display());
    println!("cargo:rerun-if-env-changed=PROTOC");
    if let Err(err) = tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_protos(&[&proto], &[&proto_root])
    {
        panic!("compiling {}: {err}", proto.display());
    }
}
