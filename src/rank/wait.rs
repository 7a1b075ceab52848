//! Waiting for GPU work: a callback fills a [`Signal`], and [`DeviceWait`] resolves once
//! it is filled.
//!
//! Polled by an app's executor, a `DeviceWait` never blocks the thread: it yields once,
//! then polls the device without waiting each time it is polled again, until the callback
//! has run or the rank's timeout has passed. Run by [`block_on`] (every blocking call of
//! the crate), the same future waits on the device for its own submission instead, at
//! most the time left before its deadline, so nothing spins and nothing waits for more
//! than it needs.
//!
//! On wasm32 (WebGPU in a browser) there is no blocking and no device to poll: the browser
//! runs the callbacks from its event loop, and the callback's wake is what polls the
//! future again. A `DeviceWait` there only awaits its signal (no clock is read:
//! `std::time::Instant` panics on wasm32-unknown-unknown, so the rank's timeout is not
//! applied there; a lost device fails its pending map callbacks, which ends the wait).
#[cfg(not(target_arch = "wasm32"))]
use std::cell::Cell;
use std::future::Future;
#[cfg(not(target_arch = "wasm32"))]
use std::pin::pin;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
#[cfg(not(target_arch = "wasm32"))]
use std::time::Instant;

use super::Rank;
#[cfg(not(target_arch = "wasm32"))]
use crate::error::Error;
use crate::error::Result;

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

    /// Resolves when the signal is filled by work of `submission` on `rank` (or of
    /// everything submitted so far, for `None`); see the module docs.
    pub(crate) fn wait(
        self,
        op: &'static str,
        rank: &Rank,
        submission: Option<wgpu::SubmissionIndex>,
    ) -> DeviceWait<T> {
        DeviceWait {
            op,
            rank: rank.clone(),
            signal: self,
            submission,
            started: false,
            #[cfg(not(target_arch = "wasm32"))]
            deadline: None,
        }
    }
}

/// See [`Signal::wait`].
#[derive(Debug)]
#[cfg_attr(target_arch = "wasm32", allow(dead_code))]
pub(crate) struct DeviceWait<T> {
    op: &'static str,
    rank: Rank,
    signal: Signal<T>,
    submission: Option<wgpu::SubmissionIndex>,
    started: bool,
    /// Set at the first poll; `None` when the timeout is too long to have one.
    #[cfg(not(target_arch = "wasm32"))]
    deadline: Option<Instant>,
}

impl<T> Unpin for DeviceWait<T> {}

#[cfg(not(target_arch = "wasm32"))]
thread_local! {
    /// Set while [`block_on`] runs a future on this thread: waits may block then.
    static BLOCKING: Cell<bool> = const { Cell::new(false) };
}

impl<T> Future for DeviceWait<T> {
    type Output = Result<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T>> {
        let this = self.get_mut();
        if let Some(v) = this.signal.take(cx.waker()) {
            return Poll::Ready(Ok(v));
        }
        // The browser runs the callback, which wakes this task (the waker is kept by
        // `take`): nothing to poll, nothing to spin on.
        #[cfg(target_arch = "wasm32")]
        return Poll::Pending;
        #[cfg(not(target_arch = "wasm32"))]
        this.poll_device(cx)
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl<T> DeviceWait<T> {
    /// Polls (or, under [`block_on`], waits on) the device until the signal is filled or
    /// the deadline passes.
    fn poll_device(&mut self, cx: &mut Context<'_>) -> Poll<Result<T>> {
        let blocking = BLOCKING.with(Cell::get);
        if !self.started {
            self.started = true;
            self.deadline = Instant::now().checked_add(self.rank.timeout());
            if !blocking {
                // Give the executor its turn before touching the device.
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
        }
        if blocking {
            let left = self
                .deadline
                .map(|d| d.saturating_duration_since(Instant::now()));
            self.rank.wait_for(self.submission.clone(), left);
        } else {
            self.rank.poll_now();
        }
        if let Some(v) = self.signal.take(cx.waker()) {
            return Poll::Ready(Ok(v));
        }
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            let timeout = Error::Timeout {
                op: self.op,
                rank: self.rank.index(),
                after: self.rank.timeout(),
            };
            return Poll::Ready(Err(self.rank.lost_now_or(self.op, timeout)));
        }
        // The callback only runs when the device is polled: come back to poll it again.
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// Runs `fut` to completion on this thread, its device waits blocking (see the module
/// docs): what every blocking call of the crate runs its `_async` twin on. Not on wasm32,
/// where nothing may block the page's thread.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn block_on<F: Future>(fut: F) -> F::Output {
    /// Restores the flag however the future ends (a panic included).
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            BLOCKING.with(|b| b.set(self.0));
        }
    }
    let _restore = Restore(BLOCKING.with(|b| b.replace(true)));
    let mut fut = pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
    }
}

/// The output of a future that native wgpu resolves at once (an error scope's pop),
/// without blocking; a backend that resolves it later (WebGPU in a browser) is waited on.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn resolve<F: Future>(fut: F) -> F::Output {
    let mut fut = pin!(fut);
    match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => pollster::block_on(fut),
    }
}

/// The error an error scope's pop reports, if wgpu knows it now. In a browser the pop
/// resolves later, on the event loop, and nothing may block: the error is then put, once
/// known, in `sink` (the rank's uncaptured errors), which the rank's next call reports.
#[cfg(target_arch = "wasm32")]
pub(crate) fn resolve_or_defer<F>(fut: F, sink: &Arc<Mutex<Vec<String>>>) -> Option<wgpu::Error>
where
    F: Future<Output = Option<wgpu::Error>> + 'static,
{
    let mut fut = Box::pin(fut);
    match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => {
            let sink = Arc::clone(sink);
            wasm_bindgen_futures::spawn_local(async move {
                if let Some(e) = fut.await {
                    if let Ok(mut v) = sink.lock() {
                        v.push(super::device::describe(&e));
                    }
                }
            });
            None
        }
    }
}
