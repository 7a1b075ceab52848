//! `Group` and `GroupBuilder`: how ranks are made.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::adapters::{request_all, Finder};
use crate::collective::{Collective, CollectiveStats, DeviceCollective, HostCollective};
use crate::error::{Error, Result};
use crate::numerics::INVARIANT_BLOCKS;
use crate::rank::{DeviceCtx, Rank};
use crate::settings::GemmKernel;
use crate::settings::Numerics;

/// How long a wait on a device may take by default before it is an [`Error::Timeout`].
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

static NEXT_GROUP_ID: AtomicU64 = AtomicU64::new(1);

/// A set of ranks that compute together, and the collective that joins them.
///
/// Cheap to clone; `Send + Sync`, so one group may serve several threads.
#[derive(Clone)]
pub struct Group {
    inner: Arc<GroupInner>,
}

struct GroupInner {
    id: u64,
    ranks: Vec<Rank>,
    collective: Box<dyn Collective>,
    stats: CollectiveStats,
}

impl fmt::Debug for Group {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Group")
            .field("id", &self.inner.id)
            .field("ranks", &self.inner.ranks)
            .finish()
    }
}

impl Group {
    /// A builder; see [`GroupBuilder`].
    pub fn builder() -> GroupBuilder {
        GroupBuilder::default()
    }

    /// The ranks, in rank order.
    pub fn ranks(&self) -> &[Rank] {
        &self.inner.ranks
    }

    /// The number of ranks (the tp size).
    pub fn world_size(&self) -> usize {
        self.inner.ranks.len()
    }

    /// The collective joining the ranks.
    pub fn collective(&self) -> &dyn Collective {
        self.inner.collective.as_ref()
    }

    /// How many collectives of each kind this group has run.
    pub fn stats(&self) -> &CollectiveStats {
        &self.inner.stats
    }

    pub(crate) fn id(&self) -> u64 {
        self.inner.id
    }

    /// Checks that `tensors` holds one tensor per rank of this group, in rank order.
    pub(crate) fn check_locals(&self, op: &'static str, tensors: &[crate::Tensor]) -> Result<()> {
        if tensors.len() != self.world_size() {
            return Err(Error::shape(
                op,
                format!("{} tensors (one per rank)", self.world_size()),
                format!("{}", tensors.len()),
            ));
        }
        for (r, t) in tensors.iter().enumerate() {
            if t.rank().group_id() != self.id() {
                return Err(Error::GroupMismatch { op });
            }
            if t.rank().index() != r {
                return Err(Error::invalid(
                    op,
                    format!("tensor {r} lives on rank {}", t.rank().index()),
                ));
            }
        }
        Ok(())
    }

    /// Blocks until every rank's submitted work has finished ([`Rank::wait_idle`]).
    ///
    /// # Errors
    /// As [`Rank::wait_idle`].
    pub fn wait_idle(&self) -> Result<()> {
        self.ranks().iter().try_for_each(Rank::wait_idle)
    }

    /// True when both handles are the same group.
    pub fn same_as(&self, other: &Group) -> bool {
        self.inner.id == other.inner.id
    }
}

/// Where the ranks of a group come from.
enum Source {
    OneAdapter(usize),
    SharedDevice(usize),
    PerAdapter,
    Spread(usize),
    Adapters(Vec<wgpu::Adapter>),
    Devices(Vec<(wgpu::Device, wgpu::Queue)>),
}

/// Builds a [`Group`].
///
/// Adapters are chosen from `backends` (else `WGPU_BACKEND`, else all) whose name contains
/// `adapter_name` (else `WGPU_ADAPTER_NAME`, case-insensitive), real GPUs before software
/// ones, Vulkan/Metal/DX12 before GL.
///
/// ```no_run
/// # fn main() -> wgpu_tp::Result<()> {
/// let group = wgpu_tp::Group::builder().ranks_on_one_adapter(4).build()?;
/// assert_eq!(group.world_size(), 4);
/// # Ok(()) }
/// ```
pub struct GroupBuilder {
    source: Source,
    backends: Option<wgpu::Backends>,
    adapter_name: Option<String>,
    limits: Option<wgpu::Limits>,
    features: wgpu::Features,
    timeout: Duration,
    collective: Option<Box<dyn Collective>>,
    gemm: GemmKernel,
    numerics: Numerics,
}

