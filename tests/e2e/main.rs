//! End-to-end tests: the real binaries run as separate processes, one module per scenario.

mod agent;
mod agent_admin;
mod agent_concurrency;
mod agent_config_refusal;
mod agent_durability;
mod agent_history;
mod agent_limits;
mod coordinator;
mod coordinator_cli;
mod coordinator_failures;
mod coordinator_outcomes;
mod coordinator_placement;
mod coordinator_resume;
mod coordinator_shutdown;
mod failures;
mod failures_durable_fencing;
mod failures_failover;
mod failures_restarts;
mod failures_starts;
mod limits;
mod nemesis;
mod ops_browser;
mod ops_http;
mod run_cli;
mod secrets;
mod tls;
