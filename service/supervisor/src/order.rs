//! Service ordering from runtime.json `dependsOn`: which services cannot start (a dependency
//! that does not exist, a cycle, or a dependency that itself cannot start), the start order, and
//! the stop waves (a service stops only after everything that depends on it has stopped).
//! Runs in: the supervisor, once at start. Pure.
//! LinuxKit has no ordering (services start alphabetically, all at once).

use std::collections::{BTreeMap, BTreeSet};

/// Why a service will not be started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Blocked {
    /// `dependsOn` names a service that does not exist.
    Unknown(String),
    /// The service is on a dependency cycle (the cycle, starting and ending with it).
    Cycle(Vec<String>),
    /// A dependency cannot start.
    Dependency(String),
    /// Its own configuration is unusable (the message says why).
    Invalid(String),
}

impl std::fmt::Display for Blocked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unknown(name) => write!(f, "dependsOn: no service is named `{name}`"),
            Self::Cycle(cycle) => write!(f, "dependsOn: dependency cycle {}", cycle.join(" -> ")),
            Self::Dependency(name) => write!(f, "dependsOn: `{name}` cannot start"),
            Self::Invalid(message) => f.write_str(message),
        }
    }
}

/// The dependency graph of a set of services.
#[derive(Debug, Clone, Default)]
pub struct Order {
    /// Services that can start, dependencies before dependents (ties by name).
    pub start: Vec<String>,
    /// Services that cannot start, and why.
    pub blocked: BTreeMap<String, Blocked>,
    depends_on: BTreeMap<String, Vec<String>>,
}

impl Order {
    /// Builds the order from each service's `dependsOn`; `invalid` services (with the reason)
    /// cannot start, nor can those that depend on them.
    pub fn new(
        services: &BTreeMap<String, Vec<String>>,
        invalid: &BTreeMap<String, String>,
    ) -> Self {
        let mut blocked: BTreeMap<String, Blocked> = invalid
            .iter()
            .map(|(name, why)| (name.clone(), Blocked::Invalid(why.clone())))
            .collect();
        for (name, deps) in services {
            if blocked.contains_key(name) {
                continue;
            }
            if let Some(unknown) = deps.iter().find(|dep| !services.contains_key(*dep)) {
                blocked.insert(name.clone(), Blocked::Unknown(unknown.clone()));
            }
        }
        for name in services.keys() {
            if blocked.contains_key(name) {
                continue;
            }
            if let Some(cycle) = find_cycle(name, services) {
                blocked.insert(name.clone(), Blocked::Cycle(cycle));
            }
        }
        // Whatever depends, directly or not, on a blocked service is blocked too.
        loop {
            let newly: Vec<(String, String)> = services
                .iter()
                .filter(|(name, _)| !blocked.contains_key(*name))
                .filter_map(|(name, deps)| {
                    deps.iter()
                        .find(|dep| blocked.contains_key(*dep))
                        .map(|dep| (name.clone(), dep.clone()))
                })
                .collect();
            if newly.is_empty() {
                break;
            }
            for (name, dep) in newly {
                blocked.insert(name, Blocked::Dependency(dep));
            }
        }
        let mut start = Vec::new();
        let mut placed = BTreeSet::new();
        let runnable: Vec<&String> = services
            .keys()
            .filter(|name| !blocked.contains_key(*name))
            .collect();
        while start.len() < runnable.len() {
            for name in &runnable {
                if !placed.contains(*name) && services[*name].iter().all(|dep| placed.contains(dep))
                {
                    placed.insert((*name).clone());
                    start.push((*name).clone());
                }
            }
        }
        Self {
            start,
            blocked,
            depends_on: services.clone(),
        }
    }

    /// The services `name` depends on.
    pub fn dependencies(&self, name: &str) -> &[String] {
        self.depends_on.get(name).map_or(&[], Vec::as_slice)
    }

