//! The package model: what a loaded, validated package file says, ready to run.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use indexmap::IndexMap;

use crate::expr::{Assignment, Expression, Map};
use crate::template::Template;

mod sql;

pub use sql::{Connection, DatabaseKind, Isolation, SqlStatement, SqlTask, TransactionOption};

/// A loaded and validated package.
#[derive(Debug, Clone)]
pub struct Package {
    /// `package.name`.
    pub name: String,
    /// `package.description`.
    pub description: Option<String>,
    /// The file it was loaded from, as the user named it.
    pub file: PathBuf,
    /// The folder relative paths resolve against (the file's folder).
    pub dir: PathBuf,
    /// MaxConcurrentExecutables: -1 means logical CPUs + 2.
    pub max_concurrent: i64,
    /// MaximumErrorCount of the package; 0 is unlimited.
    pub max_errors: u32,
    /// Parameters with their defaults, in file order. A secret parameter has no default: its
    /// entry is null until `--set` or `SWITCHYARD_PARAM_<NAME>` gives it a value.
    pub parameters: Map,
    /// The names of the parameters declared `[parameters.NAME] secret = true`, in file order:
    /// their values are shown as `***` everywhere the run is recorded (DESIGN.md §11).
    pub secrets: Vec<String>,
    /// The top-level control flow.
    pub tasks: Vec<Task>,
    /// `[connections.NAME]`, in file order.
    pub connections: IndexMap<String, Connection>,
    /// TransactionOption of the package.
    pub transaction: TransactionOption,
    /// IsolationLevel of a transaction the package starts.
    pub isolation: Isolation,
    /// `checkpoint = { file, usage }`: where a run that does not succeed records what did, and
    /// whether the next run restarts from it (SSIS CheckpointFileName and CheckpointUsage).
    pub checkpoint: Option<CheckpointSettings>,
    /// SHA-256 (hex) of this package file's text; with its children's, the package's version.
    pub source_hash: String,
}

impl Package {
    /// True when `name` is declared `secret = true`.
    pub fn is_secret(&self, name: &str) -> bool {
        self.secrets.iter().any(|s| s == name)
    }

    /// The concurrency limit this package runs with on this machine.
    pub fn effective_max_concurrent(&self, override_: Option<i64>) -> usize {
        resolve_max_concurrent(override_.unwrap_or(self.max_concurrent))
    }
}

/// `checkpoint = { file, usage }` of a package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointSettings {
    /// The checkpoint file as written: relative paths resolve against the package's folder.
    pub file: PathBuf,
    /// When a run restarts from the file (`switchyard run --restart` overrides it).
    pub usage: CheckpointUsage,
}

/// CheckpointUsage (dtexec /Restart deny, ifPossible, force).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointUsage {
    /// Run from the start; the file is not read (the default).
    Never,
    /// Restart from the file when it exists, else run from the start.
    IfExists,
    /// Restart from the file; without one the run fails.
    Always,
}

impl CheckpointUsage {
    /// Every value as the package file and `--restart` spell it.
    pub const NAMES: [&'static str; 3] = ["never", "if_exists", "always"];

    /// The value named `name` (`never`, `if_exists`, `always`).
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "never" => Some(Self::Never),
            "if_exists" => Some(Self::IfExists),
            "always" => Some(Self::Always),
            _ => None,
        }
    }

    /// The name the package file and `--restart` use.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Never => "never",
            Self::IfExists => "if_exists",
            Self::Always => "always",
        }
    }
}

/// Turns a MaxConcurrentExecutables value into a slot count: -1 means logical CPUs + 2.
pub fn resolve_max_concurrent(value: i64) -> usize {
    // Asking the OS reads cgroup files each time; every child package run would pay for it.
    static CPUS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    if value < 0 {
        *CPUS.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get())) + 2
    } else {
        usize::try_from(value).unwrap_or(usize::MAX).max(1)
    }
}

