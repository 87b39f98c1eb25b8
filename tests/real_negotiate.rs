//! Negotiate (Kerberos/SPNEGO) proxy auth (issue 12) end to end: a MIT KDC on loopback
//! (`dtun_testenv::kdc`) and squid with `auth_param negotiate program negotiate_kerberos_auth
//! -s HTTP/localhost@REALM -k KEYTAB`, the proxy as `localhost`, over plain and TLS to the
//! proxy with TLS to the collector inside. With a ticket in the credential cache the tunnel
//! opens (2 CONNECTs: the probe, the token) and echoes, under `proxy_auth: negotiate` and
//! `any`; with tickets from a client keytab (`proxy_keytab`, `proxy_user` the principal) too;
//! with an empty credential cache it is `DTUN_ERR_PROXY_AUTH` with the kinit hint.
//!
//! GSSAPI reads `KRB5_CONFIG` and `KRB5CCNAME` from the process environment, which is
//! process-global: the parent starts the KDC, squid and the collector, then re-runs this test
//! binary filtered to the ignored [`child_process`] with the KDC's environment; the child
//! opens the tunnels, checks them and prints `RESULT: ok`.
//!
//! Run with `cargo test --features gssapi --test real_negotiate`.
#![cfg(feature = "gssapi")]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use dragent_tunnel::{Connection, Status};
use dtun_testenv::collector::EchoServer;
use dtun_testenv::kdc::{self, Kdc, KEYTAB_USER, REALM, SERVICE_HOST};
use dtun_testenv::squid::{Squid, SquidAuth, SquidOptions};
use dtun_testenv::{require_or_skip, RealProxy};
use support::*;

const SCENARIO: &str = "DTUN_REAL_NEGOTIATE_CHILD";
const PLAIN_PORT: &str = "DTUN_REAL_NEGOTIATE_PLAIN_PORT";
const TLS_PORT: &str = "DTUN_REAL_NEGOTIATE_TLS_PORT";
const COLLECTOR_PORT: &str = "DTUN_REAL_NEGOTIATE_COLLECTOR_PORT";
const CA: &str = "DTUN_REAL_NEGOTIATE_CA";
const CLIENT_KEYTAB: &str = "DTUN_REAL_NEGOTIATE_CLIENT_KEYTAB";
const MIXED_PLAIN_PORT: &str = "DTUN_REAL_NEGOTIATE_MIXED_PLAIN_PORT";
const MIXED_TLS_PORT: &str = "DTUN_REAL_NEGOTIATE_MIXED_TLS_PORT";

/// The Digest account of the squid that offers Negotiate and Digest.
const DIGEST_USER: &str = "digest-agent";
const DIGEST_PASSWORD: &str = "Digest-pass-7";

/// Makes `path` and its folders up to the temp folder readable by squid's user.
fn open_to_squid(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    let mut dir = path.to_path_buf();
    while dir.pop() && dir != std::env::temp_dir() {
        if let Ok(meta) = std::fs::metadata(&dir) {
            let mode = meta.permissions().mode() | 0o005;
            let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode));
        }
    }
}

