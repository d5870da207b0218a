//! Benchmark: our `qemu-pr-helper` against Debian's C helper
//! (`/usr/bin/qemu-pr-helper`, when installed) and against a minimal
//! Unix-socket server in this file (the floor), all measured in one run.
//!
//! `cargo bench --bench helper_bench` (add `-- --quick`, or set
//! `BENCH_QUICK=1`, for a smoke run of a few seconds). Prints one table.
//!
//! Without a SCSI device both helpers get a regular file as the device fd:
//! ours answers CHECK CONDITION without an ioctl (or serves the emulated
//! device when `--emulate` is available), the C helper runs SG_IO, which fails
//! with ENOTTY, and answers CHECK CONDITION. Both then measure the helper's
//! own overhead: the socket, the fd passing, the framing and the dispatch.

use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};

const C_HELPER: &str = "/usr/bin/qemu-pr-helper";
/// PERSISTENT RESERVE IN, READ KEYS, allocation length 256.
const READ_KEYS: [u8; 16] = [0x5e, 0, 0, 0, 0, 0, 0, 0x01, 0x00, 0, 0, 0, 0, 0, 0, 0];
const REPLY_HEADER: usize = 104;
/// How long a helper may take to negotiate: the C helper polls every
/// connection on each wake-up, so with thousands open it is slow.
const PATIENCE: Duration = Duration::from_secs(60);

/// How much to measure.
struct Plan {
    latency_samples: usize,
    latency_budget: Duration,
    idle_levels: [usize; 3],
    clients: [usize; 4],
    window: Duration,
    warmup: Duration,
    startup_runs: usize,
    nofile_probe: usize,
}

