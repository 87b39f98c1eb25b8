//! A real squid (the `squid-openssl` build, 5.x) as a CONNECT proxy for tests.
//!
//! [`Squid::start`] runs one squid in the foreground (`squid -N -f FILE`) with up to four
//! listening ports on 127.0.0.1: plain HTTP, plain HTTP with Basic auth, TLS (`https_port`) and
//! TLS with Basic auth. Everything it needs (configuration, certificate copies, htpasswd file,
//! logs, pid file) lives in the directory the caller passes; dropping the handle stops squid and
//! its helpers. [`squid_missing`] says what this machine lacks to run it, if anything.
//!
//! [`Squid::start_with_bump`] adds a fifth port that inspects TLS ("SslBump", as corporate
//! proxies do): it answers CONNECT with 200, then terminates the client's TLS with a
//! certificate it makes for the target and signs with a bump CA the test provides, and opens
//! its own TLS to the target. [`bump_missing`] says what that needs beyond squid.
//!
//! Every name squid resolves is logged in `cache.log` (`debug_options` 14,4 and 78,3):
//! [`Squid::name_lookups`] lists them, so a test can prove that squid did not look a name up.
//!
//! The module also holds the process plumbing shared with [`crate::tinyproxy`].

use std::fmt::Write as _;
use std::fs;
use std::io;
use std::net::{Ipv4Addr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use self::harness::{
    check_path_for_config, find_program, free_ports, read_tail, ManagedChild, READY_TIMEOUT,
};

/// How many times [`Squid::start`] picks fresh ports when one of them was taken meanwhile.
const START_ATTEMPTS: usize = 4;

/// Where Debian, Fedora and source builds put squid's helpers.
const HELPER_DIRS: &[&str] = &[
    "/usr/lib/squid",
    "/usr/lib64/squid",
    "/usr/libexec/squid",
    "/usr/local/libexec/squid",
    "/usr/local/squid/libexec",
];

/// The password-file helper for Basic auth, if installed.
fn ncsa_helper() -> Option<PathBuf> {
    helper("basic_ncsa_auth")
}

/// A squid helper program, if installed.
pub(crate) fn helper(name: &str) -> Option<PathBuf> {
    HELPER_DIRS
        .iter()
        .map(|dir| Path::new(dir).join(name))
        .find(|path| harness::is_executable(path))
}

/// The certificate generator of SslBump (`security_file_certgen`, `ssl_crtd` before squid 4).
fn certgen_helper() -> Option<PathBuf> {
    helper("security_file_certgen").or_else(|| helper("ssl_crtd"))
}

/// What this machine lacks to run [`Squid::start_with_bump`] beyond [`squid_missing`], or
/// `None`: squid's certificate generator helper (`security_file_certgen`, part of Debian's
/// `squid-openssl`).
pub fn bump_missing() -> Option<String> {
    match (squid_missing(), certgen_helper()) {
        (None, Some(_)) => None,
        (None, None) => Some(format!(
            "squid's security_file_certgen helper (looked in {}; Debian: squid-openssl)",
            HELPER_DIRS.join(", ")
        )),
        (Some(missing), Some(_)) => Some(missing),
        (Some(missing), None) => Some(format!("{missing}, squid's security_file_certgen helper")),
    }
}

/// Whether a usable squid is installed: [`squid_missing`] finds nothing missing.
pub fn squid_available() -> bool {
    squid_missing().is_none()
}

/// What this machine lacks to run [`Squid`], or `None`: the binary must run and be built with
/// OpenSSL (`squid -v` lists `--with-openssl`, i.e. Debian's `squid-openssl`, so that
/// `https_port ... tls-cert=...`, TLS to the proxy, works; Debian's plain `squid` is built
/// with GnuTLS), the `basic_ncsa_auth` helper must exist and passwords must be hashable
/// (`htpasswd` from apache2-utils, or `openssl`).
///
/// The answer is computed once per process.
pub fn squid_missing() -> Option<String> {
    static MISSING: OnceLock<Option<String>> = OnceLock::new();
    MISSING
        .get_or_init(|| {
            let mut missing = Vec::new();
            match find_program("squid") {
                None => missing.push("squid (Debian: squid-openssl)".to_string()),
                Some(squid) => match Command::new(&squid)
                    .arg("-v")
                    .stdin(Stdio::null())
                    .stderr(Stdio::null())
                    .output()
                {
                    Ok(out) if out.status.success() => {
                        if !built_with_openssl(&String::from_utf8_lossy(&out.stdout)) {
                            missing.push(format!(
                                "a squid built with OpenSSL ({} -v does not list \
                                 --with-openssl; Debian: squid-openssl)",
                                squid.display()
                            ));
                        }
                    }
                    Ok(out) => missing.push(format!(
                        "a squid that runs ({} -v failed: {})",
                        squid.display(),
                        out.status
                    )),
                    Err(err) => {
                        missing.push(format!("a squid that runs ({} -v: {err})", squid.display()))
                    }
                },
            }
            if ncsa_helper().is_none() {
                missing.push(format!(
                    "squid's basic_ncsa_auth helper (looked in {}; Debian: squid-openssl)",
                    HELPER_DIRS.join(", ")
                ));
            }
            if find_program("htpasswd").is_none() && find_program("openssl").is_none() {
                missing.push("htpasswd or openssl (Debian: apache2-utils)".to_string());
            }
            (!missing.is_empty()).then(|| missing.join(", "))
        })
        .clone()
}

/// Whether `squid -v` output lists `--with-openssl` among the configure options (quoted, as
/// squid prints them, or bare; `--with-openssl=no` and `--without-openssl` do not count).
fn built_with_openssl(version: &str) -> bool {
    version
        .split_whitespace()
        .map(|option| option.trim_matches(|c| c == '\'' || c == '"'))
        .any(|option| {
            option == "--with-openssl"
                || option
                    .strip_prefix("--with-openssl=")
                    .is_some_and(|value| value != "no")
        })
}

/// What [`Squid::start`] should run.
#[derive(Debug, Clone, Default)]
pub struct SquidOptions {
    /// Directory for the configuration, the copies of the certificate and key, the htpasswd
    /// file, `cache.log`, `access.log` and the pid file. Created if missing. When the tests run
    /// as root squid switches to the user `proxy`: this directory is then handed to that user
    /// (chown, mode 0755), and ancestors inside the system temp directory that deny others
    /// search permission get `o+x`. Must not contain whitespace.
    pub dir: PathBuf,
    /// Certificate chain (PEM, leaf first) and private key (PEM) for the two TLS ports. The
    /// files are copied into `dir`. Without it the TLS ports are not opened.
    pub tls_cert: Option<(PathBuf, PathBuf)>,
    /// Basic auth users `(name, password)` accepted on the two auth ports. Passwords may contain
    /// any printable character (`: @ / % +` included); names must not contain `:` or
    /// whitespace and are case-sensitive. Without users the auth ports are not opened.
    pub users: Vec<(String, String)>,
    /// CONNECT is allowed to these ports, on 127.0.0.0/8, `localhost` and `::1` only.
    /// Other ports and other hosts are answered 403.
    pub allowed_ports: Vec<u16>,
    /// CONNECT to this port is answered `403 Forbidden` (after authentication on the auth
    /// ports), even if it is also in `allowed_ports`.
    pub denied_port: Option<u16>,
}

/// How the auth ports of [`Squid::start_with_auth`] authenticate.
#[derive(Debug, Clone, Default)]
pub struct SquidAuth {
    /// The auth ports ask for Digest (`auth_param digest program digest_file_auth FILE`,
    /// squid 5.7: MD5, qop=auth) instead of Basic. The users' passwords must not contain
    /// `:` (the helper's file is `user:password` lines).
    pub digest: bool,
    /// `client_persistent_connections off`: squid closes the client connection after each
    /// reply (a 407 included), so a client must reconnect to answer a challenge.
    pub no_keep_alive: bool,
    /// The auth ports ask for NTLM through this `auth_param ntlm program` value (see
    /// [`crate::ntlm::NtlmHelper::squid_program`]; `users` are then not used).
    pub ntlm_program: Option<String>,
    /// The auth ports ask for Negotiate through this `auth_param negotiate program` value
    /// (e.g. `negotiate_kerberos_auth -s HTTP/localhost@REALM -k KEYTAB`; `users` are then
    /// not used). The helper runs as squid's user: its files must be readable by it.
    pub negotiate_program: Option<String>,
    /// Extra environment of squid and so of its helpers (`KRB5_CONFIG`, `KRB5RCACHEDIR`).
    pub env: Vec<(String, String)>,
}

/// TLS inspection for [`Squid::start_with_bump`].
///
/// On its port squid answers an allowed CONNECT with `200 Connection established`, reads the
/// client's ClientHello (`ssl_bump peek` at step 1), connects to the target and checks its
/// certificate against [`SslBump::upstream_ca`], then `bump`s: the client gets a certificate
/// mimicking the target's (same subject and names) signed by the bump CA. Bytes inside that
/// are not HTTP (an agent's protocol) are tunnelled to the target, re-encrypted
/// (`on_unsupported_protocol tunnel all`), once squid holds a whole line that is no request
/// line: until the client's first bytes include a line feed (or fill squid's request-line
/// limit), squid waits for more and nothing reaches the target. The ACLs are those of the
/// plain port; there is no auth.
#[derive(Debug, Clone)]
pub struct SslBump {
    /// The bump CA's certificate and private key (PEM), copied into the squid directory
    /// (see [`crate::pki::Pki::make_ca`]).
    pub ca: (PathBuf, PathBuf),
    /// The CA file squid trusts for the targets' certificates (the collectors').
    pub upstream_ca: PathBuf,
}

impl SquidOptions {
    /// Options with only the directory set: just the plain port, no CONNECT allowed.
    pub fn new(dir: impl Into<PathBuf>) -> SquidOptions {
        SquidOptions {
            dir: dir.into(),
            ..SquidOptions::default()
        }
    }
}

/// A running squid. Dropping it stops squid (SIGTERM, then SIGKILL to its process group after
/// a bounded wait) and reaps it; squid's graceful stop takes about 2 s.
///
/// Rules, in order: on the auth ports a request without valid credentials is answered
/// `407` (`Proxy-Authenticate: Basic realm="dtun-test"`); CONNECT to
/// [`SquidOptions::denied_port`] is answered `403`; CONNECT to an allowed port on a loopback
/// host is tunnelled (`HTTP/1.1 200 Connection established`); anything else is answered `403`.
/// A CONNECT to an allowed port where nothing listens is answered `503`.
#[derive(Debug)]
pub struct Squid {
    process: ManagedChild,
    dir: PathBuf,
    plain: u16,
    plain_auth: Option<u16>,
    tls: Option<u16>,
    tls_auth: Option<u16>,
    bump: Option<u16>,
    plain6: Option<u16>,
    startup: Duration,
}

/// The listening ports chosen for one start attempt.
#[derive(Debug, Clone, Copy)]
struct Ports {
    plain: u16,
    plain_auth: Option<u16>,
    tls: Option<u16>,
    tls_auth: Option<u16>,
    bump: Option<u16>,
    /// The plain port on `[::1]` ([`Squid::start_with_ipv6`]); not in [`Ports::all`], which
    /// are the IPv4 ones.
    plain6: Option<u16>,
}

impl Ports {
    fn all(&self) -> Vec<u16> {
        [
            Some(self.plain),
            self.plain_auth,
            self.tls,
            self.tls_auth,
            self.bump,
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}

/// The user squid switches to when started as root: (name, uid, gid).
type RunAs = Option<(String, u32, u32)>;

impl Squid {
    /// Writes the configuration into `opts.dir` and starts squid, returning once every port
    /// accepts connections (at most 20 s; typically well under a second).
    ///
    /// Errors: squid is not installed (`NotFound`), invalid options (`InvalidInput`), squid
    /// exited or did not become ready in time (the message contains the end of `cache.log`).
    pub fn start(opts: SquidOptions) -> io::Result<Squid> {
        Squid::start_inner(opts, None, false, SquidAuth::default())
    }

    /// [`Squid::start`] with one more plain `http_port` that inspects TLS (see [`SslBump`]):
    /// [`Squid::bump_port`]. Its certificate database is initialised in `opts.dir` first.
    ///
    /// Errors: those of [`Squid::start`]; the certificate generator is missing (`NotFound`,
    /// see [`bump_missing`]) or failed to initialise its database.
    pub fn start_with_bump(opts: SquidOptions, bump: SslBump) -> io::Result<Squid> {
        Squid::start_inner(opts, Some(bump), false, SquidAuth::default())
    }

    /// [`Squid::start`] with one more plain `http_port`, without auth, on `[::1]`
    /// ([`Squid::plain6_port`]): a proxy reached over IPv6. CONNECT to `[::1]` targets is
    /// allowed on every port (the loopback rule), so IPv6 collectors work through the IPv4
    /// ports too.
    pub fn start_with_ipv6(opts: SquidOptions) -> io::Result<Squid> {
        Squid::start_inner(opts, None, true, SquidAuth::default())
    }

    /// [`Squid::start`] with the auth ports asking for Digest and/or squid closing the
    /// connection after each reply (see [`SquidAuth`]).
    pub fn start_with_auth(opts: SquidOptions, auth: SquidAuth) -> io::Result<Squid> {
        Squid::start_inner(opts, None, false, auth)
    }

    fn start_inner(
        opts: SquidOptions,
        bump: Option<SslBump>,
        ipv6: bool,
        mode: SquidAuth,
    ) -> io::Result<Squid> {
        let begin = Instant::now();
        let squid = find_program("squid")
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "squid is not installed"))?;
        validate(&opts)?;

        fs::create_dir_all(&opts.dir)?;
        let dir = opts.dir.canonicalize()?;
        check_path_for_config(&dir, "squid")?;
        let run_as = run_as_user();
        harness::prepare_dir_for(&dir, run_as.as_ref().map(|(_, uid, gid)| (*uid, *gid)))?;
        let owner = run_as.as_ref().map(|(_, uid, gid)| (*uid, *gid));

        let tls_files = match &opts.tls_cert {
            Some((cert, key)) => {
                let cert_copy = dir.join("proxy-cert.pem");
                let key_copy = dir.join("proxy-key.pem");
                fs::copy(cert, &cert_copy)?;
                fs::copy(key, &key_copy)?;
                harness::set_owner_mode(&cert_copy, owner, 0o644)?;
                harness::set_owner_mode(&key_copy, owner, 0o600)?;
                Some((cert_copy, key_copy))
            }
            None => None,
        };
        let bump_files = match &bump {
            Some(bump) => Some(prepare_bump(&dir, bump, owner)?),
            None => None,
        };
        let auth = if let Some(program) = mode
            .ntlm_program
            .as_ref()
            .or(mode.negotiate_program.as_ref())
        {
            Some((PathBuf::from(program), PathBuf::new()))
        } else if opts.users.is_empty() {
            None
        } else if mode.digest {
            let helper = helper("digest_file_auth").ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    "squid's digest_file_auth not found",
                )
            })?;
            // digest_file_auth reads `user:password` lines (plain text).
            let passwd = dir.join("digest_passwd");
            let text: String = opts
                .users
                .iter()
                .map(|(user, password)| format!("{user}:{password}\n"))
                .collect();
            fs::write(&passwd, text)?;
            harness::set_owner_mode(&passwd, owner, 0o600)?;
            Some((helper, passwd))
        } else {
            let helper = ncsa_helper().ok_or_else(|| {
                io::Error::new(io::ErrorKind::NotFound, "squid's basic_ncsa_auth not found")
            })?;
            let passwd = dir.join("passwd");
            write_htpasswd(&passwd, &opts.users)?;
            harness::set_owner_mode(&passwd, owner, 0o600)?;
            Some((helper, passwd))
        };

        let conf_path = dir.join("squid.conf");
        let cache_log = dir.join("cache.log");
        let access_log = dir.join("access.log");
        let stderr_path = dir.join("squid.stderr");
        let mut last_error = None;
        for _ in 0..START_ATTEMPTS {
            let (has_auth, has_tls) = (auth.is_some(), tls_files.is_some());
            let has_bump = bump_files.is_some();
            let wanted = 1
                + usize::from(has_auth)
                + usize::from(has_tls)
                + usize::from(has_auth && has_tls)
                + usize::from(has_bump)
                + usize::from(ipv6);
            let mut numbers = free_ports(wanted).into_iter();
            let ports = Ports {
                plain: numbers.next().expect("one port"),
                plain_auth: has_auth.then(|| numbers.next().expect("port")),
                tls: has_tls.then(|| numbers.next().expect("port")),
                tls_auth: (has_auth && has_tls).then(|| numbers.next().expect("port")),
                bump: has_bump.then(|| numbers.next().expect("port")),
                plain6: ipv6.then(|| numbers.next().expect("port")),
            };
            let bump = bump_files.as_ref().zip(ports.bump);
            let conf = config(&dir, &opts, ports, &run_as, &tls_files, &auth, bump, &mode);
            fs::write(&conf_path, conf)?;
            harness::set_owner_mode(&conf_path, owner, 0o644)?;
            for log in [&cache_log, &access_log] {
                fs::write(log, b"")?;
                harness::set_owner_mode(log, owner, 0o644)?;
            }
            let stderr = fs::File::create(&stderr_path)?;
            let mut command = Command::new(&squid);
            command
                .arg("-N")
                // A service name of its own: squid names its shared memory segments after it
                // (/dev/shm/squid-tls_session_cache.shm by default), so squids started side by
                // side would share them, and one stopping removes the other's.
                .arg("-n")
                .arg(service_name())
                .arg("-f")
                .arg(&conf_path)
                .current_dir(&dir)
                .envs(mode.env.iter().map(|(k, v)| (k, v)))
                .stdout(stderr.try_clone()?)
                .stderr(stderr);
            let mut process = ManagedChild::spawn(&mut command, "squid")?;
            match wait_ready(&mut process, &ports, &cache_log, &stderr_path) {
                Ok(()) => {
                    return Ok(Squid {
                        process,
                        dir,
                        plain: ports.plain,
                        plain_auth: ports.plain_auth,
                        tls: ports.tls,
                        tls_auth: ports.tls_auth,
                        bump: ports.bump,
                        plain6: ports.plain6,
                        startup: begin.elapsed(),
                    });
                }
                Err(Ready::PortTaken(err)) => {
                    process.stop();
                    last_error = Some(err);
                }
                Err(Ready::Failed(err)) => {
                    process.stop();
                    return Err(err);
                }
            }
        }
        Err(last_error.unwrap_or_else(|| io::Error::other("squid did not start")))
    }

    /// The plain `http_port` without auth (always open).
    pub fn plain_port(&self) -> Option<u16> {
        Some(self.plain)
    }

    /// The plain `http_port` without auth on `[::1]`; `None` unless started with
    /// [`Squid::start_with_ipv6`].
    pub fn plain6_port(&self) -> Option<u16> {
        self.plain6
    }

    /// The plain `http_port` that requires Basic auth; `None` without users.
    pub fn plain_auth_port(&self) -> Option<u16> {
        self.plain_auth
    }

    /// The `https_port` (TLS to the proxy) without auth; `None` without a certificate.
    pub fn tls_port(&self) -> Option<u16> {
        self.tls
    }

    /// The `https_port` that requires Basic auth; `None` without a certificate or users.
    pub fn tls_auth_port(&self) -> Option<u16> {
        self.tls_auth
    }

    /// The plain `http_port` that inspects TLS (see [`SslBump`]); `None` unless started with
    /// [`Squid::start_with_bump`].
    pub fn bump_port(&self) -> Option<u16> {
        self.bump
    }

    /// Squid's process id.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// The directory holding the configuration and logs.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// How long [`Squid::start`] took, from the call until every port accepted connections.
    pub fn startup_time(&self) -> Duration {
        self.startup
    }

    /// The last lines of `cache.log` (and anything squid wrote to stderr), for failure messages;
    /// without the name lookup debug lines.
    pub fn log_tail(&self) -> String {
        log_tail(&self.dir.join("cache.log"), &self.dir.join("squid.stderr"))
    }

    /// The host names squid looked up since it started, each once, in order: from the lines
    /// its name cache and resolver write to `cache.log` (`nbgethostbyname: NAME`,
    /// `ipcache_gethostbyname: 'NAME'`, `idnsALookup: ... for NAME, id = ...`). Names found in
    /// `/etc/hosts` (`localhost`) are lookups too; checking whether a string *is* an IP
    /// address (`lookupHostIP: Given Non-IP 'NAME'`) is not.
    ///
    /// Squid writes the line when the lookup starts, before it answers the request, and
    /// flushes `cache.log` after every line: a lookup made for a request whose reply has
    /// arrived is listed.
    pub fn name_lookups(&self) -> Vec<String> {
        let log = fs::read_to_string(self.dir.join("cache.log")).unwrap_or_default();
        parse_name_lookups(&log)
    }

    /// The whole `access.log`: one line per request, e.g.
    /// `... TCP_TUNNEL/200 39 CONNECT 127.0.0.1:4711 alice HIER_DIRECT/127.0.0.1 -`.
    /// Squid writes a line when the request or tunnel ends.
    pub fn access_log(&self) -> String {
        fs::read_to_string(self.dir.join("access.log")).unwrap_or_default()
    }
}

