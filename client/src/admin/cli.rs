//! `rmqadmin`'s command line: mqadmin's sub-command names and flags, global options, and
//! the dispatch from a parsed command to its implementation.

use clap::{ArgAction, Args, Parser, Subcommand};
use serde_json::Value;
use std::ffi::OsString;
use std::io::Write;
use std::time::Duration;

use super::client::Admin;
use super::error::{exit, AdminError};
use super::{broker, group, msg, topic};

/// Where nameserver addresses come from when `-n` is not given.
pub const NAMESRV_ENV: &str = "NAMESRV_ADDR";
/// The nameserver `scripts/cluster.sh` starts, used when neither `-n` nor the variable is set.
pub const DEFAULT_NAMESRV: &str = "127.0.0.1:9876";

/// Administer a RocketMQ-compatible cluster over the remoting protocol (mqadmin's
/// sub-commands and flags). Exit codes: 0 success, 1 a server answered an error,
/// 2 usage error, 3 a nameserver or broker could not be reached.
#[derive(Debug, Parser)]
#[command(name = "rmqadmin", version)]
pub struct Cli {
    /// Nameserver addresses, `host:port;host:port` (default: $NAMESRV_ADDR, else 127.0.0.1:9876).
    #[arg(short = 'n', long = "namesrvAddr", global = true)]
    pub namesrv: Option<String>,
    /// Print one stable JSON object instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    /// Deadline for connecting and for each request.
    #[arg(long = "timeout-ms", global = true, default_value_t = 3000)]
    pub timeout_ms: u64,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create or update a topic on a broker or on every master of a cluster.
    #[command(name = "updateTopic")]
    UpdateTopic(UpdateTopicArgs),
    /// Delete a topic from brokers and nameservers.
    #[command(name = "deleteTopic")]
    DeleteTopic(DeleteTopicArgs),
    /// List topics known to the nameserver (or those of one cluster).
    #[command(name = "topicList")]
    TopicList(TopicListArgs),
    /// Print a topic's route.
    #[command(name = "topicRoute")]
    TopicRoute(TopicRouteArgs),
    /// Per-queue min/max offsets and last update time of a topic.
    #[command(name = "topicStatus")]
    TopicStatus(TopicStatusArgs),
    /// The clusters a topic is served by.
    #[command(name = "topicClusterList")]
    TopicClusterList(TopicOnlyArgs),
    /// Change a topic's permission (2 write, 4 read, 6 read-write).
    #[command(name = "updateTopicPerm")]
    UpdateTopicPerm(UpdateTopicPermArgs),
    /// Brokers of every cluster with their runtime figures.
    #[command(name = "clusterList")]
    ClusterList(ClusterListArgs),
    /// A broker's runtime information.
    #[command(name = "brokerStatus")]
    BrokerStatus(BrokerSelectArgs),
    /// A broker's configuration.
    #[command(name = "getBrokerConfig")]
    GetBrokerConfig(BrokerSelectArgs),
    /// Change one broker configuration key.
    #[command(name = "updateBrokerConfig")]
    UpdateBrokerConfig(UpdateBrokerConfigArgs),
    /// Create or update a subscription group.
    #[command(name = "updateSubGroup")]
    UpdateSubGroup(UpdateSubGroupArgs),
    /// Delete a subscription group.
    #[command(name = "deleteSubGroup")]
    DeleteSubGroup(DeleteSubGroupArgs),
    /// A consumer group's per-queue progress and lag (or a summary of every group).
    #[command(name = "consumerProgress")]
    ConsumerProgress(ConsumerProgressArgs),
    /// The connected consumers of a group and their subscriptions.
    #[command(name = "consumerConnection")]
    ConsumerConnection(ConsumerConnectionArgs),
    /// The connected producers of a group.
    #[command(name = "producerConnection")]
    ProducerConnection(ProducerConnectionArgs),
    /// Look a message up by its offset msgId (or unique key with -t).
    #[command(name = "queryMsgById")]
    QueryMsgById(QueryMsgByIdArgs),
    /// Look messages up by key.
    #[command(name = "queryMsgByKey")]
    QueryMsgByKey(QueryMsgByKeyArgs),
    /// Look a message up by its unique key (the client msgId).
    #[command(name = "queryMsgByUniqueKey")]
    QueryMsgByUniqueKey(QueryMsgByUniqueKeyArgs),
    /// The message at one queue offset.
    #[command(name = "queryMsgByOffset")]
    QueryMsgByOffset(QueryMsgByOffsetArgs),
    /// Print every message of a topic (optionally within a time range).
    #[command(name = "printMsg")]
    PrintMsg(PrintMsgArgs),
    /// Reset a group's consume offsets on a topic to a point in time.
    #[command(name = "resetOffsetByTime")]
    ResetOffsetByTime(ResetOffsetByTimeArgs),
    /// Send one message.
    #[command(name = "sendMessage")]
    SendMessage(SendMessageArgs),
    /// Pull and print messages from queues, without committing offsets.
    #[command(name = "consumeMessage")]
    ConsumeMessage(ConsumeMessageArgs),
    /// Per-topic figures: messages stored, written, and consumer lag.
    #[command(name = "statsAll")]
    StatsAll(StatsAllArgs),
    /// Every nameserver's configuration.
    #[command(name = "getNamesrvConfig")]
    GetNamesrvConfig,
    /// Set a KV config entry on every nameserver.
    #[command(name = "updateKvConfig")]
    UpdateKvConfig(UpdateKvConfigArgs),
    /// Delete a KV config entry from every nameserver.
    #[command(name = "deleteKvConfig")]
    DeleteKvConfig(KvKeyArgs),
    /// Read a KV config entry from the nameserver.
    #[command(name = "getKvConfig")]
    GetKvConfig(KvKeyArgs),
}

