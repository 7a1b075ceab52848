// Weight prelude: f32 weights, as they are. A weight format's prelude declares the weights
// binding `w` and the one function every kernel reads it through; src/kernels/mod.rs
// picks the prelude of the tensor's format (src/kernels/template.rs fills the slots):
// BINDING is the binding number (1 in the GEMMs, 0 for the embedding table), VEC4 the
// unit the family reads.
//
//   scalar: w storage, read, array<f32>: element i is weight i (the family's index, in f32
//           elements of the band bound); load_w(i) -> f32
//   vec4:   w storage, read, array<vec4<f32>>: unit i is weights 4 i .. 4 i + 4;
//           load_w4(i) -> vec4<f32>
//# if VEC4

@group(0) @binding({{BINDING}}) var<storage, read> w: array<vec4<f32>>;

// Weights 4 i .. 4 i + 4.
fn load_w4(i: u32) -> vec4<f32> {
    return w[i];
}
//# else

@group(0) @binding({{BINDING}}) var<storage, read> w: array<f32>;

// Weight i.
fn load_w(i: u32) -> f32 {
    return w[i];
}
//# end
