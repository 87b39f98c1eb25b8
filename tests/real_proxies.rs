//! The Rust side of issue 4 §1: the library against the real proxies users run, Debian's
//! `squid-openssl` and `tinyproxy`, started once each by this binary on loopback, with
//! collectors whose certificates are trusted, signed by an untrusted CA, issued for another
//! name, or expired, and a plain echo.
//!
//! Each proxy's matrix is one test that runs every row (one expected status each) and
//! reports every wrong row at once; the proxy is a local of that test, so it is stopped
//! when the test ends, passed or failed.
//!
//! Without squid (the OpenSSL build) or tinyproxy the test prints `SKIPPED: ...` (seen only
//! with `--nocapture`) and passes, unless `DTUN_REQUIRE_REAL_PROXIES=1` (`scripts/test.sh`),
//! where it fails naming what is missing (`dtun_testenv::require_or_skip`).

mod support;

use std::time::Duration;

use dragent_tunnel::{Connection, Error, Status, Wait};
use dtun_testenv::collector::EchoServer;
use dtun_testenv::squid::{Squid, SquidOptions};
use dtun_testenv::tinyproxy::{Tinyproxy, TinyproxyOptions};
use dtun_testenv::{require_or_skip, RealProxy};
use support::*;

/// The collectors every matrix uses.
struct Collectors {
    trusted: EchoServer,
    untrusted: EchoServer,
    other_name: EchoServer,
    expired: EchoServer,
    plain: EchoServer,
}

impl Collectors {
    fn start(env: &Env) -> Collectors {
        let tls = |cert| EchoServer::start(Some(env.server_tls(cert))).expect("start collector");
        Collectors {
            trusted: tls(Cert::Trusted),
            untrusted: tls(Cert::UntrustedIssuer),
            other_name: tls(Cert::WrongName),
            expired: tls(Cert::Expired),
            plain: EchoServer::start(None).expect("start plain echo"),
        }
    }

    /// The TLS collector with a certificate of this kind.
    fn tls(&self, cert: Cert) -> &EchoServer {
        match cert {
            Cert::Trusted | Cert::TrustedLocalhostOnly => &self.trusted,
            Cert::UntrustedIssuer => &self.untrusted,
            Cert::WrongName => &self.other_name,
            Cert::Expired => &self.expired,
        }
    }

    fn ports(&self) -> Vec<u16> {
        [
            &self.trusted,
            &self.untrusted,
            &self.other_name,
            &self.expired,
            &self.plain,
        ]
        .iter()
        .map(|c| c.port())
        .collect()
    }
}

/// One case of a matrix: a config and the one status it must give. Successes echo a
/// payload; failures must say `words` in their message. `wait` is the open deadline (the
/// generous default only catches hangs).
struct Row {
    name: String,
    yaml: Yaml,
    expect: Status,
    words: Vec<String>,
    wait: Wait,
}

impl Row {
    fn wait(mut self, wait: Duration) -> Row {
        self.wait = Wait::For(wait);
        self
    }
}

fn ok(name: &str, yaml: Yaml) -> Row {
    Row {
        name: name.into(),
        yaml,
        expect: Status::DTUN_OK,
        words: Vec::new(),
        wait: OPEN_WAIT,
    }
}

fn fails(name: &str, yaml: Yaml, expect: Status, words: &[&str]) -> Row {
    Row {
        name: name.into(),
        yaml,
        expect,
        words: words.iter().map(|w| w.to_string()).collect(),
        wait: OPEN_WAIT,
    }
}

