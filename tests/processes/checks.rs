//! The checks tests/processes.rs's workers run in every process (see its docs).

use common::{assert_same_bits, assert_within, concat_host, rank_order_sum, split_host};
use wgpu_tp::reference::{self, Approx, Rng};

use wgpu_tp::{
    split_sizes, Activation, ColumnParallelConfig, ColumnParallelLinear, DistTensor, Error, Group,
    Numerics, ParallelMlp, Placement, Processes, RowParallelConfig, RowParallelLinear, Tensor,
    WeightLayout,
};

use super::{build, common, local_count};

use std::future::Future;
use std::task::{Context, Waker};
use std::time::Duration;

const SHAPE: [usize; 2] = [11, 13];

/// The f64 sum of `parts` and its f32 bound: tp terms in any order err by at most
/// γ(tp - 1) Σ|terms| (Higham).
pub fn sum_reference(parts: &[Vec<f32>]) -> Approx {
    let g = reference::gamma(parts.len() - 1);
    let n = parts[0].len();
    Approx {
        value: (0..n)
            .map(|i| parts.iter().map(|p| f64::from(p[i])).sum())
            .collect(),
        bound: (0..n)
            .map(|i| g * parts.iter().map(|p| f64::from(p[i]).abs()).sum::<f64>())
            .collect(),
    }
}

pub fn check_collectives(g: &Group, ctx: &str) {
    let tp = g.world_size();
    let local = g.local_range();
    let parts = common::normal_parts(&mut Rng::new(tp as u64), tp, SHAPE[0] * SHAPE[1]);
    let x = common::partial(g, &parts, SHAPE);
    let exact = rank_order_sum(&parts);
    let want = sum_reference(&parts);
    // All-reduce: the reference's bound, and the bits of the rank-order f32 sum.
    let y = x.all_reduce().unwrap();
    for v in y.to_host_per_rank().unwrap() {
        assert_within(&want, &v, &format!("{ctx}: all_reduce"));
        assert_same_bits(&v, &exact, &format!("{ctx}: all_reduce bits"));
    }
    assert_same_bits(&x.to_host().unwrap(), &exact, &format!("{ctx}: to_host"));
    for dim in 0..2 {
        // Reduce-scatter: each rank its (uneven) slice of the same sum.
        let sizes = split_sizes(SHAPE[dim], tp).unwrap();
        let slices = split_host(&exact, SHAPE, dim, &sizes);
        let y = x.reduce_scatter(dim).unwrap();
        assert_eq!(y.shard_sizes(), &sizes[..]);
        for (v, r) in y.to_host_per_rank().unwrap().iter().zip(local.clone()) {
            assert_same_bits(v, &slices[r], &format!("{ctx}: reduce_scatter dim {dim}"));
        }
        assert_same_bits(
            &y.to_host().unwrap(),
            &exact,
            &format!("{ctx}: shard to_host"),
        );
        // All-gather of uneven shards made here, and of shards from the caller.
        let full = &parts[0];
        let s = DistTensor::shard(g, full, SHAPE, dim).unwrap();
        for v in s.all_gather().unwrap().to_host_per_rank().unwrap() {
            assert_same_bits(&v, full, &format!("{ctx}: all_gather dim {dim}"));
        }
        let other = DistTensor::shard(g, full, SHAPE, 1 - dim).unwrap();
        let moved = other.redistribute(Placement::Shard(dim)).unwrap();
        assert_eq!(
            moved.shard_sizes(),
            &sizes[..],
            "{ctx}: Shard -> Shard sizes"
        );
        assert_same_bits(&moved.to_host().unwrap(), full, &format!("{ctx}: reshard"));
        // from_locals learns the other processes' shard sizes: rank r holds r + 1 rows.
        let own: Vec<usize> = (1..=tp).collect();
        let rows: usize = own.iter().sum();
        let data = common::normal_parts(&mut Rng::new(7), 1, rows * 3).remove(0);
        let pieces = split_host(&data, [rows, 3], 0, &own);
        let locals = g
            .ranks()
            .iter()
            .zip(local.clone())
            .map(|(rank, r)| Tensor::from_host(rank, &pieces[r], [own[r], 3]).unwrap())
            .collect();
        let t = DistTensor::from_locals(g, locals, Placement::Shard(0)).unwrap();
        assert_eq!((t.shape(), t.shard_sizes()), ([rows, 3], &own[..]));
        let all = t.all_gather().unwrap().to_host().unwrap();
        let shapes: Vec<[usize; 2]> = own.iter().map(|&r| [r, 3]).collect();
        assert_same_bits(&all, &concat_host(&pieces, &shapes, 0), ctx);
    }
    // Broadcast from every root, wherever it lives.
    for root in 0..tp {
        let y = x.broadcast(root).unwrap();
        for v in y.to_host_per_rank().unwrap() {
            assert_same_bits(&v, &parts[root], &format!("{ctx}: broadcast from {root}"));
        }
    }
}

