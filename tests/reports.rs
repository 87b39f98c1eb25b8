//! Open reports and hints (issue 7) through the Rust API, against the in-repo proxy and
//! collectors: what a successful open reports for each hop, and for each failure the stage,
//! the stage times and the hint that tells the user which dragent.yaml key to change.

mod support;

use dragent_tunnel::{Connection, Status, Wait};
use dtun_testenv::collector::EchoServer;
use dtun_testenv::proxy::{Fault, ProxyOptions, TestProxy};
use std::time::{Duration, Instant};
use support::*;

fn proxy(opts: ProxyOptions) -> TestProxy {
    TestProxy::start(opts).expect("start proxy")
}

/// Opens with a report, and measures the open's wall time, in ms, around the call (the
/// config is built before).
fn timed_report_of(
    yaml: &Yaml,
    wait: Wait,
) -> (
    Result<Connection, dragent_tunnel::Error>,
    dragent_tunnel::report::Report,
    f64,
) {
    let cfg = yaml.build();
    let started = Instant::now();
    let (conn, report) = Connection::open_with_report(&cfg, wait);
    let wall_ms = started.elapsed().as_secs_f64() * 1000.0;
    (conn, report, wall_ms)
}

/// The stage times of a report are those of stages that ran: exactly the `ran` keys are
/// present, each took some time, and together they fit in the reported total, which fits in
/// the wall time measured around the open. Values are printed to 0.001 ms: that rounding is
/// the only slack.
fn assert_stage_times_plausible(
    report: &dragent_tunnel::report::Report,
    ran: &[&str],
    wall_ms: f64,
) {
    const ALL: [&str; 5] = [
        "time.resolve_ms",
        "time.tcp_ms",
        "time.proxy_tls_ms",
        "time.proxy_connect_ms",
        "time.collector_tls_ms",
    ];
    let ms = |key: &str| -> f64 {
        let text = report
            .get(key)
            .unwrap_or_else(|| panic!("{key} missing: {}", report.text()));
        text.parse()
            .unwrap_or_else(|e| panic!("{key} = {text:?}: {e}"))
    };
    for key in ALL {
        assert_eq!(
            report.get(key).is_some(),
            ran.contains(&key),
            "{key}: {}",
            report.text()
        );
    }
    for key in ran {
        assert!(
            ms(key) > 0.0,
            "{key}: the stage ran, yet took no time: {}",
            report.text()
        );
    }
    let sum: f64 = ran.iter().map(|key| ms(key)).sum();
    let total = ms("time.total_ms");
    let rounding = 0.0005 * (ran.len() + 1) as f64;
    assert!(
        sum <= total + rounding,
        "the stages took {sum} ms, more than the total of {total} ms: {}",
        report.text()
    );
    assert!(
        total <= wall_ms + 0.0005,
        "the reported total {total} ms is more than the {wall_ms} ms measured around the open"
    );
}

