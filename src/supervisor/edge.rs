//! The edge between the threads and the core: each `Input` becomes the
//! `Event`s it stands for.
//!
//! A control request becomes an `Order` here, its signal name parsed, its
//! timeout typed and a wait's condition checked (`ready` of older clients
//! read as `until: "ready"`), so the core never parses what a client wrote; its reply
//! channel stays here, by request id, so events and actions remain plain
//! comparable data. Thread messages name services (the threads know no
//! ids); here they get the service's id. Nothing here changes the core's
//! state: it only reads names.

use std::collections::HashMap;
use std::time::Duration;

use crate::log::debug;

use super::core::Supervisor;
use crate::config::parse_signal;
use crate::event::{Event, Input, Names, Order, Reply, RequestId, Until};
use crate::protocol::{self, Request, Response, Targets};

/// Reply channels of the control requests in flight.
#[derive(Debug, Default)]
pub struct Edge {
    replies: HashMap<RequestId, Reply>,
    next_id: RequestId,
}

impl Edge {
    pub fn new() -> Edge {
        Edge::default()
    }

    /// The events `input` stands for. (SIGCHLD is not one: the loop reaps.)
    pub fn events(&mut self, input: Input, sup: &Supervisor) -> Vec<Event> {
        match input {
            Input::Signal(signal) => vec![Event::Signal(signal)],
            Input::Control { request, mut reply } => match order(request) {
                Ok(order) => {
                    self.next_id += 1;
                    self.replies.insert(self.next_id, reply);
                    vec![Event::Order {
                        id: self.next_id,
                        order,
                    }]
                }
                Err(refusal) => {
                    reply.send(Response::error(refusal));
                    Vec::new()
                }
            },
            Input::Cancel { reply } => {
                let id = self
                    .replies
                    .iter()
                    .find(|(_, r)| r.is_for(&reply))
                    .map(|(&id, _)| id);
                match id {
                    Some(id) => {
                        self.replies.remove(&id);
                        vec![Event::Cancel { id }]
                    }
                    None => Vec::new(),
                }
            }
            Input::Notify {
                service,
                run,
                message,
            } => sup
                .service_id(&service)
                .map(|service| Event::Notify {
                    service,
                    run,
                    message,
                })
                .into_iter()
                .collect(),
            Input::FdReady { service, run } => sup
                .service_id(&service)
                .map(|service| Event::FdReady { service, run })
                .into_iter()
                .collect(),
            Input::ProbeDone { token, result } => vec![Event::ProbeDone { token, result }],
            Input::Changed { service, path } => {
                debug!(service, path = %path.display(), "watched path changed");
                sup.service_id(&service)
                    .map(|service| Event::Changed { service })
                    .into_iter()
                    .collect()
            }
        }
    }

    /// Answer request `id`. A client that went away is no error: nothing
    /// waits any more.
    pub fn reply(&mut self, id: RequestId, response: Response) {
        if let Some(mut reply) = self.replies.remove(&id) {
            reply.send(response);
        }
    }

    /// Answer every request still in flight with `response` (corral exits).
    pub fn answer_all(&mut self, response: &Response) {
        for (_, mut reply) in self.replies.drain() {
            reply.send(response.clone());
        }
    }
}

/// The core's order for a wire request, or why it is refused.
pub fn order(request: Request) -> Result<Order, String> {
    Ok(match request {
        Request::Status { services } => Order::Status { services },
        Request::Start(targets) => Order::Start(names(targets)),
        Request::Stop(targets) => Order::Stop(names(targets)),
        Request::Restart(targets) => Order::Restart(names(targets)),
        Request::Signal { signal, services } => Order::Signal {
            signal: parse_signal(&signal)?,
            services,
        },
        Request::Logs { service, .. } => Order::Logs { service },
        Request::Wait {
            services,
            timeout_ms,
            ready,
            until,
            since_run,
        } => {
            if since_run.is_some() && services.len() != 1 {
                return Err(format!(
                    "since_run is a run of one service: name exactly one (not {})",
                    services.len()
                ));
            }
            Order::Wait {
                services,
                timeout: timeout_ms.map(Duration::from_millis),
                until: wait_until(ready, until)?,
                since_run,
            }
        }
        Request::Reload { services } if services.is_empty() => Order::ReloadAll,
        Request::Reload { services } => Order::Reload { services },
        Request::Health {} => Order::Health,
        Request::Shutdown { exit_code } => Order::Shutdown { exit_code },
        Request::Run { service } => Order::Run { service },
        Request::Scale { service, replicas } => Order::Scale { service, replicas },
    })
}