/// Seeded random shapes (the same on every process), each dimension at least tp, and one
/// all-reduce large enough for two chunks, its host sum split over threads: the
/// collectives give the single-process bits.
pub fn check_random_shapes(g: &Group, ctx: &str) {
    let tp = g.world_size();
    let mut rng = Rng::new(1000 + tp as u64);
    let mut shapes: Vec<[usize; 2]> = (0..4)
        .map(|_| {
            [
                tp + (rng.next_u64() % 24) as usize,
                tp + (rng.next_u64() % 24) as usize,
            ]
        })
        .collect();
    shapes.push([1100, 1000]); // two chunks of at most 4 MiB, the second short
    for (case, shape) in shapes.into_iter().enumerate() {
        let ctx = format!("{ctx}, shape {shape:?}");
        let parts = common::normal_parts(&mut rng, tp, shape[0] * shape[1]);
        let x = common::partial(g, &parts, shape);
        let exact = rank_order_sum(&parts);
        for v in x.all_reduce().unwrap().to_host_per_rank().unwrap() {
            assert_same_bits(&v, &exact, &format!("{ctx}: all_reduce"));
        }
        let dim = case % 2;
        let sizes = split_sizes(shape[dim], tp).unwrap();
        let slices = split_host(&exact, shape, dim, &sizes);
        let y = x.reduce_scatter(dim).unwrap();
        for (v, r) in y.to_host_per_rank().unwrap().iter().zip(g.local_range()) {
            assert_same_bits(v, &slices[r], &format!("{ctx}: reduce_scatter dim {dim}"));
        }
        let all = y.all_gather().unwrap().to_host_per_rank().unwrap();
        for v in all {
            assert_same_bits(&v, &exact, &format!("{ctx}: all_gather dim {dim}"));
        }
    }
}

/// Processes whose devices band tensors differently (the even ones with 4 KiB buffers: a
/// row of 1,000 values per band) still cut the all-reduce into the same chunks (here one
/// row each, all a 4 KiB device can stage): a `[1200, 1000]` all-reduce gives the
/// rank-order bits.
pub fn check_banded(procs: &Processes) {
    let tp = procs.count() + 1;
    let local = local_count(tp, procs.count(), procs.index());
    let mut b = Group::builder()
        .processes(procs.clone())
        .ranks_on_one_adapter(local);
    if procs.index().is_multiple_of(2) {
        let mut l = wgpu_tp::wgpu::Limits::downlevel_defaults();
        l.max_buffer_size = 4096;
        l.max_storage_buffer_binding_size = 4096;
        b = b.required_limits(l);
    }
    let g = common::build(b, "banded").expect("an adapter");
    let shape = [1200, 1000];
    let parts = common::normal_parts(&mut Rng::new(5), tp, shape[0] * shape[1]);
    let x = common::partial(&g, &parts, shape);
    let exact = rank_order_sum(&parts);
    for v in x.all_reduce().unwrap().to_host_per_rank().unwrap() {
        assert_same_bits(&v, &exact, &format!("banded all_reduce, tp {tp}"));
    }
    let y = x.reduce_scatter(0).unwrap().all_gather().unwrap();
    assert_same_bits(
        &y.to_host().unwrap(),
        &exact,
        "banded reduce_scatter + all_gather",
    );
    if procs.index() == 0 {
        println!("ok: banded tp {tp} over {} processes", procs.count());
    }
}

