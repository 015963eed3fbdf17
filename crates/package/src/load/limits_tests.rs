//! The `[limits]` the loader checks (DESIGN.md §11), each refused naming the limit and its value,
//! and child package paths confined to a root.

use std::path::Path;

use switchyard_settings::Limits;

use super::{LoadError, LoadOptions, load_package_text_with, load_package_with};

fn refused(text: &str, options: &LoadOptions) -> String {
    match load_package_text_with(Path::new("limits.toml"), text, options) {
        Ok(_) => panic!("loaded:\n{text}"),
        Err(e) => e.to_string(),
    }
}

fn with(limits: Limits) -> LoadOptions {
    LoadOptions { limits, root: None }
}

fn process(name: &str) -> String {
    format!("[[tasks]]\nname = \"{name}\"\nkind = \"process\"\ncommand = [\"true\"]\n")
}

#[test]
fn an_expression_over_4_kib_is_refused_at_load_naming_the_limit() {
    let long = format!("params.a == \"{}\"", "x".repeat(4100));
    let text = format!(
        "[package]\nname = \"p\"\n[parameters]\na = \"\"\n{}[[tasks]]\nname = \"b\"\nkind = \"sleep\"\nduration = \"0s\"\nafter = [{{ task = \"a\", when = '{long}' }}]\n",
        process("a")
    );
    let e = refused(&text, &LoadOptions::default());
    assert!(e.contains("over the limit expression = 4096 bytes"), "{e}");
}

#[test]
fn a_nested_comprehension_over_literal_lists_is_refused_at_load_naming_the_budget() {
    let list = format!("[{}]", (0..300).map(|i| i.to_string()).collect::<Vec<_>>().join(","));
    let when = format!("{list}.all(a, {list}.all(b, {list}.all(c, a + b + c >= 0)))");
    let text = format!(
        "[package]\nname = \"p\"\n{}[[tasks]]\nname = \"b\"\nkind = \"sleep\"\nduration = \"0s\"\nafter = [{{ task = \"a\", when = \"{when}\" }}]\n",
        process("a")
    );
    let e = refused(&text, &LoadOptions::default());
    assert!(e.contains("over the budget expression_steps = 1000000"), "{e}");
}

#[test]
fn names_are_bounded_and_refuse_dot_dot_and_backslash() {
    let long = "n".repeat(129);
    let e = refused(&format!("[package]\nname = \"p\"\n{}", process(&long)), &LoadOptions::default());
    assert!(e.contains("over the limit name = 128 characters"), "{e}");
    let e = refused(&format!("[package]\nname = \"p\"\n{}", process("a..b")), &LoadOptions::default());
    assert!(e.contains("must not contain"), "{e}");
    let e = refused("[package]\nname = 'a\\b'\n", &LoadOptions::default());
    assert!(e.contains("package name"), "{e}");
}

#[test]
fn parameters_tasks_nesting_and_file_size_are_bounded() {
    let params = "[package]\nname = \"p\"\n[parameters]\na = 1\nb = 2\nc = 3\n";
    let e = refused(params, &with(Limits { parameters: 2, ..Limits::default() }));
    assert!(e.contains("over the limit parameters = 2 parameters"), "{e}");

    let tasks = format!("[package]\nname = \"p\"\n{}{}{}", process("a"), process("b"), process("c"));
    let e = refused(&tasks, &with(Limits { package_tasks: 2, ..Limits::default() }));
    assert!(e.contains("over the limit package_tasks = 2 tasks"), "{e}");

    let nested = "[package]\nname = \"p\"\n[[tasks]]\nname = \"s\"\nkind = \"sequence\"\n[[tasks.tasks]]\nname = \"t\"\nkind = \"sequence\"\n[[tasks.tasks.tasks]]\nname = \"u\"\nkind = \"sleep\"\nduration = \"0s\"\n";
    let e = refused(nested, &with(Limits { nesting: 1, ..Limits::default() }));
    assert!(e.contains("over the limit nesting = 1 levels"), "{e}");
    assert!(load_package_text_with(Path::new("n.toml"), nested, &LoadOptions::default()).is_ok());

    let e = refused(&tasks, &with(Limits { package_file: 10, ..Limits::default() }));
    assert!(e.contains("over the limit package_file = 10 bytes"), "{e}");
}

#[test]
fn with_a_root_child_paths_stay_inside_it_and_errors_do_not_echo_other_files() {
    let outside = tempfile::tempdir().expect("tempdir");
    let secret = outside.path().join("secret.toml");
    std::fs::write(&secret, "token = \"hunter2\"\n").expect("write");
    let root = tempfile::tempdir().expect("tempdir");
    let inner = root.path().join("inner");
    std::fs::create_dir(&inner).expect("mkdir");
    for path in [secret.display().to_string(), "../../secret.toml".to_string(), "../inner/x.toml".to_string()] {
        let parent = inner.join("parent.toml");
        let text = format!("[package]\nname = \"p\"\n[[tasks]]\nname = \"c\"\nkind = \"package\"\npath = \"{path}\"\n");
        std::fs::write(&parent, &text).expect("write");
        let options = LoadOptions { root: Some(root.path().to_path_buf()), ..LoadOptions::default() };
        let e = match load_package_with(&parent, &options) {
            Ok(_) => panic!("{path} loaded"),
            Err(e) => e.to_string(),
        };
        assert!(e.contains("is refused"), "{path}: {e}");
        assert!(!e.contains("hunter2") && !e.contains("token"), "{e}");
    }
    // Without a root (a local `switchyard run`), the same absolute path is read.
    let parent = inner.join("parent.toml");
    let text = format!(
        "[package]\nname = \"p\"\n[[tasks]]\nname = \"c\"\nkind = \"package\"\npath = \"{}\"\n",
        secret.display()
    );
    std::fs::write(&parent, text).expect("write");
    assert!(matches!(load_package_with(&parent, &LoadOptions::default()), Err(LoadError::Invalid(_))));
}
