//! Request dispatch: one remoting command in, at most one response out. No I/O except
//! the KV file; the server feeds it and writes what it returns.

use bytes::Bytes;
use protocol::body::{
    self, BrokerMemberGroup, DataVersion, GetBrokerMemberGroupResponseBody, KvTable,
    RegisterBrokerBody, TopicList, TopicRouteData, BROKER_ADDRS_FIELDS,
};
use protocol::code::{request, response};
use protocol::header::*;
use protocol::json::{self, JsonStyle};
use protocol::{HeaderError, RemotingCommand};
use serde::Serialize;

use crate::config::{NamesrvConfig, UpdateError};
use crate::kv::KvConfig;
use crate::route::{BrokerIdentity, ConnId, RegisterError, Registration, RouteTable};

/// The KV namespace holding `topic → "broker:queues;..."` for ordered topics.
pub const ORDER_TOPIC_CONFIG: &str = "ORDER_TOPIC_CONFIG";
/// `MQVersion.Version.V3_0_11.ordinal()`: older brokers send a bare wrapper body.
const V3_0_11: i32 = 37;

/// The nameserver's state and request handling.
#[derive(Debug)]
pub struct NameServer {
    pub config: NamesrvConfig,
    pub routes: RouteTable,
    pub kv: KvConfig,
}

