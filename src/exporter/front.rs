//! The HTTP front: accepts connections and reads their request heads on one
//! thread, by readiness (epoll), so a connection that has not sent a
//! whole request costs a few hundred bytes and no thread; only complete
//! requests go to a fixed pool of handler threads, so slow clients cannot
//! starve a scrape. tiny_http spawns a thread per connection and times
//! nothing out; it stays as the responder (its `Response` writes the
//! answer), behind this front.
//!
//! Limits, all fixed: a cap on connections held at once (beyond it, the
//! connection that has waited longest without a whole request is closed to
//! make room, so a flood cannot lock a scrape out), 10 s for a request head
//! (and for a body), 60 s for an idle keep-alive connection, 30 s for
//! writing an answer; a head over 16 KiB gets 431, a URL over 8 KiB 414, a
//! body over 64 KiB 413, and nothing is buffered past those.

use std::collections::HashMap;
use std::io::{self, BufWriter, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};

use crate::exporter::request::{parse, Limits, Parsed, Request};
use crate::exporter::tls::TlsServer;
use crate::sys::poll::Readiness;

/// What answers requests: the handler threads call it.
pub trait Service: Send + Sync + 'static {
    /// The answer to a request.
    fn answer(&self, request: &Request) -> tiny_http::ResponseBox;
    /// Called once the answer is written (to release what it used).
    fn answered(&self, _request: &Request) {}
}

/// The TLS side of a connection, when the web config asks for HTTPS.
type Tls = Option<Box<rustls::ServerConnection>>;

/// A connection waiting for its request (or its body).
struct Waiting {
    stream: TcpStream,
    tls: Tls,
    buf: Vec<u8>,
    /// When it opened, or came back idle: eviction closes the oldest.
    since: Instant,
    deadline: Instant,
    /// Kept alive after an answer, and nothing of a next request yet: it
    /// has the idle timeout, then the head timeout from its first byte.
    idle: bool,
    /// Reading a body of this many bytes after a head of `head` bytes.
    body: Option<(Request, usize, usize)>,
}

/// A complete request on its connection, for a handler.
struct Work {
    stream: TcpStream,
    tls: Tls,
    request: Request,
    /// Bytes after the request (a pipelined next one).
    rest: Vec<u8>,
}

/// Counts the front keeps, for tests and the benchmark's figures.
#[derive(Debug, Default)]
pub struct FrontStats {
    /// Connections accepted.
    pub accepted: AtomicUsize,
    /// Connections closed before a whole request arrived in time.
    pub timed_out: AtomicUsize,
    /// Connections closed to make room under the cap.
    pub evicted: AtomicUsize,
    /// Requests refused whole (4xx or 5xx from the front).
    pub refused: AtomicUsize,
}

/// A running front; stops when [`Front::stop`] is called.
pub struct Front {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    wake: UnixStream,
    /// What it counted.
    pub stats: Arc<FrontStats>,
}

impl Front {
    /// Serves `listener` with `service` on `limits.handlers` threads.
    pub fn start(
        listener: TcpListener,
        limits: Limits,
        service: Arc<dyn Service>,
        tls: Option<Arc<TlsServer>>,
    ) -> io::Result<Front> {
        listener.set_nonblocking(true)?;
        if let Err(e) = crate::sys::poll::raise_backlog(&listener, 4096) {
            log::debug!("http front: listen backlog: {e}");
        }
        let addr = listener.local_addr()?;
        let (wake_tx, wake_rx) = UnixStream::pair()?;
        wake_tx.set_nonblocking(true)?;
        wake_rx.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(FrontStats::default());
        let (work_tx, work_rx) = crossbeam_channel::bounded::<Work>(limits.handlers * 16);
        let (back_tx, back_rx) = crossbeam_channel::unbounded::<Returned>();
        for i in 0..limits.handlers.max(1) {
            let (rx, back, service) = (work_rx.clone(), back_tx.clone(), service.clone());
            let wake = wake_tx.try_clone()?;
            let write_timeout = limits.write_timeout;
            std::thread::Builder::new()
                .name(format!("http-{i}"))
                .spawn(move || handle(rx, back, wake, &*service, write_timeout))?;
        }
        let mut front = Loop {
            listener,
            limits,
            wake: wake_rx,
            back: back_rx,
            work: work_tx,
            conns: HashMap::new(),
            next: 2,
            tls,
            readiness: Readiness::new()?,
            stop: stop.clone(),
            stats: stats.clone(),
        };
        std::thread::Builder::new()
            .name("http-front".into())
            .spawn(move || front.run())?;
        Ok(Front {
            addr,
            stop,
            wake: wake_tx,
            stats,
        })
    }

