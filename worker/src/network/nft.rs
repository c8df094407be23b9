//! The worker's own nftables table, `ip kaasd`, driven through the `nft` binary's JSON input
//! (libnftables-json(5)).
//!
//! What changes with Services (per-service chains, map elements, affinity sets) is held as a [`Ruleset`]; the
//! fixed part (base chains, dispatch maps) is written by [`full_sync`]. A change is the difference between the
//! last applied ruleset and the new one, sent as one `nft -j -f -` batch, which the kernel applies as one
//! transaction: packets see the old rules or the new ones, never a mix. A restart rebuilds the whole table in one
//! batch too, so Services keep working while the worker is down and while it comes back.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::{json, Value};

pub const TABLE: &str = "kaasd";
const FAMILY: &str = "ip";

/// The mark on packets that leave SNATed to the node's address (off-node clients of a Service, hairpin).
pub const MASQUERADE_MARK: u64 = 0x4000;

/// The maps the base chains dispatch through, with their key types.
pub const MAPS: [(&str, &[&str]); 4] = [
    (SERVICE_IPS, &["ipv4_addr", "inet_proto", "inet_service"]),
    (SERVICE_NODEPORTS, &["inet_proto", "inet_service"]),
    (NO_ENDPOINT_SERVICES, &["ipv4_addr", "inet_proto", "inet_service"]),
    (NO_ENDPOINT_NODEPORTS, &["inet_proto", "inet_service"]),
];
pub const SERVICE_IPS: &str = "service-ips";
pub const SERVICE_NODEPORTS: &str = "service-nodeports";
pub const NO_ENDPOINT_SERVICES: &str = "no-endpoint-services";
pub const NO_ENDPOINT_NODEPORTS: &str = "no-endpoint-nodeports";
pub const MARK_FOR_MASQUERADE: &str = "mark-for-masquerade";
pub const REJECT_CHAIN: &str = "reject-chain";

/// The parts of the table that follow Services.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Ruleset {
    /// Regular chains by name, each a list of rules (a rule is its list of statements).
    pub chains: BTreeMap<String, Vec<Vec<Value>>>,
    /// Elements of the dispatch maps: map name → (key, as nft prints it, → (key, verdict)).
    pub elements: BTreeMap<&'static str, BTreeMap<String, (Value, Value)>>,
    /// Session-affinity sets by name → entry timeout in seconds.
    pub affinity_sets: BTreeMap<String, u64>,
}

impl Ruleset {
    /// Adds `other`'s chains, elements and sets (names do not overlap between Services).
    pub fn merge(&mut self, other: Ruleset) {
        self.chains.extend(other.chains);
        for (map, elements) in other.elements {
            self.elements.entry(map).or_default().extend(elements);
        }
        self.affinity_sets.extend(other.affinity_sets);
    }

    pub fn add_element(&mut self, map: &'static str, key: Value, verdict: Value) {
        self.elements.entry(map).or_default().insert(key.to_string(), (key, verdict));
    }
}

/// The batch that replaces whatever table is there with the base layout plus `rules`.
pub fn full_sync(rules: &Ruleset) -> Vec<Value> {
    let mut batch = vec![
        // `add` then `delete` removes the table whether or not it existed.
        json!({"add": {"table": table()}}),
        json!({"delete": {"table": table()}}),
        json!({"add": {"table": table()}}),
    ];
    for (name, key_types) in MAPS {
        batch.push(json!({"add": {"map": {"family": FAMILY, "table": TABLE, "name": name, "type": key_types, "map": "verdict"}}}));
    }
    // Chains exist before any rule jumps to them.
    let regular = base_chains();
    for (name, _) in &regular {
        batch.push(json!({"add": {"chain": chain(name)}}));
    }
    for (name, hook, kind, priority, jump) in [
        ("nat-prerouting", "prerouting", "nat", -100, "services"),
        ("nat-output", "output", "nat", -100, "services"),
        ("nat-postrouting", "postrouting", "nat", 100, "masquerading"),
        ("filter-input", "input", "filter", 0, "endpoints-check"),
        ("filter-forward", "forward", "filter", 0, "endpoints-check"),
        ("filter-output", "output", "filter", 0, "endpoints-check"),
    ] {
        batch.push(json!({"add": {"chain": {"family": FAMILY, "table": TABLE, "name": name, "type": kind, "hook": hook, "prio": priority, "policy": "accept"}}}));
        let mut rule = Vec::new();
        if kind == "filter" {
            rule.push(json!({"match": {"op": "in", "left": {"ct": {"key": "state"}}, "right": "new"}}));
        }
        rule.push(json!({"jump": {"target": jump}}));
        base_chain_rule(&mut batch, name, rule);
    }
    for (name, rules) in regular {
        for rule in rules {
            base_chain_rule(&mut batch, name, rule);
        }
    }
    batch.extend(diff(&Ruleset::default(), rules));
    batch
}

