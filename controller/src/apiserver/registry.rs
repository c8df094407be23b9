//! What resources the API serves: one [`ResourceDef`] per group/version/resource, for the built-in kinds and, at run
//! time, for CustomResourceDefinitions. Every request, discovery document, OpenAPI document and Table goes through
//! this table; nothing else in the API server names a kind.
//!
//! Group, version, kind, plural and scope of the built-in kinds come from k8s-openapi's `Resource` metadata, so they
//! cannot drift from the types; short names, categories and subresources are facts kept here by hand (they are in
//! neither k8s-openapi nor the OpenAPI schemas).

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::Resource;

use crate::apiserver::conversion::Conversion;

/// One served resource in one version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceDef {
    /// API group, "" for the core group.
    pub group: String,
    pub version: String,
    pub kind: String,
    /// Plural resource name as it appears in URLs, e.g. `deployments`.
    pub plural: String,
    /// Singular name, e.g. `deployment` (lowercase kind for every built-in).
    pub singular: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    /// Verbs the main resource answers: a subset of create, delete, deletecollection, get, list, patch, update, watch.
    pub verbs: Vec<String>,
    /// Has a `/status` subresource: the main resource ignores `.status`, `/status` ignores everything else.
    pub status: bool,
    /// Has a `/scale` subresource (autoscaling/v1 Scale), with where replicas live in the object.
    pub scale: Option<ScalePaths>,
    /// Where the schema comes from: the OpenAPI definition name of a built-in kind (e.g.
    /// `io.k8s.api.apps.v1.Deployment`), or the CRD that defines it.
    pub schema: SchemaSource,
    /// Set when this version is stored in another version's form (conversion.rs); `None` for most resources.
    pub conversion: Option<Conversion>,
}

/// JSON paths (dotted, from the object's root) of the fields a Scale reads and writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScalePaths {
    pub spec_replicas: String,
    pub status_replicas: String,
    /// Where the label selector lives, as a string (`status.selector` on CRDs) or a LabelSelector (`spec.selector`).
    pub label_selector: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchemaSource {
    /// A k8s-openapi type, by its OpenAPI definition name.
    BuiltIn(String),
    /// A CustomResourceDefinition, by name (`<plural>.<group>`).
    CustomResource(String),
}

impl ResourceDef {
    /// `apps/v1`, or `v1` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The List kind, e.g. `DeploymentList`.
    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    /// `deployments.apps`, or `pods` for the core group: the name RBAC and error messages use.
    pub fn group_resource(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    pub fn has_verb(&self, verb: &str) -> bool {
        self.verbs.iter().any(|v| v == verb)
    }
}

const ALL_VERBS: &[&str] = &["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"];

/// Facts about a built-in kind that k8s-openapi does not carry.
struct Facts {
    short_names: &'static [&'static str],
    categories: &'static [&'static str],
    status: bool,
    scale: bool,
    verbs: &'static [&'static str],
}

const PLAIN: Facts = Facts { short_names: &[], categories: &[], status: false, scale: false, verbs: ALL_VERBS };

fn built_in<T: Resource + schemars::JsonSchema>(facts: Facts) -> ResourceDef {
    let namespaced = std::any::type_name::<T::Scope>().ends_with("NamespaceResourceScope");
    let group = T::GROUP.to_string();
    let schema = definition_name::<T>();
    ResourceDef {
        group,
        version: T::VERSION.to_string(),
        kind: T::KIND.to_string(),
        plural: T::URL_PATH_SEGMENT.to_string(),
        singular: T::KIND.to_ascii_lowercase(),
        namespaced,
        short_names: facts.short_names.iter().map(|s| s.to_string()).collect(),
        categories: facts.categories.iter().map(|s| s.to_string()).collect(),
        verbs: facts.verbs.iter().map(|s| s.to_string()).collect(),
        status: facts.status,
        scale: facts.scale.then(|| ScalePaths {
            spec_replicas: "spec.replicas".into(),
            status_replicas: "status.replicas".into(),
            label_selector: Some("spec.selector".into()),
        }),
        schema: SchemaSource::BuiltIn(schema),
        conversion: None,
    }
}

