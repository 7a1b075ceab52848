//! The uniform parameters of each shader, as `#[repr(C)]` structs that mirror the WGSL
//! parameter structs field for field (one per entry point, but where entries share a meaning) (all `u32`, so the layouts agree without padding
//! rules; each is a multiple of 16 bytes, as a uniform buffer binding wants).

use bytemuck::{Pod, Zeroable};

use super::Piece;

/// `shaders/gemm_params.wgsl`'s `Params` (every GEMM family). Offsets and leading
/// dimensions are in f32 elements within the band buffers bound.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Pod, Zeroable)]
pub(crate) struct GemmParams {
    pub m: u32,
    pub n: u32,
    pub k: u32,
    pub ldx: u32,
    pub x_offset: u32,
    pub ldy: u32,
    pub y_offset: u32,
    pub ldw: u32,
    pub w_offset: u32,
    pub bias_offset: u32,
    /// Nonzero: Y starts from its stored partial sums (a K block after the first).
    pub accumulate: u32,
    /// `gemm_skinny.wgsl`: rows of K per workgroup row (split-K); ignored by the others.
    pub k_chunk: u32,
}

/// `shaders/elementwise.wgsl`'s `Params`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Pod, Zeroable)]
pub(crate) struct ElementwiseParams {
    pub count: u32,
    pub cols: u32,
    pub a_cols: u32,
    pub row0: u32,
    pub col0: u32,
    pub row_stride: u32,
    pub base: u32,
    /// `fill`: the bits of the value written.
    pub value: u32,
}

/// `shaders/reduce.wgsl`'s and `shaders/reduce8.wgsl`'s `Params`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Pod, Zeroable)]
pub(crate) struct ReduceParams {
    pub len: u32,
    pub count: u32,
    pub row_stride: u32,
    pub base: u32,
    /// `reduce8.wgsl`: nonzero adds along the tp-invariant tree, else in rank order.
    pub tree: u32,
    pub _pad: [u32; 3],
}

/// The parameters of a transformer kernel (`shaders/norms.wgsl`, `embedding.wgsl`,
/// `rope.wgsl`, `kv_cache.wgsl`, `attention.wgsl`, `swiglu.wgsl`), each dispatched in
/// pieces ([`crate::kernels::pieces`]): every struct starts with the piece's `count`,
/// `row_stride` and `base`.
pub(crate) trait PieceParams: Pod {
    /// These parameters for one piece of the dispatch.
    fn at(self, piece: &Piece) -> Self;
}

macro_rules! piece_params {
    ($($t:ident),*) => {$(
        impl PieceParams for $t {
            fn at(self, piece: &Piece) -> Self {
                $t {
                    count: piece.count,
                    row_stride: piece.stride,
                    base: piece.base,
                    ..self
                }
            }
        }
    )*};
}

piece_params!(
    NormParams,
    EmbedParams,
    RopeParams,
    FusedRows,
    SiluMulParams,
    CrossEntropyParams,
    OptimParams,
    EmbedGradParams
);

/// `shaders/norms.wgsl`'s `NormParams` (`rms_norm` and `layer_norm`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Pod, Zeroable)]
pub(crate) struct NormParams {
    pub count: u32,
    pub row_stride: u32,
    pub base: u32,
    pub cols: u32,
    /// The epsilon, as f32 bits.
    pub eps: u32,
    /// `head_rms_norm`: the size of a head and the query heads of a fused row.
    pub head_dim: u32,
    pub heads: u32,
    pub _pad: u32,
}

/// `shaders/embedding.wgsl`'s `EmbedParams` (`embed`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Pod, Zeroable)]
pub(crate) struct EmbedParams {
    pub count: u32,
    pub row_stride: u32,
    pub base: u32,
    pub cols: u32,
    /// The vocabulary row of the table band's first row.
    pub first: u32,
    /// The table band's rows.
    pub rows: u32,
    /// 1: write -0.0 to the rows the band does not hold (the first band).
    pub fill: u32,
    pub _pad: u32,
}

