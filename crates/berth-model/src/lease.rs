//! A lease on one object in a bucket: the lock two berth processes share where the destination
//! has none of its own (the warehouses, a Delta lake).
//!
//! The holder writes `{owner, expires_unix_ms}` with a conditional create (`If-None-Match: *` on
//! S3, the equivalents on GCS and Azure), renews it every third of its time to live with a
//! conditional update on the ETag it last wrote, and deletes it when done. Another process finds
//! the object there and waits; a lease nobody renewed past its expiry (its holder crashed), or
//! whose holder was a process of this host that no longer runs, is
//! taken over with a conditional update on the ETag the waiter read, so of two waiters only one
//! gets it. Expiry compares wall clocks: the machines' clocks must agree to well within the time to
//! live (a minute by default).

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// How long a lease lives without renewal, and how often a waiter looks again.
#[derive(Debug, Clone, Copy)]
pub struct LeaseOptions {
    /// Time to live; renewed every third of it.
    pub ttl: Duration,
    /// How often a waiting process reads the lease again.
    pub poll: Duration,
}

impl Default for LeaseOptions {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(60),
            poll: Duration::from_secs(1),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Holder {
    owner: String,
    expires_unix_ms: u64,
    /// The holder's host and process id: a lease held by a process of this host that no longer
    /// runs (killed, crashed) is taken over at once instead of after its time to live.
    #[serde(default)]
    host: Option<String>,
    #[serde(default)]
    pid: Option<u32>,
}

impl Holder {
    /// Is the holder a process of this host that is gone? (Only where `/proc` tells; a reused
    /// process id only makes a waiter wait for the expiry.)
    fn is_gone(&self) -> bool {
        let (Some(host), Some(pid)) = (&self.host, self.pid) else {
            return false;
        };
        host == &hostname()
            && std::path::Path::new("/proc/self").exists()
            && !std::path::Path::new(&format!("/proc/{pid}")).exists()
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown host".into())
        .trim()
        .to_string()
}

/// A held lease; renewed in the background until [`Lease::release`] (or drop, which only stops
/// renewing: the lease then expires).
#[derive(Debug)]
pub struct Lease {
    store: Arc<dyn ObjectStore>,
    path: Path,
    shown: String,
    /// Renews the lease until released; aborted when the lease is dropped (a crash stops it).
    renewal: crate::task::OwnedTask<()>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn holder(owner: &str, ttl: Duration) -> PutPayload {
    let expires_unix_ms = now_ms().saturating_add(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX));
    let holder = Holder {
        owner: owner.to_string(),
        expires_unix_ms,
        host: Some(hostname()),
        pid: Some(std::process::id()),
    };
    serde_json::to_vec(&holder).unwrap_or_default().into()
}

/// This process, for the lease's `owner` field and the messages of whoever waits for it.
fn owner() -> String {
    let host = hostname();
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("berth pid {} on {} ({nanos:08x})", std::process::id(), host.trim())
}

fn put_mode(mode: PutMode) -> PutOptions {
    PutOptions {
        mode,
        ..Default::default()
    }
}

impl Lease {
    /// Takes the lease at `path` in `store`, waiting while another process holds it. `shown`
    /// names the lease in messages (no credentials); `what` says what it guards. `Ok(None)`, after
    /// a warning, when the store cannot write conditionally.
    pub async fn acquire(
        store: Arc<dyn ObjectStore>,
        path: Path,
        shown: &str,
        what: &str,
        options: LeaseOptions,
    ) -> Result<Option<Self>> {
        let me = owner();
        let mut announced = false;
        loop {
            let created = store
                .put_opts(&path, holder(&me, options.ttl), put_mode(PutMode::Create))
                .await;
            match created {
                Ok(put) => return Ok(Some(Self::held(store, path, shown, me, put.into(), options))),
                Err(object_store::Error::AlreadyExists { .. }) => {}
                Err(object_store::Error::NotImplemented { .. }) => {
                    tracing::warn!(
                        "{shown}: this store cannot write conditionally, so berth cannot keep two processes from \
                         loading {what} at once; run one at a time"
                    );
                    return Ok(None);
                }
                // Read-only credentials (a data lake the warehouse reads in place) still load.
                Err(
                    e @ (object_store::Error::PermissionDenied { .. } | object_store::Error::Unauthenticated { .. }),
                ) => {
                    tracing::warn!(
                        "{shown}: berth may not write its lock here ({e}), so it cannot keep two processes from \
                         loading {what} at once; run one at a time, or give a staging bucket it may write to"
                    );
                    return Ok(None);
                }
                Err(e) => return Err(Error::store("taking the lock", shown, e)),
            }
            let found = match store.get(&path).await {
                Ok(found) => found,
                Err(object_store::Error::NotFound { .. }) => continue,
                Err(e) => return Err(Error::store("reading the lock", shown, e)),
            };
            let version = UpdateVersion {
                e_tag: found.meta.e_tag.clone(),
                version: found.meta.version.clone(),
            };
            let bytes = match found.bytes().await {
                Ok(bytes) => bytes,
                Err(object_store::Error::NotFound { .. }) => continue,
                Err(e) => return Err(Error::store("reading the lock", shown, e)),
            };
            // An unreadable lease is treated as expired: nobody can be renewing it.
            let current = serde_json::from_slice::<Holder>(&bytes).unwrap_or(Holder {
                owner: "an unreadable lock".into(),
                expires_unix_ms: 0,
                host: None,
                pid: None,
            });
            if current.expires_unix_ms <= now_ms() || current.is_gone() {
                let taken = store
                    .put_opts(&path, holder(&me, options.ttl), put_mode(PutMode::Update(version)))
                    .await;
                match taken {
                    Ok(put) => {
                        tracing::warn!(
                            "{shown}: took over the lock of {} on {what}, which expired without being renewed \
                             or whose process no longer runs (that process stopped)",
                            current.owner
                        );
                        return Ok(Some(Self::held(store, path, shown, me, put.into(), options)));
                    }
                    // Another waiter took it, or its holder renewed or released it just now.
                    Err(object_store::Error::Precondition { .. } | object_store::Error::NotFound { .. }) => continue,
                    Err(e) => return Err(Error::store("taking over the expired lock", shown, e)),
                }
            }
            if !announced {
                tracing::info!(
                    "{} is loading {what}; waiting for it to finish ({shown})",
                    current.owner
                );
                announced = true;
            }
            tokio::time::sleep(options.poll).await;
        }
    }

