//! CPU time of processes, threads and CPUs from `/proc`, for the benchmarks' figures.

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

/// Busy and total clock ticks of CPU `cpu` so far, from `/proc/stat` (busy: everything but
/// idle and iowait, kernel work for other processes included); zero when it cannot be read.
pub fn cpu_busy(cpu: usize) -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let prefix = format!("cpu{cpu} ");
    let values: Vec<f64> = stat
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map(|l| {
            l.split_whitespace()
                .filter_map(|v| v.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    let total: f64 = values.iter().sum();
    let idle = values.get(3).copied().unwrap_or(0.0) + values.get(4).copied().unwrap_or(0.0);
    (total - idle, total)
}

/// Clock ticks of `/proc`'s times (`USER_HZ`, 100 on Linux whatever the kernel's HZ).
const USER_HZ: f64 = 100.0;
