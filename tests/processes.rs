//! Groups spanning processes (feature `mpi`). `cargo test --features mpi` runs this binary
//! as the launcher: it starts itself under `mpirun` over 1, 2, 3 and 4 processes (the
//! workers) and checks what they report:
//! - every collective and layer against the f64 reference, at every tp from the process
//!   count to 8, with uneven shards, on both kinds of local group (devices on one adapter,
//!   logical ranks sharing one device); the all-reduce also bit for bit against the f32
//!   rank-order sum, which is what one process gives, over seeded random shapes too;
//! - with `Numerics::TpInvariant`, the bits of an MLP forward at tp 1, 2, 4 and 8 over
//!   every process layout (1x4, 2x2, 4x1, 3 processes as 2+1+1, ...): all equal;
//! - the tiny Llama and GPT-2 models generate their reference tokens with ranks over the
//!   processes (3 processes: the 4 heads split 2 + 1 + 1);
//! - a hung peer is an `Error::Processes` within the group's timeout; a dead one ends the
//!   job (MPI's own behaviour) instead of hanging it.
//!
//! Without `mpirun` on the PATH the launcher skips locally and fails under `CI=true`.

#![allow(clippy::needless_range_loop)] // dims and ranks index several arrays at once

mod common;

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{assert_same_bits, assert_within, rank_order_sum};
use wgpu_tp::reference::{self, Approx, Rng};
use wgpu_tp::shard::{concat_host, split_host};
use wgpu_tp::{
    split_sizes, Activation, ColumnParallelConfig, ColumnParallelLinear, DistTensor, Error, Group,
    Numerics, ParallelMlp, Placement, Processes, RowParallelConfig, RowParallelLinear, Tensor,
    WeightLayout,
};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--worker") {
        worker(args.get(2).map_or("", String::as_str));
    } else {
        launcher();
    }
}

// ---------------------------------------------------------------- launcher

/// True for Open MPI's `mpirun` (which needs `--oversubscribe` for more processes than
/// cores, and leave to run as root); MPICH's takes neither and needs neither.
fn open_mpi() -> bool {
    Command::new("mpirun")
        .arg("--version")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("Open MPI"))
}

