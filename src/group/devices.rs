//! The devices a group builder's source asks for.

use super::builder::Source;
use crate::adapters::{request_all, Finder};
use crate::error::{Error, Result};
use crate::processes::Processes;

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
            if let Some(i) = (1..d.len()).find(|&i| d[..i].iter().any(|(p, _)| *p == d[i].0)) {
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

pub(super) fn check_count(n: usize) -> Result<()> {
    if n == 0 {
        return Err(Error::invalid(
            "group.build",
            "a group needs at least one rank",
        ));
    }
    Ok(())
}
