//! The admin tool's view of a cluster: nameservers tried in order, one cached blocking
//! connection per address, and the typed requests the commands share.

use protocol::body::{ClusterInfo, TopicRouteData, MASTER_ID};
use protocol::code::{request, response};
use protocol::header::{GetRouteInfoRequestHeader, TopicRequestHeader};
use protocol::RemotingCommand;
use std::collections::HashMap;
use std::time::Duration;

use super::error::{AdminError, Role};
use crate::remoting::Connection;

/// A broker master to send to: its name (when known) and address.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct BrokerTarget {
    pub name: String,
    pub addr: String,
}

/// Connections to a cluster's nameservers and brokers.
#[derive(Debug)]
pub struct Admin {
    namesrv: Vec<String>,
    timeout: Duration,
    conns: HashMap<String, Connection>,
}

impl Admin {
    /// `namesrv` is `host:port;host:port` as mqadmin takes it (commas work too).
    pub fn new(namesrv: &str, timeout: Duration) -> Result<Self, AdminError> {
        let namesrv: Vec<String> = namesrv
            .split([';', ','])
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        if namesrv.is_empty() {
            return Err(AdminError::Usage(
                "no nameserver address: pass -n host:port or set NAMESRV_ADDR".into(),
            ));
        }
        Ok(Self {
            namesrv,
            timeout,
            conns: HashMap::new(),
        })
    }

    pub fn namesrv_addrs(&self) -> &[String] {
        &self.namesrv
    }

    /// Sends to one address and returns the answer, whatever its code.
    pub fn call(
        &mut self,
        role: Role,
        addr: &str,
        req: RemotingCommand,
    ) -> Result<RemotingCommand, AdminError> {
        let unreachable = |source| AdminError::Unreachable {
            role,
            addr: addr.to_owned(),
            source,
        };
        if !self.conns.contains_key(addr) {
            let conn = Connection::connect(addr, self.timeout).map_err(unreachable)?;
            self.conns.insert(addr.to_owned(), conn);
        }
        let conn = self.conns.get_mut(addr).expect("inserted above");
        match conn.call(req) {
            Ok(resp) => Ok(resp),
            Err(e) => {
                // The stream may hold half a frame now; start afresh next time.
                self.conns.remove(addr);
                Err(unreachable(e))
            }
        }
    }

    /// Sends to one address; any code but SUCCESS is an error.
    pub fn call_ok(
        &mut self,
        role: Role,
        addr: &str,
        req: RemotingCommand,
    ) -> Result<RemotingCommand, AdminError> {
        let code = req.code;
        let resp = self.call(role, addr, req)?;
        check(role, addr, code, resp)
    }

    /// Sends to the first nameserver that can be reached; its answer stands.
    pub fn ns_call(&mut self, req: RemotingCommand) -> Result<RemotingCommand, AdminError> {
        let mut last = None;
        for addr in self.namesrv.clone() {
            match self.call(Role::Nameserver, &addr, req.clone()) {
                Ok(resp) => return Ok(resp),
                Err(e) => last = Some(e),
            }
        }
        Err(last.expect("at least one nameserver"))
    }

    /// [`Admin::ns_call`], any code but SUCCESS being an error.
    pub fn ns_call_ok(&mut self, req: RemotingCommand) -> Result<RemotingCommand, AdminError> {
        let mut last = None;
        for addr in self.namesrv.clone() {
            let code = req.code;
            match self.call(Role::Nameserver, &addr, req.clone()) {
                Ok(resp) => return check(Role::Nameserver, &addr, code, resp),
                Err(e) => last = Some(e),
            }
        }
        Err(last.expect("at least one nameserver"))
    }

    /// Parses a JSON (or fastjson) body of a successful answer.
    pub fn body<T: serde::de::DeserializeOwned>(
        role: Role,
        addr: &str,
        request: i32,
        resp: &RemotingCommand,
    ) -> Result<T, AdminError> {
        protocol::json::from_slice(&resp.body).map_err(|e| AdminError::BadResponse {
            role,
            addr: addr.to_owned(),
            request,
            reason: e.to_string(),
        })
    }

    /// GET_ROUTEINFO_BY_TOPIC, in standard JSON.
    pub fn route(&mut self, topic: &str) -> Result<TopicRouteData, AdminError> {
        let req = RemotingCommand::request(request::GET_ROUTEINFO_BY_TOPIC).with_header(
            &GetRouteInfoRequestHeader {
                topic: topic.to_owned(),
                accept_standard_json_only: Some(true),
            },
        );
        let resp = self.ns_call_ok(req)?;
        let addr = self.namesrv[0].clone();
        Self::body(
            Role::Nameserver,
            &addr,
            request::GET_ROUTEINFO_BY_TOPIC,
            &resp,
        )
    }

    /// GET_BROKER_CLUSTER_INFO.
    pub fn cluster_info(&mut self) -> Result<ClusterInfo, AdminError> {
        let resp = self.ns_call_ok(RemotingCommand::request(request::GET_BROKER_CLUSTER_INFO))?;
        let addr = self.namesrv[0].clone();
        Self::body(
            Role::Nameserver,
            &addr,
            request::GET_BROKER_CLUSTER_INFO,
            &resp,
        )
    }

