// The optimizer on each rank's shards (src/ops/optimizer.rs, src/nn/optimizer.rs): AdamW
// as PyTorch's torch.optim.AdamW computes it, in place, and the sums of squares per row
// that the global gradient norm is made of.
//
// Row-major f32; every binding is one band of rows of tensors of one shape (the weight,
// its gradient and the two moments share their banding).
//
// Bindings (the optimizer's layout: three storage buffers written, one read):
//   0: w       storage, read_write  adamw: the weights (updated); sum_squares: [rows] out,
//                                   each row's sum of squares (the band's from out0);
//                                   column_sum_squares: [cols] out, each column's
//   1: g       storage, read        the gradient
//   2: m       storage, read_write  adamw: the first moment (updated); sum_squares: unused
//   3: v       storage, read_write  adamw: the second moment (updated); sum_squares: unused
//                                   (each writable slot its own buffer: no aliasing)
//   4: params  uniform array<OptimParams, 2>, two equal copies
//
// Dispatch: workgroups (gx, gy, 1) of 256 invocations; invocation i = gid.x + gid.y *
// row_stride handles item base + i for i < count: adamw an element of the band,
// sum_squares a row of it (its columns summed in increasing order), column_sum_squares
// a column.

struct OptimParams {
    count: u32,
    row_stride: u32,
    base: u32,
    cols: u32,
    // f32 bits: the learning rate, the betas, epsilon, the weight decay, the step size
    // lr / (1 - beta1^t), sqrt(1 - beta2^t), and the factor the gradient is scaled by
    // (clipping).
    lr: u32,
    beta1: u32,
    beta2: u32,
    eps: u32,
    weight_decay: u32,
    step_size: u32,
    bias_correction2_sqrt: u32,
    grad_scale: u32,
    // sum_squares: the output row of the band's first row; column_sum_squares: 1 to add
    // to the sums already out (a band after the first).
    out0: u32,
    // column_sum_squares: the band's rows.
    rows: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<storage, read_write> w: array<f32>;
@group(0) @binding(1) var<storage, read> g: array<f32>;
@group(0) @binding(2) var<storage, read_write> m: array<f32>;
@group(0) @binding(3) var<storage, read_write> v: array<f32>;
// The parameters, twice (src/kernels/uniforms.rs says why): each entry point reads
// them once through load_params, at an index no compiler can fold to a constant.
@group(0) @binding(4) var<uniform> params: array<OptimParams, 2>;

fn load_params() -> OptimParams {
    return params[params[0].count & 1u];
}

// torch.optim.AdamW's single-tensor step, operation for operation:
//   param.mul_(1 - lr * weight_decay)
//   exp_avg.lerp_(grad, 1 - beta1)               (m + (1 - beta1) (g - m))
//   exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
//   denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps)
//   param.addcdiv_(exp_avg, denom, value=-step_size)
@compute @workgroup_size(256, 1, 1)
fn adamw(@builtin(global_invocation_id) gid: vec3<u32>) {
    let p = load_params();
    let i = gid.x + gid.y * p.row_stride;
    if (i >= p.count) {
        return;
    }
    let k = p.base + i;
    let lr = bitcast<f32>(p.lr);
    let beta1 = bitcast<f32>(p.beta1);
    let beta2 = bitcast<f32>(p.beta2);
    let grad = g[k] * bitcast<f32>(p.grad_scale);
    let decayed = w[k] * (1.0 - lr * bitcast<f32>(p.weight_decay));
    let mk = m[k] + (1.0 - beta1) * (grad - m[k]);
    let vk = v[k] * beta2 + (1.0 - beta2) * (grad * grad);
    let denom = sqrt(vk) / bitcast<f32>(p.bias_correction2_sqrt) + bitcast<f32>(p.eps);
    w[k] = decayed - bitcast<f32>(p.step_size) * (mk / denom);
    m[k] = mk;
    v[k] = vk;
}

@compute @workgroup_size(256, 1, 1)
fn sum_squares(@builtin(global_invocation_id) gid: vec3<u32>) {
    let p = load_params();
    let i = gid.x + gid.y * p.row_stride;
    if (i >= p.count) {
        return;
    }
    let row = p.base + i;
    var s = 0.0;
    for (var c = 0u; c < p.cols; c++) {
        let x = g[row * p.cols + c];
        s = s + x * x;
    }
    w[p.out0 + row] = s;
}

// Each column's sum of squares over the band's rows, in increasing row order, added to
// the sums of the bands before it when out0 is 1 (the bands in order: the same bits as
// one band).
@compute @workgroup_size(256, 1, 1)
fn column_sum_squares(@builtin(global_invocation_id) gid: vec3<u32>) {
    let p = load_params();
    let i = gid.x + gid.y * p.row_stride;
    if (i >= p.count) {
        return;
    }
    let c = p.base + i;
    var s = select(0.0, w[c], p.out0 != 0u);
    for (var r = 0u; r < p.rows; r++) {
        let x = g[r * p.cols + c];
        s = s + x * x;
    }
    w[c] = s;
}
