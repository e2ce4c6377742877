//! `mlx-native embed` (texts to JSON lines of embeddings) and `mlx-native bench-embed` (texts/s and latency).
//!
//! Input lines: every line of the input is one text, an empty line included, so output line N belongs to input
//! line N. A line that is not valid UTF-8 is reported on stderr with its number; its output line is
//! `{"line": N, "error": "..."}` (N counted from 1) so the lines after it keep their place, and the command exits
//! non-zero once all other lines are written.

use std::io::{BufWriter, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use mlx_native::backend::cpu;
use mlx_native::exec::PlacementPolicy;
use mlx_native::models::{EmbedOptions, Embedder};
use mlx_native::{DType, Error, Result};

/// Where the model runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum EmbedDevice {
    /// The cost model places each op on the CPU or the GPU (the CPU alone when there is no GPU).
    Auto,
    /// The CPU only.
    Cpu,
    /// The CUDA GPU only (an error when none is available).
    Cuda,
}

impl EmbedDevice {
    fn policy(self) -> PlacementPolicy {
        match self {
            EmbedDevice::Auto => PlacementPolicy::Auto,
            EmbedDevice::Cpu => PlacementPolicy::ForceCpu,
            EmbedDevice::Cuda => PlacementPolicy::ForceGpu,
        }
    }
}

/// Compute dtype of the encoder.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DtypeArg {
    /// 32-bit floats.
    F32,
    /// IEEE half precision.
    F16,
    /// bfloat16.
    Bf16,
}

impl DtypeArg {
    fn dtype(self) -> DType {
        match self {
            DtypeArg::F32 => DType::F32,
            DtypeArg::F16 => DType::F16,
            DtypeArg::Bf16 => DType::BF16,
        }
    }
}

/// The model, device and dtype, shared by `embed` and `bench-embed`.
#[derive(Args, Debug)]
struct ModelArgs {
    /// Model folder (config.json, model.safetensors, tokenizer.json, sentence-transformers files); see
    /// scripts/fetch-minilm.sh.
    #[arg(long = "model", value_name = "DIR")]
    dir: PathBuf,
    /// Device.
    #[arg(long, value_enum, default_value_t = EmbedDevice::Auto)]
    device: EmbedDevice,
    /// Compute dtype.
    #[arg(long, value_enum, default_value_t = DtypeArg::F32)]
    dtype: DtypeArg,
}

/// Arguments of `embed`.
#[derive(Args, Debug)]
pub struct EmbedArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Texts per forward pass.
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// Read texts from FILE, one per line (default: standard input when no TEXT is given).
    #[arg(long, value_name = "FILE")]
    input: Option<PathBuf>,
    /// Write the JSON lines to FILE instead of standard output.
    #[arg(long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Texts to embed.
    #[arg(value_name = "TEXT")]
    texts: Vec<String>,
}

/// Arguments of `bench-embed`.
#[derive(Args, Debug)]
pub struct BenchEmbedArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Texts per run (one forward pass).
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// Tokens per text, [CLS] and [SEP] included.
    #[arg(long, default_value_t = 64)]
    tokens: usize,
    /// Timed runs (the median is reported).
    #[arg(long, default_value_t = 20)]
    runs: usize,
    /// Untimed runs first.
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    /// Also print the time of each CPU op (by op and output shape) per forward, over the timed forward runs.
    #[arg(long)]
    op_times: bool,
}

/// An output line; fields in this order, floats in f32's shortest round-trip form.
#[derive(serde::Serialize)]
struct EmbeddingLine<'a> {
    text: &'a str,
    embedding: &'a [f32],
}

/// The output line of an input line that could not be embedded.
#[derive(serde::Serialize)]
struct ErrorLine<'a> {
    line: usize,
    error: &'a str,
}

/// One line of input after decoding.
type Line = std::result::Result<String, String>;

/// Splits input bytes into lines: `\n` ends a line, a final line without `\n` counts, a trailing `\r` is removed.
fn split_lines(data: &[u8]) -> Vec<Line> {
    if data.is_empty() {
        return vec![];
    }
    let body = data.strip_suffix(b"\n").unwrap_or(data);
    body.split(|&b| b == b'\n')
        .map(|l| {
            let l = l.strip_suffix(b"\r").unwrap_or(l);
            String::from_utf8(l.to_vec()).map_err(|e| {
                format!("invalid UTF-8 at byte {} of the line; the line was not embedded", e.utf8_error().valid_up_to())
            })
        })
        .collect()
}

