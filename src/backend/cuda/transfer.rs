//! Host <-> device copies through pinned staging memory (pooled), pipelined over two chunks so the host copy of
//! one chunk overlaps the DMA of the other. Sources that are memory-mapped (safetensors weights) are read straight
//! from the mapping into the pinned chunk: no intermediate host vector.

use std::sync::Arc;

use cudarc::driver::{result, sys, CudaContext, CudaStream};
use rayon::prelude::*;

use super::device::drv;
use crate::error::Result;
use crate::pool::{AllocError, DeviceAllocator, Pool, PoolBuffer};

/// Bytes per staging chunk.
const CHUNK: usize = 8 << 20;
/// Host copies above this size are split over the rayon pool.
const PAR_COPY: usize = 1 << 20;

/// `cuMemHostAlloc` / `cuMemFreeHost`: page-locked host memory the DMA engines read and write directly.
pub struct PinnedMem {
    pub(crate) ctx: Arc<CudaContext>,
}

impl DeviceAllocator for PinnedMem {
    /// The host address.
    type Ptr = usize;

    fn allocate(&self, bytes: usize) -> std::result::Result<usize, AllocError> {
        self.ctx.bind_to_thread().map_err(|e| AllocError::Other(e.to_string()))?;
        // SAFETY: allocates page-locked host memory; freed by `free` below.
        match unsafe { result::malloc_host(bytes.max(1), 0) } {
            Ok(p) => Ok(p as usize),
            Err(e) if e.0 == sys::CUresult::CUDA_ERROR_OUT_OF_MEMORY => Err(AllocError::OutOfMemory),
            Err(e) => Err(AllocError::Other(e.to_string())),
        }
    }

    fn free(&self, ptr: usize, _bytes: usize) {
        if self.ctx.bind_to_thread().is_ok() {
            // SAFETY: `ptr` came from `allocate`; the pool frees each block once, after its copies completed.
            let r = unsafe { result::free_host(ptr as *mut std::ffi::c_void) };
            self.ctx.record_err(r);
        }
    }
}

/// Two events that mark when each staging chunk's copy has finished.
struct Events([sys::CUevent; 2]);

impl Events {
    fn new() -> Result<Events> {
        let f = sys::CUevent_flags::CU_EVENT_DISABLE_TIMING;
        let a = result::event::create(f).map_err(drv("creating an event"))?;
        match result::event::create(f) {
            Ok(b) => Ok(Events([a, b])),
            Err(e) => {
                // SAFETY: `a` was created just above and is not used elsewhere.
                let _ = unsafe { result::event::destroy(a) };
                Err(drv("creating an event")(e))
            }
        }
    }

    fn record(&self, i: usize, stream: &CudaStream) -> Result<()> {
        // SAFETY: both handles are live events of the current context.
        unsafe { result::event::record(self.0[i], stream.cu_stream()) }.map_err(drv("recording an event"))
    }

    fn wait(&self, i: usize) -> Result<()> {
        // SAFETY: a live event; synchronizing an event never recorded returns at once.
        unsafe { result::event::synchronize(self.0[i]) }.map_err(drv("waiting for a copy"))
    }
}

impl Drop for Events {
    fn drop(&mut self) {
        for e in self.0 {
            // SAFETY: created in `new`, destroyed once; both were waited on before drop by the callers.
            let _ = unsafe { result::event::destroy(e) };
        }
    }
}

fn host_copy(dst: &mut [u8], src: &[u8]) {
    if src.len() >= PAR_COPY {
        dst.par_chunks_mut(PAR_COPY / 4).zip(src.par_chunks(PAR_COPY / 4)).for_each(|(d, s)| d.copy_from_slice(s));
    } else {
        dst.copy_from_slice(src);
    }
}

/// Pinned staging memory of one device.
pub struct Staging {
    pool: Arc<Pool<PinnedMem>>,
}

