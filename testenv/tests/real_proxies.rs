//! The squid and tinyproxy harnesses against the real programs: every port, with and without
//! credentials, allowed and denied targets, an echo through each tunnel, and nothing left
//! running afterwards.
//!
//! When a program is missing, its tests print `SKIPPED: ...` to stderr (seen only with
//! `--nocapture`) and pass; under `DTUN_REQUIRE_REAL_PROXIES=1` (as `scripts/test.sh` runs
//! them) they fail instead, naming what is missing (`dtun_testenv::require_or_skip`).

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use dtun_testenv::squid::{Squid, SquidOptions};
use dtun_testenv::tinyproxy::{Tinyproxy, TinyproxyOptions};
use dtun_testenv::{require_or_skip, RealProxy};

/// A password with every character that needs care in URLs and in `user:password`.
const HARD_PASSWORD: &str = "p:a@s/s%w+rd";

/// A name that is not a loopback target: squid must deny a CONNECT to it without looking
/// it up.
const NOT_LOOKED_UP: &str = "dtun-not-looked-up.example.com";

/// Whether the test `test` must skip for want of squid (fails it instead under
/// `DTUN_REQUIRE_REAL_PROXIES=1`).
fn skip_squid(test: &str) -> bool {
    !require_or_skip(test, &[RealProxy::Squid])
}

/// Whether the test `test` must skip for want of tinyproxy (fails it instead under
/// `DTUN_REQUIRE_REAL_PROXIES=1`).
fn skip_tinyproxy(test: &str) -> bool {
    !require_or_skip(test, &[RealProxy::Tinyproxy])
}

/// A fresh directory under the system temp directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!(
            "dtun-real-proxies-{}-{tag}-{n}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A plain TCP echo server on 127.0.0.1 (threads live until the test process ends).
fn echo_server() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                let _ = stream.set_nodelay(true);
                let mut buf = [0u8; 16384];
                loop {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if stream.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                    }
                }
            });
        }
    });
    port
}

/// A port on which nothing listens.
fn closed_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    listener.local_addr().unwrap().port()
}

/// A throwaway CA and a server certificate for localhost / 127.0.0.1, written as PEM files.
struct TestPki {
    ca: rustls::pki_types::CertificateDer<'static>,
    cert: PathBuf,
    key: PathBuf,
}

fn make_pki(dir: &Path) -> TestPki {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
        KeyUsagePurpose, SanType,
    };
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "dtun real-proxies test CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();

    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params
        .subject_alt_names
        .push(SanType::IpAddress(Ipv4Addr::LOCALHOST.into()));
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params.signed_by(&key, &ca_cert, &ca_key).unwrap();

    let pki_dir = dir.join("pki");
    std::fs::create_dir_all(&pki_dir).unwrap();
    let cert_path = pki_dir.join("proxy.pem");
    let key_path = pki_dir.join("proxy.key");
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    TestPki {
        ca: ca_cert.der().clone(),
        cert: cert_path,
        key: key_path,
    }
}

trait Stream: Read + Write {}
impl<T: Read + Write> Stream for T {}

/// Connects to the proxy port, over TLS trusting `ca` when given.
fn connect(port: u16, ca: Option<&rustls::pki_types::CertificateDer<'static>>) -> Box<dyn Stream> {
    let tcp = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).unwrap();
    tcp.set_nodelay(true).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let Some(ca) = ca else {
        return Box::new(tcp);
    };
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    Box::new(rustls::StreamOwned::new(conn, tcp))
}

/// The proxy's answer to a CONNECT.
struct Reply {
    status: u16,
    head: String,
}

