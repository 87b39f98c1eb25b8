//! The reconnect policy through the C API (issue 13, part 3): argument checks, delays within
//! their windows, configuration failures at the slow floor, and 403 told from 5xx by the
//! thread's last open report.

mod support;

use std::ffi::CStr;
use std::ptr;

use dragent_tunnel::ffi::*;
use dragent_tunnel::Status;
use support::*;

fn new_backoff(min: u32, max: u32) -> *mut dtun_backoff {
    let mut b = ptr::null_mut();
    assert_eq!(
        unsafe { dtun_backoff_new(min, max, &mut b) } as i32,
        Status::DTUN_OK as i32
    );
    assert!(!b.is_null());
    b
}

fn next(b: *mut dtun_backoff, s: Status) -> u32 {
    unsafe { dtun_backoff_next(b, std::mem::transmute::<i32, StatusArg>(s as i32)) }
}

fn last_error() -> String {
    unsafe { CStr::from_ptr(dtun_last_error()) }
        .to_string_lossy()
        .into_owned()
}

#[test]
fn invalid_arguments() {
    let mut b = ptr::null_mut();
    for (min, max) in [(0, 10), (11, 10), (0, 0)] {
        let st = unsafe { dtun_backoff_new(min, max, &mut b) };
        assert_eq!(st as i32, Status::DTUN_ERR_INVALID_ARGUMENT as i32);
        assert!(b.is_null(), "out untouched on failure");
        assert!(last_error().contains("min_ms"), "{}", last_error());
    }
    let st = unsafe { dtun_backoff_new(1, 2, ptr::null_mut()) };
    assert_eq!(st as i32, Status::DTUN_ERR_INVALID_ARGUMENT as i32);
    // NULL handles: a fallback delay, never a spin; reset and free are no-ops.
    assert_eq!(
        next(ptr::null_mut(), Status::DTUN_ERR_CONNECT),
        DTUN_BACKOFF_FALLBACK_MS
    );
    assert!(
        last_error().contains("dtun_backoff is NULL"),
        "{}",
        last_error()
    );
    unsafe {
        dtun_backoff_reset(ptr::null_mut());
        dtun_backoff_free(ptr::null_mut());
    }
    // A handle of another type is refused.
    let mut cfg = ptr::null_mut();
    unsafe { dtun_config_new(&mut cfg) };
    assert_eq!(
        next(cfg.cast(), Status::DTUN_ERR_CONNECT),
        DTUN_BACKOFF_FALLBACK_MS
    );
    unsafe { dtun_config_free(cfg) };
}

#[test]
fn sequences_stay_in_their_windows_and_reset() {
    let b = new_backoff(100, 5000);
    for round in 0..3 {
        for n in 0..12u32 {
            let d = next(b, Status::DTUN_ERR_CONNECT);
            let ceiling = (100u64 << (n + 1)).min(5000) as u32;
            assert!(
                (100..=ceiling).contains(&d),
                "round {round} attempt {n}: {d} not in 100..={ceiling}"
            );
        }
        unsafe { dtun_backoff_reset(b) };
    }
    for s in [
        Status::DTUN_ERR_PROXY_AUTH,
        Status::DTUN_ERR_PROXY_CERT,
        Status::DTUN_ERR_COLLECTOR_CERT,
        Status::DTUN_ERR_CONFIG,
    ] {
        assert_eq!(next(b, s), 5000, "{s:?}");
    }
    // A value that is no status counts as a network failure.
    unsafe { dtun_backoff_reset(b) };
    let d = unsafe { dtun_backoff_next(b, std::mem::transmute::<i32, StatusArg>(12345)) };
    assert!((100..=200).contains(&d), "{d}");
    unsafe { dtun_backoff_free(b) };
}

#[test]
fn success_leaves_the_last_error_alone() {
    let mut cfg = ptr::null_mut();
    let yaml = b"collector_port: 70000";
    let st = unsafe { dtun_config_from_yaml(yaml.as_ptr().cast(), yaml.len(), &mut cfg) };
    assert_eq!(st as i32, Status::DTUN_ERR_CONFIG as i32);
    let before = last_error();
    let b = new_backoff(10, 20);
    let _ = unsafe { dtun_config_from_yaml(yaml.as_ptr().cast(), yaml.len(), &mut cfg) };
    next(b, Status::DTUN_ERR_CONFIG);
    assert_eq!(last_error(), before);
    unsafe { dtun_backoff_free(b) };
}

