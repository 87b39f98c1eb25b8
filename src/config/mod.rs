//! The configuration: the dragent.yaml keys this library reads, their defaults, the lenient
//! parsing of the agent's YAML reader, and the checks that make a config safe to open with.
//!
//! [`TunnelConfig`] is what the C API calls a `dtun_config`: settings plus the [`Plan`] built
//! from them once (TLS configs, CONNECT request), shared by every open.

mod auth;
mod ca;
pub mod environment;
mod headers;
mod host;
pub mod no_proxy;
pub mod proxy_url;
mod scalar;
mod secret;
mod snapshot;
mod yaml;

pub use auth::ProxyAuth;
pub use ca::CaFile;
pub use headers::HEADER_KEY_PREFIX;
pub use host::Host;
pub use no_proxy::NoProxy;
pub use secret::Secret;
#[doc(hidden)]
pub use snapshot::{CaSnapshot, HopSnapshot, PlanId, ProxySnapshot, Snapshot};

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::plan::Plan;

/// Default collector host.
pub const DEFAULT_COLLECTOR: &str = "collector.sysdigcloud.com";
/// Default collector port.
pub const DEFAULT_COLLECTOR_PORT: u16 = 6443;
/// Default `tcp_keepalive_s`: keepalive probes after this many idle seconds.
pub(crate) const DEFAULT_TCP_KEEPALIVE_S: u32 = 60;
/// Default `tcp_user_timeout_ms`: unacknowledged data fails the connection after this long.
pub(crate) const DEFAULT_TCP_USER_TIMEOUT_MS: u32 = 120_000;
/// The largest `tcp_keepalive_s` (the kernel's limit for `TCP_KEEPIDLE`).
pub(crate) const MAX_TCP_KEEPALIVE_S: u32 = 32_767;
/// The largest `tcp_user_timeout_ms` (the kernel takes an `int`).
pub(crate) const MAX_TCP_USER_TIMEOUT_MS: u32 = i32::MAX as u32;
/// Default `root_dir`, against which relative CA paths are resolved.
pub const DEFAULT_ROOT_DIR: &str = "/opt/draios";

/// Every key `dtun_config_set` accepts, in dotted form.
pub const KEYS: [&str; 21] = [
    "collector",
    "collector_port",
    "tcp_keepalive_s",
    "tcp_user_timeout_ms",
    "ssl",
    "ssl_verify_certificate",
    "ca_certificate",
    "root_dir",
    "http_proxy.proxy_host",
    "http_proxy.proxy_port",
    "http_proxy.proxy_user",
    "http_proxy.proxy_password",
    "http_proxy.proxy_auth",
    "http_proxy.proxy_keytab",
    "http_proxy.ssl",
    "http_proxy.ssl_verify_certificate",
    "http_proxy.ca_certificate",
    "http_proxy.from_environment",
    "http_proxy.no_proxy",
    "http_proxy.user_agent",
    "http_proxy.headers",
];

/// The `http_proxy:` settings.
#[derive(Debug, Clone)]
pub struct ProxySettings {
    /// `proxy_host`; empty: no proxy.
    pub host: String,
    /// `proxy_port`; 0: no proxy.
    pub port: u16,
    /// `proxy_user`; empty: no `Proxy-Authorization`.
    pub user: String,
    /// `proxy_password`.
    pub password: Secret,
    /// `proxy_auth` as set; `None`: the default (Basic with a user, nothing without).
    pub auth: Option<ProxyAuth>,
    /// `proxy_keytab`: the Negotiate client keytab.
    pub keytab: Option<PathBuf>,
    /// `ssl`: TLS between agent and proxy.
    pub ssl: bool,
    /// `ssl_verify_certificate` for the proxy.
    pub verify: bool,
    /// `ca_certificate` for the proxy.
    pub ca: Option<CaFile>,
    /// `from_environment`: with `proxy_host` empty, the proxy comes from `https_proxy`,
    /// `HTTPS_PROXY`, `all_proxy` or `ALL_PROXY` (see [`environment`]).
    pub from_environment: bool,
    /// `no_proxy`: collectors that go direct (curl's rules, see [`no_proxy`]).
    pub no_proxy: NoProxy,
    /// `user_agent`: `None` for the default `dragent-tunnel/<version>`; empty: none sent.
    pub user_agent: Option<String>,
    /// `headers`: extra CONNECT headers, names as written; the values are secrets.
    pub headers: Vec<(String, Secret)>,
}

