//! Turning one query into one answer: from the cluster index, or from the upstream nameservers.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, RwLock};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, PTR, SRV, TXT};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

use super::index::{ClusterIndex, NameRecords, CLUSTER_RECORD_TTL};
use super::upstream::Upstreams;

/// The version of the Kubernetes DNS specification kaasd follows, answered at `dns-version.<zone>`.
pub const SPECIFICATION_VERSION: &str = "1.1.0";

/// The UDP payload kaasd advertises and never exceeds, whatever larger size a client offers: 1232 bytes fits one
/// IPv6 packet without fragmentation (the DNS flag day 2020 recommendation), so big answers move to TCP instead of
/// to fragments that some networks drop.
pub const MAX_UDP_PAYLOAD: u16 = 1232;

/// Queries waiting on an upstream at once, at most (CoreDNS's `forward` has the same default). Each holds a socket
/// for up to the upstream timeout, so a flood of queries for outside names while the upstream is down would
/// otherwise run the worker out of file descriptors; past the limit a query gets SERVFAIL at once.
pub const MAX_CONCURRENT_FORWARDS: usize = 1000;

/// A DNS message without EDNS may not exceed 512 bytes over UDP (RFC 1035).
const CLASSIC_UDP_PAYLOAD: u16 = 512;

/// How the query arrived, which bounds the answer's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

/// What a query needs: an answer now, or a trip to the upstreams first.
pub enum Plan {
    /// The encoded answer.
    Reply(Vec<u8>),
    /// Not a query kaasd answers at all (a response, or too short for a header): drop it.
    Ignore,
    /// A name outside the cluster: relay the query as it came.
    Forward { request: Message, max_size: usize },
    /// An ExternalName Service: the CNAME is in `response`; the target's records come from upstream.
    FollowExternalName { response: Message, target: Name, query_type: RecordType, max_size: usize },
}

/// The node resolver's state: the current index, swapped whole on every rebuild, and the upstreams.
pub struct Resolver {
    pub zone: Name,
    index: RwLock<Arc<ClusterIndex>>,
    pub upstreams: Upstreams,
    forwarding_slots: tokio::sync::Semaphore,
}

impl Resolver {
    pub fn new(zone: Name, index: ClusterIndex, upstreams: Upstreams) -> Self {
        Resolver {
            zone,
            index: RwLock::new(Arc::new(index)),
            upstreams,
            forwarding_slots: tokio::sync::Semaphore::new(MAX_CONCURRENT_FORWARDS),
        }
    }

    /// Installs a rebuilt index; queries already running finish on the one they started with.
    pub fn replace_index(&self, index: ClusterIndex) {
        let index = Arc::new(index);
        *self.index.write().unwrap_or_else(std::sync::PoisonError::into_inner) = index;
    }

