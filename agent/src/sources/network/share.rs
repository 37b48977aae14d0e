//! A namespace's device counters, split among the cgroups in it.
//!
//! cAdvisor's network figures are the devices' own counters (link-layer headers, ARP, ICMP
//! answered by the kernel and packets no socket took included), which is what the
//! kubernetes-mixin's and Lens's pod sums expect. nodetel's sockets count each cgroup's own
//! traffic at the IP layer. Both hold when a namespace's owner (the pod sandbox, or a container
//! alone in its namespace) is given the device counters less what the other cgroups' sockets
//! counted there: a lone container then shows exactly its devices' counters, and a pod's sum is
//! its devices' counters, each byte once.
//!
//! A cgroup that leaves (a container restarted in its pod) takes its share with it: its last
//! figures are kept here and still subtracted, so the owner's counters do not jump by the
//! departed container's whole history. The owner's counters never go back (a namespace that
//! changes owner, a device re-created under its name): they hold until the figure passes them.
//!
//! One bounded excess: a device counts a packet when it is queued to the namespace, a socket
//! when it takes it, so packets queued between the two at the moment of reading are in the
//! rest, and the owner keeps them (its counters cannot go back). Measured: 15-20 datagrams of
//! a 1000-datagram burst; never more than the kernel's backlog (`net.core.netdev_max_backlog`,
//! 1000), and not added up from burst to burst: a later rest raises the owner only past it.
use std::collections::{HashMap, HashSet};

use super::netdev::DeviceCounters;

/// rx bytes, rx packets, tx bytes, tx packets.
pub type Counts = [u64; 4];

/// (cgroup id, namespace, device name).
pub type ShareKey = (u64, u64, String);

#[derive(Default)]
pub struct Shares {
    /// Last pass's socket figures of cgroups on devices of a namespace another cgroup owns.
    last: HashMap<ShareKey, Counts>,
    /// Per (namespace, device): the last figures of shares that are gone.
    departed: HashMap<(u64, String), Counts>,
    /// Per (owner cgroup, device): the owner's last figures.
    owner_last: HashMap<(u64, String), Counts>,
}

fn add(a: &mut Counts, b: &Counts) {
    for (x, y) in a.iter_mut().zip(b) {
        *x = x.saturating_add(*y);
    }
}

impl Shares {
    /// Takes this pass's shares (bounded by the traffic map: one per entry at most). A share that
    /// is gone, or whose counters went back (its entry deleted and counted anew), is departed.
    pub fn update(&mut self, current: HashMap<ShareKey, Counts>) {
        for (key, was) in self.last.drain() {
            let gone = match current.get(&key) {
                None => was,
                Some(now) if now.iter().zip(&was).any(|(n, w)| n < w) => was,
                Some(_) => continue,
            };
            let (_, ns, device) = key;
            add(self.departed.entry((ns, device)).or_default(), &gone);
        }
        self.last = current;
    }

    /// The sum of this pass's shares per (namespace, device).
    pub fn others(&self) -> HashMap<(u64, String), Counts> {
        let mut out: HashMap<(u64, String), Counts> = HashMap::new();
        for ((_, ns, device), c) in &self.last {
            add(out.entry((*ns, device.clone())).or_default(), c);
        }
        out
    }

    /// The owner's figures on `device` of namespace `ns`: the device's counters less `others`
    /// and the departed shares, never below what it was given last.
    pub fn owner(
        &mut self,
        cgroup_id: u64,
        ns: u64,
        device: &DeviceCounters,
        others: Option<&Counts>,
    ) -> Counts {
        let mut out = [
            device.rx_bytes,
            device.rx_packets,
            device.tx_bytes,
            device.tx_packets,
        ];
        let departed = self.departed.get(&(ns, device.name.clone()));
        for less in [others, departed].into_iter().flatten() {
            for (x, y) in out.iter_mut().zip(less) {
                *x = x.saturating_sub(*y);
            }
        }
        let key = (cgroup_id, device.name.clone());
        let last = self.owner_last.entry(key).or_default();
        for (x, l) in out.iter_mut().zip(last.iter()) {
            *x = (*x).max(*l);
        }
        *last = out;
        out
    }

    /// Forgets departed shares of namespaces no process is in any more, and the last figures
    /// of cgroups that own nothing now.
    pub fn prune(&mut self, live_namespaces: &HashSet<u64>, owners: &HashSet<u64>) {
        self.departed
            .retain(|(ns, _), _| live_namespaces.contains(ns));
        self.owner_last.retain(|(id, _), _| owners.contains(id));
        crate::prune::shrink(&mut self.departed);
        crate::prune::shrink(&mut self.owner_last);
    }

    #[cfg(test)]
    pub fn len(&self) -> (usize, usize, usize) {
        (self.last.len(), self.departed.len(), self.owner_last.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(rx: u64, tx: u64) -> DeviceCounters {
        DeviceCounters {
            name: "eth0".into(),
            rx_bytes: rx,
            rx_packets: rx / 100,
            tx_bytes: tx,
            tx_packets: tx / 100,
            ..DeviceCounters::default()
        }
    }

    fn share(id: u64, rx: u64, tx: u64) -> (ShareKey, Counts) {
        ((id, 7, "eth0".into()), [rx, rx / 100, tx, tx / 100])
    }

    #[test]
    fn the_owner_gets_the_rest_and_a_departed_share_does_not_move_to_it() {
        let mut s = Shares::default();
        // A lone container: the device's counters.
        assert_eq!(
            s.owner(1, 7, &device(10_000, 5_000), None),
            [10_000, 100, 5_000, 50]
        );
        // A second container's sockets took 4000 of the next 5000 received.
        s.update(HashMap::from([share(2, 4_000, 1_000)]));
        let others = s.others();
        let o = s.owner(
            1,
            7,
            &device(15_000, 6_000),
            others.get(&(7, "eth0".into())),
        );
        assert_eq!(o, [11_000, 110, 5_000, 50]);
        assert_eq!(o[0] + 4_000, 15_000, "the pod's sum is the device's");
        // The second container leaves: its share is not the owner's.
        s.update(HashMap::new());
        let o = s.owner(
            1,
            7,
            &device(15_500, 6_000),
            s.others().get(&(7, "eth0".into())),
        );
        assert_eq!(o[0], 11_500);
        // Counters never go back, whatever the device says (re-created under its name).
        let o = s.owner(1, 7, &device(100, 100), None);
        assert_eq!(o, [11_500, 115, 5_000, 50]);
        // Pruned with its namespace and its owner.
        s.prune(&HashSet::new(), &HashSet::new());
        assert_eq!(s.len(), (0, 0, 0));
    }

    #[test]
    fn a_share_counted_anew_departs_what_it_had() {
        let mut s = Shares::default();
        s.update(HashMap::from([share(2, 4_000, 0)]));
        s.update(HashMap::from([share(2, 300, 0)]));
        let others = s.others();
        let o = s.owner(1, 7, &device(10_000, 0), others.get(&(7, "eth0".into())));
        assert_eq!(o[0], 10_000 - 4_000 - 300);
    }
}
