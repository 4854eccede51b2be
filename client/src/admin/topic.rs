//! Topic commands: updateTopic, deleteTopic, topicList, topicRoute, topicStatus,
//! topicClusterList, updateTopicPerm, statsAll.

use protocol::body::{TopicList, TopicRouteData};
use protocol::code::{request, response};
use protocol::header::{
    CreateTopicRequestHeader, DeleteTopicFromNamesrvRequestHeader, GetConsumeStatsRequestHeader,
    GetTopicsByClusterRequestHeader, TopicRequestHeader,
};
use protocol::RemotingCommand;
use serde_json::{json, Value};
use std::collections::BTreeSet;

use super::cli::{
    DeleteTopicArgs, Output, StatsAllArgs, TopicListArgs, TopicOnlyArgs, TopicRouteArgs,
    TopicStatusArgs, UpdateTopicArgs, UpdateTopicPermArgs,
};
use super::client::{route_masters, Admin, BrokerTarget};
use super::error::{AdminError, Role};
use super::format::{format_ms, Table};
use super::{fastjson, for_each_broker};

/// RocketMQ's `TopicValidator`: 1..=127 characters of `[%|a-zA-Z0-9_-]`.
pub fn validate_topic(topic: &str) -> Result<(), AdminError> {
    let ok_chars = topic
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'%' | b'|' | b'_' | b'-'));
    if topic.is_empty() || topic.len() > 127 || !ok_chars {
        return Err(AdminError::Usage(format!(
            "invalid topic name {topic:?}: 1 to 127 characters of letters, digits, %, |, _ and -"
        )));
    }
    Ok(())
}

fn validate_perm(perm: i32) -> Result<(), AdminError> {
    if matches!(perm, 2 | 4 | 6) {
        Ok(())
    } else {
        Err(AdminError::Usage(format!(
            "invalid perm {perm}: 2 (write), 4 (read) or 6 (read-write)"
        )))
    }
}

pub fn update_topic(admin: &mut Admin, args: &UpdateTopicArgs) -> Result<Output, AdminError> {
    validate_topic(&args.topic)?;
    validate_perm(args.perm)?;
    for (what, n) in [("read", args.read_queues), ("write", args.write_queues)] {
        if !(1..=1024).contains(&n) {
            return Err(AdminError::Usage(format!(
                "{what} queue number {n} is not within 1..=1024"
            )));
        }
    }
    let targets = admin.select(&args.target)?;
    let header = CreateTopicRequestHeader {
        topic: args.topic.clone(),
        default_topic: "TBW102".into(),
        read_queue_nums: args.read_queues,
        write_queue_nums: args.write_queues,
        perm: args.perm,
        topic_filter_type: "SINGLE_TAG".into(),
        topic_sys_flag: Some(0),
        order: args.order.unwrap_or(false),
        attributes: args.attributes.clone(),
        force: false,
    };
    let config = json!({
        "topicName": args.topic, "readQueueNums": args.read_queues,
        "writeQueueNums": args.write_queues, "perm": args.perm,
        "order": args.order.unwrap_or(false),
    });
    let mut out = for_each_broker(admin, &targets, |admin, target| {
        let req = RemotingCommand::request(request::UPDATE_AND_CREATE_TOPIC).with_header(&header);
        admin.call_ok(Role::Broker, &target.addr, req)?;
        Ok((
            Value::Null,
            format!("create topic to {} success.", target.addr),
        ))
    });
    out.json["topicConfig"] = config.clone();
    out.text.push_str(&format!("{config}\n"));
    Ok(out)
}

pub fn delete_topic(admin: &mut Admin, args: &DeleteTopicArgs) -> Result<Output, AdminError> {
    let targets = match &args.cluster {
        Some(cluster) => admin.cluster_masters(cluster)?,
        None => admin.topic_masters(&args.topic)?,
    };
    let mut out = for_each_broker(admin, &targets, |admin, target| {
        let req = RemotingCommand::request(request::DELETE_TOPIC_IN_BROKER).with_header(
            &TopicRequestHeader {
                topic: args.topic.clone(),
            },
        );
        admin.call_ok(Role::Broker, &target.addr, req)?;
        Ok((
            Value::Null,
            format!(
                "delete topic [{}] from broker {} success.",
                args.topic, target.addr
            ),
        ))
    });
    let mut ns_results = Vec::new();
    for addr in admin.namesrv_addrs().to_vec() {
        let req = RemotingCommand::request(request::DELETE_TOPIC_IN_NAMESRV).with_header(
            &DeleteTopicFromNamesrvRequestHeader {
                topic: args.topic.clone(),
                cluster_name: args.cluster.clone(),
            },
        );
        match admin.call_ok(Role::Nameserver, &addr, req) {
            Ok(_) => {
                ns_results.push(json!({ "addr": addr, "ok": true }));
                out.text.push_str(&format!(
                    "delete topic [{}] from nameserver {addr} success.\n",
                    args.topic
                ));
            }
            Err(e) => {
                ns_results.push(json!({ "addr": addr, "ok": false, "error": e.to_json() }));
                out.text
                    .push_str(&format!("FAILED on nameserver {addr}: {e}\n"));
                out.error.get_or_insert(e);
            }
        }
    }
    out.json["nameservers"] = Value::Array(ns_results);
    out.json["topic"] = json!(args.topic);
    Ok(out)
}