#[test]
fn tls_in_tls_open_reports_every_hop() {
    let env = Env::new("report-ok");
    let collector = EchoServer::start(Some(env.server_tls(Cert::Trusted))).unwrap();
    let p = proxy(ProxyOptions {
        tls: Some(env.server_tls(Cert::Trusted)),
        auth: Some((USER.into(), PASSWORD.into())),
        ..ProxyOptions::default()
    });
    let yaml = Yaml::collector(collector.port())
        .tls_collector(&env)
        .tls_proxy(p.port(), &env)
        .auth(USER, PASSWORD);
    let (conn, report, wall_ms) = timed_report_of(&yaml, OPEN_WAIT);
    let conn = conn.expect("open");
    assert_eq!(report.get("outcome"), Some("DTUN_OK"));
    assert_eq!(report.get("failed_stage"), Some(""));
    assert_eq!(report.get("hint"), Some(""));
    assert_eq!(
        report.get("proxy"),
        Some(format!("localhost:{}", p.port()).as_str())
    );
    assert_eq!(report.get("proxy.tls"), Some("yes"));
    assert_eq!(report.get("proxy.auth"), Some("basic"));
    assert_eq!(report.get("proxy.status_code"), Some("200"));
    for side in ["proxy", "collector"] {
        let get = |k: &str| {
            report
                .get(&format!("{side}.{k}"))
                .unwrap_or_else(|| panic!("{side}.{k} missing"))
        };
        assert!(
            get("tls_version").starts_with("TLSv1."),
            "{}",
            get("tls_version")
        );
        assert!(
            get("cipher_suite").starts_with("TLS"),
            "{}",
            get("cipher_suite")
        );
        assert!(
            get("cert.names").contains("localhost"),
            "{}",
            get("cert.names")
        );
        assert!(
            get("cert.subject").contains("CN="),
            "{}",
            get("cert.subject")
        );
        assert!(
            get("cert.not_after").ends_with("UTC"),
            "{}",
            get("cert.not_after")
        );
    }
    let peer = report.get("address.peer").unwrap();
    assert!(peer.ends_with(&format!(":{}", p.port())), "{peer}");
    assert!(report.get("address.local").is_some());
    // Every stage ran.
    assert_stage_times_plausible(
        &report,
        &[
            "time.resolve_ms",
            "time.tcp_ms",
            "time.proxy_tls_ms",
            "time.proxy_connect_ms",
            "time.collector_tls_ms",
        ],
        wall_ms,
    );
    // The connection keeps the same report.
    assert_eq!(conn.report().get("route"), report.get("route"));
    let text = report.text();
    for stage in [
        "resolve",
        "tcp connect",
        "tls to proxy",
        "proxy connect",
        "tls to collector",
    ] {
        assert!(text.contains(stage), "{text}");
    }
    assert!(
        !text.contains(PASSWORD) && !text.contains(&basic_token(USER, PASSWORD)),
        "{text}"
    );
    echo(&conn, b"still works");
}

#[test]
fn a_reconnect_resumes_tls_on_both_hops() {
    let env = Env::new("report-resume");
    let collector = EchoServer::start(Some(env.server_tls(Cert::Trusted))).unwrap();
    let p = proxy(ProxyOptions {
        tls: Some(env.server_tls(Cert::Trusted)),
        ..ProxyOptions::default()
    });
    let cfg = Yaml::collector(collector.port())
        .tls_collector(&env)
        .tls_proxy(p.port(), &env)
        .build();
    let (first, report) = Connection::open_with_report(&cfg, OPEN_WAIT);
    let first = first.expect("first open");
    // TLS 1.3 tickets arrive after the handshake: read once so they are processed.
    echo(&first, b"x");
    drop(first);
    assert_eq!(report.get("proxy.tls_resumed"), Some("no"));
    let (second, report) = Connection::open_with_report(&cfg, OPEN_WAIT);
    let second = second.expect("second open");
    assert_eq!(
        report.get("proxy.tls_resumed"),
        Some("yes"),
        "{}",
        report.text()
    );
    assert_eq!(
        report.get("collector.tls_resumed"),
        Some("yes"),
        "{}",
        report.text()
    );
    echo(&second, b"y");
}

/// Opens, expects `status`, and returns the report's failed stage and hint.
fn failure(
    yaml: &Yaml,
    status: Status,
    wait: Wait,
) -> (String, String, dragent_tunnel::report::Report) {
    let (stage, hint, report, _) = timed_failure(yaml, status, wait);
    (stage, hint, report)
}

/// [`failure`], and the wall time of the open in ms.
fn timed_failure(
    yaml: &Yaml,
    status: Status,
    wait: Wait,
) -> (String, String, dragent_tunnel::report::Report, f64) {
    let (conn, report, wall_ms) = timed_report_of(yaml, wait);
    let e = conn.expect_err("open must fail");
    assert_eq!(e.status(), status, "{e}");
    assert_eq!(report.get("outcome"), Some(status.name()));
    assert_eq!(report.get("message"), Some(e.message()));
    let stage = report.get("failed_stage").unwrap().to_owned();
    let hint = report.get("hint").unwrap().to_owned();
    assert!(!hint.is_empty(), "no hint for {status:?}");
    assert!(report.text().contains("FAILED"), "{}", report.text());
    (stage, hint, report, wall_ms)
}