fn read_input(path: Option<&Path>) -> Result<Vec<u8>> {
    let mut data = Vec::new();
    match path {
        Some(p) => {
            data = std::fs::read(p).map_err(|e| Error::io(p, e))?;
        }
        None => {
            std::io::stdin().lock().read_to_end(&mut data).map_err(|e| Error::io("<stdin>", e))?;
        }
    }
    Ok(data)
}

/// Runs `embed`.
pub fn run(args: EmbedArgs) -> Result<()> {
    if !args.texts.is_empty() && args.input.is_some() {
        return Err(Error::arg("embed", "give texts as arguments or with --input, not both"));
    }
    let lines: Vec<Line> = if args.texts.is_empty() {
        split_lines(&read_input(args.input.as_deref())?)
    } else {
        args.texts.iter().cloned().map(Ok).collect()
    };
    let options = EmbedOptions {
        policy: args.model.device.policy(),
        dtype: args.model.dtype.dtype(),
        batch_size: args.batch_size,
    };
    let embedder = Embedder::load(&args.model.dir, options)?;
    let out: Box<dyn Write> = match &args.output {
        Some(p) => Box::new(std::fs::File::create(p).map_err(|e| Error::io(p, e))?),
        None => Box::new(std::io::stdout().lock()),
    };
    let out_name = args.output.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "<stdout>".into());
    let mut out = BufWriter::new(out);

    let bar = if std::io::stderr().is_terminal() && lines.len() >= 64 {
        ProgressBar::new(lines.len() as u64)
    } else {
        ProgressBar::with_draw_target(Some(lines.len() as u64), ProgressDrawTarget::hidden())
    };
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} texts [{elapsed}, {per_sec}, eta {eta}]")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );

    let mut failed = Vec::new();
    // Chunks bound memory and let output start before the whole input is embedded.
    let chunk = (args.batch_size.max(1) * 32).max(512);
    for (c, block) in lines.chunks(chunk).enumerate() {
        let texts: Vec<&str> = block.iter().filter_map(|l| l.as_deref().ok()).collect();
        let vecs = embedder.embed_with_progress(&texts, &mut |n| bar.inc(n as u64))?;
        let mut vecs = vecs.into_iter();
        for (i, line) in block.iter().enumerate() {
            let number = c * chunk + i + 1;
            let json = match line {
                Ok(text) => {
                    let v = vecs.next().ok_or_else(|| Error::Graph("fewer embeddings than texts".into()))?;
                    serde_json::to_string(&EmbeddingLine { text, embedding: &v })
                }
                Err(msg) => {
                    bar.suspend(|| eprintln!("error: input line {number}: {msg}"));
                    bar.inc(1);
                    failed.push(number);
                    serde_json::to_string(&ErrorLine { line: number, error: msg })
                }
            }
            .map_err(|e| Error::arg("embed", format!("cannot write JSON: {e}")))?;
            writeln!(out, "{json}").map_err(|e| Error::io(&out_name, e))?;
        }
    }
    out.flush().map_err(|e| Error::io(&out_name, e))?;
    bar.finish_and_clear();
    if failed.is_empty() {
        Ok(())
    } else {
        let shown: Vec<String> = failed.iter().take(10).map(|n| n.to_string()).collect();
        Err(Error::arg(
            "embed",
            format!(
                "{} input line(s) were not valid UTF-8 (line {}{}); their output lines hold {{\"line\", \"error\"}} \
                 instead of an embedding, all other lines were embedded",
                failed.len(),
                shown.join(", "),
                if failed.len() > 10 { ", ..." } else { "" }
            ),
        ))
    }
}

