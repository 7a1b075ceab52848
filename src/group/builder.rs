//! `GroupBuilder`: how ranks are made.

use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::adapters::{backends_from_env, Finder};
use super::devices::{check_count, make_devices};
use super::{Group, DEFAULT_TIMEOUT, NEXT_GROUP_ID};
use crate::comm::Processes;
use crate::comm::{spread_over, Collective, Comm, DeviceCollective, HostCollective, Spread};
use crate::error::{Error, Result};
use crate::kernels::settings::{GemmKernel, Numerics};
use crate::ops::numerics::INVARIANT_BLOCKS;
use crate::rank::pool::DEFAULT_BUFFER_CACHE_BYTES;
use crate::rank::{DeviceCallbacks, DeviceCtx, Rank};

/// Where the ranks of a group come from.
pub(super) enum Source {
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
/// ones, Vulkan/Metal/DX12 before GL. On wasm32 (WebGPU in a browser, which lists no
/// adapters) the page's adapter is requested, high performance asked, a fresh one per
/// device; `build` blocks and is not there: await [`GroupBuilder::build_async`].
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
    cache_bytes: u64,
    take_over_callbacks: bool,
    processes: Option<Processes>,
}

impl fmt::Debug for GroupBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let source = match &self.source {
            Source::OneAdapter(n) => format!("ranks_on_one_adapter({n})"),
            Source::SharedDevice(n) => format!("ranks_sharing_one_device({n})"),
            Source::PerAdapter => "one_rank_per_adapter".into(),
            Source::Spread(n) => format!("spread_over_adapters({n})"),
            Source::Adapters(a) => format!("adapters({} given)", a.len()),
            Source::Devices(d) => format!("from_devices({} given)", d.len()),
        };
        f.debug_struct("GroupBuilder")
            .field("source", &source)
            .field("backends", &self.backends)
            .field("adapter_name", &self.adapter_name)
            .field("limits", &self.limits.is_some())
            .field("features", &self.features)
            .field("timeout", &self.timeout)
            .field("custom_collective", &self.collective.is_some())
            .field("gemm", &self.gemm)
            .field("numerics", &self.numerics)
            .field("cache_bytes", &self.cache_bytes)
            .field("take_over_callbacks", &self.take_over_callbacks)
            .field("processes", &self.processes)
            .finish()
    }
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
            cache_bytes: DEFAULT_BUFFER_CACHE_BYTES,
            take_over_callbacks: false,
            processes: None,
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

    /// Ranks from devices an application already owns, in order (the app must be on the
    /// same wgpu version as this crate, 30). Each device is one rank.
    ///
    /// The app's own uncaptured-error handler and device-lost callback are left in place
    /// (wgpu keeps one of each per device and has no way to chain them): this crate's
    /// calls still capture their own errors with error scopes, but a device lost outside
    /// them shows as the wgpu error it causes, not [`Error::DeviceLost`]. Call
    /// [`GroupBuilder::take_over_device_callbacks`] to install this crate's instead.
    pub fn from_devices(mut self, devices: Vec<(wgpu::Device, wgpu::Queue)>) -> Self {
        self.source = Source::Devices(devices);
        self
    }

    /// With [`GroupBuilder::from_devices`]: replace the devices' uncaptured-error handler
    /// and device-lost callback with this crate's, so errors the app raises outside this
    /// crate's calls, and the loss of a device, come back as [`Error`]s on the rank's next
    /// call (what devices this crate makes always do).
    pub fn take_over_device_callbacks(mut self) -> Self {
        self.take_over_callbacks = true;
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

    /// How long any wait on a device may take (default [`DEFAULT_TIMEOUT`]). Not applied
    /// on wasm32, which has no clock to time waits by: the browser ends them.
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

    /// The most bytes of free tensor buffers each device keeps for reuse (default
    /// [`DEFAULT_BUFFER_CACHE_BYTES`], 256 MiB; 0 turns the cache off). When full, the
    /// buffers freed longest ago go first; [`Group::trim_caches`] empties it.
    pub fn buffer_cache_bytes(mut self, bytes: u64) -> Self {
        self.cache_bytes = bytes;
        self
    }

    /// Use this collective instead of the default: [`DeviceCollective`] for ranks sharing
    /// one device, [`HostCollective`] otherwise.
    pub fn collective(mut self, collective: Box<dyn Collective>) -> Self {
        self.collective = Some(collective);
        self
    }

    /// Spans every process of `processes` (SPMD: each process runs the same program and
    /// builds its group with the same settings). This process's ranks, made as the other
    /// builder calls say, become global ranks numbered process-major after those of the
    /// processes before it (the processes on one machine share its adapters out:
    /// `one_rank_per_adapter` takes every `k`-th adapter, `spread_over_adapters(n)` starts
    /// its round-robin at `n` times its index among them); [`Group::world_size`] counts all of them, and a
    /// [`DistTensor`](crate::DistTensor) holds only this process's ranks' tensors.
    ///
    /// Building is itself a collective (every process builds its groups in the same
    /// order), and so is every collective afterwards: the processes must run them in the
    /// same order, one thread at a time per group (a second collective while one is in
    /// flight on the group is an [`Error::Processes`]). Each group talks on its own
    /// duplicate of the communicator, so different groups may run on different threads at
    /// once. Between processes the collectives read the local ranks' buffers back,
    /// exchange them with non-blocking MPI calls polled against [`GroupBuilder::timeout`],
    /// sum in global rank order (the bits a single process gives), and upload the result;
    /// a dead or stuck peer, or processes out of step (another collective or shape in the
    /// same place), is an [`Error::Processes`].
    ///
    /// A collective between processes that fails, is refused, or (async) is dropped before
    /// it finished poisons the group: every later collective on it is an
    /// [`Error::Processes`], as the processes are out of step for good.
    #[cfg(feature = "mpi")]
    pub fn processes(mut self, processes: Processes) -> Self {
        self.processes = Some(processes);
        self
    }

    /// Blocking [`GroupBuilder::build_async`].
    ///
    /// Not on wasm32 (nothing may block a page's thread): await the `_async` twin there.
    ///
    /// # Errors
    /// As [`GroupBuilder::build_async`].
    #[cfg(not(target_arch = "wasm32"))]
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
            cache_bytes,
            take_over_callbacks,
            processes,
        } = self;
        if processes.is_some() && collective.is_some() {
            return Err(Error::invalid(
                "group.build",
                "a custom collective joins the ranks of one process; a group spanning \
                 processes joins them through MPI itself",
            ));
        }
        let callbacks = match (&source, take_over_callbacks) {
            (Source::Devices(_), false) => DeviceCallbacks::Leave,
            _ => DeviceCallbacks::Install,
        };
        let backends = match backends {
            Some(b) => b,
            None => backends_from_env()?.unwrap_or(wgpu::Backends::all()),
        };
        let name = adapter_name.or_else(|| std::env::var("WGPU_ADAPTER_NAME").ok());
        let finder = Finder {
            instance: wgpu::Instance::new(wgpu::InstanceDescriptor {
                backends,
                ..wgpu::InstanceDescriptor::new_without_display_handle_from_env()
            }),
            backends,
            name,
        };
        let (devices, logical) = make_devices(
            source,
            &finder,
            limits.as_ref(),
            features,
            processes.as_ref(),
        )
        .await?;
        check_count(devices.len())?;
        let id = NEXT_GROUP_ID.fetch_add(1, Ordering::Relaxed);
        let contexts: Vec<_> = devices
            .into_iter()
            .map(|(d, q)| DeviceCtx::new(d, q, timeout, gemm, numerics, cache_bytes, callbacks))
            .collect();
        let local = contexts.len() * logical;
        let spread = match processes {
            Some(p) => {
                let band = contexts.iter().map(|c| c.band_bytes()).min();
                let own = p.for_group(timeout)?;
                spread_over(own, local, numerics, band.unwrap_or(0), timeout)?
            }
            None => Spread::single(local),
        };
        let world = spread.world;
        if numerics == Numerics::TpInvariant && !INVARIANT_BLOCKS.is_multiple_of(world) {
            return Err(Error::invalid(
                "group.build",
                format!("tp-invariant numerics need tp 1, 2, 4 or 8, not {world}"),
            ));
        }
        let ranks: Vec<Rank> = (0..local)
            .map(|i| Rank::new(contexts[i / logical].clone(), spread.first + i, world, id))
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
            inner: Arc::new(Comm::new(id, ranks, collective, spread)),
        })
    }
}