#[test]
fn hint_for_407_names_the_schemes_and_the_keys() {
    let env = Env::new("hint-407");
    let collector = EchoServer::start(Some(env.server_tls(Cert::Trusted))).unwrap();
    let p = proxy(ProxyOptions {
        fault: Fault::Auth407WithBody,
        ..ProxyOptions::default()
    });
    let yaml = Yaml::collector(collector.port())
        .tls_collector(&env)
        .proxy(p.port());
    let (stage, hint, report) = failure(&yaml, Status::DTUN_ERR_PROXY_AUTH, OPEN_WAIT);
    assert_eq!(stage, "proxy connect");
    assert!(hint.contains("Basic") && hint.contains("NTLM"), "{hint}");
    assert!(hint.contains("http_proxy.proxy_user"), "{hint}");
    assert_eq!(report.get("proxy.status_code"), Some("407"));
    assert_eq!(report.get("proxy.auth_schemes"), Some("Basic, NTLM"));
    let with_user = yaml.auth(USER, PASSWORD);
    let (_, hint, report) = failure(&with_user, Status::DTUN_ERR_PROXY_AUTH, OPEN_WAIT);
    assert!(hint.contains("rejected the credentials"), "{hint}");
    assert!(!report.text().contains(PASSWORD));
}

#[test]
fn hint_for_403_speaks_of_the_acl_and_port_443() {
    let env = Env::new("hint-403");
    let p = proxy(ProxyOptions {
        fault: Fault::Forbidden403,
        ..ProxyOptions::default()
    });
    let yaml = Yaml::collector(6443).tls_collector(&env).proxy(p.port());
    let (stage, hint, _) = failure(&yaml, Status::DTUN_ERR_PROXY_REFUSED, OPEN_WAIT);
    assert_eq!(stage, "proxy connect");
    assert!(
        hint.contains("ACL") && hint.contains("443") && hint.contains("6443"),
        "{hint}"
    );
}

#[test]
fn hints_for_certificate_failures_name_side_reason_and_key() {
    let env = Env::new("hint-cert");
    for (kind, needle) in [
        (Cert::UntrustedIssuer, "does not trust"),
        (Cert::Expired, "2020-01-01"),
        (Cert::WrongName, "other.example"),
    ] {
        // Collector side.
        let collector = EchoServer::start(Some(env.server_tls(kind))).unwrap();
        let yaml = Yaml::collector(collector.port()).tls_collector(&env);
        let (stage, hint, _) = failure(&yaml, Status::DTUN_ERR_COLLECTOR_CERT, OPEN_WAIT);
        assert_eq!(stage, "tls to collector");
        assert!(
            hint.contains("collector") && hint.contains(needle),
            "{kind:?}: {hint}"
        );
        if kind == Cert::UntrustedIssuer {
            assert!(
                hint.contains("ca_certificate") && !hint.contains("http_proxy.ca_certificate"),
                "{hint}"
            );
        }
        if kind == Cert::WrongName {
            assert!(hint.contains("localhost"), "{hint}");
        }
        // Proxy side.
        let p = proxy(ProxyOptions {
            tls: Some(env.server_tls(kind)),
            ..ProxyOptions::default()
        });
        let yaml = Yaml::collector(6443)
            .tls_collector(&env)
            .tls_proxy(p.port(), &env);
        let (stage, hint, _) = failure(&yaml, Status::DTUN_ERR_PROXY_CERT, OPEN_WAIT);
        assert_eq!(stage, "tls to proxy");
        assert!(
            hint.contains("proxy at") && hint.contains(needle),
            "{kind:?}: {hint}"
        );
        if kind == Cert::UntrustedIssuer {
            assert!(hint.contains("http_proxy.ca_certificate"), "{hint}");
        }
    }
}

