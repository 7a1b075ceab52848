// The uniform parameters of every GEMM shader (gemm_cpu, gemm_simple, gemm_tiled,
// gemm_tiled_large), prepended to each by src/kernels/mod.rs. Offsets and leading dimensions
// are in f32 elements, within the band buffers bound (see each shader's binding table):
//   x (m, k) at x_offset + m * ldx + k; y (m, n) at y_offset + m * ldy + n;
//   w at w_offset + k * ldw + n ([in, out]) or w_offset + n * ldw + k ([out, in]);
//   bias n at bias_offset + n.
// accumulate != 0: Y starts from its stored partial sums instead of 0 (K split in blocks;
// the epilogue constants are then set for the last block only). Starting each element's
// sum from the stored partial keeps the order, and the bits, of an unsplit sum.
// k_chunk: rows of K per workgroup row of gemm_skinny.wgsl (split-K); the other families
// ignore it.

struct Params {
    m: u32,
    n: u32,
    k: u32,
    ldx: u32,
    x_offset: u32,
    ldy: u32,
    y_offset: u32,
    ldw: u32,
    w_offset: u32,
    bias_offset: u32,
    accumulate: u32,
    k_chunk: u32,
}

// Add the bias before the activation (the epilogue).
override HAS_BIAS: bool = false;
