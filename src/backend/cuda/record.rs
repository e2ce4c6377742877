//! Recording a plan's launches as a CUDA graph (stream capture) and replaying it.
//!
//! The backend has one stream, so while one thread captures, work queued by any other thread would land in the
//! recording. The gate makes other threads wait until the capture ends; the capturing thread passes through.

use std::sync::{Condvar, Mutex};
use std::thread::ThreadId;

use cudarc::driver::{sys, CudaGraph};

use crate::backend::Replay;
use crate::error::{Error, Result};

/// Which thread, if any, is capturing.
#[derive(Default)]
pub(crate) struct Gate {
    capturing: Mutex<Option<ThreadId>>,
    ended: Condvar,
}

impl Gate {
    /// Waits while another thread captures.
    pub(crate) fn pass(&self) -> Result<()> {
        let me = std::thread::current().id();
        let mut g = self.capturing.lock().map_err(|_| Error::Gpu("capture gate poisoned".into()))?;
        while matches!(*g, Some(t) if t != me) {
            g = self.ended.wait(g).map_err(|_| Error::Gpu("capture gate poisoned".into()))?;
        }
        Ok(())
    }

    /// Marks this thread as capturing, after any other capture ends.
    pub(crate) fn close(&self) -> Result<()> {
        let me = std::thread::current().id();
        let mut g = self.capturing.lock().map_err(|_| Error::Gpu("capture gate poisoned".into()))?;
        while g.is_some() {
            g = self.ended.wait(g).map_err(|_| Error::Gpu("capture gate poisoned".into()))?;
        }
        *g = Some(me);
        Ok(())
    }

    /// Ends this thread's capture and wakes the waiting threads.
    pub(crate) fn open(&self) {
        if let Ok(mut g) = self.capturing.lock() {
            *g = None;
        }
        self.ended.notify_all();
    }
}

/// A captured CUDA graph, instantiated and ready to launch on the backend's stream.
pub(crate) struct CudaReplay {
    graph: Mutex<CudaGraph>,
}

// SAFETY: CUDA graph objects are not internally synchronised; every use of this one (launch, drop) goes through the
// mutex or happens once no other reference exists, so moving or sharing the wrapper between threads is sound.
unsafe impl Send for CudaReplay {}
// SAFETY: as above: the only method takes the mutex before touching the graph.
unsafe impl Sync for CudaReplay {}

impl CudaReplay {
    pub(crate) fn new(graph: CudaGraph) -> CudaReplay {
        CudaReplay { graph: Mutex::new(graph) }
    }
}

impl Replay for CudaReplay {
    fn replay(&self) -> Result<()> {
        let g = self.graph.lock().map_err(|_| Error::Gpu("CUDA graph lock poisoned".into()))?;
        g.launch().map_err(|e| Error::Gpu(format!("launching the recorded CUDA graph: {e}")))
    }
}

/// Stream capture mode: relaxed, so a cache miss in the pool (cuMemAlloc) on another thread cannot break it.
pub(crate) const MODE: sys::CUstreamCaptureMode = sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_RELAXED;
