//! `/proc/<pid>/net/dev`: the device counters of the process's network namespace.

/// One device's counters, as the kernel keeps them (link-layer bytes).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeviceCounters {
    pub name: String,
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub rx_errors: u64,
    pub rx_dropped: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub tx_errors: u64,
    pub tx_dropped: u64,
}

/// Devices that cAdvisor leaves out of device-level series: loopback, and the host ends of
/// container links and bridges, whose traffic is the containers' own.
pub fn ignored(name: &str) -> bool {
    ["lo", "veth", "docker", "nerdctl"]
        .iter()
        .any(|p| name.starts_with(p))
}

/// Parses the file; a line that is not `name: 16 numbers` is skipped and counted.
pub fn parse(text: &str) -> (Vec<DeviceCounters>, u64) {
    let mut out = Vec::new();
    let mut bad = 0;
    // Two header lines, then one line per device.
    for line in text.lines().skip(2) {
        if line.trim().is_empty() {
            continue;
        }
        match parse_line(line) {
            Some(d) => out.push(d),
            None => bad += 1,
        }
    }
    (out, bad)
}

fn parse_line(line: &str) -> Option<DeviceCounters> {
    // Device names cannot contain ':', and a long counter may follow it with no space.
    let (name, rest) = line.split_once(':')?;
    let name = name.trim();
    if name.is_empty() {
        return None;
    }
    let mut n = [0u64; 16];
    let mut fields = rest.split_whitespace();
    for slot in &mut n {
        *slot = fields.next()?.parse().ok()?;
    }
    Some(DeviceCounters {
        name: name.to_string(),
        rx_bytes: n[0],
        rx_packets: n[1],
        rx_errors: n[2],
        rx_dropped: n[3],
        tx_bytes: n[8],
        tx_packets: n[9],
        tx_errors: n[10],
        tx_dropped: n[11],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:    5180      60    0    0    0     0          0         0     5180      60    0    0    0     0       0          0
  eth0:12345678901   9000    3    7    0     0          0        12   777000    5000    1    2    0     0       0          0
";

    #[test]
    fn reads_every_device() {
        let (d, bad) = parse(SAMPLE);
        assert_eq!(bad, 0);
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].name, "lo");
        let eth = &d[1];
        assert_eq!(eth.name, "eth0");
        assert_eq!((eth.rx_bytes, eth.rx_packets), (12_345_678_901, 9000));
        assert_eq!((eth.rx_errors, eth.rx_dropped), (3, 7));
        assert_eq!((eth.tx_bytes, eth.tx_packets), (777_000, 5000));
        assert_eq!((eth.tx_errors, eth.tx_dropped), (1, 2));
    }

    #[test]
    fn garbled_lines_are_counted_not_fatal() {
        let text = format!(
            "{SAMPLE}  bad0: 1 2 3\nnocolon 1 2\n: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n"
        );
        let (d, bad) = parse(&text);
        assert_eq!(d.len(), 2);
        assert_eq!(bad, 3);
        assert_eq!(parse("").0, vec![]);
    }

    #[test]
    fn ignores_what_cadvisor_ignores() {
        assert!(ignored("lo") && ignored("veth1a2b") && ignored("docker0"));
        assert!(!ignored("eth0") && !ignored("cni0") && !ignored("br-c48a146251a9"));
    }
}
