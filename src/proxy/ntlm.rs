//! NTLMv2 client messages without I/O (MS-NLMP): the NEGOTIATE message we send first, the
//! parser of the proxy's CHALLENGE, and the AUTHENTICATE message that answers it.
//!
//! Only NTLMv2 is ever sent: no LM, no NTLMv1, no "NTLM2 session response". The randomness
//! (the client challenge) and the clock are the caller's, so every message is deterministic
//! in tests. The messages are raw bytes; base64 and the `Proxy-Authorization: NTLM ...`
//! header are the caller's.
//!
//! # Flags we ask for, and why
//! NEGOTIATE carries [`NEGOTIATE_FLAGS`]: `UNICODE` (strings in UTF-16LE; we do not offer OEM,
//! and a CHALLENGE without `UNICODE` is refused), `REQUEST_TARGET` (the proxy names its
//! target), `NTLM` (the NTLM family; version 2 is a client choice that is not negotiated),
//! `ALWAYS_SIGN` (what every Windows client sends; a proxy may refuse without it),
//! `EXTENDED_SESSIONSECURITY` (so that no proxy falls back to the weaker LM key; with NTLMv2
//! it changes nothing in the responses), `TARGET_INFO` (we need the proxy's AV pairs for the
//! NTLMv2 blob), and `128`/`56` (what Windows clients send). We do not ask for `SIGN`, `SEAL`
//! or `KEY_EXCH`: an HTTP proxy only authenticates the connection and never signs or seals
//! anything after the handshake, so a session key would be derived for nothing. Without
//! `KEY_EXCH` the AUTHENTICATE message's EncryptedRandomSessionKey is empty, and without
//! `VERSION` no Version field is sent. No MIC is sent either (it is a SHOULD, needed only
//! when the whole exchange is to be integrity-bound, which an HTTP proxy never checks).
//!
//! # Secrets
//! The NT hash, the NTOWFv2 response key, the UTF-16 copy of the password and the
//! intermediate responses live in [`Secret`] buffers, zeroed when dropped. The hash
//! crates' internal state is not wiped (they offer no way to). [`Challenge`]'s Debug output
//! and every [`NtlmError`] message hold nothing secret.

use std::fmt;

use hmac::{Hmac, Mac};
use md4::{Digest, Md4};
use md5::Md5;

use crate::config::Secret;

/// `NTLMSSP_NEGOTIATE_UNICODE`.
pub const NEGOTIATE_UNICODE: u32 = 0x0000_0001;
/// `NTLM_NEGOTIATE_OEM`.
pub const NEGOTIATE_OEM: u32 = 0x0000_0002;
/// `NTLMSSP_REQUEST_TARGET`.
pub const REQUEST_TARGET: u32 = 0x0000_0004;
/// `NTLMSSP_NEGOTIATE_SIGN` (never asked for).
pub const NEGOTIATE_SIGN: u32 = 0x0000_0010;
/// `NTLMSSP_NEGOTIATE_SEAL` (never asked for).
pub const NEGOTIATE_SEAL: u32 = 0x0000_0020;
/// `NTLMSSP_NEGOTIATE_LM_KEY` (never asked for).
pub const NEGOTIATE_LM_KEY: u32 = 0x0000_0080;
/// `NTLMSSP_NEGOTIATE_NTLM`.
pub const NEGOTIATE_NTLM: u32 = 0x0000_0200;
/// `NTLMSSP_NEGOTIATE_OEM_DOMAIN_SUPPLIED`.
pub const NEGOTIATE_DOMAIN_SUPPLIED: u32 = 0x0000_1000;
/// `NTLMSSP_NEGOTIATE_OEM_WORKSTATION_SUPPLIED`.
pub const NEGOTIATE_WORKSTATION_SUPPLIED: u32 = 0x0000_2000;
/// `NTLMSSP_NEGOTIATE_ALWAYS_SIGN`.
pub const NEGOTIATE_ALWAYS_SIGN: u32 = 0x0000_8000;
/// `NTLMSSP_TARGET_TYPE_DOMAIN`.
pub const TARGET_TYPE_DOMAIN: u32 = 0x0001_0000;
/// `NTLMSSP_TARGET_TYPE_SERVER`.
pub const TARGET_TYPE_SERVER: u32 = 0x0002_0000;
/// `NTLMSSP_NEGOTIATE_EXTENDED_SESSIONSECURITY`.
pub const NEGOTIATE_EXTENDED_SESSIONSECURITY: u32 = 0x0008_0000;
/// `NTLMSSP_NEGOTIATE_TARGET_INFO`.
pub const NEGOTIATE_TARGET_INFO: u32 = 0x0080_0000;
/// `NTLMSSP_NEGOTIATE_VERSION` (never asked for: no Version field is sent).
pub const NEGOTIATE_VERSION: u32 = 0x0200_0000;
/// `NTLMSSP_NEGOTIATE_128`.
pub const NEGOTIATE_128: u32 = 0x2000_0000;
/// `NTLMSSP_NEGOTIATE_KEY_EXCH` (never asked for).
pub const NEGOTIATE_KEY_EXCH: u32 = 0x4000_0000;
/// `NTLMSSP_NEGOTIATE_56`.
pub const NEGOTIATE_56: u32 = 0x8000_0000;

/// The flags of our NEGOTIATE message (the module documentation says why each is there),
/// before `*_SUPPLIED` are added for a domain or workstation name.
pub const NEGOTIATE_FLAGS: u32 = NEGOTIATE_UNICODE
    | REQUEST_TARGET
    | NEGOTIATE_NTLM
    | NEGOTIATE_ALWAYS_SIGN
    | NEGOTIATE_EXTENDED_SESSIONSECURITY
    | NEGOTIATE_TARGET_INFO
    | NEGOTIATE_128
    | NEGOTIATE_56;

