//! The model layers (`nn::GatedMlp`, `nn::ParallelAttention`, `nn::Norm`,
//! `nn::ParallelLmHead`) beside their kernels' checks (src/ops/model/tests.rs): a blocking
//! `forward` and `forward_async` alike.

mod common;

/// Every layer has a blocking `forward` beside `forward_async`, with the same bits: the
/// gated MLP, the attention (two positions, then one more from the cache), the norm and
/// the LM head at tp 2.
#[test]
fn the_model_layers_forward_blocking_and_async_alike() {
    use wgpu_tp::nn::{AttentionShape, GatedMlp, HeadWeights, ParallelAttention, Rotary};
    use wgpu_tp::{DistTensor, WeightLayout};
    let Some(group) = common::group(2) else {
        return;
    };
    let (h, i, hd) = (8, 12, 4);
    let mut rng = wgpu_tp::reference::Rng::new(5);
    let (gate, up, down) = (rng.normal(i * h), rng.normal(i * h), rng.normal(h * i));
    let rows = |w: &[f32], r: std::ops::Range<usize>, cols: usize| {
        w[r.start * cols..r.end * cols].to_vec()
    };
    let mlp = GatedMlp::new(
        &group,
        h,
        i,
        |r| Ok(rows(&gate, r, h)),
        |r| Ok(rows(&up, r, h)),
        |c| {
            Ok((0..h)
                .flat_map(|o| down[o * i + c.start..o * i + c.end].to_vec())
                .collect::<Vec<f32>>())
        },
    )
    .unwrap();
    let x = DistTensor::replicate(&group, &rng.normal(3 * h), [3, h]).unwrap();
    let a = mlp.forward(&x).unwrap().to_host().unwrap();
    let b = pollster::block_on(mlp.forward_async(&x))
        .unwrap()
        .to_host()
        .unwrap();
    common::assert_same_bits(&a, &b, "gated mlp");
    let shape = AttentionShape {
        hidden: h,
        heads: 2,
        kv_heads: 1,
        head_dim: hd,
        o_block: 1,
    };
    let (q, k, v, o) = (
        rng.normal(2 * hd * h),
        rng.normal(hd * h),
        rng.normal(hd * h),
        rng.normal(h * 2 * hd),
    );
    let rotary = Rotary::new(&group, hd, 4, 1e4).unwrap();
    let attention = ParallelAttention::new(
        &group,
        shape,
        WeightLayout::OutIn,
        Some(rotary),
        |qh, kvh| {
            Ok(HeadWeights {
                q: rows(&q, qh.start * hd..qh.end * hd, h).into(),
                k: rows(&k, kvh.start * hd..kvh.end * hd, h).into(),
                v: rows(&v, kvh.start * hd..kvh.end * hd, h).into(),
                bias: None,
            })
        },
        |c| {
            Ok((0..h)
                .flat_map(|r| o[r * 2 * hd + c.start..r * 2 * hd + c.end].to_vec())
                .collect::<Vec<f32>>())
        },
        None,
    )
    .unwrap();
    let (mut c1, mut c2) = (
        attention.new_cache(4).unwrap(),
        attention.new_cache(4).unwrap(),
    );
    let two = DistTensor::replicate(&group, &rng.normal(2 * h), [2, h]).unwrap();
    let one = DistTensor::replicate(&group, &rng.normal(h), [1, h]).unwrap();
    for x in [&two, &one] {
        let a = attention.forward(x, &mut c1).unwrap().to_host().unwrap();
        let b = pollster::block_on(attention.forward_async(x, &mut c2))
            .unwrap()
            .to_host()
            .unwrap();
        common::assert_same_bits(&a, &b, "attention");
        assert!(a.iter().all(|v| v.is_finite()));
    }
    assert_eq!((c1.len(), c2.len()), (3, 3));

    // The norm (no communication) and the vocab-parallel LM head (logits `Shard(1)`).
    use wgpu_tp::nn::{Norm, NormKind, ParallelLmHead};
    let norm = Norm::new(&group, NormKind::Rms, &rng.normal(h), None, 1e-5).unwrap();
    let a = norm.forward(&two).unwrap().to_host().unwrap();
    let b = pollster::block_on(norm.forward_async(&two))
        .unwrap()
        .to_host()
        .unwrap();
    common::assert_same_bits(&a, &b, "norm");
    let vocab = 7;
    let table = rng.normal(vocab * h);
    let head = ParallelLmHead::from_rows(&group, vocab, h, |r| Ok(rows(&table, r, h))).unwrap();
    let a = head.forward(&two).unwrap();
    assert_eq!(a.shape(), [2, vocab]);
    let a = a.to_host().unwrap();
    let b = pollster::block_on(head.forward_async(&two))
        .unwrap()
        .to_host()
        .unwrap();
    common::assert_same_bits(&a, &b, "lm head");
    assert!(a.iter().chain(&b).all(|v| v.is_finite()));
}
