//! Tasks that never outlive their owner. [`spawn_owned`] is the one way berth spawns a task
//! (the workspace's `clippy.toml` forbids a bare `tokio::spawn`): the [`OwnedTask`] it returns
//! aborts the task when dropped, so a connection driver, a lease renewal or a file fetch ends
//! with whatever holds it — an error path or a cancelled load leaves nothing running behind.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// A spawned task, aborted when this handle is dropped; awaiting it gives the task's result.
#[derive(Debug)]
pub struct OwnedTask<T>(tokio::task::JoinHandle<T>);

/// Spawns `future` on the current Tokio runtime, owned by the returned handle.
pub fn spawn_owned<F>(future: F) -> OwnedTask<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    #[expect(
        clippy::disallowed_methods,
        reason = "the one place berth spawns: the handle owns the task"
    )]
    let handle = tokio::spawn(future);
    OwnedTask(handle)
}

impl<T> OwnedTask<T> {
    /// Stops the task (at its next await point).
    pub fn abort(&self) {
        self.0.abort();
    }

    /// Has the task ended (finished, failed or been aborted)?
    pub fn is_finished(&self) -> bool {
        self.0.is_finished()
    }
}

impl<T> Future for OwnedTask<T> {
    type Output = Result<T, tokio::task::JoinError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx)
    }
}

impl<T> Drop for OwnedTask<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_dropped_task_stops_and_an_awaited_one_finishes() {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<u32>(1);
        let task = spawn_owned(async move {
            for i in 0.. {
                if tx.send(i).await.is_err() {
                    break;
                }
            }
        });
        assert_eq!(rx.recv().await, Some(0));
        drop(task);
        // The aborted task drops its sender: the channel ends.
        while rx.recv().await.is_some() {}
        assert_eq!(spawn_owned(async { 7 }).await.expect("joined"), 7);
    }
}