fn median_ms(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Runs `bench-embed`: the median time of embedding `batch` texts of `tokens` tokens, from token ids (`forward`:
/// padding, the graph, pooling, normalisation) and from text (`embed`: tokenisation included).
pub fn bench(args: BenchEmbedArgs) -> Result<()> {
    if args.runs == 0 || args.batch == 0 || args.tokens < 2 {
        return Err(Error::arg("bench-embed", "--runs and --batch must be >= 1 and --tokens >= 2"));
    }
    let options =
        EmbedOptions { policy: args.model.device.policy(), dtype: args.model.dtype.dtype(), batch_size: args.batch };
    let load = Instant::now();
    let embedder = Embedder::load(&args.model.dir, options)?;
    let load_ms = load.elapsed().as_secs_f64() * 1e3;
    if args.tokens > embedder.max_seq_length() {
        return Err(Error::arg(
            "bench-embed",
            format!("--tokens {} exceeds the model's max_seq_length {}", args.tokens, embedder.max_seq_length()),
        ));
    }
    // "hello" is one token in BERT's uncased vocabulary; T-2 of them plus [CLS] and [SEP] make T tokens.
    let text = vec!["hello"; args.tokens - 2].join(" ");
    let texts: Vec<&str> = vec![text.as_str(); args.batch];
    let ids = embedder.tokenize(&texts)?;
    if ids.iter().any(|s| s.len() != args.tokens) {
        return Err(Error::arg(
            "bench-embed",
            format!("the synthetic text tokenises to {} tokens, not {}", ids[0].len(), args.tokens),
        ));
    }
    let gpu = match embedder.executor().gpu_unavailable_reason() {
        None => "GPU available".to_string(),
        Some(why) => format!("no GPU ({why})"),
    };
    eprintln!(
        "bench-embed: {} {:?} {:?} batch {} x {} tokens, {} warm-up + {} runs; load {load_ms:.0} ms; {gpu}",
        args.model.dir.display(),
        args.model.device,
        args.model.dtype,
        args.batch,
        args.tokens,
        args.warmup,
        args.runs
    );
    let mut results = serde_json::Map::new();
    for (name, from_text) in [("forward", false), ("embed", true)] {
        let mut times = Vec::with_capacity(args.runs);
        for i in 0..args.warmup + args.runs {
            cpu::op_times::set_enabled(args.op_times && !from_text && i >= args.warmup);
            let t = Instant::now();
            let v = if from_text { embedder.embed(&texts)? } else { embedder.embed_ids(&ids)? };
            std::hint::black_box(&v);
            if i >= args.warmup {
                times.push(t.elapsed().as_secs_f64() * 1e3);
            }
        }
        let min = times.iter().cloned().fold(f64::INFINITY, f64::min);
        let times_sum: f64 = times.iter().sum();
        let ms = median_ms(times);
        let per_s = args.batch as f64 / (ms / 1e3);
        println!("{name:<8} median {ms:>10.3} ms  min {min:>10.3} ms  {per_s:>10.1} texts/s");
        results.insert(format!("{name}_median_ms"), ms.into());
        results.insert(format!("{name}_min_ms"), min.into());
        results.insert(format!("{name}_texts_per_s"), per_s.into());
        if args.op_times && !from_text {
            print_op_times(args.runs, times_sum / args.runs as f64);
        }
    }
    cpu::op_times::set_enabled(false);
    let summary = serde_json::json!({
        "bench": "embed",
        "model": args.model.dir.display().to_string(),
        "device": format!("{:?}", args.model.device).to_lowercase(),
        "dtype": format!("{:?}", args.model.dtype).to_lowercase(),
        "batch": args.batch,
        "tokens": args.tokens,
        "runs": args.runs,
        "threads": rayon::current_num_threads(),
        "results": results,
    });
    println!("{summary}");
    Ok(())
}

/// The CPU op times of `runs` forwards, per forward, largest first, with their share of the mean forward `ms`.
fn print_op_times(runs: usize, ms: f64) {
    let times = cpu::op_times::take();
    if times.is_empty() {
        println!("op times: no op ran on the CPU");
        return;
    }
    let total: f64 = times.iter().map(|t| t.total.as_secs_f64() * 1e3).sum::<f64>() / runs as f64;
    println!("op times per forward (CPU ops {total:.2} ms of the {ms:.2} ms mean forward):");
    for t in times {
        let per = t.total.as_secs_f64() * 1e3 / runs as f64;
        let calls = t.calls as f64 / runs as f64;
        println!("  {per:>9.3} ms {:>5.1} %  {calls:>4} calls  {}", 100.0 * per / ms, t.op);
    }
}

#[cfg(test)]
mod tests {
    use super::split_lines;

    #[test]
    fn every_line_is_one_text() {
        let l = split_lines(b"a\n\nb\r\n\xff\xfe\n");
        assert_eq!(l.len(), 4);
        assert_eq!(l[0].as_deref(), Ok("a"));
        assert_eq!(l[1].as_deref(), Ok(""));
        assert_eq!(l[2].as_deref(), Ok("b"));
        assert!(l[3].is_err());
        assert_eq!(split_lines(b"x").len(), 1);
        assert_eq!(split_lines(b"\n").len(), 1);
        assert!(split_lines(b"").is_empty());
    }
}
