// SPDX-License-Identifier: GPL-2.0-or-later
//! Benchmark: our `qemu-pr-helper` against Debian's C helper
//! (`/usr/bin/qemu-pr-helper`, when installed) and against a minimal
//! Unix-socket server in this file (the floor), all measured in one run.
//!
//! `BENCH_OURS=PATH` measures that binary of ours instead of the one cargo
//! builds for the bench (which is larger: see `main`).
//!
//! `cargo bench --bench helper_bench` prints one table and draws
//! `docs/idle-latency.svg` (p50 and p99 against the number of idle
//! connections). `-- --quick`, or `BENCH_QUICK=1`, is a smoke run of a few
//! seconds that draws its chart under `target/` instead.
//!
//! Every comparison takes turns: the contenders answer one round trip (or
//! one throughput window) each, in rotation, so that all see the same
//! machine load; this is repeated in rounds, and each figure is printed as
//! the median over the rounds with the range `[lowest-highest]`. A goal is
//! "met" only when the whole range meets it, "MISSED" when none of it does,
//! and "not decided" otherwise.
//!
//! Without a SCSI device both helpers get a regular file as the device fd:
//! ours serves the emulated device when `--emulate` is available (otherwise
//! it answers CHECK CONDITION without an ioctl), the C helper runs SG_IO,
//! which fails with ENOTTY, and answers CHECK CONDITION. Both then measure
//! the helper's own overhead: the socket, the fd passing, the framing and
//! the dispatch.

use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};
use qemu_pr_helper::adapters::idle_connections::TRIM_AFTER;

/// How the tests start a helper: the same command line and open-file limit.
#[path = "../tests/common/spawn.rs"]
#[allow(dead_code)]
mod spawn;

const C_HELPER: &str = "/usr/bin/qemu-pr-helper";
/// PERSISTENT RESERVE IN, READ KEYS, allocation length 256.
const READ_KEYS: [u8; 16] = [0x5e, 0, 0, 0, 0, 0, 0, 0x01, 0x00, 0, 0, 0, 0, 0, 0, 0];
const REPLY_HEADER: usize = 104;
/// How long a helper may take to negotiate: the C helper polls every
/// connection on each wake-up, so with thousands open it is slow.
const PATIENCE: Duration = Duration::from_secs(60);

/// How much to measure.
struct Plan {
    /// Rounds of every comparison: the spread is over these.
    rounds: usize,
    /// Round trips per contender per round.
    samples: usize,
    /// Idle connections at which latency is measured (the chart's x axis).
    idle_levels: Vec<usize>,
    clients: Vec<usize>,
    window: Duration,
    warmup: Duration,
    startup_runs: usize,
    nofile_probe: usize,
    chart: PathBuf,
}

impl Plan {
    fn new(quick: bool) -> Plan {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        if quick {
            Plan {
                rounds: 3,
                samples: 150,
                idle_levels: vec![0, 100, 1000],
                clients: vec![1, 8],
                window: Duration::from_millis(150),
                warmup: Duration::from_millis(30),
                startup_runs: 3,
                nofile_probe: 0,
                chart: root.join("target/helper_bench/idle-latency-quick.svg"),
            }
        } else {
            Plan {
                rounds: 7,
                samples: 1000,
                idle_levels: vec![0, 1000, 2500, 5000, 10_000],
                clients: vec![1, 8, 64, 512],
                window: Duration::from_millis(500),
                warmup: Duration::from_millis(100),
                startup_runs: 11,
                nofile_probe: 1500,
                chart: root.join("docs/idle-latency.svg"),
            }
        }
    }

    fn top_idle(&self) -> usize {
        self.idle_levels.iter().copied().max().unwrap_or(0)
    }
}

/// A helper process on a socket in its own temporary directory.
struct Daemon {
    child: Child,
    _dir: tempfile::TempDir,
    socket: PathBuf,
}

