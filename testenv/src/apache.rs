//! Apache httpd (Debian `apache2`) as a real Digest forward proxy for the tests:
//! mod_proxy + mod_proxy_connect, with mod_auth_digest inside `<Proxy "*">`, started on
//! loopback in the foreground with its own configuration (`apache2 -f FILE -DFOREGROUND`),
//! every path inside its own folder. Started as root it drops to `www-data` (or `nobody`):
//! the folder and the password file are handed to that user, as squid's are.

use std::fmt::Write as _;
use std::fs;
use std::io;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use md5::{Digest as _, Md5};

use crate::squid::harness::{self, ManagedChild};

/// Where Debian keeps the httpd binary and its modules.
const APACHE_BINARIES: &[&str] = &["/usr/sbin/apache2", "/usr/sbin/httpd"];
const MODULE_DIRS: &[&str] = &["/usr/lib/apache2/modules", "/usr/lib64/httpd/modules"];
/// The modules the proxy needs (unixd and the core are built in on Debian).
const MODULES: &[(&str, &str)] = &[
    ("mpm_event_module", "mod_mpm_event.so"),
    ("authn_core_module", "mod_authn_core.so"),
    ("authn_file_module", "mod_authn_file.so"),
    ("authz_core_module", "mod_authz_core.so"),
    ("authz_user_module", "mod_authz_user.so"),
    ("auth_digest_module", "mod_auth_digest.so"),
    ("proxy_module", "mod_proxy.so"),
    ("proxy_connect_module", "mod_proxy_connect.so"),
];
/// The realm of the Digest challenge.
pub const REALM: &str = "dtun-apache";

fn binary() -> Option<PathBuf> {
    APACHE_BINARIES
        .iter()
        .map(PathBuf::from)
        .find(|p| harness::is_executable(p))
}

fn module_dir() -> Option<PathBuf> {
    MODULE_DIRS
        .iter()
        .map(PathBuf::from)
        .find(|dir| MODULES.iter().all(|(_, file)| dir.join(file).exists()))
}

/// `None` when Apache and its proxy and Digest modules are installed; otherwise what is
/// missing, with the Debian package.
pub fn apache_missing() -> Option<String> {
    if binary().is_none() {
        return Some("Apache httpd (Debian: apache2)".into());
    }
    if module_dir().is_none() {
        return Some(
            "Apache's mod_proxy, mod_proxy_connect and mod_auth_digest (Debian: apache2)".into(),
        );
    }
    None
}

/// What [`Apache::start`] runs.
#[derive(Debug, Clone, Default)]
pub struct ApacheOptions {
    /// Folder for the configuration, the password file, the logs and the pid file.
    pub dir: PathBuf,
    /// Digest users `(name, password)`; names without `:`.
    pub users: Vec<(String, String)>,
    /// The ports CONNECT may reach (`AllowCONNECT`), on any host (the tests use loopback).
    pub allowed_ports: Vec<u16>,
    /// `KeepAlive Off`: the connection closes after each reply (a 407 included).
    pub no_keep_alive: bool,
}

/// A running Apache; dropping it stops it.
#[derive(Debug)]
pub struct Apache {
    process: ManagedChild,
    dir: PathBuf,
    port: u16,
}

