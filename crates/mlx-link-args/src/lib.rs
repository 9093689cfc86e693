//! Build-script helper for packages whose executables (binaries, tests, benches) or
//! Python extension module link MLX.
//!
//! Cargo forwards a library's link *libraries* to dependents but not its link *arguments*
//! and cannot keep an unused shared library on the link line, so each package that
//! produces executables calls [`emit`] from its own `build.rs`. The package must depend
//! on `mlx-sys` directly, which is how Cargo hands it `DEP_MLX_*`:
//!
//! ```no_run
//! // In the package's build.rs, inside `fn main`:
//! mlx_link_args::emit();
//! ```

/// Emits, for the package's executables, an rpath to the folder holding `libmlx.so`
/// (`DEP_MLX_LIBDIR`) and a link to each library MLX's symbols must resolve to first
/// (`DEP_MLX_PRELOAD`, OpenBLAS). Does nothing where MLX is linked statically (macOS).
pub fn emit() {
    println!("cargo:rerun-if-env-changed=DEP_MLX_LIBDIR");
    if let Some(dir) = std::env::var_os("DEP_MLX_LIBDIR") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir.to_string_lossy());
    }
    emit_preload();
}

/// Like [`emit`], for a shared library that is installed elsewhere than it is built (a
/// Python extension module in a wheel): the rpath is `rpath` (`$ORIGIN`-relative, so it
/// points into the installation, never into this build's MLX runtime). Does nothing
/// where MLX is linked statically (macOS).
pub fn emit_for_extension(rpath: &str) {
    println!("cargo:rerun-if-env-changed=DEP_MLX_LIBDIR");
    if std::env::var_os("DEP_MLX_LIBDIR").is_some() {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{rpath}");
    }
    emit_preload();
}

/// Links each library of `DEP_MLX_PRELOAD` even though nothing references it, so that
/// it comes before libmlx.so's own dependencies in symbol lookup.
fn emit_preload() {
    println!("cargo:rerun-if-env-changed=DEP_MLX_PRELOAD");
    if let Ok(libraries) = std::env::var("DEP_MLX_PRELOAD") {
        for library in libraries.split_whitespace() {
            println!(
                "cargo:rustc-link-arg=-Wl,--push-state,--no-as-needed,-l:{library},--pop-state"
            );
        }
    }
}
