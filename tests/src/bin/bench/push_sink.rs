//! A receiver that takes every POST and answers 204, counting what arrived on the wire by path
//! (request line, headers and body): what pushing costs the network, without a database's own
//! cost on this machine's two cores in the way.
use std::{
    collections::BTreeMap,
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::{TcpListener, TcpStream},
    sync::{Arc, Mutex},
    thread,
};

#[derive(Clone, Copy, Debug, Default)]
pub struct Tally {
    pub requests: u64,
    pub bytes: u64,
    /// Passes the requests carried: one per remote write request; the distinct point times of
    /// line protocol (a request gathers several passes).
    pub passes: u64,
}

pub struct Sink {
    pub addr: String,
    tally: Arc<Mutex<BTreeMap<String, Tally>>>,
}

impl Sink {
    pub fn start() -> anyhow::Result<Sink> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?.to_string();
        let tally: Arc<Mutex<BTreeMap<String, Tally>>> = Arc::default();
        let shared = Arc::clone(&tally);
        thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let shared = Arc::clone(&shared);
                thread::spawn(move || serve(conn, &shared));
            }
        });
        Ok(Sink { addr, tally })
    }

    /// Requests and bytes so far per path (without the query string).
    pub fn tally(&self) -> BTreeMap<String, Tally> {
        self.tally.lock().map(|t| t.clone()).unwrap_or_default()
    }
}

/// Requests on one (kept-alive) connection until it closes.
fn serve(conn: TcpStream, tally: &Mutex<BTreeMap<String, Tally>>) {
    let Ok(mut out) = conn.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(conn);
    loop {
        let mut head_bytes = 0u64;
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(n) => head_bytes += n as u64,
        }
        let path = line
            .split_whitespace()
            .nth(1)
            .unwrap_or("")
            .split('?')
            .next()
            .unwrap_or("")
            .to_string();
        let mut length = 0u64;
        let mut gzipped = false;
        loop {
            let mut h = String::new();
            match reader.read_line(&mut h) {
                Ok(0) | Err(_) => return,
                Ok(n) => head_bytes += n as u64,
            }
            if h == "\r\n" {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    length = v.trim().parse().unwrap_or(0);
                }
                if k.eq_ignore_ascii_case("content-encoding") && v.trim() == "gzip" {
                    gzipped = true;
                }
            }
        }
        let mut body = vec![0u8; length as usize];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let passes = if gzipped { point_times(&body) } else { 1 };
        if let Ok(mut t) = tally.lock() {
            let e = t.entry(path).or_default();
            e.requests += 1;
            e.bytes += head_bytes + length;
            e.passes += passes;
        }
        if out
            .write_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
            .is_err()
        {
            return;
        }
    }
}

/// Distinct timestamps (the last field of each line) of a gzipped line protocol body.
fn point_times(body: &[u8]) -> u64 {
    let mut text = String::new();
    if flate2::read::GzDecoder::new(body)
        .read_to_string(&mut text)
        .is_err()
    {
        return 0;
    }
    let times: std::collections::BTreeSet<&str> = text
        .lines()
        .filter_map(|l| l.rsplit_once(' ').map(|(_, t)| t))
        .collect();
    times.len() as u64
}