    /// Where it listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting and closes every waiting connection.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = (&self.wake).write(b"s");
    }
}

/// A kept-alive connection back from a handler, with what it already read.
type Returned = (TcpStream, Tls, Vec<u8>);

struct Loop {
    listener: TcpListener,
    limits: Limits,
    wake: UnixStream,
    back: Receiver<Returned>,
    tls: Option<Arc<TlsServer>>,
    work: Sender<Work>,
    /// Waiting connections by token.
    conns: HashMap<u64, Waiting>,
    next: u64,
    readiness: Readiness,
    stop: Arc<AtomicBool>,
    stats: Arc<FrontStats>,
}

const LISTENER: u64 = 0;
const WAKE: u64 = 1;
/// How often deadlines are looked at, at least.
const TICK: Duration = Duration::from_millis(250);

/// How one read of a waiting connection ended.
enum Step {
    Wait,
    Close,
    Dispatch(Request, usize),
}

impl Loop {
    fn run(&mut self) {
        let mut ready = Vec::new();
        let mut scratch = vec![0u8; 16 * 1024];
        let mut next_expiry = Instant::now() + TICK;
        if let Err(e) = self
            .readiness
            .add(self.listener.as_raw_fd(), LISTENER)
            .and_then(|_| self.readiness.add(self.wake.as_raw_fd(), WAKE))
        {
            log::error!("http front: cannot watch the listener: {e}");
            return;
        }
        while !self.stop.load(Ordering::SeqCst) {
            let timeout = next_expiry.saturating_duration_since(Instant::now());
            if let Err(e) = self.readiness.wait(&mut ready, Some(timeout)) {
                log::error!("http front: epoll_wait: {e}");
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
            for &token in &ready {
                match token {
                    LISTENER => self.accept(),
                    WAKE => self.returned(&mut scratch),
                    t => self.read(t, &mut scratch),
                }
            }
            if Instant::now() >= next_expiry {
                self.expire();
                next_expiry = Instant::now() + TICK;
            }
        }
        for (_, c) in self.conns.drain() {
            self.readiness.remove(c.stream.as_raw_fd());
        }
    }

    /// Accepts every pending connection, making room under the cap.
    fn accept(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    self.stats.accepted.fetch_add(1, Ordering::Relaxed);
                    if stream.set_nonblocking(true).is_err() {
                        continue;
                    }
                    let tls = match &self.tls {
                        None => None,
                        Some(t) => match rustls::ServerConnection::new(t.config()) {
                            Ok(c) => Some(Box::new(c)),
                            Err(e) => {
                                log::warn!("http front: TLS: {e}");
                                continue;
                            }
                        },
                    };
                    let now = Instant::now();
                    self.admit(Waiting {
                        stream,
                        tls,
                        buf: Vec::new(),
                        since: now,
                        deadline: now + self.limits.head_timeout,
                        idle: false,
                        body: None,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // Out of descriptors (EMFILE, ENFILE): close the
                    // oldest waiting connection and try again later.
                    log::warn!("http front: accept: {e}");
                    if !self.evict_oldest() {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    return;
                }
            }
        }
    }

    /// Holds a connection, closing the longest-waiting one when at the
    /// cap; its token.
    fn admit(&mut self, conn: Waiting) -> Option<u64> {
        if self.conns.len() >= self.limits.max_connections {
            self.evict_oldest();
        }
        let token = self.next;
        self.next += 1;
        if self.readiness.add(conn.stream.as_raw_fd(), token).is_err() {
            return None;
        }
        self.conns.insert(token, conn);
        Some(token)
    }

    /// Closes the connection that has waited longest: the cap's price is
    /// paid by the slowest client, not by the next scrape.
    fn evict_oldest(&mut self) -> bool {
        let Some(token) = self
            .conns
            .iter()
            .min_by_key(|(_, c)| c.since)
            .map(|(t, _)| *t)
        else {
            return false;
        };
        self.stats.evicted.fetch_add(1, Ordering::Relaxed);
        self.close(token);
        true
    }

    fn close(&mut self, token: u64) -> Option<Waiting> {
        let conn = self.conns.remove(&token)?;
        self.readiness.remove(conn.stream.as_raw_fd());
        Some(conn)
    }

    /// Connections the handlers are done with, kept alive: they wait for
    /// their next request (which may be in already).
    fn returned(&mut self, scratch: &mut [u8]) {
        while matches!((&self.wake).read(scratch), Ok(n) if n > 0) {}
        while let Ok((stream, mut tls, mut rest)) = self.back.try_recv() {
            if stream.set_nonblocking(true).is_err() {
                continue;
            }
            // Plaintext the TLS layer decrypted already is not seen by
            // epoll: take it now.
            if let Some(t) = tls.as_deref_mut() {
                drain_plaintext(t, &mut rest, self.limits.max_head);
            }
            let now = Instant::now();
            let idle = rest.is_empty();
            let wait = if idle {
                self.limits.idle_timeout
            } else {
                self.limits.head_timeout
            };
            let Some(token) = self.admit(Waiting {
                stream,
                tls,
                buf: rest,
                since: now,
                deadline: now + wait,
                idle,
                body: None,
            }) else {
                continue;
            };
            if !idle {
                let step = self.advance(token);
                self.apply(token, step);
            }
        }
    }

    /// Reads what a ready connection sent and moves it on.
    fn read(&mut self, token: u64, scratch: &mut [u8]) {
        let Some(conn) = self.conns.get_mut(&token) else {
            return;
        };
        // Never more than the limits allow in the buffer.
        let room = match &conn.body {
            Some((_, head, body)) => (head + body).saturating_sub(conn.buf.len()),
            None => self.limits.max_head.saturating_sub(conn.buf.len()),
        };
        let want = room.clamp(1, scratch.len());
        let got = match conn.tls.as_deref_mut() {
            Some(tls) => read_tls(&mut conn.stream, tls, &mut scratch[..want]),
            None => conn.stream.read(&mut scratch[..want]),
        };
        let step = match got {
            Ok(0) => Step::Close,
            Ok(n) => {
                if conn.idle {
                    // The next request on a kept-alive connection: the
                    // head timeout runs from its first byte.
                    conn.idle = false;
                    conn.deadline = Instant::now() + self.limits.head_timeout;
                }
                conn.buf.extend_from_slice(&scratch[..n]);
                self.advance(token)
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) =>
            {
                Step::Wait
            }
            Err(_) => Step::Close,
        };
        self.apply(token, step);
    }

    fn apply(&mut self, token: u64, step: Step) {
        match step {
            Step::Wait => {}
            Step::Close => {
                self.close(token);
            }
            Step::Dispatch(request, end) => {
                if let Some(mut conn) = self.close(token) {
                    let rest = conn.buf.split_off(end);
                    self.dispatch(Work {
                        stream: conn.stream,
                        tls: conn.tls,
                        request,
                        rest,
                    });
                }
            }
        }
    }

    /// What the buffer of connection `token` now allows.
    fn advance(&mut self, token: u64) -> Step {
        let Some(conn) = self.conns.get_mut(&token) else {
            return Step::Close;
        };
        if conn.body.is_none() {
            match parse(&conn.buf, &self.limits) {
                Parsed::Incomplete => return Step::Wait,
                Parsed::Refused(status, why) => {
                    self.stats.refused.fetch_add(1, Ordering::Relaxed);
                    refuse(&mut conn.stream, conn.tls.as_deref_mut(), status, why);
                    return Step::Close;
                }
                Parsed::Head {
                    request,
                    head,
                    body,
                } => {
                    if body > 0 {
                        conn.deadline = Instant::now() + self.limits.body_timeout;
                    }
                    conn.body = Some((request, head, body));
                }
            }
        }
        match conn.body.take() {
            Some((request, head, body)) if conn.buf.len() >= head + body => {
                Step::Dispatch(request, head + body)
            }
            waiting => {
                conn.body = waiting;
                Step::Wait
            }
        }
    }

    fn dispatch(&mut self, work: Work) {
        match self.work.try_send(work) {
            Ok(()) => {}
            Err(TrySendError::Full(mut w)) | Err(TrySendError::Disconnected(mut w)) => {
                self.stats.refused.fetch_add(1, Ordering::Relaxed);
                refuse(&mut w.stream, w.tls.as_deref_mut(), 503, "busy");
            }
        }
    }

    /// Closes connections whose time is up.
    fn expire(&mut self) {
        let now = Instant::now();
        let late: Vec<u64> = self
            .conns
            .iter()
            .filter(|(_, c)| c.deadline <= now)
            .map(|(t, _)| *t)
            .collect();
        // Counted before the close: whoever sees the connection end sees
        // it counted.
        self.stats
            .timed_out
            .fetch_add(late.len(), Ordering::Relaxed);
        for t in late {
            self.close(t);
        }
    }
}

/// One read of a TLS connection: records from the socket, the handshake's
/// answers back to it, and what plaintext there is. `Ok(0)` when the
/// client is gone or the handshake failed; `WouldBlock` while there is no
/// plaintext yet. A client that speaks plain HTTP to the TLS port is told
/// so (as Go's server tells it) before the connection closes.
fn read_tls(
    stream: &mut TcpStream,
    tls: &mut rustls::ServerConnection,
    out: &mut [u8],
) -> io::Result<usize> {
    if tls.is_handshaking() {
        // Every TLS record starts with its type, 20 to 23; a request line
        // starts with a letter.
        let mut first = [0u8; 1];
        if matches!(stream.peek(&mut first), Ok(1)) && !(0x14..=0x17).contains(&first[0]) {
            let _ = stream.write(
                b"HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\nClient sent an HTTP request to an HTTPS server.\n",
            );
            return Ok(0);
        }
    }
    match tls.read_tls(stream) {
        Ok(0) => return Ok(0),
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
        Err(e) => return Err(e),
    }
    let state = tls.process_new_packets();
    // Handshake answers (or the alert that ends a failed one) go out now.
    write_pending(stream, tls);
    if state.is_err() {
        return Ok(0);
    }
    // All the plaintext there is (up to `out`): epoll does not see what
    // the TLS layer holds already.
    let mut filled = 0;
    while filled < out.len() {
        match tls.reader().read(&mut out[filled..]) {
            Ok(0) => return Ok(filled),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && filled > 0 => break,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Err(e),
            // The peer ended the TLS session (close_notify), or lost it.
            Err(_) => return Ok(filled),
        }
    }
    Ok(filled)
}

/// Writes what the TLS layer has for the peer. Handshake flights are a few
/// KiB and the socket takes them whole; if it does not, a short blocking
/// write finishes them rather than leaving the client waiting.
fn write_pending(stream: &mut TcpStream, tls: &mut rustls::ServerConnection) {
    while tls.wants_write() {
        match tls.write_tls(stream) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let blocking = stream.set_nonblocking(false).is_ok()
                    && stream
                        .set_write_timeout(Some(Duration::from_secs(1)))
                        .is_ok();
                let done = blocking && tls.write_tls(stream).is_ok();
                let _ = stream.set_nonblocking(true);
                if !done {
                    return;
                }
            }
            Err(_) => return,
        }
    }
}