#[test]
fn hints_for_tls_and_plain_mismatch_on_the_proxy_port() {
    let env = Env::new("hint-mismatch");
    let plain = proxy(ProxyOptions::default());
    let yaml = Yaml::collector(6443)
        .tls_collector(&env)
        .tls_proxy(plain.port(), &env);
    let (stage, hint, _) = failure(&yaml, Status::DTUN_ERR_PROXY_TLS, OPEN_WAIT);
    assert_eq!(stage, "tls to proxy");
    assert!(
        hint.contains(&format!(
            "the proxy at localhost:{} does not speak TLS: set http_proxy.ssl: false",
            plain.port()
        )),
        "{hint}"
    );

    let tls = proxy(ProxyOptions {
        tls: Some(env.server_tls(Cert::Trusted)),
        ..ProxyOptions::default()
    });
    let yaml = Yaml::collector(6443).tls_collector(&env).proxy(tls.port());
    let (stage, hint, _) = failure(&yaml, Status::DTUN_ERR_PROXY_PROTOCOL, OPEN_WAIT);
    assert_eq!(stage, "proxy connect");
    assert!(
        hint.contains("speaks TLS") && hint.contains("http_proxy.ssl: true"),
        "{hint}"
    );
}

#[test]
fn hint_for_a_timeout_names_the_waiting_stage() {
    let env = Env::new("hint-timeout");
    let p = proxy(ProxyOptions {
        fault: Fault::NeverAnswer,
        ..ProxyOptions::default()
    });
    let yaml = Yaml::collector(6443).tls_collector(&env).proxy(p.port());
    let (stage, hint, report, wall_ms) = timed_failure(
        &yaml,
        Status::DTUN_ERR_TIMEOUT,
        Wait::For(Duration::from_millis(300)),
    );
    assert_eq!(stage, "proxy connect");
    assert!(hint.contains("did not answer CONNECT"), "{hint}");
    // The stages before it finished and were timed; the waiting one is timed up to the
    // deadline; the collector's TLS never began.
    assert_stage_times_plausible(
        &report,
        &["time.resolve_ms", "time.tcp_ms", "time.proxy_connect_ms"],
        wall_ms,
    );
}

#[test]
fn hints_for_resolve_and_connect() {
    let env = Env::new("hint-net");
    let yaml = Yaml::new()
        .set("collector", "no-such-host.invalid")
        .tls_collector(&env);
    let (stage, hint, _) = failure(&yaml, Status::DTUN_ERR_RESOLVE, OPEN_WAIT);
    assert_eq!(stage, "resolve");
    assert!(hint.contains("collector") && hint.contains("DNS"), "{hint}");
    let yaml = Yaml::collector(closed_port()).tls_collector(&env);
    let (stage, hint, _) = failure(&yaml, Status::DTUN_ERR_CONNECT, OPEN_WAIT);
    assert_eq!(stage, "tcp connect");
    assert!(hint.contains("collector_port"), "{hint}");
}

/// A scripted proxy answering `reply` to CONNECT, and a config through it to a plain
/// collector (`ssl: false`), so that the bytes behind the reply are the tunnel's.
fn scripted(reply: Vec<u8>) -> (ScriptedProxy, Yaml) {
    let p = ScriptedProxy::start(move |_| reply);
    let yaml = Yaml::collector(6443).plain_collector().proxy(p.port());
    (p, yaml)
}

