//! `switchyard deploy --agent NAME|--pool P JOBFILE`: push a job definition and the packages its
//! steps run (with the child packages those reference) to agents through the coordinator.

use std::collections::HashSet;
use std::path::{Component, Path, PathBuf};

use switchyard_package::load_package;
use switchyard_proto::{DeployJobRequest, PackageFile};
use tonic::Code;

use super::connect::{Coordinator, CoordinatorArg, request};
use super::package_files::{normalize, package_tree, read_files};
use super::{Failure, exit, finish};

/// Arguments of `switchyard deploy`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["agent", "pool"])))]
pub struct DeployArgs {
    /// Deploy to this agent (by name; `switchyard agents` lists them).
    #[arg(long, value_name = "NAME")]
    pub agent: Option<String>,
    /// Deploy to every agent with this label.
    #[arg(long, value_name = "LABEL")]
    pub pool: Option<String>,
    /// The job definition (a job TOML file, as in an agent's jobs_dir).
    ///
    /// Each step's `package = "PATH"` is read from PATH relative to the job file's folder or,
    /// when it is not there (or is the job file itself), relative to a `packages/` folder next
    /// to that folder (the layout `jobs/load.toml` + `packages/load.toml`). The child packages
    /// a package references by a literal path go along, named relative to the same folder; they
    /// may not lie outside it. Packages are sent children first, then the job.
    #[arg(value_name = "JOBFILE")]
    pub job_file: PathBuf,
    #[command(flatten)]
    pub coordinator: CoordinatorArg,
}

/// Runs the command: 0 deployed everywhere, 1 any agent failed (or nothing could be sent),
/// 6 bad command line.
pub async fn run(args: DeployArgs) -> u8 {
    finish(deploy(args).await)
}

async fn deploy(args: DeployArgs) -> Result<u8, Failure> {
    let file = &args.job_file;
    let text = std::fs::read_to_string(file).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Failure::call(format!("job file {} not found; check the path", file.display())),
        _ => Failure::call(format!("cannot read job file {}: {e}", file.display())),
    })?;
    // The whole definition is checked here, before any agent's package is replaced.
    if let Err(errors) = switchyard_jobs::parse_job(&text, &file.display().to_string()) {
        let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
        return Err(Failure::call(format!(
            "the job definition is invalid; nothing was deployed\n{}",
            lines.join("\n")
        )));
    }
    let steps = step_packages(&text).map_err(|e| Failure::call(format!("{}: {e}", file.display())))?;
    let packages = collect_packages(file, &steps)?;

    let coordinator = Coordinator::connect(&args.coordinator.coordinator).await?;
    let target = match (&args.agent, &args.pool) {
        (Some(agent), _) => format!("agent named \"{agent}\""),
        (None, pool) => format!("agent in pool \"{}\"", pool.as_deref().unwrap_or_default()),
    };
    let deploy = DeployJobRequest {
        agent: args.agent.clone().unwrap_or_default(),
        pool: args.pool.clone().unwrap_or_default(),
        job: text,
        packages,
    };
    let answer =
        coordinator.call(coordinator.client().deploy_job(request(deploy))).await.map_err(|status| {
            match status.code() {
                Code::NotFound => Failure::call(format!(
                    "the coordinator at {} knows no {target}: {}; `switchyard agents` lists them",
                    coordinator.address(),
                    status.message()
                )),
                _ => coordinator.explain(&status),
            }
        })?;
    if answer.targets.is_empty() {
        return Err(Failure::call(format!(
            "the coordinator at {} found no {target}; `switchyard agents` lists them",
            coordinator.address()
        )));
    }
    for t in &answer.targets {
        let outcome = if t.ok { "ok" } else { "failed" };
        match t.message.as_str() {
            "" => println!("{}: {outcome}", t.agent),
            message => println!("{}: {outcome}: {message}", t.agent),
        }
    }
    let deployed = answer.targets.iter().filter(|t| t.ok).count();
    eprintln!("deployed job \"{}\" to {deployed} of {} agent(s)", answer.job, answer.targets.len());
    Ok(if deployed == answer.targets.len() { exit::SUCCESS } else { exit::FAILURE })
}