impl Plan {
    fn new(quick: bool) -> Plan {
        if quick {
            Plan {
                latency_samples: 300,
                latency_budget: Duration::from_millis(500),
                idle_levels: [0, 100, 1000],
                clients: [1, 8, 64, 512],
                window: Duration::from_millis(250),
                warmup: Duration::from_millis(50),
                startup_runs: 3,
                nofile_probe: 0,
            }
        } else {
            Plan {
                latency_samples: 5000,
                latency_budget: Duration::from_secs(5),
                idle_levels: [0, 1000, 10_000],
                clients: [1, 8, 64, 512],
                window: Duration::from_secs(2),
                warmup: Duration::from_millis(300),
                startup_runs: 21,
                nofile_probe: 1500,
            }
        }
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
        let mut cmd = Command::new(binary);
        cmd.arg("-k")
            .arg(&socket)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: the closure runs in the forked child before exec and only
        // calls prctl, getrlimit and setrlimit, which are async-signal-safe.
        unsafe {
            cmd.pre_exec(move || {
                // The helper dies with the bench (all spawns are from main).
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(io::Error::last_os_error());
                }
                if let Some(soft) = nofile_soft {
                    let (_, hard) = getrlimit_nofile()?;
                    setrlimit_nofile(soft, hard)?;
                }
                Ok(())
            });
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

fn getrlimit_nofile() -> io::Result<(u64, u64)> {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `r` is a valid, writable rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((r.rlim_cur, r.rlim_max))
}

fn setrlimit_nofile(soft: u64, hard: u64) -> io::Result<()> {
    let r = libc::rlimit {
        rlim_cur: soft,
        rlim_max: hard,
    };
    // SAFETY: `r` is a valid rlimit.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &r) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
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

/// Round trips on one connection: a warm-up, then up to `samples` or `budget`.
fn measure_latency(path: &Path, fd: RawFd, samples: usize, budget: Duration) -> Latency {
    measure_interleaved(&[path], fd, samples, budget)[0]
}

/// Round trips on one connection to each of `paths`, taking turns, so that
/// all see the same machine load: a warm-up, then up to `samples` rounds or
/// `budget`.
fn measure_interleaved(
    paths: &[&Path],
    fd: RawFd,
    samples: usize,
    budget: Duration,
) -> Vec<Latency> {
    let mut conns: Vec<UnixStream> = paths
        .iter()
        .map(|p| connect_negotiated(p, PATIENCE).expect("connect for latency"))
        .collect();
    let mut buf = vec![0u8; REPLY_HEADER + 8192];
    for _ in 0..(samples / 10).max(20) {
        for s in &mut conns {
            round_trip(s, fd, &mut buf).expect("warm-up round trip");
        }
    }
    let mut times = vec![Vec::with_capacity(samples); conns.len()];
    let start = Instant::now();
    while times[0].len() < samples && (start.elapsed() < budget || times[0].len() < 100) {
        for (s, t) in conns.iter_mut().zip(&mut times) {
            let at = Instant::now();
            round_trip(s, fd, &mut buf).expect("round trip");
            t.push(at.elapsed().as_secs_f64() * 1e6);
        }
    }
    times
        .into_iter()
        .map(|mut t| {
            t.sort_by(f64::total_cmp);
            let at = |q: f64| t[((t.len() as f64 * q) as usize).min(t.len() - 1)];
            Latency {
                p50: at(0.50),
                p99: at(0.99),
            }
        })
        .collect()
}

/// Commands per second with `clients` connections driven by one async thread,
/// and the daemon's CPU seconds per command.
struct Throughput {
    per_sec: f64,
    cpu_us_per_cmd: f64,
    generator_cpu: f64,
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
        thread_cpu_seconds()
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
    let generator_cpu = generator.join().expect("generator thread");
    let n = (n1 - n0) as f64;
    let secs = (t1 - t0).as_secs_f64();
    Throughput {
        per_sec: n / secs,
        cpu_us_per_cmd: if n > 0.0 {
            (cpu1 - cpu0) * 1e6 / n
        } else {
            0.0
        },
        generator_cpu,
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

/// CPU seconds used by the calling thread.
fn thread_cpu_seconds() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
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

/// Everything measured for one helper.
#[derive(Default)]
struct Results {
    latency: Vec<(usize, Latency)>,
    throughput: Vec<(usize, f64, f64, f64)>,
    rss_start_kib: u64,
    rss_per_idle_b: Option<(usize, f64)>,
    start_ms: f64,
    nofile_accepted: Option<usize>,
}

fn measure_helper(binary: &Path, extra: &[&str], dev: &std::fs::File, plan: &Plan) -> Results {
    let fd = dev.as_raw_fd();
    let mut r = Results::default();

    // Exec to accepting, median of the runs.
    let mut starts = Vec::new();
    for _ in 0..plan.startup_runs {
        let mut d = Daemon::spawn(binary, extra, None).expect("spawn helper");
        let t = d
            .wait_accepting(Duration::from_secs(10))
            .expect("helper did not start");
        starts.push(t.as_secs_f64() * 1e3);
    }
    starts.sort_by(f64::total_cmp);
    r.start_ms = starts[starts.len() / 2];

    let mut d = Daemon::spawn(binary, extra, None).expect("spawn helper");
    d.wait_accepting(Duration::from_secs(10))
        .expect("helper did not start");
    std::thread::sleep(Duration::from_millis(50));
    r.rss_start_kib = d.rss_kib();

    // Latency with growing numbers of idle negotiated connections.
    let mut idle: Vec<UnixStream> = Vec::new();
    let mut rss_at_zero = 0;
    for &level in &plan.idle_levels {
        while idle.len() < level {
            idle.push(connect_negotiated(&d.socket, PATIENCE).expect("idle connection"));
        }
        r.latency.push((
            level,
            measure_latency(&d.socket, fd, plan.latency_samples, plan.latency_budget),
        ));
        if level == 0 {
            rss_at_zero = d.rss_kib();
        }
    }
    let top = plan.idle_levels[plan.idle_levels.len() - 1];
    if top > 0 {
        let grown = d.rss_kib().saturating_sub(rss_at_zero) as f64 * 1024.0;
        r.rss_per_idle_b = Some((top, grown / top as f64));
    }
    drop(idle);
    // Let the helper tear the idle connections down before loading it.
    d.wait_fds_below(64, Duration::from_secs(120));

    for &clients in &plan.clients {
        let t = measure_throughput(&d, fd, clients, plan);
        r.throughput
            .push((clients, t.per_sec, t.cpu_us_per_cmd, t.generator_cpu));
    }
    drop(d);

    // Idle connections accepted when started with soft RLIMIT_NOFILE 1024.
    if plan.nofile_probe > 0 {
        let mut d = Daemon::spawn(binary, extra, Some(1024)).expect("spawn helper");
        d.wait_accepting(Duration::from_secs(10))
            .expect("helper did not start");
        let mut held = Vec::new();
        while held.len() < plan.nofile_probe {
            match connect_negotiated(&d.socket, Duration::from_secs(2)) {
                Ok(s) => held.push(s),
                Err(_) => break,
            }
        }
        r.nofile_accepted = Some(held.len());
    }
    r
}

/// Ours, the C helper (if any) and the floor, fresh, with no idle
/// connections, measured round-robin: [ours, floor, C, ours with `variant`
/// arguments added].
fn measure_side_by_side(
    ours: (&Path, &[&str]),
    c: Option<&Path>,
    variant: Option<&[&str]>,
    dev: &std::fs::File,
    plan: &Plan,
) -> Vec<Latency> {
    let dir = tempfile::tempdir().expect("tempdir");
    let floor = dir.path().join("floor.sock");
    start_floor(&floor).expect("floor server");
    let mut o = Daemon::spawn(ours.0, ours.1, None).expect("spawn helper");
    o.wait_accepting(Duration::from_secs(10))
        .expect("helper did not start");
    let mut paths = vec![o.socket.clone(), floor];
    let mut c_daemon = None;
    if let Some(c) = c {
        let mut d = Daemon::spawn(c, &[], None).expect("spawn the C helper");
        d.wait_accepting(Duration::from_secs(10))
            .expect("the C helper did not start");
        paths.push(d.socket.clone());
        c_daemon = Some(d);
    }
    let mut v_daemon = None;
    if let Some(extra) = variant {
        let args: Vec<&str> = ours.1.iter().chain(extra).copied().collect();
        let mut d = Daemon::spawn(ours.0, &args, None).expect("spawn the variant");
        d.wait_accepting(Duration::from_secs(10))
            .expect("the variant did not start");
        paths.push(d.socket.clone());
        v_daemon = Some(d);
    }
    let refs: Vec<&Path> = paths.iter().map(PathBuf::as_path).collect();
    let r = measure_interleaved(
        &refs,
        dev.as_raw_fd(),
        plan.latency_samples,
        plan.latency_budget,
    );
    drop((c_daemon, v_daemon));
    r
}

/// Whether our helper serves `--emulate` in this build.
fn emulate_available(ours: &Path) -> bool {
    match Daemon::spawn(ours, &["--emulate", "-q"], None) {
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

fn met(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "MISSED"
    }
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick")
        || std::env::var("BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
    let plan = Plan::new(quick);

    // Room for the idle connections on this side.
    if let Ok((_, hard)) = getrlimit_nofile() {
        let _ = setrlimit_nofile(hard, hard);
    }
    let (soft, _) = getrlimit_nofile().unwrap_or((0, 0));
    let needed = plan.idle_levels[2] + plan.clients[3] + 64;
    if soft < needed as u64 {
        eprintln!("RLIMIT_NOFILE hard limit {soft} is below the {needed} fds the bench needs");
        std::process::exit(1);
    }

    let ours = PathBuf::from(env!("CARGO_BIN_EXE_qemu-pr-helper"));
    let c_helper = Path::new(C_HELPER);
    let have_c = c_helper.exists();

    let dir = tempfile::tempdir().expect("tempdir");
    let dev_path = dir.path().join("disk.img");
    std::fs::write(&dev_path, vec![0u8; 4096]).expect("device file");
    let dev = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&dev_path)
        .expect("open device file");

    // A second configuration of ours for the taking-turns rows, e.g.
    // BENCH_OURS_VARIANT="--seccomp off" to see what a setting costs.
    let variant_text = std::env::var("BENCH_OURS_VARIANT").ok();
    let variant: Option<Vec<&str>> = variant_text
        .as_deref()
        .map(|v| v.split_whitespace().collect());
    let emulated = emulate_available(&ours);
    let our_args: &[&str] = if emulated {
        &["--emulate", "-q"]
    } else {
        &["-q"]
    };
    eprintln!(
        "measuring ours ({})...",
        if emulated { "emulated" } else { "sg_io" }
    );
    let o = measure_helper(&ours, our_args, &dev, &plan);
    let c = if have_c {
        eprintln!("measuring the C helper...");
        Some(measure_helper(c_helper, &[], &dev, &plan))
    } else {
        None
    };
    eprintln!("measuring ours, the floor and the C helper side by side...");
    let side = measure_side_by_side(
        (&ours, our_args),
        have_c.then_some(c_helper),
        variant.as_deref(),
        &dev,
        &plan,
    );
    let (side_ours, floor) = (side[0], side[1]);
    let side_c = have_c.then(|| side[2]);
    let side_variant = variant.as_ref().map(|_| side[side.len() - 1]);

    let mut t = Table { rows: Vec::new() };
    let na = || "-".to_string();
    let us = |v: f64| format!("{v:.1} us");
    let ratio = |a: f64, b: f64| format!("{:.2}", a / b);

    for (i, &(level, l)) in o.latency.iter().enumerate() {
        let cl = c.as_ref().map(|c| c.latency[i].1);
        let p50_ratio = cl.map(|cl| l.p50 / cl.p50);
        let p99_ratio = cl.map(|cl| l.p99 / cl.p99);
        t.row(
            &format!("READ KEYS p50, {level} idle"),
            us(l.p50),
            cl.map_or_else(na, |cl| us(cl.p50)),
            p50_ratio.map_or_else(na, |r| format!("{r:.2}")),
            "ours/C <= 1.0",
            p50_ratio.map_or("-", |r| met(r <= 1.0)),
        );
        t.row(
            &format!("READ KEYS p99, {level} idle"),
            us(l.p99),
            cl.map_or_else(na, |cl| us(cl.p99)),
            p99_ratio.map_or_else(na, |r| format!("{r:.2}")),
            "ours/C <= 1.0",
            p99_ratio.map_or("-", |r| met(r <= 1.0)),
        );
    }
    let (top, lt) = o.latency[o.latency.len() - 1];
    let l0 = o.latency[0].1;
    let c_growth = c.as_ref().map(|c| {
        let top = c.latency[c.latency.len() - 1].1.p50;
        top / c.latency[0].1.p50
    });
    t.row(
        &format!("p50 {top} idle / p50 0 idle"),
        ratio(lt.p50, l0.p50),
        c_growth.map_or_else(na, |g| format!("{g:.2}")),
        na(),
        "ours <= 1.2",
        met(lt.p50 / l0.p50 <= 1.2),
    );
    // Taking turns: the fairest comparison on a loaded machine.
    let side_ratio = |q: fn(&Latency) -> f64| side_c.map(|c| q(&side_ours) / q(&c));
    for (name, q) in [
        ("p50", (|l: &Latency| l.p50) as fn(&Latency) -> f64),
        ("p99", |l: &Latency| l.p99),
    ] {
        let r = side_ratio(q);
        t.row(
            &format!("READ KEYS {name}, 0 idle, taking turns"),
            us(q(&side_ours)),
            side_c.map_or_else(na, |c| us(q(&c))),
            r.map_or_else(na, |r| format!("{r:.2}")),
            "ours/C <= 1.0",
            r.map_or("-", |r| met(r <= 1.0)),
        );
    }
    if let (Some(v), Some(text)) = (side_variant, &variant_text) {
        t.row(
            &format!("ours {text}: p50 / p99, taking turns"),
            format!("{:.1} / {:.1} us", v.p50, v.p99),
            na(),
            ratio(v.p50, side_ours.p50),
            "",
            "",
        );
    }
    t.row(
        "floor p50 / p99, taking turns",
        format!("{:.1} / {:.1} us", floor.p50, floor.p99),
        na(),
        na(),
        "",
        "",
    );
    t.row(
        "p50 / floor p50, taking turns",
        ratio(side_ours.p50, floor.p50),
        side_c.map_or_else(na, |c| ratio(c.p50, floor.p50)),
        na(),
        "ours <= 1.5",
        met(side_ours.p50 / floor.p50 <= 1.5),
    );
    for (i, &(clients, per_sec, cpu, gen)) in o.throughput.iter().enumerate() {
        let ct = c.as_ref().map(|c| c.throughput[i]);
        t.row(
            &format!("throughput, {clients} clients (cmd/s)"),
            format!("{per_sec:.0}"),
            ct.map_or_else(na, |ct| format!("{:.0}", ct.1)),
            ct.map_or_else(na, |ct| ratio(per_sec, ct.1)),
            "ours/C >= 1.0",
            ct.map_or("-", |ct| met(per_sec >= ct.1)),
        );
        t.row(
            &format!("  daemon CPU per command, {clients} clients"),
            us(cpu),
            ct.map_or_else(na, |ct| us(ct.2)),
            ct.map_or_else(na, |ct| ratio(cpu, ct.2)),
            "",
            "",
        );
        let _ = gen;
    }
    t.row(
        "RSS at start",
        format!("{} KiB", o.rss_start_kib),
        c.as_ref()
            .map_or_else(na, |c| format!("{} KiB", c.rss_start_kib)),
        c.as_ref().map_or_else(na, |c| {
            ratio(o.rss_start_kib as f64, c.rss_start_kib as f64)
        }),
        "<= 4096 KiB",
        met(o.rss_start_kib <= 4096),
    );
    if let Some((n, per)) = o.rss_per_idle_b {
        let cp = c.as_ref().and_then(|c| c.rss_per_idle_b).map(|x| x.1);
        t.row(
            &format!("RSS growth per idle connection (at {n})"),
            format!("{per:.0} B"),
            cp.map_or_else(na, |v| format!("{v:.0} B")),
            cp.map_or_else(na, |v| ratio(per, v)),
            "<= 2048 B",
            met(per <= 2048.0),
        );
    }
    t.row(
        &format!("exec to accepting, median of {}", plan.startup_runs),
        format!("{:.2} ms", o.start_ms),
        c.as_ref()
            .map_or_else(na, |c| format!("{:.2} ms", c.start_ms)),
        c.as_ref()
            .map_or_else(na, |c| ratio(o.start_ms, c.start_ms)),
        "<= 20 ms",
        met(o.start_ms <= 20.0),
    );
    if let Some(n) = o.nofile_accepted {
        t.row(
            &format!(
                "idle conns accepted, started with soft NOFILE 1024 (of {})",
                plan.nofile_probe
            ),
            n.to_string(),
            c.as_ref()
                .and_then(|c| c.nofile_accepted)
                .map_or_else(na, |n| n.to_string()),
            na(),
            &format!("all {}", plan.nofile_probe),
            met(n >= plan.nofile_probe),
        );
    }

    println!();
    println!(
        "qemu-pr-helper bench{}: ours = {} ({}), C = {}, floor = minimal recvmsg/close/reply server in the bench",
        if quick { " (quick)" } else { "" },
        ours.display(),
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
        "PR IN READ KEYS, allocation length 256; {} cores; load generator: one tokio thread",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!();
    t.print();
    if let Some(c) = &c {
        let gens: Vec<String> = o
            .throughput
            .iter()
            .zip(&c.throughput)
            .map(|(a, b)| format!("{} clients {:.2}/{:.2} s", a.0, a.3, b.3))
            .collect();
        println!();
        println!(
            "load generator CPU (ours/C runs, incl. connect and warm-up): {}",
            gens.join(", ")
        );
    }
}
