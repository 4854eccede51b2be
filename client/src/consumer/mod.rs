//! Consumers: [`push::PushConsumer`] (the broker's messages delivered to a listener)
//! and [`lite::LitePullConsumer`] (the application polls explicit queues), and the
//! pieces they share: subscriptions, broker calls, offset stores.

pub mod lite;
pub mod push;

use crate::error::{ClientError, Result};
use crate::instance::ClientInstance;
use crate::message::{MessageExt, MessageQueue};
use crate::net::refused;
use protocol::body::SubscriptionData;
use protocol::code::{request, response};
use protocol::header::{
    GetMaxOffsetRequestHeader, OffsetResponseHeader, PullMessageRequestHeader,
    PullMessageResponseHeader, QueryConsumerOffsetRequestHeader, QueueRequestHeader,
    SearchOffsetRequestHeader, UpdateConsumerOffsetRequestHeader,
};
use protocol::message::{java_string_hash, property};
use protocol::RemotingCommand;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

/// The prefix of a group's retry topic.
pub const RETRY_GROUP_TOPIC_PREFIX: &str = "%RETRY%";

/// `MessageModel`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MessageModel {
    /// Each message to one consumer of the group; queues are shared out (rebalance).
    #[default]
    Clustering,
    /// Each message to every consumer of the group; offsets are kept locally.
    Broadcasting,
}

impl MessageModel {
    fn java_name(self) -> &'static str {
        match self {
            MessageModel::Clustering => "CLUSTERING",
            MessageModel::Broadcasting => "BROADCASTING",
        }
    }
}

/// Where a group with no committed offset starts (`ConsumeFromWhere`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConsumeFrom {
    #[default]
    LastOffset,
    FirstOffset,
    /// The first message stored at or after this time (epoch ms).
    Timestamp(i64),
}

impl ConsumeFrom {
    fn java_name(self) -> &'static str {
        match self {
            ConsumeFrom::LastOffset => "CONSUME_FROM_LAST_OFFSET",
            ConsumeFrom::FirstOffset => "CONSUME_FROM_FIRST_OFFSET",
            ConsumeFrom::Timestamp(_) => "CONSUME_FROM_TIMESTAMP",
        }
    }
}

/// A topic and its filter: tags (`"TagA || TagB"`, `"*"`) or an SQL92 expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub topic: String,
    pub expression: String,
    pub sql92: bool,
}

impl Subscription {
    pub fn tags(topic: impl Into<String>, expression: impl Into<String>) -> Self {
        Self {
            topic: topic.into(),
            expression: expression.into(),
            sql92: false,
        }
    }

    pub fn sql92(topic: impl Into<String>, expression: impl Into<String>) -> Self {
        Self {
            topic: topic.into(),
            expression: expression.into(),
            sql92: true,
        }
    }

    /// Tag names, or `None` for all (`*` or empty).
    fn tag_set(&self) -> Option<BTreeSet<String>> {
        if self.sql92 {
            return None;
        }
        let expr = self.expression.trim();
        if expr.is_empty() || expr == "*" {
            return None;
        }
        Some(
            expr.split("||")
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_owned)
                .collect(),
        )
    }

    /// The expression as brokers get it: `*` for all tags.
    fn sub_string(&self) -> String {
        let expr = self.expression.trim();
        if !self.sql92 && (expr.is_empty() || expr == "*") {
            "*".to_owned()
        } else {
            expr.to_owned()
        }
    }

    fn expression_type(&self) -> &'static str {
        if self.sql92 {
            "SQL92"
        } else {
            "TAG"
        }
    }

    /// `FilterAPI.buildSubscriptionData`.
    pub(crate) fn data(&self, sub_version: i64) -> SubscriptionData {
        let tags = self.tag_set();
        SubscriptionData {
            class_filter_mode: false,
            topic: self.topic.clone(),
            sub_string: self.sub_string(),
            code_set: tags.iter().flatten().map(|t| java_string_hash(t)).collect(),
            tags_set: tags.unwrap_or_default(),
            sub_version,
            expression_type: Some(self.expression_type().into()),
        }
    }

    /// Drops the messages whose tag the subscription does not name: the broker filters
    /// by tag hash only, and hashes collide.
    pub(crate) fn retain_accepted(&self, msgs: &mut Vec<MessageExt>) {
        if let Some(tags) = self.tag_set() {
            msgs.retain(|m| m.tags().is_some_and(|t| tags.contains(t)));
        }
    }
}