fn base_chain_rule(batch: &mut Vec<Value>, chain: &str, expr: Vec<Value>) {
    batch.push(json!({"add": {"rule": {"family": FAMILY, "table": TABLE, "chain": chain, "expr": expr}}}));
}

/// The fixed regular chains: dispatch, masquerading and rejection.
fn base_chains() -> Vec<(&'static str, Vec<Vec<Value>>)> {
    let mark = json!({"meta": {"key": "mark"}});
    let daddr = payload("ip", "daddr");
    let proto_port = |first: Option<Value>| {
        let mut parts: Vec<Value> = first.into_iter().collect();
        parts.extend([json!({"meta": {"key": "l4proto"}}), payload("th", "dport")]);
        json!({"concat": parts})
    };
    let local_destination =
        json!({"match": {"op": "==", "left": {"fib": {"result": "type", "flags": ["daddr"]}}, "right": "local"}});
    let not_loopback =
        json!({"match": {"op": "!=", "left": daddr, "right": {"prefix": {"addr": "127.0.0.0", "len": 8}}}});
    vec![
        (
            "services",
            vec![
                vec![json!({"vmap": {"key": proto_port(Some(daddr.clone())), "data": format!("@{SERVICE_IPS}")}})],
                vec![
                    local_destination.clone(),
                    not_loopback.clone(),
                    json!({"vmap": {"key": proto_port(None), "data": format!("@{SERVICE_NODEPORTS}")}}),
                ],
            ],
        ),
        (
            "endpoints-check",
            vec![
                vec![
                    json!({"vmap": {"key": proto_port(Some(daddr.clone())), "data": format!("@{NO_ENDPOINT_SERVICES}")}}),
                ],
                vec![
                    local_destination,
                    not_loopback,
                    json!({"vmap": {"key": proto_port(None), "data": format!("@{NO_ENDPOINT_NODEPORTS}")}}),
                ],
            ],
        ),
        (MARK_FOR_MASQUERADE, vec![vec![json!({"mangle": {"key": mark, "value": {"|": [mark, MASQUERADE_MARK]}}})]]),
        (
            "masquerading",
            vec![
                vec![
                    json!({"match": {"op": "==", "left": {"&": [mark, MASQUERADE_MARK]}, "right": 0}}),
                    json!({"return": null}),
                ],
                vec![json!({"mangle": {"key": mark, "value": {"^": [mark, MASQUERADE_MARK]}}})],
                vec![json!({"masquerade": {"flags": ["fully-random"]}})],
            ],
        ),
        (REJECT_CHAIN, vec![vec![json!({"reject": {"type": "icmp", "expr": "port-unreachable"}})]]),
    ]
}

