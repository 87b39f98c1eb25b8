//! `dtun-testenv`: starts a complete test environment (throwaway PKI, echo and framed collectors,
//! plain, TLS, authenticating and faulty CONNECT proxies), writes one `dragent.yaml` per scenario
//! and either runs a command inside it or serves until told to stop.
//!
//! ```text
//! dtun-testenv run   --dir DIR [--verbose] -- COMMAND [ARGS...]
//! dtun-testenv serve --dir DIR [--verbose]
//! ```
//!
//! `run` exports `DTUN_TESTENV_DIR` (the absolute DIR) and every `env.txt` entry as
//! `DTUN_TESTENV_<KEY>`, runs COMMAND, stops everything and exits with the command's exit code
//! (1 if it could not be started, 128 + signal if it was killed by a signal). `serve` prints
//! `ready` on stdout once everything listens, and runs until stdin reaches EOF or SIGTERM/SIGINT.

use std::fmt::Write as _;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use dtun_testenv::collector::{EchoServer, FramedCollector};
use dtun_testenv::pki::{CertKind, Pki};
use dtun_testenv::ports::free_port;
use dtun_testenv::proxy::{Fault, ProxyOptions, TestProxy};

/// Basic auth user of the authenticating proxy.
const PROXY_USER: &str = "agent";
/// Basic auth password of the authenticating proxy (YAML- and URL-hostile on purpose).
const PROXY_PASSWORD: &str = "s3cr:t@/%+pw";
/// The wrong password of `proxy_auth_wrong.yaml`.
const WRONG_PASSWORD: &str = "wrong-password";
/// Host name used for every server in the scenarios (certificates carry it as a SAN).
const HOST: &str = "localhost";
/// Names on the certificates of the good servers.
const GOOD_NAMES: &[&str] = &["localhost", "127.0.0.1", "::1"];
/// How long `run` waits for a command that got SIGINT along with us before killing it.
const SIGINT_GRACE: Duration = Duration::from_secs(5);

const USAGE: &str = "usage:
  dtun-testenv run   --dir DIR [--verbose] -- COMMAND [ARGS...]
  dtun-testenv serve --dir DIR [--verbose]";

/// Parsed command line.
struct Args {
    serve: bool,
    dir: PathBuf,
    verbose: bool,
    command: Vec<String>,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let serve = match args.next().as_deref() {
        Some("run") => false,
        Some("serve") => true,
        Some(other) => return Err(format!("unknown subcommand {other:?}")),
        None => return Err("missing subcommand".into()),
    };
    let mut dir = None;
    let mut verbose = false;
    let mut command = Vec::new();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--dir" => dir = Some(args.next().ok_or("--dir needs a value")?),
            "--verbose" | "-v" => verbose = true,
            "--" => {
                command.extend(args.by_ref());
                break;
            }
            other => return Err(format!("unexpected argument {other:?}")),
        }
    }
    let dir = dir.ok_or("--dir DIR is required")?;
    if dir.is_empty() {
        return Err("--dir must not be empty".into());
    }
    if serve && !command.is_empty() {
        return Err("serve takes no command".into());
    }
    if !serve && command.is_empty() {
        return Err("run needs a command after --".into());
    }
    Ok(Args {
        serve,
        dir: PathBuf::from(dir),
        verbose,
        command,
    })
}

/// The running environment. Dropping it stops every server.
struct Env {
    /// `KEY=VALUE` entries of `env.txt`, in order.
    vars: Vec<(String, String)>,
    /// Absolute environment folder.
    dir: PathBuf,
    _echo_tls: EchoServer,
    _echo_plain: EchoServer,
    _framed: FramedCollector,
    _collector_untrusted: EchoServer,
    _collector_expired: EchoServer,
    _collector_wrong_name: EchoServer,
    _proxies: Vec<TestProxy>,
}

/// Single-quoted YAML scalar.
fn q(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The `http_proxy:` section of a scenario.
struct ProxyYaml<'a> {
    port: u16,
    ssl: bool,
    ca: Option<&'a Path>,
    credentials: Option<(&'a str, &'a str)>,
}

