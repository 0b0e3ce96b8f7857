//! The supervised services as plain data: each one ([`Service`]) by name; the start order; which dependencies are up; which waiting services may start;
//! the missing-dependency check of a start request; and when a request that waits for a state
//! (`start`, `stop`, `restart`) has its answer.
//! Runs in: the supervisor's event loop. Pure: no syscalls, no tasks started; the daemon carries
//! out what it decides.

use std::collections::BTreeMap;

use nix::unistd::Pid;

use super::service::Service;
use crate::lifecycle::{Lifecycle, State};
use crate::order::{Blocked, Order};
use crate::protocol::Answer;

/// A `start`, `stop` or `restart` waiting for its service to get where it was sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wait {
    pub name: String,
    /// The answer is due once the service's generation is at least this (a start has been
    /// made) and it is neither starting nor stopping.
    pub generation: u64,
    /// Whether the request succeeded if it then runs (start, restart) or is stopped (stop).
    pub want_running: bool,
}

/// Every service, by name, with the order `dependsOn` gives them.
#[derive(Debug, Default)]
pub struct Services {
    by_name: BTreeMap<String, Service>,
    order: Order,
}

impl Services {
    /// The services and the order of their `dependsOn`; `invalid` ones (with the reason) and
    /// those that cannot start because of them or of their `dependsOn` are failed, with the
    /// reason as their problem.
    pub fn new(services: BTreeMap<String, Service>, invalid: &BTreeMap<String, String>) -> Self {
        let depends_on = services
            .iter()
            .map(|(name, service)| (name.clone(), service.runtime.depends_on.clone()))
            .collect();
        let mut services = Self {
            order: Order::new(&depends_on, invalid),
            by_name: services,
        };
        let blocked: Vec<(String, String)> = services
            .blocked()
            .map(|(name, why)| (name.to_owned(), why.to_string()))
            .collect();
        for (name, why) in blocked {
            if let Some(service) = services.by_name.get_mut(&name) {
                service.lifecycle = Lifecycle::failed(service.lifecycle.policy);
                service.problem = Some(format!("not started: {why}"));
            }
        }
        services
    }

    /// The services that cannot start, and why.
    pub fn blocked(&self) -> impl Iterator<Item = (&str, &Blocked)> {
        self.order
            .blocked
            .iter()
            .map(|(name, why)| (name.as_str(), why))
    }

    pub fn get(&self, name: &str) -> Option<&Service> {
        self.by_name.get(name)
    }

    pub fn get_mut(&mut self, name: &str) -> Option<&mut Service> {
        self.by_name.get_mut(name)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &Service)> {
        self.by_name.iter()
    }