impl Daemon {
    /// Spawns the helper; `nofile_soft` lowers its soft RLIMIT_NOFILE at exec,
    /// as a service manager that leaves the usual 1024 would.
    fn spawn(binary: &Path, extra: &[&str], nofile_soft: Option<u64>) -> io::Result<Daemon> {
        let dir = tempfile::tempdir()?;
        let socket = dir.path().join("pr.sock");
        let mut cmd = spawn::helper_command(binary, &socket, extra);
        cmd.stderr(Stdio::null());
        // SAFETY: the closure runs in the forked child before exec and only
        // calls prctl, which is async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                // The helper dies with the bench (all spawns are from main).
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        if let Some(soft) = nofile_soft {
            spawn::start_with_nofile_soft(&mut cmd, soft);
        }
        let child = cmd.spawn()?;
        Ok(Daemon {
            child,
            _dir: dir,
            socket,
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Polls `connect` until the socket accepts; `None` if the process exits
    /// or `limit` passes first.
    fn wait_accepting(&mut self, limit: Duration) -> Option<Duration> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if UnixStream::connect(&self.socket).is_ok() {
                return Some(start.elapsed());
            }
            if let Ok(Some(_)) = self.child.try_wait() {
                return None;
            }
            std::thread::sleep(Duration::from_micros(100));
        }
        None
    }

    /// Waits until the helper holds fewer than `n` fds.
    fn wait_fds_below(&self, n: usize, limit: Duration) {
        let start = Instant::now();
        while start.elapsed() < limit {
            let open =
                std::fs::read_dir(format!("/proc/{}/fd", self.pid())).map_or(0, |d| d.count());
            if open < n {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// VmRSS in KiB.
    fn rss_kib(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    /// utime + stime of the whole process, in seconds.
    fn cpu_seconds(&self) -> f64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap_or_default();
        // Fields after the command name (which may contain spaces).
        let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let f: Vec<&str> = rest.split_whitespace().collect();
        // rest[0] is field 3 (state); utime and stime are fields 14 and 15.
        let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        (ticks(11) + ticks(12)) as f64 / hz
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Connects and does the features handshake (reads the server's word, answers 0).
/// `patience` bounds the wait for the server's word.
fn connect_negotiated(path: &Path, patience: Duration) -> io::Result<UnixStream> {
    let mut s = UnixStream::connect(path)?;
    s.set_read_timeout(Some(patience))?;
    let mut f = [0u8; 4];
    s.read_exact(&mut f)?;
    s.write_all(&[0; 4])?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    Ok(s)
}

/// One READ KEYS round trip on a blocking stream: the CDB with `fd`, then the
/// 104-byte header and any payload.
fn round_trip(s: &mut UnixStream, fd: RawFd, buf: &mut [u8]) -> io::Result<()> {
    let iov = [IoSlice::new(&READ_KEYS)];
    let fds = [fd];
    let n = sendmsg::<()>(
        s.as_raw_fd(),
        &iov,
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )?;
    if n != READ_KEYS.len() {
        return Err(io::Error::other("short sendmsg"));
    }
    s.read_exact(&mut buf[..REPLY_HEADER])?;
    let len = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]) as usize;
    if len > 0 {
        s.read_exact(&mut buf[REPLY_HEADER..REPLY_HEADER + len])?;
    }
    Ok(())
}

/// Latency percentiles in microseconds.
#[derive(Clone, Copy, Debug)]
struct Latency {
    p50: f64,
    p99: f64,
}

/// A figure over the rounds: median, lowest and highest.
#[derive(Clone, Copy, Debug)]
struct Spread {
    median: f64,
    lo: f64,
    hi: f64,
}

impl Spread {
    fn of(values: &[f64]) -> Spread {
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        if v.is_empty() {
            return Spread {
                median: f64::NAN,
                lo: f64::NAN,
                hi: f64::NAN,
            };
        }
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Spread {
            median,
            lo: v[0],
            hi: v[n - 1],
        }
    }

    /// `median [lo-hi]` with `decimals` digits and a unit.
    fn show(&self, decimals: usize, unit: &str) -> String {
        format!(
            "{:.d$}{unit} [{:.d$}-{:.d$}]",
            self.median,
            self.lo,
            self.hi,
            d = decimals
        )
    }
}

/// A goal for a figure.
#[derive(Clone, Copy)]
enum Goal {
    AtMost(f64),
    AtLeast(f64),
}

impl Goal {
    /// Met only if every round meets it; missed if none does.
    fn verdict(self, s: &Spread) -> &'static str {
        let (all, none) = match self {
            Goal::AtMost(t) => (s.hi <= t, s.lo > t),
            Goal::AtLeast(t) => (s.lo >= t, s.hi < t),
        };
        if all {
            "met"
        } else if none {
            "MISSED"
        } else {
            "not decided"
        }
    }

    fn text(self, what: &str) -> String {
        match self {
            Goal::AtMost(t) => format!("{what} <= {t}"),
            Goal::AtLeast(t) => format!("{what} >= {t}"),
        }
    }
}

fn percentiles(mut t: Vec<f64>) -> Latency {
    t.sort_by(f64::total_cmp);
    let at = |q: f64| t[((t.len() as f64 * q) as usize).min(t.len() - 1)];
    Latency {
        p50: at(0.50),
        p99: at(0.99),
    }
}

/// `rounds` rounds of `samples` round trips on each of `conns`, taking turns
/// one round trip at a time, after a warm-up. Returns, per connection, the
/// percentiles of each round.
fn latency_rounds(
    conns: &mut [UnixStream],
    fd: RawFd,
    rounds: usize,
    samples: usize,
) -> Vec<Vec<Latency>> {
    let mut buf = vec![0u8; REPLY_HEADER + 8192];
    for _ in 0..(samples / 10).max(20) {
        for s in conns.iter_mut() {
            round_trip(s, fd, &mut buf).expect("warm-up round trip");
        }
    }
    let mut out = vec![Vec::with_capacity(rounds); conns.len()];
    for _ in 0..rounds {
        let mut times = vec![Vec::with_capacity(samples); conns.len()];
        for _ in 0..samples {
            for (s, t) in conns.iter_mut().zip(&mut times) {
                let at = Instant::now();
                round_trip(s, fd, &mut buf).expect("round trip");
                t.push(at.elapsed().as_secs_f64() * 1e6);
            }
        }
        for (o, t) in out.iter_mut().zip(times) {
            o.push(percentiles(t));
        }
    }
    out
}

/// Per-round ratios `a / b` of one percentile.
fn ratios(a: &[Latency], b: &[Latency], q: fn(&Latency) -> f64) -> Vec<f64> {
    a.iter().zip(b).map(|(x, y)| q(x) / q(y)).collect()
}

fn p50(l: &Latency) -> f64 {
    l.p50
}

fn p99(l: &Latency) -> f64 {
    l.p99
}

/// A helper under test: a name, its binary and its arguments.
#[derive(Clone)]
struct Contender {
    name: &'static str,
    binary: PathBuf,
    args: Vec<&'static str>,
}

impl Contender {
    fn spawn(&self, nofile_soft: Option<u64>) -> Daemon {
        let args: Vec<&str> = self.args.to_vec();
        let mut d = Daemon::spawn(&self.binary, &args, nofile_soft)
            .unwrap_or_else(|e| panic!("spawn {}: {e}", self.name));
        d.wait_accepting(Duration::from_secs(10))
            .unwrap_or_else(|| panic!("{} did not start", self.name));
        d
    }
}

/// One helper across the idle levels.
struct IdleSweep {
    /// Per level: p50 and p99 with `level` idle connections.
    p50: Vec<Spread>,
    p99: Vec<Spread>,
    /// Per level: p50 with `level` idle over p50 of a twin with none, per round.
    growth: Vec<Spread>,
    /// Per level above 0: RSS growth per idle connection, bytes.
    rss_per_idle: Vec<(usize, f64)>,
}

/// Latency with growing numbers of idle negotiated connections. Each helper
/// runs twice: a "loaded" daemon that holds the idle connections and a
/// "base" twin that holds none, and every round trip to one is followed by
/// one to the other, so their ratio is taken under the same load.
fn idle_sweep(helpers: &[Contender], fd: RawFd, plan: &Plan) -> Vec<IdleSweep> {
    let loaded: Vec<Daemon> = helpers.iter().map(|h| h.spawn(None)).collect();
    let base: Vec<Daemon> = helpers.iter().map(|h| h.spawn(None)).collect();
    let mut conns: Vec<UnixStream> = loaded
        .iter()
        .chain(&base)
        .map(|d| connect_negotiated(&d.socket, PATIENCE).expect("connect for latency"))
        .collect();
    let mut idle: Vec<Vec<UnixStream>> = helpers.iter().map(|_| Vec::new()).collect();
    let mut out: Vec<IdleSweep> = helpers
        .iter()
        .map(|_| IdleSweep {
            p50: Vec::new(),
            p99: Vec::new(),
            growth: Vec::new(),
            rss_per_idle: Vec::new(),
        })
        .collect();
    let mut rss_at_zero = vec![0u64; helpers.len()];
    for &level in &plan.idle_levels {
        for (h, held) in idle.iter_mut().enumerate() {
            eprintln!("  {}: {level} idle connections", helpers[h].name);
            while held.len() < level {
                held.push(
                    connect_negotiated(&loaded[h].socket, PATIENCE).expect("idle connection"),
                );
            }
        }
        // Ours parks a connection right after negotiation and returns the
        // memory its task freed TRIM_AFTER later: RSS is read after that.
        std::thread::sleep(TRIM_AFTER + Duration::from_millis(500));
        let rounds = latency_rounds(&mut conns, fd, plan.rounds, plan.samples);
        let n = helpers.len();
        for h in 0..n {
            let (l, b) = (&rounds[h], &rounds[n + h]);
            out[h]
                .p50
                .push(Spread::of(&l.iter().map(p50).collect::<Vec<_>>()));
            out[h]
                .p99
                .push(Spread::of(&l.iter().map(p99).collect::<Vec<_>>()));
            out[h].growth.push(Spread::of(&ratios(l, b, p50)));
            let rss = loaded[h].rss_kib();
            if level == 0 {
                rss_at_zero[h] = rss;
            } else {
                let grown = rss.saturating_sub(rss_at_zero[h]) as f64 * 1024.0;
                out[h].rss_per_idle.push((level, grown / level as f64));
            }
        }
    }
    out
}

/// Ours, the floor and the C helper (if any), fresh, no idle connections,
/// taking turns: per contender, the percentiles of each round.
fn side_by_side(helpers: &[Contender], fd: RawFd, plan: &Plan) -> Vec<Vec<Latency>> {
    let dir = tempfile::tempdir().expect("tempdir");
    let floor = dir.path().join("floor.sock");
    start_floor(&floor).expect("floor server");
    let daemons: Vec<Daemon> = helpers.iter().map(|h| h.spawn(None)).collect();
    let mut conns: Vec<UnixStream> = daemons
        .iter()
        .map(|d| d.socket.as_path())
        .chain([floor.as_path()])
        .map(|p| connect_negotiated(p, PATIENCE).expect("connect for latency"))
        .collect();
    latency_rounds(&mut conns, fd, plan.rounds, plan.samples)
}

/// Per helper: spawn to accepting (ms) and VmRSS right after (KiB), one
/// start per round, the helpers taking turns.
fn startups(helpers: &[Contender], plan: &Plan) -> Vec<(Vec<f64>, Vec<f64>)> {
    let mut out = vec![(Vec::new(), Vec::new()); helpers.len()];
    for _ in 0..plan.startup_runs {
        for (h, c) in helpers.iter().enumerate() {
            // From before the fork: the child may reach its listening
            // socket before `spawn` returns to a descheduled parent.
            let at = Instant::now();
            let mut d = Daemon::spawn(&c.binary, &c.args, None).expect("spawn helper");
            d.wait_accepting(Duration::from_secs(10))
                .expect("helper did not start");
            let t = at.elapsed();
            std::thread::sleep(Duration::from_millis(50));
            out[h].0.push(t.as_secs_f64() * 1e3);
            out[h].1.push(d.rss_kib() as f64);
        }
    }
    out
}

/// One throughput figure over the rounds, per helper: commands per second
/// and daemon CPU per command; and per round, ours over the other.
struct ThroughputRounds {
    per_sec: Vec<Vec<f64>>,
    cpu_us: Vec<Vec<f64>>,
}

/// Throughput with `clients` connections, the helpers taking turns window by
/// window (the order alternates from round to round).
fn throughput_rounds(
    daemons: &[Daemon],
    fd: RawFd,
    clients: usize,
    plan: &Plan,
) -> ThroughputRounds {
    let n = daemons.len();
    let mut r = ThroughputRounds {
        per_sec: vec![Vec::new(); n],
        cpu_us: vec![Vec::new(); n],
    };
    for round in 0..plan.rounds {
        for k in 0..n {
            let h = if round % 2 == 0 { k } else { n - 1 - k };
            let t = measure_throughput(&daemons[h], fd, clients, plan);
            r.per_sec[h].push(t.per_sec);
            r.cpu_us[h].push(t.cpu_us_per_cmd);
        }
        // Let the helpers close the round's connections.
        for d in daemons {
            d.wait_fds_below(64, Duration::from_secs(60));
        }
    }
    r
}

/// Idle connections accepted when started with soft RLIMIT_NOFILE 1024.
fn nofile_probe(c: &Contender, n: usize) -> usize {
    let d = c.spawn(Some(1024));
    let mut held = Vec::new();
    while held.len() < n {
        match connect_negotiated(&d.socket, Duration::from_secs(2)) {
            Ok(s) => held.push(s),
            Err(_) => break,
        }
    }
    held.len()
}

/// Draws p50 and p99 against idle connections for each helper into an SVG.
fn draw_chart(
    path: &Path,
    levels: &[usize],
    helpers: &[Contender],
    sweeps: &[IdleSweep],
    caption: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    use plotters::prelude::*;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let top = levels.iter().copied().max().unwrap_or(1).max(1) as f64;
    let all = sweeps
        .iter()
        .flat_map(|s| s.p50.iter().chain(&s.p99))
        .flat_map(|s| [s.lo, s.hi]);
    let (lo, hi) = all.fold((f64::MAX, 0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let (lo, hi) = ((lo / 1.5).max(1.0), (hi * 1.5).max(10.0));
    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, ("sans-serif", 18))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(72)
        .build_cartesian_2d(0f64..top * 1.02, (lo..hi).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("idle negotiated connections")
        .y_desc("READ KEYS round trip (us, log scale)")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .draw()?;
    let colors = [RGBColor(31, 119, 180), RGBColor(214, 39, 40)];
    for (i, (h, s)) in helpers.iter().zip(sweeps).enumerate() {
        let color = colors[i % colors.len()];
        for (q, series, dashed) in [("p50", &s.p50, false), ("p99", &s.p99, true)] {
            let points: Vec<(f64, f64)> = levels
                .iter()
                .zip(series)
                .map(|(&l, v)| (l as f64, v.median))
                .collect();
            let style = color.stroke_width(2);
            let label = format!("{} {q}", h.name);
            if dashed {
                chart
                    .draw_series(DashedLineSeries::new(points.clone(), 6, 4, style))?
                    .label(label)
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(1))
                    });
            } else {
                chart
                    .draw_series(LineSeries::new(points.clone(), style))?
                    .label(label)
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(3))
                    });
            }
            chart.draw_series(points.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
            // The spread over the rounds, as a bar at each level.
            chart.draw_series(levels.iter().zip(series).map(|(&l, v)| {
                PathElement::new(
                    vec![(l as f64, v.lo), (l as f64, v.hi)],
                    color.stroke_width(1),
                )
            }))?;
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

/// The one-minute load average, as `uptime` shows it.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// Raises the soft and, as root, the hard RLIMIT_NOFILE to at least
/// `needed`; returns the soft limit in force.
fn raise_nofile(needed: u64) -> u64 {
    if let Ok((_, hard)) = spawn::nofile_limits() {
        if hard < needed && spawn::set_nofile_limits(needed, needed).is_ok() {
            return needed;
        }
        let _ = spawn::set_nofile_limits(hard, hard);
    }
    spawn::nofile_limits().map_or(0, |(soft, _)| soft)
}

/// Commands per second with `clients` connections driven by one async thread,
/// and the daemon's CPU seconds per command.
struct Throughput {
    per_sec: f64,
    cpu_us_per_cmd: f64,
}

fn measure_throughput(daemon: &Daemon, fd: RawFd, clients: usize, plan: &Plan) -> Throughput {
    let count = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let ready = Arc::new(AtomicU64::new(0));
    let path = daemon.socket.clone();
    let (c, st, rd) = (Arc::clone(&count), Arc::clone(&stop), Arc::clone(&ready));
    let generator = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("generator runtime");
        rt.block_on(async move {
            let mut tasks = Vec::new();
            for _ in 0..clients {
                let s = connect_negotiated(&path, PATIENCE).expect("connect for throughput");
                s.set_nonblocking(true).expect("nonblocking");
                let s = tokio::net::UnixStream::from_std(s).expect("register");
                let (c, st) = (Arc::clone(&c), Arc::clone(&st));
                tasks.push(tokio::spawn(async move { drive(s, fd, c, st).await }));
            }
            rd.store(1, Ordering::Release);
            for t in tasks {
                t.await.expect("client task").expect("client I/O");
            }
        });
    });
    while ready.load(Ordering::Acquire) == 0 {
        if generator.is_finished() {
            // It failed while connecting: let the panic through.
            generator.join().expect("generator thread");
            unreachable!("the generator returned before it was ready");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(plan.warmup);
    let (n0, cpu0, t0) = (
        count.load(Ordering::Relaxed),
        daemon.cpu_seconds(),
        Instant::now(),
    );
    std::thread::sleep(plan.window);
    let (n1, cpu1, t1) = (
        count.load(Ordering::Relaxed),
        daemon.cpu_seconds(),
        Instant::now(),
    );
    stop.store(true, Ordering::Relaxed);
    generator.join().expect("generator thread");
    let n = (n1 - n0) as f64;
    let secs = (t1 - t0).as_secs_f64();
    Throughput {
        per_sec: n / secs,
        cpu_us_per_cmd: if n > 0.0 {
            (cpu1 - cpu0) * 1e6 / n
        } else {
            0.0
        },
    }
}

/// One client of the load generator: round trips until `stop`.
async fn drive(
    s: tokio::net::UnixStream,
    fd: RawFd,
    count: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) -> io::Result<()> {
    use tokio::io::{AsyncReadExt, Interest};
    let mut s = s;
    let mut buf = vec![0u8; REPLY_HEADER + 8192];
    let raw = s.as_raw_fd();
    while !stop.load(Ordering::Relaxed) {
        s.async_io(Interest::WRITABLE, || {
            let iov = [IoSlice::new(&READ_KEYS)];
            let fds = [fd];
            sendmsg::<()>(
                raw,
                &iov,
                &[ControlMessage::ScmRights(&fds)],
                MsgFlags::MSG_DONTWAIT,
                None,
            )
            .map_err(io::Error::from)
        })
        .await?;
        s.read_exact(&mut buf[..REPLY_HEADER]).await?;
        let len = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]) as usize;
        if len > 0 {
            s.read_exact(&mut buf[REPLY_HEADER..REPLY_HEADER + len])
                .await?;
        }
        count.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

/// The floor: a thread-per-connection server that negotiates, then for each
/// request receives the 16-byte CDB with its fd, closes the fd and writes a
/// 104-byte reply. Nothing else.
fn start_floor(path: &Path) -> io::Result<()> {
    let listener = UnixListener::bind(path)?;
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            std::thread::spawn(move || {
                let _ = serve_floor(conn);
            });
        }
    });
    Ok(())
}

fn serve_floor(mut s: UnixStream) -> io::Result<()> {
    s.write_all(&[0; 4])?;
    let mut f = [0u8; 4];
    s.read_exact(&mut f)?;
    let mut reply = [0u8; REPLY_HEADER];
    reply[3] = 2;
    let mut cdb = [0u8; 16];
    loop {
        let mut got = 0;
        while got < cdb.len() {
            let mut iov = [IoSliceMut::new(&mut cdb[got..])];
            let mut space = nix::cmsg_space!([RawFd; 4]);
            let msg = recvmsg::<()>(
                s.as_raw_fd(),
                &mut iov,
                Some(&mut space),
                MsgFlags::MSG_CMSG_CLOEXEC,
            )?;
            if msg.bytes == 0 {
                return Ok(());
            }
            for cmsg in msg.cmsgs()? {
                if let ControlMessageOwned::ScmRights(fds) = cmsg {
                    for raw in fds {
                        // SAFETY: SCM_RIGHTS just installed `raw` here and
                        // nothing else refers to it; dropping closes it.
                        drop(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) });
                    }
                }
            }
            got += msg.bytes;
        }
        s.write_all(&reply)?;
    }
}

