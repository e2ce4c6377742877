//! The raw device allocator the pool draws from.

/// Why a device allocation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllocError {
    /// The device has no memory left for the request. The pool evicts its cache and retries once.
    OutOfMemory,
    /// Any other failure (driver error text). The pool reports it as [`crate::Error::Gpu`] without retrying.
    Other(String),
}

/// The raw allocator of one device: the pool asks it for memory only on a cache miss and returns memory only when
/// it evicts cached blocks, on [`crate::pool::Pool::clear_cache`] and when the pool is dropped.
///
/// The pool never calls these methods while holding its lock, so they may be slow. They may be called from several
/// threads at once and from any thread that allocates or drops a buffer (a drop can evict past the cache limit),
/// so an implementation binds its device context itself rather than relying on the caller's thread.
pub trait DeviceAllocator: Send + Sync + 'static {
    /// A device address (a `CUdeviceptr` on CUDA, an offset or host pointer in a fake).
    type Ptr: Copy + Send + Sync + std::fmt::Debug + 'static;

    /// Allocates exactly `bytes` bytes (already rounded by the pool, so at least 512 and never 0).
    fn allocate(&self, bytes: usize) -> std::result::Result<Self::Ptr, AllocError>;

    /// Frees a block returned by `allocate` with the same size. Called exactly once per block.
    ///
    /// Kernels queued before the block's last owner was dropped may still be running when this is called: the
    /// implementation must make that safe (`cuMemFree` waits for the device; a stream-ordered free must be
    /// queued on the stream those kernels use).
    fn free(&self, ptr: Self::Ptr, bytes: usize);
}
