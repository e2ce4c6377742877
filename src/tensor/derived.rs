//! Forms computed from a tensor's data, such as a backend's packed layout of a weight: kept with the data, so that
//! each is computed once and freed with it.

use std::any::Any;
use std::sync::{Arc, Mutex, MutexGuard};

type Entry = (Box<dyn Any + Send + Sync>, Arc<dyn Any + Send + Sync>);

/// The derived forms of one tensor's data, each under a key of its maker's choosing (compared by type and value).
#[derive(Default)]
pub(crate) struct Derived(Mutex<Vec<Entry>>);

impl Derived {
    /// The value kept under `key`, or `make()`'s, kept from now on.
    pub(crate) fn get_or_make<K, T>(&self, key: K, make: impl FnOnce() -> T) -> Arc<T>
    where
        K: PartialEq + Send + Sync + 'static,
        T: Send + Sync + 'static,
    {
        let find = |entries: &[Entry]| {
            entries
                .iter()
                .filter(|(k, _)| k.downcast_ref::<K>() == Some(&key))
                .find_map(|(_, v)| v.clone().downcast::<T>().ok())
        };
        if let Some(v) = find(&self.lock()) {
            return v;
        }
        // Made without the lock held: `make` may run parallel work whose tasks read this tensor's forms too.
        let made = Arc::new(make());
        let mut entries = self.lock();
        if let Some(v) = find(&entries) {
            // Another thread made it meanwhile: keep one.
            return v;
        }
        entries.push((Box::new(key), made.clone()));
        made
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Entry>> {
        // A panic while the list was held cannot leave it half-changed (a push is the only change).
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_key_is_made_once_and_kinds_do_not_mix() {
        let d = Derived::default();
        let mut made = 0;
        let a = d.get_or_make(1u32, || {
            made += 1;
            vec![1.0f32]
        });
        let b = d.get_or_make(1u32, || {
            made += 1;
            vec![2.0f32]
        });
        assert_eq!((made, a[0], b[0]), (1, 1.0, 1.0));
        // Another key, another key type with the same value, another value type: each its own entry.
        assert_eq!(d.get_or_make(2u32, || vec![3.0f32])[0], 3.0);
        assert_eq!(d.get_or_make(1u64, || vec![4.0f32])[0], 4.0);
        assert_eq!(*d.get_or_make(1u32, || 5u8), 5);
        assert_eq!(d.get_or_make(1u32, || vec![6.0f32])[0], 1.0);
    }
}
