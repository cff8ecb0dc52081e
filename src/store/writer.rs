//! Group commit. One writer thread owns every change to the store: it takes the write jobs
//! waiting at that moment, runs them against an overlay of the tree, applies their changes as
//! one atomic sled batch, flushes once, and only then tells each caller it succeeded. A flush
//! therefore serves every request that arrived while the previous one ran, and the jobs never
//! race each other because they run one after another on one thread.

use std::collections::HashMap;
use std::fs::File;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use super::{keys, StoreError};

/// Most jobs committed by one flush.
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
    /// Set after a failed flush: the reason every later commit fails.
    pub poisoned: Option<String>,
}

impl Writer {
    pub fn run(mut self, mut jobs: mpsc::Receiver<Job>) {
        while let Some(first) = jobs.blocking_recv() {
            let mut group = vec![first];
            while group.len() < MAX_GROUP {
                match jobs.try_recv() {
                    Ok(job) => group.push(job),
                    Err(_) => break,
                }
            }
            self.commit(group);
        }
        if let Err(err) = self.db.flush() {
            tracing::error!(error = %err, "final store flush failed");
        }
    }

    fn commit(&mut self, group: Vec<Job>) {
        let started = Instant::now();
        let count = group.len() as u64;
        let mut txn = Txn {
            tree: &self.tree,
            db: &self.db,
            overlay: HashMap::new(),
            batch: sled::Batch::default(),
            failed: None,
        };
        let finishers: Vec<Finish> = group.into_iter().map(|job| job(&mut txn)).collect();
        let Txn { batch, failed, .. } = txn;

        let result = match (failed, &self.poisoned) {
            (_, Some(reason)) => Err(StoreError::Io(reason.clone())),
            (Some(err), None) => Err(err),
            (None, None) => self.apply(batch),
        };
        match &result {
            Ok(()) => self.health.failing.store(false, Ordering::Relaxed),
            Err(err) => {
                self.health.failing.store(true, Ordering::Relaxed);
                tracing::error!(error = %err, jobs = count, "store commit failed");
            }
        }
        self.health.commits.fetch_add(1, Ordering::Relaxed);
        self.health.jobs.fetch_add(count, Ordering::Relaxed);
        let micros = started.elapsed().as_micros() as u64;
        self.health
            .last_commit_micros
            .store(micros, Ordering::Relaxed);
        for finish in finishers {
            finish(result.clone());
        }
    }

    fn apply(&mut self, batch: sled::Batch) -> Result<(), StoreError> {
        self.tree.apply_batch(batch)?;
        // From here the batch is in sled's memory: a failed flush leaves reads (the duplicate
        // check among them) seeing changes that were answered with an error. Every later commit
        // fails too, so nothing is acknowledged on top of them, until a restart reopens the store.
        if let Err(err) = self.db.flush() {
            self.poisoned = Some(format!(
                "a store flush failed ({err}); restart bouncewatch once the cause is fixed"
            ));
            return Err(err.into());
        }
        if let Some(file) = &self.sync_file {
            file.sync_data()
                .map_err(|err| StoreError::Io(err.to_string()))?;
        }
        Ok(())
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
