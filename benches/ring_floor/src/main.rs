//! ring's own AEAD rate on this machine: the crypto floor of `scripts/bench.sh`.
//!
//!   dtun-ring-floor [SECONDS_PER_FIGURE]     (default 0.5)
//!
//! For each of AES-256-GCM, AES-128-GCM and ChaCha20-Poly1305: seals (encrypts + tags)
//! 16 KiB records in place, the size of a full TLS record, with a fresh nonce per record and
//! 13 bytes of associated data as a TLS record header; then seals and opens (checks +
//! decrypts) the same record in place, pair after pair. Prints one line per figure, as the
//! C benchmarks do (MB = 10^6 bytes of plaintext):
//!
//!   ring aead_aes_256_gcm_seal_mb_per_s 5600.0   (seal alone)
//!   ring aead_aes_256_gcm_open_mb_per_s 5000.0   (open, derived: 2/pass - 1/seal = 1/open)
//!   ring aead_aes_256_gcm_mb_per_s 5300.0        (one pass: 2 x bytes / time of the pairs)
//!
//! MB/s counts plaintext bytes per second of the thread's CPU time (not wall time), so
//! another process taking the CPU does not lower the figure.

use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use std::hint::black_box;

const RECORD: usize = 16 * 1024;
const TAG: usize = 16;

fn thread_cpu_s() -> f64 {
    let mut ts = Ts { sec: 0, nsec: 0 };
    // SAFETY: clock_gettime writes one timespec into ts.
    unsafe { clock_gettime(CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.sec as f64 + ts.nsec as f64 / 1e9
}

#[repr(C)]
struct Ts {
    sec: i64,
    nsec: i64,
}
const CLOCK_THREAD_CPUTIME_ID: i32 = 3;
extern "C" {
    fn clock_gettime(clock: i32, ts: *mut Ts) -> i32;
}

fn nonce(n: u64) -> Nonce {
    let mut b = [0u8; 12];
    b[4..].copy_from_slice(&n.to_be_bytes());
    Nonce::assume_unique_for_key(b)
}

/// (seal MB/s, open MB/s, one-pass MB/s) of one algorithm.
fn measure(alg: &'static aead::Algorithm, seconds: f64) -> (f64, f64, f64) {
    let key_bytes = vec![0x42u8; alg.key_len()];
    let key = LessSafeKey::new(UnboundKey::new(alg, &key_bytes).expect("key"));
    let aad = [0x17u8, 0x03, 0x03, 0x40, 0x11, 0, 0, 0, 0, 0, 0, 0, 0];
    let mut buf = vec![0xa5u8; RECORD];
    let mut tag_out = [0u8; TAG];

    // Seal: warm up, then as many records as fit in `seconds` of CPU.
    let mut n: u64 = 0;
    let seal = |n: u64, buf: &mut [u8], tag_out: &mut [u8; TAG]| {
        let tag = key
            .seal_in_place_separate_tag(nonce(n), Aad::from(aad), buf)
            .expect("seal");
        tag_out.copy_from_slice(tag.as_ref());
    };
    for _ in 0..64 {
        seal(n, &mut buf, &mut tag_out);
        n += 1;
    }
    let t0 = thread_cpu_s();
    let mut count: u64 = 0;
    loop {
        for _ in 0..64 {
            seal(n, &mut buf, &mut tag_out);
            n += 1;
        }
        count += 64;
        if thread_cpu_s() - t0 >= seconds {
            break;
        }
    }
    let seal_rate = (count as f64) * RECORD as f64 / 1e6 / (thread_cpu_s() - t0);
    black_box(&buf);

    // One pass: seal then open the same 16 KiB in place, again and again (the buffer is
    // plaintext again after each pair, so no copy is needed, and the open checks a real
    // tag). 2 x bytes / the pairs' time is the rate of one pass as the floor counts it (as
    // many bytes opened as sealed): the harmonic mean of the two rates, measured directly.
    let mut pair = vec![0x3cu8; RECORD + TAG];
    let one_pair = |n: u64, pair: &mut Vec<u8>| {
        let (body, tag_room) = pair.split_at_mut(RECORD);
        let tag = key
            .seal_in_place_separate_tag(nonce(n), Aad::from(aad), body)
            .expect("seal");
        tag_room.copy_from_slice(tag.as_ref());
        let plain = key
            .open_in_place(nonce(n), Aad::from(aad), pair.as_mut_slice())
            .expect("open");
        black_box(plain.len());
    };
    for _ in 0..64 {
        one_pair(n, &mut pair);
        n += 1;
    }
    let t0 = thread_cpu_s();
    let mut pairs: u64 = 0;
    loop {
        for _ in 0..64 {
            one_pair(n, &mut pair);
            n += 1;
        }
        pairs += 64;
        if thread_cpu_s() - t0 >= seconds {
            break;
        }
    }
    let pass_rate = 2.0 * (pairs as f64) * RECORD as f64 / 1e6 / (thread_cpu_s() - t0);
    // The open's own rate, from 2 / pass = 1 / seal + 1 / open (two measurements apart:
    // noisier than either).
    let open_inv = 2.0 / pass_rate - 1.0 / seal_rate;
    let open_rate = if open_inv > 0.0 {
        1.0 / open_inv
    } else {
        f64::INFINITY
    };
    (seal_rate, open_rate, pass_rate)
}

fn main() {
    let seconds: f64 = std::env::args()
        .nth(1)
        .map(|s| s.parse().expect("SECONDS_PER_FIGURE must be a number"))
        .unwrap_or(0.5);
    let algs: [(&str, &'static aead::Algorithm); 3] = [
        ("aes_256_gcm", &aead::AES_256_GCM),
        ("aes_128_gcm", &aead::AES_128_GCM),
        ("chacha20_poly1305", &aead::CHACHA20_POLY1305),
    ];
    for (name, alg) in algs {
        let (seal, open, pass) = measure(alg, seconds);
        println!("ring aead_{name}_seal_mb_per_s {seal:.1}");
        println!("ring aead_{name}_open_mb_per_s {open:.1}");
        // One pass = one encryption or one decryption of each byte, as many of each.
        println!("ring aead_{name}_mb_per_s {pass:.1}");
    }
}