/// Bad input over processes: errors in every process, never a hang.
pub fn check_refusals(procs: &Processes) {
    let (p, n) = (procs.index(), procs.count());
    assert!(
        matches!(Processes::init(), Err(Error::Processes { .. })),
        "MPI twice"
    );
    let custom = Group::builder()
        .processes(procs.clone())
        .collective(Box::new(wgpu_tp::HostCollective))
        .build();
    assert!(
        matches!(custom, Err(Error::InvalidArgument { .. })),
        "custom collective"
    );
    if n > 1 {
        // Process 0 asks for other numerics than the rest: every process is told.
        let numerics = if p == 0 {
            Numerics::Fast
        } else {
            Numerics::TpInvariant
        };
        let mixed = Group::builder()
            .processes(procs.clone())
            .numerics(numerics)
            .build();
        match mixed {
            Err(Error::InvalidArgument { message, .. }) => {
                assert!(message.contains("numerics"), "{message}")
            }
            other => panic!("mixed numerics: {other:?}"),
        }
    }
    let g = build(procs, n, false, Numerics::Fast);
    let x = DistTensor::replicate(&g, &[1.0; 6], [2, 3]).unwrap();
    assert!(
        matches!(x.broadcast(n), Err(Error::InvalidArgument { .. })),
        "root past the ranks"
    );
    let two = [x.locals(), x.locals()].concat();
    let wrong = DistTensor::from_locals(&g, two, Placement::Replicate);
    assert!(
        matches!(wrong, Err(Error::Shape { .. })),
        "locals of other ranks"
    );
    // The group still works after the refusals.
    let y = x
        .redistribute(Placement::Partial)
        .unwrap()
        .all_reduce()
        .unwrap();
    assert_eq!(y.to_host().unwrap(), vec![1.0; 6]);
}

/// Two groups over the same processes, driven by two threads at once: each talks on its
/// own communicator, so their exchanges never pair up across groups.
pub fn check_groups_on_threads(procs: &Processes) {
    let n = procs.count();
    let groups = [
        build(procs, n, false, Numerics::Fast),
        build(procs, n, true, Numerics::Fast),
    ];
    std::thread::scope(|s| {
        for (i, g) in groups.iter().enumerate() {
            s.spawn(move || {
                for step in 0..20 {
                    // Each thread its own shapes, so a cross-group pairing would show.
                    let shape = [1 + i + step % 3, 3 + 2 * i];
                    let seed = (100 * i + step) as u64;
                    let parts = common::normal_parts(&mut Rng::new(seed), n, shape[0] * shape[1]);
                    let x = common::partial(g, &parts, shape);
                    let y = x.all_reduce().unwrap().to_host().unwrap();
                    assert_same_bits(&y, &rank_order_sum(&parts), "groups on threads");
                }
            });
        }
    });
}