/// Rejects options squid cannot represent.
/// A squid service name (`squid -n`) no other squid of this machine's tests uses at the same
/// time: this process's id and a counter.
fn service_name() -> String {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("dtun{}x{n}", std::process::id())
}

fn validate(opts: &SquidOptions) -> io::Result<()> {
    let invalid = |msg: String| Err(io::Error::new(io::ErrorKind::InvalidInput, msg));
    for (name, password) in &opts.users {
        if name.is_empty()
            || name
                .chars()
                .any(|c| c == ':' || c.is_whitespace() || c.is_control())
        {
            return invalid(format!(
                "squid user name {name:?} is empty or has ':', whitespace or control characters"
            ));
        }
        if password.chars().any(|c| c.is_control()) {
            return invalid(format!(
                "password of squid user {name:?} has control characters"
            ));
        }
    }
    if opts.allowed_ports.contains(&0) || opts.denied_port == Some(0) {
        return invalid("port 0 in squid options".to_string());
    }
    Ok(())
}

/// The user squid runs as: `proxy` (or `nobody`) when started as root, else the current user.
fn run_as_user() -> RunAs {
    if harness::effective_uid() != Some(0) {
        return None;
    }
    ["proxy", "nobody"]
        .iter()
        .find_map(|name| harness::lookup_user(name).map(|(uid, gid)| (name.to_string(), uid, gid)))
}

