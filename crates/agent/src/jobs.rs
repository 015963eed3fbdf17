//! The agent's jobs: definitions read by `switchyard-jobs` (re-exported here), and the check of
//! an agent's own jobs_dir before it serves.

pub use switchyard_jobs::*;

use crate::config::AgentConfig;

/// [`load_job_files`] for an agent's configuration (pushed packages first, then packages_dir),
/// the check `switchyard-agent` makes before it binds its address.
pub fn check_job_files(config: &AgentConfig) -> Result<Vec<JobDefinition>, JobFilesRefused> {
    load_job_files(&config.jobs_dir, |path| crate::package_cache::package_file(config, path))
}
