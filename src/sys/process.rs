//! Running a helper program (a kubeconfig exec plugin, an image credential
//! provider) the way both need it: input on stdin, bounded output, and a
//! deadline after which the program is killed.

use std::io::{Read, Write};
use std::process::{Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What a program left.
pub struct Finished {
    /// How it ended: its exit status, or why there is none.
    pub status: Result<ExitStatus, Unfinished>,
    /// Its stdout, at most the limit given.
    pub stdout: Vec<u8>,
    /// Its stderr, at most the limit given (empty when not piped).
    pub stderr: Vec<u8>,
}

/// Why a program has no exit status.
#[derive(Debug)]
pub enum Unfinished {
    /// It did not end before the deadline, and was killed.
    Timeout,
    /// Waiting for it failed.
    Wait(std::io::Error),
}

/// Runs `cmd` with `stdin` (none: /dev/null) and stdout piped, reading at
/// most `limit` bytes of stdout (and of stderr, when the caller piped it);
/// kills it after `timeout`. Fails only when it cannot be started.
pub fn run(
    mut cmd: Command,
    stdin: Option<Vec<u8>>,
    limit: u64,
    timeout: Duration,
) -> Result<Finished, std::io::Error> {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped());
    let mut child = cmd.spawn()?;
    let input = child.stdin.take().zip(stdin).map(|(mut pipe, data)| {
        std::thread::spawn(move || {
            let _ = pipe.write_all(&data);
        })
    });
    let stdout = child.stdout.take().map(|r| read_bounded(r, limit));
    let stderr = child.stderr.take().map(|r| read_bounded(r, limit));
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Ok(status),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break Err(Unfinished::Timeout);
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => break Err(Unfinished::Wait(e)),
        }
    };
    if let Some(t) = input {
        let _ = t.join();
    }
    let joined = |t: Option<JoinHandle<Vec<u8>>>| t.and_then(|t| t.join().ok()).unwrap_or_default();
    let (stdout, stderr) = (joined(stdout), joined(stderr));
    Ok(Finished {
        status,
        stdout,
        stderr,
    })
}

fn read_bounded(r: impl Read + Send + 'static, limit: u64) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.take(limit).read_to_end(&mut buf);
        buf
    })
}
