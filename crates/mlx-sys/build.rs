//! Builds the mlx-c bindings that mlx-rs expects from `mlx-sys` 0.7.0.
//!
//! The genuine mlx-c sources come from the published `mlx-sys` crate, which Cargo
//! downloads into its registry cache (nothing third-party is vendored here):
//!
//! - **Linux**: mlx-c is compiled with CMake against the MLX runtime installed from the
//!   pinned PyPI wheel (`SAEIDX_MLX_DIR`, set by `.cargo/config.toml` and filled by
//!   `scripts/setup.sh`), and OpenBLAS is linked so MLX's BLAS calls use it.
//! - **macOS**: the published crate's own build script runs unchanged (Metal,
//!   Accelerate) in a nested Cargo build, and its bindings and link lines are re-emitted.

use std::{
    env, fs,
    path::{Path, PathBuf},
    process::Command,
};

/// The published crate whose sources (and, on macOS, build) this crate stands in for.
const UPSTREAM_VERSION: &str = "0.7.0";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=compat/linux_compat.h");
    println!("cargo:rerun-if-env-changed=SAEIDX_MLX_DIR");

    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let locator = write_upstream_locator(&out_dir);
    match env::var("CARGO_CFG_TARGET_OS").as_deref() {
        Ok("linux") => build_linux(&out_dir, &upstream_source_dir(&locator)),
        Ok("macos") => build_macos_with_upstream(&out_dir, &locator),
        other => fail(&format!(
            "saeidx's mlx-sys supports Linux (MLX CPU/CUDA wheels) and macOS (upstream \
             Metal build); the target OS {other:?} is not supported"
        )),
    }
}

/// Stops the build with a message that says what to do.
fn fail(message: &str) -> ! {
    panic!("{message}");
}

/// Writes a throwaway one-crate workspace that depends on the published `mlx-sys`.
///
/// It is its own workspace, so this repository's `[patch]` does not redirect it here.
fn write_upstream_locator(out_dir: &Path) -> PathBuf {
    let dir = out_dir.join("upstream-locator");
    fs::create_dir_all(dir.join("src")).expect("create the locator crate in OUT_DIR");
    let features = if cfg!(feature = "metal-jit") {
        r#"features = ["metal-jit", "accelerate"]"#
    } else {
        r#"features = ["metal", "accelerate"]"#
    };
    let manifest = format!(
        "[package]\nname = \"saeidx-mlx-sys-locator\"\nversion = \"0.0.0\"\nedition = \"2021\"\n\
         publish = false\n\n[dependencies]\nmlx-sys = {{ version = \"={UPSTREAM_VERSION}\", \
         default-features = false, {features} }}\n\n[workspace]\n"
    );
    fs::write(dir.join("Cargo.toml"), manifest).expect("write the locator manifest");
    fs::write(dir.join("src/lib.rs"), "pub use mlx_sys;\n").expect("write the locator crate");
    dir.join("Cargo.toml")
}

/// A `cargo` command that runs outside this repository's configuration.
///
/// It runs from the locator's folder; the locator is its own workspace, so the
/// `[patch]` of this repository does not apply to it.
fn nested_cargo(locator: &Path) -> Command {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command.current_dir(locator.parent().expect("the locator manifest has a folder"));
    for (key, _) in env::vars_os() {
        let key = key.to_string_lossy();
        if key.starts_with("CARGO_FEATURE_")
            || key.starts_with("CARGO_CFG_")
            || key.starts_with("CARGO_PKG_")
            || key.starts_with("DEP_")
            || matches!(
                key.as_ref(),
                "CARGO_MANIFEST_DIR" | "CARGO_MANIFEST_LINKS" | "OUT_DIR" | "TARGET" | "HOST"
            )
        {
            command.env_remove(key.as_ref());
        }
    }
    command
}