/// Runs one row; `Err` says what was wrong.
fn run_row(row: &Row) -> Result<(), String> {
    let cfg = dragent_tunnel::TunnelConfig::from_yaml(&row.yaml.text())
        .map_err(|e| format!("config rejected: {e:?}"))?;
    let check_clean = |e: &Error| -> Result<(), String> {
        let secrets = secrets_of(USER, PASSWORD);
        for text in [e.message().to_owned(), format!("{e:?}")] {
            if let Some(piece) = leak_in(&text, &secrets) {
                return Err(format!("error leaks {piece:?}: {text}"));
            }
        }
        Ok(())
    };
    match (Connection::open(&cfg, row.wait), row.expect) {
        (Ok(conn), Status::DTUN_OK) => {
            let payload = format!("echo through {}", row.name);
            send_all(&conn, payload.as_bytes());
            let back = recv_exact(&conn, payload.len());
            if back != payload.as_bytes() {
                return Err("the echo differs".into());
            }
            conn.close();
            Ok(())
        }
        (Ok(conn), expect) => Err(format!(
            "opened ({}), expected {}",
            conn.route(),
            expect.name()
        )),
        (Err(e), expect) if e.status() != expect => {
            Err(format!("expected {}, got {e:?}", expect.name()))
        }
        (Err(e), _) => {
            check_clean(&e)?;
            match row.words.iter().find(|w| !e.message().contains(w.as_str())) {
                Some(missing) => Err(format!("message does not say {missing:?}: {e:?}")),
                None => Ok(()),
            }
        }
    }
}

/// Runs every row and fails once, listing every wrong row, with the proxy's log tail.
fn run_matrix(proxy: &str, rows: &[Row], log_tail: impl Fn() -> String) {
    let failures: Vec<String> = rows
        .iter()
        .filter_map(|row| {
            run_row(row).err().map(|why| {
                format!(
                    "[{}] {} (expected {}): {why}",
                    proxy,
                    row.name,
                    row.expect.name()
                )
            })
        })
        .collect();
    eprintln!(
        "{proxy}: {} of {} rows as expected",
        rows.len() - failures.len(),
        rows.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {} {proxy} rows failed:\n{}\n--- {proxy} log ---\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n"),
        log_tail()
    );
}

