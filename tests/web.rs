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
