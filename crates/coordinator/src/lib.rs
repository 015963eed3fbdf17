//! Switchyard coordinator: runs parent packages whose `agent_job` tasks fan job starts out to
//! agents over gRPC, balances them over pools, and records every execution for the Overview
//! report.
