//! Recording a plan's launches as a CUDA graph (stream capture) and replaying it.
//!
//! The backend has one stream, so while one thread captures, work queued by any other thread would land in the
//! recording. The gate makes other threads wait until the capture ends; the capturing thread passes through.

use std::sync::{Condvar, Mutex};
use std::thread::ThreadId;

use cudarc::driver::{sys, CudaGraph};

use crate::backend::Replay;
use crate::error::{Error, Result};

/// Which thread, if any, is capturing, and how many operations are queuing work right now.
#[derive(Default)]
struct State {
    capturing: Option<ThreadId>,
    active: usize,
    /// Threads blocked in `close` or `pass`: only then does a finishing operation need to wake anyone (a wake-up
    /// is a system call, and `Pass` is dropped once per queued operation).
    waiting: usize,
}

/// Lets operations queue work on the stream together, but never while another thread captures: a capture waits
/// for operations in flight (a transfer records events between its chunks) and they wait for the capture.
#[derive(Default)]
pub(crate) struct Gate {
    state: Mutex<State>,
    changed: Condvar,
}

/// Held by an operation while it queues work; see [`Gate::pass`].
pub(crate) struct Pass<'a>(&'a Gate);

impl Drop for Pass<'_> {
    fn drop(&mut self) {
        let wake = match self.0.state.lock() {
            Ok(mut s) => {
                s.active -= 1;
                s.active == 0 && s.waiting > 0
            }
            Err(_) => true,
        };
        if wake {
            self.0.changed.notify_all();
        }
    }
}

fn poisoned<T>(_: T) -> Error {
    Error::Gpu("capture gate poisoned".into())
}

impl Gate {
    /// Waits while another thread captures; the returned pass keeps captures out until dropped.
    pub(crate) fn pass(&self) -> Result<Pass<'_>> {
        let me = std::thread::current().id();
        let mut s = self.state.lock().map_err(poisoned)?;
        while matches!(s.capturing, Some(t) if t != me) {
            s.waiting += 1;
            s = self.changed.wait(s).map_err(poisoned)?;
            s.waiting -= 1;
        }
        s.active += 1;
        Ok(Pass(self))
    }

    /// Marks this thread as capturing, once no other capture and no operation of another thread is in flight.
    pub(crate) fn close(&self) -> Result<()> {
        let me = std::thread::current().id();
        let mut s = self.state.lock().map_err(poisoned)?;
        while s.capturing.is_some() || s.active > 0 {
            s.waiting += 1;
            s = self.changed.wait(s).map_err(poisoned)?;
            s.waiting -= 1;
        }
        s.capturing = Some(me);
        Ok(())
    }

    /// Ends this thread's capture and wakes the waiting threads.
    pub(crate) fn open(&self) {
        if let Ok(mut s) = self.state.lock() {
            s.capturing = None;
        }
        self.changed.notify_all();
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
