//! The package files `run --coordinator` and `deploy` send: a package and every child package it
//! references by a literal path in `package` tasks, transitively, each named by its path relative
//! to one root folder (`/`-separated, never leaving it).

use std::collections::HashSet;
use std::path::{Component, Path, PathBuf};

use switchyard_package::{Package, Task, TaskKind};
use switchyard_proto::PackageFile;

/// A package and the child packages it references.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PackageTree {
    /// Absolute paths without `.` or `..`, each once, children before the packages that
    /// reference them (so a receiver that validates in order finds every child first).
    pub files: Vec<PathBuf>,
    /// `package` tasks whose child path is an expression: their child cannot be sent.
    pub dynamic: Vec<DynamicChild>,
}

/// A `package` task whose child is known only at run time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DynamicChild {
    /// The package file holding the task.
    pub file: PathBuf,
    /// The task path (`Stage/Run child`).
    pub task: String,
    /// The path template as written.
    pub path: String,
}

/// Walks a loaded package (containers and loop bodies included) for the children it references.
pub fn package_tree(package: &Package) -> PackageTree {
    let mut tree = PackageTree::default();
    let mut seen = HashSet::new();
    visit(package, &mut tree, &mut seen);
    tree
}

/// The deepest folder holding every file; the root `run --coordinator` names files against.
pub fn common_folder(files: &[PathBuf]) -> PathBuf {
    let mut folders = files.iter().map(|f| f.parent().unwrap_or(f));
    let Some(first) = folders.next() else {
        return PathBuf::new();
    };
    let mut common: Vec<Component<'_>> = first.components().collect();
    for folder in folders {
        let shared = common.iter().zip(folder.components()).take_while(|(a, b)| **a == *b).count();
        common.truncate(shared);
    }
    common.into_iter().collect()
}

/// `file` relative to `root`, with `/` separators; None when it lies outside `root`.
pub fn wire_path(file: &Path, root: &Path) -> Option<String> {
    let relative = file.strip_prefix(root).ok()?;
    let parts: Vec<String> = relative
        .components()
        .map(|c| match c {
            Component::Normal(part) => Some(part.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect::<Option<_>>()?;
    (!parts.is_empty()).then(|| parts.join("/"))
}

/// Reads every file of the tree, named relative to `root`.
pub fn read_files(tree: &PackageTree, root: &Path) -> Result<Vec<PackageFile>, String> {
    tree.files
        .iter()
        .map(|file| {
            let path = wire_path(file, root).ok_or_else(|| {
                format!("package file {} lies outside {}, so it cannot be sent", file.display(), root.display())
            })?;
            let content = std::fs::read_to_string(file)
                .map_err(|e| format!("cannot read package file {}: {e}", file.display()))?;
            Ok(PackageFile { path, content })
        })
        .collect()
}

/// `path` made absolute (against the current folder) with `.` and `..` resolved by name, as the
/// package loader joins a child path onto its parent's folder.
pub fn normalize(path: &Path) -> PathBuf {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut out = PathBuf::new();
    for component in absolute.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push(component);
                }
            }
            other => out.push(other),
        }
    }
    out
}

fn visit(package: &Package, tree: &mut PackageTree, seen: &mut HashSet<PathBuf>) {
    let file = normalize(&package.file);
    // Marked before the walk: the loader refuses cycles, and this keeps a cycle finite anyway.
    if !seen.insert(file.clone()) {
        return;
    }
    visit_tasks(&package.tasks, "", &file, tree, seen);
    tree.files.push(file);
}

