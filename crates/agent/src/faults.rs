//! Simulated failures for tests and drills (`switchyard chaos`): crash, hang, refuse, delay.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::error::Error;

/// A fault in force until a deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Every call waits without answering.
    Hang,
    /// Every call is refused with UNAVAILABLE.
    Refuse,
    /// StartJob replies are held back this long.
    Delay(Duration),
}

/// The fault in force, if any.
#[derive(Debug, Default)]
pub struct Faults {
    active: Mutex<Option<(Fault, Instant)>>,
}

impl Faults {
    /// Puts `fault` in force for `duration`.
    pub fn inject(&self, fault: Fault, duration: Duration) {
        *self.lock() = Some((fault, Instant::now() + duration));
    }

    /// The fault in force now, if any.
    pub fn current(&self) -> Option<(Fault, Instant)> {
        let mut active = self.lock();
        match *active {
            Some((_, until)) if until <= Instant::now() => {
                *active = None;
                None
            }
            other => other,
        }
    }

    /// Called first by every handler: hangs while a hang lasts, refuses while a refusal lasts.
    pub async fn gate(&self) -> Result<(), Error> {
        match self.current() {
            Some((Fault::Hang, until)) => {
                tokio::time::sleep_until(until).await;
                Ok(())
            }
            Some((Fault::Refuse, _)) => Err(Error::Unavailable("agent refuses calls (simulated failure)".into())),
            _ => Ok(()),
        }
    }

    /// How long to hold back a StartJob reply now.
    pub fn reply_delay(&self) -> Option<Duration> {
        match self.current() {
            Some((Fault::Delay(d), _)) => Some(d),
            _ => None,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(Fault, Instant)>> {
        self.active.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
