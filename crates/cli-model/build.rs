//! Links against the MLX runtime (see crates/mlx-link-args).

fn main() {
    mlx_link_args::emit();
}
