//! End to end through the Rust API (issue 2 §8): the in-repo CONNECT proxy (plain or TLS,
//! Basic auth, faults) and echo collectors (plain or TLS) from `dtun-testenv`, certificates
//! made at test time. Every failure case expects one specific status.

mod support;

use std::time::{Duration, Instant};

use dragent_tunnel::error::{CertProblem, ErrorKind};
use dragent_tunnel::log::LogLevel;
use dragent_tunnel::{Connection, Stage, Status, Transfer, TunnelConfig, Wait};
use dtun_testenv::collector::{CollectorBehaviour, EchoOptions, EchoServer};
use dtun_testenv::proxy::{Fault, ProxyOptions, TestProxy};
use support::*;

fn plain_proxy() -> TestProxy {
    TestProxy::start(ProxyOptions::default()).expect("start proxy")
}

fn proxy_with(opts: ProxyOptions) -> TestProxy {
    TestProxy::start(opts).expect("start proxy")
}

fn tls_proxy(env: &Env, cert: Cert) -> TestProxy {
    proxy_with(ProxyOptions {
        tls: Some(env.server_tls(cert)),
        ..ProxyOptions::default()
    })
}

fn tls_echo(env: &Env, cert: Cert) -> EchoServer {
    EchoServer::start(Some(env.server_tls(cert))).expect("start TLS echo")
}

fn plain_echo() -> EchoServer {
    EchoServer::start(None).expect("start echo")
}

fn fault_proxy(fault: Fault) -> TestProxy {
    proxy_with(ProxyOptions {
        fault,
        ..ProxyOptions::default()
    })
}

/// The CONNECT the proxy received: request line and Host name the collector unresolved,
/// and at most one `Proxy-Authorization` line, decoding to `user:password` when expected.
fn check_connect_request(
    proxy: &TestProxy,
    collector_port: u16,
    credentials: Option<(&str, &str)>,
) {
    let requests = proxy.requests();
    assert_eq!(requests.len(), 1, "requests: {requests:?}");
    let req = &requests[0];
    assert_eq!(
        req.request_line,
        format!("CONNECT localhost:{collector_port} HTTP/1.1")
    );
    assert_eq!(
        req.headers_named("host"),
        vec![format!("localhost:{collector_port}")]
    );
    let auth = req.headers_named("proxy-authorization");
    match credentials {
        None => assert!(auth.is_empty(), "unexpected Proxy-Authorization"),
        Some((user, password)) => {
            assert_eq!(auth.len(), 1, "one Proxy-Authorization line");
            let token = auth[0]
                .strip_prefix("Basic ")
                .expect("Basic scheme in Proxy-Authorization");
            use base64::Engine as _;
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(token)
                .expect("valid Base64");
            assert_eq!(
                String::from_utf8(decoded).expect("UTF-8 credentials"),
                format!("{user}:{password}")
            );
        }
    }
}

// ---- The three examples of the agent documentation -------------------------------------

/// "SSL between proxy and collector": a plain proxy, TLS end to end inside the tunnel.
#[test]
fn doc_example_1_plain_proxy_tls_collector() {
    let env = Env::new("ex1");
    let collector = tls_echo(&env, Cert::Trusted);
    let proxy = plain_proxy();
    let yaml = format!(
        "collector: localhost\n\
         collector_port: {}\n\
         ssl: true\n\
         ssl_verify_certificate: true\n\
         ca_certificate: {}\n\
         http_proxy:\n\
         \x20 proxy_host: localhost\n\
         \x20 proxy_port: {}\n\
         \x20 ssl: false\n",
        collector.port(),
        qp(&env.ca()),
        proxy.port()
    );
    let cfg = TunnelConfig::from_yaml(&yaml).expect("example 1 parses");
    let conn = open_ok(&cfg);
    echo(&conn, b"example 1");
    conn.close();
    check_connect_request(&proxy, collector.port(), None);
    assert_eq!(proxy.tunnels_opened(), 1);
}

/// "SSL": TLS to the proxy, trusted through `http_proxy.ca_certificate`, and TLS to the
/// collector inside it (TLS in TLS).
#[test]
fn doc_example_2_tls_proxy_with_proxy_ca() {
    let env = Env::new("ex2");
    let collector = tls_echo(&env, Cert::Trusted);
    let proxy = tls_proxy(&env, Cert::Trusted);
    let yaml = format!(
        "collector: localhost\n\
         collector_port: {}\n\
         ssl: true\n\
         ca_certificate: {}\n\
         http_proxy:\n\
         \x20 proxy_host: localhost\n\
         \x20 proxy_port: {}\n\
         \x20 ssl: true\n\
         \x20 ssl_verify_certificate: true\n\
         \x20 ca_certificate: {}\n",
        collector.port(),
        qp(&env.ca()),
        proxy.port(),
        qp(&env.ca())
    );
    let cfg = TunnelConfig::from_yaml(&yaml).expect("example 2 parses");
    let conn = open_ok(&cfg);
    echo(&conn, b"example 2");
    conn.close();
    check_connect_request(&proxy, collector.port(), None);
    assert_eq!(proxy.tunnels_opened(), 1);
}

