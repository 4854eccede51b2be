//! The push consumer: pulls with long polling on behalf of a listener.
//!
//! - Clustering: the group's queues are shared out (rebalance every 20 s, at once when a
//!   broker says membership changed); offsets are committed to the brokers every 5 s
//!   and at shutdown. The group's retry topic is subscribed too.
//! - Broadcasting: every consumer takes every queue; offsets go to a local file.
//! - Concurrent listeners run up to `concurrency` batches at once; a failed batch goes
//!   back to the broker (CONSUMER_SEND_MSG_BACK) and returns through the retry topic.
//! - Orderly listeners see each queue's messages one batch at a time, in order, while
//!   this consumer holds the queue's broker lock (clustering); a failed batch is
//!   retried in place after a pause, and past `max_reconsume_times` goes to the DLQ.
//!
//! Flow control: a queue stops being pulled while it holds more than
//! `queue_max_messages` or `queue_max_bytes` unconsumed.

use super::{
    now_ms, pull, restore_retry_topic, start_offset, ConsumeFrom, MessageModel, OffsetStore,
    PullOutcome, PullParams, Subscription, RETRY_GROUP_TOPIC_PREFIX,
};
use crate::allocate::AllocateStrategy;
use crate::error::{ClientError, Result};
use crate::instance::{ClientConfig, ClientInstance, ConsumerHook, TopicRoute};
use crate::message::{MessageExt, MessageQueue};
use protocol::body::{
    CheckClientRequestBody, ConsumerData, ConsumerListByGroupResponseBody, LockBatchRequestBody,
    LockBatchResponseBody,
};
use protocol::code::request;
use protocol::header::{ConsumerGroupRequestHeader, ConsumerSendMsgBackRequestHeader};
use protocol::RemotingCommand;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, Semaphore};

/// How long a broker lock is trusted after it was taken (`REBALANCE_LOCK_MAX_LIVE_TIME`).
const LOCK_TRUSTED_FOR: Duration = Duration::from_secs(30);
/// Pause before an orderly batch is tried again (`suspendCurrentQueueTimeMillis`).
const ORDERLY_RETRY_PAUSE: Duration = Duration::from_secs(1);
/// Pause after a failed pull (`PULL_TIME_DELAY_MILLS_WHEN_EXCEPTION` is 3 s).
const PULL_ERROR_PAUSE: Duration = Duration::from_secs(1);
/// Pause while a queue is over its flow-control thresholds.
const FLOW_CONTROL_PAUSE: Duration = Duration::from_millis(50);
/// Retry of a batch whose send-back failed.
const LOCAL_RETRY_PAUSE: Duration = Duration::from_secs(5);

/// A listener's verdict on a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsumeStatus {
    Success,
    /// Concurrent: redeliver later through the retry topic. Orderly: pause the queue
    /// and retry the batch (`SUSPEND_CURRENT_QUEUE_A_MOMENT`).
    ReconsumeLater,
}

type Listener = Arc<
    dyn Fn(Vec<MessageExt>) -> Pin<Box<dyn Future<Output = ConsumeStatus> + Send>> + Send + Sync,
>;

/// Builds a [`PushConsumer`].
#[derive(Debug)]
pub struct PushConsumerBuilder {
    group: String,
    config: ClientConfig,
    subs: Vec<Subscription>,
    model: MessageModel,
    from: ConsumeFrom,
    strategy: AllocateStrategy,
    pull_batch: i32,
    consume_batch: usize,
    concurrency: usize,
    queue_max_messages: usize,
    queue_max_bytes: usize,
    max_reconsume_times: i32,
    offset_dir: PathBuf,
    rebalance_interval: Duration,
    persist_interval: Duration,
    suspend: Duration,
}