/// The tiny Llama and GPT-2 fixtures with their ranks over the processes (3 processes:
/// 4 heads split 2 + 1 + 1) generate the reference's greedy tokens.
pub fn check_models(procs: &Processes) {
    let n = procs.count();
    // The f32 weights, and the Llama's bf16 ones (kept at two bytes a value).
    for (name, weights, suffix) in [
        ("tiny-llama", "model.safetensors", ""),
        ("tiny-gpt2", "model.safetensors", ""),
        ("tiny-llama", "model.bf16.safetensors", "_bf16"),
    ] {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/models")
            .join(name);
        let text = std::fs::read_to_string(dir.join("reference.json")).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let ids = |k: &str| -> Vec<u32> {
            let all = v[k].as_array().unwrap();
            all.iter().map(|x| x.as_u64().unwrap() as u32).collect()
        };
        let (prompt, greedy) = (ids("prompt_ids"), ids(&format!("greedy_ids{suffix}")));
        let checkpoint = wgpu_tp::load::Checkpoint::open(dir.join(weights)).unwrap();
        for tp in [n, n + 1] {
            for shared in [false, true] {
                let g = build(procs, tp, shared, Numerics::Fast);
                let model = wgpu_tp::model::Transformer::from_checkpoint(&g, &checkpoint).unwrap();
                let tokens = model.generate(&prompt, greedy.len()).unwrap();
                assert_eq!(
                    tokens, greedy,
                    "{name} {weights} tp {tp} over {n} processes, shared {shared}"
                );
            }
        }
        if procs.index() == 0 {
            println!("ok: {name} {weights} over {n} processes");
        }
    }
}

/// PEFT's adapter on every projection of the tiny Llama (`tests/fixtures/lora/all`, r 4)
/// with its ranks over the processes (3 processes at tp 4: key/value heads on two ranks,
/// of two processes): every adapter gradient within 1e-4 of its tensor's largest element
/// of PyTorch autograd's (as tests/lora.rs, which says why that tolerance), from the
/// model's whole backward and with the base frozen.
pub fn check_lora(procs: &Processes) {
    let n = procs.count();
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let dir = fixtures.join("lora/all");
    let want = common::f32_tensors(dir.join("expected.safetensors"));
    let checkpoint = wgpu_tp::load::Checkpoint::open(fixtures.join("models/tiny-llama")).unwrap();
    let ids: Vec<u32> = (0..16).map(|i| (i * 37 + 5) % 128).collect();
    let targets: Vec<Option<u32>> = (0..16).map(|i| ids.get(i + 1).copied()).collect();
    for tp in [n, n + 1] {
        for shared in [false, true] {
            let ctx = format!("lora tp {tp} over {n} processes, shared {shared}");
            let g = build(procs, tp, shared, Numerics::Fast);
            let model = wgpu_tp::model::Transformer::from_checkpoint(&g, &checkpoint).unwrap();
            let lora = wgpu_tp::model::Lora::from_peft(&model, &dir).unwrap();
            let step = model.backward(&ids, &targets).unwrap();
            let whole = lora.grads(&step).unwrap();
            let frozen = lora.backward(&model, &ids, &targets).unwrap();
            for (how, grads) in [("whole", whole), ("frozen", frozen)] {
                let named = lora.unfused(&grads.grads).unwrap();
                assert_eq!(named.len(), 28, "{ctx}");
                for (name, _, got) in &named {
                    let w = &want[&format!("grad.{name}")];
                    let scale = w.iter().fold(0.0f32, |m, v| m.max(v.abs()));
                    let diff = got
                        .iter()
                        .zip(w)
                        .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
                    assert!(
                        diff <= 1e-4 * scale,
                        "{ctx}, {how}: {name}: {diff} of {scale}"
                    );
                }
            }
        }
    }
    if procs.index() == 0 {
        println!("ok: lora over {n} processes");
    }
}

/// A whole model's backward with its ranks over the processes: the tiny Llama (every
/// layer's backward: embedding, RMSNorms, attention, the gated MLP, the LM head and the
/// cross-entropy), Qwen3 (per-head query/key norms) and GPT-2 (LayerNorms, learned
/// positions, `[in, out]` weights) at tp = the process count and one more, on both kinds
/// of local group: the loss and every gradient that is not fused against PyTorch
/// autograd's (tests/model_training.rs's tolerances).
pub fn check_model_backward(procs: &Processes) {
    let n = procs.count();
    let f = common::torch_fixture();
    let models = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/models");
    let ids: Vec<u32> = (0..16).map(|i| (i * 37 + 5) % 128).collect();
    let targets: Vec<Option<u32>> = (0..16).map(|i| ids.get(i + 1).copied()).collect();
    for (name, names) in common::torch_grads::tiny_models() {
        if !["llama", "qwen3", "gpt2"].contains(&name) {
            continue;
        }
        let dir = models.join(format!("tiny-{name}"));
        let checkpoint = wgpu_tp::load::Checkpoint::open(&dir).unwrap();
        for tp in [n, n + 1] {
            for shared in [false, true] {
                let ctx = format!("tp {tp} over {n} processes, shared {shared}");
                let g = build(procs, tp, shared, Numerics::Fast);
                let model = wgpu_tp::model::Transformer::from_checkpoint(&g, &checkpoint).unwrap();
                let step = model.backward(&ids, &targets).unwrap();
                common::torch_grads::assert_autograds(&f, name, &names, &step, &ctx);
            }
        }
    }
    if procs.index() == 0 {
        println!("ok: model backward over {n} processes");
    }
}

