//! The producer: sync (`send().await`), async (`send_async`, `send_with_callback`),
//! oneway, batch, ordered (queue selector, hash by key) and transactional sends, with
//! retries that fail over to another broker and one deadline per send.

use crate::error::{ClientError, Result};
use crate::instance::{CheckHandler, ClientConfig, ClientInstance, TopicRoute, AUTO_CREATE_TOPIC};
use crate::message::{maybe_compress, Message, MessageExt, MessageQueue, SendResult, SendStatus};
use crate::net::Connection;
use bytes::Bytes;
use protocol::code::{request, response};
use protocol::header::{
    CheckTransactionStateRequestHeader, EndTransactionRequestHeader, SendMessageRequestHeader,
    SendMessageRequestHeaderV2, SendMessageResponseHeader,
};
use protocol::message::id::{decode_offset_msg_id, UniqIdGenerator};
use protocol::message::{encode_batch_entry, java_string_hash, property, sys_flag};
use protocol::RemotingCommand;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Queues a new topic gets when the broker creates it from the send
/// (`defaultTopicQueueNums`).
const DEFAULT_TOPIC_QUEUE_NUMS: i32 = 4;

/// The outcome of a local transaction, or of a broker's check on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalTransactionState {
    Commit,
    Rollback,
    /// Not decided yet: the broker will check back later.
    Unknown,
}

impl LocalTransactionState {
    fn sys_flag(self) -> i32 {
        match self {
            LocalTransactionState::Commit => sys_flag::TRANSACTION_COMMIT,
            LocalTransactionState::Rollback => sys_flag::TRANSACTION_ROLLBACK,
            LocalTransactionState::Unknown => sys_flag::TRANSACTION_NOT_TYPE,
        }
    }
}

/// Answers a broker asking about a transaction whose outcome it never heard
/// (`TransactionListener.checkLocalTransaction`). Runs on a blocking thread.
pub trait TransactionListener: Send + Sync + 'static {
    fn check(&self, msg: &MessageExt) -> LocalTransactionState;
}

impl<F> TransactionListener for F
where
    F: Fn(&MessageExt) -> LocalTransactionState + Send + Sync + 'static,
{
    fn check(&self, msg: &MessageExt) -> LocalTransactionState {
        self(msg)
    }
}

/// Builds a [`Producer`].
pub struct ProducerBuilder {
    group: String,
    config: ClientConfig,
    retries: u32,
    send_timeout: Duration,
    compress_over: usize,
    max_body_bytes: usize,
    listener: Option<Arc<dyn TransactionListener>>,
}

impl std::fmt::Debug for ProducerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProducerBuilder")
            .field("group", &self.group)
            .field("config", &self.config)
            .field("transactional", &self.listener.is_some())
            .finish()
    }
}

impl ProducerBuilder {
    /// Nameservers as `host:port;host:port` (default: `NAMESRV_ADDR`).
    pub fn namesrv(mut self, addrs: &str) -> Self {
        self.config = ClientConfig {
            namesrv_addrs: ClientConfig::new(addrs).namesrv_addrs,
            ..self.config
        };
        self
    }

    pub fn config(mut self, config: ClientConfig) -> Self {
        self.config = config;
        self
    }

    /// Extra attempts after a failed send (`retryTimesWhenSendFailed`, default 2).
    pub fn retries(mut self, retries: u32) -> Self {
        self.retries = retries;
        self
    }

    /// Deadline of one send, retries included (`sendMsgTimeout`, default 3 s).
    pub fn send_timeout(mut self, timeout: Duration) -> Self {
        self.send_timeout = timeout;
        self
    }

    /// Bodies over this many bytes are zlib-compressed (default 4096); `usize::MAX`
    /// turns compression off.
    pub fn compress_over(mut self, bytes: usize) -> Self {
        self.compress_over = bytes;
        self
    }

    /// Largest body accepted (`maxMessageSize`, default 4 MiB).
    pub fn max_body_bytes(mut self, bytes: usize) -> Self {
        self.max_body_bytes = bytes;
        self
    }

    /// Makes this a transactional producer: brokers ask `listener` about transactions
    /// left undecided.
    pub fn transaction_listener(mut self, listener: impl TransactionListener) -> Self {
        self.listener = Some(Arc::new(listener));
        self
    }