/// The flags of the CHALLENGE that our AUTHENTICATE message echoes (those we asked for and
/// the proxy granted, plus the target type it announced).
const AUTHENTICATE_FLAG_MASK: u32 = NEGOTIATE_FLAGS | TARGET_TYPE_DOMAIN | TARGET_TYPE_SERVER;

const SIGNATURE: &[u8; 8] = b"NTLMSSP\0";
const NEGOTIATE_TYPE: u32 = 1;
const CHALLENGE_TYPE: u32 = 2;
const AUTHENTICATE_TYPE: u32 = 3;

/// Size of a CHALLENGE up to and including its TargetInfoFields.
const CHALLENGE_HEADER: usize = 48;
/// Size of a CHALLENGE up to and including its ServerChallenge and Reserved fields, the
/// shortest one accepted (old servers send no TargetInfoFields).
const CHALLENGE_MIN: usize = 32;

/// AV pair ids (MS-NLMP 2.2.2.1).
const MSV_AV_EOL: u16 = 0;
const MSV_AV_NB_COMPUTER_NAME: u16 = 1;
const MSV_AV_NB_DOMAIN_NAME: u16 = 2;
const MSV_AV_DNS_COMPUTER_NAME: u16 = 3;
const MSV_AV_DNS_DOMAIN_NAME: u16 = 4;
const MSV_AV_DNS_TREE_NAME: u16 = 5;
const MSV_AV_FLAGS: u16 = 6;
const MSV_AV_TIMESTAMP: u16 = 7;

/// Why a CHALLENGE cannot be parsed or answered. The messages name fields and numbers,
/// never credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NtlmError {
    /// Shorter than the fixed part of a CHALLENGE.
    Truncated {
        /// The message's length.
        len: usize,
        /// The length its fixed part needs.
        need: usize,
    },
    /// Does not start with `NTLMSSP\0`.
    BadSignature,
    /// Another message type than CHALLENGE (2).
    WrongMessageType(u32),
    /// A field's offset and length point outside the message.
    FieldOutOfBounds {
        /// The field (`TargetName`, `TargetInfo`).
        field: &'static str,
        /// Its offset, as the message says.
        offset: u32,
        /// Its length, as the message says.
        len: u16,
        /// The message's length.
        message_len: usize,
    },
    /// An AV pair runs past the end of the TargetInfo.
    AvPairTruncated {
        /// Where in the TargetInfo the pair starts.
        at: usize,
    },
    /// An AV pair whose length is wrong for its id (MsvAvTimestamp not 8 bytes, MsvAvFlags
    /// not 4, MsvAvEOL not 0).
    AvPairBadLength {
        /// The pair's id.
        id: u16,
        /// Its length.
        len: u16,
    },
    /// The TargetInfo does not end with MsvAvEOL.
    MissingEol,
    /// The proxy did not grant `NTLMSSP_NEGOTIATE_UNICODE`: OEM strings are not supported.
    NoUnicode,
    /// The proxy did not grant `NTLMSSP_NEGOTIATE_NTLM`.
    NoNtlm,
    /// A name (or the NTLMv2 response) too long for the message's 16-bit length fields.
    FieldTooLong {
        /// The field (`UserName`, `DomainName`, `Workstation`, `NtChallengeResponse`).
        field: &'static str,
    },
}

impl fmt::Display for NtlmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NtlmError::Truncated { len, need } => {
                write!(
                    f,
                    "NTLM challenge truncated: {len} bytes, at least {need} needed"
                )
            }
            NtlmError::BadSignature => f.write_str("NTLM challenge lacks the NTLMSSP signature"),
            NtlmError::WrongMessageType(t) => {
                write!(
                    f,
                    "NTLM message of type {t} where a challenge (type 2) was expected"
                )
            }
            NtlmError::FieldOutOfBounds {
                field,
                offset,
                len,
                message_len,
            } => write!(
                f,
                "NTLM challenge field {field} ({len} bytes at offset {offset}) lies outside \
                 the {message_len}-byte message"
            ),
            NtlmError::AvPairTruncated { at } => {
                write!(
                    f,
                    "NTLM challenge target info truncated in the AV pair at {at}"
                )
            }
            NtlmError::AvPairBadLength { id, len } => {
                write!(f, "NTLM challenge AV pair {id} has a wrong length ({len})")
            }
            NtlmError::MissingEol => {
                f.write_str("NTLM challenge target info does not end with MsvAvEOL")
            }
            NtlmError::NoUnicode => {
                f.write_str("NTLM challenge does not grant Unicode (OEM strings are not supported)")
            }
            NtlmError::NoNtlm => f.write_str("NTLM challenge does not grant NTLM authentication"),
            NtlmError::FieldTooLong { field } => {
                write!(f, "NTLM {field} too long for the message")
            }
        }
    }
}

impl std::error::Error for NtlmError {}

/// A parsed CHALLENGE message (type 2). Nothing in it is secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// The NegotiateFlags the proxy granted.
    pub flags: u32,
    /// The 8-byte server challenge.
    pub server_challenge: [u8; 8],
    /// TargetName, decoded (lossily) from UTF-16LE.
    pub target_name: String,
    /// The raw TargetInfo (AV pairs, ending with MsvAvEOL; empty when the proxy sent none),
    /// echoed inside the NTLMv2 response.
    pub target_info: Vec<u8>,
    /// The AV pairs of interest, decoded.
    pub av: AvPairs,
}

