//! Cluster, broker and nameserver commands: clusterList, brokerStatus, getBrokerConfig,
//! updateBrokerConfig, getNamesrvConfig, updateKvConfig, deleteKvConfig, getKvConfig.

use protocol::body::{format_properties, parse_properties, KvTable};
use protocol::code::request;
use protocol::header::{
    GetKvConfigResponseHeader, KvConfigKeyRequestHeader, PutKvConfigRequestHeader,
};
use protocol::RemotingCommand;
use serde_json::{json, Value};
use std::collections::BTreeMap;

use super::cli::{
    BrokerSelectArgs, ClusterListArgs, KvKeyArgs, Output, UpdateBrokerConfigArgs,
    UpdateKvConfigArgs,
};
use super::client::Admin;
use super::error::{AdminError, Role};
use super::for_each_broker;
use super::format::{key_values, Table};

/// GET_BROKER_RUNTIME_INFO: the broker's `KVTable`.
pub fn runtime_info(admin: &mut Admin, addr: &str) -> Result<BTreeMap<String, String>, AdminError> {
    let resp = admin.call_ok(
        Role::Broker,
        addr,
        RemotingCommand::request(request::GET_BROKER_RUNTIME_INFO),
    )?;
    let table: KvTable = Admin::body(Role::Broker, addr, request::GET_BROKER_RUNTIME_INFO, &resp)?;
    Ok(table.table)
}

pub fn cluster_list(admin: &mut Admin, args: &ClusterListArgs) -> Result<Output, AdminError> {
    let info = admin.cluster_info()?;
    if let Some(c) = &args.cluster {
        if !info.cluster_addr_table.contains_key(c) {
            return Err(AdminError::NotFound(format!("cluster {c} not found")));
        }
    }
    let mut table = Table::new(&[
        "Cluster Name",
        "Broker Name",
        "BID",
        "Addr",
        "Version",
        "InTotalToday",
        "OutTotalToday",
        "Runtime",
    ]);
    let mut rows = Vec::new();
    for (cluster, names) in &info.cluster_addr_table {
        if args.cluster.as_ref().is_some_and(|c| c != cluster) {
            continue;
        }
        for name in names {
            let Some(data) = info.broker_addr_table.get(name) else {
                continue;
            };
            for (id, addr) in &data.broker_addrs {
                let (runtime, error) = match runtime_info(admin, addr) {
                    Ok(t) => (Some(t), None),
                    Err(e) => (None, Some(e)),
                };
                let get = |k: &str| {
                    runtime
                        .as_ref()
                        .and_then(|t| t.get(k).cloned())
                        .unwrap_or_else(|| "-".into())
                };
                table.row(vec![
                    cluster.clone(),
                    name.clone(),
                    id.to_string(),
                    addr.clone(),
                    get("brokerVersionDesc"),
                    get("msgPutTotalTodayNow"),
                    get("msgGetTotalTodayNow"),
                    get("runtime"),
                ]);
                rows.push(json!({
                    "cluster": cluster, "brokerName": name, "brokerId": id, "addr": addr,
                    "runtime": runtime, "error": error.map(|e| e.to_json()),
                }));
            }
        }
    }
    Ok(Output::new(json!({ "brokers": rows }), table.render()))
}

