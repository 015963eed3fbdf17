//! What expressions see at run time: parameters, loop variables, variables set by `sql` tasks'
//! `result`, and the facts of tasks that have ended in the current container and the containers
//! around it; and the transaction the current container runs in.

use std::sync::{Arc, Mutex};

use indexmap::IndexMap;

use super::precedence::ScopeValue;
use super::transaction::Transaction;
use crate::expr::{Map, TaskFacts};

/// The facts of one container's ended tasks, by name.
pub(crate) type Facts = Arc<Mutex<IndexMap<String, TaskFacts>>>;

/// The scope a task runs in. Cheap to clone; expressions merge it only when they evaluate.
#[derive(Clone, Default)]
pub(crate) struct Frame {
    /// Loop variables (`vars.<name>`).
    pub vars: Arc<Map>,
    /// Task facts, outermost container first.
    chain: Arc<Vec<Facts>>,
    /// Variables set by `sql` tasks (`result`), one set per package run; loop variables of the
    /// same name hide them.
    results: Arc<Mutex<Map>>,
    /// The transaction tasks here join unless they say otherwise.
    pub transaction: Option<Arc<Transaction>>,
}

impl Frame {
    /// A scope for a container inside this one, and the facts its tasks record into.
    pub fn nested(&self) -> (Frame, Facts) {
        let facts: Facts = Arc::default();
        let mut chain = Vec::with_capacity(self.chain.len() + 1);
        chain.extend(self.chain.iter().cloned());
        chain.push(facts.clone());
        (Frame { chain: Arc::new(chain), ..self.clone() }, facts)
    }

    /// The scope of a package's top level whose package variables start as `variables` (restored
    /// from a checkpoint).
    pub fn root_with_variables(variables: Map) -> Self {
        Self { results: Arc::new(Mutex::new(variables)), ..Self::default() }
    }

    /// The package variables as they are now (set by `sql` tasks' `result`, or restored).
    pub fn variables(&self) -> Map {
        self.results.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    /// The same scope with other loop variables.
    pub fn with_vars(&self, vars: Map) -> Frame {
        Frame { vars: Arc::new(vars), ..self.clone() }
    }

    /// The same scope inside `transaction` (None: outside any).
    pub fn with_transaction(&self, transaction: Option<Arc<Transaction>>) -> Frame {
        Frame { transaction, ..self.clone() }
    }

    /// Sets `vars.<name>` for the rest of the package run.
    pub fn set_result(&self, name: &str, value: serde_json::Value) {
        self.results.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).insert(name.to_string(), value);
    }

    /// Everything visible now; inner containers' task names hide outer ones.
    pub fn value(&self, params: &Arc<Map>) -> ScopeValue {
        let mut tasks = IndexMap::new();
        for level in self.chain.iter() {
            let level = level.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            for (name, facts) in level.iter() {
                tasks.insert(name.clone(), facts.clone());
            }
        }
        let results = self.results.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let vars = if results.is_empty() {
            self.vars.clone()
        } else {
            let mut vars = results.clone();
            vars.extend(self.vars.iter().map(|(k, v)| (k.clone(), v.clone())));
            Arc::new(vars)
        };
        ScopeValue { params: params.clone(), vars, tasks }
    }
}

/// Records a task's facts into its container's level.
pub(crate) fn record(facts: &Facts, name: &str, value: TaskFacts) {
    facts.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).insert(name.to_string(), value);
}
