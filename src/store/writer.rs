//! Group commit. One writer thread owns every change to the store: it takes the write jobs
//! waiting at that moment, runs them against an overlay of the tree and applies their changes
//! as one atomic sled batch. A flusher thread then flushes once for every group applied since
//! its last flush, and only then reports success to each caller. The writer goes on with the
//! next group while a flush runs, a flush serves every request that arrived meanwhile, and the
//! jobs never race each other because they run one after another on one thread.

use std::collections::HashMap;
use std::fs::File;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use super::{keys, StoreError};

/// Maximum number of jobs in one group.
const MAX_GROUP: usize = 512;

type Finish = Box<dyn FnOnce(Result<(), StoreError>) + Send>;
pub(super) type Job = Box<dyn FnOnce(&mut Txn<'_>) -> Finish + Send>;

/// The changes of one group, visible to the jobs that run after them in the same group.
pub struct Txn<'a> {
    tree: &'a sled::Tree,
    db: &'a sled::Db,
    overlay: HashMap<Vec<u8>, Option<Vec<u8>>>,
    batch: sled::Batch,
    failed: Option<StoreError>,
}

impl Txn<'_> {
    pub fn get(&mut self, key: &[u8]) -> Option<Vec<u8>> {
        if let Some(value) = self.overlay.get(key) {
            return value.clone();
        }
        match self.tree.get(key) {
            Ok(value) => value.map(|v| v.to_vec()),
            Err(err) => {
                self.failed.get_or_insert(StoreError::from(err));
                None
            }
        }
    }

    pub fn contains(&mut self, key: &[u8]) -> bool {
        if let Some(value) = self.overlay.get(key) {
            return value.is_some();
        }
        match self.tree.contains_key(key) {
            Ok(found) => found,
            Err(err) => {
                self.failed.get_or_insert(StoreError::from(err));
                false
            }
        }
    }

    pub fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.batch.insert(key.as_slice(), value.as_slice());
        self.overlay.insert(key, Some(value));
    }

    pub fn remove(&mut self, key: &[u8]) {
        self.batch.remove(key);
        self.overlay.insert(key.to_vec(), None);
    }

    pub fn get_json<T: DeserializeOwned>(&mut self, key: &[u8]) -> Option<T> {
        let bytes = self.get(key)?;
        match serde_json::from_slice(&bytes) {
            Ok(value) => Some(value),
            Err(err) => {
                tracing::error!(error = %err, key = %keys::describe(key), "unreadable stored record");
                None
            }
        }
    }

    pub fn put_json<T: Serialize>(&mut self, key: Vec<u8>, value: &T) {
        let bytes = serde_json::to_vec(value).expect("stored records serialize");
        self.put(key, bytes);
    }

    /// A new id, increasing across restarts.
    pub fn next_id(&mut self) -> u64 {
        match self.db.generate_id() {
            Ok(id) => id,
            Err(err) => {
                self.failed.get_or_insert(StoreError::from(err));
                0
            }
        }
    }

    /// Scans committed records by prefix (changes made earlier in this group are not seen).
    pub fn scan_committed(&self, prefix: &[u8]) -> sled::Iter {
        self.tree.scan_prefix(prefix)
    }
}

/// Shared between the writer and readers: whether the last commit worked, and commit figures.
#[derive(Debug, Default)]
pub struct WriterHealth {
    pub failing: AtomicBool,
    pub commits: AtomicU64,
    pub jobs: AtomicU64,
    pub last_commit_micros: AtomicU64,
}

pub(super) struct Writer {
    pub db: sled::Db,
    pub tree: sled::Tree,
    /// The store's data file, synced after each flush when power-loss durability is on.
    pub sync_file: Option<File>,
    pub health: Arc<WriterHealth>,
}

/// A group whose changes are in sled's memory, waiting for a flush before its callers get their results.
struct Applied {
    finishers: Vec<Finish>,
    jobs: u64,
    started: Instant,
}

/// Set after a failed flush: the reason every later commit fails. A failed flush leaves its
/// batch in sled's memory, so reads (the duplicate check among them) would see changes that
/// were reported as failed, and nothing may be acknowledged on top of them until a restart
/// reopens the store.
type Poisoned = Arc<Mutex<Option<String>>>;

