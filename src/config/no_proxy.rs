//! `NO_PROXY` lists with curl's rules (`http_proxy.no_proxy`, `no_proxy` / `NO_PROXY`): which
//! collectors go direct even though a proxy is configured. No I/O: text in, decisions out.
//!
//! The rules, as curl applies them (its `lib/noproxy.c`, tested by its `unit1614.c`, whose
//! cases are ported in the tests below):
//! - `*` alone (blanks around it ignored) matches every host.
//! - Entries are separated by commas; blanks around entries are trimmed, and a blank inside
//!   the list also separates entries (`"a b"` is `a` and `b`, as curl reads it); empty entries
//!   are skipped.
//! - Leading and trailing dots are ignored, on the entry and on the host (before the entry
//!   is read as a name or an address).
//! - A name entry matches the host itself and its subdomains at a label boundary,
//!   case-insensitively: `example.com` matches `example.com` and `www.example.com`, not
//!   `nonexample.com`.
//! - An IP host matches IP entries only: exactly, or by CIDR (`10.0.0.0/8`, `fd00::/8`); the
//!   host bits of a CIDR entry need not be zero (`127.0.0.1/8` is `127.0.0.0/8`). A name
//!   never matches an IP entry and an IP never matches a name entry: nothing is resolved.
//! - Ports are not matched: an entry with a port (`host:8080`) matches nothing.
//! - Nothing bypasses the proxy implicitly: `localhost` and `127.0.0.1` go direct only when
//!   the list says so.
//!
//! Parsing is strict where curl's is loose: an entry with a `/` must be an IP address and a
//! prefix length in range (IPv4 `/0`-`/32`, IPv6 `/0`-`/128`, decimal digits only), or the
//! list is refused with an error naming where it came from. `/0` matches every address of
//! its family (curl's internal "no prefix" reading of a zero is not reproduced: an explicit
//! `/0` means what it says).

use std::net::IpAddr;

use super::Host;

/// One entry of the list.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    /// A domain name, lowercased, without leading and trailing dots.
    Name(String),
    /// An IP address, exact (`None`) or with a prefix length.
    Net(IpAddr, Option<u8>),
}

/// A parsed `NO_PROXY` list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NoProxy {
    all: bool,
    entries: Vec<Entry>,
}

impl NoProxy {
    /// Parses a list. `source` (a key or a variable name) is named in errors. An entry is
    /// quoted in an error only in part (at most 64 characters): a list carries no secrets.
    pub fn parse(source: &str, text: &str) -> Result<NoProxy, String> {
        // The same blanks as the separators below: a `*` next to another blank (a vertical
        // tab, say) is an entry of its own, not the whole list.
        if text.trim_matches(|c: char| c.is_ascii_whitespace()) == "*" {
            return Ok(NoProxy {
                all: true,
                entries: Vec::new(),
            });
        }
        let mut entries = Vec::new();
        for raw in text.split(|c: char| c == ',' || c.is_ascii_whitespace()) {
            if raw.is_empty() {
                continue;
            }
            entries.push(parse_entry(source, raw)?);
        }
        Ok(NoProxy {
            all: false,
            entries: entries.into_iter().flatten().collect(),
        })
    }

    /// Whether the list is empty (matches nothing).
    pub fn is_empty(&self) -> bool {
        !self.all && self.entries.is_empty()
    }

    /// Whether the list is `*` (matches everything).
    pub fn matches_all(&self) -> bool {
        self.all
    }

    /// Whether `host` goes direct.
    pub fn matches(&self, host: &Host) -> bool {
        if self.all {
            return true;
        }
        match host {
            Host::Ip(ip) => self.entries.iter().any(|e| match e {
                Entry::Net(net, prefix) => ip_matches(*ip, *net, *prefix),
                Entry::Name(_) => false,
            }),
            Host::Name(name) => {
                let name = strip_dots(name).to_ascii_lowercase();
                self.entries.iter().any(|e| match e {
                    Entry::Name(domain) => name_matches(&name, domain),
                    Entry::Net(..) => false,
                })
            }
        }
    }

    /// Whether a host written as text goes direct: an IP literal (IPv6 with or without
    /// brackets) or a name. For tests and fuzzing with curl's own inputs.
    pub fn matches_text(&self, host: &str) -> bool {
        let unbracketed = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        match unbracketed.parse::<IpAddr>() {
            Ok(ip) => self.matches(&Host::Ip(ip)),
            Err(_) => self.matches(&Host::Name(host.to_owned())),
        }
    }

