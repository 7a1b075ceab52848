//! The sweep entry of the skinny family ([`Lanes::Sweep`](super::Lanes::Sweep)):
//! `[in, out]` weights on CPU adapters, each lane a block of rows of K sweeping the
//! columns.

use super::{Skinny, SWEEP_LANES, SWEEP_ROWS};

impl Skinny {
    /// The sweep entry for `[in, out]` weights (see
    /// [`Lanes::Sweep`](super::Lanes::Sweep)): lane `l` of
    /// workgroup `(x, y)` owns K block `8 y + l`, rows `[b k_chunk, (b + 1) k_chunk)` of
    /// the dispatch's K, and sweeps the units `[x span, (x + 1) span)` with `span` the
    /// dispatch's units over its workgroups along x; for each unit it sums its rows by fma
    /// in increasing k (rows past K clamped and left out) and stores the partial sum as
    /// chunk `b`.
    pub(super) fn sweep_entry(self, name: &str) -> String {
        const I1: &str = "    ";
        const I2: &str = "        ";
        let (rows, kb) = (self.rows, SWEEP_ROWS);
        let mut s = format!(
            "@compute @workgroup_size({SWEEP_LANES}, 1, 1)\nfn {name}(\n\
             {I1}@builtin(local_invocation_id) lid: vec3<u32>,\n\
             {I1}@builtin(workgroup_id) wid: vec3<u32>,\n\
             {I1}@builtin(num_workgroups) groups: vec3<u32>,\n) {{\n\
             {I1}let p = load_params();\n\
             {I1}let nt = p.n / WIDTH;\n\
             {I1}let block = wid.y * {SWEEP_LANES}u + lid.x;\n\
             {I1}let k0 = block * p.k_chunk;\n\
             {I1}if (k0 >= p.k) {{\n{I2}return;\n{I1}}}\n\
             {I1}let k1 = min(k0 + p.k_chunk, p.k);\n\
             {I1}let span = (nt + groups.x - 1u) / groups.x;\n\
             {I1}let c0 = wid.x * span;\n\
             {I1}let c1 = min(c0 + span, nt);\n"
        );
        for r in 0..kb {
            s += &format!(
                "{I1}let w{r} = (p.w_offset + min(k0 + {r}u, k1 - 1u) * p.ldw) / WIDTH; \
                 let in{r} = k0 + {r}u < k1;\n"
            );
        }
        for i in 0..rows {
            s += &format!("{I1}let x{i} = p.x_offset + min({i}u, p.m - 1u) * p.ldx;\n");
            if self.vec4 {
                // k0 and k1 are multiples of 4: quads lie wholly inside or outside K.
                for q in 0..kb / 4 {
                    s += &format!(
                        "{I1}let q{i}_{q} = x[(x{i} + min(k0 + {}u, k1 - 4u)) / 4u];\n",
                        4 * q
                    );
                    for (u, c) in "xyzw".chars().enumerate() {
                        s += &format!("{I1}let v{i}_{} = T(q{i}_{q}.{c});\n", 4 * q + u);
                    }
                }
            } else {
                for r in 0..kb {
                    s += &format!("{I1}let v{i}_{r} = T(x[x{i} + min(k0 + {r}u, k1 - 1u)]);\n");
                }
            }
        }
        // A whole block (all but maybe the last) needs no check of its rows.
        s += &format!("{I1}if (k1 - k0 == {kb}u) {{\n");
        s += &self.sweep_loop(false);
        s += &format!("{I1}}} else {{\n");
        s += &self.sweep_loop(true);
        s += &format!("{I1}}}\n}}\n");
        s
    }

    /// A sweep's loop over its column units, leaving out rows past K when `checked`.
    fn sweep_loop(self, checked: bool) -> String {
        const I2: &str = "        ";
        const I3: &str = "            ";
        let mut s = format!("{I2}for (var c = c0; c < c1; c++) {{\n");
        for i in 0..self.rows {
            s += &format!("{I3}var a{i}_0 = ZERO;\n");
        }
        for r in 0..SWEEP_ROWS {
            s += &format!("{I3}let b{r} = w[w{r} + c];\n");
            for i in 0..self.rows {
                let update = format!("fma(v{i}_{r}, b{r}, a{i}_0)");
                let update = if checked {
                    format!("select(a{i}_0, {update}, in{r})")
                } else {
                    update
                };
                s += &format!("{I3}a{i}_0 = {update};\n");
            }
        }
        for i in 0..self.rows {
            s += &format!("{I3}store(p, {i}u, c, block, a{i}_0);\n");
        }
        s += &format!("{I2}}}\n");
        s
    }
}