pub fn broker_status(admin: &mut Admin, args: &BrokerSelectArgs) -> Result<Output, AdminError> {
    let targets = admin.select(args)?;
    let many = targets.len() > 1;
    Ok(for_each_broker(admin, &targets, |admin, target| {
        let table = runtime_info(admin, &target.addr)?;
        let mut text = key_values(table.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        if many {
            text = text
                .lines()
                .map(|l| format!("{:<22}{l}\n", target.addr))
                .collect();
        }
        Ok((json!(table), text))
    }))
}

pub fn get_broker_config(admin: &mut Admin, args: &BrokerSelectArgs) -> Result<Output, AdminError> {
    let targets = admin.select(args)?;
    Ok(for_each_broker(admin, &targets, |admin, target| {
        let resp = admin.call_ok(
            Role::Broker,
            &target.addr,
            RemotingCommand::request(request::GET_BROKER_CONFIG),
        )?;
        let config = parse_properties(&String::from_utf8_lossy(&resp.body));
        let width = config.keys().map(String::len).max().unwrap_or(0);
        let mut text = format!("============{}============\n", target.addr);
        for (k, v) in &config {
            text.push_str(&format!("{k:<width$} = {v}\n"));
        }
        Ok((json!(config), text))
    }))
}

pub fn update_broker_config(
    admin: &mut Admin,
    args: &UpdateBrokerConfigArgs,
) -> Result<Output, AdminError> {
    let targets = admin.select(&args.target)?;
    let body = format_properties(&BTreeMap::from([(args.key.clone(), args.value.clone())]));
    Ok(for_each_broker(admin, &targets, |admin, target| {
        let req = RemotingCommand::request(request::UPDATE_BROKER_CONFIG)
            .with_body(body.clone().into_bytes());
        admin.call_ok(Role::Broker, &target.addr, req)?;
        Ok((
            Value::Null,
            format!(
                "update broker config {}={} on {} success.",
                args.key, args.value, target.addr
            ),
        ))
    }))
}

/// Sends `req` to every nameserver; per-nameserver results, the first failure as error.
fn each_namesrv(
    admin: &mut Admin,
    req: RemotingCommand,
    mut on_ok: impl FnMut(&str, &RemotingCommand) -> (Value, String),
) -> Output {
    let mut results = Vec::new();
    let mut text = String::new();
    let mut error = None;
    for addr in admin.namesrv_addrs().to_vec() {
        match admin.call_ok(Role::Nameserver, &addr, req.clone()) {
            Ok(resp) => {
                let (value, line) = on_ok(&addr, &resp);
                results.push(json!({ "addr": addr, "ok": true, "result": value }));
                text.push_str(&line);
            }
            Err(e) => {
                results.push(json!({ "addr": addr, "ok": false, "error": e.to_json() }));
                text.push_str(&format!("FAILED on nameserver {addr}: {e}\n"));
                error.get_or_insert(e);
            }
        }
    }
    Output {
        json: json!({ "nameservers": results }),
        text,
        error,
    }
}

pub fn get_namesrv_config(admin: &mut Admin) -> Result<Output, AdminError> {
    Ok(each_namesrv(
        admin,
        RemotingCommand::request(request::GET_NAMESRV_CONFIG),
        |addr, resp| {
            let config = parse_properties(&String::from_utf8_lossy(&resp.body));
            let width = config.keys().map(String::len).max().unwrap_or(0);
            let mut text = format!("============{addr}============\n");
            for (k, v) in &config {
                text.push_str(&format!("{k:<width$} = {v}\n"));
            }
            (json!(config), text)
        },
    ))
}

pub fn update_kv_config(
    admin: &mut Admin,
    args: &UpdateKvConfigArgs,
) -> Result<Output, AdminError> {
    let req =
        RemotingCommand::request(request::PUT_KV_CONFIG).with_header(&PutKvConfigRequestHeader {
            namespace: args.namespace.clone(),
            key: args.key.clone(),
            value: args.value.clone(),
        });
    Ok(each_namesrv(admin, req, |addr, _| {
        (
            Value::Null,
            format!(
                "update kv config {}/{} on {addr} success.\n",
                args.namespace, args.key
            ),
        )
    }))
}

pub fn delete_kv_config(admin: &mut Admin, args: &KvKeyArgs) -> Result<Output, AdminError> {
    let req = RemotingCommand::request(request::DELETE_KV_CONFIG).with_header(
        &KvConfigKeyRequestHeader {
            namespace: args.namespace.clone(),
            key: args.key.clone(),
        },
    );
    Ok(each_namesrv(admin, req, |addr, _| {
        (
            Value::Null,
            format!(
                "delete kv config {}/{} on {addr} success.\n",
                args.namespace, args.key
            ),
        )
    }))
}

pub fn get_kv_config(admin: &mut Admin, args: &KvKeyArgs) -> Result<Output, AdminError> {
    let req =
        RemotingCommand::request(request::GET_KV_CONFIG).with_header(&KvConfigKeyRequestHeader {
            namespace: args.namespace.clone(),
            key: args.key.clone(),
        });
    let resp = admin.ns_call_ok(req)?;
    let value = resp
        .header::<GetKvConfigResponseHeader>()
        .ok()
        .and_then(|h| h.value);
    Ok(Output::new(
        json!({ "namespace": args.namespace, "key": args.key, "value": value }),
        format!("{}\n", value.as_deref().unwrap_or("")),
    ))
}
