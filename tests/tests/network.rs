//! Per-container traffic against the bytes actually sent and the devices' own counters: a
//! container alone in its network namespace and a pod's container beside its sandbox (UDP over a
//! veth pair), and two hostNetwork-style cgroups talking over loopback (TCP), each of which must
//! see its own traffic and not the host's.
use std::{
    path::{Path, PathBuf},
    process::Child,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use nodetel_integration_tests::{
    Agent, Exposition, TestCgroup, bpf_map_keys,
    netns::{Netns, device_counters, ip, ip_bin},
    privileged, require_tool,
};

/// The traffic generator (tests/src/bin/nettool.rs); the VM suite sets `NODETEL_NETTOOL`.
fn nettool() -> String {
    std::env::var("NODETEL_NETTOOL").unwrap_or_else(|_| env!("CARGO_BIN_EXE_nettool").into())
}

fn wait_for_file(path: &Path, what: &str, pred: impl Fn(&str) -> bool) -> anyhow::Result<String> {
    let t0 = Instant::now();
    loop {
        if let Ok(text) = std::fs::read_to_string(path)
            && pred(&text)
        {
            return Ok(text);
        }
        if t0.elapsed() > Duration::from_secs(30) {
            bail!("{what}: {} never said so", path.display());
        }
        thread::sleep(Duration::from_millis(20));
    }
}

fn finish(mut child: Child, what: &str) -> anyhow::Result<()> {
    let t0 = Instant::now();
    loop {
        if let Some(status) = child.try_wait()? {
            anyhow::ensure!(status.success(), "{what} failed: {status}");
            return Ok(());
        }
        if t0.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            bail!("{what} did not finish in 60 s");
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// `(bytes_sent, bytes_retrans)` as nettool printed them from the socket's `tcp_info`.
fn tcp_bytes_sent(out: &Path) -> anyhow::Result<(u64, u64)> {
    let text = std::fs::read_to_string(out).with_context(|| format!("{}", out.display()))?;
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("tcp bytes_sent "))
        .with_context(|| format!("no tcp_info line in {text:?}"))?;
    match line.split_whitespace().collect::<Vec<_>>()[..] {
        [sent, "bytes_retrans", retrans] => Ok((sent.parse()?, retrans.parse()?)),
        _ => bail!("garbled tcp_info line {line:?}"),
    }
}

fn temp_file(name: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("nodetel-it-{}-{name}", std::process::id()));
    let _ = std::fs::remove_file(&p);
    p
}

fn net(e: &Exposition, family: &str, cg: &TestCgroup, interface: &str) -> Option<f64> {
    e.value_where(
        &format!("container_network_{family}_total"),
        &cg.rel,
        "interface",
        interface,
    )
}

#[test]
fn udp_in_a_network_namespace_is_counted_to_the_packet() -> anyhow::Result<()> {
    const TEST: &str = "udp_in_a_network_namespace_is_counted_to_the_packet";
    if !privileged(TEST) || !require_tool(TEST, &ip_bin()) {
        return Ok(());
    }
    // Enough datagrams that the few queued between device and socket when a pass reads them
    // (which the pod's owner keeps, 15-20 measured) are well under 1 %.
    let (count, size) = (5000u64, 1000u64);
    let (a_ns, b_ns) = (Netns::create("a")?, Netns::create("b")?);
    let (va, vb) = (
        format!("nt{}a", std::process::id() % 100_000),
        format!("nt{}b", std::process::id() % 100_000),
    );
    ip(&["link", "add", &va, "type", "veth", "peer", "name", &vb])?;
    ip(&["link", "set", &va, "netns", &a_ns.0])?;
    ip(&["link", "set", &vb, "netns", &b_ns.0])?;
    ip(&["-n", &a_ns.0, "addr", "add", "10.123.0.1/24", "dev", &va])?;
    ip(&["-n", &b_ns.0, "addr", "add", "10.123.0.2/24", "dev", &vb])?;
    ip(&["-n", &a_ns.0, "link", "set", &va, "up"])?;
    ip(&["-n", &b_ns.0, "link", "set", &vb, "up"])?;

    let agent = Agent::start(Duration::from_millis(250), &[])?;
    // The sender is alone in its namespace, as a Docker container; the receiver shares its
    // namespace with an older "sandbox" cgroup, as a pod's container with the pod's pause.
    let sender = TestCgroup::create("udpsend")?;
    let sandbox = TestCgroup::create("udpsandbox")?;
    // A process that stays, as a container's would: the namespaces are found through them.
    let keep_a = sender.spawn(&format!(
        "exec {} netns exec {} sleep 600",
        ip_bin(),
        a_ns.0
    ))?;
    let keep_b = sandbox.spawn(&format!(
        "exec {} netns exec {} sleep 600",
        ip_bin(),
        b_ns.0
    ))?;
    thread::sleep(Duration::from_millis(50));
    let receiver = TestCgroup::create("udprecv")?;
    let ready = temp_file("udp-ready");
    let tool = nettool();
    let recv = receiver.spawn(&format!(
        "exec {} netns exec {} {tool} udp-recv 10.123.0.2:9000 {count} {}",
        ip_bin(),
        b_ns.0,
        ready.display()
    ))?;
    wait_for_file(&ready, "receiver", |t| t == "ready")?;
    let send = sender.spawn(&format!(
        "exec {} netns exec {} {tool} udp-send 10.123.0.2:9000 {count} {size}",
        ip_bin(),
        a_ns.0
    ))?;
    finish(send, "udp-send")?;
    finish(recv, "udp-recv")?;
    let received: u64 = std::fs::read_to_string(&ready)?
        .trim()
        .strip_prefix("received ")
        .context("receiver result")?
        .parse()?;
    assert_eq!(received, count, "the set-up: every datagram arrived");

    // An IP datagram is the payload plus 8 bytes of UDP and 20 of IPv4 header; on the device
    // 14 bytes of Ethernet header more.
    let wire = size + 28;
    let last = std::cell::Cell::new(None);
    let e = agent.scrape_until(Duration::from_secs(5), |e| {
        let now = (
            net(e, "transmit_bytes", &sender, &va),
            net(e, "receive_bytes", &sandbox, &vb),
        );
        net(e, "transmit_packets", &sender, &va).is_some_and(|p| p >= count as f64)
            && net(e, "receive_packets", &receiver, &vb) == Some(received as f64)
            && last.replace(Some(now)) == Some(now)
    })?;
    let (dev_a, dev_b) = (
        device_counters(keep_a.id(), &va)?,
        device_counters(keep_b.id(), &vb)?,
    );
    let get = |f, cg: &TestCgroup, dev: &str| net(&e, f, cg, dev).unwrap_or(f64::NAN);
    eprintln!(
        "{va} device rx/tx bytes {:?} pkts {:?}; sender {} / {} B, {} / {} pkts",
        (dev_a[0], dev_a[2]),
        (dev_a[1], dev_a[3]),
        get("receive_bytes", &sender, &va),
        get("transmit_bytes", &sender, &va),
        get("receive_packets", &sender, &va),
        get("transmit_packets", &sender, &va),
    );
    eprintln!(
        "{vb} device rx bytes {} pkts {}; receiver {} B {} pkts, sandbox {} B {} pkts",
        dev_b[0],
        dev_b[1],
        get("receive_bytes", &receiver, &vb),
        get("receive_packets", &receiver, &vb),
        get("receive_bytes", &sandbox, &vb),
        get("receive_packets", &sandbox, &vb),
    );
    // Alone in its namespace: the device's own counters (cAdvisor's figures), link-layer
    // headers and the kernel's own packets (IPv6 neighbour discovery) included. Within 1 %:
    // the device may send one more such packet between the scrape and this read.
    let close = |got: f64, device: u64| (got - device as f64).abs() <= device as f64 * 0.01;
    for (f, device) in [
        ("transmit_bytes", dev_a[2]),
        ("transmit_packets", dev_a[3]),
        ("receive_bytes", dev_a[0]),
        ("receive_packets", dev_a[1]),
    ] {
        let got = get(f, &sender, &va);
        assert!(close(got, device), "sender {f}: {got}, device {device}");
    }
    assert!(dev_a[2] >= count * (wire + 14), "the set-up: {dev_a:?}");
    // Sharing its namespace: the receiver's own sockets, exactly, at the IP layer ...
    assert_eq!(
        net(&e, "receive_bytes", &receiver, &vb),
        Some((count * wire) as f64)
    );
    assert_eq!(
        net(&e, "receive_packets", &receiver, &vb),
        Some(count as f64)
    );
    assert_eq!(net(&e, "transmit_packets", &receiver, &vb), Some(0.0));
    // ... and the owner the rest: a pod's sum is its device's counters, each byte once, but for
    // the documented excess: the datagrams queued between device and socket when a pass read
    // them, which the owner keeps (9-16 of 5000 on the host, 114 once under the VM's emulator,
    // whose softirqs run late); never more than the kernel's backlog of 1000 packets.
    let backlog = 1000.0;
    for (f, device, per_packet) in [
        ("receive_bytes", dev_b[0], (wire + 14) as f64),
        ("receive_packets", dev_b[1], 1.0),
    ] {
        let sum = get(f, &receiver, &vb) + get(f, &sandbox, &vb);
        assert!(
            sum >= device as f64 * 0.99 && sum <= device as f64 + backlog * per_packet,
            "pod {f}: {sum}, device {device}"
        );
    }
    // Device errors and drops are the owner's alone.
    assert_eq!(net(&e, "receive_errors", &sender, &va), Some(0.0));
    assert_eq!(
        net(&e, "transmit_packets_dropped", &sandbox, &vb),
        Some(0.0)
    );
    assert_eq!(net(&e, "receive_errors", &receiver, &vb), None);
    // Loopback is left out, as cAdvisor does: this test's own scrapes are loopback traffic.
    assert!(
        !e.0.lines()
            .any(|l| l.starts_with("container_network_") && l.contains("interface=\"lo\"")),
        "lo series without --network-loopback"
    );
    Ok(())
}

#[test]
fn host_network_cgroups_see_their_own_loopback_traffic() -> anyhow::Result<()> {
    const TEST: &str = "host_network_cgroups_see_their_own_loopback_traffic";
    if !privileged(TEST) {
        return Ok(());
    }
    let (up, down) = (20u64 << 20, 5u64 << 20);
    // Loopback is left out by default, as in cAdvisor; this test asks for it.
    let agent = Agent::start(Duration::from_millis(250), &["--network-loopback"])?;
    // Two containers of one pod: the pod cgroup must not repeat their bytes.
    let pod = TestCgroup::create("pod")?;
    let server = pod.child("server")?;
    let client = pod.child("client")?;
    let port_file = temp_file("tcp-port");
    let tool = nettool();
    let (serve_out, send_out) = (temp_file("tcp-serve-out"), temp_file("tcp-send-out"));
    let serve = server.spawn(&format!(
        "exec {tool} tcp-serve 127.0.0.1:0 {} {up} {down} > {}",
        port_file.display(),
        serve_out.display()
    ))?;
    let port = wait_for_file(&port_file, "server", |t| t.trim().parse::<u16>().is_ok())?;
    let send = client.spawn(&format!(
        "exec {tool} tcp-send 127.0.0.1:{} {up} {down} > {}",
        port.trim(),
        send_out.display()
    ))?;
    finish(send, "tcp-send")?;
    finish(serve, "tcp-serve")?;
    // What the kernel says each socket sent, retransmissions included: under load loopback
    // TCP retransmits (a CI run saw 7 % extra on one side), and those bytes are on the wire.
    let (sent_up, retrans_up) = tcp_bytes_sent(&send_out)?;
    let (sent_down, retrans_down) = tcp_bytes_sent(&serve_out)?;
    eprintln!(
        "kernel: client sent {sent_up} ({retrans_up} retransmitted), server sent {sent_down} ({retrans_down} retransmitted)"
    );

    // Settled: two scrapes in a row with the same figures.
    let last = std::cell::Cell::new(None);
    let e = agent.scrape_until(Duration::from_secs(5), |e| {
        let now = (
            net(e, "transmit_bytes", &client, "lo"),
            net(e, "receive_bytes", &server, "lo"),
            net(e, "transmit_bytes", &server, "lo"),
            net(e, "receive_bytes", &client, "lo"),
        );
        now.0.is_some_and(|b| b >= up as f64) && last.replace(Some(now)) == Some(now)
    })?;
    let get = |f, cg| net(&e, f, cg, "lo").unwrap_or(f64::NAN);
    let (c_tx, c_rx) = (
        get("transmit_bytes", &client),
        get("receive_bytes", &client),
    );
    let (s_tx, s_rx) = (
        get("transmit_bytes", &server),
        get("receive_bytes", &server),
    );
    eprintln!(
        "client tx {c_tx} rx {c_rx} ({} / {} pkts); server tx {s_tx} rx {s_rx} ({} / {} pkts); payload {up} up, {down} down",
        get("transmit_packets", &client),
        get("receive_packets", &client),
        get("transmit_packets", &server),
        get("receive_packets", &server),
    );
    assert!(sent_up >= up && sent_down >= down, "payload not sent");
    // Headers on top of the payload: 52 bytes per segment against 64 KiB segments on lo.
    let within = |got: f64, sent: u64| got >= sent as f64 && got <= sent as f64 * 1.03;
    assert!(
        within(c_tx, sent_up),
        "client: {c_tx} counted, {sent_up} sent"
    );
    assert!(
        within(s_rx, sent_up),
        "server: {s_rx} received, {sent_up} sent"
    );
    assert!(
        within(s_tx, sent_down),
        "server: {s_tx} counted, {sent_down} sent"
    );
    assert!(
        within(c_rx, sent_down),
        "client: {c_rx} received, {sent_down} sent"
    );
    // Loopback: every byte one side sends, the other receives. Packets are buffers, as the
    // devices count them: a GSO buffer sent whole may reach the socket in several (measured: 314
    // sent, 406 received), never fewer. The receiving side's bytes come out a little higher
    // (one TCP/IP header, 52 bytes, more per extra buffer), so bytes are compared within 0.1 %.
    assert!(get("transmit_packets", &client) <= get("receive_packets", &server));
    assert!(get("transmit_packets", &server) <= get("receive_packets", &client));
    assert!(
        (s_rx - c_tx).abs() <= c_tx * 1e-3,
        "{c_tx} sent, {s_rx} received"
    );
    assert!(
        (c_rx - s_tx).abs() <= s_tx * 1e-3,
        "{s_tx} sent, {c_rx} received"
    );
    // The host namespace has no owner: no container is charged the host's device errors.
    assert!(
        e.lines_of("container_network_receive_errors_total", &client.rel)
            .is_empty()
    );
    assert!(
        e.lines_of("container_network_transmit_bytes_total", &pod.rel)
            .is_empty(),
        "the pod cgroup repeats its containers' bytes: {:?}",
        e.lines_of("container_network_transmit_bytes_total", &pod.rel)
    );
    Ok(())
}

/// A long-lived cgroup that reaches every new pod through the pod's own host-side veth (the
/// kubelet's probes, node-local DNS): each veth it ever used is a traffic entry. Entries of
/// removed veths must go (the kernel map is read with bpftool), their series too, and the live
/// veth's must stay, named.
#[test]
fn traffic_entries_of_removed_veths_are_pruned() -> anyhow::Result<()> {
    const TEST: &str = "traffic_entries_of_removed_veths_are_pruned";
    if !privileged(TEST) || !require_tool(TEST, &ip_bin()) || !require_tool(TEST, "bpftool") {
        return Ok(());
    }
    const ROUNDS: usize = 12;
    const DATAGRAMS: u64 = 10;
    let agent = Agent::start(Duration::from_millis(250), &[])?;
    let prober = TestCgroup::create("prober")?;
    let prober_id = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&prober.dir)?);
    let tool = nettool();
    let tag = std::process::id() % 10_000;
    let mut live = None;
    for round in 0..ROUNDS {
        let pod = Netns::create(&format!("pod{round}"))?;
        let (host_end, pod_end) = (format!("ntp{tag}h{round}"), format!("ntp{tag}p{round}"));
        ip(&[
            "link", "add", &host_end, "type", "veth", "peer", "name", &pod_end,
        ])?;
        ip(&["link", "set", &pod_end, "netns", &pod.0])?;
        ip(&[
            "addr",
            "add",
            &format!("10.124.{round}.1/30"),
            "dev",
            &host_end,
        ])?;
        ip(&[
            "-n",
            &pod.0,
            "addr",
            "add",
            &format!("10.124.{round}.2/30"),
            "dev",
            &pod_end,
        ])?;
        ip(&["link", "set", &host_end, "up"])?;
        ip(&["-n", &pod.0, "link", "set", &pod_end, "up"])?;
        let send = prober.spawn(&format!(
            "exec {tool} udp-send 10.124.{round}.2:9 {DATAGRAMS} 100"
        ))?;
        finish(send, "udp-send")?;
        // Named in the host's namespace, read without entering it.
        agent.scrape_until(Duration::from_secs(10), |e| {
            net(e, "transmit_packets", &prober, &host_end) == Some(DATAGRAMS as f64)
        })?;
        if round + 1 == ROUNDS {
            live = Some((pod, host_end));
        }
        // Otherwise the namespace goes here, and the veth pair with it, as a pod's does.
    }
    let (_pod, live_end) = live.context("last round")?;
    let live_index: u32 = std::fs::read_to_string(format!("/sys/class/net/{live_end}/ifindex"))?
        .trim()
        .parse()?;

    let prober_keys = || -> anyhow::Result<Vec<(u32, u32)>> {
        let mut keys: Vec<(u32, u32)> = bpf_map_keys(agent.pid(), "NET_TRAFFIC")?
            .iter()
            .filter(|k| k.len() == 24 && k[..8] == prober_id.to_le_bytes())
            .map(|k| {
                let word = |i: usize| u32::from_le_bytes([k[i], k[i + 1], k[i + 2], k[i + 3]]);
                (word(8), word(12))
            })
            .collect();
        keys.sort_unstable();
        keys.dedup();
        Ok(keys)
    };
    let t0 = Instant::now();
    let keys = loop {
        let keys = prober_keys()?;
        if keys.iter().all(|&(_, ifindex)| ifindex == live_index)
            || t0.elapsed() > Duration::from_secs(10)
        {
            break keys;
        }
        thread::sleep(Duration::from_millis(100));
    };
    let e = agent.next_metrics()?;
    let interfaces: Vec<&str> = e
        .lines_of("container_network_transmit_packets_total", &prober.rel)
        .into_iter()
        .filter_map(|l| l.split("interface=\"").nth(1)?.split('"').next())
        .collect();
    eprintln!(
        "prober's entries (netns, ifindex) in the kernel map: {keys:?}; its interfaces: {interfaces:?}"
    );
    assert_eq!(
        keys.iter().map(|k| k.1).collect::<Vec<_>>(),
        vec![live_index],
        "only the live veth's entry is left (both directions share its key but for direction)"
    );
    assert_eq!(interfaces, vec![live_end.as_str()]);
    assert_eq!(
        net(&e, "transmit_packets", &prober, &live_end),
        Some(DATAGRAMS as f64)
    );
    Ok(())
}
