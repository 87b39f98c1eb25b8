//! `dtun-testenv`: starts a complete test environment (throwaway PKI, echo and framed collectors,
//! plain, TLS, authenticating and faulty CONNECT proxies, and on request a real squid and two
//! real tinyproxies), writes one `dragent.yaml` per scenario and either runs a command inside it
//! or serves until told to stop.
//!
//! ```text
//! dtun-testenv run   --dir DIR [--verbose] [--real-proxies [--no-ntlm]] [--negotiate] -- COMMAND [ARGS...]
//! dtun-testenv serve --dir DIR [--verbose] [--real-proxies [--no-ntlm]] [--negotiate]
//! ```
//!
//! `run` exports `DTUN_TESTENV_DIR` (the absolute DIR) and every `env.txt` entry as
//! `DTUN_TESTENV_<KEY>`, runs COMMAND, stops everything and exits with the command's exit code
//! (1 if it could not be started, 128 + signal if it was killed by a signal). `serve` prints
//! `ready` on stdout once everything listens, and runs until stdin reaches EOF or SIGTERM/SIGINT.
//! A SIGTERM or SIGINT that arrives while the environment starts stops it as soon as it is up
//! (exit 128 + signal, COMMAND is not run).
//!
//! Files written in DIR: the PKI (`ca.pem`, `untrusted-ca.pem`, certificates and keys), one
//! `*.yaml` per scenario, `env.txt` (`KEY=VALUE` lines) and `expected.txt`: one line
//! `FILE STATUS_NAME` per scenario file, the status `dtun_open` must return for it (names as in
//! `include/dragent_tunnel.h`). `proxy_silent.yaml` expects `DTUN_ERR_TIMEOUT`: open it with a
//! short timeout (a few seconds); every other scenario completes well within 10 s.
//!
//! `--real-proxies` also starts one real squid (`squid-openssl`: plain and TLS ports, each also
//! with Basic auth, CONNECT allowed to every collector port and refused with a real 403 to a
//! dedicated extra TLS echo collector) and tinyproxy twice (without and with Basic auth), and
//! writes the `squid_*.yaml` and `tinyproxy_*.yaml` scenarios. It also starts a second squid
//! whose auth ports ask for NTLM, checked for real by testenv's pyspnego helper (the
//! virtualenv of `dtun_testenv::ntlm`, `DTUN_NTLM_VENV`), for the `squid_ntlm_*.yaml`
//! scenarios. Without squid, tinyproxy or the NTLM virtualenv it exits 1 at once, loudly.
//! Their configuration and logs live in `DIR/squid`, `DIR/squid-ntlm`, `DIR/tinyproxy` and
//! `DIR/tinyproxy-auth`.
//!
//! `--no-ntlm` (only with `--real-proxies`; alone it is a usage error) leaves the NTLM squid
//! out: the virtualenv is neither needed nor checked, and none of the `squid_ntlm_*.yaml`
//! scenarios, their `expected.txt` lines or their `env.txt` keys (`SQUID_NTLM_PLAIN_PORT`,
//! `SQUID_NTLM_TLS_PORT`, `NTLM_USER`, `NTLM_PASSWORD`) are written. The rest is as above:
//! for the demo (`scripts/demo.sh --squid`) and the benchmarks, which need plain squid only.
//!
//! `--negotiate` starts a real MIT KDC on loopback (`dtun_testenv::kdc`: a realm, a user
//! with a ticket in a credential cache, a client keytab, the service `HTTP/localhost`) and a
//! squid whose auth ports ask for Negotiate (`negotiate_kerberos_auth`), and writes the
//! `negotiate_*.yaml` scenarios. The command runs with the KDC's environment (`KRB5_CONFIG`,
//! `KRB5CCNAME` naming the cache with the user's ticket, ...): a host after `kinit`. The
//! scenarios named `*_no_ticket.yaml` are meant to be opened with
//! `KRB5CCNAME=$DTUN_TESTENV_KRB5_EMPTY_CCNAME` (a cache that holds nothing), those named
//! `*_keytab.yaml` with `KRB5CCNAME=$DTUN_TESTENV_KRB5_KEYTAB_CCNAME` (a cache of their own
//! for the tickets got with the client keytab); their first lines say so. Without the KDC
//! programs, squid or its helper it exits 1 at once. Its files live in `DIR/krb` and
//! `DIR/squid-negotiate`.
//!
//! Always: `restart_proxy.yaml` goes through a proxy that can be stopped and started again on
//! the same port (a gate in front of the TLS proxy with Basic auth, `dtun_testenv::gate`).
//! Write `close` or `open` (one per line) to the FIFO `DIR/restart_proxy.ctl`
//! (`$DTUN_TESTENV_RESTART_PROXY_CONTROL`); once the port refuses, or accepts, connections
//! again, `DIR/restart_proxy.state` (`$DTUN_TESTENV_RESTART_PROXY_STATE`) reads
//! `N closed` or `N open`, N counting the commands done (it starts as `0 open`); a command
//! that failed reads `N error: WHY`.

use std::fmt::Write as _;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use dtun_testenv::collector::{EchoServer, FramedCollector};
use dtun_testenv::gate::Gate;
use dtun_testenv::kdc::{self, Kdc};
use dtun_testenv::ntlm::{venv_dir, write_user_file, NtlmHelper};
use dtun_testenv::pki::{CertKind, Issued, Pki};
use dtun_testenv::ports::free_port;
use dtun_testenv::proxy::{Fault, ProxyOptions, TestProxy};
use dtun_testenv::squid::{squid_available, squid_missing, Squid, SquidAuth, SquidOptions};
use dtun_testenv::tinyproxy::{tinyproxy_available, Tinyproxy, TinyproxyOptions};
use tokio::runtime::Runtime;
use tokio::signal::unix::{signal, Signal, SignalKind};

/// Basic auth user of the authenticating proxy.
const PROXY_USER: &str = "agent";
/// Basic auth password of the authenticating proxy (YAML- and URL-hostile on purpose).
const PROXY_PASSWORD: &str = "s3cr:t@/%+pw";
/// The wrong password of `proxy_auth_wrong.yaml` (and of the squid and tinyproxy ones: it is
/// also valid in tinyproxy's configuration syntax). The secret scanners of the tests flag any
/// run of 8 of a password's characters, so no such run may be a word the library rightly
/// prints: "wrong-password" held "password", as in the hint's `http_proxy.proxy_password`.
const WRONG_PASSWORD: &str = "wr0ng-pw.7x";
/// Basic auth user of squid's auth ports.
const SQUID_USER: &str = "agent";
/// Basic auth password of squid's auth ports: `: @ / % +`, all through `basic_ncsa_auth`.
const SQUID_PASSWORD: &str = "sq:u@i/d%p+w";
/// Basic auth user of the authenticating tinyproxy.
const TINYPROXY_USER: &str = "agent";
/// Basic auth password of the authenticating tinyproxy (it accepts only `[-a-z0-9._]`).
const TINYPROXY_PASSWORD: &str = "tiny-pass.1";
/// NTLM domain of the NTLM squid's user.
const NTLM_DOMAIN: &str = "CORP";
/// NTLM user name (given as `CORP\agent` or `agent@CORP`).
const NTLM_USER: &str = "agent";
/// NTLM password, checked by pyspnego's NTLMv2 acceptor (no `:`: the helper's user file
/// is `DOMAIN:user:password` lines).
const NTLM_PASSWORD: &str = "N7lm-p@ss/w%rd+";
/// Host name used for every server in the scenarios (certificates carry it as a SAN).
const HOST: &str = "localhost";
/// Names on the certificates of the good servers.
const GOOD_NAMES: &[&str] = &["localhost", "127.0.0.1", "::1"];
/// How long `run` waits for a command that got SIGINT along with us before killing it.
const SIGINT_GRACE: Duration = Duration::from_secs(5);
/// Name of the file of expected `dtun_open` statuses.
const EXPECTED_FILE: &str = "expected.txt";
/// The FIFO that opens and closes the restartable proxy, and the file that reports it.
const RESTART_CONTROL_FILE: &str = "restart_proxy.ctl";
const RESTART_STATE_FILE: &str = "restart_proxy.state";

/// The `dtun_status` names the scenarios expect (as `dtun_status_name` spells them).
mod status {
    pub const OK: &str = "DTUN_OK";
    pub const CONNECT: &str = "DTUN_ERR_CONNECT";
    pub const TIMEOUT: &str = "DTUN_ERR_TIMEOUT";
    pub const PROXY_TLS: &str = "DTUN_ERR_PROXY_TLS";
    pub const PROXY_CERT: &str = "DTUN_ERR_PROXY_CERT";
    pub const PROXY_AUTH: &str = "DTUN_ERR_PROXY_AUTH";
    pub const PROXY_REFUSED: &str = "DTUN_ERR_PROXY_REFUSED";
    pub const PROXY_PROTOCOL: &str = "DTUN_ERR_PROXY_PROTOCOL";
    pub const COLLECTOR_CERT: &str = "DTUN_ERR_COLLECTOR_CERT";
}

const USAGE: &str = "usage:
  dtun-testenv run   --dir DIR [--verbose] [--real-proxies [--no-ntlm]] [--negotiate] -- COMMAND [ARGS...]
  dtun-testenv serve --dir DIR [--verbose] [--real-proxies [--no-ntlm]] [--negotiate]

  --verbose       log proxy and collector activity (and squid's access.log at the end)
  --real-proxies  also start a real squid, a squid asking for NTLM and two tinyproxies
                  (squid-openssl, tinyproxy and the NTLM helper's virtualenv must be there)
                  and write their squid_*.yaml / tinyproxy_*.yaml scenarios
  --no-ntlm       with --real-proxies only: leave the NTLM squid out (no virtualenv
                  needed, no squid_ntlm_*.yaml, SQUID_NTLM_*_PORT, NTLM_USER, NTLM_PASSWORD)
  --negotiate     also start a real MIT KDC and a squid asking for Negotiate (krb5-kdc,
                  krb5-admin-server, krb5-user, squid-openssl) and write negotiate_*.yaml";

/// Parsed command line.
#[derive(Debug)]
struct Args {
    serve: bool,
    dir: PathBuf,
    verbose: bool,
    real_proxies: bool,
    /// `--no-ntlm`: the real proxies without the NTLM squid (only with `real_proxies`).
    no_ntlm: bool,
    negotiate: bool,
    command: Vec<String>,
}

impl Args {
    /// What `--real-proxies` (and `--no-ntlm`) asked for.
    fn real(&self) -> Real {
        match (self.real_proxies, self.no_ntlm) {
            (false, _) => Real::Off,
            (true, false) => Real::WithNtlm,
            (true, true) => Real::NoNtlm,
        }
    }
}

/// Which real proxies to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Real {
    /// None (no `--real-proxies`).
    Off,
    /// squid, the squid asking for NTLM and the tinyproxies (`--real-proxies`).
    WithNtlm,
    /// squid and the tinyproxies (`--real-proxies --no-ntlm`).
    NoNtlm,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let serve = match args.next().as_deref() {
        Some("run") => false,
        Some("serve") => true,
        Some(other) => return Err(format!("unknown subcommand {other:?}")),
        None => return Err("missing subcommand".into()),
    };
    let mut dir = None;
    let mut verbose = false;
    let mut real_proxies = false;
    let mut no_ntlm = false;
    let mut negotiate = false;
    let mut command = Vec::new();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--dir" => dir = Some(args.next().ok_or("--dir needs a value")?),
            "--verbose" | "-v" => verbose = true,
            "--real-proxies" => real_proxies = true,
            "--no-ntlm" => no_ntlm = true,
            "--negotiate" => negotiate = true,
            "--" => {
                command.extend(args.by_ref());
                break;
            }
            other => return Err(format!("unexpected argument {other:?}")),
        }
    }
    let dir = dir.ok_or("--dir DIR is required")?;
    if dir.is_empty() {
        return Err("--dir must not be empty".into());
    }
    if serve && !command.is_empty() {
        return Err("serve takes no command".into());
    }
    if !serve && command.is_empty() {
        return Err("run needs a command after --".into());
    }
    if no_ntlm && !real_proxies {
        return Err("--no-ntlm is only valid with --real-proxies".into());
    }
    Ok(Args {
        serve,
        dir: PathBuf::from(dir),
        verbose,
        real_proxies,
        no_ntlm,
        negotiate,
        command,
    })
}