#[derive(Debug, Args)]
pub struct UpdateTopicArgs {
    #[arg(short = 't', long = "topic")]
    pub topic: String,
    #[command(flatten)]
    pub target: BrokerSelectArgs,
    #[arg(short = 'r', long = "readQueueNums", default_value_t = 8)]
    pub read_queues: i32,
    #[arg(short = 'w', long = "writeQueueNums", default_value_t = 8)]
    pub write_queues: i32,
    /// 2 write, 4 read, 6 read-write.
    #[arg(short = 'p', long = "perm", default_value_t = 6)]
    pub perm: i32,
    /// Ordered topic.
    #[arg(short = 'o', long = "order", action = ArgAction::Set)]
    pub order: Option<bool>,
    /// Attributes, `+key=value,+key2=value2`.
    #[arg(short = 'a', long = "attributes")]
    pub attributes: Option<String>,
}

#[derive(Debug, Args)]
pub struct DeleteTopicArgs {
    #[arg(short = 't', long = "topic")]
    pub topic: String,
    /// Cluster name (default: the brokers of the topic's route).
    #[arg(short = 'c', long = "clusterName")]
    pub cluster: Option<String>,
}

#[derive(Debug, Args)]
pub struct TopicListArgs {
    /// Only the topics of this cluster.
    #[arg(short = 'c', long = "clusterName")]
    pub cluster: Option<String>,
}

#[derive(Debug, Args)]
pub struct TopicRouteArgs {
    #[arg(short = 't', long = "topic")]
    pub topic: String,
    /// A table instead of the route JSON.
    #[arg(short = 'l', long = "list")]
    pub list: bool,
}

#[derive(Debug, Args)]
pub struct TopicStatusArgs {
    #[arg(short = 't', long = "topic")]
    pub topic: String,
    /// Only the brokers of this cluster.
    #[arg(short = 'c', long = "clusterName")]
    pub cluster: Option<String>,
}

#[derive(Debug, Args)]
pub struct TopicOnlyArgs {
    #[arg(short = 't', long = "topic")]
    pub topic: String,
}

#[derive(Debug, Args)]
pub struct UpdateTopicPermArgs {
    #[arg(short = 't', long = "topic")]
    pub topic: String,
    #[arg(short = 'p', long = "perm")]
    pub perm: i32,
    #[command(flatten)]
    pub target: BrokerSelectArgs,
}

#[derive(Debug, Args)]
pub struct ClusterListArgs {
    /// Only this cluster.
    #[arg(short = 'c', long = "clusterName")]
    pub cluster: Option<String>,
}

#[derive(Debug, Args)]
pub struct BrokerSelectArgs {
    /// Broker address `host:port`.
    #[arg(short = 'b', long = "brokerAddr")]
    pub broker: Option<String>,
    /// Cluster name: every master of it.
    #[arg(short = 'c', long = "clusterName")]
    pub cluster: Option<String>,
}

#[derive(Debug, Args)]
pub struct UpdateBrokerConfigArgs {
    #[command(flatten)]
    pub target: BrokerSelectArgs,
    #[arg(short = 'k', long = "key")]
    pub key: String,
    #[arg(short = 'v', long = "value")]
    pub value: String,
}

