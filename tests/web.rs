//! The library in a real browser (wasm32 + WebGPU): the collectives and the layers at tp
//! 1-4 on logical ranks sharing the page's one device, and bad input, run by
//! `wasm-bindgen-test-runner` in headless Chromium (WebGPU on SwiftShader; the flags are in
//! `webdriver.json`):
//!
//! ```text
//! CHROMEDRIVER=/usr/bin/chromedriver \
//! CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner \
//! cargo test --target wasm32-unknown-unknown --no-default-features \
//!     --features webgpu,reference --test web
//! ```
//!
//! Natively this file is empty (the native suite covers the same ground).
#![cfg(target_arch = "wasm32")]

use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};
use wgpu_tp::reference::{self, Approx, Rng};
use wgpu_tp::{
    Activation, ColumnParallelConfig, ColumnParallelLinear, DistTensor, Error, Group, HostLinear,
    ParallelMlp, Placement, RowParallelConfig, RowParallelLinear, Tensor, WeightLayout,
};

wasm_bindgen_test_configure!(run_in_browser);

async fn group(tp: usize) -> Group {
    Group::builder()
        .ranks_sharing_one_device(tp)
        .build_async()
        .await
        .expect("a group of ranks on the browser's device")
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|f| f.to_bits()).collect()
}

/// The all-reduce gives every rank the f32 sum in rank order, bit for bit (as natively:
/// tests/collectives.rs), and the all-gather the concatenation of the shards.
#[wasm_bindgen_test]
async fn collectives_give_the_rank_order_sum_and_the_concatenation_at_tp_1_to_4() {
    let shape = [6, 20];
    let n = shape[0] * shape[1];
    for tp in 1..=4 {
        let g = group(tp).await;
        let mut rng = Rng::new(tp as u64);
        let parts: Vec<Vec<f32>> = (0..tp).map(|_| rng.normal(n)).collect();
        let locals = g
            .ranks()
            .iter()
            .zip(&parts)
            .map(|(r, p)| Tensor::from_host(r, p, shape).unwrap())
            .collect();
        let x = DistTensor::from_locals(&g, locals, Placement::Partial).unwrap();
        let mut want = parts[0].clone();
        for p in &parts[1..] {
            want.iter_mut().zip(p).for_each(|(a, b)| *a += *b);
        }
        let y = x.all_reduce_async().await.unwrap();
        for (r, v) in y.to_host_per_rank_async().await.unwrap().iter().enumerate() {
            assert_eq!(bits(v), bits(&want), "all-reduce tp {tp} rank {r}");
        }
        let full = rng.normal(n);
        let sharded = DistTensor::shard(&g, &full, shape, 1).unwrap();
        let gathered = sharded.all_gather_async().await.unwrap();
        for v in gathered.to_host_per_rank_async().await.unwrap() {
            assert_eq!(bits(&v), bits(&full), "all-gather tp {tp}");
        }
    }
}

