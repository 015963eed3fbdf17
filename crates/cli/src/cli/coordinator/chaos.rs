//! `switchyard chaos --agent NAME crash|hang|refuse|delay`: make an agent fail on purpose, for
//! tests and drills. The coordinator only says where the agent is; the fault is asked of the
//! agent itself, which accepts it only when started with `allow_fault_injection = true`.

use std::time::Duration;

use switchyard_proto::agent_client::AgentClient;
use switchyard_proto::{FaultKind, InjectFaultRequest};
use tonic::{Code, Status};

use super::agents::agents;
use super::connect::{Address, Coordinator, CoordinatorArg, connect_channel, is_transient, request, status_text};
use super::{Failure, exit, finish};
use crate::cli::progress::format_ms;

/// Arguments of `switchyard chaos`.
#[derive(Debug, clap::Args)]
pub struct ChaosArgs {
    /// The agent's name (`switchyard agents` lists them).
    #[arg(long, value_name = "NAME")]
    pub agent: String,
    /// crash: the agent aborts at once (like kill -9); hang: it stops answering; refuse: it
    /// answers every call with UNAVAILABLE; delay: it holds back each StartJob reply.
    #[arg(value_enum)]
    pub fault: Fault,
    /// How long hang, refuse or delay last (like 10s, 500ms, 2m); the agent's default is 10 s.
    #[arg(long = "for", value_name = "DURATION", value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// With delay: how long each StartJob reply is held back; the agent's default is 5 s.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub delay: Option<Duration>,
    #[command(flatten)]
    pub coordinator: CoordinatorArg,
}

/// The faults an agent can simulate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Fault {
    /// The agent process aborts at once.
    Crash,
    /// Every call waits without an answer.
    Hang,
    /// Every call is refused with UNAVAILABLE.
    Refuse,
    /// StartJob answers late.
    Delay,
}

impl Fault {
    fn kind(self) -> FaultKind {
        match self {
            Fault::Crash => FaultKind::Crash,
            Fault::Hang => FaultKind::Hang,
            Fault::Refuse => FaultKind::Refuse,
            Fault::Delay => FaultKind::Delay,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Fault::Crash => "crash",
            Fault::Hang => "hang",
            Fault::Refuse => "refuse",
            Fault::Delay => "delay",
        }
    }
}

/// Runs the command: 0 the agent took the fault, 1 it did not (or was not found), 6 bad command line.
pub async fn run(args: ChaosArgs) -> u8 {
    finish(chaos(args).await)
}

/// Parses a fault duration such as `10s`, `500ms` or `1m 30s`: at least 1 ms.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(text.trim())
        .map_err(|e| format!("`{text}` is not a duration ({e}); write it like 10s, 500ms or 2m"))?;
    if duration < Duration::from_millis(1) {
        return Err(format!("`{text}` is too short; give at least 1ms"));
    }
    if u64::try_from(duration.as_millis()).is_err() {
        return Err(format!("`{text}` is too long"));
    }
    Ok(duration)
}

/// The fault request, or why the flags do not fit the fault.
fn fault_request(args: &ChaosArgs) -> Result<InjectFaultRequest, Failure> {
    if args.fault == Fault::Crash && args.duration.is_some() {
        return Err(Failure::usage("--for does not apply to crash: a crashed agent stays down until restarted"));
    }
    if args.fault != Fault::Delay && args.delay.is_some() {
        return Err(Failure::usage(format!(
            "--delay applies only to the delay fault, not {}; use --for for how long it lasts",
            args.fault.name()
        )));
    }
    let millis = |d: Option<Duration>| d.map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    Ok(InjectFaultRequest {
        kind: args.fault.kind() as i32,
        duration_ms: millis(args.duration),
        delay_ms: millis(args.delay),
    })
}

