//! Regression tests for the defects found by trying the library as a new user: each
//! failed (a panic, a wrong answer or a misleading message) before its fix.

mod common;

use common::lin;

use common::build;
use wgpu_tp::BoxFuture;
use wgpu_tp::{
    ops, wgpu, Activation, Collective, ColumnParallelConfig, ColumnParallelLinear,
    DeviceCollective, DistTensor, Error, Group, HostCollective, Numerics, ParallelMlp, Placement,
    RowParallelConfig, RowParallelLinear, Tensor, WeightLayout,
};

#[test]
fn every_kernel_after_device_loss_is_device_lost_not_a_panic() {
    let Some(group) = common::fresh_group(2) else {
        return;
    };
    let (w1, w2) = (vec![0.5f32; 8 * 16], vec![0.25f32; 16 * 8]);
    let mlp =
        ParallelMlp::from_full(&group, lin(&w1, 8, 16), lin(&w2, 16, 8), Activation::Relu).unwrap();
    let x = DistTensor::replicate(&group, &[1.0; 32], [4, 8]).unwrap();
    let r1 = &group.ranks()[1];
    let a = Tensor::from_host(r1, &[1.0; 16], [4, 4]).unwrap();
    r1.device().destroy();
    let lost = |what: &str, e: Result<(), Error>| {
        assert!(
            matches!(e, Err(Error::DeviceLost { rank: 1, .. })),
            "{what} after destroy: {e:?}"
        );
    };
    // Each is the first kernel dispatch on the lost device since something polled it.
    lost("ops::add", ops::add(&a, &a).map(drop));
    lost(
        "ops::matmul",
        ops::matmul(&a, &a, None, WeightLayout::InOut, Activation::Identity).map(drop),
    );
    lost(
        "ops::activation",
        ops::activation(&a, Activation::GeluErf).map(drop),
    );
    lost("ops::slice", ops::slice(&a, 1, 1, [2, 2]).map(drop));
    lost(
        "redistribute to a shard",
        x.redistribute(Placement::Shard(1)).map(drop),
    );
    lost("mlp.forward", mlp.forward(&x).map(drop));
}

#[test]
fn size_arithmetic_that_would_overflow_is_an_error() {
    let group = group_or_skip!(2);
    let huge = (1usize << 63) + 1;
    let e = DistTensor::shard(&group, &[1., 2.], [huge, 2], 0).unwrap_err();
    assert!(matches!(e, Error::Shape { .. }), "{e:?}");
    let e = ColumnParallelLinear::from_full(
        &group,
        lin(&[1.0; 2], huge, 2),
        ColumnParallelConfig::default(),
    )
    .unwrap_err();
    assert!(matches!(e, Error::Shape { .. }), "{e:?}");
    // The transports, called directly with nothing or a root that is not a rank.
    let t = Tensor::from_host(&group.ranks()[0], &[1.0; 4], [2, 2]).unwrap();
    for c in [&HostCollective as &dyn Collective, &DeviceCollective] {
        let e = pollster::block_on(c.all_reduce(&[])).unwrap_err();
        assert!(matches!(e, Error::Shape { .. }), "{e:?}");
        let e = pollster::block_on(c.all_gather(&[], 0)).unwrap_err();
        assert!(matches!(e, Error::Shape { .. }), "{e:?}");
        let e = pollster::block_on(c.reduce_scatter(&[], 0, &[])).unwrap_err();
        assert!(matches!(e, Error::Shape { .. }), "{e:?}");
        let e = pollster::block_on(c.broadcast(std::slice::from_ref(&t), 3)).unwrap_err();
        assert!(matches!(e, Error::InvalidArgument { .. }), "{e:?}");
        let e = pollster::block_on(c.all_gather(std::slice::from_ref(&t), 2)).unwrap_err();
        assert!(matches!(e, Error::InvalidArgument { .. }), "{e:?}");
        // Shard sizes whose sum overflows (it would wrap to the right total in release).
        let two = [t.clone(), t.clone()];
        let e = pollster::block_on(c.reduce_scatter(&two, 0, &[usize::MAX, 3])).unwrap_err();
        assert!(matches!(e, Error::Shape { .. }), "{e:?}");
    }
}

#[test]
fn a_slice_window_that_overflows_is_refused_not_read_from_freed_memory() {
    let group = group_or_skip!(1);
    let r = &group.ranks()[0];
    drop(Tensor::from_host(r, &[7.0; 8], [2, 4]).unwrap());
    let a = Tensor::from_host(r, &[1.0; 8], [2, 4]).unwrap();
    for (row0, col0) in [(usize::MAX, 0), (0, usize::MAX), (usize::MAX - 1, 0)] {
        let e = ops::slice(&a, row0, col0, [2, 4]);
        assert!(matches!(e, Err(Error::Shape { op: "slice", .. })), "{e:?}");
    }
}

