//! Compiles proto/cri/api.proto (CRI runtime.v1, cri-api v0.36) with tonic-prost-build, client and
//! server. protoc comes from $PROTOC or PATH (Debian's protobuf-compiler, installed by
//! hack/install-deps.sh).
use std::path::PathBuf;

fn main() {
    // Cargo sets CARGO_MANIFEST_DIR when compiling the build script too, so no lookup can fail.
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let proto_root = manifest.join("../../proto/cri");
    let proto = proto_root.join("api.proto");
    println!("cargo:rerun-if-changed={}", proto.display());
    println!("cargo:rerun-if-env-changed=PROTOC");
    if let Err(err) = tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .type_attribute(".", "#[derive(serde::Serialize, serde::Deserialize)]")
        .compile_protos(
            std::slice::from_ref(&proto),
            std::slice::from_ref(&proto_root),
        )
    {
        panic!("compiling {}: {err}", proto.display());
    }
}