/// Column-parallel, row-parallel and the Megatron MLP against the f64 reference within
/// its rigorous f32 bound (`reference::Approx::check`), as `verify` checks them natively.
#[wasm_bindgen_test]
async fn layers_match_the_reference_at_tp_1_to_4() {
    let (batch, hidden, ffn) = (3, 40, 72);
    let layout = WeightLayout::InOut;
    let mut rng = Rng::new(7);
    let w = rng.xavier(hidden * hidden, hidden, hidden);
    let w1 = rng.xavier(hidden * ffn, hidden, ffn);
    let w2 = rng.xavier(ffn * hidden, ffn, hidden);
    let x = rng.normal(batch * hidden);
    let xr = Approx::exact(&x);
    let want = reference::linear(&xr, [batch, hidden], &w, hidden, layout, None).unwrap();
    let act = Activation::GeluTanh;
    let h = reference::activation(
        &reference::linear(&xr, [batch, hidden], &w1, ffn, layout, None).unwrap(),
        act,
    );
    let want_mlp = reference::linear(&h, [batch, ffn], &w2, hidden, layout, None).unwrap();
    for tp in 1..=4 {
        let g = group(tp).await;
        let xd = DistTensor::replicate(&g, &x, [batch, hidden]).unwrap();
        let col = ColumnParallelLinear::from_full(
            &g,
            HostLinear::new(&w, hidden, hidden, layout),
            ColumnParallelConfig::default(),
        )
        .unwrap();
        let y = col.forward_async(&xd).await.unwrap();
        for v in y.to_host_per_rank_async().await.unwrap() {
            let c = want.check(&v);
            assert!(
                c.pass,
                "column tp {tp}: {} > {}",
                c.max_abs_diff, c.tolerance
            );
        }
        let row = RowParallelLinear::from_full(
            &g,
            HostLinear::new(&w, hidden, hidden, layout),
            RowParallelConfig::default().input_is_parallel(true),
        )
        .unwrap();
        let chunks = DistTensor::shard(&g, &x, [batch, hidden], 1).unwrap();
        let y = row.forward_async(&chunks).await.unwrap();
        for v in y.to_host_per_rank_async().await.unwrap() {
            let c = want.check(&v);
            assert!(c.pass, "row tp {tp}: {} > {}", c.max_abs_diff, c.tolerance);
        }
        let mlp = ParallelMlp::from_full(
            &g,
            HostLinear::new(&w1, hidden, ffn, layout),
            HostLinear::new(&w2, ffn, hidden, layout),
            act,
        )
        .unwrap();
        let before = g.stats().all_reduces();
        let y = mlp.forward_async(&xd).await.unwrap();
        assert_eq!(
            g.stats().all_reduces() - before,
            1,
            "one all-reduce at tp {tp}"
        );
        for v in y.to_host_per_rank_async().await.unwrap() {
            let c = want_mlp.check(&v);
            assert!(c.pass, "mlp tp {tp}: {} > {}", c.max_abs_diff, c.tolerance);
        }
    }
}

/// Bad input in a page gives the same `Error` values as natively, never a panic.
#[wasm_bindgen_test]
async fn bad_input_gives_the_native_errors() {
    let g = group(4).await;
    let r = &g.ranks()[0];
    assert!(matches!(
        Tensor::from_host(r, &[1.0; 5], [2, 3]),
        Err(Error::Shape { .. })
    ));
    // tp 4 over a dimension of 3.
    let w = vec![0.5f32; 3 * 3];
    let col = ColumnParallelLinear::from_full(
        &g,
        HostLinear::new(&w, 3, 3, WeightLayout::InOut),
        ColumnParallelConfig::default(),
    );
    assert!(matches!(col, Err(Error::InvalidArgument { .. })));
    // A shard where a replicated input is wanted.
    let col = ColumnParallelLinear::from_full(
        &g,
        HostLinear::new(&[0.5; 64], 8, 8, WeightLayout::InOut),
        ColumnParallelConfig::default(),
    )
    .unwrap();
    let sharded = DistTensor::shard(&g, &[1.0; 16], [2, 8], 1).unwrap();
    let e = col.forward_async(&sharded).await;
    assert!(matches!(e, Err(Error::Placement { .. })), "{e:?}");
    // An adapter that does not exist.
    let none = Group::builder()
        .adapter_name("no such adapter")
        .ranks_sharing_one_device(1)
        .build_async()
        .await;
    assert!(none.is_err());
}

/// Ranks on devices of their own, one per adapter the page requests (a browser gives one
/// device per adapter object), so that one can be lost alone.
async fn devices(tp: usize) -> Group {
    Group::builder()
        .ranks_on_one_adapter(tp)
        .build_async()
        .await
        .expect("a group of devices from the browser's adapter")
}

/// A device lost in the page (`destroy()`, as when the tab's GPU process restarts) gives
/// `Error::DeviceLost` for that rank on the call in flight and every later one, as natively
/// (tests/faults.rs); the other rank is unaffected, and a new group works.
#[wasm_bindgen_test]
async fn a_lost_device_gives_device_lost_for_that_rank() {
    let g = devices(2).await;
    let x = DistTensor::replicate(&g, &[1.0; 4], [2, 2]).unwrap();
    g.ranks()[1].device().destroy();
    let lost = |e: &Error| matches!(e, Error::DeviceLost { rank: 1, .. });
    let reduced = match x.redistribute_async(Placement::Partial).await {
        Ok(p) => p.all_reduce_async().await.map(drop),
        Err(e) => Err(e),
    };
    let e = reduced.unwrap_err();
    assert!(lost(&e), "first call after destroy: {e:?}");
    let e = Tensor::from_host(&g.ranks()[1], &[1.0; 4], [2, 2]).err();
    assert!(e.as_ref().is_some_and(lost), "upload: {e:?}");
    let e = x.to_host_per_rank_async().await.err();
    assert!(e.as_ref().is_some_and(lost), "read-back: {e:?}");
    assert_eq!(x.locals()[0].to_host_async().await.unwrap(), vec![1.0; 4]);
    let again = devices(2).await;
    let y = DistTensor::replicate(&again, &[2.0; 4], [2, 2]).unwrap();
    assert_eq!(
        y.to_host_per_rank_async().await.unwrap(),
        vec![vec![2.0; 4]; 2]
    );
}