#[test]
fn the_buffer_cache_stays_under_its_cap_and_trims() {
    let cap = 64 << 10;
    let Some(group) = build(
        Group::builder()
            .ranks_on_one_adapter(2)
            .buffer_cache_bytes(cap),
        "small buffer cache",
    ) else {
        return;
    };
    let (w1, w2) = (vec![0.5f32; 64 * 128], vec![0.25f32; 128 * 64]);
    let mlp = ParallelMlp::from_full(
        &group,
        lin(&w1, 64, 128),
        lin(&w2, 128, 64),
        Activation::Relu,
    )
    .unwrap();
    let mut most = 0;
    // A new batch size each time: nothing is ever reused, so only the cap bounds the cache.
    for batch in 1..40 {
        let x = DistTensor::replicate(&group, &vec![1.0; batch * 64], [batch, 64]).unwrap();
        mlp.forward(&x).unwrap().to_host().unwrap();
        for r in group.ranks() {
            assert!(
                r.stats().cached_bytes <= cap,
                "batch {batch}: {} kept",
                r.stats().cached_bytes
            );
            most = most.max(r.stats().cached_bytes);
        }
    }
    assert!(most > cap / 2, "the cache was used ({most} bytes at most)");
    assert_eq!(group.ranks()[0].buffer_cache_cap(), cap);
    group.trim_caches();
    assert!(group.ranks().iter().all(|r| r.stats().cached_bytes == 0));
    // The default cap, documented in README.
    let g = group_or_skip!(1);
    assert_eq!(
        g.ranks()[0].buffer_cache_cap(),
        wgpu_tp::DEFAULT_BUFFER_CACHE_BYTES
    );
}

/// Returns one tensor too few, or tensors of the wrong shape.
struct Faulty {
    short: bool,
}

impl Collective for Faulty {
    fn all_reduce<'a>(
        &'a self,
        inputs: &'a [Tensor],
    ) -> BoxFuture<'a, wgpu_tp::Result<Vec<Tensor>>> {
        Box::pin(async move {
            if self.short {
                return Ok(inputs[1..].to_vec());
            }
            let r = inputs[0].rank();
            let wrong = Tensor::from_host(r, &[0.0; 2], [1, 2])?;
            Ok(inputs.iter().map(|_| wrong.clone()).collect())
        })
    }
    fn all_gather<'a>(
        &'a self,
        inputs: &'a [Tensor],
        _: usize,
    ) -> BoxFuture<'a, wgpu_tp::Result<Vec<Tensor>>> {
        // The inputs themselves: the right count and ranks, the wrong shape.
        Box::pin(async move { Ok(inputs.to_vec()) })
    }
    fn reduce_scatter<'a>(
        &'a self,
        inputs: &'a [Tensor],
        _: usize,
        _: &'a [usize],
    ) -> BoxFuture<'a, wgpu_tp::Result<Vec<Tensor>>> {
        Box::pin(async move { Ok(inputs.to_vec()) })
    }
    fn broadcast<'a>(
        &'a self,
        inputs: &'a [Tensor],
        _: usize,
    ) -> BoxFuture<'a, wgpu_tp::Result<Vec<Tensor>>> {
        Box::pin(async move { Ok(inputs.iter().rev().cloned().collect()) })
    }
}

#[test]
fn a_custom_collective_returning_the_wrong_tensors_is_refused() {
    for short in [true, false] {
        let Some(group) = build(
            Group::builder()
                .ranks_on_one_adapter(2)
                .collective(Box::new(Faulty { short })),
            "faulty collective",
        ) else {
            return;
        };
        let x = DistTensor::replicate(&group, &[1.0; 8], [2, 4]).unwrap();
        let p = x.redistribute(Placement::Partial).unwrap();
        let invalid = |what: &str, e: wgpu_tp::Result<DistTensor>| {
            assert!(
                matches!(e, Err(Error::InvalidArgument { .. })),
                "{what}: {e:?}"
            );
        };
        invalid("all_reduce", p.all_reduce());
        invalid("reduce_scatter", p.reduce_scatter(1));
        let s = x.redistribute(Placement::Shard(1)).unwrap();
        invalid("all_gather", s.all_gather());
        invalid("broadcast (ranks swapped)", x.broadcast(0));
    }
}