/// `shaders/rope.wgsl`'s `RopeParams` (`rope`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Pod, Zeroable)]
pub(crate) struct RopeParams {
    pub count: u32,
    pub row_stride: u32,
    pub base: u32,
    pub cols: u32,
    pub heads: u32,
    pub head_dim: u32,
    /// The position of row 0.
    pub pos0: u32,
    pub _pad: u32,
}

/// The fields `shaders/kv_cache.wgsl`'s `KvWriteParams` and `attention.wgsl`'s
/// `AttentionParams` begin with: the piece, the fused `[q | k | v]` rows and the cache.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Pod, Zeroable)]
pub(crate) struct FusedRows {
    pub count: u32,
    pub row_stride: u32,
    pub base: u32,
    /// Columns of a fused row.
    pub cols: u32,
    /// Local query heads.
    pub heads: u32,
    pub head_dim: u32,
    /// The position (cache row) of row 0.
    pub pos0: u32,
    /// Key (and value) columns of a cache row.
    pub kv_cols: u32,
    /// 1: turn the keys (`kv_write`) or the queries (`attention`) by the rotary table.
    pub rotate: u32,
    /// Nonzero: the cache is a ring of this many rows (position `p` in row `p % ring`).
    pub ring: u32,
}

/// `shaders/kv_cache.wgsl`'s `KvWriteParams` (`kv_write`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Pod, Zeroable)]
pub(crate) struct KvWriteParams {
    pub rows: FusedRows,
    pub _pad: [u32; 2],
}

/// `shaders/attention_common.wgsl`'s `AttentionParams` (`attention.wgsl`,
/// `attention_backward.wgsl`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Pod, Zeroable)]
pub(crate) struct AttentionParams {
    pub rows: FusedRows,
    /// Query heads per key/value head.
    pub group: u32,
    /// Global index of the first local query head.
    pub h0: u32,
    /// Global index of the cache's first key/value head.
    pub k0: u32,
    /// The logits' scale (`1 / sqrt(head_dim)` unless overridden), as f32 bits.
    pub scale: u32,
    /// Positions a query sees, itself included; 0: every one before it.
    pub window: u32,
    /// The logits' soft cap, as f32 bits (read by the capped entries only).
    pub softcap: u32,
    /// The rows of a backward (`shaders/attention_backward.wgsl`), at positions
    /// `0..positions`; unread by the forward.
    pub positions: u32,
    pub _pad: [u32; 3],
}

impl PieceParams for KvWriteParams {
    fn at(self, piece: &Piece) -> Self {
        KvWriteParams {
            rows: self.rows.at(piece),
            ..self
        }
    }
}

impl PieceParams for AttentionParams {
    fn at(self, piece: &Piece) -> Self {
        AttentionParams {
            rows: self.rows.at(piece),
            ..self
        }
    }
}

