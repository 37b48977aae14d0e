//! Turns drains of the per-cgroup CPU map into the counters we export.
//!
//! The kernel map counts each cgroup's OWN tasks. cAdvisor's (and the kernel's `cpu.stat`) usage is
//! hierarchical: a pod's usage includes its containers'. So totals are summed up the tree, and:
//! - when a cgroup is removed, its time is folded into its nearest live ancestor, so a parent's
//!   counter never goes down because a child went away (the kernel keeps it in the parent too);
//! - the exported value never decreases: a drain that raced a context switch may momentarily see
//!   less than the previous one (see `drain`), and a counter going back would read as a
//!   reset to Prometheus.
use std::collections::HashMap;

use super::drain::CpuDrain;
use crate::cgroup::Tree;

#[derive(Debug, Default)]
pub struct CpuAccountant {
    /// Own committed ns of each known cgroup, as of the last drain.
    own: HashMap<u64, u64>,
    /// ns of removed descendants, held by their nearest live ancestor.
    retired: HashMap<u64, u64>,
    /// Last exported hierarchical total.
    reported: HashMap<u64, u64>,
    /// Parents as of the previous tree: where a cgroup's time goes when it disappears.
    parents: HashMap<u64, Option<u64>>,
}

/// The result of one update.
#[derive(Debug, Default)]
pub struct CpuTotals {
    /// Hierarchical ns per live cgroup id.
    pub totals: HashMap<u64, u64>,
    /// Map keys of cgroups that no longer exist: the caller deletes them from the kernel map.
    pub forget: Vec<u64>,
}

impl CpuAccountant {
    /// Folds one drain into the accounts. `tree` must have been walked AFTER the drain was read:
    /// then every key in the drain belongs to a cgroup that existed before the walk, so a key the
    /// walk did not find is a removed cgroup and safe to forget.
    pub fn update(&mut self, tree: &Tree, drain: &CpuDrain) -> CpuTotals {
        let mut out = CpuTotals::default();
        for (&id, &ns) in &drain.committed {
            if tree.contains(id) || self.parents.contains_key(&id) {
                // A just-removed cgroup's last value still counts: it is retired below.
                self.own.insert(id, ns);
            }
            if !tree.contains(id) {
                out.forget.push(id);
            }
        }
        out.forget.sort_unstable();

        let dead: Vec<u64> = self
            .parents
            .keys()
            .copied()
            .filter(|id| !tree.contains(*id))
            .collect();
        for id in dead {
            let ns = self.own.remove(&id).unwrap_or(0) + self.retired.remove(&id).unwrap_or(0);
            self.reported.remove(&id);
            if let Some(heir) = self.live_ancestor(id, tree) {
                *self.retired.entry(heir).or_default() += ns;
            }
        }
        // Ids that never made it into a tree (created and removed between two walks) have no
        // place to go; their own map entries are forgotten above.
        self.own.retain(|id, _| tree.contains(*id));
        crate::prune::shrink(&mut self.own);
        crate::prune::shrink(&mut self.retired);
        crate::prune::shrink(&mut self.reported);

        // Walk order puts parents before children: reversed, children are summed first.
        for cg in tree.cgroups.iter().rev() {
            let own = self.own.get(&cg.id).copied().unwrap_or(0)
                + drain.in_flight.get(&cg.id).copied().unwrap_or(0)
                + self.retired.get(&cg.id).copied().unwrap_or(0);
            let subtree = out.totals.get(&cg.id).copied().unwrap_or(0) + own;
            out.totals.insert(cg.id, subtree);
            if let Some(parent) = cg.parent {
                *out.totals.entry(parent).or_default() += subtree;
            }
        }
        for (id, total) in out.totals.iter_mut() {
            let last = self.reported.entry(*id).or_default();
            *total = (*total).max(*last);
            *last = *total;
        }

        self.parents = tree.cgroups.iter().map(|c| (c.id, c.parent)).collect();
        out
    }

