use switchyard_package::{LoadError, load_package};

fn show(name: &str, text: &str) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("p.toml");
    std::fs::write(&p, text).unwrap();
    println!("=== {name}");
    match load_package(&p) {
        Ok(l) => println!("OK warnings: {}", l.warnings),
        Err(LoadError::Invalid(d)) => println!("{d}"),
        Err(e) => println!("other: {e}"),
    }
}

#[test]
fn probe() {
    show("missing name", "[package]\nname = \"p\"\n\n[[tasks]]\nkind = \"sleep\"\nduration = \"1s\"\n");
    show("nested missing", "[package]\nname = \"p\"\n\n[[tasks]]\nname = \"S\"\nkind = \"sequence\"\n\n  [[tasks.tasks]]\n  kind = \"sleep\"\n");
    show("inline", "[package]\nname = \"p\"\ntasks = [{ kind = \"sleep\" }]\n");
    show("connections", "[package]\nname = \"p\"\n\n[connections.x]\nurl = \"a\"\n");
    show("no package", "tasks = []\n");
    show("empty", "");
    show("pkg header", "[package]\nmax_errors = 1\n");
    show("cycle", "[package]\nname = \"p\"\n\n[[tasks]]\nname = \"A\"\nkind = \"sleep\"\nduration = \"1s\"\nafter = [\"C\"]\n\n[[tasks]]\nname = \"B\"\nkind = \"sleep\"\nduration = \"1s\"\nafter = [\"A\"]\n\n[[tasks]]\nname = \"C\"\nkind = \"sleep\"\nduration = \"1s\"\nafter = [\"B\"]\n");
    show("syntax", "[package]\nname = \"p\nmax_errors = 1\n");
    show("syntax2", "[package]\nname = \"p\"\nmax_errors = \n");
    show("triple", "[package]\nname = \"p\"\n[[tasks]]\nname = \"A\"\nkind = \"process\"\ncommand = [\"\"\"{{ x\"\"\"]\n");
    show("bad tpl", "[package]\nname = \"p\"\n[[tasks]]\nname = \"A\"\nkind = \"process\"\ncommand = [\"echo\", \"x {{ params. }}\"]\n");
    show("bad when", "[package]\nname = \"p\"\n[[tasks]]\nname = \"A\"\nkind = \"sleep\"\nduration = \"1s\"\n[[tasks]]\nname = \"B\"\nkind = \"sleep\"\nduration = \"1s\"\nafter = [{ task = \"A\", when = \"1 +\" }]\n");
    show("warn", "[package]\nname = \"p\"\n[[tasks]]\nname = \"A\"\nkind = \"sleep\"\nduration = \"1s\"\n[[tasks]]\nname = \"B\"\nkind = \"sleep\"\nduration = \"1s\"\nafter = [{ task = \"A\", on = \"failure\" }]\n");
}