#[test]
fn squid_matrix() {
    if !require_or_skip("squid_matrix", &[RealProxy::Squid]) {
        return;
    }
    // Declared first, dropped last: squid stops before its folder goes.
    let env = Env::new("squid");
    let collectors = Collectors::start(&env);
    let denied = EchoServer::start(Some(env.server_tls(Cert::Trusted))).expect("start collector");
    let closed = closed_port();
    let (proxy_cert, proxy_key, _) = env.issue(Cert::TrustedLocalhostOnly);
    let mut allowed = collectors.ports();
    allowed.extend([closed, denied.port()]);
    let squid = Squid::start(SquidOptions {
        dir: env.dir().join("squid"),
        tls_cert: Some((proxy_cert, proxy_key)),
        users: vec![(USER.into(), PASSWORD.into())],
        allowed_ports: allowed,
        denied_port: Some(denied.port()),
    })
    .expect("start squid");
    let port = |p: Option<u16>| p.expect("squid port");
    let (plain, plain_auth) = (port(squid.plain_port()), port(squid.plain_auth_port()));
    let (tls, tls_auth) = (port(squid.tls_port()), port(squid.tls_auth_port()));
    eprintln!("squid ready in {:?}", squid.startup_time());

    let c = &collectors;
    let tls_to = |cert: Cert| Yaml::collector(c.tls(cert).port()).tls_collector(&env);
    let trusted = || tls_to(Cert::Trusted);
    let plain_echo = || Yaml::collector(c.plain.port()).plain_collector();
    use Status::*;

    let mut rows = vec![
        // The documentation's three examples.
        ok(
            "doc example 1: plain squid, TLS collector",
            trusted().proxy(plain),
        ),
        ok(
            "doc example 2: squid https_port trusted by http_proxy.ca_certificate",
            trusted().tls_proxy(tls, &env),
        ),
        ok(
            "doc example 3: squid https_port with Basic auth",
            trusted().tls_proxy(tls_auth, &env).auth(USER, PASSWORD),
        ),
        // Every other route.
        ok(
            "plain squid with Basic auth, TLS collector",
            trusted().proxy(plain_auth).auth(USER, PASSWORD),
        ),
        ok(
            "plain collector (ssl: false) through plain squid",
            plain_echo().proxy(plain),
        ),
        ok(
            "plain collector through plain squid with Basic auth",
            plain_echo().proxy(plain_auth).auth(USER, PASSWORD),
        ),
        ok(
            "squid https_port, proxy verification off",
            trusted()
                .tls_proxy(tls, &env)
                .set("http_proxy.ca_certificate", qp(&env.untrusted_ca()))
                .set("http_proxy.ssl_verify_certificate", "false"),
        ),
        ok(
            "untrusted collector with collector verification off, through squid https_port",
            tls_to(Cert::UntrustedIssuer)
                .set("ssl_verify_certificate", "false")
                .tls_proxy(tls_auth, &env)
                .auth(USER, PASSWORD),
        ),
        // Authentication.
        fails(
            "407: auth port without credentials",
            trusted().proxy(plain_auth),
            DTUN_ERR_PROXY_AUTH,
            &["407", "Basic"],
        ),
        fails(
            "407: auth port with a wrong password",
            trusted().proxy(plain_auth).auth(USER, "not-the-password"),
            DTUN_ERR_PROXY_AUTH,
            &["407", "Basic"],
        ),
        fails(
            "407: auth port with an unknown user",
            trusted().proxy(plain_auth).auth("nobody-here", PASSWORD),
            DTUN_ERR_PROXY_AUTH,
            &["407"],
        ),
        fails(
            "407: TLS auth port without credentials",
            trusted().tls_proxy(tls_auth, &env),
            DTUN_ERR_PROXY_AUTH,
            &["407", "Basic"],
        ),
        // Squid's ACLs.
        fails(
            "403: CONNECT to a denied port",
            Yaml::collector(denied.port())
                .tls_collector(&env)
                .proxy(plain),
            DTUN_ERR_PROXY_REFUSED,
            &["403"],
        ),
        fails(
            "403: CONNECT to a denied port, authenticated",
            Yaml::collector(denied.port())
                .tls_collector(&env)
                .tls_proxy(tls_auth, &env)
                .auth(USER, PASSWORD),
            DTUN_ERR_PROXY_REFUSED,
            &["403"],
        ),
        fails(
            "403: a collector outside squid's ACL (name left to squid)",
            trusted()
                .set("collector", "no-such-host.invalid")
                .proxy(plain),
            DTUN_ERR_PROXY_REFUSED,
            &["403"],
        ),
        fails(
            "503: nothing listens at the collector's port",
            Yaml::collector(closed).tls_collector(&env).proxy(plain),
            DTUN_ERR_PROXY_REFUSED,
            &["503"],
        ),
        // TLS to the proxy.
        fails(
            "squid's certificate from an untrusted CA",
            trusted()
                .tls_proxy(tls, &env)
                .set("http_proxy.ca_certificate", qp(&env.untrusted_ca())),
            DTUN_ERR_PROXY_CERT,
            &["untrusted issuer"],
        ),
        fails(
            "squid's certificate checked against the system store",
            trusted().proxy(tls).set("http_proxy.ssl", "true"),
            DTUN_ERR_PROXY_CERT,
            &["untrusted issuer"],
        ),
        fails(
            "squid's certificate for localhost, reached as 127.0.0.1",
            trusted()
                .tls_proxy(tls, &env)
                .set("http_proxy.proxy_host", "127.0.0.1"),
            DTUN_ERR_PROXY_CERT,
            &["wrong name"],
        ),
        fails(
            "TLS spoken to squid's plain port",
            trusted().tls_proxy(plain, &env),
            DTUN_ERR_PROXY_TLS,
            &[],
        ),
        fails(
            "plain HTTP spoken to squid's TLS port",
            trusted().proxy(tls),
            DTUN_ERR_PROXY_PROTOCOL,
            &[],
        ),
    ];
    // Each collector certificate failure, through plain squid and through TLS squid with
    // Basic auth (TLS in TLS).
    for (cert, words) in Cert::FAILURES {
        rows.push(fails(
            &format!("collector certificate {cert:?} through plain squid"),
            tls_to(cert).proxy(plain),
            DTUN_ERR_COLLECTOR_CERT,
            &[words],
        ));
        rows.push(fails(
            &format!("collector certificate {cert:?} through squid https_port with auth"),
            tls_to(cert).tls_proxy(tls_auth, &env).auth(USER, PASSWORD),
            DTUN_ERR_COLLECTOR_CERT,
            &[words],
        ));
    }
    run_matrix("squid", &rows, || squid.log_tail());
}