/// The keys of one scenario file.
struct Scenario<'a> {
    file: &'a str,
    about: &'a str,
    collector_port: u16,
    ssl: bool,
    verify: Option<bool>,
    ca: Option<&'a Path>,
    proxy: Option<ProxyYaml<'a>>,
}

impl Scenario<'_> {
    fn render(&self, root: &Path) -> String {
        let mut y = String::new();
        let _ = writeln!(y, "# dtun-testenv scenario {}: {}", self.file, self.about);
        let _ = writeln!(y, "root_dir: {}", q(&root.to_string_lossy()));
        let _ = writeln!(y, "collector: {HOST}");
        let _ = writeln!(y, "collector_port: {}", self.collector_port);
        let _ = writeln!(y, "ssl: {}", self.ssl);
        if let Some(verify) = self.verify {
            let _ = writeln!(y, "ssl_verify_certificate: {verify}");
        }
        if let Some(ca) = self.ca {
            let _ = writeln!(y, "ca_certificate: {}", q(&ca.to_string_lossy()));
        }
        if let Some(proxy) = &self.proxy {
            let _ = writeln!(y, "http_proxy:");
            let _ = writeln!(y, "  proxy_host: {HOST}");
            let _ = writeln!(y, "  proxy_port: {}", proxy.port);
            if let Some((user, password)) = proxy.credentials {
                let _ = writeln!(y, "  proxy_user: {}", q(user));
                let _ = writeln!(y, "  proxy_password: {}", q(password));
            }
            let _ = writeln!(y, "  ssl: {}", proxy.ssl);
            if let Some(ca) = proxy.ca {
                let _ = writeln!(y, "  ca_certificate: {}", q(&ca.to_string_lossy()));
            }
        }
        y
    }
}

