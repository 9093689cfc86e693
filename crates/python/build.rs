//! Links the Python extension against the MLX runtime of the `mlx` wheel beside it.

fn main() {
    // The wheel's extension finds libmlx.so in the `mlx` package of the PyPI MLX
    // runtime (mlx-cpu), installed beside it in site-packages as the wheel requires.
    mlx_link_args::emit_for_extension("$ORIGIN/../mlx/lib");
}
