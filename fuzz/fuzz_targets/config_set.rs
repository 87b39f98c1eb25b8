//! Set-by-key with any key and value, on a config with every key filled in: never panics,
//! and a failed set changes nothing, the password and the CONNECT request included.
#![no_main]

use std::sync::OnceLock;

use dragent_tunnel::config::{Snapshot, KEYS};
use dragent_tunnel::TunnelConfig;
use libfuzzer_sys::fuzz_target;

/// Two self-signed test CAs (the same as the config unit tests'), one per side.
const CA_PEM: &str = "-----BEGIN CERTIFICATE-----
MIIBfDCCASGgAwIBAgIUKmFLz6Y6WqQuHil+06C3GTBRKUEwCgYIKoZIzj0EAwIw
EjEQMA4GA1UEAwwHdGVzdC1jYTAgFw0yNjExMjcwMjIzMTdaGA8yMTI2MTEwMzAy
MjMxN1owEjEQMA4GA1UEAwwHdGVzdC1jYTBZMBMGByqGSM49AgEGCCqGSM49AwEH
A0IABCnDwPrC2Sv6oXfu057bjLaZCngZYUGhxjm1oKX0mAKk8Azl7WdBr/+YNi+W
Rr1WWw90PwFACk+SlfleWtBT+mOjUzBRMB0GA1UdDgQWBBRMtEKMa0cEikeWL53p
khWMre/VYjAfBgNVHSMEGDAWgBRMtEKMa0cEikeWL53pkhWMre/VYjAPBgNVHRMB
Af8EBTADAQH/MAoGCCqGSM49BAMCA0kAMEYCIQC9SfZ81uEv/MyZAt4Ip61UbJV5
th3inGjunbFs++RqhAIhAIT9RloTZktjUulT+zJHCK6N2CsPzz7fhmVD5ZQbvRDQ
-----END CERTIFICATE-----
";

const CA2_PEM: &str = "-----BEGIN CERTIFICATE-----
MIIBfzCCASWgAwIBAgIUNuGsXFbADS47yavBv81RCZV/hzMwCgYIKoZIzj0EAwIw
FDESMBAGA1UEAwwJdGVzdC1jYS0yMCAXDTI2MTEyNzAyMjQxNVoYDzIxMjYxMTAz
MDIyNDE1WjAUMRIwEAYDVQQDDAl0ZXN0LWNhLTIwWTATBgcqhkjOPQIBBggqhkjO
PQMBBwNCAASxNk6TQ/K71NxWX8rEVRAPNVICbyj97OyAWh5wLSPCiVgwCvw2vTXO
WCa0mhHA5Hs28yFlOAWG11pTk/gOlLNuo1MwUTAdBgNVHQ4EFgQUXxX8ZFmx8X2o
usiV6SxmkDO5OPYwHwYDVR0jBBgwFoAUXxX8ZFmx8X2ousiV6SxmkDO5OPYwDwYD
VR0TAQH/BAUwAwEB/zAKBggqhkjOPQQDAgNIADBFAiAWXlw3+rTG9ztukyKP3+Rr
Q5Inf5NJDOuKSZU698NdKQIhAOgblge34Pd9YN6vna2y7yo5K/mZVGqmXowST/Zo
J7J9
-----END CERTIFICATE-----
";

/// Every key set to something else than its default, CA files on both sides, a proxy with
/// user and password; the first with TLS to the proxy (so `ssl` stays on), the second with
/// `ssl: false`. Each with its snapshot.
fn bases() -> &'static [(TunnelConfig, Snapshot); 2] {
    static BASES: OnceLock<[(TunnelConfig, Snapshot); 2]> = OnceLock::new();
    BASES.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("dtun-fuzz-config-set-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        std::fs::write(dir.join("ca.pem"), CA_PEM).expect("write CA");
        std::fs::write(dir.join("proxy.pem"), CA2_PEM).expect("write CA");
        let filled = |tls: &str| {
            let mut cfg = TunnelConfig::new().expect("defaults");
            for (key, value) in [
                ("root_dir", dir.display().to_string()),
                ("collector", "collector.example".into()),
                ("collector_port", "7443".into()),
                ("ssl", tls.into()),
                ("ssl_verify_certificate", "false".into()),
                ("ca_certificate", "ca.pem".into()),
                ("http_proxy.proxy_host", "squid.example".into()),
                ("http_proxy.proxy_port", "3129".into()),
                ("http_proxy.proxy_user", "agent".into()),
                ("http_proxy.proxy_password", "Zq9-filled-pw".into()),
                ("http_proxy.ssl", tls.into()),
                ("http_proxy.ssl_verify_certificate", "off".into()),
                ("http_proxy.ca_certificate", "proxy.pem".into()),
                ("http_proxy.from_environment", "true".into()),
                ("http_proxy.no_proxy", "10.0.0.0/8, .corp.example".into()),
                ("http_proxy.user_agent", "agent/1".into()),
                ("http_proxy.headers.X-Tenant", "Zq9-tenant-secret".into()),
            ] {
                cfg.set(key, &value)
                    .unwrap_or_else(|e| panic!("set {key}: {e:?}"));
            }
            let snapshot = cfg.snapshot();
            (cfg, snapshot)
        };
        let bases = [filled("true"), filled("false")];
        // The CA files are read: the configs hold their certificates, not the files.
        let _ = std::fs::remove_dir_all(&dir);
        bases
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let Ok(value) = std::str::from_utf8(rest) else {
        return;
    };
    // The high bit picks the base config, the others the key (past the last: the value).
    let (base, before) = &bases()[usize::from(pick >> 7)];
    let key = KEYS.get(usize::from(pick & 0x7f)).copied().unwrap_or(value);
    let mut cfg = base.clone();
    if cfg.set(key, value).is_err() {
        assert!(
            cfg.snapshot() == *before,
            "a failed set of {key:?} changed the config"
        );
    }
});
