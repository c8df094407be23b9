//! The cluster's DNS names, precomputed from the Service and EndpointSlice stores so a query is one hash lookup.
//!
//! The index is rebuilt whole after every change the watch reports: building it is one pass over the stores
//! (slices are grouped by Service first), which keeps it correct by construction instead of patching entries.

use std::collections::HashMap;
use std::net::IpAddr;

use hickory_proto::rr::rdata::SOA;
use hickory_proto::rr::{Name, RData, Record};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

use crate::network::services::SERVICE_NAME_LABEL;

/// Time to live of every record kaasd answers for the cluster zone, as CoreDNS's `ttl 30` in kubeadm's Corefile.
pub const CLUSTER_RECORD_TTL: u32 = 30;

/// What the resolver knows under one name of the cluster zone.
///
/// A name with nothing in it exists all the same (an empty non-terminal such as `<ns>.svc.<zone>` or
/// `_http._tcp.<svc>...`): queries for it get an empty answer, not NXDOMAIN, because names below it exist.
#[derive(Debug, Default)]
pub struct NameRecords {
    /// A and AAAA records: a Service's ClusterIPs, or a headless Service's ready endpoint addresses.
    pub addresses: Vec<IpAddr>,
    /// SRV records of a named port.
    pub service_locations: Vec<ServiceLocation>,
    /// The CNAME of an ExternalName Service.
    pub external_name: Option<Name>,
}

/// One SRV record's data.
#[derive(Debug, Clone)]
pub struct ServiceLocation {
    pub weight: u16,
    pub port: u16,
    pub target: Name,
}

/// Every name kaasd answers for the cluster zone, and the reverse (PTR) names of cluster addresses.
#[derive(Debug)]
pub struct ClusterIndex {
    /// The zone, lowercase and fully qualified (`cluster.local.`).
    pub zone: Name,
    /// The zone's SOA record, sent in the authority section of NXDOMAIN and empty answers.
    pub start_of_authority: Record,
    /// Lowercase fully qualified name → its records. `Name` hashes and compares case-insensitively, so a query's
    /// name is looked up as it arrives.
    pub names: HashMap<Name, NameRecords>,
    /// A ClusterIP or endpoint address → the names whose PTR records point at it.
    pub reverse: HashMap<IpAddr, Vec<Name>>,
}

impl ClusterIndex {
    /// An index with no Services: every name in the zone but the fixed ones is NXDOMAIN.
    pub fn empty(zone: &Name) -> Self {
        ClusterIndex {
            zone: zone.clone(),
            start_of_authority: start_of_authority(zone, 0),
            names: HashMap::new(),
            reverse: HashMap::new(),
        }
    }

    /// Builds the index of `services` and their `slices`. `serial` goes into the SOA so a change is visible in it.
    pub fn build(
        zone: &Name,
        services: &[std::sync::Arc<Service>],
        slices: &[std::sync::Arc<EndpointSlice>],
        serial: u32,
    ) -> Self {
        let mut index =
            ClusterIndex { start_of_authority: start_of_authority(zone, serial), ..ClusterIndex::empty(zone) };
        let mut slices_by_service: HashMap<(&str, &str), Vec<&EndpointSlice>> = HashMap::new();
        for slice in slices {
            let namespace = slice.metadata.namespace.as_deref();
            let service = slice.metadata.labels.as_ref().and_then(|labels| labels.get(SERVICE_NAME_LABEL));
            if let (Some(namespace), Some(service)) = (namespace, service) {
                slices_by_service.entry((namespace, service.as_str())).or_default().push(slice);
            }
        }
        for service in services {
            let (Some(name), Some(namespace)) =
                (service.metadata.name.as_deref(), service.metadata.namespace.as_deref())
            else {
                continue;
            };
            let Ok(service_name) = index.cluster_name(&format!("{name}.{namespace}.svc")) else {
                tracing::debug!(service.name = name, service.namespace = namespace, "service name is not a dns name");
                continue;
            };
            let slices = slices_by_service.get(&(namespace, name)).map(Vec::as_slice).unwrap_or_default();
            index.add_service(service, service_name, slices);
        }
        index.assign_service_location_weights();
        index
    }

    /// Parses `relative` (no trailing dot) as a name inside the zone, lowercased.
    fn cluster_name(&self, relative: &str) -> Result<Name, hickory_proto::ProtoError> {
        Name::from_ascii(relative)?.to_lowercase().append_domain(&self.zone)
    }

    fn add_service(&mut self, service: &Service, service_name: Name, slices: &[&EndpointSlice]) {
        let Some(spec) = service.spec.as_ref() else { return };
        if spec.type_.as_deref() == Some("ExternalName") {
            let Some(external) = spec.external_name.as_deref() else { return };
            // externalName is written without the trailing dot but always means an absolute name.
            match Name::from_ascii(external).map(|mut name| {
                name.set_fqdn(true);
                name
            }) {
                Ok(target) => self.records_at(&service_name).external_name = Some(target),
                Err(error) => {
                    tracing::debug!(external_name = external, error = %error, "externalName is not a dns name")
                }
            }
            return;
        }
        let cluster_ips: Vec<&str> = match (&spec.cluster_ips, &spec.cluster_ip) {
            (Some(ips), _) if !ips.is_empty() => ips.iter().map(String::as_str).collect(),
            (_, Some(ip)) => vec![ip.as_str()],
            _ => return,
        };
        if cluster_ips.contains(&"None") {
            self.add_headless_service(&service_name, slices);
            return;
        }
        let addresses: Vec<IpAddr> = cluster_ips.iter().filter_map(|ip| ip.parse().ok()).collect();
        if addresses.is_empty() {
            return;
        }
        for address in &addresses {
            self.reverse.entry(*address).or_default().push(service_name.clone());
        }
        self.records_at(&service_name).addresses = addresses;
        for port in spec.ports.iter().flatten() {
            let (Some(port_name), Ok(port_number)) = (port.name.as_deref(), u16::try_from(port.port)) else {
                continue;
            };
            let protocol = port.protocol.as_deref().unwrap_or("TCP");
            let Ok(location_name) = port_location_name(port_name, protocol, &service_name) else { continue };
            self.records_at(&location_name).service_locations.push(ServiceLocation {
                weight: 0,
                port: port_number,
                target: service_name.clone(),
            });
        }
    }

