//! A group mixing a Vulkan rank and a GL rank gives the reference answer.
//!
//! Needs both adapters (lavapipe and llvmpipe GL here). Skipped locally when either is
//! missing; under `CI=true` a missing one fails.

mod common;

use common::{assert_within, in_ci, linear_data};
use wgpu_tp::reference::{self, Rng};
use wgpu_tp::wgpu;
use wgpu_tp::{Activation, DistTensor, Group, ParallelMlp, WeightLayout};

fn adapter(backend: wgpu::Backends) -> Option<wgpu::Adapter> {
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
        backends: backend,
        ..wgpu::InstanceDescriptor::new_without_display_handle()
    });
    let found = pollster::block_on(instance.enumerate_adapters(backend));
    if found.is_empty() {
        assert!(!in_ci(), "CI needs a {backend:?} adapter");
        eprintln!("skipping: no {backend:?} adapter");
    }
    found.into_iter().next()
}

#[test]
fn vulkan_and_gl_ranks_give_the_reference_answer() {
    let (Some(vk), Some(gl)) = (adapter(wgpu::Backends::VULKAN), adapter(wgpu::Backends::GL))
    else {
        return;
    };
    let group = Group::builder().adapters(vec![vk, gl]).build().unwrap();
    let backends: Vec<_> = group
        .ranks()
        .iter()
        .map(|r| r.adapter_info().backend)
        .collect();
    assert_eq!(backends, [wgpu::Backend::Vulkan, wgpu::Backend::Gl]);
    let (batch, hidden, ffn) = (6, 21, 45);
    for layout in [WeightLayout::InOut, WeightLayout::OutIn] {
        let mut rng = Rng::new(3);
        let (w1, b1) = linear_data(&mut rng, hidden, ffn, true);
        let (w2, b2) = linear_data(&mut rng, ffn, hidden, true);
        let x = rng.normal(batch * hidden);
        let (s1, s2) = (
            common::in_layout(&w1, hidden, ffn, layout),
            common::in_layout(&w2, ffn, hidden, layout),
        );
        let mlp = ParallelMlp::from_full(
            &group,
            common::host(&s1, &b1, hidden, ffn, layout),
            common::host(&s2, &b2, ffn, hidden, layout),
            Activation::GeluErf,
        )
        .unwrap();
        let h = common::reference_linear(&x, [batch, hidden], &w1, ffn, b1.as_deref());
        let want = common::reference_linear_of(
            &reference::activation(&h, Activation::GeluErf),
            [batch, ffn],
            &w2,
            hidden,
            b2.as_deref(),
        );
        let y = mlp
            .forward(&DistTensor::replicate(&group, &x, [batch, hidden]).unwrap())
            .unwrap();
        let per_rank = y.to_host_per_rank().unwrap();
        for (r, v) in per_rank.iter().enumerate() {
            assert_within(
                &want,
                v,
                &format!("{layout:?} rank {r} ({:?})", backends[r]),
            );
        }
        common::assert_same_bits(
            &per_rank[0],
            &per_rank[1],
            "the all-reduced value is the same on both backends",
        );
    }
}
