"""Side-by-side live fan-out benchmark: corecast against nginx with the RTMP module.

Both servers run on the same machine in the same run. Each point starts a fresh server,
pinned to one CPU (--server-cpu, default 0), and runs the load generator
(`corecast-load run`, a scenario written by this script) pinned to another
(--generator-cpu, default 1). The generator publishes one stream from an FLV file in
real time and opens N viewers of it (RTMP, or HTTP-FLV for corecast), 20 of them probes
that parse the stream and read the publisher's SEI send-time stamps.

What it measures, for every point (server, protocol, source, viewers):

- server CPU: utime + stime of the server process (corecast: the whole process; nginx:
  the worker) from /proc/PID/stat, over the viewers' run; and the busy time of the server's
  CPU from /proc/stat (user + nice + system + irq + softirq + steal), which also catches
  kernel work done there outside the process's account. Both as CPU-seconds per delivered
  GB (bytes counted by the viewers, 1 GB = 1e9 bytes) and as % of one core;
- from the generator's JSON summary: viewers connected, failed and ended early; the
  delivery windows (every viewer must receive 98% of the published bytes in every 10 s
  window: worst share, windows behind); the slowest viewer; the probes' end-to-end latency
  (p50, p99, p99.9, max), startup time, stalls and skipped-frame gaps; the generator's
  own CPU (mean and busiest second, in cores);
- server memory per viewer: (VmRSS with all viewers, sampled at 80% of the run) minus
  (VmRSS with the publisher alone, sampled at the end of a publisher-only warm-up that is
  longer than corecast's 10 s ring), divided by the viewers. corecast: the process;
  nginx: the worker (the master does not grow with viewers; it is recorded separately).

Parts (--only a,b,c,d,e,f):

  a  RTMP fan-out of the ~2.6 Mbit/s 720p source (target/bench/720p.flv, generated once
     with ffmpeg) at 500, 1000, 2000 and 4000 viewers, both servers, plus corecast HTTP-FLV.
  b  RTMP fan-out of the 268 kbit/s clip (tests/fixtures/clip.flv) at 5000, 10000 and 19000
     viewers, capped by the open-file limit (hard limit minus 200), plus corecast
     HTTP-FLV.
  c  The most viewers of the 720p source before any viewer falls behind real time:
     doubling from 500, then bisection to 10%. A run is healthy iff no viewer failed or
     ended early, no delivery window was behind, the probes' p99 latency < 500 ms in
     every second from 2.5 s on (leaving out the GOP-cache burst at join), and the
     generator's busiest second < 95% of its core, and so its CPU's (otherwise the
     limit found is the generator's, and the table says so). Then one run at 120% of the
     maximum. Runs of part a are reused as steps of the search.
  d  Join storm: 1000 viewers of the 720p source joining at 1000/s, 100 of them probes:
     startup time (request to first keyframe) p50 and p99.
  e  HLS players of the 720p source at 500, 1000 and 2000 players (starting three
     segments back): corecast's HLS from memory against nginx-rtmp's own (`hls on`, 2 s
     fragments, a 12 s playlist, written to disk under the temporary directory and served
     by nginx's HTTP server with sendfile from the page cache, in the same worker).
  f  Many channels: 200 synthetic streams of 1 Mbit/s, 1,000 of 250 kbit/s and 50 of
     4 Mbit/s (25 fps, 2 s GOP), published at once: the server's RSS and CPU per stream with the
     publishers alone, then with 400 RTMP players of one stream; and the same with one HLS
     player on every stream (nginx-rtmp: `hls on`, written to a tmpfs, served by its HTTP
     server).

Output: a progress line per point on stderr; Markdown tables (one per part, machine facts
first) on stdout, ready for docs/BENCHMARKS.md; every raw figure (generator summaries
included) in target/bench/compare-<UTC timestamp>.json.

How to run (from anywhere; paths are relative to the repository):

    python3 loadtest/compare.py                  # everything, about 30 minutes
    python3 loadtest/compare.py --quick          # smoke test, about 7 minutes
    python3 loadtest/compare.py --dry-run        # the plan and its estimate only
    python3 loadtest/compare.py --only a,d --servers corecast,nginx --duration 20

It builds the release binaries first (`cargo build --release -p corecast -p
corecast-load`; --no-build skips that). It needs a machine with two or more CPUs, Linux,
Python 3.9+, and nginx, libnginx-mod-rtmp and ffmpeg (on Debian: `sudo apt-get install -y
nginx libnginx-mod-rtmp ffmpeg`); it checks and prints that command instead of installing
anything. Nothing else may run on the two CPUs it uses: the figures are CPU time.

Every child process is stopped on exit, Ctrl-C included. A server that cannot start is a
fatal error (exit status 1); a server that exits during a run is recorded as such, and
the script ends with exit status 3 after writing its results.

The program is this package; `loadtest/compare.py` is its entry (`python3 -m comparison`
from loadtest/ runs it too). One module per job:

  common     paths, fixed settings and thresholds; Fatal, log, run_text
  procfs     /proc readings: CPU ticks, memory, affinities, child processes
  children   child processes (all stopped on exit), free ports, log tails
  servers    corecast and its variants (-fixed, -ll, -uring) and nginx: configuration,
             start, counters, stop
  context    the command line and the settings that follow from it
  preflight  machine and tool checks, release build, sources, machine facts
  point      one run of the generator against a fresh server, and its verdict
  parts      parts a-e, the plan and its time estimate
  channels   part f: many channels
  markdown   the tables printed at the end
  main       the run as a whole: parts, raw JSON, tables, exit status
"""