/// Every setting, typed and checked.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `collector`.
    pub collector: Host,
    /// `collector_port`.
    pub collector_port: u16,
    /// `ssl`: TLS end to end.
    pub ssl: bool,
    /// `ssl_verify_certificate` for the collector.
    pub verify: bool,
    /// `ca_certificate` for the collector.
    pub ca: Option<CaFile>,
    /// `root_dir`.
    pub root_dir: PathBuf,
    /// `tcp_keepalive_s`: keepalive idle seconds; 0: off.
    pub tcp_keepalive_s: u32,
    /// `tcp_user_timeout_ms`: `TCP_USER_TIMEOUT`; 0: the kernel's default.
    pub tcp_user_timeout_ms: u32,
    /// `http_proxy`.
    pub proxy: ProxySettings,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            collector: Host::Name(DEFAULT_COLLECTOR.into()),
            collector_port: DEFAULT_COLLECTOR_PORT,
            ssl: true,
            verify: true,
            ca: None,
            root_dir: PathBuf::from(DEFAULT_ROOT_DIR),
            tcp_keepalive_s: DEFAULT_TCP_KEEPALIVE_S,
            tcp_user_timeout_ms: DEFAULT_TCP_USER_TIMEOUT_MS,
            proxy: ProxySettings {
                host: String::new(),
                port: 0,
                user: String::new(),
                password: Secret::default(),
                auth: None,
                keytab: None,
                ssl: false,
                verify: true,
                ca: None,
                from_environment: false,
                no_proxy: NoProxy::default(),
                user_agent: None,
                headers: Vec::new(),
            },
        }
    }
}

impl Settings {
    /// Whether a proxy is used: host non-empty AND port non-zero.
    pub fn uses_proxy(&self) -> bool {
        !self.proxy.host.is_empty() && self.proxy.port != 0
    }

    /// The proxy auth scheme in force: `proxy_auth` when set, else Basic when `proxy_user`
    /// is set, else none.
    pub fn proxy_auth(&self) -> Option<ProxyAuth> {
        self.proxy
            .auth
            .or_else(|| (!self.proxy.user.is_empty()).then_some(ProxyAuth::Basic))
    }

