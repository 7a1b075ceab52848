//! Batched submission. Inside [`batched`], the kernels this thread dispatches are
//! encoded (each in its own error scopes, as always) but kept per device instead of
//! submitted one by one; the section's end submits each device's batch at once. The next
//! submission on a device (a read-back, an upload, another thread's dispatch) takes what
//! that device holds first, so queue order is never changed.
//!
//! A section is synchronous (a closure, never across an `await`) and ends before the
//! crate's call returns: every public call still returns with its work submitted, so an
//! app that reads a tensor's buffers on its own queue sees it.
//!
//! One submission per op is what a decode step's many small kernels pay most for on a
//! CPU adapter (llvmpipe wakes its queue thread for each), and the submission's fixed
//! cost on a GPU; wgpu's own examples, burn and candle batch the same way.

use std::cell::RefCell;
use std::sync::PoisonError;

use super::Rank;
use crate::error::Result;

/// Command buffers a device keeps before it submits them anyway: a long section (a
/// prefill's hundreds of kernels) starts its work on the device as it goes.
const PENDING_MAX: usize = 64;

thread_local! {
    /// `Some` while a section is open on this thread: one rank per device it deferred
    /// work on.
    static SECTION: RefCell<Option<Vec<Rank>>> = const { RefCell::new(None) };
}

/// Runs `f` as a batched section (see the module docs); nested sections join the
/// outermost. `f`'s error comes first; a failed submission at the end is `op`'s error.
pub(crate) fn batched<T>(op: &'static str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    let outermost = SECTION.with(|s| {
        let mut s = s.borrow_mut();
        if s.is_some() {
            return false;
        }
        *s = Some(Vec::new());
        true
    });
    if !outermost {
        return f();
    }
    // Submits what is kept if `f` panics (the normal path empties the section first).
    struct Close;
    impl Drop for Close {
        fn drop(&mut self) {
            for rank in take_section() {
                let _ = rank.flush("batch");
            }
        }
    }
    let close = Close;
    let out = f();
    let ranks = take_section();
    drop(close);
    let mut flushed = Ok(());
    for rank in ranks {
        let done = rank.flush(op);
        if flushed.is_ok() {
            flushed = done;
        }
    }
    let value = out?;
    flushed.map(|()| value)
}

fn take_section() -> Vec<Rank> {
    SECTION.with(|s| s.borrow_mut().take()).unwrap_or_default()
}

impl Rank {
    /// Submits `cb` now, or keeps it for the next submission on this device while this
    /// thread is in a [`batched`] section. Call inside [`Rank::scoped`].
    pub(crate) fn submit_or_keep(&self, cb: wgpu::CommandBuffer) {
        let kept = SECTION.with(|s| {
            let mut s = s.borrow_mut();
            let ranks = s.as_mut()?;
            if !ranks.iter().any(|r| r.shares_device_with(self)) {
                ranks.push(self.clone());
            }
            Some(())
        });
        if kept.is_none() {
            self.submit([cb]);
            return;
        }
        let full = {
            let mut pending = self.pending();
            pending.push(cb);
            pending.len() >= PENDING_MAX
        };
        if full {
            self.submit([]);
        }
    }

    /// Submits what this device keeps, then `cbs`, in one submission. Call inside
    /// [`Rank::scoped`] (under the GL lock).
    pub(crate) fn submit(
        &self,
        cbs: impl IntoIterator<Item = wgpu::CommandBuffer>,
    ) -> wgpu::SubmissionIndex {
        // Held through the submission: another thread's submission cannot overtake it.
        let mut pending = self.pending();
        let mut all = std::mem::take(&mut *pending);
        all.extend(cbs);
        self.queue().submit(all)
    }

