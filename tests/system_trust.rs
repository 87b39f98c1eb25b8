//! Issue 11 §3: a failure to load the system trust store is not cached for the life of the
//! process. With `SSL_CERT_FILE` and `SSL_CERT_DIR` pointing at empty places, an open that
//! trusts the system store fails, naming the places tried and `ca_certificate`; once the
//! store holds the collector's CA, the next open of the same config succeeds.
//!
//! The environment is process-wide: this binary holds this one test and nothing else, so no
//! other thread reads the environment while it changes.

mod support;

use dragent_tunnel::error::{CertProblem, ErrorKind};
use dragent_tunnel::{Connection, Status};
use dtun_testenv::collector::EchoServer;
use support::*;

#[test]
fn an_empty_system_store_is_read_again_at_the_next_open() {
    let env = Env::new("system-trust");
    let collector = EchoServer::start(Some(env.server_tls(Cert::Trusted))).expect("collector");
    let empty_file = env.dir().join("empty-bundle.pem");
    std::fs::write(&empty_file, b"").unwrap();
    let empty_dir = env.dir().join("empty-certs");
    std::fs::create_dir(&empty_dir).unwrap();
    std::env::set_var("SSL_CERT_FILE", &empty_file);
    std::env::set_var("SSL_CERT_DIR", &empty_dir);

    // ssl: true without ca_certificate: the collector is checked against the system store,
    // directly and through a proxy (same failure, at the same stage).
    let proxy = dtun_testenv::proxy::TestProxy::start(Default::default()).expect("proxy");
    let direct = Yaml::collector(collector.port()).set("ssl", "true").build();
    let via_proxy = Yaml::collector(collector.port())
        .set("ssl", "true")
        .proxy(proxy.port())
        .build();
    for cfg in [&direct, &via_proxy] {
        let (conn, report) = Connection::open_with_report(cfg, OPEN_WAIT);
        let e = conn.expect_err("nothing to verify the collector against");
        assert_eq!(e.status(), Status::DTUN_ERR_COLLECTOR_CERT, "{e:?}");
        assert_eq!(
            e.kind(),
            &ErrorKind::Certificate(CertProblem::NoTrustAnchors)
        );
        assert_eq!(report.get("failed_stage"), Some("tls to collector"));
        let message = e.message();
        let file = format!("SSL_CERT_FILE={}", empty_file.display());
        let dir = format!("SSL_CERT_DIR={}", empty_dir.display());
        for words in ["system trust store is empty", &file, &dir, "ca_certificate"] {
            assert!(
                message.contains(words),
                "message lacks {words:?}: {message}"
            );
        }
        let hint = report.get("hint").unwrap();
        for words in [
            "system trust store is empty",
            &file,
            &dir,
            "SSL_CERT_FILE or SSL_CERT_DIR",
            "set ca_certificate",
            "next open",
        ] {
            assert!(hint.contains(words), "hint lacks {words:?}: {hint}");
        }
    }

    // A missing file and folder: the same failure, each marked missing.
    std::env::set_var("SSL_CERT_FILE", env.dir().join("no-such-bundle.pem"));
    std::env::set_var("SSL_CERT_DIR", env.dir().join("no-such-certs"));
    let e = Connection::open(&direct, OPEN_WAIT).expect_err("still nothing to trust");
    assert_eq!(
        e.kind(),
        &ErrorKind::Certificate(CertProblem::NoTrustAnchors)
    );
    assert!(
        e.message().contains("no-such-bundle.pem (missing)")
            && e.message().contains("no-such-certs (missing)"),
        "{e:?}"
    );

    // The store now holds the test CA: the same configs open, without being rebuilt.
    std::env::set_var("SSL_CERT_FILE", env.ca());
    for cfg in [&direct, &via_proxy] {
        let conn = open_ok(cfg);
        echo(&conn, b"trusted through the system store");
        conn.close();
    }

    // A store read with certificates is kept: emptying the environment again changes
    // nothing for this process.
    std::env::set_var("SSL_CERT_FILE", &empty_file);
    let conn = open_ok(&direct);
    echo(&conn, b"still trusted");
    conn.close();

    // Without either variable the distribution's places are searched, and named.
    std::env::remove_var("SSL_CERT_FILE");
    std::env::remove_var("SSL_CERT_DIR");
    let tried = dragent_tunnel::tls::places_tried();
    assert!(
        tried.starts_with("SSL_CERT_FILE and SSL_CERT_DIR (neither set), then the distribution's"),
        "{tried}"
    );
}