    pub async fn start(self) -> Result<Producer> {
        if self.group.is_empty() {
            return Err(ClientError::Config("the producer group is empty".into()));
        }
        let instance = ClientInstance::start(self.config).await?;
        let seed = (std::process::id() as i32) ^ java_string_hash(&instance.client_id);
        let inner = Arc::new(ProducerInner {
            uniq: Mutex::new(UniqIdGenerator::new(
                instance.client_ip,
                std::process::id(),
                seed,
            )),
            instance,
            group: self.group,
            retries: self.retries,
            send_timeout: self.send_timeout,
            compress_over: self.compress_over,
            max_body_bytes: self.max_body_bytes,
            next_queue: AtomicUsize::new(rand_start()),
        });
        let checker = self
            .listener
            .map(|listener| check_handler(&inner, listener));
        inner.instance.add_producer(&inner.group, checker);
        Ok(Producer { inner })
    }
}

fn rand_start() -> usize {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos() as usize)
}

/// Sends messages. Cheap to clone; clones share connections and routes.
#[derive(Clone)]
pub struct Producer {
    inner: Arc<ProducerInner>,
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer")
            .field("group", &self.inner.group)
            .field("client_id", &self.inner.instance.client_id)
            .finish()
    }
}

struct ProducerInner {
    instance: Arc<ClientInstance>,
    group: String,
    retries: u32,
    send_timeout: Duration,
    compress_over: usize,
    max_body_bytes: usize,
    uniq: Mutex<UniqIdGenerator>,
    next_queue: AtomicUsize,
}

/// Where a send may go.
enum Target<'a> {
    /// Any writable queue, round robin, failing over to another broker.
    Any,
    /// Exactly this queue (ordered sends): no fail-over.
    Queue(&'a MessageQueue),
}

/// What goes on the wire for one send.
struct Prepared {
    topic: String,
    body: Bytes,
    properties: String,
    flag: i32,
    sys_flag: i32,
    batch: bool,
    uniq_ids: Vec<String>,
}

impl Producer {
    pub fn builder(group: impl Into<String>) -> ProducerBuilder {
        ProducerBuilder {
            group: group.into(),
            config: ClientConfig::default(),
            retries: 2,
            send_timeout: Duration::from_secs(3),
            compress_over: crate::message::COMPRESS_OVER_BYTES,
            max_body_bytes: 4 << 20,
            listener: None,
        }
    }

    pub fn group(&self) -> &str {
        &self.inner.group
    }

    /// Sends and waits for the broker's answer.
    pub async fn send(&self, msg: Message) -> Result<SendResult> {
        let prepared = self.inner.prepare(msg, 0)?;
        self.inner.send(prepared, Target::Any).await
    }

    /// Sends in the background; the handle resolves to the broker's answer.
    pub fn send_async(&self, msg: Message) -> tokio::task::JoinHandle<Result<SendResult>> {
        let producer = self.clone();
        tokio::spawn(async move { producer.send(msg).await })
    }

    /// Sends in the background and calls `callback` with the answer.
    pub fn send_with_callback(
        &self,
        msg: Message,
        callback: impl FnOnce(Result<SendResult>) + Send + 'static,
    ) {
        let producer = self.clone();
        tokio::spawn(async move { callback(producer.send(msg).await) });
    }

    /// Sends without waiting for (or getting) an answer: returns once it is written.
    pub async fn send_oneway(&self, msg: Message) -> Result<()> {
        let prepared = self.inner.prepare(msg, 0)?;
        let route = self.inner.instance.publish_route(&prepared.topic).await?;
        let mq = self.inner.pick(&route, None)?;
        let addr = self.inner.broker_of(&route, &mq)?;
        self.inner.instance.ensure_heartbeat(&addr).await;
        let cmd = self.inner.request(&prepared, &mq);
        self.inner.instance.pool.oneway(&addr, cmd).await
    }

    /// Sends messages of one topic as one request (SEND_BATCH_MESSAGE); they land in
    /// one queue, in order. Delayed messages cannot be batched.
    pub async fn send_batch(&self, msgs: Vec<Message>) -> Result<SendResult> {
        let prepared = self.inner.prepare_batch(msgs)?;
        self.inner.send(prepared, Target::Any).await
    }

