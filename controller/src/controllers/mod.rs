//! The controllers the API itself needs: namespace deletion, garbage collection by ownerReferences, the
//! per-namespace `default` ServiceAccount and `kube-root-ca.crt` ConfigMap, expired bootstrap tokens, node client
//! certificates (approve and sign), and closing the tunnels of removed nodes.
//!
//! They are ordinary API clients (kube-rs over loopback, as `system:kube-controller-manager` in
//! `system:masters`), never readers of the datastore, so they exercise the API the way any controller does and
//! could run in any replica.

mod bootstrap_tokens;
pub mod certificates;
mod cron;
mod cronjob;
mod daemonset;
mod deployment;
pub(crate) mod disruption;
mod endpoints;
pub(crate) mod events;
mod expectations;
mod garbage_collector;
pub(crate) mod informer;
mod job;
mod leader;
pub(crate) mod local_path;
mod namespaces;
mod node_ipam;
mod node_lifecycle;
mod pod_gc;
pub(crate) mod queue;
mod replicaset;
mod resource_quota;
mod revisions;
mod service_accounts;
mod statefulset;
pub(crate) mod volume_binder;

use std::sync::Arc;

use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod, ReplicationController, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{ApiResource, DynamicObject};
use kube::runtime::watcher;
use kube::Api;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::apiserver::registry::ResourceDef;
use crate::apiserver::ApiServer;
use crate::Ipv4Cidr;
use informer::Informer;

/// What the controllers need to know of the cluster's configuration.
pub struct Settings {
    pub cluster_cidr: Ipv4Cidr,
    /// This replica's name in leader Leases: stable across restarts of one replica (so a restarted replica takes
    /// its Lease back at once instead of waiting for it to expire) and different between live replicas.
    pub identity: String,
    /// Where local-path volumes live on the nodes.
    pub local_path_dir: std::path::PathBuf,
}

/// The caches both the scheduler and the controller manager read. They are listed and watched for the life of the
/// process, leader or not (as kube-scheduler's are), so a replica that leads both groups holds one copy of each
/// pod and node, and a replica that takes over starts with them warm. Each group reads them through its own
/// [`Informer::reader`].
pub(crate) struct SharedCaches {
    pub pods: Arc<Informer<Pod>>,
    pub nodes: Arc<Informer<Node>>,
}

/// What the shared pod cache keeps of a pod's volumes: only those backed by claims, `persistentVolumeClaim` (which
/// the scheduler's VolumeBinding reads) and `ephemeral`; nothing in the controllers or the scheduler reads the others. The rest is
/// most of a cached pod: k8s-openapi's `Volume` holds every volume source inline (about 3.2 KB each, before what
/// the source itself allocates), and nearly every pod has the projected `kube-api-access` volume. No reader
/// writes a pod back whole from the cache (pods are patched, bound and deleted), so nothing dropped here is lost.
fn slim_pod(pod: &mut Pod) {
    let Some(spec) = pod.spec.as_mut() else { return };
    if let Some(volumes) = spec.volumes.as_mut() {
        volumes.retain(|volume| volume.persistent_volume_claim.is_some() || volume.ephemeral.is_some());
        volumes.shrink_to_fit();
    }
    if spec.volumes.as_ref().is_some_and(Vec::is_empty) {
        spec.volumes = None;
    }
}

/// A reconcile that did not finish; its key is retried with back-off.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(transparent)]
    Api(#[from] kube::Error),
    #[error("{0}")]
    Other(String),
}

/// Starts every controller and the scheduler on `tasks`; they stop at `cancel`. The scheduler runs only in the
/// replica that holds the `kube-scheduler` Lease, most controllers in the one that holds `kube-controller-manager`; closing the tunnels of removed nodes runs in every replica (each holds its own
/// tunnels).
pub fn spawn_all(
    client: kube::Client,
    api: Arc<ApiServer>,
    pki: kaasd_tunnel::pki::ClusterPki,
    settings: Settings,
    cancel: CancellationToken,
    tasks: &TaskTracker,
) {
    tasks.spawn(supervise("node-revocations", cancel.clone(), crate::tunnels::follow_revocations(api.clone())));
    let caches = Arc::new(SharedCaches {
        pods: Informer::slimmed(Api::all(client.clone()), watcher::Config::default(), slim_pod),
        nodes: Informer::new(Api::all(client.clone()), watcher::Config::default()),
    });
    caches.pods.start(cancel.clone(), tasks);
    caches.nodes.start(cancel.clone(), tasks);
    let election = leader::Election::new(client.clone(), "kube-scheduler", settings.identity.clone());
    let (scheduler_client, scheduler_caches) = (client.clone(), caches.clone());
    tasks.spawn(election.run(cancel.clone(), move |leading| {
        crate::scheduler::run(scheduler_client.clone(), scheduler_caches.clone(), leading)
    }));
    let election = leader::Election::new(client.clone(), "kube-controller-manager", settings.identity.clone());
    let settings = Arc::new(settings);
    tasks.spawn(election.run(cancel, move |leading| {
        let (client, api, pki, settings, caches) =
            (client.clone(), api.clone(), pki.clone(), settings.clone(), caches.clone());
        async move {
            let group = TaskTracker::new();
            controller_manager(client, api, pki, &settings, &caches, leading.clone(), &group);
            group.close();
            leading.cancelled().await;
            group.wait().await;
        }
    }));
}

