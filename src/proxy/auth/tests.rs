use super::*;
use proptest::prelude::*;

fn parse(values: &[&str]) -> Vec<Challenge> {
    parse_challenges(&values.iter().map(|s| s.to_string()).collect::<Vec<_>>())
}

fn text(s: &Secret) -> String {
    String::from_utf8(s.expose().to_vec()).unwrap()
}

#[test]
fn several_headers_and_several_challenges_per_header() {
    let c = parse(&[
        "Basic realm=\"Acme, Inc.\", Digest realm=\"x\", nonce=\"a\\\"b\", qop=\"auth,auth-int\"",
        "NTLM",
        "Negotiate YII=",
    ]);
    let schemes: Vec<&str> = c.iter().map(|c| c.scheme.as_str()).collect();
    assert_eq!(schemes, ["Basic", "Digest", "NTLM", "Negotiate"]);
    assert_eq!(c[0].param("realm"), Some("Acme, Inc."));
    assert_eq!(c[1].param("NONCE"), Some("a\"b"));
    assert_eq!(c[1].param("qop"), Some("auth,auth-int"));
    assert_eq!(c[2].token68, None);
    assert_eq!(c[3].token68.as_deref(), Some("YII="));
    assert_eq!(c[1].kind(), Some(Scheme::Digest));
}

#[test]
fn token68_params_and_junk() {
    let c = parse(&["NTLM TlRMTVNTUAACAAAA==, Basic realm=x, , =, \"junk\", foo\"bar"]);
    assert_eq!(c.len(), 2, "{c:?}");
    assert_eq!(c[0].token68.as_deref(), Some("TlRMTVNTUAACAAAA=="));
    assert_eq!(c[1].param("realm"), Some("x"));
    // A parameter before any scheme belongs to nothing.
    assert!(parse(&["realm=x"]).is_empty());
    // An unterminated quoted string is no value.
    let c = parse(&["Digest nonce=\"abc"]);
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].param("nonce"), None);
    // Blank values.
    assert!(parse(&["", " , ,"]).is_empty());
}

#[test]
fn challenges_are_bounded() {
    let many = "Basic, ".repeat(1000);
    assert_eq!(parse(&[&many]).len(), MAX_CHALLENGES);
    let params = format!("Digest {}", "a=b, ".repeat(1000));
    assert_eq!(parse(&[&params])[0].params.len(), MAX_PARAMS);
}

#[test]
fn debug_shows_no_values() {
    let c = parse(&["Digest nonce=\"s3cr3tnonce\", NTLM abcdefgh"]);
    let shown = format!("{c:?}");
    assert!(
        !shown.contains("s3cr3tnonce") && !shown.contains("abcdefgh"),
        "{shown}"
    );
}

fn pw() -> Secret {
    Secret::from("p4ssw0rd".to_string())
}

fn exchange<'a>(mode: Option<ProxyAuth>, password: &'a Secret) -> Exchange<'a> {
    Exchange::new(
        mode,
        Some(Credentials {
            user: "agent",
            password,
        }),
        "c.example:6443",
    )
}

const DIGEST: &str = "Digest realm=\"r\", nonce=\"n1\", qop=\"auth\"";

#[test]
fn basic_mode_sends_first_and_is_rejected_once() {
    let password = pw();
    let mut x = exchange(Some(ProxyAuth::Basic), &password);
    let first = x.first().unwrap();
    assert_eq!(text(&first), "Basic YWdlbnQ6cDRzc3cwcmQ=");
    assert_eq!(x.scheme(), Some(Scheme::Basic));
    match x.on_challenge(&parse(&["Basic realm=x"])) {
        Decision::Fail(Failure::Rejected(Scheme::Basic)) => {}
        other => panic!("{other:?}"),
    }
    // A Digest-only proxy after Basic: nothing rejected.
    let mut x = exchange(Some(ProxyAuth::Basic), &password);
    x.first();
    match x.on_challenge(&parse(&[DIGEST])) {
        Decision::Fail(Failure::OtherScheme {
            wanted: Some(Scheme::Basic),
            sent: Some(Scheme::Basic),
        }) => {}
        other => panic!("{other:?}"),
    }
}

