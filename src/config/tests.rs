//! Tests of the configuration against ../shared/config.md: the agent documentation's three
//! proxy examples verbatim, every default, lenient scalars, every error, CA files, and
//! `set()`. Expected values are written from the spec, never copied from the code.

use super::*;

use std::sync::atomic::{AtomicUsize, Ordering};

use rustls_pki_types::ServerName;

use crate::error::Status;

/// A self-signed CA (P-256), made once with
/// `openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=test-ca -days 36500`.
const CA_PEM: &str = "-----BEGIN CERTIFICATE-----
MIIBfDCCASGgAwIBAgIUKmFLz6Y6WqQuHil+06C3GTBRKUEwCgYIKoZIzj0EAwIw
EjEQMA4GA1UEAwwHdGVzdC1jYTAgFw0yNjExMjcwMjIzMTdaGA8yMTI2MTEwMzAy
MjMxN1owEjEQMA4GA1UEAwwHdGVzdC1jYTBZMBMGByqGSM49AgEGCCqGSM49AwEH
A0IABCnDwPrC2Sv6oXfu057bjLaZCngZYUGhxjm1oKX0mAKk8Azl7WdBr/+YNi+W
Rr1WWw90PwFACk+SlfleWtBT+mOjUzBRMB0GA1UdDgQWBBRMtEKMa0cEikeWL53p
khWMre/VYjAfBgNVHSMEGDAWgBRMtEKMa0cEikeWL53pkhWMre/VYjAPBgNVHRMB
Af8EBTADAQH/MAoGCCqGSM49BAMCA0kAMEYCIQC9SfZ81uEv/MyZAt4Ip61UbJV5
th3inGjunbFs++RqhAIhAIT9RloTZktjUulT+zJHCK6N2CsPzz7fhmVD5ZQbvRDQ
-----END CERTIFICATE-----
";

/// A second self-signed CA (`/CN=test-ca-2`), for files of several certificates.
const CA2_PEM: &str = "-----BEGIN CERTIFICATE-----
MIIBfzCCASWgAwIBAgIUNuGsXFbADS47yavBv81RCZV/hzMwCgYIKoZIzj0EAwIw
FDESMBAGA1UEAwwJdGVzdC1jYS0yMCAXDTI2MTEyNzAyMjQxNVoYDzIxMjYxMTAz
MDIyNDE1WjAUMRIwEAYDVQQDDAl0ZXN0LWNhLTIwWTATBgcqhkjOPQIBBggqhkjO
PQMBBwNCAASxNk6TQ/K71NxWX8rEVRAPNVICbyj97OyAWh5wLSPCiVgwCvw2vTXO
WCa0mhHA5Hs28yFlOAWG11pTk/gOlLNuo1MwUTAdBgNVHQ4EFgQUXxX8ZFmx8X2o
usiV6SxmkDO5OPYwHwYDVR0jBBgwFoAUXxX8ZFmx8X2ousiV6SxmkDO5OPYwDwYD
VR0TAQH/BAUwAwEB/zAKBggqhkjOPQQDAgNIADBFAiAWXlw3+rTG9ztukyKP3+Rr
Q5Inf5NJDOuKSZU698NdKQIhAOgblge34Pd9YN6vna2y7yo5K/mZVGqmXowST/Zo
J7J9
-----END CERTIFICATE-----
";

/// A PEM private key: a valid PEM file that holds no certificate.
const KEY_PEM: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQghPUqz6aVOTijlZ0W
m6752Qhx2ggJNY3DdWUtSb9J7vqhRANCAATsggonksBEt3o11TvYzkgiMBtnOGBk
sCTaKw4i7Cmqx1joXsz3WvcJ+Q5CVe3AKrF3pOJWS4ynkaUBr9wFZepm
-----END PRIVATE KEY-----
";

// ---------------------------------------------------------------------------------------
// Helpers

/// A directory under the system temp dir, unique to this process and test, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "dtun-config-tests-{}-{tag}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }

    /// Writes `name` (subdirectories created) and returns its full path.
    fn file(&self, name: &str, contents: &[u8]) -> PathBuf {
        let path = self.0.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, contents).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        #[cfg(unix)]
        {
            // Make files that a test locked up removable again.
            use std::os::unix::fs::PermissionsExt;
            if let Ok(entries) = std::fs::read_dir(&self.0) {
                for entry in entries.flatten() {
                    let _ = std::fs::set_permissions(
                        entry.path(),
                        std::fs::Permissions::from_mode(0o700),
                    );
                }
            }
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn load(yaml: &str) -> TunnelConfig {
    match TunnelConfig::from_yaml(yaml) {
        Ok(cfg) => cfg,
        Err(e) => panic!("{yaml:?} rejected: {e:?}"),
    }
}

/// Whether `message` names `key` as `key:` (for `ssl`, not as part of `http_proxy.ssl`).
fn names_key(message: &str, key: &str) -> bool {
    let needle = format!("{key}:");
    message.match_indices(&needle).any(|(i, _)| {
        message[..i]
            .chars()
            .last()
            .is_none_or(|c| !(c == '.' || c == '_' || c.is_alphanumeric()))
    })
}

/// The error of a config that must be rejected with `DTUN_ERR_CONFIG`, naming `key`.
fn config_error(yaml: &str, key: &str) -> String {
    let err = match TunnelConfig::from_yaml(yaml) {
        Ok(cfg) => panic!("{yaml:?} accepted: {:?}", cfg.settings()),
        Err(e) => e,
    };
    assert_eq!(err.status(), Status::DTUN_ERR_CONFIG, "{yaml:?}: {err:?}");
    assert!(
        names_key(err.message(), key),
        "{yaml:?}: {key} not named in {err:?}"
    );
    err.message().to_owned()
}

/// The CONNECT request of the config's plan, as text.
fn request(cfg: &TunnelConfig) -> String {
    let plan = cfg.plan();
    let proxy = plan.proxy.as_ref().expect("a proxy is configured");
    String::from_utf8(proxy.request.expose().to_vec()).unwrap()
}

/// Everything a config holds, secrets included, to tell whether a failed `set` changed it.
fn snapshot(cfg: &TunnelConfig) -> Snapshot {
    cfg.snapshot()
}

fn dns(name: &str) -> ServerName<'static> {
    ServerName::try_from(name.to_owned()).unwrap()
}

/// Asserts every default of config.md, from the table (not from the code's constants).
fn assert_defaults(cfg: &TunnelConfig) {
    let s = cfg.settings();
    assert_eq!(s.collector, Host::Name("collector.sysdigcloud.com".into()));
    assert_eq!(s.collector_port, 6443);
    assert!(s.ssl);
    assert!(s.verify);
    assert!(s.ca.is_none());
    assert_eq!(s.root_dir, Path::new("/opt/draios"));
    assert_eq!(s.proxy.host, "");
    assert_eq!(s.proxy.port, 0);
    assert_eq!(s.proxy.user, "");
    assert!(s.proxy.password.is_empty());
    assert!(!s.proxy.ssl);
    assert!(s.proxy.verify);
    assert!(s.proxy.ca.is_none());
    assert!(!s.uses_proxy());
    assert_eq!(s.tcp_keepalive_s, 60);
    assert_eq!(s.tcp_user_timeout_ms, 120_000);

    // Direct TLS to the default collector, its certificate verified against its name.
    let plan = cfg.plan();
    assert!(plan.proxy.is_none());
    assert_eq!(
        plan.collector,
        Host::Name("collector.sysdigcloud.com".into())
    );
    assert_eq!(plan.collector_port, 6443);
    assert_eq!(plan.collector_authority(), "collector.sysdigcloud.com:6443");
    let tls = plan.collector_tls.as_ref().expect("ssl defaults to true");
    assert!(tls.verify);
    assert_eq!(tls.name, dns("collector.sysdigcloud.com"));
}

// ---------------------------------------------------------------------------------------
// The three examples of the agent documentation ("Enable HTTP Proxy for Agents"), verbatim

#[test]
fn doc_example_1_ssl_between_proxy_and_collector() {
    let cfg = load(
        "\
http_proxy:
    proxy_host: squid.yourdomain.com
    proxy_port: 3128
ssl: true
ssl_verify_certificate: true
",
    );
    let s = cfg.settings();
    assert_eq!(s.collector, Host::Name("collector.sysdigcloud.com".into()));
    assert_eq!(s.collector_port, 6443);
    assert!(s.ssl);
    assert!(s.verify);
    assert!(s.ca.is_none());
    assert_eq!(s.proxy.host, "squid.yourdomain.com");
    assert_eq!(s.proxy.port, 3128);
    assert_eq!(s.proxy.user, "");
    assert!(s.proxy.password.is_empty());
    assert!(!s.proxy.ssl);
    assert!(s.proxy.verify);
    assert!(s.proxy.ca.is_none());
    assert!(s.uses_proxy());

    let plan = cfg.plan();
    let proxy = plan.proxy.as_ref().unwrap();
    assert_eq!(proxy.host, Host::Name("squid.yourdomain.com".into()));
    assert_eq!(proxy.port, 3128);
    assert!(proxy.tls.is_none(), "plain TCP to the proxy");
    assert!(!proxy.authenticates);
    let tls = plan
        .collector_tls
        .as_ref()
        .expect("TLS to the collector inside the tunnel");
    assert!(tls.verify);
    assert_eq!(tls.name, dns("collector.sysdigcloud.com"));
    assert_eq!(
        request(&cfg),
        "CONNECT collector.sysdigcloud.com:6443 HTTP/1.1\r\n\
         Host: collector.sysdigcloud.com:6443\r\nUser-Agent: dragent-tunnel/0.1.0\r\n\
         \r\n"
    );
}