/// What `--real-proxies` needs and this machine lacks (empty: all there). `ntlm_venv`: the
/// virtualenv the NTLM helper must be in; `None` (`--no-ntlm`): no NTLM helper needed.
fn missing_real_proxies(ntlm_venv: Option<&Path>) -> Vec<String> {
    let mut missing = Vec::new();
    if !squid_available() {
        missing.push(
            "squid built with OpenSSL, with basic_ncsa_auth and htpasswd or openssl \
             (Debian: apt-get install -y squid-openssl apache2-utils)"
                .to_string(),
        );
    }
    if !tinyproxy_available() {
        missing.push("tinyproxy (Debian: apt-get install -y tinyproxy)".to_string());
    }
    if let Some(Err(what)) = ntlm_venv.map(NtlmHelper::in_venv) {
        missing.push(format!("the NTLM helper: {what}"));
    }
    missing
}

/// What `--negotiate` needs and this machine lacks (empty: all there).
fn missing_negotiate() -> Vec<String> {
    let mut missing = Vec::new();
    missing.extend(kdc::kdc_missing());
    missing.extend(squid_missing());
    if kdc::negotiate_helper().is_none() {
        missing.push("squid's negotiate_kerberos_auth (Debian: squid-openssl)".to_string());
    }
    missing
}

/// The running real proxies of `--real-proxies`. Dropping it stops them all, in parallel.
struct RealProxies {
    squid: Option<Squid>,
    /// `None` with `--no-ntlm` (and once dropped).
    squid_ntlm: Option<Squid>,
    tinyproxy: Option<Tinyproxy>,
    tinyproxy_auth: Option<Tinyproxy>,
    ports: RealPorts,
    squid_dir: PathBuf,
    verbose: bool,
}

/// The listening ports of the real proxies.
#[derive(Debug, Clone, Copy)]
struct RealPorts {
    squid_plain: u16,
    squid_plain_auth: u16,
    squid_tls: u16,
    squid_tls_auth: u16,
    tinyproxy: u16,
    tinyproxy_auth: u16,
    /// The auth ports of the squid asking for NTLM (`None`: `--no-ntlm`).
    squid_ntlm: Option<NtlmPorts>,
}

/// The auth ports of the squid asking for NTLM.
#[derive(Debug, Clone, Copy)]
struct NtlmPorts {
    plain: u16,
    tls: u16,
}

/// Adds which program failed to an error.
fn context(what: &str, err: io::Error) -> io::Error {
    io::Error::new(err.kind(), format!("{what}: {err}"))
}

/// Joins a start thread; a panic becomes an error.
fn join<T>(handle: std::thread::ScopedJoinHandle<'_, io::Result<T>>, what: &str) -> io::Result<T> {
    handle
        .join()
        .unwrap_or_else(|_| Err(io::Error::other(format!("starting {what} panicked"))))
}

impl RealProxies {
    /// Starts squid, the NTLM squid (when `ntlm`) and both tinyproxies at once (squid takes
    /// the longest), in `dir/squid`, `dir/squid-ntlm`, `dir/tinyproxy` and
    /// `dir/tinyproxy-auth`. If one fails the others are stopped again.
    fn start(
        dir: &Path,
        proxy_cert: &Issued,
        allowed_ports: Vec<u16>,
        denied_port: u16,
        ntlm: bool,
        verbose: bool,
    ) -> io::Result<RealProxies> {
        let ntlm_squid = if ntlm {
            Some(Self::ntlm_squid_options(
                dir,
                proxy_cert,
                allowed_ports.clone(),
            )?)
        } else {
            None
        };
        let squid_opts = SquidOptions {
            dir: dir.join("squid"),
            tls_cert: Some((proxy_cert.cert_path.clone(), proxy_cert.key_path.clone())),
            users: vec![(SQUID_USER.to_string(), SQUID_PASSWORD.to_string())],
            allowed_ports,
            denied_port: Some(denied_port),
        };
        let tiny_opts = TinyproxyOptions::new(dir.join("tinyproxy"));
        let tiny_auth_opts = TinyproxyOptions {
            basic_auth: Some((TINYPROXY_USER.to_string(), TINYPROXY_PASSWORD.to_string())),
            ..TinyproxyOptions::new(dir.join("tinyproxy-auth"))
        };
        let (squid, squid_ntlm, tiny, tiny_auth) = std::thread::scope(|scope| {
            let squid = scope.spawn(|| Squid::start(squid_opts));
            let squid_ntlm = ntlm_squid
                .map(|(opts, auth)| scope.spawn(move || Squid::start_with_auth(opts, auth)));
            let tiny = scope.spawn(|| Tinyproxy::start(tiny_opts));
            let tiny_auth = Tinyproxy::start(tiny_auth_opts);
            (
                join(squid, "squid"),
                squid_ntlm.map(|handle| join(handle, "squid (NTLM)")),
                join(tiny, "tinyproxy"),
                tiny_auth,
            )
        });
        // On an early return the proxies already bound here are stopped as they drop.
        let squid = squid.map_err(|e| context("squid", e))?;
        let squid_ntlm = squid_ntlm
            .transpose()
            .map_err(|e| context("squid (NTLM)", e))?;
        let tinyproxy = tiny.map_err(|e| context("tinyproxy", e))?;
        let tinyproxy_auth = tiny_auth.map_err(|e| context("tinyproxy (BasicAuth)", e))?;
        let port = |p: Option<u16>, what: &str| {
            p.ok_or_else(|| io::Error::other(format!("squid opened no {what} port")))
        };
        let ports = RealPorts {
            squid_plain: port(squid.plain_port(), "plain")?,
            squid_plain_auth: port(squid.plain_auth_port(), "plain auth")?,
            squid_tls: port(squid.tls_port(), "TLS")?,
            squid_tls_auth: port(squid.tls_auth_port(), "TLS auth")?,
            tinyproxy: tinyproxy.port(),
            tinyproxy_auth: tinyproxy_auth.port(),
            squid_ntlm: match &squid_ntlm {
                Some(squid_ntlm) => Some(NtlmPorts {
                    plain: port(squid_ntlm.plain_auth_port(), "NTLM plain auth")?,
                    tls: port(squid_ntlm.tls_auth_port(), "NTLM TLS auth")?,
                }),
                None => None,
            },
        };
        if verbose {
            eprintln!(
                "dtun-testenv: squid (pid {}) ready in {} ms: plain {}, plain+auth {}, TLS {}, \
                 TLS+auth {}, CONNECT to {denied_port} refused",
                squid.pid(),
                squid.startup_time().as_millis(),
                ports.squid_plain,
                ports.squid_plain_auth,
                ports.squid_tls,
                ports.squid_tls_auth,
            );
            if let (Some(squid_ntlm), Some(n)) = (&squid_ntlm, ports.squid_ntlm) {
                eprintln!(
                    "dtun-testenv: squid asking for NTLM (pid {}) ready: plain {}, TLS {}",
                    squid_ntlm.pid(),
                    n.plain,
                    n.tls,
                );
            }
            eprintln!(
                "dtun-testenv: tinyproxy ready: port {} (pid {}), with BasicAuth port {} (pid {})",
                ports.tinyproxy,
                tinyproxy.pid(),
                ports.tinyproxy_auth,
                tinyproxy_auth.pid(),
            );
        }
        Ok(RealProxies {
            squid_dir: squid.dir().to_path_buf(),
            squid: Some(squid),
            squid_ntlm,
            tinyproxy: Some(tinyproxy),
            tinyproxy_auth: Some(tinyproxy_auth),
            ports,
            verbose,
        })
    }

    /// The options of the squid asking for NTLM, in `dir/squid-ntlm`, its helper checking
    /// the user of `dir/ntlm/` with pyspnego (the virtualenv must be there).
    fn ntlm_squid_options(
        dir: &Path,
        proxy_cert: &Issued,
        allowed_ports: Vec<u16>,
    ) -> io::Result<(SquidOptions, SquidAuth)> {
        let helper = NtlmHelper::locate().map_err(io::Error::other)?;
        // squid runs the helper as its own user (`proxy` under root): the user file where
        // that user reads it.
        let ntlm_dir = dir.join("ntlm");
        fs::create_dir_all(&ntlm_dir)?;
        let users = write_user_file(&ntlm_dir, &[(NTLM_DOMAIN, NTLM_USER, NTLM_PASSWORD)])?;
        make_readable(&ntlm_dir, 0o755)?;
        make_readable(&users, 0o644)?;
        let ntlm_program = helper.squid_program(&users).map_err(io::Error::other)?;
        let opts = SquidOptions {
            dir: dir.join("squid-ntlm"),
            tls_cert: Some((proxy_cert.cert_path.clone(), proxy_cert.key_path.clone())),
            // Not used with NTLM, but they open the auth ports.
            users: vec![(NTLM_USER.to_string(), "unused".to_string())],
            allowed_ports,
            denied_port: None,
        };
        let auth = SquidAuth {
            ntlm_program: Some(ntlm_program),
            ..SquidAuth::default()
        };
        Ok((opts, auth))
    }
}

impl Drop for RealProxies {
    fn drop(&mut self) {
        let (squid, squid_ntlm, tiny, tiny_auth) = (
            self.squid.take(),
            self.squid_ntlm.take(),
            self.tinyproxy.take(),
            self.tinyproxy_auth.take(),
        );
        // Each stop waits for a graceful exit (squid about 2 s): wait for them side by side.
        std::thread::scope(|scope| {
            scope.spawn(move || drop(tiny));
            scope.spawn(move || drop(tiny_auth));
            scope.spawn(move || drop(squid_ntlm));
            drop(squid);
        });
        if self.verbose {
            // Squid logs each request when it ends; readiness probes and connections closed
            // before a request (NONE_NONE/000) are left out.
            let log = fs::read_to_string(self.squid_dir.join("access.log")).unwrap_or_default();
            let requests: Vec<&str> = log
                .lines()
                .filter(|line| !line.contains(" NONE_NONE/000 "))
                .collect();
            let (n, noun) = match requests.len() {
                1 => (1, "request"),
                n => (n, "requests"),
            };
            eprintln!("dtun-testenv: squid stopped; {n} {noun} in its access.log:");
            for line in requests {
                eprintln!("  {line}");
            }
        }
    }
}

/// Sets `path`'s mode (squid's helpers run as squid's user, who must read what they use).
fn make_readable(path: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
}

/// The KDC and the squid asking for Negotiate of `--negotiate`. Dropping it stops both.
struct NegotiateProxies {
    squid: Option<Squid>,
    kdc: Kdc,
    plain: u16,
    tls: u16,
    /// `DIR/krb`: squid's copies of the service keytab and krb5.conf, its replay cache, and
    /// the credential cache of the keytab scenarios.
    krb_dir: PathBuf,
}

