//! Each bad input gets its own clear `Error`, never a panic, a hang or a wrong answer.

mod common;

use common::lin;

use common::build;
use wgpu_tp::{
    ops, wgpu, Activation, ColumnParallelConfig, ColumnParallelLinear, DistTensor, Error, Group,
    ParallelMlp, Placement, RowParallelConfig, RowParallelLinear, Tensor, WeightLayout,
};

#[test]
fn error_is_send_sync_and_says_the_op_and_shapes() {
    fn assert_traits<E: std::error::Error + Send + Sync + 'static>() {}
    assert_traits::<Error>();
    let group = group_or_skip!(2);
    let x = DistTensor::replicate(&group, &[0.0; 12], [2, 6]).unwrap();
    let col = ColumnParallelLinear::from_full(
        &group,
        lin(&[0.0; 32], 8, 4),
        ColumnParallelConfig::default(),
    )
    .unwrap();
    let e = col.forward(&x).unwrap_err();
    assert!(matches!(e, Error::Shape { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(msg.starts_with("column_parallel.forward"), "{msg}");
    assert!(msg.contains("[*, 8]") && msg.contains("[2, 6]"), "{msg}");
}

#[test]
fn mismatched_shapes() {
    let group = group_or_skip!(2);
    let r = &group.ranks()[0];
    let a = Tensor::from_host(r, &[1.0; 6], [2, 3]).unwrap();
    let w = Tensor::from_host(r, &[1.0; 8], [4, 2]).unwrap();
    let e = ops::matmul(&a, &w, None, WeightLayout::InOut, Activation::Identity).unwrap_err();
    assert!(matches!(e, Error::Shape { op: "matmul", .. }), "{e:?}");
    let bias = Tensor::from_host(r, &[1.0; 3], [1, 3]).unwrap();
    let w_ok = Tensor::from_host(r, &[1.0; 6], [3, 2]).unwrap();
    let e = ops::matmul(
        &a,
        &w_ok,
        Some(&bias),
        WeightLayout::InOut,
        Activation::Identity,
    )
    .unwrap_err();
    assert!(
        matches!(e, Error::Shape { .. }),
        "bias of the wrong width: {e:?}"
    );
    assert!(matches!(ops::add(&a, &w).unwrap_err(), Error::Shape { .. }));
    assert!(matches!(
        ops::slice(&a, 1, 1, [2, 2]).unwrap_err(),
        Error::Shape { .. }
    ));
    // Weights of the wrong length, bias of the wrong length, MLP layers that do not chain.
    let e = ColumnParallelLinear::from_full(
        &group,
        lin(&[0.0; 31], 8, 4),
        ColumnParallelConfig::default(),
    )
    .unwrap_err();
    assert!(matches!(e, Error::Shape { .. }), "{e:?}");
    let bad_bias = lin(&[0.0; 32], 8, 4).with_bias(&[0.0; 3]);
    let e =
        RowParallelLinear::from_full(&group, bad_bias, RowParallelConfig::default()).unwrap_err();
    assert!(matches!(e, Error::Shape { .. }), "{e:?}");
    let e = ParallelMlp::from_full(
        &group,
        lin(&[0.0; 32], 8, 4),
        lin(&[0.0; 40], 5, 8),
        Activation::Relu,
    )
    .unwrap_err();
    assert!(matches!(e, Error::Shape { .. }), "{e:?}");
    // Row-parallel input shards that do not match the weight's split.
    let row = RowParallelLinear::from_full(
        &group,
        lin(&[0.0; 40], 10, 4),
        RowParallelConfig::default().input_is_parallel(true),
    )
    .unwrap();
    let ranks = group.ranks();
    let uneven = vec![
        Tensor::from_host(&ranks[0], &[0.0; 4], [1, 4]).unwrap(),
        Tensor::from_host(&ranks[1], &[0.0; 6], [1, 6]).unwrap(),
    ];
    let x = DistTensor::from_locals(&group, uneven, Placement::Shard(1)).unwrap();
    assert!(matches!(row.forward(&x).unwrap_err(), Error::Shape { .. }));
}

#[test]
fn wrong_length_host_slices_and_zero_sized_dimensions() {
    let group = group_or_skip!(2);
    let r = &group.ranks()[0];
    assert!(matches!(
        Tensor::from_host(r, &[1.0; 5], [2, 3]).unwrap_err(),
        Error::Shape { .. }
    ));
    assert!(matches!(
        Tensor::from_host(r, &[], [0, 3]).unwrap_err(),
        Error::Shape { .. }
    ));
    assert!(matches!(
        DistTensor::replicate(&group, &[], [4, 0]).unwrap_err(),
        Error::Shape { .. }
    ));
    assert!(matches!(
        DistTensor::shard(&group, &[1.0; 7], [2, 4], 1).unwrap_err(),
        Error::Shape { .. }
    ));
    let e =
        ColumnParallelLinear::from_full(&group, lin(&[], 0, 4), ColumnParallelConfig::default())
            .unwrap_err();
    assert!(matches!(e, Error::Shape { .. }), "{e:?}");
}

#[test]
fn tp_larger_than_the_split_dimension() {
    let group = group_or_skip!(4);
    let e = ColumnParallelLinear::from_full(
        &group,
        lin(&[0.0; 24], 8, 3),
        ColumnParallelConfig::default(),
    )
    .unwrap_err();
    assert!(matches!(e, Error::InvalidArgument { .. }), "{e:?}");
    assert!(
        e.to_string()
            .contains("tp size 4 is larger than the dimension it splits (3)"),
        "{e}"
    );
    let e =
        RowParallelLinear::from_full(&group, lin(&[0.0; 24], 3, 8), RowParallelConfig::default())
            .unwrap_err();
    assert!(matches!(e, Error::InvalidArgument { .. }), "{e:?}");
    let e = DistTensor::shard(&group, &[0.0; 6], [2, 3], 1).unwrap_err();
    assert!(matches!(e, Error::InvalidArgument { .. }), "{e:?}");
}

#[test]
fn wrong_placement_and_wrong_group() {
    let group = group_or_skip!(2);
    let other = common::fresh_group(2).unwrap();
    let col = ColumnParallelLinear::from_full(
        &group,
        lin(&[0.0; 32], 8, 4),
        ColumnParallelConfig::default(),
    )
    .unwrap();
    let sharded = DistTensor::shard(&group, &[0.0; 16], [2, 8], 1).unwrap();
    assert!(matches!(
        col.forward(&sharded).unwrap_err(),
        Error::Placement { .. }
    ));
    let foreign = DistTensor::replicate(&other, &[0.0; 16], [2, 8]).unwrap();
    assert!(matches!(
        col.forward(&foreign).unwrap_err(),
        Error::GroupMismatch { .. }
    ));
    let replicated = DistTensor::replicate(&group, &[0.0; 16], [2, 8]).unwrap();
    assert!(matches!(
        replicated.all_reduce().unwrap_err(),
        Error::Placement { .. }
    ));
    let foreign_locals = other
        .ranks()
        .iter()
        .map(|r| Tensor::zeros(r, [1, 1]).unwrap())
        .collect();
    let e = DistTensor::from_locals(&group, foreign_locals, Placement::Partial).unwrap_err();
    assert!(matches!(e, Error::GroupMismatch { .. }), "{e:?}");
    let one = vec![Tensor::zeros(&group.ranks()[0], [1, 1]).unwrap()];
    assert!(matches!(
        DistTensor::from_locals(&group, one, Placement::Partial).unwrap_err(),
        Error::Shape { .. }
    ));
    let swapped = group
        .ranks()
        .iter()
        .rev()
        .map(|r| Tensor::zeros(r, [1, 1]).unwrap())
        .collect();
    let e = DistTensor::from_locals(&group, swapped, Placement::Partial).unwrap_err();
    assert!(matches!(e, Error::InvalidArgument { .. }), "{e:?}");
    assert!(matches!(
        replicated.redistribute(Placement::Shard(2)).unwrap_err(),
        Error::InvalidArgument { .. }
    ));
    assert!("swish".parse::<Activation>().is_err());
}

#[test]
fn no_adapter_and_no_ranks() {
    let e = Group::builder()
        .adapter_name("no-such-adapter-anywhere")
        .build()
        .unwrap_err();
    assert!(matches!(e, Error::NoAdapter { .. }), "{e:?}");
    let e = Group::builder()
        .backends(wgpu::Backends::empty())
        .build()
        .unwrap_err();
    assert!(matches!(e, Error::NoAdapter { .. }), "{e:?}");
    let e = Group::builder()
        .ranks_on_one_adapter(0)
        .build()
        .unwrap_err();
    assert!(
        matches!(e, Error::InvalidArgument { .. } | Error::NoAdapter { .. }),
        "{e:?}"
    );
    let e = Group::builder().from_devices(vec![]).build().unwrap_err();
    assert!(matches!(e, Error::InvalidArgument { .. }), "{e:?}");
}

/// A device whose limits pass the adapter's is refused by the adapter: `RequestDevice`,
/// naming the adapter (as in a page: tests/web.rs).
#[test]
fn a_refused_request_device_is_request_device() {
    // Skip locally where there is no adapter at all.
    let Some(_) = build(Group::builder().ranks_on_one_adapter(1), "an adapter") else {
        return;
    };
    let limits = wgpu::Limits {
        max_buffer_size: 1 << 52,
        ..Default::default()
    };
    let e = Group::builder()
        .ranks_on_one_adapter(1)
        .required_limits(limits)
        .build()
        .unwrap_err();
    assert!(
        matches!(&e, Error::RequestDevice { adapter, .. } if !adapter.is_empty()),
        "{e:?}"
    );
}

/// A group whose devices were requested with `limits` (the adapter's, lowered by `f`).
fn lowered(f: impl Fn(&mut wgpu::Limits)) -> Option<Group> {
    let mut limits = wgpu::Limits::downlevel_defaults();
    f(&mut limits);
    build(
        Group::builder()
            .ranks_on_one_adapter(1)
            .required_limits(limits),
        "lowered limits",
    )
}

#[test]
fn buffers_over_the_device_limits() {
    let Some(group) = lowered(|l| {
        l.max_storage_buffer_binding_size = 1024;
        l.max_buffer_size = 1024;
    }) else {
        return;
    };
    let r = &group.ranks()[0];
    assert!(
        Tensor::from_host(r, &[1.0; 256], [16, 16]).is_ok(),
        "exactly at the limit"
    );
    // Over the limit as a whole is fine (bands of rows, tests/chunking.rs); one row
    // over it cannot be split and is refused.
    let t = Tensor::from_host(r, &[2.0; 272], [17, 16]).unwrap();
    assert_eq!(t.to_host().unwrap(), vec![2.0; 272]);
    let e = Tensor::from_host(r, &[1.0; 257], [1, 257]).unwrap_err();
    assert!(
        matches!(
            e,
            Error::BufferTooLarge {
                bytes: 1028,
                limit: 1024,
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn wgpu_validation_errors_are_returned() {
    // The GEMM's 16 x 16 workgroup exceeds a device limited to 64 invocations: wgpu
    // rejects the pipeline, and the error scope turns that into Error::Validation.
    let Some(group) = lowered(|l| {
        l.max_compute_invocations_per_workgroup = 64;
        l.max_compute_workgroup_size_x = 64;
        l.max_compute_workgroup_size_y = 64;
    }) else {
        return;
    };
    let r = &group.ranks()[0];
    let a = Tensor::from_host(r, &[1.0; 4], [2, 2]).unwrap();
    let e = ops::matmul(&a, &a, None, WeightLayout::InOut, Activation::Identity).unwrap_err();
    assert!(
        matches!(
            e,
            Error::Validation {
                op: "matmul",
                rank: 0,
                ..
            }
        ),
        "{e:?}"
    );
    // The device stays usable for what it can do.
    assert_eq!(a.to_host().unwrap(), vec![1.0; 4]);
}

#[test]
fn the_device_collective_refuses_ranks_on_different_devices() {
    // Chosen by hand for ranks that do not share a device, it must say so, not read a
    // buffer of another device.
    let Some(group) = build(
        Group::builder()
            .ranks_on_one_adapter(2)
            .collective(Box::new(wgpu_tp::DeviceCollective)),
        "device collective on two devices",
    ) else {
        return;
    };
    let locals = group
        .ranks()
        .iter()
        .map(|r| Tensor::from_host(r, &[1.0; 4], [1, 4]).unwrap())
        .collect();
    let x = DistTensor::from_locals(&group, locals, Placement::Partial).unwrap();
    let e = x.all_reduce().unwrap_err();
    assert!(
        matches!(
            e,
            Error::InvalidArgument {
                op: "all_reduce",
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn nan_and_inf_inputs_propagate_never_hidden() {
    // Not an error: IEEE values pass through every layer and collective to the output
    // rows they touch, on every rank, and no other row changes.
    for group in common::groups(2) {
        let (batch, hidden, ffn) = (3, 4, 8);
        let w1: Vec<f32> = (0..hidden * ffn).map(|i| 0.1 + i as f32 / 64.0).collect();
        let w2: Vec<f32> = (0..ffn * hidden).map(|i| 0.2 + i as f32 / 64.0).collect();
        let mut x = vec![0.5f32; batch * hidden];
        x[0] = f32::NAN; // row 0
        x[hidden] = f32::INFINITY; // row 1; row 2 stays finite
        let xd = DistTensor::replicate(&group, &x, [batch, hidden]).unwrap();
        for act in [Activation::Identity, Activation::Relu, Activation::GeluErf] {
            let mlp =
                ParallelMlp::from_full(&group, lin(&w1, hidden, ffn), lin(&w2, ffn, hidden), act)
                    .unwrap();
            for (r, y) in mlp
                .forward(&xd)
                .unwrap()
                .to_host_per_rank()
                .unwrap()
                .iter()
                .enumerate()
            {
                let ctx = format!("{act:?} rank {r}");
                assert!(
                    y[..hidden].iter().all(|v| v.is_nan()),
                    "{ctx}: NaN row {y:?}"
                );
                // All weights are positive, so +inf stays +inf through every activation.
                assert!(
                    y[hidden..2 * hidden].iter().all(|&v| v == f32::INFINITY),
                    "{ctx}: {y:?}"
                );
                assert!(
                    y[2 * hidden..].iter().all(|v| v.is_finite()),
                    "{ctx}: {y:?}"
                );
            }
        }
        // A collective alone: a NaN addend makes that element NaN, nothing else.
        let parts = [vec![1.0, f32::NAN, 2.0], vec![f32::NEG_INFINITY, 1.0, 3.0]];
        let y = common::partial(&group, &parts, [1, 3])
            .all_reduce()
            .unwrap()
            .to_host()
            .unwrap();
        assert_eq!(y[0], f32::NEG_INFINITY);
        assert!(y[1].is_nan());
        assert_eq!(y[2], 5.0);
    }
}