/// The OpenAPI definition name k8s-openapi's schemars impl gives a type, e.g. `io.k8s.api.apps.v1.Deployment`.
fn definition_name<T: schemars::JsonSchema>() -> String {
    T::schema_name().into_owned()
}

/// Every built-in resource kaasd serves: the stable (GA) versions a default v1.33 kube-apiserver serves, one version
/// per resource so storage needs no conversion.
pub fn built_in_resources() -> Vec<ResourceDef> {
    use k8s_openapi::api::{
        admissionregistration::v1 as admissionregistration, apps::v1 as apps, authentication::v1 as authentication,
        authorization::v1 as authorization, autoscaling::v1 as autoscaling_v1, autoscaling::v2 as autoscaling,
        batch::v1 as batch, certificates::v1 as certificates, coordination::v1 as coordination, core::v1 as core,
        discovery::v1 as discovery, events::v1 as events, flowcontrol::v1 as flowcontrol, networking::v1 as networking,
        node::v1 as node, policy::v1 as policy, rbac::v1 as rbac, scheduling::v1 as scheduling, storage::v1 as storage,
    };
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiextensions;
    use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1 as apiregistration;

    let all = &["all"];
    let api_extensions = &["api-extensions"];
    let create_only: &[&str] = &["create"];
    let with_status = Facts { status: true, ..PLAIN };
    vec![
        // core/v1
        built_in::<core::Binding>(Facts { verbs: create_only, ..PLAIN }),
        built_in::<core::ComponentStatus>(Facts { short_names: &["cs"], verbs: &["get", "list"], ..PLAIN }),
        built_in::<core::ConfigMap>(Facts { short_names: &["cm"], ..PLAIN }),
        built_in::<core::Endpoints>(Facts { short_names: &["ep"], ..PLAIN }),
        built_in::<core::Event>(Facts { short_names: &["ev"], ..PLAIN }),
        built_in::<core::LimitRange>(Facts { short_names: &["limits"], ..PLAIN }),
        built_in::<core::Namespace>(Facts {
            short_names: &["ns"],
            status: true,
            verbs: &["create", "delete", "get", "list", "patch", "update", "watch"],
            ..PLAIN
        }),
        built_in::<core::Node>(Facts { short_names: &["no"], status: true, ..PLAIN }),
        built_in::<core::PersistentVolumeClaim>(Facts { short_names: &["pvc"], status: true, ..PLAIN }),
        built_in::<core::PersistentVolume>(Facts { short_names: &["pv"], status: true, ..PLAIN }),
        built_in::<core::Pod>(Facts { short_names: &["po"], categories: all, status: true, ..PLAIN }),
        built_in::<core::PodTemplate>(PLAIN),
        built_in::<core::ReplicationController>(Facts {
            short_names: &["rc"],
            categories: all,
            status: true,
            scale: true,
            ..PLAIN
        }),
        built_in::<core::ResourceQuota>(Facts { short_names: &["quota"], status: true, ..PLAIN }),
        built_in::<core::Secret>(PLAIN),
        built_in::<core::ServiceAccount>(Facts { short_names: &["sa"], ..PLAIN }),
        built_in::<core::Service>(Facts { short_names: &["svc"], categories: all, status: true, ..PLAIN }),
        // admissionregistration.k8s.io/v1
        built_in::<admissionregistration::MutatingWebhookConfiguration>(Facts { categories: api_extensions, ..PLAIN }),
        built_in::<admissionregistration::ValidatingWebhookConfiguration>(Facts {
            categories: api_extensions,
            ..PLAIN
        }),
        built_in::<admissionregistration::ValidatingAdmissionPolicy>(Facts {
            categories: api_extensions,
            status: true,
            ..PLAIN
        }),
        built_in::<admissionregistration::ValidatingAdmissionPolicyBinding>(Facts {
            categories: api_extensions,
            ..PLAIN
        }),
        // apiextensions.k8s.io/v1, apiregistration.k8s.io/v1
        built_in::<apiextensions::CustomResourceDefinition>(Facts {
            short_names: &["crd", "crds"],
            categories: api_extensions,
            status: true,
            ..PLAIN
        }),
        built_in::<apiregistration::APIService>(Facts { categories: api_extensions, status: true, ..PLAIN }),
        // apps/v1
        built_in::<apps::ControllerRevision>(PLAIN),
        built_in::<apps::DaemonSet>(Facts { short_names: &["ds"], categories: all, status: true, ..PLAIN }),
        built_in::<apps::Deployment>(Facts {
            short_names: &["deploy"],
            categories: all,
            status: true,
            scale: true,
            ..PLAIN
        }),
        built_in::<apps::ReplicaSet>(Facts {
            short_names: &["rs"],
            categories: all,
            status: true,
            scale: true,
            ..PLAIN
        }),
        built_in::<apps::StatefulSet>(Facts {
            short_names: &["sts"],
            categories: all,
            status: true,
            scale: true,
            ..PLAIN
        }),
        // authentication.k8s.io/v1, authorization.k8s.io/v1: create-only reviews
        built_in::<authentication::SelfSubjectReview>(Facts { verbs: create_only, ..PLAIN }),
        built_in::<authentication::TokenReview>(Facts { verbs: create_only, ..PLAIN }),
        built_in::<authorization::LocalSubjectAccessReview>(Facts { verbs: create_only, ..PLAIN }),
        built_in::<authorization::SelfSubjectAccessReview>(Facts { verbs: create_only, ..PLAIN }),
        built_in::<authorization::SelfSubjectRulesReview>(Facts { verbs: create_only, ..PLAIN }),
        built_in::<authorization::SubjectAccessReview>(Facts { verbs: create_only, ..PLAIN }),
        // autoscaling/v2, batch/v1
        built_in::<autoscaling::HorizontalPodAutoscaler>(Facts {
            short_names: &["hpa"],
            categories: all,
            status: true,
            ..PLAIN
        }),
        // Stored as autoscaling/v2: charts and manifests still use v1.
        ResourceDef {
            conversion: Some(Conversion::HorizontalPodAutoscalerV1),
            ..built_in::<autoscaling_v1::HorizontalPodAutoscaler>(Facts {
                short_names: &["hpa"],
                categories: all,
                status: true,
                ..PLAIN
            })
        },
        built_in::<batch::CronJob>(Facts { short_names: &["cj"], categories: all, status: true, ..PLAIN }),
        built_in::<batch::Job>(Facts { categories: all, status: true, ..PLAIN }),
        // certificates.k8s.io/v1, coordination.k8s.io/v1, discovery.k8s.io/v1, events.k8s.io/v1
        built_in::<certificates::CertificateSigningRequest>(Facts { short_names: &["csr"], status: true, ..PLAIN }),
        built_in::<coordination::Lease>(PLAIN),
        built_in::<discovery::EndpointSlice>(PLAIN),
        // Stored as core/v1 Events: one store that both APIs show.
        ResourceDef {
            conversion: Some(Conversion::EventsV1),
            ..built_in::<events::Event>(Facts { short_names: &["ev"], ..PLAIN })
        },
        // flowcontrol.apiserver.k8s.io/v1
        built_in::<flowcontrol::FlowSchema>(with_status),
        built_in::<flowcontrol::PriorityLevelConfiguration>(Facts { status: true, ..PLAIN }),
        // networking.k8s.io/v1
        built_in::<networking::IngressClass>(PLAIN),
        built_in::<networking::Ingress>(Facts { short_names: &["ing"], status: true, ..PLAIN }),
        built_in::<networking::IPAddress>(Facts { short_names: &["ip"], ..PLAIN }),
        built_in::<networking::NetworkPolicy>(Facts { short_names: &["netpol"], ..PLAIN }),
        built_in::<networking::ServiceCIDR>(Facts { status: true, ..PLAIN }),
        // node.k8s.io/v1, policy/v1
        built_in::<node::RuntimeClass>(PLAIN),
        built_in::<policy::PodDisruptionBudget>(Facts { short_names: &["pdb"], status: true, ..PLAIN }),
        // rbac.authorization.k8s.io/v1
        built_in::<rbac::ClusterRoleBinding>(PLAIN),
        built_in::<rbac::ClusterRole>(PLAIN),
        built_in::<rbac::RoleBinding>(PLAIN),
        built_in::<rbac::Role>(PLAIN),
        // scheduling.k8s.io/v1, storage.k8s.io/v1
        built_in::<scheduling::PriorityClass>(Facts { short_names: &["pc"], ..PLAIN }),
        built_in::<storage::CSIDriver>(PLAIN),
        built_in::<storage::CSINode>(PLAIN),
        built_in::<storage::CSIStorageCapacity>(PLAIN),
        built_in::<storage::StorageClass>(Facts { short_names: &["sc"], ..PLAIN }),
        built_in::<storage::VolumeAttachment>(Facts { status: true, ..PLAIN }),
    ]
}

