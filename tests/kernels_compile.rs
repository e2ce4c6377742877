//! Compiles every `.cu` kernel of the CUDA backend with NVRTC for sm_90 (no GPU needed; architecture-specific sources
//! for sm_90a, as on an H100). CI gets NVRTC and the CUDA headers from PyPI (scripts/test.sh); where NVRTC is missing
//! the test says SKIPPED.

#[cfg(all(feature = "cuda", target_os = "linux"))]
#[test]
fn every_kernel_file_compiles_for_sm_90() {
    use mlx_native::backend::cuda::{compile, kernel_sources};

    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/backend/cuda/kernels");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .expect("kernel folder exists")
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|n| n.ends_with(".cu"))
        .collect();
    files.sort();
    assert!(files.len() >= 6, "expected the kernel sources in {}, found {files:?}", dir.display());
    let sources = kernel_sources();
    for f in &files {
        let src = sources.iter().find(|s| s.name == f.as_str());
        assert!(src.is_some(), "{f} is not listed in kernel_sources(): it would never be compiled or tested");
        // The text compiled at run time must be the file on disk (include_str! of the same file).
        let on_disk = std::fs::read_to_string(dir.join(f)).expect("readable kernel file");
        assert_eq!(src.map(|s| s.text), Some(on_disk.as_str()), "{f}: embedded text differs from the file");
    }
    if !compile::nvrtc_available() {
        mlx_native::util::skipped("SKIPPED: NVRTC not found (run scripts/test.sh, which installs it from PyPI)");
        return;
    }
    let mut failures = vec![];
    for src in sources {
        let t = std::time::Instant::now();
        match compile::compile_cubin(src, "sm_90") {
            Ok(cubin) => {
                assert!(cubin.len() > 1000, "{}: suspiciously small CUBIN", src.name);
                let arch = src.target_arch("sm_90");
                println!("{}: {} bytes of {arch} code in {:.2}s", src.name, cubin.len(), t.elapsed().as_secs_f64());
            }
            Err(e) => failures.push(format!("{}: {e}", src.name)),
        }
    }
    assert!(failures.is_empty(), "kernels failed to compile:\n{}", failures.join("\n\n"));
}

#[cfg(not(all(feature = "cuda", target_os = "linux")))]
#[test]
fn every_kernel_file_compiles_for_sm_90() {
    mlx_native::util::skipped("SKIPPED: built without the `cuda` feature");
}
