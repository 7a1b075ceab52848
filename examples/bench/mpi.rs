//! Section `mpi` (built with `--features mpi`): the 64 MiB all-reduce of 4 ranks as 2
//! processes x 2 ranks against 1 process x 4 ranks (host collective), and against the bytes
//! our algorithm moves between processes at the bandwidth a plain `MPI_Allreduce` of the
//! same buffer reaches in the same run. The bench starts itself under `mpirun -n 2` for
//! the multi-process half.

use std::process::Command;
use std::time::Duration;

use wgpu_tp::Group;

use crate::transfer::allreduce_time;

pub struct Figures {
    pub vs_inprocess: f64,
    pub vs_link: f64,
}

const PROCS: usize = 2;
const LOCAL: usize = 2;

/// The multi-process half, run by every process under `mpirun`: prints, on process 0,
/// `MPI-RESULT <our all-reduce s> <MPI_Allreduce s>`.
#[cfg(feature = "mpi")]
pub fn worker(mib: usize, reps: usize) -> Result<(), Box<dyn std::error::Error>> {
    use wgpu_tp::mpi::collective::SystemOperation;
    use wgpu_tp::mpi::topology::SimpleCommunicator;
    use wgpu_tp::mpi::traits::CommunicatorCollectives;
    use wgpu_tp::Processes;

    let procs = Processes::init()?;
    let index = procs.index();
    let elems = (mib << 20) / 4;
    let group = Group::builder()
        .processes(procs)
        .ranks_on_one_adapter(LOCAL)
        .build()?;
    let ours = allreduce_time(&group, elems, reps)?.as_secs_f64();
    let world = SimpleCommunicator::world();
    let send = vec![index as f32 + 0.5; elems];
    let mut recv = vec![0.0f32; elems];
    let plain = crate::median(reps, || {
        world.all_reduce_into(&send[..], &mut recv[..], SystemOperation::sum());
        Ok::<(), String>(())
    })?
    .as_secs_f64();
    if index == 0 {
        println!("MPI-RESULT {ours} {plain}");
    }
    Ok(())
}

#[cfg(not(feature = "mpi"))]
pub fn worker(_mib: usize, _reps: usize) -> Result<(), Box<dyn std::error::Error>> {
    Err("built without the mpi feature".into())
}

/// Both figures, or `None` when this bench was built without the `mpi` feature.
pub fn run(mib: usize, reps: usize) -> Result<Option<Figures>, Box<dyn std::error::Error>> {
    if !cfg!(feature = "mpi") {
        println!("\nmpi: skipped (build the bench with --features mpi)");
        return Ok(None);
    }
    let elems = (mib << 20) / 4;
    let one = Group::builder()
        .ranks_on_one_adapter(PROCS * LOCAL)
        .build()?;
    let inprocess = allreduce_time(&one, elems, reps)?.as_secs_f64();
    drop(one);
    let exe = std::env::current_exe()?;
    let out = Command::new("mpirun")
        .args(["--oversubscribe", "-n", &PROCS.to_string()])
        .arg(exe)
        .args(["--mpi-worker", "--allreduce-mib", &mib.to_string()])
        .args(["--reps", &reps.to_string()])
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("MPI-RESULT "))
        .ok_or_else(|| format!("the mpirun half failed: {stdout}"))?;
    let v: Vec<f64> = line
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    let (ours, plain) = (v[0], v[1]);
    // Bytes each process sends: ours, LOCAL addends' regions for the other processes
    // (all-to-all) plus its summed region to each of them (all-gather); a bandwidth-optimal
    // all-reduce, 2 (P - 1) / P of the buffer. MPI's link bandwidth is the latter's rate.
    let frac = (PROCS - 1) as f64 / PROCS as f64;
    let bytes = (mib << 20) as f64;
    let ours_bytes = (LOCAL + 1) as f64 * bytes * frac;
    let plain_bytes = 2.0 * bytes * frac;
    let link = ours_bytes / (plain_bytes / plain);
    let ms = |s: f64| Duration::from_secs_f64(s).as_secs_f64() * 1e3;
    println!("\nAll-reduce of {mib} MiB, 4 ranks (median of {reps})");
    println!(
        "  1 process x 4 ranks (host collective): {:.1} ms",
        ms(inprocess)
    );
    println!(
        "  {PROCS} processes x {LOCAL} ranks (MPI):         {:.1} ms",
        ms(ours)
    );
    println!(
        "  plain MPI_Allreduce, {PROCS} processes:     {:.1} ms",
        ms(plain)
    );
    println!(
        "  our bytes between processes at MPI's rate: {:.1} ms ({:.0} MiB sent per process)",
        ms(link),
        ours_bytes / f64::from(1u32 << 20)
    );
    Ok(Some(Figures {
        vs_inprocess: ours / inprocess,
        vs_link: ours / link,
    }))
}
