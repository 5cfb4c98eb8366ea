//! Resource use of the processes a test starts, read from `/proc`.

use std::process::Child;

/// `VmHWM` (peak RSS) of a live process, in KiB; `None` once it has exited
/// (or off Linux), so a sampler can skip it.
pub fn peak_rss_kib_of(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
}

/// [`peak_rss_kib_of`] a child this test spawned.
pub fn peak_rss_kib(child: &Child) -> Option<u64> {
    peak_rss_kib_of(child.id())
}