    /// Sends to one queue (no fail-over: another queue would break the order).
    pub async fn send_to_queue(&self, msg: Message, mq: &MessageQueue) -> Result<SendResult> {
        let prepared = self.inner.prepare(msg, 0)?;
        self.inner.send(prepared, Target::Queue(mq)).await
    }

    /// Ordered send (`MessageQueueSelector`): `select` picks an index into the topic's
    /// writable queues.
    pub async fn send_with_selector(
        &self,
        msg: Message,
        select: impl FnOnce(&[MessageQueue], &Message) -> usize,
    ) -> Result<SendResult> {
        let route = self.inner.instance.publish_route(&msg.topic).await?;
        if route.publish.is_empty() {
            return Err(no_writable_queue(&msg.topic));
        }
        let index = select(&route.publish, &msg) % route.publish.len();
        let mq = route.publish[index].clone();
        self.send_to_queue(msg, &mq).await
    }

    /// Ordered send by key: messages with the same key go to the same queue, in order
    /// (`SelectMessageQueueByHash`).
    pub async fn send_ordered(&self, msg: Message, key: &str) -> Result<SendResult> {
        let hash = java_string_hash(key).unsigned_abs() as usize;
        self.send_with_selector(msg, move |queues, _| hash % queues.len())
            .await
    }

    /// Sends a half message, runs `execute` (the local transaction), and tells the broker
    /// to commit or roll back. On [`LocalTransactionState::Unknown`] the broker checks
    /// back later with the producer's [`TransactionListener`].
    pub async fn send_in_transaction(
        &self,
        msg: Message,
        execute: impl FnOnce(&Message, &SendResult) -> LocalTransactionState,
    ) -> Result<(SendResult, LocalTransactionState)> {
        let mut msg = msg;
        msg.properties.remove(property::DELAY_TIME_LEVEL);
        msg.properties
            .insert(property::TRANSACTION_PREPARED.into(), "true".into());
        msg.properties
            .insert(property::PRODUCER_GROUP.into(), self.inner.group.clone());
        let prepared = self
            .inner
            .prepare(msg.clone(), sys_flag::TRANSACTION_PREPARED)?;
        let result = self.inner.send(prepared, Target::Any).await?;
        let state = if result.status == SendStatus::SendOk {
            execute(&msg, &result)
        } else {
            LocalTransactionState::Rollback
        };
        let (_, commit_log_offset) =
            decode_offset_msg_id(&result.offset_msg_id).map_err(|e| ClientError::BadAnswer {
                addr: result.message_queue.broker_name.clone(),
                message: format!("offset msgId {}: {e}", result.offset_msg_id),
            })?;
        let header = EndTransactionRequestHeader {
            topic: Some(msg.topic.clone()),
            producer_group: self.inner.group.clone(),
            tran_state_table_offset: result.queue_offset,
            commit_log_offset,
            commit_or_rollback: state.sys_flag(),
            from_transaction_check: false,
            msg_id: result.msg_id.clone(),
            transaction_id: result
                .transaction_id
                .clone()
                .or_else(|| Some(result.msg_id.clone())),
        };
        let route = self.inner.instance.publish_route(&msg.topic).await?;
        let addr = self.inner.broker_of(&route, &result.message_queue)?;
        let cmd = RemotingCommand::request(request::END_TRANSACTION).with_header(&header);
        self.inner.instance.pool.oneway(&addr, cmd).await?;
        Ok((result, state))
    }

    /// The topic's writable queues (for selectors and tests).
    pub async fn queues(&self, topic: &str) -> Result<Vec<MessageQueue>> {
        Ok(self
            .inner
            .instance
            .publish_route(topic)
            .await?
            .publish
            .clone())
    }

    /// Unregisters from the brokers and closes connections.
    pub async fn shutdown(&self) {
        self.inner.instance.shutdown().await;
    }
}

fn no_writable_queue(topic: &str) -> ClientError {
    ClientError::NoRoute {
        topic: topic.to_owned(),
        reason: "no writable queue".into(),
    }
}

