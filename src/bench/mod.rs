//! The op benchmark suite behind `mlx-native bench`: the same cases on every device, timed through the backend
//! contract, with a reference row (copy bandwidth, direct `gemm`) measured in the same run.

mod cases;
mod graphs;
mod reference;
mod replay;
mod report;
mod timing;
mod transformer;

pub use cases::{copy as suite_copy, suite, BenchCase, Mode};
pub use graphs::{auto_picks_gpu, block_tokens, explain, policy_label, time_block, ExplainRow};
pub use reference::gemm_direct;
pub use replay::{chain_graph, time_plan_replay};
pub use report::{print_table, speedups, BenchRow};
pub use timing::{time_case, Budget};
pub use transformer::transformer_block;
