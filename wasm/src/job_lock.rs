//! Per-job locks inside one isolate.
//!
//! workerd may run several requests of one isolate concurrently (each awaits I/O),
//! so the KV store's check-then-write must not interleave for one job: every
//! conditional write holds its job's lock.
//!
//! A waiter does not park on a waker that another request would fire: workerd
//! cancels a request that waits on nothing but another request's promise ("the
//! code had hung"). It polls instead, calling the host's `pause` (a timer, which is
//! the waiting request's own I/O) between tries.

use std::cell::RefCell;
use std::collections::HashSet;
use std::future::Future;

thread_local! {
    static HELD: RefCell<HashSet<String>> = RefCell::new(HashSet::new());
}

/// Holds one job's lock; releases it when dropped.
pub struct JobGuard {
    job_id: String,
}

/// Takes `job_id`'s lock, calling `pause(try_number)` between tries while another
/// request holds it.
pub async fn lock<F, Fut>(job_id: &str, mut pause: F) -> JobGuard
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = ()>,
{
    let mut tries = 0u32;
    loop {
        if HELD.with(|h| h.borrow_mut().insert(job_id.to_string())) {
            return JobGuard {
                job_id: job_id.to_string(),
            };
        }
        tries = tries.saturating_add(1);
        pause(tries).await;
    }
}

impl Drop for JobGuard {
    fn drop(&mut self) {
        HELD.with(|h| h.borrow_mut().remove(&self.job_id));
    }
}

/// How many job locks are held now.
#[cfg(test)]
pub fn held() -> usize {
    HELD.with(|h| h.borrow().len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::pin::Pin;
    use std::rc::Rc;
    use std::task::{Context, Poll};

    /// Pending once (waking itself), then ready: a point where other tasks run.
    struct YieldNow(bool);

    impl Future for YieldNow {
        type Output = ();
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            if self.0 {
                return Poll::Ready(());
            }
            self.0 = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }

    async fn join_all(tasks: Vec<Pin<Box<dyn Future<Output = ()>>>>) {
        // Polls every task in turn until all are done (a tiny single-thread executor).
        let mut tasks: Vec<Option<Pin<Box<dyn Future<Output = ()>>>>> =
            tasks.into_iter().map(Some).collect();
        std::future::poll_fn(move |cx| {
            let mut pending = false;
            for slot in tasks.iter_mut() {
                if let Some(t) = slot {
                    if t.as_mut().poll(cx).is_ready() {
                        *slot = None;
                    } else {
                        pending = true;
                    }
                }
            }
            if pending {
                Poll::Pending
            } else {
                Poll::Ready(())
            }
        })
        .await
    }

    #[test]
    fn one_holder_per_job_and_released_on_drop() {
        let inside = Rc::new(Cell::new(0));
        let done = Rc::new(Cell::new(0));
        let waits = Rc::new(Cell::new(0u32));
        let task = |job: &'static str| {
            let inside = inside.clone();
            let done = done.clone();
            let waits = waits.clone();
            Box::pin(async move {
                let _g = lock(job, |_| {
                    waits.set(waits.get() + 1);
                    YieldNow(false)
                })
                .await;
                if job == "a" {
                    inside.set(inside.get() + 1);
                    assert_eq!(inside.get(), 1, "two holders of one job's lock");
                }
                // Hold the lock across a suspension, where the others get to run.
                YieldNow(false).await;
                YieldNow(false).await;
                if job == "a" {
                    inside.set(inside.get() - 1);
                }
                done.set(done.get() + 1);
            }) as Pin<Box<dyn Future<Output = ()>>>
        };
        let tasks = vec![task("a"), task("a"), task("a"), task("b"), task("a")];
        pollster::block_on(join_all(tasks));
        assert_eq!(done.get(), 5);
        assert!(waits.get() > 0, "the tasks never contended");
        assert_eq!(held(), 0);
    }
}
