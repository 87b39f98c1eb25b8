//! Issue 13: the proxy from the environment (opt-in), `no_proxy`, the CONNECT request's
//! `User-Agent` and extra headers, and their secrets. Plans are built with an injected
//! environment; one test (`process_environment_end_to_end`) sets the variables in this test
//! process itself and opens through the in-repo proxy.

mod support;

use std::collections::HashMap;
use std::ffi::OsString;

use dragent_tunnel::config::Settings;
use dragent_tunnel::plan::{Plan, ProxySource};
use dragent_tunnel::{Status, TunnelConfig};
use dtun_testenv::proxy::{ProxyOptions, TestProxy};
use support::*;

fn settings(yaml: &str) -> Settings {
    TunnelConfig::from_yaml(yaml)
        .unwrap_or_else(|e| panic!("{yaml}: {e}"))
        .settings()
        .clone()
}

/// The plan of `yaml` with `from_environment` switched on and the given variables.
fn plan_in(yaml: &str, vars: &[(&str, &str)]) -> dragent_tunnel::Result<Plan> {
    let mut s = settings(yaml);
    s.proxy.from_environment = true;
    let map: HashMap<String, OsString> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), OsString::from(v)))
        .collect();
    Plan::build_with_environment(&s, &|name| map.get(name).cloned())
}

fn plan_err(yaml: &str, vars: &[(&str, &str)]) -> dragent_tunnel::Error {
    match plan_in(yaml, vars) {
        Ok(_) => panic!("{yaml}: the plan was built"),
        Err(e) => e,
    }
}

fn request_text(plan: &Plan) -> String {
    String::from_utf8(
        plan.proxy
            .as_ref()
            .expect("a proxy")
            .request
            .expose()
            .to_vec(),
    )
    .unwrap()
}

/// Every printable ASCII character but letters and digits, and some UTF-8.
fn special_password() -> String {
    let mut p: String = (0x20u8..0x7f)
        .filter(|b| !b.is_ascii_alphanumeric())
        .map(char::from)
        .collect();
    p.push_str("pw-ü€");
    p
}

fn percent_encode(s: &str) -> String {
    s.bytes().map(|b| format!("%{b:02X}")).collect()
}

#[test]
fn off_by_default_and_never_http_proxy() {
    let vars = [("https_proxy", "http://envproxy.example:3128")];
    // Off: the environment is not even looked at.
    let s = settings("collector: c.example");
    assert!(!s.proxy.from_environment);
    let map: HashMap<&str, &str> = vars.into_iter().collect();
    let plan = Plan::build_with_environment(&s, &|n| map.get(n).map(OsString::from)).unwrap();
    assert!(plan.proxy.is_none());
    assert_eq!(plan.route(), "direct to collector c.example:6443 (TLS)");
    // On, HTTP_PROXY and http_proxy only: direct.
    let plan = plan_in(
        "collector: c.example",
        &[("HTTP_PROXY", "http://a:1"), ("http_proxy", "http://b:1")],
    )
    .unwrap();
    assert!(plan.proxy.is_none());
}

#[test]
fn precedence_source_and_route() {
    let all = [
        ("https_proxy", "http://one.example:3128"),
        ("HTTPS_PROXY", "http://two.example:3128"),
        ("all_proxy", "http://three.example:3128"),
        ("ALL_PROXY", "http://four.example:3128"),
    ];
    for (i, (name, _)) in all.iter().enumerate() {
        let plan = plan_in("collector: c.example", &all[i..]).unwrap();
        let p = plan.proxy.as_ref().unwrap();
        assert_eq!(p.source, ProxySource::Environment(name));
        assert!(
            plan.route()
                .contains(&format!(", from environment {name}) to collector")),
            "{}",
            plan.route()
        );
    }
}

#[test]
fn an_explicit_proxy_host_always_wins() {
    let plan = plan_in(
        "http_proxy: {proxy_host: config.example, proxy_port: 8080}",
        &[("https_proxy", "http://env.example:3128")],
    )
    .unwrap();
    let p = plan.proxy.as_ref().unwrap();
    assert_eq!(p.source, ProxySource::Config);
    assert_eq!(p.host.authority(p.port), "config.example:8080");
    assert!(!plan.route().contains("environment"), "{}", plan.route());
    // Even a broken environment is not read then.
    assert!(plan_in(
        "http_proxy: {proxy_host: config.example, proxy_port: 8080}",
        &[("https_proxy", "socks5://x:1")],
    )
    .is_ok());
}

