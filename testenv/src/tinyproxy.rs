//! A real tinyproxy (1.11) as a CONNECT proxy for tests.
//!
//! [`Tinyproxy::start`] runs tinyproxy in the foreground (`tinyproxy -d -c FILE`) on one port of
//! 127.0.0.1, optionally with Basic auth. Its configuration, log and pid file live in the
//! directory the caller passes; dropping the handle stops it. It answers a successful CONNECT
//! with `HTTP/1.0 200 Connection established` (HTTP/1.0, unlike squid), and is slow on small
//! round trips (about 80 ms each): fine for correctness tests, not for benchmarks.

use std::fs;
use std::io;
use std::net::{Ipv4Addr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::squid::harness::{
    check_path_for_config, find_program, free_ports, read_tail, ManagedChild, READY_TIMEOUT,
};

/// How many times [`Tinyproxy::start`] picks a fresh port when the previous one was taken.
const START_ATTEMPTS: usize = 4;

/// What tinyproxy prints when it cannot bind its port.
const BIND_FAILURE: &str = "Could not create listening sockets";

/// Whether tinyproxy is installed and runs: [`tinyproxy_missing`] finds nothing missing.
pub fn tinyproxy_available() -> bool {
    tinyproxy_missing().is_none()
}

/// What this machine lacks to run [`Tinyproxy`], or `None`: a `tinyproxy` whose `-v` succeeds
/// and names it.
///
/// The answer is computed once per process.
pub fn tinyproxy_missing() -> Option<String> {
    static MISSING: OnceLock<Option<String>> = OnceLock::new();
    MISSING
        .get_or_init(|| {
            let Some(tinyproxy) = find_program("tinyproxy") else {
                return Some("tinyproxy (Debian: tinyproxy)".to_string());
            };
            let runs = Command::new(&tinyproxy)
                .arg("-v")
                .output()
                .map(|out| {
                    out.status.success()
                        && String::from_utf8_lossy(&out.stdout).contains("tinyproxy")
                })
                .unwrap_or(false);
            (!runs).then(|| {
                format!(
                    "a tinyproxy that runs ({} -v failed or did not print its name)",
                    tinyproxy.display()
                )
            })
        })
        .clone()
}

/// What [`Tinyproxy::start`] should run.
#[derive(Debug, Clone, Default)]
pub struct TinyproxyOptions {
    /// Directory for `tinyproxy.conf`, `tinyproxy.log`, `tinyproxy.pid` and the captured stderr.
    /// Created if missing. Must not contain whitespace, `"` or `#`.
    pub dir: PathBuf,
    /// Basic auth `(user, password)` required from every client. tinyproxy's configuration
    /// parser accepts only `[-A-Za-z0-9._]` in both: anything else is rejected with
    /// `InvalidInput`.
    pub basic_auth: Option<(String, String)>,
    /// CONNECT is allowed to these ports (any host); other ports are answered
    /// `403 Access violation`. Empty: tinyproxy's default, CONNECT to every port.
    pub allowed_ports: Vec<u16>,
}

impl TinyproxyOptions {
    /// Options with only the directory set: no auth, CONNECT to every port.
    pub fn new(dir: impl Into<PathBuf>) -> TinyproxyOptions {
        TinyproxyOptions {
            dir: dir.into(),
            ..TinyproxyOptions::default()
        }
    }
}

/// A running tinyproxy. Dropping it stops it (SIGTERM, then SIGKILL after a bounded wait) and
/// reaps it; tinyproxy's graceful stop takes about 1 s.
///
/// Without credentials (when [`TinyproxyOptions::basic_auth`] is set) or with wrong ones it
/// answers `HTTP/1.0 407 Proxy Authentication Required`; CONNECT to a port not allowed is
/// answered `HTTP/1.1 403 Access violation`.
#[derive(Debug)]
pub struct Tinyproxy {
    process: ManagedChild,
    dir: PathBuf,
    port: u16,
    startup: Duration,
}

impl Tinyproxy {
    /// Writes the configuration into `opts.dir` and starts tinyproxy, returning once its port
    /// accepts connections (at most 20 s).
    ///
    /// tinyproxy runs as the current user (as root it only warns that no `User` is set), so no
    /// file permissions need adjusting.
    ///
    /// Errors: tinyproxy is not installed (`NotFound`), invalid options (`InvalidInput`),
    /// tinyproxy exited or did not become ready in time (the message contains its log).
    pub fn start(opts: TinyproxyOptions) -> io::Result<Tinyproxy> {
        let begin = Instant::now();
        let tinyproxy = find_program("tinyproxy")
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "tinyproxy is not installed"))?;
        if let Some((user, password)) = &opts.basic_auth {
            for (what, value) in [("user", user), ("password", password)] {
                let ok = !value.is_empty()
                    && value
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'));
                if !ok {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!(
                            "tinyproxy accepts only [-A-Za-z0-9._] in a BasicAuth {what}, \
                             got {value:?}"
                        ),
                    ));
                }
            }
        }
        if opts.allowed_ports.contains(&0) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "port 0 in tinyproxy options",
            ));
        }
        fs::create_dir_all(&opts.dir)?;
        let dir = opts.dir.canonicalize()?;
        check_path_for_config(&dir, "tinyproxy")?;

        let conf_path = dir.join("tinyproxy.conf");
        let log_path = dir.join("tinyproxy.log");
        let stderr_path = dir.join("tinyproxy.stderr");
        let mut last_error = None;
        for _ in 0..START_ATTEMPTS {
            let port = free_ports(1)[0];
            fs::write(&conf_path, config(&dir, &opts, port))?;
            // tinyproxy appends; start each attempt with an empty log.
            let _ = fs::remove_file(&log_path);
            let stderr = fs::File::create(&stderr_path)?;
            let mut command = Command::new(&tinyproxy);
            command
                .arg("-d")
                .arg("-c")
                .arg(&conf_path)
                .current_dir(&dir)
                .stdout(stderr.try_clone()?)
                .stderr(stderr);
            let mut process = ManagedChild::spawn(&mut command, "tinyproxy")?;
            match wait_ready(&mut process, port, &log_path, &stderr_path) {
                Ok(()) => {
                    return Ok(Tinyproxy {
                        process,
                        dir,
                        port,
                        startup: begin.elapsed(),
                    });
                }
                Err((retry, err)) => {
                    process.stop();
                    if !retry {
                        return Err(err);
                    }
                    last_error = Some(err);
                }
            }
        }
        Err(last_error.unwrap_or_else(|| io::Error::other("tinyproxy did not start")))
    }

    /// The port tinyproxy listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// tinyproxy's process id.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// The directory holding the configuration and log.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// How long [`Tinyproxy::start`] took, from the call until the port accepted connections.
    pub fn startup_time(&self) -> Duration {
        self.startup
    }

    /// The last lines of tinyproxy's log and stderr, for failure messages.
    pub fn log_tail(&self) -> String {
        log_tail(
            &self.dir.join("tinyproxy.log"),
            &self.dir.join("tinyproxy.stderr"),
        )
    }
}