impl NegotiateProxies {
    /// Starts the KDC (a realm, principals, keytabs, the user's ticket), then squid with
    /// `negotiate_kerberos_auth -s HTTP/localhost@REALM -k KEYTAB`, CONNECT allowed to
    /// `allowed_ports`.
    fn start(
        dir: &Path,
        proxy_cert: &Issued,
        allowed_ports: Vec<u16>,
        verbose: bool,
    ) -> io::Result<NegotiateProxies> {
        let helper = kdc::negotiate_helper().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                "squid's negotiate_kerberos_auth (Debian: squid-openssl)",
            )
        })?;
        let kdc = Kdc::start().map_err(|e| context("the KDC", e))?;
        // squid runs its helper as its own user: the service keytab, krb5.conf and a replay
        // cache folder where that user reads (and writes) them.
        let krb_dir = dir.join("krb");
        fs::create_dir_all(&krb_dir)?;
        make_readable(&krb_dir, 0o755)?;
        let keytab = krb_dir.join("http.keytab");
        let krb5_conf = krb_dir.join("krb5.conf");
        fs::copy(kdc.service_keytab(), &keytab)?;
        fs::copy(kdc.krb5_conf(), &krb5_conf)?;
        // The client keytab where the scenarios name it (the KDC's folder is temporary).
        fs::copy(kdc.client_keytab(), krb_dir.join("agent.keytab"))?;
        make_readable(&keytab, 0o644)?;
        make_readable(&krb5_conf, 0o644)?;
        let rcache = krb_dir.join("rcache");
        fs::create_dir_all(&rcache)?;
        make_readable(&rcache, 0o1777)?;
        let program = format!(
            "{} -s {} -k {}",
            helper.display(),
            kdc.service_principal(),
            keytab.display()
        );
        let squid = Squid::start_with_auth(
            SquidOptions {
                dir: dir.join("squid-negotiate"),
                tls_cert: Some((proxy_cert.cert_path.clone(), proxy_cert.key_path.clone())),
                // Not used with Negotiate, but they open the auth ports.
                users: vec![(kdc::USER.to_string(), "unused".to_string())],
                allowed_ports,
                denied_port: None,
            },
            SquidAuth {
                negotiate_program: Some(program),
                env: vec![
                    ("KRB5_CONFIG".into(), krb5_conf.display().to_string()),
                    ("KRB5RCACHEDIR".into(), rcache.display().to_string()),
                    ("KRB5_KTNAME".into(), format!("FILE:{}", keytab.display())),
                ],
                ..SquidAuth::default()
            },
        )
        .map_err(|e| context("squid (Negotiate)", e))?;
        let port = |p: Option<u16>, what: &str| {
            p.ok_or_else(|| io::Error::other(format!("squid opened no {what} port")))
        };
        let plain = port(squid.plain_auth_port(), "Negotiate plain auth")?;
        let tls = port(squid.tls_auth_port(), "Negotiate TLS auth")?;
        if verbose {
            eprintln!(
                "dtun-testenv: KDC for {} on 127.0.0.1:{}; squid asking for Negotiate (pid {}): \
                 plain {plain}, TLS {tls}",
                kdc::REALM,
                kdc.port(),
                squid.pid(),
            );
        }
        Ok(NegotiateProxies {
            squid: Some(squid),
            kdc,
            plain,
            tls,
            krb_dir,
        })
    }

    /// `FILE:DIR/krb/keytab-ccache`: where the keytab scenarios' tickets go.
    fn keytab_ccache(&self) -> String {
        format!("FILE:{}", self.krb_dir.join("keytab-ccache").display())
    }
}

impl Drop for NegotiateProxies {
    fn drop(&mut self) {
        // squid first: its helpers talk to the KDC's files.
        drop(self.squid.take());
    }
}

/// The proxy of `restart_proxy.yaml`: a [`Gate`] in front of a running proxy, opened and
/// closed by lines written to the FIFO `DIR/restart_proxy.ctl` (see the module
/// documentation). The FIFO's reader thread lives as long as the process.
struct RestartableProxy {
    gate: Arc<Gate>,
    control: PathBuf,
    state: PathBuf,
}

impl RestartableProxy {
    fn start(dir: &Path, target: std::net::SocketAddr) -> io::Result<RestartableProxy> {
        let gate = Arc::new(Gate::start(target)?);
        let control = dir.join(RESTART_CONTROL_FILE);
        let state = dir.join(RESTART_STATE_FILE);
        let _ = fs::remove_file(&control);
        let made = std::process::Command::new("mkfifo")
            .arg(&control)
            .status()
            .map_err(|e| context("mkfifo", e))?;
        if !made.success() {
            return Err(io::Error::other(format!(
                "mkfifo {} failed: {made}",
                control.display()
            )));
        }
        write_state(&state, "0 open")?;
        // Read and write: opening a FIFO this way never blocks, and the reader never sees EOF
        // when a writer goes away (each `echo close > FIFO` is a writer of its own).
        let fifo = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&control)?;
        let (for_thread, state_path) = (Arc::clone(&gate), state.clone());
        std::thread::Builder::new()
            .name("restart-proxy".into())
            .spawn(move || serve_control(fifo, &for_thread, &state_path))?;
        Ok(RestartableProxy {
            gate,
            control,
            state,
        })
    }
}

/// Writes the state file whole (a temporary file renamed over it): a reader never sees half.
fn write_state(path: &Path, state: &str) -> io::Result<()> {
    let tmp = path.with_extension("state.tmp");
    fs::write(&tmp, format!("{state}\n"))?;
    fs::rename(&tmp, path)
}

/// The restartable proxy's control loop: one command per line, `open` or `close`.
fn serve_control(fifo: fs::File, gate: &Gate, state: &Path) {
    use std::io::BufRead as _;
    let mut done = 0u64;
    for line in io::BufReader::new(fifo).lines() {
        let Ok(line) = line else { return };
        let command = line.trim();
        if command.is_empty() {
            continue;
        }
        done += 1;
        let outcome = match command {
            "close" => {
                gate.close();
                "closed".to_string()
            }
            "open" => match gate.open() {
                Ok(()) => "open".to_string(),
                Err(e) => format!("error: reopening port {}: {e}", gate.port()),
            },
            other => format!("error: unknown command {other:?} (open or close)"),
        };
        eprintln!("dtun-testenv: restart_proxy: {command}: {outcome}");
        if write_state(state, &format!("{done} {outcome}")).is_err() {
            return;
        }
    }
}

/// The running environment. Dropping it stops every server and proxy.
struct Env {
    /// `KEY=VALUE` entries of `env.txt`, in order.
    vars: Vec<(String, String)>,
    /// Absolute environment folder.
    dir: PathBuf,
    /// `(file, expected status)` of every scenario written, in order (`expected.txt`).
    expected: Vec<(String, &'static str)>,
    /// Extra environment of the command (`--negotiate`: the KDC's).
    command_env: Vec<(String, String)>,
    _real: Option<RealProxies>,
    _negotiate: Option<NegotiateProxies>,
    _restart: RestartableProxy,
    _echo_tls: EchoServer,
    _echo_plain: EchoServer,
    _framed: FramedCollector,
    _collector_untrusted: EchoServer,
    _collector_expired: EchoServer,
    _collector_wrong_name: EchoServer,
    _collector_denied: Option<EchoServer>,
    _proxies: Vec<TestProxy>,
}

/// Single-quoted YAML scalar.
fn q(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The `http_proxy:` section of a scenario.
struct ProxyYaml<'a> {
    port: u16,
    ssl: bool,
    /// `http_proxy.ssl_verify_certificate`; `None`: not written (default true).
    verify: Option<bool>,
    ca: Option<&'a Path>,
    credentials: Option<(&'a str, &'a str)>,
    /// `http_proxy.proxy_auth`; `None`: not written (Basic with a user).
    auth: Option<&'static str>,
    /// `http_proxy.proxy_user` and `http_proxy.proxy_keytab` (Negotiate with a client keytab).
    keytab: Option<(&'a str, &'a Path)>,
}

impl<'a> ProxyYaml<'a> {
    /// A plain HTTP proxy port.
    fn plain(port: u16, credentials: Option<(&'a str, &'a str)>) -> ProxyYaml<'a> {
        ProxyYaml {
            port,
            ssl: false,
            verify: None,
            ca: None,
            credentials,
            auth: None,
            keytab: None,
        }
    }

    /// A TLS proxy port whose certificate is checked against `ca`.
    fn tls(port: u16, ca: &'a Path, credentials: Option<(&'a str, &'a str)>) -> ProxyYaml<'a> {
        ProxyYaml {
            port,
            ssl: true,
            verify: None,
            ca: Some(ca),
            credentials,
            auth: None,
            keytab: None,
        }
    }

    /// The same with `proxy_auth` written out.
    fn auth(self, auth: &'static str) -> ProxyYaml<'a> {
        ProxyYaml {
            auth: Some(auth),
            ..self
        }
    }

    /// The same with Kerberos tickets from the client keytab `keytab` for `principal`.
    fn keytab(self, principal: &'a str, keytab: &'a Path) -> ProxyYaml<'a> {
        ProxyYaml {
            keytab: Some((principal, keytab)),
            ..self
        }
    }

    /// The same with `ssl_verify_certificate` written out.
    fn verify(self, verify: bool) -> ProxyYaml<'a> {
        ProxyYaml {
            verify: Some(verify),
            ..self
        }
    }
}

/// The keys of one scenario file, and the status `dtun_open` must return for it.
struct Scenario<'a> {
    file: &'static str,
    about: &'static str,
    collector_port: u16,
    ssl: bool,
    verify: Option<bool>,
    ca: Option<&'a Path>,
    proxy: Option<ProxyYaml<'a>>,
    expect: &'static str,
}

impl Scenario<'_> {
    fn render(&self, root: &Path) -> String {
        let mut y = String::new();
        let _ = writeln!(y, "# dtun-testenv scenario {}: {}", self.file, self.about);
        let _ = writeln!(y, "# expected dtun_open status: {}", self.expect);
        let _ = writeln!(y, "root_dir: {}", q(&root.to_string_lossy()));
        let _ = writeln!(y, "collector: {HOST}");
        let _ = writeln!(y, "collector_port: {}", self.collector_port);
        let _ = writeln!(y, "ssl: {}", self.ssl);
        if let Some(verify) = self.verify {
            let _ = writeln!(y, "ssl_verify_certificate: {verify}");
        }
        if let Some(ca) = self.ca {
            let _ = writeln!(y, "ca_certificate: {}", q(&ca.to_string_lossy()));
        }
        if let Some(proxy) = &self.proxy {
            let _ = writeln!(y, "http_proxy:");
            let _ = writeln!(y, "  proxy_host: {HOST}");
            let _ = writeln!(y, "  proxy_port: {}", proxy.port);
            if let Some((user, password)) = proxy.credentials {
                let _ = writeln!(y, "  proxy_user: {}", q(user));
                let _ = writeln!(y, "  proxy_password: {}", q(password));
            }
            if let Some((principal, keytab)) = proxy.keytab {
                let _ = writeln!(y, "  proxy_user: {}", q(principal));
                let _ = writeln!(y, "  proxy_keytab: {}", q(&keytab.to_string_lossy()));
            }
            if let Some(auth) = proxy.auth {
                let _ = writeln!(y, "  proxy_auth: {auth}");
            }
            let _ = writeln!(y, "  ssl: {}", proxy.ssl);
            if let Some(verify) = proxy.verify {
                let _ = writeln!(y, "  ssl_verify_certificate: {verify}");
            }
            if let Some(ca) = proxy.ca {
                let _ = writeln!(y, "  ca_certificate: {}", q(&ca.to_string_lossy()));
            }
        }
        y
    }
}

/// `expected.txt`: one `FILE STATUS_NAME` line per scenario.
fn expected_txt(expected: &[(String, &str)]) -> String {
    let mut out = String::new();
    for (file, status) in expected {
        let _ = writeln!(out, "{file} {status}");
    }
    out
}

