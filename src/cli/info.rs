//! `mlx-native info`.

use mlx_native::Result;

/// Prints version, CPU and GPU facts.
pub fn run() -> Result<()> {
    println!("mlx-native {}", env!("CARGO_PKG_VERSION"));
    println!(
        "CPU: {} logical cores ({} physical), {} threads in the pool, SIMD: {}",
        num_cpus::get(),
        num_cpus::get_physical(),
        rayon::current_num_threads(),
        simd_level()
    );
    println!(
        "CPU f32 products: {}",
        if mlx_native::backend::cpu::amx_enabled() {
            "AMX tiles, operands split into three bf16 parts (f32-accurate; MLX_NATIVE_AMX=0 turns them off)"
        } else if !mlx_native::backend::cpu::amx_present() {
            "FMA kernels"
        } else if mlx_native::backend::cpu::amx_turned_off() {
            "FMA kernels (this CPU has AMX bf16; MLX_NATIVE_AMX=0 turned the AMX products off)"
        } else {
            "FMA kernels (this CPU has AMX bf16, but the OS did not grant this process the tile state)"
        }
    );
    for line in super::gpu::gpu_lines() {
        println!("{line}");
    }
    Ok(())
}

fn simd_level() -> String {
    #[cfg(target_arch = "x86_64")]
    {
        let mut f = vec![];
        for (name, on) in [
            ("sse4.2", is_x86_feature_detected!("sse4.2")),
            ("avx", is_x86_feature_detected!("avx")),
            ("avx2", is_x86_feature_detected!("avx2")),
            ("fma", is_x86_feature_detected!("fma")),
            ("avx512f", is_x86_feature_detected!("avx512f")),
        ] {
            if on {
                f.push(name);
            }
        }
        f.join(" ")
    }
    #[cfg(target_arch = "aarch64")]
    {
        "neon".to_string()
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        "scalar".to_string()
    }
}
