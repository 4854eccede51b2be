//! What every producer and consumer shares (Java's `MQClientInstance`): nameserver
//! addresses, topic routes, broker connections, heartbeats, and the requests brokers
//! send to clients. Each producer or consumer owns one instance (its own connections).

use crate::error::{ClientError, Result};
use crate::message::MessageQueue;
use crate::net::{success, Connection, Pool, RequestHandler};
use protocol::body::{ConsumerData, HeartbeatData, ProducerData, TopicRouteData, MASTER_ID};
use protocol::code::{request, response};
use protocol::header::{GetRouteInfoRequestHeader, UnregisterClientRequestHeader};
use protocol::message::perm;
use protocol::RemotingCommand;
use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

/// The topic whose route stands in for a topic that does not exist yet: brokers that
/// allow auto-creation carry it.
pub(crate) const AUTO_CREATE_TOPIC: &str = "TBW102";
/// Queues a producer asks for when it sends to a topic that does not exist yet.
const DEFAULT_TOPIC_QUEUE_NUMS: i32 = 4;

/// Where and how a client reaches the cluster.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Nameserver addresses (`host:port`). Empty: `NAMESRV_ADDR`, then
    /// [`Self::namesrv_http`].
    pub namesrv_addrs: Vec<String>,
    /// An HTTP address server answering `host:port;host:port` (RocketMQ's
    /// `rocketmq.namesrv.domain` endpoint), polled every two minutes.
    pub namesrv_http: Option<String>,
    /// Distinguishes clients in one process; part of the client id. Default: pid and a
    /// start timestamp, as Java does for `DEFAULT`.
    pub instance_name: String,
    /// The address brokers know this client by. Default: the local address that routes
    /// to the first nameserver.
    pub client_ip: Option<IpAddr>,
    /// Deadline of one request (a send, an offset query, ...).
    pub request_timeout: Duration,
    pub connect_timeout: Duration,
    /// How often routes are refreshed from the nameserver (`pollNameServerInterval`).
    pub route_refresh: Duration,
    /// How often brokers hear from this client (`heartbeatBrokerInterval`).
    pub heartbeat_interval: Duration,
}

impl Default for ClientConfig {
    fn default() -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        Self {
            namesrv_addrs: Vec::new(),
            namesrv_http: None,
            instance_name: format!("{}#{}", std::process::id(), nanos),
            client_ip: None,
            request_timeout: Duration::from_secs(3),
            connect_timeout: Duration::from_secs(3),
            route_refresh: Duration::from_secs(30),
            heartbeat_interval: Duration::from_secs(30),
        }
    }
}

impl ClientConfig {
    /// Nameservers as RocketMQ writes them: `host:port;host:port`.
    pub fn new(namesrv: &str) -> Self {
        Self {
            namesrv_addrs: split_addrs(namesrv),
            ..Self::default()
        }
    }

    /// The nameserver list to use: configured, else `NAMESRV_ADDR`, else fetched.
    async fn resolve_namesrv(&self) -> Result<Vec<String>> {
        if !self.namesrv_addrs.is_empty() {
            return Ok(self.namesrv_addrs.clone());
        }
        if let Ok(env) = std::env::var("NAMESRV_ADDR") {
            let addrs = split_addrs(&env);
            if !addrs.is_empty() {
                return Ok(addrs);
            }
        }
        match &self.namesrv_http {
            Some(url) => fetch_addrs(url, self.connect_timeout).await,
            None => Err(ClientError::NoNameserver),
        }
    }
}

fn split_addrs(s: &str) -> Vec<String> {
    s.split(';')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(str::to_owned)
        .collect()
}

async fn fetch_addrs(url: &str, timeout: Duration) -> Result<Vec<String>> {
    let url = url.to_owned();
    tokio::task::spawn_blocking(move || crate::addrsrv::fetch(&url, timeout))
        .await
        .map_err(|e| ClientError::Config(format!("address server fetch: {e}")))?
        .map_err(|e| ClientError::Config(e.to_string()))
}