/// The controllers of the `kube-controller-manager` group, started when this replica becomes its leader.
fn controller_manager(
    client: kube::Client,
    api: Arc<ApiServer>,
    pki: kaasd_tunnel::pki::ClusterPki,
    settings: &Settings,
    caches: &SharedCaches,
    cancel: CancellationToken,
    tasks: &TaskTracker,
) {
    let ca_pem = pki.ca.cert_pem.clone();
    tasks.spawn(supervise("namespace", cancel.clone(), namespaces::run(client.clone(), api.clone())));
    tasks.spawn(supervise("garbage-collector", cancel.clone(), garbage_collector::run(client.clone(), api.clone())));
    tasks.spawn(supervise("service-account", cancel.clone(), service_accounts::run(client.clone(), ca_pem)));
    tasks.spawn(supervise("bootstrap-token-cleaner", cancel.clone(), bootstrap_tokens::run(client.clone())));
    tasks.spawn(supervise("node-certificates", cancel.clone(), certificates::run(client.clone(), pki)));
    tasks.spawn(supervise("resourcequota", cancel.clone(), resource_quota::run(client.clone(), api.clone())));

    // One cache per kind for all the controllers of this group; handlers are registered before the caches start.
    let nodes = caches.nodes.reader();
    let pods = caches.pods.reader();
    let replica_sets: Arc<Informer<ReplicaSet>> = Informer::new(Api::all(client.clone()), watcher::Config::default());
    let replication_controllers: Arc<Informer<ReplicationController>> =
        Informer::new(Api::all(client.clone()), watcher::Config::default());
    let deployments: Arc<Informer<Deployment>> = Informer::new(Api::all(client.clone()), watcher::Config::default());
    let jobs: Arc<Informer<Job>> = Informer::new(Api::all(client.clone()), watcher::Config::default());
    let services: Arc<Informer<Service>> = Informer::new(Api::all(client.clone()), watcher::Config::default());
    let slices: Arc<Informer<EndpointSlice>> = Informer::new(Api::all(client.clone()), watcher::Config::default());
    let daemon_sets: Arc<Informer<DaemonSet>> = Informer::new(Api::all(client.clone()), watcher::Config::default());
    let node_leases: Arc<Informer<Lease>> =
        Informer::new(Api::namespaced(client.clone(), node_lifecycle::LEASE_NAMESPACE), watcher::Config::default());
    let cron_jobs: Arc<Informer<CronJob>> = Informer::new(Api::all(client.clone()), watcher::Config::default());
    let stateful_sets: Arc<Informer<StatefulSet>> = Informer::new(Api::all(client.clone()), watcher::Config::default());
    let revisions: Arc<Informer<ControllerRevision>> =
        Informer::new(Api::all(client.clone()), watcher::Config::default());
    let claims: Arc<Informer<PersistentVolumeClaim>> =
        Informer::new(Api::all(client.clone()), watcher::Config::default());
    let volumes: Arc<Informer<PersistentVolume>> = Informer::new(Api::all(client.clone()), watcher::Config::default());
    let classes: Arc<Informer<StorageClass>> = Informer::new(Api::all(client.clone()), watcher::Config::default());
    let budgets: Arc<Informer<PodDisruptionBudget>> =
        Informer::new(Api::all(client.clone()), watcher::Config::default());

    let ipam = node_ipam::NodeIpam::new(client.clone(), nodes.clone(), settings.cluster_cidr);
    tasks.spawn(supervise("node-ipam", cancel.clone(), ipam.run()));
    let replica_set_controller =
        replicaset::ReplicaSetController::new(client.clone(), replica_sets.clone(), pods.clone());
    tasks.spawn(supervise("replicaset", cancel.clone(), replica_set_controller.run()));
    let replication_controller =
        replicaset::ReplicaSetController::new(client.clone(), replication_controllers.clone(), pods.clone());
    tasks.spawn(supervise("replicationcontroller", cancel.clone(), replication_controller.run()));
    let deployment_controller =
        deployment::DeploymentController::new(client.clone(), deployments.clone(), replica_sets.clone(), pods.clone());
    tasks.spawn(supervise("deployment", cancel.clone(), deployment_controller.run()));
    let job_controller = job::JobController::new(client.clone(), jobs.clone(), pods.clone());
    tasks.spawn(supervise("job", cancel.clone(), job_controller.run()));
    let endpoints_controller =
        endpoints::EndpointsController::new(client.clone(), services.clone(), pods.clone(), slices.clone());
    tasks.spawn(supervise("endpoints", cancel.clone(), endpoints_controller.run()));
    let daemon_set_controller = daemonset::DaemonSetController::new(
        client.clone(),
        daemon_sets.clone(),
        nodes.clone(),
        pods.clone(),
        revisions.clone(),
    );
    tasks.spawn(supervise("daemonset", cancel.clone(), daemon_set_controller.run()));
    let stateful_set_controller =
        statefulset::StatefulSetController::new(client.clone(), stateful_sets.clone(), pods.clone(), revisions.clone());
    tasks.spawn(supervise("statefulset", cancel.clone(), stateful_set_controller.run()));
    let node_lifecycle_controller =
        node_lifecycle::NodeLifecycleController::new(client.clone(), nodes.clone(), pods.clone(), node_leases.clone());
    tasks.spawn(supervise("node-lifecycle", cancel.clone(), node_lifecycle_controller.run()));
    let pod_garbage_collector = pod_gc::PodGarbageCollector::new(client.clone(), nodes.clone(), pods.clone());
    tasks.spawn(supervise("pod-garbage-collector", cancel.clone(), pod_garbage_collector.run()));
    let cron_job_controller = cronjob::CronJobController::new(client.clone(), cron_jobs.clone(), jobs.clone());
    tasks.spawn(supervise("cronjob", cancel.clone(), cron_job_controller.run()));
    let volume_binder = volume_binder::VolumeBinder::new(
        client.clone(),
        claims.clone(),
        volumes.clone(),
        classes.clone(),
        nodes.clone(),
        settings.local_path_dir.clone(),
    );
    tasks.spawn(supervise("persistentvolume-binder", cancel.clone(), volume_binder.run()));
    let owners = disruption::Owners {
        replica_sets: replica_sets.clone(),
        deployments: deployments.clone(),
        stateful_sets: stateful_sets.clone(),
        replication_controllers: replication_controllers.clone(),
    };
    let disruption_controller =
        disruption::DisruptionController::new(client.clone(), budgets.clone(), pods.clone(), owners);
    tasks.spawn(supervise("disruption", cancel.clone(), disruption_controller.run()));

    nodes.start(cancel.clone(), tasks);
    pods.start(cancel.clone(), tasks);
    replica_sets.start(cancel.clone(), tasks);
    replication_controllers.start(cancel.clone(), tasks);
    deployments.start(cancel.clone(), tasks);
    jobs.start(cancel.clone(), tasks);
    services.start(cancel.clone(), tasks);
    slices.start(cancel.clone(), tasks);
    daemon_sets.start(cancel.clone(), tasks);
    stateful_sets.start(cancel.clone(), tasks);
    cron_jobs.start(cancel.clone(), tasks);
    node_leases.start(cancel.clone(), tasks);
    revisions.start(cancel.clone(), tasks);
    claims.start(cancel.clone(), tasks);
    volumes.start(cancel.clone(), tasks);
    budgets.start(cancel.clone(), tasks);
    classes.start(cancel, tasks);
}

