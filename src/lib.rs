//! # wgpu-tp
//!
//! Megatron-style tensor parallelism on any GPU wgpu reaches (Vulkan, Metal, DX12, GL),
//! with WGSL compute shaders. A [`Group`] of ranks (wgpu devices) holds [`DistTensor`]s
//! placed as [`Placement::Replicate`], [`Placement::Shard`] or [`Placement::Partial`];
//! layers ([`ColumnParallelLinear`], [`RowParallelLinear`], [`ParallelMlp`]) map
//! distributed tensors to distributed tensors, and collectives (all-reduce, all-gather,
//! reduce-scatter, broadcast) are the only way a placement changes across ranks.
//!
//! ```no_run
//! use wgpu_tp::{Activation, DistTensor, Group, HostLinear, ParallelMlp, WeightLayout};
//!
//! # fn main() -> wgpu_tp::Result<()> {
//! let (batch, hidden, ffn) = (4, 8, 32);
//! let w1 = vec![0.1f32; hidden * ffn]; // [hidden, ffn]
//! let w2 = vec![0.1f32; ffn * hidden]; // [ffn, hidden]
//! let x = vec![1.0f32; batch * hidden];
//!
//! let group = Group::builder().ranks_on_one_adapter(4).build()?;
//! let mlp = ParallelMlp::from_full(
//!     &group,
//!     HostLinear::new(&w1, hidden, ffn, WeightLayout::InOut), // .with_bias(&b1) for a bias
//!     HostLinear::new(&w2, ffn, hidden, WeightLayout::InOut),
//!     Activation::Relu,
//! )?;
//! let x = DistTensor::replicate(&group, &x, [batch, hidden])?;
//! let y = mlp.forward(&x)?; // Replicate: exactly one all-reduce inside
//! let y_host: Vec<f32> = y.to_host()?;
//! assert_eq!(y_host.len(), batch * hidden);
//! assert_eq!(group.stats().all_reduces(), 1);
//! # Ok(()) }
//! ```
//!
//! Shards follow one rule everywhere: the first `n % tp` ranks get one more row or
//! column ([`split_sizes`], as `torch.tensor_split`).
//!
//! ## In a browser (wasm32)
//!
//! The crate builds for `wasm32-unknown-unknown` with the `webgpu` feature
//! (`default-features = false, features = ["webgpu"]`, plus `safetensors`, `tokenizer`,
//! `reference` as needed). There only the async API is there: every blocking call
//! (`to_host`, `forward`, `GroupBuilder::build`, ...) is compiled out, as are threads
//! (the host paths that split work over threads run on the page's one thread), MPI
//! (feature `mpi` is refused) and memory-mapped files: checkpoints come from the bytes
//! the page fetched (`load::Checkpoint::from_bytes`, `load::Gguf::from_bytes`,
//! `load::Tokenizer::from_bytes`). wgpu's WebGPU objects are not `Send` there, so
//! neither are the crate's groups, ranks and futures ([`MaybeSend`], [`BoxFuture`]).
//! Waits end when the browser runs wgpu's callbacks (the rank timeout is not applied),
//! and a call's wgpu errors are reported by a later call of its rank.

#![warn(missing_docs)]
// On wasm32 wgpu's objects are neither `Send` nor `Sync` (see `MaybeSend`): the ranks and
// groups still share them through `Arc`, one code path for both targets.
#![cfg_attr(target_arch = "wasm32", allow(clippy::arc_with_non_send_sync))]

// wasm32 (WebGPU in a browser): the async API only. Blocking calls, threads, MPI and
// memory-mapped files are compiled out there (their docs say so); checkpoints come from
// bytes the page fetched (`load::Checkpoint::from_bytes`).
#[cfg(all(feature = "mpi", target_arch = "wasm32"))]
compile_error!("feature `mpi` is not available on wasm32: a browser page has no MPI processes");

mod comm;
mod dist;
mod error;
mod group;
mod kernels;
#[cfg(feature = "safetensors")]
pub mod load;
#[cfg(feature = "safetensors")]
pub mod model;
pub mod nn;
pub mod ops;
mod rank;
#[cfg(feature = "reference")]
pub mod reference;
mod tensor;

#[cfg(feature = "mpi")]
pub use comm::processes::Processes;
pub use comm::{
    BoxFuture, Collective, CollectiveStats, DeviceCollective, HostCollective, MaybeSend, MaybeSync,
};
pub use dist::{DistTensor, Placement};
pub use error::{Error, Result};
pub use group::{Group, GroupBuilder, DEFAULT_TIMEOUT};
pub use kernels::dtype::DType;
pub use kernels::settings::{Activation, GemmKernel, Numerics, WeightLayout};
/// The `mpi` crate (rsmpi) this crate was built with, for apps that make their own
/// communicator ([`Processes::from_communicator`]).
#[cfg(feature = "mpi")]
pub use mpi;
pub use nn::{
    ColumnParallelConfig, ColumnParallelLinear, HostLinear, LinearGrads, MlpGrads, ParallelMlp,
    RowParallelConfig, RowParallelLinear,
};
pub use rank::pool::DEFAULT_BUFFER_CACHE_BYTES;
pub use rank::{Rank, RankStats};
pub use tensor::shard::{split_in_units, split_sizes};
pub use tensor::Tensor;
pub use wgpu;

/// README.md's example, compiled as a doctest so the README stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
