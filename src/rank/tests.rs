//! Waits past the group's timeout.

use std::time::{Duration, Instant};

use super::{block_on, signal};
use crate::{Error, Group};

#[test]
fn a_wait_past_the_timeout_is_a_timeout_error_naming_the_rank_and_the_limit() {
    // CI's adapters finish work inside submit, so no real GPU wait runs late there; a
    // callback that never comes (a hung GPU, a lost driver) stands in for one.
    let limit = Duration::from_millis(50);
    let group = match Group::builder()
        .ranks_on_one_adapter(2)
        .timeout(limit)
        .build()
    {
        Ok(g) => g,
        Err(Error::NoAdapter { .. }) if std::env::var("CI").is_err() => return,
        Err(e) => panic!("{e}"),
    };
    let r = &group.ranks()[1];
    assert_eq!(r.timeout(), limit);
    let (_never, rx) = signal::<()>();
    let start = Instant::now();
    let e = block_on(rx.wait("wait", r, None));
    assert!(
        matches!(e, Err(Error::Timeout { op: "wait", rank: 1, after }) if after == limit),
        "{e:?}"
    );
    assert!(start.elapsed() >= limit);
    // A callback that does come resolves the same wait.
    let (tx, rx) = signal::<u32>();
    tx.send(7);
    assert_eq!(block_on(rx.wait("wait", r, None)).unwrap(), 7);
    r.wait_idle().unwrap();
}