/// A topic's route with the queues worked out.
#[derive(Debug, Clone, Default)]
pub(crate) struct TopicRoute {
    pub data: TopicRouteData,
    /// Writable queues, broker by broker (Java's `TopicPublishInfo`).
    pub publish: Vec<MessageQueue>,
    /// Readable queues, sorted (the rebalance input).
    pub subscribe: Vec<MessageQueue>,
}

impl TopicRoute {
    pub(crate) fn new(topic: &str, data: TopicRouteData) -> Self {
        let mut queue_datas = data.queue_datas.clone();
        queue_datas.sort();
        let mut publish = Vec::new();
        let mut subscribe = Vec::new();
        for qd in &queue_datas {
            let has_master = data.broker_datas.iter().any(|b| {
                b.broker_name == qd.broker_name && b.broker_addrs.contains_key(&MASTER_ID)
            });
            if perm::is_writeable(qd.perm) && has_master {
                publish.extend((0..qd.write_queue_nums).map(|id| MessageQueue {
                    topic: topic.to_owned(),
                    broker_name: qd.broker_name.clone(),
                    queue_id: id,
                }));
            }
            if perm::is_readable(qd.perm) {
                subscribe.extend((0..qd.read_queue_nums).map(|id| MessageQueue {
                    topic: topic.to_owned(),
                    broker_name: qd.broker_name.clone(),
                    queue_id: id,
                }));
            }
        }
        subscribe.sort();
        Self {
            data,
            publish,
            subscribe,
        }
    }

    /// Every broker group's master address.
    pub(crate) fn masters(&self) -> impl Iterator<Item = &String> {
        self.data
            .broker_datas
            .iter()
            .filter_map(|b| b.broker_addrs.get(&MASTER_ID))
    }

    /// The master's address of a broker group.
    pub(crate) fn master(&self, broker_name: &str) -> Option<&str> {
        self.data
            .broker_datas
            .iter()
            .find(|b| b.broker_name == broker_name)
            .and_then(|b| b.broker_addrs.get(&MASTER_ID))
            .map(String::as_str)
    }
}

/// What a consumer tells the instance.
pub(crate) trait ConsumerHook: Send + Sync {
    fn consumer_data(&self) -> ConsumerData;
    /// A broker said the group's membership changed.
    fn rebalance_soon(&self);
}

/// Answers a broker's CHECK_TRANSACTION_STATE for a producer group.
pub(crate) type CheckHandler = Arc<dyn Fn(Arc<Connection>, RemotingCommand) + Send + Sync>;

pub(crate) struct ClientInstance {
    pub config: ClientConfig,
    pub client_id: String,
    pub client_ip: IpAddr,
    pub pool: Pool,
    namesrv: RwLock<Vec<String>>,
    namesrv_next: AtomicUsize,
    routes: Mutex<HashMap<String, Arc<TopicRoute>>>,
    producers: Mutex<BTreeSet<String>>,
    checkers: Mutex<HashMap<String, CheckHandler>>,
    consumers: Mutex<HashMap<String, Weak<dyn ConsumerHook>>>,
    /// Brokers that had a heartbeat.
    greeted: Mutex<BTreeSet<String>>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl std::fmt::Debug for ClientInstance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientInstance")
            .field("client_id", &self.client_id)
            .finish()
    }
}