pub fn check_layers(g: &Group, ctx: &str) {
    // Sizes no tp from 2 to 8 divides evenly: 37 inputs, 29 hidden, 3 rows.
    let (m, k, h) = (3, 37, 29);
    let mut rng = Rng::new(42);
    let (w1, b1) = common::linear_data(&mut rng, k, h, true);
    let (w2, b2) = common::linear_data(&mut rng, h, k, true);
    let x = rng.normal(m * k);
    let xd = DistTensor::replicate(g, &x, [m, k]).unwrap();
    for layout in [WeightLayout::InOut, WeightLayout::OutIn] {
        let s1 = common::in_layout(&w1, k, h, layout);
        let s2 = common::in_layout(&w2, h, k, layout);
        let fc1 = common::host(&s1, &b1, k, h, layout);
        let fc2 = common::host(&s2, &b2, h, k, layout);
        let ctx = format!("{ctx}, {layout:?}");
        // Column-parallel, gathered.
        let gather = ColumnParallelConfig::default().gather_output(true);
        let col = ColumnParallelLinear::from_full(g, fc1, gather).unwrap();
        let want1 = common::reference_linear(&x, [m, k], &w1, h, b1.as_deref());
        common::assert_every_rank_within(&want1, &col.forward(&xd).unwrap(), &ctx);
        // Row-parallel from a replicated input.
        let row = RowParallelLinear::from_full(
            g,
            fc2,
            RowParallelConfig::default().input_is_parallel(false),
        )
        .unwrap();
        let hd = DistTensor::replicate(g, &rng.normal(m * h), [m, h]).unwrap();
        let hx = hd.to_host().unwrap();
        let want2 = common::reference_linear(&hx, [m, h], &w2, k, b2.as_deref());
        common::assert_every_rank_within(&want2, &row.forward(&hd).unwrap(), &ctx);
        // The Megatron MLP: one all-reduce.
        let mlp = ParallelMlp::from_full(g, fc1, fc2, Activation::GeluTanh).unwrap();
        let before = g.stats().all_reduces();
        let y = mlp.forward(&xd).unwrap();
        assert_eq!(g.stats().all_reduces() - before, 1, "{ctx}: one all-reduce");
        let hidden = reference::activation(&want1, Activation::GeluTanh);
        let want = common::reference_linear_of(&hidden, [m, h], &w2, k, b2.as_deref());
        common::assert_every_rank_within(&want, &y, &format!("{ctx}: mlp"));
    }
}

/// FNV-1a over the bits: the launcher compares results across runs by this.
pub fn hash(v: &[f32]) -> String {
    let h = v.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, x| {
        (h ^ u64::from(x.to_bits())).wrapping_mul(0x0100_0000_01b3)
    });
    format!("{h:016x}")
}