impl Default for GroupBuilder {
    fn default() -> Self {
        GroupBuilder {
            source: Source::OneAdapter(1),
            backends: None,
            adapter_name: None,
            limits: None,
            features: wgpu::Features::empty(),
            timeout: DEFAULT_TIMEOUT,
            collective: None,
            gemm: GemmKernel::Auto,
            numerics: Numerics::Fast,
        }
    }
}

impl GroupBuilder {
    /// `n` ranks, each its own device requested from the same adapter (a laptop's one GPU,
    /// or lavapipe in CI, standing in for `n` GPUs).
    pub fn ranks_on_one_adapter(mut self, n: usize) -> Self {
        self.source = Source::OneAdapter(n);
        self
    }

    /// `n` logical ranks sharing ONE device and queue on the best adapter. Their
    /// collectives run on the device ([`DeviceCollective`]: a WGSL reduction, copies for
    /// gathers) with no host round trip, and a replicated result is one buffer that every
    /// rank reads. Same layers, same results as `n` separate devices.
    pub fn ranks_sharing_one_device(mut self, n: usize) -> Self {
        self.source = Source::SharedDevice(n);
        self
    }

    /// One rank per adapter found (a multi-GPU machine; here, a Vulkan and a GL rank).
    pub fn one_rank_per_adapter(mut self) -> Self {
        self.source = Source::PerAdapter;
        self
    }

    /// `n` ranks spread round-robin over every adapter found: rank `r` on adapter
    /// `r % adapters`.
    pub fn spread_over_adapters(mut self, n: usize) -> Self {
        self.source = Source::Spread(n);
        self
    }

    /// One rank per given adapter, in order (a group may mix backends).
    pub fn adapters(mut self, adapters: Vec<wgpu::Adapter>) -> Self {
        self.source = Source::Adapters(adapters);
        self
    }

    /// Ranks from devices an application already owns, in order.
    pub fn from_devices(mut self, devices: Vec<(wgpu::Device, wgpu::Queue)>) -> Self {
        self.source = Source::Devices(devices);
        self
    }

    /// Only these backends (overrides `WGPU_BACKEND`).
    pub fn backends(mut self, backends: wgpu::Backends) -> Self {
        self.backends = Some(backends);
        self
    }

    /// Only adapters whose name contains `name`, case-insensitive (overrides
    /// `WGPU_ADAPTER_NAME`).
    pub fn adapter_name(mut self, name: impl Into<String>) -> Self {
        self.adapter_name = Some(name.into());
        self
    }

    /// Request devices with these limits instead of the adapter's own.
    pub fn required_limits(mut self, limits: wgpu::Limits) -> Self {
        self.limits = Some(limits);
        self
    }

    /// Request these wgpu features on every device (e.g. `TIMESTAMP_QUERY` to time
    /// kernels); building fails with [`Error::RequestDevice`] where an adapter lacks one.
    pub fn required_features(mut self, features: wgpu::Features) -> Self {
        self.features = features;
        self
    }

    /// How long any wait on a device may take (default [`DEFAULT_TIMEOUT`]).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Force a GEMM kernel family on every rank (default [`GemmKernel::Auto`]).
    pub fn gemm_kernel(mut self, kernel: GemmKernel) -> Self {
        self.gemm = kernel;
        self
    }

    /// How sums are associated (default [`Numerics::Fast`]); [`Numerics::TpInvariant`]
    /// gives the same bits at tp 1, 2, 4 and 8.
    pub fn numerics(mut self, numerics: Numerics) -> Self {
        self.numerics = numerics;
        self
    }

    /// Use this collective instead of the default: [`DeviceCollective`] for ranks sharing
    /// one device, [`HostCollective`] otherwise.
    pub fn collective(mut self, collective: Box<dyn Collective>) -> Self {
        self.collective = Some(collective);
        self
    }

