//! CPU time from `/proc`, for the benchmarks' figures.

use std::path::Path;

/// User and system CPU seconds of the process or thread whose `stat` file is `stat`
/// (`/proc/PID/stat`, `/proc/self/task/TID/stat`); zero when it cannot be read.
pub fn cpu_seconds(stat: &Path) -> (f64, f64) {
    let text = std::fs::read_to_string(stat).unwrap_or_default();
    // The fields after the command, which may hold spaces and ends at the last ')':
    // utime and stime are the 12th and 13th from the state on.
    let fields: Vec<&str> = text
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let seconds = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
            / USER_HZ
    };
    (seconds(11), seconds(12))
}

/// Clock ticks of `/proc`'s times (`USER_HZ`, 100 on Linux whatever the kernel's HZ).
const USER_HZ: f64 = 100.0;
