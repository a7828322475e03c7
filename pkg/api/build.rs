//! Compiles Berth's own API protos (proto/<service>/v1/<service>.proto) with tonic-prost-build,
//! client and server. protoc comes from $PROTOC or PATH (Debian's protobuf-compiler, installed by
//! hack/install-deps.sh).
use std::path::PathBuf;

/// One entry per service; its module is declared in src/lib.rs.
const PROTOS: &[&str] = &[
    "images/v1/images.proto",
    "containers/v1/containers.proto",
    "volumes/v1/volumes.proto",
    "registries/v1/registries.proto",
    // (new services: one line each)
];

fn main() {
    // Cargo sets CARGO_MANIFEST_DIR when compiling the build script too, so no lookup can fail.
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let proto_root = manifest.join("../../proto");
    let protos: Vec<PathBuf> = PROTOS.iter().map(|p| proto_root.join(p)).collect();
    for proto in &protos {
        println!("cargo:rerun-if-changed={}", proto.display());
    }
    println!("cargo:rerun-if-env-changed=PROTOC");
    if let Err(err) = tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_protos(&protos, std::slice::from_ref(&proto_root))
    {
        panic!("compiling {PROTOS:?}: {err}");
    }
}