    fn held(
        store: Arc<dyn ObjectStore>,
        path: Path,
        shown: &str,
        me: String,
        version: UpdateVersion,
        options: LeaseOptions,
    ) -> Self {
        let version = Arc::new(Mutex::new(version));
        let renewal = {
            let (store, path, shown) = (Arc::clone(&store), path.clone(), shown.to_string());
            crate::task::spawn_owned(async move {
                let every = options.ttl / 3;
                let mut wait = every;
                loop {
                    tokio::time::sleep(wait).await;
                    let last = version
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .clone();
                    let renewed = store
                        .put_opts(&path, holder(&me, options.ttl), put_mode(PutMode::Update(last)))
                        .await;
                    match renewed {
                        Ok(put) => {
                            *version.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = put.into();
                            wait = every;
                        }
                        Err(object_store::Error::Precondition { .. } | object_store::Error::NotFound { .. }) => {
                            tracing::error!(
                                "{shown}: berth lost its lock (it expired unrenewed and another process took \
                                 it over); this load no longer keeps others out"
                            );
                            return;
                        }
                        Err(e) => {
                            tracing::warn!("{shown}: could not renew the lock, trying again: {e}");
                            wait = (every / 4).max(Duration::from_millis(100));
                        }
                    }
                }
            })
        };
        Self {
            store,
            path,
            shown: shown.to_string(),
            renewal,
        }
    }

