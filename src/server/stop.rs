// SPDX-License-Identifier: GPL-2.0-or-later
//! How work in flight ends when the daemon stops: cut off at once (a read
//! waiting for a client), or given a grace first (a command finishing, a
//! reply being taken, an fd closing).

use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;

/// Runs `fut`, dropped unfinished the moment `stop` turns true (`None`
/// then).
pub(super) async fn cancel_at_stop<F: Future>(
    stop: &mut watch::Receiver<bool>,
    fut: F,
) -> Option<F::Output> {
    if *stop.borrow() {
        return None;
    }
    tokio::select! {
        out = fut => Some(out),
        _ = stop.wait_for(|&s| s) => None,
    }
}

/// Runs `fut` to completion, except that once `stop` turns true it gets only
/// `grace` more, and is dropped unfinished (`None`) if that runs out.
pub(super) async fn cancel_after_stop<F: Future>(
    stop: &mut watch::Receiver<bool>,
    grace: Duration,
    fut: F,
) -> Option<F::Output> {
    tokio::pin!(fut);
    if !*stop.borrow() {
        tokio::select! {
            out = &mut fut => return Some(out),
            Ok(_) = stop.wait_for(|&s| s) => {}
        }
    }
    tokio::time::timeout(grace, fut).await.ok()
}
