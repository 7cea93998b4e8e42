//! First-come-first-served admission: at most a lane's limit of holders at once per key (a
//! function's concurrency, an API key's quota of concurrent calls); the rest wait in arrival
//! order. A place in line is taken synchronously ([`Lanes::enqueue`]), so the order of the calls
//! to `enqueue` is the order in which the waiters start.

use std::collections::HashMap;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::Mutex;
use std::task::Context;
use std::task::Poll;

use tokio::sync::oneshot;

/// Lanes by key.
#[derive(Default)]
pub struct Lanes {
    lanes: Mutex<HashMap<String, Lane>>,
    /// Notified when the last place of every lane is freed.
    idle: tokio::sync::Notify,
}

#[derive(Default)]
struct Lane {
    running: usize,
    limit: usize,
    waiting: VecDeque<oneshot::Sender<()>>,
}

impl Lanes {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Lane>> {
        self.lanes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes a place in `key`'s lane, which lets `limit` holders in at once (the latest `limit`
    /// given for a key applies): a permit now, or at its turn.
    pub fn enqueue(self: &Arc<Self>, key: &str, limit: usize) -> Ticket {
        let mut lanes = self.lock();
        let lane = lanes.entry(key.to_owned()).or_default();
        lane.limit = limit.max(1);
        let wait = if lane.running < lane.limit && lane.waiting.is_empty() {
            lane.running += 1;
            None
        } else {
            let (turn, wait) = oneshot::channel();
            lane.waiting.push_back(turn);
            Some(wait)
        };
        Ticket {
            permit: Some(Permit {
                lanes: self.clone(),
                key: key.to_owned(),
                held: true,
            }),
            wait,
            issued: std::time::Instant::now(),
            on_turn: None,
        }
    }

    /// How many wait in `key`'s lane.
    pub fn waiting(&self, key: &str) -> usize {
        self.occupancy(key).1
    }

    /// How many hold a place in `key`'s lane, and how many wait.
    pub fn occupancy(&self, key: &str) -> (usize, usize) {
        self.lock().get(key).map_or((0, 0), |lane| {
            let waiting = lane.waiting.iter().filter(|w| !w.is_closed()).count();
            (lane.running, waiting)
        })
    }

    /// Frees a place in `key`'s lane and lets the next waiter in.
    fn release(&self, key: &str) {
        let mut lanes = self.lock();
        let Some(lane) = lanes.get_mut(key) else {
            return;
        };
        lane.running -= 1;
        while lane.running < lane.limit {
            let Some(next) = lane.waiting.pop_front() else {
                break;
            };
            // A waiter that gave up (its receiver is gone) is skipped.
            if next.send(()).is_ok() {
                lane.running += 1;
            }
        }
        if lane.running == 0 && lane.waiting.is_empty() {
            lanes.remove(key);
            if lanes.is_empty() {
                self.idle.notify_waiters();
            }
        }
    }

    /// Waits until no lane holds or awaits a place.
    pub async fn idle(&self) {
        loop {
            let idle = self.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            if self.lock().is_empty() {
                return;
            }
            idle.await;
        }
    }
}

/// A place in a lane: resolves to a [`Permit`] at its turn.
pub struct Ticket {
    /// The permit this ticket becomes (taken when it does).
    permit: Option<Permit>,
    /// Resolves at the ticket's turn; `None` when it had its turn at once.
    wait: Option<oneshot::Receiver<()>>,
    /// When it was taken.
    issued: std::time::Instant,
    /// Told how long the ticket waited, at its turn.
    on_turn: Option<Box<dyn FnOnce(std::time::Duration) + Send>>,
}

impl Ticket {
    /// Whether the permit is available without waiting.
    #[cfg(test)]
    pub fn is_ready(&self) -> bool {
        self.wait.is_none()
    }
}

impl Ticket {
    /// The permit, if the ticket had its turn at once; the ticket otherwise.
    pub fn now(mut self) -> Result<Permit, Self> {
        if self.wait.is_some() {
            return Err(self);
        }
        Ok(self.turn())
    }

    /// Calls `report` with how long the ticket waited, at its turn (not if it is dropped
    /// first).
    pub fn on_turn(mut self, report: impl FnOnce(std::time::Duration) + Send + 'static) -> Self {
        self.on_turn = Some(Box::new(report));
        self
    }

    /// The permit, at the ticket's turn.
    fn turn(&mut self) -> Permit {
        if let Some(report) = self.on_turn.take() {
            report(self.issued.elapsed());
        }
        self.permit.take().expect("a ticket resolves once")
    }
}

impl Future for Ticket {
    type Output = Permit;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Permit> {
        if let Some(wait) = &mut self.wait {
            // The sender only goes away with the lanes themselves: then there is no limit.
            let _ = std::task::ready!(Pin::new(wait).poll(cx));
            self.wait = None;
        }
        Poll::Ready(self.turn())
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let Some(mut permit) = self.permit.take() else {
            return;
        };
        // Had its turn at once, or was granted just before being dropped: the place is passed
        // on. Otherwise it never held one (closing makes its turn pass it by).
        if let Some(mut wait) = self.wait.take() {
            wait.close();
            permit.held = wait.try_recv().is_ok();
        }
    }
}

/// A place in a lane, held until dropped.
pub struct Permit {
    lanes: Arc<Lanes>,
    key: String,
    /// False for the permit of a ticket dropped before its turn: it holds no place.
    held: bool,
}

impl Drop for Permit {
    fn drop(&mut self) {
        if self.held {
            self.lanes.release(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waiters_start_in_arrival_order_within_the_limit() {
        let lanes = Arc::new(Lanes::default());
        let first = lanes.enqueue("f", 2);
        let second = lanes.enqueue("f", 2);
        let third = lanes.enqueue("f", 2);
        let fourth = lanes.enqueue("f", 2);
        let other = lanes.enqueue("g", 2);
        assert!(first.is_ready() && second.is_ready() && other.is_ready());
        assert!(!third.is_ready() && !fourth.is_ready());
        assert_eq!(lanes.waiting("f"), 2);
        let first = first.await;
        let _second = second.await;
        // A waiter that gives up loses its place without blocking the next one.
        drop(third);
        assert_eq!(lanes.waiting("f"), 1);
        drop(first);
        let _fourth = tokio::time::timeout(std::time::Duration::from_secs(5), fourth)
            .await
            .expect("the fourth gets the freed place");
        assert_eq!(lanes.waiting("f"), 0);
    }
}
