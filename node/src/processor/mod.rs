//! Request processing: which shard runs a request ([`route`]) and what it answers
//! ([`handle`]).

use protocol::code::{request, response};
use protocol::RemotingCommand;
use std::rc::Rc;

use crate::server::Origin;
use crate::shard::{owner_of, ShardCtx};

pub mod admin;
pub mod consumer;
pub mod pull;
pub mod send;
pub mod sendback;

/// Where a request runs.
#[derive(Debug)]
pub enum Route {
    /// On the shard that read it (broker-wide state, or a malformed request whose
    /// error any shard can answer).
    Here,
    /// On the shard that owns its queue or record.
    Shard(usize),
    /// Answered without running anything.
    Answer(RemotingCommand),
}

/// Decides where a request runs. A send without a queue (queueId < 0) gets one here,
/// as RocketMQ's broker picks one at random.
pub fn route(ctx: &Rc<ShardCtx>, req: &mut RemotingCommand) -> Route {
    if send::is_send(req.code) {
        send::retry_past_max_to_dlq(ctx, req);
    }
    let shards = ctx.shards();
    if shards == 1 {
        return Route::Here;
    }
    let (topic_key, queue_key) = match req.code {
        request::SEND_MESSAGE_V2 => ("b", "e"),
        request::SEND_BATCH_MESSAGE if req.ext_fields.get("producerGroup").is_none() => ("b", "e"),
        request::SEND_MESSAGE
        | request::SEND_BATCH_MESSAGE
        | request::PULL_MESSAGE
        | request::QUERY_CONSUMER_OFFSET
        | request::GET_MAX_OFFSET
        | request::GET_MIN_OFFSET
        | request::SEARCH_OFFSET_BY_TIMESTAMP
        | request::GET_EARLIEST_MSG_STORETIME => ("topic", "queueId"),
        request::VIEW_MESSAGE_BY_ID
        | request::CONSUMER_SEND_MSG_BACK
        | request::END_TRANSACTION => {
            let key = if req.code == request::END_TRANSACTION {
                "commitLogOffset"
            } else {
                "offset"
            };
            return match req
                .ext_fields
                .get(key)
                .and_then(|o| o.trim().parse::<i64>().ok())
            {
                Some(offset) => {
                    let (shard, _) = storage::commitlog::split_offset(offset);
                    if (shard as usize) < shards {
                        Route::Shard(shard as usize)
                    } else {
                        Route::Here
                    }
                }
                None => Route::Here,
            };
        }
        _ => return Route::Here,
    };
    let Some(topic) = req.ext_fields.get(topic_key) else {
        return Route::Here;
    };
    let Some(queue_id) = req
        .ext_fields
        .get(queue_key)
        .and_then(|q| q.trim().parse::<i32>().ok())
    else {
        return Route::Here;
    };
    if queue_id < 0 {
        if !send::is_send(req.code) {
            return Route::Here;
        }
        let Some(config) = ctx.broker.meta.topics.get(topic) else {
            return Route::Here; // the handler answers (or auto-creates) on this shard
        };
        let n = config.write_queue_nums.max(1);
        let queue = (fastrand_u32() % n as u32) as i32;
        let topic = topic.to_owned();
        req.ext_fields.insert(queue_key, queue.to_string());
        return Route::Shard(owner_of(&topic, queue, shards));
    }
    Route::Shard(owner_of(topic, queue_id, shards))
}

/// A cheap random number (for picking a queue), not for anything secret.
fn fastrand_u32() -> u32 {
    use std::cell::Cell;
    thread_local!(static STATE: Cell<u64> = Cell::new(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64) | 1
    ));
    STATE.with(|s| {
        let mut x = s.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.set(x);
        (x >> 32) as u32
    })
}