/// Sends `CONNECT target` (with Basic credentials when given) and reads the reply head byte
/// by byte, so that nothing of the tunnel is consumed.
fn send_connect(stream: &mut dyn Stream, target: &str, creds: Option<(&str, &str)>) -> Reply {
    let mut request = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
    if let Some((user, password)) = creds {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        request.push_str(&format!("Proxy-Authorization: Basic {token}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    stream.flush().unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            Ok(_) => break,
            Err(err) => panic!(
                "reading the CONNECT reply for {target}: {err}; got {:?}",
                String::from_utf8_lossy(&head)
            ),
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {head:?}"));
    Reply { status, head }
}

/// Sends some bytes through an established tunnel and checks they come back.
fn check_echo(stream: &mut dyn Stream) {
    let payload: Vec<u8> = (0..50_000u32).map(|i| (i % 251) as u8).collect();
    stream.write_all(&payload).unwrap();
    stream.flush().unwrap();
    let mut back = vec![0u8; payload.len()];
    stream.read_exact(&mut back).unwrap();
    assert!(back == payload, "echo through the tunnel differs");
}

/// One CONNECT on a fresh connection; checks the status and, for 200, the echo.
fn connect_and_check(
    port: u16,
    ca: Option<&rustls::pki_types::CertificateDer<'static>>,
    target: &str,
    creds: Option<(&str, &str)>,
    expected: u16,
    log: &dyn Fn() -> String,
) -> Reply {
    let mut stream = connect(port, ca);
    let reply = send_connect(&mut *stream, target, creds);
    assert_eq!(
        reply.status,
        expected,
        "CONNECT {target} via port {port} (tls: {}, creds: {creds:?}): got {:?}\n{}",
        ca.is_some(),
        reply.head,
        log()
    );
    if expected == 200 {
        check_echo(&mut *stream);
    }
    reply
}

/// Pids of `parent` and its live children (Linux /proc).
fn process_and_children(parent: u32) -> Vec<u32> {
    let mut members = vec![parent];
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid ...: comm may contain spaces, so split after ')'.
        let Some(rest) = stat.rsplit_once(')').map(|(_, rest)| rest) else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.len() > 1 && fields[0] != "Z" && fields[1].parse() == Ok(parent) {
            members.push(pid);
        }
    }
    members
}

fn process_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| {
            let state = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next().map(str::to_string));
            state.as_deref() != Some("Z")
        })
        .unwrap_or(false)
}

#[test]
fn squid_four_ports() {
    if skip_squid("squid_four_ports") {
        return;
    }
    let tmp = TempDir::new("squid4");
    let pki = make_pki(tmp.path());
    let echo = echo_server();
    let closed = closed_port();
    let denied = closed_port();
    let unlisted = echo_server();
    let users = vec![
        ("alice".to_string(), HARD_PASSWORD.to_string()),
        ("Bob".to_string(), "simple".to_string()),
    ];
    let squid = Squid::start(SquidOptions {
        dir: tmp.path().join("squid"),
        tls_cert: Some((pki.cert.clone(), pki.key.clone())),
        users,
        allowed_ports: vec![echo, closed],
        denied_port: Some(denied),
    })
    .unwrap();
    // No bound of our own on the start: `Squid::start` fails past its readiness deadline.
    eprintln!("squid started in {:?}", squid.startup_time());
    let log = || squid.log_tail();
    let ports = [
        (squid.plain_port().unwrap(), false, false),
        (squid.plain_auth_port().unwrap(), false, true),
        (squid.tls_port().unwrap(), true, false),
        (squid.tls_auth_port().unwrap(), true, true),
    ];
    let good = Some(("alice", HARD_PASSWORD));
    for (port, tls, auth) in ports {
        let ca = tls.then_some(&pki.ca);
        let echo_target = format!("127.0.0.1:{echo}");
        if auth {
            let reply = connect_and_check(port, ca, &echo_target, None, 407, &log);
            assert!(
                reply
                    .head
                    .contains("Proxy-Authenticate: Basic realm=\"dtun-test\""),
                "{}",
                reply.head
            );
            connect_and_check(port, ca, &echo_target, Some(("alice", "wrong")), 407, &log);
            // User names are case-sensitive.
            connect_and_check(port, ca, &echo_target, Some(("bob", "simple")), 407, &log);
            connect_and_check(port, ca, &echo_target, Some(("Bob", "simple")), 200, &log);
            // Credentials are checked before the target.
            connect_and_check(port, ca, &format!("127.0.0.1:{denied}"), None, 407, &log);
        }
        let creds = if auth { good } else { None };
        let reply = connect_and_check(port, ca, &echo_target, creds, 200, &log);
        assert!(
            reply
                .head
                .starts_with("HTTP/1.1 200 Connection established\r\n"),
            "{}",
            reply.head
        );
        connect_and_check(port, ca, &format!("localhost:{echo}"), creds, 200, &log);
        connect_and_check(port, ca, &format!("127.0.0.1:{denied}"), creds, 403, &log);
        connect_and_check(port, ca, &format!("127.0.0.1:{unlisted}"), creds, 403, &log);
        connect_and_check(port, ca, &format!("127.0.0.1:{closed}"), creds, 503, &log);
        // Only loopback targets, and no DNS lookup for other names (checked below).
        connect_and_check(
            port,
            ca,
            &format!("{NOT_LOOKED_UP}:{echo}"),
            creds,
            403,
            &log,
        );
    }
    let access = squid.access_log();
    assert!(access.contains("TCP_TUNNEL/200"), "{access}");
    assert!(access.contains(" alice "), "{access}");
    // Squid logs every name it resolves: `localhost` (from /etc/hosts, for the allowed
    // CONNECTs to localhost) shows that the log works; the denied name must not be there.
    let lookups = squid.name_lookups();
    assert!(
        lookups.iter().any(|name| name == "localhost"),
        "squid logged no lookup of localhost, so its lookup log proves nothing: {lookups:?}\n{}",
        squid.log_tail()
    );
    assert!(
        !lookups
            .iter()
            .any(|name| name.eq_ignore_ascii_case(NOT_LOOKED_UP)),
        "squid looked up {NOT_LOOKED_UP} for a CONNECT it denies: {lookups:?}"
    );

    // Dropping stops squid and its auth helpers.
    let pid = squid.pid();
    let members = process_and_children(pid);
    assert!(
        members.len() >= 2,
        "expected squid and helpers: {members:?}"
    );
    let stop = Instant::now();
    drop(squid);
    eprintln!("squid stopped in {:?}", stop.elapsed());
    for member in members {
        assert!(!process_alive(member), "process {member} still running");
    }
}

