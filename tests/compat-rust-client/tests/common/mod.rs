//! What the compatibility tests against the third-party `rocketmq-client-rust` client
//! share: the client runtime of a test binary, client settings, producers, push consumers,
//! clusters and polling waits.

use e2e::{now_ms, unique_name, Cluster};
use rocketmq_client_rust::{
    ClientConfig, ClientError, ClientRuntime, ClientRuntimeConfig, ConsumeConcurrentlyContext,
    ConsumeConcurrentlyStatus, DefaultMQProducer, DefaultMQPushConsumer,
    DefaultMQPushConsumerBuilder, MQPushConsumer, MessageQueueListener, TelemetryHandle,
};
use rocketmq_model::common::consumer::consume_from_where::ConsumeFromWhere;
use rocketmq_model::common::message::message_ext::MessageExt;
use rocketmq_model::common::message::message_queue::MessageQueue;
use rocketmq_protocol::protocol::heartbeat::message_model::MessageModel;
use rocketmq_runtime::{RuntimeConfig, RuntimeOwner};
use std::collections::{BTreeSet, HashSet};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The settings of one test binary.
pub struct Settings {
    /// Name of the runtime's worker threads.
    pub thread_name: &'static str,
    /// Producers join new groups named after this.
    pub producer_group: &'static str,
    /// How many tasks the runtime's metadata-I/O blocking lane, where the client runs
    /// listeners, may queue (`None`: the default, 8 per core, failing the rest).
    pub consume_queue_depth: Option<usize>,
    /// How often waits poll.
    pub poll: Duration,
}

impl Settings {
    /// The default queue depth, waits polling every 100 ms.
    pub const fn new(thread_name: &'static str, producer_group: &'static str) -> Self {
        Self {
            thread_name,
            producer_group,
            consume_queue_depth: None,
            poll: Duration::from_millis(100),
        }
    }
}

/// One test binary's client side: its [`Settings`] and the runtime its clients run on
/// (built on first use).
pub struct Harness {
    settings: Settings,
    owner: OnceLock<RuntimeOwner>,
}

impl Harness {
    pub const fn new(settings: Settings) -> Self {
        Self {
            settings,
            owner: OnceLock::new(),
        }
    }

    fn owner(&self) -> &RuntimeOwner {
        self.owner.get_or_init(|| {
            let mut config = RuntimeConfig {
                thread_name: self.settings.thread_name.into(),
                worker_threads: 2,
                ..Default::default()
            };
            if let Some(depth) = self.settings.consume_queue_depth {
                config.blocking_lane_policies.metadata_io.max_queue_depth = depth;
            }
            RuntimeOwner::plan(config)
                .expect("runtime plan")
                .build()
                .expect("runtime")
        })
    }

    /// A client runtime of its own for one test.
    pub fn client_runtime(&self, scope: &'static str) -> Arc<ClientRuntime> {
        ClientRuntime::try_new(
            self.owner().root_context().component(scope),
            ClientRuntimeConfig::default(),
            TelemetryHandle::noop(),
        )
        .expect("client runtime")
    }

    /// A started producer with client instance name `instance`, in a new group.
    pub async fn start_producer(
        &self,
        rt: &Arc<ClientRuntime>,
        ns: &str,
        instance: &str,
    ) -> DefaultMQProducer {
        let mut producer = DefaultMQProducer::builder(rt.clone())
            .client_config(client_config(ns, instance))
            .producer_group(unique_name(self.settings.producer_group))
            .build();
        producer.start().await.expect("producer start");
        producer
    }

    /// Polls `f` until it holds or `timeout` passes; returns whether it held.
    pub async fn wait_until(&self, timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        while !f() {
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(self.settings.poll).await;
        }
        true
    }
}

/// Starts a nameserver and a broker with `broker_args` (from inside a multi-threaded
/// tokio test).
pub fn start_cluster(broker_args: &[&str]) -> Cluster {
    tokio::task::block_in_place(|| Cluster::start(broker_args))
}

/// Client settings for a test: its own instance name (client id), quick offset commits.
pub fn client_config(ns: &str, instance: &str) -> ClientConfig {
    ClientConfig::builder()
        .namesrv_addr(ns.to_string())
        .instance_name(instance.to_string())
        .poll_name_server_interval(10_000)
        .heartbeat_broker_interval(10_000)
        .persist_consumer_offset_interval(1_000)
        .build()
        .expect("client config")
}

/// A push consumer with client instance name `instance` in `group`, in `model`, reading a
/// new group from the first offset; the caller adds the rest.
pub fn push_consumer(
    rt: &Arc<ClientRuntime>,
    ns: &str,
    instance: &str,
    group: &str,
    model: MessageModel,
) -> DefaultMQPushConsumerBuilder {
    DefaultMQPushConsumer::builder(rt.clone())
        .client_config(client_config(ns, instance))
        .consumer_group(group.to_string())
        .message_model(model)
        .consume_from_where(ConsumeFromWhere::ConsumeFromFirstOffset)
}

/// Registers a concurrent listener on `consumer` that answers success and appends to
/// `sink` what `record` makes of each message and the consumer's wall clock when its
/// batch arrived.
#[allow(dead_code)] // Not every test binary consumes this way.
pub fn record_deliveries<T: Send + 'static>(
    consumer: &mut DefaultMQPushConsumer,
    sink: &Arc<Mutex<Vec<T>>>,
    record: impl Fn(&MessageExt, i64) -> T + Send + Sync + 'static,
) {
    let sink = sink.clone();
    consumer.register_message_listener_concurrently(
        move |msgs: &[&MessageExt],
              _: &ConsumeConcurrentlyContext|
              -> Result<ConsumeConcurrentlyStatus, ClientError> {
            let received_ms = now_ms();
            let mut sink = sink.lock().expect("lock");
            sink.extend(msgs.iter().map(|m| record(m, received_ms)));
            Ok(ConsumeConcurrentlyStatus::ConsumeSuccess)
        },
    );
}

/// The body of a delivered message, as text.
pub fn body_text(msg: &MessageExt) -> String {
    String::from_utf8(msg.body().map(|b| b.to_vec()).unwrap_or_default()).expect("UTF-8 body")
}

/// Records the queues of `topic` a rebalance assigned to one consumer (rebalances of the
/// group's `%RETRY%` topic are reported too, and ignored).
#[allow(dead_code)] // Not every test binary watches rebalances.
pub struct AssignmentRecorder {
    pub topic: String,
    pub assigned: Arc<Mutex<BTreeSet<i32>>>,
}

impl MessageQueueListener for AssignmentRecorder {
    fn message_queue_changed(
        &self,
        topic: &str,
        _all: &HashSet<MessageQueue>,
        assigned: &HashSet<MessageQueue>,
    ) {
        if topic == self.topic {
            *self.assigned.lock().expect("lock") = assigned.iter().map(|q| q.queue_id()).collect();
        }
    }
}
