//! The store: one sled database, the only code that deals with its trees, keys and flushing.
//!
//! Every change goes through [`Store::write`], which runs on the writer thread and returns
//! once the change is flushed (see `writer`). Reads go straight to sled and see only committed
//! data. The rest of the service uses the methods here and never sled itself, so another
//! backend can replace this module without touching its callers.

pub mod bounce_list;
pub mod checkpoint;
pub mod erase;
pub mod export;
mod ingest;
pub mod keys;
pub mod outbox;
mod reads;
pub mod records;
pub mod retention;
pub mod rules;
pub mod tokens;
mod writer;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

pub use ingest::{IngestReport, NewEvent, QuarantineItem};
pub use reads::Page;
pub use writer::{Txn, WriterHealth};

use crate::config::Durability;

/// Jobs waiting for the writer before callers are made to wait for room.
const QUEUE_DEPTH: usize = 4096;

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("store I/O failed: {0}")]
    Io(String),
    #[error("store is corrupt: {0}")]
    Corrupt(String),
    #[error("store is closed")]
    Closed,
    #[error("{0}")]
    Refused(String),
}

impl From<sled::Error> for StoreError {
    fn from(err: sled::Error) -> StoreError {
        match err {
            sled::Error::Corruption { .. } => StoreError::Corrupt(err.to_string()),
            other => StoreError::Io(other.to_string()),
        }
    }
}

/// A handle to the open store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    tree: sled::Tree,
    jobs: mpsc::Sender<writer::Job>,
    health: Arc<WriterHealth>,
    path: PathBuf,
}

impl Store {
    /// Opens (or creates) the store under `data_dir/store`, retrying for up to `lock_wait` while
    /// another process holds it, and starts the writer thread.
    pub fn open(
        data_dir: &Path,
        durability: Durability,
        lock_wait: Duration,
    ) -> Result<Store, StoreError> {
        let path = data_dir.join("store");
        std::fs::create_dir_all(&path)
            .map_err(|err| StoreError::Io(format!("{}: {err}", path.display())))?;
        // sled opens a data file it cannot read as an empty store, so remember whether one was
        // there: an existing file without the schema marker is damage, not a first start.
        let had_data = std::fs::metadata(path.join("db")).is_ok_and(|meta| meta.len() > 0);
        let (db, tree) = match open_checked(&path, had_data, lock_wait) {
            Err(StoreError::Corrupt(cause)) if had_data && set_snapshots_aside(&path)? => {
                // sled can write an empty snapshot when the disk fills up, and it then trusts that
                // snapshot over its log at the next open. Without the snapshot it rebuilds from the log.
                tracing::warn!(
                    cause = %cause,
                    "store looked damaged; its snapshot files were set aside and the store reopened from its log"
                );
                open_checked(&path, had_data, lock_wait)?
            }
            other => other?,
        };
        let sync_file = match durability {
            Durability::Crash => None,
            Durability::Power => Some(
                File::open(path.join("db"))
                    .map_err(|err| StoreError::Io(format!("open data file: {err}")))?,
            ),
        };

        let health = Arc::new(WriterHealth::default());
        let (sender, receiver) = mpsc::channel(QUEUE_DEPTH);
        let writer = writer::Writer {
            db: db.clone(),
            tree: tree.clone(),
            sync_file,
            health: health.clone(),
        };
        std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || writer.run(receiver))
            .map_err(|err| StoreError::Io(format!("start writer thread: {err}")))?;

        Ok(Store {
            db,
            tree,
            jobs: sender,
            health,
            path,
        })
    }

    /// Runs `work` on the writer thread and returns its result once its changes are durable.
    pub async fn write<R, F>(&self, work: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&mut Txn<'_>) -> R + Send + 'static,
    {
        let (reply, result) = oneshot::channel();
        self.jobs
            .send(writer::job(work, reply))
            .await
            .map_err(|_| StoreError::Closed)?;
        result.await.map_err(|_| StoreError::Closed)?
    }

    /// Returns whether the last commit succeeded and the writer is running.
    pub fn is_writable(&self) -> bool {
        !self.health.failing.load(Ordering::Relaxed) && !self.jobs.is_closed()
    }

    pub fn health(&self) -> &WriterHealth {
        &self.health
    }

    /// Bytes the store takes on disk.
    pub fn size_on_disk(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Flushes whatever sled still buffers; used at shutdown.
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.db.flush_async().await?;
        Ok(())
    }
}

