fn main() {
    mlx_link_args::emit();
}