/// A 407 naming no scheme at all (no Proxy-Authenticate) after credentials were sent: those
/// credentials were refused, not "another scheme asked for".
#[test]
fn a_407_naming_no_scheme_after_credentials_rejects_them() {
    let password = pw();
    let mut x = exchange(Some(ProxyAuth::Basic), &password);
    x.first();
    let f = match x.on_challenge(&[]) {
        Decision::Fail(f @ Failure::RejectedNoScheme(Scheme::Basic)) => f,
        other => panic!("{other:?}"),
    };
    let why = f.describe("no scheme named");
    assert!(
        why.contains("Basic credentials of http_proxy.proxy_user were rejected")
            && why.contains("names no scheme")
            && !why.contains("nothing was rejected"),
        "{why}"
    );
    let hint = f.hint("no scheme named");
    assert!(
        hint.contains("check http_proxy.proxy_user and http_proxy.proxy_password")
            && !hint.contains("proxy_auth"),
        "{hint}"
    );
    // After a Digest answer too; a blank Proxy-Authenticate names no scheme either.
    let mut x = exchange(Some(ProxyAuth::Digest), &password);
    x.first();
    assert!(matches!(
        x.on_challenge(&parse(&[DIGEST])),
        Decision::Retry(_)
    ));
    assert!(matches!(
        x.on_challenge(&parse(&[" "])),
        Decision::Fail(Failure::RejectedNoScheme(Scheme::Digest))
    ));
    // No credentials went yet: nothing was rejected.
    let mut x = exchange(Some(ProxyAuth::Digest), &password);
    x.first();
    assert!(matches!(
        x.on_challenge(&[]),
        Decision::Fail(Failure::OtherScheme { sent: None, .. })
    ));
    // A scheme named, but not the one sent: still "other scheme", nothing rejected.
    let mut x = exchange(Some(ProxyAuth::Basic), &password);
    x.first();
    assert!(matches!(
        x.on_challenge(&parse(&["Bearer realm=x"])),
        Decision::Fail(Failure::OtherScheme { .. })
    ));
}

/// How a failure after Negotiate was passed over reads (built by hand: passing Negotiate
/// over needs the `gssapi` feature, tested with it below).
#[test]
fn a_failure_after_negotiate_was_passed_over_says_so() {
    let f = Failure::AfterNegotiateSkipped {
        negotiate: "Negotiate (Kerberos) to HTTP@p.example: No Kerberos credentials available; hint: run kinit, or set KRB5CCNAME".into(),
        failure: Box::new(Failure::Rejected(Scheme::Digest)),
    };
    assert_eq!(
        f.describe("Negotiate, Digest"),
        "Negotiate was offered but passed over, no Kerberos ticket could be used (Negotiate \
         (Kerberos) to HTTP@p.example: No Kerberos credentials available); the Digest \
         credentials of http_proxy.proxy_user were rejected; the proxy offers: Negotiate, Digest"
    );
    let hint = f.hint("Negotiate, Digest");
    assert!(
        hint.starts_with("the proxy rejected the credentials")
            && hint
                .ends_with("for want of a usable Kerberos ticket): run kinit, or set KRB5CCNAME"),
        "{hint}"
    );
}

#[test]
fn digest_mode_answers_then_never_twice() {
    let password = pw();
    let mut x = exchange(Some(ProxyAuth::Digest), &password);
    assert!(x.first().is_none());
    let Decision::Retry(v) = x.on_challenge(&parse(&[DIGEST])) else {
        panic!()
    };
    assert!(text(&v).starts_with("Digest username=\"agent\", realm=\"r\", uri=\"c.example:6443\""));
    assert_eq!(x.rounds(), 2);
    match x.on_challenge(&parse(&[DIGEST])) {
        Decision::Fail(Failure::Rejected(Scheme::Digest)) => {}
        other => panic!("{other:?}"),
    }
    // Basic is never sent under digest.
    let mut x = exchange(Some(ProxyAuth::Digest), &password);
    x.first();
    assert!(matches!(
        x.on_challenge(&parse(&["Basic realm=x"])),
        Decision::Fail(Failure::OtherScheme { sent: None, .. })
    ));
}

