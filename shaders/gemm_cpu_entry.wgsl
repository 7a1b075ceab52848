// One entry point of gemm_cpu.wgsl, a template (src/kernels/template.rs has the syntax)
// that src/kernels/gemm_cpu.rs fills twice, after gemm_cpu.wgsl: ENTRY main_in_out with
// IN_OUT (weights stored [in, out], an fma per k) and ENTRY main_out_in without it
// ([out, in], a dot product per 4 k). ROWS and COLS4 size the register block, LANES the
// workgroup; every accumulator is a named variable (llvmpipe keeps an indexed array in
// memory, not in registers): a{i}_{j} holds row row0 + i, vec4 column first + j. The
// bindings and the weight reads (load_w4: vec4 unit i of W) are gemm_cpu.wgsl's.
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
    //# for i in 0..ROWS
    let x{{i}} = (p.x_offset + min(row0 + {{i}}u, p.m - 1u) * p.ldx) / 4u;
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
    }
    //# for i in 0..ROWS
    //# for j in 0..COLS4
    store_row(p, row0 + {{i}}u, first + {{j}}u, a{{i}}_{{j}});
    //# end
    //# end
}
