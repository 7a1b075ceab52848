//! The settings enums every layer reads: a leaf module (it imports nothing of the crate
//! but the error type), each with `Display` and `FromStr` over one list of names, so a
//! command line or a config file names them the way the docs do.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};

/// Implements `NAMES`, `Display` and `FromStr` from one table of (variant, name, aliases).
macro_rules! named {
    ($ty:ident, $what:literal, [$(($v:ident, $name:literal $(, $alias:literal)*)),+ $(,)?]) => {
        impl $ty {
            /// The names `FromStr` accepts and `Display` prints, one per variant.
            pub const NAMES: &'static [&'static str] = &[$($name),+];

            /// The canonical name (as printed by `Display`).
            pub fn name(self) -> &'static str {
                match self {
                    $($ty::$v => $name,)+
                }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }

        impl FromStr for $ty {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self> {
                match s.to_ascii_lowercase().replace('_', "-").as_str() {
                    $($name $(| $alias)* => Ok($ty::$v),)+
                    other => Err(Error::invalid(
                        $what,
                        format!("unknown {} {other:?} (one of: {})", $what, Self::NAMES.join(", ")),
                    )),
                }
            }
        }
    };
}

/// How a weight matrix of a linear layer with `in` inputs and `out` outputs is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum WeightLayout {
    /// `[in, out]`, so `Y = X · W` (the seed's layout).
    #[default]
    InOut,
    /// `[out, in]`, so `Y = X · Wᵀ` (PyTorch `nn.Linear.weight`).
    OutIn,
}

named!(
    WeightLayout,
    "layout",
    [(InOut, "in-out"), (OutIn, "out-in")]
);

impl WeightLayout {
    /// `[in, out]` stored in this layout.
    pub fn stored_shape(self, in_features: usize, out_features: usize) -> [usize; 2] {
        match self {
            WeightLayout::InOut => [in_features, out_features],
            WeightLayout::OutIn => [out_features, in_features],
        }
    }

    /// `(in, out)` of a weight stored with `shape` in this layout.
    pub fn in_out(self, shape: [usize; 2]) -> (usize, usize) {
        match self {
            WeightLayout::InOut => (shape[0], shape[1]),
            WeightLayout::OutIn => (shape[1], shape[0]),
        }
    }

    /// The dimension of the stored weight that holds the output features.
    pub fn out_dim(self) -> usize {
        match self {
            WeightLayout::InOut => 1,
            WeightLayout::OutIn => 0,
        }
    }

    /// The other layout: a weight stored `[in, out]` read as `[out, in]` is its transpose,
    /// which is how a backward pass multiplies by `W^T` without moving it.
    pub fn transposed(self) -> Self {
        match self {
            WeightLayout::InOut => WeightLayout::OutIn,
            WeightLayout::OutIn => WeightLayout::InOut,
        }
    }
}

/// An elementwise activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Activation {
    /// `x`.
    #[default]
    Identity,
    /// `max(x, 0)`.
    Relu,
    /// GeLU, tanh approximation: `0.5 x (1 + tanh(√(2/π) (x + 0.044715 x³)))`.
    GeluTanh,
    /// GeLU, exact form: `0.5 x (1 + erf(x / √2))` (erf to 1.5e-7 absolute in WGSL).
    GeluErf,
}

named!(
    Activation,
    "activation",
    [
        (Identity, "identity", "none"),
        (Relu, "relu"),
        (GeluTanh, "gelu-tanh", "gelu"),
        (GeluErf, "gelu-erf"),
    ]
);

impl Activation {
    /// The value of the shaders' `ACT` constant.
    pub(crate) fn code(self) -> u32 {
        match self {
            Activation::Identity => 0,
            Activation::Relu => 1,
            Activation::GeluTanh => 2,
            Activation::GeluErf => 3,
        }
    }
}

