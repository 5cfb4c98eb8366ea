//! What this process has spent: CPU time and peak memory.

/// User + system CPU seconds of this process so far, to the microsecond
/// (`CLOCK_PROCESS_CPUTIME_ID`; `/proc` ticks are too coarse for short runs).
pub fn process_cpu_seconds() -> f64 {
    cpu_time::ProcessTime::try_now()
        .map(|t| t.as_duration().as_secs_f64())
        .unwrap_or(0.0)
}

/// Peak resident memory of this process (`VmHWM`), in KiB.
pub fn peak_rss_kib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}