/// Writes an htpasswd file with MD5 (apr1) hashes, which `basic_ncsa_auth` accepts.
///
/// Squid passes user and password to the helper URL-escaped and the helper unescapes them, so
/// any printable password works (checked with `p:a@s/s%w+rd`).
fn write_htpasswd(path: &Path, users: &[(String, String)]) -> io::Result<()> {
    let mut file = String::new();
    for (name, password) in users {
        let hash = if let Some(htpasswd) = find_program("htpasswd") {
            // -n: print, -i: password from stdin, -m: MD5 (apr1).
            let line = harness::run_with_stdin(
                Command::new(htpasswd).args(["-n", "-i", "-m"]).arg(name),
                password.as_bytes(),
            )?;
            let line = line.lines().next().unwrap_or_default().to_string();
            match line.split_once(':') {
                Some((_, hash)) => hash.to_string(),
                None => return Err(io::Error::other(format!("htpasswd printed {line:?}"))),
            }
        } else if let Some(openssl) = find_program("openssl") {
            let mut input = password.as_bytes().to_vec();
            input.push(b'\n');
            let out = harness::run_with_stdin(
                Command::new(openssl).args(["passwd", "-apr1", "-stdin"]),
                &input,
            )?;
            out.trim().to_string()
        } else {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                "neither htpasswd nor openssl is installed",
            ));
        };
        if !hash.starts_with("$apr1$") {
            return Err(io::Error::other(format!(
                "unexpected password hash {hash:?}"
            )));
        }
        writeln!(file, "{name}:{hash}").expect("write to String");
    }
    fs::write(path, file)
}

