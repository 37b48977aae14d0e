//! Whether the cgroup tree must be walked this pass: a walk of 10,000 cgroups is most of an idle
//! pass, and the kernel counts every cgroup mkdir, rmdir and rename for us.
use crate::{cgroup::Tree, snapshot::AgentStats};

/// Walks only when the kernel's count of cgroup
/// mkdir/rmdir/rename moved (or is unknown). The tracepoint fires a moment before a new
/// directory is visible to readdir, so a change is walked twice: once when seen, and once a
/// pass later when the count has stood still; only then is the walk trusted to be complete.
#[derive(Default)]
pub struct WalkGate {
    /// The count as of the previous pass.
    seen: Option<u64>,
    /// The count was already steady when the last walk was made.
    complete: bool,
    /// Whether the walk being made now is of a steady count.
    steady_now: bool,
    /// Passes since the last walk: a walk is made at least every [`WALK_AT_LEAST_EVERY`].
    since_walk: u64,
}

const WALK_AT_LEAST_EVERY: u64 = 60;

impl WalkGate {
    /// `changes`: the count read this pass, before any walk (`None`: not watched).
    fn unchanged(&mut self, changes: Option<u64>) -> bool {
        let steady = changes.is_some() && changes == self.seen;
        self.seen = changes;
        if steady && self.complete && self.since_walk + 1 < WALK_AT_LEAST_EVERY {
            self.since_walk += 1;
            return true;
        }
        self.complete = false;
        self.steady_now = steady;
        false
    }

    fn walked(&mut self) {
        self.complete = self.steady_now;
        self.since_walk = 0;
    }

    /// This pass's tree: the last one again when the kernel saw no cgroup made, removed or renamed.
    pub fn tree(
        &mut self,
        root: &std::path::Path,
        last: &Tree,
        changes: Option<u64>,
        stats: &mut AgentStats,
    ) -> Result<Tree, CollectError> {
        let tree = if self.unchanged(changes) {
            stats.walks_saved += 1;
            // A copy: the lifecycle events compare this pass's tree with the last.
            last.clone()
        } else {
            let tree = Tree::walk(root).map_err(|source| CollectError::Walk {
                path: root.display().to_string(),
                source,
            })?;
            self.walked();
            stats.walk_skipped += tree.skipped;
            tree
        };
        stats.cgroups = tree.len() as u64;
        Ok(tree)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    /// The cgroup v2 root could not be walked at all.
    #[error("failed to walk the cgroup hierarchy at `{path}`: {source}")]
    Walk {
        path: String,
        source: std::io::Error,
    },
}

#[cfg(test)]
mod tests {
    use super::WalkGate;

    /// Runs passes with the given counts; true where the pass walked.
    fn walks(counts: &[Option<u64>]) -> Vec<bool> {
        let mut gate = WalkGate::default();
        counts
            .iter()
            .map(|c| {
                let walk = !gate.unchanged(*c);
                if walk {
                    gate.walked();
                }
                walk
            })
            .collect()
    }

    #[test]
    fn a_change_is_walked_when_seen_and_once_more_when_steady() {
        let c = |n| Some(n);
        assert_eq!(
            walks(&[
                c(5),
                c(5),
                c(5),
                c(5),
                c(6),
                c(6),
                c(6),
                c(8),
                c(9),
                c(9),
                c(9)
            ]),
            [
                true, true, false, false, true, true, false, true, true, true, false
            ]
        );
    }

    #[test]
    fn without_the_count_every_pass_walks() {
        assert!(walks(&[None, None, None, None]).iter().all(|w| *w));
    }

    #[test]
    fn a_steady_tree_is_still_walked_now_and_then() {
        let w = walks(&vec![Some(1); 200]);
        let walked: Vec<usize> = (0..w.len()).filter(|i| w[*i]).collect();
        assert!(walked.len() >= 200 / super::WALK_AT_LEAST_EVERY as usize);
        assert!(
            walked
                .windows(2)
                .all(|p| p[1] - p[0] <= super::WALK_AT_LEAST_EVERY as usize)
        );
    }
}