#[test]
fn doc_example_2_ssl_to_the_proxy() {
    let dir = TempDir::new("example2");
    // The documentation's /usr/proxy/proxy.crt, written where the test may write.
    let ca = dir.file("usr/proxy/proxy.crt", CA_PEM.as_bytes());
    let yaml = format!(
        "\
http_proxy:
    proxy_host: squid.yourdomain.com
    proxy_port: 3129
    ssl: true
    ssl_verify_certificate: true
    ca_certificate: {}
ssl: true
ssl_verify_certificate: true
",
        ca.display()
    );
    let cfg = load(&yaml);
    let s = cfg.settings();
    assert_eq!(s.collector, Host::Name("collector.sysdigcloud.com".into()));
    assert_eq!(s.collector_port, 6443);
    assert!(s.ssl);
    assert!(s.verify);
    assert!(s.ca.is_none(), "the proxy's CA file is not the collector's");
    assert_eq!(s.proxy.host, "squid.yourdomain.com");
    assert_eq!(s.proxy.port, 3129);
    assert_eq!(s.proxy.user, "");
    assert!(s.proxy.password.is_empty());
    assert!(s.proxy.ssl);
    assert!(s.proxy.verify);
    let proxy_ca = s
        .proxy
        .ca
        .as_ref()
        .expect("http_proxy.ca_certificate loaded");
    assert_eq!(proxy_ca.path(), ca);
    assert_eq!(proxy_ca.len(), 1);
    assert!(!proxy_ca.is_empty());
    assert_eq!(proxy_ca.roots().len(), 1);
    assert!(s.uses_proxy());

    let plan = cfg.plan();
    let proxy = plan.proxy.as_ref().unwrap();
    assert_eq!(proxy.host, Host::Name("squid.yourdomain.com".into()));
    assert_eq!(proxy.port, 3129);
    let proxy_tls = proxy.tls.as_ref().expect("TLS to the proxy");
    assert!(proxy_tls.verify);
    assert_eq!(proxy_tls.name, dns("squid.yourdomain.com"));
    assert!(!proxy.authenticates);
    let tls = plan.collector_tls.as_ref().expect("TLS to the collector");
    assert!(tls.verify);
    assert_eq!(tls.name, dns("collector.sysdigcloud.com"));
    assert!(
        !Arc::ptr_eq(&tls.config, &proxy_tls.config),
        "each side has its own TLS config"
    );
    assert_eq!(
        request(&cfg),
        "CONNECT collector.sysdigcloud.com:6443 HTTP/1.1\r\n\
         Host: collector.sysdigcloud.com:6443\r\nUser-Agent: dragent-tunnel/0.1.0\r\n\
         \r\n"
    );
}

#[test]
fn doc_example_3_ssl_with_username_and_password() {
    let cfg = load(
        "\
http_proxy:
    proxy_host: squid.yourdomain.com
    proxy_port: 3128
    proxy_user: sysdig_customer
    proxy_password: 12345
    ssl: true
    ssl_verify_certificate: true
ssl: true
",
    );
    let s = cfg.settings();
    assert_eq!(s.collector, Host::Name("collector.sysdigcloud.com".into()));
    assert_eq!(s.collector_port, 6443);
    assert!(s.ssl);
    assert!(s.verify, "ssl_verify_certificate defaults to true");
    assert!(s.ca.is_none());
    assert_eq!(s.proxy.host, "squid.yourdomain.com");
    assert_eq!(s.proxy.port, 3128);
    assert_eq!(s.proxy.user, "sysdig_customer");
    assert_eq!(s.proxy.password.expose(), b"12345");
    assert!(s.proxy.ssl);
    assert!(s.proxy.verify);
    assert!(s.proxy.ca.is_none());
    assert!(s.uses_proxy());

    let plan = cfg.plan();
    let proxy = plan.proxy.as_ref().unwrap();
    assert_eq!(proxy.host, Host::Name("squid.yourdomain.com".into()));
    assert_eq!(proxy.port, 3128);
    let proxy_tls = proxy.tls.as_ref().expect("TLS to the proxy");
    assert!(proxy_tls.verify);
    assert_eq!(proxy_tls.name, dns("squid.yourdomain.com"));
    assert!(proxy.authenticates);
    let tls = plan.collector_tls.as_ref().expect("TLS to the collector");
    assert!(tls.verify);
    assert_eq!(tls.name, dns("collector.sysdigcloud.com"));
    // base64("sysdig_customer:12345"), computed with `printf 'sysdig_customer:12345' | base64`.
    assert_eq!(
        request(&cfg),
        "CONNECT collector.sysdigcloud.com:6443 HTTP/1.1\r\n\
         Host: collector.sysdigcloud.com:6443\r\nUser-Agent: dragent-tunnel/0.1.0\r\n\
         Proxy-Authorization: Basic c3lzZGlnX2N1c3RvbWVyOjEyMzQ1\r\n\
         \r\n"
    );
    // Neither the password nor its encoding shows in the config's Debug or the route.
    for shown in [format!("{cfg:?}"), plan.route()] {
        assert!(!shown.contains("12345"), "{shown}");
        assert!(!shown.contains("c3lzZGlnX2N1c3RvbWVyOjEyMzQ1"), "{shown}");
    }
    assert!(
        plan.route().contains("squid.yourdomain.com:3128"),
        "{}",
        plan.route()
    );
}

// ---------------------------------------------------------------------------------------
// Defaults

#[test]
fn defaults_of_new() {
    assert_defaults(&TunnelConfig::new().unwrap());
}

#[test]
fn defaults_of_empty_text() {
    for yaml in [
        "",
        " ",
        "\n",
        "\n\n  \n",
        "# dragent.yaml\n# nothing here\n",
        "---\n",
        "---\n...\n",
        "~\n",
    ] {
        assert_defaults(&load(yaml));
    }
}

#[test]
fn defaults_of_null_values() {
    // A key present with no value (YAML null) is the same as an absent key.
    assert_defaults(&load(
        "\
collector:
collector_port:
ssl: ~
ssl_verify_certificate: null
ca_certificate:
root_dir:
http_proxy:
",
    ));
    assert_defaults(&load(
        "\
http_proxy:
    proxy_host:
    proxy_port: ~
    proxy_user:
    proxy_password:
    ssl:
    ssl_verify_certificate:
    ca_certificate: ''
",
    ));
}

/// A realistic dragent.yaml: the agent's other settings, of every YAML type.
const UNRELATED: &str = r#"
# Sysdig agent configuration
customerid: 01234567-89ab-cdef-0123-456789abcdef
tags: role:webserver,location:europe
extra_tags: [a, b]
k8s_cluster_name: prod-eu-1
log:
  file_priority: info
  console_priority: warning
  event_priority: none
defaults: &defaults
  interval: 10
  ssl: maybe
  collector_port: 70000
  enabled: no
app_checks:
  - name: redis
    check_module: redisdb
    pattern:
      comm: redis-server
    conf:
      host: 127.0.0.1
      port: "{port}"
    <<: *defaults
  - name: nginx
    check_module: nginx
    conf: *defaults
    retry: false
prometheus:
  enabled: true
  ssl: false
  http_proxy: {proxy_port: 99999}
  process_filter:
    - include:
        port: 9090
        conf:
          path: /metrics
jmx:
  per_process_beans:
    cassandra:
      pattern: cassandra
      beans:
        - query: "org.apache.cassandra.db:type=ColumnFamilies,*"
          attributes: [ReadCount, WriteCount]
sysdig_capture_enabled: false
memdump:
  enabled: false
  size: 1.5e9
watchdog:
  max_memory_usage_mb: 512
statsd: ~
multiline: |
  line one
  proxy_port: 1
folded: >
  folded text
negative: -7
date: 2024-01-01
binary: !!binary aGVsbG8=
set_of_things: !!set {a, b}
1234: numeric key
true: boolean key
"#;

#[test]
fn defaults_of_a_dragent_yaml_with_only_unrelated_keys() {
    assert_defaults(&load(UNRELATED));
}

#[test]
fn unknown_keys_are_ignored_whatever_their_type() {
    let yaml = format!(
        "{UNRELATED}
collector: collector-static.sysdigcloud.com
collector_port: 443
ssl: yes
http_proxy:
    proxy_host: proxy.corp.example
    unknown_proxy_option: [1, 2, {{a: b}}]
    proxy_timeout: 30
    nested: {{deeper: {{ssl: maybe}}}}
    proxy_port: 8080
    anchored: *defaults
"
    );
    let cfg = load(&yaml);
    let s = cfg.settings();
    assert_eq!(
        s.collector,
        Host::Name("collector-static.sysdigcloud.com".into())
    );
    assert_eq!(s.collector_port, 443);
    assert!(s.ssl);
    assert!(s.verify);
    assert_eq!(s.proxy.host, "proxy.corp.example");
    assert_eq!(s.proxy.port, 8080);
    assert!(!s.proxy.ssl);
    assert!(s.uses_proxy());
    assert_eq!(
        request(&cfg),
        "CONNECT collector-static.sysdigcloud.com:443 HTTP/1.1\r\n\
         Host: collector-static.sysdigcloud.com:443\r\nUser-Agent: dragent-tunnel/0.1.0\r\n\r\n"
    );
}

#[test]
fn keys_are_read_from_anchors_and_aliases() {
    // The agent's YAML reader follows aliases; so do we.
    let cfg = load(
        "\
common: &port 3128
proxy: &proxy
    proxy_host: squid.example
    proxy_port: *port
http_proxy: *proxy
",
    );
    assert_eq!(cfg.settings().proxy.host, "squid.example");
    assert_eq!(cfg.settings().proxy.port, 3128);
}

#[test]
fn proxy_used_only_with_host_and_port() {
    let cases = [
        ("http_proxy:\n    proxy_host: squid.example\n", false),
        ("http_proxy:\n    proxy_port: 3128\n", false),
        (
            "http_proxy:\n    proxy_host: squid.example\n    proxy_port: 0\n",
            false,
        ),
        (
            "http_proxy:\n    proxy_host: ''\n    proxy_port: 3128\n",
            false,
        ),
        (
            "http_proxy:\n    proxy_host: '  '\n    proxy_port: 3128\n",
            false,
        ),
        (
            "http_proxy:\n    proxy_host: squid.example\n    proxy_port: 3128\n",
            true,
        ),
        (
            "http_proxy:\n    proxy_port: 3128\n    proxy_user: u\n    proxy_password: p\n",
            false,
        ),
    ];
    for (yaml, used) in cases {
        let cfg = load(yaml);
        assert_eq!(cfg.settings().uses_proxy(), used, "{yaml:?}");
        assert_eq!(cfg.plan().proxy.is_some(), used, "{yaml:?}");
    }
}

// ---------------------------------------------------------------------------------------
// Lenient scalars