/// The AV pairs of a CHALLENGE's TargetInfo that we decode (others are kept only in the raw
/// TargetInfo).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AvPairs {
    /// MsvAvNbComputerName.
    pub nb_computer_name: Option<String>,
    /// MsvAvNbDomainName.
    pub nb_domain_name: Option<String>,
    /// MsvAvDnsComputerName.
    pub dns_computer_name: Option<String>,
    /// MsvAvDnsDomainName.
    pub dns_domain_name: Option<String>,
    /// MsvAvDnsTreeName.
    pub dns_tree_name: Option<String>,
    /// MsvAvFlags.
    pub flags: Option<u32>,
    /// MsvAvTimestamp: the proxy's time, as a FILETIME (100 ns units since 1601-01-01 UTC).
    pub timestamp: Option<u64>,
}

impl Challenge {
    /// Parses a CHALLENGE message (the bytes after base64 decoding). Every offset and
    /// length is checked against the message: a truncated message, or one whose lengths lie,
    /// is an error, never a panic. A message without Unicode or NTLM is refused here, since
    /// it cannot be answered.
    pub fn parse(msg: &[u8]) -> Result<Challenge, NtlmError> {
        if msg.len() < CHALLENGE_MIN {
            return Err(NtlmError::Truncated {
                len: msg.len(),
                need: CHALLENGE_MIN,
            });
        }
        if &msg[0..8] != SIGNATURE {
            return Err(NtlmError::BadSignature);
        }
        let msg_type = le32(msg, 8);
        if msg_type != CHALLENGE_TYPE {
            return Err(NtlmError::WrongMessageType(msg_type));
        }
        let flags = le32(msg, 20);
        let mut server_challenge = [0u8; 8];
        server_challenge.copy_from_slice(&msg[24..32]);

        let target_name = field(msg, 12, "TargetName")?;
        // TargetInfoFields are absent only from the oldest, pre-NTLMv2 servers.
        let target_info = if msg.len() >= CHALLENGE_HEADER {
            field(msg, 40, "TargetInfo")?
        } else if flags & NEGOTIATE_TARGET_INFO != 0 {
            return Err(NtlmError::Truncated {
                len: msg.len(),
                need: CHALLENGE_HEADER,
            });
        } else {
            &[]
        };

        if flags & NEGOTIATE_UNICODE == 0 {
            return Err(NtlmError::NoUnicode);
        }
        if flags & NEGOTIATE_NTLM == 0 {
            return Err(NtlmError::NoNtlm);
        }
        let av = parse_av_pairs(target_info)?;
        Ok(Challenge {
            flags,
            server_challenge,
            target_name: utf16le_lossy(target_name),
            target_info: target_info.to_vec(),
            av,
        })
    }
}

/// Reads a little-endian u32 at `at`; the caller has checked the bounds.
fn le32(msg: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([msg[at], msg[at + 1], msg[at + 2], msg[at + 3]])
}

fn le16(msg: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([msg[at], msg[at + 1]])
}

/// The bytes a security buffer (Len u16, MaxLen u16, Offset u32 at `at`) points to, checked
/// against the message. `at + 8` is within the message (the caller checked).
fn field<'m>(msg: &'m [u8], at: usize, name: &'static str) -> Result<&'m [u8], NtlmError> {
    let len = le16(msg, at);
    let offset = le32(msg, at + 4);
    if len == 0 {
        return Ok(&[]);
    }
    let out_of_bounds = NtlmError::FieldOutOfBounds {
        field: name,
        offset,
        len,
        message_len: msg.len(),
    };
    let start = usize::try_from(offset).map_err(|_| out_of_bounds.clone())?;
    let end = start
        .checked_add(usize::from(len))
        .ok_or_else(|| out_of_bounds.clone())?;
    msg.get(start..end).ok_or(out_of_bounds)
}

fn parse_av_pairs(info: &[u8]) -> Result<AvPairs, NtlmError> {
    let mut av = AvPairs::default();
    if info.is_empty() {
        return Ok(av);
    }
    let mut at = 0usize;
    loop {
        let header = info
            .get(at..at + 4)
            .ok_or(NtlmError::AvPairTruncated { at })?;
        let id = le16(header, 0);
        let len = le16(header, 2);
        let value = info
            .get(at + 4..at + 4 + usize::from(len))
            .ok_or(NtlmError::AvPairTruncated { at })?;
        match id {
            MSV_AV_EOL => {
                if len != 0 {
                    return Err(NtlmError::AvPairBadLength { id, len });
                }
                // Bytes after MsvAvEOL are padding some servers send; they are ignored.
                return Ok(av);
            }
            MSV_AV_NB_COMPUTER_NAME => av.nb_computer_name = Some(utf16le_lossy(value)),
            MSV_AV_NB_DOMAIN_NAME => av.nb_domain_name = Some(utf16le_lossy(value)),
            MSV_AV_DNS_COMPUTER_NAME => av.dns_computer_name = Some(utf16le_lossy(value)),
            MSV_AV_DNS_DOMAIN_NAME => av.dns_domain_name = Some(utf16le_lossy(value)),
            MSV_AV_DNS_TREE_NAME => av.dns_tree_name = Some(utf16le_lossy(value)),
            MSV_AV_FLAGS => {
                if len != 4 {
                    return Err(NtlmError::AvPairBadLength { id, len });
                }
                av.flags = Some(le32(value, 0));
            }
            MSV_AV_TIMESTAMP => {
                let bytes: [u8; 8] = value
                    .try_into()
                    .map_err(|_| NtlmError::AvPairBadLength { id, len })?;
                av.timestamp = Some(u64::from_le_bytes(bytes));
            }
            _ => {}
        }
        at += 4 + usize::from(len);
        if at >= info.len() {
            return Err(NtlmError::MissingEol);
        }
    }
}

