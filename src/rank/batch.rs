//! Batched submission. Inside [`batched`], the kernels this thread dispatches are
//! encoded (each in its own error scopes, as always) but kept per device instead of
//! submitted one by one; the section's end submits each device's batch at once. The next
//! submission on a device (a read-back, an upload, another thread's dispatch) submits what
//! that device keeps first, so queue order is never changed.
//!
//! A section is synchronous (a closure, never across an `await`) and ends before the
//! crate's call returns: every public call still returns with its work submitted, so an
//! app that reads a tensor's buffers on its own queue sees it. Only command buffers that
//! encoded without error are kept, and kept ones are submitted apart from anything else, in
//! error scopes of their own: if that submission fails (a buffer the app destroyed), the
//! sections whose work it held get the error when they end, whichever thread submitted it.
//!
//! The kept work is taken out under a short lock and submitted under the device's
//! reentrant submission gate (order.rs), never under a lock a wgpu callback could need:
//! `Queue::submit` runs callbacks on the submitting thread, and an app's may call back
//! into the crate on the same rank.
//!
//! One submission per op is what a decode step's many small kernels pay most for on a
//! CPU adapter (llvmpipe wakes its queue thread for each), and the submission's fixed
//! cost on a GPU; wgpu's own examples, burn and candle batch the same way.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::PoisonError;

use super::device::describe;
#[cfg(not(target_arch = "wasm32"))]
use super::wait::resolve;
use super::Rank;
use crate::error::{Error, Result};

/// Command buffers a device keeps before it submits them anyway: a long section (a
/// prefill's hundreds of kernels) starts its work on the device as it goes.
const PENDING_MAX: usize = 64;

/// What one device keeps for the sections open on it.
#[derive(Default)]
pub(crate) struct Kept {
    commands: Vec<wgpu::CommandBuffer>,
    /// The sections whose work `commands` holds.
    sections: Vec<u64>,
    /// Sections whose kept work a failed submission lost, with wgpu's message.
    lost: Vec<(u64, String)>,
}

/// An open section: its number and one rank per device it kept work on.
struct Section {
    id: u64,
    ranks: Vec<Rank>,
}

thread_local! {
    static SECTION: RefCell<Option<Section>> = const { RefCell::new(None) };
}

/// Runs `f` as a batched section (see the module docs); nested sections join the
/// outermost. `f`'s error comes first; a failed submission of the section's work is
/// `op`'s error.
pub(crate) fn batched<T>(op: &'static str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let outermost = SECTION.with(|s| {
        let mut s = s.borrow_mut();
        if s.is_some() {
            return false;
        }
        *s = Some(Section {
            id: NEXT.fetch_add(1, Ordering::Relaxed),
            ranks: Vec::new(),
        });
        true
    });
    if !outermost {
        return f();
    }
    // Submits what is kept if `f` panics (the normal path closes the section first).
    struct Close;
    impl Drop for Close {
        fn drop(&mut self) {
            if let Some(section) = take_section() {
                for rank in section.ranks {
                    let _ = rank.flush("batch", section.id);
                }
            }
        }
    }
    let close = Close;
    let out = f();
    let section = take_section();
    drop(close);
    let mut flushed = Ok(());
    if let Some(Section { id, ranks }) = section {
        for rank in ranks {
            let done = rank.flush(op, id);
            if flushed.is_ok() {
                flushed = done;
            }
        }
    }
    let value = out?;
    flushed.map(|()| value)
}

fn take_section() -> Option<Section> {
    SECTION.with(|s| s.borrow_mut().take())
}

impl Rank {
    /// Submits `cb` (encoded without error) now, inside `op`'s error scopes, or keeps it
    /// for the next submission on this device while this thread is in a [`batched`]
    /// section.
    pub(crate) fn submit_or_keep(&self, op: &'static str, cb: wgpu::CommandBuffer) -> Result<()> {
        let section = SECTION.with(|s| {
            let mut s = s.borrow_mut();
            let section = s.as_mut()?;
            if !section.ranks.iter().any(|r| r.shares_device_with(self)) {
                section.ranks.push(self.clone());
            }
            Some(section.id)
        });
        let Some(id) = section else {
            return self.scoped(op, || {
                self.submit([cb]);
                Ok(())
            });
        };
        let full = {
            let mut kept = self.kept();
            kept.commands.push(cb);
            if !kept.sections.contains(&id) {
                kept.sections.push(id);
            }
            kept.commands.len() >= PENDING_MAX
        };
        if full {
            let _gl = self.gl();
            let _order = self.order();
            self.submit_kept();
        }
        Ok(())
    }

    /// Submits what this device keeps (its own submission, see the module docs), then
    /// `cbs`. Call inside [`Rank::scoped`] (under the GL lock).
    pub(crate) fn submit(
        &self,
        cbs: impl IntoIterator<Item = wgpu::CommandBuffer>,
    ) -> wgpu::SubmissionIndex {
        // The gate is held through both submissions: another thread's cannot come between
        // them; a callback wgpu runs inside them on this thread may submit too (order.rs).
        let _order = self.order();
        self.submit_kept();
        self.queue().submit(cbs)
    }

