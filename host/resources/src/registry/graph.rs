//! The dependency graph between registered resources, by sequence number:
//! "A depends on B" is an edge A → B.
//!
//! Only resources with edges have a place in it, so that the million
//! resources without any cost nothing beyond the two empty maps. Each edge
//! is held twice (in its resource's dependencies and in its dependency's
//! dependents) so that both queries, and removing a released resource's
//! edges, cost the edges involved rather than a walk of the graph.
//!
//! The cycles are searched once per change of the edges, not per call:
//! every list of resources labels their members.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, OnceLock};

/// The edges, both ways.
#[derive(Debug, Default)]
pub(super) struct Graph {
    /// What each resource depends on, in the order the edges were added.
    deps: BTreeMap<u64, Vec<u64>>,
    /// What depends on each resource.
    dependents: BTreeMap<u64, Vec<u64>>,
    edges: usize,
    /// [`Graph::cycles`] as of the current edges; emptied by every change.
    cycles: OnceLock<Arc<[Vec<u64>]>>,
}

/// Which way a walk follows the edges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Way {
    /// From a resource to what it depends on.
    Dependencies,
    /// From a resource to what depends on it.
    Dependents,
}

impl Graph {
    /// Edges held.
    pub(super) fn edges(&self) -> usize {
        self.edges
    }

    /// What `seq` depends on.
    pub(super) fn dependencies(&self, seq: u64) -> &[u64] {
        self.deps.get(&seq).map_or(&[], Vec::as_slice)
    }

    /// What depends on `seq`.
    pub(super) fn dependents(&self, seq: u64) -> &[u64] {
        self.dependents.get(&seq).map_or(&[], Vec::as_slice)
    }

    fn next(&self, seq: u64, way: Way) -> &[u64] {
        match way {
            Way::Dependencies => self.dependencies(seq),
            Way::Dependents => self.dependents(seq),
        }
    }

    /// Adds `from` → `on`; false if it was there.
    pub(super) fn add(&mut self, from: u64, on: u64) -> bool {
        let out = self.deps.entry(from).or_default();
        if out.contains(&on) {
            return false;
        }
        out.push(on);
        self.dependents.entry(on).or_default().push(from);
        self.edges += 1;
        self.cycles.take();
        true
    }

    /// Removes `from` → `on`; false if it was not there.
    pub(super) fn remove(&mut self, from: u64, on: u64) -> bool {
        if !unlink(&mut self.deps, from, on) {
            return false;
        }
        unlink(&mut self.dependents, on, from);
        self.edges -= 1;
        self.cycles.take();
        true
    }

    /// Removes every edge from or to `seq` (it is released).
    pub(super) fn remove_node(&mut self, seq: u64) {
        let edges = self.edges;
        for on in self.deps.remove(&seq).unwrap_or_default() {
            // A self-loop is in both lists: counted once, here.
            self.edges -= 1;
            if on != seq {
                unlink(&mut self.dependents, on, seq);
            }
        }
        for from in self.dependents.remove(&seq).unwrap_or_default() {
            if from != seq {
                unlink(&mut self.deps, from, seq);
                self.edges -= 1;
            }
        }
        if self.edges != edges {
            self.cycles.take();
        }
    }

    /// Every edge, by resource then in the order added.
    pub(super) fn iter(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.deps
            .iter()
            .flat_map(|(from, ons)| ons.iter().map(move |on| (*from, *on)))
    }

    /// What `seq` reaches following `way`, nearest first, without `seq`
    /// itself unless a cycle leads back to it.
    pub(super) fn reach(&self, seq: u64, way: Way) -> Vec<u64> {
        let mut seen = HashMap::new();
        let mut queue = VecDeque::from([seq]);
        let mut out = Vec::new();
        while let Some(s) = queue.pop_front() {
            for &n in self.next(s, way) {
                if seen.insert(n, ()).is_none() {
                    out.push(n);
                    queue.push_back(n);
                }
            }
        }
        out
    }

    /// The cycles: each strongly connected component of more than one
    /// resource, and each resource that depends on itself; members in
    /// sequence order, cycles by their first member. Searched on the first
    /// call after a change of the edges; shared, so a caller may drop the
    /// registry's lock before reading them.
    pub(super) fn cycles(&self) -> Arc<[Vec<u64>]> {
        Arc::clone(self.cycles.get_or_init(|| self.search_cycles().into()))
    }

    fn search_cycles(&self) -> Vec<Vec<u64>> {
        let roots: Vec<u64> = self.deps.keys().copied().collect();
        let mut out: Vec<Vec<u64>> = self
            .components(&roots, Way::Dependencies)
            .into_iter()
            .filter(|c| c.len() > 1 || self.dependencies(c[0]).contains(&c[0]))
            .map(|mut c| {
                c.sort_unstable();
                c
            })
            .collect();
        out.sort_unstable();
        out
    }

