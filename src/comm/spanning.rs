//! The collectives of a group that spans processes: the local ranks' buffers go to the
//! host, MPI moves them between processes, the host combines them in global rank order
//! and every local rank gets its result uploaded.
//!
//! The all-reduce is the bandwidth-optimal scheme that is exact by construction: the
//! buffer is cut into one region per process; an all-to-all hands process `q` region `q`
//! of every rank's addend (each rank's own, not a per-process sum, so the order of the
//! sum never depends on how ranks are laid over processes); `q` sums its region over all
//! ranks in global rank order (or along the tp-invariant tree) with the single-process
//! code; an all-gather hands every process every region's sum. The bits are those of one
//! process holding all ranks, whatever MPI's own reduction algorithm would have done.

use super::checked::gathered_shape;
use super::chunked::{chunked_all_reduce, Cuts};
use super::header::{
    out_of_step, ALL_GATHER, ALL_REDUCE, BROADCAST, FROM_LOCALS, REDUCE_SCATTER, TO_HOST,
};
use super::host::{give_host_chunk, sum_parallel, take_host_chunk};
use super::processes::Processes;
use super::{Comm, Spread};
use crate::error::{Error, Result};
use crate::tensor::shard::{concat_host, offsets, split_host};
use crate::tensor::{read_back, Tensor};

/// The processes of a spread that has several (the caller checked).
fn link(spread: &Spread) -> Result<&Processes> {
    spread
        .processes
        .as_ref()
        .ok_or_else(|| Error::invalid("group", "a multi-process collective without processes"))
}

/// Every local tensor on the host, in rank order.
async fn to_host(op: &'static str, inputs: &[Tensor]) -> Result<Vec<Vec<f32>>> {
    read_back(op, &inputs.iter().collect::<Vec<_>>()).await
}

/// `[start, end)` of the `n`-element region of each of `p` processes.
fn regions(n: usize, p: usize) -> Vec<std::ops::Range<usize>> {
    let bound = |c: usize| ((c as u128 * n as u128) / p as u128) as usize;
    (0..p).map(|c| bound(c)..bound(c + 1)).collect()
}

/// Words each process sends ahead of its blocks in an all-to-all: which collective, on
/// what shape, and how many values of it this exchange carries (the header all-gather
/// that starts every collective, header.rs, checked the collective and shape already;
/// this checks each exchange of it).
const HEADER: usize = 4;

fn header(what: u64, shape: [usize; 2], len: usize) -> [f32; HEADER] {
    [what as u32, shape[0] as u32, shape[1] as u32, len as u32].map(f32::from_bits)
}

/// Checks that process `p`'s in-band header `theirs` is `ours`.
fn check_header(op: &'static str, p: usize, theirs: &[f32], ours: &[f32; HEADER]) -> Result<()> {
    let words = |h: &[f32]| -> Vec<u64> { h.iter().map(|v| u64::from(v.to_bits())).collect() };
    let (theirs, ours) = (words(theirs), words(ours));
    if theirs == ours {
        return Ok(());
    }
    Err(out_of_step(op, p, &theirs, &ours))
}