#[test]
fn ports_as_quoted_strings() {
    let cfg = load(
        "\
collector_port: \"443\"
http_proxy:
    proxy_host: squid.example
    proxy_port: \"8080\"
",
    );
    assert_eq!(cfg.settings().collector_port, 443);
    assert_eq!(cfg.settings().proxy.port, 8080);
    let cfg = load("http_proxy:\n    proxy_host: squid.example\n    proxy_port: '3128'\n");
    assert_eq!(cfg.settings().proxy.port, 3128);
    let cfg = load("collector_port: ' 8443 '\n");
    assert_eq!(cfg.settings().collector_port, 8443);
}

#[test]
fn port_boundaries() {
    assert_eq!(load("collector_port: 1\n").settings().collector_port, 1);
    assert_eq!(
        load("collector_port: 65535\n").settings().collector_port,
        65535
    );
    assert_eq!(
        load("http_proxy:\n    proxy_port: 65535\n")
            .settings()
            .proxy
            .port,
        65535
    );
    assert_eq!(
        load("http_proxy:\n    proxy_port: 0\n")
            .settings()
            .proxy
            .port,
        0
    );
}

#[test]
fn passwords_as_numbers_keep_their_text() {
    // yaml-cpp's as<std::string>() gives the scalar as written, whatever it looks like.
    for (written, expected) in [
        ("12345", "12345"),
        ("012345", "012345"),
        ("1.50", "1.50"),
        ("1e3", "1e3"),
        ("0x1F", "0x1F"),
        ("-0", "-0"),
        ("yes", "yes"),
        ("'12345'", "12345"),
        ("\"p:a@s/s%w+rd\"", "p:a@s/s%w+rd"),
        ("p:a@s/s%w+rd", "p:a@s/s%w+rd"),
        ("pässwörd", "pässwörd"),
    ] {
        let yaml = format!(
            "http_proxy:\n    proxy_host: squid.example\n    proxy_port: 3128\n    \
             proxy_user: agent\n    proxy_password: {written}\n"
        );
        let cfg = load(&yaml);
        assert_eq!(
            cfg.settings().proxy.password.expose(),
            expected.as_bytes(),
            "{written}"
        );
        let basic = base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("agent:{expected}"),
        );
        assert!(
            request(&cfg).contains(&format!("\r\nProxy-Authorization: Basic {basic}\r\n")),
            "{written}"
        );
    }
}

#[test]
fn user_without_password_is_allowed() {
    let cfg = load(
        "http_proxy:\n    proxy_host: squid.example\n    proxy_port: 3128\n    proxy_user: agent\n",
    );
    assert!(cfg.settings().proxy.password.is_empty());
    // base64("agent:")
    assert!(request(&cfg).contains("\r\nProxy-Authorization: Basic YWdlbnQ6\r\n"));
}

/// Every spelling of `word` the agent accepts: lower, upper, capitalised, and mixed case.
fn spellings(word: &str) -> Vec<String> {
    let mut capitalised = word[..1].to_ascii_uppercase();
    capitalised.push_str(&word[1..]);
    let mixed: String = word
        .chars()
        .enumerate()
        .map(|(i, c)| {
            if i % 2 == 1 {
                c.to_ascii_uppercase()
            } else {
                c
            }
        })
        .collect();
    vec![word.into(), word.to_ascii_uppercase(), capitalised, mixed]
}

const BOOLEAN_WORDS: [(&str, bool); 6] = [
    ("true", true),
    ("false", false),
    ("yes", true),
    ("no", false),
    ("on", true),
    ("off", false),
];