impl ClientInstance {
    /// Resolves the nameservers and starts route refresh and heartbeats.
    pub(crate) async fn start(config: ClientConfig) -> Result<Arc<Self>> {
        let namesrv = config.resolve_namesrv().await?;
        let client_ip = config
            .client_ip
            .unwrap_or_else(|| local_ip_towards(&namesrv[0]));
        let client_id = format!("{client_ip}@{}", config.instance_name);
        let instance = Arc::new_cyclic(|me: &Weak<ClientInstance>| {
            let me = me.clone();
            let handler: RequestHandler = Arc::new(move |conn, cmd| {
                if let Some(instance) = me.upgrade() {
                    instance.on_request(conn, cmd);
                }
            });
            ClientInstance {
                pool: Pool::new(Some(handler), config.connect_timeout),
                config,
                client_id,
                client_ip,
                namesrv: RwLock::new(namesrv),
                namesrv_next: AtomicUsize::new(0),
                routes: Mutex::default(),
                producers: Mutex::default(),
                checkers: Mutex::default(),
                consumers: Mutex::default(),
                greeted: Mutex::default(),
                tasks: Mutex::default(),
            }
        });
        let weak = Arc::downgrade(&instance);
        let (refresh, heartbeat) = (
            instance.config.route_refresh,
            instance.config.heartbeat_interval,
        );
        let poll_http =
            instance.config.namesrv_http.is_some() && instance.config.namesrv_addrs.is_empty();
        let task = tokio::spawn(async move {
            let mut routes = tokio::time::interval(refresh);
            let mut beats = tokio::time::interval(heartbeat);
            let mut http = tokio::time::interval(Duration::from_secs(120));
            routes.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            beats.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = routes.tick() => {
                        let Some(me) = weak.upgrade() else { return };
                        me.refresh_routes().await;
                    }
                    _ = beats.tick() => {
                        let Some(me) = weak.upgrade() else { return };
                        me.heartbeat().await;
                    }
                    _ = http.tick(), if poll_http => {
                        let Some(me) = weak.upgrade() else { return };
                        if let Some(url) = &me.config.namesrv_http {
                            match fetch_addrs(url, me.config.connect_timeout).await {
                                Ok(addrs) => *me.namesrv.write().expect("namesrv lock") = addrs,
                                Err(e) => tracing::warn!(error = %e, "nameserver address refresh failed"),
                            }
                        }
                    }
                }
            }
        });
        instance.tasks.lock().expect("tasks lock").push(task);
        Ok(instance)
    }

    /// Sends a request to a nameserver, trying the next one when one is unreachable.
    pub(crate) async fn namesrv_call(&self, cmd: RemotingCommand) -> Result<RemotingCommand> {
        let addrs = self.namesrv.read().expect("namesrv lock").clone();
        let start = self.namesrv_next.load(Ordering::Relaxed);
        let mut last = ClientError::NoNameserver;
        for i in 0..addrs.len() {
            let k = (start + i) % addrs.len();
            let conn = match self.pool.get(&addrs[k]).await {
                Ok(c) => c,
                Err(e) => {
                    last = e;
                    continue;
                }
            };
            match conn.invoke(cmd.clone(), self.config.request_timeout).await {
                Ok(answer) => {
                    self.namesrv_next.store(k, Ordering::Relaxed);
                    return Ok(answer);
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// Asks the nameserver for a topic's route; `None` when the topic does not exist.
    pub(crate) async fn fetch_route(&self, topic: &str) -> Result<Option<TopicRouteData>> {
        let cmd = RemotingCommand::request(request::GET_ROUTEINFO_BY_TOPIC).with_header(
            &GetRouteInfoRequestHeader {
                topic: topic.to_owned(),
                accept_standard_json_only: Some(true),
            },
        );
        let answer = self.namesrv_call(cmd).await?;
        if answer.code == response::TOPIC_NOT_EXIST {
            return Ok(None);
        }
        let answer = success("nameserver", answer)?;
        let data: TopicRouteData =
            protocol::json::from_slice(&answer.body).map_err(|e| ClientError::BadAnswer {
                addr: "nameserver".into(),
                message: format!("route of {topic}: {e}"),
            })?;
        Ok(Some(data))
    }

    /// The cached route of a topic, fetched on first use.
    pub(crate) async fn route(&self, topic: &str) -> Result<Arc<TopicRoute>> {
        if let Some(route) = self.routes.lock().expect("routes lock").get(topic) {
            return Ok(route.clone());
        }
        self.update_route(topic).await
    }

    /// Fetches a topic's route now and caches it.
    pub(crate) async fn update_route(&self, topic: &str) -> Result<Arc<TopicRoute>> {
        let data = self
            .fetch_route(topic)
            .await?
            .ok_or_else(|| ClientError::NoRoute {
                topic: topic.to_owned(),
                reason: "the nameserver does not know it".into(),
            })?;
        let route = Arc::new(TopicRoute::new(topic, data));
        self.routes
            .lock()
            .expect("routes lock")
            .insert(topic.to_owned(), route.clone());
        // A broker new to this client hears its groups at once, as Java does after a
        // route change: a consumer absent from the broker's member list would get no
        // queues until the next periodic heartbeat.
        let new: BTreeSet<String> = {
            let greeted = self.greeted.lock().expect("greeted lock");
            route
                .masters()
                .filter(|a| !greeted.contains(*a))
                .cloned()
                .collect()
        };
        if !new.is_empty() {
            self.heartbeat_to(new).await;
        }
        Ok(route)
    }

    /// A producer's route: the topic's own, or, while it does not exist, the auto-create
    /// topic's brokers with [`DEFAULT_TOPIC_QUEUE_NUMS`] queues (the broker creates the
    /// topic on the first send).
    pub(crate) async fn publish_route(&self, topic: &str) -> Result<Arc<TopicRoute>> {
        match self.route(topic).await {
            Ok(route) if !route.publish.is_empty() => return Ok(route),
            Ok(_) | Err(ClientError::NoRoute { .. }) => {}
            Err(e) => return Err(e),
        }
        let Some(mut template) = self.fetch_route(AUTO_CREATE_TOPIC).await? else {
            return Err(ClientError::NoRoute {
                topic: topic.to_owned(),
                reason: format!("it does not exist and no broker auto-creates ({AUTO_CREATE_TOPIC} has no route)"),
            });
        };
        for qd in &mut template.queue_datas {
            qd.read_queue_nums = qd.read_queue_nums.min(DEFAULT_TOPIC_QUEUE_NUMS);
            qd.write_queue_nums = qd.write_queue_nums.min(DEFAULT_TOPIC_QUEUE_NUMS);
        }
        // Not cached: the next refresh finds the real route once the topic exists.
        Ok(Arc::new(TopicRoute::new(topic, template)))
    }

    /// The master address of a broker group, from any cached route.
    pub(crate) fn broker_addr(&self, broker_name: &str) -> Option<String> {
        self.routes
            .lock()
            .expect("routes lock")
            .values()
            .find_map(|r| r.master(broker_name).map(str::to_owned))
    }

    /// The master address of a broker group, refreshing `topic`'s route if needed.
    pub(crate) async fn find_broker(&self, broker_name: &str, topic: &str) -> Result<String> {
        if let Some(addr) = self.broker_addr(broker_name) {
            return Ok(addr);
        }
        let route = self.update_route(topic).await?;
        route
            .master(broker_name)
            .map(str::to_owned)
            .ok_or_else(|| ClientError::NoRoute {
                topic: topic.to_owned(),
                reason: format!("broker {broker_name} has no master"),
            })
    }

    /// Every master address in the cached routes.
    pub(crate) fn all_masters(&self) -> BTreeSet<String> {
        self.routes
            .lock()
            .expect("routes lock")
            .values()
            .flat_map(|r| r.masters().cloned())
            .collect()
    }

    /// Every broker this client talks to: the masters of its routes, and those it sent
    /// to through a route it did not keep (a topic created by its first send).
    fn known_brokers(&self) -> BTreeSet<String> {
        let mut addrs = self.all_masters();
        addrs.extend(self.greeted.lock().expect("greeted lock").iter().cloned());
        addrs
    }

    pub(crate) async fn call(&self, addr: &str, cmd: RemotingCommand) -> Result<RemotingCommand> {
        self.pool.call(addr, cmd, self.config.request_timeout).await
    }

    async fn refresh_routes(&self) {
        let topics: Vec<String> = self
            .routes
            .lock()
            .expect("routes lock")
            .keys()
            .cloned()
            .collect();
        for topic in topics {
            if let Err(e) = self.update_route(&topic).await {
                tracing::debug!(topic, error = %e, "route refresh failed");
            }
        }
    }

    pub(crate) fn add_producer(&self, group: &str, checker: Option<CheckHandler>) {
        self.producers
            .lock()
            .expect("producers lock")
            .insert(group.to_owned());
        if let Some(checker) = checker {
            self.checkers
                .lock()
                .expect("checkers lock")
                .insert(group.to_owned(), checker);
        }
    }

    pub(crate) fn add_consumer(&self, group: &str, hook: Weak<dyn ConsumerHook>) {
        self.consumers
            .lock()
            .expect("consumers lock")
            .insert(group.to_owned(), hook);
    }

    /// HEART_BEAT with every producer and consumer group to every known master.
    pub(crate) async fn heartbeat(&self) {
        self.heartbeat_to(self.known_brokers()).await;
    }

    /// Makes sure `addr` has heard this client's groups before anything else is sent
    /// to it (a broker checks transactions back with producers it knows).
    pub(crate) async fn ensure_heartbeat(&self, addr: &str) {
        if self.greeted.lock().expect("greeted lock").contains(addr) {
            return;
        }
        self.heartbeat_to(BTreeSet::from([addr.to_owned()])).await;
    }

    async fn heartbeat_to(&self, addrs: BTreeSet<String>) {
        let data = HeartbeatData {
            client_id: self.client_id.clone(),
            producer_data_set: self
                .producers
                .lock()
                .expect("producers lock")
                .iter()
                .map(|g| ProducerData {
                    group_name: g.clone(),
                })
                .collect(),
            consumer_data_set: self
                .consumers
                .lock()
                .expect("consumers lock")
                .values()
                .filter_map(Weak::upgrade)
                .map(|c| c.consumer_data())
                .collect(),
            heartbeat_fingerprint: None,
            without_sub: None,
        };
        if data.producer_data_set.is_empty() && data.consumer_data_set.is_empty() {
            return;
        }
        let body = serde_json::to_vec(&data).expect("heartbeat data serializes");
        for addr in addrs {
            let cmd = RemotingCommand::request(request::HEART_BEAT).with_body(body.clone());
            match self.call(&addr, cmd).await {
                Ok(_) => {
                    self.greeted.lock().expect("greeted lock").insert(addr);
                }
                Err(e) => tracing::warn!(broker = addr, error = %e, "heartbeat failed"),
            }
        }
    }

    /// A request a broker sent us.
    fn on_request(&self, conn: Arc<Connection>, cmd: RemotingCommand) {
        match cmd.code {
            request::CHECK_TRANSACTION_STATE => {
                let group = MessageGroup::of_check(&cmd);
                let checker = group.and_then(|g| {
                    self.checkers
                        .lock()
                        .expect("checkers lock")
                        .get(&g)
                        .cloned()
                });
                match checker {
                    Some(check) => check(conn, cmd),
                    None => tracing::warn!("transaction check for a group without a listener"),
                }
            }
            request::NOTIFY_CONSUMER_IDS_CHANGED => {
                let hooks: Vec<Arc<dyn ConsumerHook>> = self
                    .consumers
                    .lock()
                    .expect("consumers lock")
                    .values()
                    .filter_map(Weak::upgrade)
                    .collect();
                for hook in hooks {
                    hook.rebalance_soon();
                }
            }
            code => {
                if cmd.is_oneway() {
                    return;
                }
                let answer = cmd.error_response(
                    response::REQUEST_CODE_NOT_SUPPORTED,
                    format!("request code {code} is not supported by this client"),
                );
                tokio::spawn(async move {
                    let _ = conn.answer(answer).await;
                });
            }
        }
    }

    /// UNREGISTER_CLIENT for every group, then closes connections and stops tasks.
    pub(crate) async fn shutdown(&self) {
        for task in self.tasks.lock().expect("tasks lock").drain(..) {
            task.abort();
        }
        let producers: Vec<String> = self
            .producers
            .lock()
            .expect("producers lock")
            .iter()
            .cloned()
            .collect();
        let consumers: Vec<String> = self
            .consumers
            .lock()
            .expect("consumers lock")
            .keys()
            .cloned()
            .collect();
        for addr in self.known_brokers() {
            let groups = producers
                .iter()
                .map(|g| (Some(g.clone()), None))
                .chain(consumers.iter().map(|g| (None, Some(g.clone()))));
            for (producer_group, consumer_group) in groups {
                let cmd = RemotingCommand::request(request::UNREGISTER_CLIENT).with_header(
                    &UnregisterClientRequestHeader {
                        client_id: self.client_id.clone(),
                        producer_group,
                        consumer_group,
                    },
                );
                if let Err(e) = self.call(&addr, cmd).await {
                    tracing::debug!(broker = addr, error = %e, "unregister failed");
                }
            }
        }
        self.pool.close_all();
    }
}

/// The producer group a transaction check is for: the half message's `PGROUP`.
struct MessageGroup;

impl MessageGroup {
    fn of_check(cmd: &RemotingCommand) -> Option<String> {
        let msgs = crate::message::MessageExt::decode_all(&cmd.body, "").ok()?;
        msgs.first()?
            .property(protocol::message::property::PRODUCER_GROUP)
            .map(str::to_owned)
    }
}

/// The local address the OS would use to reach `addr` (no packet is sent).
fn local_ip_towards(addr: &str) -> IpAddr {
    let fallback = IpAddr::from([127, 0, 0, 1]);
    let Ok(socket) = std::net::UdpSocket::bind("0.0.0.0:0") else {
        return fallback;
    };
    if socket.connect(addr).is_err() {
        return fallback;
    }
    socket.local_addr().map_or(fallback, |a| a.ip())
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::body::{BrokerData, QueueData};

    #[test]
    fn route_queues_follow_permissions_and_masters() {
        let qd = |name: &str, perm: i32| QueueData {
            broker_name: name.into(),
            read_queue_nums: 2,
            write_queue_nums: 3,
            perm,
            topic_sys_flag: 0,
        };
        let bd = |name: &str, ids: &[i64]| BrokerData {
            cluster: "c".into(),
            broker_name: name.into(),
            broker_addrs: ids.iter().map(|i| (*i, format!("{name}:{i}"))).collect(),
            zone_name: None,
            enable_acting_master: false,
        };
        let data = TopicRouteData {
            queue_datas: vec![qd("b", 6), qd("a", 6), qd("ro", 4), qd("slaveonly", 6)],
            broker_datas: vec![
                bd("a", &[0]),
                bd("b", &[0, 1]),
                bd("ro", &[0]),
                bd("slaveonly", &[1]),
            ],
            ..TopicRouteData::default()
        };
        let route = TopicRoute::new("T", data);
        let publish: Vec<(&str, i32)> = route
            .publish
            .iter()
            .map(|q| (q.broker_name.as_str(), q.queue_id))
            .collect();
        assert_eq!(
            publish,
            vec![("a", 0), ("a", 1), ("a", 2), ("b", 0), ("b", 1), ("b", 2)]
        );
        assert_eq!(route.subscribe.len(), 8); // read-only and slave-only brokers still serve reads
        assert_eq!(route.master("b"), Some("b:0"));
        assert_eq!(route.master("slaveonly"), None);
    }

    #[test]
    fn nameserver_lists_split_like_rocketmq() {
        assert_eq!(split_addrs(" a:1; b:2;;"), vec!["a:1", "b:2"]);
        assert!(split_addrs("").is_empty());
    }
}
