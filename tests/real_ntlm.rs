//! NTLMv2 proxy auth (issue 12) against real squid: `auth_param ntlm program` running
//! testenv's pyspnego-based helper (NTLMv2 only, the password really checked), over plain
//! and TLS to the proxy with TLS to the collector inside. The right password opens (3
//! CONNECTs: the probe, the NEGOTIATE, the AUTHENTICATE); a wrong one
//! is DTUN_ERR_PROXY_AUTH naming NTLM, after one AUTHENTICATE. With
//! `client_persistent_connections off` squid still keeps the connection through the NTLM
//! legs (it pins connection-oriented auth), so both settings open; the probe's 407 is where
//! a reconnect may happen. (A proxy closing mid-NTLM is tests/proxy_auth.rs's.)

mod support;

use dragent_tunnel::{Connection, Status};
use dtun_testenv::collector::EchoServer;
use dtun_testenv::ntlm::{require_ntlm_helper_or_skip, write_user_file};
use dtun_testenv::squid::{Squid, SquidAuth, SquidOptions};
use dtun_testenv::{require_or_skip, RealProxy};
use support::*;

const NTLM_PASSWORD: &str = "N7lm-p@ss/w%rd+";

#[test]
fn squid_ntlm() {
    if !require_or_skip("squid_ntlm", &[RealProxy::Squid]) {
        return;
    }
    let Some(helper) = require_ntlm_helper_or_skip("squid_ntlm") else {
        return;
    };
    let env = Env::new("squid-ntlm");
    let collector = EchoServer::start(Some(env.server_tls(Cert::Trusted))).expect("collector");
    let (cert, key, _) = env.issue(Cert::TrustedLocalhostOnly);
    let users_dir = env.dir().join("ntlm-users");
    std::fs::create_dir_all(&users_dir).unwrap();
    let users = write_user_file(&users_dir, &[("CORP", USER, NTLM_PASSWORD)]).unwrap();
    // squid's helper runs as squid's user: the file must be readable by it.
    {
        use std::os::unix::fs::PermissionsExt;
        let mut dir = users_dir.clone();
        std::fs::set_permissions(&users, std::fs::Permissions::from_mode(0o644)).unwrap();
        loop {
            if let Ok(meta) = std::fs::metadata(&dir) {
                let mode = meta.permissions().mode() | 0o005;
                let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode));
            }
            if !dir.pop() || dir == std::env::temp_dir() {
                break;
            }
        }
    }
    let program = helper.squid_program(&users).expect("helper program");
    for no_keep_alive in [false, true] {
        let squid = Squid::start_with_auth(
            SquidOptions {
                tls_cert: Some((cert.clone(), key.clone())),
                users: vec![(USER.into(), "unused".into())],
                allowed_ports: vec![collector.port()],
                ..SquidOptions::new(env.dir().join(format!("squid-{no_keep_alive}")))
            },
            SquidAuth {
                no_keep_alive,
                ntlm_program: Some(program.clone()),
                ..SquidAuth::default()
            },
        )
        .expect("start squid with ntlm");
        let plain_auth = squid.plain_auth_port().expect("plain auth port");
        let tls_auth = squid.tls_auth_port().expect("tls auth port");
        let tls = || Yaml::collector(collector.port()).tls_collector(&env);
        for (name, yaml) in [
            ("plain proxy", tls().proxy(plain_auth)),
            ("TLS proxy", tls().tls_proxy(tls_auth, &env)),
        ] {
            for (mode, user) in [("any", "agent@CORP"), ("ntlm", "CORP\\agent")] {
                let what = format!("{name}, {mode}, {user}, keep-alive off: {no_keep_alive}");
                let cfg = yaml
                    .clone()
                    .auth(user, NTLM_PASSWORD)
                    .set("http_proxy.proxy_auth", mode)
                    .build();
                let (conn, report) = Connection::open_with_report(&cfg, OPEN_WAIT);
                let conn = conn.unwrap_or_else(|e| {
                    panic!("{what}: {e:?}\n{}\n{}", report.text(), squid.log_tail())
                });
                echo(&conn, b"through squid ntlm");
                assert_eq!(report.get("proxy.auth_scheme"), Some("NTLM"), "{what}");
                assert_eq!(report.get("proxy.auth_rounds"), Some("3"), "{what}");
                let secrets = secrets_of(user, NTLM_PASSWORD);
                for (key, value) in report.entries() {
                    assert_no_leak(key, value, &secrets);
                }
            }
            let cfg = yaml
                .clone()
                .auth("CORP\\agent", "not-the-password")
                .set("http_proxy.proxy_auth", "ntlm")
                .build();
            let (conn, report) = Connection::open_with_report(&cfg, OPEN_WAIT);
            let e = conn.expect_err("wrong NTLM password");
            assert_eq!(e.status(), Status::DTUN_ERR_PROXY_AUTH, "{name}: {e:?}");
            assert!(e.message().contains("NTLM credentials"), "{name}: {e}");
            assert!(
                report.get("hint").unwrap_or("").contains("DOMAIN\\user"),
                "{}",
                report.text()
            );
            assert_error_clean(&e, &secrets_of("CORP\\agent", "not-the-password"));
        }
    }
}
