//! An addressable binary min-heap over dense item numbers: set a key
//! (insert or change), remove, pop the least; each O(log n), no stale
//! entries left behind. Keys carry their own tie-breakers.

/// Not in the heap.
const ABSENT: u32 = u32::MAX;

/// A min-heap of items `0..n`, each with a key.
#[derive(Clone, Debug)]
pub struct Heap<K> {
    heap: Vec<(K, u32)>,
    pos: Vec<u32>,
}

impl<K: Ord + Copy> Heap<K> {
    /// An empty heap for items `0..n`.
    pub fn new(n: usize) -> Heap<K> {
        Heap {
            heap: Vec::new(),
            pos: vec![ABSENT; n],
        }
    }

    /// The number of items in the heap.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// The item's key, if it is in the heap.
    #[cfg(test)]
    pub fn key(&self, item: u32) -> Option<K> {
        match self.pos[item as usize] {
            ABSENT => None,
            p => Some(self.heap[p as usize].0),
        }
    }

    /// Inserts `item` with `key`, or changes its key.
    pub fn set(&mut self, item: u32, key: K) {
        match self.pos[item as usize] {
            ABSENT => {
                self.heap.push((key, item));
                let p = self.heap.len() - 1;
                self.pos[item as usize] = p as u32;
                self.up(p);
            }
            p => {
                let p = p as usize;
                let old = self.heap[p].0;
                self.heap[p].0 = key;
                if key < old {
                    self.up(p);
                } else {
                    self.down(p);
                }
            }
        }
    }

    /// Removes `item` if it is in the heap.
    pub fn remove(&mut self, item: u32) {
        let p = self.pos[item as usize];
        if p == ABSENT {
            return;
        }
        let p = p as usize;
        let last = self.heap.len() - 1;
        self.swap(p, last);
        self.heap.pop();
        self.pos[item as usize] = ABSENT;
        if p < self.heap.len() {
            self.down(p);
            self.up(p);
        }
    }

    /// The least item and its key.
    pub fn peek(&self) -> Option<(K, u32)> {
        self.heap.first().copied()
    }

    /// Removes and returns the least item and its key.
    #[cfg(test)]
    pub fn pop(&mut self) -> Option<(K, u32)> {
        let top = self.peek()?;
        self.remove(top.1);
        Some(top)
    }

    fn swap(&mut self, a: usize, b: usize) {
        self.heap.swap(a, b);
        self.pos[self.heap[a].1 as usize] = a as u32;
        self.pos[self.heap[b].1 as usize] = b as u32;
    }

    fn up(&mut self, mut p: usize) {
        while p > 0 {
            let parent = (p - 1) / 2;
            if self.heap[p].0 >= self.heap[parent].0 {
                break;
            }
            self.swap(p, parent);
            p = parent;
        }
    }

    fn down(&mut self, mut p: usize) {
        let n = self.heap.len();
        loop {
            let (l, r) = (2 * p + 1, 2 * p + 2);
            let mut m = p;
            if l < n && self.heap[l].0 < self.heap[m].0 {
                m = l;
            }
            if r < n && self.heap[r].0 < self.heap[m].0 {
                m = r;
            }
            if m == p {
                break;
            }
            self.swap(p, m);
            p = m;
        }
    }
}

/// An `f64` ordered by `total_cmp`, for priorities.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Prio(pub f64);

impl Eq for Prio {}

impl PartialOrd for Prio {
    fn partial_cmp(&self, other: &Prio) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Prio {
    fn cmp(&self, other: &Prio) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pops_in_key_order_through_random_sets_and_removes() {
        let mut rng = fastrand::Rng::with_seed(3);
        let n = 200;
        let mut h: Heap<(u32, u32)> = Heap::new(n);
        let mut model: Vec<Option<u32>> = vec![None; n];
        for _ in 0..20_000 {
            let i = rng.u32(0..n as u32);
            match rng.u8(0..4) {
                0 => {
                    h.remove(i);
                    model[i as usize] = None;
                }
                1 => {
                    let want = model
                        .iter()
                        .enumerate()
                        .filter_map(|(j, k)| k.map(|k| ((k, j as u32), j as u32)))
                        .min();
                    assert_eq!(h.pop(), want);
                    if let Some((_, j)) = want {
                        model[j as usize] = None;
                    }
                }
                _ => {
                    let k = rng.u32(0..1000);
                    h.set(i, (k, i));
                    model[i as usize] = Some(k);
                }
            }
            assert_eq!(h.len(), model.iter().flatten().count());
            assert_eq!(h.key(i), model[i as usize].map(|k| (k, i)));
        }
    }
}