#[test]
fn interim_replies_before_the_200_are_skipped() {
    let (p, yaml) = scripted(
        b"HTTP/1.1 100 Continue\r\n\r\n\
          HTTP/1.1 102 Processing\r\nProxy-Authenticate: NTLM\r\n\r\n\
          HTTP/1.1 103 Early Hints\r\nLink: </x>; rel=preload\r\n\r\n\
          HTTP/1.1 200 Connection established\r\n\r\nfirst tunnel bytes"
            .to_vec(),
    );
    let (conn, report, _) = timed_report_of(&yaml, OPEN_WAIT);
    let conn = conn.expect("the final 200 opens the tunnel");
    assert_eq!(
        report.get("proxy.status_code"),
        Some("200"),
        "{}",
        report.text()
    );
    assert_eq!(
        report.get("proxy.status_reason"),
        Some("Connection established")
    );
    assert_eq!(recv_exact(&conn, 18), b"first tunnel bytes");
    conn.close();
    assert!(p.finish().is_some_and(|head| head.starts_with("CONNECT ")));
}

#[test]
fn interim_replies_before_a_407_count_the_407() {
    let (_p, yaml) = scripted(
        b"HTTP/1.1 100 Continue\r\nProxy-Authenticate: NTLM\r\n\r\n\
          HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"x\"\r\n\r\n"
            .to_vec(),
    );
    let (stage, _, report) = failure(&yaml, Status::DTUN_ERR_PROXY_AUTH, OPEN_WAIT);
    assert_eq!(stage, "proxy connect");
    assert_eq!(report.get("proxy.status_code"), Some("407"));
    assert_eq!(report.get("proxy.auth_schemes"), Some("Basic"));
}

#[test]
fn endless_interim_replies_stop_at_the_64_kib_cap() {
    // More 100 Continue than fit in 64 KiB, and never a final reply.
    let (_p, yaml) = scripted(b"HTTP/1.1 100 Continue\r\n\r\n".repeat(3000));
    let (stage, hint, report) = failure(&yaml, Status::DTUN_ERR_PROXY_PROTOCOL, OPEN_WAIT);
    assert_eq!(stage, "proxy connect");
    let message = report.get("message").unwrap();
    assert!(
        message.contains("64 KiB") && message.contains("interim 1xx replies"),
        "{message}"
    );
    assert!(hint.contains("http_proxy.proxy_port"), "{hint}");
    assert!(report.get("proxy.status_code").is_none());
}

#[test]
fn interim_replies_then_close_is_cut_short() {
    let (_p, yaml) = scripted(b"HTTP/1.1 100 Continue\r\n\r\n".to_vec());
    let (_, _, report) = failure(&yaml, Status::DTUN_ERR_PROXY_PROTOCOL, OPEN_WAIT);
    let message = report.get("message").unwrap();
    assert!(
        message.contains("connection closed") && message.contains("after 1 interim 1xx reply"),
        "{message}"
    );
}

#[test]
fn switching_protocols_is_a_protocol_error() {
    let (_p, yaml) = scripted(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n\
          HTTP/1.1 200 Connection established\r\n\r\n"
            .to_vec(),
    );
    let (stage, hint, report) = failure(&yaml, Status::DTUN_ERR_PROXY_PROTOCOL, OPEN_WAIT);
    assert_eq!(stage, "proxy connect");
    assert_eq!(report.get("proxy.status_code"), Some("101"));
    let message = report.get("message").unwrap();
    assert!(
        message.contains("HTTP/1.1 101 Switching Protocols"),
        "{message}"
    );
    assert!(
        hint.contains("101 Switching Protocols") && hint.contains("CONNECT"),
        "{hint}"
    );
}

