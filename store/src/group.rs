//! Group execution: requests that arrive while earlier ones are running on the database wait
//! and then run together, as one statement for the whole group.
//!
//! A command on PostgreSQL makes two round trips, the stream load and the append. Under many
//! concurrent clients most of the database's work per command is the cost of a statement
//! (parsing, planning, a snapshot, a commit and its flush of the write-ahead log), not the
//! rows. A [`Group`] lets at most `max_running` groups run at a time. A request that finds a
//! free place runs at once, alone, on its caller's task, so a single client pays nothing. A
//! request that finds none waits. When a group ends, the waiting requests run as the next group
//! on a task of their own, and that task keeps taking groups until none waits.
//!
//! Two requests with the same key never run in one group: the later one waits for the next
//! group. For appends, the key is the stream, whose sequences the two would both claim.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::oneshot;

/// Runs one group: returns one output per request, in the order of the requests.
pub(crate) type Runner<R, O> = Arc<dyn Fn(Vec<R>) -> Pin<Box<dyn Future<Output = Vec<O>> + Send>> + Send + Sync>;

/// Requests of one kind, run in groups; see the module documentation.
pub(crate) struct Group<R, O> {
    inner: Arc<Inner<R, O>>,
}

impl<R, O> Clone for Group<R, O> {
    fn clone(&self) -> Self {
        Group { inner: self.inner.clone() }
    }
}

struct Inner<R, O> {
    state: Mutex<State<R, O>>,
    max_running: usize,
    max_group: usize,
    key: fn(&R) -> &str,
    run: Runner<R, O>,
}

struct State<R, O> {
    waiting: Vec<Waiting<R, O>>,
    running: usize,
}

/// The first step of a submitted request.
enum Start<R, O> {
    /// Runs alone on the caller's task.
    Alone(R),
    /// Starts a task for the waiting requests, itself among them, and waits for its output.
    Lead(Vec<Waiting<R, O>>, oneshot::Receiver<O>),
    /// Waits for a running group's task to take it.
    Wait(oneshot::Receiver<O>),
}

struct Waiting<R, O> {
    request: R,
    reply: oneshot::Sender<O>,
}

/// Why a request got no output: the task running its group ended without one (it panicked).
#[derive(Debug)]
pub(crate) struct Lost;

impl<R: Send + 'static, O: Send + 'static> Group<R, O> {
    /// Creates a group of requests keyed by `key`, run by `run` at most `max_running` groups at
    /// a time, each of at most `max_group` requests.
    pub(crate) fn new(max_running: usize, max_group: usize, key: fn(&R) -> &str, run: Runner<R, O>) -> Self {
        Group {
            inner: Arc::new(Inner {
                state: Mutex::new(State { waiting: Vec::new(), running: 0 }),
                max_running: max_running.max(1),
                max_group: max_group.max(1),
                key,
                run,
            }),
        }
    }

    /// Runs `request`, alone or in a group, and returns its output.
    pub(crate) async fn submit(&self, request: R) -> Result<O, Lost> {
        let start = {
            let mut state = self.inner.lock();
            let free = state.running < self.inner.max_running;
            if free && state.waiting.is_empty() {
                state.running += 1;
                Start::Alone(request)
            } else {
                let (reply, receiver) = oneshot::channel();
                state.waiting.push(Waiting { request, reply });
                if free {
                    state.running += 1;
                    Start::Lead(self.inner.take_group(&mut state), receiver)
                } else {
                    Start::Wait(receiver)
                }
            }
        };
        let receiver = match start {
            Start::Alone(request) => return Ok(self.run_alone(request).await),
            Start::Lead(group, receiver) => {
                tokio::spawn(Inner::drain(self.inner.clone(), group));
                receiver
            }
            Start::Wait(receiver) => receiver,
        };
        receiver.await.map_err(|_| Lost)
    }

    /// Runs one request on the caller's task. The place it holds is released when it ends, or
    /// when the caller drops the future; requests that arrived meanwhile then run as a group.
    async fn run_alone(&self, request: R) -> O {
        let place = Place { inner: Some(self.inner.clone()) };
        let mut outputs = (self.inner.run)(vec![request]).await;
        drop(place);
        outputs.pop().expect("a group's runner returns one output per request")
    }
}

impl<R: Send + 'static, O: Send + 'static> Inner<R, O> {
    fn lock(&self) -> MutexGuard<'_, State<R, O>> {
        // A panic while the lock is held leaves the queue consistent: every change to it is a
        // single push, drain or counter update.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Takes the next group from the waiting requests: the oldest ones, one per key, at most
    /// `max_group`. The rest keep their order.
    fn take_group(&self, state: &mut State<R, O>) -> Vec<Waiting<R, O>> {
        let mut keys = HashSet::new();
        let mut group = Vec::new();
        let mut rest = Vec::new();
        for waiting in state.waiting.drain(..) {
            if group.len() < self.max_group && keys.insert((self.key)(&waiting.request).to_string()) {
                group.push(waiting);
            } else {
                rest.push(waiting);
            }
        }
        state.waiting = rest;
        group
    }

    /// Takes the next group for a running place that has finished its group, or frees the place
    /// when no request waits.
    fn next_or_release(&self) -> Option<Vec<Waiting<R, O>>> {
        let mut state = self.lock();
        if state.waiting.is_empty() {
            state.running -= 1;
            None
        } else {
            Some(self.take_group(&mut state))
        }
    }

