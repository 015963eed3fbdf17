//! What expressions see at run time: parameters, loop variables, and the facts of tasks that
//! have ended in the current container and the containers around it.

use std::sync::{Arc, Mutex};

use indexmap::IndexMap;

use super::precedence::ScopeValue;
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
}

impl Frame {
    /// The scope of a package's top level.
    pub fn root() -> Self {
        Self::default()
    }

    /// A scope for a container inside this one, and the facts its tasks record into.
    pub fn nested(&self) -> (Frame, Facts) {
        let facts: Facts = Arc::default();
        let mut chain = Vec::with_capacity(self.chain.len() + 1);
        chain.extend(self.chain.iter().cloned());
        chain.push(facts.clone());
        (Frame { vars: self.vars.clone(), chain: Arc::new(chain) }, facts)
    }

    /// The same scope with other loop variables.
    pub fn with_vars(&self, vars: Map) -> Frame {
        Frame { vars: Arc::new(vars), chain: self.chain.clone() }
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
        ScopeValue { params: params.clone(), vars: self.vars.clone(), tasks }
    }
}

/// Records a task's facts into its container's level.
pub(crate) fn record(facts: &Facts, name: &str, value: TaskFacts) {
    facts.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).insert(name.to_string(), value);
}
