//! Device memory: the raw allocator under the pool, and the backend's buffer type.

use std::sync::Arc;

use cudarc::driver::{result, sys, CudaContext};

use crate::pool::{AllocError, DeviceAllocator, PoolBuffer};

/// `cuMemAlloc` / `cuMemFree` on one context. The pool calls it only on a cache miss or an eviction.
pub struct DeviceMem {
    pub(crate) ctx: Arc<CudaContext>,
}

impl DeviceAllocator for DeviceMem {
    type Ptr = u64;

    fn allocate(&self, bytes: usize) -> std::result::Result<u64, AllocError> {
        self.ctx.bind_to_thread().map_err(|e| AllocError::Other(e.to_string()))?;
        // A zero-byte request still gets a distinct, valid address.
        // SAFETY: plain device allocation on the current context; the pointer is freed by `free` below.
        match unsafe { result::malloc_sync(bytes.max(1)) } {
            Ok(p) => Ok(p),
            Err(e) if e.0 == sys::CUresult::CUDA_ERROR_OUT_OF_MEMORY => Err(AllocError::OutOfMemory),
            Err(e) => Err(AllocError::Other(e.to_string())),
        }
    }

    fn free(&self, ptr: u64, _bytes: usize) {
        // cuMemFree waits for pending work on the memory, so a block freed right after its last kernel was
        // queued is still safe. Errors here cannot be returned; the context records them.
        if self.ctx.bind_to_thread().is_ok() {
            // SAFETY: `ptr` came from `allocate` on this context and the pool frees it once.
            let r = unsafe { result::free_sync(ptr) };
            self.ctx.record_err(r);
        }
    }
}

/// A tensor's memory on the GPU: a pooled block and the bytes in use (the block may be larger).
pub struct CudaBuffer {
    pub(crate) mem: PoolBuffer<DeviceMem>,
    pub(crate) len: usize,
}

impl CudaBuffer {
    /// The device address of the first byte.
    pub fn device_ptr(&self) -> u64 {
        self.mem.ptr()
    }

    /// Bytes of data the buffer was made for.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the buffer holds no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl std::fmt::Debug for CudaBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CudaBuffer({:#x}, {} bytes)", self.device_ptr(), self.len)
    }
}
