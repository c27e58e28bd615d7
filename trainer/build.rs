//! libtorch comes from a Python wheel, which gives the binaries no rpath: record torch-sys's
//! library folder so `cargo run -p trainer` and its tests start without LD_LIBRARY_PATH.
fn main() {
    if let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
        // CUDA builds (`--features cuda`): nothing references libtorch_cuda directly and
        // --as-needed would drop it, leaving CUDA "unavailable" at run time. Not by default:
        // the lean CPU install lacks the CUDA libraries libtorch_cuda needs to load.
        if std::env::var_os("CARGO_FEATURE_CUDA").is_some() {
            println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch,--as-needed");
        }
    }
}
