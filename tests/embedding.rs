//! Living next to an app's own wgpu devices: its callbacks are its own unless it hands
//! them over.

mod common;

use wgpu_tp::{wgpu, Error, Group, Tensor};

/// A device made the way an app makes its own, with its own uncaptured-error handler
/// counting what reaches it.
fn app_device() -> Option<(
    wgpu::Device,
    wgpu::Queue,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
)> {
    let (device, queue) = common::device_of_its_own_instance()?;
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = seen.clone();
    device.on_uncaptured_error(std::sync::Arc::new(move |_| {
        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }));
    Some((device, queue, seen))
}

/// An invalid buffer (mapped at creation with a size that is not a multiple of 4),
/// raised by the app outside any call of this crate.
fn app_error(device: &wgpu::Device) -> wgpu::Buffer {
    device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("app's invalid buffer"),
        size: 3,
        usage: wgpu::BufferUsages::MAP_WRITE,
        mapped_at_creation: true,
    })
}

#[test]
fn an_apps_device_callbacks_stay_unless_it_asks_us_to_take_them_over() {
    use std::sync::atomic::Ordering::SeqCst;
    let Some((device, queue, seen)) = app_device() else {
        return;
    };
    let group = Group::builder()
        .from_devices(vec![(device.clone(), queue)])
        .build()
        .unwrap();
    let _bad = app_error(&device);
    assert_eq!(
        seen.load(SeqCst),
        1,
        "the app's handler still gets the app's errors"
    );
    // The group's own calls are unaffected (their errors are scoped, not the app's).
    let r = &group.ranks()[0];
    assert_eq!(
        Tensor::from_host(r, &[2.0; 4], [2, 2])
            .unwrap()
            .to_host()
            .unwrap(),
        vec![2.0; 4]
    );
    assert_eq!(seen.load(SeqCst), 1);

    let Some((device, queue, seen)) = app_device() else {
        return;
    };
    let group = Group::builder()
        .from_devices(vec![(device.clone(), queue)])
        .take_over_device_callbacks()
        .build()
        .unwrap();
    let _bad = app_error(&device);
    assert_eq!(
        seen.load(SeqCst),
        0,
        "taken over: the crate's handler has it"
    );
    let e = Tensor::from_host(&group.ranks()[0], &[2.0; 4], [2, 2]).unwrap_err();
    assert!(matches!(e, Error::Validation { rank: 0, .. }), "{e:?}");
}