/// Answers one request (oneway requests get an answer too; the caller drops it).
pub async fn handle(ctx: &Rc<ShardCtx>, origin: Origin, req: RemotingCommand) -> RemotingCommand {
    match req.code {
        request::SEND_MESSAGE | request::SEND_MESSAGE_V2 | request::SEND_BATCH_MESSAGE => {
            send::send(ctx, origin, &req).await
        }
        request::PULL_MESSAGE => pull::pull(ctx, origin, &req).await,
        request::CONSUMER_SEND_MSG_BACK => sendback::send_back(ctx, origin, &req).await,
        request::END_TRANSACTION => crate::transaction::end_transaction(ctx, &req).await,
        request::HEART_BEAT => consumer::heartbeat(ctx, origin, &req),
        request::UNREGISTER_CLIENT => consumer::unregister_client(ctx, &req),
        request::GET_CONSUMER_LIST_BY_GROUP => consumer::consumer_list(ctx, &req),
        request::QUERY_CONSUMER_OFFSET => consumer::query_offset(ctx, &req).await,
        request::UPDATE_CONSUMER_OFFSET => consumer::update_offset(ctx, &req),
        request::CHECK_CLIENT_CONFIG => consumer::check_client_config(ctx, &req),
        request::LOCK_BATCH_MQ => consumer::lock_batch(ctx, &req),
        request::UNLOCK_BATCH_MQ => consumer::unlock_batch(ctx, &req),
        request::UPDATE_AND_CREATE_TOPIC => admin::create_topic(ctx, &req),
        request::DELETE_TOPIC_IN_BROKER => admin::delete_topic(ctx, &req),
        request::GET_ALL_TOPIC_CONFIG => admin::all_topic_config(ctx, &req),
        request::GET_MAX_OFFSET => admin::max_offset(ctx, &req),
        request::GET_MIN_OFFSET => admin::min_offset(ctx, &req),
        request::SEARCH_OFFSET_BY_TIMESTAMP => admin::search_offset(ctx, &req).await,
        request::GET_EARLIEST_MSG_STORETIME => admin::earliest_time(ctx, &req).await,
        request::QUERY_MESSAGE => admin::query_message(ctx, &req).await,
        request::VIEW_MESSAGE_BY_ID => admin::view_message(ctx, &req).await,
        request::GET_BROKER_RUNTIME_INFO => admin::runtime_info(ctx, &req).await,
        request::GET_BROKER_CONFIG => admin::broker_config(ctx, &req),
        request::UPDATE_BROKER_CONFIG => admin::update_broker_config(ctx, &req),
        request::GET_TOPIC_STATS_INFO => admin::topic_stats(ctx, &req).await,
        request::GET_CONSUME_STATS => admin::consume_stats(ctx, &req).await,
        request::INVOKE_BROKER_TO_RESET_OFFSET => admin::reset_offset(ctx, &req).await,
        request::GET_ALL_CONSUMER_OFFSET => admin::all_consumer_offsets(ctx, &req),
        request::QUERY_TOPIC_CONSUME_BY_WHO => admin::topic_consumed_by(ctx, &req),
        request::UPDATE_AND_CREATE_SUBSCRIPTIONGROUP => admin::create_group(ctx, &req),
        request::DELETE_SUBSCRIPTIONGROUP => admin::delete_group(ctx, &req),
        request::GET_ALL_SUBSCRIPTIONGROUP_CONFIG => admin::all_groups(ctx, &req),
        request::GET_CONSUMER_CONNECTION_LIST => consumer::connection_list(ctx, &req),
        request::GET_PRODUCER_CONNECTION_LIST => consumer::producer_connection_list(ctx, &req),
        code => req.error_response(
            response::REQUEST_CODE_NOT_SUPPORTED,
            format!(" request type {code} not supported"),
        ),
    }
}

/// A remark with RocketMQ's `FAQUrl.suggestTodo` ending.
pub fn with_faq(remark: impl std::fmt::Display) -> String {
    format!("{remark} See https://rocketmq.apache.org/docs/bestPractice/06FAQ for further details.")
}

/// TOPIC_NOT_EXIST as sends and pulls answer it.
pub fn topic_not_exist(req: &RemotingCommand, topic: &str) -> RemotingCommand {
    req.error_response(
        response::TOPIC_NOT_EXIST,
        with_faq(format!("topic[{topic}] not exist, apply first please!")),
    )
}

/// NO_PERMISSION when the broker's permission lacks `needed` (`perm::WRITE` for what
/// stores messages, `perm::READ` for pulls); `action` is "sending" or "pulling".
pub fn broker_forbids(
    ctx: &ShardCtx,
    req: &RemotingCommand,
    needed: i32,
    action: &str,
) -> Option<RemotingCommand> {
    let broker = &ctx.broker;
    (broker.permission() & needed != needed).then(|| {
        req.error_response(
            response::NO_PERMISSION,
            format!(
                "the broker[{}] {action} message is forbidden",
                broker.advertised
            ),
        )
    })
}

/// The answer to a request whose header does not parse (RocketMQ answers SYSTEM_ERROR
/// with the decoding exception).
pub fn bad_header(req: &RemotingCommand, e: impl std::fmt::Display) -> RemotingCommand {
    req.error_response(response::SYSTEM_ERROR, format!("bad request header: {e}"))
}
