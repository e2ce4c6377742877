fn main() {
    std::process::exit(mlx_native_cli_main());
}

fn mlx_native_cli_main() -> i32 {
    0
}