/// Broker answers worth another attempt on another broker (Java's
/// `retryResponseCodes`, plus SYSTEM_BUSY).
fn retriable(code: i32) -> bool {
    matches!(
        code,
        response::TOPIC_NOT_EXIST
            | response::SERVICE_NOT_AVAILABLE
            | response::SYSTEM_ERROR
            | response::SYSTEM_BUSY
            | response::NO_PERMISSION
    )
}

impl ProducerInner {
    fn next_uniq_id(&self) -> String {
        let now = crate::consumer::now_ms();
        self.uniq.lock().expect("uniq lock").next_id(now)
    }

    fn prepare(&self, msg: Message, extra_sys_flag: i32) -> Result<Prepared> {
        let limits = (self.max_body_bytes, self.compress_over);
        prepare(msg, extra_sys_flag, limits, &mut || self.next_uniq_id())
    }

    fn prepare_batch(&self, msgs: Vec<Message>) -> Result<Prepared> {
        prepare_batch(msgs, self.max_body_bytes, &mut || self.next_uniq_id())
    }

    /// The next queue, avoiding `avoid`'s broker when another one has queues.
    fn pick(&self, route: &TopicRoute, avoid: Option<&str>) -> Result<MessageQueue> {
        let queues = &route.publish;
        if queues.is_empty() {
            return Err(no_writable_queue(
                route.publish.first().map_or("", |q| q.topic.as_str()),
            ));
        }
        let start = self.next_queue.fetch_add(1, Ordering::Relaxed);
        let candidate = |k: usize| &queues[(start + k) % queues.len()];
        let chosen = (0..queues.len())
            .map(candidate)
            .find(|q| Some(q.broker_name.as_str()) != avoid)
            .unwrap_or_else(|| candidate(0));
        Ok(chosen.clone())
    }

    fn broker_of(&self, route: &TopicRoute, mq: &MessageQueue) -> Result<String> {
        route
            .master(&mq.broker_name)
            .map(str::to_owned)
            .or_else(|| self.instance.broker_addr(&mq.broker_name))
            .ok_or_else(|| ClientError::NoRoute {
                topic: mq.topic.clone(),
                reason: format!("broker {} has no master address", mq.broker_name),
            })
    }

    fn request(&self, p: &Prepared, mq: &MessageQueue) -> RemotingCommand {
        send_request(&self.group, p, mq, crate::consumer::now_ms())
    }

    async fn send(&self, p: Prepared, target: Target<'_>) -> Result<SendResult> {
        let deadline = Instant::now() + self.send_timeout;
        let attempts = match target {
            Target::Any => 1 + self.retries,
            Target::Queue(_) => 1,
        };
        let mut last_error = None;
        let mut failed_broker: Option<String> = None;
        for _ in 0..attempts {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let route = self.instance.publish_route(&p.topic).await?;
            let mq = match target {
                Target::Any => self.pick(&route, failed_broker.as_deref())?,
                Target::Queue(mq) => mq.clone(),
            };
            match self.send_once(&p, &route, &mq, left).await {
                Ok(result) => return Ok(result),
                Err(e) => {
                    let again = e.is_transport() || e.code().is_some_and(retriable);
                    tracing::debug!(broker = mq.broker_name, error = %e, again, "send failed");
                    failed_broker = Some(mq.broker_name.clone());
                    if !again {
                        return Err(e);
                    }
                    if e.code() == Some(response::TOPIC_NOT_EXIST) {
                        // The route may be stale: look again before the next attempt.
                        let _ = self.instance.update_route(&p.topic).await;
                    }
                    last_error = Some(e);
                }
            }
        }
        Err(last_error.unwrap_or(ClientError::Timeout {
            addr: format!("topic {}", p.topic),
            timeout_ms: self.send_timeout.as_millis() as u64,
        }))
    }

