//! Ctrl-C (SIGINT) and SIGTERM, registered before the work they interrupt starts, so an early
//! signal is handled instead of killing the process.

use tokio::signal::unix::{Signal, SignalKind, signal};

/// Both signals, merged.
pub struct Signals {
    interrupt: Signal,
    terminate: Signal,
}

impl Signals {
    /// Starts listening; from now on the signals no longer end the process by themselves.
    pub fn listen() -> std::io::Result<Self> {
        Ok(Self { interrupt: signal(SignalKind::interrupt())?, terminate: signal(SignalKind::terminate())? })
    }

    /// Waits for the next Ctrl-C or SIGTERM.
    pub async fn recv(&mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
    }
}