/// "SSL with username and password", as documented (TLS to the proxy), with a password
/// holding `: @ / % +`.
#[test]
fn doc_example_3_tls_proxy_with_credentials() {
    let env = Env::new("ex3");
    let collector = tls_echo(&env, Cert::Trusted);
    let proxy = proxy_with(ProxyOptions {
        tls: Some(env.server_tls(Cert::Trusted)),
        auth: Some((USER.into(), PASSWORD.into())),
        ..ProxyOptions::default()
    });
    let yaml = format!(
        "collector: localhost\n\
         collector_port: {}\n\
         ca_certificate: {}\n\
         http_proxy:\n\
         \x20   proxy_host: localhost\n\
         \x20   proxy_port: {}\n\
         \x20   proxy_user: {USER}\n\
         \x20   proxy_password: \"{PASSWORD}\"\n\
         \x20   ssl: true\n\
         \x20   ssl_verify_certificate: true\n\
         \x20   ca_certificate: {}\n",
        collector.port(),
        qp(&env.ca()),
        proxy.port(),
        qp(&env.ca())
    );
    let cfg = TunnelConfig::from_yaml(&yaml).expect("example 3 parses");
    let conn = open_ok(&cfg);
    echo(&conn, b"example 3");
    conn.close();
    check_connect_request(&proxy, collector.port(), Some((USER, PASSWORD)));
    assert_eq!(proxy.tunnels_opened(), 1);
}

/// Example 3 over a plain proxy.
#[test]
fn doc_example_3_plain_proxy_with_credentials() {
    let env = Env::new("ex3p");
    let collector = tls_echo(&env, Cert::Trusted);
    let proxy = proxy_with(ProxyOptions {
        auth: Some((USER.into(), PASSWORD.into())),
        ..ProxyOptions::default()
    });
    let cfg = Yaml::collector(collector.port())
        .tls_collector(&env)
        .proxy(proxy.port())
        .auth(USER, PASSWORD)
        .build();
    let conn = open_ok(&cfg);
    echo(&conn, b"example 3, plain proxy");
    conn.close();
    check_connect_request(&proxy, collector.port(), Some((USER, PASSWORD)));
    assert_eq!(proxy.tunnels_opened(), 1);
}

// ---- Other routes ---------------------------------------------------------------------

#[test]
fn direct_tls() {
    let env = Env::new("direct-tls");
    let collector = tls_echo(&env, Cert::Trusted);
    let cfg = Yaml::collector(collector.port())
        .tls_collector(&env)
        .build();
    let conn = open_ok(&cfg);
    echo(&conn, b"direct TLS");
    assert_eq!(collector.accepted(), 1);
}

#[test]
fn direct_tls_to_an_ip_literal_checks_the_ip_san() {
    let env = Env::new("direct-ip");
    let collector = tls_echo(&env, Cert::Trusted);
    let cfg = Yaml::collector(collector.port())
        .set("collector", "127.0.0.1")
        .tls_collector(&env)
        .build();
    let conn = open_ok(&cfg);
    echo(&conn, b"direct TLS to 127.0.0.1");
    drop(conn);
    // The same name checked against a certificate for `localhost` only: rejected.
    let collector = tls_echo(&env, Cert::TrustedLocalhostOnly);
    let cfg = Yaml::collector(collector.port())
        .set("collector", "127.0.0.1")
        .tls_collector(&env)
        .build();
    let e = open_err(&cfg, Status::DTUN_ERR_COLLECTOR_CERT);
    assert_eq!(
        e.kind(),
        &ErrorKind::Certificate(CertProblem::WrongName),
        "{e:?}"
    );
}

#[test]
fn direct_plain() {
    let collector = plain_echo();
    let cfg = Yaml::collector(collector.port()).plain_collector().build();
    let conn = open_ok(&cfg);
    echo(&conn, b"direct plain");
    assert_eq!(collector.accepted(), 1);
}

#[test]
fn plain_collector_through_the_proxy() {
    let collector = plain_echo();
    let proxy = plain_proxy();
    let cfg = Yaml::collector(collector.port())
        .plain_collector()
        .proxy(proxy.port())
        .build();
    let conn = open_ok(&cfg);
    echo(&conn, b"plain through the proxy");
    drop(conn);
    check_connect_request(&proxy, collector.port(), None);
    assert_eq!(proxy.tunnels_opened(), 1);
}

#[test]
fn http_proxy_ssl_without_ssl_is_rejected() {
    let text = Yaml::collector(1)
        .plain_collector()
        .proxy(2)
        .set("http_proxy.ssl", "true")
        .text();
    let e = TunnelConfig::from_yaml(&text).expect_err("contradictory config");
    assert_eq!(e.status(), Status::DTUN_ERR_CONFIG, "{e:?}");
    assert!(e.message().contains("http_proxy.ssl"), "{e:?}");
}

#[test]
fn a_proxy_needs_both_host_and_port() {
    // Port 0 (or an empty host) means no proxy: the tunnel goes direct.
    let collector = plain_echo();
    let cfg = Yaml::collector(collector.port())
        .plain_collector()
        .set("http_proxy.proxy_host", "localhost")
        .set("http_proxy.proxy_port", 0)
        .build();
    let conn = open_ok(&cfg);
    echo(&conn, b"direct despite a proxy host");
    assert!(conn.route().starts_with("direct"), "{}", conn.route());
}

#[test]
fn one_config_shared_by_many_threads() {
    let env = Env::new("shared");
    let collector = tls_echo(&env, Cert::Trusted);
    let proxy = tls_proxy(&env, Cert::Trusted);
    let cfg = Yaml::collector(collector.port())
        .tls_collector(&env)
        .tls_proxy(proxy.port(), &env)
        .build();
    std::thread::scope(|s| {
        for i in 0..8u8 {
            let cfg = &cfg;
            s.spawn(move || {
                let conn = open_ok(cfg);
                echo(&conn, &[i; 1000]);
            });
        }
    });
    assert_eq!(proxy.tunnels_opened(), 8);
}

