//! Our Negotiate (SPNEGO/Kerberos) client against real Kerberos: a MIT KDC on loopback
//! (`dtun_testenv::kdc`) and squid's own acceptor, `negotiate_kerberos_auth`, run stand-alone
//! (squid's helper protocol: `YR <base64 token>` in; on success `OK token=<base64> user=<user>`
//! from squid 5's helper, `AF <base64 token> <user>` in the old protocol; `BH`/`NA` on failure).
//!
//! The GSSAPI library reads `KRB5_CONFIG` and `KRB5CCNAME` from the process environment, which
//! is process-global: each case re-runs this test binary as a child filtered to the ignored
//! test [`child_process`], with the test KDC's environment set before any GSSAPI call. The
//! child makes the token, talks to the helper, checks the helper's final token (mutual
//! authentication) and prints one `RESULT:` line; the parent judges it.
//!
//! Run with `cargo test --features gssapi --test negotiate`.
#![cfg(feature = "gssapi")]

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use dragent_tunnel::proxy::negotiate::{
    Credentials, MutualAuth, NegotiateClient, NegotiateErrorKind, Step,
};
use dtun_testenv::kdc::{self, Kdc, KEYTAB_USER, REALM, SERVICE_HOST, USER};
use dtun_testenv::{require_or_skip, RealProxy};

const SCENARIO: &str = "DTUN_NEGOTIATE_CHILD";
const HELPER: &str = "DTUN_NEGOTIATE_HELPER";
const SERVICE_KEYTAB: &str = "DTUN_NEGOTIATE_SERVICE_KEYTAB";
const CLIENT_KEYTAB: &str = "DTUN_NEGOTIATE_CLIENT_KEYTAB";

/// The KDC and squid's helper, or a skip (a failure under `DTUN_REQUIRE_REAL_PROXIES=1`).
fn setup(test: &str) -> Option<(Kdc, PathBuf)> {
    if !require_or_skip(test, &[RealProxy::Kdc, RealProxy::Squid]) {
        return None;
    }
    let Some(helper) = kdc::negotiate_helper() else {
        assert!(
            !dtun_testenv::require::real_proxies_required(),
            "{test}: squid's negotiate_kerberos_auth is missing (Debian: squid-openssl)"
        );
        eprintln!("SKIPPED: {test}: no negotiate_kerberos_auth");
        return None;
    };
    Some((Kdc::start().expect("start the KDC"), helper))
}

