//! Managing what an agent holds: listing jobs with their activity (sp_help_job), pushing and
//! deleting jobs, and pushing packages, each validated before it is stored.

use std::collections::HashMap;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use switchyard_package::LoadError;
use switchyard_package::load::LoadOptions;
use switchyard_proto as pb;

use crate::error::Error;
use crate::jobs::{package_errors, parse_job, safe_relative_path};
use crate::model::RunStatus;
use crate::package_cache::{package_file, pushed_packages_dir};
use crate::runtime::{AgentRuntime, JobSource};
use crate::store::Write;
use crate::wire;

/// Every job with its activity, running and queued counts, and last outcome.
pub async fn list_jobs(runtime: &AgentRuntime) -> Result<Vec<pb::JobSummary>, Error> {
    let latest: HashMap<String, _> =
        runtime.store.latest_runs_by_job().await?.into_iter().map(|r| (r.job.clone(), r)).collect();
    let active = runtime.active_runs();
    let mut out = Vec::new();
    for entry in runtime.jobs() {
        let def = &entry.definition;
        let mine: Vec<_> = active.values().filter(|r| r.job == def.name).collect();
        let running = mine.iter().filter(|r| r.status != RunStatus::Queued).count() as u32;
        let queued = mine.len() as u32 - running;
        let activity = if mine.iter().any(|r| r.status == RunStatus::Running) {
            pb::JobActivity::Executing
        } else if mine.iter().any(|r| r.status == RunStatus::BetweenRetries) {
            pb::JobActivity::BetweenRetries
        } else if queued > 0 {
            pb::JobActivity::Waiting
        } else {
            pb::JobActivity::Idle
        };
        let last = latest.get(&def.name);
        let last_outcome = match last.map(|r| r.status) {
            Some(RunStatus::Succeeded) => pb::JobOutcome::Succeeded,
            Some(RunStatus::Failed) => pb::JobOutcome::Failed,
            Some(RunStatus::Canceled) => pb::JobOutcome::Canceled,
            _ => pb::JobOutcome::Unknown,
        };
        out.push(pb::JobSummary {
            name: def.name.clone(),
            description: def.description.clone().unwrap_or_default(),
            activity: activity as i32,
            running,
            queued,
            concurrency: def.concurrency.name().to_string(),
            steps: def.steps.len() as u32,
            last_outcome: last_outcome as i32,
            last_run_started_at: last.and_then(|r| r.started_at).map(wire::timestamp),
            last_run_ended_at: last.and_then(|r| r.ended_at).map(wire::timestamp),
            last_run_duration_ms: last.and_then(|r| r.duration_ms).unwrap_or_default(),
            last_run_id: last.map(|r| r.run_id.clone()).unwrap_or_default(),
            source: entry.source.as_str().to_string(),
            hash: def.hash.clone(),
            current_step: mine.iter().map(|r| r.current_step).max().unwrap_or_default(),
        });
    }
    Ok(out)
}

/// Validates a job definition (and that its packages are here and load), stores it, and makes
/// it startable. Returns (name, hash, created).
pub async fn upsert_job(runtime: &AgentRuntime, text: &str) -> Result<(String, String, bool), Error> {
    let definition = parse_job(text, "definition").map_err(|errors| {
        Error::InvalidArgument(errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))
    })?;
    // The whole definition, packages included, is checked before anything is replaced.
    let problems = package_errors(&definition, "definition", &|path| package_file(&runtime.config, path));
    if !problems.is_empty() {
        return Err(Error::InvalidArgument(problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")));
    }
    runtime
        .store
        .write(vec![Write::UpsertJob {
            name: definition.name.clone(),
            definition: text.to_string(),
            hash: definition.hash.clone(),
        }])
        .await?;
    let (name, hash) = (definition.name.clone(), definition.hash.clone());
    let created = runtime.put_job(Arc::new(definition), JobSource::Pushed);
    tracing::info!(job = %name, %hash, created, "job stored");
    Ok((name, hash, created))
}

/// Deletes a pushed job that is not running.
pub async fn delete_job(runtime: &AgentRuntime, name: &str) -> Result<(), Error> {
    let entry = runtime
        .job(name)
        .ok_or_else(|| Error::UnknownJob { job: name.to_string(), agent: runtime.name().to_string() })?;
    if entry.source == JobSource::File {
        return Err(Error::FailedPrecondition(format!(
            "job \"{name}\" comes from a file in jobs_dir; remove the file and restart the agent instead"
        )));
    }
    if runtime.active_runs().values().any(|r| r.job == name) {
        return Err(Error::FailedPrecondition(format!("job \"{name}\" is running; stop it first (StopJob)")));
    }
    runtime.store.write(vec![Write::DeleteJob { name: name.to_string() }]).await?;
    runtime.remove_job(name);
    Ok(())
}

/// Validates a package (with the children it references among those already here) and stores
/// it under the agent's pushed packages. Returns its hash.
pub async fn put_package(runtime: &AgentRuntime, name: &str, content: &str) -> Result<String, Error> {
    let relative = safe_relative_path(name).map_err(|e| Error::InvalidArgument(format!("name: {e}")))?;
    let dir = pushed_packages_dir(&runtime.config.data_dir);
    let target = dir.join(&relative);
    let folder = target.parent().unwrap_or(&dir).to_path_buf();
    std::fs::create_dir_all(&folder)
        .map_err(|e| Error::InvalidArgument(format!("name: cannot create {}: {e}", folder.display())))?;
    // Validate in place (so relative child paths resolve) under a temporary name, then rename.
    let staging = folder.join(format!(
        ".{}.staging-{}",
        relative.file_name().map_or_else(String::new, |f| f.to_string_lossy().into_owned()),
        uuid::Uuid::new_v4()
    ));
    std::fs::write(&staging, content)
        .map_err(|e| Error::InvalidArgument(format!("cannot write {}: {e}", staging.display())))?;
    let options = LoadOptions { limits: runtime.config.limits.clone(), root: Some(dir.clone()) };
    let checked = switchyard_package::load::load_package_text_with(&target, content, &options);
    if let Err(e) = checked {
        let _ = std::fs::remove_file(&staging);
        return Err(Error::InvalidArgument(match e {
            LoadError::Invalid(diagnostics) => format!("content: the package is invalid:\n{diagnostics}"),
            other => format!("content: {other}"),
        }));
    }
    std::fs::rename(&staging, &target)
        .map_err(|e| Error::InvalidArgument(format!("cannot store {}: {e}", target.display())))?;
    // A pushed package may shadow one of packages_dir that runs have cached.
    runtime.packages.clear();
    let hash = hex::encode(Sha256::digest(content.as_bytes()));
    runtime
        .store
        .write(vec![Write::PutPackage { name: name.to_string(), content: content.to_string(), hash: hash.clone() }])
        .await?;
    tracing::info!(package = %name, %hash, "package stored");
    Ok(hash)
}