/// `shaders/swiglu.wgsl`'s `SiluMulParams` (`silu_mul`, `gelu_tanh_mul`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Pod, Zeroable)]
pub(crate) struct SiluMulParams {
    pub count: u32,
    pub row_stride: u32,
    pub base: u32,
    /// Columns of the output.
    pub cols: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each struct's fields, in order, as its WGSL file declares them.
    #[test]
    fn the_structs_mirror_the_wgsl_structs() {
        fn fields(wgsl: &str, name: &str) -> Vec<String> {
            let body = &wgsl[wgsl.find(&format!("struct {name} {{")).unwrap()..];
            let body = &body[..body.find('}').unwrap()];
            body.lines()
                .skip(1)
                .map(str::trim)
                .filter(|l| !l.starts_with("//"))
                .filter_map(|l| l.split(':').next())
                .filter(|f| !f.is_empty())
                .map(str::to_string)
                .collect()
        }
        let gemm = fields(include_str!("../../shaders/gemm_params.wgsl"), "Params");
        assert_eq!(
            gemm.len() * 4,
            std::mem::size_of::<GemmParams>(),
            "{gemm:?}"
        );
        assert_eq!(gemm[10], "accumulate");
        let ew = fields(include_str!("../../shaders/elementwise.wgsl"), "Params");
        assert_eq!(
            ew.len() * 4,
            std::mem::size_of::<ElementwiseParams>(),
            "{ew:?}"
        );
        assert_eq!(ew[7], "value");
        for wgsl in [
            include_str!("../../shaders/reduce.wgsl"),
            include_str!("../../shaders/reduce8.wgsl"),
        ] {
            let red = fields(wgsl, "Params");
            assert_eq!(
                red.len() * 4,
                std::mem::size_of::<ReduceParams>(),
                "{red:?}"
            );
            assert_eq!(red[4], "tree");
        }
        // The transformer kernels: each struct's size, its fields from `count`, and the
        // field each names last before its padding.
        macro_rules! kernel {
            ($file:literal, $t:ident, $at:literal, $name:literal) => {
                (
                    include_str!(concat!("../../shaders/", $file)),
                    stringify!($t),
                    std::mem::size_of::<$t>(),
                    ($at, $name),
                )
            };
        }
        for (wgsl, name, size, last) in [
            kernel!("norms.wgsl", NormParams, 6, "heads"),
            kernel!("embedding.wgsl", EmbedParams, 6, "fill"),
            kernel!("rope.wgsl", RopeParams, 6, "pos0"),
            kernel!("kv_cache.wgsl", KvWriteParams, 9, "ring"),
            kernel!("attention_common.wgsl", AttentionParams, 16, "positions"),
            kernel!("swiglu.wgsl", SiluMulParams, 3, "cols"),
        ] {
            let f = fields(wgsl, name);
            assert_eq!(f.len() * 4, size, "{name}: {f:?}");
            assert_eq!(&f[..3], ["count", "row_stride", "base"], "{name}");
            assert_eq!(f[last.0], last.1, "{name}: {f:?}");
            assert_eq!(size % 16, 0, "{name}");
        }
        for size in [
            std::mem::size_of::<GemmParams>(),
            std::mem::size_of::<ElementwiseParams>(),
            std::mem::size_of::<ReduceParams>(),
        ] {
            assert_eq!(size % 16, 0);
        }
    }
}

/// `shaders/cross_entropy.wgsl`'s `CrossEntropyParams` (`row_stats`, `grad`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Pod, Zeroable)]
pub(crate) struct CrossEntropyParams {
    pub count: u32,
    pub row_stride: u32,
    pub base: u32,
    /// This rank's columns, columns per block, blocks per row.
    pub cols: u32,
    pub block: u32,
    pub blocks: u32,
    /// The global id of the first column; the band's first row.
    pub first: u32,
    pub row0: u32,
}

/// `shaders/optimizer.wgsl`'s `OptimParams` (`adamw`, `sum_squares`); the floats as bits.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Pod, Zeroable)]
pub(crate) struct OptimParams {
    pub count: u32,
    pub row_stride: u32,
    pub base: u32,
    pub cols: u32,
    pub lr: u32,
    pub beta1: u32,
    pub beta2: u32,
    pub eps: u32,
    pub weight_decay: u32,
    pub step_size: u32,
    pub bias_correction2_sqrt: u32,
    pub grad_scale: u32,
    /// `sum_squares`: the output row of the band's first row; `column_sum_squares`: 1 to
    /// add to the sums already out.
    pub out0: u32,
    /// `column_sum_squares`: the band's rows.
    pub rows: u32,
    pub _pad: [u32; 2],
}

/// `shaders/embedding_backward.wgsl`'s `EmbedGradParams` (`embed_backward`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Pod, Zeroable)]
pub(crate) struct EmbedGradParams {
    pub count: u32,
    pub row_stride: u32,
    pub base: u32,
    pub cols: u32,
    /// The vocabulary id of the band's first row.
    pub first: u32,
    pub tokens: u32,
    pub _pad: [u32; 2],
}