/// One executable of a control flow: a task or a container.
#[derive(Debug, Clone)]
pub struct Task {
    /// Unique among its siblings; never contains `/`.
    pub name: String,
    /// Free text.
    pub description: Option<String>,
    /// What it does.
    pub kind: TaskKind,
    /// Precedence constraints on earlier siblings.
    pub after: Vec<Constraint>,
    /// How several constraints combine (LogicalAnd).
    pub join: Join,
    /// A disabled task does not run and counts as success.
    pub disabled: bool,
    /// MaximumErrorCount for containers; 0 is unlimited.
    pub max_errors: u32,
    /// A failure of this task fails its parent container.
    pub fail_parent_on_failure: bool,
    /// A failure of this task fails the package.
    pub fail_package_on_failure: bool,
    /// ForceExecutionResult.
    pub force_result: Option<TaskResult>,
    /// Ends the task (and its process tree) with a failure after this long.
    pub timeout: Option<Duration>,
    /// TransactionOption; a `required` container is one restart unit for checkpoints.
    pub transaction: TransactionOption,
    /// IsolationLevel of a transaction this task or container starts.
    pub isolation: Isolation,
}

/// The kinds of task and container.
#[derive(Debug, Clone)]
pub enum TaskKind {
    /// Runs a command (an argument vector).
    Process(ProcessTask),
    /// Waits.
    Sleep(SleepTask),
    /// Runs a child package in this process.
    Package(PackageTask),
    /// Starts a job on an agent (Execute SQL Server Agent Job task).
    AgentJob(AgentJobTask),
    /// Runs SQL on a connection (Execute SQL task).
    Sql(SqlTask),
    /// Groups tasks.
    Sequence(Container),
    /// Runs its tasks once per item.
    Foreach(ForeachTask),
    /// Runs its tasks while a condition holds.
    For(ForTask),
}

impl TaskKind {
    /// The `kind` string of the package file.
    pub fn name(&self) -> &'static str {
        match self {
            TaskKind::Process(_) => "process",
            TaskKind::Sleep(_) => "sleep",
            TaskKind::Package(_) => "package",
            TaskKind::AgentJob(_) => "agent_job",
            TaskKind::Sql(_) => "sql",
            TaskKind::Sequence(_) => "sequence",
            TaskKind::Foreach(_) => "foreach",
            TaskKind::For(_) => "for",
        }
    }

    /// Every `kind` string [`TaskKind::name`] returns.
    pub const NAMES: [&'static str; 8] =
        ["process", "sleep", "package", "agent_job", "sql", "sequence", "foreach", "for"];

    /// The static kind string equal to `name` (for records read back from storage or the wire).
    pub fn static_name(name: &str) -> Option<&'static str> {
        Self::NAMES.into_iter().find(|known| *known == name)
    }

    /// The tasks a container holds (for loops, the body of one iteration).
    pub fn children(&self) -> Option<&[Task]> {
        match self {
            TaskKind::Sequence(c) => Some(&c.tasks),
            TaskKind::Foreach(f) => Some(&f.body.tasks),
            TaskKind::For(f) => Some(&f.body.tasks),
            _ => None,
        }
    }
}

/// The tasks of a container, in file order.
#[derive(Debug, Clone, Default)]
pub struct Container {
    /// The container's tasks.
    pub tasks: Vec<Task>,
}

/// A `process` task.
#[derive(Debug, Clone)]
pub struct ProcessTask {
    /// The argument vector; the first element is the program.
    pub command: Vec<Template>,
    /// Environment variables added to the inherited environment.
    pub env: Vec<(String, Template)>,
    /// Working directory; the package file's folder by default.
    pub dir: Option<Template>,
    /// Exit codes that mean success.
    pub success_codes: Vec<i32>,
}

/// A `sleep` task.
#[derive(Debug, Clone)]
pub struct SleepTask {
    /// How long.
    pub duration: Duration,
}

/// A value passed to a child package or job: a literal, or a template evaluated at start.
#[derive(Debug, Clone)]
pub enum ParamValue {
    /// Passed as is.
    Literal(serde_json::Value),
    /// A string with `{{ expr }}`; exactly one expression keeps its type.
    Template(Template),
}

/// A `package` task.
#[derive(Debug, Clone)]
pub struct PackageTask {
    /// The child's path, relative to the parent's folder.
    pub path: Template,
    /// Child parameters bound by expressions.
    pub params: IndexMap<String, ParamValue>,
    /// The child, loaded and validated with the parent when its path is a literal.
    pub child: Option<Arc<Package>>,
}

