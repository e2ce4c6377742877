//! Without a GPU (CI): the CUDA backend says why it is unavailable, the executor runs everything on the CPU, and
//! forcing the GPU is a clean `Err(GpuUnavailable)`. Nothing panics. On a machine with a GPU the test says SKIPPED.

use mlx_native::exec::{ExecOptions, Executor, PlacementPolicy};
use mlx_native::{DType, Error, GraphBuilder, Tensor};

#[cfg(all(feature = "cuda", target_os = "linux"))]
fn gpu_reason() -> Option<String> {
    use mlx_native::backend::cuda::CudaBackend;
    match CudaBackend::is_available() {
        Ok(()) => None,
        Err(reason) => {
            assert!(!reason.trim().is_empty(), "the reason must say something");
            // new() must agree with is_available() and also not panic.
            let e = CudaBackend::new(0).expect_err("new() fails where is_available() does");
            assert!(matches!(e, Error::GpuUnavailable(_)), "{e:?}");
            Some(reason)
        }
    }
}

#[cfg(not(all(feature = "cuda", target_os = "linux")))]
fn gpu_reason() -> Option<String> {
    Some("built without the `cuda` feature".into())
}

#[test]
fn without_a_gpu_everything_runs_on_the_cpu() {
    let Some(reason) = gpu_reason() else {
        mlx_native::util::skipped("SKIPPED: a GPU is present (this test is for machines without one)");
        return;
    };
    println!("GPU unavailable, as expected here: {reason}");
    let exec = Executor::new(ExecOptions::default()).expect("the default executor works without a GPU");
    assert!(exec.gpu().is_none());
    assert!(exec.gpu_unavailable_reason().is_some_and(|r| !r.is_empty()));

    let mut b = GraphBuilder::new();
    let x = b.input("x", DType::F32, [2, 3]);
    let y = b.input("y", DType::F32, [3]);
    let s = b.add(x, y).unwrap();
    b.output(s).unwrap();
    let g = b.build().unwrap();
    let xs = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], [2, 3]).unwrap();
    let ys = Tensor::from_vec(vec![0.5f32, -1.0, 2.0], [3]).unwrap();
    let out = exec.run(&g, &[xs, ys]).expect("runs on the CPU");
    assert_eq!(out[0].to_f32_vec(), vec![1.5, 1.0, 5.0, 4.5, 4.0, 8.0]);

    let forced = Executor::new(ExecOptions { policy: PlacementPolicy::ForceGpu, ..Default::default() });
    match forced {
        Err(Error::GpuUnavailable(why)) => assert!(!why.is_empty()),
        Err(e) => panic!("ForceGpu without a GPU must be GpuUnavailable, got {e:?}"),
        Ok(_) => panic!("ForceGpu without a GPU must fail"),
    }
}
