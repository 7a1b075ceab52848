//! Faults: a lost device and wgpu errors raised outside this crate's error scopes end in
//! an `Error`, never a hang or a panic. (Waits past the timeout: lavapipe and llvmpipe
//! finish a submission inside `submit`, so no wait can run late there; the mapping of a
//! timed-out poll to `Error::Timeout` is unit-tested in `src/rank.rs`.)

mod common;

use wgpu_tp::{wgpu, DistTensor, Error, Placement, Tensor};

#[test]
fn a_destroyed_device_is_reported_lost_on_the_next_call() {
    let Some(group) = common::fresh_group(2) else {
        return;
    };
    let x = DistTensor::replicate(&group, &[1.0; 4], [2, 2]).unwrap();
    group.ranks()[1].device().destroy();
    let lost = |e: &Error| matches!(e, Error::DeviceLost { rank: 1, .. });
    let e = x
        .redistribute(Placement::Partial)
        .and_then(|p| p.all_reduce())
        .unwrap_err();
    assert!(lost(&e), "first call after destroy: {e:?}");
    // And on every call after it, whatever the call.
    let e = Tensor::from_host(&group.ranks()[1], &[1.0; 4], [2, 2]).err();
    assert!(e.as_ref().is_some_and(lost), "upload: {e:?}");
    let e = x.to_host_per_rank().err();
    assert!(e.as_ref().is_some_and(lost), "read-back: {e:?}");
    // The other rank is unaffected.
    assert_eq!(x.locals()[0].to_host().unwrap(), vec![1.0; 4]);
}

#[test]
fn wgpu_errors_outside_our_scopes_become_errors_not_panics() {
    // An app using a rank's device directly makes an invalid buffer (mapped at creation
    // with a size that is not a multiple of 4). wgpu's default handler would panic; the
    // rank's handler keeps it, and the next call on that rank returns it.
    let Some(group) = common::fresh_group(1) else {
        return;
    };
    let r = &group.ranks()[0];
    let _bad = r.device().create_buffer(&wgpu::BufferDescriptor {
        label: Some("app's invalid buffer"),
        size: 3,
        usage: wgpu::BufferUsages::MAP_WRITE,
        mapped_at_creation: true,
    });
    let e = Tensor::from_host(r, &[1.0; 4], [2, 2]).err();
    assert!(
        matches!(e, Some(Error::Validation { rank: 0, .. })),
        "{e:?}"
    );
    // Reported once; the rank works again afterwards.
    assert_eq!(
        Tensor::from_host(r, &[1.0; 4], [2, 2])
            .unwrap()
            .to_host()
            .unwrap(),
        vec![1.0; 4]
    );
}