/// Opens through a scripted proxy answering `status_line`, then asks for the delay.
fn delay_after_refusal(status_line: &'static str) -> (u32, String) {
    let proxy = ScriptedProxy::start(move |_| {
        format!("{status_line}\r\nContent-Length: 0\r\n\r\n").into_bytes()
    });
    let yaml = Yaml::collector(6443)
        .set("collector", "collector.example")
        .plain_collector()
        .proxy(proxy.port())
        .text();
    let b = new_backoff(100, 30_000);
    let mut cfg = ptr::null_mut();
    let st = unsafe { dtun_config_from_yaml(yaml.as_ptr().cast(), yaml.len(), &mut cfg) };
    assert_eq!(st as i32, Status::DTUN_OK as i32, "{}", last_error());
    let mut conn = ptr::null_mut();
    let st = unsafe { dtun_open(cfg, 5000, &mut conn) };
    assert_eq!(
        st as i32,
        Status::DTUN_ERR_PROXY_REFUSED as i32,
        "{}",
        last_error()
    );
    let d = next(b, Status::DTUN_ERR_PROXY_REFUSED);
    let error = last_error();
    unsafe {
        dtun_backoff_free(b);
        dtun_config_free(cfg);
    }
    proxy.finish();
    (d, error)
}

#[test]
fn a_403_waits_the_slow_floor_and_a_503_grows_from_the_minimum() {
    let (d, error) = delay_after_refusal("HTTP/1.1 403 Forbidden");
    assert_eq!(d, 30_000);
    assert!(
        error.contains("403"),
        "the open's error is still there: {error}"
    );
    let (d, _) = delay_after_refusal("HTTP/1.1 503 Service Unavailable");
    assert!((100..=200).contains(&d), "{d}");
    let (d, _) = delay_after_refusal("HTTP/1.1 500 Internal Server Error");
    assert!((100..=200).contains(&d), "{d}");
    // From another thread, the refusal's code is unknown: a network failure.
    let (d, _) = std::thread::spawn(|| {
        let b = new_backoff(100, 30_000);
        let d = next(b, Status::DTUN_ERR_PROXY_REFUSED);
        unsafe { dtun_backoff_free(b) };
        (d, ())
    })
    .join()
    .unwrap();
    assert!((100..=200).contains(&d), "{d}");
}

/// A CONNECT proxy on `port` that comes up after `after`, serves one tunnel (answers 200,
/// then echoes until the client closes) and goes away again: a proxy being restarted.
fn proxy_up_later(port: u16, after: std::time::Duration) -> std::thread::JoinHandle<()> {
    use std::io::{Read, Write};
    std::thread::spawn(move || {
        std::thread::sleep(after);
        let listener = std::net::TcpListener::bind(("127.0.0.1", port)).expect("rebind the port");
        let (mut s, _) = listener.accept().expect("accept");
        drop(listener);
        let mut head = Vec::new();
        let mut buf = [0u8; 4096];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        if s.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
            .is_err()
        {
            return;
        }
        while let Ok(n) = s.read(&mut buf) {
            if n == 0 || s.write_all(&buf[..n]).is_err() {
                break;
            }
        }
    })
}

/// The agent's loop through the Rust API against a proxy that is down, comes up, goes down
/// (restarted) and comes up again: each outage costs a few CONNECT failures with growing
/// delays within their windows, and each comeback is picked up at the next attempt.
#[test]
fn a_reconnect_loop_outlasts_a_proxy_restart() {
    use dragent_tunnel::backoff::{Backoff, Failure};
    use dragent_tunnel::{Connection, Wait};
    let port = closed_port();
    let cfg = Yaml::collector(6443)
        .set("collector", "collector.example")
        .plain_collector()
        .set("http_proxy.proxy_host", "127.0.0.1")
        .set("http_proxy.proxy_port", port)
        .build();
    let mut backoff = Backoff::new(50, 400).unwrap();
    for outage in 0..2 {
        let proxy = proxy_up_later(port, std::time::Duration::from_millis(600));
        let mut delays = Vec::new();
        let conn = loop {
            match Connection::open(&cfg, Wait::For(std::time::Duration::from_secs(5))) {
                Ok(conn) => break conn,
                Err(e) => {
                    assert_eq!(e.status(), Status::DTUN_ERR_CONNECT, "{e}");
                    let d = backoff.next(Failure::of(e.status(), None));
                    let n = delays.len() as u32;
                    let ceiling = (50u64 << (n + 1).min(32)).min(400);
                    assert!(
                        (50..=ceiling).contains(&(d.as_millis() as u64)),
                        "failure {n}: {d:?}"
                    );
                    delays.push(d);
                    assert!(delays.len() < 100, "the proxy never came back");
                    std::thread::sleep(d);
                }
            }
        };
        assert!(delays.len() >= 2, "outage {outage}: {delays:?}");
        echo(&conn, b"after the restart");
        conn.close();
        backoff.reset();
        proxy.join().unwrap();
    }
}
