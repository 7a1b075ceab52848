// A main entry of gemm_skinny.wgsl with lanes along N or along K, a template
// (src/kernels/template.rs has the syntax) that src/kernels/gemm_skinny/mod.rs fills for
// each entry of a variant: ENTRY (main_in_out, IN_OUT: weights [in, out]; main_out_in:
// [out, in]), ALONG_K (the lanes share the workgroup's units and take turns over the K
// steps; otherwise each lane owns its own units), VEC4 (units of 4 columns), LANES per
// workgroup, ROWS x UNITS accumulators per lane, unit j at UNIT_STRIDE j from the first
// (LANES along N: adjacent lanes own adjacent units; 1 along K), BLOCK = ROWS UNITS,
// QUANT (a quantized format's prelude, vec4 [out, in] along N only: its loads in two
// halves, the block factors kept per column, weights_quant.wgsl).
// Every accumulator is a named variable (llvmpipe keeps an indexed array in memory):
// a{i}_{j} holds row i, unit c{j}.
@compute @workgroup_size({{LANES}}, 1, 1)
fn {{ENTRY}}(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
) {
    let p = load_params();
    let nt = p.n / WIDTH;
    //# if ALONG_K
    let first = wid.x * {{UNITS}}u;
    //# else
    let first = wid.x * {{LANES*UNITS}}u + lid.x;
    //# end
    let chunk = wid.y;
    let k0 = chunk * p.k_chunk;
    let k1 = min(k0 + p.k_chunk, p.k);
    //# for j in 0..UNITS
    let c{{j}} = min(first + {{j*UNIT_STRIDE}}u, nt - 1u);
    //# end
    //# for i in 0..ROWS
    let x{{i}} = (p.x_offset + min({{i}}u, p.m - 1u) * p.ldx) / WIDTH;
    //# end
    //# for i in 0..ROWS
    //# for j in 0..UNITS
    //# if ALONG_K
    // Along K the start value joins once, in the sum across lanes.
    var a{{i}}_{{j}} = ZERO;
    //# else
    var a{{i}}_{{j}} = start(p, {{i}}u, c{{j}});
    //# end
    //# end
    //# end
    //# if QUANT
    // Quantized weights: each column's group (the prelude's w_group: block factors and
    // where the bytes lie), read when the loop enters a group of W_GROUP units and kept
    // for the group's units.
    //# for j in 0..UNITS
    //# for u in 0..WIDTH
    var f{{j}}_{{u}}: WGroup;
    //# end
    //# end
    //# end
    // The K loop in steps of WIDTH k (one unit of X a row, a "quad"): along N every step of
    // the chunk in order; along K lane l the quads l, l + LANES, ..., so adjacent lanes read
    // adjacent 16 bytes of each row of W.
    //# if ALONG_K
    for (var kq = k0 / WIDTH + lid.x; kq < k1 / WIDTH; kq += {{LANES}}u) {
    //# else
    for (var kq = k0 / WIDTH + 0u; kq < k1 / WIDTH; kq += 1u) {
    //# end
        //# if QUANT
        // Every column's units share the group boundaries: ldw is whole blocks.
        if (kq == k0 / WIDTH || (p.w_offset / 4u + kq) % W_GROUP == 0u) {
            //# for j in 0..UNITS
            //# for u in 0..WIDTH
            f{{j}}_{{u}} = w_group((p.w_offset + (c{{j}} * 4u + {{u}}u) * p.ldw) / 4u + kq);
            //# end
            //# end
        }
        //# end
        // The weights of this K step: b{j}_{u} is W at k = WIDTH kq + u for unit j
        // ([in, out]), or unit j's column 4 c + u at the 4 k of this step ([out, in], vec4).
        //# for j in 0..UNITS
        //# for u in 0..WIDTH
        //# if VEC4
        //# if IN_OUT
        let b{{j}}_{{u}} = load_w4((p.w_offset + (kq * 4u + {{u}}u) * p.ldw) / 4u + c{{j}});
        //# else
        //# if QUANT
        let b{{j}}_{{u}} = load_w4_in((p.w_offset + (c{{j}} * 4u + {{u}}u) * p.ldw) / 4u + kq, f{{j}}_{{u}});
        //# else
        let b{{j}}_{{u}} = load_w4((p.w_offset + (c{{j}} * 4u + {{u}}u) * p.ldw) / 4u + kq);
        //# end
        //# end
        //# else
        //# if IN_OUT
        let b{{j}}_{{u}} = load_w(p.w_offset + kq * p.ldw + c{{j}});
        //# else
        let b{{j}}_{{u}} = load_w(p.w_offset + c{{j}} * p.ldw + kq);
        //# end
        //# end
        //# end
        //# end
        //# for i in 0..ROWS
        let v{{i}} = x[x{{i}} + kq];
        //# for j in 0..UNITS
        //# if !VEC4
        a{{i}}_{{j}} = fma(v{{i}}, b{{j}}_0, a{{i}}_{{j}});
        //# else
        // fma in increasing k: x, y, z, w of v are k = 4 kq + 0..4 ([out, in]: the four
        // columns' weights at that k, transposed in registers).
        //# if IN_OUT
        a{{i}}_{{j}} = fma(vec4<f32>(v{{i}}.w), b{{j}}_3, fma(vec4<f32>(v{{i}}.z), b{{j}}_2, fma(vec4<f32>(v{{i}}.y), b{{j}}_1, fma(vec4<f32>(v{{i}}.x), b{{j}}_0, a{{i}}_{{j}}))));
        //# else
        a{{i}}_{{j}} = fma(vec4<f32>(v{{i}}.w), vec4<f32>(b{{j}}_0.w, b{{j}}_1.w, b{{j}}_2.w, b{{j}}_3.w), fma(vec4<f32>(v{{i}}.z), vec4<f32>(b{{j}}_0.z, b{{j}}_1.z, b{{j}}_2.z, b{{j}}_3.z), fma(vec4<f32>(v{{i}}.y), vec4<f32>(b{{j}}_0.y, b{{j}}_1.y, b{{j}}_2.y, b{{j}}_3.y), fma(vec4<f32>(v{{i}}.x), vec4<f32>(b{{j}}_0.x, b{{j}}_1.x, b{{j}}_2.x, b{{j}}_3.x), a{{i}}_{{j}}))));
        //# end
        //# end
        //# end
        //# end
    }
    //# if ALONG_K
    //# for i in 0..ROWS
    //# for j in 0..UNITS
    red[lid.x * {{BLOCK}}u + {{i*UNITS+j}}u] = a{{i}}_{{j}};
    //# end
    //# end
    workgroupBarrier();
    // Lane l's sums are red[l * BLOCK + t]: add them in lane order.
    for (var t = lid.x; t < {{BLOCK}}u; t += {{LANES}}u) {
        let i = t / {{UNITS}}u;
        let c = first + t % {{UNITS}}u;
        var sum = start(p, i, min(c, nt - 1u));
        for (var l = 0u; l < {{LANES}}u; l++) {
            sum = sum + red[l * {{BLOCK}}u + t];
        }
        store(p, i, c, chunk, sum);
    }
    //# else
    //# for i in 0..ROWS
    //# for j in 0..UNITS
    store(p, {{i}}u, first + {{j*UNIT_STRIDE}}u, chunk, a{{i}}_{{j}});
    //# end
    //# end
    //# end
}
