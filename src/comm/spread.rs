//! `Spread`: how a group's ranks lie over processes, and how the processes agree on it
//! when a group is built.

use std::time::Duration;

use super::processes::Processes;
use crate::error::{Error, Result};
use crate::kernels::settings::Numerics;

/// How the group's ranks lie over processes: process `p` holds `per_process[p]` ranks,
/// numbered process-major.
#[derive(Debug, Clone)]
pub(crate) struct Spread {
    pub(crate) processes: Option<Processes>,
    pub(crate) per_process: Vec<usize>,
    pub(crate) first: usize,
    pub(crate) world: usize,
    /// The largest buffer every device of every process can make, up to the host
    /// collective's chunk: the all-reduce between processes stages chunks of this size.
    pub(crate) chunk_bytes: u64,
    /// The largest band (buffer made and bound whole) of the other processes' devices
    /// too (`u64::MAX` in one process).
    #[cfg_attr(not(feature = "safetensors"), allow(dead_code))]
    pub(crate) band_bytes: u64,
}

impl Spread {
    /// One process holding all `n` ranks.
    pub(crate) fn single(n: usize) -> Self {
        Spread {
            processes: None,
            per_process: vec![n],
            first: 0,
            world: n,
            chunk_bytes: super::CHUNK_BYTES,
            band_bytes: u64::MAX,
        }
    }
}

/// Every process's rank count and largest band, and a check that the processes agree on
/// the numerics (their sums must be the same computation): one all-gather of three words.
pub(crate) fn spread_over(
    processes: Processes,
    local: usize,
    numerics: Numerics,
    band: u64,
    timeout: Duration,
) -> Result<Spread> {
    let op = "group.build";
    let n = processes.count();
    let mine = vec![local as u64, numerics as u64, band];
    let (_, all) = processes.all_gather(op, mine, (Vec::new(), &vec![3; n]), timeout)?;
    let per_process: Vec<usize> = all.chunks(3).map(|c| c[0] as usize).collect();
    let smallest = all.chunks(3).map(|c| c[2]).min().unwrap_or(0);
    if let Some(p) = (0..n).find(|&p| all[3 * p + 1] != numerics as u64) {
        return Err(Error::invalid(
            op,
            format!(
                "process {p} builds its group with other numerics than process {} \
                 ({numerics:?}): every process must use the same",
                processes.index()
            ),
        ));
    }
    let first = per_process[..processes.index()].iter().sum();
    Ok(Spread {
        world: per_process.iter().sum(),
        per_process,
        first,
        processes: Some(processes),
        chunk_bytes: smallest.min(super::CHUNK_BYTES),
        band_bytes: smallest,
    })
}
