//! A throwaway PKI made with rcgen at test time.
//!
//! [`Pki::new`] makes a trusted CA ("dtun test CA") and an independent, untrusted CA, and writes
//! their certificates to `ca.pem` and `untrusted-ca.pem` in the given folder. [`Pki::issue`]
//! makes server certificates: valid, expired, or signed by the untrusted CA. [`Pki::make_ca`]
//! makes one more CA with its key on file, such as the bump CA of a TLS-inspecting squid
//! ([`crate::squid::SslBump`]). Every file is readable by other users (mode 0644) because
//! squid reads them as the user `proxy`.

use std::fs;
use std::io;
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use time::{Duration, OffsetDateTime};

/// File name of the trusted CA certificate inside the PKI folder.
pub const CA_FILE: &str = "ca.pem";
/// File name of the untrusted CA certificate inside the PKI folder.
pub const UNTRUSTED_CA_FILE: &str = "untrusted-ca.pem";
/// Common name of the trusted CA.
pub const CA_NAME: &str = "dtun test CA";
/// Common name of the untrusted CA.
pub const UNTRUSTED_CA_NAME: &str = "dtun untrusted CA";
/// Common name for the CA of a TLS-inspecting proxy ([`Pki::make_ca`]).
pub const BUMP_CA_NAME: &str = "dtun bump CA";

/// Which kind of server certificate [`Pki::issue`] makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertKind {
    /// Signed by the trusted CA, valid from yesterday for a year.
    Trusted,
    /// Signed by the trusted CA, valid only from 2019-01-01 to 2020-01-01.
    Expired,
    /// Valid dates, but signed by the untrusted CA (not in `ca.pem`).
    UntrustedIssuer,
}

/// A server certificate written by [`Pki::issue`], with a ready TLS server configuration.
#[derive(Debug, Clone)]
pub struct Issued {
    /// `<dir>/<stem>.pem`: the leaf certificate followed by its issuer's, PEM.
    pub cert_path: PathBuf,
    /// `<dir>/<stem>.key`: the private key, PKCS#8 PEM.
    pub key_path: PathBuf,
    /// TLS 1.2 and 1.3 server configuration (ring provider) presenting this certificate chain,
    /// without ALPN, with session tickets and a session cache for resumption.
    pub server_config: Arc<ServerConfig>,
}

/// A CA written by [`Pki::make_ca`]: its certificate and its private key.
#[derive(Debug, Clone)]
pub struct IssuedCa {
    /// `<dir>/<stem>.pem`: the self-signed CA certificate, PEM.
    pub cert_path: PathBuf,
    /// `<dir>/<stem>.key`: its private key, PKCS#8 PEM (a CA that signs on the fly, as
    /// squid's SslBump does, needs it).
    pub key_path: PathBuf,
    /// The CA certificate, DER.
    pub cert_der: CertificateDer<'static>,
}

/// One certificate authority: its certificate and signing key.
struct Authority {
    cert: Certificate,
    key: KeyPair,
}

/// A trusted CA and an untrusted CA, and the folder their files are written to.
pub struct Pki {
    dir: PathBuf,
    trusted: Authority,
    untrusted: Authority,
}

impl std::fmt::Debug for Pki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pki").field("dir", &self.dir).finish()
    }
}

fn rcgen_error(e: rcgen::Error) -> io::Error {
    io::Error::other(format!("rcgen: {e}"))
}

fn rustls_error(e: rustls::Error) -> io::Error {
    io::Error::other(format!("rustls: {e}"))
}

/// Writes `contents` to `path` and makes it readable by everyone (0644).
fn write_public(path: &Path, contents: &str) -> io::Result<()> {
    fs::write(path, contents)?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o644))
}

fn make_authority(common_name: &str) -> io::Result<Authority> {
    let key = KeyPair::generate().map_err(rcgen_error)?;
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(rcgen_error)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn.push(DnType::OrganizationName, "dtun tests");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    // Covers the expired leaf's validity too, so that only the leaf is out of date.
    params.not_before = rcgen::date_time_ymd(2018, 1, 1);
    params.not_after = OffsetDateTime::now_utc() + Duration::days(3650);
    let cert = params.self_signed(&key).map_err(rcgen_error)?;
    Ok(Authority { cert, key })
}

