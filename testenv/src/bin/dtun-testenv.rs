//! `dtun-testenv`: starts a complete test environment (throwaway PKI, echo and framed collectors,
//! plain, TLS, authenticating and faulty CONNECT proxies, and on request a real squid and two
//! real tinyproxies), writes one `dragent.yaml` per scenario and either runs a command inside it
//! or serves until told to stop.
//!
//! ```text
//! dtun-testenv run   --dir DIR [--verbose] [--real-proxies] -- COMMAND [ARGS...]
//! dtun-testenv serve --dir DIR [--verbose] [--real-proxies]
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
//! writes the `squid_*.yaml` and `tinyproxy_*.yaml` scenarios. Without squid or tinyproxy
//! installed it exits 1 at once, loudly. Their configuration and logs live in `DIR/squid`,
//! `DIR/tinyproxy` and `DIR/tinyproxy-auth`.

use std::fmt::Write as _;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use dtun_testenv::collector::{EchoServer, FramedCollector};
use dtun_testenv::pki::{CertKind, Issued, Pki};
use dtun_testenv::ports::free_port;
use dtun_testenv::proxy::{Fault, ProxyOptions, TestProxy};
use dtun_testenv::squid::{squid_available, Squid, SquidOptions};
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
/// Host name used for every server in the scenarios (certificates carry it as a SAN).
const HOST: &str = "localhost";
/// Names on the certificates of the good servers.
const GOOD_NAMES: &[&str] = &["localhost", "127.0.0.1", "::1"];
/// How long `run` waits for a command that got SIGINT along with us before killing it.
const SIGINT_GRACE: Duration = Duration::from_secs(5);
/// Name of the file of expected `dtun_open` statuses.
const EXPECTED_FILE: &str = "expected.txt";

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
  dtun-testenv run   --dir DIR [--verbose] [--real-proxies] -- COMMAND [ARGS...]
  dtun-testenv serve --dir DIR [--verbose] [--real-proxies]

  --verbose       log proxy and collector activity (and squid's access.log at the end)
  --real-proxies  also start a real squid and two tinyproxies (squid-openssl and tinyproxy
                  must be installed) and write their squid_*.yaml / tinyproxy_*.yaml scenarios";

/// Parsed command line.
#[derive(Debug)]
struct Args {
    serve: bool,
    dir: PathBuf,
    verbose: bool,
    real_proxies: bool,
    command: Vec<String>,
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
    let mut command = Vec::new();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--dir" => dir = Some(args.next().ok_or("--dir needs a value")?),
            "--verbose" | "-v" => verbose = true,
            "--real-proxies" => real_proxies = true,
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
    Ok(Args {
        serve,
        dir: PathBuf::from(dir),
        verbose,
        real_proxies,
        command,
    })
}

/// What `--real-proxies` needs and this machine lacks (empty: all there).
fn missing_real_proxies() -> Vec<&'static str> {
    let mut missing = Vec::new();
    if !squid_available() {
        missing.push(
            "squid built with OpenSSL, with basic_ncsa_auth and htpasswd or openssl \
             (Debian: apt-get install -y squid-openssl apache2-utils)",
        );
    }
    if !tinyproxy_available() {
        missing.push("tinyproxy (Debian: apt-get install -y tinyproxy)");
    }
    missing
}

/// The running real proxies of `--real-proxies`. Dropping it stops them all, in parallel.
struct RealProxies {
    squid: Option<Squid>,
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
    /// Starts squid and both tinyproxies at once (squid takes the longest), in `dir/squid`,
    /// `dir/tinyproxy` and `dir/tinyproxy-auth`. If one fails the others are stopped again.
    fn start(
        dir: &Path,
        proxy_cert: &Issued,
        allowed_ports: Vec<u16>,
        denied_port: u16,
        verbose: bool,
    ) -> io::Result<RealProxies> {
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
        let (squid, tiny, tiny_auth) = std::thread::scope(|scope| {
            let squid = scope.spawn(|| Squid::start(squid_opts));
            let tiny = scope.spawn(|| Tinyproxy::start(tiny_opts));
            let tiny_auth = Tinyproxy::start(tiny_auth_opts);
            (join(squid, "squid"), join(tiny, "tinyproxy"), tiny_auth)
        });
        // On an early return the proxies already bound here are stopped as they drop.
        let squid = squid.map_err(|e| context("squid", e))?;
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
            tinyproxy: Some(tinyproxy),
            tinyproxy_auth: Some(tinyproxy_auth),
            ports,
            verbose,
        })
    }
}