    /// Groups of startable services to stop one group after the other: each group holds the
    /// services nothing still running depends on.
    pub fn stop_waves(&self) -> Vec<Vec<String>> {
        let mut left: Vec<&String> = self.start.iter().collect();
        let mut waves = Vec::new();
        while !left.is_empty() {
            let wave: Vec<String> = left
                .iter()
                .filter(|name| {
                    !left
                        .iter()
                        .any(|other| self.dependencies(other).contains(name))
                })
                .map(|name| (*name).clone())
                .collect();
            left.retain(|name| !wave.contains(name));
            waves.push(wave);
        }
        waves
    }
}

/// A path from `name` back to itself through `dependsOn`, if there is one.
fn find_cycle(name: &str, services: &BTreeMap<String, Vec<String>>) -> Option<Vec<String>> {
    fn walk(
        at: &str,
        target: &str,
        services: &BTreeMap<String, Vec<String>>,
        path: &mut Vec<String>,
        seen: &mut BTreeSet<String>,
    ) -> bool {
        for dep in services.get(at).into_iter().flatten() {
            if dep == target {
                path.push(dep.clone());
                return true;
            }
            if seen.insert(dep.clone()) {
                path.push(dep.clone());
                if walk(dep, target, services, path, seen) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    let mut path = vec![name.to_owned()];
    walk(name, name, services, &mut path, &mut BTreeSet::new()).then_some(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(list: &[(&str, &[&str])]) -> Order {
        Order::new(&services(list), &BTreeMap::new())
    }

    fn services(list: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
        list.iter()
            .map(|(name, deps)| {
                (
                    (*name).to_owned(),
                    deps.iter().map(|dep| (*dep).to_owned()).collect(),
                )
            })
            .collect()
    }

    #[test]
    fn dependencies_start_first_and_stop_last() {
        let order = order(&[
            ("web", &["db", "cache"]),
            ("db", &[]),
            ("cache", &["db"]),
            ("getty", &[]),
        ]);
        assert!(order.blocked.is_empty());
        assert_eq!(order.start, ["db", "getty", "cache", "web"]);
        assert_eq!(
            order.stop_waves(),
            [vec!["getty", "web"], vec!["cache"], vec!["db"]]
        );
    }

    #[test]
    fn unknown_names_and_cycles_block_only_their_services() {
        let order = order(&[
            ("a", &["b"]),
            ("b", &["c"]),
            ("c", &["a"]),
            ("d", &["a"]),
            ("e", &["nope"]),
            ("f", &[]),
            ("self", &["self"]),
        ]);
        assert_eq!(order.start, ["f"]);
        assert_eq!(
            order.blocked["a"],
            Blocked::Cycle(vec!["a".into(), "b".into(), "c".into(), "a".into()])
        );
        assert_eq!(
            order.blocked["self"],
            Blocked::Cycle(vec!["self".into(), "self".into()])
        );
        assert_eq!(order.blocked["d"], Blocked::Dependency("a".into()));
        assert_eq!(order.blocked["e"], Blocked::Unknown("nope".into()));
        assert_eq!(
            order.blocked["a"].to_string(),
            "dependsOn: dependency cycle a -> b -> c -> a"
        );
    }

    #[test]
    fn an_invalid_service_blocks_its_dependents() {
        let invalid = BTreeMap::from([("bad".to_owned(), "runtime.json: broken".to_owned())]);
        let order = Order::new(
            &services(&[("bad", &[]), ("user", &["bad"]), ("fine", &[])]),
            &invalid,
        );
        assert_eq!(order.start, ["fine"]);
        assert_eq!(order.blocked["bad"].to_string(), "runtime.json: broken");
        assert_eq!(order.blocked["user"], Blocked::Dependency("bad".into()));
    }

    #[test]
    fn depending_on_a_blocked_service_blocks_transitively() {
        let order = order(&[("x", &["y"]), ("y", &["z"]), ("z", &["gone"])]);
        assert!(order.start.is_empty());
        assert_eq!(order.blocked["x"], Blocked::Dependency("y".into()));
    }
}
