//! Sorting without a copy of std's sort per call site.
//!
//! `slice::sort_by` is generic over the element and the comparison: every
//! call site with its own closure gets its own copy of the whole sort
//! (driftsort, about 2.7 KB each; 75 KB of the binary for 28 sites). These
//! sort a list of indices instead, through one non-generic function (one
//! copy of std's stable sort, over `usize`), then move the elements into
//! that order. Stable, O(n log n), one `Vec<usize>` of scratch.
//!
//! Imports nothing of corral.

use std::cmp::Ordering;

/// `v.sort()`, stable.
pub fn sort<T: Ord>(v: &mut [T]) {
    sort_by(v, T::cmp);
}

/// `v.sort_by_key(key)`, stable.
pub fn sort_by_key<T, K: Ord>(v: &mut [T], mut key: impl FnMut(&T) -> K) {
    sort_by(v, |a, b| key(a).cmp(&key(b)));
}

/// `v.sort_by_cached_key(key)`, stable: `key` once per element, not once
/// per comparison (for a key that costs more than a comparison).
pub fn sort_by_cached_key<T, K: Ord>(v: &mut [T], key: impl FnMut(&T) -> K) {
    if v.len() < 2 {
        return;
    }
    let keys: Vec<K> = v.iter().map(key).collect();
    if keys.windows(2).all(|w| matches!(w, [a, b] if a <= b)) {
        return;
    }
    let mut order: Vec<usize> = (0..v.len()).collect();
    sort_indices(&mut order, &mut |a, b| keys.get(a).cmp(&keys.get(b)));
    permute(v, &mut order);
}

/// `v.sort_by(cmp)`, stable.
pub fn sort_by<T>(v: &mut [T], mut cmp: impl FnMut(&T, &T) -> Ordering) {
    if v.len() < 2 {
        return;
    }
    let mut order: Vec<usize> = (0..v.len()).collect();
    {
        let v = &*v;
        sort_indices(&mut order, &mut |a, b| match (v.get(a), v.get(b)) {
            (Some(a), Some(b)) => cmp(a, b),
            _ => Ordering::Equal,
        });
    }
    permute(v, &mut order);
}

/// The one copy of std's sort: indices, by a comparison of what they index.
#[inline(never)]
fn sort_indices(order: &mut [usize], cmp: &mut dyn FnMut(usize, usize) -> Ordering) {
    order.sort_by(|&a, &b| cmp(a, b));
}

/// Rearrange `v` so that its element `i` is the one that was at
/// `order[i]`, following each cycle of the permutation with swaps.
/// `order` is used up (each visited entry becomes `usize::MAX`).
fn permute<T>(v: &mut [T], order: &mut [usize]) {
    for start in 0..order.len() {
        let mut at = start;
        while let Some(slot) = order.get_mut(at) {
            let from = std::mem::replace(slot, usize::MAX);
            if from == usize::MAX || from == start {
                break;
            }
            v.swap(at, from);
            at = from;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorts_as_std_does_stable_and_by_key() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for len in [0usize, 1, 2, 3, 7, 64, 1000] {
            let items: Vec<(u8, usize)> = (0..len)
                .map(|i| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    ((x % 7) as u8, i)
                })
                .collect();
            let mut ours = items.clone();
            let mut std = items.clone();
            // Equal keys keep their order: the second field shows it.
            sort_by_key(&mut ours, |&(k, _)| k);
            std.sort_by_key(|&(k, _)| k);
            assert_eq!(ours, std);
            let mut cached = items.clone();
            let mut calls = 0;
            sort_by_cached_key(&mut cached, |&(k, _)| {
                calls += 1;
                k
            });
            assert_eq!(cached, std);
            assert_eq!(
                calls,
                len.min(if len < 2 { 0 } else { len }),
                "one key per element"
            );
            // Already in order: left as it is.
            sort_by_cached_key(&mut cached, |&(k, _)| k);
            assert_eq!(cached, std);
            let mut ours = items.clone();
            let mut std = items;
            sort_by(&mut ours, |a, b| b.cmp(a));
            std.sort_by(|a, b| b.cmp(a));
            assert_eq!(ours, std);
        }
        let mut names = vec!["web", "db", "cache", "db"];
        sort(&mut names);
        assert_eq!(names, ["cache", "db", "db", "web"]);
    }
}