    /// Sets one key by its dotted name from a YAML scalar's text (`None` = YAML null, which
    /// restores the default). Does not check the rules between keys: see [`Settings::check`].
    fn set(&mut self, key: &str, value: Option<&str>) -> Result<()> {
        let text = value.unwrap_or("");
        let null = value.is_none();
        let defaults = Settings::default();
        match key {
            "collector" => {
                self.collector = if null {
                    defaults.collector
                } else {
                    Host::parse(key, text).map_err(Error::config)?
                }
            }
            "collector_port" => {
                self.collector_port = if null {
                    defaults.collector_port
                } else {
                    port(key, text, false)?
                }
            }
            "tcp_keepalive_s" => {
                self.tcp_keepalive_s = if null {
                    defaults.tcp_keepalive_s
                } else {
                    whole_number(key, text, MAX_TCP_KEEPALIVE_S)?
                }
            }
            "tcp_user_timeout_ms" => {
                self.tcp_user_timeout_ms = if null {
                    defaults.tcp_user_timeout_ms
                } else {
                    whole_number(key, text, MAX_TCP_USER_TIMEOUT_MS)?
                }
            }
            "ssl" => self.ssl = null_or(null, true, || boolean(key, text))?,
            "ssl_verify_certificate" => self.verify = null_or(null, true, || boolean(key, text))?,
            "ca_certificate" => self.ca = self.ca_file(key, value)?,
            "root_dir" => {
                self.root_dir = if null {
                    defaults.root_dir
                } else {
                    PathBuf::from(text)
                }
            }
            "http_proxy.proxy_host" => {
                self.proxy.host = if text.trim().is_empty() {
                    String::new()
                } else {
                    Host::parse(key, text).map_err(Error::config)?;
                    text.trim().to_owned()
                }
            }
            "http_proxy.proxy_port" => {
                self.proxy.port = if null { 0 } else { port(key, text, true)? }
            }
            "http_proxy.proxy_user" => {
                if text.contains(':') || text.chars().any(char::is_control) {
                    return Err(Error::config(format!(
                        "{key}: a Basic auth user name may not contain ':' or control characters"
                    )));
                }
                self.proxy.user = text.to_owned();
            }
            "http_proxy.proxy_password" => {
                self.proxy.password = Secret::from(text.to_owned());
            }
            "http_proxy.proxy_auth" => {
                self.proxy.auth = if text.trim().is_empty() {
                    None
                } else {
                    Some(ProxyAuth::parse(key, text)?)
                }
            }
            "http_proxy.proxy_keytab" => {
                self.proxy.keytab = match value.map(str::trim) {
                    None | Some("") => None,
                    Some(path) => Some(resolve(&self.root_dir, Path::new(path))),
                }
            }
            "http_proxy.ssl" => self.proxy.ssl = null_or(null, false, || boolean(key, text))?,
            "http_proxy.ssl_verify_certificate" => {
                self.proxy.verify = null_or(null, true, || boolean(key, text))?
            }
            "http_proxy.ca_certificate" => self.proxy.ca = self.ca_file(key, value)?,
            "http_proxy.from_environment" => {
                self.proxy.from_environment = null_or(null, false, || boolean(key, text))?
            }
            "http_proxy.no_proxy" => {
                self.proxy.no_proxy = NoProxy::parse(key, text).map_err(Error::config)?
            }
            "http_proxy.user_agent" => {
                self.proxy.user_agent = if null {
                    None
                } else {
                    headers::check_value(key, text).map_err(Error::config)?;
                    Some(text.to_owned())
                }
            }
            "http_proxy.headers" if null => self.proxy.headers.clear(),
            "http_proxy.headers" => {
                return Err(Error::config(
                    "http_proxy.headers: expected a map of header names to values (with \
                     dtun_config_set, set one header as http_proxy.headers.<Name>)",
                ))
            }
            _ if key.starts_with(HEADER_KEY_PREFIX) => {
                self.set_header(&key[HEADER_KEY_PREFIX.len()..], value)?
            }
            _ => {
                return Err(Error::invalid_argument(format!(
                    "unknown config key {:?}; known keys: {}",
                    key.chars().take(64).collect::<String>(),
                    KEYS.join(", ")
                )))
            }
        }
        Ok(())
    }

    /// Sets (or, with `None`, removes) one extra CONNECT header; names match without case.
    fn set_header(&mut self, name: &str, value: Option<&str>) -> Result<()> {
        headers::check_name(name).map_err(Error::config)?;
        if let Some(v) = value {
            headers::check_value(&format!("{HEADER_KEY_PREFIX}{name}"), v)
                .map_err(Error::config)?;
        }
        self.proxy
            .headers
            .retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        if let Some(v) = value {
            self.proxy
                .headers
                .push((name.to_owned(), Secret::from(v.to_owned())));
        }
        Ok(())
    }

    fn ca_file(&self, key: &str, value: Option<&str>) -> Result<Option<CaFile>> {
        match value.map(str::trim) {
            None | Some("") => Ok(None),
            Some(path) => CaFile::load(key, &resolve(&self.root_dir, Path::new(path))).map(Some),
        }
    }

    /// Checks the rules between keys.
    fn check(&self) -> Result<()> {
        if self.proxy.ssl && !self.ssl {
            return Err(Error::config(
                "http_proxy.ssl: true requires ssl: true (TLS to the proxy without end-to-end TLS \
                 would let the agent believe its metrics are encrypted to the collector when they are not)",
            ));
        }
        if let Some(auth) = self.proxy.auth {
            auth.check_available("http_proxy.proxy_auth")?;
            if matches!(auth, ProxyAuth::Basic | ProxyAuth::Digest | ProxyAuth::Ntlm)
                && self.proxy.user.is_empty()
            {
                return Err(Error::config(format!(
                    "http_proxy.proxy_auth: {auth} needs a user name in http_proxy.proxy_user"
                )));
            }
            if matches!(auth, ProxyAuth::Negotiate | ProxyAuth::Any)
                && self.proxy.keytab.is_some()
                && self.proxy.user.is_empty()
            {
                return Err(Error::config(
                    "http_proxy.proxy_keytab needs the client principal (name@REALM) in http_proxy.proxy_user",
                ));
            }
        }
        Ok(())
    }
}

