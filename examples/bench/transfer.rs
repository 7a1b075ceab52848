//! The all-reduce against the copy limit, and on one shared device against the host path.

use std::time::{Duration, Instant};

use wgpu_tp::{DistTensor, Group, Placement, Rank, Tensor};

use crate::median;

pub struct Figures {
    /// Seconds: read-back + upload of every rank's bytes at the measured bandwidths.
    pub copy_limit: f64,
    pub host_allreduce: f64,
    pub shared_allreduce: f64,
}

const RANKS: usize = 4;

/// Read-back (copy to a reused staging buffer, map, copy out into a reused host vector)
/// and upload (`write_buffer` from a host vector, waited for) of `bytes` on `rank`,
/// with nothing allocated inside the timed loop: the copy limit of this adapter.
fn copy_times(rank: &Rank, bytes: u64, reps: usize) -> Result<(Duration, Duration), String> {
    let device = rank.device();
    let usage =
        wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST;
    let buffer = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("bench buffer"),
        size: bytes,
        usage,
        mapped_at_creation: false,
    });
    let staging = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("bench staging"),
        size: bytes,
        usage: wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::MAP_READ,
        mapped_at_creation: false,
    });
    let mut host = vec![1u8; bytes as usize];
    let wait = || {
        device
            .poll(wgpu::PollType::wait_indefinitely())
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    // wgpu stages each write_buffer in fresh memory: writing 4 MiB pieces lets its
    // allocator reuse them (faster here than one 64 MiB write); the faster one counts.
    let upload = [bytes, 4 << 20]
        .into_iter()
        .map(|piece| {
            median(reps, || {
                for (i, part) in host.chunks(piece as usize).enumerate() {
                    rank.queue().write_buffer(&buffer, i as u64 * piece, part);
                }
                rank.queue().submit([]);
                wait()
            })
        })
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .min()
        .unwrap_or_default();
    let read = median(reps, || {
        let mut enc = device.create_command_encoder(&Default::default());
        enc.copy_buffer_to_buffer(&buffer, 0, &staging, 0, bytes);
        rank.queue().submit([enc.finish()]);
        staging.slice(..).map_async(wgpu::MapMode::Read, |_| {});
        wait()?;
        {
            let view = staging
                .slice(..)
                .get_mapped_range()
                .map_err(|e| e.to_string())?;
            host.copy_from_slice(&view);
        }
        staging.unmap();
        Ok::<(), String>(())
    })?;
    Ok((read, upload))
}

/// The median time of an all-reduce of `elems` values over `group` (rank `r` adds
/// `r + 0.5`; checked once).
pub fn allreduce_time(
    group: &Group,
    elems: usize,
    reps: usize,
) -> Result<Duration, wgpu_tp::Error> {
    let locals = group
        .ranks()
        .iter()
        .map(|rank| {
            let v = rank.index() as f32 + 0.5;
            Tensor::from_host(rank, &vec![v; elems], [elems / 1024, 1024])
        })
        .collect::<Result<Vec<_>, _>>()?;
    let x = DistTensor::from_locals(group, locals, Placement::Partial)?;
    // Check once that the sum is right: 0.5 + 1.5 + 2.5 + 3.5 = 8 everywhere.
    let y = x.all_reduce()?.to_host()?;
    let want = (0..group.world_size()).map(|r| r as f32 + 0.5).sum::<f32>();
    assert!(y.iter().all(|&v| v == want), "all-reduce gave a wrong sum");
    median(reps, || {
        let y = x.all_reduce()?;
        group.wait_idle()?;
        drop(y);
        Ok(())
    })
}

pub fn run(mib: usize, reps: usize) -> Result<Figures, Box<dyn std::error::Error>> {
    let bytes = (mib as u64) << 20;
    let elems = (bytes / 4) as usize;
    let host_group = Group::builder().ranks_on_one_adapter(RANKS).build()?;
    let t0 = Instant::now();
    let (read, upload) = copy_times(&host_group.ranks()[0], bytes, reps)?;
    let gbs = |t: Duration| bytes as f64 / t.as_secs_f64() / 1e9;
    let copy_limit = RANKS as f64 * (read + upload).as_secs_f64();
    let host = allreduce_time(&host_group, elems, reps)?.as_secs_f64();
    drop(host_group);
    let shared_group = Group::builder().ranks_sharing_one_device(RANKS).build()?;
    let shared = allreduce_time(&shared_group, elems, reps)?.as_secs_f64();
    println!("\nAll-reduce of {mib} MiB over {RANKS} ranks (median of {reps})");
    println!(
        "  read-back {:.2} GB/s, upload {:.2} GB/s on one device",
        gbs(read),
        gbs(upload)
    );
    println!(
        "  copy limit ({RANKS} read-backs + {RANKS} uploads): {:.1} ms",
        copy_limit * 1e3
    );
    println!(
        "  host collective, {RANKS} devices:        {:.1} ms",
        host * 1e3
    );
    println!(
        "  device collective, 1 shared device:  {:.1} ms",
        shared * 1e3
    );
    println!("  ({:.1} s)", t0.elapsed().as_secs_f64());
    Ok(Figures {
        copy_limit,
        host_allreduce: host,
        shared_allreduce: shared,
    })
}
