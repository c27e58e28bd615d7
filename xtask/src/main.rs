//! `cargo xtask bundle plugin --release`: builds the VST3 and CLAP bundles into
//! `target/bundled/` (names from `bundler.toml`).

fn main() -> nice_plug_xtask::Result<()> {
    nice_plug_xtask::main()
}