#[test]
fn digest_stale_is_retried_once_with_the_new_nonce() {
    let password = pw();
    let mut x = exchange(Some(ProxyAuth::Digest), &password);
    x.first();
    assert!(matches!(
        x.on_challenge(&parse(&[DIGEST])),
        Decision::Retry(_)
    ));
    let stale = "Digest realm=\"r\", nonce=\"n2\", qop=\"auth\", stale=true";
    let Decision::Retry(v) = x.on_challenge(&parse(&[stale])) else {
        panic!()
    };
    assert!(text(&v).contains("nonce=\"n2\""));
    assert!(text(&v).contains("nc=00000002"));
    assert!(matches!(
        x.on_challenge(&parse(&[stale])),
        Decision::Fail(Failure::Rejected(Scheme::Digest))
    ));
}

#[test]
fn a_stale_challenge_with_the_same_nonce_is_a_rejection() {
    // Without qop the answer depends on the nonce alone: the same nonce again would send the
    // same credentials twice.
    let password = pw();
    let mut x = exchange(Some(ProxyAuth::Digest), &password);
    x.first();
    let stale = "Digest realm=\"r\", nonce=\"n\", stale=true";
    assert!(matches!(
        x.on_challenge(&parse(&[stale])),
        Decision::Retry(_)
    ));
    assert!(matches!(
        x.on_challenge(&parse(&[stale])),
        Decision::Fail(Failure::Rejected(Scheme::Digest))
    ));
}

#[test]
fn any_picks_the_strongest_answerable_and_basic_only_when_asked() {
    let password = pw();
    let mut x = exchange(Some(ProxyAuth::Any), &password);
    assert!(x.first().is_none(), "no credentials before a challenge");
    let Decision::Retry(v) = x.on_challenge(&parse(&["Basic realm=x", DIGEST, "NTLM"])) else {
        panic!()
    };
    assert!(text(&v).starts_with("Digest "));
    let mut x = exchange(Some(ProxyAuth::Any), &password);
    x.first();
    let Decision::Retry(v) = x.on_challenge(&parse(&["Bearer", "Basic realm=x"])) else {
        panic!()
    };
    assert!(text(&v).starts_with("Basic "));
    assert!(matches!(
        x.on_challenge(&parse(&["Bearer", "Basic realm=x"])),
        Decision::Fail(Failure::Rejected(Scheme::Basic))
    ));
    let mut x = exchange(Some(ProxyAuth::Any), &password);
    x.first();
    assert!(matches!(
        x.on_challenge(&parse(&["Bearer realm=x"])),
        Decision::Fail(Failure::Unsupported)
    ));
}

#[cfg(not(feature = "gssapi"))]
#[test]
fn without_gssapi_negotiate_is_never_chosen() {
    let password = pw();
    assert!(!Scheme::Negotiate.available());
    let mut x = exchange(Some(ProxyAuth::Any), &password);
    x.first();
    let Decision::Retry(v) = x.on_challenge(&parse(&["Negotiate", "Basic realm=x"])) else {
        panic!()
    };
    assert!(text(&v).starts_with("Basic "));
    let mut x = exchange(Some(ProxyAuth::Any), &password);
    x.first();
    assert!(matches!(
        x.on_challenge(&parse(&["Negotiate", "Bearer realm=x"])),
        Decision::Fail(Failure::Unsupported)
    ));
    let hint = Failure::Unsupported.hint("Negotiate");
    assert!(hint.contains("gssapi"), "{hint}");
}