/// A rustls crypto provider backed by ring.
pub fn ring_provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A TLS 1.2 + 1.3 server configuration (ring) presenting `chain` with `key`, without ALPN, with
/// session tickets and the default in-memory session cache (resumption both ways).
pub fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> io::Result<Arc<ServerConfig>> {
    let mut config = ServerConfig::builder_with_provider(ring_provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(rustls_error)?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(rustls_error)?;
    config.ticketer = rustls::crypto::ring::Ticketer::new().map_err(rustls_error)?;
    config.alpn_protocols.clear();
    Ok(Arc::new(config))
}

impl Pki {
    /// Makes both CAs and writes `dir/ca.pem` (trusted) and `dir/untrusted-ca.pem`.
    ///
    /// Creates `dir` if needed and makes it at least 0755, so that a proxy running as another
    /// user (squid runs as `proxy`) can read the files in it.
    pub fn new(dir: &Path) -> io::Result<Pki> {
        fs::create_dir_all(dir)?;
        let mode = fs::metadata(dir)?.permissions().mode();
        if mode & 0o755 != 0o755 {
            fs::set_permissions(dir, fs::Permissions::from_mode((mode | 0o755) & 0o7777))?;
        }
        let trusted = make_authority(CA_NAME)?;
        let untrusted = make_authority(UNTRUSTED_CA_NAME)?;
        write_public(&dir.join(CA_FILE), &trusted.cert.pem())?;
        write_public(&dir.join(UNTRUSTED_CA_FILE), &untrusted.cert.pem())?;
        Ok(Pki {
            dir: dir.to_path_buf(),
            trusted,
            untrusted,
        })
    }

    /// The folder the PKI writes its files to.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Path of the trusted CA certificate, `dir/ca.pem`.
    pub fn ca_path(&self) -> PathBuf {
        self.dir.join(CA_FILE)
    }

    /// Path of the untrusted CA certificate, `dir/untrusted-ca.pem`.
    pub fn untrusted_ca_path(&self) -> PathBuf {
        self.dir.join(UNTRUSTED_CA_FILE)
    }

    /// Makes a new, independent CA named `common_name` (organisation "dtun tests"), trusted
    /// by nobody until a test says so, and writes `dir/<file_stem>.pem` and
    /// `dir/<file_stem>.key` (both mode 0644).
    pub fn make_ca(&self, file_stem: &str, common_name: &str) -> io::Result<IssuedCa> {
        let ca = make_authority(common_name)?;
        let cert_path = self.dir.join(format!("{file_stem}.pem"));
        let key_path = self.dir.join(format!("{file_stem}.key"));
        write_public(&cert_path, &ca.cert.pem())?;
        write_public(&key_path, &ca.key.serialize_pem())?;
        Ok(IssuedCa {
            cert_path,
            key_path,
            cert_der: ca.cert.der().clone(),
        })
    }

    /// The trusted CA certificate, DER.
    pub fn ca_der(&self) -> CertificateDer<'static> {
        self.trusted.cert.der().clone()
    }

    /// The trusted CA certificate, PEM.
    pub fn ca_pem(&self) -> String {
        self.trusted.cert.pem()
    }

    /// A root store holding only the trusted CA.
    pub fn root_store(&self) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        roots
            .add(self.ca_der())
            .expect("rcgen CA certificate is valid");
        roots
    }

    /// A TLS client configuration (ring, TLS 1.2 and 1.3) that trusts only the trusted CA, for
    /// test clients.
    pub fn client_config(&self) -> Arc<ClientConfig> {
        let config = ClientConfig::builder_with_provider(ring_provider())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .expect("ring supports TLS 1.2 and 1.3")
            .with_root_certificates(self.root_store())
            .with_no_client_auth();
        Arc::new(config)
    }

    /// Issues a server certificate for `names` and writes `dir/<file_stem>.pem` (leaf then
    /// issuer) and `dir/<file_stem>.key` (PKCS#8), both mode 0644.
    ///
    /// A name that parses as an IP address becomes an IP SAN, any other a DNS SAN. The first name
    /// is also the subject's common name.
    pub fn issue(&self, file_stem: &str, names: &[&str], kind: CertKind) -> io::Result<Issued> {
        let key = KeyPair::generate().map_err(rcgen_error)?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(rcgen_error)?;
        params.subject_alt_names = names
            .iter()
            .map(|name| match name.parse::<IpAddr>() {
                Ok(ip) => Ok(SanType::IpAddress(ip)),
                Err(_) => Ok(SanType::DnsName((*name).try_into().map_err(rcgen_error)?)),
            })
            .collect::<io::Result<Vec<_>>>()?;
        let mut dn = DistinguishedName::new();
        dn.push(
            DnType::CommonName,
            names.first().copied().unwrap_or(file_stem),
        );
        dn.push(DnType::OrganizationName, "dtun tests");
        params.distinguished_name = dn;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let now = OffsetDateTime::now_utc();
        match kind {
            CertKind::Trusted | CertKind::UntrustedIssuer => {
                params.not_before = now - Duration::days(1);
                params.not_after = now + Duration::days(365);
            }
            CertKind::Expired => {
                params.not_before = rcgen::date_time_ymd(2019, 1, 1);
                params.not_after = rcgen::date_time_ymd(2020, 1, 1);
            }
        }
        let issuer = match kind {
            CertKind::Trusted | CertKind::Expired => &self.trusted,
            CertKind::UntrustedIssuer => &self.untrusted,
        };
        let cert = params
            .signed_by(&key, &issuer.cert, &issuer.key)
            .map_err(rcgen_error)?;

        let cert_path = self.dir.join(format!("{file_stem}.pem"));
        let key_path = self.dir.join(format!("{file_stem}.key"));
        write_public(&cert_path, &format!("{}{}", cert.pem(), issuer.cert.pem()))?;
        write_public(&key_path, &key.serialize_pem())?;

        let chain = vec![cert.der().clone(), issuer.cert.der().clone()];
        let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let server_config = server_config(chain, key_der)?;
        Ok(Issued {
            cert_path,
            key_path,
            server_config,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use rustls::client::danger::ServerCertVerifier;
    use rustls::client::WebPkiServerVerifier;
    use rustls::pki_types::{ServerName, UnixTime};
    use rustls::CertificateError;

    /// A fresh folder under the system temp folder, unique per call.
    pub(crate) fn temp_dir(tag: &str) -> PathBuf {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "dtun-testenv-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn read_chain(path: &Path) -> Vec<CertificateDer<'static>> {
        let pem = fs::read_to_string(path).unwrap();
        let mut chain = Vec::new();
        let mut der_b64 = String::new();
        let mut inside = false;
        for line in pem.lines() {
            match line {
                "-----BEGIN CERTIFICATE-----" => {
                    inside = true;
                    der_b64.clear();
                }
                "-----END CERTIFICATE-----" => {
                    inside = false;
                    use base64::Engine;
                    let der = base64::engine::general_purpose::STANDARD
                        .decode(&der_b64)
                        .unwrap();
                    chain.push(CertificateDer::from(der));
                }
                _ if inside => der_b64.push_str(line.trim()),
                _ => {}
            }
        }
        chain
    }

    fn verify(pki: &Pki, issued: &Issued, name: &str) -> Result<(), rustls::Error> {
        let verifier = WebPkiServerVerifier::builder_with_provider(
            Arc::new(pki.root_store()),
            ring_provider(),
        )
        .build()
        .unwrap();
        let chain = read_chain(&issued.cert_path);
        assert_eq!(chain.len(), 2, "leaf followed by its issuer");
        verifier
            .verify_server_cert(
                &chain[0],
                &chain[1..],
                &ServerName::try_from(name.to_string()).unwrap(),
                &[],
                UnixTime::now(),
            )
            .map(|_| ())
    }

    #[test]
    fn certificates_parse_and_verify() {
        let dir = temp_dir("pki");
        let pki = Pki::new(&dir).unwrap();
        assert!(pki.ca_path().is_file());
        assert!(pki.untrusted_ca_path().is_file());
        let good = pki
            .issue(
                "good",
                &["localhost", "127.0.0.1", "::1"],
                CertKind::Trusted,
            )
            .unwrap();
        verify(&pki, &good, "localhost").unwrap();
        verify(&pki, &good, "127.0.0.1").unwrap();
        verify(&pki, &good, "::1").unwrap();
        let key = fs::read_to_string(&good.key_path).unwrap();
        assert!(key.starts_with("-----BEGIN PRIVATE KEY-----"), "PKCS#8");
        for path in [&good.cert_path, &good.key_path, &pki.ca_path()] {
            let mode = fs::metadata(path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o644, "{}", path.display());
        }
        let err = verify(&pki, &good, "other.example").unwrap_err();
        assert!(
            matches!(
                err,
                rustls::Error::InvalidCertificate(
                    CertificateError::NotValidForName
                        | CertificateError::NotValidForNameContext { .. }
                )
            ),
            "{err:?}"
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn make_ca_writes_a_self_signed_ca_and_its_key() {
        let dir = temp_dir("pki-ca");
        let pki = Pki::new(&dir).unwrap();
        let ca = pki.make_ca("bump-ca", BUMP_CA_NAME).unwrap();
        let chain = read_chain(&ca.cert_path);
        assert_eq!(chain, std::slice::from_ref(&ca.cert_der));
        let mut roots = RootCertStore::empty();
        roots.add(ca.cert_der.clone()).expect("a CA certificate");
        let subject = roots.roots[0].subject.as_ref();
        assert!(
            subject
                .windows(BUMP_CA_NAME.len())
                .any(|w| w == BUMP_CA_NAME.as_bytes()),
            "{subject:?}"
        );
        assert!(
            pki.ca_der() != ca.cert_der && !read_chain(&pki.ca_path()).contains(&ca.cert_der),
            "independent of the trusted CA"
        );
        let key = fs::read_to_string(&ca.key_path).unwrap();
        assert!(key.starts_with("-----BEGIN PRIVATE KEY-----"), "PKCS#8");
        for path in [&ca.cert_path, &ca.key_path] {
            let mode = fs::metadata(path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o644, "{}", path.display());
        }
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn expired_is_expired_and_untrusted_is_unknown() {
        let dir = temp_dir("pki-bad");
        let pki = Pki::new(&dir).unwrap();
        let expired = pki
            .issue("expired", &["localhost"], CertKind::Expired)
            .unwrap();
        let err = verify(&pki, &expired, "localhost").unwrap_err();
        assert!(
            matches!(
                err,
                rustls::Error::InvalidCertificate(
                    CertificateError::Expired | CertificateError::ExpiredContext { .. }
                )
            ),
            "{err:?}"
        );
        let untrusted = pki
            .issue("untrusted", &["localhost"], CertKind::UntrustedIssuer)
            .unwrap();
        let err = verify(&pki, &untrusted, "localhost").unwrap_err();
        assert!(
            matches!(
                err,
                rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)
            ),
            "{err:?}"
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}
