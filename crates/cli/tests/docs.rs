//! Every ```toml block of docs/*.md and deploy/README.md is loaded with the real loader, so no
//! example can rot.
//!
//! The line before each block (blank lines aside) must be a marker:
//!
//! - `<!-- check: package -->`: a package file, loaded (with the child packages it names) by
//!   switchyard_package's loader; `<!-- check: package as=children/extract.toml -->` also
//!   writes the block at that path, so other blocks of the same page can reference it;
//! - `<!-- check: job -->`: a job file, read by the agent's job reader;
//! - `<!-- check: agent-config -->`, `<!-- check: coordinator-config -->`: loaded by the
//!   agent's and the coordinator's config loaders (without the process environment);
//! - `<!-- check: fragment -->`: a partial snippet, only parsed as TOML;
//! - `<!-- check: invalid KIND "text" -->`: must be refused by KIND's loader, with an error
//!   containing `text` (optional).
//!
//! An unmarked block fails the test.

use std::path::{Path, PathBuf};

use switchyard_agent::config::{AgentConfig, ConfigOverrides as AgentOverrides};
use switchyard_coordinator::config::{ConfigOverrides as CoordinatorOverrides, CoordinatorConfig};
use switchyard_settings::Settings;

/// One ```toml block and what its marker says.
struct Block {
    /// `docs/packages.md:120` (the fence's line).
    at: String,
    kind: String,
    invalid: bool,
    /// With `invalid`: text the error must contain.
    expect: Option<String>,
    /// With `as=PATH`: where the block is written for other blocks to use.
    file: Option<String>,
    text: String,
}

fn docs_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs")
}

fn blocks(path: &Path, problems: &mut Vec<String>) -> Vec<Block> {
    let folder = path.parent().and_then(Path::file_name).unwrap_or_default().to_string_lossy();
    let name = format!("{folder}/{}", path.file_name().unwrap_or_default().to_string_lossy());
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i].trim_start();
        if !line.starts_with("```") {
            i += 1;
            continue;
        }
        let info = line.trim_start_matches('`').trim();
        let fence_line = i + 1;
        let mut end = i + 1;
        while end < lines.len() && !lines[end].trim_start().starts_with("```") {
            end += 1;
        }
        if info == "toml" {
            let at = format!("{name}:{fence_line}");
            let body = lines[i + 1..end.min(lines.len())].join("\n") + "\n";
            let marker = lines[..i].iter().rev().find(|l| !l.trim().is_empty()).map(|l| l.trim());
            match marker.and_then(|m| m.strip_prefix("<!-- check:")).and_then(|m| m.strip_suffix("-->")) {
                Some(spec) => match parse_marker(spec.trim()) {
                    Ok((kind, invalid, expect, file)) => {
                        out.push(Block { at, kind, invalid, expect, file, text: body })
                    }
                    Err(e) => problems.push(format!("{at}: bad marker: {e}")),
                },
                None => problems.push(format!(
                    "{at}: a ```toml block without a marker; put `<!-- check: package|job|agent-config|coordinator-config|fragment -->` (or `<!-- check: invalid KIND -->`) on the line before it"
                )),
            }
        }
        i = end + 1;
    }
    out
}

type Marker = (String, bool, Option<String>, Option<String>);

fn parse_marker(spec: &str) -> Result<Marker, String> {
    let (spec, expect) = match spec.find('"') {
        Some(q) => {
            let rest = &spec[q + 1..];
            let close = rest.rfind('"').ok_or("unclosed quote")?;
            (spec[..q].trim(), Some(rest[..close].to_string()))
        }
        None => (spec, None),
    };
    let mut words = spec.split_whitespace();
    let mut kind = words.next().ok_or("empty marker")?.to_string();
    let invalid = kind == "invalid";
    if invalid {
        kind = words.next().ok_or("`invalid` needs a kind")?.to_string();
    }
    let mut file = None;
    for word in words {
        match word.strip_prefix("as=") {
            Some(path) => file = Some(path.to_string()),
            None => return Err(format!("unknown word `{word}`")),
        }
    }
    if !["package", "job", "agent-config", "coordinator-config", "fragment"].contains(&kind.as_str()) {
        return Err(format!("unknown kind `{kind}`"));
    }
    if expect.is_some() && !invalid {
        return Err("an expected message goes with `invalid` only".into());
    }
    Ok((kind, invalid, expect, file))
}

/// Loads a block with its kind's loader; Err is the loader's message.
fn load(block: &Block, dir: &Path, index: usize) -> Result<(), String> {
    let file = match &block.file {
        Some(f) => dir.join(f),
        None => dir.join(format!("block-{index}.toml")),
    };
    match block.kind.as_str() {
        "package" => {
            std::fs::write(&file, &block.text).map_err(|e| e.to_string())?;
            switchyard_package::load_package(&file).map(|_| ()).map_err(|e| e.to_string())
        }
        "job" => switchyard_jobs::parse_job(&block.text, &block.at)
            .map(|_| ())
            .map_err(|errors| errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")),
        "agent-config" => {
            std::fs::write(&file, &block.text).map_err(|e| e.to_string())?;
            AgentConfig::load(Some(&file), Vec::<(String, String)>::new(), AgentOverrides::default())
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
        "coordinator-config" => {
            std::fs::write(&file, &block.text).map_err(|e| e.to_string())?;
            CoordinatorConfig::load(Some(&file), Vec::<(String, String)>::new(), CoordinatorOverrides::default())
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
        _ => block.text.parse::<toml::Table>().map(|_| ()).map_err(|e| e.to_string()),
    }
}

#[test]
fn every_toml_example_in_docs_loads() {
    let mut pages: Vec<PathBuf> = std::fs::read_dir(docs_dir())
        .expect("docs/ exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    pages.sort();
    // deploy/README.md walks operators through configs too.
    pages.push(docs_dir().join("../deploy/README.md"));
    let mut problems = Vec::new();
    let mut checked = 0;
    for page in &pages {
        let blocks = blocks(page, &mut problems);
        let dir = tempfile::tempdir().expect("temp dir");
        // Companion files first, so a parent may come before its child on the page.
        for block in &blocks {
            if let Some(file) = &block.file {
                let path = dir.path().join(file);
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).expect("mkdir");
                }
                std::fs::write(&path, &block.text).expect("write companion file");
            }
        }
        for (index, block) in blocks.iter().enumerate() {
            checked += 1;
            match (load(block, dir.path(), index), block.invalid) {
                (Ok(()), false) => {}
                (Err(e), false) => problems.push(format!("{}: {} example does not load:\n{e}", block.at, block.kind)),
                (Ok(()), true) => {
                    problems.push(format!("{}: marked invalid, but the {} loader accepts it", block.at, block.kind))
                }
                (Err(e), true) => {
                    if let Some(expect) = &block.expect
                        && !e.contains(expect.as_str())
                    {
                        problems.push(format!("{}: refused, but the error does not say \"{expect}\":\n{e}", block.at));
                    }
                }
            }
        }
    }
    assert!(checked > 0, "no ```toml block found under docs/");
    assert!(problems.is_empty(), "{} problem(s) in docs/:\n\n{}", problems.len(), problems.join("\n\n"));
}