#[test]
fn urls_tls_ipv6_default_ports() {
    let plan = plan_in(
        "collector: c.example",
        &[("https_proxy", "https://[::1]:8443")],
    )
    .unwrap();
    let p = plan.proxy.as_ref().unwrap();
    assert!(p.tls.is_some());
    assert_eq!(p.host.authority(p.port), "[::1]:8443");
    let capture = LogCapture::start();
    let plan = plan_in("collector: c.example", &[("all_proxy", "http://10.0.0.1")]).unwrap();
    let p = plan.proxy.as_ref().unwrap();
    assert_eq!(p.port, 1080);
    let warned = capture.records().into_iter().any(|(level, m)| {
        level == dragent_tunnel::log::LogLevel::DTUN_LOG_WARN
            && m.contains("all_proxy")
            && m.contains("using 1080")
    });
    assert!(warned, "{}", capture.dump());
    drop(capture);
    // https:// without end-to-end TLS is refused, naming the variable.
    let e = plan_err(
        "ssl: false",
        &[("HTTPS_PROXY", "https://u:Pw-Secret-1@p.example:443")],
    );
    assert_eq!(e.status(), Status::DTUN_ERR_CONFIG);
    assert!(e.message().starts_with("HTTPS_PROXY: "), "{e}");
    assert_error_clean(&e, &["Pw-Secret-1".to_string()]);
}

#[test]
fn refused_urls_name_the_variable_and_hide_the_password() {
    let password = special_password();
    let encoded = percent_encode(&password);
    for url in [
        format!("socks5://agent:{encoded}@p.example:1080"),
        format!("http://agent:{encoded}@p.example:3128/path"),
        format!("http://agent:{encoded}@p.example:3128?q"),
        format!("http://agent:{encoded}%G1@p.example:3128"),
        format!("http://agent:{encoded} x@p.example:3128"),
    ] {
        let e = plan_err("collector: c.example", &[("all_proxy", &url)]);
        assert_eq!(e.status(), Status::DTUN_ERR_CONFIG, "{url}: {e}");
        assert!(e.message().starts_with("all_proxy: "), "{e}");
        assert_error_clean(&e, &[password.clone(), encoded.clone()]);
    }
}

#[test]
fn every_special_character_in_the_password_reaches_basic_auth() {
    let password = special_password();
    let url = format!(
        "http://a%40gent:{}@proxy.example:3128",
        percent_encode(&password)
    );
    let plan = plan_in("collector: c.example", &[("https_proxy", &url)]).unwrap();
    let req = request_text(&plan);
    let token = basic_token("a@gent", &password);
    assert!(
        req.contains(&format!("Proxy-Authorization: Basic {token}\r\n")),
        "{req}"
    );
    // The route and the plan's redaction never show the credentials.
    let secrets = secrets_of("a@gent", &password);
    assert_no_leak("route", &plan.route(), &secrets);
    let echoed = format!("reason {password} {token} {}", percent_encode(&password));
    assert_no_leak(
        "redacted",
        &plan.redact_and_shorten(&echoed, 10_000),
        &[password.clone(), token.clone(), percent_encode(&password)],
    );
}

