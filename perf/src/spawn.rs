//! Starting and stopping the servers a run drives (`--spawn`), and reading their CPU
//! time from `/proc`.
//!
//! Every server listens on 127.0.0.1 on a port the kernel picked free. Cairn is the
//! release binary of this workspace (built if missing); it is ready when it prints
//! `cairn listening on ADDR`, and it is stopped with SIGTERM, its graceful stop; it gets
//! the run's tokens through `CAIRN_AUTH_TOKEN` and `CAIRN_ADMIN_TOKEN` (a flag would show
//! them in the process list), and neither variable when the run has none. Redis is
//! `redis-server` without persistence, ready when it answers PING. The null server is
//! this binary's `null-server` subcommand. A server that does not stop within
//! `STOP_TIMEOUT` after SIGTERM is killed.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::cairn_target::{Tokens, ADMIN_TOKEN_VARIABLE, AUTH_TOKEN_VARIABLE};
use crate::target::TargetKind;

/// How long a spawned server may take to say it is ready.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a server may take to stop after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Clock ticks per second in `/proc/PID/stat` (`getconf CLK_TCK`; 100 on Linux).
const CLOCK_TICKS_PER_S: f64 = 100.0;

/// A server this run started.
pub struct Server {
    child: Child,
    /// Where it listens.
    pub addr: String,
    /// Its process id, for `/proc`.
    pub pid: u32,
    /// What it is.
    pub kind: TargetKind,
}

impl Server {
    /// Starts a server of `kind` (`shards`, `tokens` and the extra `cairn serve` flags
    /// `cairn_args` apply to Cairn) and waits until it is ready.
    pub fn spawn(kind: TargetKind, shards: u32, tokens: &Tokens, cairn_args: &[String]) -> Result<Server> {
        let addr = format!("127.0.0.1:{}", free_port()?);
        let server = match kind {
            TargetKind::Cairn => {
                let binary = cairn_binary()?;
                let mut command = Command::new(&binary);
                for (variable, token) in [(AUTH_TOKEN_VARIABLE, &tokens.auth), (ADMIN_TOKEN_VARIABLE, &tokens.admin)] {
                    match token {
                        Some(token) => command.env(variable, token.expose()),
                        None => command.env_remove(variable),
                    };
                }
                let child = command
                    .args(["serve", "--listen", &addr, "--shards", &shards.to_string()])
                    .args(cairn_args)
                    .stdout(Stdio::piped())
                    .stderr(Stdio::inherit())
                    .spawn()
                    .with_context(|| format!("cannot start {}", binary.display()))?;
                wait_for_line(child, &addr, kind, "cairn listening on")?
            }
            TargetKind::Null => {
                let binary = std::env::current_exe().context("cannot find cairn-perf itself")?;
                let child = Command::new(binary)
                    .args(["null-server", "--listen", &addr])
                    .stdout(Stdio::piped())
                    .stderr(Stdio::inherit())
                    .spawn()
                    .context("cannot start the null server")?;
                wait_for_line(child, &addr, kind, "null server listening on")?
            }
            TargetKind::Redis => {
                let binary = find_in_path("redis-server").context(
                    "redis-server is not installed; install it with `apt-get install redis-server` (or pass --addr of a \
                     running one)",
                )?;
                let port = addr.rsplit(':').next().expect("an address has a port").to_string();
                let child = Command::new(binary)
                    .args(["--port", &port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::inherit())
                    .spawn()
                    .context("cannot start redis-server")?;
                let pid = child.id();
                let server = Server { child, addr: addr.clone(), pid, kind };
                wait_for_pong(&addr)?;
                server
            }
        };
        Ok(server)
    }

    /// The server's user + system CPU time so far.
    pub fn cpu_time(&self) -> Option<Duration> {
        cpu_time(self.pid).ok()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // SIGTERM is each server's graceful stop; `Child::kill` would send SIGKILL.
        let _ = Command::new("kill").args(["-TERM", &self.pid.to_string()]).status();
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!(
            "{} (pid {}) did not stop within {STOP_TIMEOUT:?} of SIGTERM; killing it",
            self.kind.name(),
            self.pid
        );
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("cannot bind 127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// User + system CPU time of process `pid` (all its threads), from `/proc/PID/stat`.
pub fn cpu_time(pid: u32) -> Result<Duration> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    parse_cpu_time(&text)
}

/// Resident set size of process `pid`, in KiB, from the `VmRSS` line of
/// `/proc/PID/status`.
pub fn rss_kib(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    parse_rss_kib(&text).with_context(|| format!("no VmRSS line in {path}"))
}

fn parse_rss_kib(status: &str) -> Option<u64> {
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// CPU time of this process.
pub fn own_cpu_time() -> Duration {
    std::fs::read_to_string("/proc/self/stat").ok().and_then(|text| parse_cpu_time(&text).ok()).unwrap_or_default()
}

/// `utime` and `stime` are fields 14 and 15 of `/proc/PID/stat`; the command name (field
/// 2) may contain spaces and parentheses, so fields are counted after its last `)`.
fn parse_cpu_time(stat: &str) -> Result<Duration> {
    let rest = stat.rsplit_once(')').context("no ')' in /proc stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |index: usize| -> Result<f64> {
        Ok(fields.get(index).context("short /proc stat")?.parse::<u64>().context("bad /proc stat field")? as f64)
    };
    // After the name, field 3 (state) is index 0, so field 14 is index 11.
    let seconds = (ticks(11)? + ticks(12)?) / CLOCK_TICKS_PER_S;
    Ok(Duration::from_secs_f64(seconds))
}

/// The `cairn` release binary of this workspace, built first if it is missing.
fn cairn_binary() -> Result<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("perf/ lives in the workspace").to_path_buf();
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("target"));
    let binary = target.join("release").join("cairn");
    if !binary.exists() {
        eprintln!("building the cairn server (cargo build --release --bin cairn)");
        let status = Command::new("cargo")
            .args(["build", "--release", "--bin", "cairn"])
            .current_dir(&root)
            .status()
            .context("cannot run cargo")?;
        if !status.success() {
            bail!("cargo build --release --bin cairn failed");
        }
    }
    Ok(binary)
}

fn find_in_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?.to_str()?.split(':').map(|dir| Path::new(dir).join(name)).find(|path| path.exists())
}

/// Waits for the readiness line on the child's stdout, then keeps draining stdout in the
/// background so the server never blocks on a full pipe.
fn wait_for_line(mut child: Child, addr: &str, kind: TargetKind, ready: &str) -> Result<Server> {
    let stdout = child.stdout.take().expect("stdout is piped");
    let (sender, receiver) = mpsc::channel();
    let ready = ready.to_string();
    std::thread::spawn(move || {
        let mut said = false;
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if !said && line.contains(&ready) {
                said = true;
                let _ = sender.send(());
            }
        }
    });
    let pid = child.id();
    let mut server = Server { child, addr: addr.to_string(), pid, kind };
    match receiver.recv_timeout(READY_TIMEOUT) {
        Ok(()) => Ok(server),
        Err(_) => {
            let status = server.child.try_wait().ok().flatten();
            bail!("{} did not say it was ready within {READY_TIMEOUT:?} (exit status: {status:?})", kind.name())
        }
    }
}

