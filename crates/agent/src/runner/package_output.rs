//! What a package step keeps as its output: what the package's process tasks printed, each
//! stream under a `[task path]` header in the order the tasks ended, capped like a command
//! step's output. (`switchyard logs RUN` shows it; the tasks' results are in the history.)

use std::sync::{Arc, Mutex};

use switchyard_package::engine::{OutputObserver, ProcessOutput};

/// Collects the process tasks' output of one package run.
#[derive(Clone, Default)]
pub(crate) struct PackageOutput {
    outputs: Arc<Mutex<Vec<ProcessOutput>>>,
}

impl PackageOutput {
    /// The observer to hand to the engine.
    pub fn observer(&self) -> OutputObserver {
        let outputs = self.outputs.clone();
        Arc::new(move |output| outputs.lock().unwrap_or_else(|p| p.into_inner()).push(output))
    }

    /// stdout, stderr and whether either was cut, at most `cap` bytes each.
    pub fn finish(&self, cap: usize) -> (String, String, bool) {
        let outputs = std::mem::take(&mut *self.outputs.lock().unwrap_or_else(|p| p.into_inner()));
        let (stdout, cut_out) = labelled(outputs.iter().map(|o| (o.path.as_str(), o.stdout.as_str())), cap);
        let (stderr, cut_err) = labelled(outputs.iter().map(|o| (o.path.as_str(), o.stderr.as_str())), cap);
        (stdout, stderr, cut_out || cut_err || outputs.iter().any(|o| o.truncated))
    }
}

/// Each non-empty stream under its task's header; cut at `cap` bytes on a char boundary.
fn labelled<'a>(streams: impl Iterator<Item = (&'a str, &'a str)>, cap: usize) -> (String, bool) {
    let mut text = String::new();
    for (path, stream) in streams.filter(|(_, stream)| !stream.is_empty()) {
        text.push_str(&format!("[{path}]\n{stream}"));
        if !stream.ends_with('\n') {
            text.push('\n');
        }
    }
    if text.len() <= cap {
        return (text, false);
    }
    let mut end = cap;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    (text, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn output(path: &str, stdout: &str, stderr: &str) -> ProcessOutput {
        ProcessOutput { path: path.into(), stdout: stdout.into(), stderr: stderr.into(), truncated: false }
    }

    #[test]
    fn each_task_prints_under_its_path_in_the_order_it_ended() {
        let collected = PackageOutput::default();
        let observer = collected.observer();
        observer(output("Extract", "3 rows\n", ""));
        observer(output("Child/Load", "loaded", "warning: slow\n"));
        let (stdout, stderr, truncated) = collected.finish(1 << 20);
        assert_eq!(stdout, "[Extract]\n3 rows\n[Child/Load]\nloaded\n");
        assert_eq!(stderr, "[Child/Load]\nwarning: slow\n");
        assert!(!truncated);
    }

    #[test]
    fn output_past_the_cap_is_cut_and_says_so() {
        let collected = PackageOutput::default();
        collected.observer()(output("A", "ééééé", ""));
        let (stdout, _, truncated) = collected.finish(8);
        assert_eq!(stdout, "[A]\néé", "cut on a char boundary");
        assert!(truncated);
    }
}