    async fn send_once(
        &self,
        p: &Prepared,
        route: &TopicRoute,
        mq: &MessageQueue,
        timeout: Duration,
    ) -> Result<SendResult> {
        let addr = self.broker_of(route, mq)?;
        self.instance.ensure_heartbeat(&addr).await;
        let conn = self.instance.pool.get(&addr).await?;
        let answer = conn.invoke(self.request(p, mq), timeout).await?;
        let status = match answer.code {
            response::SUCCESS => SendStatus::SendOk,
            response::FLUSH_DISK_TIMEOUT => SendStatus::FlushDiskTimeout,
            response::FLUSH_SLAVE_TIMEOUT => SendStatus::FlushSlaveTimeout,
            response::SLAVE_NOT_AVAILABLE => SendStatus::SlaveNotAvailable,
            _ => return Err(crate::net::refused(&addr, answer)),
        };
        let header: SendMessageResponseHeader = answer
            .header()
            .map_err(|e| ClientError::header(&addr, &e))?;
        Ok(SendResult {
            status,
            msg_id: p.uniq_ids.join(","),
            offset_msg_id: header.msg_id,
            message_queue: MessageQueue {
                topic: p.topic.clone(),
                broker_name: mq.broker_name.clone(),
                queue_id: header.queue_id,
            },
            queue_offset: header.queue_offset,
            transaction_id: header.transaction_id,
        })
    }
}

/// What goes on the wire for one message: UNIQ_KEY (kept if set), WAIT, the body
/// compressed when over the threshold.
fn prepare(
    mut msg: Message,
    extra_sys_flag: i32,
    (max_body_bytes, compress_over): (usize, usize),
    next_id: &mut dyn FnMut() -> String,
) -> Result<Prepared> {
    msg.validate(max_body_bytes)?;
    let uniq = match msg.property(property::UNIQ_CLIENT_MESSAGE_ID_KEYIDX) {
        Some(id) => id.to_owned(),
        None => {
            let id = next_id();
            msg.properties
                .insert(property::UNIQ_CLIENT_MESSAGE_ID_KEYIDX.into(), id.clone());
            id
        }
    };
    msg.properties
        .entry(property::WAIT_STORE_MSG_OK.into())
        .or_insert_with(|| "true".into());
    let (body, compressed) = maybe_compress(&msg.body, compress_over);
    let properties = String::from_utf8(msg.encoded_properties())
        .map_err(|_| ClientError::InvalidMessage("properties are not UTF-8".into()))?;
    Ok(Prepared {
        topic: msg.topic,
        body,
        properties,
        flag: msg.flag,
        sys_flag: compressed | extra_sys_flag,
        batch: false,
        uniq_ids: vec![uniq],
    })
}

/// A batch's body (`MessageBatch.encode`): each message with its own UNIQ_KEY.
fn prepare_batch(
    msgs: Vec<Message>,
    max_body_bytes: usize,
    next_id: &mut dyn FnMut() -> String,
) -> Result<Prepared> {
    let Some(first) = msgs.first() else {
        return Err(ClientError::InvalidMessage("the batch is empty".into()));
    };
    let topic = first.topic.clone();
    let mut body = Vec::new();
    let mut uniq_ids = Vec::with_capacity(msgs.len());
    for mut msg in msgs {
        msg.validate(max_body_bytes)?;
        if msg.topic != topic {
            return Err(ClientError::InvalidMessage(format!(
                "a batch has one topic; found {} and {}",
                topic, msg.topic
            )));
        }
        if msg.property(property::DELAY_TIME_LEVEL).is_some() {
            return Err(ClientError::InvalidMessage(
                "delayed messages cannot be batched".into(),
            ));
        }
        let id = next_id();
        msg.properties
            .insert(property::UNIQ_CLIENT_MESSAGE_ID_KEYIDX.into(), id.clone());
        msg.properties
            .entry(property::WAIT_STORE_MSG_OK.into())
            .or_insert_with(|| "true".into());
        uniq_ids.push(id);
        encode_batch_entry(&mut body, msg.flag, &msg.body, &msg.encoded_properties())
            .map_err(|e| ClientError::InvalidMessage(e.to_string()))?;
    }
    if body.len() > max_body_bytes {
        return Err(ClientError::InvalidMessage(format!(
            "the batch is {} bytes; the limit is {}",
            body.len(),
            max_body_bytes
        )));
    }
    let mut props = Vec::new();
    protocol::message::append_property(&mut props, property::WAIT_STORE_MSG_OK, "true");
    Ok(Prepared {
        topic,
        body: Bytes::from(body),
        properties: String::from_utf8(props).expect("ASCII properties"),
        flag: 0,
        sys_flag: 0,
        batch: true,
        uniq_ids,
    })
}