/// What a pull brought.
#[derive(Debug)]
pub(crate) enum PullOutcome {
    Found {
        msgs: Vec<MessageExt>,
        next: i64,
    },
    NoNewMessage {
        next: i64,
    },
    /// The offset was outside the queue; start again at `next`.
    OffsetIllegal {
        next: i64,
    },
}

/// Pull flags and parameters.
pub(crate) struct PullParams<'a> {
    pub group: &'a str,
    pub mq: &'a MessageQueue,
    pub offset: i64,
    pub max: i32,
    pub commit_offset: Option<i64>,
    pub suspend: Option<Duration>,
    pub sub: &'a Subscription,
    pub sub_version: i64,
}

pub(crate) async fn pull(instance: &ClientInstance, p: PullParams<'_>) -> Result<PullOutcome> {
    use protocol::message::pull_sys_flag::*;
    let addr = instance.find_broker(&p.mq.broker_name, &p.mq.topic).await?;
    let mut sys_flag = SUBSCRIPTION;
    if p.commit_offset.is_some() {
        sys_flag |= COMMIT_OFFSET;
    }
    if p.suspend.is_some() {
        sys_flag |= SUSPEND;
    }
    let header = PullMessageRequestHeader {
        consumer_group: p.group.to_owned(),
        topic: p.mq.topic.clone(),
        queue_id: p.mq.queue_id,
        queue_offset: p.offset,
        max_msg_nums: p.max,
        sys_flag,
        commit_offset: p.commit_offset.unwrap_or(0),
        suspend_timeout_millis: p.suspend.map_or(0, |d| d.as_millis() as i64),
        subscription: Some(p.sub.sub_string()),
        sub_version: p.sub_version,
        expression_type: Some(p.sub.expression_type().into()),
        max_msg_bytes: None,
        request_source: None,
        proxy_forward_client_id: None,
        broker_name: Some(p.mq.broker_name.clone()),
    };
    let timeout = instance.config.request_timeout + p.suspend.unwrap_or_default();
    let conn = instance.pool.get(&addr).await?;
    let answer = conn
        .invoke(
            RemotingCommand::request(request::PULL_MESSAGE).with_header(&header),
            timeout,
        )
        .await?;
    let code = answer.code;
    if !matches!(
        code,
        response::SUCCESS
            | response::PULL_NOT_FOUND
            | response::PULL_RETRY_IMMEDIATELY
            | response::PULL_OFFSET_MOVED
    ) {
        return Err(refused(&addr, answer));
    }
    let h: PullMessageResponseHeader = answer
        .header()
        .map_err(|e| ClientError::header(&addr, &e))?;
    Ok(match code {
        response::SUCCESS => {
            let mut msgs =
                MessageExt::decode_all(&answer.body, &p.mq.broker_name).map_err(|e| {
                    ClientError::BadAnswer {
                        addr: addr.clone(),
                        message: format!("pull body: {e}"),
                    }
                })?;
            p.sub.retain_accepted(&mut msgs);
            PullOutcome::Found {
                msgs,
                next: h.next_begin_offset,
            }
        }
        response::PULL_OFFSET_MOVED => PullOutcome::OffsetIllegal {
            next: h.next_begin_offset,
        },
        _ => PullOutcome::NoNewMessage {
            next: h.next_begin_offset,
        },
    })
}

async fn offset_call(
    instance: &ClientInstance,
    mq: &MessageQueue,
    cmd: RemotingCommand,
) -> Result<i64> {
    let addr = instance.find_broker(&mq.broker_name, &mq.topic).await?;
    let answer = instance.call(&addr, cmd).await?;
    let h: OffsetResponseHeader = answer
        .header()
        .map_err(|e| ClientError::header(&addr, &e))?;
    Ok(h.offset)
}

pub(crate) async fn max_offset(instance: &ClientInstance, mq: &MessageQueue) -> Result<i64> {
    let cmd =
        RemotingCommand::request(request::GET_MAX_OFFSET).with_header(&GetMaxOffsetRequestHeader {
            topic: mq.topic.clone(),
            queue_id: mq.queue_id,
            committed: true,
        });
    offset_call(instance, mq, cmd).await
}

