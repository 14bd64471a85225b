//! Compiles the minimal etcd v3 API subset used by `reprise bench --target etcd` with
//! protox (pure Rust, no system protoc); client code only.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/etcd_min.proto";
    println!("cargo:rerun-if-changed={proto}");
    let fds = protox::compile([proto], ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(false)
        .compile_fds(fds)?;
    Ok(())
}
