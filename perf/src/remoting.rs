//! A small blocking remoting client for the scenario runner: routes, topic creation,
//! the broker's config, and single sends and pulls to probe a restarting broker. The
//! load itself comes from `rmq_bench`, not from here.

use bytes::BytesMut;
use protocol::body::TopicRouteData;
use protocol::code::{request, response};
use protocol::header::{
    CreateTopicRequestHeader, GetRouteInfoRequestHeader, PullMessageRequestHeader,
    SendMessageRequestHeaderV2,
};
use protocol::{FrameDecoder, RemotingCommand};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{addr}: {source}")]
    Io {
        addr: String,
        source: std::io::Error,
    },
    #[error("{addr}: {what}")]
    Protocol { addr: String, what: String },
    #[error("{addr}: {request} answered code {code} ({remark})")]
    Refused {
        addr: String,
        request: &'static str,
        code: i32,
        remark: String,
    },
}

/// One blocking connection, one request at a time.
pub struct Conn {
    addr: String,
    stream: TcpStream,
    buf: BytesMut,
    decoder: FrameDecoder,
    opaque: i32,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn").field("addr", &self.addr).finish()
    }
}

impl Conn {
    pub fn connect(addr: &str, timeout: Duration) -> Result<Self, ClientError> {
        let io = |source| ClientError::Io {
            addr: addr.to_owned(),
            source,
        };
        let sock: SocketAddr =
            addr.to_socket_addrs()
                .map_err(io)?
                .next()
                .ok_or_else(|| ClientError::Protocol {
                    addr: addr.to_owned(),
                    what: "no address".into(),
                })?;
        let stream = TcpStream::connect_timeout(&sock, timeout).map_err(io)?;
        stream.set_read_timeout(Some(timeout)).map_err(io)?;
        stream.set_write_timeout(Some(timeout)).map_err(io)?;
        let _ = stream.set_nodelay(true);
        Ok(Self {
            addr: addr.to_owned(),
            stream,
            buf: BytesMut::new(),
            decoder: FrameDecoder::default(),
            opaque: 0,
        })
    }

    pub fn call(&mut self, mut cmd: RemotingCommand) -> Result<RemotingCommand, ClientError> {
        self.opaque += 1;
        cmd.opaque = self.opaque;
        let frame = cmd.encode().map_err(|e| self.protocol(e.to_string()))?;
        self.stream
            .write_all(&frame)
            .map_err(|source| ClientError::Io {
                addr: self.addr.clone(),
                source,
            })?;
        let mut tmp = vec![0u8; 1 << 16];
        loop {
            match self.decoder.decode(&mut self.buf) {
                Ok(Some(r)) if r.opaque == self.opaque => return Ok(r),
                Ok(Some(_)) => continue,
                Ok(None) => {}
                Err(e) => return Err(self.protocol(e.to_string())),
            }
            let n = self
                .stream
                .read(&mut tmp)
                .map_err(|source| ClientError::Io {
                    addr: self.addr.clone(),
                    source,
                })?;
            if n == 0 {
                return Err(self.protocol("connection closed".into()));
            }
            self.buf.extend_from_slice(&tmp[..n]);
        }
    }

    fn protocol(&self, what: String) -> ClientError {
        ClientError::Protocol {
            addr: self.addr.clone(),
            what,
        }
    }

    fn expect_ok(
        &self,
        r: RemotingCommand,
        request: &'static str,
    ) -> Result<RemotingCommand, ClientError> {
        if r.code == response::SUCCESS {
            Ok(r)
        } else {
            Err(ClientError::Refused {
                addr: self.addr.clone(),
                request,
                code: r.code,
                remark: r.remark.unwrap_or_default(),
            })
        }
    }
}

/// The master broker address of `topic`, and its write queue count.
pub fn route(namesrv: &str, topic: &str) -> Result<(String, i32), ClientError> {
    let mut c = Conn::connect(namesrv, Duration::from_secs(3))?;
    let r = c.call(
        RemotingCommand::request(request::GET_ROUTEINFO_BY_TOPIC).with_header(
            &GetRouteInfoRequestHeader {
                topic: topic.to_owned(),
                accept_standard_json_only: Some(true),
            },
        ),
    )?;
    let r = c.expect_ok(r, "GET_ROUTEINFO_BY_TOPIC")?;
    let data: TopicRouteData =
        protocol::json::from_slice(&r.body).map_err(|e| c.protocol(e.to_string()))?;
    let broker = data
        .broker_datas
        .first()
        .and_then(|b| b.broker_addrs.get(&0))
        .ok_or_else(|| c.protocol(format!("route of {topic} has no master")))?;
    let queues = data.queue_datas.first().map_or(0, |q| q.write_queue_nums);
    Ok((broker.clone(), queues))
}

