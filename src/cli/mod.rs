//! Command-line interface: argument parsing and dispatch to the subcommands.

mod bench;
mod embed;
mod gpu;
mod info;

use clap::{Parser, Subcommand, ValueEnum};

/// mlx-native: run transformer models on the CPU and the GPU.
#[derive(Parser, Debug)]
#[command(name = "mlx-native", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Which devices a command uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DeviceArg {
    /// The CPU only.
    Cpu,
    /// The CUDA GPU only (an error when none is available).
    Cuda,
    /// Every device available (the CPU always; the GPU when present).
    All,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print the version, the CPU and the GPU devices found (or why none is available).
    Info,
    /// Run the op benchmark suite and print a table.
    Bench {
        /// Devices to benchmark.
        #[arg(long, value_enum, default_value_t = DeviceArg::All)]
        device: DeviceArg,
        /// Small sizes and short timing (under a minute on a laptop CPU).
        #[arg(long)]
        quick: bool,
        /// Print, for the built-in transformer block, each node's placement, estimated and measured time.
        #[arg(long)]
        explain: bool,
        /// Tokens of the block `--explain` shows.
        #[arg(long, default_value_t = 128)]
        tokens: usize,
        /// Width of the block `--explain` shows.
        #[arg(long, default_value_t = 384)]
        hidden: usize,
        /// Also write the rows as a JSON array to this file.
        #[arg(long, value_name = "FILE")]
        json: Option<std::path::PathBuf>,
        /// Run only the rows whose name is in this comma-separated list (for example
        /// `MatMul,FusedLinearAddGelu,FusedLinearAddResidual,Attention,Copy`; also `GemmDirect`, `PlanReplay100`,
        /// `TransformerBlock`).
        #[arg(long, value_name = "NAMES", value_delimiter = ',')]
        only: Vec<String>,
    },
    /// Embed texts with a sentence-embedding model (BERT family): one JSON line per text,
    /// `{"text": ..., "embedding": [...]}`, in input order.
    Embed(embed::EmbedArgs),
    /// Time sentence embedding: median latency and texts/s of one batch of synthetic texts.
    BenchEmbed(embed::BenchEmbedArgs),
}

/// Runs the CLI; returns the process exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Info => info::run(),
        Command::Bench { device, quick, explain, tokens, hidden, json, only } => {
            if explain {
                bench::explain(device, tokens, hidden)
            } else {
                bench::run(device, quick, json.as_deref(), &only)
            }
        }
        Command::Embed(args) => embed::run(args),
        Command::BenchEmbed(args) => embed::bench(args),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}
