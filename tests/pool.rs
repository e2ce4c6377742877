//! The buffer pool over a host-memory fake device: size classes, best fit and the twice rule, LRU eviction, the
//! cache limit, retry after eviction, out-of-memory errors, statistics, threads, and random alloc/free sequences.
//!
//! The fake allocator hands out real host blocks, counts its calls, can fail on demand (after N allocations,
//! while a flag is set, or past a device capacity) and records every free, so the tests check that blocks never
//! overlap while handed out and that every block is freed exactly once.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use mlx_native::pool::{size_class, AllocError, DeviceAllocator, Pool, PoolBuffer, PoolConfig, PoolStats};
use mlx_native::Error;
use proptest::prelude::*;

const MIB: usize = 1 << 20;

/// What the fake device has seen and holds. Shared between the allocator (owned by the pool) and the test.
#[derive(Default)]
struct FakeDevice {
    /// Calls to `allocate`, failed ones included.
    calls: AtomicU64,
    /// Successful allocations.
    allocs: AtomicU64,
    /// Calls to `free`.
    frees: AtomicU64,
    /// While set, every allocation fails.
    fail_flag: AtomicBool,
    /// Allocations fail once this many have succeeded (`u64::MAX`: never).
    fail_after: AtomicU64,
    /// The error injected failures report.
    fail_other: AtomicBool,
    inner: Mutex<FakeInner>,
}

#[derive(Default)]
struct FakeInner {
    /// Live blocks by address. The boxes are the host memory the "device pointers" point at.
    live: BTreeMap<usize, Box<[u8]>>,
    live_bytes: usize,
    /// Device capacity in bytes (`0`: unlimited); an allocation past it fails with out-of-memory.
    capacity: usize,
    total_allocated: u64,
    /// Every size `allocate` was called with, in order.
    requested_sizes: Vec<usize>,
    /// Every block freed, in order.
    freed: Vec<(usize, usize)>,
    /// Contract violations seen (unknown pointer, wrong size, zero-size request).
    errors: Vec<String>,
}

impl FakeDevice {
    fn new(capacity: usize) -> Arc<FakeDevice> {
        let dev = FakeDevice { fail_after: AtomicU64::new(u64::MAX), ..Default::default() };
        dev.inner.lock().unwrap().capacity = capacity;
        Arc::new(dev)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FakeInner> {
        self.inner.lock().unwrap()
    }

    fn live_bytes(&self) -> usize {
        self.lock().live_bytes
    }

    fn live_blocks(&self) -> usize {
        self.lock().live.len()
    }

    fn freed(&self) -> Vec<(usize, usize)> {
        self.lock().freed.clone()
    }

    fn errors(&self) -> Vec<String> {
        self.lock().errors.clone()
    }

    /// Writes `tag` into the first 16 bytes and the last byte of the block at `[ptr, ptr + len)`.
    fn write_tag(&self, ptr: usize, len: usize, tag: u8) {
        let mut inner = self.lock();
        let block = inner.live.get_mut(&ptr).expect("tagged block is not live on the fake device");
        assert!(block.len() >= len, "block at {ptr:#x} has {} bytes, buffer claims {len}", block.len());
        block[..16].fill(tag);
        block[len - 1] = tag;
    }

    /// Whether the block at `ptr` still carries `tag` (nobody else wrote into it).
    fn has_tag(&self, ptr: usize, len: usize, tag: u8) -> bool {
        let inner = self.lock();
        let block = &inner.live[&ptr];
        block[..16].iter().all(|&b| b == tag) && block[len - 1] == tag
    }
}

/// The allocator the pool owns: a handle to the shared fake device.
struct FakeAlloc(Arc<FakeDevice>);

impl DeviceAllocator for FakeAlloc {
    type Ptr = usize;

