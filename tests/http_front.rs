//! The HTTP side under a flood of slow and idle connections, and bad
//! requests: heads are read without a thread per connection, scrapes still
//! answer, memory and threads stay bounded, and the slow ones are closed
//! when their time is up.

mod support;

use std::io::{Read, Write};
use std::time::Duration;

use support::apiserver::{FakeApiServer, ServerAuth};
use support::exporter::{Exporter, FAST};
use support::flood::{open_fds, raw_status, threads, timed_get, Flood};
use support::proc_status_kib;
use support::registry::{Auth, Registry};

fn exporter() -> (Registry, FakeApiServer, Exporter) {
    let reg = Registry::start(Auth::None);
    reg.push("team/app", "v1");
    let api = FakeApiServer::start(ServerAuth::Tokens(vec!["hf".into()]));
    api.deploy("h", "app", &reg.image("team/app:v1"));
    let kc = api.kubeconfig(&FakeApiServer::token_user("hf"));
    let mut args: Vec<&str> = FAST.to_vec();
    args.extend(["--plain-http-registries", &reg.host]);
    let e = Exporter::start(&kc, &args);
    e.wait_status("h", "app", "app", "available");
    (reg, api, e)
}

#[test]
fn a_flood_of_slow_connections_cannot_stop_a_scrape() {
    let (_reg, _api, e) = exporter();
    let pid = e.pid();
    let (rss, thr, fds) = (proc_status_kib(pid, "VmRSS:"), threads(pid), open_fds(pid));
    // Half send part of a head and stop; half send nothing at all.
    let slow = Flood::open(e.addr(), 1500, b"GET /metrics HTTP/1.1\r\nHost: x\r\n");
    let idle = Flood::open(e.addr(), 1500, b"");
    assert_eq!(slow.refused + idle.refused, 0);
    for path in ["/healthz", "/metrics"] {
        let (status, took) = timed_get(e.addr(), path).expect(path);
        assert_eq!(status, 200, "{path}");
        assert!(took < Duration::from_secs(1), "{path} took {took:?}");
    }
    let grown = proc_status_kib(pid, "VmRSS:").saturating_sub(rss);
    assert!(grown < 10 * 1024, "RSS grew by {grown} KiB");
    // One front thread reads every head: no thread per connection.
    assert!(
        threads(pid) <= thr + 2,
        "{} threads, {thr} before",
        threads(pid)
    );
    let held = slow.still_open();
    assert!(
        held > 1400,
        "{held} held: they are held until their timeout"
    );
    // The head timeout (10 s) closes them all.
    support::wait_until(
        "the slow connections to be closed",
        Duration::from_secs(25),
        || slow.still_open() == 0 && idle.still_open() == 0,
    );
    assert!(
        open_fds(pid) <= fds + 8,
        "{} fds, {fds} before",
        open_fds(pid)
    );
    assert!(!e.log().contains("panicked"), "{}", e.log());
}

#[test]
fn oversized_and_malformed_requests_are_refused_whole() {
    let (_reg, _api, e) = exporter();
    let long_url = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(9000));
    assert_eq!(raw_status(e.addr(), long_url.as_bytes()), Some(414));
    let big_head = format!(
        "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Pad: {}\r\n\r\n",
        "a".repeat(20_000)
    );
    assert_eq!(raw_status(e.addr(), big_head.as_bytes()), Some(431));
    assert_eq!(
        raw_status(
            e.addr(),
            b"GET / HTTP/1.1\r\nContent-Length: 999999\r\n\r\n"
        ),
        Some(413)
    );
    assert_eq!(
        raw_status(
            e.addr(),
            b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
        ),
        Some(501)
    );
    assert_eq!(raw_status(e.addr(), b"NONSENSE\r\n\r\n"), Some(400));
    assert_eq!(
        raw_status(
            e.addr(),
            b"POST /metrics HTTP/1.1\r\nContent-Length: 2\r\n\r\nab"
        ),
        Some(405)
    );
    // Nothing of the refused requests is kept: the exporter still answers.
    assert_eq!(timed_get(e.addr(), "/healthz").map(|(s, _)| s), Some(200));
}

#[test]
fn keep_alive_and_pipelining() {
    let (_reg, _api, e) = exporter();
    let mut c = std::net::TcpStream::connect(e.addr()).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // Two requests in one write, then a third after the answers.
    c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut seen = String::new();
    let mut buf = [0u8; 4096];
    while seen.matches("HTTP/1.1 200").count() < 2 {
        let n = c.read(&mut buf).unwrap();
        assert!(n > 0, "closed early: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    c.write_all(b"HEAD /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut rest = String::new();
    c.read_to_string(&mut rest).unwrap();
    assert!(rest.starts_with("HTTP/1.1 200"), "{rest}");
    assert!(
        rest.to_ascii_lowercase().contains("connection: close"),
        "{rest}"
    );
    // HEAD: a head and no body.
    assert!(rest.ends_with("\r\n\r\n"), "{rest}");
}