/// The `package` of every step, with its index, from the job's TOML text.
fn step_packages(text: &str) -> Result<Vec<(usize, String)>, String> {
    let job: toml::Table = toml::from_str(text).map_err(|e| format!("not a valid job definition: {e}"))?;
    let Some(steps) = job.get("steps") else {
        return Ok(Vec::new());
    };
    let steps = steps.as_array().ok_or("`steps` must be a list of tables ([[steps]])")?;
    let mut packages = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        match step.get("package") {
            None => {}
            Some(toml::Value::String(path)) => packages.push((i, path.clone())),
            Some(_) => return Err(format!("steps[{i}].package must be a string naming a package file")),
        }
    }
    Ok(packages)
}

/// The folder a step's package path is read against: the job file's folder, else `packages/`
/// next to it; None when the file is in neither. The job file itself never counts: a job and
/// its package often share a name (`jobs/load.toml` runs `packages/load.toml`).
fn package_base(job_file: &Path, package: &str) -> Option<PathBuf> {
    let job_file = normalize(job_file);
    let job_folder = job_file.parent()?;
    let beside = job_folder.to_path_buf();
    let packages = job_folder.parent().map(|up| up.join("packages"));
    std::iter::once(beside).chain(packages).find(|base| {
        let candidate = base.join(package);
        candidate.is_file() && normalize(&candidate) != job_file
    })
}

/// Reads every step's package and its children, each once, named as the agent will store them.
fn collect_packages(file: &Path, steps: &[(usize, String)]) -> Result<Vec<PackageFile>, Failure> {
    let job_folder = normalize(file).parent().map(Path::to_path_buf).unwrap_or_default();
    let mut packages = Vec::new();
    let mut names = HashSet::new();
    for (i, name) in steps {
        let field = format!("{}: steps[{i}].package", file.display());
        if !is_plain_relative(name) {
            return Err(Failure::call(format!(
                "{field}: `{name}` must be a relative path without `..`: agents keep packages under their packages dir"
            )));
        }
        let Some(base) = package_base(file, name) else {
            let next_to = job_folder.parent().map(|up| up.join("packages"));
            let second = next_to.map(|p| format!(" nor under {}", p.display())).unwrap_or_default();
            return Err(Failure::call(format!(
                "{field}: package \"{name}\" is neither under {}{second}",
                job_folder.display()
            )));
        };
        let path = base.join(name);
        let loaded = load_package(&path).map_err(|e| {
            eprintln!("{e}");
            Failure::call(format!(
                "{field}: package {} is invalid; fix it before deploying (`switchyard validate {}` checks it)",
                path.display(),
                path.display()
            ))
        })?;
        let tree = package_tree(&loaded.package);
        for dynamic in &tree.dynamic {
            eprintln!(
                "warning: {}: task \"{}\" names its child package by an expression (`{}`), so it is not deployed",
                dynamic.file.display(),
                dynamic.task,
                dynamic.path
            );
        }
        let files = read_files(&tree, &base).map_err(|e| {
            Failure::call(format!(
                "{e}: the packages a job runs must lie under {}, where it names them from",
                base.display()
            ))
        })?;
        for f in files {
            if names.insert(f.path.clone()) {
                packages.push(f);
            }
        }
    }
    Ok(packages)
}

fn is_plain_relative(path: &str) -> bool {
    let path = Path::new(path);
    !path.as_os_str().is_empty() && path.components().all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
}

#[cfg(test)]
mod tests {
    use super::*;

    const JOB: &str = r#"
name = "load_customers"

[[steps]]
name = "load"
package = "load_customers.toml"

[[steps]]
name = "notify"
command = ["true"]

[[steps]]
name = "again"
package = "sub/other.toml"
"#;

