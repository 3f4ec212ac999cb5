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
    /// The depth bound the run was given (every path up to this many actions).
    pub depth: usize,
    /// States generated (with repeats).
    pub states: usize,
    /// Distinct states explored.
    pub unique_states: usize,
    /// The deepest path reached.
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
            "[model] {}: depth {} (reached {}), {} states explored ({} generated), discoveries: {:?}",
            self.model,
            self.depth,
            self.max_depth,
            self.unique_states,
            self.states,
            self.discoveries.keys().collect::<Vec<_>>()
        )
    }
}

/// Checks `model` breadth-first up to `depth` actions on every path. With `stop_at`,
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
    let mut builder = model.checker().threads(threads).target_max_depth(depth);
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