    /// Blocking [`GroupBuilder::build_async`].
    ///
    /// # Errors
    /// As [`GroupBuilder::build_async`].
    pub fn build(self) -> Result<Group> {
        pollster::block_on(self.build_async())
    }

    /// Makes the devices and the group.
    ///
    /// # Errors
    /// [`Error::NoAdapter`] when no adapter matches; [`Error::RequestDevice`] when an
    /// adapter refuses a device (e.g. limits it cannot meet); [`Error::InvalidArgument`]
    /// for zero ranks.
    pub async fn build_async(self) -> Result<Group> {
        let GroupBuilder {
            source,
            backends,
            adapter_name,
            limits,
            features,
            timeout,
            collective,
            gemm,
            numerics,
        } = self;
        let backends = backends
            .or_else(wgpu::Backends::from_env)
            .unwrap_or(wgpu::Backends::all());
        let name = adapter_name.or_else(|| std::env::var("WGPU_ADAPTER_NAME").ok());
        let finder = Finder {
            instance: wgpu::Instance::new(wgpu::InstanceDescriptor {
                backends,
                ..wgpu::InstanceDescriptor::new_without_display_handle_from_env()
            }),
            backends,
            name,
        };
        let mut logical = 1;
        let devices = match source {
            Source::Devices(d) => d,
            Source::SharedDevice(n) => {
                check_count(n)?;
                logical = n;
                let best = finder.adapters().await?.swap_remove(0);
                request_all(vec![best], limits.as_ref(), features).await?
            }
            Source::Adapters(a) => request_all(a, limits.as_ref(), features).await?,
            Source::OneAdapter(n) => {
                check_count(n)?;
                let best = finder.adapters().await?.swap_remove(0).get_info();
                let mut adapters = Vec::with_capacity(n);
                for _ in 0..n {
                    // A fresh adapter object per device: WebGPU allows one device per adapter.
                    adapters.push(finder.same_as(&best).await?);
                }
                request_all(adapters, limits.as_ref(), features).await?
            }
            Source::PerAdapter => {
                request_all(finder.adapters().await?, limits.as_ref(), features).await?
            }
            Source::Spread(n) => {
                check_count(n)?;
                let infos: Vec<_> = finder
                    .adapters()
                    .await?
                    .iter()
                    .map(|a| a.get_info())
                    .collect();
                let mut adapters = Vec::with_capacity(n);
                for r in 0..n {
                    adapters.push(finder.same_as(&infos[r % infos.len()]).await?);
                }
                request_all(adapters, limits.as_ref(), features).await?
            }
        };
        check_count(devices.len())?;
        let id = NEXT_GROUP_ID.fetch_add(1, Ordering::Relaxed);
        let contexts: Vec<_> = devices
            .into_iter()
            .map(|(d, q)| DeviceCtx::new(d, q, timeout, gemm, numerics))
            .collect();
        let world = contexts.len() * logical;
        if numerics == Numerics::TpInvariant && !INVARIANT_BLOCKS.is_multiple_of(world) {
            return Err(Error::invalid(
                "group.build",
                format!("tp-invariant numerics need tp 1, 2, 4 or 8, not {world}"),
            ));
        }
        let ranks: Vec<Rank> = (0..world)
            .map(|i| Rank::new(contexts[i / logical].clone(), i, world, id))
            .collect();
        let shared = ranks.iter().all(|r| r.shares_device_with(&ranks[0]));
        let collective = collective.unwrap_or_else(|| {
            if shared && world > 1 {
                Box::new(DeviceCollective)
            } else {
                Box::new(HostCollective)
            }
        });
        Ok(Group {
            inner: Arc::new(GroupInner {
                id,
                ranks,
                collective,
                stats: CollectiveStats::default(),
            }),
        })
    }
}

fn check_count(n: usize) -> Result<()> {
    if n == 0 {
        return Err(Error::invalid(
            "group.build",
            "a group needs at least one rank",
        ));
    }
    Ok(())
}