    pub fn names(&self) -> Vec<String> {
        self.by_name.keys().cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// The service called `name`, or the error naming the services there are.
    pub fn known(&self, name: &str) -> Result<&Service, String> {
        self.by_name.get(name).ok_or_else(|| {
            let names: Vec<&str> = self.by_name.keys().map(String::as_str).collect();
            format!(
                "no service `{name}` (services: {})",
                if names.is_empty() {
                    "none".to_owned()
                } else {
                    names.join(", ")
                }
            )
        })
    }

    /// Whether dependency `name` is up: running, or ready if it declares readiness.
    pub fn is_up(&self, name: &str) -> bool {
        self.by_name.get(name).is_some_and(Service::is_up)
    }

    /// Whether every service is up.
    pub fn all_up(&self) -> bool {
        self.by_name.values().all(Service::is_up)
    }

    /// The waiting services whose dependencies are all up, in start order.
    pub fn ready_to_start(&self) -> Vec<String> {
        self.order
            .start
            .iter()
            .filter(|name| {
                self.get(name)
                    .is_some_and(|service| service.lifecycle.state() == State::Waiting)
                    && self
                        .order
                        .dependencies(name)
                        .iter()
                        .all(|dep| self.is_up(dep))
            })
            .cloned()
            .collect()
    }

    /// Why a request to start `name` is refused: the dependencies that are not up, each with
    /// its state; `None` when they all are.
    pub fn start_refusal(&self, name: &str) -> Option<String> {
        let missing: Vec<String> = self
            .order
            .dependencies(name)
            .iter()
            .filter(|dep| !self.is_up(dep))
            .map(|dep| {
                let state = self
                    .get(dep)
                    .map_or(State::Failed, |dep| dep.lifecycle.state());
                format!("`{dep}` ({state})")
            })
            .collect();
        if missing.is_empty() {
            return None;
        }
        Some(format!(
            "{name}: not started: dependsOn {}, not up: start {} first",
            missing.join(", "),
            if missing.len() == 1 { "it" } else { "them" }
        ))
    }

    /// The answer to `wait` once its service has got where it was sent; `None` while it has
    /// not (or when the service is unknown: nothing will answer then).
    pub fn answer(&self, wait: &Wait) -> Option<Answer> {
        let service = self.get(&wait.name)?;
        let state = service.lifecycle.state();
        if service.generation < wait.generation
            || matches!(state, State::Starting | State::Stopping)
        {
            return None;
        }
        let info = Some(service.info(&wait.name));
        if state.runs() == wait.want_running {
            return Some(Answer {
                service: info,
                ..Answer::ok()
            });
        }
        let why = service
            .problem
            .clone()
            .or_else(|| service.lifecycle.last_exit().map(|exit| exit.to_string()))
            .map_or(String::new(), |why| format!(": {why}"));
        Some(Answer {
            service: info,
            ..Answer::error(format!("{}: {state}{why}", wait.name))
        })
    }

    /// Whether `pid` is a service's container init (reaped by its own watcher).
    pub fn is_container_init(&self, pid: Pid) -> bool {
        self.by_name
            .values()
            .any(|service| service.pid == Some(pid))
    }

    /// The stop waves: dependents before what they depend on.
    pub fn stop_waves(&self) -> Vec<Vec<String>> {
        self.order.stop_waves()
    }

    /// Whether any of `names` is still starting, up or stopping.
    pub fn any_busy(&self, names: &[String]) -> bool {
        names.iter().any(|name| {
            self.get(name).is_some_and(|service| {
                matches!(
                    service.lifecycle.state(),
                    State::Starting | State::Running | State::Ready | State::Stopping
                )
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use spec::layout::Section;

    use super::*;
    use crate::child::Exit;
    use crate::lifecycle::Event;
    use spec::Runtime;

    /// Services named with their `dependsOn`, all waiting; `invalid` ones have a bad
    /// runtime.json.
    fn services(graph: &[(&str, &[&str])], invalid: &[&str]) -> Services {
        let by_name = graph
            .iter()
            .map(|(name, deps)| {
                let runtime = Runtime {
                    depends_on: deps.iter().map(|dep| (*dep).to_owned()).collect(),
                    ..Runtime::default()
                };
                let bundle =
                    spec::Bundle::new(Section::Services, format!("/containers/services/{name}"));
                ((*name).to_owned(), Service::new(bundle, runtime))
            })
            .collect();
        let invalid = invalid
            .iter()
            .map(|name| ((*name).to_owned(), "runtime.json: bad".to_owned()))
            .collect();
        Services::new(by_name, &invalid)
    }

    /// Feeds `events` to service `name`'s lifecycle.
    fn feed(services: &mut Services, name: &str, events: &[Event]) {
        let service = services.get_mut(name).expect("a service");
        for event in events {
            service.lifecycle.handle(*event, Instant::now());
        }
    }

    /// Starts service `name`: dependencies met, container started.
    fn run(services: &mut Services, name: &str) {
        feed(services, name, &[Event::DependenciesMet]);
        services.get_mut(name).expect("a service").generation += 1;
        feed(services, name, &[Event::Started]);
    }

    fn state(services: &Services, name: &str) -> State {
        services.get(name).expect("a service").lifecycle.state()
    }

    #[test]
    fn dependencies_start_first_and_gate_their_dependents() {
        let mut services = services(
            &[
                ("web", &["db", "cache"]),
                ("db", &[]),
                ("cache", &[]),
                ("log", &[]),
            ],
            &[],
        );
        assert_eq!(services.ready_to_start(), ["cache", "db", "log"]);
        run(&mut services, "db");
        assert_eq!(services.ready_to_start(), ["cache", "log"]);
        assert!(!services.all_up());
        run(&mut services, "cache");
        run(&mut services, "log");
        assert_eq!(services.ready_to_start(), ["web"]);
        run(&mut services, "web");
        assert!(services.ready_to_start().is_empty());
        assert!(services.all_up());
        assert_eq!(
            services.stop_waves(),
            [
                vec!["log".to_owned(), "web".to_owned()],
                vec!["cache".to_owned(), "db".to_owned()]
            ]
        );
    }

    #[test]
    fn a_dependency_that_declares_readiness_is_up_only_once_ready() {
        let mut services = services(&[("app", &["db"]), ("db", &[])], &[]);
        services.get_mut("db").expect("db").runtime.ready = Some(spec::runtime::Ready {
            file: Some("/run/db.ready".into()),
            ..Default::default()
        });
        run(&mut services, "db");
        assert_eq!(state(&services, "db"), State::Running);
        assert!(!services.is_up("db"));
        assert!(services.ready_to_start().is_empty());
        feed(&mut services, "db", &[Event::BecameReady]);
        assert!(services.is_up("db"));
        assert_eq!(services.ready_to_start(), ["app"]);
    }

    #[test]
    fn cycles_unknown_and_invalid_dependencies_fail_with_the_reason() {
        let services = services(
            &[
                ("a", &["b"]),
                ("b", &["a"]),
                ("c", &["nobody"]),
                ("d", &[]),
                ("e", &["d"]),
                ("f", &[]),
            ],
            &["d"],
        );
        for name in ["a", "b", "c", "d", "e"] {
            assert_eq!(state(&services, name), State::Failed, "{name}");
        }
        let problem = |name| services.get(name).and_then(|s| s.problem.clone());
        assert_eq!(
            problem("a").as_deref(),
            Some("not started: dependsOn: dependency cycle a -> b -> a")
        );
        assert_eq!(
            problem("c").as_deref(),
            Some("not started: dependsOn: no service is named `nobody`")
        );
        assert_eq!(
            problem("d").as_deref(),
            Some("not started: runtime.json: bad")
        );
        assert_eq!(
            problem("e").as_deref(),
            Some("not started: dependsOn: `d` cannot start")
        );
        let blocked: Vec<&str> = services.blocked().map(|(name, _)| name).collect();
        assert_eq!(blocked, ["a", "b", "c", "d", "e"]);
        assert_eq!(services.ready_to_start(), ["f"]);
    }

    #[test]
    fn a_start_request_names_the_dependencies_that_are_not_up() {
        let mut services = services(
            &[("web", &["db", "cache"]), ("db", &[]), ("cache", &[])],
            &[],
        );
        assert_eq!(
            services.start_refusal("web").as_deref(),
            Some("web: not started: dependsOn `db` (waiting), `cache` (waiting), not up: start them first")
        );
        run(&mut services, "db");
        assert_eq!(
            services.start_refusal("web").as_deref(),
            Some("web: not started: dependsOn `cache` (waiting), not up: start it first")
        );
        run(&mut services, "cache");
        assert_eq!(services.start_refusal("web"), None);
        assert_eq!(services.start_refusal("db"), None);
    }

    #[test]
    fn a_waiting_answer_comes_once_the_service_got_where_it_was_sent() {
        let mut services = services(&[("web", &[])], &[]);
        let start = Wait {
            name: "web".into(),
            generation: 1,
            want_running: true,
        };
        assert!(services.answer(&start).is_none(), "not started yet");
        feed(&mut services, "web", &[Event::DependenciesMet]);
        services.get_mut("web").expect("web").generation += 1;
        assert!(services.answer(&start).is_none(), "still starting");
        feed(&mut services, "web", &[Event::Started]);
        let answer = services.answer(&start).expect("answered");
        assert!(answer.ok, "{answer:?}");
        assert_eq!(answer.service.map(|s| s.state).as_deref(), Some("running"));

        let stop = Wait {
            name: "web".into(),
            generation: 1,
            want_running: false,
        };
        feed(&mut services, "web", &[Event::StopRequested]);
        assert!(services.answer(&stop).is_none(), "still stopping");
        feed(&mut services, "web", &[Event::Exited(Exit::Code(0))]);
        assert!(services.answer(&stop).expect("answered").ok);
        let unknown = Wait {
            name: "nobody".into(),
            ..stop
        };
        assert!(services.answer(&unknown).is_none());
    }

    #[test]
    fn a_start_that_fails_is_answered_with_why() {
        let mut services = services(&[("web", &[])], &[]);
        let start = Wait {
            name: "web".into(),
            generation: 1,
            want_running: true,
        };
        feed(&mut services, "web", &[Event::DependenciesMet]);
        let service = services.get_mut("web").expect("web");
        service.generation += 1;
        service.problem = Some("failed to start: no rootfs".into());
        feed(
            &mut services,
            "web",
            &[Event::StartFailed { permanent: true }],
        );
        let answer = services.answer(&start).expect("answered");
        assert!(!answer.ok);
        assert_eq!(
            answer.error.as_deref(),
            Some("web: failed: failed to start: no rootfs")
        );
        assert!(services.known("web").is_ok());
        assert_eq!(
            services.known("db").err().as_deref(),
            Some("no service `db` (services: web)")
        );
    }
}