    /// Submits the kept command buffers in error scopes of their own; on an error, the
    /// sections whose work they held are told when they end. Under the GL lock and the
    /// submission gate; the kept lock is only held to take the work out and to record a
    /// loss, never across the submission.
    fn submit_kept(&self) {
        let (commands, sections) = {
            let mut kept = self.kept();
            if kept.commands.is_empty() {
                return;
            }
            (
                std::mem::take(&mut kept.commands),
                std::mem::take(&mut kept.sections),
            )
        };
        let device = self.device();
        let oom = device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let validation = device.push_error_scope(wgpu::ErrorFilter::Validation);
        self.queue().submit(commands);
        #[cfg(not(target_arch = "wasm32"))]
        let failed = resolve(validation.pop()).or(resolve(oom.pop()));
        // In a browser the scopes resolve later: their errors come on a later call.
        #[cfg(target_arch = "wasm32")]
        let failed = {
            let sink = &self.inner.dev.uncaptured;
            let validation = super::resolve_or_defer(validation.pop(), sink);
            validation.or(super::resolve_or_defer(oom.pop(), sink))
        };
        if let Some(e) = failed {
            let message = describe(&e);
            self.kept()
                .lost
                .extend(sections.into_iter().map(|id| (id, message.clone())));
            // Uniforms made for the lost work may never have been written.
            self.kernels().forget_uniforms();
        }
    }

    /// Submits what this device keeps, if anything, and reports whether section `id`'s
    /// work was lost, as `op`'s error.
    fn flush(&self, op: &'static str, id: u64) -> Result<()> {
        let lost = {
            let _gl = self.gl();
            let _order = self.order();
            self.submit_kept();
            let mut kept = self.kept();
            let mine: Vec<String> = kept
                .lost
                .iter()
                .filter(|(s, _)| *s == id)
                .map(|(_, m)| m.clone())
                .collect();
            kept.lost.retain(|(s, _)| *s != id);
            mine.into_iter().next()
        };
        match lost {
            None => Ok(()),
            Some(message) => Err(self.loss_or(
                op,
                Error::Validation {
                    op,
                    rank: self.index(),
                    message,
                },
            )),
        }
    }

    fn order(&self) -> super::order::OrderGuard<'_> {
        self.inner.dev.order.hold()
    }

    fn kept(&self) -> std::sync::MutexGuard<'_, Kept> {
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
            assert_eq!(r.kept().commands.len(), 1, "the add is kept, not submitted");
            let buffer = a.bands()[0].buffer().clone();
            drop(a);
            // The pool hands the same buffer out again; the upload is a submission, which
            // takes the kept add first, so the add still reads 2.0.
            let c = Tensor::from_host(r, &[5.0; 256], [1, 256])?;
            assert!(r.kept().commands.is_empty());
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
            assert!(r.kept().commands.is_empty(), "rank {} kept work", r.index());
        }
        for s in sums {
            // Read through the tensor's own buffer on the app's side would see it too:
            // nothing is left unsubmitted once the crate's call returns.
            assert_eq!(s.to_host().unwrap(), vec![2.0; 64]);
        }
        // Outside a section, every dispatch is submitted at once.
        let t = ops::add(&ones[0], &ones[0]).unwrap();
        assert!(ranks[0].kept().commands.is_empty());
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
        assert!(r.kept().commands.is_empty());
        let sum = kept.lock().unwrap().take().unwrap();
        assert_eq!(sum.to_host().unwrap(), vec![2.0; 64]);
        // The thread is out of the section: the next dispatch is submitted at once.
        let _t = ops::add(&one, &one).unwrap();
        assert!(r.kept().commands.is_empty());
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
        assert!(r.kept().commands.is_empty());
        assert_eq!(kept.unwrap().to_host().unwrap(), vec![2.0; 64]);
    }

    #[test]
    fn kept_work_lost_to_another_threads_submission_is_the_sections_error() {
        let Some(g) = group(1) else { return };
        let r = g.ranks()[0].clone();
        let one = Tensor::from_host(&r, &[1.0; 64], [1, 64]).unwrap();
        let doomed = Tensor::from_host(&r, &[1.0; 64], [1, 64]).unwrap();
        let out = batched("test", || {
            let _sum = ops::add(&doomed, &one)?;
            // The app destroys a buffer it was handed while the add that reads it is kept.
            doomed.buffers()[0].0.destroy();
            // Another thread's op submits first, taking the kept add with it.
            let r2 = r.clone();
            let two = std::thread::spawn(move || {
                let t = Tensor::from_host(&r2, &[2.0; 8], [1, 8])?;
                ops::add(&t, &t)?.to_host()
            })
            .join()
            .unwrap();
            assert_eq!(
                two.unwrap(),
                vec![4.0; 8],
                "the other thread's own work is fine"
            );
            Ok(())
        });
        assert!(
            matches!(out, Err(Error::Validation { op: "test", .. })),
            "the section learns its work was lost: {out:?}"
        );
        assert!(r.kept().lost.is_empty());
        // The device goes on.
        assert_eq!(
            ops::add(&one, &one).unwrap().to_host().unwrap(),
            vec![2.0; 64]
        );
    }
}
