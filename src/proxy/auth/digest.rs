//! Digest access authentication (RFC 7616) for CONNECT: MD5, SHA-256 and SHA-512-256, each
//! with its `-sess` variant, `qop=auth` (or no qop, RFC 2069's form), `userhash`, the
//! request's `uri` being the CONNECT target `host:port`.
//!
//! Every value derived from the password (HA1, the response, the header value) is a
//! [`Secret`].

use std::fmt::Write as _;

use md5::{Digest as _, Md5};
use ring::digest;

use super::Challenge;
use crate::config::Secret;

/// A hash algorithm of Digest, and whether it is the `-sess` variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Algorithm {
    hash: Hash,
    sess: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Hash {
    Md5,
    Sha256,
    Sha512_256,
}

impl Algorithm {
    /// The `algorithm` parameter's value (absent: MD5).
    fn parse(text: Option<&str>) -> Option<Algorithm> {
        let text = text.unwrap_or("MD5").to_ascii_uppercase();
        let (name, sess) = match text.strip_suffix("-SESS") {
            Some(name) => (name.to_owned(), true),
            None => (text, false),
        };
        let hash = match name.as_str() {
            "MD5" => Hash::Md5,
            "SHA-256" => Hash::Sha256,
            "SHA-512-256" => Hash::Sha512_256,
            _ => return None,
        };
        Some(Algorithm { hash, sess })
    }

    /// The name sent back.
    pub fn name(self) -> &'static str {
        match (self.hash, self.sess) {
            (Hash::Md5, false) => "MD5",
            (Hash::Md5, true) => "MD5-sess",
            (Hash::Sha256, false) => "SHA-256",
            (Hash::Sha256, true) => "SHA-256-sess",
            (Hash::Sha512_256, false) => "SHA-512-256",
            (Hash::Sha512_256, true) => "SHA-512-256-sess",
        }
    }

    /// Lowercase hex of the hash of `data`.
    fn hex(self, data: &[u8]) -> Secret {
        let bytes = Secret::new(match self.hash {
            Hash::Md5 => Md5::digest(data).to_vec(),
            Hash::Sha256 => digest::digest(&digest::SHA256, data).as_ref().to_vec(),
            Hash::Sha512_256 => digest::digest(&digest::SHA512_256, data).as_ref().to_vec(),
        });
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut out = Vec::with_capacity(bytes.expose().len() * 2);
        for b in bytes.expose() {
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 15)]);
        }
        Secret::new(out)
    }
}

/// A Digest challenge, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestChallenge {
    /// `realm`.
    pub realm: String,
    /// `nonce`.
    pub nonce: String,
    /// `opaque`, sent back unchanged.
    pub opaque: Option<String>,
    /// `algorithm`.
    pub algorithm: Algorithm,
    /// Whether `qop` was offered (then it includes `auth`).
    pub qop: bool,
    /// `stale=true`: the nonce expired, the credentials were good.
    pub stale: bool,
    /// `userhash=true`: send H(user:realm) as the user name.
    pub userhash: bool,
}

impl DigestChallenge {
    /// Checks a `Digest` challenge; the error says what we cannot answer.
    pub fn from_challenge(c: &Challenge) -> Result<DigestChallenge, String> {
        let nonce = c
            .param("nonce")
            .filter(|n| !n.is_empty())
            .ok_or("a Digest challenge without a nonce")?;
        let realm = c.param("realm").unwrap_or_default();
        let algorithm = Algorithm::parse(c.param("algorithm")).ok_or_else(|| {
            format!(
                "a Digest challenge with an unsupported algorithm {:?}",
                c.param("algorithm")
                    .unwrap_or_default()
                    .chars()
                    .take(40)
                    .collect::<String>()
            )
        })?;
        let qop = match c.param("qop") {
            None => false,
            Some(list)
                if list
                    .split(',')
                    .any(|q| q.trim().eq_ignore_ascii_case("auth")) =>
            {
                true
            }
            Some(_) => return Err("a Digest challenge whose qop does not offer auth".into()),
        };
        let flag = |name: &str| {
            c.param(name)
                .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
        };
        Ok(DigestChallenge {
            realm: realm.to_owned(),
            nonce: nonce.to_owned(),
            opaque: c.param("opaque").map(str::to_owned),
            algorithm,
            qop,
            stale: flag("stale"),
            userhash: flag("userhash"),
        })
    }