/// What a wait waits for: `until`, or what older clients mean by `ready`
/// (which, beside `until`, may only agree with it).
fn wait_until(ready: bool, until: Option<protocol::Until>) -> Result<Until, String> {
    let until = match until {
        None if ready => protocol::Until::Ready,
        None => protocol::Until::Started,
        Some(protocol::Until::Ready) => protocol::Until::Ready,
        Some(other) if ready => {
            return Err(format!(
                "ready (the older form of until \"ready\") contradicts until \"{}\": give until alone",
                other.name()
            ));
        }
        Some(other) => other,
    };
    Ok(match until {
        protocol::Until::Started => Until::Started,
        protocol::Until::Ready => Until::Ready,
        protocol::Until::Down => Until::Down,
        protocol::Until::Finished => Until::Finished,
        protocol::Until::Restarted => Until::Restarted,
        protocol::Until::RestartedReady => Until::RestartedReady,
    })
}

fn names(targets: Targets) -> Names {
    if targets.all {
        Names::All
    } else {
        Names::These(targets.services)
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use nix::sys::signal::Signal;

    use super::*;
    use crate::config::{ServiceSpec, Spec};
    use crate::event::{NotifyMessage, ProbeToken, ServiceId};

    fn sup() -> Supervisor {
        let services = vec![
            ServiceSpec::new("db", vec!["true".into()]),
            ServiceSpec::new("web", vec!["true".into()]),
        ];
        let mut sup = Supervisor::new(
            Spec {
                services,
                ..Default::default()
            },
            None,
            Vec::new(),
            Vec::new(),
            Duration::from_secs(1),
        );
        sup.start(Instant::now());
        sup
    }

    fn control(request: Request) -> (Input, crossbeam_channel::Receiver<Response>) {
        let (tx, rx) = crossbeam_channel::bounded(1);
        (
            Input::Control {
                request,
                reply: Reply::new(tx),
            },
            rx,
        )
    }

    #[test]
    fn signal_names_are_parsed_here_and_a_bad_one_is_refused_at_once() {
        assert_eq!(
            order(Request::Signal {
                signal: "hup".into(),
                services: vec!["web".into()],
            }),
            Ok(Order::Signal {
                signal: Signal::SIGHUP,
                services: vec!["web".into()],
            })
        );
        let mut edge = Edge::new();
        let (input, rx) = control(Request::Signal {
            signal: "NOPE".into(),
            services: vec!["web".into()],
        });
        assert!(
            edge.events(input, &sup()).is_empty(),
            "never reaches the core"
        );
        let refusal = rx.try_recv().expect("answered at once");
        assert!(!refusal.ok);
        assert!(refusal.error.is_some_and(|e| e.contains("unknown signal")),);
    }

    #[test]
    fn wire_requests_become_orders() {
        let all = Targets {
            services: vec!["ignored".into()],
            all: true,
        };
        let some = Targets {
            services: vec!["web".into()],
            all: false,
        };
        let cases = [
            (Request::Start(all), Order::Start(Names::All)),
            (
                Request::Stop(some.clone()),
                Order::Stop(Names::These(vec!["web".into()])),
            ),
            (
                Request::wait(vec!["web".into()], Some(1500), protocol::Until::Ready, None),
                Order::Wait {
                    services: vec!["web".into()],
                    timeout: Some(Duration::from_millis(1500)),
                    until: Until::Ready,
                    since_run: None,
                },
            ),
            (
                Request::wait(
                    vec!["web".into()],
                    None,
                    protocol::Until::RestartedReady,
                    Some(4),
                ),
                Order::Wait {
                    services: vec!["web".into()],
                    timeout: None,
                    until: Until::RestartedReady,
                    since_run: Some(4),
                },
            ),
            (
                Request::Reload {
                    services: Vec::new(),
                },
                Order::ReloadAll,
            ),
            (
                Request::Reload {
                    services: vec!["web".into()],
                },
                Order::Reload {
                    services: vec!["web".into()],
                },
            ),
            (
                Request::Logs {
                    service: "web".into(),
                    lines: Some(3),
                    follow: true,
                    all: false,
                    since_ms: None,
                    json: false,
                },
                Order::Logs {
                    service: "web".into(),
                },
            ),
            (Request::Health {}, Order::Health),
            (
                Request::Shutdown { exit_code: Some(3) },
                Order::Shutdown { exit_code: Some(3) },
            ),
        ];
        for (request, expected) in cases {
            assert_eq!(order(request), Ok(expected));
        }
    }

    #[test]
    fn a_wait_reads_the_older_ready_and_refuses_what_contradicts_it() {
        let wait = |line: &str| {
            protocol::decode_request(line.as_bytes())
                .and_then(order)
                .map(|o| match o {
                    Order::Wait {
                        until, since_run, ..
                    } => (until, since_run),
                    other => panic!("{other:?}"),
                })
        };
        let w = r#"{"v":1,"op":"wait","services":["web"]"#;
        assert_eq!(wait(&format!("{w}}}")), Ok((Until::Started, None)));
        assert_eq!(
            wait(&format!(r#"{w},"ready":true}}"#)),
            Ok((Until::Ready, None))
        );
        assert_eq!(
            wait(&format!(r#"{w},"ready":true,"until":"ready"}}"#)),
            Ok((Until::Ready, None))
        );
        assert_eq!(
            wait(&format!(r#"{w},"until":"down","since_run":2}}"#)),
            Ok((Until::Down, Some(2)))
        );
        assert_eq!(
            wait(&format!(r#"{w},"ready":true,"until":"restarted-ready"}}"#)),
            Err(
                "ready (the older form of until \"ready\") contradicts until \"restarted-ready\": give until alone"
                    .into()
            )
        );
        assert_eq!(
            wait(
                r#"{"v":1,"op":"wait","services":["web","db"],"until":"restarted","since_run":1}"#
            ),
            Err("since_run is a run of one service: name exactly one (not 2)".into())
        );
    }

    #[test]
    fn replies_are_kept_by_id_until_answered_or_cancelled() {
        let sup = sup();
        let mut edge = Edge::new();
        let (first, first_rx) = control(Request::Health {});
        let (second, _second_rx) = control(Request::Health {});
        assert_eq!(
            edge.events(first, &sup),
            vec![Event::Order {
                id: 1,
                order: Order::Health
            }]
        );
        assert_eq!(
            edge.events(second, &sup),
            vec![Event::Order {
                id: 2,
                order: Order::Health
            }]
        );
        edge.reply(1, Response::ok());
        assert!(first_rx.try_recv().is_ok_and(|r| r.ok));
        edge.reply(1, Response::error("twice"));
        assert!(first_rx.try_recv().is_err(), "answered once");
        edge.answer_all(&Response::error("corral is exiting"));
        assert!(edge.replies.is_empty());
    }

    #[test]
    fn a_cancel_names_the_request_whose_client_hung_up() {
        let sup = sup();
        let mut edge = Edge::new();
        let (tx, _rx) = crossbeam_channel::bounded(1);
        let input = Input::Control {
            request: Request::Health {},
            reply: Reply::new(tx.clone()),
        };
        edge.events(input, &sup);
        assert_eq!(
            edge.events(Input::Cancel { reply: tx.clone() }, &sup),
            vec![Event::Cancel { id: 1 }]
        );
        assert!(
            edge.events(Input::Cancel { reply: tx }, &sup).is_empty(),
            "forgotten"
        );
    }

    #[test]
    fn thread_messages_name_services_and_get_their_ids() {
        let sup = sup();
        let mut edge = Edge::new();
        let web = ServiceId::from_index(1);
        assert_eq!(
            edge.events(
                Input::Notify {
                    service: "web".into(),
                    run: 1,
                    message: NotifyMessage::default(),
                },
                &sup
            ),
            vec![Event::Notify {
                service: web,
                run: 1,
                message: NotifyMessage::default()
            }]
        );
        assert_eq!(
            edge.events(
                Input::FdReady {
                    service: "nope".into(),
                    run: 1
                },
                &sup
            ),
            Vec::new(),
            "an unknown name is dropped"
        );
        assert_eq!(
            edge.events(
                Input::Changed {
                    service: "db".into(),
                    path: "/etc/db.conf".into()
                },
                &sup
            ),
            vec![Event::Changed {
                service: ServiceId::from_index(0)
            }]
        );
        let token = ProbeToken {
            service: web,
            seq: 4,
        };
        assert_eq!(
            edge.events(
                Input::ProbeDone {
                    token,
                    result: Ok(())
                },
                &sup
            ),
            vec![Event::ProbeDone {
                token,
                result: Ok(())
            }]
        );
        assert_eq!(
            edge.events(Input::Signal(Signal::SIGTERM), &sup),
            vec![Event::Signal(Signal::SIGTERM)]
        );
    }
}