    /// Submits what this device keeps, if anything, inside `op`'s error scopes.
    pub(crate) fn flush(&self, op: &'static str) -> Result<()> {
        if self.pending().is_empty() {
            return Ok(());
        }
        self.scoped(op, || {
            self.submit([]);
            Ok(())
        })
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, Vec<wgpu::CommandBuffer>> {
        self.inner
            .dev
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::batched;
    use crate::{ops, Error, Group, Tensor};

    fn group(ranks: usize) -> Option<Group> {
        match Group::builder().ranks_sharing_one_device(ranks).build() {
            Ok(g) => Some(g),
            Err(Error::NoAdapter { .. }) if std::env::var("CI").is_err() => None,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn kept_work_runs_before_a_later_upload_into_its_reused_buffer() {
        let Some(g) = group(1) else { return };
        let r = &g.ranks()[0];
        let b = Tensor::from_host(r, &[1.0; 256], [1, 256]).unwrap();
        let (sum, reused) = batched("test", || {
            let a = Tensor::from_host(r, &[2.0; 256], [1, 256])?;
            let sum = ops::add(&a, &b)?;
            assert_eq!(r.pending().len(), 1, "the add is kept, not submitted");
            let buffer = a.bands()[0].buffer().clone();
            drop(a);
            // The pool hands the same buffer out again; the upload is a submission, which
            // takes the kept add first, so the add still reads 2.0.
            let c = Tensor::from_host(r, &[5.0; 256], [1, 256])?;
            assert!(r.pending().is_empty());
            Ok((sum, *c.bands()[0].buffer() == buffer))
        })
        .unwrap();
        assert!(reused, "the test needs the pool to reuse the buffer");
        assert_eq!(sum.to_host().unwrap(), vec![3.0; 256]);
    }

    #[test]
    fn a_section_submits_what_it_kept_on_every_device_when_it_ends() {
        let Some(g) = group(2) else { return };
        let devices = crate::Group::builder()
            .ranks_on_one_adapter(2)
            .build()
            .unwrap();
        let ranks = [&g.ranks()[1], &devices.ranks()[0], &devices.ranks()[1]];
        let ones: Vec<Tensor> = ranks
            .iter()
            .map(|r| Tensor::from_host(r, &[1.0; 64], [1, 64]).unwrap())
            .collect();
        let sums = batched("test", || {
            // Nested sections join the outermost.
            batched("inner", || {
                ones.iter()
                    .map(|t| ops::add(t, t))
                    .collect::<crate::Result<Vec<_>>>()
            })
        })
        .unwrap();
        for r in ranks {
            assert!(r.pending().is_empty(), "rank {} kept work", r.index());
        }
        for s in sums {
            // Read through the tensor's own buffer on the app's side would see it too:
            // nothing is left unsubmitted once the crate's call returns.
            assert_eq!(s.to_host().unwrap(), vec![2.0; 64]);
        }
        // Outside a section, every dispatch is submitted at once.
        let t = ops::add(&ones[0], &ones[0]).unwrap();
        assert!(ranks[0].pending().is_empty());
        assert_eq!(t.to_host().unwrap(), vec![2.0; 64]);
    }

    #[test]
    fn a_panic_in_a_section_submits_its_work_and_closes_it() {
        let Some(g) = group(1) else { return };
        let r = g.ranks()[0].clone();
        let one = Tensor::from_host(&r, &[1.0; 64], [1, 64]).unwrap();
        let kept = std::sync::Mutex::new(None);
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _ = batched("test", || {
                *kept.lock().unwrap() = Some(ops::add(&one, &one)?);
                panic!("inside a section");
                #[allow(unreachable_code)]
                Ok(())
            });
        }));
        assert!(caught.is_err());
        assert!(r.pending().is_empty());
        let sum = kept.lock().unwrap().take().unwrap();
        assert_eq!(sum.to_host().unwrap(), vec![2.0; 64]);
        // The thread is out of the section: the next dispatch is submitted at once.
        let _t = ops::add(&one, &one).unwrap();
        assert!(r.pending().is_empty());
    }

    #[test]
    fn an_error_in_a_section_is_the_sections_error_and_its_work_still_runs() {
        let Some(g) = group(1) else { return };
        let r = &g.ranks()[0];
        let one = Tensor::from_host(r, &[1.0; 64], [1, 64]).unwrap();
        let wide = Tensor::from_host(r, &[1.0; 128], [1, 128]).unwrap();
        let mut kept = None;
        let e = batched("test", || {
            kept = Some(ops::add(&one, &one)?);
            ops::add(&one, &wide)
        });
        assert!(matches!(e, Err(Error::Shape { .. })), "{e:?}");
        assert!(r.pending().is_empty());
        assert_eq!(kept.unwrap().to_host().unwrap(), vec![2.0; 64]);
    }
}
