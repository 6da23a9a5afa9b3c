//! The server's shutdown as its connection loops see it: one flag and one notification.
//!
//! A WebSocket session's or SSE stream's loop polls its shutdown branch every time it wakes,
//! which on a busy server is hundreds of thousands of times a second. A `CancellationToken`'s future takes two
//! server-wide mutexes on each of those polls (the token's tree node, then its `Notify`'s
//! waiter list), and on a many-core server every worker thread would contend for them.
//! [`Closing`] is instead a flag that a loop reads with one atomic load, set *before* a single
//! `notify_waiters` wakes every waiting loop. A loop's wait ([`Closing::watch`]) registers its
//! task with the notification on its first poll and never touches the lock again. Tokio
//! wakes a task through any of its wakers, and a loop's future never leaves its task, so the
//! waker registered on that first poll stays the right one.

use std::{
    future::Future,
    pin::Pin,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    task::Poll,
};

use tokio::sync::{futures::OwnedNotified, Notify};

/// See the module docs.
#[derive(Debug, Default)]
pub(crate) struct Closing {
    closed: AtomicBool,
    notify: Arc<Notify>,
}

impl Closing {
    /// Marks the server as closing and wakes every loop waiting on it.
    pub(crate) fn close(&self) {
        // Release: a loop that wakes and reads the flag (Acquire) sees it set.
        self.closed.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }

    /// Whether [`Closing::close`] was called.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// A wait for [`Closing::close`], to poll through [`Closing::closed`]. Create it before
    /// first checking the flag: a close after its creation wakes it even if it was never polled.
    pub(crate) fn watch(&self) -> OwnedNotified {
        Arc::clone(&self.notify).notified_owned()
    }

    /// Resolves once the server is closing. `watch` comes from [`Closing::watch`] and
    /// `registered` starts `false`; both live as long as the loop. Only a poll made while
    /// `registered` is still `false` reaches the notification's lock.
    pub(crate) fn closed<'a>(
        &'a self,
        mut watch: Pin<&'a mut OwnedNotified>,
        registered: &'a mut bool,
    ) -> impl Future<Output = ()> + Send + 'a {
        std::future::poll_fn(move |cx| {
            if self.is_closed() {
                return Poll::Ready(());
            }
            if !*registered {
                *registered = true;
                return watch.as_mut().poll(cx);
            }
            Poll::Pending
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Closing wakes a loop that registered long before and was polled again since (woken by
    /// something else), with nothing else left to wake it.
    #[tokio::test]
    async fn a_registered_wait_wakes_on_close() {
        let closing = Arc::new(Closing::default());
        let (nudge, mut nudged) = tokio::sync::mpsc::unbounded_channel::<()>();
        let task = tokio::spawn({
            let closing = Arc::clone(&closing);
            async move {
                let watch = closing.watch();
                tokio::pin!(watch);
                let mut registered = false;
                let mut nudges = 0u32;
                loop {
                    tokio::select! {
                        biased;
                        () = closing.closed(watch.as_mut(), &mut registered) => return nudges,
                        Some(()) = nudged.recv() => nudges += 1,
                    }
                }
            }
        });
        for _ in 0..3 {
            nudge.send(()).expect("task alive");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        closing.close();
        let nudges = tokio::time::timeout(std::time::Duration::from_secs(5), task).await.expect("woken").expect("ran");
        assert_eq!(nudges, 3);
    }

    /// A close between creating the wait and its first poll is not lost.
    #[tokio::test]
    async fn a_close_before_the_first_poll_is_seen() {
        let closing = Closing::default();
        let watch = closing.watch();
        tokio::pin!(watch);
        closing.close();
        let mut registered = false;
        tokio::time::timeout(std::time::Duration::from_secs(5), closing.closed(watch.as_mut(), &mut registered))
            .await
            .expect("resolved at once");
    }
}