/// The squid configuration for one start attempt.
#[allow(clippy::too_many_arguments)]
fn config(
    dir: &Path,
    opts: &SquidOptions,
    ports: Ports,
    run_as: &RunAs,
    tls_files: &Option<(PathBuf, PathBuf)>,
    auth: &Option<(PathBuf, PathBuf)>,
    bump: Option<(&BumpFiles, u16)>,
    mode: &SquidAuth,
) -> String {
    let d = dir.display();
    let mut c = String::new();
    let mut line = |text: String| {
        c.push_str(&text);
        c.push('\n');
    };
    line("# Written by dtun-testenv (squid.rs) for one test run.".into());
    line("visible_hostname dtun-test".into());
    line(format!("pid_filename {d}/squid.pid"));
    line(format!("cache_log {d}/cache.log"));
    // stdio: squid writes the log itself (no log_file_daemon helper process).
    line(format!("access_log stdio:{d}/access.log"));
    line("cache_store_log none".into());
    line(format!("coredump_dir {d}"));
    line("cache deny all".into());
    line("cache_mem 8 MB".into());
    line("max_filedescriptors 8192".into());
    line("shutdown_lifetime 0 seconds".into());
    line("pinger_enable off".into());
    // Names come from /etc/hosts; anything else fails fast instead of asking real resolvers.
    line("hosts_file /etc/hosts".into());
    line("dns_nameservers 127.0.0.1".into());
    line("dns_timeout 3 seconds".into());
    // Log every name lookup, for `Squid::name_lookups`: section 14 (ipcache) at level 4 logs
    // each lookup of a name, answered from hosts_file or not; section 78 (internal DNS) at
    // level 3 each query sent. `log_tail` leaves these lines out.
    line("debug_options ALL,1 14,4 78,3".into());
    if let Some((name, _, _)) = run_as {
        line(format!("cache_effective_user {name}"));
    }

    line(format!("http_port 127.0.0.1:{} name=plain", ports.plain));
    if let Some(port) = ports.plain6 {
        line(format!("http_port [::1]:{port} name=plain6"));
    }
    if let Some(port) = ports.plain_auth {
        line(format!("http_port 127.0.0.1:{port} name=plain_auth"));
    }
    if let Some((cert, key)) = tls_files {
        let tls = format!("tls-cert={} tls-key={}", cert.display(), key.display());
        if let Some(port) = ports.tls {
            line(format!("https_port 127.0.0.1:{port} name=tls {tls}"));
        }
        if let Some(port) = ports.tls_auth {
            line(format!("https_port 127.0.0.1:{port} name=tls_auth {tls}"));
        }
    }

    if let Some((files, port)) = bump {
        bump_config(&mut line, port, files);
    }

    if let (Some(program), Some(_)) = (&mode.negotiate_program, auth) {
        line(format!("auth_param negotiate program {program}"));
        line("auth_param negotiate children 4".into());
        line("auth_param negotiate keep_alive on".into());
        line("acl dtun_auth_ports myportname plain_auth tls_auth".into());
        line("acl dtun_authed proxy_auth REQUIRED".into());
    } else if let (Some(program), Some(_)) = (&mode.ntlm_program, auth) {
        line(format!("auth_param ntlm program {program}"));
        line("auth_param ntlm children 4".into());
        line("auth_param ntlm keep_alive on".into());
        line("acl dtun_auth_ports myportname plain_auth tls_auth".into());
        line("acl dtun_authed proxy_auth REQUIRED".into());
    } else if let (Some((helper, passwd)), true) = (auth, mode.digest) {
        line(format!(
            "auth_param digest program {} {}",
            helper.display(),
            passwd.display()
        ));
        line("auth_param digest children 10 startup=0 idle=1".into());
        line("auth_param digest realm dtun-test".into());
        line("acl dtun_auth_ports myportname plain_auth tls_auth".into());
        line("acl dtun_authed proxy_auth REQUIRED".into());
    } else if let Some((helper, passwd)) = auth {
        line(format!(
            "auth_param basic program {} {}",
            helper.display(),
            passwd.display()
        ));
        line("auth_param basic children 10 startup=0 idle=1".into());
        line("auth_param basic realm dtun-test".into());
        // Otherwise squid lower-cases user names before asking the helper.
        line("auth_param basic casesensitive on".into());
        line("acl dtun_auth_ports myportname plain_auth tls_auth".into());
        line("acl dtun_authed proxy_auth REQUIRED".into());
    }
    line("acl dtun_connect method CONNECT".into());
    // -n: never resolve; matches the host as written in the CONNECT request.
    line(r"acl dtun_local_dst dstdom_regex -n -i ^(localhost|127\.[0-9]+\.[0-9]+\.[0-9]+|\[?::1\]?)$".into());
    if let Some(port) = opts.denied_port {
        line(format!("acl dtun_denied_port port {port}"));
    }
    if !opts.allowed_ports.is_empty() {
        let list: Vec<String> = opts.allowed_ports.iter().map(u16::to_string).collect();
        line(format!("acl dtun_allowed_ports port {}", list.join(" ")));
    }

    if auth.is_some() {
        line("http_access deny dtun_auth_ports !dtun_authed".into());
    }
    if opts.denied_port.is_some() {
        line("http_access deny dtun_connect dtun_denied_port".into());
    }
    if !opts.allowed_ports.is_empty() {
        line("http_access allow dtun_connect dtun_allowed_ports dtun_local_dst".into());
        if bump.is_some() {
            // Inside a bumped tunnel, what is not HTTP reaches the target as a request of
            // its own (no method, the target's address): allowed like the CONNECT.
            line("acl dtun_bump_port myportname bump".into());
            line("http_access allow dtun_bump_port dtun_allowed_ports dtun_local_dst".into());
        }
    }
    line("http_access deny all".into());
    if mode.no_keep_alive {
        line("client_persistent_connections off".into());
    }
    c
}

