//! Device-agnostic caching allocator used by every GPU backend.
//!
//! API CONTRACT (stub: the pool helper fills in the bodies and may add items, but keeps these signatures).
//! Size classes: small requests round up to 512 B, large (>= 1 MiB) to 2 MiB. Best fit among cached blocks,
//! never a block of twice the (rounded) request or more. LRU list of free blocks, eviction from the LRU tail
//! past `PoolConfig::cache_limit_bytes`; when the device allocation fails, evict every cached block and retry
//! once (counting the retry); if that fails too, count an OOM and return `Error::OutOfMemory`.
//! Buffers return to the pool on drop. A backend with one stream per pool gets stream-order reuse for free:
//! a block freed after its last kernel was queued is only handed to kernels queued later on the same stream.

use std::sync::Arc;

use crate::error::Result;

/// Why a device allocation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllocError {
    /// The device has no memory left for the request.
    OutOfMemory,
    /// Any other failure (driver error text).
    Other(String),
}

/// The raw allocator of one device: the pool asks it for memory only on a cache miss.
pub trait DeviceAllocator: Send + Sync + 'static {
    /// A device address (a `CUdeviceptr` on CUDA, an offset or host pointer in a fake).
    type Ptr: Copy + Send + Sync + std::fmt::Debug + 'static;
    /// Allocates exactly `bytes` bytes (already rounded by the pool).
    fn allocate(&self, bytes: usize) -> std::result::Result<Self::Ptr, AllocError>;
    /// Frees a block returned by `allocate` with the same size.
    fn free(&self, ptr: Self::Ptr, bytes: usize);
}

/// Pool settings.
#[derive(Clone, Debug)]
pub struct PoolConfig {
    /// Cached (free) bytes kept before the least recently used blocks are returned to the device.
    pub cache_limit_bytes: usize,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig { cache_limit_bytes: 4 << 30 }
    }
}

/// Counters of one pool. All byte counts are of rounded block sizes.
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
    /// Requests that went to the device.
    pub misses: u64,
    /// Cached blocks returned to the device (limit or retry).
    pub evictions: u64,
    /// Device allocations retried after evicting the cache.
    pub retries: u64,
    /// Requests that failed even after the retry.
    pub ooms: u64,
}

/// A caching allocator over one device allocator. Share it as `Arc<Pool<A>>`.
pub struct Pool<A: DeviceAllocator> {
    _alloc: A,
    _config: PoolConfig,
}

/// A block from the pool; goes back to the pool's cache when dropped.
pub struct PoolBuffer<A: DeviceAllocator> {
    _pool: Arc<Pool<A>>,
    _ptr: A::Ptr,
}

impl<A: DeviceAllocator> Pool<A> {
    /// A pool over `alloc`.
    pub fn new(alloc: A, config: PoolConfig) -> Arc<Pool<A>> {
        Arc::new(Pool { _alloc: alloc, _config: config })
    }

    /// A block of at least `bytes` bytes (`bytes` may be 0).
    pub fn alloc(self: &Arc<Self>, bytes: usize) -> Result<PoolBuffer<A>> {
        let _ = bytes;
        unimplemented!("pool: being written")
    }

    /// The counters.
    pub fn statistics(&self) -> PoolStats {
        unimplemented!("pool: being written")
    }

    /// Returns every cached block to the device.
    pub fn clear_cache(&self) {
        unimplemented!("pool: being written")
    }

    /// The device allocator.
    pub fn allocator(&self) -> &A {
        &self._alloc
    }
}

impl<A: DeviceAllocator> PoolBuffer<A> {
    /// The block's device address.
    pub fn ptr(&self) -> A::Ptr {
        self._ptr
    }

    /// Bytes usable (the rounded block size, at least the request).
    pub fn capacity(&self) -> usize {
        unimplemented!("pool: being written")
    }
}
