//! ring's own AEAD rate on this machine: the crypto floor of `scripts/bench.sh`.
//!
//!   dtun-ring-floor [SECONDS_PER_FIGURE]     (default 0.5)
//!
//! For each of AES-256-GCM, AES-128-GCM and ChaCha20-Poly1305, seals (encrypts + tags) and
//! opens (checks + decrypts) 16 KiB records in place, the size of a full TLS record, with a
//! fresh nonce per record and 13 bytes of associated data as TLS 1.2 / 1.3 records carry
//! (5-byte header). Prints one line per figure, as the C benchmarks do:
//!
//!   ring aead_aes_256_gcm_seal_mb_per_s 4321.0
//!   ring aead_aes_256_gcm_open_mb_per_s 4400.0
//!   ring aead_aes_256_gcm_mb_per_s 4360.0        (one pass: mean of seal and open, MB = 10^6 B)
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

/// (seal MB/s, open MB/s) of one algorithm.
fn measure(alg: &'static aead::Algorithm, seconds: f64) -> (f64, f64) {
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

    // Open: each record is a real ciphertext (sealed once, outside the timed loop) and is
    // restored from a copy before each open; the copy's cost is measured alone and removed.
    let mut sealed = vec![0x5au8; RECORD];
    let seq = n;
    let tag = key
        .seal_in_place_separate_tag(nonce(seq), Aad::from(aad), &mut sealed)
        .expect("seal");
    sealed.extend_from_slice(tag.as_ref());
    let mut work = sealed.clone();
    let open = |work: &mut Vec<u8>| {
        work.copy_from_slice(&sealed);
        let plain = key
            .open_in_place(nonce(seq), Aad::from(aad), work.as_mut_slice())
            .expect("open");
        black_box(plain.len());
    };
    for _ in 0..64 {
        open(&mut work);
    }
    let t0 = thread_cpu_s();
    let mut count: u64 = 0;
    loop {
        for _ in 0..64 {
            open(&mut work);
        }
        count += 64;
        if thread_cpu_s() - t0 >= seconds {
            break;
        }
    }
    let open_s = thread_cpu_s() - t0;
    // The copy alone, the same number of times.
    let t1 = thread_cpu_s();
    for _ in 0..count {
        work.copy_from_slice(black_box(&sealed));
        black_box(&work);
    }
    let copy_s = thread_cpu_s() - t1;
    let open_rate = (count as f64) * RECORD as f64 / 1e6 / (open_s - copy_s).max(open_s * 0.5);
    (seal_rate, open_rate)
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
        let (seal, open) = measure(alg, seconds);
        println!("ring aead_{name}_seal_mb_per_s {seal:.1}");
        println!("ring aead_{name}_open_mb_per_s {open:.1}");
        // One pass = one encryption or one decryption of each byte: the mean of the two
        // rates as time per byte (harmonic mean), since the floor adds their times.
        let pass = 2.0 / (1.0 / seal + 1.0 / open);
        println!("ring aead_{name}_mb_per_s {pass:.1}");
    }
}