impl Env {
    /// Makes the PKI in `dir`, starts every server and writes the scenarios and `env.txt`.
    fn start(dir: &Path, verbose: bool) -> io::Result<Env> {
        fs::create_dir_all(dir)?;
        let dir = dir.canonicalize()?;
        let pki = Pki::new(&dir)?;
        let ca = pki.ca_path();

        let collector_cert = pki.issue("collector", GOOD_NAMES, CertKind::Trusted)?;
        let proxy_cert = pki.issue("proxy", GOOD_NAMES, CertKind::Trusted)?;
        let untrusted_cert =
            pki.issue("collector-untrusted", GOOD_NAMES, CertKind::UntrustedIssuer)?;
        let expired_cert = pki.issue("collector-expired", GOOD_NAMES, CertKind::Expired)?;
        let wrong_name_cert = pki.issue(
            "collector-wrong-name",
            &["other.example"],
            CertKind::Trusted,
        )?;
        let proxy_untrusted_cert =
            pki.issue("proxy-untrusted", GOOD_NAMES, CertKind::UntrustedIssuer)?;

        let echo_tls = EchoServer::start(Some(collector_cert.server_config.clone()))?;
        let echo_plain = EchoServer::start(None)?;
        let framed_tls = Some(collector_cert.server_config.clone());
        let framed = if verbose {
            FramedCollector::start_verbose(framed_tls)?
        } else {
            FramedCollector::start(framed_tls)?
        };
        let collector_untrusted = EchoServer::start(Some(untrusted_cert.server_config))?;
        let collector_expired = EchoServer::start(Some(expired_cert.server_config))?;
        let collector_wrong_name = EchoServer::start(Some(wrong_name_cert.server_config))?;
        let refused_port = free_port();

        let proxy = |tls: Option<&std::sync::Arc<rustls::ServerConfig>>, auth: bool, fault| {
            TestProxy::start(ProxyOptions {
                tls: tls.cloned(),
                auth: auth.then(|| (PROXY_USER.to_string(), PROXY_PASSWORD.to_string())),
                fault,
                verbose,
            })
        };
        let proxy_plain = proxy(None, false, Fault::None)?;
        let proxy_tls = proxy(Some(&proxy_cert.server_config), false, Fault::None)?;
        let proxy_tls_auth = proxy(Some(&proxy_cert.server_config), true, Fault::None)?;
        let proxy_403 = proxy(None, false, Fault::Forbidden403)?;
        let proxy_silent = proxy(None, false, Fault::NeverAnswer)?;
        let proxy_garbage = proxy(None, false, Fault::SshBanner)?;
        let proxy_untrusted = proxy(
            Some(&proxy_untrusted_cert.server_config),
            false,
            Fault::None,
        )?;

        let tls_proxy = |port, credentials| ProxyYaml {
            port,
            ssl: true,
            ca: Some(&ca),
            credentials,
        };
        let plain_proxy = |port| ProxyYaml {
            port,
            ssl: false,
            ca: None,
            credentials: None,
        };
        let direct_tls = |file, about, port, verify| Scenario {
            file,
            about,
            collector_port: port,
            ssl: true,
            verify,
            ca: Some(&ca),
            proxy: None,
        };
        let via = |file, about, port, ssl, proxy| Scenario {
            file,
            about,
            collector_port: port,
            ssl,
            verify: None,
            ca: ssl.then_some(ca.as_path()),
            proxy: Some(proxy),
        };
        let good_auth = Some((PROXY_USER, PROXY_PASSWORD));
        let scenarios = [
            direct_tls(
                "direct_tls.yaml",
                "direct TLS to the echo collector",
                echo_tls.port(),
                None,
            ),
            Scenario {
                file: "direct_plain.yaml",
                about: "direct plain TCP to the echo collector",
                collector_port: echo_plain.port(),
                ssl: false,
                verify: None,
                ca: None,
                proxy: None,
            },
            via(
                "proxy_plain.yaml",
                "plain proxy, TLS between agent and collector through it",
                echo_tls.port(),
                true,
                plain_proxy(proxy_plain.port()),
            ),
            via(
                "proxy_tls.yaml",
                "TLS to the proxy, TLS to the collector inside (TLS in TLS)",
                echo_tls.port(),
                true,
                tls_proxy(proxy_tls.port(), None),
            ),
            via(
                "proxy_tls_auth.yaml",
                "TLS proxy with Basic auth, TLS to the collector inside",
                echo_tls.port(),
                true,
                tls_proxy(proxy_tls_auth.port(), good_auth),
            ),
            via(
                "proxy_auth_wrong.yaml",
                "TLS proxy with Basic auth, wrong password: expect 407",
                echo_tls.port(),
                true,
                tls_proxy(proxy_tls_auth.port(), Some((PROXY_USER, WRONG_PASSWORD))),
            ),
            via(
                "proxy_plain_collector_plain.yaml",
                "plain proxy, plain collector, no TLS anywhere",
                echo_plain.port(),
                false,
                plain_proxy(proxy_plain.port()),
            ),
            via(
                "proxy_403.yaml",
                "proxy that answers 403 Forbidden",
                echo_tls.port(),
                true,
                plain_proxy(proxy_403.port()),
            ),
            via(
                "proxy_silent.yaml",
                "proxy that reads the request and never answers",
                echo_tls.port(),
                true,
                plain_proxy(proxy_silent.port()),
            ),
            via(
                "proxy_garbage.yaml",
                "proxy port that answers with an SSH banner",
                echo_tls.port(),
                true,
                plain_proxy(proxy_garbage.port()),
            ),
            direct_tls(
                "collector_untrusted.yaml",
                "collector certificate from an untrusted CA",
                collector_untrusted.port(),
                None,
            ),
            direct_tls(
                "collector_expired.yaml",
                "collector certificate expired on 2020-01-01",
                collector_expired.port(),
                None,
            ),
            direct_tls(
                "collector_wrong_name.yaml",
                "collector certificate issued for other.example",
                collector_wrong_name.port(),
                None,
            ),
            via(
                "proxy_cert_untrusted.yaml",
                "TLS proxy whose certificate is from an untrusted CA",
                echo_tls.port(),
                true,
                tls_proxy(proxy_untrusted.port(), None),
            ),
            via(
                "proxy_tls_on_plain_port.yaml",
                "TLS to a proxy port that speaks plain HTTP",
                echo_tls.port(),
                true,
                tls_proxy(proxy_plain.port(), None),
            ),
            direct_tls(
                "collector_noverify.yaml",
                "untrusted collector certificate, verification switched off",
                collector_untrusted.port(),
                Some(false),
            ),
            direct_tls(
                "refused.yaml",
                "direct to a port where nothing listens",
                refused_port,
                None,
            ),
            via(
                "framed.yaml",
                "TLS proxy with Basic auth to the framed (acking) collector over TLS",
                framed.port(),
                true,
                tls_proxy(proxy_tls_auth.port(), good_auth),
            ),
        ];
        for scenario in &scenarios {
            fs::write(dir.join(scenario.file), scenario.render(&dir))?;
        }

        let port = |p: u16| p.to_string();
        let vars: Vec<(String, String)> = [
            ("DIR", dir.to_string_lossy().into_owned()),
            ("HOST", HOST.to_string()),
            ("CA", ca.to_string_lossy().into_owned()),
            (
                "UNTRUSTED_CA",
                pki.untrusted_ca_path().to_string_lossy().into_owned(),
            ),
            ("PROXY_USER", PROXY_USER.to_string()),
            ("PROXY_PASSWORD", PROXY_PASSWORD.to_string()),
            ("WRONG_PASSWORD", WRONG_PASSWORD.to_string()),
            ("ECHO_TLS_PORT", port(echo_tls.port())),
            ("ECHO_PLAIN_PORT", port(echo_plain.port())),
            ("FRAMED_TLS_PORT", port(framed.port())),
            ("COLLECTOR_UNTRUSTED_PORT", port(collector_untrusted.port())),
            ("COLLECTOR_EXPIRED_PORT", port(collector_expired.port())),
            (
                "COLLECTOR_WRONG_NAME_PORT",
                port(collector_wrong_name.port()),
            ),
            ("REFUSED_PORT", port(refused_port)),
            ("PROXY_PLAIN_PORT", port(proxy_plain.port())),
            ("PROXY_TLS_PORT", port(proxy_tls.port())),
            ("PROXY_TLS_AUTH_PORT", port(proxy_tls_auth.port())),
            ("PROXY_403_PORT", port(proxy_403.port())),
            ("PROXY_SILENT_PORT", port(proxy_silent.port())),
            ("PROXY_GARBAGE_PORT", port(proxy_garbage.port())),
            ("PROXY_UNTRUSTED_PORT", port(proxy_untrusted.port())),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let mut env_txt = String::new();
        for (key, value) in &vars {
            let _ = writeln!(env_txt, "{key}={value}");
        }
        fs::write(dir.join("env.txt"), env_txt)?;

        Ok(Env {
            vars,
            dir,
            _echo_tls: echo_tls,
            _echo_plain: echo_plain,
            _framed: framed,
            _collector_untrusted: collector_untrusted,
            _collector_expired: collector_expired,
            _collector_wrong_name: collector_wrong_name,
            _proxies: vec![
                proxy_plain,
                proxy_tls,
                proxy_tls_auth,
                proxy_403,
                proxy_silent,
                proxy_garbage,
                proxy_untrusted,
            ],
        })
    }
}

/// Exit code of a finished child: its code, or 128 + the signal that killed it.
fn exit_code(status: std::process::ExitStatus) -> u8 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => (code & 0xff) as u8,
        (None, Some(signal)) => (128 + signal).clamp(0, 255) as u8,
        (None, None) => 1,
    }
}

