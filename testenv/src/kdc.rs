//! A real MIT Kerberos KDC on loopback, for the Negotiate tests.
//!
//! [`Kdc::start`] writes a `krb5.conf` and a `kdc.conf` into a fresh temp folder, creates a
//! database for the realm [`REALM`] (`kdb5_util create -s`), adds a user principal
//! ([`USER`]), a second user whose keys go to a client keytab ([`KEYTAB_USER`]), and the service
//! principal `HTTP/localhost` whose keys go to the service keytab squid's helper reads, starts
//! `krb5kdc -n` on a free TCP port (no UDP: `udp_preference_limit = 1` makes the clients use
//! TCP), waits until it accepts connections, and `kinit`s the user into `FILE:<dir>/ccache`.
//! Dropping it stops the KDC and removes the folder.
//!
//! Nothing here touches the process's environment: programs that must use this KDC get
//! [`Kdc::env`] (`KRB5_CONFIG`, `KRB5_KDC_PROFILE`, `KRB5CCNAME`, a private replay cache).
//!
//! Debian packages: krb5-kdc, krb5-admin-server (kadmin.local), krb5-user (kinit).

use std::fs;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::ports::free_port;
use crate::squid::harness::find_program;

/// The test realm.
pub const REALM: &str = "DTUN.TEST";
/// The user `kinit`ed into [`Kdc::ccache`].
pub const USER: &str = "alice";
/// Its password.
pub const USER_PASSWORD: &str = "Kerb-pass-1";
/// A user whose keys are in [`Kdc::client_keytab`] (never `kinit`ed).
pub const KEYTAB_USER: &str = "agent";
/// The host of the service principal `HTTP/<host>`.
pub const SERVICE_HOST: &str = "localhost";

/// How long the KDC may take to accept connections.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How many times a start is retried when the picked port was taken meanwhile.
const START_ATTEMPTS: usize = 3;

const PROGRAMS: &[(&str, &str)] = &[
    ("krb5kdc", "krb5-kdc"),
    ("kdb5_util", "krb5-kdc"),
    ("kadmin.local", "krb5-admin-server"),
    ("kinit", "krb5-user"),
    ("klist", "krb5-user"),
    ("kvno", "krb5-user"),
];

/// `None` when the KDC programs are installed; otherwise what is missing, with the Debian
/// packages.
pub fn kdc_missing() -> Option<String> {
    let missing: Vec<String> = PROGRAMS
        .iter()
        .filter(|(name, _)| find_program(name).is_none())
        .map(|(name, pkg)| format!("{name} (Debian: {pkg})"))
        .collect();
    if missing.is_empty() {
        None
    } else {
        Some(format!("MIT Kerberos: {}", missing.join(", ")))
    }
}

/// squid's Kerberos Negotiate helper (`negotiate_kerberos_auth`, Debian squid-openssl).
pub fn negotiate_helper() -> Option<PathBuf> {
    crate::squid::helper("negotiate_kerberos_auth")
}

/// squid's Digest helper (`digest_file_auth`, Debian squid-openssl), for a proxy that offers
/// Negotiate and Digest side by side.
pub fn digest_helper() -> Option<PathBuf> {
    crate::squid::helper("digest_file_auth")
}

/// A running KDC with its realm, principals, keytabs and the user's credential cache.
pub struct Kdc {
    dir: PathBuf,
    child: Child,
    port: u16,
}

impl Kdc {
    /// Creates the realm and starts the KDC; see the module documentation.
    pub fn start() -> io::Result<Kdc> {
        if let Some(missing) = kdc_missing() {
            return Err(io::Error::new(io::ErrorKind::NotFound, missing));
        }
        let dir = temp_dir()?;
        let result = Self::setup(&dir);
        if result.is_err() {
            let _ = fs::remove_dir_all(&dir);
        }
        result
    }