/// A validated configuration and the plan for opening tunnels with it (`dtun_config`).
///
/// A clone shares the plan (TLS configs and their session caches) with the original.
#[derive(Clone)]
pub struct TunnelConfig {
    settings: Settings,
    plan: Arc<Plan>,
}

impl TunnelConfig {
    /// Every documented default: direct TLS to the default collector.
    pub fn new() -> Result<TunnelConfig> {
        TunnelConfig::from_settings(Settings::default())
    }

    /// Parses dragent.yaml text.
    pub fn from_yaml(text: &str) -> Result<TunnelConfig> {
        let mut settings = Settings::default();
        let mut raw = yaml::RawFile::parse(text)?;
        let headers = raw
            .http_proxy
            .as_mut()
            .and_then(|p| p.headers.take())
            .unwrap_or_default();
        let entries = raw.entries();
        // A password typed into the wrong key would be quoted by that key's error.
        let password = entries
            .iter()
            .find(|(key, _)| *key == "http_proxy.proxy_password")
            .and_then(|(_, value)| value.clone())
            .map(Secret::from)
            .unwrap_or_default();
        let mut result = Ok(());
        for (key, mut value) in entries {
            if result.is_ok() {
                result = settings
                    .set(key, value.as_deref())
                    .map_err(|e| without_secret(e, &password));
            }
            // Every value is wiped, even after an error, not only the password's: cheaper
            // than telling them apart.
            if let Some(v) = value.as_mut() {
                secret::wipe_string(v);
            }
        }
        // The headers after every key (`http_proxy.headers: ~` among the keys clears them);
        // their values are secrets, wiped after use like every value.
        for (name, mut value) in headers.0 {
            if result.is_ok() {
                result = settings.set_header(&name, value.as_deref());
            }
            if let Some(v) = value.as_mut() {
                secret::wipe_string(v);
            }
        }
        result?;
        settings.check()?;
        TunnelConfig::from_settings(settings)
    }

    /// Reads and parses a dragent.yaml file.
    pub fn from_file(path: &Path) -> Result<TunnelConfig> {
        let bytes = read_wiping(std::fs::File::open(path)).map_err(|e| {
            Error::config(format!("cannot read config file {}: {e}", path.display()))
        })?;
        // The file holds the password: a file that is not UTF-8 is wiped before the error.
        let mut text = utf8_or_wiped(bytes).map_err(|_wiped| {
            Error::config(format!("config file {} is not UTF-8 text", path.display()))
        })?;
        let result = TunnelConfig::from_yaml(&text)
            .map_err(|e| Error::config(format!("{}: {}", path.display(), e.message())));
        secret::wipe_string(&mut text);
        result
    }

    /// Sets one key by its dotted name (`"http_proxy.proxy_port"`) from YAML scalar text
    /// (`"3128"`), with the same parsing and checks as a file. On error nothing changes.
    pub fn set(&mut self, key: &str, value: &str) -> Result<()> {
        if !KEYS.contains(&key) && !key.starts_with(HEADER_KEY_PREFIX) {
            let mut probe = Settings::default();
            return probe.set(key, None);
        }
        let mut parsed = yaml::parse_scalar_text(key, value)?;
        let mut settings = self.settings.clone();
        let result = settings
            .set(key, parsed.as_deref())
            .map_err(|e| without_secret(e, &self.settings.proxy.password));
        if let Some(v) = parsed.as_mut() {
            secret::wipe_string(v);
        }
        result?;
        settings.check()?;
        *self = TunnelConfig::from_settings(settings)?;
        Ok(())
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The plan every open of this config follows (shared, built once).
    pub fn plan(&self) -> Arc<Plan> {
        Arc::clone(&self.plan)
    }

    /// Everything the config holds, secrets included, as one comparable value (for tests and
    /// fuzzing; its `Debug` redacts the secrets).
    #[doc(hidden)]
    pub fn snapshot(&self) -> Snapshot {
        Snapshot::of(self)
    }

    fn from_settings(settings: Settings) -> Result<TunnelConfig> {
        let plan = Arc::new(Plan::build(&settings)?);
        Ok(TunnelConfig { settings, plan })
    }
}

impl std::fmt::Debug for TunnelConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TunnelConfig")
            .field("settings", &self.settings)
            .finish()
    }
}

