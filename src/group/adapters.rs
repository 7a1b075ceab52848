//! Finding adapters and requesting devices from them.

use crate::error::{Error, Result};

pub(crate) struct Finder {
    pub(crate) instance: wgpu::Instance,
    pub(crate) backends: wgpu::Backends,
    pub(crate) name: Option<String>,
}

/// Lower is preferred: real GPUs, then virtual, then software; native APIs before GL.
fn preference(info: &wgpu::AdapterInfo) -> (u8, u8) {
    let device = match info.device_type {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    };
    let backend = u8::from(info.backend == wgpu::Backend::Gl);
    (device, backend)
}

impl Finder {
    /// Matching adapters, best first.
    pub(crate) async fn adapters(&self) -> Result<Vec<wgpu::Adapter>> {
        let mut found: Vec<wgpu::Adapter> = every(&self.instance, self.backends)
            .await
            .into_iter()
            .filter(|a| {
                let n = a.get_info().name.to_lowercase();
                self.name
                    .as_ref()
                    .is_none_or(|want| n.contains(&want.to_lowercase()))
            })
            .collect();
        if found.is_empty() {
            return Err(Error::NoAdapter {
                available: every_adapter().await,
                wanted: format!(
                    "backends {:?}{}",
                    self.backends,
                    self.name
                        .as_ref()
                        .map_or(String::new(), |n| format!(" named like {n:?}"))
                ),
            });
        }
        found.sort_by_key(|a| preference(&a.get_info()));
        Ok(found)
    }

    /// A fresh adapter object for the same physical adapter as `info`.
    pub(crate) async fn same_as(&self, info: &wgpu::AdapterInfo) -> Result<wgpu::Adapter> {
        self.adapters()
            .await?
            .into_iter()
            .find(|a| {
                let i = a.get_info();
                i.name == info.name
                    && i.backend == info.backend
                    && i.device == info.device
                    && i.vendor == info.vendor
            })
            .ok_or_else(|| Error::NoAdapter {
                wanted: format!("{} ({:?}) again", info.name, info.backend),
                available: Vec::new(),
            })
    }
}

/// An adapter for an error message: its name and backend (a browser names none).
fn describe_adapter(info: &wgpu::AdapterInfo) -> String {
    match info.name.as_str() {
        "" => format!("the adapter ({:?})", info.backend),
        name => format!("{name} ({:?})", info.backend),
    }
}

/// A browser's refusal comes with the JS stack after its first line: keep the reason.
fn first_line(message: &str) -> String {
    message.lines().next().unwrap_or_default().to_string()
}

/// The adapters of `instance` on `backends`.
#[cfg(not(target_arch = "wasm32"))]
async fn every(instance: &wgpu::Instance, backends: wgpu::Backends) -> Vec<wgpu::Adapter> {
    instance.enumerate_adapters(backends).await
}

/// The adapter the browser gives (WebGPU lists no adapters: a page asks for one, and
/// each request gives a fresh adapter object, one device each), high performance asked.
#[cfg(target_arch = "wasm32")]
async fn every(instance: &wgpu::Instance, _backends: wgpu::Backends) -> Vec<wgpu::Adapter> {
    let options = wgpu::RequestAdapterOptions {
        power_preference: wgpu::PowerPreference::HighPerformance,
        ..Default::default()
    };
    instance
        .request_adapter(&options)
        .await
        .into_iter()
        .collect()
}

/// Every adapter wgpu finds on any backend, described for an error message.
async fn every_adapter() -> Vec<String> {
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
        backends: wgpu::Backends::all(),
        ..wgpu::InstanceDescriptor::new_without_display_handle()
    });
    every(&instance, wgpu::Backends::all())
        .await
        .iter()
        .map(|a| {
            let i = a.get_info();
            format!("{} ({:?}, {:?})", i.name, i.backend, i.device_type)
        })
        .collect()
}

/// The backends `WGPU_BACKEND` names, if it is set.
///
/// # Errors
/// [`Error::InvalidArgument`] when it is set but names no backend (wgpu would read it as
/// the empty set and report no adapter).
pub(crate) fn backends_from_env() -> Result<Option<wgpu::Backends>> {
    let Ok(value) = std::env::var("WGPU_BACKEND") else {
        return Ok(None);
    };
    let backends = wgpu::Backends::from_comma_list(&value);
    if backends.is_empty() {
        return Err(Error::invalid(
            "group.build",
            format!(
                "WGPU_BACKEND={value:?} did not parse: name one or more of vulkan, metal, \
                 dx12, gl, webgpu, primary, secondary (comma-separated)"
            ),
        ));
    }
    Ok(Some(backends))
}

pub(crate) async fn request_all(
    adapters: Vec<wgpu::Adapter>,
    limits: Option<&wgpu::Limits>,
    features: wgpu::Features,
) -> Result<Vec<(wgpu::Device, wgpu::Queue)>> {
    let mut out = Vec::with_capacity(adapters.len());
    for a in adapters {
        let info = a.get_info();
        let required_limits = limits.cloned().unwrap_or_else(|| a.limits());
        let desc = wgpu::DeviceDescriptor {
            label: Some("wgpu-tp rank"),
            required_limits,
            required_features: features,
            ..Default::default()
        };
        let pair = a
            .request_device(&desc)
            .await
            .map_err(|e| Error::RequestDevice {
                adapter: describe_adapter(&info),
                message: first_line(&e.to_string()),
            })?;
        out.push(pair);
    }
    Ok(out)
}
