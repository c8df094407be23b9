//! One cluster-wide watch of Services and EndpointSlices, shared by the Service proxy and the DNS resolver, so a
//! node holds one copy of them however many readers it has.

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Api;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// The label an EndpointSlice names its Service by.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// What the node knows of Services and their endpoints. Cheap to clone; every clone reads the same stores.
#[derive(Clone)]
pub struct ServiceView {
    pub services: Store<Service>,
    pub slices: Store<EndpointSlice>,
    /// Bumped after every change to either store, so readers that rebuild state (the proxy) can wait for one.
    pub generation: watch::Receiver<u64>,
}

impl ServiceView {
    /// Starts both watches; they run until `cancel`.
    pub fn start(client: kube::Client, cancel: &CancellationToken) -> Self {
        let (bump, generation) = watch::channel(0u64);
        let (services, services_writer) = reflector::store();
        let (slices, slices_writer) = reflector::store();
        let service_stream = reflector::reflector(
            services_writer,
            watcher(Api::<Service>::all(client.clone()), watcher::Config::default()),
        )
        .default_backoff()
        .touched_objects()
        .map(|event| event.map(|_| ()));
        let slice_stream =
            reflector::reflector(slices_writer, watcher(Api::<EndpointSlice>::all(client), watcher::Config::default()))
                .default_backoff()
                .touched_objects()
                .map(|event| event.map(|_| ()));
        let cancel = cancel.clone();
        tokio::spawn(async move {
            let events = futures::stream::select(service_stream, slice_stream);
            futures::pin_mut!(events);
            loop {
                tokio::select! {
                    () = cancel.cancelled() => return,
                    event = events.next() => match event {
                        Some(Ok(())) => bump.send_modify(|generation| *generation += 1),
                        Some(Err(error)) => {
                            tracing::warn!(error = %error, "watching Services or EndpointSlices failed; retrying");
                        }
                        None => return,
                    },
                }
            }
        });
        ServiceView { services, slices, generation }
    }

    /// Waits until both stores hold a full list (or `limit` passes); false if they do not yet.
    pub async fn wait_until_ready(&self, limit: Duration) -> bool {
        let both = async {
            let _ = self.services.wait_until_ready().await;
            let _ = self.slices.wait_until_ready().await;
        };
        tokio::time::timeout(limit, both).await.is_ok()
    }

    /// The address of the cluster DNS Service (`kube-system/kube-dns`, which the controller creates), if known.
    pub fn cluster_dns_address(&self) -> Option<std::net::Ipv4Addr> {
        let service = self.services.get(&ObjectRef::new("kube-dns").within("kube-system"))?;
        service.spec.as_ref()?.cluster_ip.as_deref()?.parse().ok()
    }
}
