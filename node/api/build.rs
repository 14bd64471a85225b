//! Compiles the .proto files with protox (pure Rust, no system protoc) and generates the
//! tonic client and server code.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "proto/kv.proto",
        "proto/raft.proto",
        "proto/admin.proto",
        "proto/backup.proto",
    ];
    for p in protos {
        println!("cargo:rerun-if-changed={p}");
    }
    let fds = protox::compile(protos, ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // An AppendEntries frame's payload is taken out of the receive buffer without a
        // copy (it is decoded, then dropped; values are copied out as they are decoded).
        .bytes(".reprise.raft.v1.AppendFrame.data")
        .compile_fds(fds)?;
    Ok(())
}
