// Rotary positions (rotate-half form, Hugging Face Llama): the turn of one pair of a head,
// shared by rope.wgsl (the rope entry) and attention.wgsl (keys as they are written to the
// cache, queries as attention reads them), prepended to each by src/kernels/mod.rs. It has
// no bindings of its own: it reads the `table` binding of the shader it is part of.
//
// The rotary table is [positions, head_dim], row-major f32: row p holds the cosines of
// position p's head_dim / 2 half-head angles, then their sines.

// The pair (x1, x2) = (x[j], x[j + head_dim / 2]) of a head turned by the angle of
// [pos, j] in the table.
fn turn(x1: f32, x2: f32, pos: u32, j: u32, head_dim: u32) -> vec2<f32> {
    let cs = pos * head_dim + j;
    let co = table[cs];
    let si = table[cs + head_dim / 2u];
    return vec2<f32>(x1 * co - x2 * si, x2 * co + x1 * si);
}

// The inverse of `turn` (the angle negated), which carries a gradient at the turned pair
// back to the pair before it (the rotation's transpose): attention_backward.wgsl.
fn unturn(y1: f32, y2: f32, pos: u32, j: u32, head_dim: u32) -> vec2<f32> {
    let cs = pos * head_dim + j;
    let co = table[cs];
    let si = table[cs + head_dim / 2u];
    return vec2<f32>(y1 * co + y2 * si, y2 * co - y1 * si);
}