/// With the feature, `any` answers Negotiate first, with or without a user. Whether the
/// host has a ticket is not ours to know here: either a token goes out, or the negotiate
/// module's error (with its hint) ends the exchange; nothing else.
#[cfg(feature = "gssapi")]
#[test]
fn with_gssapi_any_prefers_negotiate_and_needs_no_user() {
    let password = pw();
    let setup = || NegotiateSetup {
        host: "proxy.example".into(),
        keytab: None,
    };
    let with_user = exchange(Some(ProxyAuth::Any), &password).with_negotiate(setup());
    let without_user = Exchange::new(Some(ProxyAuth::Any), None, "c:1").with_negotiate(setup());
    let negotiate_only =
        Exchange::new(Some(ProxyAuth::Negotiate), None, "c:1").with_negotiate(setup());
    for (mut x, falls_back) in [
        (with_user, true),
        (without_user, false),
        (negotiate_only, false),
    ] {
        assert!(x.first().is_none(), "nothing before the challenge");
        match x.on_challenge(&parse(&["Basic realm=x", DIGEST, "NTLM", "Negotiate"])) {
            // No ticket on this host: `any` with a user answers the next scheme instead.
            Decision::Retry(v) if falls_back && x.scheme() == Some(Scheme::Digest) => {
                assert!(text(&v).starts_with("Digest "));
                let why = x
                    .negotiate_skipped()
                    .expect("why Negotiate was passed over");
                assert!(why.contains("; hint: "), "{why}");
            }
            Decision::Retry(v) => {
                assert!(text(&v).starts_with("Negotiate "));
                assert_eq!(x.scheme(), Some(Scheme::Negotiate));
                assert!(
                    !x.needs_same_connection(),
                    "the first token may go anywhere"
                );
                // A bare Negotiate after our token: refused, no second try.
                match x.on_challenge(&parse(&["Negotiate"])) {
                    Decision::Fail(Failure::Negotiate { message }) => {
                        assert!(message.contains("rejected"), "{message}")
                    }
                    other => panic!("{other:?}"),
                }
            }
            Decision::Fail(f @ Failure::Negotiate { .. }) => {
                let Failure::Negotiate { message } = &f else {
                    unreachable!()
                };
                assert!(message.contains("HTTP@proxy.example"), "{message}");
                assert!(message.contains("; hint: "), "{message}");
                assert!(!f.hint("").is_empty());
                assert_eq!(f.describe("Negotiate"), *message);
            }
            other => panic!("{other:?}"),
        }
    }
    // Other schemes still need credentials.
    let mut x = Exchange::new(Some(ProxyAuth::Any), None, "c:1").with_negotiate(setup());
    x.first();
    assert!(matches!(
        x.on_challenge(&parse(&[DIGEST])),
        Decision::Fail(Failure::NoCredentials { answerable: true })
    ));
}

