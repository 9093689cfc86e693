//! Raw bindings to mlx-c 0.7.0 (MLX 0.32.2), a drop-in for the published `mlx-sys`
//! 0.7.0 that also builds on Linux.
//!
//! The workspace patches this crate in for crates.io's `mlx-sys`, so `mlx-rs` compiles
//! against it unchanged. On Linux the bindings are generated against the MLX runtime
//! from the pinned PyPI wheel (CPU: `mlx-cpu`, NVIDIA: `mlx-cuda-*`); on macOS the
//! published crate's own Metal build is used as is. See `build.rs` for how.
//!
//! Dependents that produce executables read `DEP_MLX_LIBDIR` (the folder holding
//! `libmlx.so`) and `DEP_MLX_PRELOAD` (OpenBLAS) for their link line; the
//! `mlx-link-args` build helper does that.
#![allow(non_upper_case_globals)]
#![allow(non_camel_case_types)]
#![allow(non_snake_case)]
#![allow(clippy::all)]
#![allow(missing_docs)]

include!(concat!(env!("OUT_DIR"), "/bindings.rs"));

/// An IEEE 754 half-precision value as its raw bits: the shape mlx-rs expects from
/// bindgen's `__fp16` on Apple targets.
#[cfg(not(target_os = "macos"))]
#[repr(transparent)]
#[derive(Debug, Default, Copy, Clone, PartialEq, Eq)]
pub struct float16_t(pub u16);

/// Stand-in for Apple's `mach_approximate_time`, which mlx-rs's `RandomState::new`
/// reads to seed its generator: nanoseconds of wall-clock time.
#[cfg(not(target_os = "macos"))]
#[unsafe(no_mangle)]
pub extern "C" fn mach_approximate_time() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos() as u64)
        .unwrap_or_default()
}