#[test]
fn tinyproxy_matrix() {
    if !require_or_skip("tinyproxy_matrix", &[RealProxy::Tinyproxy]) {
        return;
    }
    // tinyproxy's BasicAuth takes only [-A-Za-z0-9._].
    const TINY_PASSWORD: &str = "s3cret-pass.word_1";
    let env = Env::new("tinyproxy");
    let collectors = Collectors::start(&env);
    let closed = closed_port();
    let open_proxy = Tinyproxy::start(TinyproxyOptions::new(env.dir().join("tinyproxy")))
        .expect("start tinyproxy");
    let auth_proxy = Tinyproxy::start(TinyproxyOptions {
        dir: env.dir().join("tinyproxy-auth"),
        basic_auth: Some((USER.into(), TINY_PASSWORD.into())),
        allowed_ports: Vec::new(),
    })
    .expect("start tinyproxy with BasicAuth");
    let (plain, authed) = (open_proxy.port(), auth_proxy.port());

    let c = &collectors;
    let tls_to = |cert: Cert| Yaml::collector(c.tls(cert).port()).tls_collector(&env);
    let trusted = || tls_to(Cert::Trusted);
    use Status::*;

    let mut rows = vec![
        ok(
            "TLS collector through tinyproxy (HTTP/1.0 200)",
            trusted().proxy(plain),
        ),
        ok(
            "plain collector (ssl: false) through tinyproxy",
            Yaml::collector(c.plain.port())
                .plain_collector()
                .proxy(plain),
        ),
        ok(
            "TLS collector through tinyproxy with BasicAuth",
            trusted().proxy(authed).auth(USER, TINY_PASSWORD),
        ),
        ok(
            "untrusted collector with verification off through tinyproxy",
            tls_to(Cert::UntrustedIssuer)
                .set("ssl_verify_certificate", "false")
                .proxy(plain),
        ),
        fails(
            "407: tinyproxy BasicAuth without credentials",
            trusted().proxy(authed),
            DTUN_ERR_PROXY_AUTH,
            &["407", "Basic"],
        ),
        // tinyproxy 1.11 answers wrong credentials with 401, not 407.
        fails(
            "401: tinyproxy BasicAuth with a wrong password",
            trusted().proxy(authed).auth(USER, PASSWORD),
            DTUN_ERR_PROXY_AUTH,
            &["401"],
        ),
        fails(
            "nothing listens at the collector's port",
            Yaml::collector(closed).tls_collector(&env).proxy(plain),
            DTUN_ERR_PROXY_REFUSED,
            &[],
        ),
        // tinyproxy waits for a request line that a ClientHello never ends (unlike squid,
        // which answers 400): the open deadline is what ends it.
        fails(
            "TLS spoken to tinyproxy: silence until the open deadline",
            trusted().tls_proxy(plain, &env),
            DTUN_ERR_TIMEOUT,
            &["tls to proxy"],
        )
        .wait(Duration::from_millis(500)),
    ];
    for (cert, words) in Cert::FAILURES {
        rows.push(fails(
            &format!("collector certificate {cert:?} through tinyproxy"),
            tls_to(cert).proxy(plain),
            DTUN_ERR_COLLECTOR_CERT,
            &[words],
        ));
    }
    run_matrix("tinyproxy", &rows, || {
        format!("{}\n{}", open_proxy.log_tail(), auth_proxy.log_tail())
    });
}