fn utf16le_lossy(bytes: &[u8]) -> String {
    let units: Vec<u16> = bytes
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    String::from_utf16_lossy(&units)
}

fn utf16le(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

/// Splits `proxy_user` into (domain, user): `DOMAIN\user` and `user@domain` (at the last
/// `@`) give both parts; any other form is a user without a domain.
pub fn split_user(proxy_user: &str) -> (&str, &str) {
    if let Some((domain, user)) = proxy_user.split_once('\\') {
        (domain, user)
    } else if let Some((user, domain)) = proxy_user.rsplit_once('@') {
        (domain, user)
    } else {
        ("", proxy_user)
    }
}

/// The NEGOTIATE message (type 1): [`NEGOTIATE_FLAGS`], plus the domain and workstation
/// names when given. They travel in the OEM charset, so a name that is not ASCII is left
/// out (the AUTHENTICATE message carries them in Unicode anyway).
pub fn negotiate_message(domain: &str, workstation: &str) -> Vec<u8> {
    let usable = |s: &str| !s.is_empty() && s.is_ascii() && s.len() <= usize::from(u16::MAX);
    let domain = if usable(domain) { domain } else { "" };
    let workstation = if usable(workstation) { workstation } else { "" };
    let mut flags = NEGOTIATE_FLAGS;
    if !domain.is_empty() {
        flags |= NEGOTIATE_DOMAIN_SUPPLIED;
    }
    if !workstation.is_empty() {
        flags |= NEGOTIATE_WORKSTATION_SUPPLIED;
    }
    const HEADER: usize = 32;
    let mut msg = Vec::with_capacity(HEADER + domain.len() + workstation.len());
    msg.extend_from_slice(SIGNATURE);
    msg.extend_from_slice(&NEGOTIATE_TYPE.to_le_bytes());
    msg.extend_from_slice(&flags.to_le_bytes());
    let domain_at = HEADER;
    let workstation_at = HEADER + domain.len();
    // Lengths were bounded above, so the conversions cannot fail; 0 is never reached.
    push_buffer(&mut msg, domain.len(), domain_at);
    push_buffer(&mut msg, workstation.len(), workstation_at);
    msg.extend_from_slice(domain.as_bytes());
    msg.extend_from_slice(workstation.as_bytes());
    msg
}

/// Appends a security buffer (Len, MaxLen, Offset). `len` fits in u16 and `offset` in u32
/// (the callers bound them).
fn push_buffer(msg: &mut Vec<u8>, len: usize, offset: usize) {
    let len = u16::try_from(len).unwrap_or(u16::MAX);
    let offset = u32::try_from(offset).unwrap_or(u32::MAX);
    msg.extend_from_slice(&len.to_le_bytes());
    msg.extend_from_slice(&len.to_le_bytes());
    msg.extend_from_slice(&offset.to_le_bytes());
}

/// Converts a time since the Unix epoch into a FILETIME (100 ns units since 1601-01-01),
/// the `timestamp` [`authenticate_message`] takes.
pub fn filetime(since_unix_epoch: std::time::Duration) -> u64 {
    const UNIX_EPOCH_AS_FILETIME: u64 = 116_444_736_000_000_000;
    let ticks = since_unix_epoch.as_nanos() / 100;
    UNIX_EPOCH_AS_FILETIME.saturating_add(u64::try_from(ticks).unwrap_or(u64::MAX))
}

type HmacMd5 = Hmac<Md5>;

fn hmac_md5(key: &[u8], parts: &[&[u8]]) -> Secret {
    // HMAC takes keys of any length: new_from_slice cannot fail.
    let mut mac = match HmacMd5::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC accepts keys of any length"),
    };
    for part in parts {
        mac.update(part);
    }
    let mut out = mac.finalize().into_bytes();
    let secret = Secret::new(out.to_vec());
    wipe_bytes(&mut out);
    secret
}

/// Zeroes a stack copy of key material (the project's [`Secret`] wipes heap buffers; this
/// is for the fixed-size arrays the hash crates return).
fn wipe_bytes(bytes: &mut [u8]) {
    for b in bytes.iter_mut() {
        // SAFETY: `b` is a valid, aligned, exclusive reference to a byte.
        unsafe { std::ptr::write_volatile(b, 0) };
    }
    std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
}

/// Upper-cases the way Windows does for NTOWFv2: character by character, a character whose
/// upper case is more than one character (such as `ß`) kept as it is.
fn windows_upper(s: &str) -> String {
    s.chars()
        .map(|c| {
            let mut up = c.to_uppercase();
            match (up.next(), up.next()) {
                (Some(u), None) => u,
                _ => c,
            }
        })
        .collect()
}

/// NTOWFv2 = HMAC_MD5(MD4(UTF-16LE(password)), UTF-16LE(UPPER(user) + domain)).
fn ntowf_v2(password: &str, user: &str, domain: &str) -> Secret {
    let password16 = Secret::new(utf16le(password));
    let mut nt = Md4::digest(password16.expose());
    let nt_hash = Secret::new(nt.to_vec());
    wipe_bytes(&mut nt);
    let mut who = windows_upper(user);
    who.push_str(domain);
    hmac_md5(nt_hash.expose(), &[&utf16le(&who)])
}

