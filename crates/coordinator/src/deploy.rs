//! DeployJob checked whole before anything is pushed: the job definition parses and validates,
//! and every package path is safe and every package loads (its children resolved among the
//! request's own packages), so an invalid request replaces nothing on any agent.

use std::path::Path;

use switchyard_package::LoadError;
use switchyard_package::load::{LoadOptions, load_package_with};
use switchyard_proto as pb;
use switchyard_settings::Limits;

/// Every problem of a DeployJob request's job and packages, one per line; empty when it is
/// valid.
pub fn problems(job: &str, packages: &[pb::PackageFile], limits: &Limits) -> Vec<String> {
    let mut problems: Vec<String> = match switchyard_jobs::parse_job(job, "job") {
        Ok(_) => Vec::new(),
        Err(errors) => errors.iter().map(ToString::to_string).collect(),
    };
    match tempfile::tempdir() {
        Ok(staging) => problems.extend(package_problems(staging.path(), packages, limits)),
        Err(e) => problems.push(format!("packages: cannot stage them for checking: {e}")),
    }
    problems
}

/// Writes the packages under `staging` and loads each there, confined to it.
fn package_problems(staging: &Path, packages: &[pb::PackageFile], limits: &Limits) -> Vec<String> {
    let mut problems = Vec::new();
    let mut written = Vec::new();
    for package in packages {
        let relative = match switchyard_jobs::safe_relative_path(&package.path) {
            Ok(relative) => relative,
            Err(e) => {
                problems.push(format!("packages.path: {e}"));
                continue;
            }
        };
        if package.content.len() > limits.package_file {
            let size = package.content.len();
            problems.push(format!(
                "package \"{}\": {}",
                package.path,
                Limits::refusal("the file", size, "package_file", limits.package_file, "bytes")
            ));
            continue;
        }
        let file = staging.join(&relative);
        let written_ok = file
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::fs::write(&file, &package.content));
        match written_ok {
            Ok(()) => written.push((package.path.as_str(), file)),
            Err(e) => problems.push(format!("package \"{}\": cannot stage it for checking: {e}", package.path)),
        }
    }
    let options = LoadOptions { limits: limits.clone(), root: Some(staging.to_path_buf()) };
    for (path, file) in written {
        match load_package_with(&file, &options) {
            Ok(_) => {}
            Err(LoadError::Invalid(diagnostics)) => {
                // Positions name the request's path, not the staging folder.
                let shown = diagnostics.to_string().replace(&format!("{}/", staging.display()), "");
                problems.push(format!("package \"{path}\" is invalid:\n{shown}"));
            }
            Err(other) => problems.push(format!("package \"{path}\": {other}")),
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    const JOB: &str = "name = \"j\"\n[[steps]]\nname = \"s\"\npackage = \"etl/p.toml\"\n";
    const PACKAGE: &str = "[package]\nname = \"p\"\n[[tasks]]\nname = \"t\"\nkind = \"sleep\"\nduration = \"0s\"\n";

    fn file(path: &str, content: &str) -> pb::PackageFile {
        pb::PackageFile { path: path.into(), content: content.into() }
    }

    #[test]
    fn a_valid_job_with_its_packages_has_no_problems() {
        assert_eq!(problems(JOB, &[file("etl/p.toml", PACKAGE)], &Limits::default()), Vec::<String>::new());
    }

    #[test]
    fn every_problem_of_the_job_and_the_packages_is_named() {
        let job = "name = \"j\"\ntimeout = 5\n";
        let packages = [file("../x.toml", PACKAGE), file("bad.toml", "[package]\nname = \"p\"\nbogus = 1\n")];
        let found = problems(job, &packages, &Limits::default());
        assert!(found.iter().any(|p| p.starts_with("job:2:11: timeout")), "{found:#?}");
        assert!(found.iter().any(|p| p.starts_with("packages.path: `../x.toml`: path traversal")), "{found:#?}");
        let bad = found.iter().find(|p| p.starts_with("package \"bad.toml\" is invalid")).expect("bad.toml named");
        assert!(bad.contains("bad.toml:3:1") && !bad.contains("/tmp"), "{bad}");
    }

    #[test]
    fn a_package_over_the_file_limit_is_refused_naming_the_limit() {
        let limits = Limits { package_file: 10, ..Limits::default() };
        let found = problems(JOB, &[file("etl/p.toml", PACKAGE)], &limits);
        assert!(found.iter().any(|p| p.contains("package_file = 10 bytes")), "{found:#?}");
    }
}