/// Whether our helper serves `--emulate` in this build.
fn emulate_available(ours: &Path) -> bool {
    let args = [&spawn::PRODUCTION_FILTER[..], &["--emulate", "-q"]].concat();
    match Daemon::spawn(ours, &args, None) {
        Ok(mut d) => d.wait_accepting(Duration::from_secs(5)).is_some(),
        Err(_) => false,
    }
}

struct Table {
    rows: Vec<[String; 6]>,
}

impl Table {
    fn row(&mut self, what: &str, ours: String, c: String, ratio: String, target: &str, met: &str) {
        self.rows
            .push([what.into(), ours, c, ratio, target.into(), met.into()]);
    }

    fn print(&self) {
        let head = ["figure", "ours", "C helper", "ratio", "target", "met"];
        let mut w = head.map(str::len);
        for r in &self.rows {
            for (i, cell) in r.iter().enumerate() {
                w[i] = w[i].max(cell.len());
            }
        }
        let line = |cells: &[String]| {
            let mut s = String::from("|");
            for (i, c) in cells.iter().enumerate() {
                s.push_str(&format!(" {:<width$} |", c, width = w[i]));
            }
            println!("{s}");
        };
        line(&head.map(String::from));
        let mut sep = String::from("|");
        for wi in w {
            sep.push_str(&format!("{}|", "-".repeat(wi + 2)));
        }
        println!("{sep}");
        for r in &self.rows {
            line(r);
        }
    }
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick")
        || std::env::var("BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
    let plan = Plan::new(quick);
    let started = Instant::now();
    let load_before = load_average();

    // The binary cargo builds for the bench carries the features that the
    // dev-dependencies switch on in shared crates, and is about 0.5 MB larger
    // than `cargo build --release`'s: BENCH_OURS measures the shipped one.
    let ours = std::env::var_os("BENCH_OURS").map_or_else(spawn::our_helper, PathBuf::from);
    let c_helper = Path::new(C_HELPER);
    let have_c = c_helper.exists();
    let emulated = emulate_available(&ours);
    // One process stands in here for many VMs, each a peer of its own in
    // production: the per-peer limits are lifted to the daemon's bounds, so
    // that the figures stay comparable with the C helper, which has none.
    let config = std::env::temp_dir().join(format!("helper-bench-{}.toml", std::process::id()));
    std::fs::write(
        &config,
        "[security]\nmax_connections_per_peer = 1000000\nmax_commands_per_peer = 512\n",
    )
    .expect("the bench's configuration file");
    let config: &'static str = Box::leak(config.to_string_lossy().into_owned().into_boxed_str());
    let ours = Contender {
        name: "ours",
        binary: ours,
        // The filter is the release default; spelled out as in the tests.
        args: if emulated {
            [
                &spawn::PRODUCTION_FILTER[..],
                &["--emulate", "-q", "-c", config],
            ]
            .concat()
        } else {
            [&spawn::PRODUCTION_FILTER[..], &["-q", "-c", config]].concat()
        },
    };
    let mut helpers = vec![ours.clone()];
    if have_c {
        helpers.push(Contender {
            name: "C helper",
            binary: c_helper.to_path_buf(),
            args: Vec::new(),
        });
    }

    // Room for the idle connections of every helper at once on this side.
    let top = plan.top_idle();
    let clients_max = plan.clients.iter().copied().max().unwrap_or(1);
    let together = (helpers.len() * (top + 16) + clients_max + 256) as u64;
    let alone = (top + clients_max + 256) as u64;
    let soft = raise_nofile(together);
    if soft < alone {
        eprintln!("RLIMIT_NOFILE {soft} is below the {alone} fds the bench needs");
        std::process::exit(1);
    }

    let dir = tempfile::tempdir().expect("tempdir");
    let dev_path = dir.path().join("disk.img");
    std::fs::write(&dev_path, vec![0u8; 4096]).expect("device file");
    let dev = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&dev_path)
        .expect("open device file");
    let fd = dev.as_raw_fd();

