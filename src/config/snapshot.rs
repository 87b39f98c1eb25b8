//! A comparable picture of everything a [`TunnelConfig`] holds, the secrets included, for the
//! tests and fuzz targets of "a failed set changes nothing". Not part of the API.
//!
//! The secrets (the password, the CONNECT request that carries the credentials) are kept as
//! [`Secret`]s: compared byte for byte, printed redacted.

use std::path::PathBuf;
use std::sync::Arc;

use rustls_pki_types::ServerName;

use super::{CaFile, Host, Secret, TunnelConfig};
use crate::plan::{Plan, TlsHop};

/// Every setting, the plan's values and the plan itself. Two snapshots are equal when the
/// settings and the plan's values are equal and the plan is the very same object: a config
/// compared with itself before and after a failed `set`, or with a clone.
#[doc(hidden)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// `collector`.
    pub collector: Host,
    /// `collector_port`.
    pub collector_port: u16,
    /// `ssl`.
    pub ssl: bool,
    /// `ssl_verify_certificate`.
    pub verify: bool,
    /// `ca_certificate`: the resolved path and the trust anchors read from it.
    pub ca: Option<CaSnapshot>,
    /// `root_dir`.
    pub root_dir: PathBuf,
    /// `tcp_keepalive_s` and `tcp_user_timeout_ms`.
    pub tcp: (u32, u32),
    /// `http_proxy.proxy_host`.
    pub proxy_host: String,
    /// `http_proxy.proxy_port`.
    pub proxy_port: u16,
    /// `http_proxy.proxy_user`.
    pub proxy_user: String,
    /// `http_proxy.proxy_password`.
    pub proxy_password: Secret,
    /// `http_proxy.proxy_auth` as set, and `http_proxy.proxy_keytab`.
    pub proxy_auth: (Option<super::ProxyAuth>, Option<PathBuf>),
    /// `http_proxy.ssl`.
    pub proxy_ssl: bool,
    /// `http_proxy.ssl_verify_certificate`.
    pub proxy_verify: bool,
    /// `http_proxy.ca_certificate`.
    pub proxy_ca: Option<CaSnapshot>,
    /// `http_proxy.from_environment`, `no_proxy`, `user_agent` and `headers`.
    pub proxy_extras: (bool, super::NoProxy, Option<String>, Vec<(String, Secret)>),
    /// The plan's collector host and port.
    pub plan_collector: (Host, u16),
    /// The plan's TLS to the collector.
    pub plan_collector_tls: Option<HopSnapshot>,
    /// The plan's proxy hop.
    pub plan_proxy: Option<ProxySnapshot>,
    /// The plan object itself (compared by identity).
    pub plan: PlanId,
}

/// A CA file: its path and its trust anchors (subject and key, DER).
#[doc(hidden)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaSnapshot {
    /// The resolved path.
    pub path: PathBuf,
    /// (subject, subject public key info) of each anchor, in file order.
    pub anchors: Vec<(Vec<u8>, Vec<u8>)>,
}

/// One TLS hop of the plan.
#[doc(hidden)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HopSnapshot {
    /// SNI and the name checked.
    pub name: ServerName<'static>,
    /// Whether the certificate is verified.
    pub verify: bool,
}

/// The proxy hop of the plan.
#[doc(hidden)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxySnapshot {
    /// The proxy's host and port.
    pub address: (Host, u16),
    /// TLS to the proxy.
    pub tls: Option<HopSnapshot>,
    /// The CONNECT request head, credentials included.
    pub request: Secret,
    /// Whether the request carries credentials.
    pub authenticates: bool,
}

/// A plan, equal only to itself (`Arc::ptr_eq`); held, so its address cannot be reused by a
/// plan built later.
#[doc(hidden)]
#[derive(Clone)]
pub struct PlanId(Arc<Plan>);

impl PartialEq for PlanId {
    fn eq(&self, other: &PlanId) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for PlanId {}

impl std::fmt::Debug for PlanId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Plan@{:p}", Arc::as_ptr(&self.0))
    }
}

impl Snapshot {
    pub(super) fn of(cfg: &TunnelConfig) -> Snapshot {
        let s = &cfg.settings;
        let plan = &cfg.plan;
        Snapshot {
            collector: s.collector.clone(),
            collector_port: s.collector_port,
            ssl: s.ssl,
            verify: s.verify,
            ca: s.ca.as_ref().map(ca),
            root_dir: s.root_dir.clone(),
            tcp: (s.tcp_keepalive_s, s.tcp_user_timeout_ms),
            proxy_host: s.proxy.host.clone(),
            proxy_port: s.proxy.port,
            proxy_user: s.proxy.user.clone(),
            proxy_password: s.proxy.password.clone(),
            proxy_auth: (s.proxy.auth, s.proxy.keytab.clone()),
            proxy_ssl: s.proxy.ssl,
            proxy_verify: s.proxy.verify,
            proxy_ca: s.proxy.ca.as_ref().map(ca),
            proxy_extras: (
                s.proxy.from_environment,
                s.proxy.no_proxy.clone(),
                s.proxy.user_agent.clone(),
                s.proxy.headers.clone(),
            ),
            plan_collector: (plan.collector.clone(), plan.collector_port),
            plan_collector_tls: plan.collector_tls.as_ref().map(hop),
            plan_proxy: plan.proxy.as_ref().map(|p| ProxySnapshot {
                address: (p.host.clone(), p.port),
                tls: p.tls.as_ref().map(hop),
                request: p.request.clone(),
                authenticates: p.authenticates,
            }),
            plan: PlanId(Arc::clone(plan)),
        }
    }
}

fn ca(file: &CaFile) -> CaSnapshot {
    CaSnapshot {
        path: file.path().to_path_buf(),
        anchors: file
            .roots()
            .roots
            .iter()
            .map(|a| (a.subject.to_vec(), a.subject_public_key_info.to_vec()))
            .collect(),
    }
}

fn hop(tls: &TlsHop) -> HopSnapshot {
    HopSnapshot {
        name: tls.name.clone(),
        verify: tls.verify,
    }
}