async fn supervise(name: &'static str, cancel: CancellationToken, task: impl std::future::Future<Output = ()>) {
    tokio::select! {
        () = cancel.cancelled() => {}
        () = task => tracing::warn!(controller = name, "controller ended"),
    }
}

/// A typed label selector as the API server's own matcher; `None` for one that cannot be parsed.
fn label_selector(
    selector: &k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
) -> Option<crate::apiserver::selector::LabelSelector> {
    let value = serde_json::to_value(selector).ok()?;
    crate::apiserver::selector::LabelSelector::from_label_selector(&value).ok()
}

/// Whether `labels` match `selector` (an empty selector matches everything, as in the API).
fn labels_match(
    selector: &crate::apiserver::selector::LabelSelector,
    labels: Option<&std::collections::BTreeMap<String, String>>,
) -> bool {
    selector.matches_labels(labels)
}

/// kube-rs's view of a served resource.
fn api_resource(def: &ResourceDef) -> ApiResource {
    ApiResource {
        group: def.group.clone(),
        version: def.version.clone(),
        api_version: def.api_version(),
        kind: def.kind.clone(),
        plural: def.plural.clone(),
    }
}

/// A dynamic API for `def`, in `namespace` when it is namespaced.
fn dynamic_api(client: &kube::Client, def: &ResourceDef, namespace: Option<&str>) -> Api<DynamicObject> {
    let resource = api_resource(def);
    match namespace {
        Some(namespace) if def.namespaced => Api::namespaced_with(client.clone(), namespace, &resource),
        _ => Api::all_with(client.clone(), &resource),
    }
}

/// Resources the controllers walk: listable, watchable and deletable, and stored in their own form (a converted
/// version's objects are its storage version's, walked once under that one).
fn listable(def: &ResourceDef) -> bool {
    def.has_verb("list") && def.has_verb("watch") && def.has_verb("delete") && def.conversion.is_none()
}