fn pinned_slice(b: &mut PoolBuffer<PinnedMem>, len: usize) -> &mut [u8] {
    // SAFETY: the block is at least `len` bytes of pinned host memory owned by this PoolBuffer, and no copy
    // that uses it is in flight (callers wait on its event first).
    unsafe { std::slice::from_raw_parts_mut(b.ptr() as *mut u8, len) }
}

impl Staging {
    /// Staging over a pool of pinned host memory.
    pub fn new(pool: Arc<Pool<PinnedMem>>) -> Staging {
        Staging { pool }
    }

    /// The pinned pool (for statistics).
    pub fn pool(&self) -> &Arc<Pool<PinnedMem>> {
        &self.pool
    }

    fn buffers(&self, total: usize) -> Result<(usize, Vec<PoolBuffer<PinnedMem>>)> {
        let chunk = CHUNK.min(total);
        let n = if total > chunk { 2 } else { 1 };
        Ok((chunk, (0..n).map(|_| self.pool.alloc(chunk)).collect::<Result<Vec<_>>>()?))
    }

    /// Copies `src` to device address `dst` (queued on `stream`; returns when the host memory may be reused).
    pub fn upload(&self, stream: &CudaStream, src: &[u8], dst: u64) -> Result<()> {
        if src.is_empty() {
            return Ok(());
        }
        let (chunk, mut bufs) = self.buffers(src.len())?;
        let ev = Events::new()?;
        for (i, piece) in src.chunks(chunk).enumerate() {
            let s = i % bufs.len();
            if i >= bufs.len() {
                ev.wait(s)?;
            }
            let st = pinned_slice(&mut bufs[s], piece.len());
            host_copy(st, piece);
            // SAFETY: `st` is pinned and stays alive and unmodified until the event below has completed (waited
            // for before reuse and before returning); the destination range lies inside the caller's buffer.
            unsafe { result::memcpy_htod_async(dst + (i * chunk) as u64, &*st, stream.cu_stream()) }
                .map_err(drv("host-to-device copy"))?;
            ev.record(s, stream)?;
        }
        for s in 0..bufs.len() {
            ev.wait(s)?;
        }
        Ok(())
    }

    /// Copies device address `src` into `dst` after all work queued before it on `stream`.
    pub fn download(&self, stream: &CudaStream, src: u64, dst: &mut [u8]) -> Result<()> {
        if dst.is_empty() {
            return Ok(());
        }
        let total = dst.len();
        let (chunk, mut bufs) = self.buffers(total)?;
        let nb = bufs.len();
        let ev = Events::new()?;
        let pieces = total.div_ceil(chunk);
        let issue = |i: usize, bufs: &mut Vec<PoolBuffer<PinnedMem>>| -> Result<()> {
            let len = chunk.min(total - i * chunk);
            let st = pinned_slice(&mut bufs[i % nb], len);
            // SAFETY: the pinned chunk is not read by the host until its event completes; the source range lies
            // inside the caller's buffer.
            unsafe { result::memcpy_dtoh_async(st, src + (i * chunk) as u64, stream.cu_stream()) }
                .map_err(drv("device-to-host copy"))?;
            ev.record(i % nb, stream)
        };
        issue(0, &mut bufs)?;
        for (i, out) in dst.chunks_mut(chunk).enumerate() {
            if i + 1 < pieces {
                issue(i + 1, &mut bufs)?;
            }
            ev.wait(i % nb)?;
            let len = out.len();
            host_copy(out, pinned_slice(&mut bufs[i % nb], len));
        }
        Ok(())
    }
}

/// Device-to-device copy of `bytes` bytes on `stream`.
pub fn copy_d2d(stream: &CudaStream, src: u64, dst: u64, bytes: usize) -> Result<()> {
    if bytes == 0 {
        return Ok(());
    }
    // SAFETY: both ranges lie inside live device buffers of the caller.
    unsafe { result::memcpy_dtod_async(dst, src, bytes, stream.cu_stream()) }.map_err(drv("device-to-device copy"))
}
