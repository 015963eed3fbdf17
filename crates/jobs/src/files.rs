//! A jobs dir checked whole, as an agent starts with it: every file of jobs_dir parses and every
//! package its steps run loads, or the agent refuses to start naming every problem together
//! (bad configuration is refused, not half-served).

use std::fmt;

use switchyard_package::LoadError;
use switchyard_package::load::load_package;

use super::*;

/// Why an agent refuses its jobs_dir: every problem of every file, in file then line order.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub struct JobFilesRefused {
    /// The jobs_dir that was read.
    pub dir: PathBuf,
    /// At least one; each names its file, line, column and field.
    pub errors: Vec<JobError>,
}

impl fmt::Display for JobFilesRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut files: Vec<&str> = self.errors.iter().map(|e| e.origin.as_str()).collect();
        files.dedup();
        write!(
            f,
            "{} invalid job file(s) in jobs_dir {} ({}); fix them and start the agent again",
            files.len(),
            self.dir.display(),
            files.join(", ")
        )?;
        for error in &self.errors {
            write!(f, "\n  {error}")?;
        }
        Ok(())
    }
}

/// Loads every job file of `dir` ([`load_jobs_dir`]) and checks that the package of every
/// package step loads, `package_file` telling where a step's package lives. Any problem refuses
/// the whole dir.
pub fn load_job_files(
    dir: &Path,
    package_file: impl Fn(&str) -> PathBuf,
) -> Result<Vec<JobDefinition>, JobFilesRefused> {
    let (jobs, mut errors) = read_jobs_dir(dir);
    for (origin, job) in &jobs {
        errors.extend(package_errors(job, origin, &package_file));
    }
    if errors.is_empty() {
        return Ok(jobs.into_iter().map(|(_, job)| job).collect());
    }
    // Stable: a file's own errors keep their line order.
    errors.sort_by(|a, b| a.origin.cmp(&b.origin));
    Err(JobFilesRefused { dir: dir.to_path_buf(), errors })
}

/// The problems of the packages `job`'s steps run, each placed at the step's `package` value.
/// `origin` names the job's file ("definition" for a pushed one).
pub fn package_errors(job: &JobDefinition, origin: &str, package_file: &impl Fn(&str) -> PathBuf) -> Vec<JobError> {
    let mut reader = Reader::new(&job.text, origin);
    for (i, step) in job.steps.iter().enumerate() {
        let StepWork::Package { path, .. } = &step.work else { continue };
        let message = match load_package(&package_file(path)) {
            Ok(_) => continue,
            Err(LoadError::NotFound(_)) => {
                format!(
                    "package \"{path}\" is neither in packages_dir nor pushed; add it or push it (`switchyard deploy`)"
                )
            }
            Err(LoadError::Invalid(diagnostics)) => format!("package \"{path}\" is invalid:\n{diagnostics}"),
            Err(other) => format!("package \"{path}\": {other}"),
        };
        reader.error(package_offset(&job.text, i), &format!("steps[{i}].package"), message);
    }
    reader.errors
}

/// The byte offset of `steps[index].package` in a job text that parsed.
fn package_offset(text: &str, index: usize) -> usize {
    let Ok(root) = DeTable::parse(text) else { return 0 };
    let step = root.get_ref().get("steps").and_then(|steps| match steps.get_ref() {
        DeValue::Array(items) => items.get(index).map(|item| (item.span().start, item.get_ref())),
        _ => None,
    });
    match step {
        Some((_, DeValue::Table(table))) => table.get("package").map_or(0, |v| v.span().start),
        Some((at, _)) => at,
        None => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "name = \"good\"\n[[steps]]\nname = \"s\"\npackage = \"p.toml\"\n";
    const BAD: &str = "name = \"bad\"\ntimeout = 5\n[[steps]]\nname = \"s\"\ncommand = [\"true\"]\n";

    fn dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("temp dir");
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).expect("write");
        }
        dir
    }

    #[test]
    fn every_bad_file_is_named_together_and_nothing_is_served() {
        let jobs = dir_with(&[("a.toml", BAD), ("b.toml", GOOD), ("c.toml", BAD.replace("bad", "worse").as_str())]);
        let packages = dir_with(&[]);
        let refused = load_job_files(jobs.path(), |p| packages.path().join(p)).expect_err("refused");
        let shown: Vec<String> = refused.errors.iter().map(ToString::to_string).collect();
        assert_eq!(shown.len(), 3, "{shown:#?}");
        assert!(shown[0].starts_with("a.toml:2:11: timeout: expected a string"), "{shown:#?}");
        assert!(shown[1].starts_with("b.toml:4:11: steps[0].package: package \"p.toml\" is neither"), "{shown:#?}");
        assert!(shown[2].starts_with("c.toml:2:11: timeout:"), "{shown:#?}");
        assert!(refused.to_string().starts_with("3 invalid job file(s) in jobs_dir"), "{refused}");
    }

    #[test]
    fn a_package_that_does_not_load_is_named_with_its_own_errors() {
        let jobs = dir_with(&[("good.toml", GOOD)]);
        let packages = dir_with(&[("p.toml", "[package]\nname = \"p\"\nbogus = 1\n")]);
        let refused = load_job_files(jobs.path(), |p| packages.path().join(p)).expect_err("refused");
        assert_eq!(refused.errors.len(), 1, "{refused}");
        let message = refused.errors[0].to_string();
        assert!(message.contains("p.toml\" is invalid:\n"), "{message}");
        assert!(message.contains("p.toml:3:1"), "{message}");
    }

    #[test]
    fn valid_files_with_their_packages_load() {
        let jobs = dir_with(&[("good.toml", GOOD)]);
        let package = "[package]\nname = \"p\"\n[[tasks]]\nname = \"t\"\nkind = \"sleep\"\nduration = \"0s\"\n";
        let packages = dir_with(&[("p.toml", package)]);
        let loaded = load_job_files(jobs.path(), |p| packages.path().join(p)).expect("valid");
        assert_eq!(loaded.iter().map(|j| j.name.as_str()).collect::<Vec<_>>(), ["good"]);
    }
}