/// A `requestDevice` the browser refuses (limits past the adapter's) is
/// `Error::RequestDevice`, as natively.
#[wasm_bindgen_test]
async fn a_refused_request_device_is_request_device() {
    let limits = wgpu_tp::wgpu::Limits {
        // 4 PiB: past any adapter, and a number JS holds (u64::MAX fails as a TypeError
        // before the browser looks at the adapter).
        max_buffer_size: 1 << 52,
        ..Default::default()
    };
    let e = Group::builder()
        .ranks_sharing_one_device(2)
        .required_limits(limits)
        .build_async()
        .await
        .err();
    assert!(matches!(e, Some(Error::RequestDevice { .. })), "{e:?}");
}

/// WebGPU's default limits, which any page gets on any GPU (a browser never gives less,
/// even when asked), are lower than a desktop's: a tensor over the binding limit goes in
/// bands of rows, and a row over it is `Error::BufferTooLarge`, as natively
/// (tests/errors.rs, tests/chunking.rs).
#[wasm_bindgen_test]
async fn webgpu_default_limits_band_what_fits_and_refuse_a_row_over_them() {
    let g = Group::builder()
        .ranks_sharing_one_device(1)
        .required_limits(wgpu_tp::wgpu::Limits::default())
        .build_async()
        .await
        .unwrap();
    let r = &g.ranks()[0];
    let l = r.limits();
    let limit = l.max_storage_buffer_binding_size.min(l.max_buffer_size);
    assert_eq!(limit, 128 << 20, "WebGPU's default binding limit");
    // Three rows of 48 MiB: two bands (96 MiB and 48 MiB), the values read back whole.
    let cols = 12 << 20;
    let t = Tensor::zeros(r, [3, cols]).unwrap();
    let bands: Vec<usize> = t.buffers().iter().map(|(_, rows)| rows.len()).collect();
    assert_eq!(bands, vec![2, 1]);
    let v = t.to_host_async().await.unwrap();
    assert!(v.len() == 3 * cols && v.iter().all(|&x| x == 0.0));
    let row = limit as usize / 4 + 1;
    let e = Tensor::zeros(r, [1, row]).unwrap_err();
    assert!(
        matches!(e, Error::BufferTooLarge { bytes, limit: l, .. } if bytes == 4 * row as u64 && l == limit),
        "{e:?}"
    );
}