    /// Runs `group`, then the groups that are waiting, until none is, and releases its place.
    async fn drain(inner: Arc<Inner<R, O>>, mut group: Vec<Waiting<R, O>>) {
        let mut place = Place { inner: Some(inner.clone()) };
        loop {
            let (requests, replies): (Vec<R>, Vec<oneshot::Sender<O>>) =
                group.into_iter().map(|waiting| (waiting.request, waiting.reply)).unzip();
            let outputs = (inner.run)(requests).await;
            for (reply, output) in replies.into_iter().zip(outputs) {
                // A caller that stopped waiting no longer needs its output.
                let _ = reply.send(output);
            }
            match inner.next_or_release() {
                Some(next) => group = next,
                None => {
                    place.inner = None;
                    return;
                }
            }
        }
    }
}

/// A running place of a [`Group`]. Dropped before its group ended (the caller's future was
/// dropped, or the runner panicked), it hands the waiting requests to a new task, or frees the
/// place when none waits.
struct Place<R: Send + 'static, O: Send + 'static> {
    inner: Option<Arc<Inner<R, O>>>,
}

impl<R: Send + 'static, O: Send + 'static> Drop for Place<R, O> {
    fn drop(&mut self) {
        let Some(inner) = self.inner.take() else { return };
        let Some(next) = inner.next_or_release() else { return };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(Inner::drain(inner, next));
            }
            Err(_) => {
                // Without a runtime no task can run them: the requests get `Lost` when `next` is
                // dropped, and the place is freed for later callers.
                inner.lock().running -= 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    /// Creates a group whose runner records the size of every group and echoes each request.
    fn echo_group(max_running: usize, max_group: usize, sizes: Arc<Mutex<Vec<usize>>>) -> Group<String, String> {
        let run: Runner<String, String> = Arc::new(move |requests: Vec<String>| {
            let sizes = sizes.clone();
            Box::pin(async move {
                sizes.lock().unwrap().push(requests.len());
                tokio::time::sleep(Duration::from_millis(20)).await;
                requests.into_iter().map(|request| format!("done {request}")).collect()
            })
        });
        Group::new(max_running, max_group, |request: &String| request.split('/').next().unwrap_or(""), run)
    }

    #[tokio::test]
    async fn group_runs_lone_request_at_once() {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let group = echo_group(1, 8, sizes.clone());
        assert_eq!(group.submit("a/1".to_string()).await.unwrap(), "done a/1");
        assert_eq!(*sizes.lock().unwrap(), vec![1]);
    }

    #[tokio::test]
    async fn group_takes_one_request_per_key() {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let group = echo_group(1, 8, sizes.clone());
        let first = tokio::spawn({
            let group = group.clone();
            async move { group.submit("a/1".to_string()).await.unwrap() }
        });
        tokio::time::sleep(Duration::from_millis(5)).await;
        let mut later = Vec::new();
        for request in ["b/1", "c/1", "b/2", "d/1"] {
            let group = group.clone();
            later.push(tokio::spawn(async move { group.submit(request.to_string()).await.unwrap() }));
        }
        assert_eq!(first.await.unwrap(), "done a/1");
        let outputs: Vec<String> = futures::future::join_all(later).await.into_iter().map(Result::unwrap).collect();
        assert_eq!(outputs, ["done b/1", "done c/1", "done b/2", "done d/1"]);
        // The second request on stream b waits for the group after the one of b/1.
        assert_eq!(*sizes.lock().unwrap(), vec![1, 3, 1]);
    }

    #[tokio::test]
    async fn group_respects_size_and_running_limits() {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let running = Arc::new(AtomicUsize::new(0));
        let max_seen = Arc::new(AtomicUsize::new(0));
        let run: Runner<String, usize> = {
            let (sizes, running, max_seen) = (sizes.clone(), running.clone(), max_seen.clone());
            Arc::new(move |requests: Vec<String>| {
                let (sizes, running, max_seen) = (sizes.clone(), running.clone(), max_seen.clone());
                Box::pin(async move {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    max_seen.fetch_max(now, Ordering::SeqCst);
                    sizes.lock().unwrap().push(requests.len());
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    running.fetch_sub(1, Ordering::SeqCst);
                    vec![requests.len(); requests.len()]
                })
            })
        };
        let group = Group::new(2, 5, |request: &String| request.as_str(), run);
        let tasks: Vec<_> = (0..40)
            .map(|index| {
                let group = group.clone();
                tokio::spawn(async move { group.submit(format!("stream {index}")).await.unwrap() })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        let sizes = sizes.lock().unwrap();
        assert_eq!(sizes.iter().sum::<usize>(), 40);
        assert!(sizes.iter().all(|size| *size <= 5), "group sizes {sizes:?}");
        assert!(max_seen.load(Ordering::SeqCst) <= 2);
    }

    #[tokio::test]
    async fn group_survives_dropped_caller() {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let group = echo_group(1, 8, sizes.clone());
        let alone = tokio::spawn({
            let group = group.clone();
            async move { group.submit("a/1".to_string()).await }
        });
        tokio::time::sleep(Duration::from_millis(5)).await;
        let waiting = tokio::spawn({
            let group = group.clone();
            async move { group.submit("b/1".to_string()).await.unwrap() }
        });
        tokio::time::sleep(Duration::from_millis(5)).await;
        alone.abort();
        assert_eq!(waiting.await.unwrap(), "done b/1");
        assert_eq!(group.submit("c/1".to_string()).await.unwrap(), "done c/1");
    }
}