    fn live_ancestor(&self, id: u64, tree: &Tree) -> Option<u64> {
        let mut cur = self.parents.get(&id).copied().flatten();
        for _ in 0..64 {
            let p = cur?;
            if tree.contains(p) {
                return Some(p);
            }
            cur = self.parents.get(&p).copied().flatten();
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroup::Cgroup;

    fn tree(nodes: &[(u64, &str, Option<u64>)]) -> Tree {
        Tree::from_cgroups(
            nodes
                .iter()
                .map(|&(id, path, parent)| Cgroup {
                    id,
                    path: path.into(),
                    parent,
                })
                .collect(),
        )
    }

    fn drain(committed: &[(u64, u64)], in_flight: &[(u64, u64)]) -> CpuDrain {
        CpuDrain {
            committed: committed.iter().copied().collect(),
            in_flight: in_flight.iter().copied().collect(),
            ..CpuDrain::default()
        }
    }

    const ROOT: (u64, &str, Option<u64>) = (1, "/", None);
    const POD: (u64, &str, Option<u64>) = (2, "/pod", Some(1));
    const C1: (u64, &str, Option<u64>) = (3, "/pod/c1", Some(2));
    const C2: (u64, &str, Option<u64>) = (4, "/pod/c2", Some(2));

    /// Property: whatever cgroups come and go (parents with their children), and however the
    /// drains' in-flight figures jump around, no live cgroup's exported total ever goes down.
    #[test]
    fn totals_never_decrease_under_random_churn() {
        for seed in 0..200 {
            let mut rng = crate::testutil::Rng::new(seed);
            let mut acc = CpuAccountant::default();
            // id -> parent; 1 is the root.
            let mut live: Vec<(u64, Option<u64>)> = vec![(1, None)];
            let mut own: HashMap<u64, u64> = HashMap::new();
            let mut last: HashMap<u64, u64> = HashMap::new();
            let mut next_id = 2;
            for pass in 0..40 {
                // Churn: new children under live cgroups; removals take whole subtrees.
                for _ in 0..rng.below(4) {
                    let parent = live[rng.below(live.len() as u64) as usize].0;
                    live.push((next_id, Some(parent)));
                    next_id += 1;
                }
                if live.len() > 2 && rng.chance(3) {
                    let victim = live[1 + rng.below(live.len() as u64 - 1) as usize].0;
                    let mut gone = vec![victim];
                    let mut i = 0;
                    while i < gone.len() {
                        let g = gone[i];
                        gone.extend(live.iter().filter(|c| c.1 == Some(g)).map(|c| c.0));
                        i += 1;
                    }
                    live.retain(|c| !gone.contains(&c.0));
                }
                // Work: committed figures only grow; in-flight ones are anything.
                let mut committed = Vec::new();
                let mut in_flight = Vec::new();
                for &(id, _) in &live {
                    let o = own.entry(id).or_default();
                    *o += rng.below(1000);
                    committed.push((id, *o));
                    if rng.chance(2) {
                        in_flight.push((id, rng.below(500)));
                    }
                }
                let nodes: Vec<Cgroup> = live
                    .iter()
                    .map(|&(id, parent)| Cgroup {
                        id,
                        path: format!("/{id}"),
                        parent,
                    })
                    .collect();
                let out = acc.update(&Tree::from_cgroups(nodes), &drain(&committed, &in_flight));
                for (id, total) in &out.totals {
                    if let Some(before) = last.get(id) {
                        assert!(
                            total >= before,
                            "seed {seed} pass {pass}: cgroup {id} went from {before} to {total}"
                        );
                    }
                }
                last = out.totals;
            }
        }
    }

    #[test]
    fn sums_up_the_tree_with_in_flight_time() {
        let mut acc = CpuAccountant::default();
        let t = tree(&[ROOT, POD, C1, C2]);
        let out = acc.update(&t, &drain(&[(1, 5), (3, 100), (4, 50)], &[(4, 7)]));
        assert_eq!(out.totals[&3], 100);
        assert_eq!(out.totals[&4], 57);
        assert_eq!(out.totals[&2], 157);
        assert_eq!(out.totals[&1], 162);
        assert!(out.forget.is_empty());
    }

    #[test]
    fn removed_child_keeps_parent_monotonic_and_is_forgotten() {
        let mut acc = CpuAccountant::default();
        acc.update(
            &tree(&[ROOT, POD, C1, C2]),
            &drain(&[(3, 100), (4, 50)], &[]),
        );
        // c2 exits: its final value (60) is still in the map at the drain, then the walk misses it.
        let out = acc.update(&tree(&[ROOT, POD, C1]), &drain(&[(3, 110), (4, 60)], &[]));
        assert_eq!(out.forget, vec![4]);
        assert!(!out.totals.contains_key(&4));
        assert_eq!(out.totals[&2], 170);
        // Next round the key is gone from the map; the pod keeps c2's time.
        let out = acc.update(&tree(&[ROOT, POD, C1]), &drain(&[(3, 120)], &[]));
        assert_eq!(out.totals[&2], 180);
        assert!(out.forget.is_empty());
    }

    #[test]
    fn removed_subtree_folds_into_nearest_live_ancestor() {
        let mut acc = CpuAccountant::default();
        acc.update(
            &tree(&[ROOT, POD, C1, C2]),
            &drain(&[(3, 10), (4, 20), (2, 1)], &[]),
        );
        let out = acc.update(&tree(&[ROOT]), &drain(&[], &[]));
        assert_eq!(out.totals[&1], 31);
    }

    #[test]
    fn a_racing_drain_never_makes_a_counter_go_back() {
        let mut acc = CpuAccountant::default();
        let t = tree(&[ROOT, C1]);
        let first = acc.update(&t, &drain(&[(3, 100)], &[(3, 40)]));
        assert_eq!(first.totals[&3], 140);
        // The slice was committed after the map read and the CPU now runs something else.
        let second = acc.update(&t, &drain(&[(3, 100)], &[]));
        assert_eq!(second.totals[&3], 140);
        let third = acc.update(&t, &drain(&[(3, 145)], &[]));
        assert_eq!(third.totals[&3], 145);
    }

    #[test]
    fn unknown_keys_are_forgotten_not_exported() {
        let mut acc = CpuAccountant::default();
        let out = acc.update(&tree(&[ROOT]), &drain(&[(99, 5)], &[(99, 3)]));
        assert_eq!(out.forget, vec![99]);
        assert_eq!(out.totals.len(), 1);
        assert_eq!(out.totals[&1], 0);
    }
}