/// A boolean key: its dotted name, its YAML text for a value, and how to read it back.
type BooleanKey = (&'static str, fn(&str) -> String, fn(&Settings) -> bool);

fn boolean_keys() -> Vec<BooleanKey> {
    vec![
        ("ssl", |v| format!("ssl: {v}\n"), |s| s.ssl),
        (
            "ssl_verify_certificate",
            |v| format!("ssl_verify_certificate: {v}\n"),
            |s| s.verify,
        ),
        (
            "http_proxy.ssl",
            |v| format!("http_proxy:\n    ssl: {v}\n"),
            |s| s.proxy.ssl,
        ),
        (
            "http_proxy.ssl_verify_certificate",
            |v| format!("http_proxy:\n    ssl_verify_certificate: {v}\n"),
            |s| s.proxy.verify,
        ),
    ]
}

#[test]
fn booleans_in_any_case() {
    for (key, yaml_of, read) in boolean_keys() {
        for (word, value) in BOOLEAN_WORDS {
            for spelled in spellings(word) {
                for written in [spelled.clone(), format!("\"{spelled}\"")] {
                    let cfg = load(&yaml_of(&written));
                    assert_eq!(read(cfg.settings()), value, "{key}: {written}");

                    let mut cfg = TunnelConfig::new().unwrap();
                    cfg.set(key, &written).unwrap();
                    assert_eq!(read(cfg.settings()), value, "set {key} {written}");
                }
            }
        }
    }
    // The documented spellings the issue names.
    let cfg = load("ssl: YES\nssl_verify_certificate: Off\n");
    assert!(cfg.settings().ssl);
    assert!(!cfg.settings().verify);
}

#[test]
fn verification_off_is_allowed_on_each_side_independently() {
    let cfg = load(
        "\
ssl_verify_certificate: false
http_proxy:
    proxy_host: squid.example
    proxy_port: 3129
    ssl: true
",
    );
    let plan = cfg.plan();
    assert!(!plan.collector_tls.as_ref().unwrap().verify);
    assert!(plan.proxy.as_ref().unwrap().tls.as_ref().unwrap().verify);

    let cfg = load(
        "\
http_proxy:
    proxy_host: squid.example
    proxy_port: 3129
    ssl: true
    ssl_verify_certificate: no
",
    );
    let plan = cfg.plan();
    assert!(plan.collector_tls.as_ref().unwrap().verify);
    assert!(!plan.proxy.as_ref().unwrap().tls.as_ref().unwrap().verify);
}

#[test]
fn plain_collector_through_plain_proxy() {
    let cfg = load(
        "\
ssl: false
collector: collector.internal
collector_port: 6666
http_proxy:
    proxy_host: 10.0.0.5
    proxy_port: 3128
",
    );
    let plan = cfg.plan();
    assert!(plan.collector_tls.is_none());
    let proxy = plan.proxy.as_ref().unwrap();
    assert!(proxy.tls.is_none());
    assert_eq!(proxy.host, Host::Ip("10.0.0.5".parse().unwrap()));
    assert_eq!(
        request(&cfg),
        "CONNECT collector.internal:6666 HTTP/1.1\r\nHost: collector.internal:6666\r\nUser-Agent: dragent-tunnel/0.1.0\r\n\r\n"
    );
}

// ---------------------------------------------------------------------------------------
// IP literals

#[test]
fn ipv6_collector_is_bracketed_in_the_request() {
    for (written, ip, authority) in [
        ("\"::1\"", "::1", "[::1]:6443"),
        ("::1", "::1", "[::1]:6443"),
        ("\"[2001:db8::1]\"", "2001:db8::1", "[2001:db8::1]:6443"),
        (
            "'2001:DB8:0:0:0:0:0:1'",
            "2001:db8::1",
            "[2001:db8::1]:6443",
        ),
    ] {
        let yaml = format!(
            "collector: {written}\nhttp_proxy:\n    proxy_host: squid.example\n    proxy_port: 3128\n"
        );
        let cfg = load(&yaml);
        assert_eq!(
            cfg.settings().collector,
            Host::Ip(ip.parse().unwrap()),
            "{written}"
        );
        assert_eq!(
            request(&cfg),
            format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: dragent-tunnel/0.1.0\r\n\r\n"),
            "{written}"
        );
        // TLS checks the IP address (no SNI for IP literals).
        assert_eq!(
            cfg.plan().collector_tls.as_ref().unwrap().name,
            ServerName::IpAddress(ip.parse::<std::net::IpAddr>().unwrap().into())
        );
    }
}

#[test]
fn ipv4_collector_and_ipv6_proxy() {
    let cfg = load(
        "\
collector: 192.0.2.7
collector_port: 443
http_proxy:
    proxy_host: \"[2001:db8::3128]\"
    proxy_port: 3128
",
    );
    assert_eq!(
        request(&cfg),
        "CONNECT 192.0.2.7:443 HTTP/1.1\r\nHost: 192.0.2.7:443\r\nUser-Agent: dragent-tunnel/0.1.0\r\n\r\n"
    );
    let plan = cfg.plan();
    let proxy = plan.proxy.as_ref().unwrap();
    assert_eq!(proxy.host, Host::Ip("2001:db8::3128".parse().unwrap()));
    assert_eq!(proxy.host.authority(proxy.port), "[2001:db8::3128]:3128");
}

// ---------------------------------------------------------------------------------------
// Errors

#[test]
fn proxy_port_out_of_range() {
    for value in [
        "70000",
        "65536",
        "99999999999999999999",
        "-1",
        "3128.0",
        "0x50",
        "\"\"",
        "abc",
    ] {
        let yaml = format!("http_proxy:\n    proxy_host: squid.example\n    proxy_port: {value}\n");
        let msg = config_error(&yaml, "http_proxy.proxy_port");
        let shown = value.trim_matches('"');
        assert!(msg.contains(shown), "{msg}");
    }
    let msg = config_error(
        "http_proxy:\n    proxy_port: 70000\n",
        "http_proxy.proxy_port",
    );
    assert!(
        msg.contains("number 70000"),
        "the value's type is named: {msg}"
    );
}

#[test]
fn collector_port_zero_or_not_a_number() {
    let msg = config_error("collector_port: 0\n", "collector_port");
    assert!(msg.contains('0'), "{msg}");
    let msg = config_error("collector_port: abc\n", "collector_port");
    assert!(msg.contains("abc"), "{msg}");
    assert!(msg.contains("text"), "the value's type is named: {msg}");
    for value in ["65536", "-6443", "6443.5", "'six'", "true", "\"\""] {
        config_error(&format!("collector_port: {value}\n"), "collector_port");
    }
}

#[test]
fn booleans_that_are_not() {
    for (key, yaml_of, _) in boolean_keys() {
        for value in [
            "maybe",
            "1",
            "0",
            "y",
            "n",
            "enable",
            "tru",
            "'yes please'",
            "2",
        ] {
            let msg = config_error(&yaml_of(value), key);
            assert!(msg.contains(value.trim_matches('\'')), "{msg}");
        }
    }
    let msg = config_error("ssl: maybe\n", "ssl");
    assert!(msg.contains("maybe"), "{msg}");
}

#[test]
fn proxy_ssl_requires_ssl_in_a_file() {
    for yaml in [
        "ssl: false\nhttp_proxy:\n    proxy_host: squid.example\n    proxy_port: 3129\n    ssl: true\n",
        "http_proxy:\n    proxy_host: squid.example\n    proxy_port: 3129\n    ssl: true\nssl: false\n",
        "http_proxy:\n    ssl: yes\nssl: no\n",
        "ssl: Off\nhttp_proxy:\n    ssl: On\n",
    ] {
        let msg = config_error(yaml, "http_proxy.ssl");
        assert!(msg.contains("ssl: true"), "{msg}");
    }
    // Allowed: both off, both on, or only the end-to-end one.
    load("ssl: false\nhttp_proxy:\n    ssl: false\n");
    load("ssl: true\nhttp_proxy:\n    ssl: true\n");
    load("ssl: true\nhttp_proxy:\n    ssl: false\n");
}

#[test]
fn proxy_ssl_requires_ssl_via_set_in_both_orders() {
    let mut cfg = TunnelConfig::new().unwrap();
    cfg.set("http_proxy.ssl", "true").unwrap();
    let before = snapshot(&cfg);
    let err = cfg.set("ssl", "false").unwrap_err();
    assert_eq!(err.status(), Status::DTUN_ERR_CONFIG);
    assert!(names_key(err.message(), "http_proxy.ssl"), "{err:?}");
    assert_eq!(snapshot(&cfg), before);
    assert!(cfg.settings().ssl);

    let mut cfg = TunnelConfig::new().unwrap();
    cfg.set("ssl", "off").unwrap();
    let before = snapshot(&cfg);
    let err = cfg.set("http_proxy.ssl", "yes").unwrap_err();
    assert_eq!(err.status(), Status::DTUN_ERR_CONFIG);
    assert!(names_key(err.message(), "http_proxy.ssl"), "{err:?}");
    assert_eq!(snapshot(&cfg), before);
    assert!(!cfg.settings().proxy.ssl);

    // Undoing in the right order works.
    let mut cfg = TunnelConfig::new().unwrap();
    cfg.set("http_proxy.ssl", "true").unwrap();
    cfg.set("http_proxy.ssl", "false").unwrap();
    cfg.set("ssl", "false").unwrap();
    assert!(!cfg.settings().ssl);
}

#[test]
fn http_proxy_not_a_mapping() {
    let msg = config_error("http_proxy: [1, 2]\n", "http_proxy");
    assert!(msg.contains("sequence"), "the value's type is named: {msg}");
    config_error("http_proxy: squid.example:3128\n", "http_proxy");
    config_error("http_proxy: 3128\n", "http_proxy");
    config_error("http_proxy: true\n", "http_proxy");
}

#[test]
fn scalar_keys_given_a_mapping_or_a_list() {
    let msg = config_error(
        "http_proxy:\n    proxy_port: {a: 1}\n",
        "http_proxy.proxy_port",
    );
    assert!(msg.contains("map"), "the value's type is named: {msg}");
    let msg = config_error(
        "http_proxy:\n    proxy_host: [a, b]\n",
        "http_proxy.proxy_host",
    );
    assert!(msg.contains("sequence"), "{msg}");
    config_error("collector: {host: x}\n", "collector");
    config_error("collector_port: [6443]\n", "collector_port");
    config_error("ssl:\n  - true\n", "ssl");
    config_error("ca_certificate: {path: /x}\n", "ca_certificate");
    config_error("root_dir: [/opt]\n", "root_dir");
    config_error("http_proxy:\n    ssl: {}\n", "http_proxy.ssl");
    config_error(
        "http_proxy:\n    proxy_user: [u]\n",
        "http_proxy.proxy_user",
    );
    config_error(
        "http_proxy:\n    ca_certificate: []\n",
        "http_proxy.ca_certificate",
    );
}

#[test]
fn yaml_syntax_error_gives_line_and_column() {
    // Line 4 is `    proxy_port: 3128: 1`; its second ':' is the 21st character.
    let yaml = "\
collector: collector.example
http_proxy:
    proxy_host: squid.example
    proxy_port: 3128: 1
";
    let err = TunnelConfig::from_yaml(yaml).unwrap_err();
    assert_eq!(err.status(), Status::DTUN_ERR_CONFIG);
    assert!(err.message().contains("line 4 column 21"), "{err:?}");

    // A tab indenting line 2: the tab is at column 1.
    let err = TunnelConfig::from_yaml("ssl: true\n\tcollector: x\n").unwrap_err();
    assert_eq!(err.status(), Status::DTUN_ERR_CONFIG);
    assert!(err.message().contains("line 2 column 1"), "{err:?}");
}

#[test]
fn password_as_a_mapping_is_an_error_without_the_password() {
    for yaml in [
        "http_proxy:\n    proxy_password: {hunter2: sekrit}\n",
        "http_proxy:\n    proxy_password:\n        hunter2: sekrit\n",
        "http_proxy:\n    proxy_password: [hunter2, sekrit]\n",
    ] {
        let msg = config_error(yaml, "http_proxy.proxy_password");
        assert!(!msg.contains("hunter2"), "{msg}");
        assert!(!msg.contains("sekrit"), "{msg}");
    }
}

#[test]
fn collector_injection_and_junk_rejected() {
    for value in [
        "\"collector.example\\r\\nX-Injected: 1\"",
        "\"collector.example\\nX: y\"",
        "\"collector.example\\0\"",
        "\"collector example\"",
        "\"collector.example \\t x\"",
        "collector.example:6443",
        "\"[::1]:6443\"",
        "collector.example/path",
        "user@collector.example",
        "https://collector.example",
        "\"collector..example\"",
        "\"\"",
        "999",
        "1.2.3",
        "-collector.example",
        "collector-.example",
        "\"ünicode.example\"",
    ] {
        let msg = config_error(&format!("collector: {value}\n"), "collector");
        assert!(!msg.contains('\r') && !msg.contains('\n'), "{msg:?}");

        let yaml = format!("http_proxy:\n    proxy_host: {value}\n    proxy_port: 3128\n");
        if value != "\"\"" {
            config_error(&yaml, "http_proxy.proxy_host");
        }
    }
}

#[test]
fn user_with_colon_or_control_characters_rejected() {
    for value in [
        "a:b",
        "\"agent:\"",
        "\":\"",
        "\"agent\\r\\nX-Injected: 1\"",
        "\"a\\tb\"",
        "\"a\\0\"",
    ] {
        let yaml = format!(
            "http_proxy:\n    proxy_host: squid.example\n    proxy_port: 3128\n    proxy_user: {value}\n    proxy_password: pw\n"
        );
        config_error(&yaml, "http_proxy.proxy_user");
    }
}

#[test]
fn the_password_never_appears_in_an_error() {
    const PW: &str = "S3cr3tPw";
    let proxy = format!(
        "http_proxy:\n    proxy_host: squid.example\n    proxy_port: 3128\n    proxy_user: agent\n    proxy_password: {PW}\n"
    );
    let failing = [
        format!("{proxy}ssl: maybe\n"),
        format!("{proxy}collector_port: 0\n"),
        format!("{proxy}    ssl: true\nssl: false\n"),
        format!("{proxy}    ca_certificate: /nonexistent/{}/ca.pem\n", "dir"),
        format!("{proxy}    proxy_port: 70000\n"),
        format!("{proxy}    proxy_password: again\n"),
        format!("{proxy}  bad indentation: x\n"),
        "http_proxy:\n    proxy_password: S3cr3tPw: x\n".into(),
        "http_proxy:\n    proxy_password: \"S3cr3tPw\n".into(),
        "http_proxy:\n    proxy_password: 'S3cr3tPw\n".into(),
        "http_proxy:\n    proxy_password: *S3cr3tPw\n".into(),
        "http_proxy:\n    proxy_password: [S3cr3tPw]\n".into(),
        "http_proxy:\n    proxy_password: {S3cr3tPw: 1}\n".into(),
        "http_proxy:\n    proxy_password: S3cr3tPw\n  - x\n".into(),
        "http_proxy:\n    proxy_password: S3cr3tPw\n    proxy_password: S3cr3tPw\n".into(),
        "http_proxy: S3cr3tPw\n".into(),
        "S3cr3tPw\n".into(),
        "- S3cr3tPw\n".into(),
        "http_proxy:\n    proxy_password: S3cr3tPw\n---\nx: 1\n".into(),
    ];
    for yaml in &failing {
        let err = TunnelConfig::from_yaml(yaml).expect_err(yaml);
        assert_eq!(err.status(), Status::DTUN_ERR_CONFIG, "{yaml:?}");
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains(PW), "{yaml:?}: {shown}");
    }

    // Through set(): neither the new value nor the one already held.
    let mut cfg = load(&proxy);
    for (key, value) in [
        ("http_proxy.proxy_password", "S3cr3tPw: x"),
        ("http_proxy.proxy_password", "[S3cr3tPw]"),
        ("http_proxy.proxy_password", "{S3cr3tPw: 1}"),
        ("http_proxy.proxy_password", "'S3cr3tPw"),
        ("http_proxy.proxy_password", "@S3cr3tPw"),
        ("http_proxy.proxy_user", "agent:S3cr3tPw"),
    ] {
        let err = cfg.set(key, value).expect_err(value);
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains(PW), "set {key}: {shown}");
    }
    assert_eq!(cfg.settings().proxy.password.expose(), PW.as_bytes());

    // Nor in the config's Debug, nor in the route, nor the Basic value.
    let basic = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        format!("agent:{PW}"),
    );
    assert!(request(&cfg).contains(&basic));
    for shown in [
        format!("{cfg:?}"),
        format!("{:?}", cfg.settings()),
        cfg.plan().route(),
    ] {
        assert!(!shown.contains(PW), "{shown}");
        assert!(!shown.contains(&basic), "{shown}");
    }
}