    /// The list in its normalised form, for reports (`*`, or the entries joined by commas).
    pub fn describe(&self) -> String {
        if self.all {
            return "*".into();
        }
        self.entries
            .iter()
            .map(|e| match e {
                Entry::Name(n) => n.clone(),
                Entry::Net(ip, None) => ip.to_string(),
                Entry::Net(ip, Some(p)) => format!("{ip}/{p}"),
            })
            .collect::<Vec<_>>()
            .join(",")
    }
}

fn parse_entry(source: &str, raw: &str) -> Result<Option<Entry>, String> {
    let shown = || {
        let cut: String = raw.chars().take(64).collect();
        if cut.len() < raw.len() {
            format!("\"{}...\"", cut.escape_debug())
        } else {
            format!("\"{}\"", cut.escape_debug())
        }
    };
    // The dots first, then what the entry is: `.10.0.0.1` is the address 10.0.0.1. A `*`
    // that is not the whole list matches no host name and is skipped (so a normalised list
    // never reads as `*`).
    if raw.chars().any(char::is_control) {
        return Err(format!(
            "{source}: entry {} holds a control character",
            shown()
        ));
    }
    let entry = raw.trim_matches('.');
    if entry.is_empty() || entry == "*" {
        return Ok(None);
    }
    if let Some((addr, bits)) = entry.split_once('/') {
        let ip = addr.parse::<IpAddr>().map_err(|_| {
            format!(
                "{source}: entry {} has a '/' but {} is not an IP address (a CIDR entry is \
                 address/prefix, e.g. 10.0.0.0/8 or fd00::/8)",
                shown(),
                "what precedes it"
            )
        })?;
        let max: u8 = if ip.is_ipv4() { 32 } else { 128 };
        let prefix =
            (!bits.is_empty() && bits.len() <= 3 && bits.bytes().all(|b| b.is_ascii_digit()))
                .then(|| bits.parse::<u8>().ok())
                .flatten()
                .filter(|p| *p <= max)
                .ok_or_else(|| {
                    format!(
                        "{source}: entry {}: the prefix length must be a number from 0 to {max}",
                        shown()
                    )
                })?;
        return Ok(Some(Entry::Net(ip, Some(prefix))));
    }
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Ok(Some(Entry::Net(ip, None)));
    }
    Ok(Some(Entry::Name(entry.to_ascii_lowercase())))
}

/// Without its trailing dots.
fn strip_dots(s: &str) -> &str {
    s.trim_end_matches('.')
}

/// `name` is `domain` or a subdomain of it (both lowercased, without dots at their ends).
fn name_matches(name: &str, domain: &str) -> bool {
    name == domain
        || (name.len() > domain.len()
            && name.ends_with(domain)
            && name.as_bytes()[name.len() - domain.len() - 1] == b'.')
}