impl Env {
    /// Makes the PKI in `dir`, starts every server (and with `real_proxies` squid, the tinyproxies
    /// and unless [`Real::NoNtlm`] the NTLM squid) and writes the scenarios, `env.txt` and
    /// `expected.txt`.
    fn start(dir: &Path, verbose: bool, real_proxies: Real, negotiate: bool) -> io::Result<Env> {
        fs::create_dir_all(dir)?;
        let dir = dir.canonicalize()?;
        // Borrowed by the scenarios below (they outlive the blocks that add them).
        let ntlm_user = format!("{NTLM_DOMAIN}\\{NTLM_USER}");
        let ntlm_upn = format!("{NTLM_USER}@{NTLM_DOMAIN}");
        let keytab_principal = format!("{}@{}", kdc::KEYTAB_USER, kdc::REALM);
        let client_keytab = dir.join("krb").join("agent.keytab");
        let pki = Pki::new(&dir)?;
        let ca = pki.ca_path();
        let untrusted_ca = pki.untrusted_ca_path();

        let collector_cert = pki.issue("collector", GOOD_NAMES, CertKind::Trusted)?;
        let proxy_cert = pki.issue("proxy", GOOD_NAMES, CertKind::Trusted)?;
        let untrusted_cert =
            pki.issue("collector-untrusted", GOOD_NAMES, CertKind::UntrustedIssuer)?;
        let expired_cert = pki.issue("collector-expired", GOOD_NAMES, CertKind::Expired)?;
        let wrong_name_cert = pki.issue(
            "collector-wrong-name",
            &["other.example"],
            CertKind::Trusted,
        )?;
        let proxy_untrusted_cert =
            pki.issue("proxy-untrusted", GOOD_NAMES, CertKind::UntrustedIssuer)?;

        let echo_tls = EchoServer::start(Some(collector_cert.server_config.clone()))?;
        let echo_plain = EchoServer::start(None)?;
        let framed_tls = Some(collector_cert.server_config.clone());
        let framed = if verbose {
            FramedCollector::start_verbose(framed_tls)?
        } else {
            FramedCollector::start(framed_tls)?
        };
        let collector_untrusted = EchoServer::start(Some(untrusted_cert.server_config))?;
        let collector_expired = EchoServer::start(Some(expired_cert.server_config))?;
        let collector_wrong_name = EchoServer::start(Some(wrong_name_cert.server_config))?;
        let refused_port = free_port();

        let proxy = |tls: Option<&Arc<rustls::ServerConfig>>, auth: bool, fault| {
            TestProxy::start(ProxyOptions {
                tls: tls.cloned(),
                auth: auth.then(|| (PROXY_USER.to_string(), PROXY_PASSWORD.to_string())),
                digest: None,
                fault,
                verbose,
            })
        };
        let proxy_plain = proxy(None, false, Fault::None)?;
        let proxy_tls = proxy(Some(&proxy_cert.server_config), false, Fault::None)?;
        let proxy_tls_auth = proxy(Some(&proxy_cert.server_config), true, Fault::None)?;
        // The same proxy behind a port that can be closed and opened again.
        let restart = RestartableProxy::start(&dir, proxy_tls_auth.addr())?;
        let proxy_403 = proxy(None, false, Fault::Forbidden403)?;
        let proxy_ntlm = proxy(None, false, Fault::Auth407WithBody)?;
        // Digest (the in-repo proxy's, RFC 7616 MD5): one keeping the connection after
        // its 407 (chunked body), one over TLS closing it (the reconnect path).
        let digest_proxy = |tls: Option<&Arc<rustls::ServerConfig>>, keep_alive| {
            TestProxy::start(ProxyOptions {
                tls: tls.cloned(),
                digest: Some(dtun_testenv::digest::DigestAuth {
                    keep_alive,
                    body: dtun_testenv::digest::Body407::Chunked,
                    ..dtun_testenv::digest::DigestAuth::new(PROXY_USER, PROXY_PASSWORD)
                }),
                verbose,
                ..ProxyOptions::default()
            })
        };
        let proxy_digest = digest_proxy(None, true)?;
        let proxy_tls_digest = digest_proxy(Some(&proxy_cert.server_config), false)?;
        let proxy_silent = proxy(None, false, Fault::NeverAnswer)?;
        let proxy_garbage = proxy(None, false, Fault::SshBanner)?;
        let proxy_untrusted = proxy(
            Some(&proxy_untrusted_cert.server_config),
            false,
            Fault::None,
        )?;

        let tls_proxy = |port, credentials| ProxyYaml::tls(port, &ca, credentials);
        let plain_proxy = |port| ProxyYaml::plain(port, None);
        let direct_tls = |file, about, port, verify, expect| Scenario {
            file,
            about,
            collector_port: port,
            ssl: true,
            verify,
            ca: Some(&ca),
            proxy: None,
            expect,
        };
        let via = |file, about, port, ssl, proxy, expect| Scenario {
            file,
            about,
            collector_port: port,
            ssl,
            verify: None,
            ca: ssl.then_some(ca.as_path()),
            proxy: Some(proxy),
            expect,
        };
        let good_auth = Some((PROXY_USER, PROXY_PASSWORD));
        let mut scenarios = vec![
            direct_tls(
                "direct_tls.yaml",
                "direct TLS to the echo collector",
                echo_tls.port(),
                None,
                status::OK,
            ),
            Scenario {
                file: "direct_plain.yaml",
                about: "direct plain TCP to the echo collector",
                collector_port: echo_plain.port(),
                ssl: false,
                verify: None,
                ca: None,
                proxy: None,
                expect: status::OK,
            },
            via(
                "proxy_plain.yaml",
                "plain proxy, TLS between agent and collector through it",
                echo_tls.port(),
                true,
                plain_proxy(proxy_plain.port()),
                status::OK,
            ),
            via(
                "proxy_tls.yaml",
                "TLS to the proxy, TLS to the collector inside (TLS in TLS)",
                echo_tls.port(),
                true,
                tls_proxy(proxy_tls.port(), None),
                status::OK,
            ),
            via(
                "proxy_tls_auth.yaml",
                "TLS proxy with Basic auth, TLS to the collector inside",
                echo_tls.port(),
                true,
                tls_proxy(proxy_tls_auth.port(), good_auth),
                status::OK,
            ),
            via(
                "proxy_auth_wrong.yaml",
                "TLS proxy with Basic auth, wrong password: expect 407",
                echo_tls.port(),
                true,
                tls_proxy(proxy_tls_auth.port(), Some((PROXY_USER, WRONG_PASSWORD))),
                status::PROXY_AUTH,
            ),
            via(
                "proxy_plain_collector_plain.yaml",
                "plain proxy, plain collector, no TLS anywhere",
                echo_plain.port(),
                false,
                plain_proxy(proxy_plain.port()),
                status::OK,
            ),
            via(
                "proxy_403.yaml",
                "proxy that answers 403 Forbidden",
                echo_tls.port(),
                true,
                plain_proxy(proxy_403.port()),
                status::PROXY_REFUSED,
            ),
            via(
                "proxy_auth_ntlm.yaml",
                "proxy that answers 407 offering Basic and NTLM, with a body and Connection: close",
                echo_tls.port(),
                true,
                plain_proxy(proxy_ntlm.port()),
                status::PROXY_AUTH,
            ),
            via(
                "proxy_digest.yaml",
                "plain proxy asking for Digest (MD5, chunked 407 body, kept alive), proxy_auth: digest",
                echo_tls.port(),
                true,
                ProxyYaml::plain(proxy_digest.port(), good_auth).auth("digest"),
                status::OK,
            ),
            via(
                "proxy_digest_any.yaml",
                "plain proxy asking for Digest, proxy_auth: any",
                echo_tls.port(),
                true,
                ProxyYaml::plain(proxy_digest.port(), good_auth).auth("any"),
                status::OK,
            ),
            via(
                "proxy_digest_wrong.yaml",
                "plain proxy asking for Digest, wrong password",
                echo_tls.port(),
                true,
                ProxyYaml::plain(proxy_digest.port(), Some((PROXY_USER, "wrong-password")))
                    .auth("digest"),
                status::PROXY_AUTH,
            ),
            via(
                "proxy_tls_digest.yaml",
                "TLS proxy asking for Digest, closing after its 407 (reconnect), TLS inside",
                echo_tls.port(),
                true,
                tls_proxy(proxy_tls_digest.port(), good_auth).auth("digest"),
                status::OK,
            ),
            via(
                "proxy_silent.yaml",
                "proxy that reads the request and never answers (open with a short timeout)",
                echo_tls.port(),
                true,
                plain_proxy(proxy_silent.port()),
                status::TIMEOUT,
            ),
            via(
                "proxy_garbage.yaml",
                "proxy port that answers with an SSH banner",
                echo_tls.port(),
                true,
                plain_proxy(proxy_garbage.port()),
                status::PROXY_PROTOCOL,
            ),
            direct_tls(
                "collector_untrusted.yaml",
                "collector certificate from an untrusted CA",
                collector_untrusted.port(),
                None,
                status::COLLECTOR_CERT,
            ),
            direct_tls(
                "collector_expired.yaml",
                "collector certificate expired on 2020-01-01",
                collector_expired.port(),
                None,
                status::COLLECTOR_CERT,
            ),
            direct_tls(
                "collector_wrong_name.yaml",
                "collector certificate issued for other.example",
                collector_wrong_name.port(),
                None,
                status::COLLECTOR_CERT,
            ),
            via(
                "proxy_cert_untrusted.yaml",
                "TLS proxy whose certificate is from an untrusted CA",
                echo_tls.port(),
                true,
                tls_proxy(proxy_untrusted.port(), None),
                status::PROXY_CERT,
            ),
            via(
                "proxy_tls_on_plain_port.yaml",
                "TLS to a proxy port that speaks plain HTTP",
                echo_tls.port(),
                true,
                tls_proxy(proxy_plain.port(), None),
                status::PROXY_TLS,
            ),
            direct_tls(
                "collector_noverify.yaml",
                "untrusted collector certificate, verification switched off",
                collector_untrusted.port(),
                Some(false),
                status::OK,
            ),
            direct_tls(
                "refused.yaml",
                "direct to a port where nothing listens",
                refused_port,
                None,
                status::CONNECT,
            ),
            via(
                "framed.yaml",
                "TLS proxy with Basic auth to the framed (acking) collector over TLS",
                framed.port(),
                true,
                tls_proxy(proxy_tls_auth.port(), good_auth),
                status::OK,
            ),
            via(
                "restart_proxy.yaml",
                "the TLS proxy with Basic auth behind a port that restart_proxy.ctl closes and \
                 opens again, to the framed collector over TLS",
                framed.port(),
                true,
                tls_proxy(restart.gate.port(), good_auth),
                status::OK,
            ),
        ];

        let port = |p: u16| p.to_string();
        let mut vars: Vec<(&str, String)> = vec![
            ("DIR", dir.to_string_lossy().into_owned()),
            ("HOST", HOST.to_string()),
            ("CA", ca.to_string_lossy().into_owned()),
            ("UNTRUSTED_CA", untrusted_ca.to_string_lossy().into_owned()),
            ("PROXY_USER", PROXY_USER.to_string()),
            ("PROXY_PASSWORD", PROXY_PASSWORD.to_string()),
            ("WRONG_PASSWORD", WRONG_PASSWORD.to_string()),
            ("ECHO_TLS_PORT", port(echo_tls.port())),
            ("ECHO_PLAIN_PORT", port(echo_plain.port())),
            ("FRAMED_TLS_PORT", port(framed.port())),
            ("COLLECTOR_UNTRUSTED_PORT", port(collector_untrusted.port())),
            ("COLLECTOR_EXPIRED_PORT", port(collector_expired.port())),
            (
                "COLLECTOR_WRONG_NAME_PORT",
                port(collector_wrong_name.port()),
            ),
            ("REFUSED_PORT", port(refused_port)),
            ("PROXY_PLAIN_PORT", port(proxy_plain.port())),
            ("PROXY_TLS_PORT", port(proxy_tls.port())),
            ("PROXY_TLS_AUTH_PORT", port(proxy_tls_auth.port())),
            ("PROXY_403_PORT", port(proxy_403.port())),
            ("PROXY_NTLM_PORT", port(proxy_ntlm.port())),
            ("PROXY_SILENT_PORT", port(proxy_silent.port())),
            ("PROXY_GARBAGE_PORT", port(proxy_garbage.port())),
            ("PROXY_UNTRUSTED_PORT", port(proxy_untrusted.port())),
            ("RESTART_PROXY_PORT", port(restart.gate.port())),
            (
                "RESTART_PROXY_CONTROL",
                restart.control.to_string_lossy().into_owned(),
            ),
            (
                "RESTART_PROXY_STATE",
                restart.state.to_string_lossy().into_owned(),
            ),
        ];

        let (real, collector_denied) = if real_proxies != Real::Off {
            // CONNECT to this one gets squid's 403: it must answer if squid let it through.
            let denied = EchoServer::start(Some(collector_cert.server_config.clone()))?;
            let allowed = vec![
                echo_tls.port(),
                echo_plain.port(),
                framed.port(),
                collector_untrusted.port(),
                collector_expired.port(),
                collector_wrong_name.port(),
            ];
            let ntlm = real_proxies == Real::WithNtlm;
            let real =
                RealProxies::start(&dir, &proxy_cert, allowed, denied.port(), ntlm, verbose)?;
            (Some(real), Some(denied))
        } else {
            (None, None)
        };
        if let (Some(real), Some(denied)) = (&real, &collector_denied) {
            let p = real.ports;
            let squid_auth = Some((SQUID_USER, SQUID_PASSWORD));
            let squid_wrong = Some((SQUID_USER, WRONG_PASSWORD));
            let tiny_auth = Some((TINYPROXY_USER, TINYPROXY_PASSWORD));
            let tiny_wrong = Some((TINYPROXY_USER, WRONG_PASSWORD));
            scenarios.extend([
                Scenario {
                    file: "squid_example1.yaml",
                    about: "docs example 1: squid's plain port, TLS to the collector, verified",
                    collector_port: echo_tls.port(),
                    ssl: true,
                    verify: Some(true),
                    ca: Some(&ca),
                    proxy: Some(ProxyYaml::plain(p.squid_plain, None)),
                    expect: status::OK,
                },
                via(
                    "squid_example2.yaml",
                    "docs example 2: TLS to squid's https_port, TLS to the collector inside",
                    echo_tls.port(),
                    true,
                    tls_proxy(p.squid_tls, None).verify(true),
                    status::OK,
                ),
                via(
                    "squid_example3.yaml",
                    "docs example 3: TLS to squid with Basic auth, TLS to the collector inside",
                    echo_tls.port(),
                    true,
                    tls_proxy(p.squid_tls_auth, squid_auth).verify(true),
                    status::OK,
                ),
                via(
                    "squid_plain_auth.yaml",
                    "squid's plain port with Basic auth, TLS to the collector",
                    echo_tls.port(),
                    true,
                    ProxyYaml::plain(p.squid_plain_auth, squid_auth),
                    status::OK,
                ),
                via(
                    "squid_plain_collector.yaml",
                    "squid's plain port, plain collector, no TLS anywhere",
                    echo_plain.port(),
                    false,
                    ProxyYaml::plain(p.squid_plain, None),
                    status::OK,
                ),
                via(
                    "squid_auth_missing.yaml",
                    "squid's plain auth port without credentials: 407",
                    echo_tls.port(),
                    true,
                    ProxyYaml::plain(p.squid_plain_auth, None),
                    status::PROXY_AUTH,
                ),
                via(
                    "squid_auth_wrong.yaml",
                    "squid's TLS auth port with a wrong password: 407",
                    echo_tls.port(),
                    true,
                    tls_proxy(p.squid_tls_auth, squid_wrong),
                    status::PROXY_AUTH,
                ),
                via(
                    "squid_denied_port.yaml",
                    "squid's plain port, CONNECT to a port its ACL denies: 403",
                    denied.port(),
                    true,
                    ProxyYaml::plain(p.squid_plain, None),
                    status::PROXY_REFUSED,
                ),
                via(
                    "squid_tls_on_plain_port.yaml",
                    "TLS to squid's plain http_port",
                    echo_tls.port(),
                    true,
                    tls_proxy(p.squid_plain, None),
                    status::PROXY_TLS,
                ),
                via(
                    "squid_plain_on_tls_port.yaml",
                    "plain HTTP CONNECT to squid's https_port",
                    echo_tls.port(),
                    true,
                    ProxyYaml::plain(p.squid_tls, None),
                    status::PROXY_PROTOCOL,
                ),
                via(
                    "squid_proxy_cert_untrusted.yaml",
                    "TLS to squid, its certificate checked against the untrusted CA",
                    echo_tls.port(),
                    true,
                    ProxyYaml::tls(p.squid_tls, &untrusted_ca, None),
                    status::PROXY_CERT,
                ),
                via(
                    "squid_collector_untrusted.yaml",
                    "through squid (TLS, auth) to a collector certificate from an untrusted CA",
                    collector_untrusted.port(),
                    true,
                    tls_proxy(p.squid_tls_auth, squid_auth),
                    status::COLLECTOR_CERT,
                ),
                via(
                    "squid_collector_expired.yaml",
                    "through squid (TLS, auth) to an expired collector certificate",
                    collector_expired.port(),
                    true,
                    tls_proxy(p.squid_tls_auth, squid_auth),
                    status::COLLECTOR_CERT,
                ),
                via(
                    "squid_collector_wrong_name.yaml",
                    "through squid (TLS, auth) to a collector certificate for other.example",
                    collector_wrong_name.port(),
                    true,
                    tls_proxy(p.squid_tls_auth, squid_auth),
                    status::COLLECTOR_CERT,
                ),
                Scenario {
                    file: "squid_noverify_both.yaml",
                    about: "TLS to squid and to an untrusted collector, both unverified",
                    collector_port: collector_untrusted.port(),
                    ssl: true,
                    verify: Some(false),
                    ca: Some(&ca),
                    proxy: Some(ProxyYaml::tls(p.squid_tls, &untrusted_ca, None).verify(false)),
                    expect: status::OK,
                },
                via(
                    "squid_framed.yaml",
                    "TLS to squid with Basic auth to the framed (acking) collector over TLS",
                    framed.port(),
                    true,
                    tls_proxy(p.squid_tls_auth, squid_auth),
                    status::OK,
                ),
                via(
                    "tinyproxy_plain.yaml",
                    "tinyproxy without auth, TLS to the collector",
                    echo_tls.port(),
                    true,
                    ProxyYaml::plain(p.tinyproxy, None),
                    status::OK,
                ),
                via(
                    "tinyproxy_auth.yaml",
                    "tinyproxy with BasicAuth, TLS to the collector",
                    echo_tls.port(),
                    true,
                    ProxyYaml::plain(p.tinyproxy_auth, tiny_auth),
                    status::OK,
                ),
                via(
                    "tinyproxy_auth_wrong.yaml",
                    "tinyproxy with BasicAuth, wrong password: 401 or 407",
                    echo_tls.port(),
                    true,
                    ProxyYaml::plain(p.tinyproxy_auth, tiny_wrong),
                    status::PROXY_AUTH,
                ),
                via(
                    "tinyproxy_plain_collector.yaml",
                    "tinyproxy without auth, plain collector, no TLS anywhere",
                    echo_plain.port(),
                    false,
                    ProxyYaml::plain(p.tinyproxy, None),
                    status::OK,
                ),
            ]);
            vars.extend([
                ("SQUID_PLAIN_PORT", port(p.squid_plain)),
                ("SQUID_PLAIN_AUTH_PORT", port(p.squid_plain_auth)),
                ("SQUID_TLS_PORT", port(p.squid_tls)),
                ("SQUID_TLS_AUTH_PORT", port(p.squid_tls_auth)),
                ("SQUID_USER", SQUID_USER.to_string()),
                ("SQUID_PASSWORD", SQUID_PASSWORD.to_string()),
                ("SQUID_DENIED_PORT", port(denied.port())),
                ("SQUID_DIR", real.squid_dir.to_string_lossy().into_owned()),
                ("TINYPROXY_PORT", port(p.tinyproxy)),
                ("TINYPROXY_AUTH_PORT", port(p.tinyproxy_auth)),
                ("TINYPROXY_USER", TINYPROXY_USER.to_string()),
                ("TINYPROXY_PASSWORD", TINYPROXY_PASSWORD.to_string()),
            ]);
        }
        if let Some(n) = real.as_ref().and_then(|real| real.ports.squid_ntlm) {
            // NTLMv2 through squid and the pyspnego helper, which checks the password.
            let ntlm = Some((ntlm_user.as_str(), NTLM_PASSWORD));
            let ntlm_upn = Some((ntlm_upn.as_str(), NTLM_PASSWORD));
            let ntlm_wrong = Some((ntlm_user.as_str(), WRONG_PASSWORD));
            let ntlm_plain = |credentials| ProxyYaml::plain(n.plain, credentials);
            let ntlm_tls = |credentials| tls_proxy(n.tls, credentials);
            scenarios.extend([
                via(
                    "squid_ntlm_plain.yaml",
                    "squid asking for NTLM, plain, proxy_auth: ntlm, DOMAIN\\user",
                    echo_tls.port(),
                    true,
                    ntlm_plain(ntlm).auth("ntlm"),
                    status::OK,
                ),
                via(
                    "squid_ntlm_tls.yaml",
                    "TLS to squid asking for NTLM, proxy_auth: ntlm, user@DOMAIN, TLS inside",
                    echo_tls.port(),
                    true,
                    ntlm_tls(ntlm_upn).auth("ntlm"),
                    status::OK,
                ),
                via(
                    "squid_ntlm_any.yaml",
                    "squid asking for NTLM, plain, proxy_auth: any",
                    echo_tls.port(),
                    true,
                    ntlm_plain(ntlm).auth("any"),
                    status::OK,
                ),
                via(
                    "squid_ntlm_tls_any.yaml",
                    "TLS to squid asking for NTLM, proxy_auth: any, TLS inside",
                    echo_tls.port(),
                    true,
                    ntlm_tls(ntlm).auth("any"),
                    status::OK,
                ),
                via(
                    "squid_ntlm_wrong.yaml",
                    "squid asking for NTLM, proxy_auth: ntlm, wrong password: 407",
                    echo_tls.port(),
                    true,
                    ntlm_plain(ntlm_wrong).auth("ntlm"),
                    status::PROXY_AUTH,
                ),
                via(
                    "squid_ntlm_tls_any_wrong.yaml",
                    "TLS to squid asking for NTLM, proxy_auth: any, wrong password: 407",
                    echo_tls.port(),
                    true,
                    ntlm_tls(ntlm_wrong).auth("any"),
                    status::PROXY_AUTH,
                ),
            ]);
            vars.extend([
                ("SQUID_NTLM_PLAIN_PORT", port(n.plain)),
                ("SQUID_NTLM_TLS_PORT", port(n.tls)),
                ("NTLM_USER", ntlm_user.clone()),
                ("NTLM_PASSWORD", NTLM_PASSWORD.to_string()),
            ]);
        }

        let negotiate = if negotiate {
            Some(NegotiateProxies::start(
                &dir,
                &proxy_cert,
                vec![echo_tls.port()],
                verbose,
            )?)
        } else {
            None
        };
        let mut command_env = Vec::new();
        if let Some(n) = &negotiate {
            let (keytab, principal) = (&client_keytab, &keytab_principal);
            let plain = |auth| ProxyYaml::plain(n.plain, None).auth(auth);
            let tls = |auth| tls_proxy(n.tls, None).auth(auth);
            scenarios.extend([
                via(
                    "negotiate_plain.yaml",
                    "squid asking for Negotiate, plain, proxy_auth: negotiate, the user's ticket",
                    echo_tls.port(),
                    true,
                    plain("negotiate"),
                    status::OK,
                ),
                via(
                    "negotiate_tls.yaml",
                    "TLS to squid asking for Negotiate, proxy_auth: negotiate, TLS inside",
                    echo_tls.port(),
                    true,
                    tls("negotiate"),
                    status::OK,
                ),
                via(
                    "negotiate_any.yaml",
                    "squid asking for Negotiate, plain, proxy_auth: any, the user's ticket",
                    echo_tls.port(),
                    true,
                    plain("any"),
                    status::OK,
                ),
                via(
                    "negotiate_tls_any.yaml",
                    "TLS to squid asking for Negotiate, proxy_auth: any, TLS inside",
                    echo_tls.port(),
                    true,
                    tls("any"),
                    status::OK,
                ),
                via(
                    "negotiate_no_ticket.yaml",
                    "squid asking for Negotiate, proxy_auth: negotiate, no ticket \
                     (open it with KRB5CCNAME=$DTUN_TESTENV_KRB5_EMPTY_CCNAME)",
                    echo_tls.port(),
                    true,
                    plain("negotiate"),
                    status::PROXY_AUTH,
                ),
                via(
                    "negotiate_tls_any_no_ticket.yaml",
                    "TLS to squid asking for Negotiate, proxy_auth: any, no ticket \
                     (open it with KRB5CCNAME=$DTUN_TESTENV_KRB5_EMPTY_CCNAME)",
                    echo_tls.port(),
                    true,
                    tls("any"),
                    status::PROXY_AUTH,
                ),
                via(
                    "negotiate_keytab.yaml",
                    "squid asking for Negotiate, plain, tickets from the client keytab \
                     (open it with KRB5CCNAME=$DTUN_TESTENV_KRB5_KEYTAB_CCNAME)",
                    echo_tls.port(),
                    true,
                    plain("negotiate").keytab(principal, keytab),
                    status::OK,
                ),
                via(
                    "negotiate_tls_keytab.yaml",
                    "TLS to squid asking for Negotiate, tickets from the client keytab \
                     (open it with KRB5CCNAME=$DTUN_TESTENV_KRB5_KEYTAB_CCNAME)",
                    echo_tls.port(),
                    true,
                    tls("negotiate").keytab(principal, keytab),
                    status::OK,
                ),
            ]);
            vars.extend([
                ("NEGOTIATE_PLAIN_PORT", port(n.plain)),
                ("NEGOTIATE_TLS_PORT", port(n.tls)),
                ("KDC_PORT", port(n.kdc.port())),
                ("KRB5_REALM", kdc::REALM.to_string()),
                ("KRB5_USER", kdc::USER.to_string()),
                ("KRB5_PASSWORD", kdc::USER_PASSWORD.to_string()),
                (
                    "KRB5_CONFIG",
                    n.kdc.krb5_conf().to_string_lossy().into_owned(),
                ),
                ("KRB5_CCNAME", n.kdc.ccache()),
                ("KRB5_EMPTY_CCNAME", n.kdc.empty_ccache()),
                ("KRB5_KEYTAB_CCNAME", n.keytab_ccache()),
                ("KRB5_CLIENT_KEYTAB", keytab.to_string_lossy().into_owned()),
                ("KRB5_KEYTAB_PRINCIPAL", principal.clone()),
            ]);
            command_env = n.kdc.env();
        }

        for scenario in &scenarios {
            fs::write(dir.join(scenario.file), scenario.render(&dir))?;
        }
        let expected: Vec<(String, &'static str)> = scenarios
            .iter()
            .map(|s| (s.file.to_string(), s.expect))
            .collect();
        fs::write(dir.join(EXPECTED_FILE), expected_txt(&expected))?;
        let vars: Vec<(String, String)> =
            vars.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        let mut env_txt = String::new();
        for (key, value) in &vars {
            let _ = writeln!(env_txt, "{key}={value}");
        }
        fs::write(dir.join("env.txt"), env_txt)?;

        Ok(Env {
            vars,
            dir,
            expected,
            command_env,
            _real: real,
            _negotiate: negotiate,
            _restart: restart,
            _echo_tls: echo_tls,
            _echo_plain: echo_plain,
            _framed: framed,
            _collector_untrusted: collector_untrusted,
            _collector_expired: collector_expired,
            _collector_wrong_name: collector_wrong_name,
            _collector_denied: collector_denied,
            _proxies: vec![
                proxy_plain,
                proxy_tls,
                proxy_tls_auth,
                proxy_403,
                proxy_ntlm,
                proxy_digest,
                proxy_tls_digest,
                proxy_silent,
                proxy_garbage,
                proxy_untrusted,
            ],
        })
    }
}

/// Exit code of a finished child: its code, or 128 + the signal that killed it.
fn exit_code(status: std::process::ExitStatus) -> u8 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => (code & 0xff) as u8,
        (None, Some(signal)) => (128 + signal).clamp(0, 255) as u8,
        (None, None) => 1,
    }
}

