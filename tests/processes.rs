//! Groups spanning processes (feature `mpi`). `cargo test --features mpi` runs this binary
//! as the launcher: it starts itself under `mpirun` over 1, 2, 3 and 4 processes (the
//! workers) and checks what they report:
//! - every collective and layer against the f64 reference, at every tp from the process
//!   count to 8, with uneven shards, on both kinds of local group (devices on one adapter,
//!   logical ranks sharing one device); the all-reduce also bit for bit against the f32
//!   rank-order sum, which is what one process gives, over seeded random shapes too;
//! - training's backward likewise: the MLP's (one all-reduce), the cross-entropy, the
//!   clipping norm, and attention's (heads split unevenly, key/value heads on two ranks);
//! - with `Numerics::TpInvariant`, the bits of an MLP forward at tp 1, 2, 4 and 8 over
//!   every process layout (1x4, 2x2, 4x1, 3 processes as 2+1+1, ...): all equal;
//! - the tiny Llama and GPT-2 models generate their reference tokens with ranks over the
//!   processes (3 processes: the 4 heads split 2 + 1 + 1); PEFT's adapter on the tiny
//!   Llama gets autograd's gradients (`check_lora`), and so do the tiny Llama's, Qwen3's
//!   and GPT-2's whole backward (`check_model_backward`);
//! - a hung peer is an `Error::Processes` within the group's timeout; a dead one ends the
//!   job (MPI's own behaviour) instead of hanging it;
//! - a collective dropped part way, a second one in flight on another thread, and
//!   collectives out of step (checks.rs) poison the group: errors in every process, never
//!   a wrong sum, a hang or an abort.
//!
//! Without `mpirun` on the PATH the launcher skips locally and fails under `CI=true`.

#![allow(clippy::needless_range_loop)] // dims and ranks index several arrays at once

#[path = "processes/checks.rs"]
mod checks;
mod common;

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use checks::{
    check_attention_backward, check_backward, check_banded, check_collectives,
    check_groups_on_threads, check_layers, check_lora, check_model_backward, check_models,
    check_random_shapes, check_refusals, invariant_bits,
};
use wgpu_tp::{DistTensor, Error, Group, Numerics, Placement, Processes};

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

    // Misuse a group can meet: a collective dropped part way, a second one in flight on
    // another thread, collectives out of step; errors everywhere, no wrong sum, no abort.
    // (The workers leave MPI unfinalized, their groups broken, so mpirun fails the job:
    // what counts is that each one reports.)
    let Some((_, out, took)) = mpirun(2, "misuse", Duration::from_secs(180)) else {
        return;
    };
    let done = out.lines().filter(|l| l.starts_with("DONE")).count();
    assert_eq!(done, 2, "misuse: every worker ran every check");
    for (marker, per_process) in [
        ("CANCELLED-POISONS", 1),
        ("IN-FLIGHT-REFUSED", 1),
        ("OUT-OF-STEP-NAMED", 3),
    ] {
        let told = out.matches(marker).count();
        assert_eq!(told, 2 * per_process, "{marker}: every process, every case");
    }
    println!("misuse: refused and poisoned in every process in {took:.1?}");

    // A dead peer: mpirun ends the whole job (MPI's behaviour) instead of hanging.
    let Some((ok, _, took)) = mpirun(2, "die", Duration::from_secs(120)) else {
        return;
    };
    assert!(!ok, "a job whose process died must fail");
    println!("dead peer: job ended in {took:.1?}");
}

// ---------------------------------------------------------------- worker

/// This process's share of `tp` ranks over `n` processes: the first `tp % n` get one more.
pub fn local_count(tp: usize, n: usize, p: usize) -> usize {
    tp / n + usize::from(p < tp % n)
}

pub fn build(procs: &Processes, tp: usize, shared: bool, numerics: Numerics) -> Group {
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
                    check_backward(&g, &ctx);
                    check_attention_backward(&g, &ctx);
                    if p == 0 {
                        println!("ok: {ctx}");
                    }
                }
            }
            check_banded(&procs);
            check_refusals(&procs);
            check_groups_on_threads(&procs);
            check_models(&procs);
            check_lora(&procs);
            check_model_backward(&procs);
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
        "misuse" => {
            checks::a_cancelled_collective_poisons_its_group(&procs);
            checks::a_second_collective_in_flight_on_one_group_is_refused(&procs);
            checks::out_of_step_gathers_and_broadcasts_name_both(&procs);
            println!("DONE");
            // The groups' communicators are broken: MPI cannot be finalized.
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
