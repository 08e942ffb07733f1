//! epoll(7): which of many sockets can be read, from one thread, so that a
//! connection that has not sent a whole request costs no thread of its
//! own. Each wait costs what is ready, not what is watched (poll(2) hands
//! the kernel every descriptor on every call: ten thousand idle sockets
//! made each accept slower).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

const EPOLLIN: u32 = 0x001;
const EPOLLRDHUP: u32 = 0x2000;
const EPOLL_CTL_ADD: i32 = 1;
const EPOLL_CTL_DEL: i32 = 2;
const EPOLL_CLOEXEC: i32 = 0o2_000_000;

/// `struct epoll_event`: packed on x86_64 only, as the kernel's ABI has it.
#[cfg_attr(target_arch = "x86_64", repr(C, packed))]
#[cfg_attr(not(target_arch = "x86_64"), repr(C))]
#[derive(Clone, Copy)]
struct EpollEvent {
    events: u32,
    data: u64,
}

extern "C" {
    fn listen(fd: i32, backlog: i32) -> i32;
    fn epoll_create1(flags: i32) -> i32;
    fn epoll_ctl(epfd: i32, op: i32, fd: i32, event: *mut EpollEvent) -> i32;
    fn epoll_wait(epfd: i32, events: *mut EpollEvent, maxevents: i32, timeout: i32) -> i32;
}

fn check(rc: i32) -> io::Result<i32> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// Lets `backlog` connections wait for `accept` (Rust's listeners ask for
/// 128): a burst of clients then completes its handshakes at once instead
/// of waiting, each, for the accepting thread's next turn. Linux caps it
/// at `net.core.somaxconn`.
pub fn raise_backlog(listener: &std::net::TcpListener, backlog: i32) -> io::Result<()> {
    // SAFETY: a valid listening socket; listen() again only resizes its queue.
    check(unsafe { listen(listener.as_raw_fd(), backlog) })?;
    Ok(())
}

/// A set of descriptors watched for reading, each under a token.
pub struct Readiness {
    fd: OwnedFd,
    events: Vec<EpollEvent>,
}

impl Readiness {
    /// An empty set.
    pub fn new() -> io::Result<Readiness> {
        // SAFETY: no pointers; the result is checked before use.
        let fd = check(unsafe { epoll_create1(EPOLL_CLOEXEC) })?;
        Ok(Readiness {
            // SAFETY: a descriptor epoll_create1 just returned, owned here only.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            events: vec![EpollEvent { events: 0, data: 0 }; 1024],
        })
    }

    /// Watches `fd` for data to read (or a hang-up), reported as `token`.
    pub fn add(&self, fd: RawFd, token: u64) -> io::Result<()> {
        let mut event = EpollEvent {
            events: EPOLLIN | EPOLLRDHUP,
            data: token,
        };
        // SAFETY: `event` is a live epoll_event for the call's duration.
        check(unsafe { epoll_ctl(self.fd.as_raw_fd(), EPOLL_CTL_ADD, fd, &mut event) })?;
        Ok(())
    }

    /// Stops watching `fd`.
    pub fn remove(&self, fd: RawFd) {
        let mut event = EpollEvent { events: 0, data: 0 };
        // SAFETY: as in `add`; a descriptor not watched only fails the call.
        unsafe { epoll_ctl(self.fd.as_raw_fd(), EPOLL_CTL_DEL, fd, &mut event) };
    }

    /// Waits until something is ready or `timeout` passes (`None`: no
    /// limit); the tokens ready, in `ready`. An interrupted wait is empty.
    pub fn wait(&mut self, ready: &mut Vec<u64>, timeout: Option<Duration>) -> io::Result<()> {
        ready.clear();
        let ms = match timeout {
            None => -1,
            // Round up: a wait of 0.4 ms must not spin as a wait of 0.
            Some(t) => t.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32,
        };
        // SAFETY: `events` is a live buffer of `len` epoll_events.
        let n = unsafe {
            epoll_wait(
                self.fd.as_raw_fd(),
                self.events.as_mut_ptr(),
                self.events.len() as i32,
                ms,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::Interrupted {
                Ok(())
            } else {
                Err(e)
            };
        }
        // A copy of the (possibly packed) field, never a reference to it.
        ready.extend(self.events[..n as usize].iter().map(|e| e.data));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn readiness_of_a_socket_pair() {
        let (mut a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let mut r = Readiness::new().unwrap();
        r.add(b.as_raw_fd(), 7).unwrap();
        let mut ready = Vec::new();
        r.wait(&mut ready, Some(Duration::from_millis(10))).unwrap();
        assert!(ready.is_empty());
        a.write_all(b"x").unwrap();
        r.wait(&mut ready, Some(Duration::from_secs(5))).unwrap();
        assert_eq!(ready, [7]);
        r.remove(b.as_raw_fd());
        r.wait(&mut ready, Some(Duration::from_millis(10))).unwrap();
        assert!(ready.is_empty(), "no longer watched");
        r.add(b.as_raw_fd(), 8).unwrap();
        drop(a);
        r.wait(&mut ready, None).unwrap();
        assert_eq!(ready, [8]);
    }
}