    fn allocate(&self, bytes: usize) -> Result<usize, AllocError> {
        let dev = &self.0;
        dev.calls.fetch_add(1, Ordering::SeqCst);
        let mut inner = dev.lock();
        inner.requested_sizes.push(bytes);
        if bytes == 0 {
            inner.errors.push("allocate(0): the pool must round zero-byte requests up".into());
        }
        let injected = dev.fail_flag.load(Ordering::SeqCst)
            || dev.allocs.load(Ordering::SeqCst) >= dev.fail_after.load(Ordering::SeqCst);
        if injected {
            return Err(if dev.fail_other.load(Ordering::SeqCst) {
                AllocError::Other("injected driver failure".into())
            } else {
                AllocError::OutOfMemory
            });
        }
        if inner.capacity != 0 && inner.live_bytes + bytes > inner.capacity {
            return Err(AllocError::OutOfMemory);
        }
        let block = vec![0u8; bytes.max(1)].into_boxed_slice();
        let ptr = block.as_ptr() as usize;
        // Real host blocks never overlap; this guards the fake itself (and the bookkeeping below).
        if let Some((&prev, b)) = inner.live.range(..=ptr).next_back() {
            assert!(prev + b.len() <= ptr, "fake device handed out overlapping blocks");
        }
        inner.live.insert(ptr, block);
        inner.live_bytes += bytes;
        inner.total_allocated += bytes as u64;
        dev.allocs.fetch_add(1, Ordering::SeqCst);
        Ok(ptr)
    }