    /// A headless Service resolves to its ready endpoints; with none, its name does not exist (NXDOMAIN, as
    /// CoreDNS answers).
    fn add_headless_service(&mut self, service_name: &Name, slices: &[&EndpointSlice]) {
        for slice in slices {
            if slice.address_type == "FQDN" {
                continue;
            }
            for endpoint in &slice.endpoints {
                // An absent condition means ready: the EndpointSlice API says to read "unknown" as ready.
                let ready = endpoint.conditions.as_ref().and_then(|conditions| conditions.ready).unwrap_or(true);
                if !ready {
                    continue;
                }
                for address in endpoint.addresses.iter().filter_map(|address| address.parse::<IpAddr>().ok()) {
                    // Endpoints without a hostname are named by their address, dashed (CoreDNS does the same).
                    let label = match endpoint.hostname.as_deref() {
                        Some(hostname) => hostname.to_owned(),
                        None => address.to_string().replace(['.', ':'], "-"),
                    };
                    let Ok(endpoint_name) =
                        Name::from_ascii(&label).and_then(|label| label.to_lowercase().append_domain(service_name))
                    else {
                        continue;
                    };
                    push_unique(&mut self.records_at(service_name).addresses, address);
                    push_unique(&mut self.records_at(&endpoint_name).addresses, address);
                    let pointers = self.reverse.entry(address).or_default();
                    if !pointers.contains(&endpoint_name) {
                        pointers.push(endpoint_name.clone());
                    }
                    for port in slice.ports.iter().flatten() {
                        let (Some(port_name), Some(Ok(port_number))) =
                            (port.name.as_deref(), port.port.map(u16::try_from))
                        else {
                            continue;
                        };
                        if port_name.is_empty() {
                            continue;
                        }
                        let protocol = port.protocol.as_deref().unwrap_or("TCP");
                        let Ok(location_name) = port_location_name(port_name, protocol, service_name) else {
                            continue;
                        };
                        let locations = &mut self.records_at(&location_name).service_locations;
                        if !locations.iter().any(|known| known.port == port_number && known.target == endpoint_name) {
                            locations.push(ServiceLocation {
                                weight: 0,
                                port: port_number,
                                target: endpoint_name.clone(),
                            });
                        }
                    }
                }
            }
        }
    }

    /// The records at `name`, created with every name between it and the zone so those answer "no data" rather
    /// than "no such name".
    fn records_at(&mut self, name: &Name) -> &mut NameRecords {
        if !self.names.contains_key(name) {
            let mut ancestor = name.base_name();
            while self.zone.zone_of(&ancestor) && ancestor.num_labels() > self.zone.num_labels() {
                self.names.entry(ancestor.clone()).or_default();
                ancestor = ancestor.base_name();
            }
        }
        self.names.entry(name.clone()).or_default()
    }

    /// SRV weights split 100 evenly across the records of a name, as CoreDNS does, so clients spread their choice.
    fn assign_service_location_weights(&mut self) {
        for records in self.names.values_mut() {
            let count = records.service_locations.len();
            if count == 0 {
                continue;
            }
            let weight = u16::try_from((100 / count).max(1)).unwrap_or(1);
            for location in &mut records.service_locations {
                location.weight = weight;
            }
        }
    }
}

/// `_<port>._<protocol>.<service name>`, the owner of a named port's SRV records.
fn port_location_name(port_name: &str, protocol: &str, service_name: &Name) -> Result<Name, hickory_proto::ProtoError> {
    Name::from_ascii(format!("_{port_name}._{protocol}"))?.to_lowercase().append_domain(service_name)
}

fn push_unique(addresses: &mut Vec<IpAddr>, address: IpAddr) {
    if !addresses.contains(&address) {
        addresses.push(address);
    }
}

/// The zone's SOA, with the values CoreDNS uses for its `kubernetes` zone.
fn start_of_authority(zone: &Name, serial: u32) -> Record {
    let name_server =
        Name::from_ascii("ns.dns").and_then(|name| name.append_domain(zone)).unwrap_or_else(|_| zone.clone());
    let mailbox =
        Name::from_ascii("hostmaster").and_then(|name| name.append_domain(zone)).unwrap_or_else(|_| zone.clone());
    Record::from_rdata(
        zone.clone(),
        CLUSTER_RECORD_TTL,
        RData::SOA(SOA::new(name_server, mailbox, serial, 7200, 1800, 86400, CLUSTER_RECORD_TTL)),
    )
}
