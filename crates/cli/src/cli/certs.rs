//! `switchyard certs init DIR --agent NAME... [--host H...] [--days N]` (DESIGN.md §11): a CA
//! and the certificates of a cluster, made with rcgen. Server certificates (the coordinator's,
//! each agent's) name `localhost`, `127.0.0.1`, their own name and every `--host`; every
//! certificate names its role in a SAN URI `switchyard://role/NAME`; keys are written 0600.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    SanType,
};
use switchyard_settings::check_name;

use super::exit;

/// How long certificates are valid unless `--days` says otherwise.
pub const DEFAULT_DAYS: u32 = 365;

/// `switchyard certs ...`.
#[derive(Debug, clap::Subcommand)]
pub enum CertsCommand {
    /// Write a new CA and the certificates of a cluster into DIR: ca.pem, ca-key.pem and, each
    /// as X.pem and X-key.pem, coordinator, agent-NAME per --agent, operator and reader.
    ///
    /// Server certificates (coordinator, agents) name localhost, 127.0.0.1, their own name and
    /// every --host; each certificate's role is a SAN URI switchyard://role/NAME. Keys are
    /// written 0600. Existing files are never overwritten. Exit codes: 0 written, 1 a file
    /// could not be written, 6 bad command line.
    Init(InitArgs),
}

/// Arguments of `switchyard certs init`.
#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// The folder to write into (created if missing; files already there are not overwritten).
    pub dir: PathBuf,
    /// An agent's name (its agent.toml `name`); repeat for each agent.
    #[arg(long = "agent", value_name = "NAME", required = true)]
    pub agents: Vec<String>,
    /// Another host name or IP address the servers are reached at; repeat for each.
    #[arg(long = "host", value_name = "H")]
    pub hosts: Vec<String>,
    /// Days the certificates are valid.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_DAYS, value_parser = clap::value_parser!(u32).range(1..=36500))]
    pub days: u32,
}

/// Runs the command and returns the exit code.
pub fn run(command: CertsCommand) -> u8 {
    match command {
        CertsCommand::Init(args) => match init(&args) {
            Ok(()) => exit::SUCCESS,
            Err((code, message)) => {
                eprintln!("error: {message}");
                code
            }
        },
    }
}

/// One certificate to issue: its file stem, common name, role and DNS/IP names.
struct Subject {
    stem: String,
    common_name: String,
    role: &'static str,
    server_names: Vec<String>,
}