fn local_runtime() -> io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

/// Runs `command` in the environment; returns its exit code (1 if it could not be started).
fn run_command(env: &Env, command: &[String]) -> u8 {
    use tokio::signal::unix::{signal, SignalKind};
    let runtime = match local_runtime() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("dtun-testenv: cannot start a runtime: {e}");
            return 1;
        }
    };
    runtime.block_on(async {
        let mut cmd = tokio::process::Command::new(&command[0]);
        cmd.args(&command[1..])
            .env("DTUN_TESTENV_DIR", &env.dir)
            .kill_on_drop(true);
        for (key, value) in &env.vars {
            cmd.env(format!("DTUN_TESTENV_{key}"), value);
        }
        let (mut sigterm, mut sigint) = match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(term), Ok(int)) => (term, int),
            (Err(e), _) | (_, Err(e)) => {
                eprintln!("dtun-testenv: cannot handle signals: {e}");
                return 1;
            }
        };
        let mut child = match cmd.spawn() {
            Ok(child) => child,
            Err(e) => {
                eprintln!("dtun-testenv: cannot run {:?}: {e}", command[0]);
                return 1;
            }
        };
        tokio::select! {
            status = child.wait() => status.map(exit_code).unwrap_or(1),
            _ = sigterm.recv() => {
                let _ = child.start_kill();
                let _ = child.wait().await;
                128 + 15
            }
            _ = sigint.recv() => {
                // The command usually got the same SIGINT from the terminal: let it finish.
                match tokio::time::timeout(SIGINT_GRACE, child.wait()).await {
                    Ok(Ok(status)) => exit_code(status),
                    _ => {
                        let _ = child.start_kill();
                        let _ = child.wait().await;
                        128 + 2
                    }
                }
            }
        }
    })
}