/// The files of the SslBump port, inside squid's directory.
struct BumpFiles {
    ca_cert: PathBuf,
    ca_key: PathBuf,
    upstream_ca: PathBuf,
    certgen: PathBuf,
    db: PathBuf,
}

/// Copies the bump CA and the upstream CA into `dir` and initialises the certificate
/// generator's database (`security_file_certgen -c -s DIR -M 4MB`, which wants a folder that
/// does not exist yet), all owned by the user squid runs as.
fn prepare_bump(dir: &Path, bump: &SslBump, owner: Option<(u32, u32)>) -> io::Result<BumpFiles> {
    let certgen = certgen_helper().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            "squid's security_file_certgen not found",
        )
    })?;
    let ca_cert = dir.join("bump-ca.pem");
    let ca_key = dir.join("bump-ca.key");
    let upstream_ca = dir.join("bump-upstream-ca.pem");
    fs::copy(&bump.ca.0, &ca_cert)?;
    fs::copy(&bump.ca.1, &ca_key)?;
    fs::copy(&bump.upstream_ca, &upstream_ca)?;
    harness::set_owner_mode(&ca_cert, owner, 0o644)?;
    harness::set_owner_mode(&ca_key, owner, 0o600)?;
    harness::set_owner_mode(&upstream_ca, owner, 0o644)?;
    let db = dir.join("ssl_db");
    if db.exists() {
        fs::remove_dir_all(&db)?;
    }
    let out = Command::new(&certgen)
        .arg("-c")
        .arg("-s")
        .arg(&db)
        .args(["-M", "4MB"])
        .stdin(Stdio::null())
        .output()?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "{} -c -s {} failed ({}): {}{}",
            certgen.display(),
            db.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    if let Some((uid, gid)) = owner {
        harness::chown_tree(&db, uid, gid)?;
    }
    Ok(BumpFiles {
        ca_cert,
        ca_key,
        upstream_ca,
        certgen,
        db,
    })
}

/// The configuration lines of the SslBump port (see [`SslBump`]), but its `http_access`.
fn bump_config(line: &mut impl FnMut(String), port: u16, files: &BumpFiles) {
    line(format!(
        "http_port 127.0.0.1:{port} name=bump ssl-bump tls-cert={} tls-key={} \
         generate-host-certificates=on dynamic_cert_mem_cache_size=4MB",
        files.ca_cert.display(),
        files.ca_key.display()
    ));
    line(format!(
        "sslcrtd_program {} -s {} -M 4MB",
        files.certgen.display(),
        files.db.display()
    ));
    line("sslcrtd_children 2 startup=1 idle=1".into());
    // Squid checks the targets' certificates itself, against the test's CA.
    line(format!(
        "tls_outgoing_options cafile={}",
        files.upstream_ca.display()
    ));
    // Peek at the ClientHello (step 1), then bump: squid connects to the target first and
    // mimics its certificate. Only the bump port bumps (the others never see ssl_bump).
    line("acl dtun_bump_step1 at_step SslBump1".into());
    line("ssl_bump peek dtun_bump_step1".into());
    line("ssl_bump bump all".into());
    // What the agent sends inside is not HTTP: tunnel it to the target.
    line("on_unsupported_protocol tunnel all".into());
}