#[derive(Debug, Args)]
pub struct UpdateSubGroupArgs {
    #[arg(short = 'g', long = "groupName")]
    pub group: String,
    #[command(flatten)]
    pub target: BrokerSelectArgs,
    #[arg(short = 's', long = "consumeEnable", action = ArgAction::Set)]
    pub consume_enable: Option<bool>,
    #[arg(short = 'm', long = "consumeFromMinEnable", action = ArgAction::Set)]
    pub consume_from_min_enable: Option<bool>,
    #[arg(short = 'd', long = "consumeBroadcastEnable", action = ArgAction::Set)]
    pub consume_broadcast_enable: Option<bool>,
    #[arg(short = 'o', long = "consumeMessageOrderly", action = ArgAction::Set)]
    pub consume_message_orderly: Option<bool>,
    #[arg(short = 'q', long = "retryQueueNums")]
    pub retry_queue_nums: Option<i32>,
    #[arg(short = 'r', long = "retryMaxTimes")]
    pub retry_max_times: Option<i32>,
    #[arg(short = 'i', long = "brokerId")]
    pub broker_id: Option<i64>,
    #[arg(short = 'w', long = "whichBrokerWhenConsumeSlowly")]
    pub which_broker_when_consume_slowly: Option<i64>,
    #[arg(short = 'a', long = "notifyConsumerIdsChanged", action = ArgAction::Set)]
    pub notify_consumer_ids_changed: Option<bool>,
}

#[derive(Debug, Args)]
pub struct DeleteSubGroupArgs {
    #[arg(short = 'g', long = "groupName")]
    pub group: String,
    #[command(flatten)]
    pub target: BrokerSelectArgs,
    /// Also remove the group's committed offsets.
    #[arg(short = 'r', long = "removeOffset", action = ArgAction::Set)]
    pub remove_offset: Option<bool>,
}

#[derive(Debug, Args)]
pub struct ConsumerProgressArgs {
    /// The group (default: a summary of every group with a retry topic).
    #[arg(short = 'g', long = "groupName")]
    pub group: Option<String>,
    /// Only this topic.
    #[arg(short = 't', long = "topicName")]
    pub topic: Option<String>,
}

#[derive(Debug, Args)]
pub struct ConsumerConnectionArgs {
    #[arg(short = 'g', long = "consumerGroup")]
    pub group: String,
    /// Ask this broker only (default: every master until one knows the group).
    #[arg(short = 'b', long = "brokerAddr")]
    pub broker: Option<String>,
}

#[derive(Debug, Args)]
pub struct ProducerConnectionArgs {
    #[arg(short = 'g', long = "producerGroup")]
    pub group: String,
    /// A topic the group produces to: its brokers are asked.
    #[arg(short = 't', long = "topic")]
    pub topic: String,
}

#[derive(Debug, Args)]
pub struct QueryMsgByIdArgs {
    /// Offset msgId(s), comma-separated.
    #[arg(short = 'i', long = "msgId")]
    pub msg_id: String,
    /// Topic: lets an id that is not an offset msgId be looked up as a unique key.
    #[arg(short = 't', long = "topic")]
    pub topic: Option<String>,
}

#[derive(Debug, Args)]
pub struct QueryMsgByKeyArgs {
    #[arg(short = 't', long = "topic")]
    pub topic: String,
    #[arg(short = 'k', long = "msgKey")]
    pub key: String,
    /// Begin timestamp (ms, `now` or `YYYY-MM-DD HH:MM:SS`, UTC).
    #[arg(short = 'b', long = "beginTimestamp")]
    pub begin: Option<String>,
    /// End timestamp.
    #[arg(short = 'e', long = "endTimestamp")]
    pub end: Option<String>,
    /// Most messages to return per broker.
    #[arg(short = 'c', long = "maxNum", default_value_t = 64)]
    pub max_num: i32,
}

#[derive(Debug, Args)]
pub struct QueryMsgByUniqueKeyArgs {
    #[arg(short = 'i', long = "msgId")]
    pub msg_id: String,
    #[arg(short = 't', long = "topic")]
    pub topic: String,
    /// Print every stored copy (retries), not only the newest.
    #[arg(short = 'a', long = "showAll")]
    pub show_all: bool,
}

#[derive(Debug, Args)]
pub struct QueryMsgByOffsetArgs {
    #[arg(short = 't', long = "topic")]
    pub topic: String,
    /// Broker name.
    #[arg(short = 'b', long = "brokerName")]
    pub broker_name: String,
    #[arg(short = 'i', long = "queueId")]
    pub queue_id: i32,
    #[arg(short = 'o', long = "offset")]
    pub offset: i64,
}

