//! Traffic of a known volume for the network tests, run inside a test cgroup (and network
//! namespace) so that its sockets belong there. Prints what it did to stdout.
//!
//! udp-send <addr> <count> <size>           send <count> datagrams of <size> payload bytes
//! udp-recv <bind> <count> <ready-file>     count datagrams until <count> or 3 s of silence
//! tcp-serve <bind> <port-file> <in> <out>  accept one client, read <in> bytes, write <out>
//! tcp-send <addr> <out> <in>               connect, write <out> bytes, read <in>
use std::{
    io::{Read, Write},
    net::{Shutdown, TcpListener, TcpStream, UdpSocket},
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
            println!("served");
        }
        "tcp-send" => {
            let mut conn = TcpStream::connect(arg(1)?)?;
            conn.write_all(&vec![0x5a; num(2)?])?;
            copy_in(&mut conn, num(3)?)?;
            println!("sent");
        }
        other => bail!("unknown command {other}"),
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