fn wait_for_pong(addr: &str) -> Result<()> {
    let deadline = Instant::now() + READY_TIMEOUT;
    while Instant::now() < deadline {
        if let Ok(mut stream) = TcpStream::connect(addr) {
            let mut reply = [0u8; 7];
            if stream.write_all(b"PING\r\n").is_ok() && stream.read_exact(&mut reply).is_ok() && &reply == b"+PONG\r\n"
            {
                return Ok(());
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("redis-server at {addr} did not answer PING within {READY_TIMEOUT:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_counts_user_and_system_ticks() {
        let stat = "4242 (cairn (x) y) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 3 0 100";
        assert_eq!(parse_cpu_time(stat).unwrap(), Duration::from_secs(3));
        assert!(parse_cpu_time("1 (short) S 1 2").is_err());
    }

    #[test]
    fn rss_comes_from_the_vmrss_line() {
        let status = "Name:\tcairn\nVmPeak:\t  900 kB\nVmRSS:\t   12345 kB\nThreads:\t3\n";
        assert_eq!(parse_rss_kib(status), Some(12_345));
        assert_eq!(parse_rss_kib("Name:\tzombie\n"), None);
        assert!(rss_kib(std::process::id()).unwrap() > 0);
    }

    #[test]
    fn this_process_has_a_cpu_time() {
        let spin = Instant::now();
        while spin.elapsed() < Duration::from_millis(30) {}
        assert!(own_cpu_time() > Duration::ZERO);
    }
}
