//! A monotonically advancing offset that tasks can wait on, or a terminal error.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

#[derive(Debug)]
struct State<E> {
    value: u64,
    failed: Option<E>,
    waiters: Vec<Waiter>,
    next_id: u64,
}

#[derive(Debug)]
struct Waiter {
    at: u64,
    id: u64,
    waker: Waker,
}

/// Shared on one thread (a shard).
#[derive(Debug)]
pub struct Watermark<E: Clone> {
    state: Rc<RefCell<State<E>>>,
}

impl<E: Clone> Clone for Watermark<E> {
    fn clone(&self) -> Self {
        Self {
            state: self.state.clone(),
        }
    }
}

impl<E: Clone> Watermark<E> {
    pub fn new(value: u64) -> Self {
        Self {
            state: Rc::new(RefCell::new(State {
                value,
                failed: None,
                waiters: Vec::new(),
                next_id: 0,
            })),
        }
    }

    pub fn get(&self) -> u64 {
        self.state.borrow().value
    }

    /// Moves the mark forward (never back) and wakes whoever it satisfies.
    pub fn advance(&self, value: u64) {
        let woken: Vec<Waker> = {
            let mut s = self.state.borrow_mut();
            assert!(
                value >= s.value,
                "watermark moved back from {} to {value}",
                s.value
            );
            s.value = value;
            let (ready, waiting) = std::mem::take(&mut s.waiters)
                .into_iter()
                .partition(|w| w.at <= value);
            s.waiters = waiting;
            ready.into_iter().map(|w: Waiter| w.waker).collect()
        };
        woken.into_iter().for_each(Waker::wake);
    }

    /// Fails every present and future wait.
    pub fn fail(&self, error: E) {
        let woken: Vec<Waker> = {
            let mut s = self.state.borrow_mut();
            if s.failed.is_none() {
                s.failed = Some(error);
            }
            std::mem::take(&mut s.waiters)
                .into_iter()
                .map(|w| w.waker)
                .collect()
        };
        woken.into_iter().for_each(Waker::wake);
    }

    pub fn failed(&self) -> Option<E> {
        self.state.borrow().failed.clone()
    }

    /// Resolves once the mark reaches `at`, or with the failure. Dropping the future
    /// before then withdraws its waker, so waits that lose a race (a timeout, a
    /// shutdown signal) leave nothing behind.
    pub fn wait_for(&self, at: u64) -> WaitFor<E> {
        WaitFor {
            state: self.state.clone(),
            at,
            id: None,
        }
    }
}

/// The future of [`Watermark::wait_for`].
#[derive(Debug)]
pub struct WaitFor<E> {
    state: Rc<RefCell<State<E>>>,
    at: u64,
    /// Set once this future has a waker registered.
    id: Option<u64>,
}

impl<E: Clone> Future for WaitFor<E> {
    type Output = Result<(), E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let mut s = this.state.borrow_mut();
        if s.value >= this.at {
            return Poll::Ready(Ok(()));
        }
        if let Some(e) = &s.failed {
            return Poll::Ready(Err(e.clone()));
        }
        if let Some(id) = this.id {
            if let Some(w) = s.waiters.iter_mut().find(|w| w.id == id) {
                if !w.waker.will_wake(cx.waker()) {
                    w.waker = cx.waker().clone();
                }
                return Poll::Pending;
            }
        }
        let id = s.next_id;
        s.next_id += 1;
        s.waiters.push(Waiter {
            at: this.at,
            id,
            waker: cx.waker().clone(),
        });
        this.id = Some(id);
        Poll::Pending
    }
}

impl<E> Drop for WaitFor<E> {
    fn drop(&mut self) {
        let Some(id) = self.id else { return };
        let mut s = self.state.borrow_mut();
        // Woken waiters were removed when woken; only a wait given up is still listed.
        if s.value < self.at && s.failed.is_none() {
            if let Some(i) = s.waiters.iter().position(|w| w.id == id) {
                s.waiters.swap_remove(i);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abandoned_waits_leave_no_waker_behind() {
        let mark: Watermark<()> = Watermark::new(0);
        let waker = futures_lite::future::block_on(futures_lite::future::poll_fn(|cx| {
            Poll::Ready(cx.waker().clone())
        }));
        let mut cx = Context::from_waker(&waker);
        for _ in 0..1000 {
            let mut wait = Box::pin(mark.wait_for(5));
            assert!(wait.as_mut().poll(&mut cx).is_pending());
            assert!(
                wait.as_mut().poll(&mut cx).is_pending(),
                "a re-poll reuses its slot"
            );
            assert_eq!(mark.state.borrow().waiters.len(), 1);
        }
        assert!(mark.state.borrow().waiters.is_empty());
        let mut wait = Box::pin(mark.wait_for(5));
        assert!(wait.as_mut().poll(&mut cx).is_pending());
        mark.advance(5);
        assert!(mark.state.borrow().waiters.is_empty());
        assert_eq!(wait.as_mut().poll(&mut cx), Poll::Ready(Ok(())));
    }
}
