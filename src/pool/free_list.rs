//! The cache of free blocks: best-fit lookup by size and least-recently-used order, no locking.

use std::collections::BTreeMap;

use super::size_class;

/// Free blocks indexed twice: by (size, newest first) for best fit, and by age for eviction.
///
/// Every block gets a sequence number when it is inserted; a larger number is more recently used. The size index
/// stores the number inverted so that, among blocks of one size, the first found is the newest one: it is the
/// likeliest to still be in the device's caches, and the old ones stay at the LRU end where eviction takes them.
pub(crate) struct FreeList<P> {
    by_size: BTreeMap<(usize, u64), P>,
    by_age: BTreeMap<u64, usize>,
    next_seq: u64,
    bytes: usize,
}

impl<P: Copy> FreeList<P> {
    /// An empty list.
    pub(crate) fn new() -> Self {
        FreeList { by_size: BTreeMap::new(), by_age: BTreeMap::new(), next_seq: 0, bytes: 0 }
    }

    /// Bytes in the cached blocks.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Adds a block as the most recently used one.
    pub(crate) fn insert(&mut self, size: usize, ptr: P) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.by_size.insert((size, !seq), ptr);
        self.by_age.insert(seq, size);
        self.bytes += size;
    }

    /// Removes and returns the smallest block of at least `rounded` and less than twice `rounded` bytes (the newest
    /// of that size), as `(size, ptr)`.
    pub(crate) fn take_best_fit(&mut self, rounded: usize) -> Option<(usize, P)> {
        let (&key, &ptr) = self.by_size.range((rounded, 0)..).next()?;
        if key.0 >= size_class::max_fit_exclusive(rounded) {
            return None;
        }
        self.by_size.remove(&key);
        self.by_age.remove(&!key.1);
        self.bytes -= key.0;
        Some((key.0, ptr))
    }

    /// Removes and returns the least recently used block.
    pub(crate) fn pop_lru(&mut self) -> Option<(usize, P)> {
        let (seq, size) = self.by_age.pop_first()?;
        let ptr = self.by_size.remove(&(size, !seq))?;
        self.bytes -= size;
        Some((size, ptr))
    }

    /// Removes every block, least recently used first.
    pub(crate) fn drain(&mut self) -> Vec<(usize, P)> {
        let mut out = Vec::with_capacity(self.by_age.len());
        while let Some(block) = self.pop_lru() {
            out.push(block);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn best_fit_prefers_smallest_then_newest_and_respects_twice_rule() {
        let mut f = FreeList::new();
        f.insert(2048, 1u32);
        f.insert(1536, 2);
        f.insert(1536, 3);
        f.insert(4096, 4);
        assert_eq!(f.bytes(), 2048 + 1536 * 2 + 4096);
        assert_eq!(f.take_best_fit(1024), Some((1536, 3)));
        assert_eq!(f.take_best_fit(1024), Some((1536, 2)));
        // 2048 is twice 1024: not a fit.
        assert_eq!(f.take_best_fit(1024), None);
        assert_eq!(f.pop_lru(), Some((2048, 1)));
        assert_eq!(f.drain(), vec![(4096, 4)]);
        assert_eq!(f.bytes(), 0);
    }
}