pub(crate) async fn min_offset(instance: &ClientInstance, mq: &MessageQueue) -> Result<i64> {
    let cmd = RemotingCommand::request(request::GET_MIN_OFFSET).with_header(&QueueRequestHeader {
        topic: mq.topic.clone(),
        queue_id: mq.queue_id,
    });
    offset_call(instance, mq, cmd).await
}

pub(crate) async fn search_offset(
    instance: &ClientInstance,
    mq: &MessageQueue,
    timestamp: i64,
) -> Result<i64> {
    let cmd = RemotingCommand::request(request::SEARCH_OFFSET_BY_TIMESTAMP).with_header(
        &SearchOffsetRequestHeader {
            topic: mq.topic.clone(),
            queue_id: mq.queue_id,
            timestamp,
            boundary_type: None,
        },
    );
    offset_call(instance, mq, cmd).await
}

/// The group's committed offset of a queue on the broker; `None` if it has none.
pub(crate) async fn committed_offset(
    instance: &ClientInstance,
    group: &str,
    mq: &MessageQueue,
) -> Result<Option<i64>> {
    let cmd = RemotingCommand::request(request::QUERY_CONSUMER_OFFSET).with_header(
        &QueryConsumerOffsetRequestHeader {
            consumer_group: group.to_owned(),
            topic: mq.topic.clone(),
            queue_id: mq.queue_id,
            set_zero_if_not_found: None,
        },
    );
    match offset_call(instance, mq, cmd).await {
        Ok(offset) if offset >= 0 => Ok(Some(offset)),
        Ok(_) => Ok(None),
        Err(e) if e.code() == Some(response::QUERY_NOT_FOUND) => Ok(None),
        Err(e) => Err(e),
    }
}

pub(crate) async fn commit_offset(
    instance: &ClientInstance,
    group: &str,
    mq: &MessageQueue,
    offset: i64,
) -> Result<()> {
    let addr = instance.find_broker(&mq.broker_name, &mq.topic).await?;
    let cmd = RemotingCommand::request(request::UPDATE_CONSUMER_OFFSET).with_header(
        &UpdateConsumerOffsetRequestHeader {
            consumer_group: group.to_owned(),
            topic: mq.topic.clone(),
            queue_id: mq.queue_id,
            commit_offset: offset,
        },
    );
    instance.call(&addr, cmd).await.map(|_| ())
}

/// Where consumption of a queue starts (`computePullFromWhere`): the progress
/// `committed` before, or, for a queue new to the group, what `from` says.
pub(crate) async fn start_offset(
    instance: &ClientInstance,
    committed: Option<i64>,
    mq: &MessageQueue,
    from: ConsumeFrom,
) -> Result<i64> {
    if let Some(offset) = committed {
        return Ok(offset);
    }
    let retry = mq.topic.starts_with(RETRY_GROUP_TOPIC_PREFIX);
    match from {
        ConsumeFrom::FirstOffset => Ok(0),
        _ if retry => Ok(0),
        ConsumeFrom::LastOffset => max_offset(instance, mq).await,
        ConsumeFrom::Timestamp(ts) => search_offset(instance, mq, ts).await,
    }
}

/// Consume progress: kept in memory, written to the brokers (clustering) or to a local
/// file (broadcasting) every few seconds and at shutdown.
pub(crate) struct OffsetStore {
    table: Mutex<HashMap<MessageQueue, i64>>,
    /// Broadcasting: the JSON file.
    local: Option<PathBuf>,
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct LocalOffset {
    #[serde(flatten)]
    mq: MessageQueue,
    offset: i64,
}

impl OffsetStore {
    pub(crate) fn remote() -> Self {
        Self {
            table: Mutex::default(),
            local: None,
        }
    }