    /// The masters of a cluster, by broker name.
    pub fn cluster_masters(&mut self, cluster: &str) -> Result<Vec<BrokerTarget>, AdminError> {
        let info = self.cluster_info()?;
        let Some(names) = info.cluster_addr_table.get(cluster) else {
            return Err(AdminError::NotFound(format!(
                "cluster {cluster} not found (known: {})",
                info.cluster_addr_table
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        };
        Ok(names
            .iter()
            .filter_map(|name| {
                let data = info.broker_addr_table.get(name)?;
                Some(BrokerTarget {
                    name: name.clone(),
                    addr: data.broker_addrs.get(&MASTER_ID)?.clone(),
                })
            })
            .collect())
    }

    /// Every master the nameserver knows.
    pub fn all_masters(&mut self) -> Result<Vec<BrokerTarget>, AdminError> {
        let info = self.cluster_info()?;
        Ok(info
            .broker_addr_table
            .values()
            .filter_map(|b| {
                Some(BrokerTarget {
                    name: b.broker_name.clone(),
                    addr: b.broker_addrs.get(&MASTER_ID)?.clone(),
                })
            })
            .collect())
    }

    /// The masters a topic's route names.
    pub fn topic_masters(&mut self, topic: &str) -> Result<Vec<BrokerTarget>, AdminError> {
        let route = self.route(topic)?;
        Ok(route_masters(&route))
    }

    /// The brokers a command's `-b` / `-c` flags select.
    pub fn select(
        &mut self,
        target: &super::cli::BrokerSelectArgs,
    ) -> Result<Vec<BrokerTarget>, AdminError> {
        self.select_brokers(target.broker.as_deref(), target.cluster.as_deref())
    }

    /// The brokers `-b addr` or `-c cluster` select (exactly one of them is expected).
    pub fn select_brokers(
        &mut self,
        broker_addr: Option<&str>,
        cluster: Option<&str>,
    ) -> Result<Vec<BrokerTarget>, AdminError> {
        match (broker_addr, cluster) {
            (Some(addr), _) => {
                // The name is only for display; a broker the nameserver has not heard of
                // is still addressed.
                let name = self
                    .cluster_info()
                    .ok()
                    .and_then(|info| {
                        info.broker_addr_table
                            .values()
                            .find(|b| b.broker_addrs.values().any(|a| a == addr))
                            .map(|b| b.broker_name.clone())
                    })
                    .unwrap_or_default();
                Ok(vec![BrokerTarget {
                    name,
                    addr: addr.to_owned(),
                }])
            }
            (None, Some(cluster)) => self.cluster_masters(cluster),
            (None, None) => Err(AdminError::Usage(
                "pass a broker address (-b host:port) or a cluster name (-c name)".into(),
            )),
        }
    }

    /// GET_TOPIC_STATS_INFO on one broker: (queue, min, max, last update ms) per queue.
    pub fn topic_stats(&mut self, addr: &str, topic: &str) -> Result<Vec<QueueStats>, AdminError> {
        let req = RemotingCommand::request(request::GET_TOPIC_STATS_INFO).with_header(
            &TopicRequestHeader {
                topic: topic.to_owned(),
            },
        );
        let resp = self.call_ok(Role::Broker, addr, req)?;
        let bad = |reason: String| AdminError::BadResponse {
            role: Role::Broker,
            addr: addr.to_owned(),
            request: request::GET_TOPIC_STATS_INFO,
            reason,
        };
        parse_topic_stats(&resp.body).map_err(bad)
    }
}

/// One queue's offsets as GET_TOPIC_STATS_INFO reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueStats {
    pub queue: protocol::body::MessageQueue,
    pub min_offset: i64,
    pub max_offset: i64,
    pub last_update_ms: i64,
}

/// Reads a `TopicStatsTable` body (`{"offsetTable":{<MessageQueue>:{minOffset,...}}}`).
pub fn parse_topic_stats(body: &[u8]) -> Result<Vec<QueueStats>, String> {
    let value = super::fastjson::parse(body).map_err(|e| e.to_string())?;
    let table = match value.get("offsetTable") {
        Some(serde_json::Value::Object(t)) => t,
        None | Some(serde_json::Value::Null) => return Ok(Vec::new()),
        Some(_) => return Err("offsetTable is not an object".into()),
    };
    let mut out = Vec::with_capacity(table.len());
    for (key, v) in table {
        let queue = super::fastjson::key_object(key)
            .ok_or_else(|| format!("offsetTable key is not a MessageQueue: {key}"))?;
        out.push(QueueStats {
            queue,
            min_offset: v["minOffset"].as_i64().unwrap_or(0),
            max_offset: v["maxOffset"].as_i64().unwrap_or(0),
            last_update_ms: v["lastUpdateTimestamp"].as_i64().unwrap_or(0),
        });
    }
    out.sort_by(|a, b| a.queue.cmp(&b.queue));
    Ok(out)
}

/// The masters of every broker group in a route.
pub fn route_masters(route: &TopicRouteData) -> Vec<BrokerTarget> {
    let mut out: Vec<BrokerTarget> = route
        .broker_datas
        .iter()
        .filter_map(|b| {
            Some(BrokerTarget {
                name: b.broker_name.clone(),
                addr: b.broker_addrs.get(&MASTER_ID)?.clone(),
            })
        })
        .collect();
    out.sort();
    out
}

fn check(
    role: Role,
    addr: &str,
    request: i32,
    resp: RemotingCommand,
) -> Result<RemotingCommand, AdminError> {
    if resp.code == response::SUCCESS {
        Ok(resp)
    } else {
        Err(AdminError::Server {
            role,
            addr: addr.to_owned(),
            request,
            code: resp.code,
            remark: resp.remark,
        })
    }
}