/// The NTLMv2 responses (MS-NLMP 3.3.2).
struct Responses {
    /// LmChallengeResponse: LMv2, or Z(24) when the proxy sent MsvAvTimestamp.
    lm: Secret,
    /// NtChallengeResponse: NTProofStr followed by temp.
    nt: Secret,
}

fn responses(
    key: &Secret,
    challenge: &Challenge,
    client_challenge: &[u8; 8],
    time: u64,
) -> Responses {
    let mut temp = Vec::with_capacity(28 + challenge.target_info.len() + 4);
    temp.extend_from_slice(&[1, 1, 0, 0, 0, 0, 0, 0]); // RespType, HiRespType, Reserved
    temp.extend_from_slice(&time.to_le_bytes());
    temp.extend_from_slice(client_challenge);
    temp.extend_from_slice(&[0, 0, 0, 0]);
    temp.extend_from_slice(&challenge.target_info);
    temp.extend_from_slice(&[0, 0, 0, 0]);
    let proof = hmac_md5(key.expose(), &[&challenge.server_challenge, &temp]);
    let mut nt = Vec::with_capacity(16 + temp.len());
    nt.extend_from_slice(proof.expose());
    nt.extend_from_slice(&temp);
    // MS-NLMP 3.1.5.1.2: with MsvAvTimestamp in the challenge, Z(24) instead of LMv2.
    let lm = if challenge.av.timestamp.is_some() {
        vec![0u8; 24]
    } else {
        let lm = hmac_md5(
            key.expose(),
            &[&challenge.server_challenge, client_challenge],
        );
        let mut out = lm.expose().to_vec();
        out.extend_from_slice(client_challenge);
        out
    };
    Responses {
        lm: Secret::new(lm),
        nt: Secret::new(nt),
    }
}