    eprintln!("start-up, taking turns...");
    let starts = startups(&helpers, &plan);
    eprintln!("ours, the C helper and the floor, taking turns...");
    let side = side_by_side(&helpers, fd, &plan);
    eprintln!("idle connections...");
    let sweeps = if soft >= together {
        idle_sweep(&helpers, fd, &plan)
    } else {
        // Not enough fds for both at once: one helper after the other.
        helpers
            .iter()
            .flat_map(|h| idle_sweep(std::slice::from_ref(h), fd, &plan))
            .collect()
    };
    eprintln!("throughput, taking turns...");
    let daemons: Vec<Daemon> = helpers.iter().map(|h| h.spawn(None)).collect();
    let throughput: Vec<(usize, ThroughputRounds)> = plan
        .clients
        .iter()
        .map(|&n| (n, throughput_rounds(&daemons, fd, n, &plan)))
        .collect();
    drop(daemons);
    let nofile: Vec<usize> = if plan.nofile_probe > 0 {
        helpers
            .iter()
            .map(|h| nofile_probe(h, plan.nofile_probe))
            .collect()
    } else {
        Vec::new()
    };
    let load_after = load_average();

    // The table.
    let mut t = Table { rows: Vec::new() };
    let na = || "-".to_string();
    let c_of = |v: &[Vec<Latency>]| have_c.then(|| v[1].clone());
    let floor = &side[side.len() - 1];
    let (side_ours, side_c) = (&side[0], c_of(&side));
    for (name, q) in [("p50", p50 as fn(&Latency) -> f64), ("p99", p99)] {
        let o = Spread::of(&side_ours.iter().map(q).collect::<Vec<_>>());
        let c = side_c
            .as_ref()
            .map(|c| Spread::of(&c.iter().map(q).collect::<Vec<_>>()));
        let r = side_c
            .as_ref()
            .map(|c| Spread::of(&ratios(side_ours, c, q)));
        let goal = Goal::AtMost(1.0);
        t.row(
            &format!("READ KEYS {name}, 0 idle"),
            o.show(1, " us"),
            c.map_or_else(na, |c| c.show(1, " us")),
            r.map_or_else(na, |r| r.show(2, "")),
            &goal.text("ours/C"),
            r.map_or("-", |r| goal.verdict(&r)),
        );
    }
    let f = Spread::of(&floor.iter().map(p50).collect::<Vec<_>>());
    let of = Spread::of(&ratios(side_ours, floor, p50));
    let cf = side_c.as_ref().map(|c| Spread::of(&ratios(c, floor, p50)));
    let goal = Goal::AtMost(1.3);
    t.row(
        "p50 / floor p50 (floor alone in the C column)",
        of.show(2, ""),
        cf.map_or_else(|| f.show(1, " us"), |c| c.show(2, "")),
        na(),
        &goal.text("ours"),
        goal.verdict(&of),
    );
    let c_sweep = if have_c { sweeps.get(1) } else { None };
    for (i, &level) in plan.idle_levels.iter().enumerate() {
        let o = &sweeps[0];
        let c = c_sweep;
        t.row(
            &format!("idle sweep: p50 / p99 (median), {level} idle"),
            format!("{:.1} / {:.1} us", o.p50[i].median, o.p99[i].median),
            c.map_or_else(na, |c| {
                format!("{:.1} / {:.1} us", c.p50[i].median, c.p99[i].median)
            }),
            c.map_or_else(na, |c| {
                format!(
                    "{:.2} / {:.2}",
                    o.p50[i].median / c.p50[i].median,
                    o.p99[i].median / c.p99[i].median
                )
            }),
            "",
            "",
        );
    }
    let last = plan.idle_levels.len() - 1;
    let goal = Goal::AtMost(1.2);
    t.row(
        &format!("p50 {top} idle / p50 0 idle (twin daemon)"),
        sweeps[0].growth[last].show(2, ""),
        c_sweep.map_or_else(na, |c| c.growth[last].show(2, "")),
        na(),
        &goal.text("ours"),
        goal.verdict(&sweeps[0].growth[last]),
    );
    for (clients, r) in &throughput {
        let o = Spread::of(&r.per_sec[0]);
        let ratio = have_c.then(|| {
            let v: Vec<f64> = r.per_sec[0]
                .iter()
                .zip(&r.per_sec[1])
                .map(|(a, b)| a / b)
                .collect();
            Spread::of(&v)
        });
        let goal = Goal::AtLeast(1.0);
        t.row(
            &format!("throughput, {clients} clients (cmd/s)"),
            o.show(0, ""),
            if have_c {
                Spread::of(&r.per_sec[1]).show(0, "")
            } else {
                na()
            },
            ratio.map_or_else(na, |r| r.show(2, "")),
            &goal.text("ours/C"),
            ratio.map_or("-", |r| goal.verdict(&r)),
        );
        t.row(
            &format!("  daemon CPU per command, {clients} clients"),
            Spread::of(&r.cpu_us[0]).show(1, " us"),
            if have_c {
                Spread::of(&r.cpu_us[1]).show(1, " us")
            } else {
                na()
            },
            na(),
            "",
            "",
        );
    }
    let rss = Spread::of(&starts[0].1);
    t.row(
        &format!("RSS after start, {} starts", plan.startup_runs),
        rss.show(0, " KiB"),
        if have_c {
            Spread::of(&starts[1].1).show(0, " KiB")
        } else {
            na()
        },
        na(),
        "ours <= 3072 KiB in every run",
        if rss.hi <= 3072.0 { "met" } else { "MISSED" },
    );
    if let Some(&(n, per)) = sweeps[0].rss_per_idle.last() {
        // The spread: the same figure at the levels of 1,000 and more.
        let at = |s: &IdleSweep| {
            Spread::of(
                &s.rss_per_idle
                    .iter()
                    .filter(|(l, _)| *l >= 1000)
                    .map(|x| x.1)
                    .collect::<Vec<_>>(),
            )
        };
        let o = at(&sweeps[0]);
        let goal = Goal::AtMost(1024.0);
        t.row(
            &format!("RSS per idle connection at {n} (range: levels >= 1000)"),
            format!("{per:.0} B [{:.0}-{:.0}]", o.lo, o.hi),
            c_sweep
                .and_then(|c| c.rss_per_idle.last().map(|x| (x.1, at(c))))
                .map_or_else(na, |(v, s)| format!("{v:.0} B [{:.0}-{:.0}]", s.lo, s.hi)),
            na(),
            &goal.text("ours B"),
            goal.verdict(&Spread {
                median: per,
                lo: o.lo.min(per),
                hi: o.hi.max(per),
            }),
        );
    }
    let st = Spread::of(&starts[0].0);
    t.row(
        &format!("spawn to accepting, {} starts", plan.startup_runs),
        st.show(2, " ms"),
        if have_c {
            Spread::of(&starts[1].0).show(2, " ms")
        } else {
            na()
        },
        na(),
        "ours <= 20 ms",
        Goal::AtMost(20.0).verdict(&st),
    );
    if !nofile.is_empty() {
        t.row(
            &format!(
                "idle conns accepted, started with soft NOFILE 1024 (of {})",
                plan.nofile_probe
            ),
            nofile[0].to_string(),
            nofile.get(1).map_or_else(na, |n| n.to_string()),
            na(),
            &format!("all {}", plan.nofile_probe),
            if nofile[0] >= plan.nofile_probe {
                "met"
            } else {
                "MISSED"
            },
        );
    }