fn init(args: &InitArgs) -> Result<(), (u8, String)> {
    let usage = |message: String| (exit::BAD_COMMAND_LINE, message);
    let failed = |message: String| (exit::FAILURE, message);
    for agent in &args.agents {
        check_name(agent, "agent name").map_err(|e| usage(format!("--agent: {e}")))?;
    }
    let subjects = subjects(args);
    let mut stems: Vec<&str> = vec!["ca"];
    stems.extend(subjects.iter().map(|s| s.stem.as_str()));
    if let Some(duplicate) = stems.iter().enumerate().find(|(i, s)| stems[..*i].contains(s)).map(|(_, s)| s) {
        return Err(usage(format!("--agent names {duplicate} twice")));
    }
    std::fs::create_dir_all(&args.dir).map_err(|e| failed(format!("cannot create {}: {e}", args.dir.display())))?;
    for stem in &stems {
        for file in [format!("{stem}.pem"), format!("{stem}-key.pem")] {
            let path = args.dir.join(&file);
            if path.exists() {
                return Err(failed(format!(
                    "{} exists; certs init never overwrites: choose an empty folder (to rotate, write the new set \
                     elsewhere, copy it into place and send SIGHUP)",
                    path.display()
                )));
            }
        }
    }
    let (not_before, not_after) = validity(args.days);
    let generate = |what: &str| KeyPair::generate().map_err(|e| failed(format!("cannot make the {what} key: {e}")));
    let ca_key = generate("CA")?;
    let mut ca = CertificateParams::default();
    ca.distinguished_name = rcgen::DistinguishedName::new();
    ca.distinguished_name.push(DnType::CommonName, "switchyard CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    ca.not_before = not_before;
    ca.not_after = not_after;
    let ca_certificate = ca.self_signed(&ca_key).map_err(|e| failed(format!("cannot make the CA: {e}")))?;
    write(&args.dir, "ca.pem", &ca_certificate.pem(), 0o644).map_err(failed)?;
    write(&args.dir, "ca-key.pem", &ca_key.serialize_pem(), 0o600).map_err(failed)?;
    let issuer = Issuer::new(ca, ca_key);
    for subject in &subjects {
        let key = generate(&subject.stem)?;
        let params = leaf(subject, not_before, not_after).map_err(|e| failed(format!("{}: {e}", subject.stem)))?;
        let certificate = params
            .signed_by(&key, &issuer)
            .map_err(|e| failed(format!("cannot sign the {} certificate: {e}", subject.stem)))?;
        write(&args.dir, &format!("{}.pem", subject.stem), &certificate.pem(), 0o644).map_err(failed)?;
        write(&args.dir, &format!("{}-key.pem", subject.stem), &key.serialize_pem(), 0o600).map_err(failed)?;
    }
    print_next_steps(&args.dir, &args.agents, args.days);
    Ok(())
}

fn subjects(args: &InitArgs) -> Vec<Subject> {
    let server = |own: &str| {
        let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string(), own.to_string()];
        for host in &args.hosts {
            if !names.contains(host) {
                names.push(host.clone());
            }
        }
        names
    };
    let mut subjects = vec![Subject {
        stem: "coordinator".into(),
        common_name: "coordinator".into(),
        role: "coordinator",
        server_names: server("coordinator"),
    }];
    for agent in &args.agents {
        subjects.push(Subject {
            stem: format!("agent-{agent}"),
            common_name: agent.clone(),
            role: "agent",
            server_names: server(agent),
        });
    }
    for role in ["operator", "reader"] {
        subjects.push(Subject { stem: role.into(), common_name: role.into(), role, server_names: Vec::new() });
    }
    subjects
}

/// A certificate the CA signs: servers are clients too (the coordinator dials agents, agents
/// register), so they get both key purposes.
fn leaf(
    subject: &Subject,
    not_before: time::OffsetDateTime,
    not_after: time::OffsetDateTime,
) -> Result<CertificateParams, rcgen::Error> {
    let mut params = CertificateParams::new(subject.server_names.clone())?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, subject.common_name.as_str());
    params.subject_alt_names.push(SanType::URI(format!("switchyard://role/{}", subject.role).try_into()?));
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    if !subject.server_names.is_empty() {
        params.extended_key_usages.push(ExtendedKeyUsagePurpose::ServerAuth);
    }
    params.use_authority_key_identifier_extension = true;
    params.not_before = not_before;
    params.not_after = not_after;
    Ok(params)
}

/// From an hour ago (clocks differ a little) to `days` from now.
fn validity(days: u32) -> (time::OffsetDateTime, time::OffsetDateTime) {
    let now = time::OffsetDateTime::now_utc();
    (now - time::Duration::hours(1), now + time::Duration::days(i64::from(days)))
}

/// Writes a new file with `mode` (never over an existing one).
fn write(dir: &Path, file: &str, text: &str, mode: u32) -> Result<(), String> {
    let path = dir.join(file);
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&path)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    out.write_all(text.as_bytes()).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn print_next_steps(dir: &Path, agents: &[String], days: u32) {
    let d = dir.display();
    println!("wrote a CA and certificates valid for {days} days in {d}");
    println!();
    println!("next: give each process its files ([tls] paths are relative to the config file)");
    println!(
        "  coordinator.toml  [tls] ca = \"{d}/ca.pem\"  cert = \"{d}/coordinator.pem\"  key = \"{d}/coordinator-key.pem\""
    );
    for agent in agents {
        println!(
            "  agent.toml of {agent}  [tls] ca = \"{d}/ca.pem\"  cert = \"{d}/agent-{agent}.pem\"  key = \"{d}/agent-{agent}-key.pem\""
        );
    }
    println!("  operators         switchyard --ca {d}/ca.pem --cert {d}/operator.pem --key {d}/operator-key.pem ...");
    println!("  read-only users   switchyard --ca {d}/ca.pem --cert {d}/reader.pem --key {d}/reader-key.pem ...");
    println!();
    println!("keep ca-key.pem offline: whoever has it can make certificates of any role");
}