impl PushConsumerBuilder {
    pub fn namesrv(mut self, addrs: &str) -> Self {
        self.config.namesrv_addrs = ClientConfig::new(addrs).namesrv_addrs;
        self
    }
    pub fn config(mut self, config: ClientConfig) -> Self {
        self.config = config;
        self
    }
    /// Subscribes to `topic` with a tag expression (`"*"`, `"TagA || TagB"`).
    pub fn subscribe(mut self, topic: &str, tags: &str) -> Self {
        self.subs.push(Subscription::tags(topic, tags));
        self
    }
    /// Subscribes to `topic` with an SQL92 filter on message properties.
    pub fn subscribe_sql92(mut self, topic: &str, expression: &str) -> Self {
        self.subs.push(Subscription::sql92(topic, expression));
        self
    }
    pub fn message_model(mut self, model: MessageModel) -> Self {
        self.model = model;
        self
    }
    pub fn consume_from(mut self, from: ConsumeFrom) -> Self {
        self.from = from;
        self
    }
    pub fn allocate(mut self, strategy: AllocateStrategy) -> Self {
        self.strategy = strategy;
        self
    }
    /// Messages asked per pull (`pullBatchSize`, default 32).
    pub fn pull_batch(mut self, n: i32) -> Self {
        self.pull_batch = n.max(1);
        self
    }
    /// Messages per listener call (`consumeMessageBatchMaxSize`, default 1).
    pub fn consume_batch(mut self, n: usize) -> Self {
        self.consume_batch = n.max(1);
        self
    }
    /// Listener calls running at once (concurrent mode; default 20).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }
    /// Flow control per queue (`pullThresholdForQueue` 1000,
    /// `pullThresholdSizeForQueue` 100 MiB).
    pub fn queue_thresholds(mut self, messages: usize, bytes: usize) -> Self {
        self.queue_max_messages = messages.max(1);
        self.queue_max_bytes = bytes.max(1);
        self
    }
    /// Deliveries before a message goes to the DLQ (default 16).
    pub fn max_reconsume_times(mut self, n: i32) -> Self {
        self.max_reconsume_times = n;
        self
    }
    /// Broadcasting offsets go to `<dir>/<client id>/<group>/offsets.json` (default
    /// `~/.rocketmq_offsets`). Set a fixed instance name in the config to find them
    /// again after a restart.
    pub fn offset_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.offset_dir = dir.into();
        self
    }
    /// How often queues are shared out again (default 20 s).
    pub fn rebalance_interval(mut self, interval: Duration) -> Self {
        self.rebalance_interval = interval;
        self
    }
    /// How often offsets are written (default 5 s).
    pub fn persist_interval(mut self, interval: Duration) -> Self {
        self.persist_interval = interval;
        self
    }

    /// Starts consuming; `listener` may run for many batches at once.
    pub async fn start<F, Fut>(self, listener: F) -> Result<PushConsumer>
    where
        F: Fn(Vec<MessageExt>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ConsumeStatus> + Send + 'static,
    {
        self.launch(wrap(listener), false).await
    }

    /// Starts consuming in order: per queue, one batch at a time.
    pub async fn start_orderly<F, Fut>(self, listener: F) -> Result<PushConsumer>
    where
        F: Fn(Vec<MessageExt>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ConsumeStatus> + Send + 'static,
    {
        self.launch(wrap(listener), true).await
    }

    async fn launch(self, listener: Listener, orderly: bool) -> Result<PushConsumer> {
        if self.group.is_empty() {
            return Err(ClientError::Config("the consumer group is empty".into()));
        }
        if self.subs.is_empty() {
            return Err(ClientError::Config("no subscription".into()));
        }
        for sub in &self.subs {
            crate::message::check_topic(&sub.topic)?;
        }
        let instance = ClientInstance::start(self.config).await?;
        let offsets = match self.model {
            MessageModel::Clustering => OffsetStore::remote(),
            MessageModel::Broadcasting => OffsetStore::local(
                self.offset_dir
                    .join(&instance.client_id)
                    .join(&self.group)
                    .join("offsets.json"),
            )?,
        };
        let mut subs = self.subs;
        if self.model == MessageModel::Clustering {
            subs.push(Subscription::tags(
                format!("{RETRY_GROUP_TOPIC_PREFIX}{}", self.group),
                "*",
            ));
        }
        let inner = Arc::new(PushInner {
            instance,
            group: self.group,
            subs,
            model: self.model,
            from: self.from,
            strategy: self.strategy,
            pull_batch: self.pull_batch,
            consume_batch: self.consume_batch,
            queue_max_messages: self.queue_max_messages,
            queue_max_bytes: self.queue_max_bytes,
            max_reconsume_times: self.max_reconsume_times,
            suspend: self.suspend,
            orderly,
            listener,
            permits: Arc::new(Semaphore::new(self.concurrency)),
            sub_version: now_ms(),
            offsets,
            queues: Mutex::default(),
            rebalance_now: Notify::new(),
            stopped: AtomicBool::new(false),
            tasks: Mutex::default(),
        });
        let hook: Arc<dyn ConsumerHook> = inner.clone();
        inner
            .instance
            .add_consumer(&inner.group, Arc::downgrade(&hook));
        inner.prepare().await?;
        inner
            .clone()
            .spawn_background(self.rebalance_interval, self.persist_interval);
        Ok(PushConsumer { inner })
    }
}

fn wrap<F, Fut>(f: F) -> Listener
where
    F: Fn(Vec<MessageExt>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ConsumeStatus> + Send + 'static,
{
    Arc::new(move |msgs| Box::pin(f(msgs)))
}

/// A running push consumer.
pub struct PushConsumer {
    inner: Arc<PushInner>,
}

impl std::fmt::Debug for PushConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PushConsumer")
            .field("group", &self.inner.group)
            .field("client_id", &self.inner.instance.client_id)
            .finish()
    }
}