#[test]
fn handed_out_buffers_are_never_reused_and_a_device_is_one_rank() {
    let group = group_or_skip!(2);
    let r = &group.ranks()[0];
    let t = Tensor::from_host(r, &[3.0; 16], [4, 4]).unwrap();
    for (b, _) in t.buffers() {
        b.destroy();
    }
    drop(t);
    // A tensor of the same size gets a fresh buffer, not the destroyed one.
    let u = Tensor::from_host(r, &[5.0; 16], [4, 4]).unwrap();
    assert_eq!(ops::add(&u, &u).unwrap().to_host().unwrap(), vec![10.0; 16]);
    let pair = (r.device().clone(), r.queue().clone());
    let e = Group::builder()
        .from_devices(vec![pair.clone(), pair])
        .build()
        .unwrap_err();
    assert!(
        matches!(&e, Error::InvalidArgument { message, .. } if message.contains("twice")),
        "{e:?}"
    );
}

#[test]
fn devices_of_two_instances_are_two_ranks() {
    let (Some(a), Some(b)) = (
        common::device_of_its_own_instance(),
        common::device_of_its_own_instance(),
    ) else {
        return;
    };
    // wgpu numbers devices per instance: the first of each has the same id and compares
    // equal, which is what refused them as "given twice" before.
    assert!(
        a.0 == b.0,
        "the two instances' first devices share their id"
    );
    let group = Group::builder()
        .from_devices(vec![a.clone(), b])
        .build()
        .expect("two devices of two instances are two ranks");
    assert_eq!(group.world_size(), 2);
    assert!(!group.ranks()[0].shares_device_with(&group.ranks()[1]));
    let x = DistTensor::replicate(&group, &[1.5; 6], [2, 3]).unwrap();
    let y = x
        .redistribute(Placement::Partial)
        .unwrap()
        .all_reduce()
        .unwrap();
    assert_eq!(y.to_host_per_rank().unwrap(), vec![vec![1.5; 6]; 2]);
    // The same device twice is still one device.
    let e = Group::builder()
        .from_devices(vec![a.clone(), a])
        .build()
        .unwrap_err();
    assert!(
        matches!(&e, Error::InvalidArgument { message, .. } if message.contains("device 1 was given twice")),
        "{e:?}"
    );
}

#[test]
fn a_callback_calling_into_the_crate_during_its_submission_does_not_deadlock() {
    // A device of its own: the callback must not fire inside another test's call.
    let Some(group) = common::fresh_group(1) else {
        return;
    };
    let r = group.ranks()[0].clone();
    let (tx, rx) = std::sync::mpsc::channel();
    // The scenario on a thread of its own, bounded below: a deadlock fails the test.
    std::thread::spawn(move || {
        let a = Tensor::from_host(&r, &[1.0; 64], [1, 64]).unwrap();
        // Nothing in flight: wgpu holds the callback for the next submission's upkeep,
        // which runs it on the submitting thread, inside `Queue::submit`.
        r.wait_idle().unwrap();
        type Slot = Option<(std::thread::ThreadId, Result<Tensor, Error>)>;
        let slot = std::sync::Arc::new(std::sync::Mutex::new(Slot::None));
        let (a2, slot2) = (a.clone(), slot.clone());
        r.queue().on_submitted_work_done(move || {
            // The app calls back into the crate on the same rank: a dispatch, a submission.
            let t = ops::add(&a2, &a2);
            *slot2.lock().unwrap() = Some((std::thread::current().id(), t));
        });
        let outer = ops::add(&a, &a).unwrap();
        let inner = slot.lock().unwrap().take();
        let inner = inner.map(|(id, t)| (id, t.and_then(|t| t.to_host())));
        tx.send((std::thread::current().id(), outer.to_host(), inner))
            .unwrap();
    });
    let (me, outer, inner) = rx
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("a callback calling into the crate deadlocked the submission");
    assert_eq!(outer.unwrap(), vec![2.0; 64]);
    let (ran_on, inner) = inner.expect("the callback ran inside the crate's submission");
    assert_eq!(ran_on, me, "wgpu ran the callback on the submitting thread");
    assert_eq!(inner.unwrap(), vec![2.0; 64]);
}