#[test]
fn squid_without_tls_or_users_has_only_the_plain_port() {
    if skip_squid("squid_without_tls_or_users_has_only_the_plain_port") {
        return;
    }
    let tmp = TempDir::new("squid1");
    let echo = echo_server();
    let squid = Squid::start(SquidOptions {
        allowed_ports: vec![echo],
        ..SquidOptions::new(tmp.path())
    })
    .unwrap();
    assert_eq!(squid.plain_auth_port(), None);
    assert_eq!(squid.tls_port(), None);
    assert_eq!(squid.tls_auth_port(), None);
    let log = || squid.log_tail();
    let port = squid.plain_port().unwrap();
    connect_and_check(port, None, &format!("127.0.0.1:{echo}"), None, 200, &log);
    connect_and_check(
        port,
        None,
        &format!("127.0.0.1:{}", echo_server()),
        None,
        403,
        &log,
    );
}

#[test]
fn squid_with_tls_but_no_users() {
    if skip_squid("squid_with_tls_but_no_users") {
        return;
    }
    let tmp = TempDir::new("squidtls");
    let pki = make_pki(tmp.path());
    let echo = echo_server();
    let squid = Squid::start(SquidOptions {
        dir: tmp.path().join("squid"),
        tls_cert: Some((pki.cert.clone(), pki.key.clone())),
        allowed_ports: vec![echo],
        ..SquidOptions::default()
    })
    .unwrap();
    assert_eq!(squid.plain_auth_port(), None);
    assert_eq!(squid.tls_auth_port(), None);
    let log = || squid.log_tail();
    let port = squid.tls_port().unwrap();
    connect_and_check(
        port,
        Some(&pki.ca),
        &format!("127.0.0.1:{echo}"),
        None,
        200,
        &log,
    );
}

#[test]
fn squid_rejects_bad_user_names() {
    if skip_squid("squid_rejects_bad_user_names") {
        return;
    }
    let tmp = TempDir::new("squidbad");
    let err = Squid::start(SquidOptions {
        users: vec![("a:b".into(), "x".into())],
        ..SquidOptions::new(tmp.path())
    })
    .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
}

#[test]
fn squid_reports_a_broken_certificate() {
    if skip_squid("squid_reports_a_broken_certificate") {
        return;
    }
    let tmp = TempDir::new("squidbroken");
    let cert = tmp.path().join("bad.pem");
    std::fs::write(&cert, "not a certificate\n").unwrap();
    let err = Squid::start(SquidOptions {
        tls_cert: Some((cert.clone(), cert)),
        ..SquidOptions::new(tmp.path().join("squid"))
    })
    .unwrap_err();
    let message = err.to_string();
    // The harness saw squid exit (rather than waiting out its readiness deadline, which
    // would be `TimedOut`), and passes on squid's reason, naming the TLS port.
    assert_eq!(err.kind(), io::ErrorKind::Other, "{message}");
    assert!(
        message.starts_with("squid exited during startup"),
        "{message}"
    );
    assert!(
        message
            .contains("FATAL: No valid signing certificate configured for HTTPS_port 127.0.0.1:"),
        "{message}"
    );
}

