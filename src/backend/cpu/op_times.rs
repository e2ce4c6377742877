//! Time spent in each CPU op, summed by op and output shape while turned on (`bench-embed --op-times`), to show
//! where a CPU forward's time goes. Off by default: then an op costs one atomic load more.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

static ON: AtomicBool = AtomicBool::new(false);
static TOTALS: Mutex<Vec<OpTime>> = Mutex::new(Vec::new());

/// The time of one op and output shape, summed over its calls.
#[derive(Clone, Debug)]
pub struct OpTime {
    /// The op's name and its output shape, e.g. `FusedLinearAdd [2048, 1152]`.
    pub op: String,
    /// Calls summed.
    pub calls: u64,
    /// Their total time.
    pub total: Duration,
}

/// Turns the timing of CPU ops on or off (for the whole process).
pub fn set_enabled(on: bool) {
    ON.store(on, Ordering::Relaxed);
}

/// Whether CPU ops are being timed.
pub(crate) fn enabled() -> bool {
    ON.load(Ordering::Relaxed)
}

/// Adds one call of `op` that took `d`.
pub(crate) fn record(op: String, d: Duration) {
    let mut totals = TOTALS.lock().unwrap_or_else(|e| e.into_inner());
    match totals.iter_mut().find(|t| t.op == op) {
        Some(t) => {
            t.calls += 1;
            t.total += d;
        }
        None => totals.push(OpTime { op, calls: 1, total: d }),
    }
}

/// The totals since the last call, largest first; clears them.
pub fn take() -> Vec<OpTime> {
    let mut v = std::mem::take(&mut *TOTALS.lock().unwrap_or_else(|e| e.into_inner()));
    v.sort_by_key(|t| std::cmp::Reverse(t.total));
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_of_one_op_add_up_and_take_clears() {
        // The only test touching the totals (they are process-wide).
        record("A [2]".into(), Duration::from_millis(1));
        record("B [3]".into(), Duration::from_millis(5));
        record("A [2]".into(), Duration::from_millis(2));
        let t = take();
        assert_eq!(t.len(), 2);
        assert_eq!((t[0].op.as_str(), t[0].calls, t[0].total), ("B [3]", 1, Duration::from_millis(5)));
        assert_eq!((t[1].op.as_str(), t[1].calls, t[1].total), ("A [2]", 2, Duration::from_millis(3)));
        assert!(take().is_empty());
    }
}
