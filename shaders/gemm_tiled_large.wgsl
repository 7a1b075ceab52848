// GEMM for GPUs with large outputs: 128 x 128 tiles in workgroup memory, 8 x 8 register
// blocks, vec4 workgroup reads; fused epilogue: Y = act(X . W + bias).
// Requires activation.wgsl, gemm_params.wgsl, the weight prelude (shaders/weights_*.wgsl,
// scalar unit) and gemm_scalar.wgsl prepended (src/kernels/mod.rs).
//
// Bindings: x, w, bias, y (f32, row-major bands) and the uniform p, declared in
// gemm_scalar.wgsl; element addressing and p.accumulate (start from Y's partial sums when
// K is split, epilogue on the last block, same bits as unsplit) in gemm_params.wgsl.
//
// Dispatch: workgroups (ceil(N / 128), ceil(M / 128), 1) of 16 x 16 invocations. K is
// walked in steps of 8: each invocation loads 4 values of X and 4 of W into workgroup
// memory (X transposed, so both tiles are read as vec4 along the output's rows and
// columns), then accumulates an 8 x 8 block of Y from two vec4 of each per k: 16 FMAs per
// 4 workgroup-memory reads, where the 64 x 64 kernel (gemm_tiled.wgsl) does 16 per 8.
// Loads outside X or W read 0; stores outside Y are skipped. With X_T (X read transposed,
// gemm_scalar.wgsl) X^T is staged as W [in, out] is: 4 contiguous values per invocation.
//
// Each output element accumulates k by fma in increasing order, whatever its tile position
// (the same bits as gemm_simple.wgsl and gemm_cpu.wgsl's main_in_out).

const BM: u32 = 128u;
const BN: u32 = 128u;
const BK: u32 = 8u;

// a_tile[kk * 32 + r / 4][r % 4] = X[row0 + r, k0 + kk]; b_tile[kk * 32 + c / 4][c % 4] =
// W[k0 + kk, col0 + c]: 8 x 128 each, 4 KiB each.
var<workgroup> a_tile: array<vec4<f32>, 256>;
var<workgroup> b_tile: array<vec4<f32>, 256>;

@compute @workgroup_size(16, 16, 1)
fn main(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
) {
    let p = load_params();
    let row0 = wid.y * BM;
    let col0 = wid.x * BN;
    let tid = lid.y * 16u + lid.x;

    // acc[i * 2 + h]: row lid.y * 8 + i, columns lid.x * 8 + 4 h .. + 3.
    var acc: array<vec4<f32>, 16>;
    for (var i = 0u; i < 16u; i++) {
        acc[i] = vec4<f32>(0.0);
        if (p.accumulate != 0u) {
            let row = row0 + lid.y * 8u + i / 2u;
            for (var j = 0u; j < 4u; j++) {
                let col = col0 + lid.x * 8u + (i % 2u) * 4u + j;
                if (row < p.m && col < p.n) {
                    acc[i][j] = y[p.y_offset + row * p.ldy + col];
                }
            }
        }
    }

    for (var k0 = 0u; k0 < p.k; k0 += BK) {
        if (X_T) {
            // X^T: invocation t loads k t / 32, rows (t % 32) * 4 .. + 3 (contiguous there).
            let ak = tid / 32u;
            let ar = (tid % 32u) * 4u;
            a_tile[ak * 32u + ar / 4u] = vec4<f32>(
                load_x_t(p, row0 + ar, k0 + ak),
                load_x_t(p, row0 + ar + 1u, k0 + ak),
                load_x_t(p, row0 + ar + 2u, k0 + ak),
                load_x_t(p, row0 + ar + 3u, k0 + ak),
            );
        } else {
            // X: invocation t loads row t / 2, k (t % 2) * 4 .. + 3 (contiguous in X).
            let ar = tid / 2u;
            let ak = (tid % 2u) * 4u;
            for (var j = 0u; j < 4u; j++) {
                a_tile[(ak + j) * 32u + ar / 4u][ar % 4u] = load_x(p, row0 + ar, k0 + ak + j);
            }
        }
        // W: walk its contiguous axis.
        if (W_OUT_IN) {
            let bc = tid / 2u;
            let bk = (tid % 2u) * 4u;
            for (var j = 0u; j < 4u; j++) {
                b_tile[(bk + j) * 32u + bc / 4u][bc % 4u] = load_w_at(p, k0 + bk + j, col0 + bc);
            }
        } else {
            let bk = tid / 32u;
            let bc = (tid % 32u) * 4u;
            b_tile[bk * 32u + bc / 4u] = vec4<f32>(
                load_w_at(p, k0 + bk, col0 + bc),
                load_w_at(p, k0 + bk, col0 + bc + 1u),
                load_w_at(p, k0 + bk, col0 + bc + 2u),
                load_w_at(p, k0 + bk, col0 + bc + 3u),
            );
        }
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk++) {
            let a = array<vec4<f32>, 2>(a_tile[kk * 32u + lid.y * 2u], a_tile[kk * 32u + lid.y * 2u + 1u]);
            let b0 = b_tile[kk * 32u + lid.x * 2u];
            let b1 = b_tile[kk * 32u + lid.x * 2u + 1u];
            for (var i = 0u; i < 8u; i++) {
                let ai = a[i / 4u][i % 4u];
                acc[i * 2u] = fma(vec4<f32>(ai), b0, acc[i * 2u]);
                acc[i * 2u + 1u] = fma(vec4<f32>(ai), b1, acc[i * 2u + 1u]);
            }
        }
        workgroupBarrier();
    }

    for (var i = 0u; i < 8u; i++) {
        let row = row0 + lid.y * 8u + i;
        for (var j = 0u; j < 8u; j++) {
            let col = col0 + lid.x * 8u + j;
            if (row < p.m && col < p.n) {
                var v = acc[i * 2u + j / 4u][j % 4u];
                if (HAS_BIAS) {
                    v = v + bias[p.bias_offset + col];
                }
                y[p.y_offset + row * p.ldy + col] = activate(v);
            }
        }
    }
}
