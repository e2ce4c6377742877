//! The executor's GPU-only paths without a GPU: replay of a recorded plan, out-of-memory retry and fallback, and
//! that nothing stays allocated after a failed run. A fake device stands in for the GPU: it computes with the CPU
//! backend, records calls instead of running them while recording (as a CUDA graph capture does), and can be told
//! to run out of memory.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use mlx_native::backend::cpu::{CpuBackend, CpuBuffer};
use mlx_native::backend::{Backend, OpCall, Replay};
use mlx_native::bench::transformer_block;
use mlx_native::exec::{DeviceRates, ExecOptions, Executor, LinkRates, MachineRates, PlacementPolicy};
use mlx_native::graph::Op;
use mlx_native::util::random;
use mlx_native::{DType, Error, Graph, Result, Tensor, TensorDesc};

/// Bytes live on the fake device, and how many allocations were made.
#[derive(Default)]
struct Meter {
    live: AtomicUsize,
    allocations: AtomicU64,
    limit: AtomicUsize,
    releases: AtomicU64,
}

struct FakeBuf {
    data: Arc<Mutex<CpuBuffer>>,
    bytes: usize,
    meter: Arc<Meter>,
}

impl Drop for FakeBuf {
    fn drop(&mut self) {
        self.meter.live.fetch_sub(self.bytes, Ordering::SeqCst);
    }
}

struct Call {
    op: Op,
    in_descs: Vec<TensorDesc>,
    out_desc: TensorDesc,
    ins: Vec<Arc<Mutex<CpuBuffer>>>,
    out: Arc<Mutex<CpuBuffer>>,
}

struct FakeGpu {
    cpu: CpuBackend,
    meter: Arc<Meter>,
    /// The thread recording, if any: like the CUDA backend, other threads wait until the recording ends.
    recording: Mutex<Option<std::thread::ThreadId>>,
    calls: Mutex<Vec<Call>>,
}

impl FakeGpu {
    fn new(limit: usize) -> (FakeGpu, Arc<Meter>) {
        let meter = Arc::new(Meter { limit: AtomicUsize::new(limit), ..Default::default() });
        let gpu = FakeGpu {
            cpu: CpuBackend::new(),
            meter: meter.clone(),
            recording: Mutex::new(None),
            calls: Mutex::new(vec![]),
        };
        (gpu, meter)
    }

    fn buf(&self, data: CpuBuffer, bytes: usize) -> Result<FakeBuf> {
        let live = self.meter.live.load(Ordering::SeqCst);
        if live + bytes > self.meter.limit.load(Ordering::SeqCst) {
            return Err(Error::OutOfMemory { requested: bytes, in_use: live, cached: 0 });
        }
        self.meter.live.fetch_add(bytes, Ordering::SeqCst);
        self.meter.allocations.fetch_add(1, Ordering::SeqCst);
        Ok(FakeBuf { data: Arc::new(Mutex::new(data)), bytes, meter: self.meter.clone() })
    }
}

fn run_call(cpu: &CpuBackend, c: &Call) -> Result<()> {
    // Inputs are copied out first: one buffer may be read twice (x + x), and the output is never an input.
    let ins = c
        .ins
        .iter()
        .zip(&c.in_descs)
        .map(|(b, d)| cpu.download(&b.lock().unwrap(), d).map(CpuBuffer::Shared))
        .collect::<Result<Vec<_>>>()?;
    let refs: Vec<&CpuBuffer> = ins.iter().collect();
    let call = OpCall { op: &c.op, inputs: &c.in_descs, output: &c.out_desc };
    let mut out = c.out.lock().unwrap();
    cpu.execute(&call, &refs, &mut out)
}

struct FakeReplay {
    cpu: CpuBackend,
    calls: Vec<Call>,
}

impl Replay for FakeReplay {
    fn replay(&self) -> Result<()> {
        self.calls.iter().try_for_each(|c| run_call(&self.cpu, c))
    }
}

impl Backend for FakeGpu {
    type Buffer = FakeBuf;