/// Takes the password out of an error message. Passwords shorter than 4 characters are left
/// alone: replacing every "1" of a message would garble it, and such a password protects
/// nothing anyway.
fn without_secret(e: Error, password: &Secret) -> Error {
    match std::str::from_utf8(password.expose()) {
        Ok(p) if p.chars().count() >= 4 => e.map_message(|m| m.replace(p, "<password hidden>")),
        _ => e,
    }
}

/// Reads a whole file (opened, or the error of opening it) into memory that holds the only
/// copy of its bytes: the buffer grows by hand, each outgrown buffer is wiped, and so is what
/// was read before an error.
fn read_wiping(file: std::io::Result<std::fs::File>) -> std::io::Result<Vec<u8>> {
    let mut file = file?;
    let size = file.metadata().map_or(0, |m| m.len());
    read_all_wiping(&mut file, usize::try_from(size).unwrap_or(usize::MAX))
}

/// Reads to the end, starting with room for `size` bytes and one more (so the read that sees
/// the end needs no growth).
fn read_all_wiping(reader: &mut impl std::io::Read, size: usize) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; size.min(1 << 20) + 1];
    let mut len = 0;
    loop {
        if len == buf.len() {
            let mut bigger = vec![0u8; buf.len() * 2];
            bigger[..len].copy_from_slice(&buf[..len]);
            secret::wipe(&mut buf);
            buf = bigger;
        }
        match reader.read(&mut buf[len..]) {
            Ok(0) => {
                buf.truncate(len);
                return Ok(buf);
            }
            Ok(n) => len += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                secret::wipe(&mut buf);
                return Err(e);
            }
        }
    }
}

/// The bytes as text, or, when they are not UTF-8, the same buffer wiped.
fn utf8_or_wiped(bytes: Vec<u8>) -> std::result::Result<String, Vec<u8>> {
    String::from_utf8(bytes).map_err(|e| {
        let mut bytes = e.into_bytes();
        secret::wipe(&mut bytes);
        bytes
    })
}

fn resolve(root: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        root.join(path)
    }
}

fn null_or(null: bool, default: bool, parse: impl FnOnce() -> Result<bool>) -> Result<bool> {
    if null {
        Ok(default)
    } else {
        parse()
    }
}

fn boolean(key: &str, text: &str) -> Result<bool> {
    scalar::parse_bool(text).ok_or_else(|| {
        Error::config(format!(
            "{key}: expected a boolean (true/false/yes/no/on/off), found {}",
            scalar::describe(text)
        ))
    })
}

/// A whole number from 0 to `max` (an empty text, as `dtun_config_set` passes to restore
/// the default, never gets here: it is YAML null).
fn whole_number(key: &str, text: &str, max: u32) -> Result<u32> {
    let t = text.trim();
    let parsed = if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        t.parse::<u32>().ok().filter(|n| *n <= max)
    } else {
        None
    };
    parsed.ok_or_else(|| {
        Error::config(format!(
            "{key}: expected a whole number from 0 to {max}, found {}",
            scalar::describe(text)
        ))
    })
}

fn port(key: &str, text: &str, zero_allowed: bool) -> Result<u16> {
    match scalar::parse_port(text) {
        Some(0) if !zero_allowed => Err(Error::config(format!(
            "{key}: expected a port number from 1 to 65535, found 0"
        ))),
        Some(p) => Ok(p),
        None => Err(Error::config(format!(
            "{key}: expected a port number from {} to 65535, found {}",
            if zero_allowed { 0 } else { 1 },
            scalar::describe(text)
        ))),
    }
}

#[cfg(test)]
mod tests;
