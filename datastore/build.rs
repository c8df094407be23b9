//! Generates the etcd v3 gRPC messages and server traits from `proto/` with protox, a protobuf compiler written in
//! Rust, so building kaasd needs no `protoc` on the machine.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["proto/etcdserverpb.proto", "proto/mvccpb.proto"];
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    let descriptors = protox::compile(files, ["proto"])?;
    tonic_prost_build::configure().build_client(false).compile_fds(descriptors)?;
    Ok(())
}