#[test]
fn no_proxy_key_and_environment() {
    // The key: with a configured proxy.
    let cfg = TunnelConfig::from_yaml(
        "collector: collector.corp.example\nhttp_proxy: {proxy_host: p.example, proxy_port: 3128, no_proxy: 'localhost, .corp.example'}",
    )
    .unwrap();
    let plan = cfg.plan();
    assert!(plan.proxy.is_none());
    assert!(
        plan.route().starts_with("direct to collector collector.corp.example:6443 (TLS) (proxy p.example:3128 from config http_proxy.proxy_host bypassed: collector collector.corp.example matches http_proxy.no_proxy)"),
        "{}",
        plan.route()
    );
    let cfg = TunnelConfig::from_yaml(
        "collector: collector.other.example\nhttp_proxy: {proxy_host: p.example, proxy_port: 3128, no_proxy: .corp.example}",
    )
    .unwrap();
    assert!(cfg.plan().proxy.is_some());
    // The environment's list applies to the environment's proxy.
    let env = [
        ("https_proxy", "http://p.example:3128"),
        ("no_proxy", "10.0.0.0/8,::1"),
    ];
    assert!(plan_in("collector: 10.1.2.3", &env)
        .unwrap()
        .proxy
        .is_none());
    assert!(plan_in("collector: '::1'", &env).unwrap().proxy.is_none());
    assert!(plan_in("collector: 11.1.2.3", &env)
        .unwrap()
        .proxy
        .is_some());
    // No implicit bypass: loopback goes through the proxy unless listed.
    let env = [("https_proxy", "http://p.example:3128")];
    assert!(plan_in("collector: localhost", &env)
        .unwrap()
        .proxy
        .is_some());
    assert!(plan_in("collector: 127.0.0.1", &env)
        .unwrap()
        .proxy
        .is_some());
    // The key wins over the environment's list.
    let env = [("https_proxy", "http://p.example:3128"), ("NO_PROXY", "*")];
    assert!(plan_in("collector: c.example", &env)
        .unwrap()
        .proxy
        .is_none());
    assert!(plan_in(
        "collector: c.example\nhttp_proxy: {no_proxy: other.example}",
        &env
    )
    .unwrap()
    .proxy
    .is_some());
    // A bad list names its source.
    let e = TunnelConfig::from_yaml("http_proxy: {no_proxy: 10.0.0.0/33}").unwrap_err();
    assert!(e.message().starts_with("http_proxy.no_proxy: "), "{e}");
    let e = plan_err(
        "collector: c.example",
        &[("https_proxy", "http://p:1"), ("NO_PROXY", "::/200")],
    );
    assert!(e.message().starts_with("NO_PROXY: "), "{e}");
}

#[test]
fn user_agent_and_headers() {
    let plan = TunnelConfig::from_yaml("http_proxy: {proxy_host: p, proxy_port: 1}")
        .unwrap()
        .plan();
    assert!(request_text(&plan).contains(&format!(
        "\r\nUser-Agent: dragent-tunnel/{}\r\n",
        dragent_tunnel::VERSION
    )));
    let plan =
        TunnelConfig::from_yaml("http_proxy: {proxy_host: p, proxy_port: 1, user_agent: ''}")
            .unwrap()
            .plan();
    assert!(!request_text(&plan).contains("User-Agent"));
    let cfg = TunnelConfig::from_yaml(
        "http_proxy:\n  proxy_host: p\n  proxy_port: 1\n  user_agent: agent/7\n  headers:\n    X-Tenant: acme\n    X-Token: Tok-Secret-42\n",
    )
    .unwrap();
    let req = request_text(&cfg.plan());
    assert!(
        req.ends_with("User-Agent: agent/7\r\nX-Tenant: acme\r\nX-Token: Tok-Secret-42\r\n\r\n"),
        "{req}"
    );
    // dtun_config_set: one header by its dotted key; null removes it.
    let mut cfg = cfg;
    cfg.set("http_proxy.headers.X-Extra", "v1").unwrap();
    cfg.set("http_proxy.headers.x-token", "~").unwrap();
    let req = request_text(&cfg.plan());
    assert!(
        req.contains("X-Extra: v1\r\n") && !req.contains("X-Token"),
        "{req}"
    );
    // The secrets never show.
    let debug = format!("{cfg:?} {:?}", cfg.settings());
    assert!(
        !debug.contains("acme") && !debug.contains("v1\""),
        "{debug}"
    );
    assert_no_leak("route", &cfg.plan().route(), &["Tok-Secret-42".into()]);
}