/// Runs [`child_process`] with `scenario` in the KDC's environment (with `ccache` as
/// `KRB5CCNAME`); its `RESULT:` line.
fn run_child(kdc: &Kdc, helper: &std::path::Path, scenario: &str, ccache: &str) -> String {
    let exe = std::env::current_exe().expect("test binary");
    let out = Command::new(exe)
        .args([
            "--exact",
            "child_process",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .envs(kdc.env())
        .env("KRB5CCNAME", ccache)
        .env(SCENARIO, scenario)
        .env(HELPER, helper)
        .env(SERVICE_KEYTAB, kdc.service_keytab())
        .env(CLIENT_KEYTAB, kdc.client_keytab())
        .stdin(Stdio::null())
        .output()
        .expect("run the child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let result = stdout
        .lines()
        .find_map(|l| l.split_once("RESULT: ").map(|(_, r)| r.to_string()));
    result.unwrap_or_else(|| {
        panic!(
            "child printed no result ({}): {stdout}\n{}\nKDC log:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            kdc.log_tail()
        )
    })
}

#[test]
fn ticket_from_the_ccache_is_accepted_by_squids_helper() {
    let Some((kdc, helper)) = setup("ticket_from_the_ccache_is_accepted_by_squids_helper") else {
        return;
    };
    let result = run_child(&kdc, &helper, "ccache", &kdc.ccache());
    assert_eq!(result, format!("AF {USER}@{REALM} mutual=Verified"));
}

#[test]
fn ticket_from_a_client_keytab_is_accepted_by_squids_helper() {
    let Some((kdc, helper)) = setup("ticket_from_a_client_keytab_is_accepted_by_squids_helper")
    else {
        return;
    };
    // An empty ccache: the ticket can only come from the keytab.
    let result = run_child(&kdc, &helper, "keytab", &kdc.empty_ccache());
    assert_eq!(result, format!("AF {KEYTAB_USER}@{REALM} mutual=Verified"));
}

#[test]
fn no_ticket_fails_with_the_kinit_hint() {
    let Some((kdc, helper)) = setup("no_ticket_fails_with_the_kinit_hint") else {
        return;
    };
    let result = run_child(&kdc, &helper, "ccache", &kdc.empty_ccache());
    assert!(result.starts_with("ERROR NoTicket "), "{result}");
    assert!(result.contains("kinit"), "{result}");
    assert!(result.contains("KRB5CCNAME"), "{result}");
}

/// An expired ticket (kinit -l 2s, then polled until `klist -s` fails and the KDC refuses
/// it, past its clock-skew allowance): the KDC's "Ticket expired", sorted as such, with the
/// kinit hint.
#[test]
fn an_expired_ticket_fails_with_the_kinit_hint() {
    let Some((kdc, helper)) = setup("an_expired_ticket_fails_with_the_kinit_hint") else {
        return;
    };
    let expired = format!("FILE:{}", kdc.dir().join("expired-ccache").display());
    kdc.kinit_with_lifetime(&expired, std::time::Duration::from_secs(2))
        .expect("kinit -l 2s");
    kdc.wait_until_expired(&expired, std::time::Duration::from_secs(60))
        .expect("the ticket expires");
    let result = run_child(&kdc, &helper, "ccache", &expired);
    assert!(result.starts_with("ERROR TicketExpired "), "{result}");
    assert!(result.contains("kinit"), "{result}");
    assert!(result.contains("expired"), "{result}");
}

#[test]
fn unknown_service_principal_is_named() {
    let Some((kdc, helper)) = setup("unknown_service_principal_is_named") else {
        return;
    };
    let result = run_child(&kdc, &helper, "unknown-service", &kdc.ccache());
    assert!(result.starts_with("ERROR UnknownService "), "{result}");
    assert!(result.contains("HTTP/nosuchproxy"), "{result}");
}

#[test]
fn a_tampered_final_token_fails_mutual_authentication() {
    let Some((kdc, helper)) = setup("a_tampered_final_token_fails_mutual_authentication") else {
        return;
    };
    let result = run_child(&kdc, &helper, "tamper", &kdc.ccache());
    assert!(
        result.starts_with("ERROR MutualAuth ") || result.starts_with("ERROR Protocol "),
        "{result}"
    );
}

/// The child half: does nothing unless run by [`run_child`].
#[test]
#[ignore = "run by the other tests in a child process with the test KDC's environment"]
fn child_process() {
    let Ok(scenario) = std::env::var(SCENARIO) else {
        return;
    };
    let env_path = |name: &str| PathBuf::from(std::env::var_os(name).expect(name));
    let credentials = match scenario.as_str() {
        "keytab" => Credentials::Keytab {
            principal: format!("{KEYTAB_USER}@{REALM}"),
            keytab: env_path(CLIENT_KEYTAB),
        },
        _ => Credentials::Default,
    };
    let host = if scenario == "unknown-service" {
        "nosuchproxy"
    } else {
        SERVICE_HOST
    };
    let outcome = (|| -> Result<String, dragent_tunnel::proxy::negotiate::NegotiateError> {
        let mut client = NegotiateClient::new(host, &credentials)?;
        let Step::Send(token) = client.step(None)? else {
            panic!("no first token");
        };
        let shown = format!("{token:?} {client:?}");
        let encoded = B64.encode(token.expose());
        assert!(!shown.contains(&encoded[..16]), "token in Debug output");
        let reply = ask_helper(&env_path(HELPER), &env_path(SERVICE_KEYTAB), &encoded);
        let Some((final_token, user)) = parse_success(&reply) else {
            // The first word only: a reply may carry a token.
            let word = reply.split(' ').next().unwrap_or("");
            return Ok(format!("helper said {word}"));
        };
        let mut final_bytes = B64.decode(final_token).expect("helper's token is base64");
        if scenario == "tamper" {
            let last = final_bytes.len() - 1;
            final_bytes[last] ^= 0x55;
        }
        let mutual = client.finish(Some(&final_bytes))?;
        assert_eq!(mutual, MutualAuth::Verified);
        Ok(format!("AF {user} mutual={mutual:?}"))
    })();
    match outcome {
        Ok(line) => println!("RESULT: {line}"),
        Err(err) => {
            let kind: NegotiateErrorKind = err.kind();
            println!("RESULT: ERROR {kind:?} {err}");
        }
    }
}

/// The token and user of a success: `OK token=<b64> user=<user> ...` (squid 3.4+ helpers,
/// what squid 5's `negotiate_kerberos_auth` sends) or the old `AF <b64> <user>`.
fn parse_success(reply: &str) -> Option<(String, String)> {
    let mut words = reply.split(' ');
    match words.next()? {
        "AF" => Some((words.next()?.to_string(), words.next()?.to_string())),
        "OK" => {
            let (mut token, mut user) = (None, None);
            for word in words {
                if let Some(t) = word.strip_prefix("token=") {
                    token = Some(t.to_string());
                } else if let Some(u) = word.strip_prefix("user=") {
                    user = Some(u.to_string());
                }
            }
            Some((token?, user?))
        }
        _ => None,
    }
}

/// One `YR` to `negotiate_kerberos_auth -s HTTP/localhost@REALM -k KEYTAB`; its reply line.
fn ask_helper(helper: &std::path::Path, keytab: &std::path::Path, token: &str) -> String {
    let mut child = Command::new(helper)
        .arg("-s")
        .arg(format!("HTTP/{SERVICE_HOST}@{REALM}"))
        .arg("-k")
        .arg(keytab)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start negotiate_kerberos_auth");
    let mut stdin = child.stdin.take().expect("stdin");
    writeln!(stdin, "YR {token}").expect("write to the helper");
    stdin.flush().expect("flush");
    let mut reply = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut reply)
        .expect("read the helper");
    drop(stdin);
    let _ = child.wait();
    reply.trim_end().to_string()
}
