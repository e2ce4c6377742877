//! The pool itself and the buffers it hands out.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::device::{AllocError, DeviceAllocator};
use super::free_list::FreeList;
use super::size_class;
use super::stats::PoolStats;
use crate::error::{Error, Result};

/// Pool settings.
#[derive(Clone, Debug)]
pub struct PoolConfig {
    /// Cached (free) bytes kept before the least recently used blocks are returned to the device. `0` caches
    /// nothing: every dropped buffer is freed at once.
    pub cache_limit_bytes: usize,
}

impl Default for PoolConfig {
    /// A 4 GiB cache limit.
    fn default() -> Self {
        PoolConfig { cache_limit_bytes: 4 << 30 }
    }
}

/// A caching allocator over one device allocator. Share it as `Arc<Pool<A>>`; see the [module docs](super) for
/// the caching rules, stream order and threading.
pub struct Pool<A: DeviceAllocator> {
    alloc: A,
    config: PoolConfig,
    state: Mutex<State<A::Ptr>>,
}

/// Everything the lock guards.
struct State<P> {
    free: FreeList<P>,
    stats: PoolStats,
}

/// Blocks taken out of the cache under the lock, to be freed on the device after it is released.
type Evicted<P> = Vec<(usize, P)>;

impl<P: Copy> State<P> {
    /// Takes every cached block out of the cache and off the counters.
    fn evict_all(&mut self) -> Evicted<P> {
        let blocks = self.free.drain();
        self.account_evicted(&blocks);
        blocks
    }

    /// Takes least recently used blocks out until the cache holds at most `limit` bytes.
    fn evict_over(&mut self, limit: usize) -> Evicted<P> {
        let mut blocks = Vec::new();
        while self.free.bytes() > limit {
            match self.free.pop_lru() {
                Some(block) => blocks.push(block),
                None => break,
            }
        }
        self.account_evicted(&blocks);
        blocks
    }

    fn account_evicted(&mut self, blocks: &[(usize, P)]) {
        let bytes: usize = blocks.iter().map(|b| b.0).sum();
        self.stats.cached_bytes -= bytes;
        self.stats.device_bytes -= bytes;
        self.stats.evictions += blocks.len() as u64;
    }

    /// Counts a block freshly allocated from the device and handed out.
    fn account_device_alloc(&mut self, size: usize) {
        let s = &mut self.stats;
        s.in_use_bytes += size;
        s.device_bytes += size;
        s.peak_bytes = s.peak_bytes.max(s.device_bytes);
        s.total_allocated_bytes += size as u64;
    }

    fn out_of_memory(&mut self, requested: usize) -> Error {
        self.stats.ooms += 1;
        Error::OutOfMemory { requested, in_use: self.stats.in_use_bytes, cached: self.stats.cached_bytes }
    }
}

impl<A: DeviceAllocator> Pool<A> {
    /// A pool over `alloc`.
    pub fn new(alloc: A, config: PoolConfig) -> Arc<Pool<A>> {
        Arc::new(Pool {
            alloc,
            config,
            state: Mutex::new(State { free: FreeList::new(), stats: PoolStats::default() }),
        })
    }

    /// A block of at least `bytes` bytes (`bytes` may be 0), from the cache when a block fits, else from the device.
    ///
    ///
    /// # Errors
    /// [`Error::OutOfMemory`] when the device refuses even after the cache was returned to it (or `bytes` is too
    /// large to round); [`Error::Gpu`] when the device allocator fails for another reason.
    pub fn alloc(self: &Arc<Self>, bytes: usize) -> Result<PoolBuffer<A>> {
        let Some(rounded) = size_class::round(bytes) else {
            return Err(self.lock().out_of_memory(bytes));
        };
        {
            let mut st = self.lock();
            if let Some((size, ptr)) = st.free.take_best_fit(rounded) {
                st.stats.hits += 1;
                st.stats.cached_bytes -= size;
                st.stats.in_use_bytes += size;
                drop(st);
                return Ok(PoolBuffer { pool: Arc::clone(self), ptr, size });
            }
            st.stats.misses += 1;
        }
        let ptr = self.allocate_from_device(bytes, rounded)?;
        Ok(PoolBuffer { pool: Arc::clone(self), ptr, size: rounded })
    }