fn visit_tasks(tasks: &[Task], prefix: &str, file: &Path, tree: &mut PackageTree, seen: &mut HashSet<PathBuf>) {
    for task in tasks {
        let path = if prefix.is_empty() { task.name.clone() } else { format!("{prefix}/{}", task.name) };
        match &task.kind {
            TaskKind::Sql(sql) => {
                // A statement file travels with its package (the coordinator loads it again).
                if let Some(statement_file) = &sql.statement.file {
                    let statement_file = normalize(statement_file);
                    if seen.insert(statement_file.clone()) {
                        tree.files.push(statement_file);
                    }
                }
            }
            TaskKind::Package(child_task) => match &child_task.child {
                Some(child) => visit(child, tree, seen),
                None => tree.dynamic.push(DynamicChild {
                    file: file.to_path_buf(),
                    task: path,
                    path: child_task.path.source().to_string(),
                }),
            },
            kind => {
                if let Some(children) = kind.children() {
                    visit_tasks(children, &path, file, tree, seen);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use switchyard_package::load_package;

    use super::*;

    fn package(name: &str, tasks: &str) -> String {
        format!("[package]\nname = \"{name}\"\n\n[parameters]\nwhich = \"x.toml\"\n\n{tasks}")
    }

    fn package_task(name: &str, path: &str) -> String {
        format!("[[tasks]]\nname = \"{name}\"\nkind = \"package\"\npath = \"{path}\"\n\n")
    }

    fn write(root: &Path, relative: &str, text: &str) -> PathBuf {
        let path = root.join(relative);
        std::fs::create_dir_all(path.parent().expect("a file has a folder")).expect("create folder");
        std::fs::write(&path, text).expect("write package");
        path
    }

    /// The tree's files named against its common folder, in order.
    fn names(parent: &Path) -> (Vec<String>, String, PackageTree) {
        let loaded = load_package(parent).expect("the test packages are valid");
        let tree = package_tree(&loaded.package);
        let root = common_folder(&tree.files);
        let names = tree.files.iter().map(|f| wire_path(f, &root).expect("under the root")).collect();
        (names, wire_path(&normalize(parent), &root).expect("under the root"), tree)
    }

    #[test]
    fn children_in_containers_and_grandchildren_are_collected_once_children_first() {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path();
        let sequence = "[[tasks]]\nname = \"Stage\"\nkind = \"sequence\"\n\n[[tasks.tasks]]\nname = \"Again\"\n\
                        kind = \"package\"\npath = \"children/a.toml\"\n\n";
        let loop_ = "[[tasks]]\nname = \"Each\"\nkind = \"foreach\"\nitems = [1, 2]\nvar = \"i\"\n\n\
                     [[tasks.tasks]]\nname = \"Shared\"\nkind = \"package\"\npath = \"./shared/b.toml\"\n\n";
        let parent = write(
            root,
            "parent.toml",
            &package("parent", &format!("{}{sequence}{loop_}", package_task("Run A", "children/a.toml"))),
        );
        write(root, "children/a.toml", &package("a", &package_task("Run B", "../shared/b.toml")));
        write(
            root,
            "shared/b.toml",
            &package("b", "[[tasks]]\nname = \"Nap\"\nkind = \"sleep\"\nduration = \"1ms\"\n"),
        );

        let (names, parent_name, tree) = names(&parent);
        assert_eq!(names, vec!["shared/b.toml", "children/a.toml", "parent.toml"]);
        assert_eq!(parent_name, "parent.toml");
        assert!(tree.dynamic.is_empty());

        let files = read_files(&tree, &common_folder(&tree.files)).expect("readable");
        assert_eq!(files[2].path, "parent.toml");
        assert!(files[2].content.contains("name = \"parent\""));
    }

    #[test]
    fn a_child_outside_the_parents_folder_moves_the_root_up_to_the_common_folder() {
        let dir = tempfile::tempdir().expect("temp dir");
        let parent =
            write(dir.path(), "app/parent.toml", &package("parent", &package_task("Run C", "../common/c.toml")));
        write(dir.path(), "common/c.toml", &package("c", ""));

        let (names, parent_name, _) = names(&parent);
        assert_eq!(names, vec!["common/c.toml", "app/parent.toml"]);
        assert_eq!(parent_name, "app/parent.toml");
    }

    #[test]
    fn a_child_path_given_by_an_expression_is_reported_not_sent() {
        let dir = tempfile::tempdir().expect("temp dir");
        let parent = write(dir.path(), "parent.toml", &package("parent", &package_task("Pick", "{{ params.which }}")));

        let (names, _, tree) = names(&parent);
        assert_eq!(names, vec!["parent.toml"]);
        assert_eq!(tree.dynamic.len(), 1);
        assert_eq!(tree.dynamic[0].task, "Pick");
        assert_eq!(tree.dynamic[0].path, "{{ params.which }}");
    }

    #[test]
    fn paths_are_normalized_by_name_and_named_with_slashes() {
        assert_eq!(normalize(Path::new("/a/./b/../c/d.toml")), PathBuf::from("/a/c/d.toml"));
        assert_eq!(wire_path(Path::new("/a/c/d.toml"), Path::new("/a")).as_deref(), Some("c/d.toml"));
        assert_eq!(wire_path(Path::new("/b/d.toml"), Path::new("/a")), None);
        assert_eq!(common_folder(&[PathBuf::from("/a/b/x.toml"), PathBuf::from("/a/c/y.toml")]), PathBuf::from("/a"));
        assert_eq!(common_folder(&[PathBuf::from("/a/b/x.toml")]), PathBuf::from("/a/b"));
    }
}