    fn free(&self, ptr: usize, bytes: usize) {
        let dev = &self.0;
        dev.frees.fetch_add(1, Ordering::SeqCst);
        let mut inner = dev.lock();
        match inner.live.remove(&ptr) {
            Some(block) if block.len() == bytes.max(1) => inner.live_bytes -= bytes,
            Some(block) => {
                let len = block.len();
                inner.errors.push(format!("free({ptr:#x}, {bytes}) of a block of {len} bytes"));
                inner.live_bytes -= len;
            }
            None => inner.errors.push(format!("free({ptr:#x}, {bytes}) of a block that is not live (double free?)")),
        }
        inner.freed.push((ptr, bytes));
    }
}

fn new_pool(capacity: usize, cache_limit_bytes: usize) -> (Arc<Pool<FakeAlloc>>, Arc<FakeDevice>) {
    let dev = FakeDevice::new(capacity);
    (Pool::new(FakeAlloc(dev.clone()), PoolConfig { cache_limit_bytes }), dev)
}

/// Checks the statistics against each other and against the device, with no allocation in flight.
fn check_consistent(pool: &Pool<FakeAlloc>, dev: &FakeDevice, live: &[&PoolBuffer<FakeAlloc>]) -> PoolStats {
    let s = pool.statistics();
    assert_eq!(s.in_use_bytes + s.cached_bytes, s.device_bytes, "{s:?}");
    assert!(s.device_bytes <= s.peak_bytes, "{s:?}");
    assert_eq!(s.in_use_bytes, live.iter().map(|b| b.capacity()).sum::<usize>(), "{s:?}");
    assert_eq!(s.device_bytes, dev.live_bytes(), "device bytes vs fake device: {s:?}");
    assert_eq!(s.total_allocated_bytes, dev.lock().total_allocated, "{s:?}");
    assert_eq!(s.evictions, dev.frees.load(Ordering::SeqCst), "every device free while the pool lives is an eviction");
    assert!(s.cached_bytes <= pool.config().cache_limit_bytes, "{s:?}");
    assert!(dev.errors().is_empty(), "{:?}", dev.errors());
    s
}

/// Drops the pool (the test's last handle) and checks that every device block was freed exactly once.
fn check_all_freed(pool: Arc<Pool<FakeAlloc>>, dev: &FakeDevice) {
    assert_eq!(Arc::strong_count(&pool), 1, "a buffer still holds the pool");
    drop(pool);
    assert!(dev.errors().is_empty(), "{:?}", dev.errors());
    assert_eq!(dev.live_blocks(), 0, "blocks left on the device after the pool was dropped");
    assert_eq!(dev.live_bytes(), 0);
    assert_eq!(dev.allocs.load(Ordering::SeqCst), dev.frees.load(Ordering::SeqCst));
}

#[test]
fn size_classes_round_small_to_512_and_large_to_2_mib() {
    let (pool, dev) = new_pool(0, usize::MAX);
    let cases = [
        (0, 512),
        (1, 512),
        (512, 512),
        (513, 1024),
        (1000, 1024),
        (100_000, 100_352),
        (MIB - 1, MIB),
        (MIB, 2 * MIB),
        (2 * MIB, 2 * MIB),
        (2 * MIB + 1, 4 * MIB),
        (5 * MIB + 3, 6 * MIB),
    ];
    // Hold every buffer so that each request reaches the device and the sizes it asks for are visible.
    let mut held = Vec::new();
    for (request, expected) in cases {
        assert_eq!(size_class::round(request), Some(expected), "round({request})");
        let b = pool.alloc(request).unwrap();
        assert_eq!(b.capacity(), expected, "capacity for a request of {request} bytes");
        assert!(b.capacity() >= request);
        held.push(b);
    }
    assert_eq!(dev.lock().requested_sizes, cases.iter().map(|c| c.1).collect::<Vec<_>>());
    let s = check_consistent(&pool, &dev, &held.iter().collect::<Vec<_>>());
    assert_eq!((s.hits, s.misses), (0, cases.len() as u64));
    // Distinct zero-byte buffers get distinct addresses.
    let (a, b) = (pool.alloc(0).unwrap(), pool.alloc(0).unwrap());
    assert_ne!(a.ptr(), b.ptr());
    drop((a, b, held));
    check_all_freed(pool, &dev);
}

#[test]
fn request_too_large_to_round_is_out_of_memory_without_a_device_call() {
    let (pool, dev) = new_pool(0, usize::MAX);
    match pool.alloc(usize::MAX) {
        Err(Error::OutOfMemory { requested, in_use: 0, cached: 0 }) => assert_eq!(requested, usize::MAX),
        other => panic!("expected OutOfMemory, got {other:?}"),
    }
    assert_eq!(dev.calls.load(Ordering::SeqCst), 0);
    assert_eq!(pool.statistics().ooms, 1);
    check_all_freed(pool, &dev);
}

#[test]
fn best_fit_takes_smallest_fitting_block_but_never_twice_the_request() {
    let (pool, dev) = new_pool(0, usize::MAX);
    let sizes = [1024, 1536, 4096, 2 * MIB, 6 * MIB];
    let bufs: Vec<_> = sizes.iter().map(|&s| pool.alloc(s).unwrap()).collect();
    let ptr_of: BTreeMap<usize, usize> = bufs.iter().map(|b| (b.capacity(), b.ptr())).collect();
    drop(bufs);
    let before = pool.statistics();
    assert_eq!(before.cached_bytes, sizes.iter().sum::<usize>());

    // Exact size.
    let a = pool.alloc(1000).unwrap();
    assert_eq!((a.ptr(), a.capacity()), (ptr_of[&1024], 1024));
    // 700 rounds to 1024; 1024 is taken, so the next fit below 2048 is 1536.
    let b = pool.alloc(700).unwrap();
    assert_eq!((b.ptr(), b.capacity()), (ptr_of[&1536], 1536));
    // 2048: the only larger cached block (4096) is twice the request, so this goes to the device.
    let c = pool.alloc(2048).unwrap();
    assert_eq!(c.capacity(), 2048);
    assert!(!ptr_of.values().any(|&p| p == c.ptr()));
    // 2049 rounds to 2560; 4096 is less than twice that.
    let d = pool.alloc(2049).unwrap();
    assert_eq!((d.ptr(), d.capacity()), (ptr_of[&4096], 4096));
    // 3 MiB rounds to 4 MiB: the 6 MiB block fits (< 8 MiB), the 2 MiB one is too small.
    let e = pool.alloc(3 * MIB).unwrap();
    assert_eq!((e.ptr(), e.capacity()), (ptr_of[&(6 * MIB)], 6 * MIB));
    // 1 MiB rounds to 2 MiB: exact.
    let f = pool.alloc(MIB).unwrap();
    assert_eq!((f.ptr(), f.capacity()), (ptr_of[&(2 * MIB)], 2 * MIB));

    let s = check_consistent(&pool, &dev, &[&a, &b, &c, &d, &e, &f]);
    assert_eq!((s.hits - before.hits, s.misses - before.misses), (5, 1));
    assert_eq!(s.cached_bytes, 0);
    drop((a, b, c, d, e, f));
    check_all_freed(pool, &dev);
}

#[test]
fn eviction_follows_lru_order_and_reuse_refreshes_a_block() {
    let (pool, dev) = new_pool(0, 2 * 4096);
    let [a, b, c]: [PoolBuffer<FakeAlloc>; 3] = std::array::from_fn(|_| pool.alloc(4096).unwrap());
    let (pa, pb, pc) = (a.ptr(), b.ptr(), c.ptr());
    drop(b);
    drop(a);
    assert!(dev.freed().is_empty());
    drop(c); // three blocks cached, limit two: the least recently freed (b) goes.
    assert_eq!(dev.freed(), vec![(pb, 4096)]);

    // Among equal sizes the most recently freed block (c) is reused; freeing it makes it the newest again.
    let c2 = pool.alloc(4096).unwrap();
    assert_eq!(c2.ptr(), pc);
    let d = pool.alloc(4096).unwrap();
    assert_eq!(d.ptr(), pa, "the remaining cached block is reused before going to the device");
    let e = pool.alloc(4096).unwrap();
    let pe = e.ptr();
    drop(d); // cache: a
    drop(c2); // cache: a, c
    drop(e); // cache: a, c, e -> a goes
    assert_eq!(dev.freed(), vec![(pb, 4096), (pa, 4096)]);
    let s = check_consistent(&pool, &dev, &[]);
    assert_eq!((s.cached_bytes, s.evictions), (2 * 4096, 2));

    // A block larger than the whole limit is returned at once, after the older blocks.
    let big = pool.alloc(3 * 4096).unwrap();
    let pbig = big.ptr();
    drop(big);
    assert_eq!(dev.freed()[2..], [(pc, 4096), (pe, 4096), (pbig, 3 * 4096)]);
    check_consistent(&pool, &dev, &[]);
    check_all_freed(pool, &dev);
}

#[test]
fn cache_limit_bounds_cached_bytes_and_zero_caches_nothing() {
    let (pool, dev) = new_pool(0, 0);
    for request in [0, 100, 5000, 3 * MIB] {
        let b = pool.alloc(request).unwrap();
        drop(b);
        let s = check_consistent(&pool, &dev, &[]);
        assert_eq!(s.cached_bytes, 0);
    }
    let s = pool.statistics();
    assert_eq!((s.hits, s.misses, s.evictions), (0, 4, 4));
    check_all_freed(pool, &dev);

    let limit = 5 * MIB;
    let (pool, dev) = new_pool(0, limit);
    let bufs: Vec<_> = (0..6).map(|_| pool.alloc(MIB + 1).unwrap()).collect();
    drop(bufs);
    let s = check_consistent(&pool, &dev, &[]);
    assert_eq!(s.cached_bytes, 4 * MIB, "two 2 MiB blocks fit under 5 MiB");
    assert_eq!(s.evictions, 4);
    pool.clear_cache();
    let s = check_consistent(&pool, &dev, &[]);
    assert_eq!((s.cached_bytes, s.device_bytes, s.evictions), (0, 0, 6));
    check_all_freed(pool, &dev);
}

#[test]
fn failed_allocation_evicts_the_cache_and_retries_once() {
    // A 6 MiB device: two cached 2 MiB blocks leave no room for a 4 MiB block until they are evicted.
    let (pool, dev) = new_pool(6 * MIB, usize::MAX);
    let keep = pool.alloc(100).unwrap();
    drop((pool.alloc(2 * MIB).unwrap(), pool.alloc(2 * MIB).unwrap()));
    let before = check_consistent(&pool, &dev, &[&keep]);
    assert_eq!(before.cached_bytes, 4 * MIB);

    let big = pool.alloc(3 * MIB).unwrap();
    assert_eq!(big.capacity(), 4 * MIB);
    let s = check_consistent(&pool, &dev, &[&keep, &big]);
    assert_eq!(s.retries, 1);
    assert_eq!(s.ooms, 0);
    assert_eq!(s.evictions, before.evictions + 2);
    assert_eq!(s.misses, before.misses + 1);
    assert_eq!(s.cached_bytes, 0);
    assert_eq!(s.peak_bytes, before.peak_bytes, "the peak was the two cached blocks plus the small one");
    // The failed call and the retry, nothing else.
    assert_eq!(dev.calls.load(Ordering::SeqCst), 3 + 2);
    drop((keep, big));
    check_all_freed(pool, &dev);
}

#[test]
fn out_of_memory_after_the_retry_reports_and_changes_only_counters() {
    let (pool, dev) = new_pool(0, usize::MAX);
    let keep = pool.alloc(3000).unwrap();
    let before = check_consistent(&pool, &dev, &[&keep]);

    dev.fail_flag.store(true, Ordering::SeqCst);
    let calls = dev.calls.load(Ordering::SeqCst);
    match pool.alloc(10_000) {
        Err(Error::OutOfMemory { requested, in_use, cached }) => {
            assert_eq!((requested, in_use, cached), (10_000, 3072, 0));
        }
        other => panic!("expected OutOfMemory, got {other:?}"),
    }
    assert_eq!(dev.calls.load(Ordering::SeqCst), calls + 2, "one attempt and one retry");
    let after = check_consistent(&pool, &dev, &[&keep]);
    let expected =
        PoolStats { misses: before.misses + 1, retries: before.retries + 1, ooms: before.ooms + 1, ..before };
    assert_eq!(after, expected);

    // With blocks cached, the retry returns them first; the error reports the state after that.
    dev.fail_flag.store(false, Ordering::SeqCst);
    drop(pool.alloc(5000).unwrap());
    dev.fail_flag.store(true, Ordering::SeqCst);
    let before = pool.statistics();
    assert_eq!(before.cached_bytes, 5120);
    let err = pool.alloc(MIB).unwrap_err();
    assert!(matches!(err, Error::OutOfMemory { requested: MIB, in_use: 3072, cached: 0 }), "{err:?}");
    assert!(err.to_string().contains("out of memory"), "{err}");
    let after = check_consistent(&pool, &dev, &[&keep]);
    assert_eq!(after.evictions, before.evictions + 1);
    assert_eq!((after.retries, after.ooms), (before.retries + 1, before.ooms + 1));

    // The pool works again once the device does.
    dev.fail_flag.store(false, Ordering::SeqCst);
    let b = pool.alloc(MIB).unwrap();
    check_consistent(&pool, &dev, &[&keep, &b]);
    drop((keep, b));
    check_all_freed(pool, &dev);
}

#[test]
fn failures_after_n_allocations_and_other_errors() {
    let (pool, dev) = new_pool(0, usize::MAX);
    dev.fail_after.store(2, Ordering::SeqCst);
    let a = pool.alloc(1).unwrap();
    let b = pool.alloc(1).unwrap();
    assert!(matches!(pool.alloc(1), Err(Error::OutOfMemory { .. })));
    // Cache hits need no device allocation.
    drop(a);
    let a = pool.alloc(1).unwrap();
    let s = check_consistent(&pool, &dev, &[&a, &b]);
    assert_eq!((s.hits, s.misses, s.retries, s.ooms), (1, 3, 1, 1));

    // A non-memory driver error is reported as a GPU error with its text, without a retry.
    dev.fail_other.store(true, Ordering::SeqCst);
    let calls = dev.calls.load(Ordering::SeqCst);
    match pool.alloc(MIB) {
        Err(Error::Gpu(msg)) => assert!(msg.contains("injected driver failure") && msg.contains("2097152"), "{msg}"),
        other => panic!("expected a GPU error, got {other:?}"),
    }
    assert_eq!(dev.calls.load(Ordering::SeqCst), calls + 1);
    let s2 = check_consistent(&pool, &dev, &[&a, &b]);
    assert_eq!(s2, PoolStats { misses: s.misses + 1, ..s });
    drop((a, b));
    check_all_freed(pool, &dev);
}

#[test]
fn dropping_the_pool_frees_cached_blocks_exactly_once() {
    let (pool, dev) = new_pool(0, usize::MAX);
    let bufs: Vec<_> = [0, 10, 600, 70_000, MIB, 5 * MIB].iter().map(|&s| pool.alloc(s).unwrap()).collect();
    let ptrs: Vec<_> = bufs.iter().map(|b| b.ptr()).collect();
    drop(bufs);
    assert!(dev.freed().is_empty(), "nothing is freed while the cache has room");
    check_all_freed(pool, &dev);
    let mut freed: Vec<_> = dev.freed().iter().map(|f| f.0).collect();
    freed.sort_unstable();
    let mut expected = ptrs;
    expected.sort_unstable();
    assert_eq!(freed, expected);
}

#[test]
fn pool_and_buffers_are_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Pool<FakeAlloc>>();
    assert_send_sync::<PoolBuffer<FakeAlloc>>();
    assert_send_sync::<Arc<Pool<FakeAlloc>>>();
}