/// `mpirun -n procs <this binary> --worker mode`, killed after `limit`; (success, stdout,
/// wall time), or `None` (locally) without `mpirun`.
fn mpirun(procs: usize, mode: &str, limit: Duration) -> Option<(bool, String, Duration)> {
    let exe = std::env::current_exe().expect("own path");
    let mut cmd = Command::new("mpirun");
    if open_mpi() {
        cmd.arg("--oversubscribe")
            .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
            .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1");
    }
    cmd.arg("-n")
        .arg(procs.to_string())
        .arg(exe)
        .args(["--worker", mode])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let start = Instant::now();
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) if !common::in_ci() => {
            eprintln!("skipping the process tests: cannot run mpirun ({e})");
            return None;
        }
        Err(e) => panic!("mpirun is needed under CI: {e}"),
    };
    let mut out = child.stdout.take().expect("piped stdout");
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut out, &mut s).map(|_| s)
    });
    loop {
        if let Some(status) = child.try_wait().expect("mpirun status") {
            let stdout = reader.join().expect("reader").expect("utf-8 stdout");
            print!("{stdout}");
            return Some((status.success(), stdout, start.elapsed()));
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("mpirun -n {procs} --worker {mode} hung past {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn launcher() {
    let limit = Duration::from_secs(600);
    let mut bits: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for procs in 1..=4 {
        let mode = if procs == 4 { "invariant" } else { "check" };
        let Some((ok, out, took)) = mpirun(procs, mode, limit) else {
            return;
        };
        assert!(ok, "{procs} process(es), {mode}: a worker failed");
        let done = out.lines().filter(|l| l.starts_with("DONE")).count();
        assert_eq!(done, procs, "{procs} process(es): every worker reports");
        println!("{procs} process(es), {mode}: passed in {took:.1?}");
        for l in out.lines().filter_map(|l| l.strip_prefix("BITS ")) {
            let (what, hash) = l.rsplit_once(' ').expect("BITS <what> <hash>");
            bits.entry(hash.to_string())
                .or_default()
                .push(what.to_string());
        }
    }
    // Every tp-invariant result, whatever the tp and the layout, has the same bits.
    assert_eq!(bits.len(), 1, "tp-invariant bits differ: {bits:#?}");
    let layouts = bits.values().next().map_or(0, Vec::len);
    assert!(
        layouts >= 16,
        "too few tp-invariant layouts checked: {layouts}"
    );
    println!("tp-invariant: {layouts} (tp, layout, kind) results share their bits");

    // A hung peer: an error within the timeout, and the job ends.
    let Some((_, out, took)) = mpirun(2, "hang", Duration::from_secs(120)) else {
        return;
    };
    assert!(
        out.contains("HUNG-PEER-ERROR"),
        "process 0 reports an Error::Processes for the hung peer"
    );
    println!("hung peer: error reported, job over in {took:.1?}");

    // Processes out of step (another shape in the same place): an error in each.
    let Some((_, out, _)) = mpirun(2, "out-of-step", Duration::from_secs(120)) else {
        return;
    };
    let told = out.matches("OUT-OF-STEP-ERROR").count();
    assert_eq!(told, 2, "both processes report the mismatch");
    println!("out of step: both processes told");

    // A dead peer: mpirun ends the whole job (MPI's behaviour) instead of hanging.
    let Some((ok, _, took)) = mpirun(2, "die", Duration::from_secs(120)) else {
        return;
    };
    assert!(!ok, "a job whose process died must fail");
    println!("dead peer: job ended in {took:.1?}");
}

// ---------------------------------------------------------------- worker

/// This process's share of `tp` ranks over `n` processes: the first `tp % n` get one more.
fn local_count(tp: usize, n: usize, p: usize) -> usize {
    tp / n + usize::from(p < tp % n)
}

fn build(procs: &Processes, tp: usize, shared: bool, numerics: Numerics) -> Group {
    let local = local_count(tp, procs.count(), procs.index());
    let b = Group::builder().processes(procs.clone()).numerics(numerics);
    let b = if shared {
        b.ranks_sharing_one_device(local)
    } else {
        b.ranks_on_one_adapter(local)
    };
    let g = common::build(b, "process group").expect("an adapter (checked under CI)");
    assert_eq!(g.world_size(), tp);
    assert_eq!(g.process_count(), procs.count());
    assert_eq!(g.local_range(), g.ranks_of_process(procs.index()));
    for (r, rank) in g.local_range().zip(g.ranks()) {
        assert_eq!(rank.index(), r);
    }
    g
}

fn worker(mode: &str) {
    let procs = Processes::init().expect("MPI initializes");
    let (p, n) = (procs.index(), procs.count());
    match mode {
        "check" => {
            for tp in n..=8 {
                for shared in [false, true] {
                    let g = build(&procs, tp, shared, Numerics::Fast);
                    let ctx = format!("tp {tp} over {n} processes, shared {shared}");
                    check_collectives(&g, &ctx);
                    check_random_shapes(&g, &ctx);
                    check_layers(&g, &ctx);
                    if p == 0 {
                        println!("ok: {ctx}");
                    }
                }
            }
            check_banded(&procs);
            check_refusals(&procs);
            check_groups_on_threads(&procs);
            check_models(&procs);
            invariant_bits(&procs);
        }
        "invariant" => invariant_bits(&procs),
        "hang" => {
            let g = Group::builder()
                .processes(procs.clone())
                .timeout(Duration::from_secs(2))
                .build()
                .expect("group");
            let x = DistTensor::replicate(&g, &[1.0; 4], [2, 2]).unwrap();
            let x = x.redistribute(Placement::Partial).unwrap();
            if p == 1 {
                // Never joins the all-reduce; leaves after process 0 gave up.
                std::thread::sleep(Duration::from_secs(6));
                println!("DONE");
                std::process::exit(0);
            }
            let start = Instant::now();
            let e = x.all_reduce().expect_err("the peer never joins");
            let took = start.elapsed();
            assert!(matches!(e, Error::Processes { .. }), "{e}");
            assert!(took < Duration::from_secs(10), "error after {took:?}");
            // Later collectives refuse at once: the processes are out of step for good.
            assert!(matches!(x.all_reduce(), Err(Error::Processes { .. })));
            println!("HUNG-PEER-ERROR after {took:.1?}: {e}");
            println!("DONE");
            std::process::exit(0);
        }
        "out-of-step" => {
            // Process 0 all-reduces a [2, 3] tensor where the others all-reduce a [3, 2]
            // one: as many values, so MPI alone would sum them; every process is told.
            let g = build(&procs, n, false, Numerics::Fast);
            let shape = if p == 0 { [2, 3] } else { [3, 2] };
            let x = DistTensor::replicate(&g, &[1.0; 6], shape).unwrap();
            let x = x.redistribute(Placement::Partial).unwrap();
            match x.all_reduce() {
                Err(Error::Processes { message, .. }) if message.contains("out of step") => {
                    println!("OUT-OF-STEP-ERROR: {message}");
                }
                other => panic!("out of step: {other:?}"),
            }
            assert!(matches!(x.all_reduce(), Err(Error::Processes { .. })));
            println!("DONE");
            // The group's communicator is broken: MPI cannot be finalized.
            std::process::exit(0);
        }
        "die" => {
            let g = Group::builder()
                .processes(procs.clone())
                .build()
                .expect("group");
            let x = DistTensor::replicate(&g, &[1.0; 4], [2, 2]).unwrap();
            let x = x.redistribute(Placement::Partial).unwrap();
            if p == 1 {
                std::process::exit(3);
            }
            let _ = x.all_reduce();
            // mpirun kills this process when its peer dies; reaching here is also fine
            // (the error path), as long as nothing hangs.
            std::process::exit(0);
        }
        other => panic!("unknown worker mode {other:?}"),
    }
    println!("DONE process {p} of {n}");
}

const SHAPE: [usize; 2] = [11, 13];

/// The f64 sum of `parts` and its f32 bound: tp terms in any order err by at most
/// γ(tp - 1) Σ|terms| (Higham).
fn sum_reference(parts: &[Vec<f32>]) -> Approx {
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

fn check_collectives(g: &Group, ctx: &str) {
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
        let slices = split_host(&exact, SHAPE, dim, &sizes).unwrap();
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
        let pieces = split_host(&data, [rows, 3], 0, &own).unwrap();
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
        assert_same_bits(&all, &concat_host(&pieces, &shapes, 0).unwrap(), ctx);
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
fn check_random_shapes(g: &Group, ctx: &str) {
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
        let slices = split_host(&exact, shape, dim, &sizes).unwrap();
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
fn check_banded(procs: &Processes) {
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
fn check_refusals(procs: &Processes) {
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
fn check_groups_on_threads(procs: &Processes) {
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
fn check_models(procs: &Processes) {
    let n = procs.count();
    for name in ["tiny-llama", "tiny-gpt2"] {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/models")
            .join(name);
        let text = std::fs::read_to_string(dir.join("reference.json")).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let ids = |k: &str| -> Vec<u32> {
            let all = v[k].as_array().unwrap();
            all.iter().map(|x| x.as_u64().unwrap() as u32).collect()
        };
        let (prompt, greedy) = (ids("prompt_ids"), ids("greedy_ids"));
        let checkpoint = wgpu_tp::load::Checkpoint::open(&dir).unwrap();
        for tp in [n, n + 1] {
            for shared in [false, true] {
                let g = build(procs, tp, shared, Numerics::Fast);
                let model = wgpu_tp::model::Transformer::from_checkpoint(&g, &checkpoint).unwrap();
                let tokens = model.generate(&prompt, greedy.len()).unwrap();
                assert_eq!(
                    tokens, greedy,
                    "{name} tp {tp} over {n} processes, shared {shared}"
                );
            }
        }
        if procs.index() == 0 {
            println!("ok: {name} over {n} processes");
        }
    }
}

fn check_layers(g: &Group, ctx: &str) {
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
fn hash(v: &[f32]) -> String {
    let h = v.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, x| {
        (h ^ u64::from(x.to_bits())).wrapping_mul(0x0100_0000_01b3)
    });
    format!("{h:016x}")
}

/// Tp-invariant MLP forward and all-reduce at every tp this many processes can hold; the
/// first process prints their bits' hashes.
fn invariant_bits(procs: &Processes) {
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