    /// A local store at `path`, loaded if it exists.
    pub(crate) fn local(path: PathBuf) -> Result<Self> {
        let err = |message: String| ClientError::OffsetStore {
            path: path.display().to_string(),
            message,
        };
        let mut table = HashMap::new();
        match std::fs::read(&path) {
            Ok(bytes) => {
                let entries: Vec<LocalOffset> =
                    serde_json::from_slice(&bytes).map_err(|e| err(e.to_string()))?;
                table.extend(entries.into_iter().map(|e| (e.mq, e.offset)));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(err(e.to_string())),
        }
        Ok(Self {
            table: Mutex::new(table),
            local: Some(path),
        })
    }

    pub(crate) fn is_local(&self) -> bool {
        self.local.is_some()
    }

    pub(crate) fn get(&self, mq: &MessageQueue) -> Option<i64> {
        self.table.lock().expect("offsets lock").get(mq).copied()
    }

    /// Records progress; with `only_forward`, never moves an offset back.
    pub(crate) fn update(&self, mq: &MessageQueue, offset: i64, only_forward: bool) {
        let mut table = self.table.lock().expect("offsets lock");
        let entry = table.entry(mq.clone()).or_insert(offset);
        if !only_forward || offset > *entry {
            *entry = offset;
        }
    }

    pub(crate) fn remove(&self, mq: &MessageQueue) {
        self.table.lock().expect("offsets lock").remove(mq);
    }

    pub(crate) fn snapshot(&self) -> BTreeMap<MessageQueue, i64> {
        self.table
            .lock()
            .expect("offsets lock")
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    }

    /// Writes the queues in `mqs` (all, for a local store).
    pub(crate) async fn persist(
        &self,
        instance: &ClientInstance,
        group: &str,
        mqs: Option<&[MessageQueue]>,
    ) -> Result<()> {
        let snapshot = self.snapshot();
        if let Some(path) = &self.local {
            let entries: Vec<LocalOffset> = snapshot
                .into_iter()
                .map(|(mq, offset)| LocalOffset { mq, offset })
                .collect();
            return write_atomically(
                path,
                &serde_json::to_vec_pretty(&entries).expect("offsets serialize"),
            );
        }
        let mut first_error = None;
        for (mq, offset) in snapshot {
            if mqs.is_some_and(|only| !only.contains(&mq)) {
                continue;
            }
            if let Err(e) = commit_offset(instance, group, &mq, offset).await {
                tracing::warn!(?mq, error = %e, "offset commit failed");
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// Write-then-rename, creating the directory first, so a crash leaves the old file or
/// the new one.
fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    let err = |e: std::io::Error| ClientError::OffsetStore {
        path: path.display().to_string(),
        message: e.to_string(),
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, bytes).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

/// A retry-topic message shows its original topic (`resetRetryAndNamespace`).
pub(crate) fn restore_retry_topic(msg: &mut MessageExt, group: &str) {
    if msg.topic.strip_prefix(RETRY_GROUP_TOPIC_PREFIX) == Some(group) {
        if let Some(topic) = msg.property(property::RETRY_TOPIC) {
            msg.topic = topic.to_owned();
        }
    }
}

pub(crate) use crate::admin::format::now_ms;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscription_data_as_java_builds_it() {
        let d = Subscription::tags("T", "TagA || TagB").data(7);
        assert_eq!(d.sub_string, "TagA || TagB");
        assert_eq!(d.tags_set, BTreeSet::from(["TagA".into(), "TagB".into()]));
        assert_eq!(
            d.code_set,
            BTreeSet::from([java_string_hash("TagA"), java_string_hash("TagB")])
        );
        assert_eq!(d.expression_type.as_deref(), Some("TAG"));
        let all = Subscription::tags("T", "").data(1);
        assert_eq!(all.sub_string, "*");
        assert!(all.tags_set.is_empty());
        let sql = Subscription::sql92("T", "a > 1").data(1);
        assert_eq!(sql.sub_string, "a > 1");
        assert_eq!(sql.expression_type.as_deref(), Some("SQL92"));
    }

    #[test]
    fn local_offsets_survive_a_reload() {
        let dir = std::env::temp_dir().join(format!("offsets-{}", std::process::id()));
        let path = dir.join("g").join("offsets.json");
        let store = OffsetStore::local(path.clone()).unwrap();
        let mq = MessageQueue {
            topic: "T".into(),
            broker_name: "b".into(),
            queue_id: 3,
        };
        store.update(&mq, 10, true);
        store.update(&mq, 5, true);
        assert_eq!(store.get(&mq), Some(10));
        let entries: Vec<LocalOffset> = store
            .snapshot()
            .into_iter()
            .map(|(mq, offset)| LocalOffset { mq, offset })
            .collect();
        write_atomically(&path, &serde_json::to_vec(&entries).unwrap()).unwrap();
        let again = OffsetStore::local(path).unwrap();
        assert_eq!(again.get(&mq), Some(10));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
