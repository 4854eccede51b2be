//! A fixed number of slots, handed to waiters strictly in arrival order.
//!
//! glommio's `Semaphore` wakes a waiter and returns the unit to the pool, so a task
//! that releases and at once acquires again takes the unit back before the woken
//! waiter runs: one reader could keep the only slot for seconds while the others
//! starved. Here a released slot goes straight to the oldest waiter.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

#[derive(Debug)]
struct State {
    free: usize,
    /// By arrival (ids increase): the waker to call, and whether a slot was handed over.
    waiters: BTreeMap<u64, (Option<Waker>, bool)>,
    next_id: u64,
}

impl State {
    /// A slot came back: to the oldest waiter not yet served, or to the pool.
    fn release(&mut self) {
        let next = self.waiters.values_mut().find(|(_, granted)| !granted);
        match next {
            Some((waker, granted)) => {
                *granted = true;
                if let Some(w) = waker.take() {
                    w.wake();
                }
            }
            None => self.free += 1,
        }
    }
}

/// Shared on one thread (a shard). Cheap to clone.
#[derive(Debug, Clone)]
pub struct Turnstile {
    state: Rc<RefCell<State>>,
}

impl Turnstile {
    pub fn new(slots: usize) -> Self {
        Self {
            state: Rc::new(RefCell::new(State {
                free: slots,
                waiters: BTreeMap::new(),
                next_id: 0,
            })),
        }
    }

    /// Resolves to a slot, after everyone who asked earlier got theirs.
    pub fn acquire(&self) -> Acquire {
        Acquire {
            state: self.state.clone(),
            id: None,
        }
    }

    /// Tasks waiting for a slot.
    pub fn waiting(&self) -> usize {
        self.state.borrow().waiters.len()
    }
}

/// The future of [`Turnstile::acquire`]. Dropped while waiting, it leaves the queue
/// (passing on a slot it was handed but never took).
#[derive(Debug)]
pub struct Acquire {
    state: Rc<RefCell<State>>,
    id: Option<u64>,
}

impl Future for Acquire {
    type Output = Slot;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Slot> {
        let this = &mut *self;
        let mut st = this.state.borrow_mut();
        let id = match this.id {
            None => {
                if st.waiters.is_empty() && st.free > 0 {
                    st.free -= 1;
                    drop(st);
                    return Poll::Ready(Slot {
                        state: this.state.clone(),
                    });
                }
                let id = st.next_id;
                st.next_id += 1;
                st.waiters.insert(id, (None, false));
                this.id = Some(id);
                id
            }
            Some(id) => id,
        };
        let entry = st
            .waiters
            .get_mut(&id)
            .expect("a waiter stays queued until served");
        if entry.1 {
            st.waiters.remove(&id);
            this.id = None;
            drop(st);
            return Poll::Ready(Slot {
                state: this.state.clone(),
            });
        }
        entry.0 = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl Drop for Acquire {
    fn drop(&mut self) {
        let Some(id) = self.id else { return };
        let mut st = self.state.borrow_mut();
        if let Some((_, granted)) = st.waiters.remove(&id) {
            if granted {
                st.release();
            }
        }
    }
}

/// A slot held; returned (to the oldest waiter) when dropped.
#[derive(Debug)]
pub struct Slot {
    state: Rc<RefCell<State>>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.state.borrow_mut().release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::future::{block_on, poll_once};

    #[test]
    fn a_released_slot_goes_to_the_oldest_waiter_not_to_a_newcomer() {
        block_on(async {
            let t = Turnstile::new(1);
            let held = t.acquire().await;
            let mut first = Box::pin(t.acquire());
            let mut second = Box::pin(t.acquire());
            assert!(poll_once(&mut first).await.is_none());
            assert!(poll_once(&mut second).await.is_none());
            drop(held);
            // A newcomer does not take the slot that was handed to `first`.
            let mut newcomer = Box::pin(t.acquire());
            assert!(poll_once(&mut newcomer).await.is_none());
            assert!(poll_once(&mut second).await.is_none());
            let s1 = poll_once(&mut first)
                .await
                .expect("first in line is served");
            drop(s1);
            let s2 = poll_once(&mut second).await.expect("then the second");
            assert!(poll_once(&mut newcomer).await.is_none());
            drop(s2);
            assert!(poll_once(&mut newcomer).await.is_some());
            assert_eq!(t.waiting(), 0);
        });
    }

    #[test]
    fn a_waiter_dropped_after_being_served_passes_its_slot_on() {
        block_on(async {
            let t = Turnstile::new(1);
            let held = t.acquire().await;
            let mut gone = Box::pin(t.acquire());
            let mut next = Box::pin(t.acquire());
            assert!(poll_once(&mut gone).await.is_none());
            assert!(poll_once(&mut next).await.is_none());
            drop(held); // handed to `gone`, which never takes it
            drop(gone);
            let s = poll_once(&mut next).await.expect("the slot moved on");
            drop(s);
            // And the pool has its one slot back.
            let again = t.acquire().await;
            let mut blocked = Box::pin(t.acquire());
            assert!(poll_once(&mut blocked).await.is_none());
            drop(again);
        });
    }

    #[test]
    fn slots_are_shared_up_to_the_count() {
        block_on(async {
            let t = Turnstile::new(2);
            let a = t.acquire().await;
            let b = t.acquire().await;
            let mut c = Box::pin(t.acquire());
            assert!(poll_once(&mut c).await.is_none());
            drop(a);
            let c = poll_once(&mut c)
                .await
                .expect("a freed slot serves the waiter");
            drop((b, c));
            let _x = t.acquire().await;
            let _y = t.acquire().await;
        });
    }
}