#[test]
fn config_file_errors_name_the_file() {
    let dir = TempDir::new("file");
    let good = dir.file(
        "dragent.yaml",
        b"http_proxy:\n    proxy_host: squid.example\n    proxy_port: 3128\n",
    );
    let cfg = TunnelConfig::from_file(&good).unwrap();
    assert_eq!(cfg.settings().proxy.port, 3128);

    let missing = dir.path().join("missing.yaml");
    let err = TunnelConfig::from_file(&missing).unwrap_err();
    assert_eq!(err.status(), Status::DTUN_ERR_CONFIG);
    assert!(
        err.message().contains(&missing.display().to_string()),
        "{err:?}"
    );

    let binary = dir.file("binary.yaml", b"ssl: \xff\xfe\n");
    let err = TunnelConfig::from_file(&binary).unwrap_err();
    assert_eq!(err.status(), Status::DTUN_ERR_CONFIG);
    assert!(
        err.message().contains(&binary.display().to_string()),
        "{err:?}"
    );

    let bad = dir.file("bad.yaml", b"collector_port: 0\n");
    let err = TunnelConfig::from_file(&bad).unwrap_err();
    assert_eq!(err.status(), Status::DTUN_ERR_CONFIG);
    assert!(
        err.message().contains(&bad.display().to_string()),
        "{err:?}"
    );
    assert!(names_key(err.message(), "collector_port"), "{err:?}");

    let empty = dir.file("empty.yaml", b"");
    assert_defaults(&TunnelConfig::from_file(&empty).unwrap());
}

/// A dragent.yaml that is not UTF-8 is wiped before the error returns: the buffer that
/// held the file is the one zeroed.
#[test]
fn a_config_that_is_not_utf8_is_wiped() {
    let bytes = b"http_proxy:\n  proxy_password: Zq9-secret-\xff-Zq9\n".to_vec();
    let (len, at) = (bytes.len(), bytes.as_ptr());
    let wiped = utf8_or_wiped(bytes).expect_err("not UTF-8");
    assert_eq!((wiped.len(), wiped.as_ptr()), (len, at), "the same buffer");
    assert!(wiped.iter().all(|&b| b == 0), "{wiped:?}");
    // UTF-8 passes unchanged.
    assert_eq!(
        utf8_or_wiped(b"ssl: true\n".to_vec()).unwrap(),
        "ssl: true\n"
    );

    // Through from_file: a wipe of the file's length happens before the error.
    let dir = TempDir::new("not-utf8");
    let path = dir.file(
        "dragent.yaml",
        b"http_proxy:\n  proxy_password: Zq9-\xfe\xff\n",
    );
    let size = std::fs::metadata(&path).unwrap().len() as usize;
    let (result, wipes) = secret::observed::wipes_of(|| TunnelConfig::from_file(&path));
    let err = result.unwrap_err();
    assert!(err.message().contains("not UTF-8"), "{err:?}");
    assert!(
        wipes.iter().any(|r| r.len() == size),
        "no wipe of {size} bytes: {wipes:?}"
    );
}

/// A reader that hands out `data` in pieces of `piece` bytes, then fails; it notes where in
/// memory each piece went.
struct Dribble {
    data: Vec<u8>,
    piece: usize,
    fail_at_end: bool,
    landed: Vec<std::ops::Range<usize>>,
}

impl std::io::Read for Dribble {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.data.is_empty() {
            return if self.fail_at_end {
                Err(std::io::Error::other("disk on fire"))
            } else {
                Ok(0)
            };
        }
        let n = self.piece.min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data.drain(..n);
        let start = buf.as_ptr() as usize;
        self.landed.push(start..start + n);
        Ok(n)
    }
}

/// Every buffer the file's bytes were read into is wiped: each one the read outgrew, and
/// all of them when the read fails halfway.
#[test]
fn reading_a_config_file_leaves_no_unwiped_copy() {
    let data: Vec<u8> = (0..5000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let covered = |landed: &[std::ops::Range<usize>], wipes: &[std::ops::Range<usize>]| {
        landed
            .iter()
            .filter(|piece| {
                !wipes
                    .iter()
                    .any(|w| w.start <= piece.start && piece.end <= w.end)
            })
            .cloned()
            .collect::<Vec<_>>()
    };
    // A size announced too small: the buffer grows several times.
    let mut reader = Dribble {
        data: data.clone(),
        piece: 700,
        fail_at_end: false,
        landed: Vec::new(),
    };
    let (read, wipes) = secret::observed::wipes_of(|| read_all_wiping(&mut reader, 10));
    let read = read.unwrap();
    assert_eq!(read, data);
    let final_buffer = read.as_ptr() as usize..read.as_ptr() as usize + read.len();
    let outgrown: Vec<_> = reader
        .landed
        .iter()
        .filter(|p| !(final_buffer.start <= p.start && p.end <= final_buffer.end))
        .cloned()
        .collect();
    assert!(!outgrown.is_empty(), "the buffer never grew");
    assert_eq!(
        covered(&outgrown, &wipes),
        vec![],
        "outgrown buffers left unwiped"
    );

    // The announced size: one buffer, never grown, nothing wiped (it is returned).
    let mut reader = Dribble {
        data: data.clone(),
        piece: 4096,
        fail_at_end: false,
        landed: Vec::new(),
    };
    let (read, wipes) = secret::observed::wipes_of(|| read_all_wiping(&mut reader, data.len()));
    assert_eq!(read.unwrap(), data);
    assert_eq!(wipes, vec![]);

    // A read error after some bytes: everything read so far is wiped.
    let mut reader = Dribble {
        data: data.clone(),
        piece: 900,
        fail_at_end: true,
        landed: Vec::new(),
    };
    let (read, wipes) = secret::observed::wipes_of(|| read_all_wiping(&mut reader, 100));
    assert_eq!(read.unwrap_err().to_string(), "disk on fire");
    assert_eq!(
        covered(&reader.landed, &wipes),
        vec![],
        "read bytes left unwiped"
    );
}

// ---------------------------------------------------------------------------------------
// CA files

const CA_KEYS: [&str; 2] = ["ca_certificate", "http_proxy.ca_certificate"];

fn ca_yaml(key: &str, path: &str) -> String {
    match key {
        "ca_certificate" => format!("ca_certificate: \"{path}\"\n"),
        _ => format!(
            "http_proxy:\n    proxy_host: squid.example\n    proxy_port: 3129\n    ssl: true\n    ca_certificate: \"{path}\"\n"
        ),
    }
}

/// A CA file that must be rejected, for both keys, in a file and via `set`: the error names
/// the key and the file.
fn assert_ca_rejected(path: &Path, why: &str) {
    assert_ca_rejected_saying(path, why, "");
}

/// [`assert_ca_rejected`], each error also saying `reason`.
fn assert_ca_rejected_saying(path: &Path, why: &str, reason: &str) {
    let shown = path.display().to_string();
    for key in CA_KEYS {
        let msg = config_error(&ca_yaml(key, &shown), key);
        assert!(msg.contains(&shown), "{why}: file not named: {msg}");
        assert!(msg.contains(reason), "{why}: {reason:?} not said: {msg}");

        let mut cfg = TunnelConfig::new().unwrap();
        let before = snapshot(&cfg);
        let err = cfg.set(key, &shown).unwrap_err();
        assert_eq!(err.status(), Status::DTUN_ERR_CONFIG, "{why}");
        assert!(names_key(err.message(), key), "{why}: {err:?}");
        assert!(err.message().contains(&shown), "{why}: {err:?}");
        assert!(err.message().contains(reason), "{why}: {err:?}");
        assert_eq!(snapshot(&cfg), before);
    }
}

#[test]
fn ca_file_valid_for_each_side() {
    let dir = TempDir::new("ca-ok");
    let one = dir.file("one.pem", CA_PEM.as_bytes());
    let two = dir.file("two.pem", format!("{CA_PEM}{CA2_PEM}").as_bytes());
    // Text around the PEM blocks (as `openssl x509 -text` leaves) is ignored.
    let chatty = dir.file(
        "chatty.pem",
        format!("subject=CN = test-ca\n{CA_PEM}\nsome notes\n{CA2_PEM}").as_bytes(),
    );
    let crlf = dir.file("crlf.pem", CA_PEM.replace('\n', "\r\n").as_bytes());
    for (path, count) in [(&one, 1), (&two, 2), (&chatty, 2), (&crlf, 1)] {
        let cfg = load(&ca_yaml("ca_certificate", &path.display().to_string()));
        let ca = cfg.settings().ca.as_ref().unwrap();
        assert_eq!(ca.path(), path.as_path());
        assert_eq!(ca.len(), count, "{}", path.display());
        assert!(cfg.settings().proxy.ca.is_none());

        let cfg = load(&ca_yaml(
            "http_proxy.ca_certificate",
            &path.display().to_string(),
        ));
        let ca = cfg.settings().proxy.ca.as_ref().unwrap();
        assert_eq!(ca.path(), path.as_path());
        assert_eq!(ca.len(), count, "{}", path.display());
        assert!(cfg.settings().ca.is_none());
    }
}

#[test]
fn ca_file_missing() {
    let dir = TempDir::new("ca-missing");
    assert_ca_rejected(&dir.path().join("nope.pem"), "missing");
    assert_ca_rejected(&dir.path().join("no/such/dir/ca.pem"), "missing directory");
}

#[test]
fn ca_file_unreadable() {
    let dir = TempDir::new("ca-unreadable");
    // A directory is never readable as a file, whoever runs the test.
    let sub = dir.path().join("a-directory.pem");
    std::fs::create_dir_all(&sub).unwrap();
    assert_ca_rejected(&sub, "a directory");

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let locked = dir.file("locked.pem", CA_PEM.as_bytes());
        std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).unwrap();
        let denied = "Permission denied";
        if std::fs::read(&locked).is_err() {
            // An ordinary user: mode 000 is unreadable as it is.
            assert_ca_rejected_saying(&locked, "mode 000", denied);
            return;
        }
        // Root (as in CI) reads any file: run the case on a thread that accesses files as
        // `nobody`.
        #[cfg(target_os = "linux")]
        {
            // The system trust store is read once per process: not as `nobody`.
            TunnelConfig::new().unwrap();
            let readable = dir.file("readable.pem", CA_PEM.as_bytes());
            let ran = as_nobody_on_this_thread_only(|| {
                if std::fs::read(&readable).is_err() {
                    return Err(format!(
                        "the test directory {} is not readable by nobody",
                        dir.path().display()
                    ));
                }
                let err = match std::fs::read(&locked) {
                    Ok(_) => panic!("nobody read the mode 000 file {}", locked.display()),
                    Err(e) => e,
                };
                assert_eq!(err.kind(), std::io::ErrorKind::PermissionDenied, "{err}");
                assert_ca_rejected_saying(&locked, "mode 000, read as nobody", denied);
                Ok(())
            });
            if let Err(why) = ran {
                skip_or_fail("ca_file_unreadable: the mode 000 case", &why);
            }
        }
        #[cfg(not(target_os = "linux"))]
        skip_or_fail(
            "ca_file_unreadable: the mode 000 case",
            "this process reads mode 000 files and cannot drop that right per thread here",
        );
    }
}

