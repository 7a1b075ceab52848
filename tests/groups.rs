//! Groups made every way: devices an app already owns, ranks spread over all adapters.

mod common;

use common::in_ci;
use wgpu_tp::reference::Rng;
use wgpu_tp::{
    wgpu, ColumnParallelConfig, ColumnParallelLinear, DistTensor, Group, HostLinear, WeightLayout,
};

/// wgpu-hal's GL backend fails `eglMakeCurrent` with BadAccess when two threads drive GL
/// devices at once, so the tests that may touch a GL adapter take turns.
static GL_TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A column-parallel layer on `group` gives the reference answer.
fn check_group(group: &Group, ctx: &str) {
    let (batch, inf, outf) = (3, 10, 9);
    let mut rng = Rng::new(4);
    let w = rng.xavier(inf * outf, inf, outf);
    let x = rng.normal(batch * inf);
    let full = HostLinear::new(&w, inf, outf, WeightLayout::InOut);
    let layer =
        ColumnParallelLinear::from_full(group, full, ColumnParallelConfig::default()).unwrap();
    let y = layer
        .forward(&DistTensor::replicate(group, &x, [batch, inf]).unwrap())
        .unwrap();
    let want = common::reference_linear(&x, [batch, inf], &w, outf, None);
    common::assert_every_rank_within(&want, &y, ctx);
}

#[test]
fn from_devices_an_application_owns() {
    let _turn = GL_TURN.lock().unwrap_or_else(|e| e.into_inner());
    let instance =
        wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let mut devices = Vec::new();
    for _ in 0..3 {
        let adapter = match pollster::block_on(
            instance.request_adapter(&wgpu::RequestAdapterOptions::default()),
        ) {
            Ok(a) => a,
            Err(e) => {
                assert!(!in_ci(), "CI needs an adapter: {e}");
                return;
            }
        };
        devices.push(
            pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor::default())).unwrap(),
        );
    }
    let group = Group::builder().from_devices(devices).build().unwrap();
    assert_eq!(group.world_size(), 3);
    check_group(&group, "from_devices");
}

#[test]
fn spread_over_every_adapter() {
    let _turn = GL_TURN.lock().unwrap_or_else(|e| e.into_inner());
    let Some(group) = common::build(
        Group::builder()
            .backends(wgpu::Backends::all())
            .spread_over_adapters(3),
        "spread",
    ) else {
        return;
    };
    assert_eq!(group.world_size(), 3);
    check_group(&group, "spread");
    let Some(per) = common::build(
        Group::builder()
            .backends(wgpu::Backends::all())
            .one_rank_per_adapter(),
        "per adapter",
    ) else {
        return;
    };
    // Rank r of the spread group sits on adapter r % adapters.
    let n = per.world_size();
    for (r, rank) in group.ranks().iter().enumerate() {
        let want = per.ranks()[r % n].adapter_info();
        assert_eq!(rank.adapter_info().backend, want.backend, "rank {r}");
    }
}

#[test]
fn groups_ranks_tensors_and_layers_may_cross_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Group>();
    send_sync::<wgpu_tp::Rank>();
    send_sync::<wgpu_tp::Tensor>();
    send_sync::<DistTensor>();
    send_sync::<ColumnParallelLinear>();
    send_sync::<wgpu_tp::ParallelMlp>();
    send_sync::<wgpu_tp::Error>();
}
