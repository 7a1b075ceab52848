//! verify under `mpirun`: one process per MPI rank, the tp ranks spread over them
//! (process-major, the first processes one more when they do not divide). Only the first
//! process prints the checks; every process prints which ranks it owns.

use std::sync::atomic::{AtomicBool, Ordering};

use wgpu_tp::GroupBuilder;

/// False on every process but the first, which prints the report.
static LEAD: AtomicBool = AtomicBool::new(true);

/// Whether this process prints the report.
pub fn lead() -> bool {
    LEAD.load(Ordering::Relaxed)
}

/// `println!` on the first process only.
#[macro_export]
macro_rules! say {
    ($($t:tt)*) => {
        if $crate::spmd::lead() {
            println!($($t)*);
        }
    };
}

/// This process's share of `tp` ranks over `n` processes.
#[cfg_attr(not(feature = "mpi"), allow(dead_code))]
fn local_count(tp: usize, n: usize, p: usize) -> usize {
    tp / n + usize::from(p < tp % n)
}

/// `builder` spanning the processes `mpirun` started, and this process's rank count; or
/// `builder` unchanged and `None` outside `mpirun`.
#[cfg(feature = "mpi")]
pub fn spread(
    builder: GroupBuilder,
    tp: usize,
) -> Result<(GroupBuilder, Option<usize>), Box<dyn std::error::Error>> {
    use wgpu_tp::Processes;
    if !Processes::launched_by_mpirun() {
        return Ok((builder, None));
    }
    let procs = Processes::init()?;
    let (p, n) = (procs.index(), procs.count());
    if tp < n {
        return Err(format!("--tp-size {tp} over {n} processes: each needs a rank").into());
    }
    LEAD.store(p == 0, Ordering::Relaxed);
    Ok((builder.processes(procs), Some(local_count(tp, n, p))))
}

/// Without the `mpi` feature: refuses to run under `mpirun`, where every process would
/// run the whole group alone.
#[cfg(not(feature = "mpi"))]
pub fn spread(
    builder: GroupBuilder,
    _tp: usize,
) -> Result<(GroupBuilder, Option<usize>), Box<dyn std::error::Error>> {
    let launched = ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK"]
        .iter()
        .any(|v| std::env::var_os(v).is_some());
    if launched {
        return Err("started by mpirun, but built without the mpi feature: \
                    cargo build --release --features mpi --example verify"
            .into());
    }
    Ok((builder, None))
}