    /// Stops renewing and deletes the lease, so a waiting process goes on at once.
    pub async fn release(self) {
        self.renewal.abort();
        if let Err(e) = self.store.delete(&self.path).await {
            tracing::warn!("{}: could not remove the lock (it expires by itself): {e}", self.shown);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;

    fn quick() -> LeaseOptions {
        LeaseOptions {
            ttl: Duration::from_millis(600),
            poll: Duration::from_millis(20),
        }
    }

    #[tokio::test]
    async fn one_holder_at_a_time_and_the_next_goes_on_at_release() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let path = Path::from("locks/ds/1.json");
        let first = Lease::acquire(Arc::clone(&store), path.clone(), "lock", "package 1", quick())
            .await
            .expect("acquire")
            .expect("conditional writes");
        let waiter = {
            let (store, path) = (Arc::clone(&store), path.clone());
            crate::task::spawn_owned(async move { Lease::acquire(store, path, "lock", "package 1", quick()).await })
        };
        // Renewed past several lifetimes: the waiter keeps waiting.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(!waiter.is_finished(), "a renewed lease keeps the next process out");
        first.release().await;
        let second = tokio::time::timeout(Duration::from_secs(2), waiter)
            .await
            .expect("the waiter goes on after the release")
            .expect("task")
            .expect("acquire");
        assert!(second.is_some());
    }

    #[tokio::test]
    async fn a_lease_nobody_renews_is_taken_over_after_it_expires() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let path = Path::from("lock.json");
        let crashed = Lease::acquire(Arc::clone(&store), path.clone(), "lock", "package", quick())
            .await
            .expect("acquire")
            .expect("lease");
        // A crash: renewal stops, the object stays.
        drop(crashed);
        let started = std::time::Instant::now();
        let next = Lease::acquire(Arc::clone(&store), path.clone(), "lock", "package", quick())
            .await
            .expect("acquire");
        assert!(next.is_some());
        assert!(started.elapsed() >= Duration::from_millis(300), "waited for the expiry");
        // Garbage in the object counts as expired too.
        drop(next);
        store.put(&path, "not json".into()).await.expect("put");
        let after_garbage = Lease::acquire(store, path, "lock", "package", quick())
            .await
            .expect("acquire");
        assert!(after_garbage.is_some());
    }

    /// A store berth may read but not write.
    #[derive(Debug)]
    struct ReadOnly(InMemory);

    impl std::fmt::Display for ReadOnly {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("ReadOnly")
        }
    }

    fn denied(path: &Path) -> object_store::Error {
        object_store::Error::PermissionDenied {
            path: path.to_string(),
            source: "403 Forbidden".into(),
        }
    }

    #[async_trait::async_trait]
    impl ObjectStore for ReadOnly {
        async fn put_opts(
            &self,
            location: &Path,
            _: PutPayload,
            _: PutOptions,
        ) -> object_store::Result<object_store::PutResult> {
            Err(denied(location))
        }
        async fn put_multipart_opts(
            &self,
            location: &Path,
            _: object_store::PutMultipartOptions,
        ) -> object_store::Result<Box<dyn object_store::MultipartUpload>> {
            Err(denied(location))
        }
        async fn get_opts(
            &self,
            location: &Path,
            options: object_store::GetOptions,
        ) -> object_store::Result<object_store::GetResult> {
            self.0.get_opts(location, options).await
        }
        fn delete_stream(
            &self,
            locations: futures::stream::BoxStream<'static, object_store::Result<Path>>,
        ) -> futures::stream::BoxStream<'static, object_store::Result<Path>> {
            self.0.delete_stream(locations)
        }
        fn list(
            &self,
            prefix: Option<&Path>,
        ) -> futures::stream::BoxStream<'static, object_store::Result<object_store::ObjectMeta>> {
            self.0.list(prefix)
        }
        async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<object_store::ListResult> {
            self.0.list_with_delimiter(prefix).await
        }
        async fn copy_opts(&self, _: &Path, to: &Path, _: object_store::CopyOptions) -> object_store::Result<()> {
            Err(denied(to))
        }
    }

    #[tokio::test]
    async fn without_write_access_the_load_goes_on_unlocked() {
        let store: Arc<dyn ObjectStore> = Arc::new(ReadOnly(InMemory::new()));
        let lease = Lease::acquire(store, Path::from("lock.json"), "lock", "package", quick())
            .await
            .expect("a read-only bucket is no error");
        assert!(lease.is_none());
    }

    #[tokio::test]
    async fn of_many_waiters_on_an_expired_lease_exactly_one_takes_it_at_a_time() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let path = Path::from("lock.json");
        drop(
            Lease::acquire(Arc::clone(&store), path.clone(), "lock", "p", quick())
                .await
                .expect("acquire"),
        );
        let inside = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let most = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let tasks: Vec<_> = (0..4)
            .map(|_| {
                let (store, path, inside, most) =
                    (Arc::clone(&store), path.clone(), Arc::clone(&inside), Arc::clone(&most));
                crate::task::spawn_owned(async move {
                    let lease = Lease::acquire(store, path, "lock", "p", quick())
                        .await
                        .expect("acquire")
                        .expect("lease");
                    let now = inside.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                    most.fetch_max(now, std::sync::atomic::Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    inside.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                    lease.release().await;
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("task");
        }
        assert_eq!(most.load(std::sync::atomic::Ordering::SeqCst), 1);
    }
}
