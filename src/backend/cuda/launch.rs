//! Launch helpers shared by the kernel families: grid sizes, the strided-dimensions argument, dimension merging.

use cudarc::driver::{DeviceRepr, LaunchConfig};

use super::device::DeviceInfo;
use crate::error::{Error, Result};

/// Threads per block of the grid-stride kernels.
pub(crate) const BLOCK: u32 = 256;

/// Most dimensions the strided kernels take (`MAX_DIMS` in common.cuh).
pub(crate) const MAX_DIMS: usize = 8;

/// A 1-D launch of `grid` blocks of `block` threads.
pub(crate) fn cfg(grid: u32, block: u32) -> LaunchConfig {
    LaunchConfig { grid_dim: (grid.max(1), 1, 1), block_dim: (block, 1, 1), shared_mem_bytes: 0 }
}

/// Blocks for a grid-stride loop over `work` items: enough to fill every SM, never more than the work needs.
pub(crate) fn grid_stride(info: &DeviceInfo, work: usize, block: u32) -> u32 {
    let resident = (info.sm_count.max(1) * (info.max_threads_per_sm.max(block) / block)) as usize;
    work.div_ceil(block as usize).clamp(1, resident) as u32
}

/// Blocks for a kernel that covers `work` items with one pass (a grid-stride loop only beyond 2^20 blocks): no
/// block does more than its share, so there is no tail of busy SMs.
pub(crate) fn grid_cover(work: usize, block: u32) -> u32 {
    work.div_ceil(block as usize).clamp(1, 1 << 20) as u32
}

/// Shape and two operands' strides (elements), as the kernels' `Dims` struct.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Dims {
    rank: i32,
    shape: [i64; MAX_DIMS],
    a: [i64; MAX_DIMS],
    b: [i64; MAX_DIMS],
}

// SAFETY: a plain `repr(C)` struct of integers, laid out exactly as `struct Dims` in common.cuh.
unsafe impl DeviceRepr for Dims {}

impl Dims {
    /// Packs a shape and two stride lists of the same length (at most `MAX_DIMS`).
    pub(crate) fn new(op: &'static str, shape: &[usize], a: &[usize], b: &[usize]) -> Result<Dims> {
        if shape.len() > MAX_DIMS {
            return Err(Error::Unsupported {
                backend: "cuda",
                what: format!("{op} needing more than {MAX_DIMS} non-mergeable dimensions ({shape:?})"),
            });
        }
        let mut d = Dims { rank: shape.len() as i32, ..Default::default() };
        for i in 0..shape.len() {
            d.shape[i] = shape[i] as i64;
            d.a[i] = a[i] as i64;
            d.b[i] = b[i] as i64;
        }
        Ok(d)
    }
}

/// Row-major strides of `shape`.
pub(crate) fn contiguous(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

/// Drops size-1 dimensions and merges neighbours that are contiguous for every operand, so the kernels see the
/// fewest dimensions (and the fast paths recognise bias-style broadcasts).
pub(crate) fn collapse(shape: &[usize], strides: &[Vec<usize>]) -> (Vec<usize>, Vec<Vec<usize>>) {
    let mut out_shape: Vec<usize> = vec![];
    let mut out_strides: Vec<Vec<usize>> = vec![vec![]; strides.len()];
    for i in 0..shape.len() {
        if shape[i] == 1 {
            continue;
        }
        let mergeable =
            !out_shape.is_empty() && strides.iter().zip(&out_strides).all(|(s, o)| o[o.len() - 1] == s[i] * shape[i]);
        if mergeable {
            let last = out_shape.len() - 1;
            out_shape[last] *= shape[i];
            for (o, s) in out_strides.iter_mut().zip(strides) {
                let l = o.len() - 1;
                o[l] = s[i];
            }
        } else {
            out_shape.push(shape[i]);
            for (o, s) in out_strides.iter_mut().zip(strides) {
                o.push(s[i]);
            }
        }
    }
    (out_shape, out_strides)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collapse_merges_contiguous_and_keeps_broadcast() {
        // [2, 3, 4] + [4]: a contiguous, b stride 0 on the first two dims.
        let (s, st) = collapse(&[2, 3, 4], &[vec![12, 4, 1], vec![0, 0, 1]]);
        assert_eq!(s, vec![6, 4]);
        assert_eq!(st, vec![vec![4, 1], vec![0, 1]]);
        let (s, st) = collapse(&[2, 1, 5], &[vec![5, 5, 1]]);
        assert_eq!(s, vec![10]);
        assert_eq!(st, vec![vec![1]]);
    }
}