/// Ranges of the buffers currently handed out, to catch two owners of overlapping memory.
#[derive(Default)]
struct Owners(BTreeMap<usize, usize>);

impl Owners {
    fn claim(&mut self, b: &PoolBuffer<FakeAlloc>) {
        let (start, end) = (b.ptr(), b.ptr() + b.capacity());
        if let Some((&s, &e)) = self.0.range(..end).next_back() {
            assert!(e <= start || s >= end, "buffer [{start:#x}, {end:#x}) overlaps a live one [{s:#x}, {e:#x})");
        }
        self.0.insert(start, end);
    }

    fn release(&mut self, b: &PoolBuffer<FakeAlloc>) {
        assert_eq!(self.0.remove(&b.ptr()), Some(b.ptr() + b.capacity()));
    }
}

#[test]
fn several_threads_share_one_pool() {
    const THREADS: usize = 4;
    const OPS: usize = 1500;
    let (pool, dev) = new_pool(0, 3 * MIB);
    let owners = Arc::new(Mutex::new(Owners::default()));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let (pool, dev, owners) = (pool.clone(), dev.clone(), owners.clone());
            std::thread::spawn(move || {
                let tag = t as u8 + 1;
                let mut held: Vec<PoolBuffer<FakeAlloc>> = Vec::new();
                let mut state = 0x9E37_79B9_7F4A_7C15u64 ^ t as u64;
                for _ in 0..OPS {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    if held.len() < 8 && state % 3 != 0 {
                        let request = match state % 7 {
                            0 => (state >> 8) as usize % (3 * MIB),
                            _ => (state >> 8) as usize % 8192,
                        };
                        let b = pool.alloc(request).unwrap();
                        assert!(b.capacity() >= request);
                        owners.lock().unwrap().claim(&b);
                        dev.write_tag(b.ptr(), b.capacity(), tag);
                        held.push(b);
                    } else if !held.is_empty() {
                        let b = held.swap_remove((state >> 16) as usize % held.len());
                        assert!(dev.has_tag(b.ptr(), b.capacity(), tag), "another owner wrote into this block");
                        owners.lock().unwrap().release(&b);
                        drop(b);
                    }
                }
                for b in held {
                    owners.lock().unwrap().release(&b);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let s = check_consistent(&pool, &dev, &[]);
    assert_eq!(s.in_use_bytes, 0);
    assert!(s.hits > 0, "{s:?}");
    check_all_freed(pool, &dev);
}

#[derive(Clone, Debug)]
enum Op {
    Alloc(usize),
    Free(usize),
    ClearCache,
    SetFailing(bool),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (0usize..5000).prop_map(Op::Alloc),
        2 => (MIB - 600..5 * MIB).prop_map(Op::Alloc),
        5 => any::<usize>().prop_map(Op::Free),
        1 => Just(Op::ClearCache),
        1 => any::<bool>().prop_map(Op::SetFailing),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_alloc_free_sequences_keep_the_invariants(
        ops in prop::collection::vec(op(), 1..80),
        cache_limit in prop_oneof![Just(0usize), Just(4096), Just(3 * MIB), Just(usize::MAX)],
        capacity in prop_oneof![Just(0usize), Just(12 * MIB)],
    ) {
        let (pool, dev) = new_pool(capacity, cache_limit);
        let mut held: Vec<(PoolBuffer<FakeAlloc>, u8)> = Vec::new();
        let mut owners = Owners::default();
        let (mut requests, mut tag) = (0u64, 0u8);
        for op in ops {
            match op {
                Op::Alloc(request) => {
                    requests += 1;
                    let before = pool.statistics();
                    match pool.alloc(request) {
                        Ok(b) => {
                            // Best fit may hand out a larger cached block, but less than twice the rounded size.
                            let rounded = size_class::round(request).unwrap();
                            prop_assert!(b.capacity() >= rounded && b.capacity() < 2 * rounded, "{} for {}", b.capacity(), request);
                            owners.claim(&b);
                            tag = tag.wrapping_add(1);
                            dev.write_tag(b.ptr(), b.capacity(), tag);
                            held.push((b, tag));
                        }
                        Err(Error::OutOfMemory { requested, in_use, cached }) => {
                            let after = pool.statistics();
                            prop_assert_eq!(requested, request);
                            prop_assert_eq!((in_use, cached), (after.in_use_bytes, after.cached_bytes));
                            prop_assert_eq!(after.in_use_bytes, before.in_use_bytes);
                            prop_assert_eq!(after.cached_bytes, 0);
                            prop_assert_eq!(after.ooms, before.ooms + 1);
                            prop_assert_eq!(after.retries, before.retries + 1);
                        }
                        Err(e) => prop_assert!(false, "unexpected error {e:?}"),
                    }
                }
                Op::Free(i) if !held.is_empty() => {
                    let (b, t) = held.swap_remove(i % held.len());
                    prop_assert!(dev.has_tag(b.ptr(), b.capacity(), t), "block was written by another owner");
                    owners.release(&b);
                }
                Op::Free(_) => {}
                Op::ClearCache => {
                    pool.clear_cache();
                    prop_assert_eq!(pool.statistics().cached_bytes, 0);
                }
                Op::SetFailing(on) => dev.fail_flag.store(on, Ordering::SeqCst),
            }
            let live: Vec<_> = held.iter().map(|h| &h.0).collect();
            let s = check_consistent(&pool, &dev, &live);
            prop_assert_eq!(s.hits + s.misses, requests);
            if capacity != 0 {
                prop_assert!(s.device_bytes <= capacity);
            }
        }
        drop(held);
        check_all_freed(pool, &dev);
    }
}