    fn current_index(&self) -> Arc<ClusterIndex> {
        self.index.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Answers `request_bytes` completely, going upstream when the plan says so.
    pub async fn respond(&self, request_bytes: &[u8], transport: Transport) -> Option<Vec<u8>> {
        match self.plan(request_bytes, transport) {
            Plan::Reply(answer) => Some(answer),
            Plan::Ignore => None,
            plan => Some(self.complete(plan, request_bytes, transport).await),
        }
    }

    /// Decides what `request_bytes` needs, answering on the spot everything the index knows.
    pub fn plan(&self, request_bytes: &[u8], transport: Transport) -> Plan {
        let request = match Message::from_vec(request_bytes) {
            Ok(request) => request,
            Err(_) => return format_error(request_bytes),
        };
        if request.metadata.message_type != MessageType::Query {
            return Plan::Ignore;
        }
        let max_size = answer_size_limit(&request, transport);
        if request.metadata.op_code != OpCode::Query {
            return Plan::Reply(encode(error_response(&request, ResponseCode::NotImp), max_size));
        }
        let [query] = request.queries.as_slice() else {
            return Plan::Reply(encode(error_response(&request, ResponseCode::FormErr), max_size));
        };
        if query.query_class() != DNSClass::IN {
            return Plan::Forward { request, max_size };
        }
        let index = self.current_index();
        if index.zone.zone_of(query.name()) {
            let mut response = response_to(&request);
            response.metadata.authoritative = true;
            if let Some(target) = answer_in_zone(&index, query, &mut response) {
                if query.query_type() != RecordType::CNAME && !self.upstreams.servers.is_empty() {
                    let query_type = query.query_type();
                    return Plan::FollowExternalName { response, target, query_type, max_size };
                }
            }
            return Plan::Reply(encode(response, max_size));
        }
        if query.query_type() == RecordType::PTR {
            if let Some(names) = reverse_address(query.name()).and_then(|address| index.reverse.get(&address)) {
                let mut response = response_to(&request);
                response.metadata.authoritative = true;
                for target in names {
                    response.answers.push(Record::from_rdata(
                        query.name().clone(),
                        CLUSTER_RECORD_TTL,
                        RData::PTR(PTR(target.clone())),
                    ));
                }
                return Plan::Reply(encode(response, max_size));
            }
        }
        Plan::Forward { request, max_size }
    }

    /// Finishes a plan that needs the upstreams. Failure to reach them is SERVFAIL, never silence.
    pub async fn complete(&self, plan: Plan, request_bytes: &[u8], transport: Transport) -> Vec<u8> {
        let Ok(_forwarding_slot) = self.forwarding_slots.try_acquire() else {
            tracing::debug!(
                limit = MAX_CONCURRENT_FORWARDS,
                "too many queries waiting on upstreams; answering SERVFAIL"
            );
            return match plan {
                Plan::Reply(answer) => answer,
                Plan::Ignore => Vec::new(),
                Plan::Forward { request, max_size } => {
                    encode(error_response(&request, ResponseCode::ServFail), max_size)
                }
                // The CNAME alone is a correct answer; only the convenience of following it is skipped.
                Plan::FollowExternalName { response, max_size, .. } => encode(response, max_size),
            };
        };
        match plan {
            Plan::Reply(answer) => answer,
            Plan::Ignore => Vec::new(),
            Plan::Forward { request, max_size } => {
                match self.upstreams.exchange(request_bytes, transport == Transport::Tcp).await {
                    Ok(answer) if answer.len() <= max_size => answer,
                    // Only after a retry over TCP for a TCP client can this be too long, and then max_size is the
                    // TCP limit; kept for safety: never send a UDP datagram the client said it cannot take.
                    Ok(answer) => match Message::from_vec(&answer) {
                        Ok(answer) => encode(answer, max_size),
                        Err(_) => encode(error_response(&request, ResponseCode::ServFail), max_size),
                    },
                    Err(error) => {
                        tracing::debug!(error = %error, "forwarding a query upstream failed");
                        encode(error_response(&request, ResponseCode::ServFail), max_size)
                    }
                }
            }
            Plan::FollowExternalName { mut response, target, query_type, max_size } => {
                let mut query = Message::query();
                query.metadata.recursion_desired = true;
                query.queries.push(Query::query(target, query_type));
                let followed = match query.to_vec() {
                    Ok(bytes) => self.upstreams.exchange(&bytes, true).await.ok(),
                    Err(_) => None,
                };
                // The CNAME alone is still a correct answer (the client's resolver can chase it), so an upstream
                // failure here costs nothing but a round trip.
                if let Some(followed) = followed.and_then(|bytes| Message::from_vec(&bytes).ok()) {
                    response.answers.extend(followed.answers);
                    response.metadata.authoritative = false;
                }
                encode(response, max_size)
            }
        }
    }
}

/// Fills `response` for a name inside the zone. Returns the ExternalName target to follow, if any.
fn answer_in_zone(index: &ClusterIndex, query: &Query, response: &mut Message) -> Option<Name> {
    let name = query.name();
    let query_type = query.query_type();
    let relative_labels = usize::from(name.num_labels() - index.zone.num_labels());
    let labels: Vec<&[u8]> = name.iter().take(relative_labels).collect();

    if relative_labels == 0 {
        if matches!(query_type, RecordType::SOA | RecordType::ANY) {
            response.answers.push(index.start_of_authority.clone());
        } else {
            response.authorities.push(index.start_of_authority.clone());
        }
        return None;
    }
    if let [label] = labels.as_slice() {
        if label.eq_ignore_ascii_case(b"dns-version") {
            if matches!(query_type, RecordType::TXT | RecordType::ANY) {
                let text = TXT::new(vec![SPECIFICATION_VERSION.to_owned()]);
                response.answers.push(Record::from_rdata(name.clone(), CLUSTER_RECORD_TTL, RData::TXT(text)));
            } else {
                response.authorities.push(index.start_of_authority.clone());
            }
            return None;
        }
    }
    if labels.last().is_some_and(|label| label.eq_ignore_ascii_case(b"pod")) {
        answer_pod_name(index, name, &labels, query_type, response);
        return None;
    }
    let Some(records) = index.names.get(name) else {
        no_such_name(index, response);
        return None;
    };
    if let Some(target) = &records.external_name {
        let cname = RData::CNAME(CNAME(target.clone()));
        response.answers.push(Record::from_rdata(name.clone(), CLUSTER_RECORD_TTL, cname));
        if query_type == RecordType::CNAME {
            return None;
        }
        // A target inside the cluster zone is answered here; anything else is the upstreams' to answer.
        if index.zone.zone_of(target) {
            if let Some(target_records) = index.names.get(target) {
                push_addresses(target, target_records, query_type, &mut response.answers);
            }
            return None;
        }
        return Some(target.clone());
    }
    push_addresses(name, records, query_type, &mut response.answers);
    if matches!(query_type, RecordType::SRV | RecordType::ANY) {
        for location in &records.service_locations {
            let srv = SRV::new(0, location.weight, location.port, location.target.clone());
            response.answers.push(Record::from_rdata(name.clone(), CLUSTER_RECORD_TTL, RData::SRV(srv)));
            // The targets' addresses ride along, as CoreDNS sends them, so a client needs no second query.
            if let Some(target_records) = index.names.get(&location.target) {
                push_addresses(&location.target, target_records, RecordType::ANY, &mut response.additionals);
            }
        }
    }
    if response.answers.is_empty() {
        response.authorities.push(index.start_of_authority.clone());
    }
    None
}

/// `a-b-c-d.<namespace>.pod.<zone>` resolves to a.b.c.d without checking that such a pod exists (CoreDNS's
/// `pods insecure`, what kubeadm configures); `pod.<zone>` and `<namespace>.pod.<zone>` exist but hold nothing.
fn answer_pod_name(
    index: &ClusterIndex,
    name: &Name,
    labels: &[&[u8]],
    query_type: RecordType,
    response: &mut Message,
) {
    match labels {
        [_pod] | [_, _pod] => response.authorities.push(index.start_of_authority.clone()),
        [dashed, _namespace, _pod] => {
            let Some(address) = pod_address(dashed) else {
                no_such_name(index, response);
                return;
            };
            let data = match (address, query_type) {
                (IpAddr::V4(v4), RecordType::A | RecordType::ANY) => Some(RData::A(A(v4))),
                (IpAddr::V6(v6), RecordType::AAAA | RecordType::ANY) => Some(RData::AAAA(AAAA(v6))),
                _ => None,
            };
            match data {
                Some(data) => response.answers.push(Record::from_rdata(name.clone(), CLUSTER_RECORD_TTL, data)),
                None => response.authorities.push(index.start_of_authority.clone()),
            }
        }
        _ => no_such_name(index, response),
    }
}

/// The address a pod name's first label spells with dashes: `10-1-2-3`, or `fd00--5` for IPv6.
fn pod_address(dashed: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(dashed).ok()?;
    if let Ok(v4) = text.replace('-', ".").parse::<Ipv4Addr>() {
        return Some(IpAddr::V4(v4));
    }
    text.replace('-', ":").parse::<Ipv6Addr>().ok().map(IpAddr::V6)
}

fn push_addresses(owner: &Name, records: &NameRecords, query_type: RecordType, into: &mut Vec<Record>) {
    for address in &records.addresses {
        let data = match (address, query_type) {
            (IpAddr::V4(v4), RecordType::A | RecordType::ANY) => RData::A(A(*v4)),
            (IpAddr::V6(v6), RecordType::AAAA | RecordType::ANY) => RData::AAAA(AAAA(*v6)),
            _ => continue,
        };
        into.push(Record::from_rdata(owner.clone(), CLUSTER_RECORD_TTL, data));
    }
}

fn no_such_name(index: &ClusterIndex, response: &mut Message) {
    response.metadata.response_code = ResponseCode::NXDomain;
    response.authorities.push(index.start_of_authority.clone());
}

/// The address a full reverse name (`4.3.2.1.in-addr.arpa.`, 32 nibbles under `ip6.arpa.`) stands for.
fn reverse_address(name: &Name) -> Option<IpAddr> {
    let network = name.parse_arpa_name().ok()?;
    let full_length = match network.addr() {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    };
    (network.prefix_len() == full_length).then(|| network.addr())
}

/// A response to `request` with its question, id and RD/CD bits, and an EDNS record if the client sent one.
fn response_to(request: &Message) -> Message {
    let mut response = Message::response(request.metadata.id, request.metadata.op_code);
    response.metadata.recursion_desired = request.metadata.recursion_desired;
    response.metadata.checking_disabled = request.metadata.checking_disabled;
    response.metadata.recursion_available = true;
    response.queries = request.queries.clone();
    if request.edns.is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(MAX_UDP_PAYLOAD);
        response.edns = Some(edns);
    }
    response
}