/// Opens sled at `path`. sled 0.34 panics on some damaged files instead of returning
/// `Error::Corruption` (for example "tried to serialize Uninitialized" after random bytes were
/// written into `db`), so a panic counts as corruption here rather than ending the process.
/// Opens sled, waiting up to `lock_wait` for another process to release it, and checks the
/// schema.
fn open_checked(
    path: &Path,
    had_data: bool,
    lock_wait: Duration,
) -> Result<(sled::Db, sled::Tree), StoreError> {
    let started = Instant::now();
    let db = loop {
        match open_sled(path)? {
            Ok(db) => break db,
            Err(sled::Error::Io(err)) if is_lock_error(&err) && started.elapsed() < lock_wait => {
                std::thread::sleep(Duration::from_millis(250));
            }
            Err(sled::Error::Io(err)) if is_lock_error(&err) => {
                return Err(StoreError::Refused(format!(
                    "the store at {} is locked by another process (sled admits one process at a \
                     time); stop the other bouncewatch, or use the admin API of the running one",
                    path.display()
                )));
            }
            Err(sled::Error::Io(err)) => return Err(unwritable(path, &err)),
            Err(err) => return Err(corrupt(path, &err.to_string())),
        }
    };
    let tree = without_panic(path, || {
        check_schema(&db, had_data).map_err(|err| match err {
            StoreError::Corrupt(cause) => corrupt(path, &cause),
            other => other,
        })?;
        Ok(db.open_tree(keys::TREE)?)
    })?;
    Ok((db, tree))
}

/// Moves sled's snapshot files (`snap.*`) into a folder beside them, keeping them for
/// inspection. Returns false when there were none.
fn set_snapshots_aside(path: &Path) -> Result<bool, StoreError> {
    let io = |err: std::io::Error| StoreError::Io(format!("{}: {err}", path.display()));
    let snapshots: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(io)?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|file| {
            file.file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.starts_with("snap."))
        })
        .collect();
    if snapshots.is_empty() {
        return Ok(false);
    }
    let aside = path.join(format!(
        "snapshots-set-aside-{}",
        chrono::Utc::now().timestamp()
    ));
    std::fs::create_dir_all(&aside).map_err(io)?;
    for snapshot in snapshots {
        let name = snapshot.file_name().expect("a file name").to_owned();
        std::fs::rename(&snapshot, aside.join(name)).map_err(io)?;
    }
    Ok(true)
}

fn open_sled(path: &Path) -> Result<sled::Result<sled::Db>, StoreError> {
    without_panic(path, || {
        Ok(sled::Config::new()
            .path(path)
            .cache_capacity(128 * 1024 * 1024)
            .open())
    })
}

/// Runs `work`, turning a panic inside sled into [`StoreError::Corrupt`] with the recovery step.
fn without_panic<R>(
    path: &Path,
    work: impl FnOnce() -> Result<R, StoreError>,
) -> Result<R, StoreError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)).unwrap_or_else(|panic| {
        let message = panic
            .downcast_ref::<&str>()
            .map(|text| text.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "sled panicked".to_string());
        Err(corrupt(path, &message))
    })
}

/// The error for a store that cannot be read, with the documented recovery step.
fn corrupt(path: &Path, cause: &str) -> StoreError {
    StoreError::Corrupt(format!(
        "cannot open the store at {path}: {cause}. Move the directory aside (mv {path} {path}.broken), \
         start again, and run `bouncewatch backfill` to refill it from Okta's System Log",
        path = path.display(),
    ))
}

/// The error for a store that cannot be opened because of the file system (a full disk, a
/// read-only mount, missing permissions). The files may be intact, so moving them aside is not
/// the fix.
fn unwritable(path: &Path, err: &std::io::Error) -> StoreError {
    StoreError::Io(format!(
        "cannot open the store at {}: {err}. Free space on its file system or make it writable, \
         then start again; the stored data is kept",
        path.display()
    ))
}

fn is_lock_error(err: &std::io::Error) -> bool {
    err.kind() == std::io::ErrorKind::WouldBlock || err.to_string().contains("lock")
}

/// Refuses a store written by another schema version instead of misreading it, and a data file
/// that existed before the open (`had_data`) but in which sled found no schema marker.
fn check_schema(db: &sled::Db, had_data: bool) -> Result<(), StoreError> {
    match db.get(keys::SCHEMA_KEY)? {
        None if had_data => Err(StoreError::Corrupt(
            "the data file exists but sled read no bouncewatch records from it".to_string(),
        )),
        None => {
            db.insert(keys::SCHEMA_KEY, &keys::SCHEMA_VERSION.to_be_bytes())?;
            db.flush()?;
            Ok(())
        }
        Some(raw) => {
            let version = <[u8; 8]>::try_from(raw.as_ref())
                .map(u64::from_be_bytes)
                .unwrap_or(0);
            if version == keys::SCHEMA_VERSION {
                Ok(())
            } else {
                Err(StoreError::Refused(format!(
                    "the store was written with schema version {version}, and this bouncewatch reads \
                     version {}; run the bouncewatch that wrote it, or move the store aside and \
                     refill it with `bouncewatch backfill`",
                    keys::SCHEMA_VERSION
                )))
            }
        }
    }
}
