//! Nameserver configuration: TOML, every key defaulted.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Every key is optional in the TOML file; see `nameserver/nameserver.example.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NamesrvConfig {
    /// Remoting listen address. RocketMQ's default port is 9876.
    pub listen: SocketAddr,
    /// Optional HTTP address-server endpoint (`GET /rocketmq/nsaddr`), for clients that
    /// discover nameservers over HTTP. Off when unset.
    pub http_listen: Option<SocketAddr>,
    /// What the HTTP endpoint answers, `host:port` each, joined with `;`. Empty: this
    /// nameserver's own listen address (127.0.0.1 when it listens on 0.0.0.0).
    pub advertised_addrs: Vec<String>,
    /// A broker that has not registered (or sent BROKER_HEARTBEAT) for this long is
    /// dropped with its routes, unless it asked for its own timeout. RocketMQ: 120 s.
    /// Shorter detects dead brokers sooner but risks dropping a slow one.
    pub broker_expiry_ms: u64,
    /// How often expiry is checked. RocketMQ: 5 s. Bounds how late an expiry happens.
    pub scan_not_active_broker_interval_ms: u64,
    /// Where KV config (PUT_KV_CONFIG) persists. Empty: `~/namesrv/kvConfig.json`.
    pub kv_config_path: Option<PathBuf>,
    /// Fill `orderTopicConf` in routes from the ORDER_TOPIC_CONFIG namespace.
    pub order_message_enable: bool,
    /// Return the ORDER_TOPIC_CONFIG table to registering brokers.
    pub return_order_topic_config_to_broker: bool,
    /// Serve GET_ALL_TOPIC_LIST_FROM_NAMESERVER.
    pub enable_all_topic_list: bool,
    /// Serve GET_TOPICS_BY_CLUSTER and the unit topic lists.
    pub enable_topic_list: bool,
    /// Largest accepted frame, length prefix included. RocketMQ: 16 MiB. Larger costs
    /// memory per connection under attack; smaller refuses big registrations.
    pub max_frame_bytes: usize,
    /// Connections beyond this are closed at accept.
    pub max_connections: usize,
    /// Responses queued for one connection before its reads pause (back-pressure on a
    /// client that does not read its answers).
    pub max_pending_responses: usize,
    /// A connection with no request for this long is closed (RocketMQ:
    /// `serverChannelMaxIdleTimeSeconds` = 120).
    pub idle_timeout_ms: u64,
}

impl Default for NamesrvConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 9876)),
            http_listen: None,
            advertised_addrs: Vec::new(),
            broker_expiry_ms: 120_000,
            scan_not_active_broker_interval_ms: 5_000,
            kv_config_path: None,
            order_message_enable: false,
            return_order_topic_config_to_broker: true,
            enable_all_topic_list: true,
            enable_topic_list: true,
            max_frame_bytes: protocol::DEFAULT_MAX_FRAME_BYTES,
            max_connections: 10_000,
            max_pending_responses: 1024,
            idle_timeout_ms: 120_000,
        }
    }
}

/// The configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is invalid: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("config key {key} = {value}: {reason}")]
    Invalid {
        key: &'static str,
        value: String,
        reason: &'static str,
    },
}