/// Dropping a consumer without [`PushConsumer::shutdown`] stops it at once: offsets
/// consumed since the last periodic commit are not committed (they are redelivered).
impl Drop for PushConsumer {
    fn drop(&mut self) {
        let inner = &self.inner;
        inner.stopped.store(true, Ordering::Release);
        for task in inner.tasks.lock().expect("tasks lock").drain(..) {
            task.abort();
        }
        for pq in inner.queues.lock().expect("queues lock").values() {
            pq.dropped.store(true, Ordering::Release);
            pq.abort();
        }
    }
}

impl PushConsumer {
    pub fn builder(group: impl Into<String>) -> PushConsumerBuilder {
        PushConsumerBuilder {
            group: group.into(),
            config: ClientConfig::default(),
            subs: Vec::new(),
            model: MessageModel::Clustering,
            from: ConsumeFrom::LastOffset,
            strategy: AllocateStrategy::Averagely,
            pull_batch: 32,
            consume_batch: 1,
            concurrency: 20,
            queue_max_messages: 1000,
            queue_max_bytes: 100 << 20,
            max_reconsume_times: 16,
            offset_dir: std::env::var_os("HOME")
                .map_or_else(std::env::temp_dir, PathBuf::from)
                .join(".rocketmq_offsets"),
            rebalance_interval: Duration::from_secs(20),
            persist_interval: Duration::from_secs(5),
            suspend: Duration::from_secs(15),
        }
    }

    pub fn client_id(&self) -> &str {
        &self.inner.instance.client_id
    }

    /// The queues this consumer holds now.
    pub fn assigned(&self) -> Vec<MessageQueue> {
        let mut v: Vec<MessageQueue> = self
            .inner
            .queues
            .lock()
            .expect("queues lock")
            .keys()
            .cloned()
            .collect();
        v.sort();
        v
    }

    /// Shares the queues out again now (normally every 20 s and on broker notice).
    pub async fn rebalance(&self) {
        self.inner.rebalance().await;
    }

    /// Stops pulling, commits offsets, releases queue locks, unregisters.
    pub async fn shutdown(&self) {
        let inner = &self.inner;
        inner.stopped.store(true, Ordering::Release);
        for task in inner.tasks.lock().expect("tasks lock").drain(..) {
            task.abort();
        }
        let queues: Vec<Arc<ProcessQueue>> = inner
            .queues
            .lock()
            .expect("queues lock")
            .drain()
            .map(|(_, pq)| pq)
            .collect();
        for pq in &queues {
            pq.dropped.store(true, Ordering::Release);
            pq.abort();
        }
        if let Err(e) = inner
            .offsets
            .persist(&inner.instance, &inner.group, None)
            .await
        {
            tracing::warn!(error = %e, "offset commit at shutdown failed");
        }
        if inner.orderly && inner.model == MessageModel::Clustering {
            let mqs: Vec<MessageQueue> = queues.iter().map(|pq| pq.mq.clone()).collect();
            inner.unlock(&mqs).await;
        }
        inner.instance.shutdown().await;
    }
}