impl Writer {
    /// Runs jobs until every sender is gone. The writer thread runs each group's jobs and
    /// applies its batch, then hands the group to a flusher thread and goes on with the next
    /// group while that flush runs. The flusher flushes once for every group waiting, and only
    /// then returns their results.
    pub fn run(self, mut jobs: mpsc::Receiver<Job>) {
        let poisoned: Poisoned = Arc::default();
        let (to_flusher, applied) = std::sync::mpsc::channel::<Applied>();
        let flusher = Flusher {
            db: self.db.clone(),
            sync_file: self.sync_file,
            health: self.health.clone(),
            poisoned: poisoned.clone(),
        };
        let flusher = std::thread::Builder::new()
            .name("store-flusher".into())
            .spawn(move || flusher.run(applied))
            .expect("start the store flusher thread");

        while let Some(first) = jobs.blocking_recv() {
            let mut group = vec![first];
            while group.len() < MAX_GROUP {
                match jobs.try_recv() {
                    Ok(job) => group.push(job),
                    Err(_) => break,
                }
            }
            execute(
                &self.db,
                &self.tree,
                &self.health,
                &poisoned,
                &to_flusher,
                group,
            );
        }
        drop(to_flusher);
        let _ = flusher.join();
        if let Err(err) = self.db.flush() {
            tracing::error!(error = %err, "final store flush failed");
        }
    }
}

/// Runs one group's jobs and applies their batch, then passes the group to the flusher.
fn execute(
    db: &sled::Db,
    tree: &sled::Tree,
    health: &WriterHealth,
    poisoned: &Poisoned,
    to_flusher: &std::sync::mpsc::Sender<Applied>,
    group: Vec<Job>,
) {
    let started = Instant::now();
    let count = group.len() as u64;
    let mut txn = Txn {
        tree,
        db,
        overlay: HashMap::new(),
        batch: sled::Batch::default(),
        failed: None,
    };
    let finishers: Vec<Finish> = group.into_iter().map(|job| job(&mut txn)).collect();
    let Txn { batch, failed, .. } = txn;

    let refused = poisoned.lock().expect("poison lock").clone();
    let result = match (failed, refused) {
        (_, Some(reason)) => Err(StoreError::Io(reason)),
        (Some(err), None) => Err(err),
        (None, None) => tree.apply_batch(batch).map_err(StoreError::from),
    };
    let failure = match result {
        Ok(()) => {
            let applied = Applied {
                finishers,
                jobs: count,
                started,
            };
            match to_flusher.send(applied) {
                Ok(()) => return,
                Err(unsent) => (unsent.0.finishers, StoreError::Closed),
            }
        }
        Err(err) => (finishers, err),
    };
    let (finishers, err) = failure;
    health.failing.store(true, Ordering::Relaxed);
    tracing::error!(error = %err, jobs = count, "store commit failed");
    for finish in finishers {
        finish(Err(err.clone()));
    }
}

struct Flusher {
    db: sled::Db,
    sync_file: Option<File>,
    health: Arc<WriterHealth>,
    poisoned: Poisoned,
}

impl Flusher {
    fn run(self, applied: std::sync::mpsc::Receiver<Applied>) {
        while let Ok(first) = applied.recv() {
            let mut waiting = vec![first];
            while let Ok(more) = applied.try_recv() {
                waiting.push(more);
            }
            let result = self.flush();
            let jobs: u64 = waiting.iter().map(|group| group.jobs).sum();
            match &result {
                Ok(()) => self.health.failing.store(false, Ordering::Relaxed),
                Err(err) => {
                    self.health.failing.store(true, Ordering::Relaxed);
                    tracing::error!(error = %err, jobs, "store flush failed");
                }
            }
            self.health.commits.fetch_add(1, Ordering::Relaxed);
            self.health.jobs.fetch_add(jobs, Ordering::Relaxed);
            let micros = waiting[0].started.elapsed().as_micros() as u64;
            self.health
                .last_commit_micros
                .store(micros, Ordering::Relaxed);
            for group in waiting {
                for finish in group.finishers {
                    finish(result.clone());
                }
            }
        }
    }

    fn flush(&self) -> Result<(), StoreError> {
        if let Some(reason) = self.poisoned.lock().expect("poison lock").clone() {
            return Err(StoreError::Io(reason));
        }
        let synced = self
            .db
            .flush()
            .map(|_| ())
            .map_err(StoreError::from)
            .and_then(|()| match &self.sync_file {
                Some(file) => file
                    .sync_data()
                    .map_err(|err| StoreError::Io(err.to_string())),
                None => Ok(()),
            });
        if let Err(err) = &synced {
            *self.poisoned.lock().expect("poison lock") = Some(format!(
                "a store flush failed ({err}); restart bouncewatch once the cause is fixed"
            ));
        }
        synced
    }
}

/// Wraps a closure as a job whose result reaches `reply` once its group is durable.
pub(super) fn job<R, F>(work: F, reply: oneshot::Sender<Result<R, StoreError>>) -> Job
where
    R: Send + 'static,
    F: FnOnce(&mut Txn<'_>) -> R + Send + 'static,
{
    Box::new(move |txn: &mut Txn<'_>| {
        let value = work(txn);
        Box::new(move |committed: Result<(), StoreError>| {
            let _ = reply.send(committed.map(|()| value));
        }) as Finish
    })
}