/// UPDATE_AND_CREATE_TOPIC (17) on one broker.
pub fn create_topic(broker: &str, topic: &str, queues: i32) -> Result<(), ClientError> {
    let mut c = Conn::connect(broker, Duration::from_secs(5))?;
    let r = c.call(
        RemotingCommand::request(request::UPDATE_AND_CREATE_TOPIC).with_header(
            &CreateTopicRequestHeader {
                topic: topic.to_owned(),
                default_topic: "TBW102".into(),
                read_queue_nums: queues,
                write_queue_nums: queues,
                perm: 6,
                topic_filter_type: "SINGLE_TAG".into(),
                topic_sys_flag: Some(0),
                order: false,
                attributes: None,
                force: false,
            },
        ),
    )?;
    c.expect_ok(r, "UPDATE_AND_CREATE_TOPIC").map(|_| ())
}

/// GET_BROKER_CONFIG (26): the broker's settings as Java properties text.
pub fn broker_config(broker: &str) -> Result<String, ClientError> {
    let mut c = Conn::connect(broker, Duration::from_secs(3))?;
    let r = c.call(RemotingCommand::request(request::GET_BROKER_CONFIG))?;
    let r = c.expect_ok(r, "GET_BROKER_CONFIG")?;
    Ok(String::from_utf8_lossy(&r.body).into_owned())
}

/// One SEND_MESSAGE_V2 of `body` to `topic` queue `queue_id`.
pub fn send_one(
    conn: &mut Conn,
    topic: &str,
    queue_id: i32,
    body: &[u8],
) -> Result<(), ClientError> {
    let header = SendMessageRequestHeaderV2 {
        a: "perf_probe".into(),
        b: topic.to_owned(),
        c: "TBW102".into(),
        d: 4,
        e: queue_id,
        f: 0,
        g: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64),
        h: 0,
        i: Some(String::new()),
        j: Some(0),
        k: Some(false),
        l: None,
        m: Some(false),
        n: None,
    };
    let r = conn.call(
        RemotingCommand::request(request::SEND_MESSAGE_V2)
            .with_header(&header)
            .with_body(body.to_vec()),
    )?;
    conn.expect_ok(r, "SEND_MESSAGE_V2").map(|_| ())
}

/// A PULL_MESSAGE header for all tags of one queue, held at the broker for up to
/// `suspend_ms` when given (long polling).
pub fn pull_header(
    group: &str,
    topic: &str,
    queue_id: i32,
    offset: i64,
    max_msg_nums: i32,
    suspend_ms: Option<i64>,
) -> PullMessageRequestHeader {
    let mut sys_flag = protocol::message::pull_sys_flag::SUBSCRIPTION;
    if suspend_ms.is_some() {
        sys_flag |= protocol::message::pull_sys_flag::SUSPEND;
    }
    PullMessageRequestHeader {
        consumer_group: group.to_owned(),
        topic: topic.to_owned(),
        queue_id,
        queue_offset: offset,
        max_msg_nums,
        sys_flag,
        commit_offset: 0,
        suspend_timeout_millis: suspend_ms.unwrap_or(0),
        subscription: Some("*".into()),
        sub_version: 0,
        expression_type: Some("TAG".into()),
        max_msg_bytes: None,
        request_source: None,
        proxy_forward_client_id: None,
        broker_name: None,
    }
}

/// One PULL_MESSAGE without suspension; the number of body bytes served (0 if none).
pub fn pull_one(
    conn: &mut Conn,
    topic: &str,
    queue_id: i32,
    offset: i64,
) -> Result<usize, ClientError> {
    let header = pull_header("perf_probe", topic, queue_id, offset, 1, None);
    let r = conn.call(RemotingCommand::request(request::PULL_MESSAGE).with_header(&header))?;
    match r.code {
        response::SUCCESS => Ok(r.body.len()),
        response::PULL_NOT_FOUND | response::PULL_RETRY_IMMEDIATELY => Ok(0),
        _ => conn.expect_ok(r, "PULL_MESSAGE").map(|_| 0),
    }
}
