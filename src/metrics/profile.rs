//! CPU profiles of the whole process (every shard), like Go's pprof: a sampling profiler
//! (SIGPROF, 99 Hz) runs for N seconds while the shards keep serving, then the samples are
//! returned as a flamegraph SVG or as a pprof protobuf (`go tool pprof`, speedscope, ...).

use std::time::Duration;

/// Sampling frequency, Hz (not a multiple of common timer frequencies).
const FREQUENCY: i32 = 99;
/// The flamegraph of a profile without samples.
const NO_SAMPLES_SVG: &str = "<?xml version=\"1.0\" standalone=\"no\"?>\n\
<svg version=\"1.1\" width=\"600\" height=\"40\" xmlns=\"http://www.w3.org/2000/svg\">\
<text x=\"10\" y=\"25\">No CPU samples: the process was idle during the profile.</text></svg>\n";

/// Longest profile accepted, seconds.
pub const MAX_SECONDS: u64 = 60;

/// Output of a profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProfileFormat {
    /// Flamegraph, SVG.
    Flamegraph,
    /// pprof protobuf (uncompressed `profile.proto`).
    Pprof,
}

/// Why no profile was taken.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// Another profile is running (the profiler is process-wide).
    #[error("a profile is already running: {0}")]
    Busy(String),
    /// The samples could not be turned into a report.
    #[error("cannot build the profile: {0}")]
    Report(String),
}

/// Profiles the process for `seconds` (clamped to 1..=[`MAX_SECONDS`]). Awaits a glommio
/// timer meanwhile, so the calling shard keeps serving.
pub async fn capture(seconds: u64, format: ProfileFormat) -> Result<Vec<u8>, ProfileError> {
    let guard = pprof::ProfilerGuardBuilder::default()
        .frequency(FREQUENCY)
        .blocklist(&["libc", "libgcc", "pthread", "vdso"])
        .build()
        .map_err(|e| ProfileError::Busy(e.to_string()))?;
    glommio::timer::sleep(Duration::from_secs(seconds.clamp(1, MAX_SECONDS))).await;
    let report = guard
        .report()
        .build()
        .map_err(|e| ProfileError::Report(e.to_string()))?;
    drop(guard);
    let mut out = Vec::new();
    match format {
        ProfileFormat::Flamegraph => {
            report
                .flamegraph(&mut out)
                .map_err(|e| ProfileError::Report(e.to_string()))?;
            if out.is_empty() {
                // SIGPROF counts CPU time: an idle process yields no samples.
                out = NO_SAMPLES_SVG.as_bytes().to_vec();
            }
        }
        ProfileFormat::Pprof => {
            use pprof::protos::Message;
            let profile = report
                .pprof()
                .map_err(|e| ProfileError::Report(e.to_string()))?;
            profile
                .encode(&mut out)
                .map_err(|e| ProfileError::Report(e.to_string()))?;
        }
    }
    Ok(out)
}