/// A queue this consumer holds.
struct ProcessQueue {
    mq: MessageQueue,
    sub: Subscription,
    dropped: AtomicBool,
    /// Pulled, not yet consumed: offset → body bytes.
    inflight: Mutex<BTreeMap<i64, usize>>,
    inflight_bytes: AtomicUsize,
    max_seen: AtomicI64,
    locked_at: Mutex<Option<Instant>>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl ProcessQueue {
    fn add(&self, msgs: &[MessageExt]) {
        let mut inflight = self.inflight.lock().expect("inflight lock");
        for m in msgs {
            if inflight.insert(m.queue_offset, m.body.len()).is_none() {
                self.inflight_bytes
                    .fetch_add(m.body.len(), Ordering::Relaxed);
            }
            self.max_seen.fetch_max(m.queue_offset, Ordering::Relaxed);
        }
    }

    /// Forgets consumed offsets; returns the offset to commit (`removeMessage`).
    fn remove(&self, offsets: &[i64]) -> i64 {
        let mut inflight = self.inflight.lock().expect("inflight lock");
        for o in offsets {
            if let Some(bytes) = inflight.remove(o) {
                self.inflight_bytes.fetch_sub(bytes, Ordering::Relaxed);
            }
        }
        inflight
            .keys()
            .next()
            .copied()
            .unwrap_or_else(|| self.max_seen.load(Ordering::Relaxed) + 1)
    }

    fn over_threshold(&self, max_messages: usize, max_bytes: usize) -> bool {
        self.inflight.lock().expect("inflight lock").len() >= max_messages
            || self.inflight_bytes.load(Ordering::Relaxed) >= max_bytes
    }

    fn is_empty(&self) -> bool {
        self.inflight.lock().expect("inflight lock").is_empty()
    }

    fn is_locked(&self) -> bool {
        self.locked_at
            .lock()
            .expect("lock time")
            .is_some_and(|t| t.elapsed() < LOCK_TRUSTED_FOR)
    }

    fn set_locked(&self, locked: bool) {
        *self.locked_at.lock().expect("lock time") = locked.then(Instant::now);
    }

    fn abort(&self) {
        if let Some(task) = self.task.lock().expect("task lock").take() {
            task.abort();
        }
    }
}

struct PushInner {
    instance: Arc<ClientInstance>,
    group: String,
    subs: Vec<Subscription>,
    model: MessageModel,
    from: ConsumeFrom,
    strategy: AllocateStrategy,
    pull_batch: i32,
    consume_batch: usize,
    queue_max_messages: usize,
    queue_max_bytes: usize,
    max_reconsume_times: i32,
    suspend: Duration,
    orderly: bool,
    listener: Listener,
    permits: Arc<Semaphore>,
    sub_version: i64,
    offsets: OffsetStore,
    queues: Mutex<HashMap<MessageQueue, Arc<ProcessQueue>>>,
    rebalance_now: Notify,
    stopped: AtomicBool,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl ConsumerHook for PushInner {
    fn consumer_data(&self) -> ConsumerData {
        ConsumerData {
            group_name: self.group.clone(),
            consume_type: "CONSUME_PASSIVELY".into(),
            message_model: self.model.java_name().into(),
            consume_from_where: self.from.java_name().into(),
            subscription_data_set: self.subs.iter().map(|s| s.data(self.sub_version)).collect(),
            unit_mode: false,
        }
    }

    fn rebalance_soon(&self) {
        self.rebalance_now.notify_one();
    }
}

impl PushInner {
    /// Routes, a first heartbeat, and the brokers' consent to SQL92 filters.
    async fn prepare(&self) -> Result<()> {
        for sub in &self.subs {
            if let Err(e) = self.instance.update_route(&sub.topic).await {
                // The retry topic appears with the first heartbeat; others may come later.
                tracing::info!(topic = sub.topic, error = %e, "no route yet");
            }
        }
        self.instance.heartbeat().await;
        for sub in self.subs.iter().filter(|s| s.sql92) {
            // The topic's brokers; while it has no route, every broker this client knows.
            let addrs: BTreeSet<String> = match self.instance.route(&sub.topic).await {
                Ok(route) => route.masters().cloned().collect(),
                Err(_) => self.instance.all_masters(),
            };
            let body = CheckClientRequestBody {
                client_id: self.instance.client_id.clone(),
                group: self.group.clone(),
                subscription_data: sub.data(self.sub_version),
            };
            for addr in &addrs {
                let cmd = RemotingCommand::request(request::CHECK_CLIENT_CONFIG)
                    .with_body(serde_json::to_vec(&body).expect("check body serializes"));
                self.instance.call(addr, cmd).await?;
            }
        }
        Ok(())
    }

