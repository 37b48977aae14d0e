//! Traffic of a known volume for the network tests, run inside a test cgroup (and network
//! namespace) so that its sockets belong there. Prints what it did to stdout.
//!
//! udp-send <addr> <count> <size>           send <count> datagrams of <size> payload bytes
//! udp-recv <bind> <count> <ready-file>     count datagrams until <count> or 3 s of silence
//! tcp-serve <bind> <port-file> <in> <out>  accept one client, read <in> bytes, write <out>
//! tcp-send <addr> <out> <in>               connect, write <out> bytes, read <in>
//! tcp-accept <bind> <port-file> <count>    accept <count> clients, closing each at once
//! tcp-connect <addr> <count> <secs>        connect <count> times (each given <secs>), print
//!                                          `connects ok <n> refused <n> timeout <n> other <n>`
//! tcp-abort <addr> <count>                 connect <count> times, each closed with a reset
//!                                          (SO_LINGER 0)
//! tcp-hold-accept <bind> <port-file> <count-file>
//!                                          accept clients and hold them open until killed,
//!                                          writing the number accepted so far to <count-file>
//! tcp-hold <addr> <count> <ready-file>     connect <count> times, each socket held by two
//!                                          descriptors, write <ready-file>, hold until killed
//! spin <cpu>                               a busy loop pinned to <cpu>, until killed
//! spin-rt <cpu> <run_ms> <rest_ms> <count> pinned to <cpu> at SCHED_FIFO: <count> times, spin
//!                                          <run_ms> then sleep <rest_ms> (run-queue waits of a
//!                                          known length for whatever else runs on <cpu>)
//! vfork-wait <secs>                        a parent in uninterruptible sleep (`D`) for <secs>:
//!                                          it waits for a vfork child that sleeps that long
//!
//! The TCP commands end by printing `tcp bytes_sent <n> bytes_retrans <n>`, the kernel's own
//! count for the socket: under load loopback TCP does retransmit (a full socket backlog drops
//! segments), and those bytes really cross the interface.
use std::{
    io::{Read, Write},
    net::{Shutdown, TcpListener, TcpStream, UdpSocket},
    os::fd::AsRawFd,
    time::Duration,
};

