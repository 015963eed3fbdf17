//! Ending a process group: SIGTERM, a grace period, then SIGKILL; and the guard that kills the
//! group when a [`SpawnedProcess`](super::SpawnedProcess) is dropped early.

use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// Interval between checks whether a terminated process group is gone.
const GROUP_POLL: Duration = Duration::from_millis(10);

/// Sends SIGTERM to process group `pgid`, waits up to `grace` for it to be gone (polling every
/// 10 ms), then sends SIGKILL if any member remains.
///
/// An unreaped zombie member counts as alive, so the caller should reap its own child
/// concurrently; orphans left to an init that reaps lazily can make this wait until SIGKILL.
/// Group ids 0 and 1 (own group / every process) are refused and do nothing.
pub async fn terminate_process_group(pgid: u32, grace: Duration) {
    match signal_group(pgid, Signal::SIGTERM) {
        Ok(()) => {}
        Err(Errno::ESRCH | Errno::EINVAL) => return,
        Err(e) => tracing::warn!(pgid, error = %e, "cannot send SIGTERM to process group"),
    }
    let start = tokio::time::Instant::now();
    let deadline = start.checked_add(grace).unwrap_or(start + Duration::from_secs(86400));
    loop {
        if !process_group_alive(pgid) {
            return;
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            break;
        }
        tokio::time::sleep(GROUP_POLL.min(deadline - now)).await;
    }
    tracing::debug!(pgid, "process group outlived SIGTERM, sending SIGKILL");
    if let Err(e) = signal_group(pgid, Signal::SIGKILL)
        && e != Errno::ESRCH
    {
        tracing::warn!(pgid, error = %e, "cannot send SIGKILL to process group");
    }
}

/// Whether process group `pgid` still has a running member. `kill(-pgid, 0)` answers first;
/// when it says members exist, /proc decides whether any is more than a zombie waiting for
/// init to reap it (some container inits reap late, and a zombie runs nothing). Always false
/// for group ids 0 and 1.
pub fn process_group_alive(pgid: u32) -> bool {
    matches!(signal_group(pgid, None), Ok(()) | Err(Errno::EPERM)) && group_has_running_member(pgid)
}

/// SIGKILLs the process group on drop while armed.
#[derive(Debug)]
pub(super) struct GroupGuard {
    pgid: u32,
    armed: bool,
}

impl GroupGuard {
    /// A guard that kills group `pgid` when dropped.
    pub(super) fn armed(pgid: u32) -> GroupGuard {
        GroupGuard { pgid, armed: true }
    }

    /// Leaves the group alone from now on.
    pub(super) fn disarm(&mut self) {
        self.armed = false;
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if self.armed {
            let _ = signal_group(self.pgid, Signal::SIGKILL);
        }
    }
}

/// Scans /proc for a process of group `pgid` that is not a zombie; true when /proc is unreadable.
fn group_has_running_member(pgid: u32) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else { return true };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().filter(|n| n.bytes().all(|b| b.is_ascii_digit())) else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        // The command name may hold spaces and parentheses: fields start after the last ')'.
        let Some((_, rest)) = stat.rsplit_once(')') else { continue };
        let mut fields = rest.split_whitespace();
        let state = fields.next();
        let group = fields.nth(1).and_then(|g| g.parse::<u32>().ok());
        if group == Some(pgid) && state != Some("Z") {
            return true;
        }
    }
    false
}

/// Sends `signal` to the group, refusing the dangerous ids 0 (own group) and 1 (everything).
fn signal_group(pgid: u32, signal: impl Into<Option<Signal>>) -> Result<(), Errno> {
    match i32::try_from(pgid) {
        Ok(raw) if raw > 1 => killpg(Pid::from_raw(raw), signal),
        _ => Err(Errno::EINVAL),
    }
}