    fn name(&self) -> &'static str {
        "fake-gpu"
    }

    fn alloc(&self, desc: &TensorDesc) -> Result<FakeBuf> {
        self.buf(self.cpu.alloc(desc)?, desc.bytes())
    }

    fn upload(&self, tensor: &Tensor) -> Result<FakeBuf> {
        self.buf(CpuBuffer::Owned(tensor.to_host_vec()), tensor.numel() * tensor.dtype().size())
    }

    fn download(&self, buf: &FakeBuf, desc: &TensorDesc) -> Result<Tensor> {
        self.cpu.download(&buf.data.lock().unwrap(), desc)
    }

    fn poison(&self, buf: &mut FakeBuf, desc: &TensorDesc) -> Result<()> {
        self.cpu.poison(&mut buf.data.lock().unwrap(), desc)
    }

    fn execute(&self, call: &OpCall<'_>, inputs: &[&FakeBuf], out: &mut FakeBuf) -> Result<()> {
        let c = Call {
            op: call.op.clone(),
            in_descs: call.inputs.to_vec(),
            out_desc: call.output.clone(),
            ins: inputs.iter().map(|b| b.data.clone()).collect(),
            out: out.data.clone(),
        };
        let me = std::thread::current().id();
        loop {
            match *self.recording.lock().unwrap() {
                Some(t) if t == me => {
                    self.calls.lock().unwrap().push(c);
                    return Ok(());
                }
                Some(_) => {}
                None => break,
            }
            std::thread::yield_now();
        }
        run_call(&self.cpu, &c)
    }

    fn synchronize(&self) -> Result<()> {
        Ok(())
    }

    fn release_cache(&self) {
        self.meter.releases.fetch_add(1, Ordering::SeqCst);
    }

    fn write(&self, buf: &mut FakeBuf, tensor: &Tensor) -> Result<()> {
        *buf.data.lock().unwrap() = CpuBuffer::Owned(tensor.to_host_vec());
        Ok(())
    }

    fn supports_recording(&self) -> bool {
        true
    }

    fn begin_recording(&self) -> Result<bool> {
        let mut r = self.recording.lock().unwrap();
        assert!(r.is_none(), "recording twice at once");
        *r = Some(std::thread::current().id());
        Ok(true)
    }

    fn end_recording(&self) -> Result<Box<dyn Replay>> {
        *self.recording.lock().unwrap() = None;
        let calls = std::mem::take(&mut *self.calls.lock().unwrap());
        Ok(Box::new(FakeReplay { cpu: CpuBackend::new(), calls }))
    }
}

fn rates() -> MachineRates {
    MachineRates {
        cpu: DeviceRates { launch_us: 1.0, gflops_f32: 1.0, gflops_half: 1.0, gbps: 1.0, replay_launch_us: None },
        gpu: Some((
            DeviceRates { launch_us: 1.0, gflops_f32: 1e6, gflops_half: 1e6, gbps: 1e6, replay_launch_us: None },
            LinkRates { latency_us: 1.0, gbps: 1e3, download_gbps: 1e3 },
        )),
    }
}

fn exec(policy: PlacementPolicy, limit: usize) -> (Executor<FakeGpu>, Arc<Meter>) {
    let (gpu, meter) = FakeGpu::new(limit);
    let opts = ExecOptions { policy, rates: Some(rates()), ..Default::default() };
    (Executor::with_gpu(gpu, opts), meter)
}

