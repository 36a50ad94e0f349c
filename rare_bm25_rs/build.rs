//! `cargo test` builds without the `extension-module` feature, so its binaries link
//! libpython: record where it lives so they start without LD_LIBRARY_PATH.
fn main() {
    println!("cargo:rerun-if-env-changed=PYO3_PYTHON");
    let unix = matches!(
        std::env::var("CARGO_CFG_TARGET_FAMILY").as_deref(),
        Ok("unix")
    );
    if unix && std::env::var_os("CARGO_FEATURE_EXTENSION_MODULE").is_none() {
        if let Some(dir) = pyo3_build_config::get().lib_dir() {
            println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
        }
    }
}