fn ip_matches(host: IpAddr, net: IpAddr, prefix: Option<u8>) -> bool {
    match (host, net) {
        (IpAddr::V4(h), IpAddr::V4(n)) => {
            let bits = u32::from(prefix.unwrap_or(32));
            let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
            u32::from(h) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(h), IpAddr::V6(n)) => {
            let bits = u32::from(prefix.unwrap_or(128));
            let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
            u128::from(h) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fuzz_finds_a_star_beside_a_blank_that_is_not_a_separator_and_control_characters() {
        // ".*\x0b" normalised to "*\x0b", which read back as the whole-list "*".
        for text in [".*\x0b", "*\x0b", "a.example\x01"] {
            let err = NoProxy::parse("NO_PROXY", text).expect_err(text);
            assert!(err.contains("control character"), "{err}");
        }
        assert!(NoProxy::parse("NO_PROXY", " *\t").unwrap().matches_all());
    }

    fn check(host: &str, list: &str) -> bool {
        NoProxy::parse("NO_PROXY", list)
            .unwrap_or_else(|e| panic!("{list}: {e}"))
            .matches_text(host)
    }

    /// curl's tests/unit/unit1614.c, the `Curl_check_noproxy` table (ported: same host,
    /// same list, same answer).
    #[test]
    fn curl_unit1614_noproxy_table() {
        let long128 = "localhost,127.0.0.1.127.0.0.1.127.0.0.1.127.0.0.1.127.0.0.1.127.0.0.1.127.0.0.1.127.0.0.1.127.0.0.1.127.0.0.1.127.0.0.1.127.0.0.1.127.0.0.";
        let long127 = "localhost,127.0.0.1.127.0.0.1.127.0.0.1.127.0.0.1.127.0.0.1.127.0.0.1.127.0.0.1.127.0.0.1.127.0.0.1.127.0.0.1.127.0.0.1.127.0.0.1.127.0.0";
        let table: &[(&str, &str, bool)] = &[
            (
                "www.example.com",
                "localhost .example.com .example.de",
                true,
            ),
            (
                "www.example.com",
                "localhost,.example.com,.example.de",
                true,
            ),
            (
                "www.example.com.",
                "localhost,.example.com,.example.de",
                true,
            ),
            ("example.com", "localhost,.example.com,.example.de", true),
            ("example.com.", "localhost,.example.com,.example.de", true),
            (
                "www.example.com",
                "localhost,.example.com.,.example.de",
                true,
            ),
            (
                "www.example.com",
                "localhost,www.example.com.,.example.de",
                true,
            ),
            ("example.com", "localhost,example.com,.example.de", true),
            ("example.com.", "localhost,example.com,.example.de", true),
            ("nexample.com", "localhost,example.com,.example.de", false),
            ("www.example.com", "localhost,example.com,.example.de", true),
            ("127.0.0.1", "127.0.0.1,localhost", true),
            ("127.0.0.1", "127.0.0.1,localhost,", true),
            ("127.0.0.1", "127.0.0.1/8,localhost,", true),
            ("127.0.0.1", "127.0.0.1/28,localhost,", true),
            ("127.0.0.1", "127.0.0.1/31,localhost,", true),
            ("127.0.0.1", "localhost,127.0.0.1", true),
            ("127.0.0.1", long128, false),
            ("127.0.0.1", long127, false),
            ("localhost", "localhost,127.0.0.1", true),
            ("localhost", "127.0.0.1,localhost", true),
            ("foobar", "barfoo", false),
            ("foobar", "foobar", true),
            ("192.168.0.1", "foobar", false),
            ("192.168.0.1", "192.168.0.0/16", true),
            ("192.168.0.1", "192.168.0.0/24", true),
            ("192.168.0.1", "192.168.0.0/32", false),
            ("192.168.0.1", "192.168.0.0", false),
            ("192.168.1.1", "192.168.0.0/24", false),
            ("192.168.1.1", "foo, bar, 192.168.0.0/24", false),
            ("192.168.1.1", "foo, bar, 192.168.0.0/16", true),
            ("[::1]", "foo, bar, 192.168.0.0/16", false),
            ("[::1]", "foo, bar, ::1/64", true),
            ("bar", "foo, bar, ::1/64", true),
            ("BAr", "foo, bar, ::1/64", true),
            ("BAr", "foo,,,,,              bar, ::1/64", true),
            ("www.example.com", "foo, .example.com", true),
            ("www.example.com", "www2.example.com, .example.net", false),
            ("example.com", ".example.com, .example.net", true),
            ("nonexample.com", ".example.com, .example.net", false),
        ];
        for (host, list, want) in table {
            assert_eq!(check(host, list), *want, "{host} in {list:?}");
        }
    }

    /// curl's `Curl_cidr4_match` / `Curl_cidr6_match` tables, as list entries (curl's bits
    /// 0 means "no prefix given", here an entry without '/'; its 33 and 129 are refused here).
    #[test]
    fn curl_unit1614_cidr_tables() {
        let v4: &[(&str, &str, Option<u8>, bool)] = &[
            ("192.160.0.1", "192.160.0.1", Some(32), true),
            ("192.160.0.1", "192.160.0.1", None, true),
            ("192.160.0.1", "192.160.0.1", Some(24), true),
            ("192.160.0.1", "192.160.0.1", Some(26), true),
            ("192.160.0.1", "192.160.0.1", Some(20), true),
            ("192.160.0.1", "192.160.0.1", Some(18), true),
            ("192.160.0.1", "192.160.0.1", Some(12), true),
            ("192.160.0.1", "192.160.0.1", Some(8), true),
            ("192.160.0.1", "10.0.0.1", Some(8), false),
            ("192.160.0.1", "10.0.0.1", Some(32), false),
            ("192.160.0.1", "10.0.0.1", None, false),
            ("::1", "::1", None, true),
            ("::1", "::1", Some(128), true),
            ("::1", "0:0::1", Some(128), true),
            (
                "fe80::ab47:4396:55c9:8474",
                "fe80::ab47:4396:55c9:8474",
                Some(64),
                true,
            ),
        ];
        for (host, net, bits, want) in v4 {
            let list = match bits {
                Some(b) => format!("{net}/{b}"),
                None => net.to_string(),
            };
            assert_eq!(check(host, &list), *want, "{host} in {list}");
        }
        for bad in ["192.160.0.1/33", "0:0::1/129"] {
            let e = NoProxy::parse("NO_PROXY", bad).unwrap_err();
            assert!(e.starts_with("NO_PROXY: entry"), "{e}");
        }
    }

    #[test]
    fn star_alone_matches_all_and_only_alone() {
        assert!(check("anything.example", "*"));
        assert!(check("10.1.2.3", " * "));
        assert!(check("::1", "*"));
        assert!(!check("anything.example", "*,foo"));
        assert!(!check("anything.example", "*.example"));
    }

    #[test]
    fn no_implicit_bypass() {
        let empty = NoProxy::parse("k", "").unwrap();
        assert!(empty.is_empty());
        for host in ["localhost", "127.0.0.1", "::1", "[::1]"] {
            assert!(!empty.matches_text(host), "{host}");
            assert!(!check(host, "example.com"), "{host}");
        }
        assert!(!check("127.0.0.1", "localhost"));
        assert!(!check("localhost", "127.0.0.1"));
    }

    #[test]
    fn label_boundaries_case_and_dots() {
        assert!(check("WWW.Example.COM", "example.com"));
        assert!(check("a.b.example.com", ".EXAMPLE.com."));
        assert!(!check("example.com", "www.example.com"));
        assert!(!check("xexample.com", ".example.com"));
        assert!(!check("example.co", "example.com"));
        assert!(check("example.com.", "example.com"));
    }

    #[test]
    fn no_port_matching() {
        assert!(!check("example.com", "example.com:443"));
        assert!(!check("10.0.0.1", "10.0.0.1:443"));
    }

    #[test]
    fn cidr_bounds_and_families() {
        assert!(check("10.9.8.7", "0.0.0.0/0"));
        assert!(!check("::1", "0.0.0.0/0"));
        assert!(check("2001:db8::5", "::/0"));
        assert!(!check("10.0.0.1", "::/0"));
        assert!(check("2001:db8:1::5", "2001:db8::/32"));
        assert!(!check("2001:db9::5", "2001:db8::/32"));
        assert!(check("10.255.255.255", "10.0.0.0/8"));
        assert!(!check("11.0.0.0", "10.0.0.0/8"));
        assert!(check("10.0.0.1", "10.0.0.1/32"));
        assert!(check("::1", "::1/128"));
        assert!(!check("::2", "::1/128"));
        // An IP entry never matches a name, and the reverse.
        assert!(!check("ten.example", "10.0.0.0/8"));
    }

    #[test]
    fn strict_cidr_parsing() {
        for bad in [
            "10.0.0.0/",
            "10.0.0.0/33",
            "10.0.0.0/-1",
            "10.0.0.0/+8",
            "10.0.0.0/8/8",
            "10.0.0.0/ 8",
            "10.0.0.0/0x8",
            "10.0.0/8",
            "example.com/8",
            "/8",
            "::/129",
            "::/1000",
            "[::1]/64",
        ] {
            let e = NoProxy::parse("http_proxy.no_proxy", bad).unwrap_err();
            assert!(e.starts_with("http_proxy.no_proxy: entry"), "{bad}: {e}");
        }
        assert!(NoProxy::parse("k", "10.0.0.0/08").is_ok());
    }

    #[test]
    fn describe_is_normalised() {
        let l = NoProxy::parse("k", " .Example.com., 10.0.0.0/8 ,, ::1 ").unwrap();
        assert_eq!(l.describe(), "example.com,10.0.0.0/8,::1");
        assert_eq!(NoProxy::parse("k", "*").unwrap().describe(), "*");
    }
}
