//! Digest proxy auth (issue 12) against real servers: squid-openssl with
//! `auth_param digest program digest_file_auth` (squid 5.7: MD5, qop=auth), with and without
//! `client_persistent_connections off` (the same-connection and the reconnect paths), over
//! plain and TLS to the proxy, with TLS to the collector inside; and Apache httpd as a
//! forward proxy with mod_proxy_connect and mod_auth_digest (`dtun_testenv::apache`).
//!
//! Without the servers the tests print `SKIPPED: ...` and pass, unless
//! `DTUN_REQUIRE_REAL_PROXIES=1` (`scripts/test.sh`), where they fail naming what is missing.

mod support;

use dragent_tunnel::report::Report;
use dragent_tunnel::{Connection, Status};
use dtun_testenv::collector::EchoServer;
use dtun_testenv::squid::{Squid, SquidAuth, SquidOptions};
use dtun_testenv::{require_or_skip, RealProxy};
use support::*;

/// The Digest user's password: printable, no `:` (digest_file_auth's file is
/// `user:password` lines), with characters that need no quoting in YAML.
const DIGEST_PASSWORD: &str = "d1gest-p@ss/w%rd+";

fn digest_secrets(report: &Report, e: Option<&dragent_tunnel::Error>) {
    let secrets = secrets_of(USER, DIGEST_PASSWORD);
    for (key, value) in report.entries() {
        assert_no_leak(key, value, &secrets);
    }
    assert_no_leak("report", &report.text(), &secrets);
    if let Some(e) = e {
        assert_error_clean(e, &secrets);
    }
}

#[test]
fn squid_digest() {
    if !require_or_skip("squid_digest", &[RealProxy::Squid]) {
        return;
    }
    let env = Env::new("squid-digest");
    let collector = EchoServer::start(Some(env.server_tls(Cert::Trusted))).expect("collector");
    let plain_collector = EchoServer::start(None).expect("plain collector");
    let (cert, key, _) = env.issue(Cert::TrustedLocalhostOnly);
    for no_keep_alive in [false, true] {
        let squid = Squid::start_with_auth(
            SquidOptions {
                tls_cert: Some((cert.clone(), key.clone())),
                users: vec![(USER.into(), DIGEST_PASSWORD.into())],
                allowed_ports: vec![collector.port(), plain_collector.port()],
                ..SquidOptions::new(env.dir().join(format!("squid-{no_keep_alive}")))
            },
            SquidAuth {
                digest: true,
                no_keep_alive,
                ..SquidAuth::default()
            },
        )
        .expect("start squid with digest");
        let plain_auth = squid.plain_auth_port().expect("plain auth port");
        let tls_auth = squid.tls_auth_port().expect("tls auth port");
        let tls = || Yaml::collector(collector.port()).tls_collector(&env);
        let rows = [
            ("plain proxy, TLS collector", tls().proxy(plain_auth)),
            ("TLS proxy, TLS collector", tls().tls_proxy(tls_auth, &env)),
            (
                "plain proxy, plain collector",
                Yaml::collector(plain_collector.port())
                    .plain_collector()
                    .proxy(plain_auth),
            ),
        ];
        for (name, yaml) in rows {
            for mode in ["digest", "any"] {
                let what = format!("{name}, proxy_auth: {mode}, keep-alive off: {no_keep_alive}");
                let cfg = yaml
                    .clone()
                    .auth(USER, DIGEST_PASSWORD)
                    .set("http_proxy.proxy_auth", mode)
                    .build();
                let (conn, report) = Connection::open_with_report(&cfg, OPEN_WAIT);
                let conn = conn.unwrap_or_else(|e| {
                    panic!("{what}: {e:?}\n{}\n{}", report.text(), squid.log_tail())
                });
                echo(&conn, b"through squid digest");
                assert_eq!(report.get("proxy.auth_scheme"), Some("Digest"), "{what}");
                assert_eq!(report.get("proxy.auth_rounds"), Some("2"), "{what}");
                digest_secrets(&report, None);
            }
            // A wrong password: one answer, then DTUN_ERR_PROXY_AUTH naming Digest.
            let cfg = yaml
                .clone()
                .auth(USER, "not-the-password")
                .set("http_proxy.proxy_auth", "digest")
                .build();
            let (conn, report) = Connection::open_with_report(&cfg, OPEN_WAIT);
            let e = conn.expect_err("wrong digest password");
            assert_eq!(e.status(), Status::DTUN_ERR_PROXY_AUTH, "{name}: {e:?}");
            assert!(e.message().contains("Digest credentials"), "{e}");
            assert!(report.get("hint").unwrap_or("").contains("proxy_password"));
            assert_eq!(report.get("proxy.auth_rounds"), Some("2"));
            // The default (Basic first) to a Digest-only squid: no rejection claimed.
            let cfg = yaml.clone().auth(USER, DIGEST_PASSWORD).build();
            let e = Connection::open(&cfg, OPEN_WAIT).expect_err("basic to a digest squid");
            assert_eq!(e.status(), Status::DTUN_ERR_PROXY_AUTH);
            assert!(e.message().contains("nothing was rejected"), "{e}");
        }
        let log = squid.access_log();
        assert!(
            log.contains(&format!(" {USER} ")),
            "squid logged the user: {log}"
        );
    }
}