async fn chaos(args: ChaosArgs) -> Result<u8, Failure> {
    let fault = fault_request(&args)?;
    let name = &args.agent;
    let coordinator = Coordinator::connect(&args.coordinator.coordinator).await?;
    let known = agents(&coordinator).await?;
    let Some(agent) = known.iter().find(|a| a.name == *name) else {
        return Err(Failure::call(format!(
            "the coordinator at {} knows no agent named \"{name}\"; `switchyard agents` lists them",
            coordinator.address()
        )));
    };
    let address = Address::parse(&agent.address, &format!("agent \"{name}\"'s address"))
        .map_err(|f| Failure::call(format!("{}, as the coordinator reports it", f.message)))?;
    let channel = connect_channel(&address).await.map_err(|why| {
        Failure::call(format!(
            "cannot reach agent \"{name}\" at {}: {why}; is it up? (`switchyard agents` shows its state)",
            address.given
        ))
    })?;
    let mut client = AgentClient::new(channel);
    let answer = tokio::time::timeout(super::connect::CALL_DEADLINE, client.inject_fault(request(fault))).await;
    let answer = match answer {
        Ok(result) => result.map(tonic::Response::into_inner),
        Err(_) => Err(Status::deadline_exceeded("no answer")),
    };
    match answer {
        Ok(answer) => {
            match answer.message.as_str() {
                "" => println!("agent {name}: {}", describe(&args)),
                message => println!("{message}"),
            }
            Ok(exit::SUCCESS)
        }
        // A crash may take the agent down before its answer is out: the lost answer is the proof.
        Err(status) if args.fault == Fault::Crash && is_transient(status.code()) => {
            println!("agent {name}: crashed ({})", status_text(&status));
            Ok(exit::SUCCESS)
        }
        Err(status) if status.code() == Code::PermissionDenied => Err(Failure::call(format!(
            "agent \"{name}\" refuses fault injection: {}; set allow_fault_injection = true in its agent.toml and \
             restart it",
            status_text(&status)
        ))),
        Err(status) => Err(Failure::call(format!(
            "agent \"{name}\" at {} did not take the {} fault: {}",
            address.given,
            args.fault.name(),
            status_text(&status)
        ))),
    }
}

/// What was asked, when the agent's answer says nothing.
fn describe(args: &ChaosArgs) -> String {
    let lasting = |d: Option<Duration>, default: &str| {
        d.map_or_else(|| default.to_string(), |d| format_ms(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)))
    };
    match args.fault {
        Fault::Crash => "crashing".to_string(),
        Fault::Delay => format!(
            "delaying StartJob replies by {} for {}",
            lasting(args.delay, "5 s"),
            lasting(args.duration, "10 s")
        ),
        fault => format!("{} for {}", fault.name(), lasting(args.duration, "10 s")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(fault: Fault, duration: Option<&str>, delay: Option<&str>) -> ChaosArgs {
        ChaosArgs {
            agent: "server-a".into(),
            fault,
            duration: duration.map(|d| parse_duration(d).expect("valid")),
            delay: delay.map(|d| parse_duration(d).expect("valid")),
            coordinator: CoordinatorArg { coordinator: "127.0.0.1:7600".into() },
        }
    }

    #[test]
    fn durations_read_like_the_config_files() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration(" 2m "), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1m 30s"), Ok(Duration::from_secs(90)));
        assert!(parse_duration("10").unwrap_err().contains("write it like 10s"));
        assert!(parse_duration("soon").unwrap_err().contains("not a duration"));
        assert!(parse_duration("0s").unwrap_err().contains("at least 1ms"));
        assert!(parse_duration("500us").unwrap_err().contains("at least 1ms"));
    }

    #[test]
    fn the_request_carries_milliseconds_and_zero_for_the_agents_defaults() {
        let request = fault_request(&args(Fault::Delay, Some("30s"), Some("2s"))).expect("fits");
        assert_eq!(request.kind, FaultKind::Delay as i32);
        assert_eq!((request.duration_ms, request.delay_ms), (30_000, 2_000));
        let request = fault_request(&args(Fault::Hang, None, None)).expect("fits");
        assert_eq!((request.kind, request.duration_ms, request.delay_ms), (FaultKind::Hang as i32, 0, 0));
    }

    #[test]
    fn flags_that_do_not_fit_the_fault_are_a_bad_command_line() {
        let failure = fault_request(&args(Fault::Crash, Some("10s"), None)).unwrap_err();
        assert_eq!(failure.exit_code, 6);
        assert!(failure.message.contains("--for"), "{}", failure.message);
        let failure = fault_request(&args(Fault::Refuse, None, Some("1s"))).unwrap_err();
        assert_eq!(failure.exit_code, 6);
        assert!(failure.message.contains("--delay"), "{}", failure.message);
    }
}
