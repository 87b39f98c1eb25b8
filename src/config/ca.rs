//! CA certificate files: read and parsed when the config is built, so a missing or malformed
//! file is an error at load time naming the file, never a silent fallback.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::RootCertStore;
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::CertificateDer;

use crate::error::{Error, Result};

/// A PEM file of one or more trusted certificates, already parsed.
#[derive(Clone)]
pub struct CaFile {
    path: PathBuf,
    roots: Arc<RootCertStore>,
}

impl CaFile {
    /// Reads `path` (the config key is named in errors) and parses every certificate in it.
    pub fn load(key: &str, path: &Path) -> Result<CaFile> {
        let shown = path.display();
        let bytes = std::fs::read(path)
            .map_err(|e| Error::config(format!("{key}: cannot read CA file {shown}: {e}")))?;
        if bytes.iter().all(|b| b.is_ascii_whitespace()) {
            return Err(Error::config(format!("{key}: CA file {shown} is empty")));
        }
        let mut roots = RootCertStore::empty();
        let mut count = 0usize;
        for item in CertificateDer::pem_slice_iter(&bytes) {
            let cert = item.map_err(|e| {
                Error::config(format!(
                    "{key}: CA file {shown} is not valid PEM: {}",
                    describe_pem_error(&e)
                ))
            })?;
            count += 1;
            roots.add(cert).map_err(|e| {
                Error::config(format!(
                    "{key}: certificate #{count} in CA file {shown} cannot be used as a trust anchor: {e}"
                ))
            })?;
        }
        if count == 0 {
            return Err(Error::config(format!(
                "{key}: CA file {shown} holds no PEM certificate (expected -----BEGIN CERTIFICATE-----)"
            )));
        }
        Ok(CaFile {
            path: path.to_path_buf(),
            roots: Arc::new(roots),
        })
    }

    /// The file's path (resolved against `root_dir`).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The trust anchors it holds.
    pub fn roots(&self) -> Arc<RootCertStore> {
        Arc::clone(&self.roots)
    }

    /// How many certificates the file holds.
    pub fn len(&self) -> usize {
        self.roots.len()
    }

    /// Whether the file holds no certificate (never true for a loaded file).
    pub fn is_empty(&self) -> bool {
        self.roots.is_empty()
    }
}

impl std::fmt::Debug for CaFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "CaFile({}, {} certificates)",
            self.path.display(),
            self.len()
        )
    }
}

fn describe_pem_error(e: &pem::Error) -> String {
    match e {
        pem::Error::MissingSectionEnd { .. } => "a section has no END line".into(),
        pem::Error::IllegalSectionStart { .. } => "a BEGIN line is malformed".into(),
        pem::Error::Base64Decode(_) => "bad base64 inside a section".into(),
        other => format!("{other:?}"),
    }
}
