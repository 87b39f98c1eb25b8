//! A send that times out may leave bytes queued inside TLS (accepted, not yet on the wire).
//! An agent that then waits for the collector's reply must still get it: the wait pushes the
//! queued bytes out. Without that, both ends would wait for each other forever.

mod support;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::Duration;

use dragent_tunnel::{Transfer, Wait};
use support::*;

/// A collector that completes the handshake, reads nothing until told how many bytes to
/// expect, then reads exactly that many and answers "ok". Returns its port, the channel to
/// tell it, and its thread (which returns how many bytes it read).
fn holding_collector(env: &Env) -> (u16, mpsc::Sender<usize>, std::thread::JoinHandle<usize>) {
    let server_tls = env.server_tls(Cert::Trusted);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (go_tx, go_rx) = mpsc::channel::<usize>();
    let server = std::thread::spawn(move || {
        let (tcp, _) = listener.accept().unwrap();
        let conn = rustls::ServerConnection::new(server_tls).unwrap();
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        while tls.conn.is_handshaking() {
            tls.conn.complete_io(&mut tls.sock).unwrap();
        }
        let expected = go_rx.recv().unwrap();
        let mut got = 0usize;
        let mut buf = vec![0u8; 64 * 1024];
        while got < expected {
            let n = tls.read(&mut buf).unwrap();
            assert!(n > 0, "the client's bytes stopped at {got} of {expected}");
            got += n;
        }
        tls.write_all(b"ok").unwrap();
        tls.flush().unwrap();
        got
    });
    (port, go_tx, server)
}

/// Sends until a send times out (the socket buffers are full; what the last send accepted
/// may sit in rustls); returns how many bytes were accepted in all.
fn fill_until_a_send_times_out(conn: &dragent_tunnel::Connection) -> usize {
    let chunk = vec![7u8; 256 * 1024];
    let mut total = 0usize;
    loop {
        let (sent, result) = conn.send(&chunk, Wait::For(Duration::from_millis(200)));
        total += sent;
        if result.expect("send") == Transfer::TimedOut {
            return total;
        }
        assert!(total < 1 << 30, "the peer never pushed back");
    }
}

/// Receives exactly the two bytes of the reply; each recv brings at least one byte.
fn recv_ok(conn: &dragent_tunnel::Connection) {
    let mut reply = [0u8; 2];
    let mut got = 0;
    for _ in 0..reply.len() {
        if got == reply.len() {
            break;
        }
        let (n, result) = conn.recv(&mut reply[got..], Wait::For(Duration::from_secs(30)));
        assert_eq!(
            result.expect("recv"),
            Transfer::Complete,
            "no reply after {got} byte(s): the queued bytes never left"
        );
        assert!(n > 0, "a complete recv brought no byte");
        got += n;
    }
    assert_eq!(&reply[..got], b"ok");
}

#[test]
fn a_reader_already_waiting_pushes_out_what_a_later_timed_out_send_left_queued() {
    let env = Env::new("queued-waiting");
    let (port, go_tx, server) = holding_collector(&env);
    let cfg = Yaml::collector(port).tls_collector(&env).build();
    let conn = open_ok(&cfg);
    std::thread::scope(|scope| {
        // The reader waits first, from before any byte is queued: it must be told.
        let reader = scope.spawn(|| recv_ok(&conn));
        let total = fill_until_a_send_times_out(&conn);
        go_tx.send(total).unwrap();
        reader.join().unwrap();
        assert_eq!(server.join().unwrap(), total);
    });
}

#[test]
fn recv_pushes_out_what_a_timed_out_send_left_queued() {
    let env = Env::new("queued");
    let (port, go_tx, server) = holding_collector(&env);
    let cfg = Yaml::collector(port).tls_collector(&env).build();
    let conn = open_ok(&cfg);
    let total = fill_until_a_send_times_out(&conn);
    go_tx.send(total).unwrap();
    // The reply needs every accepted byte to arrive first.
    recv_ok(&conn);
    assert_eq!(server.join().unwrap(), total);
}