/// Where an `agent_job` task starts its job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentTarget {
    /// A fixed agent, by name.
    Agent(String),
    /// Any up agent with this label, chosen by load.
    Pool(String),
}

impl fmt::Display for AgentTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AgentTarget::Agent(a) => write!(f, "agent \"{a}\""),
            AgentTarget::Pool(p) => write!(f, "pool \"{p}\""),
        }
    }
}

/// What happens to running children when the parent is canceled or ends unexpectedly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnParentEnd {
    /// Cancel them.
    Cancel,
    /// Leave them running.
    Abandon,
}

/// An `agent_job` task.
#[derive(Debug, Clone)]
pub struct AgentJobTask {
    /// A fixed agent or a pool.
    pub target: AgentTarget,
    /// The job's name on the agent.
    pub job: String,
    /// Parameters passed to the job's child package.
    pub params: IndexMap<String, ParamValue>,
    /// Finish with the child's outcome instead of at the start.
    pub wait: bool,
    /// Further attempts after a failed one.
    pub retries: u32,
    /// First backoff between attempts (doubling with jitter up to 5 s).
    pub retry_backoff: Duration,
    /// Quarantine after attempts have lost this many agents.
    pub crash_limit: u32,
    /// How long to wait for a free slot.
    pub queue_timeout: Duration,
    /// What to do with the child when the parent is canceled or ends unexpectedly.
    pub on_parent_end: OnParentEnd,
}

/// What a `foreach` loop enumerates.
#[derive(Debug, Clone)]
pub enum ForeachItems {
    /// An inline list (Item enumerator); string items may be templates.
    List(Vec<ParamValue>),
    /// A template that evaluates to a list at start.
    Expression(Template),
    /// Files matching a glob, relative to the package folder, sorted.
    Files(Template),
}

/// A `foreach` loop.
#[derive(Debug, Clone)]
pub struct ForeachTask {
    /// The enumerator.
    pub items: ForeachItems,
    /// The loop variable, seen as `vars.<var>`.
    pub var: String,
    /// Iterations run at once.
    pub parallel: u32,
    /// The tasks of one iteration.
    pub body: Container,
}

/// A `for` loop (InitExpression, EvalExpression, AssignExpression).
#[derive(Debug, Clone)]
pub struct ForTask {
    /// Assignments run once before the first iteration.
    pub init: Vec<Assignment>,
    /// Evaluated before each iteration; the loop ends when false.
    pub condition: Expression,
    /// Assignments run after each iteration.
    pub assign: Vec<Assignment>,
    /// The tasks of one iteration.
    pub body: Container,
}

/// A precedence constraint on an earlier sibling.
#[derive(Debug, Clone)]
pub struct Constraint {
    /// The sibling's name.
    pub task: String,
    /// The sibling's index in its container.
    pub index: usize,
    /// The result it waits for.
    pub on: ConstraintValue,
    /// An optional expression.
    pub when: Option<Expression>,
    /// How `on` and `when` combine.
    pub eval: EvalOp,
}

/// The Value of a precedence constraint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConstraintValue {
    /// The sibling succeeded.
    Success,
    /// The sibling failed.
    Failure,
    /// The sibling ended either way.
    Completion,
}

/// EvalOp of a precedence constraint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvalOp {
    /// The result alone.
    Constraint,
    /// The expression alone.
    Expression,
    /// Both.
    And,
    /// Either.
    Or,
}

/// How several constraints combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Join {
    /// All must hold (LogicalAnd = true, the default).
    All,
    /// One is enough.
    Any,
}

/// The result of a task, as SSISDB's executable statistics and the JSON output name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskResult {
    /// It succeeded (or was disabled).
    Success,
    /// It failed.
    Failure,
    /// Forced completion.
    Completion,
    /// It was canceled while running.
    Canceled,
    /// Its constraints were not met, or the run ended before it started.
    NotRun,
}

impl TaskResult {
    /// The lower-case name used in JSON and expressions.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskResult::Success => "success",
            TaskResult::Failure => "failure",
            TaskResult::Completion => "completion",
            TaskResult::Canceled => "canceled",
            TaskResult::NotRun => "not_run",
        }
    }
}

impl fmt::Display for TaskResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