// ---- Certificates ---------------------------------------------------------------------

/// Runs `case` for each certificate failure and reports every wrong row at once.
fn each_cert_failure(case: impl Fn(Cert) -> Result<(), String>) {
    let failures: Vec<String> = Cert::FAILURES
        .iter()
        .filter_map(|(cert, _)| case(*cert).err().map(|e| format!("{cert:?}: {e}")))
        .collect();
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

/// Expects a certificate rejection with this status, problem and words in the message.
fn check_cert_error(cfg: &TunnelConfig, status: Status, cert: Cert) -> Result<(), String> {
    let words = Cert::FAILURES
        .iter()
        .find(|(c, _)| *c == cert)
        .map(|(_, w)| *w)
        .expect("a failing kind");
    match open(cfg) {
        Ok(_) => Err(format!("opened, expected {}", status.name())),
        Err(e) if e.status() != status => Err(format!("expected {}, got {e:?}", status.name())),
        Err(e) if Some(e.kind().clone()) != cert.problem().map(ErrorKind::Certificate) => {
            Err(format!("expected {:?}, got {e:?}", cert.problem()))
        }
        Err(e) if !e.message().contains(words) => {
            Err(format!("message does not say {words:?}: {e:?}"))
        }
        Err(_) => Ok(()),
    }
}

#[test]
fn collector_certificate_failures_direct() {
    let env = Env::new("ccert-direct");
    each_cert_failure(|cert| {
        let collector = tls_echo(&env, cert);
        let cfg = Yaml::collector(collector.port())
            .tls_collector(&env)
            .build();
        check_cert_error(&cfg, Status::DTUN_ERR_COLLECTOR_CERT, cert)
    });
}

#[test]
fn collector_certificate_failures_through_a_tls_proxy() {
    let env = Env::new("ccert-proxy");
    let proxy = tls_proxy(&env, Cert::Trusted);
    each_cert_failure(|cert| {
        let collector = tls_echo(&env, cert);
        let cfg = Yaml::collector(collector.port())
            .tls_collector(&env)
            .tls_proxy(proxy.port(), &env)
            .build();
        check_cert_error(&cfg, Status::DTUN_ERR_COLLECTOR_CERT, cert)
    });
    assert_eq!(
        proxy.tunnels_opened(),
        3,
        "each failure happened inside the tunnel"
    );
}

#[test]
fn proxy_certificate_failures() {
    let env = Env::new("pcert");
    let collector = tls_echo(&env, Cert::Trusted);
    each_cert_failure(|cert| {
        let proxy = tls_proxy(&env, cert);
        let cfg = Yaml::collector(collector.port())
            .tls_collector(&env)
            .tls_proxy(proxy.port(), &env)
            .build();
        let result = check_cert_error(&cfg, Status::DTUN_ERR_PROXY_CERT, cert);
        if proxy.requests().is_empty() {
            result
        } else {
            Err("a CONNECT went to a proxy whose certificate was rejected".into())
        }
    });
    assert_eq!(collector.accepted(), 0);
}

/// The WARN records about verification being off for `side` and `peer`.
fn verification_warnings(log: &LogCapture, side: &str, peer: &str) -> usize {
    log.records()
        .iter()
        .filter(|(level, msg)| {
            *level == LogLevel::DTUN_LOG_WARN
                && msg.contains("verification is off")
                && msg.contains(side)
                && msg.contains(peer)
        })
        .count()
}

#[test]
fn collector_verification_off_accepts_any_certificate() {
    let env = Env::new("cverify-off");
    let log = LogCapture::start();
    each_cert_failure(|cert| {
        let collector = tls_echo(&env, cert);
        let cfg = Yaml::collector(collector.port())
            .tls_collector(&env)
            .set("ssl_verify_certificate", "false")
            .build();
        let conn = open(&cfg).map_err(|e| format!("{e:?}"))?;
        echo(&conn, b"unverified collector");
        let peer = format!("localhost:{}", collector.port());
        match verification_warnings(&log, "collector", &peer) {
            1 => Ok(()),
            n => Err(format!("{n} WARN records for {peer}:\n{}", log.dump())),
        }
    });
}

#[test]
fn proxy_verification_off_accepts_any_certificate() {
    let env = Env::new("pverify-off");
    let collector = tls_echo(&env, Cert::Trusted);
    let log = LogCapture::start();
    each_cert_failure(|cert| {
        let proxy = tls_proxy(&env, cert);
        let cfg = Yaml::collector(collector.port())
            .tls_collector(&env)
            .tls_proxy(proxy.port(), &env)
            .set("http_proxy.ssl_verify_certificate", "false")
            .build();
        let conn = open(&cfg).map_err(|e| format!("{e:?}"))?;
        echo(&conn, b"unverified proxy");
        let peer = format!("localhost:{}", proxy.port());
        match verification_warnings(&log, "proxy", &peer) {
            1 => Ok(()),
            n => Err(format!("{n} WARN records for {peer}:\n{}", log.dump())),
        }
    });
}

/// Switching verification off on one side leaves the other side verified.
#[test]
fn verification_settings_are_independent() {
    let env = Env::new("independent");
    let good_collector = tls_echo(&env, Cert::Trusted);
    let bad_collector = tls_echo(&env, Cert::UntrustedIssuer);
    let good_proxy = tls_proxy(&env, Cert::Trusted);
    let bad_proxy = tls_proxy(&env, Cert::UntrustedIssuer);

    let cfg = Yaml::collector(bad_collector.port())
        .tls_collector(&env)
        .tls_proxy(bad_proxy.port(), &env)
        .set("http_proxy.ssl_verify_certificate", "false")
        .build();
    open_err(&cfg, Status::DTUN_ERR_COLLECTOR_CERT);

    let cfg = Yaml::collector(bad_collector.port())
        .tls_collector(&env)
        .set("ssl_verify_certificate", "false")
        .tls_proxy(bad_proxy.port(), &env)
        .build();
    open_err(&cfg, Status::DTUN_ERR_PROXY_CERT);

    // Each off on its own side only: both hops succeed.
    let cfg = Yaml::collector(bad_collector.port())
        .tls_collector(&env)
        .set("ssl_verify_certificate", "false")
        .tls_proxy(good_proxy.port(), &env)
        .build();
    echo(&open_ok(&cfg), b"collector unverified, proxy verified");
    let cfg = Yaml::collector(good_collector.port())
        .tls_collector(&env)
        .tls_proxy(bad_proxy.port(), &env)
        .set("http_proxy.ssl_verify_certificate", "false")
        .build();
    echo(&open_ok(&cfg), b"proxy unverified, collector verified");
}

/// Each side's CA file trusts only that side: the proxy's CA is not used for the collector,
/// nor the collector's for the proxy (the system store does not know the test CA).
#[test]
fn ca_files_are_independent() {
    let env = Env::new("ca-independent");
    let collector = tls_echo(&env, Cert::Trusted);
    let proxy = tls_proxy(&env, Cert::Trusted);

    let cfg = Yaml::collector(collector.port())
        .set("ssl", "true")
        .tls_proxy(proxy.port(), &env)
        .build();
    let e = open_err(&cfg, Status::DTUN_ERR_COLLECTOR_CERT);
    assert_eq!(e.kind(), &ErrorKind::Certificate(CertProblem::Untrusted));

    let cfg = Yaml::collector(collector.port())
        .tls_collector(&env)
        .proxy(proxy.port())
        .set("http_proxy.ssl", "true")
        .build();
    let e = open_err(&cfg, Status::DTUN_ERR_PROXY_CERT);
    assert_eq!(e.kind(), &ErrorKind::Certificate(CertProblem::Untrusted));

    // A collector CA that is not the right one: still untrusted.
    let cfg = Yaml::collector(collector.port())
        .set("ssl", "true")
        .set("ca_certificate", qp(&env.untrusted_ca()))
        .build();
    open_err(&cfg, Status::DTUN_ERR_COLLECTOR_CERT);
}

// ---- Proxy failures -------------------------------------------------------------------

#[test]
fn tls_spoken_to_a_plain_proxy_port() {
    let env = Env::new("tls-to-plain");
    let collector = tls_echo(&env, Cert::Trusted);
    let proxy = plain_proxy();
    let cfg = Yaml::collector(collector.port())
        .tls_collector(&env)
        .tls_proxy(proxy.port(), &env)
        .build();
    let e = open_err(&cfg, Status::DTUN_ERR_PROXY_TLS);
    assert_eq!(e.stage(), Stage::ProxyTls, "{e:?}");
    assert_eq!(proxy.tunnels_opened(), 0);
}

#[test]
fn plain_spoken_to_a_tls_proxy_port() {
    let env = Env::new("plain-to-tls");
    let collector = tls_echo(&env, Cert::Trusted);
    let proxy = tls_proxy(&env, Cert::Trusted);
    let cfg = Yaml::collector(collector.port())
        .tls_collector(&env)
        .proxy(proxy.port())
        .build();
    let e = open_err(&cfg, Status::DTUN_ERR_PROXY_PROTOCOL);
    assert_eq!(e.stage(), Stage::ProxyConnect, "{e:?}");
    assert_eq!(proxy.tunnels_opened(), 0);
}

#[test]
fn proxy_407_without_credentials() {
    let collector = plain_echo();
    let proxy = proxy_with(ProxyOptions {
        auth: Some((USER.into(), PASSWORD.into())),
        ..ProxyOptions::default()
    });
    let cfg = Yaml::collector(collector.port())
        .plain_collector()
        .proxy(proxy.port())
        .build();
    let e = open_err(&cfg, Status::DTUN_ERR_PROXY_AUTH);
    assert_eq!(
        e.kind(),
        &ErrorKind::ProxyAuth {
            schemes: vec!["Basic".into()]
        }
    );
    assert!(e.message().contains("407"), "{e:?}");
    assert!(e.message().contains("Basic"), "{e:?}");
    assert_eq!(collector.accepted(), 0);
}

#[test]
fn proxy_407_with_a_wrong_password() {
    let collector = plain_echo();
    let proxy = proxy_with(ProxyOptions {
        auth: Some((USER.into(), "the-right-one".into())),
        ..ProxyOptions::default()
    });
    let cfg = Yaml::collector(collector.port())
        .plain_collector()
        .proxy(proxy.port())
        .auth(USER, PASSWORD)
        .build();
    let e = open_err(&cfg, Status::DTUN_ERR_PROXY_AUTH);
    assert!(e.message().contains("Basic"), "{e:?}");
    assert_error_clean(&e, &secrets_of(USER, PASSWORD));
    check_connect_request(&proxy, collector.port(), Some((USER, PASSWORD)));
}

#[test]
fn proxy_407_lists_every_offered_scheme() {
    let collector = plain_echo();
    let proxy = fault_proxy(Fault::Auth407WithBody);
    let cfg = Yaml::collector(collector.port())
        .plain_collector()
        .proxy(proxy.port())
        .auth(USER, PASSWORD)
        .build();
    let e = open_err(&cfg, Status::DTUN_ERR_PROXY_AUTH);
    assert_eq!(
        e.kind(),
        &ErrorKind::ProxyAuth {
            schemes: vec!["Basic".into(), "NTLM".into()]
        }
    );
    assert!(e.message().contains("Basic, NTLM"), "{e:?}");
}

#[test]
fn proxy_403() {
    let collector = plain_echo();
    let proxy = fault_proxy(Fault::Forbidden403);
    let cfg = Yaml::collector(collector.port())
        .plain_collector()
        .proxy(proxy.port())
        .build();
    let e = open_err(&cfg, Status::DTUN_ERR_PROXY_REFUSED);
    assert_eq!(
        e.kind(),
        &ErrorKind::ProxyRefused {
            code: 403,
            reason: "Forbidden".into()
        }
    );
    assert!(e.message().contains("403 Forbidden"), "{e:?}");
}

#[test]
fn proxy_502_when_the_collector_is_unreachable() {
    let proxy = plain_proxy();
    let cfg = Yaml::collector(closed_port())
        .plain_collector()
        .proxy(proxy.port())
        .build();
    let e = open_err(&cfg, Status::DTUN_ERR_PROXY_REFUSED);
    assert!(
        matches!(e.kind(), ErrorKind::ProxyRefused { code: 502, .. }),
        "{e:?}"
    );
    assert!(e.message().contains("502"), "{e:?}");
}

/// The collector's name goes to the proxy as written: a name only the proxy could resolve
/// is not resolved by the agent (here the proxy cannot either, and says so with a 502).
#[test]
fn the_collector_name_is_left_to_the_proxy() {
    let proxy = plain_proxy();
    let cfg = Yaml::collector(6443)
        .set("collector", "no-such-host.invalid")
        .plain_collector()
        .proxy(proxy.port())
        .build();
    let e = open_err(&cfg, Status::DTUN_ERR_PROXY_REFUSED);
    assert!(
        matches!(e.kind(), ErrorKind::ProxyRefused { code: 502, .. }),
        "{e:?}"
    );
    let requests = proxy.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(
        requests[0].request_line,
        "CONNECT no-such-host.invalid:6443 HTTP/1.1"
    );
    assert_eq!(
        requests[0].header("Host"),
        Some("no-such-host.invalid:6443")
    );
}

#[test]
fn silent_proxy_hits_the_open_deadline() {
    let proxy = fault_proxy(Fault::NeverAnswer);
    let cfg = Yaml::collector(6443)
        .plain_collector()
        .proxy(proxy.port())
        .build();
    let deadline = Duration::from_millis(300);
    let started = Instant::now();
    let e = Connection::open(&cfg, Wait::For(deadline)).expect_err("the proxy never answers");
    let took = started.elapsed();
    assert_eq!(e.status(), Status::DTUN_ERR_TIMEOUT, "{e:?}");
    assert!(e.message().contains("proxy connect"), "{e:?}");
    assert!(took < deadline * 10, "open hung for {took:?}");
}

#[test]
fn connection_refused_by_the_collector() {
    let cfg = Yaml::collector(closed_port()).plain_collector().build();
    let e = open_err(&cfg, Status::DTUN_ERR_CONNECT);
    assert_eq!(e.stage(), Stage::Connect);
}

#[test]
fn connection_refused_by_the_proxy() {
    let cfg = Yaml::collector(6443)
        .plain_collector()
        .proxy(closed_port())
        .build();
    let e = open_err(&cfg, Status::DTUN_ERR_CONNECT);
    assert!(e.message().contains("proxy"), "{e:?}");
}

#[test]
fn unresolvable_collector() {
    let cfg = Yaml::collector(6443)
        .set("collector", "no-such-host.invalid")
        .plain_collector()
        .build();
    let e = open_err(&cfg, Status::DTUN_ERR_RESOLVE);
    assert!(e.message().contains("no-such-host.invalid"), "{e:?}");
}

#[test]
fn unresolvable_proxy() {
    let cfg = Yaml::collector(6443)
        .plain_collector()
        .set("http_proxy.proxy_host", "no-such-host.invalid")
        .set("http_proxy.proxy_port", 3128)
        .build();
    let e = open_err(&cfg, Status::DTUN_ERR_RESOLVE);
    assert!(e.message().contains("no-such-host.invalid"), "{e:?}");
}

// ---- The stream -----------------------------------------------------------------------

/// Bytes the proxy sends in the same write as its 200 are the first bytes of the tunnel.
#[test]
fn bytes_right_behind_the_200_reach_the_reader() {
    let greeting = b"COLLECTOR GREETING v1\n";
    let collector = EchoServer::start_with(EchoOptions {
        greeting: Some(greeting.to_vec()),
        ..EchoOptions::default()
    })
    .expect("start echo");
    let proxy = fault_proxy(Fault::Ok200WithFirstBytes);
    let cfg = Yaml::collector(collector.port())
        .plain_collector()
        .proxy(proxy.port())
        .build();
    let conn = open_ok(&cfg);
    let mut buf = [0u8; 256];
    let (n, result) = conn.recv(&mut buf, IO_WAIT);
    assert_eq!(result, Ok(Transfer::Complete));
    assert_eq!(
        &buf[..n],
        &greeting[..],
        "the first recv returns the greeting"
    );
    echo(&conn, b"and then the tunnel works");
}

#[test]
fn recv_timeout_leaves_the_connection_usable() {
    let env = Env::new("recv-timeout");
    let collector = tls_echo(&env, Cert::Trusted);
    let proxy = tls_proxy(&env, Cert::Trusted);
    let cfg = Yaml::collector(collector.port())
        .tls_collector(&env)
        .tls_proxy(proxy.port(), &env)
        .build();
    let conn = open_ok(&cfg);
    let mut buf = [0u8; 64];
    for wait in [Duration::ZERO, Duration::from_millis(100)] {
        let (n, result) = conn.recv(&mut buf, Wait::For(wait));
        assert_eq!(result, Ok(Transfer::TimedOut), "wait {wait:?}");
        assert_eq!(n, 0);
    }
    echo(&conn, b"still usable after timeouts");
    let (n, result) = conn.recv(&mut buf, Wait::For(Duration::from_millis(50)));
    assert_eq!((n, result), (0, Ok(Transfer::TimedOut)));
    echo(&conn, b"and again");
}

#[test]
fn send_timeout_counts_what_was_accepted() {
    let collector = EchoServer::start_with(EchoOptions {
        behaviour: CollectorBehaviour::NeverRead,
        ..EchoOptions::default()
    })
    .expect("start collector");
    let cfg = Yaml::collector(collector.port()).plain_collector().build();
    let conn = open_ok(&cfg);
    let big = vec![7u8; 64 << 20];
    let (sent, result) = conn.send(&big, Wait::For(Duration::from_millis(200)));
    assert_eq!(result, Ok(Transfer::TimedOut));
    assert!(
        sent < big.len(),
        "{sent} bytes accepted by a peer that never reads"
    );
    let (again, result) = conn.send(&big[..1], Wait::For(Duration::ZERO));
    assert_eq!(result, Ok(Transfer::TimedOut), "the pipe is still full");
    assert!(again <= 1);
}

#[test]
fn collector_close_is_closed_through_tls_in_tls() {
    let env = Env::new("close");
    let collector = EchoServer::start_with(EchoOptions {
        tls: Some(env.server_tls(Cert::Trusted)),
        behaviour: CollectorBehaviour::CloseAfter(5),
        ..EchoOptions::default()
    })
    .expect("start collector");
    let proxy = tls_proxy(&env, Cert::Trusted);
    let cfg = Yaml::collector(collector.port())
        .tls_collector(&env)
        .tls_proxy(proxy.port(), &env)
        .build();
    let conn = open_ok(&cfg);
    echo(&conn, b"hello");
    let mut buf = [0u8; 16];
    let (n, result) = conn.recv(&mut buf, IO_WAIT);
    assert_eq!((n, result), (0, Ok(Transfer::Closed)));
    // And it stays closed.
    let (n, result) = conn.recv(&mut buf, IO_WAIT);
    assert_eq!((n, result), (0, Ok(Transfer::Closed)));
}

#[test]
fn collector_close_is_closed_direct_plain() {
    let collector = EchoServer::start_with(EchoOptions {
        behaviour: CollectorBehaviour::CloseAfter(3),
        ..EchoOptions::default()
    })
    .expect("start collector");
    let cfg = Yaml::collector(collector.port()).plain_collector().build();
    let conn = open_ok(&cfg);
    echo(&conn, b"bye");
    let mut buf = [0u8; 16];
    let (n, result) = conn.recv(&mut buf, IO_WAIT);
    assert_eq!((n, result), (0, Ok(Transfer::Closed)));
}

#[test]
fn collector_reset_is_an_io_error() {
    let collector = EchoServer::start_with(EchoOptions {
        behaviour: CollectorBehaviour::ResetAfter(4),
        ..EchoOptions::default()
    })
    .expect("start collector");
    let cfg = Yaml::collector(collector.port()).plain_collector().build();
    let conn = open_ok(&cfg);
    send_all(&conn, b"ping");
    // The echo may or may not arrive before the reset; the reset must be an error, not a
    // clean close.
    let mut received = Vec::new();
    let mut buf = [0u8; 16];
    let result = loop {
        match conn.recv(&mut buf, IO_WAIT) {
            (n, Ok(Transfer::Complete)) => received.extend_from_slice(&buf[..n]),
            (n, other) => {
                assert_eq!(n, 0);
                break other;
            }
        }
        assert!(received.len() <= 4, "more than was echoed: {received:?}");
    };
    assert!(b"ping".starts_with(&received), "{received:?}");
    let e = result.expect_err("a reset is an error, not a clean close");
    assert_eq!(e.status(), Status::DTUN_ERR_IO, "{e:?}");
}

/// 32 MiB echoed through a TLS proxy to a TLS collector, one thread sending while another
/// receives, every byte checked against the same pseudo-random pattern.
#[test]
fn full_duplex_32_mib_through_tls_in_tls() {
    const TOTAL: usize = 32 << 20;
    const SEED: u64 = 0x5EED_D7A6_0032_0001;
    let env = Env::new("duplex");
    let collector = tls_echo(&env, Cert::Trusted);
    let proxy = tls_proxy(&env, Cert::Trusted);
    let cfg = Yaml::collector(collector.port())
        .tls_collector(&env)
        .tls_proxy(proxy.port(), &env)
        .build();
    let conn = open_ok(&cfg);
    std::thread::scope(|s| {
        let sender = s.spawn(|| {
            let mut pattern = Pattern::new(SEED);
            let mut chunk = vec![0u8; 256 * 1024];
            let mut sent = 0;
            while sent < TOTAL {
                let n = chunk.len().min(TOTAL - sent);
                pattern.fill(&mut chunk[..n]);
                send_all(&conn, &chunk[..n]);
                sent += n;
            }
        });
        let mut expected = Pattern::new(SEED);
        let mut buf = vec![0u8; 64 * 1024];
        let mut want = vec![0u8; 64 * 1024];
        let mut received = 0;
        while received < TOTAL {
            let (n, result) = conn.recv(&mut buf, IO_WAIT);
            assert_eq!(result, Ok(Transfer::Complete), "after {received} bytes");
            expected.fill(&mut want[..n]);
            if buf[..n] != want[..n] {
                let at = buf[..n]
                    .iter()
                    .zip(&want[..n])
                    .position(|(a, b)| a != b)
                    .unwrap_or(0);
                panic!("byte {} differs", received + at);
            }
            received += n;
        }
        sender.join().expect("sender thread");
    });
    let mut buf = [0u8; 1];
    let (n, result) = conn.recv(&mut buf, Wait::For(Duration::ZERO));
    assert_eq!((n, result), (0, Ok(Transfer::TimedOut)), "nothing extra");
    conn.close();
    assert_eq!(proxy.tunnels_opened(), 1);
}

// ---- Secrets --------------------------------------------------------------------------

/// Opens through one-shot fake proxies that answer `(what, reply, expected status)`, with
/// Basic credentials, and returns every wrong status and every piece of a secret found in an
/// error message, an error's `Debug` or a log record (captured at TRACE).
fn leaks_through_scripted_proxies(cases: Vec<(&str, String, Status)>) -> Vec<String> {
    let secrets = secrets_of(USER, PASSWORD);
    let token = basic_token(USER, PASSWORD);
    let log = LogCapture::start();
    let mut failures = Vec::new();
    for (what, reply, status) in cases {
        let fake = ScriptedProxy::start(move |_head| reply.into_bytes());
        let cfg = Yaml::collector(6443)
            .plain_collector()
            .proxy(fake.port())
            .auth(USER, PASSWORD)
            .build();
        // The connection (if any) closes before the fake proxy is reaped.
        let outcome = open(&cfg).map(drop);
        let head = fake.finish().unwrap_or_default();
        let e = match outcome {
            Ok(_) => {
                failures.push(format!("{what}: opened, expected {}", status.name()));
                continue;
            }
            Err(e) => e,
        };
        if e.status() != status {
            failures.push(format!("{what}: expected {}, got {e:?}", status.name()));
        }
        if !head.contains(&token) {
            failures.push(format!(
                "{what}: the request carried no credentials: {head:?}"
            ));
        }
        for text in [e.message().to_owned(), format!("{e:?}")] {
            if let Some(piece) = leak_in(&text, &secrets) {
                failures.push(format!("{what}: error leaks {piece:?}: {text}"));
            }
        }
    }
    for (level, message) in log.records() {
        if let Some(piece) = leak_in(&message, &secrets) {
            failures.push(format!(
                "log record [{}] leaks {piece:?}: {message}",
                level.name()
            ));
        }
    }
    if log.records().is_empty() {
        failures.push("no log record captured: the capture is broken".into());
    }
    failures
}

/// The password and its Base64 never reach an error message, a `Debug` output or a log
/// record (captured at TRACE), on success and on failures.
#[test]
fn the_password_never_leaks() {
    let secrets = secrets_of(USER, PASSWORD);
    let env = Env::new("secrets");
    let collector = tls_echo(&env, Cert::Trusted);
    let mut failures = Vec::new();
    {
        let log = LogCapture::start();
        // Success, TLS in TLS with Basic auth, then send/recv/close with TRACE records.
        let proxy = proxy_with(ProxyOptions {
            tls: Some(env.server_tls(Cert::Trusted)),
            auth: Some((USER.into(), PASSWORD.into())),
            ..ProxyOptions::default()
        });
        let cfg = Yaml::collector(collector.port())
            .tls_collector(&env)
            .tls_proxy(proxy.port(), &env)
            .auth(USER, PASSWORD)
            .build();
        assert_no_leak("config Debug", &format!("{cfg:?}"), &secrets);
        let (conn, progress) = Connection::open_with_progress(&cfg, OPEN_WAIT);
        let conn = conn.expect("open with credentials");
        assert_no_leak("progress Debug", &format!("{progress:?}"), &secrets);
        assert_no_leak("connection Debug", &format!("{conn:?}"), &secrets);
        assert_no_leak("route", conn.route(), &secrets);
        echo(&conn, b"secret-free payload");
        conn.close();

        // A proxy that rejects the password.
        let rejecting = proxy_with(ProxyOptions {
            auth: Some((USER.into(), "another-password".into())),
            ..ProxyOptions::default()
        });
        let cfg = Yaml::collector(collector.port())
            .tls_collector(&env)
            .proxy(rejecting.port())
            .auth(USER, PASSWORD)
            .build();
        assert_error_clean(&open_err(&cfg, Status::DTUN_ERR_PROXY_AUTH), &secrets);

        for (level, message) in log.records() {
            if let Some(piece) = leak_in(&message, &secrets) {
                failures.push(format!(
                    "log record [{}] leaks {piece:?}: {message}",
                    level.name()
                ));
            }
        }
        let levels: Vec<LogLevel> = log.records().iter().map(|(l, _)| *l).collect();
        for level in [
            LogLevel::DTUN_LOG_INFO,
            LogLevel::DTUN_LOG_DEBUG,
            LogLevel::DTUN_LOG_TRACE,
        ] {
            assert!(
                levels.contains(&level),
                "no {} record:\n{}",
                level.name(),
                log.dump()
            );
        }
    }

    // The same credentials set key by key.
    let mut set_cfg = TunnelConfig::new().expect("defaults");
    set_cfg
        .set("http_proxy.proxy_password", PASSWORD)
        .expect("set password");
    assert_eq!(
        set_cfg.settings().proxy.password.expose(),
        PASSWORD.as_bytes()
    );
    assert_no_leak("config Debug after set", &format!("{set_cfg:?}"), &secrets);

    // Config errors near the password.
    for text in [
        format!("http_proxy:\n    proxy_password: [\"{PASSWORD}\"]\n"),
        format!("http_proxy:\n    proxy_password: {{\"{PASSWORD}\": 1}}\n"),
        format!("http_proxy:\n    proxy_password: \"{PASSWORD}\n    proxy_port: 1\n"),
        format!("http_proxy:\n    proxy_user: \"a:b\"\n    proxy_password: \"{PASSWORD}\"\n"),
    ] {
        match TunnelConfig::from_yaml(&text) {
            Ok(cfg) => {
                if let Some(piece) = leak_in(&format!("{cfg:?}"), &secrets) {
                    failures.push(format!("config Debug leaks {piece:?}"));
                }
            }
            Err(e) => {
                if e.status() != Status::DTUN_ERR_CONFIG {
                    failures.push(format!("{text:?}: expected DTUN_ERR_CONFIG, got {e:?}"));
                }
                if let Some(piece) = leak_in(&format!("{} {e:?}", e.message()), &secrets) {
                    failures.push(format!("config error leaks {piece:?}: {e:?}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

/// A proxy that echoes the credentials back in the parts of its reply we report.
#[test]
fn credentials_echoed_by_a_proxy_never_leak() {
    let token = basic_token(USER, PASSWORD);
    let failures = leaks_through_scripted_proxies(vec![
        (
            "407 with the header in the reason and the challenge",
            format!(
                "HTTP/1.1 407 Basic {token}\r\nProxy-Authenticate: Basic realm=\"{token}\"\r\n\r\n"
            ),
            Status::DTUN_ERR_PROXY_AUTH,
        ),
        (
            "403 with user:password in the reason",
            format!("HTTP/1.1 403 {USER}:{PASSWORD}\r\n\r\n"),
            Status::DTUN_ERR_PROXY_REFUSED,
        ),
        (
            "not HTTP, the token in the first line",
            format!("XTTP/1.1 200 Basic {token}\r\n\r\n"),
            Status::DTUN_ERR_PROXY_PROTOCOL,
        ),
        (
            "four-digit status and the password",
            format!("HTTP/1.1 2000 {PASSWORD}\r\n\r\n"),
            Status::DTUN_ERR_PROXY_PROTOCOL,
        ),
        (
            "head cut short after echoing the header",
            format!("HTTP/1.1 200 OK\r\nX-Echo: Proxy-Authorization: Basic {token}\r\n"),
            Status::DTUN_ERR_PROXY_PROTOCOL,
        ),
    ]);
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

/// The reason phrase and the preview of a malformed reply are cut at 80 characters: the cut
/// must not leave the start of a secret behind (redact first, then cut).
#[test]
fn a_secret_cut_by_a_length_limit_never_leaks() {
    let token = basic_token(USER, PASSWORD);
    // 70 + 10: the first 10 characters of the secret survive an 80-character cut.
    let reason_filler = "x".repeat(70);
    let preview_filler = "x".repeat(80 - "XTTP/1.1 200 ".len() - 10);
    let failures = leaks_through_scripted_proxies(vec![
        (
            "403 with the token cut by the reason's length limit",
            format!("HTTP/1.1 403 {reason_filler}{token}\r\n\r\n"),
            Status::DTUN_ERR_PROXY_REFUSED,
        ),
        (
            "403 with the password cut by the reason's length limit",
            format!("HTTP/1.1 403 {reason_filler}{PASSWORD}\r\n\r\n"),
            Status::DTUN_ERR_PROXY_REFUSED,
        ),
        (
            "407 with the password cut by the reason's length limit",
            format!("HTTP/1.1 407 {reason_filler}{PASSWORD}\r\nProxy-Authenticate: Basic\r\n\r\n"),
            Status::DTUN_ERR_PROXY_AUTH,
        ),
        (
            "not HTTP, the token cut by the preview's length limit",
            format!("XTTP/1.1 200 {preview_filler}{token}\r\n\r\n"),
            Status::DTUN_ERR_PROXY_PROTOCOL,
        ),
    ]);
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

/// The auth schemes a 407 offers are listed in the message: a proxy offering our token or
/// password as a "scheme" must not get it printed.
#[test]
fn offered_auth_schemes_never_leak_a_secret() {
    let token = basic_token(USER, PASSWORD);
    let failures = leaks_through_scripted_proxies(vec![
        (
            "407 offering the token as a scheme",
            format!("HTTP/1.1 407 Who\r\nProxy-Authenticate: {token}\r\n\r\n"),
            Status::DTUN_ERR_PROXY_AUTH,
        ),
        (
            "407 offering the password as a scheme",
            format!("HTTP/1.1 407 Who\r\nProxy-Authenticate: {PASSWORD} realm=x\r\n\r\n"),
            Status::DTUN_ERR_PROXY_AUTH,
        ),
    ]);
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}
