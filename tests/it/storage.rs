//! Storage faults: a full disk, a read-only store and a corrupt store at start. Okta must get a
//! 503 (which it retries), never a 4xx; `/readyz` must fail; the log must say what is wrong; and
//! nothing already stored may be damaged.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::app::{binary, envelope, event, App};

/// A small tmpfs mounted for one test and unmounted when dropped.
struct SmallDisk {
    point: PathBuf,
    _dir: tempfile::TempDir,
}

impl SmallDisk {
    /// Mounts a tmpfs of `size` (as `mount -o size=` takes it). Returns None where mounting is
    /// not allowed (not root, or a sandbox without the capability).
    fn mount(size: &str) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().unwrap();
        let point = dir.path().join("disk");
        std::fs::create_dir(&point).unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&point)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        mounted.then_some(SmallDisk { point, _dir: dir })
    }

    /// Remounts with `options`, such as `ro` or `size=32m`. Linux refuses `ro` while a
    /// process has a file open for writing, so stop the service first.
    fn remount(&self, options: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,{options}")])
            .arg(&self.point)
            .status()
            .unwrap();
        assert!(status.success(), "remount with {options} failed");
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.point).status();
    }
}

fn delivered(uuid: &str, address: &str) -> Value {
    event(
        uuid,
        "2025-02-01T10:00:00.000Z",
        "delivered",
        address,
        "250 2.0.0 OK",
    )
}

/// Delivers a known event, then checks it reads back whole.
async fn deliver_marker(app: &App) -> Value {
    let delivery = envelope(vec![delivered("marker-1", "marker@disk.example")]);
    assert_eq!(app.deliver(&delivery).await.status().as_u16(), 200);
    let (status, body) = app
        .admin_get("/api/v1/addresses/marker%40disk.example")
        .await;
    assert_eq!(status, 200);
    body
}