/// Issue 11 §3: squid inspecting TLS (`ssl_bump`, a bump CA made by the test) re-signs the
/// collector's certificate. Through it the collector's certificate is rejected, and the
/// message and report name the bump CA as its issuer, the hint says the proxy may be
/// inspecting TLS; trusting the bump CA in `ca_certificate` opens the tunnel.
#[test]
fn squid_ssl_bump() {
    use dtun_testenv::pki::{Pki, BUMP_CA_NAME};
    use dtun_testenv::squid::SslBump;
    if !require_or_skip("squid_ssl_bump", &[RealProxy::Squid]) {
        return;
    }
    if let Some(missing) = dtun_testenv::squid::bump_missing() {
        assert!(
            !dtun_testenv::require::real_proxies_required(),
            "squid_ssl_bump cannot run: missing {missing}"
        );
        eprintln!("SKIPPED: squid_ssl_bump: missing {missing}");
        return;
    }
    // Declared first, dropped last: squid stops before its folder goes.
    let env = Env::new("squid-bump");
    let collector = EchoServer::start(Some(env.server_tls(Cert::Trusted))).expect("collector");
    let bump_ca = Pki::new(&env.dir().join("bump-pki"))
        .and_then(|pki| pki.make_ca("bump-ca", BUMP_CA_NAME))
        .expect("bump CA");
    let squid = Squid::start_with_bump(
        SquidOptions {
            allowed_ports: vec![collector.port()],
            ..SquidOptions::new(env.dir().join("squid"))
        },
        SslBump {
            ca: (bump_ca.cert_path.clone(), bump_ca.key_path.clone()),
            upstream_ca: env.ca(),
        },
    )
    .expect("start squid with ssl_bump");
    let bump_port = squid.bump_port().expect("bump port");
    let log = || format!("{}\n{}", squid.log_tail(), squid.access_log());
    let issuer = "CN=dtun bump CA, O=dtun tests";
    let subject = "CN=localhost, O=dtun tests";

    // The collector's own CA no longer verifies what comes through the tunnel.
    let yaml = Yaml::collector(collector.port())
        .tls_collector(&env)
        .proxy(bump_port);
    let cfg = yaml.build();
    let (conn, report) = Connection::open_with_report(&cfg, OPEN_WAIT);
    let e = match conn {
        Ok(conn) => panic!("opened through ssl_bump ({})\n{}", conn.route(), log()),
        Err(e) => e,
    };
    assert_eq!(
        e.status(),
        Status::DTUN_ERR_COLLECTOR_CERT,
        "{e:?}\n{}",
        log()
    );
    assert_eq!(
        e.kind(),
        &dragent_tunnel::ErrorKind::Certificate(dragent_tunnel::error::CertProblem::Untrusted)
    );
    for words in [
        "untrusted issuer",
        &format!("subject \"{subject}\""),
        &format!("issuer \"{issuer}\""),
    ] {
        assert!(
            e.message().contains(words),
            "message lacks {words:?}: {e:?}"
        );
    }
    assert_eq!(report.get("failed_stage"), Some("tls to collector"));
    assert_eq!(report.get("proxy.status_code"), Some("200"));
    assert_eq!(report.get("collector.cert.issuer"), Some(issuer));
    assert_eq!(report.get("collector.cert.subject"), Some(subject));
    assert!(
        report
            .get("collector.cert.names")
            .is_some_and(|names| names.contains("localhost")),
        "{}",
        report.text()
    );
    let hint = report.get("hint").unwrap();
    for words in [
        issuer,
        &format!("the proxy localhost:{bump_port} answered 200"),
        "may be inspecting TLS",
        "set ca_certificate to the PEM file of the proxy's CA",
        "exempted",
    ] {
        assert!(hint.contains(words), "hint lacks {words:?}: {hint}");
    }

    // Trusting the bump CA: the tunnel opens, and the report names who signed.
    let cfg = yaml.set("ca_certificate", qp(&bump_ca.cert_path)).build();
    let (conn, report) = Connection::open_with_report(&cfg, OPEN_WAIT);
    let conn = conn.unwrap_or_else(|e| panic!("{e:?}\n{}", log()));
    assert_eq!(report.get("collector.cert.issuer"), Some(issuer));
    // Squid gives up parsing HTTP inside the bumped TLS, and tunnels, once it holds a whole
    // line that is not a request line: the first bytes carry a line feed (as a framed
    // binary message soon does).
    echo(
        &conn,
        b"\x00\x00\x00\x22\ninspected, re-encrypted and echoed",
    );
    conn.close();

    // The plain port does not inspect: the collector's own certificate, verified.
    let cfg = Yaml::collector(collector.port())
        .tls_collector(&env)
        .proxy(squid.plain_port().expect("plain port"))
        .build();
    let (conn, report) = Connection::open_with_report(&cfg, OPEN_WAIT);
    let conn = conn.unwrap_or_else(|e| panic!("{e:?}\n{}", log()));
    assert_eq!(
        report.get("collector.cert.issuer"),
        Some("CN=dtun test CA, O=dtun tests")
    );
    echo(&conn, b"not inspected");
    conn.close();
}