/// Tp-invariant MLP forward and all-reduce at every tp this many processes can hold; the
/// first process prints their bits' hashes.
pub fn invariant_bits(procs: &Processes) {
    let (m, k, h) = (2, 64, 48);
    let mut rng = Rng::new(9);
    let (w1, b1) = common::linear_data(&mut rng, k, h, true);
    let (w2, b2) = common::linear_data(&mut rng, h, k, true);
    let x = rng.normal(m * k);
    let n = procs.count();
    for tp in [1, 2, 4, 8].into_iter().filter(|&tp| tp >= n) {
        for shared in [false, true] {
            let g = build(procs, tp, shared, Numerics::TpInvariant);
            let layout = WeightLayout::InOut;
            let fc1 = common::host(&w1, &b1, k, h, layout);
            let fc2 = common::host(&w2, &b2, h, k, layout);
            let mlp = ParallelMlp::from_full(&g, fc1, fc2, Activation::Relu).unwrap();
            let xd = DistTensor::replicate(&g, &x, [m, k]).unwrap();
            let y = mlp.forward(&xd).unwrap().to_host().unwrap();
            let per: Vec<usize> = (0..n).map(|p| local_count(tp, n, p)).collect();
            if procs.index() == 0 {
                println!(
                    "BITS mlp tp {tp} layout {per:?} shared {shared} {}",
                    hash(&y)
                );
            }
        }
    }
}

/// A group of one rank per process whose exchanges wait at most `timeout`.
fn group_with_timeout(procs: &Processes, timeout: Duration) -> Group {
    Group::builder()
        .processes(procs.clone())
        .timeout(timeout)
        .build()
        .expect("group")
}

/// `Error::Processes` saying the group is poisoned.
fn assert_poisoned(out: wgpu_tp::Result<DistTensor>, ctx: &str) {
    match out {
        Err(Error::Processes { message, .. }) => {
            assert!(message.contains("earlier collective"), "{ctx}: {message}")
        }
        other => panic!("{ctx}: not refused as poisoned: {other:?}"),
    }
}

/// An async all-reduce polled once (it exchanges its header, then waits for the
/// read-back) and dropped part way, in every process: the group is poisoned, so the next
/// all-reduce is an error in every process, never a sum paired with a stale exchange.
pub fn a_cancelled_collective_poisons_its_group(procs: &Processes) {
    // No wait here runs into the timeout: the default's margin is for a slow build.
    let g = group_with_timeout(procs, wgpu_tp::DEFAULT_TIMEOUT);
    let x = DistTensor::replicate(&g, &[1.0; 6], [2, 3]).unwrap();
    let x = x.redistribute(Placement::Partial).unwrap();
    assert_eq!(x.all_reduce().unwrap().to_host().unwrap(), vec![1.0; 6]);
    {
        let mut fut = Box::pin(x.all_reduce_async());
        let polled = fut.as_mut().poll(&mut Context::from_waker(Waker::noop()));
        assert!(
            polled.is_pending(),
            "the first poll waits for the read-back"
        );
    }
    assert_poisoned(x.all_reduce(), "after a cancelled all-reduce");
    println!("CANCELLED-POISONS process {}", procs.index());
}

/// Two threads of process 0 run collectives on one group: the second, started while the
/// first waits for the other processes, is refused (its exchanges would interleave with
/// the first's) and poisons the group, so the first stops too; the other processes get an
/// error within the timeout, and every later collective is refused everywhere.
pub fn a_second_collective_in_flight_on_one_group_is_refused(procs: &Processes) {
    // The other processes wait this long for process 0's exchange that never comes; it
    // also bounds the group's build, which took over 5 s in a loaded CI run.
    let g = group_with_timeout(procs, Duration::from_secs(15));
    let x = DistTensor::replicate(&g, &[1.0; 6], [2, 3]).unwrap();
    let x = x.redistribute(Placement::Partial).unwrap();
    if procs.index() == 0 {
        let (first, second) = std::thread::scope(|s| {
            let first = s.spawn(|| x.all_reduce());
            let second = s.spawn(|| {
                std::thread::sleep(Duration::from_millis(300));
                x.all_reduce()
            });
            (first.join().unwrap(), second.join().unwrap())
        });
        match second {
            Err(Error::Processes { message, .. }) => {
                assert!(message.contains("in flight"), "{message}")
            }
            other => panic!("a second collective in flight: {other:?}"),
        }
        assert!(
            matches!(first, Err(Error::Processes { .. })),
            "the first stops at its next exchange: {first:?}"
        );
    } else {
        // Joins after process 0's second thread was refused.
        std::thread::sleep(Duration::from_millis(1500));
        let out = x.all_reduce();
        assert!(
            matches!(out, Err(Error::Processes { .. })),
            "process 0 left the all-reduce part way: {out:?}"
        );
    }
    assert_poisoned(x.all_reduce(), "after a refused collective");
    println!("IN-FLIGHT-REFUSED process {}", procs.index());
}