impl Apache {
    /// Writes the configuration and starts Apache; returns once its port accepts
    /// connections (at most 20 s).
    pub fn start(opts: ApacheOptions) -> io::Result<Apache> {
        let bin = binary()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "apache2 is not installed"))?;
        let modules = module_dir()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "apache2 modules missing"))?;
        fs::create_dir_all(&opts.dir)?;
        let dir = opts.dir.canonicalize()?;
        harness::check_path_for_config(&dir, "apache")?;
        let run_as = if harness::effective_uid() == Some(0) {
            ["www-data", "nobody"].iter().find_map(|name| {
                harness::lookup_user(name).map(|(uid, gid)| (name.to_string(), uid, gid))
            })
        } else {
            None
        };
        let owner = run_as.as_ref().map(|(_, uid, gid)| (*uid, *gid));
        harness::prepare_dir_for(&dir, owner)?;
        let passwd = dir.join("digest.passwd");
        let mut text = String::new();
        for (user, password) in &opts.users {
            let ha1 = Md5::digest(format!("{user}:{REALM}:{password}").as_bytes());
            let hex = ha1.iter().fold(String::new(), |mut s, b| {
                let _ = write!(s, "{b:02x}");
                s
            });
            let _ = writeln!(text, "{user}:{REALM}:{hex}");
        }
        fs::write(&passwd, text)?;
        harness::set_owner_mode(&passwd, owner, 0o600)?;
        let port = harness::free_ports(1)
            .into_iter()
            .next()
            .ok_or_else(|| io::Error::other("no free port"))?;
        let d = dir.display();
        let mut conf = String::new();
        let mut line = |s: String| {
            conf.push_str(&s);
            conf.push('\n');
        };
        line("# Written by dtun-testenv (apache.rs) for one test run.".into());
        line(format!("ServerRoot {d}"));
        line(format!("DefaultRuntimeDir {d}"));
        line(format!("PidFile {d}/httpd.pid"));
        line(format!("ErrorLog {d}/error.log"));
        line("LogLevel info auth_digest:debug proxy:debug".into());
        line("ServerName localhost".into());
        line(format!("Listen 127.0.0.1:{port}"));
        for (name, file) in MODULES {
            line(format!("LoadModule {name} {}/{file}", modules.display()));
        }
        if let Some((name, _, _)) = &run_as {
            line(format!("User {name}"));
            line(format!("Group #{}", owner.map_or(0, |(_, gid)| gid)));
        }
        line("StartServers 1".into());
        line("ServerLimit 2".into());
        line("ThreadsPerChild 16".into());
        line("MaxRequestWorkers 32".into());
        line(format!(
            "KeepAlive {}",
            if opts.no_keep_alive { "Off" } else { "On" }
        ));
        line("ProxyRequests On".into());
        let ports: Vec<String> = opts.allowed_ports.iter().map(u16::to_string).collect();
        line(format!("AllowCONNECT {}", ports.join(" ")));
        line("<Proxy \"*\">".into());
        line("    AuthType Digest".into());
        line(format!("    AuthName \"{REALM}\""));
        line("    AuthDigestProvider file".into());
        line(format!("    AuthUserFile {}", passwd.display()));
        line("    Require valid-user".into());
        line("</Proxy>".into());
        let conf_path = dir.join("httpd.conf");
        fs::write(&conf_path, conf)?;
        harness::set_owner_mode(&conf_path, owner, 0o644)?;
        let mut command = Command::new(&bin);
        command
            .arg("-f")
            .arg(&conf_path)
            .arg("-DFOREGROUND")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(dir.join("httpd.stderr"))?);
        let mut process = ManagedChild::spawn(&mut command, "apache2")?;
        let begin = Instant::now();
        loop {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            if let Some(status) = process.try_exit_status()? {
                return Err(io::Error::other(format!(
                    "apache2 exited ({status}): {}{}",
                    harness::read_tail(&dir.join("httpd.stderr"), 20),
                    harness::read_tail(&dir.join("error.log"), 20)
                )));
            }
            if begin.elapsed() > harness::READY_TIMEOUT {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "apache2 not ready: {}",
                        harness::read_tail(&dir.join("error.log"), 20)
                    ),
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Apache { process, dir, port })
    }

    /// The proxy port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The end of the error log, for failure messages.
    pub fn log_tail(&self) -> String {
        harness::read_tail(&self.dir.join("error.log"), 40)
    }

    /// The pid of the parent process.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }
}

/// Where [`Apache`]'s files live (for tests that read them).
pub fn config_path(dir: &Path) -> PathBuf {
    dir.join("httpd.conf")
}
