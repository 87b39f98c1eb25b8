//! Our NTLMv2 client messages against an independent NTLM implementation: the squid helper
//! in `testenv/ntlm/` (pyspnego's acceptor, NTLMv2 only), fed a NEGOTIATE and an
//! AUTHENTICATE made by `dragent_tunnel::proxy::ntlm`. The right password gets `AF`, a wrong
//! one, or an unknown user, `NA`: the password is really checked.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use dragent_tunnel::proxy::ntlm::{self, Challenge};
use dtun_testenv::ntlm::{require_ntlm_helper_or_skip, write_user_file, NtlmHelper};

struct Running {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Running {
    fn start(helper: &NtlmHelper, dir: &std::path::Path) -> Running {
        let users = write_user_file(
            dir,
            &[
                ("CORP", "alice", "S3cret-pass"),
                ("corp.example", "bob", "Pässwörd"),
            ],
        )
        .expect("user file");
        let mut child = helper.command(&users).spawn().expect("start the helper");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        Running {
            child,
            stdin,
            stdout,
        }
    }

    fn ask(&mut self, line: &str) -> String {
        writeln!(self.stdin, "{line}").expect("write to the helper");
        self.stdin.flush().expect("flush");
        let mut reply = String::new();
        self.stdout.read_line(&mut reply).expect("read the helper");
        reply.trim_end().to_string()
    }

    /// One whole handshake; the helper's reply to the AUTHENTICATE.
    fn handshake(&mut self, proxy_user: &str, password: &str, seed: u8) -> String {
        let (domain, user) = ntlm::split_user(proxy_user);
        let type1 = ntlm::negotiate_message(domain, "WS01");
        let tt = self.ask(&format!("YR {}", B64.encode(type1)));
        let token = tt
            .strip_prefix("TT ")
            .unwrap_or_else(|| panic!("want TT, got {tt:?}"));
        let type2 = B64.decode(token).expect("base64 challenge");
        let challenge = Challenge::parse(&type2).expect("pyspnego's challenge parses");
        assert!(
            challenge.av.timestamp.is_some(),
            "pyspnego sends MsvAvTimestamp"
        );
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock");
        let type3 = ntlm::authenticate_message(
            &challenge,
            user,
            domain,
            password,
            "WS01",
            [seed; 8],
            ntlm::filetime(now),
        )
        .expect("authenticate");
        self.ask(&format!("KK {}", B64.encode(type3)))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("dtun-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

#[test]
fn real_ntlm_validator_accepts_the_right_password_only() {
    let Some(helper) =
        require_ntlm_helper_or_skip("real_ntlm_validator_accepts_the_right_password_only")
    else {
        return;
    };
    let dir = temp_dir("ntlm-helper");
    let mut h = Running::start(&helper, &dir);

    let ok = h.handshake(r"CORP\alice", "S3cret-pass", 1);
    assert_eq!(ok, r"AF CORP\alice");

    let wrong = h.handshake(r"CORP\alice", "S3cret-pasS", 2);
    assert!(wrong.starts_with("NA "), "wrong password: {wrong:?}");

    // The domain is matched without regard to case, the user name's case is folded into
    // NTOWFv2 (upper-cased), and user@domain is the same account as DOMAIN\user.
    let ok = h.handshake(r"corp\ALICE", "S3cret-pass", 3);
    assert!(ok.starts_with("AF "), "case-folded: {ok:?}");
    let ok = h.handshake("bob@corp.example", "Pässwörd", 4);
    assert_eq!(ok, r"AF corp.example\bob");
    let wrong = h.handshake("bob@corp.example", "Passwort", 5);
    assert!(
        wrong.starts_with("NA "),
        "wrong non-ASCII password: {wrong:?}"
    );

    let unknown = h.handshake(r"CORP\mallory", "S3cret-pass", 6);
    assert!(
        unknown.starts_with("NA ") || unknown.starts_with("BH "),
        "unknown user: {unknown:?}"
    );
    // Still serving after a refusal, and the refusal never echoes the password.
    assert!(!wrong.contains("Passwort"));
    let ok = h.handshake(r"CORP\alice", "S3cret-pass", 7);
    assert_eq!(ok, r"AF CORP\alice");

    // A KK without a YR, and garbage, are protocol errors.
    assert!(h.ask("KK AAAA").starts_with("BH "));
    assert!(h.ask("YR !!!").starts_with("BH "));
    drop(h);
    let _ = std::fs::remove_dir_all(&dir);
}
