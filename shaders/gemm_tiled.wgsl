// GEMM for GPUs: workgroup-memory tiles with register blocking, fused epilogue: Y = act(X . W + bias).
// Requires shaders/activation.wgsl prepended (src/kernels.rs does it).
//
// Bindings (all f32, row-major; each a band of rows of a tensor, src/tensor.rs):
//   0: x     storage, read       element (m, k) at x[p.x_offset + m * p.ldx + k], m < M, k < K
//   1: w     storage, read       W_OUT_IN == false (weights stored [in, out]): element (k, n)
//                                at w[p.w_offset + k * p.ldw + n]; W_OUT_IN == true (PyTorch
//                                nn.Linear.weight, [out, in]): at w[p.w_offset + n * p.ldw + k]
//   2: bias  storage, read       element n at bias[p.bias_offset + n]; read only when HAS_BIAS
//   3: y     storage, read_write element (m, n) at y[p.y_offset + m * p.ldy + n]
//   4: p     uniform Params
// p.accumulate != 0: Y starts from its current value instead of 0 (K split in blocks; the
// epilogue constants are then set for the last block only). Starting each element's sum
// from the stored partial keeps the order, and the bits, of an unsplit sum.
//
// Dispatch: workgroups (ceil(N / 64), ceil(M / 64), 1). Each workgroup computes a 64 x 64
// tile of Y; each of its 16 x 16 invocations a 4 x 4 block in registers. K is walked in
// steps of 16 through two workgroup-memory tiles. Every shape is correct: loads outside
// X or W read 0 and stores outside Y are skipped.
//
// K is accumulated by fma in increasing order for every output element (as in every GEMM
// family but gemm_cpu.wgsl's main_out_in), whatever the tile
// position, so a result depends only on its row of X and column of W.

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
    _pad: u32,
}

override W_OUT_IN: bool = false;
override HAS_BIAS: bool = false;

const TILE_M: u32 = 64u;
const TILE_N: u32 = 64u;
const TILE_K: u32 = 16u;

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> w: array<f32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;

// a_tile[kk * TILE_M + row], b_tile[kk * TILE_N + col]
var<workgroup> a_tile: array<f32, 1024>;
var<workgroup> b_tile: array<f32, 1024>;

fn load_x(row: u32, kk: u32) -> f32 {
    if (row < p.m && kk < p.k) {
        return x[p.x_offset + row * p.ldx + kk];
    }
    return 0.0;
}

fn load_w(kk: u32, col: u32) -> f32 {
    if (kk < p.k && col < p.n) {
        if (W_OUT_IN) {
            return w[p.w_offset + col * p.ldw + kk];
        }
        return w[p.w_offset + kk * p.ldw + col];
    }
    return 0.0;
}

@compute @workgroup_size(16, 16, 1)
fn main(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
) {
    let row0 = wid.y * TILE_M;
    let col0 = wid.x * TILE_N;
    let tid = lid.y * 16u + lid.x;

    // acc[i * 4 + j]: row row0 + lid.y * 4 + i, column col0 + lid.x * 4 + j.
    var acc: array<f32, 16>;
    for (var i = 0u; i < 16u; i++) {
        acc[i] = 0.0;
        let row = row0 + lid.y * 4u + i / 4u;
        let col = col0 + lid.x * 4u + i % 4u;
        if (p.accumulate != 0u && row < p.m && col < p.n) {
            acc[i] = y[p.y_offset + row * p.ldy + col];
        }
    }

    for (var k0 = 0u; k0 < p.k; k0 += TILE_K) {
        for (var i = 0u; i < 4u; i++) {
            let e = tid + i * 256u;
            // X tile: consecutive invocations walk k (contiguous in X).
            let ar = e / TILE_K;
            let ak = e % TILE_K;
            a_tile[ak * TILE_M + ar] = load_x(row0 + ar, k0 + ak);
            // W tile: consecutive invocations walk the contiguous axis of W.
            if (W_OUT_IN) {
                let bc = e / TILE_K;
                let bk = e % TILE_K;
                b_tile[bk * TILE_N + bc] = load_w(k0 + bk, col0 + bc);
            } else {
                let bk = e / TILE_N;
                let bc = e % TILE_N;
                b_tile[bk * TILE_N + bc] = load_w(k0 + bk, col0 + bc);
            }
        }
        workgroupBarrier();
        for (var kk = 0u; kk < TILE_K; kk++) {
            var a: array<f32, 4>;
            var b: array<f32, 4>;
            for (var i = 0u; i < 4u; i++) {
                a[i] = a_tile[kk * TILE_M + lid.y * 4u + i];
                b[i] = b_tile[kk * TILE_N + lid.x * 4u + i];
            }
            for (var i = 0u; i < 4u; i++) {
                for (var j = 0u; j < 4u; j++) {
                    acc[i * 4u + j] = fma(a[i], b[j], acc[i * 4u + j]);
                }
            }
        }
        workgroupBarrier();
    }

    for (var i = 0u; i < 4u; i++) {
        let row = row0 + lid.y * 4u + i;
        for (var j = 0u; j < 4u; j++) {
            let col = col0 + lid.x * 4u + j;
            if (row < p.m && col < p.n) {
                var v = acc[i * 4u + j];
                if (HAS_BIAS) {
                    v = v + bias[p.bias_offset + col];
                }
                y[p.y_offset + row * p.ldy + col] = activate(v);
            }
        }
    }
}