#[test]
fn hint_for_500_says_the_proxy_could_not_reach_the_collector_with_its_reason() {
    // Squid's answer when it cannot resolve the collector, and Apache Traffic Server's.
    for (reply, answered) in [
        (
            &b"HTTP/1.1 500 Internal Server Error\r\nServer: squid/5.7\r\n\
               X-Squid-Error: ERR_DNS_FAIL 0\r\nContent-Length: 0\r\n\r\n"[..],
            "500 Internal Server Error",
        ),
        (
            b"HTTP/1.1 500 Cannot find server.\r\nContent-Length: 0\r\n\r\n",
            "500 Cannot find server.",
        ),
        (b"HTTP/1.1 500\r\n\r\n", "500"),
    ] {
        let (_p, yaml) = scripted(reply.to_vec());
        let (stage, hint, report) = failure(&yaml, Status::DTUN_ERR_PROXY_REFUSED, OPEN_WAIT);
        assert_eq!(stage, "proxy connect");
        assert_eq!(report.get("proxy.status_code"), Some("500"));
        assert!(
            hint.starts_with("the proxy could not reach the collector localhost:6443")
                && hint.contains(&format!("(it answered {answered})"))
                && hint.contains("collector_port")
                && hint.contains("the proxy's own DNS"),
            "{hint}"
        );
    }
}

#[test]
fn a_rejected_collector_certificate_is_reported_with_its_issuer_and_subject() {
    let env = Env::new("rejected-cert");
    let collector = EchoServer::start(Some(env.server_tls(Cert::UntrustedIssuer))).unwrap();
    let issuer = "CN=dtun untrusted CA, O=dtun tests";
    let subject = "CN=localhost, O=dtun tests";

    // Directly: the certificate is named, the hint says nothing of a proxy.
    let direct = Yaml::collector(collector.port()).tls_collector(&env);
    let (stage, hint, report) = failure(&direct, Status::DTUN_ERR_COLLECTOR_CERT, OPEN_WAIT);
    assert_eq!(stage, "tls to collector");
    let message = report.get("message").unwrap();
    assert!(
        message.contains(&format!("subject \"{subject}\""))
            && message.contains(&format!("issuer \"{issuer}\"")),
        "{message}"
    );
    assert_eq!(report.get("collector.cert.issuer"), Some(issuer));
    assert_eq!(report.get("collector.cert.subject"), Some(subject));
    assert_eq!(
        report.get("collector.cert.names"),
        Some("localhost, 127.0.0.1")
    );
    assert!(report
        .get("collector.cert.not_after")
        .unwrap()
        .ends_with("UTC"));
    assert!(
        report.get("collector.tls_version").is_none(),
        "no TLS was negotiated"
    );
    assert!(!hint.contains("inspect"), "{hint}");
    let failed_line = report
        .text()
        .lines()
        .find(|l| l.contains("FAILED"))
        .unwrap()
        .to_owned();
    assert!(
        failed_line.contains(&format!("issued by {issuer}")),
        "{failed_line}"
    );

    // Through a proxy that answered 200 (as a TLS-inspecting one does): the hint says the
    // proxy may be inspecting TLS, and which key trusts its CA.
    let p = proxy(ProxyOptions::default());
    let via = direct.clone().proxy(p.port());
    let (stage, hint, report) = failure(&via, Status::DTUN_ERR_COLLECTOR_CERT, OPEN_WAIT);
    assert_eq!(stage, "tls to collector");
    assert_eq!(report.get("proxy.status_code"), Some("200"));
    assert_eq!(report.get("collector.cert.issuer"), Some(issuer));
    assert_eq!(report.get("collector.cert.subject"), Some(subject));
    for words in [
        "does not trust",
        issuer,
        &format!("the proxy localhost:{} answered 200", p.port()),
        "may be inspecting TLS",
        "set ca_certificate to the PEM file of the proxy's CA",
        "exempted",
    ] {
        assert!(hint.contains(words), "hint lacks {words:?}: {hint}");
    }
    // The proxy's keys are for the proxy's own certificate: not a word of them here.
    assert!(!hint.contains("http_proxy."), "{hint}");

    // Another rejection through the proxy: its own hint, then the inspection note.
    let expired = EchoServer::start(Some(env.server_tls(Cert::Expired))).unwrap();
    let via = Yaml::collector(expired.port())
        .tls_collector(&env)
        .proxy(p.port());
    let (_, hint, report) = failure(&via, Status::DTUN_ERR_COLLECTOR_CERT, OPEN_WAIT);
    assert!(
        hint.starts_with("the collector localhost:")
            && hint.contains("expired on 2020-01-01")
            && hint.contains("if it inspects TLS"),
        "{hint}"
    );
    assert_eq!(
        report.get("collector.cert.not_after"),
        Some("2020-01-01 00:00:00 UTC")
    );
}

