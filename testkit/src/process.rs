//! The bridge binary as a child process: started with exactly the environment given, stopped with
//! SIGTERM (then SIGKILL) or killed outright. The binary's path comes from the caller: integration tests
//! pass `env!("CARGO_BIN_EXE_ryze-integrations")`, the bench the binary next to its own.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Starts `exe` with exactly `env` (nothing inherited), its output going to `stdout` and `stderr`.
pub fn spawn<K, V>(
    exe: &Path,
    env: impl IntoIterator<Item = (K, V)>,
    stdout: Stdio,
    stderr: Stdio,
) -> std::io::Result<Child>
where
    K: AsRef<std::ffi::OsStr>,
    V: AsRef<std::ffi::OsStr>,
{
    Command::new(exe).env_clear().envs(env).stdin(Stdio::null()).stdout(stdout).stderr(stderr).spawn()
}

/// Sends `signal` (`TERM`, `STOP`, `CONT`, …) to process `pid`; false if `kill` failed.
pub fn signal(pid: u32, signal: &str) -> bool {
    Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// SIGTERM, then up to `within` for the exit (blocking this thread), then SIGKILL. Answers the exit status
/// (`None`: it had to be killed).
pub fn terminate(mut child: Child, within: Duration) -> Option<ExitStatus> {
    signal(child.id(), "TERM");
    let deadline = Instant::now() + within;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            kill(child);
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// As [`terminate`], without blocking the caller's runtime (an actix one: fakes running on it go on
/// answering meanwhile).
pub async fn stop(mut child: Child, within: Duration) -> Option<ExitStatus> {
    signal(child.id(), "TERM");
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
    kill(child);
    None
}

/// SIGKILL (a crash, no chance to clean up), and reaps the process.
pub fn kill(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}