pub fn topic_list(admin: &mut Admin, args: &TopicListArgs) -> Result<Output, AdminError> {
    let (code, req) = match &args.cluster {
        Some(cluster) => (
            request::GET_TOPICS_BY_CLUSTER,
            RemotingCommand::request(request::GET_TOPICS_BY_CLUSTER).with_header(
                &GetTopicsByClusterRequestHeader {
                    cluster: cluster.clone(),
                },
            ),
        ),
        None => (
            request::GET_ALL_TOPIC_LIST_FROM_NAMESERVER,
            RemotingCommand::request(request::GET_ALL_TOPIC_LIST_FROM_NAMESERVER),
        ),
    };
    let resp = admin.ns_call_ok(req)?;
    let addr = admin.namesrv_addrs()[0].clone();
    let list: TopicList = Admin::body(Role::Nameserver, &addr, code, &resp)?;
    let text: String = list.topic_list.iter().map(|t| format!("{t}\n")).collect();
    Ok(Output::new(json!({ "topics": list.topic_list }), text))
}

pub fn topic_route(admin: &mut Admin, args: &TopicRouteArgs) -> Result<Output, AdminError> {
    let route = admin.route(&args.topic)?;
    let value = serde_json::to_value(&route).unwrap_or(Value::Null);
    let text = if args.list {
        let mut t = Table::new(&[
            "ClusterName",
            "BrokerName",
            "BrokerAddrs",
            "ReadQueueNums",
            "WriteQueueNums",
            "Perm",
        ]);
        for q in &route.queue_datas {
            let broker = route
                .broker_datas
                .iter()
                .find(|b| b.broker_name == q.broker_name);
            t.row(vec![
                broker.map_or("-".into(), |b| b.cluster.clone()),
                q.broker_name.clone(),
                broker.map_or("-".into(), |b| {
                    b.broker_addrs
                        .iter()
                        .map(|(id, a)| format!("{id}:{a}"))
                        .collect::<Vec<_>>()
                        .join(",")
                }),
                q.read_queue_nums.to_string(),
                q.write_queue_nums.to_string(),
                q.perm.to_string(),
            ]);
        }
        t.render()
    } else {
        format!(
            "{}\n",
            serde_json::to_string_pretty(&value).unwrap_or_default()
        )
    };
    Ok(Output::new(value, text))
}

pub fn topic_status(admin: &mut Admin, args: &TopicStatusArgs) -> Result<Output, AdminError> {
    let mut targets = admin.topic_masters(&args.topic)?;
    if let Some(cluster) = &args.cluster {
        let in_cluster: BTreeSet<String> = admin
            .cluster_masters(cluster)?
            .into_iter()
            .map(|b| b.name)
            .collect();
        targets.retain(|t| in_cluster.contains(&t.name));
    }
    let mut rows = Vec::new();
    let mut table = Table::new(&[
        "Broker Name",
        "QID",
        "Min Offset",
        "Max Offset",
        "Last Updated",
    ]);
    for target in &targets {
        for q in admin.topic_stats(&target.addr, &args.topic)? {
            table.row(vec![
                q.queue.broker_name.clone(),
                q.queue.queue_id.to_string(),
                q.min_offset.to_string(),
                q.max_offset.to_string(),
                format_ms(q.last_update_ms),
            ]);
            rows.push(json!({
                "brokerName": q.queue.broker_name, "brokerAddr": target.addr,
                "queueId": q.queue.queue_id, "minOffset": q.min_offset,
                "maxOffset": q.max_offset, "lastUpdateTimestamp": q.last_update_ms,
            }));
        }
    }
    Ok(Output::new(
        json!({ "topic": args.topic, "queues": rows }),
        table.render(),
    ))
}