/// A case that cannot run here: a failure under `DTUN_REQUIRE_REAL_PROXIES=1` (the suite's
/// "every test really runs" flag), otherwise a skip said on stderr.
fn skip_or_fail(what: &str, why: &str) {
    let required = std::env::var("DTUN_REQUIRE_REAL_PROXIES").is_ok_and(|v| {
        matches!(
            v.trim().to_ascii_lowercase().as_str(),
            "1" | "on" | "true" | "yes"
        )
    });
    assert!(
        !required,
        "{what} cannot run ({why}), and DTUN_REQUIRE_REAL_PROXIES=1 forbids skipping it"
    );
    eprintln!("SKIPPED: {what}: {why}");
}

/// User and group `nobody`.
#[cfg(target_os = "linux")]
const NOBODY: libc::uid_t = 65534;

/// Runs `f` on a new thread whose file accesses are checked as user and group `nobody`.
///
/// Linux keeps credentials per thread; the C library makes `setuid` and its kin apply to
/// every thread, but not `setfsuid`/`setfsgid`, which change only the IDs that file
/// permissions are checked against, of the calling thread. Leaving fsuid 0 also drops
/// `CAP_DAC_OVERRIDE` and `CAP_DAC_READ_SEARCH` from that thread (capabilities(7)), so root's
/// right to read any file is gone there, and only there: the other tests' threads keep
/// theirs. `Err` when the IDs could not be changed (no `CAP_SETUID`, say).
#[cfg(target_os = "linux")]
fn as_nobody_on_this_thread_only(
    f: impl FnOnce() -> std::result::Result<(), String> + Send,
) -> std::result::Result<(), String> {
    fn fs_ids_of(task: &str) -> (String, String) {
        let status = std::fs::read_to_string(format!("{task}/status")).unwrap();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|ids| ids.split_whitespace().nth(3))
                .unwrap()
                .to_owned()
        };
        (field("Uid:"), field("Gid:"))
    }
    let outer = fs_ids_of("/proc/thread-self");
    let (dropped_tx, dropped_rx) = std::sync::mpsc::channel::<bool>();
    let (checked_tx, checked_rx) = std::sync::mpsc::channel::<()>();
    std::thread::scope(|scope| {
        let worker = scope.spawn(move || {
            // SAFETY: plain system calls on this thread's own credentials. Group first,
            // while the thread may still change it.
            let (uid, gid) = unsafe {
                libc::setfsgid(NOBODY);
                libc::setfsuid(NOBODY);
                // They report no error: an invalid ID (-1) changes nothing and returns the
                // current one.
                (
                    libc::setfsuid(libc::uid_t::MAX) as libc::uid_t,
                    libc::setfsgid(libc::gid_t::MAX) as libc::gid_t,
                )
            };
            let dropped = uid == NOBODY && gid == NOBODY;
            dropped_tx.send(dropped).unwrap();
            checked_rx.recv().unwrap();
            if !dropped {
                return Err(format!(
                    "setfsuid/setfsgid({NOBODY}) left fsuid {uid}, fsgid {gid} (no CAP_SETUID?)"
                ));
            }
            let ids = fs_ids_of("/proc/thread-self");
            assert_eq!(ids, (NOBODY.to_string(), NOBODY.to_string()));
            f()
        });
        let dropped = dropped_rx.recv().unwrap();
        // The change stayed on that thread: this one (and every other test's) is untouched.
        assert_eq!(fs_ids_of("/proc/thread-self"), outer, "dropped {dropped}");
        checked_tx.send(()).unwrap();
        worker.join().unwrap()
    })
}

#[test]
fn ca_file_empty() {
    let dir = TempDir::new("ca-empty");
    assert_ca_rejected(&dir.file("empty.pem", b""), "empty");
    assert_ca_rejected(&dir.file("blank.pem", b"\n \r\n\t\n"), "blank");
}

#[test]
fn ca_file_not_pem() {
    let dir = TempDir::new("ca-garbage");
    assert_ca_rejected(
        &dir.file("garbage.pem", b"this is not a certificate\n"),
        "text",
    );
    assert_ca_rejected(
        &dir.file(
            "binary.der",
            &[
                0x30, 0x82, 0x01, 0x7c, 0x30, 0x82, 0x01, 0x21, 0xa0, 0x03, 0x02, 0x01, 0x02,
            ],
        ),
        "DER",
    );
    assert_ca_rejected(
        &dir.file("key.pem", KEY_PEM.as_bytes()),
        "a key, no certificate",
    );
}

#[test]
fn ca_file_bad_pem() {
    let dir = TempDir::new("ca-badpem");
    assert_ca_rejected(
        &dir.file(
            "bad-base64.pem",
            b"-----BEGIN CERTIFICATE-----\n!!!! not base64 ****\n-----END CERTIFICATE-----\n",
        ),
        "bad base64",
    );
    // The body of a real certificate with a character knocked out.
    let mangled = CA_PEM.replacen("MIIBfDCC", "MIIBfDC*", 1);
    assert_ca_rejected(
        &dir.file("mangled.pem", mangled.as_bytes()),
        "mangled base64",
    );
    // Valid base64 that is not a certificate ("hello").
    assert_ca_rejected(
        &dir.file(
            "not-der.pem",
            b"-----BEGIN CERTIFICATE-----\naGVsbG8=\n-----END CERTIFICATE-----\n",
        ),
        "not DER",
    );
    // No END line.
    let cut = &CA_PEM[..CA_PEM.find("-----END").unwrap()];
    assert_ca_rejected(&dir.file("cut.pem", cut.as_bytes()), "no END line");
    // One good certificate and one bad: the whole file is rejected.
    let half = format!("{CA_PEM}-----BEGIN CERTIFICATE-----\n%%%%\n-----END CERTIFICATE-----\n");
    assert_ca_rejected(&dir.file("half.pem", half.as_bytes()), "second block bad");
}

#[test]
fn relative_ca_paths_resolve_against_root_dir() {
    let dir = TempDir::new("ca-relative");
    let collector_ca = dir.file("certs/collector.pem", CA_PEM.as_bytes());
    let proxy_ca = dir.file("proxy/proxy.crt", CA2_PEM.as_bytes());
    let root = dir.path().display().to_string();
    // root_dir written after the CA keys still applies to them.
    let yaml = format!(
        "\
ca_certificate: certs/collector.pem
http_proxy:
    proxy_host: squid.example
    proxy_port: 3129
    ssl: true
    ca_certificate: proxy/proxy.crt
root_dir: {root}
"
    );
    let cfg = load(&yaml);
    let s = cfg.settings();
    assert_eq!(s.root_dir, dir.path());
    assert_eq!(s.ca.as_ref().unwrap().path(), collector_ca);
    assert_eq!(s.proxy.ca.as_ref().unwrap().path(), proxy_ca);

    // Via set(): root_dir first, then a relative path.
    let mut cfg = TunnelConfig::new().unwrap();
    cfg.set("root_dir", &root).unwrap();
    cfg.set("ca_certificate", "certs/collector.pem").unwrap();
    cfg.set("http_proxy.ca_certificate", "proxy/proxy.crt")
        .unwrap();
    assert_eq!(cfg.settings().ca.as_ref().unwrap().path(), collector_ca);
    assert_eq!(cfg.settings().proxy.ca.as_ref().unwrap().path(), proxy_ca);

    // Absolute paths are taken as they are.
    let yaml = format!(
        "root_dir: /nonexistent-root\nca_certificate: {}\n",
        collector_ca.display()
    );
    assert_eq!(
        load(&yaml).settings().ca.as_ref().unwrap().path(),
        collector_ca
    );
}

#[test]
fn relative_ca_path_defaults_to_opt_draios() {
    let relative = format!("dtun-test-{}/missing-ca.pem", std::process::id());
    let expected = Path::new("/opt/draios").join(&relative);
    assert!(!expected.exists());
    for key in CA_KEYS {
        let msg = config_error(&ca_yaml(key, &relative), key);
        assert!(msg.contains(&expected.display().to_string()), "{msg}");
    }
}

// ---------------------------------------------------------------------------------------
// set()

/// The password of the filled configs: long enough to be hidden from error messages.
const FILLED_PASSWORD: &str = "Zq9-filled-pw";

/// A config with every key set to something else than its default (but `ssl`, which
/// `http_proxy.ssl: true` needs on: see [`filled_without_tls`]), so that a failed `set` has
/// something to undo: proxy with user and password, a CA file on each side.
fn busy_config(dir: &TempDir) -> TunnelConfig {
    filled(dir, true)
}

/// [`busy_config`] with `ssl: false` (so `http_proxy.ssl` keeps its default, false): with
/// it, every key has been seen with a value other than its default.
fn filled_without_tls(dir: &TempDir) -> TunnelConfig {
    filled(dir, false)
}

fn filled(dir: &TempDir, tls: bool) -> TunnelConfig {
    let ca = dir.file("ca.pem", CA_PEM.as_bytes());
    let proxy_ca = dir.file("proxy.pem", CA2_PEM.as_bytes());
    let tls = if tls { "true" } else { "false" };
    let mut cfg = TunnelConfig::new().unwrap();
    for (key, value) in [
        ("root_dir", dir.path().display().to_string()),
        ("collector", "collector.example".into()),
        ("collector_port", "7443".into()),
        ("ssl", tls.into()),
        ("ssl_verify_certificate", "false".into()),
        ("ca_certificate", ca.display().to_string()),
        ("http_proxy.proxy_host", "squid.example".into()),
        ("http_proxy.proxy_port", "3129".into()),
        ("http_proxy.proxy_user", "agent".into()),
        ("http_proxy.proxy_password", FILLED_PASSWORD.into()),
        ("http_proxy.ssl", tls.into()),
        ("http_proxy.ssl_verify_certificate", "off".into()),
        ("http_proxy.ca_certificate", proxy_ca.display().to_string()),
        ("tcp_keepalive_s", "30".into()),
        ("tcp_user_timeout_ms", "5000".into()),
    ] {
        cfg.set(key, &value)
            .unwrap_or_else(|e| panic!("set {key}: {e:?}"));
    }
    cfg
}