/// Finds the unpacked published `mlx-sys` crate in Cargo's registry cache, downloading
/// it on first use.
fn upstream_source_dir(locator: &Path) -> PathBuf {
    let output = nested_cargo(locator)
        .args(["metadata", "--format-version", "1", "--manifest-path"])
        .arg(locator)
        .output()
        .unwrap_or_else(|e| fail(&format!("could not run `cargo metadata`: {e}")));
    if !output.status.success() {
        fail(&format!(
            "`cargo metadata` could not fetch mlx-sys {UPSTREAM_VERSION} (its mlx-c sources are \
             needed; is crates.io reachable or the Cargo cache warm?):\n{}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| fail(&format!("unreadable `cargo metadata` output: {e}")));
    let manifest = metadata["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|package| {
            package["name"] == "mlx-sys"
                && package["version"] == UPSTREAM_VERSION
                && package["source"]
                    .as_str()
                    .is_some_and(|source| source.starts_with("registry+"))
        })
        .and_then(|package| package["manifest_path"].as_str())
        .unwrap_or_else(|| fail("`cargo metadata` did not list the published mlx-sys"));
    PathBuf::from(manifest)
        .parent()
        .expect("a manifest path has a folder")
        .to_path_buf()
}

/// Linux: compile mlx-c against the MLX runtime from the PyPI wheel, then bind it.
fn build_linux(out_dir: &Path, upstream: &Path) {
    let mlx_dir = env::var_os("SAEIDX_MLX_DIR").map(PathBuf::from).unwrap_or_else(|| {
        fail("SAEIDX_MLX_DIR is not set; build from the repository (its .cargo/config.toml sets it)")
    });
    let mlx_lib = mlx_dir.join("lib");
    let cmake_dir = mlx_dir.join("share/cmake/MLX");
    if !mlx_lib.join("libmlx.so").is_file() || !cmake_dir.is_dir() {
        fail(&format!(
            "the MLX runtime is missing at {} (expected lib/libmlx.so and share/cmake/MLX); \
             run `bash scripts/setup.sh` to install the pinned wheel",
            mlx_dir.display()
        ));
    }
    let mlx_c = upstream.join("src/mlx-c");
    let compat = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"))
        .join("compat/linux_compat.h");

    let installed = cmake::Config::new(&mlx_c)
        .profile("Release")
        .define("MLX_C_USE_SYSTEM_MLX", "ON")
        .define("MLX_C_BUILD_EXAMPLES", "OFF")
        .define("BUILD_SHARED_LIBS", "OFF")
        .define("MLX_DIR", &cmake_dir)
        .define("CMAKE_INSTALL_LIBDIR", "lib")
        .cxxflag(format!("-include {}", compat.display()))
        .out_dir(out_dir.join("mlx-c"))
        .build();

    println!(
        "cargo:rustc-link-search=native={}",
        installed.join("lib").display()
    );
    println!("cargo:rustc-link-lib=static=mlxc");
    println!("cargo:rustc-link-search=native={}", mlx_lib.display());
    println!("cargo:rustc-link-lib=dylib=mlx");
    println!("cargo:rustc-link-lib=dylib=stdc++");
    // Executables built by dependents add these (see the `mlx-link-args` helper): an
    // rpath to libmlx.so's folder, and OpenBLAS as a library they always load. libmlx.so
    // takes its BLAS/LAPACK symbols from a slow reference BLAS beside it; OpenBLAS
    // loaded by the executable comes first in symbol lookup, so MLX's calls land there.
    println!("cargo::metadata=libdir={}", mlx_lib.display());
    println!("cargo::metadata=preload=libopenblas.so.0");
    println!(
        "cargo::metadata=include={}",
        mlx_dir.join("include").display()
    );
    println!("cargo::metadata=version=0.32.2");

    let header_dir = mlx_c.join("mlx/c");
    let mut headers: Vec<PathBuf> = fs::read_dir(&header_dir)
        .unwrap_or_else(|e| fail(&format!("cannot list {}: {e}", header_dir.display())))
        .map(|entry| entry.expect("readable header folder").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "h"))
        .collect();
    headers.sort();
    let bindings = headers
        .iter()
        .fold(
            bindgen::Builder::default()
                .rust_target("1.73.0".parse().expect("a valid Rust target"))
                .clang_arg(format!("-I{}", mlx_c.display()))
                .clang_arg("-include")
                .clang_arg(compat.display().to_string())
                // The half type is defined in lib.rs with mlx-rs's expected shape.
                .blocklist_type("float16_t")
                .blocklist_function("malloc")
                .blocklist_function("realloc"),
            |builder, header| builder.header(header.to_string_lossy()),
        )
        .generate()
        .unwrap_or_else(|e| fail(&format!("bindgen failed on the mlx-c headers: {e}")));
    bindings
        .write_to_file(out_dir.join("bindings.rs"))
        .expect("write bindings.rs");
}

/// macOS: build the published crate exactly as it ships (its build script, Metal and
/// Accelerate) and forward its bindings and link instructions.
fn build_macos_with_upstream(out_dir: &Path, locator: &Path) {
    let target_dir = out_dir.join("upstream-target");
    let status = nested_cargo(locator)
        .args(["build", "--release", "--manifest-path"])
        .arg(locator)
        .arg("--target-dir")
        .arg(&target_dir)
        .status()
        .unwrap_or_else(|e| fail(&format!("could not run the nested upstream build: {e}")));
    if !status.success() {
        fail("the upstream mlx-sys build failed; see its output above");
    }
    let build_root = target_dir.join("release/build");
    let upstream_out = fs::read_dir(&build_root)
        .unwrap_or_else(|e| fail(&format!("cannot list {}: {e}", build_root.display())))
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| {
            path.file_name()
                .is_some_and(|name| name.to_string_lossy().starts_with("mlx-sys-"))
                && path.join("output").is_file()
        })
        .max_by_key(|path| {
            fs::metadata(path.join("output"))
                .and_then(|meta| meta.modified())
                .ok()
        })
        .unwrap_or_else(|| fail("the upstream mlx-sys build left no build-script output"));
    fs::copy(
        upstream_out.join("out/bindings.rs"),
        out_dir.join("bindings.rs"),
    )
    .expect("copy the upstream bindings");
    let output = fs::read_to_string(upstream_out.join("output")).expect("read upstream output");
    for line in output.lines() {
        let forwarded = ["rustc-link-search=", "rustc-link-lib=", "metadata="]
            .iter()
            .any(|key| {
                line.strip_prefix("cargo::")
                    .or_else(|| line.strip_prefix("cargo:"))
                    .is_some_and(|rest| rest.starts_with(key))
            });
        if forwarded {
            println!("{line}");
        }
    }
}
