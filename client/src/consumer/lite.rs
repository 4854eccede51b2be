//! The lite pull consumer: the application assigns queues, polls, seeks and commits.
//! Nothing runs in the background; offsets are committed to the brokers by
//! [`LitePullConsumer::commit`] (clustering-style, per group).

use super::{
    commit_offset, committed_offset, max_offset, min_offset, now_ms, pull, search_offset,
    PullOutcome, PullParams, Subscription,
};
use crate::error::{ClientError, Result};
use crate::instance::{ClientConfig, ClientInstance};
use crate::message::{MessageExt, MessageQueue};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Polls explicit queues from explicit offsets.
pub struct LitePullConsumer {
    instance: Arc<ClientInstance>,
    group: String,
    sub_version: i64,
    pull_batch: i32,
    /// Assigned queues: next offset to pull, and the filter.
    queues: BTreeMap<MessageQueue, (i64, Subscription)>,
    /// Offsets consumed up to (what `commit` writes).
    consumed: BTreeMap<MessageQueue, i64>,
    next: usize,
}

impl std::fmt::Debug for LitePullConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LitePullConsumer")
            .field("group", &self.group)
            .field("queues", &self.queues.len())
            .finish()
    }
}

impl LitePullConsumer {
    /// Connects to the nameservers in `config` for consumer group `group`.
    pub async fn start(group: impl Into<String>, config: ClientConfig) -> Result<Self> {
        let group = group.into();
        if group.is_empty() {
            return Err(ClientError::Config("the consumer group is empty".into()));
        }
        Ok(Self {
            instance: ClientInstance::start(config).await?,
            group,
            sub_version: now_ms(),
            pull_batch: 32,
            queues: BTreeMap::new(),
            consumed: BTreeMap::new(),
            next: 0,
        })
    }

    /// Messages asked per pull (default 32).
    pub fn set_pull_batch(&mut self, n: i32) {
        self.pull_batch = n.max(1);
    }

    /// The topic's readable queues.
    pub async fn fetch_queues(&self, topic: &str) -> Result<Vec<MessageQueue>> {
        Ok(self.instance.update_route(topic).await?.subscribe.clone())
    }

    /// Takes these queues with a tag filter (`"*"` for all), each starting at the group's
    /// committed offset, or at the queue's start when it has none.
    pub async fn assign(&mut self, mqs: Vec<MessageQueue>, tags: &str) -> Result<()> {
        self.queues.clear();
        self.consumed.clear();
        for mq in mqs {
            let start = match committed_offset(&self.instance, &self.group, &mq).await? {
                Some(o) => o,
                None => min_offset(&self.instance, &mq).await?,
            };
            let sub = Subscription::tags(mq.topic.clone(), tags);
            self.queues.insert(mq, (start, sub));
        }
        Ok(())
    }

    pub fn assignment(&self) -> Vec<MessageQueue> {
        self.queues.keys().cloned().collect()
    }

    fn slot(&mut self, mq: &MessageQueue) -> Result<&mut (i64, Subscription)> {
        self.queues
            .get_mut(mq)
            .ok_or_else(|| ClientError::Config(format!("{mq:?} is not assigned")))
    }

    /// The next poll of `mq` starts at `offset`.
    pub fn seek(&mut self, mq: &MessageQueue, offset: i64) -> Result<()> {
        self.slot(mq)?.0 = offset;
        Ok(())
    }

    /// The next poll starts at the first message stored at or after `timestamp_ms`.
    pub async fn seek_to_timestamp(&mut self, mq: &MessageQueue, timestamp_ms: i64) -> Result<i64> {
        let offset = search_offset(&self.instance, mq, timestamp_ms).await?;
        self.seek(mq, offset)?;
        Ok(offset)
    }

    pub async fn seek_to_begin(&mut self, mq: &MessageQueue) -> Result<i64> {
        let offset = min_offset(&self.instance, mq).await?;
        self.seek(mq, offset)?;
        Ok(offset)
    }

    pub async fn seek_to_end(&mut self, mq: &MessageQueue) -> Result<i64> {
        let offset = max_offset(&self.instance, mq).await?;
        self.seek(mq, offset)?;
        Ok(offset)
    }

    /// The next offset to be polled from `mq`.
    pub fn position(&self, mq: &MessageQueue) -> Option<i64> {
        self.queues.get(mq).map(|(o, _)| *o)
    }

    /// The group's committed offset of `mq` on its broker.
    pub async fn committed(&self, mq: &MessageQueue) -> Result<Option<i64>> {
        committed_offset(&self.instance, &self.group, mq).await
    }

    /// Pulls the assigned queues in turn until one has messages or `timeout` passes.
    pub async fn poll(&mut self, timeout: Duration) -> Result<Vec<MessageExt>> {
        if self.queues.is_empty() {
            return Err(ClientError::Config("no queue assigned".into()));
        }
        let deadline = Instant::now() + timeout;
        loop {
            let mqs: Vec<MessageQueue> = self.queues.keys().cloned().collect();
            for _ in 0..mqs.len() {
                let mq = mqs[self.next % mqs.len()].clone();
                self.next = self.next.wrapping_add(1);
                let (offset, sub) = self.queues[&mq].clone();
                let outcome = pull(
                    &self.instance,
                    PullParams {
                        group: &self.group,
                        mq: &mq,
                        offset,
                        max: self.pull_batch,
                        commit_offset: None,
                        suspend: None,
                        sub: &sub,
                        sub_version: self.sub_version,
                    },
                )
                .await?;
                let (msgs, next) = match outcome {
                    PullOutcome::Found { msgs, next } => (msgs, next),
                    PullOutcome::NoNewMessage { next } | PullOutcome::OffsetIllegal { next } => {
                        (Vec::new(), next)
                    }
                };
                self.slot(&mq)?.0 = next;
                self.consumed.insert(mq, next);
                if !msgs.is_empty() {
                    return Ok(msgs);
                }
            }
            if Instant::now() >= deadline {
                return Ok(Vec::new());
            }
            tokio::time::sleep(Duration::from_millis(20).min(timeout)).await;
        }
    }

    /// Commits what was polled so far as the group's offsets.
    pub async fn commit(&mut self) -> Result<()> {
        for (mq, offset) in &self.consumed {
            commit_offset(&self.instance, &self.group, mq, *offset).await?;
        }
        Ok(())
    }

    /// Closes connections (offsets are not committed: call [`Self::commit`] first).
    pub async fn shutdown(&self) {
        self.instance.shutdown().await;
    }
}