/// A digest of shard sizes, for the header: processes asked for different splits are out
/// of step (FNV-1a).
fn digest(sizes: &[usize]) -> u64 {
    sizes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &s| {
        (h ^ s as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The elementwise sum of `addends` (every rank's, in global rank order).
fn sum_addends(g: &Comm, addends: &[&[f32]], len: usize) -> Vec<f32> {
    let mut sum = vec![0.0; len];
    if len > 0 {
        sum_parallel(&mut sum, addends, g.ranks()[0].numerics());
    }
    sum
}

impl Comm {
    /// How long an exchange between processes may wait for the others.
    pub(super) fn span_timeout(&self) -> std::time::Duration {
        self.ranks()[0].timeout()
    }

    /// All-reduce between processes (module docs), a chunk of rows at a time: the
    /// read-back of the next chunk runs while this one is exchanged and summed, and the
    /// host buffers are reused from chunk to chunk and call to call.
    pub(super) async fn span_all_reduce(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>> {
        let op = "all_reduce";
        let spread = self.spread();
        let procs = link(spread)?;
        let (me, timeout) = (procs.index(), self.span_timeout());
        let numerics = self.ranks()[0].numerics();
        let shape = inputs[0].shape();
        self.agree(op, procs, ALL_REDUCE, [shape[0] as u64, shape[1] as u64, 0])?;
        // send, recv, sum, gathered: taken once, handed back to the pool at the end (on
        // an error the exchange leaks the ones MPI may still touch).
        let mut bufs = Some([(); 4].map(|()| take_host_chunk(0)));
        let mut combine = |parts: &[&[f32]], out: &mut Vec<f32>| -> Result<()> {
            let [mut send, recv, mut sum, gathered] = bufs
                .take()
                .ok_or_else(|| Error::invalid(op, "the exchange failed before"))?;
            let regions = regions(parts[0].len(), procs.count());
            let ours = header(ALL_REDUCE, shape, parts[0].len());
            // Every other process's region of this process's addends, after the header;
            // this process's own region is summed straight from the read-back buffers.
            send.clear();
            let mut send_lens = Vec::with_capacity(regions.len());
            for (q, r) in regions.iter().enumerate() {
                if q == me {
                    send_lens.push(0);
                    continue;
                }
                send.extend_from_slice(&ours);
                parts
                    .iter()
                    .for_each(|p| send.extend_from_slice(&p[r.clone()]));
                send_lens.push(HEADER + parts.len() * r.len());
            }
            let mine = regions[me].clone();
            let recv_lens: Vec<usize> = (spread.per_process.iter().enumerate())
                .map(|(p, l)| if p == me { 0 } else { HEADER + l * mine.len() })
                .collect();
            let (send, recv) =
                procs.all_to_all(op, (send, &send_lens), (recv, &recv_lens), timeout)?;
            // The addends of this region in global rank order: process-major.
            let mut addends: Vec<&[f32]> = Vec::with_capacity(spread.world);
            let mut at = 0;
            for (p, &l) in spread.per_process.iter().enumerate() {
                if p == me {
                    addends.extend(parts.iter().map(|part| &part[mine.clone()]));
                    continue;
                }
                check_header(op, p, &recv[at..at + HEADER], &ours)?;
                at += HEADER;
                for _ in 0..l {
                    addends.push(&recv[at..at + mine.len()]);
                    at += mine.len();
                }
            }
            sum.resize(mine.len(), 0.0);
            if !mine.is_empty() {
                sum_parallel(&mut sum, &addends, numerics);
            }
            let lens: Vec<usize> = regions.iter().map(|r| r.len()).collect();
            let (sum, mut gathered) = procs.all_gather(op, sum, (gathered, &lens), timeout)?;
            // The gathered chunk becomes the host chunk; the old one is the next receive.
            std::mem::swap(out, &mut gathered);
            bufs = Some([send, recv, sum, gathered]);
            Ok(())
        };
        let out =
            chunked_all_reduce(op, inputs, Cuts::Fixed(spread.chunk_bytes), &mut combine).await;
        bufs.into_iter().flatten().for_each(give_host_chunk);
        out
    }

    /// Every rank's tensor of the group on the host (the local ones read back, the
    /// others from their processes), with its shape, in global rank order: what
    /// `DistTensor::to_host` runs (a collective between processes).
    pub(crate) async fn gather_host(
        &self,
        op: &'static str,
        inputs: &[Tensor],
    ) -> Result<(Vec<Vec<f32>>, Vec<[usize; 2]>)> {
        let spread = self.spread();
        let Some(procs) = spread.processes.as_ref() else {
            let shapes = inputs.iter().map(Tensor::shape).collect();
            return Ok((to_host(op, inputs).await?, shapes));
        };
        let flight = self.take_off(op)?;
        let out = async {
            self.agree(op, procs, TO_HOST, [0; 3])?;
            self.gather_host_span(op, inputs, procs).await
        };
        flight.land(out.await)
    }

    async fn gather_host_span(
        &self,
        op: &'static str,
        inputs: &[Tensor],
        procs: &Processes,
    ) -> Result<(Vec<Vec<f32>>, Vec<[usize; 2]>)> {
        let shapes = self.span_shapes(op, inputs, procs)?;
        let numel = |s: &[usize; 2]| s[0] * s[1];
        let data: Vec<f32> = to_host(op, inputs).await?.concat();
        let lens: Vec<usize> = (0..procs.count())
            .map(|p| self.ranks_of_process(p).map(|r| numel(&shapes[r])).sum())
            .collect();
        let (_, all) = procs.all_gather(op, data, (Vec::new(), &lens), self.span_timeout())?;
        let mut parts = Vec::with_capacity(shapes.len());
        let mut at = 0;
        for s in &shapes {
            parts.push(all[at..at + numel(s)].to_vec());
            at += numel(s);
        }
        Ok((parts, shapes))
    }

    /// The shape of every rank's tensor of the group (this process's `inputs` and the
    /// other processes'), in global rank order: what `DistTensor::from_locals` runs (a
    /// collective between processes).
    pub(crate) fn gather_shapes(
        &self,
        op: &'static str,
        inputs: &[Tensor],
    ) -> Result<Vec<[usize; 2]>> {
        let spread = self.spread();
        let Some(procs) = spread.processes.as_ref() else {
            return Ok(inputs.iter().map(Tensor::shape).collect());
        };
        let flight = self.take_off(op)?;
        let out = self
            .agree(op, procs, FROM_LOCALS, [0; 3])
            .and_then(|()| self.span_shapes(op, inputs, procs));
        flight.land(out)
    }

    /// The exchange of [`Comm::gather_shapes`], inside a collective.
    fn span_shapes(
        &self,
        op: &'static str,
        inputs: &[Tensor],
        procs: &Processes,
    ) -> Result<Vec<[usize; 2]>> {
        let mine: Vec<u64> = inputs
            .iter()
            .flat_map(|t| t.shape().map(|d| d as u64))
            .collect();
        let lens: Vec<usize> = self.spread().per_process.iter().map(|l| 2 * l).collect();
        let (_, all) = procs.all_gather(op, mine, (Vec::new(), &lens), self.span_timeout())?;
        Ok(all
            .chunks(2)
            .map(|c| [c[0] as usize, c[1] as usize])
            .collect())
    }

    /// All-gather between processes: every rank's shard, concatenated, on every rank.
    pub(super) async fn span_all_gather(
        &self,
        inputs: &[Tensor],
        dim: usize,
    ) -> Result<Vec<Tensor>> {
        let op = "all_gather";
        let procs = link(self.spread())?;
        let across = inputs[0].shape()[1 - dim] as u64;
        self.agree(op, procs, ALL_GATHER + dim as u64, [across, 0, 0])?;
        let (parts, shapes) = self.gather_host_span(op, inputs, procs).await?;
        let shape = gathered_shape(op, &shapes, dim)?;
        let full = concat_host(&parts, &shapes, dim)?;
        Tensor::replicated(self.ranks(), &full, shape)
    }

    /// Reduce-scatter between processes: as the all-reduce, with process `q`'s region
    /// the slices of its ranks, and no all-gather.
    pub(super) async fn span_reduce_scatter(
        &self,
        inputs: &[Tensor],
        dim: usize,
        sizes: &[usize],
    ) -> Result<Vec<Tensor>> {
        let op = "reduce_scatter";
        let spread = self.spread();
        let procs = link(spread)?;
        let shape = inputs[0].shape();
        let starts = offsets(sizes);
        let region = |p: usize| {
            let ranks = self.ranks_of_process(p);
            let start = starts[ranks.start];
            start..start + sizes[ranks].iter().sum::<usize>()
        };
        let other = shape[1 - dim];
        let args = [shape[0] as u64, shape[1] as u64, digest(sizes)];
        self.agree(op, procs, REDUCE_SCATTER + dim as u64, args)?;
        let parts = to_host(op, inputs).await?;
        let ours = header(REDUCE_SCATTER + dim as u64, shape, parts[0].len());
        let mut send = Vec::with_capacity(parts.len() * (HEADER + parts[0].len()));
        let mut send_lens = Vec::with_capacity(procs.count());
        for q in 0..procs.count() {
            let r = region(q);
            send.extend_from_slice(&ours);
            for p in &parts {
                if dim == 0 {
                    send.extend_from_slice(&p[r.start * other..r.end * other]);
                } else {
                    for row in p.chunks(shape[1]) {
                        send.extend_from_slice(&row[r.clone()]);
                    }
                }
            }
            send_lens.push(HEADER + inputs.len() * r.len() * other);
        }
        drop(parts);
        let mine = region(procs.index()).len() * other;
        let recv_lens: Vec<usize> = (spread.per_process.iter())
            .map(|l| HEADER + l * mine)
            .collect();
        let (_, recv) = procs.all_to_all(
            op,
            (send, &send_lens),
            (Vec::new(), &recv_lens),
            self.span_timeout(),
        )?;
        let mut addends: Vec<&[f32]> = Vec::with_capacity(spread.world);
        let mut at = 0;
        for (p, &l) in spread.per_process.iter().enumerate() {
            check_header(op, p, &recv[at..at + HEADER], &ours)?;
            at += HEADER;
            for _ in 0..l {
                addends.push(&recv[at..at + mine]);
                at += mine;
            }
        }
        let sum = sum_addends(self, &addends, mine);
        let mut sum_shape = shape;
        sum_shape[dim] = region(procs.index()).len();
        let local_sizes = &sizes[self.local_range()];
        let pieces = split_host(&sum, sum_shape, dim, local_sizes)?;
        self.ranks()
            .iter()
            .zip(pieces)
            .zip(local_sizes)
            .map(|((rank, piece), &len)| {
                let mut s = shape;
                s[dim] = len;
                Tensor::from_host(rank, &piece, s)
            })
            .collect()
    }

    /// Broadcast between processes: the process holding `root` sends its tensor (shape
    /// first) to every process.
    pub(super) async fn span_broadcast(
        &self,
        inputs: &[Tensor],
        root: usize,
    ) -> Result<Vec<Tensor>> {
        let op = "broadcast";
        let procs = link(self.spread())?;
        let owner = (0..procs.count())
            .find(|&p| self.ranks_of_process(p).contains(&root))
            .ok_or_else(|| Error::invalid(op, format!("root {root} is not a rank")))?;
        self.agree(op, procs, BROADCAST, [root as u64, 0, 0])?;
        let local = self.local_range();
        let held = local.contains(&root).then(|| &inputs[root - local.start]);
        let shape = held.map_or([0, 0], Tensor::shape).map(|d| d as u64);
        let shape = procs.broadcast(op, shape.to_vec(), owner, self.span_timeout())?;
        let shape = [shape[0] as usize, shape[1] as usize];
        let data = match held {
            Some(t) => to_host(op, std::slice::from_ref(t)).await?.concat(),
            None => vec![0.0; shape[0] * shape[1]],
        };
        let data = procs.broadcast(op, data, owner, self.span_timeout())?;
        Tensor::replicated(self.ranks(), &data, shape)
    }
}

#[cfg(test)]
mod tests {
    use super::regions;

    #[test]
    fn regions_cover_the_buffer_in_order_even_when_shorter_than_the_processes() {
        for (n, p) in [(10, 3), (2, 3), (0, 2), (7, 1), (1 << 20, 7)] {
            let r = regions(n, p);
            assert_eq!(r.len(), p);
            assert_eq!(r[0].start, 0);
            assert_eq!(r[p - 1].end, n);
            assert!(r.windows(2).all(|w| w[0].end == w[1].start));
            let (min, max) = (
                r.iter().map(|x| x.len()).min(),
                r.iter().map(|x| x.len()).max(),
            );
            assert!(max.unwrap() - min.unwrap() <= 1);
        }
    }
}
