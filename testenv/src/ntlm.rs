//! The real NTLM validator for squid: `testenv/ntlm/squid_ntlm_helper.py`, squid's NTLM
//! helper protocol (`YR`/`KK` in, `TT`/`AF`/`NA`/`BH` out) on pyspnego's NTLM acceptor, so a
//! password is really checked (squid's own `ntlm_fake_auth` accepts any).
//!
//! pyspnego lives in a Python virtualenv that `scripts/test.sh` creates (see [`venv_dir`] for
//! where; [`setup_venv`] does the same from Rust). [`NtlmHelper::locate`] finds it, and
//! [`require_ntlm_helper_or_skip`] is what a test calls first: under
//! `DTUN_REQUIRE_REAL_PROXIES=1` a missing virtualenv fails the test instead of skipping it.
//!
//! For squid (the user file holds `DOMAIN:user:password` lines):
//!
//! ```text
//! auth_param ntlm program /usr/bin/env <venv>/bin/python3 <testenv>/ntlm/squid_ntlm_helper.py --user-file FILE
//! auth_param ntlm children 4
//! auth_param ntlm keep_alive on
//! acl ntlm_users proxy_auth REQUIRED
//! http_access allow ntlm_users
//! ```
//!
//! ([`NtlmHelper::squid_program`] writes the first line.) `/usr/bin/env` is there because
//! squid starts a helper with only the program's base name as `argv[0]`: a bare `python3`
//! would then find itself on `PATH`, outside the virtualenv, without pyspnego. squid runs its
//! helpers as its `cache_effective_user` (`proxy` when started as root): the virtualenv, its
//! base interpreter (`scripts/test.sh` uses Debian's `/usr/bin/python3`, not one under
//! `/root`), the script and the user file must be readable by that user.

use std::env;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::require::{real_proxies_required, REQUIRE_REAL_PROXIES};

/// The environment variable naming the virtualenv, overriding the default place.
pub const VENV_ENV: &str = "DTUN_NTLM_VENV";

/// The pyspnego release `scripts/test.sh` and [`setup_venv`] install.
pub const PYSPNEGO_REQUIREMENT: &str = "pyspnego==0.12.4";

/// The helper script, in this crate's source tree.
pub fn helper_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("ntlm")
        .join("squid_ntlm_helper.py")
}

/// Where the virtualenv is: `$DTUN_NTLM_VENV` when set, else `ntlm-venv` in cargo's target
/// directory (`$CARGO_TARGET_DIR`, else the workspace's `target/`), which `scripts/test.sh`
/// uses too.
pub fn venv_dir() -> PathBuf {
    if let Some(dir) = env::var_os(VENV_ENV).filter(|v| !v.is_empty()) {
        return PathBuf::from(dir);
    }
    let target = env::var_os("CARGO_TARGET_DIR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .parent()
                .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")))
                .join("target")
        });
    target.join("ntlm-venv")
}

/// A located helper: the virtualenv's interpreter and the script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NtlmHelper {
    /// The virtualenv's `python3`.
    pub python: PathBuf,
    /// `squid_ntlm_helper.py`.
    pub script: PathBuf,
}

impl NtlmHelper {
    /// Finds the helper in [`venv_dir`]; `Err` says what is missing and how to get it.
    pub fn locate() -> Result<NtlmHelper, String> {
        NtlmHelper::in_venv(&venv_dir())
    }