    fn setup(dir: &Path) -> io::Result<Kdc> {
        let mut last = None;
        for _ in 0..START_ATTEMPTS {
            let port = free_port();
            write_configs(dir, port)?;
            if !dir.join("principal").exists() {
                create_realm(dir)?;
            }
            let mut kdc = Kdc {
                dir: dir.to_path_buf(),
                child: spawn_kdc(dir)?,
                port,
            };
            match kdc.wait_ready() {
                Ok(()) => {
                    kdc.kinit_user()?;
                    return Ok(kdc);
                }
                Err(err) => {
                    last = Some(err);
                    let _ = kdc.child.kill();
                    let _ = kdc.child.wait();
                    // Keep the folder for the next attempt: forget this Kdc without Drop.
                    std::mem::forget(kdc);
                }
            }
        }
        Err(last.unwrap_or_else(|| io::Error::other("the KDC did not start")))
    }

    /// Readiness by observation: the TCP port accepts, or the KDC exits (an error with its log).
    fn wait_ready(&mut self) -> io::Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        loop {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if let Some(status) = self.child.try_wait()? {
                return Err(io::Error::other(format!(
                    "krb5kdc exited with {status}: {}",
                    self.log_tail()
                )));
            }
            if Instant::now() > deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("krb5kdc did not listen on {addr}: {}", self.log_tail()),
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kinit_user(&self) -> io::Result<()> {
        let mut kinit = self.command("kinit")?;
        kinit.arg(format!("{USER}@{REALM}"));
        run_with_input(&mut kinit, format!("{USER_PASSWORD}\n").as_bytes())
    }

    /// `kinit`s [`USER`] into the credential cache `ccache` (a `FILE:` name) with a ticket
    /// that lives `lifetime` (`kinit -l`, whole seconds, at least 1): for the expired-ticket
    /// tests, with [`Kdc::wait_until_expired`].
    pub fn kinit_with_lifetime(&self, ccache: &str, lifetime: Duration) -> io::Result<()> {
        let mut kinit = self.command("kinit")?;
        kinit
            .env("KRB5CCNAME", ccache)
            .args([
                "-l",
                &format!("{}s", lifetime.as_secs().max(1)),
                "-c",
                ccache,
            ])
            .arg(format!("{USER}@{REALM}"));
        run_with_input(&mut kinit, format!("{USER_PASSWORD}\n").as_bytes())
    }

    /// Whether `ccache` holds a ticket that is still valid: `klist -s` (silent; exit status 0
    /// only when the cache can be read and its tickets have not expired).
    pub fn has_valid_ticket(&self, ccache: &str) -> io::Result<bool> {
        let status = self
            .command("klist")?
            .env("KRB5CCNAME", ccache)
            .args(["-s", "-c", ccache])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()?;
        Ok(status.success())
    }

    /// Whether the KDC still gives a service ticket for `HTTP/localhost` on the strength of
    /// the ticket-granting ticket in `ccache` (`kvno --no-store`: the cache is left as it
    /// was, without a service ticket a later client could use instead).
    pub fn kdc_accepts(&self, ccache: &str) -> io::Result<bool> {
        let status = self
            .command("kvno")?
            .env("KRB5CCNAME", ccache)
            .args(["-q", "--no-store", "-c", ccache])
            .arg(self.service_principal())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()?;
        Ok(status.success())
    }

    /// Waits, by observation, until the tickets in `ccache` have expired for every party:
    /// `klist -s` says so ([`Kdc::has_valid_ticket`]), then the KDC refuses them
    /// ([`Kdc::kdc_accepts`]; it compares whole seconds, so a ticket whose end is this very
    /// second still passes); each polled, at most `bound` in all.
    pub fn wait_until_expired(&self, ccache: &str, bound: Duration) -> io::Result<()> {
        let deadline = Instant::now() + bound;
        let timed_out = |what: &str| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the tickets in {ccache} still hold after {bound:?} ({what})"),
            )
        };
        while self.has_valid_ticket(ccache)? {
            if Instant::now() > deadline {
                return Err(timed_out("klist -s"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        while self.kdc_accepts(ccache)? {
            if Instant::now() > deadline {
                return Err(timed_out("the KDC still accepts them"));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(())
    }

    /// A command for the program `name` with this KDC's environment ([`Kdc::env`]).
    pub fn command(&self, name: &str) -> io::Result<Command> {
        let program = find_program(name)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("{name} not found")))?;
        let mut command = Command::new(program);
        command.envs(self.env());
        Ok(command)
    }

    /// The environment a program needs to use this realm: `KRB5_CONFIG`, `KRB5_KDC_PROFILE`,
    /// `KRB5CCNAME` (the user's ticket) and a replay cache under the folder (`KRB5RCACHEDIR`).
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("KRB5_CONFIG".into(), self.krb5_conf().display().to_string()),
            (
                "KRB5_KDC_PROFILE".into(),
                self.dir.join("kdc.conf").display().to_string(),
            ),
            ("KRB5CCNAME".into(), self.ccache()),
            ("KRB5RCACHEDIR".into(), self.dir.display().to_string()),
            // No default keytab of the host (/etc/krb5.keytab) by accident.
            (
                "KRB5_KTNAME".into(),
                format!("FILE:{}", self.service_keytab().display()),
            ),
        ]
    }

    /// The krb5.conf (`KRB5_CONFIG`).
    pub fn krb5_conf(&self) -> PathBuf {
        self.dir.join("krb5.conf")
    }

    /// `FILE:<dir>/ccache`, holding [`USER`]'s ticket-granting ticket.
    pub fn ccache(&self) -> String {
        format!("FILE:{}", self.dir.join("ccache").display())
    }

    /// A credential cache name that holds nothing (the file does not exist).
    pub fn empty_ccache(&self) -> String {
        format!("FILE:{}", self.dir.join("empty-ccache").display())
    }

    /// The keytab with `HTTP/localhost@REALM` (for squid's helper: `-k` or `KRB5_KTNAME`).
    pub fn service_keytab(&self) -> PathBuf {
        self.dir.join("http.keytab")
    }

    /// The client keytab of [`KEYTAB_USER`].
    pub fn client_keytab(&self) -> PathBuf {
        self.dir.join("agent.keytab")
    }

    /// `HTTP/localhost@REALM`.
    pub fn service_principal(&self) -> String {
        format!("HTTP/{SERVICE_HOST}@{REALM}")
    }

    /// The KDC's TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The temp folder holding everything.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The end of the KDC's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let log = fs::read_to_string(self.dir.join("kdc.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for Kdc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn temp_dir() -> io::Result<PathBuf> {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "dtun-testenv-kdc-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn write_configs(dir: &Path, port: u16) -> io::Result<()> {
    let d = dir.display();
    fs::write(
        dir.join("krb5.conf"),
        format!(
            "[libdefaults]\n\
             \tdefault_realm = {REALM}\n\
             \tdns_lookup_kdc = false\n\
             \tdns_lookup_realm = false\n\
             \trdns = false\n\
             \tdns_canonicalize_hostname = false\n\
             \tudp_preference_limit = 1\n\
             \tticket_lifetime = 1h\n\
             [realms]\n\
             \t{REALM} = {{\n\
             \t\tkdc = 127.0.0.1:{port}\n\
             \t}}\n\
             [domain_realm]\n\
             \tlocalhost = {REALM}\n\
             [logging]\n\
             \tkdc = FILE:{d}/kdc.log\n"
        ),
    )?;
    fs::write(
        dir.join("kdc.conf"),
        format!(
            "[kdcdefaults]\n\
             \tkdc_listen = \"\"\n\
             \tkdc_tcp_listen = 127.0.0.1:{port}\n\
             [realms]\n\
             \t{REALM} = {{\n\
             \t\tdatabase_name = {d}/principal\n\
             \t\tkey_stash_file = {d}/stash\n\
             \t\tacl_file = {d}/kadm5.acl\n\
             \t\tkdc_listen = \"\"\n\
             \t\tkdc_tcp_listen = 127.0.0.1:{port}\n\
             \t\tmax_life = 1h\n\
             \t}}\n\
             [logging]\n\
             \tkdc = FILE:{d}/kdc.log\n"
        ),
    )?;
    fs::write(dir.join("kadm5.acl"), "")?;
    Ok(())
}

/// A command for `name` with only the config variables (used before a `Kdc` exists).
fn setup_command(dir: &Path, name: &str) -> io::Result<Command> {
    let program = find_program(name)
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("{name} not found")))?;
    let mut command = Command::new(program);
    command
        .env("KRB5_CONFIG", dir.join("krb5.conf"))
        .env("KRB5_KDC_PROFILE", dir.join("kdc.conf"));
    Ok(command)
}

