//! The `[limits]` section both agent.toml and coordinator.toml accept (DESIGN.md §11): bounds on
//! everything whose size a caller controls, each with a default, each refused with an error that
//! names the limit and its value ([`Limits::refusal`]).

use std::time::Duration;

use serde::Deserialize;

/// The coordinator's default gRPC message limit.
pub const COORDINATOR_GRPC_MESSAGE: usize = 64 << 20;
/// An agent's default gRPC message limit.
pub const AGENT_GRPC_MESSAGE: usize = 16 << 20;

/// Every key of `[limits]`.
pub const KEYS: &[&str] = &[
    "grpc_message",
    "package_file",
    "package_tasks",
    "nesting",
    "expression",
    "expression_steps",
    "expression_time",
    "output",
    "name",
    "parameters",
    "value",
    "field",
    "idle_timeout",
];

/// Bounds on input (sizes in bytes unless said otherwise).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// The largest gRPC message a server decodes; the service's own default when unset
    /// (64 MiB on the coordinator, 16 MiB on agents).
    pub grpc_message: Option<usize>,
    /// The largest package file read.
    pub package_file: usize,
    /// Tasks in one package file (loops add iterations at run time, not tasks).
    pub package_tasks: usize,
    /// Containers nested in containers.
    pub nesting: usize,
    /// The longest expression source, in bytes.
    pub expression: usize,
    /// The work one evaluation may do: steps counted by the expression's cost bound (each
    /// comprehension multiplies its body by the length of what it iterates).
    pub expression_steps: u64,
    /// The wall-clock budget of one evaluation, on its blocking thread.
    #[serde(with = "crate::duration")]
    pub expression_time: Duration,
    /// Captured output kept per stream and step (the rest dropped, marked truncated).
    pub output: usize,
    /// The longest name of a task, job, agent or package, in characters.
    pub name: usize,
    /// Parameters of a package or a request.
    pub parameters: usize,
    /// The longest parameter value in a request.
    pub value: usize,
    /// The longest other string field of a request (ids, keys, requested_by, names).
    pub field: usize,
    /// A client connection that sends nothing for this long is closed.
    #[serde(with = "crate::duration")]
    pub idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            grpc_message: None,
            package_file: 16 << 20,
            package_tasks: 100_000,
            nesting: 64,
            expression: 4 << 10,
            expression_steps: 1_000_000,
            expression_time: Duration::from_secs(2),
            output: 1 << 20,
            name: 128,
            parameters: 1_000,
            value: 64 << 10,
            field: 1 << 10,
            idle_timeout: Duration::from_secs(60),
        }
    }
}

impl Limits {
    /// The gRPC message limit, or `service_default` when none is configured.
    pub fn grpc_message_or(&self, service_default: usize) -> usize {
        self.grpc_message.unwrap_or(service_default)
    }