impl NamesrvConfig {
    pub fn load(path: &std::path::Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        let config: Self = toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.into(),
            source,
        })?;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, value: &dyn std::fmt::Display, reason| ConfigError::Invalid {
            key,
            value: value.to_string(),
            reason,
        };
        if self.scan_not_active_broker_interval_ms == 0 {
            return Err(invalid(
                "scan_not_active_broker_interval_ms",
                &0,
                "must be positive",
            ));
        }
        if self.broker_expiry_ms == 0 {
            return Err(invalid("broker_expiry_ms", &0, "must be positive"));
        }
        if !(1024..=i32::MAX as usize).contains(&self.max_frame_bytes) {
            return Err(invalid(
                "max_frame_bytes",
                &self.max_frame_bytes,
                "must be within 1 KiB..2 GiB",
            ));
        }
        if self.max_connections == 0 || self.max_pending_responses == 0 {
            return Err(invalid(
                "max_connections/max_pending_responses",
                &0,
                "must be positive",
            ));
        }
        Ok(())
    }

    pub fn kv_config_path(&self) -> PathBuf {
        self.kv_config_path.clone().unwrap_or_else(|| {
            let home = std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("."));
            home.join("namesrv").join("kvConfig.json")
        })
    }

    /// What the HTTP endpoint advertises, given where remoting actually listens.
    pub fn advertised(&self, remoting: SocketAddr) -> String {
        if !self.advertised_addrs.is_empty() {
            return self.advertised_addrs.join(";");
        }
        let ip = if remoting.ip().is_unspecified() {
            "127.0.0.1".to_owned()
        } else {
            remoting.ip().to_string()
        };
        format!("{ip}:{}", remoting.port())
    }

    /// `key=value` lines sorted by key, as GET_NAMESRV_CONFIG answers, with RocketMQ's
    /// names where a key has one.
    pub fn to_properties(&self) -> std::collections::BTreeMap<String, String> {
        let mut m = std::collections::BTreeMap::new();
        m.insert("listenPort".into(), self.listen.port().to_string());
        m.insert("listen".into(), self.listen.to_string());
        m.insert(
            "httpListen".into(),
            self.http_listen.map(|a| a.to_string()).unwrap_or_default(),
        );
        m.insert(
            "scanNotActiveBrokerInterval".into(),
            self.scan_not_active_broker_interval_ms.to_string(),
        );
        m.insert(
            "brokerExpiryMillis".into(),
            self.broker_expiry_ms.to_string(),
        );
        m.insert(
            "kvConfigPath".into(),
            self.kv_config_path().display().to_string(),
        );
        m.insert(
            "orderMessageEnable".into(),
            self.order_message_enable.to_string(),
        );
        m.insert(
            "returnOrderTopicConfigToBroker".into(),
            self.return_order_topic_config_to_broker.to_string(),
        );
        m.insert(
            "enableAllTopicList".into(),
            self.enable_all_topic_list.to_string(),
        );
        m.insert("enableTopicList".into(), self.enable_topic_list.to_string());
        m.insert(
            "serverChannelMaxIdleTimeSeconds".into(),
            (self.idle_timeout_ms / 1000).to_string(),
        );
        m
    }

    /// UPDATE_NAMESRV_CONFIG: only the switches that are safe to flip at run time. Paths
    /// and listen addresses are refused (RocketMQ's black list exists because a writable
    /// path was an RCE vector, CVE-2023-33246); unknown keys are ignored, as RocketMQ does.
    pub fn update(
        &mut self,
        props: &std::collections::BTreeMap<String, String>,
    ) -> Result<(), UpdateError> {
        const BLACK_LIST: &[&str] = &[
            "configBlackList",
            "configStorePath",
            "kvConfigPath",
            "rocketmqHome",
            "listen",
            "listenPort",
            "httpListen",
        ];
        if let Some(key) = props.keys().find(|k| BLACK_LIST.contains(&k.as_str())) {
            return Err(UpdateError::BlackListed { key: key.clone() });
        }
        let mut next = self.clone();
        for (key, value) in props {
            let flag = |v: &str| {
                protocol::ext::parse_bool(v).ok_or(UpdateError::BadValue {
                    key: key.clone(),
                    value: v.to_owned(),
                })
            };
            let number = |v: &str| {
                v.trim().parse::<u64>().map_err(|_| UpdateError::BadValue {
                    key: key.clone(),
                    value: v.to_owned(),
                })
            };
            match key.as_str() {
                "orderMessageEnable" => next.order_message_enable = flag(value)?,
                "returnOrderTopicConfigToBroker" => {
                    next.return_order_topic_config_to_broker = flag(value)?
                }
                "enableAllTopicList" => next.enable_all_topic_list = flag(value)?,
                "enableTopicList" => next.enable_topic_list = flag(value)?,
                "scanNotActiveBrokerInterval" => {
                    next.scan_not_active_broker_interval_ms = number(value)?
                }
                "brokerExpiryMillis" => next.broker_expiry_ms = number(value)?,
                _ => {}
            }
        }
        next.validate().map_err(|e| UpdateError::BadValue {
            key: "config".into(),
            value: e.to_string(),
        })?;
        *self = next;
        Ok(())
    }
}

/// UPDATE_NAMESRV_CONFIG was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpdateError {
    #[error("Can not update config in black list.")]
    BlackListed { key: String },
    #[error("bad value for {key}: {value}")]
    BadValue { key: String, value: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_keys_and_validation() {
        let c: NamesrvConfig =
            toml::from_str("listen = \"127.0.0.1:19876\"\nbroker_expiry_ms = 3000\n").unwrap();
        assert_eq!(c.listen.port(), 19876);
        assert_eq!(c.broker_expiry_ms, 3000);
        assert_eq!(c.scan_not_active_broker_interval_ms, 5000);
        assert_eq!(c.advertised(c.listen), "127.0.0.1:19876");
        assert!(
            toml::from_str::<NamesrvConfig>("lisen = \"x\"").is_err(),
            "typos are errors"
        );
        let bad = NamesrvConfig {
            scan_not_active_broker_interval_ms: 0,
            ..Default::default()
        };
        assert!(bad.validate().is_err());
    }

    #[test]
    fn example_file_is_valid_and_shows_the_defaults() {
        let example: NamesrvConfig =
            toml::from_str(include_str!("../nameserver.example.toml")).unwrap();
        assert_eq!(
            format!("{example:?}"),
            format!("{:?}", NamesrvConfig::default())
        );
    }

    #[test]
    fn runtime_update_refuses_paths() {
        let mut c = NamesrvConfig::default();
        let props = [("kvConfigPath".to_owned(), "/tmp/x".to_owned())]
            .into_iter()
            .collect();
        assert!(matches!(
            c.update(&props),
            Err(UpdateError::BlackListed { .. })
        ));
        let props = [
            ("orderMessageEnable".to_owned(), "true".to_owned()),
            ("unknown".to_owned(), "1".to_owned()),
        ]
        .into_iter()
        .collect();
        c.update(&props).unwrap();
        assert!(c.order_message_enable);
        let props = [("scanNotActiveBrokerInterval".to_owned(), "0".to_owned())]
            .into_iter()
            .collect();
        assert!(c.update(&props).is_err());
        assert_eq!(
            c.scan_not_active_broker_interval_ms, 5000,
            "a refused update changes nothing"
        );
    }
}
