//! Cost of a cached allocation: `Pool::alloc` served from the cache plus the drop that returns the block.
//!
//! The device is a fake that hands out addresses without memory, so only the pool's own work is measured.
//! Run: `cargo run --release --example pool_bench`.

use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use mlx_native::pool::{AllocError, DeviceAllocator, Pool, PoolConfig};

/// Addresses from a bump counter; nothing is ever read or written through them.
struct AddressOnly(AtomicUsize);

impl DeviceAllocator for AddressOnly {
    type Ptr = usize;

    fn allocate(&self, bytes: usize) -> Result<usize, AllocError> {
        Ok(self.0.fetch_add(bytes, Ordering::Relaxed))
    }

    fn free(&self, _ptr: usize, _bytes: usize) {}
}

/// Median over `rounds` of the mean time per alloc+drop of `request` bytes, with `background` blocks of assorted
/// sizes cached around it so the free lists are not trivially small.
fn median_ns(request: usize, background: usize, rounds: usize, iters: usize) -> f64 {
    let pool = Pool::new(AddressOnly(AtomicUsize::new(1 << 20)), PoolConfig::default());
    let filler: Vec<_> =
        (0..background).map(|i| pool.alloc(512 * (1 + i % 300) + (i / 300) * (2 << 20)).expect("fake alloc")).collect();
    drop(filler);
    drop(pool.alloc(request).expect("warm-up alloc"));
    let misses_before = pool.statistics().misses;
    let mut samples: Vec<f64> = (0..rounds)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..iters {
                let b = pool.alloc(black_box(request)).expect("cached alloc");
                black_box(b.ptr());
                drop(b);
            }
            start.elapsed().as_nanos() as f64 / iters as f64
        })
        .collect();
    assert_eq!(pool.statistics().misses, misses_before, "the timed loop must hit the cache every time");
    samples.sort_by(f64::total_cmp);
    samples[rounds / 2]
}

fn main() {
    let (rounds, iters) = (41, 20_000);
    println!("pool_bench: median over {rounds} rounds of {iters} cached alloc+drop pairs (one thread, no contention)");
    for (request, background) in [(4096, 0), (4096, 1000), (3 << 20, 1000), (0, 1000)] {
        let ns = median_ns(request, background, rounds, iters);
        println!("  request {request:>8} B, {background:>4} other cached blocks: {ns:>7.1} ns per alloc+drop");
    }
}
