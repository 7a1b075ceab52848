//! The uniform parameters of each shader, as `#[repr(C)]` structs that mirror the WGSL
//! `struct Params` field for field (all `u32`, so the layouts agree without padding
//! rules; each is a multiple of 16 bytes, as a uniform buffer binding wants).

use bytemuck::{Pod, Zeroable};

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

/// `shaders/model.wgsl`'s `Params` (what each field means per entry is in the shader).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Pod, Zeroable)]
pub(crate) struct ModelParams {
    pub count: u32,
    pub row_stride: u32,
    pub base: u32,
    pub rows: u32,
    pub cols: u32,
    pub heads: u32,
    pub head_dim: u32,
    pub pos0: u32,
    pub kv_cols: u32,
    pub group: u32,
    pub h0: u32,
    pub k0: u32,
    pub kv_rows: u32,
    pub eps: u32,
    pub scale: u32,
    pub flag: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each struct's fields, in order, as its WGSL file declares them.
    #[test]
    fn the_structs_mirror_the_wgsl_structs() {
        fn fields(wgsl: &str) -> Vec<String> {
            let body = &wgsl[wgsl.find("struct Params {").unwrap()..];
            let body = &body[..body.find('}').unwrap()];
            body.lines()
                .skip(1)
                .filter_map(|l| l.trim().split(':').next())
                .filter(|f| !f.is_empty())
                .map(str::to_string)
                .collect()
        }
        let gemm = fields(include_str!("../../shaders/gemm_params.wgsl"));
        assert_eq!(
            gemm.len() * 4,
            std::mem::size_of::<GemmParams>(),
            "{gemm:?}"
        );
        assert_eq!(gemm[10], "accumulate");
        let ew = fields(include_str!("../../shaders/elementwise.wgsl"));
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
            let red = fields(wgsl);
            assert_eq!(
                red.len() * 4,
                std::mem::size_of::<ReduceParams>(),
                "{red:?}"
            );
            assert_eq!(red[4], "tree");
        }
        let model = fields(include_str!("../../shaders/model.wgsl"));
        assert_eq!(
            model.len() * 4,
            std::mem::size_of::<ModelParams>(),
            "{model:?}"
        );
        assert_eq!((model[7].as_str(), model[14].as_str()), ("pos0", "scale"));
        for size in [
            std::mem::size_of::<ModelParams>(),
            std::mem::size_of::<GemmParams>(),
            std::mem::size_of::<ElementwiseParams>(),
            std::mem::size_of::<ReduceParams>(),
        ] {
            assert_eq!(size % 16, 0);
        }
    }
}