/// Why squid is not ready.
enum Ready {
    /// Another process took one of the ports: try again with fresh ones.
    PortTaken(io::Error),
    /// Anything else: give up.
    Failed(io::Error),
}

/// Polls until squid logs that it accepts on every port and each port takes a connection.
fn wait_ready(
    process: &mut ManagedChild,
    ports: &Ports,
    cache_log: &Path,
    stderr: &Path,
) -> Result<(), Ready> {
    let deadline = Instant::now() + READY_TIMEOUT;
    let mut backoff = Duration::from_millis(2);
    let plain6 = ports.plain6;
    let ports = ports.all();
    loop {
        let log = fs::read_to_string(cache_log).unwrap_or_default();
        if let Some(port) = plain6.filter(|port| {
            let needle = format!("[::1]:{port}:");
            log.lines()
                .any(|line| line.contains("Cannot bind") && line.contains(&needle))
        }) {
            return Err(Ready::PortTaken(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!(
                    "squid could not bind [::1]:{port}:\n{}",
                    log_tail(cache_log, stderr)
                ),
            )));
        }
        let bind_failure = |port: &&u16| {
            let needle = format!("127.0.0.1:{port}:");
            log.lines()
                .any(|line| line.contains("Cannot bind") && line.contains(&needle))
        };
        if let Some(port) = ports.iter().find(bind_failure) {
            return Err(Ready::PortTaken(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!(
                    "squid could not bind 127.0.0.1:{port}:\n{}",
                    log_tail(cache_log, stderr)
                ),
            )));
        }
        match process.try_exit_status() {
            Ok(Some(status)) => {
                return Err(Ready::Failed(io::Error::other(format!(
                    "squid exited during startup ({status}):\n{}",
                    log_tail(cache_log, stderr)
                ))));
            }
            Ok(None) => {}
            Err(err) => return Err(Ready::Failed(err)),
        }
        let all_accepting = ports
            .iter()
            .all(|port| log.contains(&format!(" local=127.0.0.1:{port} ")));
        let ipv6_accepting = plain6.is_none_or(|port| {
            log.contains(&format!(" local=[::1]:{port} "))
                && TcpStream::connect((std::net::Ipv6Addr::LOCALHOST, port)).is_ok()
        });
        if all_accepting
            && ipv6_accepting
            && ports
                .iter()
                .all(|port| TcpStream::connect((Ipv4Addr::LOCALHOST, *port)).is_ok())
        {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(Ready::Failed(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "squid not ready after {READY_TIMEOUT:?}:\n{}",
                    log_tail(cache_log, stderr)
                ),
            )));
        }
        std::thread::sleep(backoff);
        backoff = (backoff * 2).min(Duration::from_millis(50));
    }
}

/// The names in the name lookup lines of `cache.log` (see [`Squid::name_lookups`]).
fn parse_name_lookups(log: &str) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for line in log.lines() {
        let name = if let Some((_, rest)) = line.split_once(" nbgethostbyname: ") {
            rest.split_whitespace().next()
        } else if let Some((_, rest)) = line.split_once(" ipcache_gethostbyname: '") {
            rest.split_once('\'').map(|(name, _)| name)
        } else if let Some((_, rest)) = line.split_once(" idnsALookup: buf is ") {
            rest.split_once(" bytes for ")
                .and_then(|(_, rest)| rest.split_once(','))
                .map(|(name, _)| name)
        } else {
            None
        };
        if let Some(name) = name.filter(|name| !name.is_empty()) {
            if !names.iter().any(|seen| seen == name) {
                names.push(name.to_string());
            }
        }
    }
    names
}

/// Whether a `cache.log` line comes from the name lookup debugging (`| 14,4| ...`,
/// `| 78,3| ...`: squid prints section and level only above level 1).
fn is_lookup_debug_line(line: &str) -> bool {
    ["| 14,", "| 78,"].iter().any(|section| {
        line.split_once(section)
            .is_some_and(|(_, rest)| rest.starts_with(|c: char| ('2'..='9').contains(&c)))
    })
}

/// The last lines of the log (without the name lookup debug lines) plus the captured
/// stderr, if any.
fn log_tail(cache_log: &Path, stderr: &Path) -> String {
    let mut out = format!("--- {} (last lines) ---\n", cache_log.display());
    let log = fs::read(cache_log).unwrap_or_default();
    let log = String::from_utf8_lossy(&log);
    let lines: Vec<&str> = log
        .lines()
        .filter(|line| !is_lookup_debug_line(line))
        .collect();
    for line in &lines[lines.len().saturating_sub(40)..] {
        out.push_str(line);
        out.push('\n');
    }
    let err = read_tail(stderr, 20);
    if !err.trim().is_empty() {
        let _ = write!(out, "--- {} ---\n{err}", stderr.display());
    }
    out
}

/// Process and file plumbing shared by the squid and tinyproxy harnesses.
pub(crate) mod harness {
    use std::env;
    use std::fs;
    use std::io::{self, Write};
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use std::os::unix::process::CommandExt;
    use std::path::{Path, PathBuf};
    use std::process::{Child, Command, ExitStatus, Stdio};
    use std::time::{Duration, Instant};

    /// How long a harness waits for its program to accept connections.
    pub(crate) const READY_TIMEOUT: Duration = Duration::from_secs(20);
    /// How long a harness waits after SIGTERM before SIGKILL.
    pub(crate) const STOP_TIMEOUT: Duration = Duration::from_secs(5);

    /// `count` distinct ports that were free a moment ago.
    pub(crate) fn free_ports(count: usize) -> Vec<u16> {
        let mut ports: Vec<u16> = Vec::with_capacity(count);
        while ports.len() < count {
            let port = crate::ports::free_port();
            if !ports.contains(&port) {
                ports.push(port);
            }
        }
        ports
    }