/// Processes out of step: an all-gather against a broadcast, all-gathers along different
/// dims (and sizes), broadcasts from different roots. Every process gets an
/// `Error::Processes` naming both collectives (before, MPI paired equal sizes silently
/// and aborted the job on different ones).
pub fn out_of_step_gathers_and_broadcasts_name_both(procs: &Processes) {
    let (p, n) = (procs.index(), procs.count());
    let cases: [(&str, &str, &str); 3] = [
        ("gather/broadcast", "all_gather(dim 0)", "broadcast(root 0)"),
        ("gather dims", "all_gather(dim 0)", "all_gather(dim 1)"),
        ("broadcast roots", "broadcast(root 0)", "broadcast(root 1)"),
    ];
    for (case, first, others) in cases {
        // Every process learns at the header exchange: no wait runs into the timeout.
        let g = group_with_timeout(procs, wgpu_tp::DEFAULT_TIMEOUT);
        let mine = if p == 0 { first } else { others };
        let run = |what: &str| match what {
            "all_gather(dim 0)" => DistTensor::shard(&g, &vec![1.0; 4 * n * 3], [4 * n, 3], 0)
                .unwrap()
                .all_gather(),
            "all_gather(dim 1)" => DistTensor::shard(&g, &vec![1.0; 5 * 6 * n], [5, 6 * n], 1)
                .unwrap()
                .all_gather(),
            "broadcast(root 0)" => DistTensor::replicate(&g, &[1.0; 6], [2, 3])
                .unwrap()
                .broadcast(0),
            "broadcast(root 1)" => DistTensor::replicate(&g, &[1.0; 12], [3, 4])
                .unwrap()
                .broadcast(1),
            other => unreachable!("{other}"),
        };
        match run(mine) {
            Err(Error::Processes { message, .. }) => {
                assert!(message.contains("out of step"), "{case}: {message}");
                assert!(
                    message.contains(first) && message.contains(others),
                    "{case}: both named: {message}"
                );
            }
            other => panic!("{case}: out of step: {other:?}"),
        }
        assert_poisoned(run(mine), case);
        println!("OUT-OF-STEP-NAMED {case} process {p}");
    }
}

/// Training across processes: the Megatron MLP's backward (dX all-reduced across the
/// processes, the weight gradients on their ranks), the vocabulary-parallel cross-entropy
/// (each process's blocks of every row gathered, never the logits) and the clipping norm
/// (each process's share exchanged), each within the f64 reference's bound.
/// Attention's backward over the processes' ranks (heads split unevenly past tp 2 and at
/// 3, key/value heads on two ranks past tp 2): every gradient of each case within the
/// f64 reference's bound (tests/common/attention.rs; Qwen3's query and key norms among
/// them), dL/dX after one all-reduce, the norms' weights' after one more.
pub fn check_attention_backward(g: &Group, ctx: &str) {
    use common::attention::{cases, f32s, host, layer, reference, within, GRADIENTS};
    use common::attention::{HIDDEN, TOKENS};
    for (name, c) in cases() {
        let want = reference(&c);
        let attention = layer(g, &c);
        let x = DistTensor::replicate(g, &f32s(&c.x), [TOKENS, HIDDEN]).unwrap();
        let dy = DistTensor::replicate(g, &f32s(&c.dy), [TOKENS, HIDDEN]).unwrap();
        let before = g.stats().all_reduces();
        let grads = attention.backward(&x, &dy).unwrap();
        // dL/dX's, and the query and key norms' weights' together.
        let reduces = 1 + u64::from(c.qk_norm.is_some());
        assert_eq!(
            g.stats().all_reduces() - before,
            reduces,
            "{ctx}, {name}: {reduces} all-reduces"
        );
        let got = host(&attention, &grads);
        for ((w, got), what) in want.in_host_order().into_iter().zip(&got).zip(GRADIENTS) {
            within(w, got, &format!("{ctx}, {name}: {what}"));
        }
    }
}