/// The commands that turn the table holding `old` into one holding `new`. Order matters inside the batch: chains
/// exist before anything jumps to them, and go only after nothing refers to them.
pub fn diff(old: &Ruleset, new: &Ruleset) -> Vec<Value> {
    let mut batch = Vec::new();
    for (name, timeout) in &new.affinity_sets {
        if old.affinity_sets.get(name) != Some(timeout) {
            batch.push(json!({"add": {"set": {"family": FAMILY, "table": TABLE, "name": name, "type": "ipv4_addr", "flags": ["timeout"], "timeout": timeout}}}));
        }
    }
    let changed: Vec<(&String, &Vec<Vec<Value>>)> =
        new.chains.iter().filter(|(name, rules)| old.chains.get(*name) != Some(*rules)).collect();
    for (name, _) in &changed {
        batch.push(json!({"add": {"chain": chain(name)}}));
    }
    for (name, rules) in &changed {
        if old.chains.contains_key(*name) {
            batch.push(json!({"flush": {"chain": chain(name)}}));
        }
        for rule in *rules {
            base_chain_rule(&mut batch, name, rule.clone());
        }
    }
    let empty = BTreeMap::new();
    for (map, _) in MAPS {
        let before = old.elements.get(map).unwrap_or(&empty);
        let after = new.elements.get(map).unwrap_or(&empty);
        let removed: Vec<Value> = before
            .iter()
            .filter(|(key, element)| after.get(*key) != Some(*element))
            .map(|(_, (key, _))| key.clone())
            .collect();
        if !removed.is_empty() {
            batch
                .push(json!({"delete": {"element": {"family": FAMILY, "table": TABLE, "name": map, "elem": removed}}}));
        }
        let added: Vec<Value> = after
            .iter()
            .filter(|(key, element)| before.get(*key) != Some(*element))
            .map(|(_, (key, verdict))| json!([key, verdict]))
            .collect();
        if !added.is_empty() {
            batch.push(json!({"add": {"element": {"family": FAMILY, "table": TABLE, "name": map, "elem": added}}}));
        }
    }
    // Removed chains may jump to each other: flush them all before deleting any.
    let removed: Vec<&String> = old.chains.keys().filter(|name| !new.chains.contains_key(*name)).collect();
    for name in &removed {
        batch.push(json!({"flush": {"chain": chain(name)}}));
    }
    for name in &removed {
        batch.push(json!({"delete": {"chain": chain(name)}}));
    }
    for name in old.affinity_sets.keys().filter(|name| !new.affinity_sets.contains_key(*name)) {
        batch.push(json!({"delete": {"set": {"family": FAMILY, "table": TABLE, "name": name}}}));
    }
    batch
}

/// Runs one batch as a single transaction.
pub fn apply(batch: &[Value]) -> Result<(), String> {
    apply_in(None, batch)
}