    let caption = format!("READ KEYS round trip against idle connections (load {load_before})");
    let chart = draw_chart(&plan.chart, &plan.idle_levels, &helpers, &sweeps, &caption);

    println!();
    println!(
        "qemu-pr-helper bench{}: ours = {} ({}), C = {}, floor = minimal recvmsg/close/reply server in the bench",
        if quick { " (quick)" } else { "" },
        ours.binary.display(),
        if emulated {
            "--emulate"
        } else {
            "SG_IO executor on a regular file: CHECK CONDITION without an ioctl"
        },
        if have_c {
            "/usr/bin/qemu-pr-helper on a regular file (SG_IO fails with ENOTTY: CHECK CONDITION)"
        } else {
            "not installed (apt-get install qemu-system-common)"
        },
    );
    println!(
        "PR IN READ KEYS, allocation length 256; {} cores; load average {load_before} before, \
         {load_after} after; {} rounds of {} round trips per contender, taking turns; \
         throughput windows {} ms; values: median [lowest-highest] over the rounds",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        plan.rounds,
        plan.samples,
        plan.window.as_millis(),
    );
    println!();
    t.print();
    println!();
    match chart {
        Ok(()) => println!("chart: {}", plan.chart.display()),
        Err(e) => println!("chart not drawn ({}): {e}", plan.chart.display()),
    }
    let _ = std::fs::remove_file(config);
    println!("bench took {:.0} s", started.elapsed().as_secs_f64());
}