/// The served resources, looked up by group/version/plural. Shared behind an `Arc` and swapped whole when a CRD
/// changes, so a request sees one consistent table.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    by_path: BTreeMap<(String, String, String), Arc<ResourceDef>>,
    /// The CustomResourceDefinitions (as stored) behind the custom resources, by name (`<plural>.<group>`).
    definitions: BTreeMap<String, Arc<serde_json::Value>>,
}

impl Registry {
    pub fn new(resources: impl IntoIterator<Item = ResourceDef>) -> Registry {
        let by_path = resources
            .into_iter()
            .map(|def| ((def.group.clone(), def.version.clone(), def.plural.clone()), Arc::new(def)))
            .collect();
        Registry { by_path, definitions: BTreeMap::new() }
    }

    /// The built-in resources plus those of `definitions` (established CustomResourceDefinitions with their
    /// resource definitions); a custom resource never shadows a built-in one.
    pub fn with_custom_resources(definitions: Vec<(serde_json::Value, Vec<ResourceDef>)>) -> Registry {
        let mut registry = Registry::new(built_in_resources());
        for (definition, defs) in definitions {
            let name = definition
                .pointer("/metadata/name")
                .and_then(serde_json::Value::as_str)
                .unwrap_or_default()
                .to_string();
            for def in defs {
                let key = (def.group.clone(), def.version.clone(), def.plural.clone());
                registry.by_path.entry(key).or_insert_with(|| Arc::new(def));
            }
            registry.definitions.insert(name, Arc::new(definition));
        }
        registry
    }