    /// Finds the helper in the virtualenv `venv`.
    pub fn in_venv(venv: &Path) -> Result<NtlmHelper, String> {
        let script = helper_script();
        if !script.is_file() {
            return Err(format!("the NTLM helper script {}", script.display()));
        }
        let python = venv.join("bin").join("python3");
        let fix = format!(
            "(scripts/test.sh creates it; by hand: python3 -m venv {dir} && {dir}/bin/pip install \
             '{PYSPNEGO_REQUIREMENT}'; Debian package python3-venv; or set {VENV_ENV})",
            dir = venv.display()
        );
        if !python.is_file() {
            return Err(format!(
                "the Python virtualenv with pyspnego at {} {fix}",
                venv.display()
            ));
        }
        let imports = Command::new(&python)
            .args(["-c", "import spnego"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !imports {
            return Err(format!(
                "pyspnego in the virtualenv {} {fix}",
                venv.display()
            ));
        }
        Ok(NtlmHelper { python, script })
    }

    /// A command running the helper with `user_file` (`DOMAIN:user:password` lines), NTLMv2
    /// only, its stdin and stdout piped, stderr inherited.
    pub fn command(&self, user_file: &Path) -> Command {
        let mut cmd = Command::new(&self.python);
        cmd.arg(&self.script)
            .arg("--user-file")
            .arg(user_file)
            .env("LM_COMPAT_LEVEL", "5")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        cmd
    }

    /// The value of squid's `auth_param ntlm program` for `user_file`, through
    /// `/usr/bin/env` (see the module documentation). squid splits it at white space, so
    /// none of the paths may hold any (checked: `Err` names the path).
    pub fn squid_program(&self, user_file: &Path) -> Result<String, String> {
        let parts = [self.python.as_path(), self.script.as_path(), user_file];
        for p in parts {
            let s = p
                .to_str()
                .ok_or_else(|| format!("{} is not UTF-8", p.display()))?;
            if s.chars().any(char::is_whitespace) {
                return Err(format!(
                    "{s} holds white space, which squid's program line splits at"
                ));
            }
        }
        Ok(format!(
            "/usr/bin/env {} {} --user-file {}",
            self.python.display(),
            self.script.display(),
            user_file.display()
        ))
    }
}

/// Writes the helper's user file in `dir`: one `DOMAIN:user:password` line per entry.
pub fn write_user_file(dir: &Path, entries: &[(&str, &str, &str)]) -> io::Result<PathBuf> {
    let mut text = String::new();
    for (domain, user, password) in entries {
        for part in [domain, user, password] {
            if part.contains([':', '\n', '\r']) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "user file fields may not hold ':' or line breaks",
                ));
            }
        }
        text.push_str(&format!("{domain}:{user}:{password}\n"));
    }
    let path = dir.join("ntlm_users");
    fs::write(&path, text)?;
    Ok(path)
}

/// Creates the virtualenv `venv` with `python3 -m venv` and installs
/// [`PYSPNEGO_REQUIREMENT`] into it (from PyPI): what `scripts/test.sh` does.
pub fn setup_venv(venv: &Path) -> io::Result<()> {
    let run = |cmd: &mut Command, what: &str| -> io::Result<()> {
        let status = cmd.stdin(Stdio::null()).status()?;
        if status.success() {
            Ok(())
        } else {
            Err(io::Error::other(format!("{what} failed: {status}")))
        }
    };
    if !venv.join("bin").join("python3").is_file() {
        run(
            Command::new("python3").args(["-m", "venv"]).arg(venv),
            "python3 -m venv (Debian: apt-get install python3-venv)",
        )?;
    }
    run(
        Command::new(venv.join("bin").join("pip")).args([
            "install",
            "--quiet",
            "--disable-pip-version-check",
            PYSPNEGO_REQUIREMENT,
        ]),
        "pip install pyspnego",
    )
}

/// What a test needing the NTLM helper calls first: the helper when it is there; otherwise,
/// under `DTUN_REQUIRE_REAL_PROXIES=1`, a panic naming `test` and what is missing, and
/// without it `SKIPPED: ...` on stderr and `None` (the test should return at once).
pub fn require_ntlm_helper_or_skip(test: &str) -> Option<NtlmHelper> {
    match NtlmHelper::locate() {
        Ok(helper) => Some(helper),
        Err(missing) => {
            assert!(
                !real_proxies_required(),
                "{test} cannot run: missing {missing}; {REQUIRE_REAL_PROXIES}=1 forbids skipping it"
            );
            eprintln!("SKIPPED: {test}: missing {missing}");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_is_in_the_tree() {
        assert!(helper_script().is_file());
    }

    #[test]
    fn user_file_refuses_colons() {
        let dir = env::temp_dir();
        assert!(write_user_file(&dir, &[("D", "a:b", "p")]).is_err());
    }

    #[test]
    fn program_line_refuses_spaces() {
        let h = NtlmHelper {
            python: PathBuf::from("/venv/bin/python3"),
            script: PathBuf::from("/src/helper.py"),
        };
        assert_eq!(
            h.squid_program(Path::new("/d/users")).as_deref(),
            Ok("/usr/bin/env /venv/bin/python3 /src/helper.py --user-file /d/users")
        );
        assert!(h.squid_program(Path::new("/d d/users")).is_err());
    }
}