    fn spawn_background(self: Arc<Self>, rebalance_every: Duration, persist_every: Duration) {
        let weak = Arc::downgrade(&self);
        let rebalance = tokio::spawn(async move {
            loop {
                let Some(me) = weak.upgrade() else { return };
                let complete = me.rebalance().await;
                if me.orderly && me.model == MessageModel::Clustering {
                    me.renew_locks().await;
                }
                // Missing routes or members: look again soon.
                let wait = if complete {
                    rebalance_every
                } else {
                    Duration::from_secs(1)
                };
                let notified = {
                    let me = me.clone();
                    async move { me.rebalance_now.notified().await }
                };
                drop(me);
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = notified => {}
                }
            }
        });
        let weak: Weak<PushInner> = Arc::downgrade(&self);
        let persist = tokio::spawn(async move {
            let mut tick = tokio::time::interval(persist_every);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(me) = weak.upgrade() else { return };
                let _ = me.offsets.persist(&me.instance, &me.group, None).await;
            }
        });
        self.tasks
            .lock()
            .expect("tasks lock")
            .extend([rebalance, persist]);
    }

    /// Shares out every subscribed topic's queues; false when some topic could not be
    /// (no route, or the broker does not list this consumer yet).
    async fn rebalance(self: &Arc<Self>) -> bool {
        let mut complete = true;
        for sub in &self.subs {
            let route = match self.instance.update_route(&sub.topic).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::debug!(topic = sub.topic, error = %e, "rebalance: no route");
                    complete = false;
                    continue;
                }
            };
            let mine = match self.model {
                MessageModel::Broadcasting => route.subscribe.clone(),
                MessageModel::Clustering => match self.consumer_ids(&route).await {
                    Ok(ids) if ids.contains(&self.instance.client_id) => {
                        self.strategy
                            .allocate(&self.instance.client_id, &route.subscribe, &ids)
                    }
                    Ok(_) => {
                        complete = false;
                        continue;
                    }
                    Err(e) => {
                        tracing::debug!(topic = sub.topic, error = %e, "rebalance: no member list");
                        complete = false;
                        continue;
                    }
                },
            };
            self.apply(sub, mine).await;
        }
        complete
    }

    async fn consumer_ids(&self, route: &TopicRoute) -> Result<Vec<String>> {
        let addr = route.masters().min().ok_or_else(|| ClientError::NoRoute {
            topic: self.group.clone(),
            reason: "no master broker".into(),
        })?;
        let cmd = RemotingCommand::request(request::GET_CONSUMER_LIST_BY_GROUP).with_header(
            &ConsumerGroupRequestHeader {
                consumer_group: self.group.clone(),
            },
        );
        let answer = self.instance.call(addr, cmd).await?;
        let body: ConsumerListByGroupResponseBody = protocol::json::from_slice(&answer.body)
            .map_err(|e| ClientError::BadAnswer {
                addr: addr.clone(),
                message: e.to_string(),
            })?;
        let mut ids = body.consumer_id_list;
        ids.sort();
        Ok(ids)
    }

    /// Drops queues no longer ours, starts pulling the new ones.
    async fn apply(self: &Arc<Self>, sub: &Subscription, mine: Vec<MessageQueue>) {
        let mine: BTreeSet<MessageQueue> = mine.into_iter().collect();
        let gone: Vec<Arc<ProcessQueue>> = {
            let mut queues = self.queues.lock().expect("queues lock");
            let gone_keys: Vec<MessageQueue> = queues
                .keys()
                .filter(|mq| mq.topic == sub.topic && !mine.contains(mq))
                .cloned()
                .collect();
            gone_keys
                .iter()
                .filter_map(|mq| queues.remove(mq))
                .collect()
        };
        for pq in &gone {
            pq.dropped.store(true, Ordering::Release);
            pq.abort();
            if !self.offsets.is_local() {
                if let Some(offset) = self.offsets.get(&pq.mq) {
                    let _ = super::commit_offset(&self.instance, &self.group, &pq.mq, offset).await;
                }
                self.offsets.remove(&pq.mq);
            }
        }
        if self.orderly && self.model == MessageModel::Clustering && !gone.is_empty() {
            let mqs: Vec<MessageQueue> = gone.iter().map(|pq| pq.mq.clone()).collect();
            self.unlock(&mqs).await;
        }
        for mq in mine {
            if self.queues.lock().expect("queues lock").contains_key(&mq) {
                continue;
            }
            let start = match self.first_offset(&mq).await {
                Ok(o) => o,
                Err(e) => {
                    tracing::warn!(?mq, error = %e, "cannot find where to start");
                    continue;
                }
            };
            self.offsets.update(&mq, start, false);
            let pq = Arc::new(ProcessQueue {
                mq: mq.clone(),
                sub: sub.clone(),
                dropped: AtomicBool::new(false),
                inflight: Mutex::default(),
                inflight_bytes: AtomicUsize::new(0),
                max_seen: AtomicI64::new(start - 1),
                locked_at: Mutex::new(None),
                task: Mutex::new(None),
            });
            let task = tokio::spawn(self.clone().pull_loop(pq.clone(), start));
            *pq.task.lock().expect("task lock") = Some(task);
            self.queues.lock().expect("queues lock").insert(mq, pq);
        }
    }

    async fn first_offset(&self, mq: &MessageQueue) -> Result<i64> {
        let committed = if self.offsets.is_local() {
            self.offsets.get(mq)
        } else {
            super::committed_offset(&self.instance, &self.group, mq).await?
        };
        start_offset(&self.instance, committed, mq, self.from).await
    }

    async fn pull_loop(self: Arc<Self>, pq: Arc<ProcessQueue>, mut offset: i64) {
        let clustering = self.model == MessageModel::Clustering;
        loop {
            if pq.dropped.load(Ordering::Acquire) || self.stopped.load(Ordering::Acquire) {
                return;
            }
            if !self.orderly && pq.over_threshold(self.queue_max_messages, self.queue_max_bytes) {
                tokio::time::sleep(FLOW_CONTROL_PAUSE).await;
                continue;
            }
            if self.orderly && clustering && !pq.is_locked() {
                let locked = self.lock(std::slice::from_ref(&pq.mq)).await;
                pq.set_locked(locked.contains(&pq.mq));
                if !pq.is_locked() {
                    tokio::time::sleep(ORDERLY_RETRY_PAUSE).await;
                    continue;
                }
            }
            let params = PullParams {
                group: &self.group,
                mq: &pq.mq,
                offset,
                max: self.pull_batch,
                commit_offset: if clustering {
                    self.offsets.get(&pq.mq)
                } else {
                    None
                },
                suspend: Some(self.suspend),
                sub: &pq.sub,
                sub_version: self.sub_version,
            };
            let r = pull(&self.instance, params).await;
            match r {
                Ok(PullOutcome::Found { mut msgs, next }) => {
                    for m in &mut msgs {
                        restore_retry_topic(m, &self.group);
                    }
                    if msgs.is_empty() {
                        // All filtered out: move the committed offset along.
                        if pq.is_empty() {
                            self.offsets.update(&pq.mq, next, true);
                        }
                        offset = next;
                    } else if self.orderly {
                        offset = match self.consume_orderly(&pq, msgs, next).await {
                            Some(resume) => resume,
                            None => next,
                        };
                    } else {
                        offset = next;
                        pq.add(&msgs);
                        self.dispatch(&pq, msgs).await;
                    }
                }
                Ok(PullOutcome::NoNewMessage { next }) => {
                    if pq.is_empty() && next > offset {
                        self.offsets.update(&pq.mq, next, true);
                    }
                    offset = next.max(offset);
                }
                Ok(PullOutcome::OffsetIllegal { next }) => {
                    tracing::warn!(mq = ?pq.mq, offset, next, "pull offset out of range; moving");
                    offset = next;
                    self.offsets.update(&pq.mq, next, false);
                }
                Err(e) => {
                    tracing::debug!(mq = ?pq.mq, error = %e, "pull failed");
                    tokio::time::sleep(PULL_ERROR_PAUSE).await;
                }
            }
        }
    }

    /// Hands a pull's messages to the listener in batches, `concurrency` at a time.
    async fn dispatch(self: &Arc<Self>, pq: &Arc<ProcessQueue>, msgs: Vec<MessageExt>) {
        let mut msgs = msgs.into_iter().peekable();
        while msgs.peek().is_some() {
            let batch: Vec<MessageExt> = msgs.by_ref().take(self.consume_batch).collect();
            let Ok(permit) = self.permits.clone().acquire_owned().await else {
                return;
            };
            let me = self.clone();
            let pq = pq.clone();
            tokio::spawn(async move {
                me.consume_concurrently(&pq, batch).await;
                drop(permit);
            });
        }
    }

    async fn call_listener(&self, batch: Vec<MessageExt>) -> ConsumeStatus {
        // Its own task, so that a panicking listener costs a redelivery, not the consumer.
        match tokio::spawn((self.listener)(batch)).await {
            Ok(status) => status,
            Err(e) => {
                tracing::warn!(error = %e, "listener failed; redelivering");
                ConsumeStatus::ReconsumeLater
            }
        }
    }

    async fn consume_concurrently(
        self: &Arc<Self>,
        pq: &Arc<ProcessQueue>,
        batch: Vec<MessageExt>,
    ) {
        let mut batch = batch;
        while !batch.is_empty() && !pq.dropped.load(Ordering::Acquire) {
            let status = self.call_listener(batch.clone()).await;
            let mut failed = Vec::new();
            if status == ConsumeStatus::ReconsumeLater {
                match self.model {
                    MessageModel::Broadcasting => {
                        tracing::warn!(
                            count = batch.len(),
                            "broadcast messages failed; not redelivered"
                        );
                    }
                    MessageModel::Clustering => {
                        for msg in &batch {
                            if let Err(e) = self.send_back(&pq.mq, msg, 0).await {
                                tracing::warn!(error = %e, "send-back failed; retrying locally");
                                failed.push(msg.clone());
                            }
                        }
                    }
                }
            }
            let done: Vec<i64> = batch
                .iter()
                .map(|m| m.queue_offset)
                .filter(|o| !failed.iter().any(|m| m.queue_offset == *o))
                .collect();
            let commit = pq.remove(&done);
            if !pq.dropped.load(Ordering::Acquire) {
                self.offsets.update(&pq.mq, commit, true);
            }
            if !failed.is_empty() {
                tokio::time::sleep(LOCAL_RETRY_PAUSE).await;
            }
            batch = failed;
        }
    }

    /// Consumes one pull's messages in order. Returns where to pull from next when it
    /// stopped early (queue dropped or lock lost), `None` when all were consumed.
    async fn consume_orderly(
        &self,
        pq: &Arc<ProcessQueue>,
        msgs: Vec<MessageExt>,
        next: i64,
    ) -> Option<i64> {
        let clustering = self.model == MessageModel::Clustering;
        let mut i = 0;
        let mut failures = 0;
        while i < msgs.len() {
            if pq.dropped.load(Ordering::Acquire)
                || self.stopped.load(Ordering::Acquire)
                || (clustering && !pq.is_locked())
            {
                return Some(msgs[i].queue_offset);
            }
            let end = (i + self.consume_batch).min(msgs.len());
            let mut batch = msgs[i..end].to_vec();
            for m in &mut batch {
                m.reconsume_times += failures;
            }
            match self.call_listener(batch).await {
                ConsumeStatus::Success => {
                    failures = 0;
                    i = end;
                    let commit = if i == msgs.len() {
                        next
                    } else {
                        msgs[i].queue_offset
                    };
                    self.offsets.update(&pq.mq, commit, true);
                }
                ConsumeStatus::ReconsumeLater => {
                    failures += 1;
                    if clustering && failures > self.max_reconsume_times {
                        // Give up on these: to the DLQ, then go on with the queue.
                        let mut all_sent = true;
                        for m in &msgs[i..end] {
                            if let Err(e) = self.send_back(&pq.mq, m, -1).await {
                                tracing::warn!(error = %e, "orderly: DLQ send-back failed");
                                all_sent = false;
                            }
                        }
                        if all_sent {
                            failures = 0;
                            i = end;
                            let commit = if i == msgs.len() {
                                next
                            } else {
                                msgs[i].queue_offset
                            };
                            self.offsets.update(&pq.mq, commit, true);
                            continue;
                        }
                    }
                    tokio::time::sleep(ORDERLY_RETRY_PAUSE).await;
                }
            }
        }
        None
    }

    /// CONSUMER_SEND_MSG_BACK: the broker redelivers through the retry topic after a
    /// delay (level 0: the broker's choice), or to the DLQ (level -1 or too many tries).
    async fn send_back(&self, mq: &MessageQueue, msg: &MessageExt, delay_level: i32) -> Result<()> {
        let addr = self
            .instance
            .find_broker(&msg.broker_name, &mq.topic)
            .await?;
        let header = ConsumerSendMsgBackRequestHeader {
            offset: msg.commit_log_offset,
            group: self.group.clone(),
            delay_level,
            origin_msg_id: Some(msg.msg_id()),
            origin_topic: Some(msg.topic.clone()),
            unit_mode: false,
            max_reconsume_times: Some(self.max_reconsume_times),
        };
        let cmd = RemotingCommand::request(request::CONSUMER_SEND_MSG_BACK).with_header(&header);
        self.instance.call(&addr, cmd).await.map(|_| ())
    }

    /// LOCK_BATCH_MQ or UNLOCK_BATCH_MQ for `mqs`, one request per broker; the answers
    /// of the brokers that could be reached, by broker name.
    async fn lock_requests(
        &self,
        code: i32,
        mqs: &[MessageQueue],
    ) -> Vec<(String, RemotingCommand)> {
        let mut answers = Vec::new();
        for (broker, group) in by_broker(mqs) {
            let Ok(addr) = self.instance.find_broker(&broker, &group[0].topic).await else {
                continue;
            };
            let body = LockBatchRequestBody {
                consumer_group: self.group.clone(),
                client_id: self.instance.client_id.clone(),
                only_this_broker: false,
                mq_set: group.into_iter().collect(),
            };
            let cmd = RemotingCommand::request(code)
                .with_body(serde_json::to_vec(&body).expect("lock body serializes"));
            match self.instance.call(&addr, cmd).await {
                Ok(answer) => answers.push((broker, answer)),
                Err(e) => tracing::debug!(broker, code, error = %e, "queue lock request failed"),
            }
        }
        answers
    }

    /// Locks `mqs` on their brokers; returns the queues locked.
    async fn lock(&self, mqs: &[MessageQueue]) -> BTreeSet<MessageQueue> {
        let mut locked = BTreeSet::new();
        for (broker, answer) in self.lock_requests(request::LOCK_BATCH_MQ, mqs).await {
            match protocol::json::from_slice::<LockBatchResponseBody>(&answer.body) {
                Ok(body) => locked.extend(body.lock_ok_mq_set),
                Err(e) => tracing::warn!(broker, error = %e, "bad lock answer"),
            }
        }
        locked
    }

    async fn unlock(&self, mqs: &[MessageQueue]) {
        self.lock_requests(request::UNLOCK_BATCH_MQ, mqs).await;
    }

    async fn renew_locks(&self) {
        let queues: Vec<Arc<ProcessQueue>> = self
            .queues
            .lock()
            .expect("queues lock")
            .values()
            .cloned()
            .collect();
        let mqs: Vec<MessageQueue> = queues.iter().map(|pq| pq.mq.clone()).collect();
        let locked = self.lock(&mqs).await;
        for pq in queues {
            pq.set_locked(locked.contains(&pq.mq));
        }
    }
}

fn by_broker(mqs: &[MessageQueue]) -> BTreeMap<String, Vec<MessageQueue>> {
    let mut out: BTreeMap<String, Vec<MessageQueue>> = BTreeMap::new();
    for mq in mqs {
        out.entry(mq.broker_name.clone())
            .or_default()
            .push(mq.clone());
    }
    out
}
