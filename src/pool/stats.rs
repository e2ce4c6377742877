//! The pool's counters.

/// Counters of one pool. All byte counts are of rounded block sizes.
///
/// A snapshot from [`crate::pool::Pool::statistics`] always satisfies
/// `in_use_bytes + cached_bytes == device_bytes <= peak_bytes`.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct PoolStats {
    /// Bytes in blocks handed out and not yet dropped.
    pub in_use_bytes: usize,
    /// Bytes in free blocks kept for reuse.
    pub cached_bytes: usize,
    /// Bytes currently allocated from the device (in use + cached).
    pub device_bytes: usize,
    /// Highest `device_bytes` seen.
    pub peak_bytes: usize,
    /// Total bytes ever allocated from the device.
    pub total_allocated_bytes: u64,
    /// Requests served from the cache.
    pub hits: u64,
    /// Requests that went to the device (including those that then failed).
    pub misses: u64,
    /// Cached blocks returned to the device: past the cache limit, before a retry, or by `clear_cache`.
    pub evictions: u64,
    /// Device allocations retried after evicting the cache.
    pub retries: u64,
    /// Requests that failed with out-of-memory: the device refused even after the retry, or the request was too
    /// large to round to a block size.
    pub ooms: u64,
}
