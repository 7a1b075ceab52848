// GEMM for GPUs: workgroup-memory tiles with register blocking, fused epilogue: Y = act(X . W + bias).
// Requires activation.wgsl, gemm_params.wgsl, the weight prelude (shaders/weights_*.wgsl,
// scalar unit) and gemm_scalar.wgsl prepended (src/kernels/mod.rs).
//
// Bindings: x, w, bias, y (f32, row-major bands) and the uniform p, declared in
// gemm_scalar.wgsl; element addressing and p.accumulate (start from Y's partial sums when
// K is split, epilogue on the last block, same bits as unsplit) in gemm_params.wgsl.
//
// Dispatch: workgroups (ceil(N / 64), ceil(M / 64), 1). Each workgroup computes a 64 x 64
// tile of Y; each of its 16 x 16 invocations a 4 x 4 block in registers. K is walked in
// steps of 16 through two workgroup-memory tiles. Every shape is correct: loads outside
// X or W read 0 and stores outside Y are skipped.
//
// K is accumulated by fma in increasing order for every output element (as in every GEMM
// family but gemm_cpu.wgsl's main_out_in), whatever the tile
// position, so a result depends only on its row of X and column of W.
// With X_T (X read transposed, gemm_scalar.wgsl) consecutive invocations stage X^T's
// rows, contiguous there.

const TILE_M: u32 = 64u;
const TILE_N: u32 = 64u;
const TILE_K: u32 = 16u;

// a_tile[kk * TILE_M + row], b_tile[kk * TILE_N + col]
var<workgroup> a_tile: array<f32, 1024>;
var<workgroup> b_tile: array<f32, 1024>;

@compute @workgroup_size(16, 16, 1)
fn main(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
) {
    let p = load_params();
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
            if (X_T) {
                // X^T tile: consecutive invocations walk rows (contiguous in X^T).
                let ak = e / TILE_M;
                let ar = e % TILE_M;
                a_tile[ak * TILE_M + ar] = load_x_t(p, row0 + ar, k0 + ak);
            } else {
                // X tile: consecutive invocations walk k (contiguous in X).
                let ar = e / TILE_K;
                let ak = e % TILE_K;
                a_tile[ak * TILE_M + ar] = load_x(p, row0 + ar, k0 + ak);
            }
            // W tile: consecutive invocations walk the contiguous axis of W.
            if (W_OUT_IN) {
                let bc = e / TILE_K;
                let bk = e % TILE_K;
                b_tile[bk * TILE_N + bc] = load_w_at(p, k0 + bk, col0 + bc);
            } else {
                let bk = e / TILE_N;
                let bc = e % TILE_N;
                b_tile[bk * TILE_N + bc] = load_w_at(p, k0 + bk, col0 + bc);
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