    /// The strongly connected components reachable from `roots` following
    /// `way`, by Tarjan's algorithm: each component comes after every
    /// component it reaches. Following [`Way::Dependents`] from a resource,
    /// that is dependents first: the order a cascade releases them in.
    ///
    /// Iterative rather than recursive: a chain of a million dependencies
    /// must not overflow the stack.
    pub(super) fn components(&self, roots: &[u64], way: Way) -> Vec<Vec<u64>> {
        struct Mark {
            index: usize,
            low: usize,
            on_stack: bool,
        }
        let mut marks: HashMap<u64, Mark> = HashMap::new();
        let mut stack: Vec<u64> = Vec::new();
        let mut out = Vec::new();
        let visit = |marks: &mut HashMap<u64, Mark>, stack: &mut Vec<u64>, s: u64| {
            let index = marks.len();
            marks.insert(
                s,
                Mark {
                    index,
                    low: index,
                    on_stack: true,
                },
            );
            stack.push(s);
        };
        for &root in roots {
            if marks.contains_key(&root) {
                continue;
            }
            visit(&mut marks, &mut stack, root);
            // Each frame: a resource and how many of its edges are done.
            let mut calls: Vec<(u64, usize)> = vec![(root, 0)];
            while let Some(&mut (v, ref mut done)) = calls.last_mut() {
                let next = self.next(v, way);
                if let Some(&w) = next.get(*done) {
                    *done += 1;
                    match marks.get(&w) {
                        None => {
                            visit(&mut marks, &mut stack, w);
                            calls.push((w, 0));
                        }
                        Some(m) if m.on_stack => {
                            let wi = m.index;
                            if let Some(mv) = marks.get_mut(&v) {
                                mv.low = mv.low.min(wi);
                            }
                        }
                        Some(_) => {}
                    }
                    continue;
                }
                calls.pop();
                let (v_index, v_low) = marks.get(&v).map_or((0, 0), |m| (m.index, m.low));
                if let Some(&(u, _)) = calls.last()
                    && let Some(mu) = marks.get_mut(&u)
                {
                    mu.low = mu.low.min(v_low);
                }
                if v_low == v_index {
                    let mut component = Vec::new();
                    while let Some(w) = stack.pop() {
                        if let Some(m) = marks.get_mut(&w) {
                            m.on_stack = false;
                        }
                        component.push(w);
                        if w == v {
                            break;
                        }
                    }
                    out.push(component);
                }
            }
        }
        out
    }
}

/// Removes `to` from `map[from]`, dropping the list once empty; false if
/// it was not there.
fn unlink(map: &mut BTreeMap<u64, Vec<u64>>, from: u64, to: u64) -> bool {
    let Some(list) = map.get_mut(&from) else {
        return false;
    };
    let Some(i) = list.iter().position(|x| *x == to) else {
        return false;
    };
    list.remove(i);
    if list.is_empty() {
        map.remove(&from);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edges_are_held_both_ways_and_removed_with_a_node() {
        let mut g = Graph::default();
        assert!(g.add(1, 2) && g.add(1, 3) && g.add(3, 3) && !g.add(1, 2));
        assert_eq!(g.edges(), 3);
        assert_eq!(g.dependencies(1), [2, 3]);
        assert_eq!(g.dependents(3), [1, 3]);
        g.remove_node(3);
        assert_eq!(g.edges(), 1);
        assert_eq!(g.dependencies(1), [2]);
        assert!(g.dependents(3).is_empty() && g.dependencies(3).is_empty());
        assert!(g.remove(1, 2) && !g.remove(1, 2));
        assert_eq!(g.edges(), 0);
        assert!(g.deps.is_empty() && g.dependents.is_empty());
    }

    #[test]
    fn the_cycles_kept_change_with_the_edges_only() {
        let mut g = Graph::default();
        g.add(1, 2);
        g.add(2, 1);
        let first = g.cycles();
        assert_eq!(*first, [vec![1, 2]]);
        g.remove_node(9);
        assert!(Arc::ptr_eq(&first, &g.cycles()), "no edge changed");
        g.add(3, 3);
        assert_eq!(*g.cycles(), [vec![1, 2], vec![3]]);
        g.remove(2, 1);
        assert_eq!(*g.cycles(), [vec![3]]);
        g.remove_node(3);
        assert!(g.cycles().is_empty());
    }

    #[test]
    fn components_put_dependents_first_and_find_cycles() {
        let mut g = Graph::default();
        // 3 → 2 → 1, and 4 ⇄ 5 → 1, and 6 → 6.
        for (a, b) in [(3, 2), (2, 1), (4, 5), (5, 4), (5, 1), (6, 6)] {
            g.add(a, b);
        }
        let order = g.components(&[1], Way::Dependents);
        let pos = |s: u64| order.iter().position(|c| c.contains(&s)).unwrap();
        assert!(pos(3) < pos(2) && pos(2) < pos(1) && pos(5) < pos(1));
        assert_eq!(pos(4), pos(5), "a cycle is one group");
        assert_eq!(*g.cycles(), [vec![4, 5], vec![6]]);
        assert_eq!(g.reach(1, Way::Dependents), [2, 5, 3, 4]);
        // A long chain does not overflow the stack.
        let mut chain = Graph::default();
        for s in 1..200_000 {
            chain.add(s + 1, s);
        }
        assert_eq!(chain.components(&[1], Way::Dependents).len(), 200_000);
        assert!(chain.cycles().is_empty());
    }
}
