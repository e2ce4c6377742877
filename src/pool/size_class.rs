//! Rounding of requests to block sizes.
//!
//! Rounding keeps the number of distinct block sizes small, so freed blocks match later requests; the large step
//! matches the 2 MiB granularity device allocators work in, so large blocks waste no device memory.

/// Requests below [`LARGE_THRESHOLD`] round up to a multiple of this (and a zero-byte request to this).
pub const SMALL_ROUND: usize = 512;

/// Requests of this many bytes or more are "large" and round up to a multiple of [`LARGE_ROUND`].
pub const LARGE_THRESHOLD: usize = 1 << 20;

/// The rounding step of large requests.
pub const LARGE_ROUND: usize = 2 << 20;

/// The block size that serves a request of `bytes` bytes, or `None` when rounding would overflow `usize` (no
/// device can serve such a request).
///
/// `0` gives [`SMALL_ROUND`]; `1..LARGE_THRESHOLD` gives the next multiple of [`SMALL_ROUND`]; `LARGE_THRESHOLD`
/// and more gives the next multiple of [`LARGE_ROUND`].
pub fn round(bytes: usize) -> Option<usize> {
    if bytes == 0 {
        Some(SMALL_ROUND)
    } else if bytes < LARGE_THRESHOLD {
        bytes.checked_next_multiple_of(SMALL_ROUND)
    } else {
        bytes.checked_next_multiple_of(LARGE_ROUND)
    }
}

/// The largest block size (exclusive) a request rounded to `rounded` bytes may take from the cache: a block of
/// twice the rounded size or more would waste at least half of itself.
pub fn max_fit_exclusive(rounded: usize) -> usize {
    rounded.saturating_mul(2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_boundaries() {
        assert_eq!(round(0), Some(512));
        assert_eq!(round(1), Some(512));
        assert_eq!(round(512), Some(512));
        assert_eq!(round(513), Some(1024));
        assert_eq!(round(LARGE_THRESHOLD - 1), Some(LARGE_THRESHOLD));
        assert_eq!(round(LARGE_THRESHOLD), Some(LARGE_ROUND));
        assert_eq!(round(LARGE_ROUND + 1), Some(2 * LARGE_ROUND));
        assert_eq!(round(usize::MAX), None);
        assert_eq!(max_fit_exclusive(usize::MAX), usize::MAX);
    }
}