#[test]
fn tinyproxy_without_auth() {
    if skip_tinyproxy("tinyproxy_without_auth") {
        return;
    }
    let tmp = TempDir::new("tiny");
    let echo = echo_server();
    let other = echo_server();
    let proxy = Tinyproxy::start(TinyproxyOptions {
        dir: tmp.path().to_path_buf(),
        basic_auth: None,
        allowed_ports: vec![echo],
    })
    .unwrap();
    eprintln!("tinyproxy started in {:?}", proxy.startup_time());
    let log = || proxy.log_tail();
    let reply = connect_and_check(
        proxy.port(),
        None,
        &format!("127.0.0.1:{echo}"),
        None,
        200,
        &log,
    );
    assert!(
        reply
            .head
            .starts_with("HTTP/1.0 200 Connection established\r\n"),
        "{}",
        reply.head
    );
    connect_and_check(
        proxy.port(),
        None,
        &format!("localhost:{echo}"),
        None,
        200,
        &log,
    );
    connect_and_check(
        proxy.port(),
        None,
        &format!("127.0.0.1:{other}"),
        None,
        403,
        &log,
    );

    let pid = proxy.pid();
    let stop = Instant::now();
    drop(proxy);
    eprintln!("tinyproxy stopped in {:?}", stop.elapsed());
    assert!(!process_alive(pid));
}

#[test]
fn tinyproxy_with_auth() {
    if skip_tinyproxy("tinyproxy_with_auth") {
        return;
    }
    let tmp = TempDir::new("tinyauth");
    let echo = echo_server();
    let proxy = Tinyproxy::start(TinyproxyOptions {
        dir: tmp.path().join("tp"),
        basic_auth: Some(("agent-1".into(), "Pa.ss_w-0rd".into())),
        allowed_ports: vec![echo],
    })
    .unwrap();
    let log = || proxy.log_tail();
    let target = format!("127.0.0.1:{echo}");
    let port = proxy.port();
    let reply = connect_and_check(port, None, &target, None, 407, &log);
    assert!(
        reply.head.contains("Proxy-Authenticate: Basic"),
        "{}",
        reply.head
    );
    // tinyproxy 1.11 answers wrong credentials with 401 (and WWW-Authenticate), not 407.
    let reply = connect_and_check(port, None, &target, Some(("agent-1", "wrong")), 401, &log);
    assert!(
        reply.head.starts_with("HTTP/1.0 401 Unauthorized\r\n"),
        "{}",
        reply.head
    );
    connect_and_check(
        port,
        None,
        &target,
        Some(("agent-1", "Pa.ss_w-0rd")),
        200,
        &log,
    );
}

#[test]
fn tinyproxy_rejects_passwords_it_cannot_parse() {
    if skip_tinyproxy("tinyproxy_rejects_passwords_it_cannot_parse") {
        return;
    }
    let tmp = TempDir::new("tinybad");
    let err = Tinyproxy::start(TinyproxyOptions {
        basic_auth: Some(("user".into(), HARD_PASSWORD.into())),
        ..TinyproxyOptions::new(tmp.path())
    })
    .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
}