/// `any` with a user and a password: when the first Negotiate token cannot be made (here
/// a proxy host GSSAPI cannot take, refused before any GSSAPI call; on a host without a
/// ticket the same), nothing went to the proxy and the next strongest offered scheme the
/// config can answer goes in the same round. Without a user the Negotiate failure (and its
/// hint) stands; with a keytab (proxy_user a principal) a password scheme needs a password.
#[cfg(feature = "gssapi")]
#[test]
fn with_gssapi_any_falls_back_when_negotiate_has_no_token() {
    let password = pw();
    let unusable = || NegotiateSetup {
        host: "no such host".into(),
        keytab: None,
    };
    for (offered, scheme) in [
        (
            &["Negotiate", DIGEST, "NTLM", "Basic realm=x"][..],
            Scheme::Digest,
        ),
        (&["Negotiate", "NTLM", "Basic realm=x"], Scheme::Ntlm),
        (&["Basic realm=x", "Negotiate"], Scheme::Basic),
    ] {
        let mut x = exchange(Some(ProxyAuth::Any), &password).with_negotiate(unusable());
        x.first();
        let Decision::Retry(v) = x.on_challenge(&parse(offered)) else {
            panic!("{offered:?}")
        };
        assert!(
            text(&v).starts_with(&format!("{} ", scheme.name())),
            "{offered:?}"
        );
        assert_eq!(x.scheme(), Some(scheme));
        assert_eq!(
            x.rounds(),
            2,
            "one round: the fallback answers the same 407"
        );
        let why = x.negotiate_skipped().unwrap();
        assert!(
            why.contains("no such host") && why.contains("; hint: "),
            "{why}"
        );
        // Nothing of Negotiate was sent, and the fallback goes on as its own scheme.
        assert!(x
            .sent_values()
            .iter()
            .all(|s| !s.expose().starts_with(b"Negotiate")));
    }
    // A wrong Digest password after the fallback: rejected once, no second try.
    let mut x = exchange(Some(ProxyAuth::Any), &password).with_negotiate(unusable());
    x.first();
    let offered = ["Negotiate", DIGEST];
    assert!(matches!(
        x.on_challenge(&parse(&offered)),
        Decision::Retry(_)
    ));
    // The log line of the fallback says why Negotiate was passed over; only that once.
    let answering = x.answering();
    assert!(
        answering.starts_with("Digest: Negotiate was offered but passed over")
            && answering.contains("no such host")
            && !answering.contains("; hint: "),
        "{answering}"
    );
    // The failure says Negotiate was passed over too, and the hint how to get a ticket.
    match x.on_challenge(&parse(&offered)) {
        Decision::Fail(f @ Failure::AfterNegotiateSkipped { .. }) => {
            let Failure::AfterNegotiateSkipped { failure, .. } = &f else {
                unreachable!()
            };
            assert_eq!(**failure, Failure::Rejected(Scheme::Digest));
            let why = f.describe("Negotiate, Digest");
            assert!(
                why.starts_with("Negotiate was offered but passed over, no Kerberos ticket")
                    && why.contains("no such host")
                    && why
                        .contains("the Digest credentials of http_proxy.proxy_user were rejected"),
                "{why}"
            );
            let hint = f.hint("Negotiate, Digest");
            assert!(
                hint.contains("http_proxy.proxy_password") && hint.contains("for Negotiate"),
                "{hint}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(x.answering(), "Digest");
    // No user: the Negotiate failure itself, with its hint.
    let mut x = Exchange::new(Some(ProxyAuth::Any), None, "c:1").with_negotiate(unusable());
    x.first();
    match x.on_challenge(&parse(&["Negotiate", DIGEST])) {
        Decision::Fail(Failure::Negotiate { message }) => {
            assert!(message.contains("; hint: "), "{message}")
        }
        other => panic!("{other:?}"),
    }
    // Only Negotiate offered: its failure, not "unsupported".
    let mut x = exchange(Some(ProxyAuth::Any), &password).with_negotiate(unusable());
    x.first();
    assert!(matches!(
        x.on_challenge(&parse(&["Negotiate"])),
        Decision::Fail(Failure::Negotiate { .. })
    ));
    // `proxy_auth: negotiate` never falls back.
    let mut x = exchange(Some(ProxyAuth::Negotiate), &password).with_negotiate(unusable());
    x.first();
    assert!(matches!(
        x.on_challenge(&parse(&["Negotiate", DIGEST])),
        Decision::Fail(Failure::Negotiate { .. })
    ));
    // A keytab makes proxy_user a principal: without a password, no Basic with it.
    let empty = Secret::from(String::new());
    let mut x = Exchange::new(
        Some(ProxyAuth::Any),
        Some(Credentials {
            user: "agent@R",
            password: &empty,
        }),
        "c:1",
    )
    .with_negotiate(NegotiateSetup {
        keytab: Some(("agent@R".into(), "/nonexistent.keytab".into())),
        ..unusable()
    });
    x.first();
    assert!(matches!(
        x.on_challenge(&parse(&["Negotiate", "Basic realm=x"])),
        Decision::Fail(Failure::Negotiate { .. })
    ));
}

#[test]
fn the_negotiate_failure_hint_is_the_modules_hint() {
    let f = Failure::Negotiate {
        message: "Negotiate (Kerberos) to HTTP@p: no ticket; hint: run kinit".into(),
    };
    assert_eq!(f.hint("Negotiate"), "run kinit");
    assert!(f
        .describe("Negotiate")
        .contains("no ticket; hint: run kinit"));
    // After a 2xx without Negotiate, nothing to check.
    let password = pw();
    let mut x = exchange(Some(ProxyAuth::Basic), &password);
    x.first();
    assert_eq!(x.on_tunnel(&parse(&["Negotiate abcd"])), Ok(None));
}

#[test]
fn the_strongest_digest_algorithm_wins() {
    let password = pw();
    let mut x = exchange(Some(ProxyAuth::Digest), &password);
    x.first();
    let Decision::Retry(v) = x.on_challenge(&parse(&[
        "Digest realm=\"r\", nonce=\"n\", qop=auth, algorithm=MD5",
        "Digest realm=\"r\", nonce=\"n\", qop=auth, algorithm=SHA-256",
        "Digest realm=\"r\", nonce=\"n\", qop=auth, algorithm=SHA-1",
    ])) else {
        panic!()
    };
    assert!(text(&v).contains("algorithm=SHA-256"), "{}", text(&v));
}

#[test]
fn a_digest_challenge_without_nonce_is_a_bad_challenge() {
    let password = pw();
    let mut x = exchange(Some(ProxyAuth::Any), &password);
    x.first();
    match x.on_challenge(&parse(&["Digest realm=\"r\""])) {
        Decision::Fail(Failure::BadChallenge {
            scheme: Scheme::Digest,
            why,
        }) => assert!(why.contains("nonce"), "{why}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn without_credentials_says_whether_they_would_help() {
    let mut x = Exchange::new(None, None, "c:1");
    assert!(x.first().is_none());
    assert!(matches!(
        x.on_challenge(&parse(&[DIGEST])),
        Decision::Fail(Failure::NoCredentials { answerable: true })
    ));
    assert!(matches!(
        x.on_challenge(&parse(&["Negotiate", "Bearer"])),
        Decision::Fail(Failure::NoCredentials { answerable: false })
    ));
    let hint = Failure::NoCredentials { answerable: false }.hint("Negotiate, Bearer");
    assert!(!hint.contains("proxy_user"), "{hint}");
}

#[test]
fn rounds_are_bounded_even_for_a_proxy_that_always_says_stale() {
    let password = pw();
    let mut x = exchange(Some(ProxyAuth::Digest), &password);
    x.first();
    let mut retries = 0;
    for i in 0..100 {
        let stale = format!("Digest realm=\"r\", nonce=\"n{i}\", qop=auth, stale=true");
        match x.on_challenge(&parse(&[&stale])) {
            Decision::Retry(_) => retries += 1,
            Decision::Fail(_) => break,
        }
    }
    assert!(retries <= 2, "{retries}");
    assert!(x.rounds() <= MAX_ROUNDS);
}

#[test]
fn sent_values_hold_what_could_be_echoed() {
    let password = pw();
    let mut x = exchange(Some(ProxyAuth::Digest), &password);
    x.first();
    let Decision::Retry(v) = x.on_challenge(&parse(&[DIGEST])) else {
        panic!()
    };
    let v = text(&v);
    let response = v
        .split("response=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    assert_eq!(response.len(), 32);
    assert!(x
        .sent_values()
        .iter()
        .any(|s| s.expose() == response.as_bytes()));
}

/// The Digest response is redacted from what was sent even when the realm, the nonce or the
/// user name hold the text `response="` (quoted: the realm's closing quote follows it).
#[test]
fn the_digest_response_is_known_whatever_the_other_parameters_hold() {
    let password = pw();
    for (user, challenge) in [
        (
            "agent",
            r#"Digest realm="response=", nonce="n1", qop="auth""#,
        ),
        (
            "agent",
            r#"Digest realm="x", nonce="response=", qop="auth""#,
        ),
        ("response=", r#"Digest realm="r", nonce="n1", qop="auth""#),
        (
            "a\"response=\"b",
            r#"Digest realm="r\"response=\"", nonce="n", qop="auth""#,
        ),
        (
            "agent",
            r#"Digest realm="response=", nonce="n", userhash=true, algorithm=SHA-256"#,
        ),
    ] {
        let mut x = Exchange::new(
            Some(ProxyAuth::Digest),
            Some(Credentials {
                user,
                password: &password,
            }),
            "c.example:6443",
        );
        x.first();
        let Decision::Retry(v) = x.on_challenge(&parse(&[challenge])) else {
            panic!("{challenge}")
        };
        let v = text(&v);
        // The real response: the last `response="` of the value, which we write after
        // every parameter that could hold the text.
        let response = v
            .rsplit("response=\"")
            .next()
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        assert!(response.len() >= 32, "{v}");
        assert!(response.bytes().all(|b| b.is_ascii_hexdigit()), "{v}");
        assert!(
            x.sent_values()
                .iter()
                .any(|s| s.expose() == response.as_bytes()),
            "{user} {challenge}: the response is not among the values to redact"
        );
        // Nothing shorter than the response is redacted by mistake (a realm's text).
        assert!(
            x.sent_values().iter().all(|s| s.expose().len() >= 32),
            "{v}"
        );
    }
}

proptest! {
    #[test]
    fn parsing_never_panics(values in proptest::collection::vec("\\PC{0,200}", 0..4)) {
        let c = parse_challenges(&values);
        prop_assert!(c.len() <= MAX_CHALLENGES);
    }

    #[test]
    fn any_challenge_list_gets_a_bounded_answer(values in proptest::collection::vec(
        "(Basic|Digest|NTLM|Negotiate|X)( (realm|nonce|qop|algorithm|stale)=(\"[a-z,]{0,5}\"|auth|true|MD5|SHA-256))*",
        0..4,
    )) {
        let password = pw();
        for mode in [ProxyAuth::Basic, ProxyAuth::Digest, ProxyAuth::Any] {
            let mut x = exchange(Some(mode), &password);
            x.first();
            let c = parse_challenges(&values);
            for _ in 0..10 {
                if let Decision::Fail(_) = x.on_challenge(&c) {
                    break;
                }
            }
            prop_assert!(x.rounds() <= MAX_ROUNDS);
        }
    }
}

/// A CHALLENGE (type 2) message: Unicode, NTLM, target info with a domain name and EOL.
fn ntlm_type2() -> String {
    use crate::proxy::ntlm;
    use base64::Engine as _;
    let target: Vec<u8> = "CORP".encode_utf16().flat_map(u16::to_le_bytes).collect();
    let mut info = vec![2u8, 0, target.len() as u8, 0];
    info.extend_from_slice(&target);
    info.extend_from_slice(&[0, 0, 0, 0]);
    let flags = ntlm::NEGOTIATE_UNICODE | ntlm::NEGOTIATE_NTLM | ntlm::NEGOTIATE_TARGET_INFO;
    let header = 48u32;
    let mut m = b"NTLMSSP\0".to_vec();
    m.extend_from_slice(&2u32.to_le_bytes());
    m.extend_from_slice(&(target.len() as u16).to_le_bytes());
    m.extend_from_slice(&(target.len() as u16).to_le_bytes());
    m.extend_from_slice(&header.to_le_bytes());
    m.extend_from_slice(&flags.to_le_bytes());
    m.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
    m.extend_from_slice(&[0; 8]);
    m.extend_from_slice(&(info.len() as u16).to_le_bytes());
    m.extend_from_slice(&(info.len() as u16).to_le_bytes());
    m.extend_from_slice(&(header + target.len() as u32).to_le_bytes());
    m.extend_from_slice(&target);
    m.extend_from_slice(&info);
    format!(
        "NTLM {}",
        base64::engine::general_purpose::STANDARD.encode(m)
    )
}

#[test]
fn ntlm_negotiate_challenge_authenticate_once() {
    let password = pw();
    let mut x = Exchange::new(
        Some(ProxyAuth::Ntlm),
        Some(Credentials {
            user: "CORP\\agent",
            password: &password,
        }),
        "c:1",
    );
    assert!(
        x.first().is_none(),
        "the NEGOTIATE waits for the proxy's 407"
    );
    let Decision::Retry(first) = x.on_challenge(&parse(&["NTLM"])) else {
        panic!()
    };
    assert!(
        text(&first).starts_with("NTLM TlRMTVNTUAAB"),
        "{}",
        text(&first)
    );
    assert!(!x.needs_same_connection());
    let Decision::Retry(type3) = x.on_challenge(&parse(&[&ntlm_type2()])) else {
        panic!()
    };
    assert!(
        text(&type3).starts_with("NTLM TlRMTVNTUAAD"),
        "{}",
        text(&type3)
    );
    // The AUTHENTICATE answers this connection's CHALLENGE.
    assert!(x.needs_same_connection());
    assert!(x
        .sent_values()
        .iter()
        .any(|v| text(&type3).ends_with(&text(v))));
    match x.on_challenge(&parse(&["NTLM"])) {
        Decision::Fail(Failure::Rejected(Scheme::Ntlm)) => {}
        other => panic!("{other:?}"),
    }
    let hint = Failure::Rejected(Scheme::Ntlm).hint("NTLM");
    assert!(hint.contains("DOMAIN\\user"), "{hint}");
}

#[test]
fn ntlm_under_any_after_a_probe_and_hostile_challenges() {
    let password = pw();
    let mut x = exchange(Some(ProxyAuth::Any), &password);
    assert!(x.first().is_none());
    // NTLM beats Basic, Digest beats NTLM.
    let Decision::Retry(type1) = x.on_challenge(&parse(&["Basic realm=x", "NTLM"])) else {
        panic!()
    };
    assert!(text(&type1).starts_with("NTLM "));
    assert!(
        !x.needs_same_connection(),
        "a NEGOTIATE may go on a new connection"
    );
    for hostile in ["NTLM", "NTLM !!!", "NTLM TlRMTVNTUAACAAAA", "NTLM AAAA"] {
        let mut y = exchange(Some(ProxyAuth::Ntlm), &password);
        y.first();
        assert!(matches!(
            y.on_challenge(&parse(&["NTLM"])),
            Decision::Retry(_)
        ));
        match y.on_challenge(&parse(&[hostile])) {
            Decision::Fail(Failure::BadChallenge {
                scheme: Scheme::Ntlm,
                ..
            }) => {}
            other => panic!("{hostile}: {other:?}"),
        }
    }
}

/// Which CONNECTs may go again on a new connection after the proxy closed without a byte of
/// reply: only those without credentials (the first of `any`, NTLM's NEGOTIATE); one with
/// credentials is never sent twice (the proxy may have counted it).
#[test]
fn only_a_connect_without_credentials_is_sent_again_after_a_silent_close() {
    let password = pw();
    let mut x = exchange(Some(ProxyAuth::Basic), &password);
    assert!(x.first().is_some());
    let why = x.unanswered().expect("Basic went with the first CONNECT");
    assert!(
        why.contains("Basic credentials") && why.contains("not sent again"),
        "{why}"
    );

    let mut x = exchange(Some(ProxyAuth::Any), &password);
    assert!(x.first().is_none());
    assert_eq!(x.unanswered(), None, "the probe carries nothing");
    assert!(matches!(
        x.on_challenge(&parse(&[DIGEST])),
        Decision::Retry(_)
    ));
    let why = x.unanswered().expect("the Digest answer");
    assert!(why.contains("Digest credentials"), "{why}");

    let user_password = pw();
    let mut x = Exchange::new(
        Some(ProxyAuth::Ntlm),
        Some(Credentials {
            user: "CORP\\agent",
            password: &user_password,
        }),
        "c:1",
    );
    x.first();
    assert!(matches!(
        x.on_challenge(&parse(&["NTLM"])),
        Decision::Retry(_)
    ));
    assert_eq!(x.unanswered(), None, "the NEGOTIATE proves nothing");
    assert!(matches!(
        x.on_challenge(&parse(&[&ntlm_type2()])),
        Decision::Retry(_)
    ));
    let why = x.unanswered().expect("the AUTHENTICATE");
    assert!(why.contains("in the middle of NTLM"), "{why}");
    for secret in x.sent_values() {
        assert!(!why.contains(&text(secret)));
    }
}

/// A 407 whose connection closes, carrying the next step of a connection-bound scheme: the
/// step is not made (it would answer a connection that is gone), and the failure says so.
#[test]
fn a_closing_407_mid_ntlm_is_not_answered() {
    let password = pw();
    let mut x = Exchange::new(
        Some(ProxyAuth::Ntlm),
        Some(Credentials {
            user: "CORP\\agent",
            password: &password,
        }),
        "c:1",
    );
    x.first();
    // The probe's 407 may close: the NEGOTIATE goes on a new connection.
    x.reply_closes(true);
    assert!(matches!(
        x.on_challenge(&parse(&["NTLM"])),
        Decision::Retry(_)
    ));
    x.reply_closes(true);
    let failure = match x.on_challenge(&parse(&[&ntlm_type2()])) {
        Decision::Fail(f @ Failure::ClosedMidExchange(Scheme::Ntlm)) => f,
        other => panic!("{other:?}"),
    };
    assert_eq!(x.sent_values().len(), 0, "no AUTHENTICATE made");
    let message = failure.describe("NTLM");
    assert!(message.contains("in the middle of NTLM"), "{message}");
    assert!(message.contains("one connection"), "{message}");
    assert!(failure.hint("NTLM").contains("kept alive"));
    // Digest answers a closing 407 on a new connection as before.
    let mut x = exchange(Some(ProxyAuth::Digest), &password);
    x.first();
    x.reply_closes(true);
    assert!(matches!(
        x.on_challenge(&parse(&[DIGEST])),
        Decision::Retry(_)
    ));
}