/// The AUTHENTICATE message (type 3) answering `challenge` with an NTLMv2 response.
///
/// `user` and `domain` as [`split_user`] gives them; `workstation` may be empty.
/// `client_challenge` must be fresh random bytes for every message; `timestamp` is the
/// current time as a FILETIME ([`filetime`]), used only when the proxy sent no
/// MsvAvTimestamp (its own time is echoed otherwise, as MS-NLMP says, which also makes
/// clock skew harmless). The returned bytes carry the response: keep them in a
/// [`Secret`].
pub fn authenticate_message(
    challenge: &Challenge,
    user: &str,
    domain: &str,
    password: &str,
    workstation: &str,
    client_challenge: [u8; 8],
    timestamp: u64,
) -> Result<Vec<u8>, NtlmError> {
    let domain16 = utf16le(domain);
    let user16 = utf16le(user);
    let workstation16 = utf16le(workstation);
    for (name, bytes) in [
        ("DomainName", &domain16),
        ("UserName", &user16),
        ("Workstation", &workstation16),
    ] {
        if bytes.len() > usize::from(u16::MAX) {
            return Err(NtlmError::FieldTooLong { field: name });
        }
    }
    let key = ntowf_v2(password, user, domain);
    let time = challenge.av.timestamp.unwrap_or(timestamp);
    let r = responses(&key, challenge, &client_challenge, time);
    if r.nt.expose().len() > usize::from(u16::MAX) {
        return Err(NtlmError::FieldTooLong {
            field: "NtChallengeResponse",
        });
    }

    const HEADER: usize = 64;
    let payload = [
        &domain16[..],
        &user16[..],
        &workstation16[..],
        r.lm.expose(),
        r.nt.expose(),
    ];
    let total = HEADER + payload.iter().map(|p| p.len()).sum::<usize>();
    let mut offsets = [0usize; 5];
    let mut at = HEADER;
    for (slot, part) in offsets.iter_mut().zip(payload.iter()) {
        *slot = at;
        at += part.len();
    }
    let flags = (challenge.flags & AUTHENTICATE_FLAG_MASK) | NEGOTIATE_UNICODE | NEGOTIATE_NTLM;

    let mut msg = Vec::with_capacity(total);
    msg.extend_from_slice(SIGNATURE);
    msg.extend_from_slice(&AUTHENTICATE_TYPE.to_le_bytes());
    push_buffer(&mut msg, payload[3].len(), offsets[3]); // LmChallengeResponseFields
    push_buffer(&mut msg, payload[4].len(), offsets[4]); // NtChallengeResponseFields
    push_buffer(&mut msg, payload[0].len(), offsets[0]); // DomainNameFields
    push_buffer(&mut msg, payload[1].len(), offsets[1]); // UserNameFields
    push_buffer(&mut msg, payload[2].len(), offsets[2]); // WorkstationFields
    push_buffer(&mut msg, 0, total); // EncryptedRandomSessionKeyFields: no KEY_EXCH
    msg.extend_from_slice(&flags.to_le_bytes());
    debug_assert_eq!(msg.len(), HEADER);
    for part in payload {
        msg.extend_from_slice(part);
    }
    Ok(msg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hex(s: &str) -> Vec<u8> {
        let digits: Vec<u8> = s.bytes().filter(u8::is_ascii_hexdigit).collect();
        digits
            .chunks(2)
            .map(|p| {
                let text = std::str::from_utf8(p).expect("ascii");
                u8::from_str_radix(text, 16).expect("hex")
            })
            .collect()
    }

    // MS-NLMP 4.2.1 and 4.2.4: the common values and the NTLMv2 example.
    const USER: &str = "User";
    const DOMAIN: &str = "Domain";
    const PASSWORD: &str = "Password";
    const WORKSTATION: &str = "COMPUTER";
    const CLIENT_CHALLENGE: [u8; 8] = [0xaa; 8];

    /// MS-NLMP 4.2.4.3, the CHALLENGE_MESSAGE.
    fn spec_challenge() -> Vec<u8> {
        hex("4e544c4d53535000 02000000 0c000c00 38000000 33828ae2
             0123456789abcdef 0000000000000000 24002400 44000000 060070170000000f
             530065007200760065007200
             02000c00 44006f006d00610069006e00 01000c00 530065007200760065007200 00000000")
    }

    /// MS-NLMP 4.2.4.4, the AUTHENTICATE_MESSAGE (with KEY_EXCH and VERSION, which we do
    /// not send: its response fields are what must match).
    fn spec_authenticate() -> Vec<u8> {
        hex(
            "4e544c4d53535000 03000000 18001800 6c000000 54005400 84000000 0c000c00 48000000
             08000800 54000000 10001000 5c000000 10001000 d8000000 358288e2 0501280a0000000f
             44006f006d00610069006e00 5500730065007200 43004f004d0050005500540045005200
             86c35097ac9cec102554764a57cccc19 aaaaaaaaaaaaaaaa
             68cd0ab851e51c96aabc927bebef6a1c 0101000000000000 0000000000000000
             aaaaaaaaaaaaaaaa 00000000
             02000c00 44006f006d00610069006e00 01000c00 530065007200760065007200 00000000
             00000000
             c5dad2544fc9799094ce1ce90bc9d03e",
        )
    }

    /// The bytes of the security buffer at `at` in an AUTHENTICATE message.
    fn auth_field(msg: &[u8], at: usize) -> &[u8] {
        let len = usize::from(le16(msg, at));
        let offset = le32(msg, at + 4) as usize;
        &msg[offset..offset + len]
    }

    const LM: usize = 12;
    const NT: usize = 20;
    const DOMAIN_F: usize = 28;
    const USER_F: usize = 36;
    const WORKSTATION_F: usize = 44;
    const SESSION_KEY_F: usize = 52;

    #[test]
    fn spec_challenge_parses() {
        let c = Challenge::parse(&spec_challenge()).expect("spec challenge");
        assert_eq!(c.flags, 0xe28a_8233);
        assert_eq!(
            c.server_challenge,
            [0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef]
        );
        assert_eq!(c.target_name, "Server");
        assert_eq!(c.target_info.len(), 36);
        assert_eq!(c.av.nb_domain_name.as_deref(), Some("Domain"));
        assert_eq!(c.av.nb_computer_name.as_deref(), Some("Server"));
        assert_eq!(c.av.timestamp, None);
    }

    #[test]
    fn spec_ntowfv2() {
        let key = ntowf_v2(PASSWORD, USER, DOMAIN);
        assert_eq!(key.expose(), hex("0c868a403bfd7a93a3001ef22ef02e3f"));
        // And the NT hash underneath it (MS-NLMP 4.2.2.1.2, NTOWFv1).
        assert_eq!(
            Md4::digest(utf16le(PASSWORD)).to_vec(),
            hex("a4f49c406510bdcab6824ee7c30fd852")
        );
    }

    #[test]
    fn spec_responses() {
        let c = Challenge::parse(&spec_challenge()).expect("spec challenge");
        let key = ntowf_v2(PASSWORD, USER, DOMAIN);
        let r = responses(&key, &c, &CLIENT_CHALLENGE, 0);
        // 4.2.4.2.1 LMv2 Response.
        assert_eq!(
            r.lm.expose(),
            hex("86c35097ac9cec102554764a57cccc19 aaaaaaaaaaaaaaaa")
        );
        // 4.2.4.2.2 NTLMv2 Response: NTProofStr, then temp.
        let nt = r.nt.expose();
        assert_eq!(&nt[..16], &hex("68cd0ab851e51c96aabc927bebef6a1c")[..]);
        let temp = hex("0101000000000000 0000000000000000 aaaaaaaaaaaaaaaa 00000000
             02000c00 44006f006d00610069006e00 01000c00 530065007200760065007200 00000000
             00000000");
        assert_eq!(&nt[16..], &temp[..]);
        // 4.2.4.1.2 Session Base Key = HMAC_MD5(ResponseKeyNT, NTProofStr).
        let base = hmac_md5(key.expose(), &[&nt[..16]]);
        assert_eq!(base.expose(), hex("8de40ccadbc14a82f15cb0ad0de95ca3"));
    }

    #[test]
    fn spec_authenticate_message_fields() {
        let c = Challenge::parse(&spec_challenge()).expect("spec challenge");
        let ours =
            authenticate_message(&c, USER, DOMAIN, PASSWORD, WORKSTATION, CLIENT_CHALLENGE, 0)
                .expect("authenticate");
        let spec = spec_authenticate();
        assert_eq!(&ours[..12], &spec[..12], "signature and type");
        for (name, at) in [
            ("LmChallengeResponse", LM),
            ("NtChallengeResponse", NT),
            ("DomainName", DOMAIN_F),
            ("UserName", USER_F),
            ("Workstation", WORKSTATION_F),
        ] {
            assert_eq!(auth_field(&ours, at), auth_field(&spec, at), "{name}");
        }
        // No KEY_EXCH: no encrypted session key, and the message ends with the NT response.
        assert!(auth_field(&ours, SESSION_KEY_F).is_empty());
        let flags = le32(&ours, 60);
        assert_eq!(
            flags & (NEGOTIATE_KEY_EXCH | NEGOTIATE_SIGN | NEGOTIATE_SEAL),
            0
        );
        assert_eq!(flags & NEGOTIATE_VERSION, 0);
        assert_ne!(flags & NEGOTIATE_UNICODE, 0);
        assert_ne!(flags & NEGOTIATE_NTLM, 0);
        assert_eq!(ours.len(), 64 + 12 + 8 + 16 + 24 + 84);
    }

    /// A challenge like the spec's, with MsvAvTimestamp added.
    fn challenge_with_timestamp(time: u64) -> Vec<u8> {
        let mut info = hex("02000c00 44006f006d00610069006e00 07000800");
        info.extend_from_slice(&time.to_le_bytes());
        info.extend_from_slice(&[0, 0, 0, 0]);
        let mut msg = spec_challenge()[..40].to_vec();
        let len = info.len() as u16;
        msg.extend_from_slice(&len.to_le_bytes());
        msg.extend_from_slice(&len.to_le_bytes());
        msg.extend_from_slice(&48u32.to_le_bytes());
        msg[12..20].copy_from_slice(&hex("00000000 00000000"));
        msg[20..24].copy_from_slice(&(0xe28a_8233u32 & !NEGOTIATE_VERSION).to_le_bytes());
        msg.extend_from_slice(&info);
        msg
    }

    #[test]
    fn timestamp_from_the_proxy_zeroes_lmv2_and_is_echoed() {
        let server_time = 0x01d9_0000_1234_5678u64;
        let c = Challenge::parse(&challenge_with_timestamp(server_time)).expect("parse");
        assert_eq!(c.av.timestamp, Some(server_time));
        assert_eq!(c.target_name, "");
        let msg = authenticate_message(&c, USER, DOMAIN, PASSWORD, "", CLIENT_CHALLENGE, 7)
            .expect("authenticate");
        assert_eq!(auth_field(&msg, LM), &[0u8; 24][..]);
        let nt = auth_field(&msg, NT);
        assert_eq!(&nt[24..32], &server_time.to_le_bytes()[..]);
        assert!(auth_field(&msg, WORKSTATION_F).is_empty());
    }

    #[test]
    fn own_time_used_without_a_proxy_timestamp() {
        let c = Challenge::parse(&spec_challenge()).expect("parse");
        let t = filetime(std::time::Duration::from_secs(1));
        assert_eq!(t, 116_444_736_010_000_000);
        let msg = authenticate_message(&c, USER, DOMAIN, PASSWORD, "", CLIENT_CHALLENGE, t)
            .expect("authenticate");
        assert_eq!(&auth_field(&msg, NT)[24..32], &t.to_le_bytes()[..]);
    }

    #[test]
    fn the_password_is_nowhere_in_the_message() {
        let c = Challenge::parse(&spec_challenge()).expect("parse");
        let msg = authenticate_message(&c, USER, DOMAIN, "hunter2-secret", "", [1; 8], 0)
            .expect("authenticate");
        let pw16 = utf16le("hunter2-secret");
        assert!(!msg.windows(pw16.len()).any(|w| w == &pw16[..]));
        assert!(!msg.windows(7).any(|w| w == b"hunter2"));
    }

    #[test]
    fn users_split() {
        assert_eq!(split_user(r"CORP\alice"), ("CORP", "alice"));
        assert_eq!(split_user("alice@corp.example"), ("corp.example", "alice"));
        assert_eq!(split_user("a@b@corp"), ("corp", "a@b"));
        assert_eq!(split_user("alice"), ("", "alice"));
        assert_eq!(split_user(r"CORP\a@b"), ("CORP", "a@b"));
    }

    #[test]
    fn upper_case_like_windows() {
        assert_eq!(windows_upper("user"), "USER");
        assert_eq!(windows_upper("straße"), "STRAßE");
        assert_eq!(windows_upper("émile"), "ÉMILE");
    }

    #[test]
    fn negotiate_layout() {
        let m = negotiate_message("", "");
        assert_eq!(m.len(), 32);
        assert_eq!(&m[..8], SIGNATURE);
        assert_eq!(le32(&m, 8), 1);
        assert_eq!(le32(&m, 12), NEGOTIATE_FLAGS);
        assert_eq!(NEGOTIATE_FLAGS, 0xa088_8205);

        let m = negotiate_message("CORP", "WS01");
        let flags = le32(&m, 12);
        assert_ne!(flags & NEGOTIATE_DOMAIN_SUPPLIED, 0);
        assert_ne!(flags & NEGOTIATE_WORKSTATION_SUPPLIED, 0);
        assert_eq!(auth_field(&m, 16), b"CORP");
        assert_eq!(auth_field(&m, 24), b"WS01");

        // Non-ASCII names cannot travel in OEM: left out.
        let m = negotiate_message("ДОМЕН", "");
        assert_eq!(le32(&m, 12), NEGOTIATE_FLAGS);
        assert_eq!(m.len(), 32);
    }

    #[test]
    fn every_truncation_is_an_error() {
        let full = spec_challenge();
        for n in 0..full.len() {
            assert!(Challenge::parse(&full[..n]).is_err(), "prefix of {n} bytes");
        }
        assert_eq!(
            Challenge::parse(&full[..10]),
            Err(NtlmError::Truncated { len: 10, need: 32 })
        );
        assert!(matches!(
            Challenge::parse(&full[..40]),
            Err(NtlmError::FieldOutOfBounds {
                field: "TargetName",
                ..
            })
        ));
        let mut no_name = full[..40].to_vec();
        no_name[12..14].copy_from_slice(&[0, 0]);
        assert_eq!(
            Challenge::parse(&no_name),
            Err(NtlmError::Truncated { len: 40, need: 48 })
        );
    }

    #[test]
    fn old_32_byte_challenge_without_target_info() {
        let mut m = spec_challenge()[..32].to_vec();
        m[12..20].copy_from_slice(&[0; 8]);
        m[20..24].copy_from_slice(&(NEGOTIATE_UNICODE | NEGOTIATE_NTLM).to_le_bytes());
        let c = Challenge::parse(&m).expect("parse");
        assert!(c.target_info.is_empty());
        let msg = authenticate_message(&c, USER, DOMAIN, PASSWORD, "", [2; 8], 1).expect("auth");
        assert_eq!(auth_field(&msg, NT).len(), 16 + 28 + 4);
    }

    #[test]
    fn lying_lengths_are_errors() {
        let base = spec_challenge();
        let set16 = |m: &mut Vec<u8>, at: usize, v: u16| {
            m[at..at + 2].copy_from_slice(&v.to_le_bytes());
        };
        let set32 = |m: &mut Vec<u8>, at: usize, v: u32| {
            m[at..at + 4].copy_from_slice(&v.to_le_bytes());
        };

        let mut m = base.clone();
        set16(&mut m, 40, 0xffff);
        assert!(matches!(
            Challenge::parse(&m),
            Err(NtlmError::FieldOutOfBounds {
                field: "TargetInfo",
                len: 0xffff,
                ..
            })
        ));

        let mut m = base.clone();
        set32(&mut m, 44, u32::MAX);
        assert!(matches!(
            Challenge::parse(&m),
            Err(NtlmError::FieldOutOfBounds {
                field: "TargetInfo",
                offset: u32::MAX,
                ..
            })
        ));

        let mut m = base.clone();
        set32(&mut m, 16, 200);
        assert!(matches!(
            Challenge::parse(&m),
            Err(NtlmError::FieldOutOfBounds {
                field: "TargetName",
                ..
            })
        ));

        // An AV pair claiming more bytes than the target info holds.
        let mut m = base.clone();
        set16(&mut m, 0x44 + 2, 0x00ff);
        assert_eq!(
            Challenge::parse(&m),
            Err(NtlmError::AvPairTruncated { at: 0 })
        );

        // Target info that stops before MsvAvEOL.
        let mut m = base.clone();
        set16(&mut m, 40, 32);
        assert_eq!(Challenge::parse(&m), Err(NtlmError::MissingEol));

        // Target info cut inside an AV pair header.
        let mut m = base.clone();
        set16(&mut m, 40, 18);
        assert_eq!(
            Challenge::parse(&m),
            Err(NtlmError::AvPairTruncated { at: 16 })
        );

        // MsvAvEOL with a length.
        let mut m = base.clone();
        set16(&mut m, 0x44 + 32 + 2, 1);
        assert!(Challenge::parse(&m).is_err());
    }

    #[test]
    fn bad_timestamp_and_flags_lengths() {
        let mut m = challenge_with_timestamp(5);
        // The timestamp pair is at 48 + 16; claim 7 bytes.
        m[48 + 16 + 2] = 7;
        assert_eq!(
            Challenge::parse(&m),
            Err(NtlmError::AvPairBadLength { id: 7, len: 7 })
        );
        let mut m = challenge_with_timestamp(5);
        m[48 + 16] = 6; // MsvAvFlags with 8 bytes
        assert_eq!(
            Challenge::parse(&m),
            Err(NtlmError::AvPairBadLength { id: 6, len: 8 })
        );
    }

    #[test]
    fn wrong_signature_type_and_flags() {
        let mut m = spec_challenge();
        m[0] = b'X';
        assert_eq!(Challenge::parse(&m), Err(NtlmError::BadSignature));
        let mut m = spec_challenge();
        m[8] = 3;
        assert_eq!(Challenge::parse(&m), Err(NtlmError::WrongMessageType(3)));
        let mut m = spec_challenge();
        m[20] &= !(NEGOTIATE_UNICODE as u8);
        assert_eq!(Challenge::parse(&m), Err(NtlmError::NoUnicode));
        let mut m = spec_challenge();
        m[21] &= !((NEGOTIATE_NTLM >> 8) as u8);
        assert_eq!(Challenge::parse(&m), Err(NtlmError::NoNtlm));
    }

    #[test]
    fn too_long_names_are_errors() {
        let c = Challenge::parse(&spec_challenge()).expect("parse");
        let long = "u".repeat(40_000);
        assert_eq!(
            authenticate_message(&c, &long, DOMAIN, PASSWORD, "", [0; 8], 0),
            Err(NtlmError::FieldTooLong { field: "UserName" })
        );
    }

    #[test]
    fn errors_and_debug_hold_no_secret() {
        let c = Challenge::parse(&spec_challenge()).expect("parse");
        let shown = format!("{c:?}");
        assert!(!shown.contains(PASSWORD));
        let e = NtlmError::FieldTooLong { field: "UserName" };
        assert_eq!(e.to_string(), "NTLM UserName too long for the message");
    }

    proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = Challenge::parse(&bytes);
        }

        #[test]
        fn parse_of_a_mutated_challenge_never_panics(
            edits in proptest::collection::vec((0usize..104, any::<u8>()), 1..8),
            cut in 0usize..=104,
        ) {
            let mut m = spec_challenge();
            for (at, v) in edits {
                m[at] = v;
            }
            m.truncate(cut);
            if let Ok(c) = Challenge::parse(&m) {
                let _ = authenticate_message(&c, USER, DOMAIN, PASSWORD, "", [0; 8], 0);
            }
        }
    }
}
