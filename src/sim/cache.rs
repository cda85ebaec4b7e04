//! The simulated cache: action entries, each naming an output, and the
//! outputs they name, with Go's rule that an output no action names is
//! unreachable. Evicting an action frees its block, and its output too
//! when no other cached action names it; evicting an output takes every
//! action naming it. Allocated bytes as `du` counts them.

use super::workload::{NONE, Workload};

/// Something a policy evicts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Victim {
    /// An action entry (and its output if no other action names it).
    Action(u32),
    /// An output with every action naming it.
    Output(u32),
}

/// What left the cache in one eviction.
#[derive(Clone, Debug, Default)]
pub struct Removed {
    /// Action entries.
    pub actions: Vec<u32>,
    /// Outputs.
    pub outputs: Vec<u32>,
}

impl Removed {
    fn clear(&mut self) {
        self.actions.clear();
        self.outputs.clear();
    }
}

/// The cache's contents.
#[derive(Clone, Debug)]
pub struct Cache<'w> {
    w: &'w Workload,
    /// Per action: the output it names while cached, else [`NONE`].
    names: Vec<u32>,
    /// Per output: how many cached actions name it.
    refs: Vec<u32>,
    /// Per output: the first cached action naming it; per action: the
    /// next and previous action naming the same output.
    head: Vec<u32>,
    next: Vec<u32>,
    prev: Vec<u32>,
    bytes: u64,
    actions: u64,
}

impl<'w> Cache<'w> {
    /// An empty cache for `w`'s entries.
    pub fn new(w: &'w Workload) -> Cache<'w> {
        Cache {
            w,
            names: vec![NONE; w.actions()],
            refs: vec![0; w.outputs()],
            head: vec![NONE; w.outputs()],
            next: vec![NONE; w.actions()],
            prev: vec![NONE; w.actions()],
            bytes: 0,
            actions: 0,
        }
    }

    /// Allocated bytes held.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Action entries held.
    pub fn len(&self) -> u64 {
        self.actions
    }

    /// True when the cache holds nothing.
    pub fn is_empty(&self) -> bool {
        self.actions == 0
    }

    /// The output `a` names while cached, else [`NONE`].
    pub fn names(&self, a: u32) -> u32 {
        self.names[a as usize]
    }

    /// How many cached actions name output `o`.
    pub fn refs(&self, o: u32) -> u32 {
        self.refs[o as usize]
    }

    /// Bytes evicting `a` alone would free.
    pub fn frees(&self, a: u32) -> u64 {
        match self.names[a as usize] {
            NONE => 0,
            o if self.refs[o as usize] == 1 => self.w.block + self.w.size(o),
            _ => self.w.block,
        }
    }

    /// Stores `a` naming `o` (`a` must not be cached).
    pub fn insert(&mut self, a: u32, o: u32) {
        debug_assert_eq!(self.names[a as usize], NONE);
        self.names[a as usize] = o;
        self.actions += 1;
        self.bytes += self.w.block;
        let oi = o as usize;
        if self.refs[oi] == 0 {
            self.bytes += self.w.size(o);
        }
        self.refs[oi] += 1;
        let h = self.head[oi];
        self.next[a as usize] = h;
        self.prev[a as usize] = NONE;
        if h != NONE {
            self.prev[h as usize] = a;
        }
        self.head[oi] = a;
    }

    /// Evicts `v`; what left is in `removed` (cleared first).
    pub fn evict(&mut self, v: Victim, removed: &mut Removed) {
        removed.clear();
        match v {
            Victim::Action(a) => self.remove_action(a, removed),
            Victim::Output(o) => {
                while self.head[o as usize] != NONE {
                    let a = self.head[o as usize];
                    self.remove_action(a, removed);
                }
            }
        }
    }

    fn remove_action(&mut self, a: u32, removed: &mut Removed) {
        let o = self.names[a as usize];
        if o == NONE {
            return;
        }
        let (ai, oi) = (a as usize, o as usize);
        self.names[ai] = NONE;
        self.actions -= 1;
        self.bytes -= self.w.block;
        let (p, n) = (self.prev[ai], self.next[ai]);
        if p == NONE {
            self.head[oi] = n;
        } else {
            self.next[p as usize] = n;
        }
        if n != NONE {
            self.prev[n as usize] = p;
        }
        removed.actions.push(a);
        self.refs[oi] -= 1;
        if self.refs[oi] == 0 {
            self.bytes -= self.w.size(o);
            removed.outputs.push(o);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::schema::{Event, TraceId};

    #[test]
    fn outputs_leave_with_the_last_action_naming_them() {
        let id = TraceId;
        // Actions 0 and 1 name output 0 (1000 bytes); action 2 names output 1.
        let ev = [
            Event::put(0, id(1), id(10), 1000, None),
            Event::put(0, id(2), id(10), 1000, None),
            Event::put(0, id(3), id(11), 500, None),
        ];
        let w = Workload::from_events(100, ev.iter());
        let mut c = Cache::new(&w);
        c.insert(0, 0);
        c.insert(1, 0);
        c.insert(2, 1);
        assert_eq!(c.bytes(), 300 + 1500);
        assert_eq!((c.frees(0), c.frees(2)), (100, 600));
        let mut r = Removed::default();
        c.evict(Victim::Action(0), &mut r);
        assert_eq!(
            (r.actions.as_slice(), r.outputs.as_slice()),
            (&[0][..], &[][..])
        );
        assert_eq!(c.bytes(), 200 + 1500);
        c.evict(Victim::Action(1), &mut r);
        assert_eq!(r.outputs, [0]);
        assert_eq!(c.bytes(), 100 + 500);
        c.insert(0, 0);
        c.insert(1, 0);
        c.evict(Victim::Output(0), &mut r);
        r.actions.sort();
        assert_eq!(
            (r.actions.as_slice(), r.outputs.as_slice()),
            (&[0, 1][..], &[0][..])
        );
        assert_eq!((c.bytes(), c.len()), (600, 1));
    }
}