/// Plaintext already decrypted, up to `limit` bytes in `buf`.
fn drain_plaintext(tls: &mut rustls::ServerConnection, buf: &mut Vec<u8>, limit: usize) {
    let mut chunk = [0u8; 4096];
    while buf.len() < limit {
        let want = (limit - buf.len()).min(chunk.len());
        match tls.reader().read(&mut chunk[..want]) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// A short answer written without blocking, best effort, before closing.
fn refuse(
    stream: &mut TcpStream,
    tls: Option<&mut rustls::ServerConnection>,
    status: u16,
    why: &str,
) {
    let reason = match status {
        400 => "Bad Request",
        413 => "Content Too Large",
        414 => "URI Too Long",
        431 => "Request Header Fields Too Large",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Error",
    };
    let text = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{why}\n",
        why.len() + 1
    );
    match tls {
        Some(t) => {
            let _ = t.writer().write_all(text.as_bytes());
            write_pending(stream, t);
        }
        None => {
            let _ = stream.write(text.as_bytes());
        }
    }
}

/// A handler thread: answers complete requests, hands kept-alive
/// connections back to the front.
fn handle(
    work: Receiver<Work>,
    back: Sender<Returned>,
    wake: UnixStream,
    service: &dyn Service,
    write_timeout: Duration,
) {
    for Work {
        mut stream,
        mut tls,
        request,
        rest,
    } in work
    {
        let keep = request.keep_alive();
        let answer = service.answer(&request);
        // Blocking now, for at most the write timeout at a time.
        let ready = stream
            .set_nonblocking(false)
            .and_then(|_| stream.set_write_timeout(Some(write_timeout)));
        let written = ready.and_then(|_| match tls.as_deref_mut() {
            Some(t) => respond(
                &mut rustls::Stream::new(t, &mut stream),
                &request,
                answer,
                keep,
            ),
            None => respond(&mut stream, &request, answer, keep),
        });
        service.answered(&request);
        if !keep {
            // A TLS session is ended as the protocol wants, not cut.
            if let Some(t) = tls.as_deref_mut() {
                t.send_close_notify();
                let _ = t.write_tls(&mut stream);
            }
            continue;
        }
        if written.is_ok() && back.send((stream, tls, rest)).is_ok() {
            let _ = (&wake).write(b"r");
        }
    }
}

/// Writes `answer` through tiny_http's responder to `out` (the socket, or
/// TLS over it).
fn respond(
    out: &mut dyn Write,
    request: &Request,
    answer: tiny_http::ResponseBox,
    keep: bool,
) -> io::Result<()> {
    // tiny_http chooses chunked or identity from the request's TE.
    let te: Vec<tiny_http::Header> = request
        .header("te")
        .and_then(|v| tiny_http::Header::from_bytes(&b"TE"[..], v.as_bytes()).ok())
        .into_iter()
        .collect();
    let version = tiny_http::HTTPVersion(request.version.0, request.version.1);
    let mut w = BufWriter::with_capacity(16 * 1024, out);
    // tiny_http drops a Connection header from a response; a server that
    // closes after its answer says so (RFC 9112 9.6).
    let mut framed = AfterStatusLine {
        inner: &mut w,
        insert: (!keep).then_some(&b"Connection: close\r\n"[..]),
    };
    answer.raw_print(&mut framed, version, &te, request.method == "HEAD", None)?;
    w.flush()
}

/// Writes `insert` after the first line written through it.
struct AfterStatusLine<'a, W: Write> {
    inner: &'a mut W,
    insert: Option<&'static [u8]>,
}

