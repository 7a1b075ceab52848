// The sweep entry of gemm_skinny.wgsl ([in, out] weights on CPU adapters, at most 4 rows),
// a template (src/kernels/template.rs has the syntax) that src/kernels/gemm_skinny/sweep.rs
// fills: ENTRY, LANES per workgroup, ROWS rows of X, KB rows of K per lane (a multiple of
// 4), VEC4 (units of 4 columns).
//
// Lane l of workgroup (x, y) owns K block b = LANES y + l, rows [b k_chunk, (b + 1) k_chunk)
// of the dispatch's K, keeps its rows of X in registers (v{i}_{r}: row i at k = k0 + r),
// and sweeps the units [x span, (x + 1) span), span the dispatch's units over its
// workgroups along x, reading its rows of W side by side in order; for each unit it sums
// its rows by fma in increasing k (rows past K clamped and left out) and stores the
// partial sum as chunk b.
@compute @workgroup_size({{LANES}}, 1, 1)
fn {{ENTRY}}(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let p = load_params();
    let nt = p.n / WIDTH;
    let block = wid.y * {{LANES}}u + lid.x;
    let k0 = block * p.k_chunk;
    if (k0 >= p.k) {
        return;
    }
    let k1 = min(k0 + p.k_chunk, p.k);
    let span = (nt + groups.x - 1u) / groups.x;
    let c0 = wid.x * span;
    let c1 = min(c0 + span, nt);
    //# for r in 0..KB
    let w{{r}} = (p.w_offset + min(k0 + {{r}}u, k1 - 1u) * p.ldw) / WIDTH; let in{{r}} = k0 + {{r}}u < k1;
    //# end
    //# for i in 0..ROWS
    let x{{i}} = p.x_offset + min({{i}}u, p.m - 1u) * p.ldx;
    //# if VEC4
    // k0 and k1 are multiples of 4: quads lie wholly inside or outside K.
    //# for q in 0..QUADS
    let q{{i}}_{{q}} = x[(x{{i}} + min(k0 + {{4*q}}u, k1 - 4u)) / 4u];
    let v{{i}}_{{4*q}} = T(q{{i}}_{{q}}.x);
    let v{{i}}_{{4*q+1}} = T(q{{i}}_{{q}}.y);
    let v{{i}}_{{4*q+2}} = T(q{{i}}_{{q}}.z);
    let v{{i}}_{{4*q+3}} = T(q{{i}}_{{q}}.w);
    //# end
    //# else
    //# for r in 0..KB
    let v{{i}}_{{r}} = T(x[x{{i}} + min(k0 + {{r}}u, k1 - 1u)]);
    //# end
    //# end
    //# end
    // Twice: a whole block (all but maybe the last) needs no check of its rows; the
    // second loop (checked) leaves out rows past K.
    //# for checked in 0..2
    //# if checked
    } else {
    //# else
    if (k1 - k0 == {{KB}}u) {
    //# end
        for (var c = c0; c < c1; c++) {
            //# for i in 0..ROWS
            var a{{i}}_0 = ZERO;
            //# end
            //# for r in 0..KB
            let b{{r}} = load_wt(w{{r}} + c);
            //# for i in 0..ROWS
            //# if checked
            a{{i}}_0 = select(a{{i}}_0, fma(v{{i}}_{{r}}, b{{r}}, a{{i}}_0), in{{r}});
            //# else
            a{{i}}_0 = fma(v{{i}}_{{r}}, b{{r}}, a{{i}}_0);
            //# end
            //# end
            //# end
            //# for i in 0..ROWS
            store(p, {{i}}u, c, block, a{{i}}_0);
            //# end
        }
    //# end
    }
}