    /// Whether `path` is a regular file with an execute bit.
    pub(crate) fn is_executable(path: &Path) -> bool {
        fs::metadata(path)
            .map(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    }

    /// Finds a program in `PATH` or the usual (s)bin directories (squid lives in /usr/sbin,
    /// which a non-root `PATH` may lack).
    pub(crate) fn find_program(name: &str) -> Option<PathBuf> {
        let mut dirs: Vec<PathBuf> = env::var_os("PATH")
            .map(|path| env::split_paths(&path).collect())
            .unwrap_or_default();
        for dir in [
            "/usr/local/sbin",
            "/usr/local/bin",
            "/usr/sbin",
            "/usr/bin",
            "/sbin",
            "/bin",
        ] {
            dirs.push(PathBuf::from(dir));
        }
        dirs.into_iter()
            .map(|dir| dir.join(name))
            .find(|path| is_executable(path))
    }

    /// Runs `command` with `input` on stdin and returns its stdout; fails if it fails.
    pub(crate) fn run_with_stdin(command: &mut Command, input: &[u8]) -> io::Result<String> {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let mut stdin = child.stdin.take().expect("piped stdin");
        stdin.write_all(input)?;
        drop(stdin);
        let out = child.wait_with_output()?;
        if !out.status.success() {
            return Err(io::Error::other(format!(
                "{command:?} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The effective user id of this process (from /proc; `None` if unreadable).
    pub(crate) fn effective_uid() -> Option<u32> {
        let status = fs::read_to_string("/proc/self/status").ok()?;
        let line = status.lines().find(|line| line.starts_with("Uid:"))?;
        line.split_whitespace().nth(2)?.parse().ok()
    }

    /// `(uid, gid)` of a user from /etc/passwd.
    pub(crate) fn lookup_user(name: &str) -> Option<(u32, u32)> {
        let passwd = fs::read_to_string("/etc/passwd").ok()?;
        passwd.lines().find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            if fields.len() >= 4 && fields[0] == name {
                Some((fields[2].parse().ok()?, fields[3].parse().ok()?))
            } else {
                None
            }
        })
    }

    /// Gives a folder and everything in it to `uid:gid` (symbolic links themselves, not
    /// their targets).
    pub(crate) fn chown_tree(path: &Path, uid: u32, gid: u32) -> io::Result<()> {
        std::os::unix::fs::lchown(path, Some(uid), Some(gid))?;
        if fs::symlink_metadata(path)?.is_dir() {
            for entry in fs::read_dir(path)? {
                chown_tree(&entry?.path(), uid, gid)?;
            }
        }
        Ok(())
    }

    /// Sets the mode and, when given, the owner of a file.
    pub(crate) fn set_owner_mode(
        path: &Path,
        owner: Option<(u32, u32)>,
        mode: u32,
    ) -> io::Result<()> {
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(path, Some(uid), Some(gid))?;
        }
        fs::set_permissions(path, fs::Permissions::from_mode(mode))
    }

    /// Rejects paths that a line-based configuration file cannot hold.
    pub(crate) fn check_path_for_config(path: &Path, program: &str) -> io::Result<()> {
        let text = path.to_str().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{program}: non-UTF-8 path {path:?}"),
            )
        })?;
        if text
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '"' || c == '#')
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{program}: the directory {path:?} must not contain whitespace, '\"' or '#'"
                ),
            ));
        }
        Ok(())
    }

    /// Makes `dir` usable by the user a program switches to (`owner`, when running as root):
    /// the directory is given to that user with mode 0755, and its ancestors must let others
    /// search them. Ancestors below the system temp directory that are owned by us get `o+x`;
    /// any other ancestor without it is an error.
    pub(crate) fn prepare_dir_for(dir: &Path, owner: Option<(u32, u32)>) -> io::Result<()> {
        let Some((uid, gid)) = owner else {
            return Ok(());
        };
        std::os::unix::fs::chown(dir, Some(uid), Some(gid))?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o755))?;
        let temp = env::temp_dir()
            .canonicalize()
            .unwrap_or_else(|_| env::temp_dir());
        let me = effective_uid();
        for ancestor in dir.ancestors().skip(1) {
            let meta = fs::metadata(ancestor)?;
            let mode = meta.permissions().mode();
            if mode & 0o001 != 0 || meta.uid() == uid {
                continue;
            }
            if ancestor.starts_with(&temp) && ancestor != temp && Some(meta.uid()) == me {
                fs::set_permissions(ancestor, fs::Permissions::from_mode(mode | 0o001))?;
            } else {
                return Err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    format!(
                        "{ancestor:?} does not let other users search it; the proxy runs as \
                         uid {uid} and cannot reach {dir:?}"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The last `lines` lines of a text file (empty if unreadable).
    pub(crate) fn read_tail(path: &Path, lines: usize) -> String {
        let text = fs::read(path).unwrap_or_default();
        let text = String::from_utf8_lossy(&text);
        let all: Vec<&str> = text.lines().collect();
        let start = all.len().saturating_sub(lines);
        let mut out = all[start..].join("\n");
        if !out.is_empty() {
            out.push('\n');
        }
        out
    }

    /// Sends a signal with the `kill` program; `target` is a pid, or `-pgid` for a group.
    fn send_signal(signal: &str, target: &str) -> bool {
        Command::new("kill")
            .arg(format!("-{signal}"))
            .arg("--")
            .arg(target)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|status| status.success())
            .unwrap_or(false)
    }

    /// Fields of /proc/PID/stat after the command name: state is [0], ppid [1], pgrp [2],
    /// start time [19]. `None` for a process that is gone or a zombie.
    fn proc_stat(pid: u32) -> Option<Vec<String>> {
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let (_, rest) = stat.rsplit_once(')')?;
        let fields: Vec<String> = rest.split_whitespace().map(str::to_string).collect();
        (fields.len() > 19 && fields[0] != "Z").then_some(fields)
    }

    /// The start time (clock ticks since boot) of a live process, to recognise it later.
    fn process_start_time(pid: u32) -> Option<u64> {
        proc_stat(pid)?[19].parse().ok()
    }

    /// Live children of `parent` with their start times (empty without /proc).
    fn children_of(parent: u32) -> Vec<(u32, u64)> {
        let Ok(entries) = fs::read_dir("/proc") else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
            .filter_map(|pid| {
                let fields = proc_stat(pid)?;
                if fields[1].parse() != Ok(parent) {
                    return None;
                }
                Some((pid, fields[19].parse().ok()?))
            })
            .collect()
    }

    /// A child process in its own process group, stopped and reaped on drop: SIGTERM to the
    /// child, up to [`STOP_TIMEOUT`] for it to exit, then SIGKILL to the whole group and a
    /// blocking wait; finally SIGKILL to the group and to the child's own children still alive
    /// (squid starts its auth helpers with `setsid`, outside its group).
    #[derive(Debug)]
    pub(crate) struct ManagedChild {
        child: Child,
        name: &'static str,
        stopped: bool,
        stop_timeout: Duration,
    }

    impl ManagedChild {
        /// Spawns `command` (stdin from /dev/null) as the leader of a new process group.
        pub(crate) fn spawn(command: &mut Command, name: &'static str) -> io::Result<ManagedChild> {
            let child = command
                .stdin(Stdio::null())
                .process_group(0)
                .spawn()
                .map_err(|err| io::Error::new(err.kind(), format!("cannot start {name}: {err}")))?;
            Ok(ManagedChild {
                child,
                name,
                stopped: false,
                stop_timeout: STOP_TIMEOUT,
            })
        }

        /// Changes how long [`ManagedChild::stop`] waits after SIGTERM (default [`STOP_TIMEOUT`]).
        #[cfg(test)]
        pub(crate) fn set_stop_timeout(&mut self, timeout: Duration) {
            self.stop_timeout = timeout;
        }

        /// The child's pid (also its process group id).
        pub(crate) fn pid(&self) -> u32 {
            self.child.id()
        }

        /// `Some(status)` once the child has exited.
        pub(crate) fn try_exit_status(&mut self) -> io::Result<Option<ExitStatus>> {
            self.child.try_wait()
        }

        /// Stops the process group and reaps the child; idempotent.
        pub(crate) fn stop(&mut self) {
            if self.stopped {
                return;
            }
            self.stopped = true;
            let pid = self.child.id().to_string();
            let group = format!("-{pid}");
            // Squid starts its helpers in sessions of their own: remember them to make sure.
            let children = children_of(self.child.id());
            if let Ok(None) = self.child.try_wait() {
                if !send_signal("TERM", &pid) {
                    let _ = self.child.kill();
                }
                let deadline = Instant::now() + self.stop_timeout;
                let mut backoff = Duration::from_millis(5);
                while Instant::now() < deadline {
                    if !matches!(self.child.try_wait(), Ok(None)) {
                        break;
                    }
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_millis(50));
                }
                if let Ok(None) = self.child.try_wait() {
                    eprintln!(
                        "dtun-testenv: {} ({pid}) ignored SIGTERM, killing it",
                        self.name
                    );
                    if !send_signal("KILL", &group) {
                        let _ = self.child.kill();
                    }
                }
            }
            let _ = self.child.wait();
            // Helpers the program left behind: those in its process group, and its children
            // (they exit by themselves when their stdin closes; this catches hung ones).
            send_signal("KILL", &group);
            for (child, start_time) in children {
                if process_start_time(child) == Some(start_time) {
                    send_signal("KILL", &child.to_string());
                }
            }
        }
    }

    impl Drop for ManagedChild {
        fn drop(&mut self) {
            self.stop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::harness::ManagedChild;
    use super::{built_with_openssl, is_lookup_debug_line, parse_name_lookups};
    use std::process::Command;
    use std::time::{Duration, Instant};

    fn alive(pid: u32) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|stat| !stat.contains(") Z "))
            .unwrap_or(false)
    }

    #[test]
    fn stop_kills_a_group_that_ignores_sigterm() {
        // The shell ignores SIGTERM, and so does the `sleep` it starts (same group).
        let mut command = Command::new("sh");
        command.args(["-c", "trap '' TERM; sleep 120 & echo $! ; wait"]);
        command.stdout(std::process::Stdio::piped());
        let mut child = ManagedChild::spawn(&mut command, "test shell").unwrap();
        let shell = child.pid();
        child.set_stop_timeout(Duration::from_millis(300));
        let started = Instant::now();
        child.stop();
        assert!(!alive(shell));
        assert!(started.elapsed() < Duration::from_secs(3));
        let left: Vec<u32> = std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
                    .map(|c| c == "sleep\x00120\x00")
                    .unwrap_or(false)
                    && alive(*pid)
                    && std::fs::read_to_string(format!("/proc/{pid}/stat"))
                        .ok()
                        .and_then(|stat| {
                            let (_, rest) = stat.rsplit_once(')')?;
                            rest.split_whitespace().nth(2)?.parse::<u32>().ok()
                        })
                        == Some(shell)
            })
            .collect();
        assert!(left.is_empty(), "left running: {left:?}");
    }

    /// `cache.log` lines of squid 5.7 with `debug_options ALL,1 14,4 78,3`: copied from a run,
    /// except the `ipcache_gethostbyname` and `direct.invalid` lines, written after its source.
    const LOOKUP_LOG: &str = "\
2026/12/01 09:18:22.488| Accepting HTTP Socket connections at conn3 local=127.0.0.1:39111 remote=[::] FD 12 flags=9
2026/12/01 09:18:22.832| 14,3| Address.cc(389) lookupHostIP: Given Non-IP 'example.com': Name or service not known
2026/12/01 09:18:22.832| 14,4| ipcache.cc(607) nbgethostbyname: localhost
2026/12/01 09:18:22.832| 14,4| ipcache.cc(647) ipcache_nbgethostbyname_: ipcache_nbgethostbyname: HIT for 'localhost'
2026/12/01 09:18:22.833| 14,4| ipcache.cc(607) nbgethostbyname: unknown-name.invalid
2026/12/01 09:18:22.833| 78,3| dns_internal.cc(1792) idnsALookup: idnsALookup: buf is 38 bytes for unknown-name.invalid, id = 0xc808
2026/12/01 09:18:22.833| 14,3| ipcache.cc(700) ipcache_gethostbyname: 'sync.invalid', flags=1
2026/12/01 09:18:22.833| 78,3| dns_internal.cc(1792) idnsALookup: idnsALookup: buf is 30 bytes for direct.invalid, id = 0xc809
2026/12/01 09:18:23| storeLateRelease: released 0 objects
";

    #[test]
    fn name_lookups_come_from_the_ipcache_and_dns_lines() {
        assert_eq!(
            parse_name_lookups(LOOKUP_LOG),
            [
                "localhost",
                "unknown-name.invalid",
                "sync.invalid",
                "direct.invalid"
            ]
        );
    }

    #[test]
    fn log_tail_leaves_out_the_lookup_debug_lines() {
        let kept: Vec<&str> = LOOKUP_LOG
            .lines()
            .filter(|line| !is_lookup_debug_line(line))
            .collect();
        assert_eq!(kept.len(), 2, "{kept:#?}");
        assert!(kept[0].contains("Accepting HTTP"));
        assert!(kept[1].contains("storeLateRelease"));
        assert!(!is_lookup_debug_line(
            "2026/12/01 09:18:22.832| 14,1| ipcache.cc(1) important"
        ));
    }

    #[test]
    fn openssl_build_from_squid_v() {
        let openssl = "configure options:  '--build=x86_64-linux-gnu' '--with-openssl' \
                       '--enable-ssl-crtd'";
        assert!(built_with_openssl(openssl));
        assert!(built_with_openssl("'--with-openssl=/opt/ssl'"));
        let gnutls = "configure options:  '--build=x86_64-linux-gnu' '--with-gnutls' \
                      '--without-openssl'";
        assert!(!built_with_openssl(gnutls));
        assert!(!built_with_openssl("'--with-openssl=no'"));
        assert!(!built_with_openssl("'--with-openssl-extra'"));
    }
}
