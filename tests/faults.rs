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

/// A device destroyed while all-reduces run on it (16 MiB each, several chunks through
/// staging buffers), at six moments into the run: the call in flight and every later one
/// report `DeviceLost` for that rank, never a mapping error of a buffer the destruction
/// took.
#[test]
fn a_device_destroyed_during_an_all_reduce_is_reported_lost() {
    for halves in [1, 3, 4, 5, 7, 9] {
        let Some(group) = common::fresh_group(2) else {
            return;
        };
        let n = 4 << 20;
        let parts: Vec<Tensor> = group
            .ranks()
            .iter()
            .map(|r| Tensor::from_host(r, &vec![1.0f32; n], [1024, n / 1024]).unwrap())
            .collect();
        let x = DistTensor::from_locals(&group, parts, Placement::Partial).unwrap();
        // Two all-reduces first (the second timed), to time the destruction into the
        // middle of the later ones.
        assert!(x.all_reduce().unwrap().locals()[0].to_host().unwrap()[7] == 2.0);
        let start = std::time::Instant::now();
        x.all_reduce().unwrap();
        let one = start.elapsed();
        let rank1 = group.ranks()[1].clone();
        let destroyer = std::thread::spawn(move || {
            std::thread::sleep(one * halves / 2);
            rank1.device().destroy();
        });
        // Until the device is gone, and two calls more (at most 200 in all).
        let (mut errors, mut after) = (Vec::new(), 0);
        for _ in 0..200 {
            if let Err(e) = x.all_reduce() {
                errors.push(e);
            }
            if destroyer.is_finished() {
                after += 1;
                if after > 2 {
                    break;
                }
            }
        }
        destroyer.join().unwrap();
        assert!(!errors.is_empty(), "no all-reduce saw the destruction");
        for e in &errors {
            assert!(
                matches!(e, Error::DeviceLost { rank: 1, .. }),
                "destroyed after {halves} half all-reduces: {e:?}"
            );
        }
    }
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
