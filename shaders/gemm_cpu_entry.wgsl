// One entry point of gemm_cpu.wgsl, a template (src/kernels/template.rs has the syntax)
// that src/kernels/gemm_cpu.rs fills after gemm_cpu.wgsl: ENTRY main_in_out with IN_OUT
// (weights stored [in, out], an fma per k), ENTRY main_out_in without it ([out, in], a
// dot product per 4 k), and ENTRY main_tn with IN_OUT and X_T (where ROWS is a multiple
// of 4): X read transposed, the x binding holding X^T ([k, m] row-major: a linear layer's
// weight gradient X^T . dY or dY^T . X read in place, src/ops/matmul/tn.rs), row m of X
// at column m of its rows: X[m, k] at vec4 (p.x_offset + k * p.ldx + m) / 4, component
// m % 4 (p.x_offset, p.ldx and M multiples of 4). ROWS and COLS4 size the register
// block (ROWS4 = ROWS / 4), LANES the workgroup; every accumulator is a named variable
// (llvmpipe keeps an indexed array in memory, not in registers): a{i}_{j} holds row
// row0 + i, vec4 column first + j. The bindings and the weight reads (load_w4: vec4 unit
// i of W) are gemm_cpu.wgsl's. main_in_out and main_tn sum each element's products by
// fma in increasing k: the same bits as gemm_simple.wgsl's (with or without X_T).
@compute @workgroup_size({{LANES}}, 1, 1)
fn {{ENTRY}}(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
) {
    let p = load_params();
    let n4 = p.n / 4u;
    let k4 = p.k / 4u;
    let first = (wid.x * {{LANES}}u + lid.x) * COLS4;
    let row0 = wid.y * ROWS;
    //# for j in 0..COLS4
    let c{{j}} = min(first + {{j}}u, n4 - 1u);
    //# end
    // Rows past M repeat row M - 1 (never stored), so every load stays in bounds.
    //# if X_T
    // X^T's vec4 columns holding rows row0 + 4 q .. row0 + 4 q + 4 (past M: the last).
    let xt = p.x_offset / 4u;
    let lx = p.ldx / 4u;
    //# for q in 0..ROWS4
    let r{{q}} = min(row0 / 4u + {{q}}u, p.m / 4u - 1u);
    //# end
    //# else
    //# for i in 0..ROWS
    let x{{i}} = (p.x_offset + min(row0 + {{i}}u, p.m - 1u) * p.ldx) / 4u;
    //# end
    //# end
    let wo = p.w_offset / 4u;
    let lw = p.ldw / 4u;
    //# for i in 0..ROWS
    //# for j in 0..COLS4
    var a{{i}}_{{j}} = start(p, row0 + {{i}}u, c{{j}});
    //# end
    //# end
    for (var kq = 0u; kq < k4; kq++) {
        // b{j}_{u}: [in, out]: W's row 4 kq + u at vec4 column c{j}; [out, in]: W's row
        // (output column) 4 c{j} + u at k 4 kq .. 4 kq + 4.
        //# for j in 0..COLS4
        //# for u in 0..4
        //# if IN_OUT
        let b{{j}}_{{u}} = load_w4(wo + (kq * 4u + {{u}}u) * lw + c{{j}});
        //# else
        let b{{j}}_{{u}} = load_w4(wo + (c{{j}} * 4u + {{u}}u) * lw + kq);
        //# end
        //# end
        //# end
        //# if X_T
        // t{u}_{q}: X at k = 4 kq + u, rows row0 + 4 q .. row0 + 4 q + 4.
        //# for u in 0..4
        //# for q in 0..ROWS4
        let t{{u}}_{{q}} = x[xt + (kq * 4u + {{u}}u) * lx + r{{q}}];
        //# end
        //# end
        // fma in increasing k: t0 .. t3 are k = 4 kq + 0..4; component c of t{u}_{q} is
        // row row0 + 4 q + c.
        //# for q in 0..ROWS4
        //# for c in 0..4
        //# for j in 0..COLS4
        a{{4*q+c}}_{{j}} = fma(vec4<f32>(t3_{{q}}[{{c}}]), b{{j}}_3, fma(vec4<f32>(t2_{{q}}[{{c}}]), b{{j}}_2, fma(vec4<f32>(t1_{{q}}[{{c}}]), b{{j}}_1, fma(vec4<f32>(t0_{{q}}[{{c}}]), b{{j}}_0, a{{4*q+c}}_{{j}}))));
        //# end
        //# end
        //# end
        //# else
        //# for i in 0..ROWS
        let v{{i}} = x[x{{i}} + kq];
        //# for j in 0..COLS4
        //# if IN_OUT
        // fma in increasing k: x, y, z, w of v are k = 4 kq + 0..4.
        a{{i}}_{{j}} = fma(vec4<f32>(v{{i}}.w), b{{j}}_3, fma(vec4<f32>(v{{i}}.z), b{{j}}_2, fma(vec4<f32>(v{{i}}.y), b{{j}}_1, fma(vec4<f32>(v{{i}}.x), b{{j}}_0, a{{i}}_{{j}}))));
        //# else
        a{{i}}_{{j}} = a{{i}}_{{j}} + vec4<f32>(dot(v{{i}}, b{{j}}_0), dot(v{{i}}, b{{j}}_1), dot(v{{i}}, b{{j}}_2), dot(v{{i}}, b{{j}}_3));
        //# end
        //# end
        //# end
        //# end
    }
    //# for i in 0..ROWS
    //# for j in 0..COLS4
    store_row(p, row0 + {{i}}u, first + {{j}}u, a{{i}}_{{j}});
    //# end
    //# end
}
