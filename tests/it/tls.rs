//! Direct TLS serving through the real binary: self-signed certificates made at test time with
//! rcgen, https requests with reqwest trusting only that certificate, and reloads after the
//! files change.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::app::{binary, ADMIN_TOKEN, HOOK_SECRET};

/// A self-signed certificate for `localhost` and its key, both PEM.
struct Pair {
    cert_pem: String,
    key_pem: String,
    cert_der: Vec<u8>,
}

fn new_pair() -> Pair {
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    Pair {
        cert_pem: generated.cert.pem(),
        key_pem: generated.key_pair.serialize_pem(),
        cert_der: generated.cert.der().to_vec(),
    }
}

/// Replaces a file by renaming a finished temporary file over it, as deploy tools do.
fn replace(path: &Path, content: &str) {
    let temporary = path.with_extension("tmp");
    std::fs::write(&temporary, content).unwrap();
    std::fs::rename(&temporary, path).unwrap();
}

/// `bouncewatch serve` with TLS on a free loopback port. Dropping it kills the process.
struct TlsServer {
    dir: tempfile::TempDir,
    address: SocketAddr,
    child: Child,
}

impl TlsServer {
    fn cert_path(&self) -> PathBuf {
        self.dir.path().join("cert.pem")
    }

    fn key_path(&self) -> PathBuf {
        self.dir.path().join("key.pem")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("serve.log")).unwrap_or_default()
    }

    async fn start(pair: &Pair, reload_seconds: &str) -> TlsServer {
        let dir = tempfile::tempdir().unwrap();
        let address = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let cert = dir.path().join("cert.pem");
        let key = dir.path().join("key.pem");
        std::fs::write(&cert, &pair.cert_pem).unwrap();
        std::fs::write(&key, &pair.key_pem).unwrap();
        let log = std::fs::File::create(dir.path().join("serve.log")).unwrap();
        let child = Command::new(binary())
            .arg("serve")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "debug")
            .env("BOUNCEWATCH_LISTEN", address.to_string())
            .env("BOUNCEWATCH_DATA_DIR", dir.path().join("data"))
            .env("BOUNCEWATCH_HOOK_SECRET", HOOK_SECRET)
            .env("BOUNCEWATCH_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("BOUNCEWATCH_TLS_CERT_FILE", &cert)
            .env("BOUNCEWATCH_TLS_KEY_FILE", &key)
            .env("BOUNCEWATCH_TLS_RELOAD_SECONDS", reload_seconds)
            .current_dir(dir.path())
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start bouncewatch");
        let mut server = TlsServer {
            dir,
            address,
            child,
        };
        server.wait_until_serving(&pair.cert_der).await;
        server
    }

    async fn wait_until_serving(&mut self, expected_der: &[u8]) {
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            if self.served_certificate().await.as_deref() == Some(expected_der) {
                return;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("bouncewatch exited with {status}; log:\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "bouncewatch did not serve https; log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// GETs /healthz over https with a client that trusts only `pair`; returns the status.
    async fn healthz_trusting(&self, pair: &Pair) -> Result<u16, reqwest::Error> {
        let client = reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(pair.cert_pem.as_bytes())?)
            .resolve("localhost", self.address)
            .no_proxy()
            .build()?;
        let url = format!("https://localhost:{}/healthz", self.address.port());
        let response = client.get(url).send().await?;
        Ok(response.status().as_u16())
    }

    /// Returns the leaf certificate (DER) the server presents to a new connection. The client accepts
    /// any certificate, because it only reads which one is served.
    async fn served_certificate(&self) -> Option<Vec<u8>> {
        let client = reqwest::Client::builder()
            .danger_accept_invalid_certs(true)
            .tls_info(true)
            .no_proxy()
            .build()
            .ok()?;
        let url = format!("https://127.0.0.1:{}/healthz", self.address.port());
        let response = client.get(url).send().await.ok()?;
        let info = response.extensions().get::<reqwest::tls::TlsInfo>()?;
        info.peer_certificate().map(<[u8]>::to_vec)
    }

    /// Polls until the server presents `expected_der`, for at most `limit`.
    async fn wait_for_certificate(&self, expected_der: &[u8], limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if self.served_certificate().await.as_deref() == Some(expected_der) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }

    fn hangup(&self) {
        let status = Command::new("kill")
            .arg("-HUP")
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill -HUP failed");
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn https_healthz_with_trusted_cert() {
    let first = new_pair();
    let server = TlsServer::start(&first, "1").await;

    let status = server.healthz_trusting(&first).await;
    assert_eq!(status.unwrap(), 200, "log:\n{}", server.log());

    // A client that trusts another certificate refuses the connection.
    let other = new_pair();
    assert!(server.healthz_trusting(&other).await.is_err());

    // Plain HTTP on the TLS port gets no HTTP response.
    let plain = reqwest::Client::builder().no_proxy().build().unwrap();
    let url = format!("http://{}/healthz", server.address);
    let plain_status = plain.get(url).send().await.map(|r| r.status().as_u16());
    assert!(
        plain_status.is_err(),
        "plain http answered {plain_status:?}"
    );
}

#[tokio::test]
async fn changed_files_reloaded_without_restart() {
    let first = new_pair();
    let server = TlsServer::start(&first, "1").await;
    let pid = server.child.id();

    let second = new_pair();
    replace(&server.key_path(), &second.key_pem);
    replace(&server.cert_path(), &second.cert_pem);

    let reloaded = server
        .wait_for_certificate(&second.cert_der, Duration::from_secs(10))
        .await;
    assert!(
        reloaded,
        "new certificate not served; log:\n{}",
        server.log()
    );
    assert_eq!(server.healthz_trusting(&second).await.unwrap(), 200);
    assert!(server.healthz_trusting(&first).await.is_err());
    assert_eq!(server.child.id(), pid);
    assert!(server.log().contains("TLS certificate and key reloaded"));
}

#[tokio::test]
async fn mismatched_pair_keeps_old_one() {
    let first = new_pair();
    let server = TlsServer::start(&first, "1").await;

    // A new certificate with the old key: rustls rejects the pair.
    let second = new_pair();
    replace(&server.cert_path(), &second.cert_pem);

    let deadline = Instant::now() + Duration::from_secs(10);
    while !server.log().contains("new TLS certificate or key rejected") {
        assert!(
            Instant::now() < deadline,
            "mismatched pair not reported; log:\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        server.served_certificate().await.as_deref(),
        Some(first.cert_der.as_slice())
    );
    assert_eq!(server.healthz_trusting(&first).await.unwrap(), 200);

    // Completing the pair is picked up by the next check.
    replace(&server.key_path(), &second.key_pem);
    let reloaded = server
        .wait_for_certificate(&second.cert_der, Duration::from_secs(10))
        .await;
    assert!(
        reloaded,
        "completed pair not served; log:\n{}",
        server.log()
    );
}

#[tokio::test]
async fn sighup_reloads_when_polling_off() {
    let first = new_pair();
    let server = TlsServer::start(&first, "0").await;

    let second = new_pair();
    replace(&server.key_path(), &second.key_pem);
    replace(&server.cert_path(), &second.cert_pem);
    // Without polling, nothing changes until the signal.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        server.served_certificate().await.as_deref(),
        Some(first.cert_der.as_slice())
    );

    server.hangup();
    let reloaded = server
        .wait_for_certificate(&second.cert_der, Duration::from_secs(10))
        .await;
    assert!(reloaded, "SIGHUP did not reload; log:\n{}", server.log());
}

#[test]
fn check_config_names_tls_settings() {
    let dir = tempfile::tempdir().unwrap();
    let pair = new_pair();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&cert, &pair.cert_pem).unwrap();
    std::fs::write(&key, &pair.key_pem).unwrap();
    std::fs::write(&garbage, "not a certificate\n").unwrap();
    let other_key = dir.path().join("other-key.pem");
    std::fs::write(&other_key, new_pair().key_pem).unwrap();
    let missing = dir.path().join("missing.pem");

    let check = |settings: &[(&str, &Path)]| {
        let mut command = Command::new(binary());
        command
            .arg("check-config")
            .env_clear()
            .env("BOUNCEWATCH_DATA_DIR", dir.path().join("data"))
            .current_dir(dir.path());
        for (name, path) in settings {
            command.env(name, path);
        }
        let output = command.output().unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };

    let cases: [(&[(&str, &Path)], &str); 5] = [
        (&[("BOUNCEWATCH_TLS_CERT_FILE", &cert)], "tls_key_file"),
        (&[("BOUNCEWATCH_TLS_KEY_FILE", &key)], "tls_cert_file"),
        (
            &[
                ("BOUNCEWATCH_TLS_CERT_FILE", &garbage),
                ("BOUNCEWATCH_TLS_KEY_FILE", &key),
            ],
            "tls_cert_file",
        ),
        (
            &[
                ("BOUNCEWATCH_TLS_CERT_FILE", &cert),
                ("BOUNCEWATCH_TLS_KEY_FILE", &missing),
            ],
            "tls_key_file",
        ),
        (
            &[
                ("BOUNCEWATCH_TLS_CERT_FILE", &cert),
                ("BOUNCEWATCH_TLS_KEY_FILE", &other_key),
            ],
            "tls_key_file",
        ),
    ];
    for (settings, named) in cases {
        let (success, stderr) = check(settings);
        assert!(!success, "{settings:?} passed check-config");
        assert!(
            stderr.contains(named),
            "{settings:?}: stderr does not name {named}: {stderr}"
        );
    }

    let (success, stderr) = check(&[
        ("BOUNCEWATCH_TLS_CERT_FILE", &cert),
        ("BOUNCEWATCH_TLS_KEY_FILE", &key),
    ]);
    assert!(success, "a valid pair failed check-config: {stderr}");
}

#[tokio::test]
async fn commands_find_https_service() {
    let pair = new_pair();
    let server = TlsServer::start(&pair, "0").await;
    let output = Command::new(binary())
        .args(["status", "--format", "json"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("BOUNCEWATCH_LISTEN", server.address.to_string())
        .env("BOUNCEWATCH_DATA_DIR", server.dir.path().join("data"))
        .env("BOUNCEWATCH_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("BOUNCEWATCH_TLS_CERT_FILE", server.cert_path())
        .env("BOUNCEWATCH_TLS_KEY_FILE", server.key_path())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let status: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        status["service"]["running"],
        serde_json::json!(true),
        "{status}"
    );
}
