//! The real `bouncewatch serve` binary on a free loopback port with a temporary data directory,
//! and helpers to speak HTTP to it.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub const HOOK_SECRET: &str = "test-hook-secret-value";
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

/// A running service. Dropping it kills the process; the data directory lives as long as `dir`.
pub struct App {
    pub base: String,
    pub dir: tempfile::TempDir,
    pub env: Vec<(String, String)>,
    child: Option<Child>,
    pub http: reqwest::Client,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_bouncewatch"))
}

impl App {
    /// Starts the service with the test secrets and any extra `BOUNCEWATCH_*` settings.
    pub async fn start(extra: &[(&str, &str)]) -> App {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut env = vec![
            (
                "BOUNCEWATCH_LISTEN".to_string(),
                format!("127.0.0.1:{port}"),
            ),
            (
                "BOUNCEWATCH_DATA_DIR".to_string(),
                dir.path().join("data").display().to_string(),
            ),
            (
                "BOUNCEWATCH_HOOK_SECRET".to_string(),
                HOOK_SECRET.to_string(),
            ),
            (
                "BOUNCEWATCH_ADMIN_TOKEN".to_string(),
                ADMIN_TOKEN.to_string(),
            ),
            // The tests use fixed dates in the past, which the default 90-day retention would
            // prune while a test runs; tests of retention set their own value.
            (
                "BOUNCEWATCH_RETENTION_DAYS".to_string(),
                "36500".to_string(),
            ),
        ];
        for (key, value) in extra {
            env.retain(|(k, _)| k != key);
            env.push((key.to_string(), value.to_string()));
        }
        let mut app = App {
            base: format!("http://127.0.0.1:{port}"),
            dir,
            env,
            child: None,
            http: reqwest::Client::new(),
        };
        app.spawn().await;
        app
    }

    /// Starts (or restarts) the process on the same data directory and waits for /healthz.
    pub async fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        let mut command = Command::new(binary());
        command
            .arg("serve")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "debug")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .current_dir(self.dir.path())
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log));
        self.child = Some(command.spawn().expect("start bouncewatch"));
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            if let Ok(response) = self.http.get(format!("{}/healthz", self.base)).send().await {
                if response.status().is_success() {
                    return;
                }
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("bouncewatch exited with {status}; log:\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "bouncewatch did not start; log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("serve.log")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Kills the process with SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends SIGTERM and returns the exit code.
    pub fn terminate(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// POSTs a body to the hook with the right secret.
    pub async fn deliver(&self, body: &Value) -> reqwest::Response {
        self.http
            .post(format!("{}/okta/events", self.base))
            .header("Authorization", HOOK_SECRET)
            .header("Content-Type", "application/json")
            .body(serde_json::to_vec(body).unwrap())
            .send()
            .await
            .unwrap()
    }

    /// GETs an admin API path and returns the status and JSON body.
    pub async fn admin_get(&self, path: &str) -> (u16, Value) {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// POSTs JSON to an admin API path.
    pub async fn admin_post(&self, path: &str, body: &Value) -> (u16, Value) {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(ADMIN_TOKEN)
            .json(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Polls an admin path until `check` accepts the body, for at most ten seconds.
    pub async fn wait_for(&self, path: &str, check: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (status, body) = self.admin_get(path).await;
            if status == 200 && check(&body) {
                return body;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting on {path}; last answer {status} {body}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Runs another bouncewatch command with this service's settings.
    pub fn command(&self, args: &[&str]) -> std::process::Output {
        Command::new(binary())
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .current_dir(self.dir.path())
            .output()
            .unwrap()
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for App {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A `system.email.delivery` event in the layout of Okta's System Log.
pub fn event(uuid: &str, published: &str, reason: &str, address: &str, message: &str) -> Value {
    let result = if reason.eq_ignore_ascii_case("delivered") {
        "SUCCESS"
    } else {
        "FAILURE"
    };
    json!({
        "uuid": uuid,
        "published": published,
        "eventType": "system.email.delivery",
        "version": "0",
        "severity": if result == "SUCCESS" { "INFO" } else { "WARN" },
        "displayMessage": format!("Email delivery {result}: {reason}"),
        "actor": {"id": "0oa1system", "type": "SystemPrincipal", "alternateId": "system@example.okta.com", "displayName": "Okta System"},
        "client": null,
        "outcome": {"result": result, "reason": reason},
        "target": [{"id": "00u1user", "type": "User", "alternateId": address, "displayName": "Example Person", "detailEntry": null}],
        "debugContext": {"debugData": {"providerMessage": message}},
    })
}

/// An event-hook envelope around events.
pub fn envelope(events: Vec<Value>) -> Value {
    json!({
        "eventType": "com.okta.event_hook",
        "eventTypeVersion": "1.0",
        "cloudEventsVersion": "0.1",
        "source": "https://example.okta.com/api/v1/eventHooks/who1example",
        "eventId": uuid_like(),
        "eventTime": "2025-01-15T10:00:05.000Z",
        "contentType": "application/json",
        "data": {"events": events},
    })
}

fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    format!(
        "e0000000-0000-4000-8000-{:012x}",
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

impl App {
    /// POSTs raw bytes to a hook path with exactly the given headers (no secret unless given).
    pub async fn post_hook(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> reqwest::Response {
        let mut request = self.http.post(format!("{}{path}", self.base)).body(body);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send().await.unwrap()
    }

    /// Sends one HTTP/1.1 request written by hand, so header names keep their letter case, and
    /// returns the whole response text. `head` is the request line and headers, each ending in
    /// CRLF; `Host`, `Connection` and `Content-Length` are added.
    pub fn raw_request(&self, head: &str, body: &[u8]) -> String {
        let address = self.base.trim_start_matches("http://");
        let mut request = format!(
            "{head}Host: {address}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        request.extend_from_slice(body);
        self.raw_exchange(&request)
    }

    /// Writes `request` to a new connection as it is and returns everything read back.
    pub fn raw_exchange(&self, request: &[u8]) -> String {
        use std::io::{Read, Write};
        let address = self.base.trim_start_matches("http://");
        let mut stream = std::net::TcpStream::connect(address).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        // The server may answer and close before reading everything (a 413, say).
        let _ = stream.write_all(request);
        let mut response = Vec::new();
        let _ = stream.read_to_end(&mut response);
        String::from_utf8_lossy(&response).into_owned()
    }

    /// Returns the process id of the running service.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

/// A `system.email.delivery` event with the given `target` and `debugData`, for recipient
/// layouts other than a `User` target.
pub fn event_with_target(uuid: &str, target: Value, debug_data: Value) -> Value {
    json!({
        "uuid": uuid,
        "published": "2025-01-15T10:00:00.000Z",
        "eventType": "system.email.delivery",
        "version": "0",
        "severity": "WARN",
        "displayMessage": "Email delivery FAILURE: bounce",
        "actor": {"id": "0oa1system", "type": "SystemPrincipal", "alternateId": "system@example.okta.com", "displayName": "Okta System"},
        "outcome": {"result": "FAILURE", "reason": "bounce"},
        "target": target,
        "debugContext": {"debugData": debug_data},
    })
}
