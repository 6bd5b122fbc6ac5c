//! The rule of `svcca::device`: nothing seeds libtorch before the device is resolved
//! (a seed fixes "no CUDA" for the process). The binary enforces it for every command
//! (`require_resolution` first thing in main), so the CLI tests run every command
//! through the guard; this checks the guard itself. One test in its own binary: the
//! guard is process-wide.

use svcca::device::{self, DeviceChoice};

#[test]
fn seeding_before_the_device_is_resolved_is_a_programming_error() {
    device::require_resolution();
    let early = std::panic::catch_unwind(|| device::seed(1));
    let message = early.expect_err("a seed before resolve passed the guard");
    let message = message.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(message.contains("before the device was resolved"), "{message}");
    DeviceChoice::Cpu.resolve().unwrap();
    device::seed(1);
}
