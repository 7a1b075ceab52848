//! The `_async` calls never block the thread that polls them: run on an executor that
//! never polls a device, they return `Pending` (yielding to the executor) and still
//! finish, with the bits of the blocking calls.

mod common;

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use common::lin;
use wgpu_tp::{Activation, DistTensor, ParallelMlp, Placement};

/// Counts the wake-ups a future asks for.
struct Count(AtomicUsize);

impl Wake for Count {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// Polls `fut` until it is ready, only when it asked to be woken, never touching a
/// device; returns its output and how many times it was `Pending`.
fn run<F: Future>(fut: F) -> (F::Output, usize) {
    let count = Arc::new(Count(AtomicUsize::new(0)));
    let waker = Waker::from(count.clone());
    let mut cx = Context::from_waker(&waker);
    let mut fut = pin!(fut);
    let mut pending = 0;
    loop {
        let woken = count.0.load(Ordering::SeqCst);
        match fut.as_mut().poll(&mut cx) {
            Poll::Ready(v) => return (v, pending),
            Poll::Pending => pending += 1,
        }
        // A future that is pending without having asked to be woken would hang here.
        assert!(
            count.0.load(Ordering::SeqCst) > woken,
            "pending with no wake-up asked for"
        );
        assert!(pending < 10_000_000, "no progress");
    }
}

#[test]
fn async_forwards_and_collectives_yield_and_never_block() {
    for group in common::groups(2) {
        let (w1, w2) = (vec![0.5f32; 8 * 16], vec![0.25f32; 16 * 8]);
        let mlp =
            ParallelMlp::from_full(&group, lin(&w1, 8, 16), lin(&w2, 16, 8), Activation::Relu)
                .unwrap();
        let x: Vec<f32> = (0..32).map(|i| i as f32 / 7.0).collect();
        let xd = DistTensor::replicate(&group, &x, [4, 8]).unwrap();
        let want = mlp.forward(&xd).unwrap().to_host().unwrap();
        let (got, pending) = run(async {
            let y = mlp.forward_async(&xd).await?;
            y.to_host_async().await
        });
        common::assert_same_bits(&got.unwrap(), &want, "async forward");
        assert!(pending >= 1, "the forward never yielded");

        let p = xd.redistribute(Placement::Partial).unwrap();
        let (r, pending) = run(p.all_reduce_async());
        let sum = r.unwrap();
        assert!(pending >= 1 || group.ranks()[0].shares_device_with(&group.ranks()[1]));
        let (per_rank, _) = run(sum.to_host_per_rank_async());
        for v in per_rank.unwrap() {
            common::assert_same_bits(&v, &x, "all_reduce_async");
        }
        let (g, _) = run(async {
            xd.redistribute(Placement::Shard(1))?
                .all_gather_async()
                .await
        });
        common::assert_same_bits(&g.unwrap().to_host().unwrap(), &x, "all_gather_async");
        let (s, _) = run(p.reduce_scatter_async(0));
        assert_eq!(s.unwrap().placement(), Placement::Shard(0));
        let (b, _) = run(xd.broadcast_async(1));
        common::assert_same_bits(&b.unwrap().to_host().unwrap(), &x, "broadcast_async");
        let (idle, pending) = run(group.wait_idle_async());
        idle.unwrap();
        assert!(pending >= 1, "wait_idle_async never yielded");
    }
}