#[derive(Debug, Args)]
pub struct PrintMsgArgs {
    #[arg(short = 't', long = "topic")]
    pub topic: String,
    /// Tag expression, e.g. `TagA || TagB`.
    #[arg(short = 's', long = "subExpression", default_value = "*")]
    pub sub_expression: String,
    #[arg(short = 'b', long = "beginTimestamp")]
    pub begin: Option<String>,
    #[arg(short = 'e', long = "endTimestamp")]
    pub end: Option<String>,
    /// Print message bodies.
    #[arg(short = 'd', long = "printBody", action = ArgAction::Set, default_value_t = true)]
    pub print_body: bool,
    /// Stop after this many messages.
    #[arg(long = "limit", default_value_t = 10_000)]
    pub limit: usize,
}

#[derive(Debug, Args)]
pub struct ResetOffsetByTimeArgs {
    #[arg(short = 'g', long = "group")]
    pub group: String,
    #[arg(short = 't', long = "topic")]
    pub topic: String,
    /// `now`, milliseconds, or `yyyy-MM-dd#HH:mm:ss:SSS` (UTC).
    #[arg(short = 's', long = "timestamp")]
    pub timestamp: String,
    /// Also move offsets forward (default true).
    #[arg(short = 'f', long = "force", action = ArgAction::Set, default_value_t = true)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct SendMessageArgs {
    #[arg(short = 't', long = "topic")]
    pub topic: String,
    /// The body (UTF-8).
    #[arg(short = 'p', long = "body")]
    pub body: String,
    /// Keys, space-separated.
    #[arg(short = 'k', long = "key")]
    pub keys: Option<String>,
    #[arg(short = 'c', long = "tags")]
    pub tags: Option<String>,
    /// Broker name (default: the first writable broker of the route).
    #[arg(short = 'b', long = "broker")]
    pub broker_name: Option<String>,
    /// Queue id (default: chosen by the time).
    #[arg(short = 'i', long = "qid")]
    pub queue_id: Option<i32>,
}

#[derive(Debug, Args)]
pub struct ConsumeMessageArgs {
    #[arg(short = 't', long = "topic")]
    pub topic: String,
    /// Only this broker's queues.
    #[arg(short = 'b', long = "brokerName")]
    pub broker_name: Option<String>,
    /// Only this queue (with -b).
    #[arg(short = 'i', long = "queueId")]
    pub queue_id: Option<i32>,
    /// Start offset (with -b and -i).
    #[arg(short = 'o', long = "offset")]
    pub offset: Option<i64>,
    /// The group the pulls are made for (no offset is committed).
    #[arg(short = 'g', long = "consumerGroup", default_value = "TOOLS_CONSUMER")]
    pub group: String,
    #[arg(short = 's', long = "beginTimestamp")]
    pub begin: Option<String>,
    #[arg(short = 'e', long = "endTimestamp")]
    pub end: Option<String>,
    /// How many messages.
    #[arg(short = 'c', long = "messageNumber", default_value_t = 128)]
    pub count: usize,
}

#[derive(Debug, Args)]
pub struct StatsAllArgs {
    /// Only this topic.
    #[arg(short = 't', long = "topic")]
    pub topic: Option<String>,
    /// Only topics holding messages.
    #[arg(short = 'a', long = "activeTopic")]
    pub active: bool,
}

#[derive(Debug, Args)]
pub struct UpdateKvConfigArgs {
    #[arg(short = 's', long = "namespace")]
    pub namespace: String,
    #[arg(short = 'k', long = "key")]
    pub key: String,
    #[arg(short = 'v', long = "value")]
    pub value: String,
}

#[derive(Debug, Args)]
pub struct KvKeyArgs {
    #[arg(short = 's', long = "namespace")]
    pub namespace: String,
    #[arg(short = 'k', long = "key")]
    pub key: String,
}

/// What a command produced: its JSON form, its text form, and, when part of it failed,
/// the error that sets the exit code (printed after the output).
#[derive(Debug)]
pub struct Output {
    pub json: Value,
    pub text: String,
    pub error: Option<AdminError>,
}

impl Output {
    pub fn new(json: Value, text: String) -> Self {
        Self {
            json,
            text,
            error: None,
        }
    }
}

