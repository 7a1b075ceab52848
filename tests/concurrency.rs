//! Several threads on one group at once: groups, ranks, tensors and layers are
//! `Send + Sync`, and concurrent forwards give the same bits as one thread alone.
//!
//! Native backends and GL both: wgpu-hal's GL backend shares one EGL context between the
//! adapters of an instance, so the crate serializes its GL calls (src/rank/gl.rs); before that,
//! threads on GL ranks panicked inside wgpu-hal (eglMakeCurrent BadAccess).

mod common;

use wgpu_tp::reference::Rng;
use wgpu_tp::{
    wgpu, Activation, DistTensor, Group, HostLinear, ParallelMlp, Placement, Rank, Tensor,
    WeightLayout,
};

fn assert_send_sync<T: Send + Sync>() {}

#[test]
fn the_shareable_types_are_send_and_sync() {
    assert_send_sync::<Group>();
    assert_send_sync::<Rank>();
    assert_send_sync::<Tensor>();
    assert_send_sync::<DistTensor>();
    assert_send_sync::<ParallelMlp>();
    assert_send_sync::<wgpu_tp::ColumnParallelLinear>();
    assert_send_sync::<wgpu_tp::RowParallelLinear>();
}

const THREADS: usize = 3;
const ROUNDS: usize = 12;

#[test]
fn concurrent_forwards_on_one_group_match_a_single_thread() {
    let kinds = [wgpu::Backends::PRIMARY, wgpu::Backends::GL];
    for (backends, shared) in kinds.into_iter().flat_map(|b| [(b, false), (b, true)]) {
        let b = Group::builder().backends(backends);
        let b = if shared {
            b.ranks_sharing_one_device(4)
        } else {
            b.ranks_on_one_adapter(4)
        };
        let Some(group) = common::build(b, &format!("{backends:?}")) else {
            continue;
        };
        let (batch, hidden, ffn) = (9, 24, 52);
        let mut rng = Rng::new(5);
        let w1 = rng.xavier(hidden * ffn, hidden, ffn);
        let w2 = rng.xavier(ffn * hidden, ffn, hidden);
        let mlp = ParallelMlp::from_full(
            &group,
            HostLinear::new(&w1, hidden, ffn, WeightLayout::InOut),
            HostLinear::new(&w2, ffn, hidden, WeightLayout::InOut),
            Activation::Relu,
        )
        .unwrap();
        let inputs: Vec<Vec<f32>> = (0..THREADS).map(|_| rng.normal(batch * hidden)).collect();
        let forward = |x: &[f32]| {
            mlp.forward(&DistTensor::replicate(&group, x, [batch, hidden]).unwrap())
                .unwrap()
                .to_host_per_rank()
                .unwrap()
        };
        // One thread alone first: the bits every concurrent run must reproduce.
        let alone: Vec<_> = inputs.iter().map(|x| forward(x)).collect();
        let before = group.stats().all_reduces();
        std::thread::scope(|s| {
            for (x, want) in inputs.iter().zip(&alone) {
                let forward = &forward;
                s.spawn(move || {
                    for round in 0..ROUNDS {
                        let got = forward(x);
                        for (r, (g, w)) in got.iter().zip(want).enumerate() {
                            common::assert_same_bits(
                                g,
                                w,
                                &format!("{backends:?} shared {shared} round {round} rank {r}"),
                            );
                        }
                    }
                });
            }
        });
        // Every forward's one all-reduce was counted, none lost to a race.
        assert_eq!(
            group.stats().all_reduces() - before,
            (THREADS * ROUNDS) as u64
        );
    }
}

#[test]
fn threads_freeing_gl_buffers_with_the_cache_off_do_not_race() {
    // With no buffer cache every dropped tensor frees its buffer at once: on GL that
    // free must hold the crate's GL lock like every other call.
    let b = Group::builder()
        .backends(wgpu::Backends::GL)
        .ranks_on_one_adapter(2)
        .buffer_cache_bytes(0);
    let Some(group) = common::build(b, "GL, no cache") else {
        return;
    };
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let group = &group;
            s.spawn(move || {
                for i in 0..40 {
                    let v = vec![(t * 100 + i) as f32; 64];
                    let x = DistTensor::replicate(group, &v, [8, 8]).unwrap();
                    let y = x.redistribute(Placement::Shard(0)).unwrap();
                    assert_eq!(y.to_host().unwrap(), v);
                }
            });
        }
    });
    assert!(group.ranks().iter().all(|r| r.stats().cached_bytes == 0));
}