fn error_response(request: &Message, code: ResponseCode) -> Message {
    let mut response = response_to(request);
    response.metadata.response_code = code;
    response
}

/// FORMERR for a message that does not decode, if at least its header does, so the client stops waiting.
fn format_error(request_bytes: &[u8]) -> Plan {
    if request_bytes.len() < 12 || request_bytes[2] & 0x80 != 0 {
        return Plan::Ignore;
    }
    let id = u16::from_be_bytes([request_bytes[0], request_bytes[1]]);
    let response = Message::error_msg(id, OpCode::Query, ResponseCode::FormErr);
    Plan::Reply(encode(response, usize::from(CLASSIC_UDP_PAYLOAD)))
}

/// The largest answer the client can take: anything over TCP, over UDP what its EDNS record offers (512 bytes
/// without one), but never more than kaasd advertises.
fn answer_size_limit(request: &Message, transport: Transport) -> usize {
    match transport {
        Transport::Tcp => usize::from(u16::MAX),
        Transport::Udp => {
            let offered = request.edns.as_ref().map_or(CLASSIC_UDP_PAYLOAD, Edns::max_payload);
            usize::from(offered.clamp(CLASSIC_UDP_PAYLOAD, MAX_UDP_PAYLOAD))
        }
    }
}

/// Encodes `response`; one that does not fit `max_size` goes out as its header and question with TC set, which
/// tells the client to ask again over TCP.
fn encode(response: Message, max_size: usize) -> Vec<u8> {
    match response.to_vec() {
        Ok(bytes) if bytes.len() <= max_size => bytes,
        Ok(_) => response.truncate().to_vec().unwrap_or_default(),
        Err(error) => {
            tracing::debug!(error = %error, "encoding a dns answer failed");
            let mut failure =
                Message::error_msg(response.metadata.id, response.metadata.op_code, ResponseCode::ServFail);
            failure.queries = response.queries;
            failure.to_vec().unwrap_or_default()
        }
    }
}
