//! [`RankStats`]: what a rank's device holds and has done, read in one snapshot.

/// A snapshot of what a rank's device holds and has done for the crate, from
/// [`Rank::stats`](crate::Rank::stats). The device's counts: logical ranks sharing one
/// device read the same values.
///
/// ```no_run
/// # fn main() -> wgpu_tp::Result<()> {
/// let group = wgpu_tp::Group::builder().ranks_on_one_adapter(2).build()?;
/// let before = group.ranks()[0].stats();
/// // ... a forward ...
/// let after = group.ranks()[0].stats();
/// println!("{} dispatches", after.dispatches - before.dispatches);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct RankStats {
    /// Bytes of the buffers the device holds for tensors now: what weights, caches and
    /// live activations occupy.
    pub tensor_bytes: u64,
    /// The most bytes tensors have held at once (`tensor_bytes` at its highest) since the
    /// device was made or the last [`Rank::reset_peak`](crate::Rank::reset_peak): what a
    /// step needs at its peak, transient tensors included.
    pub peak_tensor_bytes: u64,
    /// Bytes of free tensor buffers the device keeps for reuse; never more than the
    /// group's [`buffer_cache_bytes`](crate::GroupBuilder::buffer_cache_bytes).
    pub cached_bytes: u64,
    /// wgpu buffers the device has made so far: tensors (the cache's misses), read-back
    /// and upload staging, kernel parameters. Once a workload reaches its steady state (a
    /// decode step after the first, an all-reduce after the first of its size) it stays
    /// put: each call then reuses what earlier calls made.
    pub buffers_made: u64,
    /// Kernel dispatches the device has submitted so far: what a forward or a collective
    /// costs in launches, e.g. one for an all-reduce of up to eight ranks sharing a
    /// device.
    pub dispatches: u64,
}