/// A plain echo collector on `[::1]` (the in-repo collectors listen on 127.0.0.1 only):
/// echoes every connection until it closes; stops with the test process.
fn ipv6_echo() -> u16 {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind(("::1", 0)).expect("bind [::1]");
    let port = listener.local_addr().expect("local addr").port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = stream.read(&mut buf) {
                    if n == 0 || stream.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    port
}

/// IPv6 everywhere (issue 13), through real squid: the proxy on `::1` to an IPv4 collector,
/// an IPv6-literal collector through an IPv4 proxy, and IPv6 on both hops; each CONNECT's
/// target as squid logged it.
#[test]
fn squid_ipv6_proxy_and_collector() {
    if !require_or_skip("squid_ipv6_proxy_and_collector", &[RealProxy::Squid]) {
        return;
    }
    let env = Env::new("squid-ipv6");
    let v4 = EchoServer::start(None).expect("start plain echo");
    let v6 = ipv6_echo();
    let squid = Squid::start_with_ipv6(SquidOptions {
        allowed_ports: vec![v4.port(), v6],
        ..SquidOptions::new(env.dir().join("squid"))
    })
    .expect("start squid");
    let plain = squid.plain_port().expect("plain port");
    let plain6 = squid.plain6_port().expect("IPv6 plain port");
    let cases = [
        (
            "proxy on ::1, IPv4 collector",
            "127.0.0.1",
            v4.port(),
            "::1",
            plain6,
        ),
        (
            "IPv6 collector through an IPv4 proxy",
            "::1",
            v6,
            "127.0.0.1",
            plain,
        ),
        ("IPv6 proxy and collector", "::1", v6, "::1", plain6),
        (
            "proxy as [::1], collector as [::1]",
            "'[::1]'",
            v6,
            "'[::1]'",
            plain6,
        ),
    ];
    for (what, collector, collector_port, proxy, proxy_port) in cases {
        let cfg = Yaml::new()
            .set("collector", collector)
            .set("collector_port", collector_port)
            .plain_collector()
            .set("http_proxy.proxy_host", proxy)
            .set("http_proxy.proxy_port", proxy_port)
            .build();
        let conn = Connection::open(&cfg, Wait::For(Duration::from_secs(20)))
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        echo(&conn, what.as_bytes());
        assert!(
            conn.route().starts_with("via proxy "),
            "{what}: {}",
            conn.route()
        );
        conn.close();
    }
    let log = std::fs::read_to_string(squid.dir().join("access.log")).unwrap_or_default();
    assert!(
        log.contains(&format!("CONNECT [::1]:{v6}")),
        "squid logged the IPv6 target: {log}"
    );
}
