//! Child processes in their own process group: spawn, capture output, time out, cancel.
//!
//! This is the runner behind command-execution steps. Every child leads a new process group
//! (its pgid equals its pid), so a timeout or a cancellation ends the whole tree the job started,
//! not just the direct child. The child also gets `PR_SET_PDEATHSIG(SIGKILL)`, so it dies with the
//! process that spawned it. Linux delivers that signal when the spawning *thread* exits, so spawn
//! from a long-lived thread (an async worker), never from inside `spawn_blocking`.
//!
//! One file per concept: `spec` (what to run and how it ended), `spawned` (starting the child
//! and waiting for it), `group` (ending a process group) and `capture` (bounded output).

mod capture;
mod group;
mod spawned;
mod spec;
#[cfg(test)]
mod tests;

pub use group::{process_group_alive, terminate_process_group};
pub use spawned::{SpawnedProcess, run_process};
pub use spec::{ProcessEnd, ProcessError, ProcessOutcome, ProcessSpec};