fn local_runtime() -> io::Result<Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

/// SIGTERM and SIGINT, caught from before the environment starts until the end, so that a
/// signal never kills this process while squid or tinyproxy (in process groups of their own)
/// run: each signal ends the command or `serve`, and then everything is stopped.
struct Signals {
    term: Signal,
    int: Signal,
}

const SIGINT: u8 = 2;
const SIGTERM: u8 = 15;

impl Signals {
    fn new(runtime: &Runtime) -> io::Result<Signals> {
        let _guard = runtime.enter();
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// A signal that already arrived (while the environment started), if any.
    async fn pending(&mut self) -> Option<u8> {
        tokio::select! {
            biased;
            _ = self.term.recv() => Some(SIGTERM),
            _ = self.int.recv() => Some(SIGINT),
            // Lets the runtime's driver deliver what is queued before giving up.
            _ = tokio::time::sleep(Duration::from_millis(1)) => None,
        }
    }
}

/// Runs `command` in the environment; returns its exit code (1 if it could not be started).
fn run_command(runtime: &Runtime, signals: &mut Signals, env: &Env, command: &[String]) -> u8 {
    runtime.block_on(async {
        let mut cmd = tokio::process::Command::new(&command[0]);
        cmd.args(&command[1..])
            .envs(env.command_env.iter().map(|(k, v)| (k, v)))
            .env("DTUN_TESTENV_DIR", &env.dir)
            .kill_on_drop(true);
        for (key, value) in &env.vars {
            cmd.env(format!("DTUN_TESTENV_{key}"), value);
        }
        let mut child = match cmd.spawn() {
            Ok(child) => child,
            Err(e) => {
                eprintln!("dtun-testenv: cannot run {:?}: {e}", command[0]);
                return 1;
            }
        };
        tokio::select! {
            status = child.wait() => status.map(exit_code).unwrap_or(1),
            _ = signals.term.recv() => {
                let _ = child.start_kill();
                let _ = child.wait().await;
                128 + SIGTERM
            }
            _ = signals.int.recv() => {
                // The command usually got the same SIGINT from the terminal: let it finish.
                match tokio::time::timeout(SIGINT_GRACE, child.wait()).await {
                    Ok(Ok(status)) => exit_code(status),
                    _ => {
                        let _ = child.start_kill();
                        let _ = child.wait().await;
                        128 + SIGINT
                    }
                }
            }
        }
    })
}

/// Prints `ready` and waits for stdin EOF, SIGTERM or SIGINT.
fn serve(runtime: &Runtime, signals: &mut Signals, env: &Env) -> io::Result<()> {
    let (eof_tx, eof_rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::Builder::new()
        .name("stdin-watch".into())
        .spawn(move || {
            let _ = io::copy(&mut io::stdin().lock(), &mut io::sink());
            let _ = eof_tx.send(());
        })?;
    runtime.block_on(async {
        let mut stdout = io::stdout().lock();
        writeln!(stdout, "ready")?;
        stdout.flush()?;
        drop(stdout);
        eprintln!(
            "dtun-testenv: serving {} scenarios in {}",
            env.expected.len(),
            env.dir.display()
        );
        tokio::select! {
            _ = eof_rx => {}
            _ = signals.term.recv() => {}
            _ = signals.int.recv() => {}
        }
        Ok(())
    })
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("dtun-testenv: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let ntlm_venv = (args.real() == Real::WithNtlm).then(venv_dir);
    let checks = [
        (
            "--real-proxies",
            args.real_proxies
                .then(|| missing_real_proxies(ntlm_venv.as_deref())),
        ),
        ("--negotiate", args.negotiate.then(missing_negotiate)),
    ];
    for (flag, missing) in checks {
        let Some(missing) = missing else { continue };
        if !missing.is_empty() {
            eprintln!("dtun-testenv: ERROR: {flag} needs programs that are not installed:");
            for what in missing {
                eprintln!("dtun-testenv: ERROR:   missing {what}");
            }
            eprintln!("dtun-testenv: ERROR: nothing was started.");
            return ExitCode::from(1);
        }
    }
    let started = local_runtime().and_then(|runtime| {
        let signals = Signals::new(&runtime)?;
        Ok((runtime, signals))
    });
    let (runtime, mut signals) = match started {
        Ok(started) => started,
        Err(e) => {
            eprintln!("dtun-testenv: cannot set up a runtime and signal handling: {e}");
            return ExitCode::from(1);
        }
    };
    let env = match Env::start(&args.dir, args.verbose, args.real(), args.negotiate) {
        Ok(env) => env,
        Err(e) => {
            eprintln!(
                "dtun-testenv: cannot start the environment in {}: {e}",
                args.dir.display()
            );
            return ExitCode::from(1);
        }
    };
    let code = if let Some(signal) = runtime.block_on(signals.pending()) {
        eprintln!("dtun-testenv: signal {signal} while starting: stopping");
        128 + signal
    } else if args.serve {
        match serve(&runtime, &mut signals, &env) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("dtun-testenv: {e}");
                1
            }
        }
    } else {
        run_command(&runtime, &mut signals, &env, &args.command)
    };
    drop(env);
    ExitCode::from(code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::io::Read as _;
    use std::net::TcpStream;

    /// Reads `DIR/env.txt` into pairs.
    fn read_env_txt(dir: &Path) -> Vec<(String, String)> {
        fs::read_to_string(dir.join("env.txt"))
            .unwrap()
            .lines()
            .map(|line| {
                let (k, v) = line.split_once('=').unwrap();
                (k.to_string(), v.to_string())
            })
            .collect()
    }

    fn temp_dir(tag: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("dtun-testenv-bin-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    fn yaml(dir: &Path, file: &str) -> serde_yaml::Value {
        serde_yaml::from_str(&fs::read_to_string(dir.join(file)).unwrap()).unwrap()
    }

    /// The status names declared in the C header.
    fn header_status_names() -> BTreeSet<String> {
        let header = Path::new(env!("CARGO_MANIFEST_DIR")).join("../include/dragent_tunnel.h");
        let text = fs::read_to_string(&header).unwrap();
        text.lines()
            .filter_map(|line| {
                let name = line.trim().split(' ').next()?;
                (name.starts_with("DTUN_") && line.contains(" = ")).then(|| name.to_string())
            })
            .collect()
    }

    /// `expected.txt` has exactly one line per scenario file in the folder, each with a status
    /// the header declares, and matches what the environment recorded. Returns its lines.
    fn check_expected(env: &Env) -> Vec<(String, String)> {
        let text = fs::read_to_string(env.dir.join(EXPECTED_FILE)).unwrap();
        let lines: Vec<(String, String)> = text
            .lines()
            .map(|line| {
                let fields: Vec<&str> = line.split(' ').collect();
                assert_eq!(fields.len(), 2, "expected.txt line {line:?}");
                (fields[0].to_string(), fields[1].to_string())
            })
            .collect();
        let listed: BTreeSet<&str> = lines.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(listed.len(), lines.len(), "a file listed twice: {text}");
        let on_disk: BTreeSet<String> = fs::read_dir(&env.dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.ends_with(".yaml"))
            .collect();
        let on_disk: BTreeSet<&str> = on_disk.iter().map(String::as_str).collect();
        assert_eq!(listed, on_disk, "expected.txt vs the scenario files");
        let names = header_status_names();
        assert!(names.contains("DTUN_ERR_PROXY_AUTH"), "{names:?}");
        for (file, status) in &lines {
            assert!(
                names.contains(status),
                "{file}: {status} is not in the header"
            );
            let first_line = fs::read_to_string(env.dir.join(file)).unwrap();
            assert!(first_line.contains(&format!("# expected dtun_open status: {status}\n")));
        }
        let recorded: Vec<(String, String)> = env
            .expected
            .iter()
            .map(|(f, s)| (f.clone(), s.to_string()))
            .collect();
        assert_eq!(lines, recorded);
        lines
    }

    #[test]
    fn args() {
        let parse = |s: &str| parse_args(s.split(' ').map(String::from));
        let a = parse("run --dir d --verbose -- sh -c true").unwrap();
        assert!(!a.serve && a.verbose && !a.real_proxies);
        assert_eq!(a.dir, PathBuf::from("d"));
        assert_eq!(a.command, ["sh", "-c", "true"]);
        let s = parse("serve --dir d").unwrap();
        assert!(s.serve && !s.real_proxies && !s.verbose);
        assert!(parse("run --dir d").is_err());
        assert!(parse("run -- true").is_err());
        assert!(parse("serve --dir d -- true").is_err());
        assert!(parse("bogus --dir d").is_err());
        assert!(parse("").is_err());
        assert!(parse("run --dir").is_err());
    }

    #[test]
    fn args_real_proxies() {
        let parse = |s: &str| parse_args(s.split(' ').map(String::from));
        let a = parse("run --dir d --real-proxies --verbose -- true").unwrap();
        assert!(a.real_proxies && a.verbose && !a.serve);
        assert_eq!(a.command, ["true"]);
        let a = parse("run --real-proxies --dir d -- true").unwrap();
        assert!(a.real_proxies && !a.verbose);
        let s = parse("serve --dir d --real-proxies").unwrap();
        assert!(s.serve && s.real_proxies && !s.negotiate);
        let n = parse("run --dir d --negotiate --real-proxies -- true").unwrap();
        assert!(n.negotiate && n.real_proxies);
        let n = parse("run --dir d --negotiate -- prog --real-proxies").unwrap();
        assert!(n.negotiate && !n.real_proxies);
        assert!(
            parse("serve --real-proxies --dir d -v")
                .unwrap()
                .real_proxies
        );
        // After `--` it belongs to the command.
        let a = parse("run --dir d -- prog --real-proxies").unwrap();
        assert!(!a.real_proxies);
        assert_eq!(a.command, ["prog", "--real-proxies"]);
        assert!(parse("run --dir d --real-proxies").is_err());
        assert!(parse("serve --dir d --real-proxy").is_err());
        assert!(parse("serve --dir d --real-proxies=yes").is_err());
        assert_eq!(
            parse("serve --dir d --real-proxies").unwrap().real(),
            Real::WithNtlm
        );
        assert_eq!(parse("serve --dir d").unwrap().real(), Real::Off);
    }

    #[test]
    fn args_no_ntlm() {
        let parse = |s: &str| parse_args(s.split(' ').map(String::from));
        let a = parse("run --dir d --real-proxies --no-ntlm -- true").unwrap();
        assert!(a.real_proxies && a.no_ntlm && !a.serve);
        assert_eq!(a.real(), Real::NoNtlm);
        assert_eq!(a.command, ["true"]);
        // Either order, serve too, along with the other flags.
        let s = parse("serve --no-ntlm --dir d --verbose --real-proxies --negotiate").unwrap();
        assert!(s.serve && s.no_ntlm && s.verbose && s.negotiate);
        assert_eq!(s.real(), Real::NoNtlm);
        let a = parse("run --dir d --real-proxies -- true").unwrap();
        assert!(!a.no_ntlm);
        // Without --real-proxies it is a usage error, saying why.
        for alone in [
            "run --dir d --no-ntlm -- true",
            "serve --dir d --no-ntlm",
            "serve --dir d --no-ntlm --negotiate",
        ] {
            let err = parse(alone).unwrap_err();
            assert!(
                err.contains("--no-ntlm") && err.contains("--real-proxies"),
                "{err}"
            );
        }
        // After `--` it belongs to the command.
        let a = parse("run --dir d -- prog --no-ntlm").unwrap();
        assert!(!a.no_ntlm && !a.real_proxies);
        assert_eq!(a.command, ["prog", "--no-ntlm"]);
        assert!(parse("serve --dir d --real-proxies --no-ntlm=yes").is_err());
    }

    #[test]
    fn expected_txt_format() {
        let lines = vec![
            ("a.yaml".to_string(), status::OK),
            ("b.yaml".to_string(), status::PROXY_AUTH),
        ];
        assert_eq!(
            expected_txt(&lines),
            "a.yaml DTUN_OK\nb.yaml DTUN_ERR_PROXY_AUTH\n"
        );
    }

    #[test]
    fn expected_statuses_are_header_names() {
        let names = header_status_names();
        for status in [
            status::OK,
            status::CONNECT,
            status::TIMEOUT,
            status::PROXY_TLS,
            status::PROXY_CERT,
            status::PROXY_AUTH,
            status::PROXY_REFUSED,
            status::PROXY_PROTOCOL,
            status::COLLECTOR_CERT,
        ] {
            assert!(names.contains(status), "{status} not in {names:?}");
        }
    }

    #[test]
    fn environment_files_and_servers() {
        let dir = temp_dir("env");
        let env = Env::start(&dir, false, Real::Off, false).unwrap();
        let vars = read_env_txt(&env.dir);
        assert_eq!(vars, env.vars);
        let get = |k: &str| vars.iter().find(|(key, _)| key == k).unwrap().1.clone();
        assert_eq!(get("PROXY_PASSWORD"), PROXY_PASSWORD);
        assert!(!vars.iter().any(|(k, _)| k.starts_with("SQUID_")));
        assert!(!vars.iter().any(|(k, _)| k.starts_with("KRB5_")));
        assert!(env.command_env.is_empty());

        let files = [
            "direct_tls.yaml",
            "direct_plain.yaml",
            "proxy_plain.yaml",
            "proxy_tls.yaml",
            "proxy_tls_auth.yaml",
            "proxy_auth_wrong.yaml",
            "proxy_plain_collector_plain.yaml",
            "proxy_403.yaml",
            "proxy_auth_ntlm.yaml",
            "proxy_digest.yaml",
            "proxy_digest_any.yaml",
            "proxy_digest_wrong.yaml",
            "proxy_tls_digest.yaml",
            "proxy_silent.yaml",
            "proxy_garbage.yaml",
            "collector_untrusted.yaml",
            "collector_expired.yaml",
            "collector_wrong_name.yaml",
            "proxy_cert_untrusted.yaml",
            "proxy_tls_on_plain_port.yaml",
            "collector_noverify.yaml",
            "refused.yaml",
            "framed.yaml",
            "restart_proxy.yaml",
        ];
        for file in files {
            let y = yaml(&env.dir, file);
            assert_eq!(y["collector"].as_str(), Some("localhost"), "{file}");
            assert_eq!(
                y["root_dir"].as_str(),
                Some(env.dir.to_str().unwrap()),
                "{file}"
            );
            if let Some(ca) = y["ca_certificate"].as_str() {
                assert!(Path::new(ca).is_absolute() && Path::new(ca).is_file());
            }
        }
        // Without --real-proxies: exactly the scenarios above, with these expectations.
        let lines = check_expected(&env);
        assert_eq!(lines.len(), files.len());
        let expect = |file: &str| lines.iter().find(|(f, _)| f == file).unwrap().1.clone();
        assert_eq!(expect("direct_tls.yaml"), "DTUN_OK");
        assert_eq!(expect("proxy_silent.yaml"), "DTUN_ERR_TIMEOUT");
        assert_eq!(expect("refused.yaml"), "DTUN_ERR_CONNECT");
        assert_eq!(expect("proxy_auth_wrong.yaml"), "DTUN_ERR_PROXY_AUTH");
        assert_eq!(expect("collector_expired.yaml"), "DTUN_ERR_COLLECTOR_CERT");

        let auth = yaml(&env.dir, "proxy_tls_auth.yaml");
        assert_eq!(
            auth["http_proxy"]["proxy_password"].as_str(),
            Some(PROXY_PASSWORD)
        );
        assert_eq!(auth["http_proxy"]["proxy_user"].as_str(), Some("agent"));
        assert_eq!(auth["http_proxy"]["ssl"].as_bool(), Some(true));
        let plain = yaml(&env.dir, "direct_plain.yaml");
        assert_eq!(plain["ssl"].as_bool(), Some(false));
        let noverify = yaml(&env.dir, "collector_noverify.yaml");
        assert_eq!(noverify["ssl_verify_certificate"].as_bool(), Some(false));

        // The plain echo collector of direct_plain.yaml answers.
        let port = plain["collector_port"].as_u64().unwrap() as u16;
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.write_all(b"ping").unwrap();
        let mut back = [0u8; 4];
        s.read_exact(&mut back).unwrap();
        assert_eq!(&back, b"ping");
        drop(s);

        // Everything stops with the environment.
        let proxy_port: u16 = get("PROXY_PLAIN_PORT").parse().unwrap();
        let env_dir = env.dir.clone();
        drop(env);
        assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
        assert!(TcpStream::connect(("127.0.0.1", proxy_port)).is_err());
        fs::remove_dir_all(&env_dir).unwrap();
    }

    #[test]
    fn run_passes_the_exit_code_the_environment_and_sigterm() {
        let dir = temp_dir("run");
        let env = Env::start(&dir, false, Real::Off, false).unwrap();
        let runtime = local_runtime().unwrap();
        let mut signals = Signals::new(&runtime).unwrap();
        assert_eq!(runtime.block_on(signals.pending()), None);
        let script = "test -f \"$DTUN_TESTENV_DIR/framed.yaml\" && \
                      test -n \"$DTUN_TESTENV_PROXY_TLS_AUTH_PORT\" && exit 7";
        let command: Vec<String> = ["sh", "-c", script].map(String::from).to_vec();
        assert_eq!(run_command(&runtime, &mut signals, &env, &command), 7);
        let missing = vec!["dtun-testenv-no-such-command".to_string()];
        assert_eq!(run_command(&runtime, &mut signals, &env, &missing), 1);

        // SIGTERM to this process ends the command (tokio's handler is installed: the test
        // process itself survives). The command signals us once it runs.
        let me = std::process::id();
        let script = format!("kill -TERM {me}; exec sleep 30");
        let command: Vec<String> = ["sh".to_string(), "-c".to_string(), script].to_vec();
        let started = std::time::Instant::now();
        assert_eq!(
            run_command(&runtime, &mut signals, &env, &command),
            128 + SIGTERM
        );
        assert!(started.elapsed() < Duration::from_secs(10));
        // A signal that arrived while no command ran is reported by `pending`.
        std::process::Command::new("kill")
            .args(["-TERM", &me.to_string()])
            .status()
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let mut seen = None;
        while seen.is_none() && std::time::Instant::now() < deadline {
            seen = runtime.block_on(signals.pending());
        }
        assert_eq!(seen, Some(SIGTERM));

        let env_dir = env.dir.clone();
        drop(env);
        fs::remove_dir_all(&env_dir).unwrap();
    }

    fn alive(pid: u32) -> bool {
        fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|stat| !stat.contains(") Z "))
            .unwrap_or(false)
    }

    /// Sends a CONNECT and returns the status code of the reply.
    fn connect_status(stream: &mut TcpStream, target: &str) -> u16 {
        write!(
            stream,
            "CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n"
        )
        .unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap() == 1 {
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head).into_owned();
        head.split(' ').nth(1).unwrap().parse().unwrap()
    }

    #[test]
    fn real_proxies_environment() {
        use dtun_testenv::ntlm::require_ntlm_helper_or_skip;
        use dtun_testenv::{require_or_skip, RealProxy};
        if !require_or_skip(
            "dtun-testenv --real-proxies",
            &[RealProxy::Squid, RealProxy::Tinyproxy],
        ) || require_ntlm_helper_or_skip("dtun-testenv --real-proxies").is_none()
        {
            return;
        }
        assert!(missing_real_proxies(Some(&venv_dir())).is_empty());
        check_real_proxies("real", Real::WithNtlm);
    }

    /// `--real-proxies --no-ntlm`: everything but the NTLM squid, whose virtualenv is then
    /// not needed.
    #[test]
    fn real_proxies_environment_no_ntlm() {
        use dtun_testenv::{require_or_skip, RealProxy};
        if !require_or_skip(
            "dtun-testenv --real-proxies --no-ntlm",
            &[RealProxy::Squid, RealProxy::Tinyproxy],
        ) {
            return;
        }
        assert_eq!(missing_real_proxies(None), Vec::<String>::new());
        check_real_proxies("real-no-ntlm", Real::NoNtlm);
    }

    /// Without `--no-ntlm` a missing virtualenv is missing; with it, it is not looked for.
    #[test]
    fn missing_real_proxies_checks_ntlm_only_when_asked() {
        let nowhere = temp_dir("no-such-venv");
        let with = missing_real_proxies(Some(&nowhere));
        assert!(
            with.iter().any(|m| m.starts_with("the NTLM helper: ")),
            "{with:?}"
        );
        let without = missing_real_proxies(None);
        assert!(!without.iter().any(|m| m.contains("NTLM")), "{without:?}");
        assert_eq!(with.len(), without.len() + 1, "{with:?} vs {without:?}");
    }

    /// Starts the environment with `real` (not [`Real::Off`]) in a folder named after `tag`
    /// and checks the real proxies' scenarios, keys and processes, the NTLM ones exactly when
    /// `real` is [`Real::WithNtlm`].
    fn check_real_proxies(tag: &str, real: Real) {
        let with_ntlm = real == Real::WithNtlm;
        let dir = temp_dir(tag);
        let env = Env::start(&dir, false, real, false).unwrap();
        let vars = read_env_txt(&env.dir);
        assert_eq!(vars, env.vars);
        let get = |k: &str| {
            vars.iter()
                .find(|(key, _)| key == k)
                .unwrap_or_else(|| panic!("{k} missing from env.txt"))
                .1
                .clone()
        };
        let port = |k: &str| get(k).parse::<u16>().unwrap();
        assert_eq!(get("SQUID_PASSWORD"), SQUID_PASSWORD);
        assert_eq!(get("TINYPROXY_PASSWORD"), TINYPROXY_PASSWORD);
        assert_eq!(get("SQUID_USER"), SQUID_USER);
        assert_eq!(get("TINYPROXY_USER"), TINYPROXY_USER);
        const NTLM_KEYS: [&str; 4] = [
            "SQUID_NTLM_PLAIN_PORT",
            "SQUID_NTLM_TLS_PORT",
            "NTLM_USER",
            "NTLM_PASSWORD",
        ];
        let mut proxy_ports: Vec<u16> = [
            "SQUID_PLAIN_PORT",
            "SQUID_PLAIN_AUTH_PORT",
            "SQUID_TLS_PORT",
            "SQUID_TLS_AUTH_PORT",
            "TINYPROXY_PORT",
            "TINYPROXY_AUTH_PORT",
        ]
        .map(port)
        .to_vec();
        if with_ntlm {
            proxy_ports.extend(NTLM_KEYS[..2].iter().map(|k| port(k)));
        } else {
            for (key, _) in &vars {
                assert!(!key.contains("NTLM") || key == "PROXY_NTLM_PORT", "{key}");
            }
        }
        let denied = port("SQUID_DENIED_PORT");

        let lines = check_expected(&env);
        let files: BTreeSet<&str> = lines.iter().map(|(f, _)| f.as_str()).collect();
        let ntlm_files = [
            "squid_ntlm_plain.yaml",
            "squid_ntlm_tls.yaml",
            "squid_ntlm_any.yaml",
            "squid_ntlm_tls_any.yaml",
            "squid_ntlm_wrong.yaml",
            "squid_ntlm_tls_any_wrong.yaml",
        ];
        let mut wanted = vec![
            "framed.yaml",
            "squid_example1.yaml",
            "squid_example2.yaml",
            "squid_example3.yaml",
            "squid_plain_auth.yaml",
            "squid_plain_collector.yaml",
            "squid_auth_missing.yaml",
            "squid_auth_wrong.yaml",
            "squid_denied_port.yaml",
            "squid_tls_on_plain_port.yaml",
            "squid_plain_on_tls_port.yaml",
            "squid_proxy_cert_untrusted.yaml",
            "squid_collector_untrusted.yaml",
            "squid_collector_expired.yaml",
            "squid_collector_wrong_name.yaml",
            "squid_noverify_both.yaml",
            "squid_framed.yaml",
            "tinyproxy_plain.yaml",
            "tinyproxy_auth.yaml",
            "tinyproxy_auth_wrong.yaml",
            "tinyproxy_plain_collector.yaml",
        ];
        if with_ntlm {
            wanted.extend(ntlm_files);
        } else {
            // check_expected: expected.txt lists exactly the scenario files on disk.
            for file in &files {
                assert!(!file.starts_with("squid_ntlm_"), "{file} written");
            }
            assert!(!env.dir.join("squid-ntlm").exists());
            assert!(!env.dir.join("ntlm").exists());
        }
        let real_files = files
            .iter()
            .filter(|f| f.starts_with("squid_") || f.starts_with("tinyproxy_"))
            .count();
        assert_eq!(real_files, wanted.len() - 1, "{files:?}");
        for file in wanted {
            assert!(files.contains(file), "{file} not written");
            let y = yaml(&env.dir, file);
            assert_eq!(y["collector"].as_str(), Some("localhost"), "{file}");
            for ca in [&y["ca_certificate"], &y["http_proxy"]["ca_certificate"]] {
                if let Some(ca) = ca.as_str() {
                    assert!(Path::new(ca).is_absolute() && Path::new(ca).is_file());
                }
            }
            let proxy = y["http_proxy"]["proxy_port"].as_u64().unwrap() as u16;
            if file.starts_with("squid_") || file.starts_with("tinyproxy_") {
                assert!(proxy_ports.contains(&proxy), "{file}: proxy port {proxy}");
            }
        }
        let ex3 = yaml(&env.dir, "squid_example3.yaml");
        assert_eq!(
            ex3["http_proxy"]["proxy_password"].as_str(),
            Some(SQUID_PASSWORD)
        );
        if with_ntlm {
            let ntlm = yaml(&env.dir, "squid_ntlm_tls.yaml");
            assert_eq!(
                ntlm["http_proxy"]["proxy_user"].as_str(),
                Some("agent@CORP")
            );
            assert_eq!(ntlm["http_proxy"]["proxy_auth"].as_str(), Some("ntlm"));
            assert_eq!(get("NTLM_USER"), "CORP\\agent");
            assert_eq!(get("NTLM_PASSWORD"), NTLM_PASSWORD);
        }
        let denied_yaml = yaml(&env.dir, "squid_denied_port.yaml");
        assert_eq!(denied_yaml["collector_port"].as_u64(), Some(denied.into()));

        // squid tunnels to a collector port and refuses the denied one.
        let squid_plain = proxy_ports[0];
        let echo_plain = get("ECHO_PLAIN_PORT");
        let mut s = TcpStream::connect(("127.0.0.1", squid_plain)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        assert_eq!(
            connect_status(&mut s, &format!("localhost:{echo_plain}")),
            200
        );
        s.write_all(b"ping").unwrap();
        let mut back = [0u8; 4];
        s.read_exact(&mut back).unwrap();
        assert_eq!(&back, b"ping");
        let mut s = TcpStream::connect(("127.0.0.1", squid_plain)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        assert_eq!(connect_status(&mut s, &format!("localhost:{denied}")), 403);
        drop(s);

        // Everything stops with the environment, squid and tinyproxy included.
        let pids: Vec<u32> = {
            let real = env._real.as_ref().unwrap();
            assert_eq!(real.squid_ntlm.is_some(), with_ntlm);
            assert_eq!(real.ports.squid_ntlm.is_some(), with_ntlm);
            let mut pids = vec![
                real.squid.as_ref().unwrap().pid(),
                real.tinyproxy.as_ref().unwrap().pid(),
                real.tinyproxy_auth.as_ref().unwrap().pid(),
            ];
            pids.extend(real.squid_ntlm.as_ref().map(Squid::pid));
            pids
        };
        let env_dir = env.dir.clone();
        drop(env);
        for pid in pids {
            assert!(!alive(pid), "pid {pid} still running");
        }
        for port in proxy_ports.into_iter().chain([denied]) {
            assert!(TcpStream::connect(("127.0.0.1", port)).is_err(), "{port}");
        }
        fs::remove_dir_all(&env_dir).unwrap();
    }

    /// The restartable proxy: its FIFO closes the port (connections refused, the state file
    /// says so) and opens it again on the same port, where CONNECT works.
    #[test]
    fn restart_proxy_closes_and_opens_on_command() {
        let dir = temp_dir("restart");
        let env = Env::start(&dir, false, Real::Off, false).unwrap();
        let vars = read_env_txt(&env.dir);
        let get = |k: &str| vars.iter().find(|(key, _)| key == k).unwrap().1.clone();
        let port: u16 = get("RESTART_PROXY_PORT").parse().unwrap();
        let state = PathBuf::from(get("RESTART_PROXY_STATE"));
        let control = PathBuf::from(get("RESTART_PROXY_CONTROL"));
        assert_eq!(fs::read_to_string(&state).unwrap(), "0 open\n");
        let y = yaml(&env.dir, "restart_proxy.yaml");
        assert_eq!(y["http_proxy"]["proxy_port"].as_u64(), Some(port.into()));
        assert!(TcpStream::connect(("127.0.0.1", port)).is_ok());

        let command = |line: &str, want: &str| {
            // Each write a writer of its own, as `echo close > FIFO` from a shell.
            let mut fifo = fs::OpenOptions::new().write(true).open(&control).unwrap();
            writeln!(fifo, "{line}").unwrap();
            drop(fifo);
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            loop {
                let now = fs::read_to_string(&state).unwrap_or_default();
                if now == format!("{want}\n") {
                    break;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "state {now:?}, want {want}"
                );
                std::thread::sleep(Duration::from_millis(10));
            }
        };
        command("close", "1 closed");
        assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
        command("open", "2 open");
        // The proxy behind it answers: TLS first, so only check that the port accepts.
        assert!(TcpStream::connect(("127.0.0.1", port)).is_ok());
        command(
            "frobnicate",
            "3 error: unknown command \"frobnicate\" (open or close)",
        );
        command("close", "4 closed");
        command("close", "5 closed");
        assert!(TcpStream::connect(("127.0.0.1", port)).is_err());

        let env_dir = env.dir.clone();
        drop(env);
        fs::remove_dir_all(&env_dir).unwrap();
    }

    #[test]
    fn negotiate_environment() {
        use dtun_testenv::{require_or_skip, RealProxy};
        if !require_or_skip(
            "dtun-testenv --negotiate",
            &[RealProxy::Kdc, RealProxy::Squid],
        ) {
            return;
        }
        assert!(missing_negotiate().is_empty(), "{:?}", missing_negotiate());
        let dir = temp_dir("negotiate");
        let env = Env::start(&dir, false, Real::Off, true).unwrap();
        let vars = read_env_txt(&env.dir);
        let get = |k: &str| vars.iter().find(|(key, _)| key == k).unwrap().1.clone();
        let lines = check_expected(&env);
        let negotiate: Vec<&(String, String)> = lines
            .iter()
            .filter(|(f, _)| f.starts_with("negotiate_"))
            .collect();
        assert_eq!(negotiate.len(), 8, "{negotiate:?}");
        for (file, status) in negotiate {
            let want = if file.ends_with("_no_ticket.yaml") {
                "DTUN_ERR_PROXY_AUTH"
            } else {
                "DTUN_OK"
            };
            assert_eq!(status, want, "{file}");
        }
        let keytab = yaml(&env.dir, "negotiate_tls_keytab.yaml");
        let keytab_path = keytab["http_proxy"]["proxy_keytab"].as_str().unwrap();
        assert!(Path::new(keytab_path).is_file());
        assert_eq!(keytab_path, get("KRB5_CLIENT_KEYTAB"));
        assert_eq!(
            keytab["http_proxy"]["proxy_user"].as_str(),
            Some(get("KRB5_KEYTAB_PRINCIPAL").as_str())
        );
        // The command gets the KDC's environment; its ticket cache holds the user's ticket.
        let ccache = env
            .command_env
            .iter()
            .find(|(k, _)| k == "KRB5CCNAME")
            .unwrap();
        assert_eq!(ccache.1, get("KRB5_CCNAME"));
        // squid asks for Negotiate on both auth ports.
        for key in ["NEGOTIATE_PLAIN_PORT", "NEGOTIATE_TLS_PORT"] {
            let port: u16 = get(key).parse().unwrap();
            assert!(TcpStream::connect(("127.0.0.1", port)).is_ok(), "{key}");
        }
        let plain: u16 = get("NEGOTIATE_PLAIN_PORT").parse().unwrap();
        let mut s = TcpStream::connect(("127.0.0.1", plain)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let target = format!("localhost:{}", get("ECHO_TLS_PORT"));
        assert_eq!(connect_status(&mut s, &target), 407);
        let env_dir = env.dir.clone();
        drop(env);
        fs::remove_dir_all(&env_dir).unwrap();
    }
}
