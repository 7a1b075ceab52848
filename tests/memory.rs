//! Host memory: uploads do not keep a second copy of what they upload (one test, alone in
//! its binary, since it reads the whole process's resident set).

mod common;

use wgpu_tp::Tensor;

/// The process's resident set in bytes (Linux), or None elsewhere.
fn rss() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

#[test]
fn uploads_do_not_hold_their_staging_memory() {
    let group = group_or_skip!(1);
    let Some(start) = rss() else {
        return;
    };
    let r = &group.ranks()[0];
    let data = vec![1.5f32; 2 << 20]; // 8 MiB
    let bytes = (data.len() * 4) as u64;
    // 100 uploads with no kernel in between, each dropped (its buffer is reused by the
    // next): before the fix each kept an 8 MiB staging copy until the next submission,
    // 800 MiB in all.
    for _ in 0..100 {
        drop(Tensor::from_host(r, &data, [2048, 1024]).unwrap());
    }
    let grown = rss().unwrap().saturating_sub(start);
    // One tensor's buffer (on lavapipe device memory is host memory) and a few staging
    // copies in flight at most: well under 16 of the 100 uploads.
    assert!(
        grown < 16 * bytes,
        "100 dropped uploads grew RSS by {} MiB",
        grown >> 20
    );
    // 20 weight matrices kept: they cost their size once (device memory), not twice.
    let before = rss().unwrap();
    let kept: Vec<Tensor> = (0..20)
        .map(|_| Tensor::from_host(r, &data, [2048, 1024]).unwrap())
        .collect();
    let grown = rss().unwrap().saturating_sub(before);
    assert!(
        grown < 20 * bytes + 20 * bytes / 4,
        "20 kept uploads of 8 MiB grew RSS by {} MiB",
        grown >> 20
    );
    assert_eq!(kept[19].to_host().unwrap()[7], 1.5);
}
