use super::*;

#[test]
fn scratch() {
    let cases = [
        "http_proxy:\n    proxy_port: {a: 1}\n",
        "http_proxy: [1, 2]\n",
        "http_proxy:\n    proxy_password: {hunter2: x}\n",
        "http_proxy:\n    proxy_password: [hunter2]\n",
        "http_proxy:\n    proxy_password: hunter2: x\n",
        "http_proxy:\n    proxy_password: \"hunter2\n",
        "http_proxy:\n    proxy_password: *hunter2\n",
        "http_proxy:\n    proxy_password: !hunter2 x\n",
        "http_proxy:\n    proxy_password: !!binary aHVudGVyMg==\n",
        "http_proxy: hunter2\n",
        "ssl: true: x\n",
        "ssl: true\nssl: false\n",
        "collector: 999\n",
        "collector: a-\n",
        "collector: -a\n",
        "collector: 1.2.3\n",
        "collector: a_b.com\n",
        "collector: x.com.\n",
        "# only a comment\n",
        "---\n",
        "a: 1\n---\nb: 2\n",
        "- a\n",
        "hunter2\n",
        "http_proxy:\n    proxy_password: 1.50\n",
        "http_proxy:\n    proxy_password: 0x1F\n",
        "http_proxy:\n    proxy_password: null\n",
        "1: x\nssl: true\n",
        "? [a]\n: x\n",
        "ssl: !!str true\n",
        "base: &b {ssl: maybe}\nother: *b\n",
        "x: &p hunter2\nhttp_proxy:\n    proxy_password: *p\n",
        "http_proxy:\n  proxy_host: squid\n  proxy_port: 3128\n  proxy_user: u\n  proxy_password: \"a\\tb\"\n",
    ];
    for c in cases {
        match TunnelConfig::from_yaml(c) {
            Ok(cfg) => println!("{c:?} => OK {:?}", cfg.settings()),
            Err(e) => println!("{c:?} => {e:?}"),
        }
    }
    for (k, v) in [("http_proxy.proxy_password", "#secret"), ("http_proxy.proxy_password", "a: b"), ("http_proxy.proxy_password", "@x"), ("http_proxy.proxy_password", "p:a@s/s%w+rd"), ("collector", "a b"), ("ssl", "[1]"), ("collector_port", "'80'"), ("http_proxy.proxy_password", "%x"), ("http_proxy.proxy_password", "x\ny")] {
        let mut cfg = TunnelConfig::new().unwrap();
        println!("set {k} {v:?} => {:?} {:?}", cfg.set(k, v), cfg.settings().proxy.password.expose());
    }
}