/// The tinyproxy configuration.
fn config(dir: &Path, opts: &TinyproxyOptions, port: u16) -> String {
    let d = dir.display();
    let mut c = String::from("# Written by dtun-testenv (tinyproxy.rs) for one test run.\n");
    c.push_str(&format!("Port {port}\n"));
    c.push_str("Listen 127.0.0.1\n");
    c.push_str("Allow 127.0.0.1\n");
    c.push_str("Timeout 600\n");
    c.push_str("MaxClients 200\n");
    c.push_str("DisableViaHeader Yes\n");
    for allowed in &opts.allowed_ports {
        c.push_str(&format!("ConnectPort {allowed}\n"));
    }
    if let Some((user, password)) = &opts.basic_auth {
        c.push_str(&format!("BasicAuth {user} {password}\n"));
    }
    c.push_str("LogLevel Info\n");
    c.push_str(&format!("LogFile \"{d}/tinyproxy.log\"\n"));
    c.push_str(&format!("PidFile \"{d}/tinyproxy.pid\"\n"));
    c
}

/// Polls until tinyproxy logs its main loop and the port takes a connection. On failure the
/// flag says whether a fresh port may help (the port was taken).
fn wait_ready(
    process: &mut ManagedChild,
    port: u16,
    log: &Path,
    stderr: &Path,
) -> Result<(), (bool, io::Error)> {
    let deadline = Instant::now() + READY_TIMEOUT;
    let mut backoff = Duration::from_millis(2);
    loop {
        match process.try_exit_status() {
            Ok(Some(status)) => {
                let taken = fs::read_to_string(stderr)
                    .unwrap_or_default()
                    .contains(BIND_FAILURE);
                let err = io::Error::new(
                    if taken {
                        io::ErrorKind::AddrInUse
                    } else {
                        io::ErrorKind::Other
                    },
                    format!(
                        "tinyproxy exited during startup ({status}):\n{}",
                        log_tail(log, stderr)
                    ),
                );
                return Err((taken, err));
            }
            Ok(None) => {}
            Err(err) => return Err((false, err)),
        }
        let started = fs::read_to_string(log)
            .unwrap_or_default()
            .contains("Accepting connections");
        if started && TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            let err = io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "tinyproxy not ready after {READY_TIMEOUT:?}:\n{}",
                    log_tail(log, stderr)
                ),
            );
            return Err((false, err));
        }
        std::thread::sleep(backoff);
        backoff = (backoff * 2).min(Duration::from_millis(50));
    }
}

/// The last lines of the log plus the captured stderr, if any.
fn log_tail(log: &Path, stderr: &Path) -> String {
    let mut out = format!("--- {} (last lines) ---\n", log.display());
    out.push_str(&read_tail(log, 40));
    let err = read_tail(stderr, 20);
    if !err.trim().is_empty() {
        out.push_str(&format!("--- {} ---\n{err}", stderr.display()));
    }
    out
}