    /// A device allocation of `size` bytes with one retry after evicting the cache; counts it on success.
    fn allocate_from_device(&self, requested: usize, size: usize) -> Result<A::Ptr> {
        match self.alloc.allocate(size) {
            Ok(ptr) => {
                self.lock().account_device_alloc(size);
                return Ok(ptr);
            }
            Err(AllocError::Other(msg)) => return Err(device_error(size, &msg)),
            Err(AllocError::OutOfMemory) => {}
        }
        let evicted = {
            let mut st = self.lock();
            st.stats.retries += 1;
            st.evict_all()
        };
        self.free_on_device(evicted);
        match self.alloc.allocate(size) {
            Ok(ptr) => {
                self.lock().account_device_alloc(size);
                Ok(ptr)
            }
            Err(AllocError::OutOfMemory) => Err(self.lock().out_of_memory(requested)),
            Err(AllocError::Other(msg)) => Err(device_error(size, &msg)),
        }
    }

    /// Takes a dropped buffer's block back into the cache, evicting past the cache limit.
    fn release(&self, ptr: A::Ptr, size: usize) {
        let evicted = {
            let mut st = self.lock();
            st.stats.in_use_bytes -= size;
            st.stats.cached_bytes += size;
            st.free.insert(size, ptr);
            st.evict_over(self.config.cache_limit_bytes)
        };
        self.free_on_device(evicted);
    }

    fn free_on_device(&self, blocks: Evicted<A::Ptr>) {
        for (size, ptr) in blocks {
            self.alloc.free(ptr, size);
        }
    }

    /// A poisoned lock only means another thread panicked between two counter updates; the free lists stay valid
    /// (each update is a single map operation), so the pool keeps working rather than turning a panic into many.
    fn lock(&self) -> MutexGuard<'_, State<A::Ptr>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A snapshot of the counters.
    pub fn statistics(&self) -> PoolStats {
        self.lock().stats.clone()
    }

    /// Returns every cached block to the device (counted as evictions). Buffers in use are not affected.
    pub fn clear_cache(&self) {
        let evicted = self.lock().evict_all();
        self.free_on_device(evicted);
    }

    /// The device allocator.
    pub fn allocator(&self) -> &A {
        &self.alloc
    }

    /// The settings the pool was made with.
    pub fn config(&self) -> &PoolConfig {
        &self.config
    }
}

fn device_error(size: usize, msg: &str) -> Error {
    Error::Gpu(format!("device allocation of {size} bytes failed: {msg}"))
}

impl<A: DeviceAllocator> Drop for Pool<A> {
    /// Frees the cached blocks. No block is in use: every [`PoolBuffer`] keeps its pool alive.
    fn drop(&mut self) {
        let state = self.state.get_mut().unwrap_or_else(PoisonError::into_inner);
        for (size, ptr) in state.free.drain() {
            self.alloc.free(ptr, size);
        }
    }
}

impl<A: DeviceAllocator> fmt::Debug for Pool<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool").field("config", &self.config).field("stats", &self.statistics()).finish()
    }
}

/// A block from the pool; goes back to the pool's cache when dropped.
///
/// Drop it only after the last kernel that uses it has been queued on the pool's stream (see the module docs on
/// stream order).
pub struct PoolBuffer<A: DeviceAllocator> {
    pool: Arc<Pool<A>>,
    ptr: A::Ptr,
    size: usize,
}

impl<A: DeviceAllocator> PoolBuffer<A> {
    /// The block's device address.
    pub fn ptr(&self) -> A::Ptr {
        self.ptr
    }

    /// Bytes usable (the rounded block size, at least the request).
    pub fn capacity(&self) -> usize {
        self.size
    }

    /// The pool the block returns to.
    pub fn pool(&self) -> &Arc<Pool<A>> {
        &self.pool
    }
}

impl<A: DeviceAllocator> Drop for PoolBuffer<A> {
    fn drop(&mut self) {
        self.pool.release(self.ptr, self.size);
    }
}

impl<A: DeviceAllocator> fmt::Debug for PoolBuffer<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolBuffer").field("ptr", &self.ptr).field("capacity", &self.size).finish()
    }
}
