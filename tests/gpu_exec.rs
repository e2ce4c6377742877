//! The executor on the real GPU: the same graphs under every placement policy give the CPU's outputs; a plan that
//! runs wholly on the GPU is recorded once and replayed, and then allocates nothing from the device; running out of
//! GPU memory is a clear error that leaves the pool as it was. Without a GPU every test prints `SKIPPED`.

#[cfg(all(feature = "cuda", target_os = "linux"))]
mod gpu {
    use mlx_native::bench::{chain_graph, transformer_block};
    use mlx_native::exec::{ExecOptions, Executor, PlacementPolicy};
    use mlx_native::util::random;
    use mlx_native::{DType, Error, Graph, GraphBuilder, Tensor};

    fn executor(policy: PlacementPolicy) -> Option<Executor> {
        match Executor::new(ExecOptions { policy, ..Default::default() }) {
            Ok(e) if e.gpu().is_some() => Some(e),
            Ok(e) => skip(e.gpu_unavailable_reason().unwrap_or("unknown")),
            Err(e) => skip(&e.to_string()),
        }
    }

    fn skip(why: &str) -> Option<Executor> {
        if std::env::var_os("MLX_NATIVE_REQUIRE_GPU").is_some() {
            panic!("no GPU but one is required: {why}");
        }
        mlx_native::util::skipped(&format!("SKIPPED: no GPU ({why})"));
        None
    }

    fn inputs(graph: &Graph, seed: u64) -> Vec<Tensor> {
        graph
            .inputs()
            .iter()
            .enumerate()
            .map(|(k, (id, _))| {
                let d = &graph.node(*id).out;
                random::uniform(d.dtype, d.shape.clone(), 1.0, seed + k as u64)
            })
            .collect()
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        assert_eq!(a.shape(), b.shape());
        a.to_f32_vec().iter().zip(b.to_f32_vec()).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
    }

    #[test]
    fn every_policy_gives_the_cpu_outputs() {
        let Some(base) = executor(PlacementPolicy::Auto) else { return };
        let seed = random::fresh_seed();
        println!("seed {seed}");
        for graph in
            [transformer_block(1, 384, DType::F32, 3).unwrap(), transformer_block(77, 384, DType::F32, 4).unwrap()]
        {
            let inp = inputs(&graph, seed);
            let want = Executor::cpu().run(&graph, &inp).unwrap();
            for policy in [
                PlacementPolicy::ForceCpu,
                PlacementPolicy::ForceGpu,
                PlacementPolicy::seed_thresholds(),
                PlacementPolicy::Auto,
            ] {
                let compiled = base.with_policy(policy).compile(&graph).unwrap();
                for run in 0..4 {
                    let d = max_diff(&compiled.run(&inp).unwrap()[0], &want[0]);
                    assert!(d <= 2e-4, "{policy:?} run {run}: max diff {d}");
                }
                println!("{policy:?}: {:?}", compiled.statistics());
            }
        }
    }

    #[test]
    fn gpu_plan_is_replayed_and_allocates_nothing_after_recording() {
        let Some(exec) = executor(PlacementPolicy::ForceGpu) else { return };
        let gpu = exec.gpu().unwrap();
        for graph in [transformer_block(33, 256, DType::F32, 8).unwrap(), chain_graph(100).unwrap()] {
            let compiled = exec.compile(&graph).unwrap();
            for run in 0..6u64 {
                let inp = inputs(&graph, 40 + run);
                let before = mlx_native::backend::Backend::pool_statistics(gpu).unwrap();
                let out = compiled.run(&inp).unwrap();
                let after = mlx_native::backend::Backend::pool_statistics(gpu).unwrap();
                let d = max_diff(&out[0], &Executor::cpu().run(&graph, &inp).unwrap()[0]);
                assert!(d <= 2e-4, "run {run}: max diff {d}");
                if run >= 2 {
                    assert_eq!(after.misses, before.misses, "run {run} allocated from the device: {after:?}");
                    assert_eq!(after.in_use_bytes, before.in_use_bytes, "run {run} kept memory");
                }
            }
            let s = compiled.statistics();
            println!("{s:?}");
            assert_eq!((s.captures, s.replays), (1, 5), "{s:?}");
        }
    }

    #[test]
    fn concurrent_runs_on_the_gpu_stay_correct() {
        let Some(exec) = executor(PlacementPolicy::ForceGpu) else { return };
        let graph = transformer_block(19, 128, DType::F32, 2).unwrap();
        let compiled = exec.compile(&graph).unwrap();
        let all: Vec<Vec<Tensor>> = (0..4).map(|t| inputs(&graph, 900 + t)).collect();
        let want: Vec<Tensor> = all.iter().map(|i| Executor::cpu().run(&graph, i).unwrap().remove(0)).collect();
        std::thread::scope(|s| {
            for (inp, w) in all.iter().zip(&want) {
                let c = &compiled;
                s.spawn(move || {
                    for _ in 0..8 {
                        let d = max_diff(&c.run(inp).unwrap()[0], w);
                        assert!(d <= 2e-4, "max diff {d}");
                    }
                });
            }
        });
        println!("{:?}", compiled.statistics());
    }

    #[test]
    fn out_of_gpu_memory_is_an_error_and_leaks_nothing() {
        let Some(exec) = executor(PlacementPolicy::ForceGpu) else { return };
        let gpu = exec.gpu().unwrap();
        // A [1, 2^17] x [2^17 ... ] product whose output alone (2^18 x 2^17 f32 = 128 GiB) fits no GPU here.
        let mut g = GraphBuilder::new();
        let x = g.input("x", DType::F32, [1 << 18, 1]);
        let w = g.constant(random::uniform(DType::F32, [1, 1 << 17], 1.0, 1));
        let y = g.matmul(x, w, false, false).unwrap();
        g.output(y).unwrap();
        let graph = g.build().unwrap();
        let compiled = exec.compile(&graph).unwrap();
        let before = mlx_native::backend::Backend::pool_statistics(gpu).unwrap();
        let err = compiled.run(&inputs(&graph, 1)).unwrap_err();
        println!("{err}");
        assert!(matches!(err, Error::OutOfMemory { .. }), "{err}");
        let after = mlx_native::backend::Backend::pool_statistics(gpu).unwrap();
        assert_eq!(after.in_use_bytes, before.in_use_bytes, "{before:?} -> {after:?}");
        assert!(after.retries > before.retries && after.ooms > before.ooms, "{after:?}");
        assert_eq!(compiled.statistics().oom_retries, 1);
        // The device still works.
        let small = transformer_block(5, 128, DType::F32, 1).unwrap();
        let inp = inputs(&small, 3);
        let d = max_diff(&exec.run(&small, &inp).unwrap()[0], &Executor::cpu().run(&small, &inp).unwrap()[0]);
        assert!(d <= 2e-4);
    }
}
