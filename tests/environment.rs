//! What the process environment selects (its own test binary: it sets variables that
//! every group built in the same process would read).

mod common;

use wgpu_tp::{Error, Group};

#[test]
fn a_wgpu_backend_that_does_not_parse_is_said_so() {
    std::env::set_var("WGPU_BACKEND", "nonsense");
    let e = Group::builder().build().unwrap_err();
    std::env::remove_var("WGPU_BACKEND");
    assert!(
        matches!(&e, Error::InvalidArgument { message, .. } if message.contains("\"nonsense\"") && message.contains("vulkan")),
        "{e:?}"
    );
    assert!(!e.to_string().contains("Backends("), "{e}");
}