async fn readyz(app: &App) -> (u16, Value) {
    let response = app
        .http
        .get(format!("{}/readyz", app.base))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Delivers batches of events with long provider messages until one is not a 200, and returns
/// that status. Fails if the disk never fills.
async fn fill_until_refused(app: &App) -> u16 {
    let message = format!("452 4.2.2 mailbox full {}", "x".repeat(4000));
    for batch in 0..200 {
        let events = (0..50)
            .map(|index| {
                event(
                    &format!("fill-{batch}-{index}"),
                    "2025-02-01T10:00:00.000Z",
                    "deferred",
                    &format!("fill{batch}-{index}@disk.example"),
                    &message,
                )
            })
            .collect();
        let status = app.deliver(&envelope(events)).await.status().as_u16();
        if status != 200 {
            return status;
        }
    }
    panic!("10,000 events of 4 KB each fitted on an 8 MiB disk");
}

#[tokio::test]
async fn full_disk_gives_503() {
    let Some(disk) = SmallDisk::mount("8m") else {
        eprintln!("SKIPPED full_disk_gives_503: mounting a tmpfs is not allowed here");
        return;
    };
    let data = disk.point.join("data").display().to_string();
    let mut app = App::start(&[("BOUNCEWATCH_DATA_DIR", data.as_str())]).await;
    let before = deliver_marker(&app).await;

    let refused = fill_until_refused(&app).await;
    assert_eq!(
        refused,
        503,
        "a full disk must give 503; log:\n{}",
        app.log()
    );
    let (status, body) = readyz(&app).await;
    assert_eq!(status, 503, "/readyz on a full disk: {body}");
    assert_eq!(body["store"]["writable"], json!(false));
    let log = app.log();
    assert!(
        log.contains("No space left on device"),
        "the log does not name the cause:\n{log}"
    );

    // Once sled has failed a write it may refuse reads too, which the admin API reports as
    // 503; what it does answer must be the record as stored.
    let (status, after) = app
        .admin_get("/api/v1/addresses/marker%40disk.example")
        .await;
    assert!(
        status == 200 || status == 503,
        "read on a full disk: {status}"
    );
    if status == 200 {
        assert_eq!(
            after, before,
            "a stored record changed while the disk was full"
        );
    }

    // With room again but no restart, writes still fail: the failed flush left changes in
    // sled's memory that were reported as 503, and acknowledging anything on top of them could
    // make Okta's retry of those events look like a duplicate.
    disk.remount("size=64m");
    let retried = app
        .deliver(&envelope(vec![event(
            "after-full-1",
            "2025-02-01T11:00:00.000Z",
            "delivered",
            "late@disk.example",
            "250 OK",
        )]))
        .await;
    assert_eq!(retried.status().as_u16(), 503);
    disk.remount("size=8m");

    // A start on the still full disk must not call the intact store corrupt.
    app.kill();
    check_failed_start(&app, "No space left on device", false).await;

    // With room again, what was stored is still there.
    disk.remount("size=64m");
    app.spawn().await;
    let (status, reopened) = app
        .admin_get("/api/v1/addresses/marker%40disk.example")
        .await;
    assert_eq!(status, 200, "log:\n{}", app.log());
    assert_eq!(reopened["event_count"], before["event_count"]);
    app.kill();
}

#[tokio::test]
async fn read_only_store_is_reported() {
    let Some(disk) = SmallDisk::mount("64m") else {
        eprintln!("SKIPPED read_only_store_is_reported: mounting a tmpfs is not allowed here");
        return;
    };
    let data = disk.point.join("data").display().to_string();
    let mut app = App::start(&[("BOUNCEWATCH_DATA_DIR", data.as_str())]).await;
    let before = deliver_marker(&app).await;
    assert_eq!(app.terminate(), Some(0));

    disk.remount("ro");
    check_failed_start(&app, "Read-only file system", false).await;

    disk.remount("rw");
    app.spawn().await;
    let (status, after) = app
        .admin_get("/api/v1/addresses/marker%40disk.example")
        .await;
    assert_eq!(status, 200, "log:\n{}", app.log());
    assert_eq!(after, before);
    app.kill();
}

/// Overwrites the store's whole data file with a byte pattern. sled 0.34 reads such a file as
/// an empty store, so only the schema check notices the damage.
// NOTE: zeroing part of a large data file made sled panic at open ("tried to serialize
// Uninitialized", now reported as corruption), but on the small files a test makes quickly sled
// reads a zeroed range as a torn write and opens the rest, which no check here detects.
fn damage(data_file: &Path) {
    let mut bytes = std::fs::read(data_file).unwrap();
    for (index, byte) in bytes.iter_mut().enumerate() {
        *byte = (index.wrapping_mul(7) + 3) as u8;
    }
    std::fs::write(data_file, bytes).unwrap();
}

/// Starts `serve` on a store it cannot open and checks it neither panics nor answers a 4xx:
/// either it exits non-zero with a message containing `cause` (and the step that moves the store
/// aside exactly when `move_aside`), or it serves 503 with `/readyz` failing.
async fn check_failed_start(app: &App, cause: &str, move_aside: bool) {
    let child = Command::new(binary())
        .arg("serve")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "info")
        .env("RUST_BACKTRACE", "0")
        .envs(app.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .current_dir(app.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(Some(child));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if child.get().try_wait().unwrap().is_some() {
            let output = child.0.take().unwrap().wait_with_output().unwrap();
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
            assert!(!text.contains("panicked"), "serve panicked:\n{text}");
            assert_ne!(output.status.code(), Some(0), "{text}");
            assert_ne!(output.status.code(), Some(101), "{text}");
            assert!(
                text.contains(cause),
                "the message does not name {cause:?}:\n{text}"
            );
            assert_eq!(
                text.contains(".broken"),
                move_aside,
                "wrong recovery step:\n{text}"
            );
            return;
        }
        let ready = app.http.get(format!("{}/readyz", app.base)).send().await;
        if let Ok(response) = ready {
            assert_eq!(response.status().as_u16(), 503);
            let delivery = envelope(vec![delivered("corrupt-1", "c@disk.example")]);
            assert_eq!(app.deliver(&delivery).await.status().as_u16(), 503);
            return;
        }
        assert!(
            Instant::now() < deadline,
            "serve neither exited nor answered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A child process killed when dropped, so a failed assertion leaves no service running.
struct KillOnDrop(Option<std::process::Child>);

impl KillOnDrop {
    fn get(&mut self) -> &mut std::process::Child {
        self.0.as_mut().expect("the child was already taken")
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A stopped service whose store holds a few hundred events.
async fn start_with_data() -> App {
    let mut app = App::start(&[]).await;
    deliver_marker(&app).await;
    let events = (0..300)
        .map(|index| {
            delivered(
                &format!("bulk-{index}"),
                &format!("bulk{index}@disk.example"),
            )
        })
        .collect();
    assert_eq!(app.deliver(&envelope(events)).await.status().as_u16(), 200);
    assert_eq!(app.terminate(), Some(0));
    app
}

#[tokio::test]
async fn corrupt_store_is_reported() {
    let app = start_with_data().await;
    let data_file = app.data_dir().join("store").join("db");
    damage(&data_file);

    check_failed_start(&app, "cannot open the store", true).await;
    // A second start must not take the store for new. NOTE: sled rewrites part of the damaged
    // file during the failed open, so the bytes an operator inspects are not the original ones.
    check_failed_start(&app, "cannot open the store", true).await;
}

#[tokio::test]
async fn unavailable_router_answers_503() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(bouncewatch::http::unavailable::serve(
        listener,
        "cannot open the store at /srv/store: damaged".to_string(),
        async {
            let _ = stopped.await;
        },
    ));
    let http = reqwest::Client::new();

    let health = http.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(health.status().as_u16(), 200);
    let ready = http.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(ready.status().as_u16(), 503);
    let body: Value = ready.json().await.unwrap();
    assert!(body["detail"].as_str().unwrap().contains("/srv/store"));
    for (method, path) in [
        ("POST", "/okta/events"),
        ("POST", "/okta/events/"),
        ("GET", "/api/v1/addresses/a%40example.com"),
    ] {
        let response = http
            .request(method.parse().unwrap(), format!("{base}{path}"))
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 503, "{method} {path}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], json!("store_unavailable"));
    }
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}