#[test]
fn a_rejected_proxy_certificate_is_reported_on_the_proxy_side() {
    let env = Env::new("rejected-proxy-cert");
    let p = proxy(ProxyOptions {
        tls: Some(env.server_tls(Cert::UntrustedIssuer)),
        ..ProxyOptions::default()
    });
    let yaml = Yaml::collector(6443)
        .tls_collector(&env)
        .tls_proxy(p.port(), &env);
    let (stage, hint, report) = failure(&yaml, Status::DTUN_ERR_PROXY_CERT, OPEN_WAIT);
    assert_eq!(stage, "tls to proxy");
    assert_eq!(
        report.get("proxy.cert.issuer"),
        Some("CN=dtun untrusted CA, O=dtun tests")
    );
    assert!(report.get("collector.cert.issuer").is_none());
    assert!(!hint.contains("inspect"), "{hint}");
}

#[test]
fn a_successful_open_reports_each_certificate_issuer() {
    let env = Env::new("report-issuer");
    let collector = EchoServer::start(Some(env.server_tls(Cert::Trusted))).unwrap();
    let p = proxy(ProxyOptions {
        tls: Some(env.server_tls(Cert::Trusted)),
        ..ProxyOptions::default()
    });
    let yaml = Yaml::collector(collector.port())
        .tls_collector(&env)
        .tls_proxy(p.port(), &env);
    let (conn, report, _) = timed_report_of(&yaml, OPEN_WAIT);
    let conn = conn.expect("open");
    for side in ["proxy", "collector"] {
        assert_eq!(
            report.get(&format!("{side}.cert.issuer")),
            Some("CN=dtun test CA, O=dtun tests"),
            "{}",
            report.text()
        );
    }
    assert!(
        report.text().contains("issued by CN=dtun test CA"),
        "{}",
        report.text()
    );
    echo(&conn, b"z");
}

#[test]
fn a_certificate_that_holds_the_password_is_shown_redacted() {
    use dtun_testenv::pki::{CertKind, Pki};
    // A peer may put any text in its certificate, our password included (a TLS-inspecting
    // proxy has seen it): the names and subject are redacted like a reason phrase.
    let dir = TempDir::new("cert-secret");
    let pki = Pki::new(dir.path()).unwrap();
    let password = "hunter2secret";
    let name = format!("{password}.example");
    let issued = pki
        .issue("leaky", &[name.as_str()], CertKind::Trusted)
        .unwrap();
    let collector = EchoServer::start(Some(issued.server_config)).unwrap();
    let p = proxy(ProxyOptions {
        auth: Some((USER.into(), password.into())),
        ..ProxyOptions::default()
    });
    let yaml = Yaml::collector(collector.port())
        .set("ssl", "true")
        .set("ca_certificate", qp(&pki.ca_path()))
        .proxy(p.port())
        .auth(USER, password);
    let (conn, report, _) = timed_report_of(&yaml, OPEN_WAIT);
    let e = conn.expect_err("a certificate for another name");
    assert_eq!(e.status(), Status::DTUN_ERR_COLLECTOR_CERT, "{e:?}");
    let secrets = secrets_of(USER, password);
    assert_error_clean(&e, &secrets);
    for (key, value) in report.entries() {
        assert_no_leak(key, value, &secrets);
    }
    assert_no_leak("report text", &report.text(), &secrets);
    assert_eq!(
        report.get("collector.cert.names"),
        Some("<redacted>.example")
    );
    assert!(
        report.get("hint").unwrap().contains("<redacted>.example"),
        "{}",
        report.text()
    );
}