/// Prints `ready` and waits for stdin EOF, SIGTERM or SIGINT.
fn serve(env: &Env) -> io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let runtime = local_runtime()?;
    let (eof_tx, eof_rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::Builder::new()
        .name("stdin-watch".into())
        .spawn(move || {
            let _ = io::copy(&mut io::stdin().lock(), &mut io::sink());
            let _ = eof_tx.send(());
        })?;
    runtime.block_on(async {
        let mut sigterm = signal(SignalKind::terminate())?;
        let mut sigint = signal(SignalKind::interrupt())?;
        let mut stdout = io::stdout().lock();
        writeln!(stdout, "ready")?;
        stdout.flush()?;
        drop(stdout);
        eprintln!("dtun-testenv: serving in {}", env.dir.display());
        tokio::select! {
            _ = eof_rx => {}
            _ = sigterm.recv() => {}
            _ = sigint.recv() => {}
        }
        Ok(())
    })
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("dtun-testenv: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let env = match Env::start(&args.dir, args.verbose) {
        Ok(env) => env,
        Err(e) => {
            eprintln!(
                "dtun-testenv: cannot start the environment in {}: {e}",
                args.dir.display()
            );
            return ExitCode::from(1);
        }
    };
    let code = if args.serve {
        match serve(&env) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("dtun-testenv: {e}");
                1
            }
        }
    } else {
        run_command(&env, &args.command)
    };
    drop(env);
    ExitCode::from(code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read as _;
    use std::net::TcpStream;

    /// Reads `DIR/env.txt` into pairs.
    fn read_env_txt(dir: &Path) -> Vec<(String, String)> {
        fs::read_to_string(dir.join("env.txt"))
            .unwrap()
            .lines()
            .map(|line| {
                let (k, v) = line.split_once('=').unwrap();
                (k.to_string(), v.to_string())
            })
            .collect()
    }

    fn temp_dir(tag: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("dtun-testenv-bin-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    fn yaml(dir: &Path, file: &str) -> serde_yaml::Value {
        serde_yaml::from_str(&fs::read_to_string(dir.join(file)).unwrap()).unwrap()
    }

    #[test]
    fn args() {
        let parse = |s: &str| parse_args(s.split(' ').map(String::from));
        let a = parse("run --dir d --verbose -- sh -c true").unwrap();
        assert!(!a.serve && a.verbose);
        assert_eq!(a.dir, PathBuf::from("d"));
        assert_eq!(a.command, ["sh", "-c", "true"]);
        assert!(parse("serve --dir d").unwrap().serve);
        assert!(parse("run --dir d").is_err());
        assert!(parse("run -- true").is_err());
        assert!(parse("serve --dir d -- true").is_err());
        assert!(parse("bogus --dir d").is_err());
    }

    #[test]
    fn environment_files_and_servers() {
        let dir = temp_dir("env");
        let env = Env::start(&dir, false).unwrap();
        let vars = read_env_txt(&env.dir);
        assert_eq!(vars, env.vars);
        let get = |k: &str| vars.iter().find(|(key, _)| key == k).unwrap().1.clone();
        assert_eq!(get("PROXY_PASSWORD"), PROXY_PASSWORD);

        for file in [
            "direct_tls.yaml",
            "direct_plain.yaml",
            "proxy_plain.yaml",
            "proxy_tls.yaml",
            "proxy_tls_auth.yaml",
            "proxy_auth_wrong.yaml",
            "proxy_plain_collector_plain.yaml",
            "proxy_403.yaml",
            "proxy_silent.yaml",
            "proxy_garbage.yaml",
            "collector_untrusted.yaml",
            "collector_expired.yaml",
            "collector_wrong_name.yaml",
            "proxy_cert_untrusted.yaml",
            "proxy_tls_on_plain_port.yaml",
            "collector_noverify.yaml",
            "refused.yaml",
            "framed.yaml",
        ] {
            let y = yaml(&env.dir, file);
            assert_eq!(y["collector"].as_str(), Some("localhost"), "{file}");
            assert_eq!(
                y["root_dir"].as_str(),
                Some(env.dir.to_str().unwrap()),
                "{file}"
            );
            if let Some(ca) = y["ca_certificate"].as_str() {
                assert!(Path::new(ca).is_absolute() && Path::new(ca).is_file());
            }
        }
        let auth = yaml(&env.dir, "proxy_tls_auth.yaml");
        assert_eq!(
            auth["http_proxy"]["proxy_password"].as_str(),
            Some(PROXY_PASSWORD)
        );
        assert_eq!(auth["http_proxy"]["proxy_user"].as_str(), Some("agent"));
        assert_eq!(auth["http_proxy"]["ssl"].as_bool(), Some(true));
        let plain = yaml(&env.dir, "direct_plain.yaml");
        assert_eq!(plain["ssl"].as_bool(), Some(false));
        let noverify = yaml(&env.dir, "collector_noverify.yaml");
        assert_eq!(noverify["ssl_verify_certificate"].as_bool(), Some(false));

        // The plain echo collector of direct_plain.yaml answers.
        let port = plain["collector_port"].as_u64().unwrap() as u16;
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.write_all(b"ping").unwrap();
        let mut back = [0u8; 4];
        s.read_exact(&mut back).unwrap();
        assert_eq!(&back, b"ping");
        drop(s);

        // Everything stops with the environment.
        let proxy_port: u16 = get("PROXY_PLAIN_PORT").parse().unwrap();
        let env_dir = env.dir.clone();
        drop(env);
        assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
        assert!(TcpStream::connect(("127.0.0.1", proxy_port)).is_err());
        fs::remove_dir_all(&env_dir).unwrap();
    }

    #[test]
    fn run_passes_the_exit_code_and_the_environment() {
        let dir = temp_dir("run");
        let env = Env::start(&dir, false).unwrap();
        let script = "test -f \"$DTUN_TESTENV_DIR/framed.yaml\" && \
                      test -n \"$DTUN_TESTENV_PROXY_TLS_AUTH_PORT\" && exit 7";
        let command: Vec<String> = ["sh", "-c", script].map(String::from).to_vec();
        assert_eq!(run_command(&env, &command), 7);
        let missing = vec!["dtun-testenv-no-such-command".to_string()];
        assert_eq!(run_command(&env, &missing), 1);
        let env_dir = env.dir.clone();
        drop(env);
        fs::remove_dir_all(&env_dir).unwrap();
    }
}