#[test]
fn squid_negotiate() {
    if !require_or_skip("squid_negotiate", &[RealProxy::Kdc, RealProxy::Squid]) {
        return;
    }
    let Some(helper) = kdc::negotiate_helper() else {
        assert!(
            !dtun_testenv::require::real_proxies_required(),
            "squid_negotiate: squid's negotiate_kerberos_auth is missing (Debian: squid-openssl)"
        );
        eprintln!("SKIPPED: squid_negotiate: no negotiate_kerberos_auth");
        return;
    };
    let Some(digest_helper) = kdc::digest_helper() else {
        assert!(
            !dtun_testenv::require::real_proxies_required(),
            "squid_negotiate: squid's digest_file_auth is missing (Debian: squid-openssl)"
        );
        eprintln!("SKIPPED: squid_negotiate: no digest_file_auth");
        return;
    };
    let kdc = Kdc::start().expect("start the KDC");
    // A ticket that expires in 2 s, waited out (by klist -s) once the proxies are up.
    let expired_ccache = format!("FILE:{}", kdc.dir().join("expired-ccache").display());
    kdc.kinit_with_lifetime(&expired_ccache, std::time::Duration::from_secs(2))
        .expect("kinit -l 2s");
    let env = Env::new("squid-negotiate");
    let collector = EchoServer::start(Some(env.server_tls(Cert::Trusted))).expect("collector");
    let (cert, key, _) = env.issue(Cert::TrustedLocalhostOnly);

    // squid runs its helper as its own user: the service keytab, krb5.conf and a replay
    // cache folder where that user reads (and writes) them.
    let krb = env.dir().join("krb");
    std::fs::create_dir_all(&krb).unwrap();
    let keytab = krb.join("http.keytab");
    let krb5_conf = krb.join("krb5.conf");
    std::fs::copy(kdc.service_keytab(), &keytab).unwrap();
    std::fs::copy(kdc.krb5_conf(), &krb5_conf).unwrap();
    open_to_squid(&keytab, 0o644);
    open_to_squid(&krb5_conf, 0o644);
    let rcache = krb.join("rcache");
    std::fs::create_dir_all(&rcache).unwrap();
    open_to_squid(&rcache, 0o1777);

    let program = format!(
        "{} -s HTTP/{SERVICE_HOST}@{REALM} -k {}",
        helper.display(),
        keytab.display()
    );
    let squid_env = vec![
        ("KRB5_CONFIG".into(), krb5_conf.display().to_string()),
        ("KRB5RCACHEDIR".into(), rcache.display().to_string()),
        ("KRB5_KTNAME".into(), format!("FILE:{}", keytab.display())),
    ];
    let squid = Squid::start_with_auth(
        SquidOptions {
            tls_cert: Some((cert.clone(), key.clone())),
            users: vec![(USER.into(), "unused".into())],
            allowed_ports: vec![collector.port()],
            ..SquidOptions::new(env.dir().join("squid"))
        },
        SquidAuth {
            negotiate_program: Some(program.clone()),
            env: squid_env.clone(),
            ..SquidAuth::default()
        },
    )
    .expect("start squid with negotiate");
    let plain = squid.plain_auth_port().expect("plain auth port");
    let tls = squid.tls_auth_port().expect("tls auth port");

    // A second squid whose auth ports offer Negotiate and Digest (digest_file_auth), in that
    // order. SquidAuth has one program per scheme, so the Digest lines ride after the
    // Negotiate program's (squid.conf is one directive a line).
    let passwd = krb.join("digest_passwd");
    std::fs::write(&passwd, format!("{DIGEST_USER}:{DIGEST_PASSWORD}\n")).unwrap();
    open_to_squid(&passwd, 0o644);
    let mixed_program = format!(
        "{program}\n\
         auth_param digest program {} {}\n\
         auth_param digest children 4 startup=0 idle=1\n\
         auth_param digest realm dtun-mixed",
        digest_helper.display(),
        passwd.display()
    );
    let mixed = Squid::start_with_auth(
        SquidOptions {
            tls_cert: Some((cert, key)),
            users: vec![(USER.into(), "unused".into())],
            allowed_ports: vec![collector.port()],
            ..SquidOptions::new(env.dir().join("squid-mixed"))
        },
        SquidAuth {
            negotiate_program: Some(mixed_program),
            env: squid_env,
            ..SquidAuth::default()
        },
    )
    .expect("start squid with negotiate and digest");
    let mixed_plain = mixed.plain_auth_port().expect("plain auth port");
    let mixed_tls = mixed.tls_auth_port().expect("tls auth port");
    kdc.wait_until_expired(&expired_ccache, std::time::Duration::from_secs(60))
        .expect("the short ticket expires");

    // The keytab's tickets may land in an empty default cache: that one gets its own.
    let keytab_ccache = format!("FILE:{}", kdc.dir().join("keytab-ccache").display());
    for (scenario, ccache) in [
        ("ticket", kdc.ccache()),
        ("no-ticket", kdc.empty_ccache()),
        ("expired", expired_ccache.clone()),
        ("keytab", keytab_ccache),
    ] {
        let out = Command::new(std::env::current_exe().expect("test binary"))
            .args([
                "--exact",
                "child_process",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .envs(kdc.env())
            .env("KRB5CCNAME", &ccache)
            .env(SCENARIO, scenario)
            .env(PLAIN_PORT, plain.to_string())
            .env(TLS_PORT, tls.to_string())
            .env(MIXED_PLAIN_PORT, mixed_plain.to_string())
            .env(MIXED_TLS_PORT, mixed_tls.to_string())
            .env(COLLECTOR_PORT, collector.port().to_string())
            .env(CA, env.ca())
            .env(CLIENT_KEYTAB, kdc.client_keytab())
            .stdin(Stdio::null())
            .output()
            .expect("run the child");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.lines().any(|l| l.contains("RESULT: ok")),
            "{scenario}: child failed ({}):\n{stdout}\n{}\nsquid:\n{}\nsquid (mixed):\n{}\nKDC log:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            squid.log_tail(),
            mixed.log_tail(),
            kdc.log_tail()
        );
        println!("{stdout}");
    }
}

/// The child half: does nothing unless run by [`squid_negotiate`].
#[test]
#[ignore = "run by squid_negotiate in a child process with the test KDC's environment"]
fn child_process() {
    let Ok(scenario) = std::env::var(SCENARIO) else {
        return;
    };
    let var = |name: &str| std::env::var(name).expect(name);
    let collector_port: u16 = var(COLLECTOR_PORT).parse().unwrap();
    let ca = PathBuf::from(var(CA));
    let base = || {
        Yaml::collector(collector_port)
            .set("ssl", "true")
            .set("ca_certificate", qp(&ca))
    };
    let plain = base().proxy(var(PLAIN_PORT).parse().unwrap());
    let tls = base()
        .proxy(var(TLS_PORT).parse().unwrap())
        .set("http_proxy.ssl", "true")
        .set("http_proxy.ca_certificate", qp(&ca));
    for (name, yaml) in [("plain proxy", plain), ("TLS proxy", tls)] {
        for mode in ["negotiate", "any"] {
            let what = format!("{scenario}, {name}, {mode}");
            let mut yaml = yaml.clone().set("http_proxy.proxy_auth", mode);
            if scenario == "keytab" {
                yaml = yaml
                    .set("http_proxy.proxy_user", q(format!("{KEYTAB_USER}@{REALM}")))
                    .set(
                        "http_proxy.proxy_keytab",
                        qp(&PathBuf::from(var(CLIENT_KEYTAB))),
                    );
            }
            let cfg = yaml.build();
            let logs = LogCapture::start();
            let (conn, report) = Connection::open_with_report(&cfg, OPEN_WAIT);
            let records = logs.dump();
            drop(logs);
            // SPNEGO tokens (DER, application tag 0) start `YII` in base64: never shown.
            assert!(
                !records.contains("YII"),
                "{what}: a token in the logs:\n{records}"
            );
            assert!(
                !report.text().contains("YII"),
                "{what}: a token in the report:\n{}",
                report.text()
            );
            if scenario == "no-ticket" || scenario == "expired" {
                let e = conn.expect_err("no valid ticket");
                assert_eq!(e.status(), Status::DTUN_ERR_PROXY_AUTH, "{what}: {e:?}");
                assert!(e.message().contains("kinit"), "{what}: {e}");
                if scenario == "expired" {
                    assert!(e.message().contains("expired"), "{what}: {e}");
                } else {
                    assert!(e.message().contains("KRB5CCNAME"), "{what}: {e}");
                }
                assert!(!e.message().contains("YII"), "{what}: {e}");
                assert!(
                    report.get("hint").unwrap_or("").contains("kinit"),
                    "{what}: {}",
                    report.text()
                );
                println!("{what}: {e}");
                continue;
            }
            let conn = conn.unwrap_or_else(|e| panic!("{what}: {e:?}\n{}", report.text()));
            echo(&conn, b"through squid negotiate");
            let mutual = records
                .lines()
                .find(|l| l.contains("mutual authentication"))
                .unwrap_or("no mutual authentication line");
            println!("{what}: opened: {}; {mutual}", conn.route());
            assert_eq!(report.get("proxy.auth_scheme"), Some("Negotiate"), "{what}");
            assert_eq!(report.get("proxy.auth_rounds"), Some("2"), "{what}");
            if mode == "negotiate" {
                assert_eq!(report.get("proxy.auth"), Some("negotiate"), "{what}");
            }
        }
    }
    mixed_schemes(&scenario, &base);
    in_repo(&scenario, &base);
    println!("RESULT: ok");
}

/// The squid offering Negotiate then Digest, under `proxy_auth: any` with a Digest account
/// set: with a ticket Negotiate is answered; without a valid one Digest instead, in the same
/// round (2 CONNECTs), and the report says so.
fn mixed_schemes(scenario: &str, base: &dyn Fn() -> Yaml) {
    if scenario == "keytab" {
        return;
    }
    let var = |name: &str| std::env::var(name).expect(name);
    let ca = PathBuf::from(var(CA));
    let plain = base().proxy(var(MIXED_PLAIN_PORT).parse().unwrap());
    let tls = base()
        .proxy(var(MIXED_TLS_PORT).parse().unwrap())
        .set("http_proxy.ssl", "true")
        .set("http_proxy.ca_certificate", qp(&ca));
    for (name, yaml) in [("plain proxy", plain), ("TLS proxy", tls)] {
        let what = format!("{scenario}, negotiate+digest squid, {name}, any");
        let cfg = yaml
            .set("http_proxy.proxy_auth", "any")
            .auth(DIGEST_USER, DIGEST_PASSWORD)
            .build();
        let logs = LogCapture::start();
        let (conn, report) = Connection::open_with_report(&cfg, OPEN_WAIT);
        let records = logs.dump();
        drop(logs);
        let conn = conn.unwrap_or_else(|e| panic!("{what}: {e:?}\n{}", report.text()));
        echo(&conn, b"through squid negotiate+digest");
        let want = if scenario == "ticket" {
            "Negotiate"
        } else {
            "Digest"
        };
        assert_eq!(report.get("proxy.auth_scheme"), Some(want), "{what}");
        assert_eq!(report.get("proxy.auth_rounds"), Some("2"), "{what}");
        assert_eq!(report.get("proxy.auth"), Some("any"), "{what}");
        let secrets = secrets_of(DIGEST_USER, DIGEST_PASSWORD);
        assert_no_leak("log", &records, &secrets);
        assert_no_leak("report", &report.text(), &secrets);
        assert!(!records.contains("YII"), "{what}: a token in the logs");
        println!("{what}: opened with {want}: {}", conn.route());
    }
}

/// The in-repo proxy. Without a valid ticket: offering Negotiate, Digest, NTLM and Basic,
/// `any` answers Digest (nothing of Negotiate sent). With a ticket: that proxy refuses the
/// token (it checks Digest only), and the refusal stands (no fallback once a token went);
/// and a proxy closing mid-Negotiate is a typed, bounded error that says why.
fn in_repo(scenario: &str, base: &dyn Fn() -> Yaml) {
    use dtun_testenv::digest::DigestAuth;
    use dtun_testenv::proxy::{Fault, ProxyOptions, TestProxy};
    use std::time::{Duration, Instant};
    if scenario == "keytab" {
        return;
    }
    let start = |fault: Fault, digest: bool| {
        TestProxy::start(ProxyOptions {
            digest: digest.then(|| DigestAuth::new(USER, PASSWORD)),
            fault,
            ..ProxyOptions::default()
        })
        .expect("in-repo proxy")
    };
    let authorizations = |p: &TestProxy| -> Vec<String> {
        p.requests()
            .iter()
            .filter_map(|r| r.header("Proxy-Authorization").map(str::to_owned))
            .collect()
    };
    let p = start(Fault::DigestAmongSchemes, true);
    let cfg = base()
        .proxy(p.port())
        .auth(USER, PASSWORD)
        .set("http_proxy.proxy_auth", "any")
        .build();
    let (conn, report) = Connection::open_with_report(&cfg, OPEN_WAIT);
    let sent = authorizations(&p);
    if scenario == "ticket" {
        let e = conn.expect_err("the in-repo proxy refuses Negotiate");
        assert_eq!(e.status(), Status::DTUN_ERR_PROXY_AUTH, "{e:?}");
        assert!(e.message().contains("rejected our Kerberos ticket"), "{e}");
        assert_eq!(sent.len(), 1, "{sent:?}");
        assert!(
            sent[0].starts_with("Negotiate "),
            "no fallback after a token"
        );
        assert_eq!(report.get("proxy.auth_scheme"), Some("Negotiate"));
    } else {
        let conn = conn.unwrap_or_else(|e| panic!("{scenario}: fallback: {e:?}"));
        echo(&conn, b"fallback to digest");
        assert_eq!(report.get("proxy.auth_scheme"), Some("Digest"));
        assert_eq!(report.get("proxy.auth_rounds"), Some("2"));
        assert_eq!(sent.len(), 1, "{sent:?}");
        assert!(sent[0].starts_with("Digest "), "{sent:?}");
        assert_eq!(p.connections(), 1, "kept alive");
        println!("{scenario}, in-repo Negotiate+Digest+NTLM+Basic, any: Digest");
        return;
    }

    // Mid-Negotiate: the token written, the connection closed without a reply.
    let p = start(Fault::NegotiateCloseOnToken, false);
    let cfg = base()
        .proxy(p.port())
        .set("http_proxy.proxy_auth", "negotiate")
        .build();
    let started = Instant::now();
    let e = Connection::open(&cfg, OPEN_WAIT).expect_err("closed after the token");
    assert!(started.elapsed() < Duration::from_secs(10), "bounded");
    assert_eq!(e.status(), Status::DTUN_ERR_PROXY_PROTOCOL, "{e:?}");
    assert!(e.message().contains("Negotiate credentials"), "{e}");
    assert!(e.message().contains("not sent again"), "{e}");
    assert!(!e.message().contains("YII"), "{e}");
    assert_eq!(p.connections(), 1, "the token is not sent again elsewhere");
    assert_eq!(authorizations(&p).len(), 1);
    println!("ticket, in-repo close after the token: {e}");

    // Mid-Negotiate: a continuation token on a 407 that closes its connection.
    let p = start(Fault::NegotiateContinueAndClose, false);
    let cfg = base()
        .proxy(p.port())
        .set("http_proxy.proxy_auth", "negotiate")
        .build();
    let started = Instant::now();
    let e = Connection::open(&cfg, OPEN_WAIT).expect_err("a continuation with a close");
    assert!(started.elapsed() < Duration::from_secs(10), "bounded");
    assert_eq!(e.status(), Status::DTUN_ERR_PROXY_AUTH, "{e:?}");
    assert!(e.message().contains("in the middle of Negotiate"), "{e}");
    assert!(e.message().contains("one connection"), "{e}");
    assert!(!e.message().contains("YII"), "{e}");
    assert_eq!(p.connections(), 1, "no new connection for the next token");
    assert_eq!(authorizations(&p).len(), 1);
    println!("ticket, in-repo continuation with a close: {e}");
}