#[test]
fn apache_digest() {
    if let Some(missing) = dtun_testenv::apache::apache_missing() {
        assert!(
            !dtun_testenv::require::real_proxies_required(),
            "apache_digest cannot run: missing {missing}; DTUN_REQUIRE_REAL_PROXIES=1 forbids skipping it"
        );
        eprintln!("SKIPPED: apache_digest: missing {missing}");
        return;
    }
    use dtun_testenv::apache::{Apache, ApacheOptions};
    let env = Env::new("apache-digest");
    let collector = EchoServer::start(Some(env.server_tls(Cert::Trusted))).expect("collector");
    let plain_collector = EchoServer::start(None).expect("plain collector");
    for no_keep_alive in [false, true] {
        let apache = Apache::start(ApacheOptions {
            dir: env.dir().join(format!("apache-{no_keep_alive}")),
            users: vec![(USER.into(), DIGEST_PASSWORD.into())],
            allowed_ports: vec![collector.port(), plain_collector.port()],
            no_keep_alive,
        })
        .expect("start apache");
        let rows = [
            (
                "TLS collector",
                Yaml::collector(collector.port())
                    .tls_collector(&env)
                    .proxy(apache.port()),
            ),
            (
                "plain collector",
                Yaml::collector(plain_collector.port())
                    .plain_collector()
                    .proxy(apache.port()),
            ),
        ];
        for (name, yaml) in rows {
            for mode in ["digest", "any"] {
                let what =
                    format!("apache, {name}, proxy_auth: {mode}, keep-alive off: {no_keep_alive}");
                let cfg = yaml
                    .clone()
                    .auth(USER, DIGEST_PASSWORD)
                    .set("http_proxy.proxy_auth", mode)
                    .build();
                let (conn, report) = Connection::open_with_report(&cfg, OPEN_WAIT);
                let conn = conn.unwrap_or_else(|e| {
                    panic!("{what}: {e:?}\n{}\n{}", report.text(), apache.log_tail())
                });
                echo(&conn, b"through apache digest");
                assert_eq!(report.get("proxy.auth_scheme"), Some("Digest"), "{what}");
                digest_secrets(&report, None);
            }
            let cfg = yaml
                .clone()
                .auth(USER, "not-the-password")
                .set("http_proxy.proxy_auth", "digest")
                .build();
            let (conn, report) = Connection::open_with_report(&cfg, OPEN_WAIT);
            let e = conn.expect_err("wrong digest password");
            assert_eq!(e.status(), Status::DTUN_ERR_PROXY_AUTH, "{name}: {e:?}");
            assert!(e.message().contains("Digest credentials"), "{e}");
            digest_secrets(&report, Some(&e));
        }
    }
}
