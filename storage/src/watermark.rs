//! A monotonically advancing offset that tasks can wait on, or a terminal error.

use std::cell::RefCell;
use std::future::poll_fn;
use std::rc::Rc;
use std::task::{Poll, Waker};

#[derive(Debug)]
struct State<E> {
    value: u64,
    failed: Option<E>,
    waiters: Vec<(u64, Waker)>,
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
                .partition(|(at, _)| *at <= value);
            s.waiters = waiting;
            ready.into_iter().map(|(_, w)| w).collect()
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
                .map(|(_, w)| w)
                .collect()
        };
        woken.into_iter().for_each(Waker::wake);
    }

    pub fn failed(&self) -> Option<E> {
        self.state.borrow().failed.clone()
    }

    /// Resolves once the mark reaches `at`, or with the failure.
    pub async fn wait_for(&self, at: u64) -> Result<(), E> {
        poll_fn(|cx| {
            let mut s = self.state.borrow_mut();
            if s.value >= at {
                return Poll::Ready(Ok(()));
            }
            if let Some(e) = &s.failed {
                return Poll::Ready(Err(e.clone()));
            }
            s.waiters.push((at, cx.waker().clone()));
            Poll::Pending
        })
        .await
    }
}