/// Which GEMM kernel family a rank runs ([`GroupBuilder::gemm_kernel`](crate::GroupBuilder::gemm_kernel)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum GemmKernel {
    /// Chosen per adapter and shape: [`Simple`](GemmKernel::Simple) on CPU adapters for
    /// products under 32³ multiply-adds (as fast there and far quicker to compile);
    /// [`Skinny`](GemmKernel::Skinny) for at most 16 rows of X on every adapter;
    /// [`Cpu`](GemmKernel::Cpu) on CPU adapters where the shape allows it;
    /// [`Tiled`](GemmKernel::Tiled) on GPUs for outputs of at least one 64 x 64 tile;
    /// [`Simple`](GemmKernel::Simple) otherwise.
    #[default]
    Auto,
    /// The CPU-adapter family. Needs `in` and `out` multiples of 4 (and, inside layers,
    /// the input's row stride and column offset); other shapes run
    /// [`Simple`](GemmKernel::Simple).
    Cpu,
    /// The GPU family (workgroup-memory tiles), for any shape.
    Tiled,
    /// One output element per invocation, for any shape.
    Simple,
    /// Few rows of X (decode steps): each weight element read once per call, K split
    /// into chunks over workgroups when the output alone cannot fill the device, for any
    /// shape (more than 16 rows run in blocks of 16, each reading the weights again).
    Skinny,
}

named!(
    GemmKernel,
    "gemm kernel",
    [
        (Auto, "auto"),
        (Cpu, "cpu"),
        (Tiled, "tiled"),
        (Simple, "simple"),
        (Skinny, "skinny")
    ]
);

/// How a group associates its sums ([`GroupBuilder::numerics`](crate::GroupBuilder::numerics)).
///
/// Both are deterministic: the same inputs on the same group give the same bits on every
/// run. They differ in what else may change the bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Numerics {
    /// Each GEMM sums its K products in order, except the [`Skinny`](GemmKernel::Skinny)
    /// family's, which splits K into chunks summed in a fixed order (how many depends on
    /// the shape, the adapter kind, its cores and the device's limits); the all-reduce
    /// adds ranks in rank order. A row-parallel layer's result then depends on tp (each
    /// rank's partial sum is rounded before the ranks' sums are added).
    #[default]
    Fast,
    /// The same output bits for tp = 1, 2, 4 and 8 on one adapter and backend. Every
    /// product splits K into 8 blocks of `K / 8` (a size that depends on neither tp nor
    /// the shard width), sums each block in order by fma, and joins the 8 block sums in
    /// a fixed binary tree, `((b0 + b1) + (b2 + b3)) + ((b4 + b5) + (b6 + b7))`.
    /// Row-parallel shards are whole blocks (`8 / tp` per rank) and the all-reduce joins
    /// the ranks' sums along the same tree, so the association is the same at every tp.
    /// Bias and activation are applied after the tree, the same way at every tp.
    ///
    /// Needs tp in {1, 2, 4, 8} (checked when the group is built) and every GEMM's inner
    /// dimension a multiple of 8 (checked when each layer is made, and by each op, which
    /// refuse other shapes with [`Error::InvalidArgument`],
    /// never falling back).
    TpInvariant,
}

named!(
    Numerics,
    "numerics",
    [(Fast, "fast"), (TpInvariant, "tp-invariant")]
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_parses_back_to_its_variant_and_unknown_names_list_the_choices() {
        fn round_trip<T: FromStr<Err = Error> + fmt::Display + PartialEq + fmt::Debug>(
            names: &[&str],
        ) {
            for n in names {
                let v: T = n.parse().unwrap();
                assert_eq!(v.to_string(), *n);
                assert_eq!(n.to_uppercase().replace('-', "_").parse::<T>().unwrap(), v);
            }
        }
        round_trip::<Activation>(Activation::NAMES);
        round_trip::<WeightLayout>(WeightLayout::NAMES);
        round_trip::<GemmKernel>(GemmKernel::NAMES);
        round_trip::<Numerics>(Numerics::NAMES);
        assert_eq!("gelu".parse::<Activation>().unwrap(), Activation::GeluTanh);
        let e = "swish".parse::<Activation>().unwrap_err().to_string();
        assert!(e.contains("\"swish\"") && e.contains("gelu-erf"), "{e}");
    }
}