    /// The CustomResourceDefinition behind a custom resource.
    pub fn definition_of(&self, def: &ResourceDef) -> Option<&Arc<serde_json::Value>> {
        match &def.schema {
            SchemaSource::CustomResource(name) => self.definitions.get(name),
            SchemaSource::BuiltIn(_) => None,
        }
    }

    pub fn get(&self, group: &str, version: &str, plural: &str) -> Option<&Arc<ResourceDef>> {
        self.by_path.get(&(group.to_string(), version.to_string(), plural.to_string()))
    }

    /// The definition serving a kind in a group/version.
    pub fn by_kind(&self, group: &str, version: &str, kind: &str) -> Option<&Arc<ResourceDef>> {
        self.iter().find(|def| def.group == group && def.version == version && def.kind == kind)
    }

    /// Every definition, ordered by group, version and plural.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<ResourceDef>> {
        self.by_path.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_ins_carry_metadata_from_k8s_openapi() {
        let registry = Registry::new(built_in_resources());
        let deployments = registry.get("apps", "v1", "deployments").expect("deployments are served");
        assert_eq!(deployments.kind, "Deployment");
        assert!(deployments.namespaced);
        assert!(deployments.status);
        assert!(deployments.scale.is_some());
        assert_eq!(deployments.short_names, vec!["deploy"]);
        assert_eq!(deployments.schema, SchemaSource::BuiltIn("io.k8s.api.apps.v1.Deployment".into()));
        let namespaces = registry.get("", "v1", "namespaces").expect("namespaces are served");
        assert!(!namespaces.namespaced);
        assert_eq!(namespaces.api_version(), "v1");
        assert_eq!(registry.by_kind("rbac.authorization.k8s.io", "v1", "ClusterRole").unwrap().plural, "clusterroles");
    }
}