    /// How much we prefer this challenge among several (RFC 7616 3.7: the strongest hash).
    pub fn strength(&self) -> u8 {
        match self.algorithm.hash {
            Hash::Md5 => 1,
            Hash::Sha256 => 2,
            Hash::Sha512_256 => 3,
        }
    }

    /// The `response` value (RFC 7616 3.4.1) for `method uri` with this `cnonce` and
    /// nonce count.
    pub fn response(
        &self,
        user: &str,
        password: &Secret,
        method: &str,
        uri: &str,
        cnonce: &str,
        nc: u32,
    ) -> Secret {
        let alg = self.algorithm;
        let mut a1 =
            Vec::with_capacity(user.len() + self.realm.len() + password.expose().len() + 2);
        a1.extend_from_slice(user.as_bytes());
        a1.push(b':');
        a1.extend_from_slice(self.realm.as_bytes());
        a1.push(b':');
        a1.extend_from_slice(password.expose());
        let a1 = Secret::new(a1);
        let mut ha1 = alg.hex(a1.expose());
        if alg.sess {
            let mut sess = ha1.expose().to_vec();
            sess.extend_from_slice(format!(":{}:{cnonce}", self.nonce).as_bytes());
            let sess = Secret::new(sess);
            ha1 = alg.hex(sess.expose());
        }
        let ha2 = alg.hex(format!("{method}:{uri}").as_bytes());
        let mut data = ha1.expose().to_vec();
        if self.qop {
            data.extend_from_slice(format!(":{}:{nc:08x}:{cnonce}:auth:", self.nonce).as_bytes());
        } else {
            data.extend_from_slice(format!(":{}:", self.nonce).as_bytes());
        }
        data.extend_from_slice(ha2.expose());
        let data = Secret::new(data);
        alg.hex(data.expose())
    }

    /// The whole `Proxy-Authorization` value.
    pub fn authorization(
        &self,
        user: &str,
        password: &Secret,
        uri: &str,
        cnonce: &str,
        nc: u32,
    ) -> Secret {
        self.answer(user, password, uri, cnonce, nc).value
    }

    /// The whole `Proxy-Authorization` value, with its `response` apart: what a proxy echoing
    /// either must not get shown (the caller redacts both, without looking for the response in
    /// the value, where a realm or user name could hold the text `response="` too).
    pub fn answer(
        &self,
        user: &str,
        password: &Secret,
        uri: &str,
        cnonce: &str,
        nc: u32,
    ) -> DigestAnswer {
        let response = self.response(user, password, "CONNECT", uri, cnonce, nc);
        let mut v = String::from("Digest ");
        if self.userhash {
            let hashed = self
                .algorithm
                .hex(format!("{user}:{}", self.realm).as_bytes());
            let _ = write!(
                v,
                "username=\"{}\", ",
                String::from_utf8_lossy(hashed.expose())
            );
        } else if user.is_ascii() {
            let _ = write!(v, "username={}, ", quoted(user));
        } else {
            let _ = write!(v, "username*=UTF-8''{}, ", percent_encoded(user));
        }
        let _ = write!(
            v,
            "realm={}, uri={}, algorithm={}, nonce={}, ",
            quoted(&self.realm),
            quoted(uri),
            self.algorithm.name(),
            quoted(&self.nonce)
        );
        if self.qop {
            let _ = write!(v, "nc={nc:08x}, cnonce={}, qop=auth, ", quoted(cnonce));
        }
        v.push_str("response=\"");
        // The response goes straight into the secret buffer.
        let mut out = v.into_bytes();
        out.reserve(response.expose().len() + 256);
        out.extend_from_slice(response.expose());
        out.push(b'"');
        if let Some(opaque) = &self.opaque {
            out.extend_from_slice(format!(", opaque={}", quoted(opaque)).as_bytes());
        }
        if self.userhash {
            out.extend_from_slice(b", userhash=true");
        }
        DigestAnswer {
            value: Secret::new(out),
            response,
        }
    }
}