/// Training in a page: the Megatron MLP's backward (one all-reduce) and the
/// vocabulary-parallel cross-entropy at tp 1-4, dL/dX and the loss's gradient within the
/// f64 reference's bound, as natively (tests/backward.rs, tests/loss.rs).
#[wasm_bindgen_test]
async fn mlp_backward_and_cross_entropy_match_the_reference_at_tp_1_to_4() {
    let (t, k, n) = (3, 16, 20);
    let io = WeightLayout::InOut;
    let mut rng = Rng::new(9);
    let (w1, w2) = (rng.xavier(k * n, k, n), rng.xavier(n * k, n, k));
    let (x, dy) = (rng.normal(t * k), rng.normal(t * k));
    let act = Activation::GeluTanh;
    let z = reference::linear(&Approx::exact(&x), [t, k], &w1, n, io, None).unwrap();
    let dh = reference::linear(
        &Approx::exact(&dy),
        [t, k],
        &w2,
        n,
        WeightLayout::OutIn,
        None,
    )
    .unwrap();
    let dz = reference::activation_grad(&z, &dh, act);
    let want_dx = reference::linear(&dz, [t, n], &w1, k, WeightLayout::OutIn, None).unwrap();
    let logits = rng.normal(t * n);
    let targets = [Some(3), None, Some(19)];
    let (_, want_grad) = reference::cross_entropy(&logits, [t, n], &targets);
    for tp in 1..=4 {
        let g = group(tp).await;
        let mlp = ParallelMlp::from_full(
            &g,
            HostLinear::new(&w1, k, n, io),
            HostLinear::new(&w2, n, k, io),
            act,
        )
        .unwrap();
        let xd = DistTensor::replicate(&g, &x, [t, k]).unwrap();
        let dyd = DistTensor::replicate(&g, &dy, [t, k]).unwrap();
        let before = g.stats().all_reduces();
        let grads = mlp.backward_async(&xd, &dyd).await.unwrap();
        assert_eq!(
            g.stats().all_reduces() - before,
            1,
            "tp {tp}: one all-reduce"
        );
        for v in grads.fc1.input.to_host_per_rank_async().await.unwrap() {
            let c = want_dx.check(&v);
            assert!(c.pass, "tp {tp}: dX {} > {}", c.max_abs_diff, c.tolerance);
        }
        let l = DistTensor::shard(&g, &logits, [t, n], 1).unwrap();
        let ce = wgpu_tp::nn::vocab_parallel_cross_entropy_async(&l, &targets)
            .await
            .unwrap();
        let c = want_grad.check(&ce.grad.to_host_async().await.unwrap());
        assert!(
            c.pass,
            "tp {tp}: dlogits {} > {}",
            c.max_abs_diff, c.tolerance
        );
    }
}

/// The optimizer and RMSNorm's backward in a page (their shaders compiled by Tint, not
/// only naga): AdamW's step moves a sharded weight as on the host reference of its first
/// step (`lr * sign(g)` from zero moments, within 1e-6 of the weight), the clipping norm
/// counts a replicated gradient once, and RMSNorm's dx is within the reference's bound.
#[wasm_bindgen_test]
async fn adamw_clipping_and_rms_norm_backward_run_in_the_page() {
    use wgpu_tp::nn::{clip_grad_norm_async, AdamW, AdamWConfig, Norm, NormKind};
    let g = group(2).await;
    let mut rng = Rng::new(12);
    let (w0, grad, bias) = (rng.normal(4 * 6), rng.normal(4 * 6), rng.normal(6));
    let p = DistTensor::shard(&g, &w0, [4, 6], 1).unwrap();
    let gd = DistTensor::shard(&g, &grad, [4, 6], 1).unwrap();
    let bd = DistTensor::replicate(&g, &bias, [1, 6]).unwrap();
    let norm = clip_grad_norm_async(&[&gd, &bd], 1e9).await.unwrap();
    let exact: f64 = grad
        .iter()
        .chain(&bias)
        .map(|&v| f64::from(v).powi(2))
        .sum::<f64>()
        .sqrt();
    assert!(
        (norm.norm - exact).abs() <= 1e-6 * exact,
        "{} vs {exact}",
        norm.norm
    );
    let lr = 0.01;
    let config = AdamWConfig::default().lr(lr).weight_decay(0.0);
    let mut opt = AdamW::new(&[&p], config).unwrap();
    opt.step(&[&p], &[&gd], 1.0).unwrap();
    // The first step from zero moments is lr * g / (|g| + eps): lr * sign(g).
    for ((w, w0), g) in p.to_host_async().await.unwrap().iter().zip(&w0).zip(&grad) {
        let want = w0 - lr * g.signum();
        assert!(
            (w - want).abs() <= 1e-6 * (1.0 + want.abs()),
            "{w} vs {want}"
        );
    }
    let (rows, cols) = (3, 8);
    let x = rng.normal(rows * cols);
    let w: Vec<f32> = rng.normal(cols).iter().map(|v| 1.0 + 0.1 * v).collect();
    let dy = rng.normal(rows * cols);
    let (want, _) = reference::rms_norm_backward(&x, &w, &dy, [rows, cols], 1e-5);
    let n = Norm::new(&g, NormKind::Rms, &w, None, 1e-5).unwrap();
    let xd = DistTensor::replicate(&g, &x, [rows, cols]).unwrap();
    let dyd = DistTensor::replicate(&g, &dy, [rows, cols]).unwrap();
    let grads = n.backward_async(&xd, &dyd).await.unwrap();
    let c = want.check(&grads.input.to_host_async().await.unwrap());
    assert!(c.pass, "dx {} > {}", c.max_abs_diff, c.tolerance);
}
