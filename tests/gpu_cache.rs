//! The kernel cache on the GPU: a cold start compiles every source and writes the disk cache, a second backend
//! loads from it, and corrupt entries are recompiled rather than fatal. Prints the times (cold vs warm).
//! Without a GPU: SKIPPED.

#[cfg(all(feature = "cuda", target_os = "linux"))]
#[test]
fn disk_cache_cold_warm_and_corrupt() {
    use mlx_native::backend::cuda::CudaBackend;

    if let Err(reason) = CudaBackend::is_available() {
        assert!(std::env::var_os("MLX_NATIVE_REQUIRE_GPU").is_none(), "no GPU but one is required: {reason}");
        mlx_native::util::skipped(&format!("SKIPPED: no GPU ({reason})"));
        return;
    }
    let dir = std::env::temp_dir().join(format!("mlx-native-kcache-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    // This binary holds this one test, so setting the variable races with nothing.
    std::env::set_var("MLX_NATIVE_KERNEL_CACHE", &dir);

    let t = std::time::Instant::now();
    let g = CudaBackend::new(0).expect("GPU opens");
    println!("device start: {:.3}s ({})", t.elapsed().as_secs_f64(), g.info().name);
    let cold = g.preload_kernels(true).expect("cold compile");
    let entries = || -> Vec<std::path::PathBuf> {
        std::fs::read_dir(&dir).map(|r| r.filter_map(|e| e.ok().map(|e| e.path())).collect()).unwrap_or_default()
    };
    let files = entries();
    assert_eq!(files.len(), cold.len(), "one cache entry per source: {files:?}");
    let sum = |v: &[(&str, f64)]| v.iter().map(|x| x.1).sum::<f64>();
    println!("cold compile (NVRTC) of {} sources: {:.3}s {cold:?}", cold.len(), sum(&cold));

    let g2 = CudaBackend::new(0).expect("GPU opens");
    let warm = g2.preload_kernels(true).expect("warm load");
    assert!(g2.kernel_loads().iter().all(|e| e.from_disk_cache), "{:?}", g2.kernel_loads());
    println!("warm (disk cache) load: {:.3}s", sum(&warm));

    for f in &files {
        std::fs::write(f, b"MLXKRN01 this is not a cubin").expect("overwrite entry");
    }
    let g3 = CudaBackend::new(0).expect("GPU opens");
    g3.preload_kernels(true).expect("corrupt entries are recompiled");
    assert!(g3.kernel_loads().iter().all(|e| !e.from_disk_cache), "{:?}", g3.kernel_loads());
    let g4 = CudaBackend::new(0).expect("GPU opens");
    g4.preload_kernels(true).expect("rewritten entries load");
    assert!(g4.kernel_loads().iter().all(|e| e.from_disk_cache), "entries were rewritten after the recompile");
    let _ = std::fs::remove_dir_all(&dir);
}

#[cfg(not(all(feature = "cuda", target_os = "linux")))]
#[test]
fn disk_cache_cold_warm_and_corrupt() {
    mlx_native::util::skipped("SKIPPED: no GPU (built without the `cuda` feature)");
}