/// A Digest answer: the `Proxy-Authorization` value and, apart, its `response` (both
/// secrets).
#[derive(Debug, Clone)]
pub struct DigestAnswer {
    /// The whole `Proxy-Authorization` value.
    pub value: Secret,
    /// The `response` parameter's value (the hex digest that proves the password).
    pub response: Secret,
}

/// A quoted-string, `"` and `\` escaped, control characters dropped (a header value may not
/// hold them).
fn quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars().filter(|c| !c.is_control()) {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// RFC 8187 ext-value encoding of UTF-8 text.
fn percent_encoded(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// A fresh client nonce: 16 random bytes in hex.
pub fn new_cnonce() -> String {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 16];
    // A failing system RNG leaves zeros: the cnonce is no secret, only a uniquifier.
    let _ = ring::rand::SystemRandom::new().fill(&mut bytes);
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::auth::parse_challenges;

    /// RFC 7616 3.9.1: the challenge, the user "Mufasa" and password "Circle of Life".
    fn rfc_challenge(algorithm: &str) -> DigestChallenge {
        let header = format!(
            "Digest realm=\"http-auth@example.org\", qop=\"auth, auth-int\", algorithm={algorithm}, \
             nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\", \
             opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\""
        );
        let c = parse_challenges(&[header]);
        DigestChallenge::from_challenge(&c[0]).unwrap()
    }

    const CNONCE: &str = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";

    fn rfc_response(algorithm: &str) -> String {
        let d = rfc_challenge(algorithm);
        let r = d.response(
            "Mufasa",
            &Secret::from("Circle of Life".to_string()),
            "GET",
            "/dir/index.html",
            CNONCE,
            1,
        );
        String::from_utf8(r.expose().to_vec()).unwrap()
    }

    #[test]
    fn rfc7616_md5_example() {
        assert_eq!(rfc_response("MD5"), "8ca523f5e9506fed4657c9700eebdbec");
    }

    #[test]
    fn rfc7616_sha256_example() {
        assert_eq!(
            rfc_response("SHA-256"),
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
        );
    }

    #[test]
    fn the_header_carries_every_field() {
        let d = rfc_challenge("SHA-256");
        let v = d.authorization(
            "Mufasa",
            &Secret::from("Circle of Life".to_string()),
            "collector.example:6443",
            CNONCE,
            1,
        );
        let v = String::from_utf8(v.expose().to_vec()).unwrap();
        assert!(v.starts_with("Digest username=\"Mufasa\", realm=\"http-auth@example.org\", uri=\"collector.example:6443\", algorithm=SHA-256, nonce=\"7ypf/"), "{v}");
        assert!(v.contains(", nc=00000001, cnonce=\"f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ\", qop=auth, response=\""), "{v}");
        assert!(
            v.ends_with("\", opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\""),
            "{v}"
        );
    }

    #[test]
    fn sess_sha512_256_and_userhash() {
        // Computed by hand from RFC 7616's definitions: the -sess HA1 is
        // H(H(user:realm:pass):nonce:cnonce).
        let d = rfc_challenge("SHA-512-256-sess");
        assert!(d.algorithm.sess);
        let pass = Secret::from("Circle of Life".to_string());
        let ha1 = Algorithm::parse(Some("SHA-512-256"))
            .unwrap()
            .hex(b"Mufasa:http-auth@example.org:Circle of Life");
        let mut sess = ha1.expose().to_vec();
        sess.extend_from_slice(format!(":{}:{CNONCE}", d.nonce).as_bytes());
        let alg = d.algorithm;
        let ha1 = alg.hex(&sess);
        let ha2 = alg.hex(b"CONNECT:c:1");
        let mut data = ha1.expose().to_vec();
        data.extend_from_slice(format!(":{}:00000002:{CNONCE}:auth:", d.nonce).as_bytes());
        data.extend_from_slice(ha2.expose());
        assert_eq!(
            d.response("Mufasa", &pass, "CONNECT", "c:1", CNONCE, 2),
            alg.hex(&data)
        );
        assert_eq!(alg.hex(b"").expose().len(), 64);

        // RFC 7616 3.9.2: userhash of "J\u{e4}s\u{f8}n Doe" in realm "api@example.org" with
        // SHA-512-256.
        let c = parse_challenges(&[
            "Digest realm=\"api@example.org\", qop=\"auth\", algorithm=SHA-512-256, nonce=\"5TsQWLVdgBdmrQ0XsxbDODV+57QdFR34I9HAbC/RVvkK\", opaque=\"HRPCssKJSGjCrkzDg8OhwpzCiGPChXYjwrI2QmXDnsOS\", charset=UTF-8, userhash=true".to_string(),
        ]);
        let d = DigestChallenge::from_challenge(&c[0]).unwrap();
        assert!(d.userhash);
        let v = d.authorization("J\u{e4}s\u{f8}n Doe", &pass, "c:1", CNONCE, 1);
        let v = String::from_utf8(v.expose().to_vec()).unwrap();
        assert!(
            // RFC 7616 prints 4888694...; erratum 4897 corrects it to this value, the
            // SHA-512-256 of the UTF-8 text "J\u{e4}s\u{f8}n Doe:api@example.org".
            v.starts_with("Digest username=\"793263caabb707a56211940d90411ea4a575adeccb7e360aeb624ed06ece9b0b\""),
            "{v}"
        );
        assert!(v.ends_with(", userhash=true"), "{v}");
    }

    #[test]
    fn without_qop_rfc2069_form() {
        let c = parse_challenges(&["Digest realm=\"r\", nonce=\"n\"".to_string()]);
        let d = DigestChallenge::from_challenge(&c[0]).unwrap();
        assert!(!d.qop);
        let alg = d.algorithm;
        let ha1 = alg.hex(b"u:r:p");
        let ha2 = alg.hex(b"CONNECT:c:1");
        let mut data = ha1.expose().to_vec();
        data.extend_from_slice(b":n:");
        data.extend_from_slice(ha2.expose());
        let pass = Secret::from("p".to_string());
        assert_eq!(
            d.response("u", &pass, "CONNECT", "c:1", "x", 1),
            alg.hex(&data)
        );
        let v = d.authorization("u", &pass, "c:1", "x", 1);
        assert!(!String::from_utf8_lossy(v.expose()).contains("nc="));
    }

    #[test]
    fn challenges_we_cannot_answer() {
        for (header, why) in [
            ("Digest realm=\"r\"", "without a nonce"),
            ("Digest realm=\"r\", nonce=\"\"", "without a nonce"),
            (
                "Digest nonce=\"n\", algorithm=SHA-1",
                "unsupported algorithm",
            ),
            ("Digest nonce=\"n\", qop=\"auth-int\"", "qop"),
        ] {
            let c = parse_challenges(&[header.to_string()]);
            let e = DigestChallenge::from_challenge(&c[0]).unwrap_err();
            assert!(e.contains(why), "{header}: {e}");
        }
    }

    #[test]
    fn cnonces_differ() {
        assert_ne!(new_cnonce(), new_cnonce());
        assert_eq!(new_cnonce().len(), 32);
    }
}