impl Drop for RealProxies {
    fn drop(&mut self) {
        let (squid, tiny, tiny_auth) = (
            self.squid.take(),
            self.tinyproxy.take(),
            self.tinyproxy_auth.take(),
        );
        // Each stop waits for a graceful exit (squid about 2 s): wait for them side by side.
        std::thread::scope(|scope| {
            scope.spawn(move || drop(tiny));
            scope.spawn(move || drop(tiny_auth));
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

/// The running environment. Dropping it stops every server and proxy.
struct Env {
    /// `KEY=VALUE` entries of `env.txt`, in order.
    vars: Vec<(String, String)>,
    /// Absolute environment folder.
    dir: PathBuf,
    /// `(file, expected status)` of every scenario written, in order (`expected.txt`).
    expected: Vec<(String, &'static str)>,
    _real: Option<RealProxies>,
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
        }
    }

    /// The same with `proxy_auth` written out.
    fn auth(self, auth: &'static str) -> ProxyYaml<'a> {
        ProxyYaml {
            auth: Some(auth),
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
    /// Makes the PKI in `dir`, starts every server (and with `real_proxies` squid and the
    /// tinyproxies) and writes the scenarios, `env.txt` and `expected.txt`.
    fn start(dir: &Path, verbose: bool, real_proxies: bool) -> io::Result<Env> {
        fs::create_dir_all(dir)?;
        let dir = dir.canonicalize()?;
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
        ];

        let (real, collector_denied) = if real_proxies {
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
            let real = RealProxies::start(&dir, &proxy_cert, allowed, denied.port(), verbose)?;
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
            _real: real,
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
    if args.real_proxies {
        let missing = missing_real_proxies();
        if !missing.is_empty() {
            eprintln!("dtun-testenv: ERROR: --real-proxies needs programs that are not installed:");
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
    let env = match Env::start(&args.dir, args.verbose, args.real_proxies) {
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
        assert!(s.serve && s.real_proxies);
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
        let env = Env::start(&dir, false, false).unwrap();
        let vars = read_env_txt(&env.dir);
        assert_eq!(vars, env.vars);
        let get = |k: &str| vars.iter().find(|(key, _)| key == k).unwrap().1.clone();
        assert_eq!(get("PROXY_PASSWORD"), PROXY_PASSWORD);
        assert!(!vars.iter().any(|(k, _)| k.starts_with("SQUID_")));

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
        let env = Env::start(&dir, false, false).unwrap();
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
        use dtun_testenv::{require_or_skip, RealProxy};
        if !require_or_skip(
            "dtun-testenv --real-proxies",
            &[RealProxy::Squid, RealProxy::Tinyproxy],
        ) {
            return;
        }
        let dir = temp_dir("real");
        let env = Env::start(&dir, false, true).unwrap();
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
        let proxy_ports = [
            "SQUID_PLAIN_PORT",
            "SQUID_PLAIN_AUTH_PORT",
            "SQUID_TLS_PORT",
            "SQUID_TLS_AUTH_PORT",
            "TINYPROXY_PORT",
            "TINYPROXY_AUTH_PORT",
        ]
        .map(port);
        let denied = port("SQUID_DENIED_PORT");

        let lines = check_expected(&env);
        let files: BTreeSet<&str> = lines.iter().map(|(f, _)| f.as_str()).collect();
        for file in [
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
        ] {
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
            vec![
                real.squid.as_ref().unwrap().pid(),
                real.tinyproxy.as_ref().unwrap().pid(),
                real.tinyproxy_auth.as_ref().unwrap().pid(),
            ]
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
}
