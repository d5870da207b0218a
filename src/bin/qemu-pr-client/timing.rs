// SPDX-License-Identifier: GPL-2.0-or-later
//! `--repeat` and `--direct`: the same command run many times, over one
//! helper connection or with SG_IO in this process, and a summary of the
//! round trips, so that a helper's cost is measured without program start.

use std::os::fd::BorrowedFd;
use std::time::{Duration, Instant};

use qemu_pr_helper::adapters::fd_inspector;
use qemu_pr_helper::adapters::sg_io;
use qemu_pr_helper::client::cli::MAX_REPEAT;
use qemu_pr_helper::client::error::DirectError;
use qemu_pr_helper::client::{ClientError, PrRequest, Reply};
use qemu_pr_helper::domain::command::PrCommand;
use qemu_pr_helper::domain::sg_io_timeout::SgIoTimeout;

/// Runs `request` `n` times (at most [`MAX_REPEAT`]) with `once` and returns
/// the last reply and the time of each run.
pub fn repeat<E>(
    n: u32,
    mut once: impl FnMut() -> Result<Reply, E>,
) -> Result<(Reply, Vec<Duration>), E> {
    let n = n.min(MAX_REPEAT);
    let mut times = Vec::with_capacity(n as usize);
    let mut last = None;
    for _ in 0..n.max(1) {
        let at = Instant::now();
        last = Some(once()?);
        times.push(at.elapsed());
    }
    // At least one run, so there is a last reply.
    Ok((last.expect("at least one run"), times))
}

/// One line for stderr:
/// `repeat via=VIA n=N median_us=M p99_us=P min_us=A max_us=B`.
pub fn summary(via: &str, times: &[Duration]) -> String {
    let mut us: Vec<f64> = times.iter().map(|t| t.as_secs_f64() * 1e6).collect();
    us.sort_by(f64::total_cmp);
    if us.is_empty() {
        return format!("repeat via={via} n=0");
    }
    let at = |q: f64| us[((us.len() as f64 * q) as usize).min(us.len() - 1)];
    format!(
        "repeat via={via} n={} median_us={:.1} p99_us={:.1} min_us={:.1} max_us={:.1}",
        us.len(),
        at(0.5),
        at(0.99),
        us[0],
        us[us.len() - 1]
    )
}

/// Checks that `fd` may see SG_IO, as the helper would.
pub fn check_direct(fd: BorrowedFd<'_>) -> Result<(), DirectError> {
    let info = fd_inspector::inspect(fd.try_clone_to_owned()?).info;
    if info.kind.accepts_sg_io() {
        Ok(())
    } else {
        Err(DirectError::NotADevice(info.kind))
    }
}

/// Runs `request` once with SG_IO on `fd`, and gives the answer in the form
/// a helper's reply has.
pub fn direct(
    fd: BorrowedFd<'_>,
    request: &PrRequest,
    timeout: SgIoTimeout,
) -> Result<Reply, DirectError> {
    let command = PrCommand {
        cdb: *request.cdb(),
        data_out: request.params().to_vec(),
    };
    let reply =
        sg_io::send_pr_command(fd, &command, timeout).fit_to(request.cdb().allocation_len());
    Ok(Reply::from_pr_reply(reply).map_err(ClientError::from)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_gives_order_statistics() {
        let times: Vec<Duration> = (1..=100).map(Duration::from_micros).collect();
        let s = summary("helper", &times);
        assert_eq!(
            s,
            "repeat via=helper n=100 median_us=51.0 p99_us=100.0 min_us=1.0 max_us=100.0"
        );
    }

    #[test]
    fn repeat_runs_n_times_and_stops_at_the_first_error() {
        let mut calls = 0;
        let r: Result<_, &str> = repeat(3, || {
            calls += 1;
            Err("no")
        });
        assert!(r.is_err());
        assert_eq!(calls, 1);
    }

    #[test]
    fn direct_refuses_what_is_not_a_device() {
        let f = std::fs::File::open("/dev/null").unwrap();
        use std::os::fd::AsFd;
        let e = check_direct(f.as_fd()).unwrap_err();
        assert!(matches!(e, DirectError::NotADevice(_)));
        assert_eq!(
            e.to_string(),
            "--direct needs a block, sg or bsg device, \
             not a character device that is neither sg nor bsg"
        );
    }
}