pub fn topic_cluster_list(admin: &mut Admin, args: &TopicOnlyArgs) -> Result<Output, AdminError> {
    let route = admin.route(&args.topic)?;
    let clusters: BTreeSet<String> = route
        .broker_datas
        .iter()
        .map(|b| b.cluster.clone())
        .collect();
    let text = clusters.iter().map(|c| format!("{c}\n")).collect();
    Ok(Output::new(
        json!({ "topic": args.topic, "clusters": clusters }),
        text,
    ))
}

pub fn update_topic_perm(
    admin: &mut Admin,
    args: &UpdateTopicPermArgs,
) -> Result<Output, AdminError> {
    validate_perm(args.perm)?;
    let route = admin.route(&args.topic)?;
    let targets = match (&args.target.broker, &args.target.cluster) {
        (Some(_), _) | (None, None) => admin.select(&args.target)?,
        (None, Some(cluster)) => {
            let on_route: BTreeSet<String> =
                route_masters(&route).into_iter().map(|b| b.name).collect();
            admin
                .cluster_masters(cluster)?
                .into_iter()
                .filter(|b| on_route.contains(&b.name))
                .collect()
        }
    };
    Ok(for_each_broker(admin, &targets, |admin, target| {
        let queue = route
            .queue_datas
            .iter()
            .find(|q| q.broker_name == target.name)
            .ok_or_else(|| {
                AdminError::NotFound(format!(
                    "topic {} is not on broker {} ({})",
                    args.topic, target.name, target.addr
                ))
            })?;
        let header = CreateTopicRequestHeader {
            topic: args.topic.clone(),
            default_topic: "TBW102".into(),
            read_queue_nums: queue.read_queue_nums,
            write_queue_nums: queue.write_queue_nums,
            perm: args.perm,
            topic_filter_type: "SINGLE_TAG".into(),
            topic_sys_flag: Some(queue.topic_sys_flag),
            order: false,
            attributes: None,
            force: false,
        };
        let req = RemotingCommand::request(request::UPDATE_AND_CREATE_TOPIC).with_header(&header);
        admin.call_ok(Role::Broker, &target.addr, req)?;
        Ok((
            json!({ "oldPerm": queue.perm, "newPerm": args.perm }),
            format!(
                "update topic perm from {} to {} in {} success.",
                queue.perm, args.perm, target.addr
            ),
        ))
    }))
}

/// Figures of one topic across its brokers.
struct TopicFigures {
    queues: usize,
    /// Messages currently stored (max - min summed).
    stored: i64,
    /// Messages ever written (max offsets summed).
    written: i64,
    last_update_ms: i64,
}

fn topic_figures(
    admin: &mut Admin,
    targets: &[BrokerTarget],
    topic: &str,
) -> Result<TopicFigures, AdminError> {
    let mut f = TopicFigures {
        queues: 0,
        stored: 0,
        written: 0,
        last_update_ms: 0,
    };
    for target in targets {
        for q in admin.topic_stats(&target.addr, topic)? {
            f.queues += 1;
            f.stored += (q.max_offset - q.min_offset).max(0);
            f.written += q.max_offset.max(0);
            f.last_update_ms = f.last_update_ms.max(q.last_update_ms);
        }
    }
    Ok(f)
}

/// QUERY_TOPIC_CONSUME_BY_WHO on the topic's masters: the groups that consume it, or
/// `None` when no broker supports the code.
fn consumer_groups(
    admin: &mut Admin,
    targets: &[BrokerTarget],
    topic: &str,
) -> Result<Option<BTreeSet<String>>, AdminError> {
    let mut groups = BTreeSet::new();
    let mut supported = false;
    for target in targets {
        let req = RemotingCommand::request(request::QUERY_TOPIC_CONSUME_BY_WHO).with_header(
            &TopicRequestHeader {
                topic: topic.to_owned(),
            },
        );
        let resp = admin.call(Role::Broker, &target.addr, req)?;
        if resp.code == response::REQUEST_CODE_NOT_SUPPORTED {
            continue;
        }
        supported = true;
        if resp.code != response::SUCCESS {
            continue;
        }
        if let Ok(v) = fastjson::parse(&resp.body) {
            if let Some(list) = v["groupList"].as_array() {
                groups.extend(list.iter().filter_map(|g| g.as_str().map(str::to_owned)));
            }
        }
    }
    Ok(supported.then_some(groups))
}