#[test]
fn proxies_survive_many_parallel_starts() {
    if !require_or_skip(
        "proxies_survive_many_parallel_starts",
        &[RealProxy::Squid, RealProxy::Tinyproxy],
    ) {
        return;
    }
    let tmp = TempDir::new("parallel");
    let threads: Vec<_> = (0..4)
        .map(|i| {
            let dir = tmp.path().join(format!("p{i}"));
            std::thread::spawn(move || {
                let echo = echo_server();
                let squid = Squid::start(SquidOptions {
                    dir: dir.join("squid"),
                    users: vec![("u".into(), HARD_PASSWORD.into())],
                    allowed_ports: vec![echo],
                    ..SquidOptions::default()
                })
                .unwrap();
                let tiny = Tinyproxy::start(TinyproxyOptions {
                    allowed_ports: vec![echo],
                    ..TinyproxyOptions::new(dir.join("tiny"))
                })
                .unwrap();
                let target = format!("127.0.0.1:{echo}");
                let log = || squid.log_tail();
                let port = squid.plain_auth_port().unwrap();
                connect_and_check(port, None, &target, Some(("u", HARD_PASSWORD)), 200, &log);
                let log = || tiny.log_tail();
                connect_and_check(tiny.port(), None, &target, None, 200, &log);
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
}

#[test]
fn squid_in_a_private_temp_dir() {
    if skip_squid("squid_in_a_private_temp_dir") {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    // A 0700 parent (as tempfile makes them): squid, running as `proxy`, must still reach it.
    let tmp = TempDir::new("private");
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let pki = make_pki(tmp.path());
    std::fs::set_permissions(
        pki.key.parent().unwrap(),
        std::fs::Permissions::from_mode(0o700),
    )
    .unwrap();
    let echo = echo_server();
    let squid = Squid::start(SquidOptions {
        dir: tmp.path().join("nested").join("squid"),
        tls_cert: Some((pki.cert.clone(), pki.key.clone())),
        users: vec![("u".into(), "v".into())],
        allowed_ports: vec![echo],
        denied_port: None,
    })
    .unwrap();
    let log = || squid.log_tail();
    let target = format!("127.0.0.1:{echo}");
    let port = squid.tls_auth_port().unwrap();
    connect_and_check(port, Some(&pki.ca), &target, Some(("u", "v")), 200, &log);
}

/// Whether a test of squid's SslBump port must skip (fails it instead under
/// `DTUN_REQUIRE_REAL_PROXIES=1`).
fn skip_bump(test: &str) -> bool {
    if skip_squid(test) {
        return true;
    }
    let Some(missing) = dtun_testenv::squid::bump_missing() else {
        return false;
    };
    assert!(
        !dtun_testenv::require::real_proxies_required(),
        "{test} cannot run: missing {missing}; DTUN_REQUIRE_REAL_PROXIES=1 forbids skipping it"
    );
    eprintln!("SKIPPED: {test}: missing {missing}");
    true
}

/// TLS from this end of a tunnel, trusting only `ca`, for `localhost`.
fn tls_inside(
    tunnel: Box<dyn Stream>,
    ca: &rustls::pki_types::CertificateDer<'static>,
) -> rustls::StreamOwned<rustls::ClientConnection, Box<dyn Stream>> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    rustls::StreamOwned::new(conn, tunnel)
}

#[test]
fn squid_bump_port_re_signs_the_targets_certificate() {
    use dtun_testenv::pki::{CertKind, Pki, BUMP_CA_NAME};
    use dtun_testenv::squid::SslBump;
    if skip_bump("squid_bump_port_re_signs_the_targets_certificate") {
        return;
    }
    let tmp = TempDir::new("bump");
    let pki = Pki::new(&tmp.path().join("pki")).unwrap();
    let collector = pki
        .issue("collector", &["localhost", "127.0.0.1"], CertKind::Trusted)
        .unwrap();
    let echo = dtun_testenv::collector::EchoServer::start(Some(collector.server_config)).unwrap();
    let bump_ca = pki.make_ca("bump-ca", BUMP_CA_NAME).unwrap();
    let squid = Squid::start_with_bump(
        SquidOptions {
            dir: tmp.path().join("squid"),
            allowed_ports: vec![echo.port()],
            ..SquidOptions::new(tmp.path().join("squid"))
        },
        SslBump {
            ca: (bump_ca.cert_path.clone(), bump_ca.key_path.clone()),
            upstream_ca: pki.ca_path(),
        },
    )
    .unwrap();
    let log = || squid.log_tail();
    let port = squid.bump_port().expect("bump port");
    let target = format!("localhost:{}", echo.port());

    // Trusting the bump CA, the tunnel works end to end: squid re-encrypts to the collector
    // (the echo's payload holds line feeds: squid tunnels what is not HTTP once it has a
    // whole line, see `SslBump`).
    let mut tunnel = connect(port, None);
    let reply = send_connect(&mut *tunnel, &target, None);
    assert_eq!(reply.status, 200, "{}\n{}", reply.head, log());
    let mut tls = tls_inside(tunnel, &bump_ca.cert_der);
    check_echo(&mut tls);

    // Trusting the collector's real CA, the certificate is rejected: squid re-signed it.
    let mut tunnel = connect(port, None);
    let reply = send_connect(&mut *tunnel, &target, None);
    assert_eq!(reply.status, 200, "{}\n{}", reply.head, log());
    let mut tls = tls_inside(tunnel, &pki.ca_der());
    let err = tls.write_all(b"x").and_then(|()| tls.flush()).unwrap_err();
    assert!(
        err.to_string().contains("UnknownIssuer"),
        "{err}\n{}",
        log()
    );

    // The other ports do not inspect: the plain port hands the collector's own certificate.
    let mut tunnel = connect(squid.plain_port().unwrap(), None);
    let reply = send_connect(&mut *tunnel, &target, None);
    assert_eq!(reply.status, 200, "{}\n{}", reply.head, log());
    let mut tls = tls_inside(tunnel, &pki.ca_der());
    check_echo(&mut tls);
}