/// Runs one parsed command.
pub fn run(cli: &Cli) -> Result<Output, AdminError> {
    let namesrv = cli
        .namesrv
        .clone()
        .or_else(|| std::env::var(NAMESRV_ENV).ok())
        .unwrap_or_else(|| DEFAULT_NAMESRV.to_owned());
    let timeout = Duration::from_millis(cli.timeout_ms.max(1));
    let mut admin = Admin::new(&namesrv, timeout)?;
    let a = &mut admin;
    match &cli.command {
        Command::UpdateTopic(args) => topic::update_topic(a, args),
        Command::DeleteTopic(args) => topic::delete_topic(a, args),
        Command::TopicList(args) => topic::topic_list(a, args),
        Command::TopicRoute(args) => topic::topic_route(a, args),
        Command::TopicStatus(args) => topic::topic_status(a, args),
        Command::TopicClusterList(args) => topic::topic_cluster_list(a, args),
        Command::UpdateTopicPerm(args) => topic::update_topic_perm(a, args),
        Command::ClusterList(args) => broker::cluster_list(a, args),
        Command::BrokerStatus(args) => broker::broker_status(a, args),
        Command::GetBrokerConfig(args) => broker::get_broker_config(a, args),
        Command::UpdateBrokerConfig(args) => broker::update_broker_config(a, args),
        Command::GetNamesrvConfig => broker::get_namesrv_config(a),
        Command::UpdateKvConfig(args) => broker::update_kv_config(a, args),
        Command::DeleteKvConfig(args) => broker::delete_kv_config(a, args),
        Command::GetKvConfig(args) => broker::get_kv_config(a, args),
        Command::UpdateSubGroup(args) => group::update_sub_group(a, args),
        Command::DeleteSubGroup(args) => group::delete_sub_group(a, args),
        Command::ConsumerProgress(args) => group::consumer_progress(a, args),
        Command::ConsumerConnection(args) => group::consumer_connection(a, args),
        Command::ProducerConnection(args) => group::producer_connection(a, args),
        Command::ResetOffsetByTime(args) => group::reset_offset_by_time(a, args),
        Command::QueryMsgById(args) => msg::query_by_id(a, args),
        Command::QueryMsgByKey(args) => msg::query_by_key(a, args),
        Command::QueryMsgByUniqueKey(args) => msg::query_by_unique_key(a, args),
        Command::QueryMsgByOffset(args) => msg::query_by_offset(a, args),
        Command::PrintMsg(args) => msg::print_msg(a, args),
        Command::SendMessage(args) => msg::send_message(a, args),
        Command::ConsumeMessage(args) => msg::consume_message(a, args),
        Command::StatsAll(args) => topic::stats_all(a, args),
    }
}

/// The whole program: parses `args`, runs, prints, and returns the exit code.
pub fn main_with_args<I, T>(args: I) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return e.exit_code();
        }
    };
    let (output, error) = match run(&cli) {
        Ok(out) => (Some((out.json, out.text)), out.error),
        Err(e) => (None, Some(e)),
    };
    let mut stdout = std::io::stdout().lock();
    if cli.json {
        let mut doc = output.map_or_else(|| serde_json::json!({}), |(json, _)| json);
        if let Some(e) = &error {
            if let Value::Object(map) = &mut doc {
                map.insert("error".into(), e.to_json());
            }
        }
        let text = serde_json::to_string_pretty(&doc).unwrap_or_else(|_| "{}".into());
        let _ = writeln!(stdout, "{text}");
    } else if let Some((_, text)) = output {
        let _ = stdout.write_all(text.as_bytes());
    }
    let _ = stdout.flush();
    match error {
        Some(e) => {
            eprintln!("rmqadmin: {e}");
            e.exit_code()
        }
        None => exit::SUCCESS,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn mqadmin_style_arguments_parse() {
        let cli = Cli::try_parse_from([
            "rmqadmin",
            "updateTopic",
            "-n",
            "127.0.0.1:9876;127.0.0.2:9876",
            "-t",
            "T",
            "-c",
            "DefaultCluster",
            "-r",
            "4",
            "-o",
            "true",
            "--json",
        ])
        .unwrap();
        assert!(cli.json);
        assert_eq!(
            cli.namesrv.as_deref(),
            Some("127.0.0.1:9876;127.0.0.2:9876")
        );
        let Command::UpdateTopic(args) = cli.command else {
            panic!("wrong command")
        };
        assert_eq!((args.read_queues, args.write_queues, args.perm), (4, 8, 6));
        assert_eq!(args.order, Some(true));
        assert_eq!(args.target.cluster.as_deref(), Some("DefaultCluster"));
        // Usage errors exit 2, help exits 0.
        let e = Cli::try_parse_from(["rmqadmin", "updateTopic"]).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        let e = Cli::try_parse_from(["rmqadmin", "noSuchCommand"]).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        let e = Cli::try_parse_from(["rmqadmin", "--help"]).unwrap_err();
        assert_eq!(e.exit_code(), 0);
    }
}
