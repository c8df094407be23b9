//! The resolver over real sockets: a server bound on loopback, a view filled through reflector store writers, and
//! queries sent the way a pod's stub resolver sends them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::{Edns, Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::reflector::{self, store::Writer};
use kube::runtime::watcher;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::*;

/// How long a test waits for any one answer before failing: generous, since a stuck server must fail the test
/// rather than hang it, and a healthy one answers in microseconds.
const ANSWER_DEADLINE: Duration = Duration::from_secs(5);

/// A ServiceView the test feeds by hand, standing in for the API watch.
struct FakeCluster {
    view: ServiceView,
    services: Writer<Service>,
    slices: Writer<EndpointSlice>,
    generation: watch::Sender<u64>,
}

impl FakeCluster {
    fn new() -> Self {
        let (services_store, services) = reflector::store();
        let (slices_store, slices) = reflector::store();
        let (generation, generation_receiver) = watch::channel(0);
        let view = ServiceView { services: services_store, slices: slices_store, generation: generation_receiver };
        FakeCluster { view, services, slices, generation }
    }

    fn apply_service(&mut self, service: serde_json::Value) {
        let service: Service = serde_json::from_value(service).expect("test service");
        self.services.apply_watcher_event(&watcher::Event::Apply(service));
        self.generation.send_modify(|generation| *generation += 1);
    }

    fn apply_slice(&mut self, slice: serde_json::Value) {
        let slice: EndpointSlice = serde_json::from_value(slice).expect("test endpoint slice");
        self.slices.apply_watcher_event(&watcher::Event::Apply(slice));
        self.generation.send_modify(|generation| *generation += 1);
    }
}

fn cluster_ip_service(namespace: &str, name: &str, cluster_ip: &str, ports: serde_json::Value) -> serde_json::Value {
    json!({
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"type": "ClusterIP", "clusterIP": cluster_ip, "clusterIPs": [cluster_ip], "ports": ports},
    })
}

fn headless_service(namespace: &str, name: &str) -> serde_json::Value {
    json!({
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"clusterIP": "None", "clusterIPs": ["None"], "ports": [{"name": "web", "port": 80}]},
    })
}

