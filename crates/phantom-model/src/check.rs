//! Running a model to a depth and summarising what the checker found.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::hash::Hash;

use stateright::{Checker, HasDiscoveries, Model};

/// What one exhaustive run found.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The model's name, as printed.
    pub model: String,
    /// The depth bound in actions: every state reachable in this many actions or fewer
    /// was checked.
    pub depth: usize,
    /// States generated (with repeats).
    pub states: usize,
    /// Distinct states explored.
    pub unique_states: usize,
    /// The deepest state generated (stateright's count: the initial state is 1, and the
    /// frontier one beyond the bound is generated but not checked).
    pub max_depth: usize,
    /// Every property with a discovery (a counterexample for `always`/`eventually`, an
    /// example for `sometimes`), with the path that shows it.
    pub discoveries: BTreeMap<&'static str, String>,
}

impl Outcome {
    /// The path found for `property`, if any.
    #[must_use]
    pub fn discovery(&self, property: &str) -> Option<&str> {
        self.discoveries.get(property).map(String::as_str)
    }

    /// One line for the CI log.
    #[must_use]
    pub fn line(&self) -> String {
        format!(
            "[model] {}: depth {} actions, {} states explored ({} generated, max depth {}), discoveries: {:?}",
            self.model,
            self.depth,
            self.unique_states,
            self.states,
            self.max_depth,
            self.discoveries.keys().collect::<Vec<_>>()
        )
    }
}

/// Checks `model` breadth-first: every state reachable in at most `depth` actions is
/// checked against every property (stateright counts the initial state as depth 1 and
/// checks only states below its target depth, hence the `+ 2`). With `stop_at`,
/// the run ends as soon as any of the named properties has a discovery (used by the
/// mutation tests, which only need the counterexample). Prints [`Outcome::line`].
pub fn run<M>(name: &str, model: M, depth: usize, stop_at: &[&'static str]) -> Outcome
where
    M: Model + Send + Sync + 'static,
    M::State: Hash + Debug + Send + Sync + Clone + PartialEq,
    M::Action: Debug + Clone + PartialEq,
{
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let names: Vec<&'static str> = model.properties().iter().map(|p| p.name).collect();
    let mut builder = model.checker().threads(threads).target_max_depth(depth + 2);
    if !stop_at.is_empty() {
        builder = builder.finish_when(HasDiscoveries::AnyOf(
            stop_at.iter().copied().collect::<BTreeSet<_>>(),
        ));
    }
    let checker = builder.spawn_bfs().join();
    let mut discoveries = BTreeMap::new();
    for n in names {
        if let Some(path) = checker.discovery(n) {
            discoveries.insert(n, format!("{path}"));
        }
    }
    let outcome = Outcome {
        model: name.to_owned(),
        depth,
        states: checker.state_count(),
        unique_states: checker.unique_state_count(),
        max_depth: checker.max_depth(),
        discoveries,
    };
    println!("{}", outcome.line());
    outcome
}