pub fn check_backward(g: &Group, ctx: &str) {
    let (t, k, n) = (3, 16, 29);
    let io = WeightLayout::InOut;
    let mut rng = Rng::new(43);
    let (w1, w2) = (rng.xavier(k * n, k, n), rng.xavier(n * k, n, k));
    let (x, dy) = (rng.normal(t * k), rng.normal(t * k));
    let act = Activation::GeluTanh;
    let mlp = ParallelMlp::from_full(
        g,
        wgpu_tp::HostLinear::new(&w1, k, n, io),
        wgpu_tp::HostLinear::new(&w2, n, k, io),
        act,
    )
    .unwrap();
    let xd = DistTensor::replicate(g, &x, [t, k]).unwrap();
    let dyd = DistTensor::replicate(g, &dy, [t, k]).unwrap();
    let before = g.stats().all_reduces();
    let grads = mlp.backward(&xd, &dyd).unwrap();
    assert_eq!(g.stats().all_reduces() - before, 1, "{ctx}: one all-reduce");
    let z = reference::linear(&Approx::exact(&x), [t, k], &w1, n, io, None).unwrap();
    let dh = reference::linear(
        &Approx::exact(&dy),
        [t, k],
        &w2,
        n,
        WeightLayout::OutIn,
        None,
    )
    .unwrap();
    let dz = reference::activation_grad(&z, &dh, act);
    let want_dx = reference::linear(&dz, [t, n], &w1, k, WeightLayout::OutIn, None).unwrap();
    common::assert_every_rank_within(&want_dx, &grads.fc1.input, &format!("{ctx}: dX"));
    // dW2 = H^T dY, H = act(Z): gathered from every process's shards.
    let ht = common::transpose_approx(&reference::activation(&z, act), t, n);
    let want_dw2 = reference::linear(&ht, [n, t], &dy, k, io, None).unwrap();
    let dw2 = grads.fc2.weight.to_host().unwrap();
    assert_within(&want_dw2, &dw2, &format!("{ctx}: dW2"));
    // The cross-entropy over 29 ids split across the processes' ranks.
    let logits = rng.normal(t * n);
    let targets = [Some(28), None, Some(0)];
    let (_, want_grad) = reference::cross_entropy(&logits, [t, n], &targets);
    let l = DistTensor::shard(g, &logits, [t, n], 1).unwrap();
    let ce = wgpu_tp::nn::vocab_parallel_cross_entropy(&l, &targets).unwrap();
    assert_within(
        &want_grad,
        &ce.grad.to_host().unwrap(),
        &format!("{ctx}: dlogits"),
    );
    // The clipping norm of a sharded gradient and a replicated one (counted once): each
    // process's share exchanged as an f32, so within f32 rounding of the f64 norm.
    let b = rng.normal(k);
    let bd = DistTensor::replicate(g, &b, [1, k]).unwrap();
    let norm = wgpu_tp::nn::clip_grad_norm(&[&l, &bd], 1.0).unwrap();
    let exact = logits
        .iter()
        .chain(&b)
        .map(|&v| f64::from(v) * f64::from(v))
        .sum::<f64>()
        .sqrt();
    // Rows of at most 29 squares in f32 (gamma(29) = 1.8e-6), a process's share rounded to
    // f32 (6e-8), the processes' f32 sum (gamma(3)).
    assert!(
        (norm.norm - exact).abs() <= 2e-6 * exact,
        "{ctx}: norm {} vs {exact}",
        norm.norm
    );
}