fn input(graph: &Graph, seed: u64) -> Vec<Tensor> {
    let d = &graph.node(graph.inputs()[0].0).out;
    vec![random::uniform(d.dtype, d.shape.clone(), 1.0, seed)]
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    a.to_f32_vec().iter().zip(b.to_f32_vec()).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

#[test]
fn replayed_runs_match_the_cpu_and_allocate_nothing() {
    let graph = transformer_block(13, 128, DType::F32, 21).unwrap();
    for policy in [PlacementPolicy::ForceGpu, PlacementPolicy::Auto] {
        let (ex, meter) = exec(policy, usize::MAX);
        let compiled = ex.compile(&graph).unwrap();
        for run in 0..5u64 {
            let inputs = input(&graph, 100 + run);
            let before = meter.allocations.load(Ordering::SeqCst);
            let out = compiled.run(&inputs).unwrap();
            let want = Executor::cpu().run(&graph, &inputs).unwrap();
            let d = max_diff(&out[0], &want[0]);
            assert!(d <= 1e-4, "{policy:?} run {run}: max diff {d}");
            if run >= 2 {
                assert_eq!(meter.allocations.load(Ordering::SeqCst), before, "{policy:?} run {run} allocated");
            }
        }
        let s = compiled.statistics();
        assert_eq!((s.runs, s.captures, s.replays), (5, 1, 4), "{policy:?}: {s:?}");
    }
}

#[test]
fn concurrent_runs_with_replay_stay_correct() {
    let graph = transformer_block(9, 64, DType::F32, 4).unwrap();
    let (ex, _) = exec(PlacementPolicy::ForceGpu, usize::MAX);
    let compiled = ex.compile(&graph).unwrap();
    let inputs: Vec<Vec<Tensor>> = (0..4).map(|t| input(&graph, 300 + t)).collect();
    let want: Vec<Tensor> = inputs.iter().map(|i| Executor::cpu().run(&graph, i).unwrap().remove(0)).collect();
    std::thread::scope(|s| {
        for (inp, w) in inputs.iter().zip(&want) {
            let c = &compiled;
            s.spawn(move || {
                for _ in 0..6 {
                    let d = max_diff(&c.run(inp).unwrap()[0], w);
                    assert!(d <= 1e-4, "max diff {d}");
                }
            });
        }
    });
    assert!(compiled.statistics().replays > 0, "{:?}", compiled.statistics());
}

#[test]
fn out_of_memory_is_an_error_and_leaks_nothing() {
    let graph = transformer_block(64, 128, DType::F32, 8).unwrap();
    // Room for the weights (about 0.8 MB) but not for the activations.
    let (ex, meter) = exec(PlacementPolicy::ForceGpu, 900_000);
    let compiled = ex.compile(&graph).unwrap();
    let before = meter.live.load(Ordering::SeqCst);
    let err = compiled.run(&input(&graph, 1)).unwrap_err();
    assert!(matches!(err, Error::OutOfMemory { .. }), "{err}");
    assert!(err.to_string().contains("out of memory"), "{err}");
    assert_eq!(meter.live.load(Ordering::SeqCst), before, "GPU bytes held after the failed run");
    assert_eq!(meter.releases.load(Ordering::SeqCst), 2, "cache released before the retry and after it failed");
    assert_eq!(compiled.statistics().oom_retries, 1);
    // The process keeps working: with room again, the same compiled graph runs.
    meter.limit.store(usize::MAX, Ordering::SeqCst);
    let inputs = input(&graph, 2);
    let d = max_diff(&compiled.run(&inputs).unwrap()[0], &Executor::cpu().run(&graph, &inputs).unwrap()[0]);
    assert!(d <= 1e-4);
}

#[test]
fn auto_moves_to_the_cpu_when_the_gpu_stays_out_of_memory() {
    let graph = transformer_block(64, 128, DType::F32, 8).unwrap();
    let (ex, meter) = exec(PlacementPolicy::Auto, 900_000);
    let compiled = ex.compile(&graph).unwrap();
    let before = meter.live.load(Ordering::SeqCst);
    let inputs = input(&graph, 3);
    let out = compiled.run(&inputs).unwrap();
    let d = max_diff(&out[0], &Executor::cpu().run(&graph, &inputs).unwrap()[0]);
    assert!(d <= 1e-4);
    let s = compiled.statistics();
    assert_eq!((s.cpu_fallbacks, s.oom_retries, s.runs), (1, 1, 1), "{s:?}");
    assert_eq!(meter.live.load(Ordering::SeqCst), before);
}

#[test]
fn weights_are_uploaded_once_per_executor() {
    let w = random::uniform(DType::F32, [64, 32], 0.3, 5);
    let graph = |tokens: usize| {
        let mut g = mlx_native::GraphBuilder::new();
        let x = g.input("x", DType::F32, [tokens, 64]);
        let c = g.constant(w.clone());
        let y = g.matmul(x, c, false, false).unwrap();
        g.output(y).unwrap();
        g.build().unwrap()
    };
    let (ex, meter) = exec(PlacementPolicy::ForceGpu, usize::MAX);
    let first = ex.compile(&graph(3)).unwrap();
    let after_first = meter.live.load(Ordering::SeqCst);
    assert_eq!(after_first, 64 * 32 * 4);
    let second = ex.with_policy(PlacementPolicy::ForceGpu).compile(&graph(5)).unwrap();
    assert_eq!(meter.live.load(Ordering::SeqCst), after_first, "the second graph uploaded the weight again");
    for (c, t) in [(&first, 3), (&second, 5)] {
        let g = graph(t);
        let inputs = input(&g, 7);
        assert!(max_diff(&c.run(&inputs).unwrap()[0], &Executor::cpu().run(&g, &inputs).unwrap()[0]) <= 1e-5);
    }
    drop((first, second));
    assert_eq!(meter.live.load(Ordering::SeqCst), 0, "weights freed with the last graph that used them");
}