/// Each filled config holds what was set, and together they differ from the defaults on
/// every key (so the "a failed set changes nothing" tests start from something).
#[test]
fn filled_configs_differ_from_the_defaults_on_every_key() {
    let dir = TempDir::new("filled");
    let defaults = TunnelConfig::new().unwrap();
    let d = defaults.settings();
    let with_tls = busy_config(&dir);
    let without = filled_without_tls(&dir);
    for cfg in [&with_tls, &without] {
        let s = cfg.settings();
        assert_ne!(s.collector, d.collector);
        assert_ne!(s.collector_port, d.collector_port);
        assert_ne!(s.verify, d.verify);
        assert_eq!(s.ca.as_ref().unwrap().len(), 1);
        assert_ne!(s.root_dir, d.root_dir);
        assert_ne!(s.proxy.host, d.proxy.host);
        assert_ne!(s.proxy.port, d.proxy.port);
        assert_ne!(s.proxy.user, d.proxy.user);
        assert_eq!(s.proxy.password.expose(), FILLED_PASSWORD.as_bytes());
        assert_ne!(s.proxy.verify, d.proxy.verify);
        assert_eq!(s.proxy.ca.as_ref().unwrap().len(), 1);
        // base64("agent:Zq9-filled-pw"), from `printf 'agent:Zq9-filled-pw' | base64`.
        assert!(
            request(cfg).contains("Proxy-Authorization: Basic YWdlbnQ6WnE5LWZpbGxlZC1wdw==\r\n"),
            "{}",
            request(cfg)
        );
    }
    assert!(with_tls.settings().proxy.ssl && !d.proxy.ssl);
    assert!(!without.settings().ssl && d.ssl);
}

/// The snapshot compares what `Debug` hides (the password, the CONNECT request) and the plan
/// itself, and still prints neither secret.
#[test]
fn the_snapshot_sees_the_secrets_and_never_prints_them() {
    let dir = TempDir::new("snapshot");
    let cfg = busy_config(&dir);
    assert_eq!(snapshot(&cfg), snapshot(&cfg.clone()));

    // The same settings but for the password: the Debug text is the same, the snapshot not.
    let mut other = cfg.clone();
    other.settings.proxy.password = Secret::from("Zq9-another-pw".to_string());
    assert_eq!(
        format!("{:?}", other.settings()),
        format!("{:?}", cfg.settings())
    );
    assert_ne!(snapshot(&other), snapshot(&cfg));

    // The same settings with another config's plan (another CONNECT request).
    let mut changed = cfg.clone();
    changed
        .set("http_proxy.proxy_password", "Zq9-another-pw")
        .unwrap();
    let swapped = TunnelConfig {
        settings: cfg.settings.clone(),
        plan: changed.plan(),
    };
    assert_ne!(snapshot(&swapped), snapshot(&cfg));
    assert_ne!(
        snapshot(&swapped).plan_proxy.unwrap().request,
        snapshot(&cfg).plan_proxy.unwrap().request
    );

    // An equal plan built again is another plan.
    let rebuilt = TunnelConfig::from_settings(cfg.settings.clone()).unwrap();
    assert_ne!(snapshot(&rebuilt), snapshot(&cfg));
    let mut same_values = snapshot(&rebuilt);
    same_values.plan = snapshot(&cfg).plan;
    assert_eq!(same_values, snapshot(&cfg));

    // A CA file with other contents at the same path.
    let mut other_ca = cfg.clone();
    let path = other_ca.settings.ca.as_ref().unwrap().path().to_path_buf();
    std::fs::write(&path, CA2_PEM).unwrap();
    other_ca.settings.ca = Some(CaFile::load("ca_certificate", &path).unwrap());
    assert_ne!(snapshot(&other_ca), snapshot(&cfg));

    let shown = format!("{:?}", snapshot(&cfg));
    assert!(shown.contains("squid.example"), "{shown}");
    assert!(!shown.contains(FILLED_PASSWORD), "{shown}");
    assert!(!shown.contains("YWdlbnQ6WnE5LWZpbGxlZC1wdw=="), "{shown}");
}

#[test]
fn set_every_key() {
    let dir = TempDir::new("set");
    let cfg = busy_config(&dir);
    let s = cfg.settings();
    assert_eq!(s.root_dir, dir.path());
    assert_eq!(s.collector, Host::Name("collector.example".into()));
    assert_eq!(s.collector_port, 7443);
    assert!(s.ssl);
    assert!(!s.verify);
    assert_eq!(s.ca.as_ref().unwrap().path(), dir.path().join("ca.pem"));
    assert_eq!(s.proxy.host, "squid.example");
    assert_eq!(s.proxy.port, 3129);
    assert_eq!(s.proxy.user, "agent");
    assert_eq!(s.proxy.password.expose(), FILLED_PASSWORD.as_bytes());
    assert!(s.proxy.ssl);
    assert!(!s.proxy.verify);
    assert_eq!(
        s.proxy.ca.as_ref().unwrap().path(),
        dir.path().join("proxy.pem")
    );

    // The plan follows every set.
    let plan = cfg.plan();
    assert!(!plan.collector_tls.as_ref().unwrap().verify);
    let proxy = plan.proxy.as_ref().unwrap();
    assert_eq!(proxy.port, 3129);
    assert!(!proxy.tls.as_ref().unwrap().verify);
    // printf 'agent:Zq9-filled-pw' | base64
    assert_eq!(
        request(&cfg),
        "CONNECT collector.example:7443 HTTP/1.1\r\nHost: collector.example:7443\r\nUser-Agent: dragent-tunnel/0.1.0\r\n\
         Proxy-Authorization: Basic YWdlbnQ6WnE5LWZpbGxlZC1wdw==\r\n\r\n"
    );
}

#[test]
fn set_examples_of_the_brief() {
    let mut cfg = TunnelConfig::new().unwrap();
    cfg.set("http_proxy.proxy_host", "squid.yourdomain.com")
        .unwrap();
    cfg.set("http_proxy.proxy_port", "3128").unwrap();
    assert_eq!(cfg.settings().proxy.port, 3128);
    assert!(cfg.settings().uses_proxy());
    cfg.set("ssl", "off").unwrap();
    assert!(!cfg.settings().ssl);
    assert!(cfg.plan().collector_tls.is_none());
    cfg.set("http_proxy.proxy_user", "sysdig_customer").unwrap();
    cfg.set("http_proxy.proxy_password", "p:a@s/s%w+rd")
        .unwrap();
    assert_eq!(cfg.settings().proxy.password.expose(), b"p:a@s/s%w+rd");
    // printf 'sysdig_customer:p:a@s/s%%w+rd' | base64
    assert_eq!(
        request(&cfg),
        "CONNECT collector.sysdigcloud.com:6443 HTTP/1.1\r\n\
         Host: collector.sysdigcloud.com:6443\r\nUser-Agent: dragent-tunnel/0.1.0\r\n\
         Proxy-Authorization: Basic c3lzZGlnX2N1c3RvbWVyOnA6YUBzL3MldytyZA==\r\n\r\n"
    );
}

#[test]
fn set_values_are_yaml_scalars() {
    let mut cfg = TunnelConfig::new().unwrap();
    cfg.set("collector_port", "\"8443\"").unwrap();
    assert_eq!(cfg.settings().collector_port, 8443);
    cfg.set("collector_port", "'9443'").unwrap();
    assert_eq!(cfg.settings().collector_port, 9443);
    cfg.set("http_proxy.proxy_password", "12345").unwrap();
    assert_eq!(cfg.settings().proxy.password.expose(), b"12345");
    cfg.set("http_proxy.proxy_password", "'with: colon space'")
        .unwrap();
    assert_eq!(cfg.settings().proxy.password.expose(), b"with: colon space");
    cfg.set("http_proxy.proxy_password", "\"#hash\"").unwrap();
    assert_eq!(cfg.settings().proxy.password.expose(), b"#hash");
    cfg.set("collector", "\"::1\"").unwrap();
    assert_eq!(cfg.settings().collector, Host::Ip("::1".parse().unwrap()));
    cfg.set("collector", "\"[2001:db8::1]\"").unwrap();
    assert_eq!(
        cfg.settings().collector,
        Host::Ip("2001:db8::1".parse().unwrap())
    );
    // Unquoted, `[...]` is a YAML sequence, as it would be in the file: an error that says
    // to quote it, and nothing changes.
    let err = cfg.set("collector", "[2001:db8::2]").unwrap_err();
    assert_eq!(err.status(), Status::DTUN_ERR_CONFIG);
    assert!(
        names_key(err.message(), "collector") && err.message().contains("quote"),
        "{err:?}"
    );
    config_error("collector: [2001:db8::2]\n", "collector");
    assert_eq!(
        cfg.settings().collector,
        Host::Ip("2001:db8::1".parse().unwrap())
    );
    // Surrounding blanks (a trailing CR included) are not part of a host.
    cfg.set("collector", "\" collector.example\\r\"").unwrap();
    assert_eq!(
        cfg.settings().collector,
        Host::Name("collector.example".into())
    );
}

#[test]
fn set_null_restores_the_default_like_a_file() {
    let dir = TempDir::new("set-null");
    let mut cfg = busy_config(&dir);
    cfg.set("http_proxy.ssl", "false").unwrap();
    for key in KEYS {
        cfg.set(key, "~").unwrap_or_else(|e| panic!("{key}: {e:?}"));
    }
    assert_defaults(&cfg);

    let mut cfg = busy_config(&dir);
    cfg.set("http_proxy.ssl", "").unwrap();
    for key in KEYS {
        cfg.set(key, "").unwrap_or_else(|e| panic!("{key}: {e:?}"));
    }
    assert_defaults(&cfg);
}

