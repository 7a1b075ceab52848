//! The devices a group builder's source asks for.

use super::builder::Source;
use crate::comm::Processes;
use crate::error::{Error, Result};
use crate::group::adapters::{request_all, Finder};

/// The devices of `source` (one per rank, or one for `logical` ranks sharing it), and
/// `logical`.
pub(super) async fn make_devices(
    source: Source,
    finder: &Finder,
    limits: Option<&wgpu::Limits>,
    features: wgpu::Features,
    processes: Option<&Processes>,
) -> Result<(Vec<(wgpu::Device, wgpu::Queue)>, usize)> {
    let mut logical = 1;
    let devices = match source {
        Source::Devices(d) => {
            if let Some(i) = given_twice(&d).await {
                return Err(Error::invalid(
                    "group.build",
                    format!(
                        "device {i} was given twice to from_devices: one device is one \
                         rank (use ranks_sharing_one_device for logical ranks on one device)"
                    ),
                ));
            }
            d
        }
        Source::SharedDevice(n) => {
            check_count(n)?;
            logical = n;
            let best = finder.adapters().await?.swap_remove(0);
            request_all(vec![best], limits, features).await?
        }
        Source::Adapters(a) => request_all(a, limits, features).await?,
        Source::OneAdapter(n) => {
            check_count(n)?;
            let best = finder.adapters().await?.swap_remove(0).get_info();
            let mut adapters = Vec::with_capacity(n);
            for _ in 0..n {
                // A fresh adapter object per device: WebGPU allows one device per adapter.
                adapters.push(finder.same_as(&best).await?);
            }
            request_all(adapters, limits, features).await?
        }
        Source::PerAdapter => {
            let mut adapters = finder.adapters().await?;
            if let Some(p) = processes {
                // The processes on one machine share its adapters out.
                let (i, n) = (p.node_index(), p.node_count());
                adapters = adapters.into_iter().skip(i).step_by(n).collect();
                if adapters.is_empty() {
                    return Err(Error::invalid(
                        "group.build",
                        format!(
                            "one rank per adapter: {n} processes on this machine, more \
                             than its adapters; process {i} has none"
                        ),
                    ));
                }
            }
            request_all(adapters, limits, features).await?
        }
        Source::Spread(n) => {
            check_count(n)?;
            let infos: Vec<_> = finder
                .adapters()
                .await?
                .iter()
                .map(|a| a.get_info())
                .collect();
            // The processes on one machine start their round-robin one after another.
            let first = processes.map_or(0, |p| p.node_index() * n);
            let mut adapters = Vec::with_capacity(n);
            for r in first..first + n {
                adapters.push(finder.same_as(&infos[r % infos.len()]).await?);
            }
            request_all(adapters, limits, features).await?
        }
    };
    Ok((devices, logical))
}

/// The first device of `devices` that is an earlier one again, if any.
async fn given_twice(devices: &[(wgpu::Device, wgpu::Queue)]) -> Option<usize> {
    for i in 1..devices.len() {
        for (p, _) in &devices[..i] {
            if same_device(p, &devices[i].0).await {
                return Some(i);
            }
        }
    }
    None
}

/// True when `a` and `b` are handles of one device.
///
/// wgpu compares devices by their id within their instance, and devices of two
/// instances can have the same id: equal ids are only a hint. The test that settles it
/// uses nothing but the public API: error scopes live on the device (per thread), so
/// with a scope pushed on `b` and then one on `a`, an error raised on `b` (a buffer of
/// no usage: a validation error, nothing made) lands in `a`'s scope exactly when `a` is
/// `b`. Neither scope lets the error reach the app's handler.
async fn same_device(a: &wgpu::Device, b: &wgpu::Device) -> bool {
    if a != b {
        return false;
    }
    // Under the GL lock (src/rank/gl.rs), as either may be a GL device; the pops come
    // innermost first (on one device the scopes stack), before any await: neither guard
    // is `Send`.
    let (in_a, in_b) = {
        let _gl = crate::rank::gl::lock(true);
        let on_b = b.push_error_scope(wgpu::ErrorFilter::Validation);
        let on_a = a.push_error_scope(wgpu::ErrorFilter::Validation);
        drop(b.create_buffer(&wgpu::BufferDescriptor {
            label: Some("wgpu-tp device identity probe"),
            size: 4,
            usage: wgpu::BufferUsages::empty(),
            mapped_at_creation: false,
        }));
        (on_a.pop(), on_b.pop())
    };
    let (in_a, _) = (in_a.await, in_b.await);
    in_a.is_some()
}

pub(super) fn check_count(n: usize) -> Result<()> {
    if n == 0 {
        return Err(Error::invalid(
            "group.build",
            "a group needs at least one rank",
        ));
    }
    Ok(())
}
