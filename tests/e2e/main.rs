//! End-to-end tests: the real binaries run as separate processes, one module per scenario.

mod run_cli;
