//! Slow and idle clients, many at once: connections that send part of a
//! request head (or nothing) and wait, as a slowloris attack or a broken
//! client does; and timed requests beside them.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Connections held open by the test.
pub struct Flood {
    conns: Vec<TcpStream>,
    /// Connections that could not even be opened.
    pub refused: usize,
}

impl Flood {
    /// Opens `n` connections to `addr`, each sending `payload` and no more.
    pub fn open(addr: &str, n: usize, payload: &[u8]) -> Flood {
        let mut conns = Vec::with_capacity(n);
        let mut refused = 0;
        for _ in 0..n {
            match TcpStream::connect(addr) {
                Ok(mut c) => {
                    if !payload.is_empty() {
                        let _ = c.write_all(payload);
                    }
                    conns.push(c);
                }
                Err(_) => refused += 1,
            }
        }
        Flood { conns, refused }
    }

    /// How many the server still holds open (a read would block, rather
    /// than end or fail).
    pub fn still_open(&self) -> usize {
        let mut buf = [0u8; 256];
        self.conns
            .iter()
            .filter(|c| {
                c.set_nonblocking(true).unwrap();
                let mut r: &TcpStream = c;
                let open = matches!(r.read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock);
                c.set_nonblocking(false).unwrap();
                open
            })
            .count()
    }

    /// Connections opened.
    pub fn len(&self) -> usize {
        self.conns.len()
    }

    /// Whether none was opened.
    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }
}

/// One request on a fresh connection: (status, how long until the whole
/// answer was read), or `None` when it failed.
pub fn timed_get(addr: &str, path: &str) -> Option<(u16, Duration)> {
    let started = Instant::now();
    let mut c = TcpStream::connect(addr).ok()?;
    c.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        c,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut answer = Vec::new();
    c.read_to_end(&mut answer).ok()?;
    let text = String::from_utf8_lossy(&answer);
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, started.elapsed()))
}

/// Sends `raw` on a fresh connection and reads the answer's status line.
pub fn raw_status(addr: &str, raw: &[u8]) -> Option<u16> {
    let mut c = TcpStream::connect(addr).ok()?;
    c.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let _ = c.write_all(raw);
    let mut answer = Vec::new();
    let _ = c.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer)
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Threads of process `pid`.
pub fn threads(pid: u32) -> u64 {
    super::proc_status_kib(pid, "Threads:")
}

/// Open descriptors of process `pid`.
pub fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}