use anyhow::{Context as _, bail};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| args.get(i).with_context(|| format!("argument {i} missing"));
    let num = |i: usize| -> anyhow::Result<usize> { Ok(arg(i)?.parse()?) };
    match arg(0)?.as_str() {
        "udp-send" => {
            let sock = UdpSocket::bind("0.0.0.0:0")?;
            let payload = vec![0x5a; num(3)?];
            for _ in 0..num(2)? {
                sock.send_to(&payload, arg(1)?)?;
                // Paced so the receiver's buffer never overflows: every datagram is delivered.
                std::thread::sleep(Duration::from_micros(200));
            }
            println!("sent {}", num(2)?);
        }
        "udp-recv" => {
            let sock = UdpSocket::bind(arg(1)?)?;
            std::fs::write(arg(3)?, "ready")?;
            sock.set_read_timeout(Some(Duration::from_secs(3)))?;
            let mut buf = vec![0; 65536];
            let mut n = 0;
            while n < num(2)? {
                match sock.recv(&mut buf) {
                    Ok(_) => n += 1,
                    Err(_) => break,
                }
            }
            std::fs::write(arg(3)?, format!("received {n}"))?;
            println!("received {n}");
        }
        "tcp-serve" => {
            let listener = TcpListener::bind(arg(1)?)?;
            std::fs::write(arg(2)?, listener.local_addr()?.port().to_string())?;
            let (mut conn, _) = listener.accept()?;
            copy_in(&mut conn, num(3)?)?;
            conn.write_all(&vec![0xa5; num(4)?])?;
            conn.shutdown(Shutdown::Write)?;
            // Until the client closes: its last ACKs are then counted before we exit.
            let _ = conn.read(&mut [0; 1]);
            print_tcp_info(&conn)?;
            println!("served");
        }
        "tcp-send" => {
            let mut conn = TcpStream::connect(arg(1)?)?;
            conn.write_all(&vec![0x5a; num(2)?])?;
            copy_in(&mut conn, num(3)?)?;
            print_tcp_info(&conn)?;
            println!("sent");
        }
        "tcp-accept" => {
            let listener = TcpListener::bind(arg(1)?)?;
            std::fs::write(arg(2)?, listener.local_addr()?.port().to_string())?;
            for _ in 0..num(3)? {
                drop(listener.accept()?);
            }
            println!("accepted {}", num(3)?);
        }
        "tcp-hold-accept" => {
            let listener = TcpListener::bind(arg(1)?)?;
            std::fs::write(arg(2)?, listener.local_addr()?.port().to_string())?;
            let mut held = Vec::new();
            loop {
                held.push(listener.accept()?.0);
                std::fs::write(arg(3)?, held.len().to_string())?;
            }
        }
        "tcp-hold" => {
            let mut held = Vec::new();
            for _ in 0..num(2)? {
                let conn = TcpStream::connect(arg(1)?)?;
                // A second descriptor of the same socket: still one connection.
                held.push(conn.try_clone()?);
                held.push(conn);
            }
            std::fs::write(arg(3)?, "held")?;
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
        "tcp-connect" => {
            let addr: std::net::SocketAddr = arg(1)?.parse()?;
            let timeout = Duration::from_secs(num(3)? as u64);
            let (mut ok, mut refused, mut timed_out, mut other) = (0, 0, 0, 0);
            for _ in 0..num(2)? {
                match TcpStream::connect_timeout(&addr, timeout) {
                    Ok(_) => ok += 1,
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => refused += 1,
                    Err(e) if e.raw_os_error() == Some(libc::ETIMEDOUT) => timed_out += 1,
                    Err(_) => other += 1,
                }
            }
            println!("connects ok {ok} refused {refused} timeout {timed_out} other {other}");
        }
        "tcp-abort" => {
            for _ in 0..num(2)? {
                let conn = TcpStream::connect(arg(1)?)?;
                let linger = libc::linger {
                    l_onoff: 1,
                    l_linger: 0,
                };
                // SAFETY: setsockopt reads `linger`, which outlives the call, of the size given.
                let rc = unsafe {
                    libc::setsockopt(
                        conn.as_raw_fd(),
                        libc::SOL_SOCKET,
                        libc::SO_LINGER,
                        (&raw const linger).cast(),
                        std::mem::size_of::<libc::linger>() as libc::socklen_t,
                    )
                };
                if rc != 0 {
                    bail!("SO_LINGER: {}", std::io::Error::last_os_error());
                }
                // Closing with a zero linger time sends a reset instead of a FIN.
                drop(conn);
            }
            println!("aborted {}", num(2)?);
        }
        "spin" => {
            pin(num(1)?)?;
            loop {
                std::hint::spin_loop();
            }
        }
        "spin-rt" => {
            pin(num(1)?)?;
            let param = libc::sched_param { sched_priority: 10 };
            // SAFETY: sched_setscheduler reads the parameter struct, which outlives the call.
            if unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) } != 0 {
                bail!("SCHED_FIFO: {}", std::io::Error::last_os_error());
            }
            let (run, rest) = (
                Duration::from_millis(num(2)? as u64),
                Duration::from_millis(num(3)? as u64),
            );
            for _ in 0..num(4)? {
                let start = std::time::Instant::now();
                while start.elapsed() < run {
                    std::hint::spin_loop();
                }
                std::thread::sleep(rest);
            }
            println!("spun {}", num(4)?);
        }
        "vfork-wait" => {
            let secs = num(1)? as libc::time_t;
            // CLONE_VFORK without CLONE_VM: the child gets its own copy of memory, as after
            // fork(2) (so returning twice is safe, unlike vfork's shared stack), and the parent is
            // still suspended, shown in `D`, until the child exits.
            // SAFETY: a raw clone with a null stack behaves as fork: each side returns on its
            // own stack; the child only sleeps and _exits.
            let pid = unsafe {
                libc::syscall(
                    libc::SYS_clone,
                    (libc::CLONE_VFORK | libc::SIGCHLD) as libc::c_ulong,
                    0usize,
                    0usize,
                    0usize,
                    0usize,
                )
            };
            if pid == 0 {
                let ts = libc::timespec {
                    tv_sec: secs,
                    tv_nsec: 0,
                };
                // SAFETY: see above.
                unsafe {
                    libc::nanosleep(&ts, std::ptr::null_mut());
                    libc::_exit(0)
                }
            }
            if pid < 0 {
                bail!("vfork: {}", std::io::Error::last_os_error());
            }
            println!("waited {secs}");
        }
        other => bail!("unknown command {other}"),
    }
    Ok(())
}

/// Pins this process to one CPU.
fn pin(cpu: usize) -> anyhow::Result<()> {
    // SAFETY: a zeroed cpu_set_t is the empty set; CPU_SET writes inside it (cpu is checked
    // against its size first), and sched_setaffinity reads it for the duration of the call.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if cpu >= 8 * std::mem::size_of::<libc::cpu_set_t>() {
            bail!("cpu {cpu} out of range");
        }
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            bail!("pin to cpu {cpu}: {}", std::io::Error::last_os_error());
        }
    }
    Ok(())
}

fn copy_in(conn: &mut TcpStream, want: usize) -> anyhow::Result<()> {
    let mut buf = vec![0; 1 << 16];
    let mut got = 0;
    while got < want {
        let n = conn.read(&mut buf)?;
        if n == 0 {
            bail!("peer closed after {got} of {want} bytes");
        }
        got += n;
    }
    Ok(())
}

/// `tcpi_bytes_sent` and `tcpi_bytes_retrans` (Linux 4.19+) from `struct tcp_info`, read at
/// their uapi offsets so that no libc version has to know the newer fields.
fn print_tcp_info(conn: &TcpStream) -> anyhow::Result<()> {
    const BYTES_SENT: usize = 200;
    const BYTES_RETRANS: usize = 208;
    let mut info = [0u8; 256];
    let mut len = info.len() as libc::socklen_t;
    // SAFETY: the buffer is valid for `len` bytes and the kernel writes at most `len`.
    let rc = unsafe {
        libc::getsockopt(
            conn.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            info.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).context("getsockopt(TCP_INFO)");
    }
    anyhow::ensure!(
        len as usize >= BYTES_RETRANS + 8,
        "tcp_info of {len} bytes has no byte counters"
    );
    let u64_at = |o: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&info[o..o + 8]);
        u64::from_ne_bytes(b)
    };
    println!(
        "tcp bytes_sent {} bytes_retrans {}",
        u64_at(BYTES_SENT),
        u64_at(BYTES_RETRANS)
    );
    Ok(())
}
