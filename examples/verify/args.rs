//! verify's command line: the flags, and a parser that takes the library's own names.

use std::ffi::OsStr;
use std::marker::PhantomData;
use std::str::FromStr;

use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
use clap::{Parser, ValueEnum};
use wgpu_tp::{wgpu, Activation, GemmKernel, Numerics, WeightLayout};

/// The backends `--backend` takes (wgpu's names).
const BACKENDS: &[&str] = &["vulkan", "gl", "metal", "dx12", "webgpu"];

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Ranks {
    /// tp-size devices requested from one adapter
    OneAdapter,
    /// ranks spread round-robin over every adapter found (one per adapter when
    /// --tp-size equals the adapter count)
    PerAdapter,
    /// tp-size logical ranks sharing one device (collectives run on the device)
    SharedDevice,
}

#[derive(Debug, Parser)]
#[command(about = "Tensor-parallel linear layers on wgpu ranks: the seed's three checks")]
pub struct Args {
    /// Tensor parallelism degree (any size up to the split dimension; need not divide it).
    /// With --ranks per-adapter the default is one rank per adapter.
    #[arg(short, long)]
    pub tp_size: Option<usize>,
    /// Rows of the input.
    #[arg(long, default_value_t = 4)]
    pub batch: usize,
    /// in = out features of the column and row checks; hidden size of the MLP.
    #[arg(long, default_value_t = 8)]
    pub hidden: usize,
    /// Intermediate size of the MLP.
    #[arg(long, default_value_t = 32)]
    pub ffn: usize,
    /// Seed of the weights and inputs.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// MLP activation.
    #[arg(long, default_value = "relu", value_parser = named::<Activation>(Activation::NAMES))]
    pub activation: Activation,
    /// How ranks are made.
    #[arg(long, value_enum, default_value_t = Ranks::OneAdapter)]
    pub ranks: Ranks,
    /// Backends to use, comma-separated; default WGPU_BACKEND, else all.
    #[arg(long, value_delimiter = ',', ignore_case = true, value_parser = PossibleValuesParser::new(BACKENDS))]
    pub backend: Vec<String>,
    /// Only adapters whose name contains this (case-insensitive); default WGPU_ADAPTER_NAME.
    #[arg(long, value_name = "NAME")]
    pub adapter_name: Option<String>,
    /// Print every adapter wgpu finds (for --backend) and exit.
    #[arg(long)]
    pub list_adapters: bool,
    /// How weights are stored.
    #[arg(long, default_value = "in-out", value_parser = named::<WeightLayout>(WeightLayout::NAMES))]
    pub layout: WeightLayout,
    /// Give every layer a bias (the seed's layers have none).
    #[arg(long)]
    pub bias: bool,
    /// How sums are associated.
    #[arg(long, default_value = "fast", value_parser = named::<Numerics>(Numerics::NAMES))]
    pub numerics: Numerics,
    /// Which GEMM kernel family the ranks run.
    #[arg(long, default_value = "auto", value_parser = named::<GemmKernel>(GemmKernel::NAMES))]
    pub gemm_kernel: GemmKernel,
}

impl Args {
    /// `--backend` as wgpu flags; `None` when not given.
    pub fn backends(&self) -> Option<wgpu::Backends> {
        (!self.backend.is_empty()).then(|| {
            self.backend.iter().fold(wgpu::Backends::empty(), |all, b| {
                all | wgpu::Backends::from_comma_list(b)
            })
        })
    }
}

/// A clap parser for one of the library's settings enums: `--help` and the error for an
/// unknown value list `names`; anything the enum's `FromStr` takes (its aliases, any
/// case) parses.
#[derive(Clone)]
struct Named<T> {
    names: &'static [&'static str],
    of: PhantomData<fn() -> T>,
}

fn named<T>(names: &'static [&'static str]) -> Named<T> {
    Named {
        names,
        of: PhantomData,
    }
}

impl<T: FromStr + Clone + Send + Sync + 'static> TypedValueParser for Named<T> {
    type Value = T;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &OsStr,
    ) -> Result<T, clap::Error> {
        match value.to_str().map(str::parse::<T>) {
            Some(Ok(v)) => Ok(v),
            // clap's own "invalid value ... [possible values: ...]" error.
            _ => Err(PossibleValuesParser::new(self.names)
                .parse_ref(cmd, arg, value)
                .err()
                .unwrap_or_else(|| clap::Error::new(clap::error::ErrorKind::InvalidValue))),
        }
    }

    fn possible_values(&self) -> Option<Box<dyn Iterator<Item = PossibleValue> + '_>> {
        Some(Box::new(self.names.iter().map(|&n| PossibleValue::new(n))))
    }
}