/// Why a request failed; becomes a response code and remark.
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error("{0}")]
    Header(#[from] HeaderError),
    #[error("{0}")]
    Body(#[from] json::JsonError),
    #[error("{0}")]
    Kv(#[from] crate::kv::KvError),
    #[error("{remark}")]
    Code { code: i32, remark: String },
}

impl Failure {
    fn code(&self) -> i32 {
        match self {
            Failure::Code { code, .. } => *code,
            _ => response::SYSTEM_ERROR,
        }
    }
}

fn fail(code: i32, remark: impl Into<String>) -> Failure {
    Failure::Code {
        code,
        remark: remark.into(),
    }
}

impl NameServer {
    pub fn new(config: NamesrvConfig, kv: KvConfig) -> Self {
        Self {
            config,
            routes: RouteTable::new(),
            kv,
        }
    }

    /// Handles one request. `None` for oneway requests (their errors are only logged).
    pub fn handle(
        &mut self,
        req: &RemotingCommand,
        conn: ConnId,
        now_ms: u64,
    ) -> Option<RemotingCommand> {
        let result = self.dispatch(req, conn, now_ms);
        let response = match result {
            Ok(response) => response,
            Err(failure) => {
                tracing::debug!(code = req.code, opaque = req.opaque, error = %failure, "request failed");
                req.error_response(failure.code(), failure.to_string())
            }
        };
        (!req.is_oneway()).then_some(response)
    }

    fn dispatch(
        &mut self,
        req: &RemotingCommand,
        conn: ConnId,
        now_ms: u64,
    ) -> Result<RemotingCommand, Failure> {
        let ok = || req.response(response::SUCCESS);
        match req.code {
            request::PUT_KV_CONFIG => {
                let h: PutKvConfigRequestHeader = req.header()?;
                self.kv.put(&h.namespace, &h.key, &h.value)?;
                Ok(ok())
            }
            request::GET_KV_CONFIG => {
                let h: KvConfigKeyRequestHeader = req.header()?;
                match self.kv.get(&h.namespace, &h.key) {
                    Some(value) => Ok(ok().with_header(&GetKvConfigResponseHeader {
                        value: Some(value.to_owned()),
                    })),
                    None => Err(fail(
                        response::QUERY_NOT_FOUND,
                        format!("No config item, Namespace: {} Key: {}", h.namespace, h.key),
                    )),
                }
            }
            request::DELETE_KV_CONFIG => {
                let h: KvConfigKeyRequestHeader = req.header()?;
                self.kv.delete(&h.namespace, &h.key)?;
                Ok(ok())
            }
            request::GET_KVLIST_BY_NAMESPACE => {
                let h: GetKvListByNamespaceRequestHeader = req.header()?;
                match self.kv.namespace(&h.namespace) {
                    Some(table) => Ok(ok().with_body(standard(&KvTable {
                        table: table.clone(),
                    }))),
                    None => Err(fail(
                        response::QUERY_NOT_FOUND,
                        format!("No config item, Namespace: {}", h.namespace),
                    )),
                }
            }
            request::REGISTER_BROKER => self.register_broker(req, conn, now_ms),
            request::UNREGISTER_BROKER => {
                let h: BrokerIdentityRequestHeader = req.header()?;
                let broker = BrokerIdentity {
                    cluster: h.cluster_name,
                    broker_addr: h.broker_addr,
                    broker_name: h.broker_name,
                    broker_id: h.broker_id,
                };
                tracing::info!(broker = %broker.broker_addr, name = %broker.broker_name, "broker unregistered");
                self.routes.unregister(&[broker]);
                Ok(ok())
            }
            request::GET_ROUTEINFO_BY_TOPIC => self.route_info(req),
            request::GET_BROKER_CLUSTER_INFO => {
                // RocketMQ answers this one in fastjson's dialect whatever the client's version;
                // clients that know standard JSON get it, as they do for routes.
                let style = JsonStyle::for_client(req.version, false);
                Ok(ok().with_body(json::to_vec(
                    &self.routes.cluster_info(),
                    style,
                    BROKER_ADDRS_FIELDS,
                )))
            }
            request::WIPE_WRITE_PERM_OF_BROKER => {
                let h: BrokerNameRequestHeader = req.header()?;
                let count = self.routes.wipe_write_perm(&h.broker_name);
                tracing::info!(broker = %h.broker_name, topics = count, "write permission wiped");
                Ok(ok().with_header(&WipeWritePermOfBrokerResponseHeader {
                    wipe_topic_count: count,
                }))
            }
            request::ADD_WRITE_PERM_OF_BROKER => {
                let h: BrokerNameRequestHeader = req.header()?;
                let count = self.routes.add_write_perm(&h.broker_name);
                tracing::info!(broker = %h.broker_name, topics = count, "write permission added");
                Ok(ok().with_header(&AddWritePermOfBrokerResponseHeader {
                    add_topic_count: count,
                }))
            }
            request::GET_ALL_TOPIC_LIST_FROM_NAMESERVER => {
                if !self.config.enable_all_topic_list {
                    return Err(fail(response::SYSTEM_ERROR, "disable"));
                }
                Ok(ok().with_body(standard(&self.routes.all_topics())))
            }
            request::GET_TOPICS_BY_CLUSTER => {
                let h: GetTopicsByClusterRequestHeader = req.header()?;
                self.topic_list(req, |r| r.topics_of_cluster(&h.cluster))
            }
            request::GET_SYSTEM_TOPIC_LIST_FROM_NS => {
                Ok(ok().with_body(standard(&self.routes.system_topics())))
            }
            request::GET_UNIT_TOPIC_LIST => self.topic_list(req, RouteTable::unit_topics),
            request::GET_HAS_UNIT_SUB_TOPIC_LIST => {
                self.topic_list(req, RouteTable::unit_sub_topics)
            }
            request::GET_HAS_UNIT_SUB_UNUNIT_TOPIC_LIST => {
                self.topic_list(req, RouteTable::unit_sub_ununit_topics)
            }
            request::DELETE_TOPIC_IN_NAMESRV => {
                let h: DeleteTopicFromNamesrvRequestHeader = req.header()?;
                self.routes
                    .delete_topic(&h.topic, h.cluster_name.as_deref());
                Ok(ok())
            }
            request::REGISTER_TOPIC_IN_NAMESRV => {
                let h: TopicRequestHeader = req.header()?;
                if !req.body.is_empty() {
                    let route: TopicRouteData = json::from_slice(&req.body)?;
                    self.routes.register_topic(&h.topic, route.queue_datas);
                }
                Ok(ok())
            }
            request::UPDATE_NAMESRV_CONFIG => {
                if req.body.is_empty() {
                    return Ok(ok());
                }
                let text = std::str::from_utf8(&req.body)
                    .map_err(|_| fail(response::SYSTEM_ERROR, "string2Properties error"))?;
                match self.config.update(&body::parse_properties(text)) {
                    Ok(()) => Ok(ok()),
                    Err(e @ UpdateError::BlackListed { .. }) => {
                        Err(fail(response::NO_PERMISSION, e.to_string()))
                    }
                    Err(e) => Err(fail(response::SYSTEM_ERROR, e.to_string())),
                }
            }
            request::GET_NAMESRV_CONFIG => {
                Ok(ok()
                    .with_body(body::format_properties(&self.config.to_properties()).into_bytes()))
            }
            request::QUERY_DATA_VERSION => {
                let h: BrokerIdentityRequestHeader = req.header()?;
                let version: DataVersion = json::from_slice(&req.body)?;
                let (changed, stored) =
                    self.routes
                        .data_version_changed(&h.cluster_name, &h.broker_addr, &version);
                self.routes.touch(&h.cluster_name, &h.broker_addr, now_ms);
                let mut resp = ok().with_header(&QueryDataVersionResponseHeader { changed });
                if let Some(stored) = stored {
                    resp = resp.with_body(standard(&stored));
                }
                Ok(resp)
            }
            request::BROKER_HEARTBEAT => {
                let h: BrokerHeartbeatRequestHeader = req.header()?;
                self.routes.touch(&h.cluster_name, &h.broker_addr, now_ms);
                Ok(ok())
            }
            request::GET_BROKER_MEMBER_GROUP => {
                let h: GetBrokerMemberGroupRequestHeader = req.header()?;
                let group = GetBrokerMemberGroupResponseBody {
                    broker_member_group: BrokerMemberGroup {
                        broker_addrs: self.routes.member_addrs(&h.broker_name),
                        cluster: h.cluster_name,
                        broker_name: h.broker_name,
                    },
                };
                let style = JsonStyle::for_client(req.version, false);
                Ok(ok().with_body(json::to_vec(&group, style, BROKER_ADDRS_FIELDS)))
            }
            code => Err(fail(
                response::REQUEST_CODE_NOT_SUPPORTED,
                format!(" request type {code} not supported"),
            )),
        }
    }

    fn topic_list(
        &self,
        req: &RemotingCommand,
        f: impl FnOnce(&RouteTable) -> TopicList,
    ) -> Result<RemotingCommand, Failure> {
        if !self.config.enable_topic_list {
            return Err(fail(response::SYSTEM_ERROR, "disable"));
        }
        Ok(req
            .response(response::SUCCESS)
            .with_body(standard(&f(&self.routes))))
    }

    fn route_info(&self, req: &RemotingCommand) -> Result<RemotingCommand, Failure> {
        let h: GetRouteInfoRequestHeader = req.header()?;
        let Some(mut route) = self.routes.route(&h.topic) else {
            return Err(fail(
                response::TOPIC_NOT_EXIST,
                format!(
                    "No topic route info in name server for the topic: {}\nSee https://rocketmq.apache.org/docs/bestPractice/06FAQ for further details.",
                    h.topic
                ),
            ));
        };
        if self.config.order_message_enable {
            route.order_topic_conf = self.kv.get(ORDER_TOPIC_CONFIG, &h.topic).map(str::to_owned);
        }
        let style =
            JsonStyle::for_client(req.version, h.accept_standard_json_only.unwrap_or(false));
        Ok(req.response(response::SUCCESS).with_body(json::to_vec(
            &route,
            style,
            BROKER_ADDRS_FIELDS,
        )))
    }

    fn register_broker(
        &mut self,
        req: &RemotingCommand,
        conn: ConnId,
        now_ms: u64,
    ) -> Result<RemotingCommand, Failure> {
        let h: RegisterBrokerRequestHeader = req.header()?;
        if h.body_crc32 != 0 {
            let crc = protocol::message::body_crc(&req.body);
            if crc != h.body_crc32 {
                return Err(fail(response::SYSTEM_ERROR, "crc32 not match"));
            }
        }
        if h.compressed {
            // RocketMQ brokers never set it (they send `compressed=false` even when
            // compressing), so no real broker is refused here.
            return Err(fail(
                response::SYSTEM_ERROR,
                "compressed register body is not supported",
            ));
        }
        let body: RegisterBrokerBody = if req.body.is_empty() {
            RegisterBrokerBody::default()
        } else if req.version >= V3_0_11 {
            json::from_slice(&req.body)?
        } else {
            RegisterBrokerBody {
                topic_config_serialize_wrapper: json::from_slice(&req.body)?,
                filter_server_list: vec![],
            }
        };
        let topics = body.topic_config_serialize_wrapper.topic_config_table.len();
        let registration = Registration {
            cluster: h.cluster_name,
            broker_addr: h.broker_addr,
            broker_name: h.broker_name,
            broker_id: h.broker_id,
            ha_server_addr: h.ha_server_addr,
            zone_name: req.ext_fields.get("__ZONE_NAME").map(str::to_owned),
            heartbeat_timeout_ms: h
                .heartbeat_timeout_millis
                .and_then(|t| u64::try_from(t).ok()),
            enable_acting_master: h.enable_acting_master,
            topics: body.topic_config_serialize_wrapper,
            filter_server_list: Some(body.filter_server_list),
        };
        let first = self
            .routes
            .member_addrs(&registration.broker_name)
            .get(&registration.broker_id)
            != Some(&registration.broker_addr);
        let (addr, name, id) = (
            registration.broker_addr.clone(),
            registration.broker_name.clone(),
            registration.broker_id,
        );
        let result = self
            .routes
            .register(
                registration,
                Some(conn),
                self.config.broker_expiry_ms,
                now_ms,
            )
            .map_err(|e @ RegisterError::SingleTopicBeforeFull| {
                fail(response::SYSTEM_ERROR, e.to_string())
            })?;
        if first {
            tracing::info!(broker = %addr, name = %name, id, topics, "broker registered");
        }
        let mut resp = req
            .response(response::SUCCESS)
            .with_header(&RegisterBrokerResponseHeader {
                ha_server_addr: result.ha_server_addr,
                master_addr: result.master_addr,
            });
        if self.config.return_order_topic_config_to_broker {
            if let Some(table) = self.kv.namespace(ORDER_TOPIC_CONFIG) {
                resp = resp.with_body(standard(&KvTable {
                    table: table.clone(),
                }));
            }
        }
        Ok(resp)
    }

    /// Drops brokers whose registration expired; returns how many.
    pub fn expire(&mut self, now_ms: u64) -> usize {
        let expired = self.routes.expired(now_ms);
        for b in &expired {
            tracing::warn!(broker = %b.broker_addr, name = %b.broker_name, "broker expired: no registration within its timeout");
        }
        self.routes.unregister(&expired);
        expired.len()
    }

    /// A connection closed: the brokers registered over it are gone.
    pub fn connection_closed(&mut self, conn: ConnId) {
        let gone = self.routes.registered_over(conn);
        for b in &gone {
            tracing::info!(broker = %b.broker_addr, name = %b.broker_name, "broker connection closed");
        }
        self.routes.unregister(&gone);
    }
}

fn standard<T: Serialize>(value: &T) -> Bytes {
    Bytes::from(json::to_vec(value, JsonStyle::Standard, &[]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::body::{TopicConfig, TopicConfigSerializeWrapper};

    fn server() -> NameServer {
        NameServer::new(NamesrvConfig::default(), KvConfig::in_memory())
    }

    fn register(ns: &mut NameServer, conn: ConnId, now: u64) -> RemotingCommand {
        let mut wrapper = TopicConfigSerializeWrapper::default();
        for t in ["TopicTest", "TBW102"] {
            wrapper.topic_config_table.insert(
                t.into(),
                TopicConfig {
                    topic_name: t.into(),
                    ..Default::default()
                },
            );
        }
        let body = json::to_vec(
            &RegisterBrokerBody {
                topic_config_serialize_wrapper: wrapper,
                filter_server_list: vec![],
            },
            JsonStyle::Standard,
            &[],
        );
        let h = RegisterBrokerRequestHeader {
            broker_name: "broker-a".into(),
            broker_addr: "127.0.0.1:10911".into(),
            cluster_name: "DefaultCluster".into(),
            ha_server_addr: "127.0.0.1:10912".into(),
            broker_id: 0,
            heartbeat_timeout_millis: None,
            enable_acting_master: None,
            compressed: false,
            body_crc32: protocol::message::body_crc(&body),
        };
        let req = RemotingCommand::request(request::REGISTER_BROKER)
            .with_header(&h)
            .with_body(body)
            .with_opaque(1);
        ns.handle(&req, conn, now).unwrap()
    }

    fn route(ns: &mut NameServer, topic: &str, version: i32) -> RemotingCommand {
        let mut req = RemotingCommand::request(request::GET_ROUTEINFO_BY_TOPIC).with_header(
            &GetRouteInfoRequestHeader {
                topic: topic.into(),
                accept_standard_json_only: None,
            },
        );
        req.version = version;
        ns.handle(&req, 9, 0).unwrap()
    }

    #[test]
    fn register_then_route_in_both_dialects() {
        let mut ns = server();
        assert_eq!(register(&mut ns, 1, 0).code, response::SUCCESS);
        let missing = route(&mut ns, "Nope", 479);
        assert_eq!(missing.code, response::TOPIC_NOT_EXIST);
        assert!(missing
            .remark
            .unwrap()
            .starts_with("No topic route info in name server for the topic: Nope"));
        let new = route(&mut ns, "TopicTest", 479);
        assert!(std::str::from_utf8(&new.body)
            .unwrap()
            .contains(r#""brokerAddrs":{"0":"127.0.0.1:10911"}"#));
        let old = route(&mut ns, "TopicTest", 400);
        assert!(std::str::from_utf8(&old.body)
            .unwrap()
            .contains(r#""brokerAddrs":{0:"127.0.0.1:10911"}"#));
    }

    #[test]
    fn bad_requests_get_error_codes() {
        let mut ns = server();
        let unknown = ns.handle(&RemotingCommand::request(9999), 1, 0).unwrap();
        assert_eq!(unknown.code, response::REQUEST_CODE_NOT_SUPPORTED);
        let no_topic = ns
            .handle(
                &RemotingCommand::request(request::GET_ROUTEINFO_BY_TOPIC),
                1,
                0,
            )
            .unwrap();
        assert_eq!(no_topic.code, response::SYSTEM_ERROR);
        assert_eq!(
            no_topic.remark.as_deref(),
            Some("the custom field <topic> is null")
        );
        let mut bad_crc = RemotingCommand::request(request::REGISTER_BROKER).with_body(&b"{}"[..]);
        for (k, v) in [
            ("brokerName", "b"),
            ("brokerAddr", "a:1"),
            ("clusterName", "c"),
            ("haServerAddr", ""),
            ("brokerId", "0"),
            ("bodyCrc32", "5"),
        ] {
            bad_crc.ext_fields.insert(k, v);
        }
        assert_eq!(
            ns.handle(&bad_crc, 1, 0).unwrap().remark.as_deref(),
            Some("crc32 not match")
        );
        assert!(ns
            .handle(&RemotingCommand::request(9999).with_oneway(), 1, 0)
            .is_none());
    }

    #[test]
    fn expiry_and_connection_close() {
        let mut ns = server();
        register(&mut ns, 1, 0);
        assert_eq!(ns.expire(120_000), 0);
        assert_eq!(ns.expire(120_001), 1);
        assert_eq!(
            route(&mut ns, "TopicTest", 479).code,
            response::TOPIC_NOT_EXIST
        );
        register(&mut ns, 7, 0);
        ns.connection_closed(8);
        assert_eq!(route(&mut ns, "TopicTest", 479).code, response::SUCCESS);
        ns.connection_closed(7);
        assert_eq!(
            route(&mut ns, "TopicTest", 479).code,
            response::TOPIC_NOT_EXIST
        );
    }

    #[test]
    fn kv_and_order_topic_conf() {
        let mut ns = server();
        ns.config.order_message_enable = true;
        let put = RemotingCommand::request(request::PUT_KV_CONFIG).with_header(
            &PutKvConfigRequestHeader {
                namespace: ORDER_TOPIC_CONFIG.into(),
                key: "TopicTest".into(),
                value: "broker-a:8".into(),
            },
        );
        assert_eq!(ns.handle(&put, 1, 0).unwrap().code, response::SUCCESS);
        let reg = register(&mut ns, 1, 0);
        let table: KvTable = json::from_slice(&reg.body).unwrap();
        assert_eq!(table.table["TopicTest"], "broker-a:8");
        let r: TopicRouteData = json::from_slice(&route(&mut ns, "TopicTest", 479).body).unwrap();
        assert_eq!(r.order_topic_conf.as_deref(), Some("broker-a:8"));
        let get = RemotingCommand::request(request::GET_KV_CONFIG).with_header(
            &KvConfigKeyRequestHeader {
                namespace: "x".into(),
                key: "y".into(),
            },
        );
        assert_eq!(
            ns.handle(&get, 1, 0).unwrap().code,
            response::QUERY_NOT_FOUND
        );
    }
}
