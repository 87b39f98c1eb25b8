//! Reading a dragent.yaml: the keys this library uses, every other key ignored whatever its
//! type. Values are kept as scalar text here and checked by [`super::Settings::set`], so a
//! file and `dtun_config_set` go through exactly the same parsing.

use serde::Deserialize;

use super::scalar::Scalar;
use crate::error::{Error, Result};

/// The keys of a dragent.yaml that this library reads, as written.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawFile {
    pub collector: Option<Scalar>,
    pub collector_port: Option<Scalar>,
    pub ssl: Option<Scalar>,
    pub ssl_verify_certificate: Option<Scalar>,
    pub ca_certificate: Option<Scalar>,
    pub root_dir: Option<Scalar>,
    pub tcp_keepalive_s: Option<Scalar>,
    pub tcp_user_timeout_ms: Option<Scalar>,
    pub http_proxy: Option<RawProxy>,
}

/// The keys under `http_proxy:`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawProxy {
    pub proxy_host: Option<Scalar>,
    pub proxy_port: Option<Scalar>,
    pub proxy_user: Option<Scalar>,
    pub proxy_password: Option<Scalar>,
    pub proxy_auth: Option<Scalar>,
    pub proxy_keytab: Option<Scalar>,
    pub ssl: Option<Scalar>,
    pub ssl_verify_certificate: Option<Scalar>,
    pub ca_certificate: Option<Scalar>,
    pub from_environment: Option<Scalar>,
    pub no_proxy: Option<Scalar>,
    pub user_agent: Option<Scalar>,
    /// Taken out before [`RawFile::entries`]: its keys are the headers' names.
    pub headers: Option<super::headers::RawHeaders>,
}

impl RawFile {
    /// Parses YAML text. An empty document gives every default.
    pub fn parse(text: &str) -> Result<RawFile> {
        if text.trim().is_empty() {
            return Ok(RawFile::default());
        }
        match serde_yaml::from_str::<Option<RawFile>>(text) {
            Ok(file) => Ok(file.unwrap_or_default()),
            Err(e) => Err(Error::config(describe_yaml_error(&e))),
        }
    }

    /// The keys and their texts, `root_dir` first (the CA paths are resolved against it),
    /// then in the documented order; `None` values are YAML nulls.
    pub fn entries(self) -> Vec<(&'static str, Option<String>)> {
        let p = self.http_proxy.unwrap_or_default();
        let t = |s: Option<Scalar>| s.map(|s| s.0);
        vec![
            ("root_dir", t(self.root_dir)),
            ("collector", t(self.collector)),
            ("collector_port", t(self.collector_port)),
            ("ssl", t(self.ssl)),
            ("ssl_verify_certificate", t(self.ssl_verify_certificate)),
            ("ca_certificate", t(self.ca_certificate)),
            ("tcp_keepalive_s", t(self.tcp_keepalive_s)),
            ("tcp_user_timeout_ms", t(self.tcp_user_timeout_ms)),
            ("http_proxy.proxy_host", t(p.proxy_host)),
            ("http_proxy.proxy_port", t(p.proxy_port)),
            ("http_proxy.proxy_user", t(p.proxy_user)),
            ("http_proxy.proxy_password", t(p.proxy_password)),
            ("http_proxy.proxy_auth", t(p.proxy_auth)),
            ("http_proxy.proxy_keytab", t(p.proxy_keytab)),
            ("http_proxy.ssl", t(p.ssl)),
            (
                "http_proxy.ssl_verify_certificate",
                t(p.ssl_verify_certificate),
            ),
            ("http_proxy.ca_certificate", t(p.ca_certificate)),
            ("http_proxy.from_environment", t(p.from_environment)),
            ("http_proxy.no_proxy", t(p.no_proxy)),
            ("http_proxy.user_agent", t(p.user_agent)),
        ]
    }
}

/// Parses the value text of `dtun_config_set`: one YAML scalar, or null.
pub(crate) fn parse_scalar_text(key: &str, text: &str) -> Result<Option<String>> {
    if text.trim().is_empty() {
        return Ok(None);
    }
    // C callers pass raw values: a password like "#1secret" or "pass #1" would silently lose
    // its tail to a YAML comment. Refuse rather than guess.
    let quoted = text.trim_start().starts_with(['\'', '"']);
    if !quoted
        && (text.trim_start().starts_with('#') || text.contains(" #") || text.contains("\t#"))
    {
        return Err(Error::config(format!(
            "{key}: the value would be read as a YAML comment from its '#'; quote it (e.g. \"'...'\")"
        )));
    }
    serde_yaml::from_str::<Option<Scalar>>(text)
        .map(|v| v.map(|s| s.0))
        .map_err(|_| {
            Error::config(format!(
                "{key}: the value is not a single YAML scalar (quote it if it holds ': ', '#' or starts with a YAML indicator)"
            ))
        })
}

/// A YAML error in words, with line and column, and without echoing the document's text
/// (which may hold the password).
fn describe_yaml_error(e: &serde_yaml::Error) -> String {
    let mut text = e.to_string();
    // serde_yaml appends " at line L column C"; keep our own uniform form instead.
    if let Some(i) = text.find(" at line ") {
        text.truncate(i);
    }
    // Never echo a scalar's content: serde_yaml quotes it as `string "..."`.
    if let Some(i) = text.find("invalid type: string") {
        text.truncate(i + "invalid type: string".len());
    }
    match e.location() {
        Some(loc) => format!(
            "dragent.yaml syntax error at line {} column {}: {}",
            loc.line(),
            loc.column(),
            text
        ),
        None => format!("dragent.yaml: {text}"),
    }
}