#[test]
fn replicate_partial_replicate_keeps_negative_zero() {
    for tp in [2, 3] {
        for group in common::groups(tp) {
            let v = [-0.0f32, 1.0, -0.0, -2.5, 0.0, -0.0];
            let x = DistTensor::replicate(&group, &v, [2, 3]).unwrap();
            let back = x
                .redistribute(Placement::Partial)
                .unwrap()
                .redistribute(Placement::Replicate)
                .unwrap();
            for (r, got) in back.to_host_per_rank().unwrap().iter().enumerate() {
                common::assert_same_bits(got, &v, &format!("tp {tp} rank {r}"));
            }
        }
    }
}

#[test]
fn messages_name_the_layer_and_the_adapters_that_exist() {
    let group = group_or_skip!(4);
    // tp larger than the dimension: the layer the user called, not `split_sizes`.
    let e = ColumnParallelLinear::from_full(&group, lin(&[1.0; 6], 2, 3), Default::default())
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::InvalidArgument {
                op: "column_parallel.from_full",
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("tp size 4 is larger"), "{e}");
    let e = ParallelMlp::from_full(
        &group,
        lin(&[1.0; 6], 2, 3),
        lin(&[1.0; 6], 3, 2),
        Activation::Relu,
    )
    .unwrap_err();
    assert!(
        e.to_string().starts_with("parallel_mlp.from_full (fc1)"),
        "{e}"
    );
    let e =
        RowParallelLinear::from_full(&group, lin(&[1.0; 6], 3, 2), RowParallelConfig::default())
            .unwrap_err();
    assert!(
        matches!(
            e,
            Error::InvalidArgument {
                op: "row_parallel.from_full",
                ..
            }
        ),
        "{e:?}"
    );
    // No adapter: the ones that do exist are listed.
    let e = Group::builder()
        .adapter_name("no-such-adapter")
        .build()
        .unwrap_err();
    let name = group.ranks()[0].adapter_info().name.clone();
    assert!(
        matches!(&e, Error::NoAdapter { available, .. } if available.iter().any(|a| a.contains(&name))),
        "{e:?}"
    );
    assert!(e.to_string().contains(&name), "{e}");
}

#[test]
fn tp_invariant_and_size_refusals_come_when_the_layer_is_made() {
    let Some(group) = build(
        Group::builder()
            .ranks_on_one_adapter(2)
            .numerics(Numerics::TpInvariant),
        "tp-invariant tp 2",
    ) else {
        return;
    };
    // K = 12 is not a multiple of 8: refused by from_full, naming the layer.
    let e =
        RowParallelLinear::from_full(&group, lin(&[1.0; 48], 12, 4), RowParallelConfig::default())
            .unwrap_err();
    assert!(
        matches!(
            e,
            Error::InvalidArgument {
                op: "row_parallel.from_full",
                ..
            }
        ),
        "{e:?}"
    );
    let e = ColumnParallelLinear::from_full(&group, lin(&[1.0; 48], 12, 4), Default::default())
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::InvalidArgument {
                op: "column_parallel.from_full",
                ..
            }
        ),
        "{e:?}"
    );
    // A gathered output row wider than a buffer may be: refused before any compute.
    let mut limits = wgpu::Limits::downlevel_defaults();
    limits.max_storage_buffer_binding_size = 4096;
    limits.max_buffer_size = 4096;
    let Some(small) = build(
        Group::builder()
            .ranks_on_one_adapter(2)
            .required_limits(limits),
        "4 KiB buffers",
    ) else {
        return;
    };
    let w = vec![1.0f32; 4 * 2048];
    let gathered = ColumnParallelConfig::default()
        .gather_output(true)
        .activation(Activation::Identity);
    let e = ColumnParallelLinear::from_full(&small, lin(&w, 4, 2048), gathered).unwrap_err();
    assert!(
        matches!(
            e,
            Error::BufferTooLarge {
                op: "column_parallel.from_full",
                ..
            }
        ),
        "{e:?}"
    );
    // Kept sharded, each rank's 1024 columns fit.
    let sharded = gathered.gather_output(false);
    assert!(ColumnParallelLinear::from_full(&small, lin(&w, 4, 2048), sharded).is_ok());
}

#[test]
fn a_timeout_of_duration_max_means_no_limit() {
    let Some(group) = build(
        Group::builder()
            .ranks_on_one_adapter(2)
            .timeout(std::time::Duration::MAX),
        "no timeout",
    ) else {
        return;
    };
    let x = DistTensor::replicate(&group, &[1.5; 8], [2, 4]).unwrap();
    let y = x
        .redistribute(Placement::Partial)
        .unwrap()
        .all_reduce()
        .unwrap();
    assert_eq!(y.to_host().unwrap(), vec![1.5; 8]);
    group.wait_idle().unwrap();
}