/// An EndpointSlice of `service` with `endpoints` given as (address, hostname, ready).
fn endpoint_slice(
    namespace: &str,
    service: &str,
    slice_name: &str,
    endpoints: &[(&str, Option<&str>, Option<bool>)],
    ports: serde_json::Value,
) -> serde_json::Value {
    let endpoints: Vec<serde_json::Value> = endpoints
        .iter()
        .map(|(address, hostname, ready)| {
            json!({"addresses": [address], "hostname": hostname, "conditions": {"ready": ready}})
        })
        .collect();
    json!({
        "metadata": {"name": slice_name, "namespace": namespace, "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": ports,
    })
}

/// A running resolver on 127.0.0.1 with the given upstreams; stops when the token is cancelled or dropped.
struct RunningResolver {
    address: SocketAddr,
    cancel: CancellationToken,
}

impl Drop for RunningResolver {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

async fn start_resolver(cluster: &FakeCluster, upstreams: Vec<SocketAddr>) -> RunningResolver {
    let mut config = DnsConfig::new(vec![(Ipv4Addr::LOCALHOST, 0).into()], upstreams);
    config.upstream_timeout = Duration::from_millis(300);
    let server = bind(config, cluster.view.clone()).await.expect("bind the resolver");
    let address = server.local_addrs()[0];
    let cancel = CancellationToken::new();
    tokio::spawn(server.run(cancel.clone()));
    RunningResolver { address, cancel }
}

fn query_message(name: &str, query_type: RecordType, edns_payload: Option<u16>) -> Message {
    let mut message = Message::query();
    message.metadata.recursion_desired = true;
    message.queries.push(Query::query(Name::from_ascii(name).expect("test name"), query_type));
    if let Some(payload) = edns_payload {
        let mut edns = Edns::new();
        edns.set_max_payload(payload);
        message.edns = Some(edns);
    }
    message
}

async fn ask_udp(server: SocketAddr, name: &str, query_type: RecordType, edns_payload: Option<u16>) -> Message {
    let query = query_message(name, query_type, edns_payload);
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.expect("client socket");
    socket.send_to(&query.to_vec().expect("encode query"), server).await.expect("send query");
    let mut buffer = vec![0; 65535];
    let (length, _) = tokio::time::timeout(ANSWER_DEADLINE, socket.recv_from(&mut buffer))
        .await
        .unwrap_or_else(|_| panic!("no udp answer for {name} {query_type} within {ANSWER_DEADLINE:?}"))
        .expect("receive answer");
    let answer = Message::from_vec(&buffer[..length]).expect("decode answer");
    assert_eq!(answer.metadata.id, query.metadata.id, "answer id matches the query");
    answer
}

async fn ask_tcp(server: SocketAddr, name: &str, query_type: RecordType) -> Message {
    let query = query_message(name, query_type, None).to_vec().expect("encode query");
    let exchange = async {
        let mut stream = TcpStream::connect(server).await?;
        stream.write_all(&u16::try_from(query.len()).expect("short query").to_be_bytes()).await?;
        stream.write_all(&query).await?;
        let length = stream.read_u16().await?;
        let mut answer = vec![0; usize::from(length)];
        stream.read_exact(&mut answer).await?;
        std::io::Result::Ok(answer)
    };
    let answer = tokio::time::timeout(ANSWER_DEADLINE, exchange)
        .await
        .unwrap_or_else(|_| panic!("no tcp answer for {name} {query_type} within {ANSWER_DEADLINE:?}"))
        .expect("tcp exchange");
    Message::from_vec(&answer).expect("decode answer")
}

fn addresses(records: &[Record]) -> Vec<IpAddr> {
    let mut addresses: Vec<IpAddr> = records
        .iter()
        .filter_map(|record| match &record.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(aaaa) => Some(IpAddr::V6(aaaa.0)),
            _ => None,
        })
        .collect();
    addresses.sort();
    addresses
}

fn ip(text: &str) -> IpAddr {
    text.parse().expect("test address")
}

/// SRV answers as (port, target), sorted.
fn service_locations(answer: &Message) -> Vec<(u16, String)> {
    let mut locations: Vec<(u16, String)> = answer
        .answers
        .iter()
        .filter_map(|record| match &record.data {
            RData::SRV(srv) => Some((srv.port, srv.target.to_ascii())),
            _ => None,
        })
        .collect();
    locations.sort();
    locations
}

fn has_zone_authority(answer: &Message) -> bool {
    answer.authorities.iter().any(|record| record.record_type() == RecordType::SOA)
}

#[tokio::test]
async fn cluster_ip_service_answers_a_srv_and_ptr() {
    let mut cluster = FakeCluster::new();
    cluster.apply_service(cluster_ip_service(
        "default",
        "web",
        "10.96.0.20",
        json!([{"name": "http", "port": 80, "protocol": "TCP"}, {"name": "dns", "port": 53, "protocol": "UDP"}]),
    ));
    cluster.apply_service(cluster_ip_service("default", "plain", "10.96.0.21", json!([{"port": 8080}])));
    let resolver = start_resolver(&cluster, vec![]).await;

    let answer = ask_udp(resolver.address, "web.default.svc.cluster.local.", RecordType::A, None).await;
    assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
    assert!(answer.metadata.authoritative);
    assert_eq!(addresses(&answer.answers), vec![ip("10.96.0.20")]);
    assert_eq!(answer.answers[0].ttl, CLUSTER_RECORD_TTL);

    let answer = ask_udp(resolver.address, "web.default.svc.cluster.local.", RecordType::AAAA, None).await;
    assert_eq!(answer.metadata.response_code, ResponseCode::NoError, "the name exists without IPv6 addresses");
    assert!(answer.answers.is_empty());
    assert!(has_zone_authority(&answer));

    let answer = ask_udp(resolver.address, "_http._tcp.web.default.svc.cluster.local.", RecordType::SRV, None).await;
    assert_eq!(service_locations(&answer), vec![(80, "web.default.svc.cluster.local.".to_owned())]);
    assert_eq!(addresses(&answer.additionals), vec![ip("10.96.0.20")], "the target's address rides along");
    let answer = ask_udp(resolver.address, "_dns._udp.web.default.svc.cluster.local.", RecordType::SRV, None).await;
    assert_eq!(service_locations(&answer), vec![(53, "web.default.svc.cluster.local.".to_owned())]);

    // Unnamed ports have no SRV records, and no name to ask under.
    let answer = ask_udp(resolver.address, "_http._tcp.plain.default.svc.cluster.local.", RecordType::SRV, None).await;
    assert_eq!(answer.metadata.response_code, ResponseCode::NXDomain);

    let answer = ask_udp(resolver.address, "20.0.96.10.in-addr.arpa.", RecordType::PTR, None).await;
    let targets: Vec<String> = answer
        .answers
        .iter()
        .filter_map(|record| match &record.data {
            RData::PTR(ptr) => Some(ptr.0.to_ascii()),
            _ => None,
        })
        .collect();
    assert_eq!(targets, vec!["web.default.svc.cluster.local.".to_owned()]);
}

#[tokio::test]
async fn headless_service_answers_ready_endpoints_and_their_hostnames() {
    let mut cluster = FakeCluster::new();
    cluster.apply_service(headless_service("default", "nginx"));
    cluster.apply_slice(endpoint_slice(
        "default",
        "nginx",
        "nginx-abc",
        &[
            ("10.244.0.5", Some("web-0"), Some(true)),
            ("10.244.0.6", Some("web-1"), Some(false)),
            ("10.244.0.7", None, None),
        ],
        json!([{"name": "web", "port": 8080, "protocol": "TCP"}]),
    ));
    // A slice of another Service with the same name in another namespace must not leak in.
    cluster.apply_slice(endpoint_slice(
        "other",
        "nginx",
        "nginx-xyz",
        &[("10.244.9.9", None, Some(true))],
        json!([{"name": "web", "port": 8080}]),
    ));
    let resolver = start_resolver(&cluster, vec![]).await;

    let answer = ask_udp(resolver.address, "nginx.default.svc.cluster.local.", RecordType::A, None).await;
    assert_eq!(
        addresses(&answer.answers),
        vec![ip("10.244.0.5"), ip("10.244.0.7")],
        "ready endpoints only; an endpoint without a ready condition counts as ready"
    );

    let answer = ask_udp(resolver.address, "web-0.nginx.default.svc.cluster.local.", RecordType::A, None).await;
    assert_eq!(addresses(&answer.answers), vec![ip("10.244.0.5")], "the StatefulSet pod's stable name");
    let answer = ask_udp(resolver.address, "web-1.nginx.default.svc.cluster.local.", RecordType::A, None).await;
    assert_eq!(answer.metadata.response_code, ResponseCode::NXDomain, "a pod that is not ready has no name");
    let answer = ask_udp(resolver.address, "10-244-0-7.nginx.default.svc.cluster.local.", RecordType::A, None).await;
    assert_eq!(addresses(&answer.answers), vec![ip("10.244.0.7")], "an endpoint without hostname by its address");

    let answer = ask_udp(resolver.address, "_web._tcp.nginx.default.svc.cluster.local.", RecordType::SRV, None).await;
    assert_eq!(
        service_locations(&answer),
        vec![
            (8080, "10-244-0-7.nginx.default.svc.cluster.local.".to_owned()),
            (8080, "web-0.nginx.default.svc.cluster.local.".to_owned()),
        ]
    );
    assert_eq!(addresses(&answer.additionals), vec![ip("10.244.0.5"), ip("10.244.0.7")]);

    let answer = ask_udp(resolver.address, "5.0.244.10.in-addr.arpa.", RecordType::PTR, None).await;
    assert!(
        matches!(&answer.answers[0].data, RData::PTR(ptr) if ptr.0.to_ascii() == "web-0.nginx.default.svc.cluster.local.")
    );
}

#[tokio::test]
async fn headless_service_without_ready_endpoints_does_not_exist() {
    let mut cluster = FakeCluster::new();
    cluster.apply_service(headless_service("default", "idle"));
    cluster.apply_slice(endpoint_slice(
        "default",
        "idle",
        "idle-abc",
        &[("10.244.0.8", Some("idle-0"), Some(false))],
        json!([{"name": "web", "port": 80}]),
    ));
    let resolver = start_resolver(&cluster, vec![]).await;
    let answer = ask_udp(resolver.address, "idle.default.svc.cluster.local.", RecordType::A, None).await;
    assert_eq!(answer.metadata.response_code, ResponseCode::NXDomain);
    assert!(has_zone_authority(&answer));
}

#[tokio::test]
async fn names_are_case_insensitive_and_missing_names_are_nxdomain() {
    let mut cluster = FakeCluster::new();
    cluster.apply_service(cluster_ip_service("default", "web", "10.96.0.20", json!([{"name": "http", "port": 80}])));
    let resolver = start_resolver(&cluster, vec![]).await;

    let answer = ask_udp(resolver.address, "WEB.Default.SVC.Cluster.LOCAL.", RecordType::A, None).await;
    assert_eq!(addresses(&answer.answers), vec![ip("10.96.0.20")]);
    assert_eq!(
        answer.queries[0].name().to_ascii(),
        "WEB.Default.SVC.Cluster.LOCAL.",
        "the question is echoed as asked"
    );

    let answer = ask_udp(resolver.address, "missing.default.svc.cluster.local.", RecordType::A, None).await;
    assert_eq!(answer.metadata.response_code, ResponseCode::NXDomain);
    assert!(has_zone_authority(&answer), "NXDOMAIN carries the zone's SOA so it can be cached");

    let answer = ask_udp(resolver.address, "default.svc.cluster.local.", RecordType::A, None).await;
    assert_eq!(answer.metadata.response_code, ResponseCode::NoError, "a namespace with Services exists");
    assert!(answer.answers.is_empty());

    let answer = ask_udp(resolver.address, "dns-version.cluster.local.", RecordType::TXT, None).await;
    assert!(matches!(&answer.answers[0].data, RData::TXT(text) if text.to_string() == SPECIFICATION_VERSION));
}

#[tokio::test]
async fn pod_names_resolve_to_the_address_they_spell() {
    let cluster = FakeCluster::new();
    let resolver = start_resolver(&cluster, vec![]).await;
    let answer = ask_udp(resolver.address, "10-244-1-7.default.pod.cluster.local.", RecordType::A, None).await;
    assert_eq!(addresses(&answer.answers), vec![ip("10.244.1.7")]);
    let answer = ask_udp(resolver.address, "fd00-10-244--7.default.pod.cluster.local.", RecordType::AAAA, None).await;
    assert_eq!(addresses(&answer.answers), vec![IpAddr::V6("fd00:10:244::7".parse::<Ipv6Addr>().unwrap())]);
    let answer = ask_udp(resolver.address, "not-an-address.default.pod.cluster.local.", RecordType::A, None).await;
    assert_eq!(answer.metadata.response_code, ResponseCode::NXDomain);
}

#[tokio::test]
async fn external_name_service_answers_a_cname() {
    let mut cluster = FakeCluster::new();
    cluster.apply_service(json!({
        "metadata": {"name": "db", "namespace": "prod"},
        "spec": {"type": "ExternalName", "externalName": "db.example.com"},
    }));
    let resolver = start_resolver(&cluster, vec![]).await;
    let answer = ask_udp(resolver.address, "db.prod.svc.cluster.local.", RecordType::A, None).await;
    assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
    assert!(matches!(&answer.answers[0].data, RData::CNAME(cname) if cname.0.to_ascii() == "db.example.com."));
}

#[tokio::test]
async fn external_name_is_followed_through_the_upstream() {
    let upstream = FakeUpstream::start().await;
    let mut cluster = FakeCluster::new();
    cluster.apply_service(json!({
        "metadata": {"name": "db", "namespace": "prod"},
        "spec": {"type": "ExternalName", "externalName": "db.example.com"},
    }));
    let resolver = start_resolver(&cluster, vec![upstream.address]).await;
    let answer = ask_udp(resolver.address, "db.prod.svc.cluster.local.", RecordType::A, None).await;
    assert!(matches!(&answer.answers[0].data, RData::CNAME(_)));
    assert_eq!(addresses(&answer.answers), vec![IpAddr::V4(FakeUpstream::ANSWER)]);
}

#[tokio::test]
async fn large_answers_are_truncated_over_udp_and_complete_over_tcp() {
    let mut cluster = FakeCluster::new();
    cluster.apply_service(headless_service("default", "many"));
    let endpoints: Vec<(String, Option<&str>, Option<bool>)> =
        (1..=100).map(|host| (format!("10.244.3.{host}"), None, Some(true))).collect();
    let endpoints: Vec<(&str, Option<&str>, Option<bool>)> =
        endpoints.iter().map(|(address, hostname, ready)| (address.as_str(), *hostname, *ready)).collect();
    cluster.apply_slice(endpoint_slice(
        "default",
        "many",
        "many-abc",
        &endpoints,
        json!([{"name": "web", "port": 80}]),
    ));
    let resolver = start_resolver(&cluster, vec![]).await;

    let answer = ask_udp(resolver.address, "many.default.svc.cluster.local.", RecordType::A, None).await;
    assert!(answer.metadata.truncation, "100 A records do not fit 512 bytes");
    assert!(answer.answers.is_empty());
    let answer = ask_udp(resolver.address, "many.default.svc.cluster.local.", RecordType::A, Some(4096)).await;
    assert!(answer.metadata.truncation, "nor the {MAX_UDP_PAYLOAD} bytes kaasd sends at most over UDP");

    let answer = ask_tcp(resolver.address, "many.default.svc.cluster.local.", RecordType::A).await;
    assert!(!answer.metadata.truncation);
    assert_eq!(answer.answers.len(), 100);
}

#[tokio::test]
async fn other_names_are_forwarded_upstream() {
    let upstream = FakeUpstream::start().await;
    let cluster = FakeCluster::new();
    let resolver = start_resolver(&cluster, vec![upstream.address]).await;

    let answer = ask_udp(resolver.address, "www.example.org.", RecordType::A, None).await;
    assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
    assert_eq!(addresses(&answer.answers), vec![IpAddr::V4(FakeUpstream::ANSWER)]);

    // An address outside the cluster has its PTR answered upstream too (the fake answers NXDOMAIN to it).
    let answer = ask_udp(resolver.address, "1.2.0.192.in-addr.arpa.", RecordType::PTR, None).await;
    assert_eq!(answer.metadata.response_code, ResponseCode::NXDomain);

    // A truncated upstream answer goes to a UDP client as it is, and is fetched whole over TCP for a TCP client.
    let answer = ask_udp(resolver.address, "big.example.org.", RecordType::A, None).await;
    assert!(answer.metadata.truncation);
    let answer = ask_tcp(resolver.address, "big.example.org.", RecordType::A).await;
    assert!(!answer.metadata.truncation);
    assert_eq!(answer.answers.len(), FakeUpstream::BIG_ANSWER_RECORDS);
}

#[tokio::test]
async fn dead_upstream_gives_servfail() {
    // A socket that is bound but never read: queries to it vanish, as to a nameserver that is down.
    let silent = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let cluster = FakeCluster::new();
    let resolver = start_resolver(&cluster, vec![silent.local_addr().unwrap()]).await;
    let answer = ask_udp(resolver.address, "www.example.org.", RecordType::A, None).await;
    assert_eq!(answer.metadata.response_code, ResponseCode::ServFail);

    let without_upstreams = start_resolver(&cluster, vec![]).await;
    let answer = ask_tcp(without_upstreams.address, "www.example.org.", RecordType::A).await;
    assert_eq!(answer.metadata.response_code, ResponseCode::ServFail);
}

#[tokio::test]
async fn changes_reach_the_index_and_the_last_index_outlives_the_watch() {
    let mut cluster = FakeCluster::new();
    let resolver = start_resolver(&cluster, vec![]).await;
    let answer = ask_udp(resolver.address, "late.default.svc.cluster.local.", RecordType::A, None).await;
    assert_eq!(answer.metadata.response_code, ResponseCode::NXDomain);

    cluster.apply_service(cluster_ip_service("default", "late", "10.96.0.30", json!([])));
    // The rebuild runs on its own task: poll until it lands, failing if it never does.
    let deadline = tokio::time::Instant::now() + ANSWER_DEADLINE;
    loop {
        let answer = ask_udp(resolver.address, "late.default.svc.cluster.local.", RecordType::A, None).await;
        if addresses(&answer.answers) == vec![ip("10.96.0.30")] {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the new Service never became resolvable");
        tokio::task::yield_now().await;
    }

    // The watch ending (the API unreachable for good) leaves the resolver answering from what it had.
    drop(cluster);
    let answer = ask_udp(resolver.address, "late.default.svc.cluster.local.", RecordType::A, None).await;
    assert_eq!(addresses(&answer.answers), vec![ip("10.96.0.30")]);
}

#[tokio::test]
async fn bind_names_the_address_it_could_not_take() {
    let taken = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let address = taken.local_addr().unwrap();
    let cluster = FakeCluster::new();
    let error = match bind(DnsConfig::new(vec![address], vec![]), cluster.view.clone()).await {
        Ok(_) => panic!("binding a taken port succeeded"),
        Err(error) => error,
    };
    assert_eq!(error.kind(), std::io::ErrorKind::AddrInUse);
    assert!(error.to_string().contains(&address.to_string()), "{error}");
}

#[test]
fn host_upstreams_reads_nameservers_and_skips_excluded_ones() {
    let resolv_conf = "# generated\nsearch example.internal\nnameserver 10.96.0.10\nnameserver 192.168.1.1\n\
                       nameserver fe80::1%eth0\nnameserver not-an-address\noptions ndots:5\nnameserver 192.168.1.1\n";
    let upstreams = host_upstreams(resolv_conf, &[ip("10.96.0.10")]);
    assert_eq!(
        upstreams,
        vec![SocketAddr::new(ip("192.168.1.1"), 53), SocketAddr::new(ip("fe80::1"), 53)],
        "the cluster DNS address is skipped, duplicates and junk dropped"
    );
}

/// A nameserver the test runs itself, on UDP and TCP of one port: `big.example.org` is too big for UDP (answered
/// truncated there, whole over TCP), `*.in-addr.arpa` is NXDOMAIN, anything else is one A record.
struct FakeUpstream {
    address: SocketAddr,
    cancel: CancellationToken,
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

impl FakeUpstream {
    const ANSWER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
    const BIG_ANSWER_RECORDS: usize = 60;

    async fn start() -> Self {
        let (udp, tcp) = bind_udp_and_tcp((Ipv4Addr::LOCALHOST, 0).into()).await.unwrap();
        let address = udp.local_addr().unwrap();
        let cancel = CancellationToken::new();
        let udp_cancel = cancel.clone();
        tokio::spawn(async move {
            let mut buffer = vec![0; 4096];
            loop {
                let received = tokio::select! {
                    () = udp_cancel.cancelled() => return,
                    received = udp.recv_from(&mut buffer) => received,
                };
                let Ok((length, client)) = received else { return };
                let answer = Self::answer(&buffer[..length], true);
                let _ = udp.send_to(&answer, client).await;
            }
        });
        let tcp_cancel = cancel.clone();
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    () = tcp_cancel.cancelled() => return,
                    accepted = tcp.accept() => accepted,
                };
                let Ok((mut stream, _)) = accepted else { return };
                tokio::spawn(async move {
                    let length = stream.read_u16().await?;
                    let mut query = vec![0; usize::from(length)];
                    stream.read_exact(&mut query).await?;
                    let answer = Self::answer(&query, false);
                    stream.write_all(&u16::try_from(answer.len()).unwrap().to_be_bytes()).await?;
                    stream.write_all(&answer).await?;
                    std::io::Result::Ok(())
                });
            }
        });
        FakeUpstream { address, cancel }
    }

    fn answer(query: &[u8], over_udp: bool) -> Vec<u8> {
        let query = Message::from_vec(query).expect("the resolver forwards well-formed queries");
        let mut answer = Message::response(query.metadata.id, query.metadata.op_code);
        answer.metadata.recursion_desired = query.metadata.recursion_desired;
        answer.metadata.recursion_available = true;
        answer.queries = query.queries.clone();
        let name = query.queries[0].name().clone();
        let name_text = name.to_ascii();
        if name_text.ends_with(".in-addr.arpa.") {
            answer.metadata.response_code = ResponseCode::NXDomain;
        } else if name_text == "big.example.org." {
            if over_udp {
                answer.metadata.truncation = true;
            } else {
                for host in 0..Self::BIG_ANSWER_RECORDS {
                    let address = Ipv4Addr::new(198, 51, 100, u8::try_from(host).unwrap());
                    answer.answers.push(Record::from_rdata(
                        name.clone(),
                        60,
                        RData::A(hickory_proto::rr::rdata::A(address)),
                    ));
                }
            }
        } else {
            answer.answers.push(Record::from_rdata(name, 60, RData::A(hickory_proto::rr::rdata::A(Self::ANSWER))));
        }
        answer.to_vec().unwrap()
    }
}
