//! The visited set's hash table: 64-bit fingerprint -> 64-bit bound
//! counters, 16 bytes an entry, four entries to a 64-byte bucket (one cache
//! line), open addressing with linear probing over buckets.  A lookup
//! usually reads one cache line; [`Table::warm`] reads the home lines of a
//! run of keys first, as independent loads the CPU overlaps, so that a
//! shard's thread waits for memory once per run instead of once per key.
//!
//! Nothing is ever removed.  Tag 0 marks an empty entry: a fingerprint of 0
//! is stored as 1 (see [`tag`]).

use std::hint::black_box;

/// Entries per bucket.
const WAYS: usize = 4;

/// One cache line of entries: (tag, counters); tag 0 = empty.
#[derive(Clone, Copy, Default)]
#[repr(C, align(64))]
struct Bucket([(u64, u64); WAYS]);

/// The stored form of a fingerprint (never 0, the empty tag).
fn tag(fp: u64) -> u64 {
    fp.max(1)
}

pub(super) struct Table {
    buckets: Vec<Bucket>,
    /// Entries in use.
    len: usize,
}

impl Default for Table {
    fn default() -> Self {
        Table::with_buckets(1 << 10)
    }
}

impl Table {
    fn with_buckets(count: usize) -> Self {
        debug_assert!(count.is_power_of_two());
        Table {
            buckets: vec![Bucket::default(); count],
            len: 0,
        }
    }

    /// The bucket a tag starts its probe at: its upper bits (the lower ones
    /// chose the shard, see `visited::shard_of`).
    fn home(&self, tag: u64) -> usize {
        (tag >> 32) as usize & (self.buckets.len() - 1)
    }

    /// Read the home buckets of `fps` (independent loads: the CPU has them
    /// all in flight at once), so that the lookups that follow hit the cache.
    pub(super) fn warm(&self, fps: impl Iterator<Item = u64>) {
        let mut acc = 0u64;
        for fp in fps {
            acc ^= self.buckets[self.home(tag(fp))].0[0].0;
        }
        black_box(acc);
    }

    /// The counters kept for `fp`, to read or replace; or, when `fp` is
    /// absent, `fp` inserted with `used` and None.
    pub(super) fn get_or_insert(&mut self, fp: u64, used: u64) -> Option<&mut u64> {
        if (self.len + 1) * 4 > self.buckets.len() * WAYS * 3 {
            self.grow();
        }
        let t = tag(fp);
        let mask = self.buckets.len() - 1;
        let mut b = self.home(t);
        loop {
            for w in 0..WAYS {
                let e = self.buckets[b].0[w];
                if e.0 == t {
                    return Some(&mut self.buckets[b].0[w].1);
                }
                if e.0 == 0 {
                    self.buckets[b].0[w] = (t, used);
                    self.len += 1;
                    return None;
                }
            }
            b = (b + 1) & mask;
        }
    }

    /// Twice the buckets, every entry placed again.
    fn grow(&mut self) {
        let old = std::mem::replace(self, Table::with_buckets(self.buckets.len() * 2));
        let mask = self.buckets.len() - 1;
        for &(t, used) in old.buckets.iter().flat_map(|b| &b.0).filter(|e| e.0 != 0) {
            let mut b = self.home(t);
            'probe: loop {
                for slot in &mut self.buckets[b].0 {
                    if slot.0 == 0 {
                        *slot = (t, used);
                        break 'probe;
                    }
                }
                b = (b + 1) & mask;
            }
        }
        self.len = old.len;
    }

    /// Bytes allocated.
    pub(super) fn memory(&self) -> usize {
        self.buckets.capacity() * std::mem::size_of::<Bucket>()
    }
}

#[cfg(test)]
mod tests {
    use super::Table;

    #[test]
    fn keeps_every_fingerprint_through_growth() {
        let mut t = Table::default();
        // 64 fingerprints with one home bucket (their upper half is 0), many
        // more than the first size holds, then 0 and 1 (the same tag).
        let fps: Vec<u64> = (0..20_000u64)
            .map(|i| {
                if i < 64 {
                    i + 2
                } else {
                    i.wrapping_mul(0x9e37_79b9_7f4a_7c15)
                }
            })
            .chain([0, 1])
            .collect();
        for (i, &fp) in fps.iter().enumerate() {
            let fresh = t.get_or_insert(fp, i as u64).is_none();
            assert_eq!(fresh, fp != 1, "fingerprint {fp:#x}");
        }
        for (i, &fp) in fps.iter().enumerate().filter(|&(_, &fp)| fp > 1) {
            assert_eq!(t.get_or_insert(fp, 0).copied(), Some(i as u64));
        }
        assert_eq!(t.get_or_insert(1, 0).copied(), Some(fps.len() as u64 - 2));
        assert!(t.memory() >= fps.len() * 16);
    }
}