    const PACKAGE: &str = "[package]\nname = \"p\"\n";

    #[test]
    fn steps_name_their_packages_and_commands_are_skipped() {
        let packages = step_packages(JOB).expect("valid");
        assert_eq!(packages, vec![(0, "load_customers.toml".to_string()), (2, "sub/other.toml".to_string())]);
        assert_eq!(step_packages("name = \"x\"\n").expect("no steps"), vec![]);
        assert!(step_packages("[[steps]]\npackage = 3\n").unwrap_err().contains("steps[0].package"));
        assert!(step_packages("steps = \"x\"").unwrap_err().contains("list of tables"));
    }

    #[test]
    fn packages_are_found_beside_the_job_first_then_in_packages_next_to_the_jobs_folder() {
        let dir = tempfile::tempdir().expect("temp dir");
        let jobs = dir.path().join("jobs");
        let packages = dir.path().join("packages");
        std::fs::create_dir_all(packages.join("sub")).expect("folders");
        std::fs::create_dir_all(&jobs).expect("folders");
        std::fs::write(packages.join("load_customers.toml"), PACKAGE).expect("write");
        std::fs::write(packages.join("sub/other.toml"), PACKAGE).expect("write");
        let job = jobs.join("job.toml");
        std::fs::write(&job, JOB).expect("write");
        assert_eq!(package_base(&job, "load_customers.toml"), Some(packages.clone()));

        std::fs::write(jobs.join("load_customers.toml"), PACKAGE).expect("write");
        assert_eq!(package_base(&job, "load_customers.toml"), Some(jobs.clone()));
        assert_eq!(package_base(&job, "missing.toml"), None);

        let steps = step_packages(JOB).expect("valid");
        let files = collect_packages(&job, &steps).expect("found");
        let names: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(names, vec!["load_customers.toml", "sub/other.toml"]);
    }

    #[test]
    fn a_job_file_is_never_taken_for_the_package_of_the_same_name() {
        let dir = tempfile::tempdir().expect("temp dir");
        let jobs = dir.path().join("jobs");
        let packages = dir.path().join("packages");
        std::fs::create_dir_all(&jobs).expect("folders");
        std::fs::create_dir_all(&packages).expect("folders");
        std::fs::write(jobs.join("load.toml"), JOB).expect("write");
        std::fs::write(packages.join("load.toml"), PACKAGE).expect("write");
        assert_eq!(package_base(&jobs.join("load.toml"), "load.toml"), Some(packages));
    }

    #[test]
    fn package_paths_leaving_the_packages_dir_are_refused() {
        assert!(is_plain_relative("a/b.toml"));
        assert!(is_plain_relative("./b.toml"));
        assert!(!is_plain_relative("../b.toml"));
        assert!(!is_plain_relative("/etc/b.toml"));
        assert!(!is_plain_relative(""));
    }

    #[tokio::test]
    async fn an_invalid_job_is_refused_whole_before_anything_is_sent() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("job.toml");
        std::fs::write(&file, "name = \"j\"\nconcurrency = \"often\"\n[[steps]]\nname = \"s\"\nretry_attempts = -1\ncommand = [\"true\"]\n")
            .expect("write");
        // No coordinator listens there: the refusal must come before any call.
        let coordinator = CoordinatorArg { coordinator: "127.0.0.1:1".to_string() };
        let args = DeployArgs { agent: Some("a".to_string()), pool: None, job_file: file.clone(), coordinator };
        let failure = deploy(args).await.expect_err("refused");
        assert!(
            failure.message.starts_with("the job definition is invalid; nothing was deployed"),
            "{}",
            failure.message
        );
        let name = file.display();
        assert!(failure.message.contains(&format!("{name}:2:15: concurrency:")), "{}", failure.message);
        assert!(failure.message.contains(&format!("{name}:5:18: steps[0].retry_attempts:")), "{}", failure.message);
    }
}
