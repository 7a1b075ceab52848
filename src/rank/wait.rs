//! Waiting for GPU work without blocking: a callback fills a [`Signal`], and
//! [`DeviceWait`] resolves once it is filled. Polling a `DeviceWait` never blocks the
//! thread: it yields to the executor once, then polls the device without waiting each
//! time it is polled again, until the callback has run or the rank's timeout has passed.
//! The blocking calls run their futures on [`block_on`], the one place this crate waits
//! on a device (`poll(Wait)`) instead of spinning.

use std::future::Future;
use std::pin::{pin, Pin};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use super::Rank;
use crate::error::{Error, Result};

#[derive(Debug)]
struct Slot<T> {
    value: Option<T>,
    waker: Option<Waker>,
}

/// The receiving end of a one-shot callback.
#[derive(Debug)]
pub(crate) struct Signal<T> {
    slot: Arc<Mutex<Slot<T>>>,
}

/// The sending end: moved into a wgpu callback.
pub(crate) struct Notify<T> {
    slot: Arc<Mutex<Slot<T>>>,
}

impl<T> Notify<T> {
    /// Fills the signal and wakes whoever waits on it.
    pub(crate) fn send(self, value: T) {
        let waker = self.slot.lock().ok().and_then(|mut s| {
            s.value = Some(value);
            s.waker.take()
        });
        if let Some(w) = waker {
            w.wake();
        }
    }
}

/// A one-shot signal and its sender.
pub(crate) fn signal<T>() -> (Notify<T>, Signal<T>) {
    let slot = Arc::new(Mutex::new(Slot {
        value: None,
        waker: None,
    }));
    (Notify { slot: slot.clone() }, Signal { slot })
}

impl<T> Signal<T> {
    fn take(&self, waker: &Waker) -> Option<T> {
        let mut s = self.slot.lock().ok()?;
        let v = s.value.take();
        if v.is_none() {
            s.waker = Some(waker.clone());
        }
        v
    }

    /// Resolves when the signal is filled, polling `rank`'s device as described in the
    /// module docs; [`Error::Timeout`] after the rank's timeout.
    pub(crate) fn wait(self, op: &'static str, rank: &Rank) -> DeviceWait<T> {
        DeviceWait {
            op,
            rank: rank.clone(),
            signal: self,
            deadline: None,
        }
    }
}

/// See [`Signal::wait`].
#[derive(Debug)]
pub(crate) struct DeviceWait<T> {
    op: &'static str,
    rank: Rank,
    signal: Signal<T>,
    /// Set at the first poll.
    deadline: Option<Instant>,
}

impl<T> Unpin for DeviceWait<T> {}

impl<T> Future for DeviceWait<T> {
    type Output = Result<T>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T>> {
        if let Some(v) = self.signal.take(cx.waker()) {
            return Poll::Ready(Ok(v));
        }
        let now = Instant::now();
        match self.deadline {
            // First poll: give the executor its turn before touching the device.
            None => self.deadline = Some(now + self.rank.timeout()),
            Some(deadline) => {
                self.rank.poll_now();
                if let Some(v) = self.signal.take(cx.waker()) {
                    return Poll::Ready(Ok(v));
                }
                if now >= deadline {
                    return Poll::Ready(Err(self.rank.loss_or(
                        self.op,
                        Error::Timeout {
                            op: self.op,
                            rank: self.rank.index(),
                            after: self.rank.timeout(),
                        },
                    )));
                }
            }
        }
        // The callback only runs when the device is polled: come back to poll it again.
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// Runs `fut` to completion on this thread: whenever it is pending, waits (at most their
/// timeout) for the submitted work of `ranks`' devices, which runs the callbacks it waits
/// for, instead of spinning.
pub(crate) fn block_on<F: Future>(ranks: &[Rank], fut: F) -> F::Output {
    let mut fut = pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
        for (i, r) in ranks.iter().enumerate() {
            if !ranks[..i].iter().any(|o| o.shares_device_with(r)) {
                r.wait_submitted();
            }
        }
    }
}

/// The output of a future that native wgpu resolves at once (an error scope's pop),
/// without blocking; a backend that resolves it later (WebGPU in a browser) is waited on.
pub(crate) fn resolve<F: Future>(fut: F) -> F::Output {
    let mut fut = pin!(fut);
    match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => pollster::block_on(fut),
    }
}