/// SEND_MESSAGE_V2 (or SEND_BATCH_MESSAGE) as Java producers send it: the single-letter
/// header, TBW102 as the default topic, and the broker name (`bname`, 5.x).
fn send_request(group: &str, p: &Prepared, mq: &MessageQueue, born_ms: i64) -> RemotingCommand {
    let header = SendMessageRequestHeaderV2::from(SendMessageRequestHeader {
        producer_group: group.to_owned(),
        topic: p.topic.clone(),
        default_topic: AUTO_CREATE_TOPIC.into(),
        default_topic_queue_nums: DEFAULT_TOPIC_QUEUE_NUMS,
        queue_id: mq.queue_id,
        sys_flag: p.sys_flag,
        born_timestamp: born_ms,
        flag: p.flag,
        properties: Some(p.properties.clone()),
        reconsume_times: Some(0),
        unit_mode: Some(false),
        batch: Some(p.batch),
        max_reconsume_times: None,
        broker_name: Some(mq.broker_name.clone()),
    });
    let code = if p.batch {
        request::SEND_BATCH_MESSAGE
    } else {
        request::SEND_MESSAGE_V2
    };
    RemotingCommand::request(code)
        .with_header(&header)
        .with_body(p.body.clone())
}

/// Answers CHECK_TRANSACTION_STATE with the listener's verdict (END_TRANSACTION,
/// oneway, on the connection the check came on).
fn check_handler(
    inner: &Arc<ProducerInner>,
    listener: Arc<dyn TransactionListener>,
) -> CheckHandler {
    let group = inner.group.clone();
    Arc::new(move |conn: Arc<Connection>, cmd: RemotingCommand| {
        let listener = listener.clone();
        let group = group.clone();
        tokio::spawn(async move {
            let header: CheckTransactionStateRequestHeader = match cmd.header() {
                Ok(h) => h,
                Err(e) => {
                    tracing::warn!(error = %e, "bad transaction check header");
                    return;
                }
            };
            let msg = match MessageExt::decode_all(&cmd.body, "") {
                Ok(mut msgs) if msgs.len() == 1 => msgs.remove(0),
                _ => {
                    tracing::warn!("transaction check without one message");
                    return;
                }
            };
            let uniq = msg.msg_id();
            let topic = msg.topic.clone();
            let transaction_id = header
                .transaction_id
                .clone()
                .or_else(|| msg.property(property::TRANSACTION_ID).map(str::to_owned))
                .unwrap_or_else(|| uniq.clone());
            let state = match tokio::task::spawn_blocking(move || listener.check(&msg)).await {
                Ok(state) => state,
                Err(e) => {
                    tracing::warn!(error = %e, "transaction check listener failed");
                    return;
                }
            };
            let end = EndTransactionRequestHeader {
                topic: Some(topic),
                producer_group: group,
                tran_state_table_offset: header.tran_state_table_offset,
                commit_log_offset: header.commit_log_offset,
                commit_or_rollback: state.sys_flag(),
                from_transaction_check: true,
                msg_id: uniq,
                transaction_id: Some(transaction_id),
            };
            let cmd = RemotingCommand::request(request::END_TRANSACTION).with_header(&end);
            if let Err(e) = conn.oneway(cmd).await {
                tracing::warn!(error = %e, "answering a transaction check failed");
            }
        });
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::header::CommandHeader;
    use protocol::message::{decode_batch, get_property};

    fn mq() -> MessageQueue {
        MessageQueue {
            topic: "TopicTest".into(),
            broker_name: "broker-a".into(),
            queue_id: 3,
        }
    }

    fn ids() -> impl FnMut() -> String {
        let mut n = 0;
        move || {
            n += 1;
            format!("{n:032X}")
        }
    }

    /// The send header as Java's `SendMessageRequestHeaderV2` writes it: letters a..n
    /// with these values, JSON-encoded on the wire.
    #[test]
    fn send_request_carries_javas_v2_letters() {
        let msg = Message::new("TopicTest", "hello")
            .with_tags("TagA")
            .with_keys(["k1"]);
        let p = prepare(msg, 0, (4 << 20, 4096), &mut ids()).unwrap();
        let cmd = send_request("ProducerGroup", &p, &mq(), 1_700_000_000_000);
        assert_eq!(cmd.code, 310);
        let ext = cmd.ext_fields.clone();
        let expect = [
            ("a", "ProducerGroup"),
            ("b", "TopicTest"),
            ("c", "TBW102"),
            ("d", "4"),
            ("e", "3"),
            ("f", "0"),
            ("g", "1700000000000"),
            ("h", "0"),
            ("j", "0"),
            ("k", "false"),
            ("m", "false"),
            ("n", "broker-a"),
        ];
        for (k, v) in expect {
            assert_eq!(ext.get(k), Some(v), "field {k}");
        }
        let props = ext.get("i").unwrap().as_bytes();
        assert_eq!(get_property(props, "TAGS"), Some("TagA"));
        assert_eq!(get_property(props, "KEYS"), Some("k1"));
        assert_eq!(get_property(props, "WAIT"), Some("true"));
        assert_eq!(
            get_property(props, "UNIQ_KEY"),
            Some(&format!("{:032X}", 1)[..])
        );
        assert_eq!(&cmd.body[..], b"hello");
        // What a broker decodes from the frame is what was meant.
        let frame = cmd.encode().unwrap();
        let mut buf = bytes::BytesMut::from(&frame[..]);
        let back = protocol::FrameDecoder::default()
            .decode(&mut buf)
            .unwrap()
            .unwrap();
        let h = SendMessageRequestHeader::from_request(back.code, &back.ext_fields).unwrap();
        assert_eq!(h.producer_group, "ProducerGroup");
        assert_eq!(h.queue_id, 3);
        assert!(!h.is_batch(back.code));
        // The header letters are exactly those of V2 (no field-name variants).
        assert!(SendMessageRequestHeaderV2::from_ext_fields(&back.ext_fields).is_ok());
    }

    #[test]
    fn big_bodies_are_zlib_compressed_with_the_flags_java_sets() {
        let body = "abc".repeat(2000);
        let p = prepare(
            Message::new("T", body.clone()),
            0,
            (4 << 20, 4096),
            &mut ids(),
        )
        .unwrap();
        assert_eq!(p.sys_flag, sys_flag::COMPRESSED | 0x300);
        assert!(p.body.len() < body.len());
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::ZlibDecoder::new(&p.body[..]), &mut out)
            .unwrap();
        assert_eq!(out, body.as_bytes());
        // At or under the threshold: sent as is.
        let small = prepare(
            Message::new("T", "x".repeat(4096)),
            0,
            (4 << 20, 4096),
            &mut ids(),
        )
        .unwrap();
        assert_eq!(small.sys_flag, 0);
    }

    #[test]
    fn batch_body_is_messagedecoder_layout() {
        let msgs = vec![
            Message::new("T", "one").with_tags("A"),
            Message::new("T", "two"),
        ];
        let p = prepare_batch(msgs, 4 << 20, &mut ids()).unwrap();
        let cmd = send_request("G", &p, &mq(), 1);
        assert_eq!(cmd.code, 320);
        assert_eq!(cmd.ext_fields.get("m"), Some("true"));
        let entries = decode_batch(&p.body, 10).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(&entries[0].body[..], b"one");
        assert_eq!(get_property(&entries[0].properties, "TAGS"), Some("A"));
        assert_eq!(p.uniq_ids.len(), 2);
        assert_eq!(
            get_property(&entries[1].properties, "UNIQ_KEY"),
            Some(p.uniq_ids[1].as_str())
        );
        // A batch has one topic and no delayed message.
        let mixed = vec![Message::new("T", "a"), Message::new("U", "b")];
        assert!(prepare_batch(mixed, 4 << 20, &mut ids()).is_err());
        let delayed = vec![Message::new("T", "a").with_delay_level(2)];
        assert!(prepare_batch(delayed, 4 << 20, &mut ids()).is_err());
    }

    #[test]
    fn invalid_messages_are_refused_before_sending() {
        let limits = (10, 4096);
        assert!(prepare(Message::new("T", "x".repeat(11)), 0, limits, &mut ids()).is_err());
        assert!(prepare(Message::new("a b", "x"), 0, limits, &mut ids()).is_err());
        assert!(prepare(Message::new("T", ""), 0, limits, &mut ids()).is_err());
        let bad_prop = Message::new("T", "x").with_property("k", "v\u{1}");
        assert!(prepare(bad_prop, 0, limits, &mut ids()).is_err());
    }
}
