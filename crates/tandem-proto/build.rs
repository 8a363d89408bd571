//! Compiles `proto/` with protox (a pure-Rust protobuf compiler), so building tandem
//! never needs `protoc` installed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let descriptors = protox::compile(
        [
            "dapr/proto/runtime/v1/dapr.proto",
            "dapr/proto/runtime/v1/appcallback.proto",
            "dapr/proto/runtime/v1/actors.proto",
            "dapr/proto/runtime/v1/lock.proto",
            "dapr/proto/runtime/v1/configuration.proto",
            "dapr/proto/runtime/v1/conversation.proto",
            "dapr/proto/runtime/v1/crypto.proto",
        ],
        ["proto"],
    )?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(descriptors)?;
    Ok(())
}