fn create_realm(dir: &Path) -> io::Result<()> {
    run_with_input(
        setup_command(dir, "kdb5_util")?.args([
            "create",
            "-s",
            "-r",
            REALM,
            "-P",
            "master-key-of-the-test-realm",
        ]),
        b"",
    )?;
    let keytab = |name: &str| format!("FILE:{}", dir.join(name).display());
    for query in [
        format!("addprinc -pw {USER_PASSWORD} {USER}@{REALM}"),
        format!("addprinc -randkey {KEYTAB_USER}@{REALM}"),
        format!("addprinc -randkey HTTP/{SERVICE_HOST}@{REALM}"),
        format!(
            "ktadd -k {} HTTP/{SERVICE_HOST}@{REALM}",
            keytab("http.keytab")
        ),
        format!("ktadd -k {} {KEYTAB_USER}@{REALM}", keytab("agent.keytab")),
    ] {
        run_with_input(
            setup_command(dir, "kadmin.local")?.args(["-r", REALM, "-q", &query]),
            b"",
        )?;
    }
    Ok(())
}

fn spawn_kdc(dir: &Path) -> io::Result<Child> {
    setup_command(dir, "krb5kdc")?
        .args(["-n", "-r", REALM, "-P"])
        .arg(dir.join("kdc.pid"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(dir.join("kdc.stderr"))?)
        .spawn()
}

/// Runs `command` with `input` on stdin; an error with its output if it fails. kadmin.local
/// reports some failures only on stderr with exit status 0, so stderr mentioning an error
/// fails too.
fn run_with_input(command: &mut Command, input: &[u8]) -> io::Result<()> {
    use std::io::Write as _;
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input)?;
    }
    let out = child.wait_with_output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let failed_quietly = stderr.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.contains("error") || l.contains("failed") || l.contains("cannot")
    });
    if out.status.success() && !failed_quietly {
        return Ok(());
    }
    Err(io::Error::other(format!(
        "{:?} failed ({}): {}{}",
        command.get_program(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        stderr
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kdc_starts_and_issues_the_users_ticket() {
        if !crate::require_or_skip("kdc_starts", &[crate::RealProxy::Kdc]) {
            return;
        }
        let kdc = Kdc::start().expect("start the KDC");
        let out = kdc
            .command("klist")
            .expect("klist")
            .output()
            .expect("run klist");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "klist: {text}");
        assert!(text.contains(&format!("{USER}@{REALM}")), "{text}");
        assert!(kdc.service_keytab().exists() && kdc.client_keytab().exists());
        let dir = kdc.dir().to_path_buf();
        drop(kdc);
        assert!(!dir.exists(), "cleaned up on drop");
    }

    #[test]
    fn a_short_lived_ticket_expires() {
        if !crate::require_or_skip("a_short_lived_ticket_expires", &[crate::RealProxy::Kdc]) {
            return;
        }
        let kdc = Kdc::start().expect("start the KDC");
        let ccache = format!("FILE:{}", kdc.dir().join("short-ccache").display());
        assert!(!kdc.has_valid_ticket(&ccache).unwrap(), "no cache yet");
        kdc.kinit_with_lifetime(&ccache, Duration::from_secs(2))
            .expect("kinit -l 2s");
        assert!(kdc.has_valid_ticket(&ccache).unwrap(), "fresh");
        assert!(kdc.kdc_accepts(&ccache).unwrap(), "the KDC honours it");
        kdc.wait_until_expired(&ccache, Duration::from_secs(60))
            .expect("expires");
        assert!(!kdc.kdc_accepts(&ccache).unwrap());
        // The long-lived cache of the realm is untouched.
        assert!(kdc.has_valid_ticket(&kdc.ccache()).unwrap());
    }
}