/// [`apply`] inside the named network namespace (`ip netns exec`), for benchmarks and tests; `None`: this one.
pub fn apply_in(namespace: Option<&str>, batch: &[Value]) -> Result<(), String> {
    if batch.is_empty() {
        return Ok(());
    }
    let input = serde_json::to_vec(&json!({"nftables": batch})).expect("JSON");
    let mut command = match namespace {
        Some(namespace) => {
            let mut command = Command::new("ip");
            command.args(["netns", "exec", namespace, "nft"]);
            command
        }
        None => Command::new("nft"),
    };
    let mut child = command
        .args(["-j", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|error| format!("cannot run nft ({error}); install nftables"))?;
    child.stdin.take().expect("piped").write_all(&input).map_err(|error| format!("cannot write to nft: {error}"))?;
    let output = child.wait_with_output().map_err(|error| format!("nft: {error}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!("nft refused the rules: {}", String::from_utf8_lossy(&output.stderr).trim()))
    }
}

/// Deletes kaasd's table with everything in it; a table that is not there is no error (it is added first, in the
/// same transaction).
pub fn delete_table() -> Result<(), String> {
    apply(&[json!({"add": {"table": table()}}), json!({"delete": {"table": table()}})])
}

fn table() -> Value {
    json!({"family": FAMILY, "name": TABLE})
}

fn chain(name: &str) -> Value {
    json!({"family": FAMILY, "table": TABLE, "name": name})
}

/// `ip saddr`, `th dport` and friends.
pub fn payload(protocol: &str, field: &str) -> Value {
    json!({"payload": {"protocol": protocol, "field": field}})
}

pub fn goto(chain: &str) -> Value {
    json!({"goto": {"target": chain}})
}

pub fn jump(chain: &str) -> Value {
    json!({"jump": {"target": chain}})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ruleset(chains: &[(&str, u64)], elements: &[(&str, &str)]) -> Ruleset {
        let mut rules = Ruleset::default();
        for (name, port) in chains {
            rules.chains.insert(name.to_string(), vec![vec![json!({"dnat": {"addr": "10.244.0.5", "port": port}})]]);
        }
        for (address, chain) in elements {
            rules.add_element(SERVICE_IPS, json!({"concat": [address, "tcp", 80]}), goto(chain));
        }
        rules
    }

    fn verbs(batch: &[Value]) -> Vec<String> {
        batch
            .iter()
            .map(|command| {
                let (verb, body) = command.as_object().unwrap().iter().next().unwrap();
                let (kind, object) = body.as_object().unwrap().iter().next().unwrap();
                let name = object.get("name").or_else(|| object.get("chain")).and_then(Value::as_str).unwrap_or("");
                format!("{verb} {kind} {name}")
            })
            .collect()
    }

    #[test]
    fn an_unchanged_ruleset_needs_no_commands() {
        let rules = ruleset(&[("svc-a", 80)], &[("10.96.0.5", "svc-a")]);
        assert!(diff(&rules, &rules.clone()).is_empty());
    }

    #[test]
    fn a_changed_chain_is_flushed_and_refilled_and_only_changed_elements_move() {
        let old = ruleset(
            &[("svc-a", 80), ("svc-b", 80), ("svc-gone", 80)],
            &[("10.96.0.5", "svc-a"), ("10.96.0.6", "svc-gone")],
        );
        let new = ruleset(
            &[("svc-a", 8080), ("svc-b", 80), ("svc-new", 80)],
            &[("10.96.0.5", "svc-a"), ("10.96.0.7", "svc-new")],
        );
        assert_eq!(
            verbs(&diff(&old, &new)),
            [
                "add chain svc-a",
                "add chain svc-new",
                "flush chain svc-a",
                "add rule svc-a",
                "add rule svc-new",
                "delete element service-ips",
                "add element service-ips",
                "flush chain svc-gone",
                "delete chain svc-gone",
            ]
        );
    }

    /// The batches as the kernel takes them: a full sync of `old`, then the difference to `new`, applied in a
    /// network namespace of their own (needs root and nftables, as the worker does).
    #[test]
    fn the_kernel_accepts_a_full_sync_then_a_difference() {
        use crate::network::proxy::{desired_rules, ProxyConfig};
        use k8s_openapi::api::core::v1::Service;
        use k8s_openapi::api::discovery::v1::EndpointSlice;
        use std::sync::Arc;

        let service = |affinity: &str| -> Arc<Service> {
            Arc::new(
                serde_json::from_value(json!({
                    "metadata": {"name": "web", "namespace": "default"},
                    "spec": {"clusterIP": "10.96.0.20", "type": "NodePort", "sessionAffinity": affinity,
                             "ports": [{"name": "http", "port": 80, "protocol": "TCP", "nodePort": 30080}]},
                }))
                .unwrap(),
            )
        };
        let slice = |addresses: &[&str]| -> Arc<EndpointSlice> {
            let endpoints: Vec<Value> =
                addresses.iter().map(|address| json!({"addresses": [address], "nodeName": "n1"})).collect();
            Arc::new(serde_json::from_value(json!({
                "metadata": {"name": "web-1", "namespace": "default", "labels": {"kubernetes.io/service-name": "web"}},
                "addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}], "endpoints": endpoints,
            })).unwrap())
        };
        let config =
            ProxyConfig { node_name: "n1".into(), pod_cidr: Some("10.244.1.0/24".into()), node_local_ips: vec![] };
        let old = desired_rules(&[service("ClientIP")], &[slice(&["10.244.1.5", "10.244.1.6"])], &config);
        let new = desired_rules(&[service("None")], &[slice(&["10.244.1.6", "10.244.1.7"])], &config);
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, batch: Vec<Value>| {
            let path = dir.path().join(name);
            std::fs::write(&path, serde_json::to_vec(&json!({"nftables": batch})).unwrap()).unwrap();
            path.display().to_string()
        };
        let (first, second) = (write("full.json", full_sync(&old)), write("diff.json", diff(&old, &new)));
        let output = Command::new("unshare")
            .args(["--net", "sh", "-ec", &format!("nft -j -f {first}; nft -j -f {second}; nft list table ip {TABLE}")])
            .output()
            .expect("unshare runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "nft refused the batches: {stderr}");
        let listing = String::from_utf8_lossy(&output.stdout);
        assert!(listing.contains("10.244.1.7"), "the new endpoint is in place:\n{listing}");
        assert!(!listing.contains("10.244.1.5"), "the old endpoint is gone:\n{listing}");
        assert!(!listing.contains("affinity-"), "affinity sets went with ClientIP affinity:\n{listing}");
        assert!(listing.contains("10.96.0.20 . tcp . 80 : goto service-default/web/tcp/80"), "{listing}");
    }

    #[test]
    fn a_full_sync_starts_by_replacing_the_table() {
        let batch = full_sync(&ruleset(&[("svc-a", 80)], &[("10.96.0.5", "svc-a")]));
        assert_eq!(verbs(&batch[..3]), ["add table kaasd", "delete table kaasd", "add table kaasd"]);
        assert!(verbs(&batch).contains(&"add element service-ips".to_string()));
    }
}