/// The lag of `group` on `topic`: broker offset minus consumer offset, summed.
fn group_lag(
    admin: &mut Admin,
    targets: &[BrokerTarget],
    group: &str,
    topic: &str,
) -> Result<i64, AdminError> {
    let mut lag = 0;
    for target in targets {
        let req = RemotingCommand::request(request::GET_CONSUME_STATS).with_header(
            &GetConsumeStatsRequestHeader {
                consumer_group: group.to_owned(),
                topic: Some(topic.to_owned()),
                topic_list: None,
            },
        );
        let resp = admin.call_ok(Role::Broker, &target.addr, req)?;
        let stats = super::group::parse_consume_stats(&resp.body).map_err(|reason| {
            AdminError::BadResponse {
                role: Role::Broker,
                addr: target.addr.clone(),
                request: request::GET_CONSUME_STATS,
                reason,
            }
        })?;
        lag += stats.rows.iter().map(|r| r.diff()).sum::<i64>();
    }
    Ok(lag)
}

pub fn stats_all(admin: &mut Admin, args: &StatsAllArgs) -> Result<Output, AdminError> {
    let topics: Vec<String> = match &args.topic {
        Some(t) => vec![t.clone()],
        None => {
            let resp = admin.ns_call_ok(RemotingCommand::request(
                request::GET_ALL_TOPIC_LIST_FROM_NAMESERVER,
            ))?;
            let addr = admin.namesrv_addrs()[0].clone();
            let list: TopicList = Admin::body(
                Role::Nameserver,
                &addr,
                request::GET_ALL_TOPIC_LIST_FROM_NAMESERVER,
                &resp,
            )?;
            list.topic_list
                .into_iter()
                .filter(|t| !t.starts_with("%RETRY%") && !t.starts_with("%DLQ%"))
                .collect()
        }
    };
    let mut table = Table::new(&[
        "Topic",
        "Consumer Group",
        "Queues",
        "Stored",
        "Written",
        "Accumulation",
        "Last Stored",
    ]);
    let mut rows = Vec::new();
    let mut groups_supported = true;
    let mut error = None;
    for topic in topics {
        let route: TopicRouteData = match admin.route(&topic) {
            Ok(r) => r,
            // A topic listed but gone by now, or a single topic that does not exist.
            Err(e)
                if e.server_code() == Some(response::TOPIC_NOT_EXIST) && args.topic.is_none() =>
            {
                continue
            }
            Err(e) => return Err(e),
        };
        let targets = route_masters(&route);
        let figures = match topic_figures(admin, &targets, &topic) {
            Ok(f) => f,
            Err(e) => {
                rows.push(json!({ "topic": topic, "error": e.to_json() }));
                error.get_or_insert(e);
                continue;
            }
        };
        if args.active && figures.written == 0 {
            continue;
        }
        let groups = consumer_groups(admin, &targets, &topic)?;
        groups_supported &= groups.is_some();
        let mut group_rows = Vec::new();
        for group in groups.unwrap_or_default() {
            let lag = group_lag(admin, &targets, &group, &topic).ok();
            group_rows.push(json!({ "group": group, "accumulation": lag }));
            table.row(vec![
                topic.clone(),
                group.clone(),
                figures.queues.to_string(),
                figures.stored.to_string(),
                figures.written.to_string(),
                lag.map_or("-".into(), |l| l.to_string()),
                format_ms(figures.last_update_ms),
            ]);
        }
        if group_rows.is_empty() {
            table.row(vec![
                topic.clone(),
                "-".into(),
                figures.queues.to_string(),
                figures.stored.to_string(),
                figures.written.to_string(),
                "-".into(),
                format_ms(figures.last_update_ms),
            ]);
        }
        rows.push(json!({
            "topic": topic, "queues": figures.queues, "stored": figures.stored,
            "written": figures.written, "lastUpdateTimestamp": figures.last_update_ms,
            "consumerGroups": group_rows,
        }));
    }
    let mut text = table.render();
    if !groups_supported {
        text.push_str(
            "note: a broker does not support QUERY_TOPIC_CONSUME_BY_WHO; consumer groups are not listed\n",
        );
    }
    Ok(Output {
        json: json!({ "topics": rows, "consumerGroupsListed": groups_supported }),
        text,
        error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_follow_rocketmq_rules() {
        assert!(validate_topic("TopicTest").is_ok());
        assert!(validate_topic("%RETRY%group-1_a|b").is_ok());
        assert!(validate_topic("").is_err());
        assert!(validate_topic("a b").is_err());
        assert!(validate_topic(&"a".repeat(128)).is_err());
        assert!(validate_perm(6).is_ok());
        assert!(validate_perm(7).is_err());
    }
}