    /// Rules: every bound above zero.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        let sizes = [
            ("package_file", self.package_file),
            ("package_tasks", self.package_tasks),
            ("nesting", self.nesting),
            ("expression", self.expression),
            ("output", self.output),
            ("name", self.name),
            ("parameters", self.parameters),
            ("value", self.value),
            ("field", self.field),
            ("grpc_message", self.grpc_message.unwrap_or(1)),
            ("expression_steps", usize::from(self.expression_steps > 0)),
        ];
        for (key, value) in sizes {
            if value == 0 {
                return Err((key, "must be at least 1".into()));
            }
        }
        for (key, value) in [("expression_time", self.expression_time), ("idle_timeout", self.idle_timeout)] {
            if value.is_zero() {
                return Err((key, "must be longer than 0, like \"60s\"".into()));
            }
        }
        Ok(())
    }

    /// Checks one string field of a request (an id, a key, a caller) against `field`.
    pub fn check_field(&self, name: &str, text: &str) -> Result<(), String> {
        match text.len() {
            len if len > self.field => Err(Self::refusal(name, len, "field", self.field, "bytes")),
            _ => Ok(()),
        }
    }

    /// Checks several string fields of a request, `(name, text)`, against `field`.
    pub fn check_fields(&self, fields: &[(&str, &str)]) -> Result<(), String> {
        fields.iter().try_for_each(|(name, text)| self.check_field(name, text))
    }

    /// Refuses an empty required field of a request, naming it and what to give (an empty id is
    /// a bad request, not an unknown one).
    pub fn require(field: &str, value: &str, what: &str) -> Result<(), String> {
        match value.is_empty() {
            true => Err(format!("{field}: give {what}")),
            false => Ok(()),
        }
    }

    /// Checks one parameter value of `len` bytes against `value`.
    pub fn check_value(&self, parameter: &str, len: usize) -> Result<(), String> {
        if len > self.value {
            let what = format!("parameter value of `{}`", parameter.chars().take(64).collect::<String>());
            return Err(Self::refusal(&what, len, "value", self.value, "bytes"));
        }
        Ok(())
    }

    /// Checks how many parameters a request carries against `parameters`.
    pub fn check_parameter_count(&self, count: usize) -> Result<(), String> {
        match count {
            count if count > self.parameters => {
                Err(Self::refusal("parameters", count, "parameters", self.parameters, "parameters"))
            }
            _ => Ok(()),
        }
    }

    /// The words of a refusal: `value is 70000 bytes, over the limit value = 65536 bytes`.
    pub fn refusal(what: &str, found: usize, limit: &str, value: usize, unit: &str) -> String {
        format!("{what} is {found} {unit}, over the limit {limit} = {value} {unit} ([limits] in the config)")
    }

    /// Checks a name of a task, job, agent or package: at most [`Limits::name`] characters,
    /// no `/`, `\`, NUL or `..`. `what` names it in the message.
    pub fn check_name(&self, name: &str, what: &str) -> Result<(), String> {
        let chars = name.chars().count();
        if chars > self.name {
            return Err(format!(
                "{what} \"{}…\" is {chars} characters, over the limit name = {} characters",
                name.chars().take(32).collect::<String>(),
                self.name
            ));
        }
        if name.contains(['/', '\\', '\0']) || name.contains("..") {
            return Err(format!("{what} \"{}\" must not contain `/`, `\\`, NUL or `..`", name.replace('\0', "\\0")));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_those_of_design_section_11() {
        let limits = Limits::default();
        assert_eq!(limits.grpc_message_or(COORDINATOR_GRPC_MESSAGE), 64 << 20);
        assert_eq!(limits.grpc_message_or(AGENT_GRPC_MESSAGE), 16 << 20);
        assert_eq!(limits.package_file, 16 << 20);
        assert_eq!(limits.package_tasks, 100_000);
        assert_eq!(limits.nesting, 64);
        assert_eq!(limits.expression, 4096);
        assert_eq!(limits.output, 1 << 20);
        assert_eq!(limits.name, 128);
        assert_eq!(limits.parameters, 1000);
        assert_eq!(limits.value, 65536);
        assert_eq!(limits.field, 1024);
        assert_eq!(limits.idle_timeout, Duration::from_secs(60));
        assert_eq!(limits.check(), Ok(()));
    }

    #[test]
    fn names_are_bounded_and_refuse_separators() {
        let limits = Limits::default();
        assert_eq!(limits.check_name("Load orders", "task name"), Ok(()));
        let long = limits.check_name(&"n".repeat(129), "task name").expect_err("too long");
        assert!(long.contains("over the limit name = 128 characters"), "{long}");
        for bad in ["a/b", "a\\b", "a\0b", "..", "a..b"] {
            let e = limits.check_name(bad, "job name").expect_err(bad);
            assert!(e.contains("must not contain"), "{e}");
        }
    }

    #[test]
    fn a_zero_limit_is_refused_naming_it() {
        let limits = Limits { field: 0, ..Limits::default() };
        assert_eq!(limits.check().map_err(|(k, _)| k), Err("field"));
    }

    #[test]
    fn request_fields_values_and_counts_are_refused_naming_the_limit() {
        let limits = Limits { field: 4, value: 8, parameters: 2, ..Limits::default() };
        assert_eq!(limits.check_field("caller", "four"), Ok(()));
        let second = limits.check_fields(&[("run_id", "ok"), ("job", "toolong")]).expect_err("over field");
        assert!(second.starts_with("job is 7 bytes"), "{second}");
        let field = limits.check_field("caller", "fives").expect_err("over field");
        assert!(field.starts_with("caller is 5 bytes, over the limit field = 4 bytes"), "{field}");
        let value = limits.check_value("region", 9).expect_err("over value");
        assert!(value.contains("parameter value of `region` is 9 bytes") && value.contains("value = 8"), "{value}");
        assert_eq!(limits.check_parameter_count(2), Ok(()));
        assert!(limits.check_parameter_count(3).expect_err("over").contains("parameters = 2"));
    }
}