/// Sets that fail whatever the filled config: each must be a `DTUN_ERR_CONFIG` naming its
/// key.
fn failing_sets(dir: &TempDir) -> Vec<(&'static str, String)> {
    let missing = dir.path().join("missing.pem").display().to_string();
    let garbage = dir.file("garbage.pem", b"garbage").display().to_string();
    let mut cases: Vec<(&str, String)> = [
        ("collector", "a b"),
        ("collector", "evil\r\nX-Injected: 1"),
        ("collector", "\"evil\\r\\nX: 1\""),
        ("collector", "collector.example:443"),
        ("collector", "[a, b]"),
        ("collector", "999"),
        ("collector_port", "0"),
        ("collector_port", "65536"),
        ("collector_port", "abc"),
        ("collector_port", "{a: 1}"),
        ("ssl", "maybe"),
        ("ssl", "1"),
        ("ssl_verify_certificate", "nope"),
        ("ca_certificate", "[x]"),
        ("ca_certificate", "missing.pem"),
        ("root_dir", "{a: b}"),
        ("http_proxy.proxy_host", "squid example"),
        ("http_proxy.proxy_host", "squid.example:3128"),
        ("http_proxy.proxy_port", "70000"),
        ("http_proxy.proxy_port", "-1"),
        ("http_proxy.proxy_port", "port"),
        ("http_proxy.proxy_user", "a:b"),
        ("http_proxy.proxy_user", "\"a\\nb\""),
        ("http_proxy.proxy_password", "a: b"),
        ("http_proxy.proxy_password", "[p]"),
        ("http_proxy.proxy_password", "#Zq9-new"),
        ("http_proxy.ssl", "sometimes"),
        ("http_proxy.ssl_verify_certificate", "2"),
        ("http_proxy.ca_certificate", "garbage.pem"),
    ]
    .into_iter()
    .map(|(k, v)| (k, v.to_owned()))
    .collect();
    for key in CA_KEYS {
        cases.push((key, missing.clone()));
        cases.push((key, garbage.clone()));
    }
    cases
}

fn assert_failed_sets_change_nothing(mut cfg: TunnelConfig, cases: &[(&str, String)]) {
    let before = snapshot(&cfg);
    for (key, value) in cases {
        let err = cfg
            .set(key, value)
            .expect_err(&format!("set {key} {value:?}"));
        assert_eq!(
            err.status(),
            Status::DTUN_ERR_CONFIG,
            "set {key} {value:?}: {err:?}"
        );
        assert!(
            names_key(err.message(), key),
            "set {key} {value:?}: {err:?}"
        );
        assert!(
            !err.message().contains(FILLED_PASSWORD),
            "set {key} {value:?}: {err:?}"
        );
        assert!(
            snapshot(&cfg) == before,
            "set {key} {value:?} changed the config: {:?}\nwas {before:?}",
            snapshot(&cfg)
        );
    }
}

#[test]
fn failed_set_changes_nothing() {
    let dir = TempDir::new("set-fail");
    let mut with_tls = failing_sets(&dir);
    // http_proxy.ssl is on: ssl must stay on.
    with_tls.push(("ssl", "false".into()));
    with_tls.push(("ssl", "off".into()));
    assert_failed_sets_change_nothing(busy_config(&dir), &with_tls);

    let mut without_tls = failing_sets(&dir);
    // ssl is off: http_proxy.ssl cannot be turned on.
    without_tls.push(("http_proxy.ssl", "true".into()));
    without_tls.push(("http_proxy.ssl", "yes".into()));
    assert_failed_sets_change_nothing(filled_without_tls(&dir), &without_tls);
}

#[test]
fn set_unknown_key_is_an_invalid_argument() {
    let dir = TempDir::new("set-unknown");
    let mut cfg = busy_config(&dir);
    let before = snapshot(&cfg);
    for key in [
        "",
        "proxy_host",
        "http_proxy",
        "http_proxy.",
        "http_proxy.proxy_hostname",
        "HTTP_PROXY.PROXY_HOST",
        "Collector",
        "collector ",
        "http_proxy.http_proxy.proxy_host",
        "customerid",
        "http_proxy/proxy_host",
        "http_proxy..ssl",
    ] {
        for value in ["x", "", "true"] {
            let err = cfg.set(key, value).expect_err(key);
            assert_eq!(
                err.status(),
                Status::DTUN_ERR_INVALID_ARGUMENT,
                "{key:?}: {err:?}"
            );
            assert_eq!(snapshot(&cfg), before, "{key:?}");
        }
    }
}

#[test]
fn every_documented_key_can_be_set() {
    let documented = [
        "collector",
        "collector_port",
        "ssl",
        "ssl_verify_certificate",
        "ca_certificate",
        "http_proxy.proxy_host",
        "http_proxy.proxy_port",
        "http_proxy.proxy_user",
        "http_proxy.proxy_password",
        "http_proxy.proxy_auth",
        "http_proxy.proxy_keytab",
        "http_proxy.ssl",
        "http_proxy.ssl_verify_certificate",
        "http_proxy.ca_certificate",
        "http_proxy.from_environment",
        "http_proxy.no_proxy",
        "http_proxy.user_agent",
        "http_proxy.headers",
        "root_dir",
        "tcp_keepalive_s",
        "tcp_user_timeout_ms",
    ];
    let mut cfg = TunnelConfig::new().unwrap();
    for key in documented {
        // Null is valid for every key; an unknown key would be an invalid argument instead.
        cfg.set(key, "~").unwrap_or_else(|e| panic!("{key}: {e:?}"));
    }
    let mut known: Vec<&str> = KEYS.to_vec();
    known.sort_unstable();
    let mut expected = documented.to_vec();
    expected.sort_unstable();
    assert_eq!(known, expected);
}

#[test]
fn set_refuses_values_that_yaml_would_cut_at_a_comment() {
    let mut cfg = TunnelConfig::new().unwrap();
    for value in ["#secret", "pass #1", "  #x"] {
        let e = cfg.set("http_proxy.proxy_password", value).unwrap_err();
        assert_eq!(e.status(), Status::DTUN_ERR_CONFIG);
        assert!(e.message().contains("http_proxy.proxy_password"), "{e}");
        assert!(!e.message().contains("secret"), "{e}");
    }
    cfg.set("http_proxy.proxy_password", "'#secret'").unwrap();
    assert_eq!(cfg.settings().proxy.password.expose(), b"#secret");
    cfg.set("http_proxy.proxy_password", "'pa #1'").unwrap();
    assert_eq!(cfg.settings().proxy.password.expose(), b"pa #1");
    cfg.set("http_proxy.proxy_password", "pa#ss").unwrap();
    assert_eq!(cfg.settings().proxy.password.expose(), b"pa#ss");
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

        /// Whatever the text, loading returns a config or an error, never panics, and an
        /// error never echoes a password planted in the text.
        #[test]
        fn any_yaml_text_loads_or_errs(prefix in "[ -~\n\t]{0,200}", suffix in "[ -~\n\t]{0,200}") {
            let text = format!("{prefix}\nhttp_proxy:\n  proxy_password: Zq9-planted-Zq9\n{suffix}");
            if let Err(e) = TunnelConfig::from_yaml(&text) {
                prop_assert!(!e.message().contains("planted"), "{}", e.message());
            }
            let _ = TunnelConfig::from_yaml(&prefix);
        }
    }

    /// Setting any key to any value never panics; a failure leaves a filled config (each of
    /// the two) exactly as it was, password and CONNECT request included.
    #[test]
    fn any_set_is_safe() {
        let dir = TempDir::new("set-any");
        let bases = [busy_config(&dir), filled_without_tls(&dir)];
        let befores: Vec<Snapshot> = bases.iter().map(snapshot).collect();
        let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
            cases: 512,
            failure_persistence: None,
            ..ProptestConfig::default()
        });
        let strategy = (0usize..2, 0usize..KEYS.len() + 1, "\\PC{0,80}");
        runner
            .run(&strategy, |(base, key_index, value)| {
                let mut cfg = bases[base].clone();
                let key = KEYS.get(key_index).copied().unwrap_or("no.such.key");
                if cfg.set(key, &value).is_err() {
                    prop_assert!(
                        snapshot(&cfg) == befores[base],
                        "set {} {:?} changed the config",
                        key,
                        value
                    );
                }
                Ok(())
            })
            .unwrap();
    }
}

#[test]
fn a_password_typed_into_another_key_is_not_quoted_back() {
    let yaml = "http_proxy:\n  proxy_password: Zq9secretZq9\n  proxy_port: Zq9secretZq9\n  proxy_host: p.example\n";
    let e = TunnelConfig::from_yaml(yaml).unwrap_err();
    assert_eq!(e.status(), Status::DTUN_ERR_CONFIG);
    assert!(e.message().contains("http_proxy.proxy_port"), "{e}");
    assert!(!e.message().contains("Zq9secret"), "{e}");
    let mut cfg = TunnelConfig::from_yaml("http_proxy:\n  proxy_password: Zq9secretZq9\n").unwrap();
    let e = cfg.set("collector_port", "Zq9secretZq9").unwrap_err();
    assert!(!e.message().contains("Zq9secret"), "{e}");
}

#[test]
fn tcp_keys_take_whole_numbers_leniently_and_name_the_key_otherwise() {
    let cfg = TunnelConfig::from_yaml("tcp_keepalive_s: 0\ntcp_user_timeout_ms: '1000'\n").unwrap();
    assert_eq!(cfg.settings().tcp_keepalive_s, 0);
    assert_eq!(cfg.settings().tcp_user_timeout_ms, 1000);
    let plan = cfg.plan();
    assert_eq!(plan.tcp.keepalive_idle, None);
    assert_eq!(
        plan.tcp.user_timeout,
        Some(std::time::Duration::from_millis(1000))
    );

    let cfg = TunnelConfig::from_yaml("tcp_user_timeout_ms: 0").unwrap();
    assert_eq!(cfg.plan().tcp.user_timeout, None);
    assert_eq!(
        cfg.plan().tcp.keepalive_idle,
        Some(std::time::Duration::from_secs(60))
    );

    for (key, bad) in [
        ("tcp_keepalive_s", "-1"),
        ("tcp_keepalive_s", "32768"),
        ("tcp_keepalive_s", "1.5"),
        ("tcp_keepalive_s", "soon"),
        ("tcp_user_timeout_ms", "4294967296"),
        ("tcp_user_timeout_ms", "2147483648"),
    ] {
        let mut cfg = TunnelConfig::new().unwrap();
        let e = cfg.set(key, bad).unwrap_err();
        assert_eq!(e.status(), Status::DTUN_ERR_CONFIG, "{key} {bad}");
        assert!(e.message().starts_with(key), "{e}");
        let e = TunnelConfig::from_yaml(&format!("{key}: {bad}")).unwrap_err();
        assert!(e.message().contains(key), "{e}");
    }
}