impl<W: Write> Write for AfterStatusLine<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Some(extra) = self.insert {
            if let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
                self.inner.write_all(&buf[..i + 2])?;
                self.inner.write_all(extra)?;
                self.inner.write_all(&buf[i + 2..])?;
                self.insert = None;
                return Ok(buf.len());
            }
        }
        self.inner.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Hello;

    impl Service for Hello {
        fn answer(&self, _: &Request) -> tiny_http::ResponseBox {
            tiny_http::Response::from_string("hello").boxed()
        }
    }

    fn front(limits: Limits) -> Front {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        Front::start(listener, limits, Arc::new(Hello), None).unwrap()
    }

    fn is_open(c: &TcpStream) -> bool {
        c.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 64];
        let open = matches!((&*c).read(&mut buf), Err(e) if e.kind() == io::ErrorKind::WouldBlock);
        c.set_nonblocking(false).unwrap();
        open
    }

    #[test]
    fn slow_heads_wait_for_their_timeout_then_close() {
        let f = front(Limits {
            head_timeout: Duration::from_millis(500),
            ..Limits::default()
        });
        let mut slow = TcpStream::connect(f.local_addr()).unwrap();
        slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap();
        std::thread::sleep(Duration::from_millis(100));
        assert!(is_open(&slow));
        let mut answer = String::new();
        slow.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        slow.read_to_string(&mut answer).unwrap();
        assert_eq!(answer, "", "closed without an answer");
        assert_eq!(f.stats.timed_out.load(Ordering::Relaxed), 1);
        f.stop();
    }

    #[test]
    fn the_oldest_waiting_connection_makes_room() {
        let f = front(Limits {
            max_connections: 2,
            ..Limits::default()
        });
        let a = TcpStream::connect(f.local_addr()).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        let b = TcpStream::connect(f.local_addr()).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        let mut c = TcpStream::connect(f.local_addr()).unwrap();
        c.write_all(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut answer = String::new();
        c.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with("hello"), "{answer}");
        assert!(!is_open(&a), "the oldest was closed");
        assert!(is_open(&b));
        assert_eq!(f.stats.evicted.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn many_idle_connections_are_held_by_one_thread() {
        let f = front(Limits::default());
        let conns: Vec<TcpStream> = (0..2000)
            .map(|_| TcpStream::connect(f.local_addr()).unwrap())
            .collect();
        let deadline = Instant::now() + Duration::from_secs(20);
        while f.stats.accepted.load(Ordering::Relaxed) < 2000 {
            assert!(Instant::now() < deadline, "not all accepted");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(conns.iter().all(is_open));
        assert_eq!(f.stats.evicted.load(Ordering::Relaxed), 0);
        f.stop();
    }
}