#[test]
fn bad_headers_are_refused_without_their_values() {
    let secret = "Hdr-Secret-Value-9";
    for (yaml, why) in [
        (
            format!("headers: {{'X Bad': {secret}}}"),
            "not a valid header name",
        ),
        (format!("headers: {{Host: {secret}}}"), "may not be set"),
        (
            format!("headers: {{content-length: {secret}}}"),
            "may not be set",
        ),
        (
            format!("headers: {{Proxy-Authorization: {secret}}}"),
            "may not be set",
        ),
        (
            format!("headers: {{X-T: \"{secret}\\r\\nX-Injected: 1\"}}"),
            "line break",
        ),
        (
            format!("headers: {{X-T: \"{secret}\\u0000\"}}"),
            "line break",
        ),
        (format!("user_agent: \"{secret}\\n\""), "line break"),
        (format!("headers: {{X-T: [{secret}]}}"), "syntax error"),
        (format!("headers: [{secret}]"), "syntax error"),
    ] {
        let text = format!("http_proxy: {{proxy_host: p, proxy_port: 1, {yaml}}}");
        let e = TunnelConfig::from_yaml(&text).unwrap_err();
        assert_eq!(e.status(), Status::DTUN_ERR_CONFIG, "{text}: {e}");
        assert!(e.message().contains(why), "{text}: {e}");
        assert_error_clean(&e, &[secret.to_string()]);
    }
    let mut cfg = TunnelConfig::new().unwrap();
    let e = cfg
        .set("http_proxy.headers.X-T", &format!("\"{secret}\\r\\n\""))
        .unwrap_err();
    assert_error_clean(&e, &[secret.to_string()]);
    let e = cfg.set("http_proxy.headers.Host", secret).unwrap_err();
    assert!(e.message().contains("may not be set"), "{e}");
    assert_error_clean(&e, &[secret.to_string()]);
    let e = cfg.set("http_proxy.headers", secret).unwrap_err();
    assert_error_clean(&e, &[secret.to_string()]);
}

/// The only test that touches this process's environment: every variable it reads is set
/// (or removed) here, then an open goes through the in-repo proxy with Basic credentials
/// that hold every special character, percent-encoded in `https_proxy`.
#[test]
fn process_environment_end_to_end() {
    let password = special_password();
    let user = "env-agent";
    let proxy = TestProxy::start(ProxyOptions {
        auth: Some((user.into(), password.clone())),
        ..ProxyOptions::default()
    })
    .expect("start proxy");
    let collector = dtun_testenv::collector::EchoServer::start(None).expect("echo");
    let url = format!(
        "http://{user}:{}@127.0.0.1:{}",
        percent_encode(&password),
        proxy.port()
    );
    for name in [
        "HTTPS_PROXY",
        "all_proxy",
        "ALL_PROXY",
        "no_proxy",
        "NO_PROXY",
    ] {
        std::env::remove_var(name);
    }
    std::env::set_var("https_proxy", &url);
    std::env::set_var("HTTP_PROXY", "http://must-not-be-used.invalid:1");
    let capture = LogCapture::start();
    let yaml = format!(
        "collector: localhost\ncollector_port: {}\nssl: false\nhttp_proxy:\n  from_environment: true\n  headers: {{X-Tenant: Tenant-Secret-77}}\n",
        collector.port()
    );
    let cfg = TunnelConfig::from_yaml(&yaml).unwrap();
    let conn = open_ok(&cfg);
    echo(&conn, b"through the environment's proxy");
    let route = conn.route().to_owned();
    assert_eq!(
        conn.report().get("proxy.source"),
        Some("environment https_proxy")
    );
    let report = conn.report().text();
    conn.close();
    // With no_proxy naming the collector, the same config goes direct.
    std::env::set_var("no_proxy", "localhost");
    let direct = TunnelConfig::from_yaml(&yaml).unwrap();
    let conn = open_ok(&direct);
    echo(&conn, b"direct");
    let direct_route = conn.route().to_owned();
    conn.close();
    for name in ["https_proxy", "HTTP_PROXY", "no_proxy"] {
        std::env::remove_var(name);
    }
    let logs = capture.dump();
    drop(capture);

    assert!(
        route.contains(", Basic auth, from environment https_proxy) to collector"),
        "{route}"
    );
    assert!(
        direct_route.starts_with("direct to collector"),
        "{direct_route}"
    );
    assert!(direct_route.contains("matches no_proxy"), "{direct_route}");
    let requests = proxy.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    let req = &requests[0];
    assert_eq!(req.header("x-tenant"), Some("Tenant-Secret-77"));
    assert_eq!(
        req.header("user-agent").map(str::to_owned),
        Some(format!("dragent-tunnel/{}", dragent_tunnel::VERSION))
    );
    let mut secrets = secrets_of(user, &password);
    secrets.push(percent_encode(&password));
    secrets.push("Tenant-Secret-77".into());
    assert_no_leak("route", &route, &secrets);
    assert_no_leak("report", &report, &secrets);
    assert_no_leak("logs", &logs, &secrets);
    assert_no_leak("config Debug", &format!("{cfg:?}"), &secrets);
}
