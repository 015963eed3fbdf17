//! Switchyard coordinator: runs parent packages and fans agent jobs out to agents.
//!
//! For now it holds what the `switchyard` command line shares; the registry, placement,
//! executions and the gRPC service come with the coordinator issues.
