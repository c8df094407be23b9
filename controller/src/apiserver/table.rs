//! Server-side Table output (meta.k8s.io/v1 `Table`): what `kubectl get` prints.
//!
//! kubectl asks for `Accept: application/json;as=Table;v=v1;g=meta.k8s.io` and prints whatever columns come back, so
//! the columns of every kind people look at are computed here, the way upstream's printers compute them: the same
//! column names, types and priorities (priority 1 shows only with `-o wide`), the same STATUS logic for pods and the
//! same AGE strings. The server always fills the wide columns; kubectl hides them.
//!
//! Kinds without a printer get upstream's default convertor (`Name`, `Created At`); custom resources get their
//! CRD's `additionalPrinterColumns`, evaluated with the JSONPath subset CRDs use.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use jiff::{SignedDuration, Timestamp};
use serde_json::{json, Map, Value};

use crate::apiserver::registry::{ResourceDef, SchemaSource};
use crate::apiserver::selector::LabelSelector;

/// What each row carries in `object` (the `includeObject` query parameter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IncludeObject {
    /// No object: `"object": null`.
    None,
    /// A PartialObjectMetadata with the object's whole `metadata`. kubectl needs it for `-A`'s NAMESPACE column,
    /// `--show-labels` and `-L`.
    #[default]
    Metadata,
    /// The whole object.
    Object,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TableError {
    #[error("unrecognized includeObject value: {0:?}")]
    UnrecognizedIncludeObject(String),
    /// A CRD printer column's jsonPath that is not in the supported JSONPath subset.
    #[error("unrecognized column definition {path:?}: {reason}")]
    InvalidJsonPath { path: String, reason: String },
}

impl IncludeObject {
    /// Reads the `includeObject` query parameter; absent or empty means Metadata, as upstream defaults it.
    pub fn from_query(value: Option<&str>) -> Result<IncludeObject, TableError> {
        match value.unwrap_or_default() {
            "" | "Metadata" => Ok(IncludeObject::Metadata),
            "None" => Ok(IncludeObject::None),
            "Object" => Ok(IncludeObject::Object),
            other => Err(TableError::UnrecognizedIncludeObject(other.to_string())),
        }
    }
}

/// Builds a Table for a list response. The Table's `metadata` is left empty: the caller adds `resourceVersion`,
/// `continue` and `remainingItemCount` as for the list itself.
///
/// `printer_columns` is a CRD version's `additionalPrinterColumns`; custom resources without any get upstream's
/// default single `Age` column.
pub fn table<'a>(
    def: &ResourceDef,
    objects: impl IntoIterator<Item = &'a Value>,
    include: IncludeObject,
    now: Timestamp,
    printer_columns: Option<&Value>,
) -> Value {
    TablePrinter::new(def, printer_columns).table(objects, include, now, true)
}

/// Builds the Table for one watch event's object. Upstream sends `columnDefinitions` only with the first event of a
/// watch and `null` afterwards, so pass `with_column_definitions` true only for the first.
pub fn watch_event_table(
    def: &ResourceDef,
    object: &Value,
    include: IncludeObject,
    now: Timestamp,
    printer_columns: Option<&Value>,
    with_column_definitions: bool,
) -> Value {
    TablePrinter::new(def, printer_columns).table([object], include, now, with_column_definitions)
}

/// The printer of one resource, built once and reused for a list or a whole watch (a CRD's JSONPaths are parsed
/// here, not per object).
pub struct TablePrinter {
    columns: Vec<Value>,
    printer: Printer,
    /// Pods' rows carry a Completed condition once the pod has finished.
    pod_conditions: bool,
}

enum Printer {
    BuiltIn(PrintFn),
    /// Upstream's default table convertor: name and creation time in RFC 3339.
    Default,
    /// CRD printer columns; a column whose path did not parse has no path and prints null cells.
    Custom(Vec<CustomColumn>),
}

type PrintFn = fn(&Value, Timestamp) -> Vec<Value>;

struct CustomColumn {
    column_type: String,
    path: Option<JsonPath>,
}

impl TablePrinter {
    pub fn new(def: &ResourceDef, printer_columns: Option<&Value>) -> TablePrinter {
        let custom = printer_columns.and_then(Value::as_array).filter(|columns| !columns.is_empty());
        if let Some(columns) = custom {
            return TablePrinter::custom(columns);
        }
        if matches!(def.schema, SchemaSource::CustomResource(_)) {
            let age = json!({"name": "Age", "type": "date", "description": CREATION_TIMESTAMP_DOC,
                             "jsonPath": ".metadata.creationTimestamp"});
            return TablePrinter::custom(&[age]);
        }
        match built_in_printer(&def.group, &def.kind) {
            Some((columns, print)) => TablePrinter {
                columns: columns.iter().map(ColumnSpec::to_value).collect(),
                printer: Printer::BuiltIn(print),
                pod_conditions: def.group.is_empty() && def.kind == "Pod",
            },
            None => TablePrinter {
                columns: vec![
                    NAME_COLUMN.to_value(),
                    column("Created At", "date", 0, CREATION_TIMESTAMP_DOC).to_value(),
                ],
                printer: Printer::Default,
                pod_conditions: false,
            },
        }
    }

    fn custom(columns: &[Value]) -> TablePrinter {
        let mut definitions = vec![NAME_COLUMN.to_value()];
        let mut custom = Vec::new();
        for column in columns {
            let text = |key: &str| column.get(key).and_then(Value::as_str).unwrap_or_default().to_string();
            let json_path = text("jsonPath");
            let description = match text("description") {
                d if d.is_empty() => format!("Custom resource definition column (in JSONPath format): {json_path}"),
                d => d,
            };
            definitions.push(json!({
                "name": text("name"),
                "type": text("type"),
                "format": text("format"),
                "description": description,
                "priority": column.get("priority").and_then(Value::as_i64).unwrap_or(0),
            }));
            custom.push(CustomColumn { column_type: text("type"), path: JsonPath::parse(&json_path).ok() });
        }
        TablePrinter { columns: definitions, printer: Printer::Custom(custom), pod_conditions: false }
    }

    /// The `columnDefinitions` array.
    pub fn column_definitions(&self) -> Value {
        Value::Array(self.columns.clone())
    }

    /// One row: `cells`, `conditions` for finished pods, and `object` as `include` asks.
    pub fn row(&self, object: &Value, include: IncludeObject, now: Timestamp) -> Value {
        let cells = match &self.printer {
            Printer::BuiltIn(print) => print(object, now),
            Printer::Default => {
                let created = timestamp(object, &["metadata", "creationTimestamp"])
                    .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
                    .unwrap_or_else(|| "0001-01-01T00:00:00Z".to_string());
                vec![Value::String(text(object, &["metadata", "name"]).to_string()), Value::String(created)]
            }
            Printer::Custom(columns) => {
                let mut cells = vec![Value::String(text(object, &["metadata", "name"]).to_string())];
                cells.extend(columns.iter().map(|column| custom_cell(column, object, now)));
                cells
            }
        };
        let mut row = Map::new();
        row.insert("cells".to_string(), Value::Array(cells));
        if let Some(conditions) = self.pod_conditions.then(|| finished_pod_conditions(object)).flatten() {
            row.insert("conditions".to_string(), conditions);
        }
        let carried = match include {
            IncludeObject::None => Value::Null,
            IncludeObject::Object => object.clone(),
            IncludeObject::Metadata => json!({
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": object.get("metadata").cloned().unwrap_or_else(|| json!({})),
            }),
        };
        row.insert("object".to_string(), carried);
        Value::Object(row)
    }

    /// A whole Table; `columnDefinitions` is null when `with_column_definitions` is false (watch events after the
    /// first), as upstream's NoHeaders option leaves it.
    pub fn table<'a>(
        &self,
        objects: impl IntoIterator<Item = &'a Value>,
        include: IncludeObject,
        now: Timestamp,
        with_column_definitions: bool,
    ) -> Value {
        let rows: Vec<Value> = objects.into_iter().map(|object| self.row(object, include, now)).collect();
        json!({
            "kind": "Table",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": {},
            "columnDefinitions": if with_column_definitions { self.column_definitions() } else { Value::Null },
            "rows": rows,
        })
    }
}

/// kubectl's `duration.HumanDuration`: about two significant units, e.g. `90s`, `2m30s`, `3h`, `5d4h`, `2y`.
/// Up to 2 seconds in the future counts as now (clock skew); further is `<invalid>`.
pub fn human_duration(duration: SignedDuration) -> String {
    let seconds = duration.as_secs();
    if seconds < -1 {
        return "<invalid>".to_string();
    }
    if seconds < 0 {
        return "0s".to_string();
    }
    if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 { format!("{minutes}m") } else { format!("{minutes}m{s}s") };
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = seconds / 3600;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 { format!("{hours}h") } else { format!("{hours}h{m}m") };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 { format!("{}d", hours / 24) } else { format!("{}d{h}h", hours / 24) };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let days = (hours / 24) % 365;
        return if days == 0 { format!("{}y", hours / 24 / 365) } else { format!("{}y{days}d", hours / 24 / 365) };
    }
    format!("{}y", hours / 24 / 365)
}

/// The JSONPath subset CRD printer columns use: `.a.b`, `['a.b']`, `[0]`, `[-1]`, `[*]`, `.*`, and filters
/// `[?(@.type=="Ready")]` (`==`, `!=`, `<`, `>`, `<=`, `>=` against a string, number or boolean, or `[?(@.x)]` for
/// existence). Optional `{…}` braces and a leading `$` are accepted.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonPath {
    steps: Vec<Step>,
}

#[derive(Debug, Clone, PartialEq)]
enum Step {
    Field(String),
    Index(i64),
    Wildcard,
    Filter { path: Vec<String>, comparison: Option<(Comparison, Value)> },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Comparison {
    Equal,
    NotEqual,
    Less,
    Greater,
    LessOrEqual,
    GreaterOrEqual,
}

impl JsonPath {
    pub fn parse(text: &str) -> Result<JsonPath, TableError> {
        let error = |reason: &str| TableError::InvalidJsonPath { path: text.to_string(), reason: reason.to_string() };
        let mut rest = text.trim();
        if let Some(inner) = rest.strip_prefix('{').and_then(|r| r.strip_suffix('}')) {
            rest = inner.trim();
        }
        rest = rest.strip_prefix('$').unwrap_or(rest);
        if rest.is_empty() {
            return Err(error("empty path"));
        }
        let mut steps = Vec::new();
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix('.') {
                if after.starts_with('.') {
                    return Err(error("recursive descent is not supported"));
                }
                let end = after.find(['.', '[']).unwrap_or(after.len());
                let name = &after[..end];
                match name {
                    "" if end == after.len() => {}
                    "" => {}
                    "*" => steps.push(Step::Wildcard),
                    name => steps.push(Step::Field(name.to_string())),
                }
                rest = &after[end..];
            } else if let Some(after) = rest.strip_prefix('[') {
                let end = closing_bracket(after).ok_or_else(|| error("unclosed '['"))?;
                let inside = after[..end].trim();
                rest = &after[end + 1..];
                steps.push(parse_bracket(inside).map_err(|reason| error(&reason))?);
            } else {
                return Err(error("expected '.' or '['"));
            }
        }
        Ok(JsonPath { steps })
    }

    /// Every value the path reaches, in document order; missing keys and out-of-range indexes give no value.
    pub fn evaluate<'a>(&self, root: &'a Value) -> Vec<&'a Value> {
        let mut current = vec![root];
        for step in &self.steps {
            let mut next = Vec::new();
            for value in current {
                match step {
                    Step::Field(name) => next.extend(value.get(name.as_str())),
                    Step::Index(index) => {
                        if let Value::Array(items) = value {
                            let resolved = if *index < 0 { items.len() as i64 + index } else { *index };
                            next.extend(usize::try_from(resolved).ok().and_then(|i| items.get(i)));
                        }
                    }
                    Step::Wildcard => match value {
                        Value::Array(items) => next.extend(items.iter()),
                        Value::Object(map) => next.extend(map.values()),
                        _ => {}
                    },
                    Step::Filter { path, comparison } => {
                        if let Value::Array(items) = value {
                            next.extend(items.iter().filter(|item| filter_matches(item, path, comparison)));
                        }
                    }
                }
            }
            current = next;
        }
        current
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Column definitions.

struct ColumnSpec {
    name: &'static str,
    /// `string`, `integer`, `number`, `boolean` or `date`.
    kind: &'static str,
    /// `name` for the column holding the object's name, else empty.
    format: &'static str,
    priority: i64,
    description: &'static str,
}

impl ColumnSpec {
    fn to_value(&self) -> Value {
        json!({"name": self.name, "type": self.kind, "format": self.format, "description": self.description,
               "priority": self.priority})
    }
}

const NAME_DOC: &str = "Name must be unique within a namespace. Is required when creating resources, although some \
                        resources may allow a client to request the generation of an appropriate name automatically. \
                        Name is primarily intended for creation idempotence and configuration definition. Cannot be \
                        updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";
const CREATION_TIMESTAMP_DOC: &str = "CreationTimestamp is a timestamp representing the server time when this object \
                                      was created. It is not guaranteed to be set in happens-before order across \
                                      separate operations. Clients may not set this value. It is represented in \
                                      RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for \
                                      lists. More info: https://git.k8s.io/community/contributors/devel/\
                                      sig-architecture/api-conventions.md#metadata";
const CONTAINERS_DOC: &str = "Names of each container in the template.";
const IMAGES_DOC: &str = "Images referenced by each container in the template.";

const NAME_COLUMN: ColumnSpec =
    ColumnSpec { name: "Name", kind: "string", format: "name", priority: 0, description: NAME_DOC };
const AGE_COLUMN: ColumnSpec = column("Age", "string", 0, CREATION_TIMESTAMP_DOC);

const fn column(name: &'static str, kind: &'static str, priority: i64, description: &'static str) -> ColumnSpec {
    ColumnSpec { name, kind, format: "", priority, description }
}

/// The printer for a built-in kind, or None for upstream's default convertor (Roles, ClusterRoles, CRDs and the
/// other kinds upstream prints only by name and creation time).
fn built_in_printer(group: &str, kind: &str) -> Option<(&'static [ColumnSpec], PrintFn)> {
    const POD: &[ColumnSpec] = &[
        NAME_COLUMN,
        column("Ready", "string", 0, "The aggregate readiness state of this pod for accepting traffic."),
        column("Status", "string", 0, "The aggregate status of the containers in this pod."),
        column(
            "Restarts",
            "string",
            0,
            "The number of times the containers in this pod have been restarted and when the last container in this \
             pod has restarted.",
        ),
        AGE_COLUMN,
        column("IP", "string", 1, "podIP address allocated to the pod. Routable at least within the cluster."),
        column("Node", "string", 1, "NodeName indicates in which node this pod is scheduled."),
        column("Nominated Node", "string", 1, "nominatedNodeName is set only when this pod preempts other pods."),
        column(
            "Readiness Gates",
            "string",
            1,
            "If specified, all readiness gates will be evaluated for pod readiness.",
        ),
    ];
    const DEPLOYMENT: &[ColumnSpec] = &[
        NAME_COLUMN,
        column("Ready", "string", 0, "Number of the pod with ready state"),
        column(
            "Up-to-date",
            "string",
            0,
            "Total number of non-terminated pods targeted by this deployment that have the desired template spec.",
        ),
        column(
            "Available",
            "string",
            0,
            "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment.",
        ),
        AGE_COLUMN,
        column("Containers", "string", 1, CONTAINERS_DOC),
        column("Images", "string", 1, IMAGES_DOC),
        column("Selector", "string", 1, "Label selector for pods."),
    ];
    const REPLICA_SET: &[ColumnSpec] = &[
        NAME_COLUMN,
        column("Desired", "integer", 0, "Replicas is the number of desired replicas."),
        column("Current", "integer", 0, "Replicas is the most recently observed number of replicas."),
        column("Ready", "integer", 0, "The number of ready replicas for this replica set."),
        AGE_COLUMN,
        column("Containers", "string", 1, CONTAINERS_DOC),
        column("Images", "string", 1, IMAGES_DOC),
        column("Selector", "string", 1, "Selector is a label query over pods that should match the replica count."),
    ];
    const STATEFUL_SET: &[ColumnSpec] = &[
        NAME_COLUMN,
        column("Ready", "string", 0, "Number of the pod with ready state"),
        AGE_COLUMN,
        column("Containers", "string", 1, CONTAINERS_DOC),
        column("Images", "string", 1, IMAGES_DOC),
    ];
    const DAEMON_SET: &[ColumnSpec] = &[
        NAME_COLUMN,
        column("Desired", "integer", 0, "The total number of nodes that should be running the daemon pod."),
        column("Current", "integer", 0, "The number of nodes that are running at least 1 daemon pod and are supposed to run the daemon pod."),
        column("Ready", "integer", 0, "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and ready."),
        column("Up-to-date", "integer", 0, "The total number of nodes that are running updated daemon pod"),
        column("Available", "integer", 0, "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available."),
        column("Node Selector", "string", 0, "NodeSelector is a selector which must be true for the pod to fit on a node."),
        AGE_COLUMN,
        column("Containers", "string", 1, CONTAINERS_DOC),
        column("Images", "string", 1, IMAGES_DOC),
        column("Selector", "string", 1, "A label query over pods that are managed by the daemon set."),
    ];
    const JOB: &[ColumnSpec] = &[
        NAME_COLUMN,
        column("Status", "string", 0, "Status of the job."),
        column("Completions", "string", 0, "The number of pods which reached phase Succeeded."),
        column("Duration", "string", 0, "Time required to complete the job."),
        AGE_COLUMN,
        column("Containers", "string", 1, CONTAINERS_DOC),
        column("Images", "string", 1, IMAGES_DOC),
        column("Selector", "string", 1, "A label query over pods that should match the pod count."),
    ];
    const CRON_JOB: &[ColumnSpec] = &[
        NAME_COLUMN,
        column("Schedule", "string", 0, "The schedule in Cron format, see https://en.wikipedia.org/wiki/Cron."),
        column("Timezone", "string", 0, "The time zone name for the given schedule."),
        column("Suspend", "boolean", 0, "This flag tells the controller to suspend subsequent executions."),
        column("Active", "integer", 0, "A list of pointers to currently running jobs."),
        column("Last Schedule", "string", 0, "Information when was the last time the job was successfully scheduled."),
        AGE_COLUMN,
        column("Containers", "string", 1, CONTAINERS_DOC),
        column("Images", "string", 1, IMAGES_DOC),
        column("Selector", "string", 1, "A label query over pods that should match the pod count."),
    ];
    const SERVICE: &[ColumnSpec] = &[
        NAME_COLUMN,
        column("Type", "string", 0, "type determines how the Service is exposed."),
        column("Cluster-IP", "string", 0, "clusterIP is the IP address of the service and is usually assigned randomly."),
        column("External-IP", "string", 0, "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service."),
        column("Port(s)", "string", 0, "The list of ports that are exposed by this service."),
        AGE_COLUMN,
        column("Selector", "string", 1, "Route service traffic to pods with label keys and values matching this selector."),
    ];
    const CONFIG_MAP: &[ColumnSpec] =
        &[NAME_COLUMN, column("Data", "string", 0, "Data contains the configuration data."), AGE_COLUMN];
    const SECRET: &[ColumnSpec] = &[
        NAME_COLUMN,
        column("Type", "string", 0, "Used to facilitate programmatic handling of secret data."),
        column("Data", "string", 0, "Data contains the secret data."),
        AGE_COLUMN,
    ];
    const NAMESPACE: &[ColumnSpec] =
        &[NAME_COLUMN, column("Status", "string", 0, "The status of the namespace"), AGE_COLUMN];
    const SERVICE_ACCOUNT: &[ColumnSpec] = &[
        NAME_COLUMN,
        column("Secrets", "string", 0, "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are allowed to use."),
        AGE_COLUMN,
    ];
    const NODE: &[ColumnSpec] = &[
        NAME_COLUMN,
        column("Status", "string", 0, "The status of the node"),
        column("Roles", "string", 0, "The roles of the node"),
        AGE_COLUMN,
        column("Version", "string", 0, "Kubelet Version reported by the node."),
        column("Internal-IP", "string", 1, "List of addresses reachable to the node."),
        column("External-IP", "string", 1, "List of addresses reachable to the node."),
        column(
            "OS-Image",
            "string",
            1,
            "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).",
        ),
        column(
            "Kernel-Version",
            "string",
            1,
            "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).",
        ),
        column(
            "Container-Runtime",
            "string",
            1,
            "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2).",
        ),
    ];
    const EVENT: &[ColumnSpec] = &[
        column("Last Seen", "string", 0, "The time at which the most recent occurrence of this event was recorded."),
        column("Type", "string", 0, "Type of this event (Normal, Warning), new types could be added in the future"),
        column("Reason", "string", 0, "This should be a short, machine understandable string that gives the reason for the transition into the object's current status."),
        column("Object", "string", 0, "The object that this event is about."),
        column("Subobject", "string", 1, "If referring to a piece of an object instead of an entire object, this string should contain a valid JSON/Go field access statement."),
        column("Source", "string", 1, "The component reporting this event."),
        column("Message", "string", 0, "A human-readable description of the status of this operation."),
        column("First Seen", "string", 1, "The time at which the event was first recorded."),
        column("Count", "string", 1, "The number of times this event has occurred."),
        ColumnSpec { name: "Name", kind: "string", format: "name", priority: 1, description: NAME_DOC },
    ];
    const ENDPOINTS: &[ColumnSpec] = &[
        NAME_COLUMN,
        column("Endpoints", "string", 0, "The set of all endpoints is the union of all subsets."),
        AGE_COLUMN,
    ];
    const ENDPOINT_SLICE: &[ColumnSpec] = &[
        NAME_COLUMN,
        column("AddressType", "string", 0, "addressType specifies the type of address carried by this EndpointSlice."),
        column(
            "Ports",
            "string",
            0,
            "ports specifies the list of network ports exposed by each endpoint in this slice.",
        ),
        column("Endpoints", "string", 0, "endpoints is a list of unique endpoints in this slice."),
        AGE_COLUMN,
    ];
    const LEASE: &[ColumnSpec] = &[
        NAME_COLUMN,
        column("Holder", "string", 0, "holderIdentity contains the identity of the holder of a current lease."),
        AGE_COLUMN,
    ];
    const ROLE_BINDING: &[ColumnSpec] = &[
        NAME_COLUMN,
        column(
            "Role",
            "string",
            0,
            "RoleRef can reference a Role in the current namespace or a ClusterRole in the global namespace.",
        ),
        AGE_COLUMN,
        column("Users", "string", 1, "Users in the roleBinding"),
        column("Groups", "string", 1, "Groups in the roleBinding"),
        column("ServiceAccounts", "string", 1, "ServiceAccounts in the roleBinding"),
    ];
    const CLUSTER_ROLE_BINDING: &[ColumnSpec] = &[
        NAME_COLUMN,
        column("Role", "string", 0, "RoleRef can only reference a ClusterRole in the global namespace."),
        AGE_COLUMN,
        column("Users", "string", 1, "Users in the clusterRoleBinding"),
        column("Groups", "string", 1, "Groups in the clusterRoleBinding"),
        column("ServiceAccounts", "string", 1, "ServiceAccounts in the clusterRoleBinding"),
    ];
    const PERSISTENT_VOLUME_CLAIM: &[ColumnSpec] = &[
        NAME_COLUMN,
        column("Status", "string", 0, "phase represents the current phase of PersistentVolumeClaim."),
        column(
            "Volume",
            "string",
            0,
            "volumeName is the binding reference to the PersistentVolume backing this claim.",
        ),
        column("Capacity", "string", 0, "capacity represents the actual resources of the underlying volume."),
        column(
            "Access Modes",
            "string",
            0,
            "accessModes contains the actual access modes the volume backing the PVC has.",
        ),
        column("StorageClass", "string", 0, "StorageClass of the pvc"),
        column("VolumeAttributesClass", "string", 0, "VolumeAttributesClass of the pvc"),
        AGE_COLUMN,
        column("VolumeMode", "string", 1, "volumeMode defines what type of volume is required by the claim."),
    ];
    const PERSISTENT_VOLUME: &[ColumnSpec] = &[
        NAME_COLUMN,
        column("Capacity", "string", 0, "capacity is the description of the persistent volume's resources and capacity."),
        column("Access Modes", "string", 0, "accessModes contains all ways the volume can be mounted."),
        column("Reclaim Policy", "string", 0, "persistentVolumeReclaimPolicy defines what happens to a persistent volume when released from its claim."),
        column("Status", "string", 0, "phase indicates if a volume is available, bound to a claim, or released by a claim."),
        column("Claim", "string", 0, "claimRef is part of a bi-directional binding between PersistentVolume and PersistentVolumeClaim."),
        column("StorageClass", "string", 0, "StorageClass of the pv"),
        column("VolumeAttributesClass", "string", 0, "VolumeAttributesClass of the pv"),
        column("Reason", "string", 0, "reason is a brief CamelCase string that describes any failure and is meant for machine parsing and tidy display in the CLI."),
        AGE_COLUMN,
        column("VolumeMode", "string", 1, "volumeMode defines if a volume is intended to be used with a formatted filesystem or to remain in raw block state."),
    ];
    const INGRESS: &[ColumnSpec] = &[
        NAME_COLUMN,
        column(
            "Class",
            "string",
            0,
            "The name of the IngressClass resource that should be used for additional configuration",
        ),
        column("Hosts", "string", 0, "Hosts that incoming requests are matched against before the ingress rule"),
        column("Address", "string", 0, "Address is a list containing ingress points for the load-balancer"),
        column("Ports", "string", 0, "Ports of TLS configurations that open"),
        AGE_COLUMN,
    ];
    const INGRESS_CLASS: &[ColumnSpec] = &[
        NAME_COLUMN,
        column("Controller", "string", 0, "Controller that is responsible for handling this class"),
        column("Parameters", "string", 0, "A reference to a resource with additional parameters"),
        AGE_COLUMN,
    ];
    const STORAGE_CLASS: &[ColumnSpec] = &[
        NAME_COLUMN,
        column("Provisioner", "string", 0, "provisioner indicates the type of the provisioner."),
        column("ReclaimPolicy", "string", 0, "reclaimPolicy controls the reclaimPolicy for dynamically provisioned PersistentVolumes of this storage class."),
        column("VolumeBindingMode", "string", 0, "volumeBindingMode indicates how PersistentVolumeClaims should be provisioned and bound."),
        column("AllowVolumeExpansion", "string", 0, "allowVolumeExpansion shows whether the storage class allow volume expand."),
        AGE_COLUMN,
    ];
    const PRIORITY_CLASS: &[ColumnSpec] = &[
        NAME_COLUMN,
        column("Value", "integer", 0, "value represents the integer value of this priority class."),
        column("Global-Default", "boolean", 0, "globalDefault specifies whether this PriorityClass should be considered as the default priority for pods that do not have any priority class."),
        AGE_COLUMN,
        column("PreemptionPolicy", "string", 0, "preemptionPolicy is the Policy for preempting pods with lower priority."),
    ];
    const FLOW_SCHEMA: &[ColumnSpec] = &[
        NAME_COLUMN,
        column("PriorityLevel", "string", 0, "`name` is the name of the priority level configuration being referenced Required."),
        column("MatchingPrecedence", "string", 0, "`matchingPrecedence` is used to choose among the FlowSchemas that match a given request. The chosen FlowSchema is among those with the numerically lowest (which we take to be logically highest) MatchingPrecedence.  Each MatchingPrecedence value must be ranged in [1,10000]. Note that if the precedence is not specified, it will be set to 1000 as default."),
        column("DistinguisherMethod", "string", 0, "`distinguisherMethod` defines how to compute the flow distinguisher for requests that match this schema. `nil` specifies that the distinguisher is disabled and thus will always be the empty string."),
        AGE_COLUMN,
        column("MissingPL", "string", 0, "references a broken or non-existent PriorityLevelConfiguration"),
    ];
    const PRIORITY_LEVEL_CONFIGURATION: &[ColumnSpec] = &[
        NAME_COLUMN,
        column("Type", "string", 0, "`type` indicates whether this priority level is subject to limitation on request execution.  A value of `\"Exempt\"` means that requests of this priority level are not subject to a limit (and thus are never queued) and do not detract from the capacity made available to other priority levels.  A value of `\"Limited\"` means that (a) requests of this priority level _are_ subject to limits and (b) some of the server's limited capacity is made available exclusively to this priority level. Required."),
        column("NominalConcurrencyShares", "string", 0, "`nominalConcurrencyShares` (NCS) contributes to the computation of the NominalConcurrencyLimit (NominalCL) of this level."),
        column("Queues", "string", 0, "`queues` is the number of queues for this priority level."),
        column("HandSize", "string", 0, "`handSize` is a small positive number that configures the shuffle sharding of requests into queues."),
        column("QueueLengthLimit", "string", 0, "`queueLengthLimit` is the maximum number of requests allowed to be waiting in a given queue of this priority level at a time; excess requests are rejected."),
        AGE_COLUMN,
    ];
    const POD_DISRUPTION_BUDGET: &[ColumnSpec] = &[
        NAME_COLUMN,
        column("Min Available", "string", 0, "The minimum number of pods that must be available."),
        column("Max Unavailable", "string", 0, "The maximum number of pods that may be unavailable."),
        column("Allowed Disruptions", "integer", 0, "Calculated number of pods that may be disrupted at this time."),
        AGE_COLUMN,
    ];
    const HORIZONTAL_POD_AUTOSCALER: &[ColumnSpec] = &[
        NAME_COLUMN,
        column("Reference", "string", 0, "reference to scaled resource; horizontal pod autoscaler will learn the current resource consumption and will set the desired number of pods by using its Scale subresource."),
        column("Targets", "string", 0, "metrics contains the specifications for which to use to calculate the desired replica count (the maximum replica count across all metrics will be used)."),
        column("MinPods", "string", 0, "minReplicas is the lower limit for the number of replicas to which the autoscaler can scale down."),
        column("MaxPods", "integer", 0, "maxReplicas is the upper limit for the number of replicas to which the autoscaler can scale up."),
        column("Replicas", "integer", 0, "currentReplicas is current number of replicas of pods managed by this autoscaler, as last seen by the autoscaler."),
        AGE_COLUMN,
    ];
    const WEBHOOK_CONFIGURATION: &[ColumnSpec] = &[
        NAME_COLUMN,
        column("Webhooks", "integer", 0, "Webhooks indicates the number of webhooks registered in this configuration"),
        AGE_COLUMN,
    ];
    const CERTIFICATE_SIGNING_REQUEST: &[ColumnSpec] = &[
        NAME_COLUMN,
        AGE_COLUMN,
        column("SignerName", "string", 0, "Requested signer for the request."),
        column("Requestor", "string", 0, "Name of the user that created the request."),
        column("RequestedDuration", "string", 0, "Requested duration of validity of the issued certificate."),
        column("Condition", "string", 0, "Conditions applied to the request."),
    ];
    const CONTROLLER_REVISION: &[ColumnSpec] = &[
        NAME_COLUMN,
        column("Controller", "string", 0, "Controller of the object"),
        column("Revision", "string", 0, "Revision indicates the revision of the state represented by Data."),
        AGE_COLUMN,
    ];
    const POD_TEMPLATE: &[ColumnSpec] = &[
        NAME_COLUMN,
        column("Containers", "string", 0, CONTAINERS_DOC),
        column("Images", "string", 0, IMAGES_DOC),
        column("Pod Labels", "string", 0, "The labels for the pod template."),
    ];
    const NETWORK_POLICY: &[ColumnSpec] = &[
        NAME_COLUMN,
        column("Pod-Selector", "string", 0, "podSelector selects the pods to which this NetworkPolicy object applies."),
        AGE_COLUMN,
    ];
    const RUNTIME_CLASS: &[ColumnSpec] = &[
        NAME_COLUMN,
        column("Handler", "string", 0, "handler specifies the underlying runtime and configuration that the CRI implementation will use to handle pods of this class."),
        AGE_COLUMN,
    ];

    let printer: (&'static [ColumnSpec], PrintFn) = match (group, kind) {
        ("", "Pod") => (POD, print_pod),
        ("apps", "Deployment") => (DEPLOYMENT, print_deployment),
        ("apps", "ReplicaSet") => (REPLICA_SET, print_replica_set),
        ("", "ReplicationController") => (REPLICA_SET, print_replication_controller),
        ("apps", "StatefulSet") => (STATEFUL_SET, print_stateful_set),
        ("apps", "DaemonSet") => (DAEMON_SET, print_daemon_set),
        ("batch", "Job") => (JOB, print_job),
        ("batch", "CronJob") => (CRON_JOB, print_cron_job),
        ("", "Service") => (SERVICE, print_service),
        ("", "ConfigMap") => (CONFIG_MAP, print_config_map),
        ("", "Secret") => (SECRET, print_secret),
        ("", "Namespace") => (NAMESPACE, print_namespace),
        ("", "ServiceAccount") => (SERVICE_ACCOUNT, print_service_account),
        ("", "Node") => (NODE, print_node),
        ("", "Event") | ("events.k8s.io", "Event") => (EVENT, print_event),
        ("", "Endpoints") => (ENDPOINTS, print_endpoints),
        ("discovery.k8s.io", "EndpointSlice") => (ENDPOINT_SLICE, print_endpoint_slice),
        ("coordination.k8s.io", "Lease") => (LEASE, print_lease),
        ("rbac.authorization.k8s.io", "RoleBinding") => (ROLE_BINDING, print_role_binding),
        ("rbac.authorization.k8s.io", "ClusterRoleBinding") => (CLUSTER_ROLE_BINDING, print_role_binding),
        ("", "PersistentVolumeClaim") => (PERSISTENT_VOLUME_CLAIM, print_persistent_volume_claim),
        ("", "PersistentVolume") => (PERSISTENT_VOLUME, print_persistent_volume),
        ("networking.k8s.io", "Ingress") => (INGRESS, print_ingress),
        ("networking.k8s.io", "IngressClass") => (INGRESS_CLASS, print_ingress_class),
        ("networking.k8s.io", "NetworkPolicy") => (NETWORK_POLICY, print_network_policy),
        ("storage.k8s.io", "StorageClass") => (STORAGE_CLASS, print_storage_class),
        ("scheduling.k8s.io", "PriorityClass") => (PRIORITY_CLASS, print_priority_class),
        ("policy", "PodDisruptionBudget") => (POD_DISRUPTION_BUDGET, print_pod_disruption_budget),
        ("autoscaling", "HorizontalPodAutoscaler") => (HORIZONTAL_POD_AUTOSCALER, print_horizontal_pod_autoscaler),
        ("flowcontrol.apiserver.k8s.io", "FlowSchema") => (FLOW_SCHEMA, print_flow_schema),
        ("flowcontrol.apiserver.k8s.io", "PriorityLevelConfiguration") => {
            (PRIORITY_LEVEL_CONFIGURATION, print_priority_level_configuration)
        }
        ("admissionregistration.k8s.io", "MutatingWebhookConfiguration" | "ValidatingWebhookConfiguration") => {
            (WEBHOOK_CONFIGURATION, print_webhook_configuration)
        }
        ("certificates.k8s.io", "CertificateSigningRequest") => {
            (CERTIFICATE_SIGNING_REQUEST, print_certificate_signing_request)
        }
        ("apps", "ControllerRevision") => (CONTROLLER_REVISION, print_controller_revision),
        ("", "PodTemplate") => (POD_TEMPLATE, print_pod_template),
        ("node.k8s.io", "RuntimeClass") => (RUNTIME_CLASS, print_runtime_class),
        _ => return None,
    };
    Some(printer)
}

// ---------------------------------------------------------------------------------------------------------------
// Printers, one per kind. Each returns every cell, wide ones included.

fn print_pod(pod: &Value, now: Timestamp) -> Vec<Value> {
    let phase = text(pod, &["status", "phase"]);
    let mut reason = match text(pod, &["status", "reason"]) {
        "" => phase.to_string(),
        status_reason => status_reason.to_string(),
    };
    let scheduling_gated = array(pod, &["status", "conditions"])
        .iter()
        .any(|c| text(c, &["type"]) == "PodScheduled" && text(c, &["reason"]) == "SchedulingGated");
    if scheduling_gated {
        reason = "SchedulingGated".to_string();
    }

    let init_containers = array(pod, &["spec", "initContainers"]);
    let is_sidecar = |name: &str| {
        init_containers.iter().any(|c| text(c, &["name"]) == name && text(c, &["restartPolicy"]) == "Always")
    };
    let total_containers = array(pod, &["spec", "containers"]).len()
        + init_containers.iter().filter(|c| text(c, &["restartPolicy"]) == "Always").count();
    let mut ready_containers = 0;
    let mut restarts = 0;
    let mut sidecar_restarts = 0;
    let mut last_restart: Option<Timestamp> = None;
    let mut last_sidecar_restart: Option<Timestamp> = None;

    let mut initializing = false;
    for (index, status) in array(pod, &["status", "initContainerStatuses"]).iter().enumerate() {
        let name = text(status, &["name"]);
        let count = integer(status, &["restartCount"]);
        let finished = timestamp(status, &["lastState", "terminated", "finishedAt"]);
        restarts += count;
        last_restart = later(last_restart, finished);
        if is_sidecar(name) {
            sidecar_restarts += count;
            last_sidecar_restart = later(last_sidecar_restart, finished);
        }
        let terminated = status.pointer("/state/terminated");
        let waiting_reason = text(status, &["state", "waiting", "reason"]);
        if terminated.is_some_and(|t| integer(t, &["exitCode"]) == 0) {
            continue;
        }
        if is_sidecar(name) && status.get("started").and_then(Value::as_bool) == Some(true) {
            if status.get("ready").and_then(Value::as_bool) == Some(true) {
                ready_containers += 1;
            }
            continue;
        }
        reason = if let Some(terminated) = terminated {
            match text(terminated, &["reason"]) {
                "" if integer(terminated, &["signal"]) != 0 => {
                    format!("Init:Signal:{}", integer(terminated, &["signal"]))
                }
                "" => format!("Init:ExitCode:{}", integer(terminated, &["exitCode"])),
                terminated_reason => format!("Init:{terminated_reason}"),
            }
        } else if !waiting_reason.is_empty() && waiting_reason != "PodInitializing" {
            format!("Init:{waiting_reason}")
        } else {
            format!("Init:{index}/{}", init_containers.len())
        };
        initializing = true;
        break;
    }

    let initialized = array(pod, &["status", "conditions"])
        .iter()
        .any(|c| text(c, &["type"]) == "Initialized" && text(c, &["status"]) == "True");
    if !initializing || initialized {
        restarts = sidecar_restarts;
        last_restart = last_sidecar_restart;
        let mut has_running = false;
        for status in array(pod, &["status", "containerStatuses"]).iter().rev() {
            restarts += integer(status, &["restartCount"]);
            last_restart = later(last_restart, timestamp(status, &["lastState", "terminated", "finishedAt"]));
            let waiting_reason = text(status, &["state", "waiting", "reason"]);
            let terminated = status.pointer("/state/terminated");
            if !waiting_reason.is_empty() {
                reason = waiting_reason.to_string();
            } else if let Some(terminated) = terminated {
                reason = match text(terminated, &["reason"]) {
                    "" if integer(terminated, &["signal"]) != 0 => {
                        format!("Signal:{}", integer(terminated, &["signal"]))
                    }
                    "" => format!("ExitCode:{}", integer(terminated, &["exitCode"])),
                    terminated_reason => terminated_reason.to_string(),
                };
            } else if status.get("ready").and_then(Value::as_bool) == Some(true)
                && status.pointer("/state/running").is_some()
            {
                has_running = true;
                ready_containers += 1;
            }
        }
        if reason == "Completed" && has_running {
            let pod_ready = array(pod, &["status", "conditions"])
                .iter()
                .any(|c| text(c, &["type"]) == "Ready" && text(c, &["status"]) == "True");
            reason = if pod_ready { "Running" } else { "NotReady" }.to_string();
        }
    }

    let deleting = pod.pointer("/metadata/deletionTimestamp").is_some_and(|t| !t.is_null());
    if deleting && text(pod, &["status", "reason"]) == "NodeLost" {
        reason = "Unknown".to_string();
    } else if deleting && phase != "Succeeded" && phase != "Failed" {
        reason = "Terminating".to_string();
    }

    let restarts_cell = match last_restart {
        Some(at) if restarts != 0 => format!("{restarts} ({} ago)", since(Some(at), now)),
        _ => restarts.to_string(),
    };

    let pod_ip = array(pod, &["status", "podIPs"])
        .first()
        .map(|ip| text(ip, &["ip"]))
        .filter(|ip| !ip.is_empty())
        .unwrap_or_else(|| text(pod, &["status", "podIP"]));
    let readiness_gates = array(pod, &["spec", "readinessGates"]);
    let gates_cell = if readiness_gates.is_empty() {
        "<none>".to_string()
    } else {
        let conditions = array(pod, &["status", "conditions"]);
        let true_gates = readiness_gates
            .iter()
            .filter(|gate| {
                let wanted = text(gate, &["conditionType"]);
                conditions.iter().find(|c| text(c, &["type"]) == wanted).is_some_and(|c| text(c, &["status"]) == "True")
            })
            .count();
        format!("{true_gates}/{}", readiness_gates.len())
    };

    vec![
        name(pod),
        Value::String(format!("{ready_containers}/{total_containers}")),
        Value::String(reason),
        Value::String(restarts_cell),
        age(pod, now),
        or_none(pod_ip),
        or_none(text(pod, &["spec", "nodeName"])),
        or_none(text(pod, &["status", "nominatedNodeName"])),
        Value::String(gates_cell),
    ]
}

fn print_deployment(deployment: &Value, now: Timestamp) -> Vec<Value> {
    let desired = integer_or(deployment, &["spec", "replicas"], 1);
    let ready = integer(deployment, &["status", "readyReplicas"]);
    let selector = match deployment.pointer("/spec/selector") {
        Some(selector) => match LabelSelector::from_label_selector(selector) {
            Ok(selector) => selector.to_string(),
            Err(_) => "<invalid>".to_string(),
        },
        None => String::new(),
    };
    let (containers, images) = container_cells(deployment, "/spec/template/spec/containers");
    vec![
        name(deployment),
        Value::String(format!("{ready}/{desired}")),
        Value::from(integer(deployment, &["status", "updatedReplicas"])),
        Value::from(integer(deployment, &["status", "availableReplicas"])),
        age(deployment, now),
        containers,
        images,
        Value::String(selector),
    ]
}

fn print_replica_set(replica_set: &Value, now: Timestamp) -> Vec<Value> {
    let (containers, images) = container_cells(replica_set, "/spec/template/spec/containers");
    vec![
        name(replica_set),
        Value::from(integer_or(replica_set, &["spec", "replicas"], 1)),
        Value::from(integer(replica_set, &["status", "replicas"])),
        Value::from(integer(replica_set, &["status", "readyReplicas"])),
        age(replica_set, now),
        containers,
        images,
        Value::String(format_label_selector(replica_set.pointer("/spec/selector"))),
    ]
}

fn print_replication_controller(controller: &Value, now: Timestamp) -> Vec<Value> {
    let (containers, images) = container_cells(controller, "/spec/template/spec/containers");
    vec![
        name(controller),
        Value::from(integer_or(controller, &["spec", "replicas"], 1)),
        Value::from(integer(controller, &["status", "replicas"])),
        Value::from(integer(controller, &["status", "readyReplicas"])),
        age(controller, now),
        containers,
        images,
        Value::String(format_labels(controller.pointer("/spec/selector"))),
    ]
}

fn print_stateful_set(stateful_set: &Value, now: Timestamp) -> Vec<Value> {
    let (containers, images) = container_cells(stateful_set, "/spec/template/spec/containers");
    let desired = integer_or(stateful_set, &["spec", "replicas"], 1);
    let ready = integer(stateful_set, &["status", "readyReplicas"]);
    vec![name(stateful_set), Value::String(format!("{ready}/{desired}")), age(stateful_set, now), containers, images]
}

fn print_daemon_set(daemon_set: &Value, now: Timestamp) -> Vec<Value> {
    let (containers, images) = container_cells(daemon_set, "/spec/template/spec/containers");
    let status = |field: &str| Value::from(integer(daemon_set, &["status", field]));
    vec![
        name(daemon_set),
        status("desiredNumberScheduled"),
        status("currentNumberScheduled"),
        status("numberReady"),
        status("updatedNumberScheduled"),
        status("numberAvailable"),
        Value::String(format_labels(daemon_set.pointer("/spec/template/spec/nodeSelector"))),
        age(daemon_set, now),
        containers,
        images,
        Value::String(format_label_selector(daemon_set.pointer("/spec/selector"))),
    ]
}

fn print_job(job: &Value, now: Timestamp) -> Vec<Value> {
    let succeeded = integer(job, &["status", "succeeded"]);
    let completions = match job.pointer("/spec/completions").and_then(Value::as_i64) {
        Some(completions) => format!("{succeeded}/{completions}"),
        None => match integer(job, &["spec", "parallelism"]) {
            parallelism if parallelism > 1 => format!("{succeeded}/1 of {parallelism}"),
            _ => format!("{succeeded}/1"),
        },
    };
    let duration = match (timestamp(job, &["status", "startTime"]), timestamp(job, &["status", "completionTime"])) {
        (None, _) => String::new(),
        (Some(start), None) => human_duration(now.duration_since(start)),
        (Some(start), Some(end)) => human_duration(end.duration_since(start)),
    };
    let conditions = array(job, &["status", "conditions"]);
    let has_condition = |wanted: &str| {
        conditions.iter().find(|c| text(c, &["type"]) == wanted).is_some_and(|c| text(c, &["status"]) == "True")
    };
    let status = if has_condition("Complete") {
        "Complete"
    } else if has_condition("Failed") {
        "Failed"
    } else if job.pointer("/metadata/deletionTimestamp").is_some_and(|t| !t.is_null()) {
        "Terminating"
    } else if has_condition("Suspended") {
        "Suspended"
    } else if has_condition("FailureTarget") {
        "FailureTarget"
    } else {
        "Running"
    };
    let (containers, images) = container_cells(job, "/spec/template/spec/containers");
    vec![
        name(job),
        Value::String(status.to_string()),
        Value::String(completions),
        Value::String(duration),
        age(job, now),
        containers,
        images,
        Value::String(format_label_selector(job.pointer("/spec/selector"))),
    ]
}

fn print_cron_job(cron_job: &Value, now: Timestamp) -> Vec<Value> {
    let last_schedule = match timestamp(cron_job, &["status", "lastScheduleTime"]) {
        Some(at) => since(Some(at), now),
        None => "<none>".to_string(),
    };
    let suspend = match cron_job.pointer("/spec/suspend").and_then(Value::as_bool) {
        Some(suspend) => Value::Bool(suspend),
        None => Value::String("<unset>".to_string()),
    };
    let (containers, images) = container_cells(cron_job, "/spec/jobTemplate/spec/template/spec/containers");
    vec![
        name(cron_job),
        Value::String(text(cron_job, &["spec", "schedule"]).to_string()),
        or_none(text(cron_job, &["spec", "timeZone"])),
        suspend,
        Value::from(array(cron_job, &["status", "active"]).len()),
        Value::String(last_schedule),
        age(cron_job, now),
        containers,
        images,
        Value::String(format_label_selector(cron_job.pointer("/spec/jobTemplate/spec/selector"))),
    ]
}

fn print_service(service: &Value, now: Timestamp) -> Vec<Value> {
    let service_type = match text(service, &["spec", "type"]) {
        "" => "ClusterIP",
        other => other,
    };
    let cluster_ip = array(service, &["spec", "clusterIPs"])
        .first()
        .and_then(Value::as_str)
        .unwrap_or_else(|| text(service, &["spec", "clusterIP"]));
    let external_ips: Vec<&str> = array(service, &["spec", "externalIPs"]).iter().filter_map(Value::as_str).collect();
    let external = match service_type {
        "ClusterIP" | "NodePort" if external_ips.is_empty() => "<none>".to_string(),
        "ClusterIP" | "NodePort" => external_ips.join(","),
        "LoadBalancer" => {
            let ingress: BTreeSet<&str> = array(service, &["status", "loadBalancer", "ingress"])
                .iter()
                .map(|i| match text(i, &["ip"]) {
                    "" => text(i, &["hostname"]),
                    ip => ip,
                })
                .filter(|address| !address.is_empty())
                .collect();
            let mut all: Vec<&str> = ingress.into_iter().collect();
            all.extend(external_ips);
            if all.is_empty() {
                "<pending>".to_string()
            } else {
                all.join(",")
            }
        }
        "ExternalName" => text(service, &["spec", "externalName"]).to_string(),
        _ => "<unknown>".to_string(),
    };
    let ports: Vec<String> = array(service, &["spec", "ports"])
        .iter()
        .map(|port| {
            let protocol = match text(port, &["protocol"]) {
                "" => "TCP",
                protocol => protocol,
            };
            let number = integer(port, &["port"]);
            match integer(port, &["nodePort"]) {
                node_port if node_port > 0 => format!("{number}:{node_port}/{protocol}"),
                _ => format!("{number}/{protocol}"),
            }
        })
        .collect();
    vec![
        name(service),
        Value::String(service_type.to_string()),
        or_none(cluster_ip),
        Value::String(external),
        or_none(&ports.join(",")),
        age(service, now),
        Value::String(format_labels(service.pointer("/spec/selector"))),
    ]
}

fn print_config_map(config_map: &Value, now: Timestamp) -> Vec<Value> {
    let count = object_len(config_map, "data") + object_len(config_map, "binaryData");
    vec![name(config_map), Value::from(count), age(config_map, now)]
}

fn print_secret(secret: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        name(secret),
        Value::String(text(secret, &["type"]).to_string()),
        Value::from(object_len(secret, "data")),
        age(secret, now),
    ]
}

fn print_namespace(namespace: &Value, now: Timestamp) -> Vec<Value> {
    vec![name(namespace), Value::String(text(namespace, &["status", "phase"]).to_string()), age(namespace, now)]
}

fn print_service_account(account: &Value, now: Timestamp) -> Vec<Value> {
    vec![name(account), Value::from(array(account, &["secrets"]).len()), age(account, now)]
}

fn print_node(node: &Value, now: Timestamp) -> Vec<Value> {
    let mut status: Vec<&str> =
        match array(node, &["status", "conditions"]).iter().find(|c| text(c, &["type"]) == "Ready") {
            Some(ready) if text(ready, &["status"]) == "True" => vec!["Ready"],
            Some(_) => vec!["NotReady"],
            None => vec!["Unknown"],
        };
    if node.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true) {
        status.push("SchedulingDisabled");
    }
    let mut roles = BTreeSet::new();
    if let Some(Value::Object(labels)) = node.pointer("/metadata/labels") {
        for (key, value) in labels {
            if let Some(role) = key.strip_prefix("node-role.kubernetes.io/").filter(|r| !r.is_empty()) {
                roles.insert(role.to_string());
            } else if key == "kubernetes.io/role" && value.as_str().is_some_and(|v| !v.is_empty()) {
                roles.insert(value.as_str().unwrap_or_default().to_string());
            }
        }
    }
    let roles = if roles.is_empty() { "<none>".to_string() } else { roles.into_iter().collect::<Vec<_>>().join(",") };
    let address = |wanted: &str| {
        let found = array(node, &["status", "addresses"])
            .iter()
            .find(|a| text(a, &["type"]) == wanted)
            .map(|a| text(a, &["address"]).to_string());
        Value::String(found.unwrap_or_else(|| "<none>".to_string()))
    };
    let info = |field: &str| match text(node, &["status", "nodeInfo", field]) {
        "" => Value::String("<unknown>".to_string()),
        value => Value::String(value.to_string()),
    };
    vec![
        name(node),
        Value::String(status.join(",")),
        Value::String(roles),
        age(node, now),
        Value::String(text(node, &["status", "nodeInfo", "kubeletVersion"]).to_string()),
        address("InternalIP"),
        address("ExternalIP"),
        info("osImage"),
        info("kernelVersion"),
        info("containerRuntimeVersion"),
    ]
}

/// Core v1 Events and events.k8s.io/v1 Events print alike (upstream converts both to one internal type); the
/// latter's fields carry other names.
fn print_event(event: &Value, now: Timestamp) -> Vec<Value> {
    let new_api = event.get("apiVersion").and_then(Value::as_str) == Some("events.k8s.io/v1")
        || (event.get("regarding").is_some() && event.get("involvedObject").is_none());
    let field = |core: &'static str, events: &'static str| if new_api { events } else { core };
    let involved = event.get(field("involvedObject", "regarding")).cloned().unwrap_or(Value::Null);

    let first_seen = match timestamp(event, &[field("firstTimestamp", "deprecatedFirstTimestamp")]) {
        Some(first) => since(Some(first), now),
        None => since(timestamp(event, &["eventTime"]), now),
    };
    let mut last_seen = match timestamp(event, &[field("lastTimestamp", "deprecatedLastTimestamp")]) {
        Some(last) => since(Some(last), now),
        None => first_seen.clone(),
    };
    let mut count = integer(event, &[field("count", "deprecatedCount")]);
    if let Some(series) = event.get("series").filter(|s| !s.is_null()) {
        last_seen = since(timestamp(series, &["lastObservedTime"]), now);
        count = integer(series, &["count"]);
    } else if count == 0 {
        count = 1;
    }
    let kind = text(&involved, &["kind"]).to_lowercase();
    let target = match text(&involved, &["name"]) {
        "" => kind,
        involved_name => format!("{kind}/{involved_name}"),
    };
    let source_path = field("source", "deprecatedSource");
    let component = first_non_empty(text(event, &[source_path, "component"]), text(event, &["reportingController"]));
    let host = first_non_empty(text(event, &[source_path, "host"]), text(event, &["reportingInstance"]));
    let source = if host.is_empty() { component.to_string() } else { format!("{component}, {host}") };
    vec![
        Value::String(last_seen),
        Value::String(text(event, &["type"]).to_string()),
        Value::String(text(event, &["reason"]).to_string()),
        Value::String(target),
        Value::String(text(&involved, &["fieldPath"]).to_string()),
        Value::String(source),
        Value::String(text(event, &[field("message", "note")]).trim().to_string()),
        Value::String(first_seen),
        Value::from(count),
        name(event),
    ]
}

fn print_endpoints(endpoints: &Value, now: Timestamp) -> Vec<Value> {
    let subsets = array(endpoints, &["subsets"]);
    let cell = if subsets.is_empty() {
        "<none>".to_string()
    } else {
        const MAX: usize = 3;
        let mut list = Vec::new();
        let mut more = false;
        let mut count = 0;
        for subset in subsets {
            let addresses = array(subset, &["addresses"]);
            let ports = array(subset, &["ports"]);
            if ports.is_empty() {
                count += addresses.len();
                for address in addresses {
                    if list.len() == MAX {
                        more = true;
                        break;
                    }
                    list.push(text(address, &["ip"]).to_string());
                }
                continue;
            }
            for port in ports {
                count += addresses.len();
                for address in addresses {
                    if list.len() == MAX {
                        more = true;
                        break;
                    }
                    list.push(join_host_port(text(address, &["ip"]), integer(port, &["port"])));
                }
            }
        }
        let joined = list.join(",");
        if more {
            format!("{joined} + {} more...", count - MAX)
        } else {
            joined
        }
    };
    vec![name(endpoints), Value::String(cell), age(endpoints, now)]
}

fn print_endpoint_slice(slice: &Value, now: Timestamp) -> Vec<Value> {
    let ports: Vec<String> = array(slice, &["ports"])
        .iter()
        .map(|port| match port.get("port").and_then(Value::as_i64) {
            Some(number) => number.to_string(),
            None => match port.get("name").and_then(Value::as_str) {
                Some(port_name) => port_name.to_string(),
                None => "*".to_string(),
            },
        })
        .collect();
    let addresses: Vec<String> = array(slice, &["endpoints"])
        .iter()
        .flat_map(|endpoint| array(endpoint, &["addresses"]).iter().filter_map(Value::as_str).map(str::to_string))
        .collect();
    vec![
        name(slice),
        Value::String(text(slice, &["addressType"]).to_string()),
        Value::String(list_with_more(&ports)),
        Value::String(list_with_more(&addresses)),
        age(slice, now),
    ]
}

fn print_lease(lease: &Value, now: Timestamp) -> Vec<Value> {
    vec![name(lease), Value::String(text(lease, &["spec", "holderIdentity"]).to_string()), age(lease, now)]
}

fn print_role_binding(binding: &Value, now: Timestamp) -> Vec<Value> {
    let role = format!("{}/{}", text(binding, &["roleRef", "kind"]), text(binding, &["roleRef", "name"]));
    let (mut users, mut groups, mut accounts) = (Vec::new(), Vec::new(), Vec::new());
    for subject in array(binding, &["subjects"]) {
        let subject_name = text(subject, &["name"]).to_string();
        match text(subject, &["kind"]) {
            "ServiceAccount" => accounts.push(format!("{}/{subject_name}", text(subject, &["namespace"]))),
            "User" => users.push(subject_name),
            "Group" => groups.push(subject_name),
            _ => {}
        }
    }
    vec![
        name(binding),
        Value::String(role),
        age(binding, now),
        Value::String(users.join(", ")),
        Value::String(groups.join(", ")),
        Value::String(accounts.join(", ")),
    ]
}

fn print_persistent_volume_claim(claim: &Value, now: Timestamp) -> Vec<Value> {
    let phase = if is_deleting(claim) { "Terminating" } else { text(claim, &["status", "phase"]) };
    let volume_name = text(claim, &["spec", "volumeName"]);
    let (capacity, access_modes) = if volume_name.is_empty() {
        (String::new(), String::new())
    } else {
        (
            text(claim, &["status", "capacity", "storage"]).to_string(),
            access_modes_text(array(claim, &["status", "accessModes"])),
        )
    };
    vec![
        name(claim),
        Value::String(phase.to_string()),
        Value::String(volume_name.to_string()),
        Value::String(capacity),
        Value::String(access_modes),
        Value::String(storage_class_of(claim)),
        unset_if_missing(claim, "/spec/volumeAttributesClassName"),
        age(claim, now),
        unset_if_missing(claim, "/spec/volumeMode"),
    ]
}

fn print_persistent_volume(volume: &Value, now: Timestamp) -> Vec<Value> {
    let claim = match volume.pointer("/spec/claimRef").filter(|c| !c.is_null()) {
        Some(claim) => format!("{}/{}", text(claim, &["namespace"]), text(claim, &["name"])),
        None => String::new(),
    };
    let phase = if is_deleting(volume) { "Terminating" } else { text(volume, &["status", "phase"]) };
    vec![
        name(volume),
        Value::String(text(volume, &["spec", "capacity", "storage"]).to_string()),
        Value::String(access_modes_text(array(volume, &["spec", "accessModes"]))),
        Value::String(text(volume, &["spec", "persistentVolumeReclaimPolicy"]).to_string()),
        Value::String(phase.to_string()),
        Value::String(claim),
        Value::String(storage_class_of(volume)),
        unset_if_missing(volume, "/spec/volumeAttributesClassName"),
        Value::String(text(volume, &["status", "reason"]).to_string()),
        age(volume, now),
        unset_if_missing(volume, "/spec/volumeMode"),
    ]
}

fn print_ingress(ingress: &Value, now: Timestamp) -> Vec<Value> {
    let rules = array(ingress, &["spec", "rules"]);
    let mut hosts = Vec::new();
    let mut more = false;
    for rule in rules {
        if hosts.len() == 3 {
            more = true;
        }
        let host = text(rule, &["host"]);
        if !more && !host.is_empty() {
            hosts.push(host);
        }
    }
    let hosts = match (hosts.is_empty(), more) {
        (true, _) => "*".to_string(),
        (false, true) => format!("{} + {} more...", hosts.join(","), rules.len() - 3),
        (false, false) => hosts.join(","),
    };
    let addresses: BTreeSet<&str> = array(ingress, &["status", "loadBalancer", "ingress"])
        .iter()
        .map(|i| match text(i, &["ip"]) {
            "" => text(i, &["hostname"]),
            ip => ip,
        })
        .filter(|a| !a.is_empty())
        .collect();
    let ports = if array(ingress, &["spec", "tls"]).is_empty() { "80" } else { "80, 443" };
    vec![
        name(ingress),
        or_none(text(ingress, &["spec", "ingressClassName"])),
        Value::String(hosts),
        Value::String(addresses.into_iter().collect::<Vec<_>>().join(",")),
        Value::String(ports.to_string()),
        age(ingress, now),
    ]
}

fn print_ingress_class(class: &Value, now: Timestamp) -> Vec<Value> {
    let parameters = match class.pointer("/spec/parameters").filter(|p| !p.is_null()) {
        Some(parameters) => {
            let mut kind = text(parameters, &["kind"]).to_string();
            if let Some(group) = parameters.get("apiGroup").and_then(Value::as_str) {
                kind = format!("{kind}.{group}");
            }
            format!("{kind}/{}", text(parameters, &["name"]))
        }
        None => "<none>".to_string(),
    };
    vec![
        name(class),
        Value::String(text(class, &["spec", "controller"]).to_string()),
        Value::String(parameters),
        age(class, now),
    ]
}

fn print_network_policy(policy: &Value, now: Timestamp) -> Vec<Value> {
    let selector = format_label_selector(Some(policy.pointer("/spec/podSelector").unwrap_or(&json!({}))));
    vec![name(policy), Value::String(selector), age(policy, now)]
}

fn print_storage_class(class: &Value, now: Timestamp) -> Vec<Value> {
    let annotation =
        |key: &str| class.pointer("/metadata/annotations").and_then(|a| a.get(key)).and_then(Value::as_str);
    let is_default = annotation("storageclass.kubernetes.io/is-default-class") == Some("true")
        || annotation("storageclass.beta.kubernetes.io/is-default-class") == Some("true");
    let mut class_name = text(class, &["metadata", "name"]).to_string();
    if is_default {
        class_name.push_str(" (default)");
    }
    let or_default = |field: &str, default: &str| match text(class, &[field]) {
        "" => default.to_string(),
        value => value.to_string(),
    };
    vec![
        Value::String(class_name),
        Value::String(text(class, &["provisioner"]).to_string()),
        Value::String(or_default("reclaimPolicy", "Delete")),
        Value::String(or_default("volumeBindingMode", "Immediate")),
        Value::Bool(class.get("allowVolumeExpansion").and_then(Value::as_bool).unwrap_or(false)),
        age(class, now),
    ]
}

fn print_priority_class(class: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        name(class),
        Value::from(integer(class, &["value"])),
        Value::Bool(class.get("globalDefault").and_then(Value::as_bool).unwrap_or(false)),
        age(class, now),
        Value::String(text(class, &["preemptionPolicy"]).to_string()),
    ]
}

/// As upstream: `<none>` for no distinguisher, and `?` under MissingPL until the Dangling condition says otherwise.
fn print_flow_schema(schema: &Value, now: Timestamp) -> Vec<Value> {
    let dangling = schema
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|conditions| conditions.iter().find(|condition| condition["type"] == "Dangling"))
        .and_then(|condition| condition["status"].as_str())
        .unwrap_or("?");
    let distinguisher = schema.pointer("/spec/distinguisherMethod/type").and_then(Value::as_str).unwrap_or("<none>");
    vec![
        name(schema),
        Value::String(text(schema, &["spec", "priorityLevelConfiguration", "name"]).to_string()),
        Value::from(integer(schema, &["spec", "matchingPrecedence"])),
        Value::String(distinguisher.to_string()),
        age(schema, now),
        Value::String(dangling.to_string()),
    ]
}

/// `<none>` for what an exempt level, or one that rejects instead of queuing, does not have.
fn print_priority_level_configuration(level: &Value, now: Timestamp) -> Vec<Value> {
    let cell = |pointer: &str| level.pointer(pointer).cloned().unwrap_or_else(|| Value::String("<none>".into()));
    vec![
        name(level),
        Value::String(text(level, &["spec", "type"]).to_string()),
        cell("/spec/limited/nominalConcurrencyShares"),
        cell("/spec/limited/limitResponse/queuing/queues"),
        cell("/spec/limited/limitResponse/queuing/handSize"),
        cell("/spec/limited/limitResponse/queuing/queueLengthLimit"),
        age(level, now),
    ]
}

fn print_pod_disruption_budget(budget: &Value, now: Timestamp) -> Vec<Value> {
    let int_or_string = |pointer: &str| match budget.pointer(pointer) {
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::String(s)) => s.clone(),
        _ => "N/A".to_string(),
    };
    vec![
        name(budget),
        Value::String(int_or_string("/spec/minAvailable")),
        Value::String(int_or_string("/spec/maxUnavailable")),
        Value::from(integer(budget, &["status", "disruptionsAllowed"])),
        age(budget, now),
    ]
}

/// Rows of the autoscaling/v2 form (Tables of v1 requests are made from the stored v2 object).
fn print_horizontal_pod_autoscaler(autoscaler: &Value, now: Timestamp) -> Vec<Value> {
    let reference = format!(
        "{}/{}",
        text(autoscaler, &["spec", "scaleTargetRef", "kind"]),
        text(autoscaler, &["spec", "scaleTargetRef", "name"])
    );
    let min_pods = match autoscaler.pointer("/spec/minReplicas") {
        Some(Value::Number(n)) => n.to_string(),
        _ => "<unset>".to_string(),
    };
    vec![
        name(autoscaler),
        Value::String(reference),
        Value::String(autoscaler_targets(
            array(autoscaler, &["spec", "metrics"]),
            array(autoscaler, &["status", "currentMetrics"]),
        )),
        Value::String(min_pods),
        Value::from(integer(autoscaler, &["spec", "maxReplicas"])),
        Value::from(integer(autoscaler, &["status", "currentReplicas"])),
        age(autoscaler, now),
    ]
}

/// `current/target` per metric, as kubectl shows them: the first two, then how many more.
fn autoscaler_targets(specs: &[Value], statuses: &[Value]) -> String {
    const SHOWN: usize = 2;
    if specs.is_empty() {
        return "<none>".to_string();
    }
    let quantity = |value: Option<&Value>| match value {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    let unknown = || "<unknown>".to_string();
    let shown: Vec<String> = specs
        .iter()
        .enumerate()
        .map(|(index, spec)| {
            let kind = text(spec, &["type"]);
            let source_key = match kind {
                "External" => "external",
                "Pods" => "pods",
                "Object" => "object",
                "Resource" => "resource",
                "ContainerResource" => "containerResource",
                _ => return "<unknown type>".to_string(),
            };
            let source = &spec[source_key];
            let status = statuses.get(index).map(|status| &status[source_key]).filter(|status| status.is_object());
            let current =
                |field: &str| status.and_then(|status| quantity(status.pointer(&format!("/current/{field}"))));
            let target_average = quantity(source.pointer("/target/averageValue"));
            match kind {
                "Pods" => format!(
                    "{}/{}",
                    current("averageValue").unwrap_or_else(unknown),
                    target_average.unwrap_or_default()
                ),
                "External" | "Object" => match target_average {
                    Some(average) => format!("{}/{average} (avg)", current("averageValue").unwrap_or_else(unknown)),
                    None => format!(
                        "{}/{}",
                        current("value").unwrap_or_else(unknown),
                        quantity(source.pointer("/target/value")).unwrap_or_default()
                    ),
                },
                _ => {
                    let resource = text(source, &["name"]);
                    match target_average {
                        Some(average) => {
                            format!("{resource}: {}/{average}", current("averageValue").unwrap_or_else(unknown))
                        }
                        None => {
                            let percent = |value: Option<String>| value.map(|v| format!("{v}%"));
                            let target = percent(quantity(source.pointer("/target/averageUtilization")))
                                .unwrap_or_else(|| "<auto>".to_string());
                            format!(
                                "{resource}: {}/{target}",
                                percent(current("averageUtilization")).unwrap_or_else(unknown)
                            )
                        }
                    }
                }
            }
        })
        .collect();
    if shown.len() > SHOWN {
        format!("{} + {} more...", shown[..SHOWN].join(", "), shown.len() - SHOWN)
    } else {
        shown.join(", ")
    }
}

fn print_webhook_configuration(configuration: &Value, now: Timestamp) -> Vec<Value> {
    vec![name(configuration), Value::from(array(configuration, &["webhooks"]).len()), age(configuration, now)]
}

fn print_certificate_signing_request(request: &Value, now: Timestamp) -> Vec<Value> {
    let conditions = array(request, &["status", "conditions"]);
    let has = |wanted: &str| conditions.iter().any(|c| text(c, &["type"]) == wanted);
    let mut condition = if has("Denied") {
        "Denied"
    } else if has("Approved") {
        "Approved"
    } else {
        "Pending"
    }
    .to_string();
    if has("Failed") {
        condition.push_str(",Failed");
    }
    if !text(request, &["status", "certificate"]).is_empty() {
        condition.push_str(",Issued");
    }
    let requested_duration = match request.pointer("/spec/expirationSeconds").and_then(Value::as_i64) {
        Some(seconds) => human_duration(SignedDuration::from_secs(seconds)),
        None => "<none>".to_string(),
    };
    vec![
        name(request),
        age(request, now),
        or_none(text(request, &["spec", "signerName"])),
        Value::String(text(request, &["spec", "username"]).to_string()),
        Value::String(requested_duration),
        Value::String(condition),
    ]
}

fn print_controller_revision(revision: &Value, now: Timestamp) -> Vec<Value> {
    let controller = array(revision, &["metadata", "ownerReferences"])
        .iter()
        .find(|owner| owner.get("controller").and_then(Value::as_bool) == Some(true))
        .map(|owner| {
            let group = text(owner, &["apiVersion"]).rsplit_once('/').map(|(group, _)| group).unwrap_or_default();
            let kind = text(owner, &["kind"]);
            let group_kind = if group.is_empty() { kind.to_string() } else { format!("{kind}.{group}") };
            format!("{}/{}", group_kind.to_lowercase(), text(owner, &["name"]))
        })
        .unwrap_or_else(|| "<none>".to_string());
    vec![name(revision), Value::String(controller), Value::from(integer(revision, &["revision"])), age(revision, now)]
}

fn print_pod_template(template: &Value, _now: Timestamp) -> Vec<Value> {
    let (containers, images) = container_cells(template, "/template/spec/containers");
    vec![
        name(template),
        containers,
        images,
        Value::String(format_labels(template.pointer("/template/metadata/labels"))),
    ]
}

fn print_runtime_class(class: &Value, now: Timestamp) -> Vec<Value> {
    vec![name(class), Value::String(text(class, &["handler"]).to_string()), age(class, now)]
}

// ---------------------------------------------------------------------------------------------------------------
// Helpers.

/// Finished pods carry a row condition (upstream marks them Completed so clients can hide them).
fn finished_pod_conditions(object: &Value) -> Option<Value> {
    let (reason, message) = match text(object, &["status", "phase"]) {
        "Succeeded" => ("Succeeded", "The pod has completed successfully."),
        "Failed" => ("Failed", "The pod failed."),
        _ => return None,
    };
    Some(json!([{"type": "Completed", "status": "True", "reason": reason, "message": message}]))
}

fn custom_cell(column: &CustomColumn, object: &Value, now: Timestamp) -> Value {
    let Some(path) = &column.path else { return Value::Null };
    let Some(value) = path.evaluate(object).into_iter().next() else { return Value::Null };
    match column.column_type.as_str() {
        "string" => Value::String(go_print(value)),
        "integer" => match value {
            Value::Number(n) => {
                n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)).map(Value::from).unwrap_or_default()
            }
            _ => Value::Null,
        },
        "number" => match value {
            Value::Number(n) => n.as_f64().map(Value::from).unwrap_or_default(),
            _ => Value::Null,
        },
        "boolean" => match value {
            Value::Bool(b) => Value::Bool(*b),
            _ => Value::Null,
        },
        "date" => match value {
            Value::String(s) if s.is_empty() => Value::String("<unknown>".to_string()),
            Value::String(s) => match s.parse::<Timestamp>() {
                Ok(at) => Value::String(since(Some(at), now)),
                Err(_) => Value::String("<invalid>".to_string()),
            },
            _ => Value::Null,
        },
        _ => Value::Null,
    }
}

/// How upstream's JSONPath printer renders a value in a string column: strings bare, other values the way Go's
/// fmt prints decoded JSON (`map[a:1]`, `[x y]`), null as `<no value>`.
fn go_print(value: &Value) -> String {
    match value {
        Value::Null => "<no value>".to_string(),
        Value::String(s) => s.clone(),
        other => {
            let mut out = String::new();
            go_format(other, &mut out);
            out
        }
    }
}

fn go_format(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("<nil>"),
        Value::Bool(b) => {
            let _ = write!(out, "{b}");
        }
        Value::Number(n) => {
            let _ = write!(out, "{n}");
        }
        Value::String(s) => out.push_str(s),
        Value::Array(items) => {
            out.push('[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(' ');
                }
                go_format(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push_str("map[");
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            for (index, key) in keys.into_iter().enumerate() {
                if index > 0 {
                    out.push(' ');
                }
                out.push_str(key);
                out.push(':');
                go_format(&map[key], out);
            }
            out.push(']');
        }
    }
}

fn closing_bracket(text: &str) -> Option<usize> {
    let mut quote: Option<char> = None;
    let mut depth = 0;
    for (index, c) in text.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, '(') => depth += 1,
            (None, ')') => depth -= 1,
            (None, ']') if depth == 0 => return Some(index),
            _ => {}
        }
    }
    None
}

fn parse_bracket(inside: &str) -> Result<Step, String> {
    if inside == "*" {
        return Ok(Step::Wildcard);
    }
    if let Some(quoted) = unquote(inside) {
        return Ok(Step::Field(quoted));
    }
    if let Ok(index) = inside.parse::<i64>() {
        return Ok(Step::Index(index));
    }
    let Some(filter) = inside.strip_prefix("?(").and_then(|f| f.strip_suffix(')')) else {
        return Err(format!("unsupported expression [{inside}]"));
    };
    let filter = filter.trim();
    const OPERATORS: [(&str, Comparison); 6] = [
        ("==", Comparison::Equal),
        ("!=", Comparison::NotEqual),
        ("<=", Comparison::LessOrEqual),
        (">=", Comparison::GreaterOrEqual),
        ("<", Comparison::Less),
        (">", Comparison::Greater),
    ];
    let found = OPERATORS
        .iter()
        .filter_map(|(symbol, op)| filter.find(symbol).map(|at| (at, *symbol, *op)))
        .min_by(|a, b| a.0.cmp(&b.0).then(b.1.len().cmp(&a.1.len())));
    let (left, comparison) = match found {
        Some((at, symbol, op)) => {
            let right = filter[at + symbol.len()..].trim();
            let literal = match unquote(right) {
                Some(s) => Value::String(s),
                None => serde_json::from_str::<Value>(right).map_err(|_| format!("unsupported literal {right}"))?,
            };
            (filter[..at].trim(), Some((op, literal)))
        }
        None => (filter, None),
    };
    let Some(member) = left.strip_prefix('@') else {
        return Err(format!("filter must start with @: {filter}"));
    };
    let path: Vec<String> = member.split('.').filter(|p| !p.is_empty()).map(str::to_string).collect();
    Ok(Step::Filter { path, comparison })
}

fn unquote(text: &str) -> Option<String> {
    let inner = text
        .strip_prefix('\'')
        .and_then(|t| t.strip_suffix('\''))
        .or_else(|| text.strip_prefix('"').and_then(|t| t.strip_suffix('"')))?;
    Some(inner.to_string())
}

fn filter_matches(item: &Value, path: &[String], comparison: &Option<(Comparison, Value)>) -> bool {
    let Some(value) = path.iter().try_fold(item, |value, key| value.get(key.as_str())) else { return false };
    let Some((op, literal)) = comparison else { return true };
    let ordering = match (value, literal) {
        (Value::Number(a), Value::Number(b)) => a.as_f64().zip(b.as_f64()).and_then(|(a, b)| a.partial_cmp(&b)),
        (Value::String(a), Value::String(b)) => Some(a.cmp(b)),
        (a, b) if a == b => Some(std::cmp::Ordering::Equal),
        _ => None,
    };
    match op {
        Comparison::Equal => ordering == Some(std::cmp::Ordering::Equal),
        Comparison::NotEqual => ordering != Some(std::cmp::Ordering::Equal),
        Comparison::Less => ordering == Some(std::cmp::Ordering::Less),
        Comparison::Greater => ordering == Some(std::cmp::Ordering::Greater),
        Comparison::LessOrEqual => matches!(ordering, Some(std::cmp::Ordering::Less | std::cmp::Ordering::Equal)),
        Comparison::GreaterOrEqual => {
            matches!(ordering, Some(std::cmp::Ordering::Greater | std::cmp::Ordering::Equal))
        }
    }
}

fn lookup<'a>(object: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(object, |value, key| value.get(key))
}

fn text<'a>(object: &'a Value, path: &[&str]) -> &'a str {
    lookup(object, path).and_then(Value::as_str).unwrap_or_default()
}

fn integer(object: &Value, path: &[&str]) -> i64 {
    integer_or(object, path, 0)
}

fn integer_or(object: &Value, path: &[&str], default: i64) -> i64 {
    lookup(object, path).and_then(Value::as_i64).unwrap_or(default)
}

fn array<'a>(object: &'a Value, path: &[&str]) -> &'a [Value] {
    lookup(object, path).and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default()
}

fn object_len(object: &Value, field: &str) -> usize {
    object.get(field).and_then(Value::as_object).map(Map::len).unwrap_or(0)
}

fn timestamp(object: &Value, path: &[&str]) -> Option<Timestamp> {
    lookup(object, path).and_then(Value::as_str).and_then(|s| s.parse::<Timestamp>().ok())
}

fn later(current: Option<Timestamp>, candidate: Option<Timestamp>) -> Option<Timestamp> {
    match (current, candidate) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// Upstream's translateTimestampSince: the age of a timestamp, `<unknown>` when there is none.
fn since(at: Option<Timestamp>, now: Timestamp) -> String {
    match at {
        Some(at) => human_duration(now.duration_since(at)),
        None => "<unknown>".to_string(),
    }
}

fn name(object: &Value) -> Value {
    Value::String(text(object, &["metadata", "name"]).to_string())
}

fn age(object: &Value, now: Timestamp) -> Value {
    Value::String(since(timestamp(object, &["metadata", "creationTimestamp"]), now))
}

fn or_none(value: &str) -> Value {
    Value::String(if value.is_empty() { "<none>" } else { value }.to_string())
}

fn unset_if_missing(object: &Value, pointer: &str) -> Value {
    Value::String(object.pointer(pointer).and_then(Value::as_str).unwrap_or("<unset>").to_string())
}

fn first_non_empty<'a>(first: &'a str, second: &'a str) -> &'a str {
    if first.is_empty() {
        second
    } else {
        first
    }
}

fn is_deleting(object: &Value) -> bool {
    object.pointer("/metadata/deletionTimestamp").is_some_and(|t| !t.is_null())
}

/// Container names and images, comma-joined, for the wide CONTAINERS and IMAGES columns.
fn container_cells(object: &Value, pointer: &str) -> (Value, Value) {
    let containers = object.pointer(pointer).and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    let names: Vec<&str> = containers.iter().map(|c| text(c, &["name"])).collect();
    let images: Vec<&str> = containers.iter().map(|c| text(c, &["image"])).collect();
    (Value::String(names.join(",")), Value::String(images.join(",")))
}

/// Upstream's labels.FormatLabels: `k=v` sorted by key, `<none>` when empty.
fn format_labels(labels: Option<&Value>) -> String {
    let Some(Value::Object(labels)) = labels else { return "<none>".to_string() };
    if labels.is_empty() {
        return "<none>".to_string();
    }
    let mut pairs: Vec<String> =
        labels.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default())).collect();
    pairs.sort();
    pairs.join(",")
}

/// Upstream's metav1.FormatLabelSelector: the selector's text, `<none>` when it selects everything or nothing,
/// `<error>` when it is invalid.
fn format_label_selector(selector: Option<&Value>) -> String {
    match LabelSelector::from_label_selector(selector.unwrap_or(&Value::Null)) {
        Ok(selector) => match selector.to_string() {
            text if text.is_empty() => "<none>".to_string(),
            text => text,
        },
        Err(_) => "<error>".to_string(),
    }
}

fn access_modes_text(modes: &[Value]) -> String {
    let has = |mode: &str| modes.iter().any(|m| m.as_str() == Some(mode));
    let mut short = Vec::new();
    for (mode, abbreviation) in
        [("ReadWriteOnce", "RWO"), ("ReadOnlyMany", "ROX"), ("ReadWriteMany", "RWX"), ("ReadWriteOncePod", "RWOP")]
    {
        if has(mode) {
            short.push(abbreviation);
        }
    }
    short.join(",")
}

/// The beta annotation wins over `spec.storageClassName`, as upstream's helpers read it.
fn storage_class_of(object: &Value) -> String {
    let annotation = object
        .pointer("/metadata/annotations")
        .and_then(|a| a.get("volume.beta.kubernetes.io/storage-class"))
        .and_then(Value::as_str);
    annotation.unwrap_or_else(|| text(object, &["spec", "storageClassName"])).to_string()
}

fn join_host_port(host: &str, port: i64) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// At most three entries, then `+ N more...`; `<unset>` for none.
fn list_with_more(items: &[String]) -> String {
    const MAX: usize = 3;
    if items.is_empty() {
        return "<unset>".to_string();
    }
    let shown = items[..items.len().min(MAX)].join(",");
    if items.len() > MAX {
        format!("{shown} + {} more...", items.len() - MAX)
    } else {
        shown
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::registry::built_in_resources;

    const NOW: &str = "2026-06-15T12:00:00Z";

    fn now() -> Timestamp {
        NOW.parse().unwrap()
    }

    fn def(group: &str, kind: &str) -> ResourceDef {
        built_in_resources().into_iter().find(|d| d.group == group && d.kind == kind).unwrap()
    }

    #[test]
    fn autoscaler_targets_read_like_kubectl() {
        let specs = [
            json!({"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 60}}}),
            json!({"type": "Pods", "pods": {"metric": {"name": "qps"}, "target": {"type": "AverageValue", "averageValue": "10"}}}),
            json!({"type": "External", "external": {"metric": {"name": "queue"}, "target": {"type": "Value", "value": "30"}}}),
        ];
        let statuses =
            [json!({"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 71}}})];
        assert_eq!(autoscaler_targets(&specs, &statuses), "cpu: 71%/60%, <unknown>/10 + 1 more...");
        assert_eq!(autoscaler_targets(&specs[1..], &[]), "<unknown>/10, <unknown>/30");
        assert_eq!(autoscaler_targets(&[], &[]), "<none>");
    }

    fn custom_def() -> ResourceDef {
        ResourceDef {
            group: "example.com".into(),
            version: "v1".into(),
            kind: "Widget".into(),
            plural: "widgets".into(),
            singular: "widget".into(),
            namespaced: true,
            short_names: vec![],
            categories: vec![],
            verbs: vec![],
            status: true,
            scale: None,
            schema: SchemaSource::CustomResource("widgets.example.com".into()),
            conversion: None,
        }
    }

    fn cells(def: &ResourceDef, object: &Value) -> Vec<Value> {
        let table = table(def, [object], IncludeObject::None, now(), None);
        table["rows"][0]["cells"].as_array().unwrap().clone()
    }

    fn column_names(table: &Value) -> Vec<&str> {
        table["columnDefinitions"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect()
    }

    fn pod(status: Value) -> Value {
        json!({
            "metadata": {"name": "p", "namespace": "default", "creationTimestamp": "2026-06-15T11:55:00Z"},
            "spec": {"containers": [{"name": "a"}, {"name": "b"}]},
            "status": status,
        })
    }

    fn pod_status(status: Value) -> String {
        cells(&def("", "Pod"), &pod(status))[2].as_str().unwrap().to_string()
    }

    #[test]
    fn human_duration_thresholds() {
        let cases = [
            (-5, "<invalid>"),
            (-1, "0s"),
            (0, "0s"),
            (5, "5s"),
            (119, "119s"),
            (120, "2m"),
            (150, "2m30s"),
            (599, "9m59s"),
            (600, "10m"),
            (179 * 60 + 59, "179m"),
            (3 * 3600, "3h"),
            (3 * 3600 + 60 * 5, "3h5m"),
            (8 * 3600 + 60 * 5, "8h"),
            (47 * 3600, "47h"),
            (48 * 3600, "2d"),
            (5 * 86400 + 4 * 3600, "5d4h"),
            (8 * 86400 + 4 * 3600, "8d"),
            (729 * 86400, "729d"),
            (730 * 86400, "2y"),
            (731 * 86400, "2y1d"),
            (8 * 365 * 86400 + 86400, "8y"),
        ];
        for (seconds, expected) in cases {
            assert_eq!(human_duration(SignedDuration::from_secs(seconds)), expected, "{seconds}s");
        }
        assert_eq!(human_duration(SignedDuration::from_millis(-1500)), "0s");
    }

    #[test]
    fn pod_columns_and_running_row() {
        let object = pod(json!({
            "phase": "Running",
            "podIPs": [{"ip": "10.1.0.4"}],
            "containerStatuses": [
                {"name": "a", "ready": true, "restartCount": 0, "state": {"running": {}}},
                {"name": "b", "ready": true, "restartCount": 2, "state": {"running": {}},
                 "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2026-06-15T11:58:00Z"}}},
            ],
        }));
        let table = table(&def("", "Pod"), [&object], IncludeObject::Metadata, now(), None);
        assert_eq!(
            column_names(&table),
            ["Name", "Ready", "Status", "Restarts", "Age", "IP", "Node", "Nominated Node", "Readiness Gates"]
        );
        assert_eq!(table["columnDefinitions"][0]["format"], "name");
        assert_eq!(table["columnDefinitions"][5]["priority"], 1);
        assert_eq!(table["kind"], "Table");
        assert_eq!(table["apiVersion"], "meta.k8s.io/v1");
        let row = &table["rows"][0];
        assert_eq!(
            row["cells"],
            json!(["p", "2/2", "Running", "2 (2m ago)", "5m", "10.1.0.4", "<none>", "<none>", "<none>"])
        );
        assert_eq!(row["object"]["kind"], "PartialObjectMetadata");
        assert_eq!(row["object"]["metadata"]["namespace"], "default");
        assert!(row.get("conditions").is_none());
    }

    #[test]
    fn pod_status_reasons() {
        assert_eq!(pod_status(json!({"phase": "Pending"})), "Pending");
        assert_eq!(
            pod_status(
                json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]})
            ),
            "SchedulingGated"
        );
        assert_eq!(
            pod_status(json!({"phase": "Pending", "containerStatuses": [
                {"name": "a", "state": {"waiting": {"reason": "ImagePullBackOff"}}},
                {"name": "b", "state": {"waiting": {"reason": "ContainerCreating"}}}]})),
            "ImagePullBackOff",
            "the first container's reason wins because statuses are read last to first"
        );
        assert_eq!(
            pod_status(json!({"phase": "Running", "containerStatuses": [
                {"name": "a", "state": {"terminated": {"exitCode": 137}}}]})),
            "ExitCode:137"
        );
        assert_eq!(
            pod_status(json!({"phase": "Running", "containerStatuses": [
                {"name": "a", "state": {"terminated": {"exitCode": 0, "signal": 9}}}]})),
            "Signal:9"
        );
        assert_eq!(
            pod_status(json!({"phase": "Succeeded", "containerStatuses": [
                {"name": "a", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]})),
            "Completed"
        );
        assert_eq!(
            pod_status(json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "False"}],
                "containerStatuses": [
                {"name": "a", "ready": true, "state": {"running": {}}},
                {"name": "b", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]})),
            "NotReady"
        );
        assert_eq!(pod_status(json!({"phase": "Failed", "reason": "Evicted"})), "Evicted");
    }

    #[test]
    fn pod_init_container_status() {
        let mut object = pod(json!({"phase": "Pending", "initContainerStatuses": [
            {"name": "i1", "state": {"terminated": {"exitCode": 0}}},
            {"name": "i2", "state": {"waiting": {"reason": "PodInitializing"}}}]}));
        object["spec"]["initContainers"] = json!([{"name": "i1"}, {"name": "i2"}, {"name": "i3"}]);
        assert_eq!(cells(&def("", "Pod"), &object)[2], "Init:1/3");

        object["status"]["initContainerStatuses"][1]["state"] = json!({"waiting": {"reason": "CrashLoopBackOff"}});
        assert_eq!(cells(&def("", "Pod"), &object)[2], "Init:CrashLoopBackOff");

        object["status"]["initContainerStatuses"][1]["state"] = json!({"terminated": {"exitCode": 3}});
        assert_eq!(cells(&def("", "Pod"), &object)[2], "Init:ExitCode:3");

        // A started sidecar (restartPolicy Always) counts toward READY and does not block.
        let mut sidecar = pod(json!({"phase": "Running",
            "initContainerStatuses": [{"name": "s", "started": true, "ready": true, "state": {"running": {}}}],
            "containerStatuses": [
                {"name": "a", "ready": true, "state": {"running": {}}},
                {"name": "b", "ready": false, "state": {"running": {}}}]}));
        sidecar["spec"]["initContainers"] = json!([{"name": "s", "restartPolicy": "Always"}]);
        let row = cells(&def("", "Pod"), &sidecar);
        assert_eq!(row[1], "2/3");
        assert_eq!(row[2], "Running");
    }

    #[test]
    fn pod_terminating_and_finished_conditions() {
        let mut object = pod(json!({"phase": "Running"}));
        object["metadata"]["deletionTimestamp"] = json!("2026-06-15T11:59:00Z");
        assert_eq!(cells(&def("", "Pod"), &object)[2], "Terminating");
        object["status"]["reason"] = json!("NodeLost");
        assert_eq!(cells(&def("", "Pod"), &object)[2], "Unknown");

        let mut finished = pod(json!({"phase": "Succeeded"}));
        finished["metadata"]["deletionTimestamp"] = json!("2026-06-15T11:59:00Z");
        let table = table(&def("", "Pod"), [&finished], IncludeObject::Object, now(), None);
        assert_eq!(table["rows"][0]["cells"][2], "Succeeded");
        assert_eq!(table["rows"][0]["conditions"][0]["reason"], "Succeeded");
        assert_eq!(table["rows"][0]["object"], finished);
    }

    #[test]
    fn pod_wide_columns_and_readiness_gates() {
        let mut object = pod(json!({"phase": "Running", "podIP": "10.0.0.9", "nominatedNodeName": "n2",
            "conditions": [{"type": "example.com/gate", "status": "True"}]}));
        object["spec"]["nodeName"] = json!("n1");
        object["spec"]["readinessGates"] =
            json!([{"conditionType": "example.com/gate"}, {"conditionType": "example.com/other"}]);
        let row = cells(&def("", "Pod"), &object);
        assert_eq!(row[5..], [json!("10.0.0.9"), json!("n1"), json!("n2"), json!("1/2")]);
    }

    #[test]
    fn deployment_and_replica_set_columns() {
        let deployment = json!({
            "metadata": {"name": "web", "creationTimestamp": "2026-06-12T12:00:00Z"},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"spec": {"containers": [{"name": "nginx", "image": "nginx:1"},
                                                          {"name": "side", "image": "busybox"}]}}},
            "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}
        });
        let table = table(&def("apps", "Deployment"), [&deployment], IncludeObject::None, now(), None);
        assert_eq!(
            column_names(&table),
            ["Name", "Ready", "Up-to-date", "Available", "Age", "Containers", "Images", "Selector"]
        );
        assert_eq!(
            table["rows"][0]["cells"],
            json!(["web", "2/3", 3, 2, "3d", "nginx,side", "nginx:1,busybox", "app=web"])
        );
        assert_eq!(table["rows"][0]["object"], Value::Null);

        let fresh = json!({"metadata": {"name": "new"}, "spec": {"selector": {}}});
        assert_eq!(
            cells(&def("apps", "Deployment"), &fresh)[1..5],
            [json!("0/1"), json!(0), json!(0), json!("<unknown>")]
        );

        let replica_set = json!({"metadata": {"name": "web-1"}, "spec": {"replicas": 2, "selector": {}},
                                 "status": {"replicas": 2, "readyReplicas": 1}});
        let row = cells(&def("apps", "ReplicaSet"), &replica_set);
        assert_eq!(row[1..4], [json!(2), json!(2), json!(1)]);
        assert_eq!(row[7], "<none>");
    }

    #[test]
    fn service_ports_and_external_ips() {
        let service = |spec: Value, status: Value| {
            let object = json!({"metadata": {"name": "s"}, "spec": spec, "status": status});
            cells(&def("", "Service"), &object)
        };
        let row = service(
            json!({"type": "ClusterIP", "clusterIPs": ["10.96.0.10"], "selector": {"b": "2", "a": "1"},
                   "ports": [{"port": 53, "protocol": "UDP"}, {"port": 80}]}),
            json!({}),
        );
        assert_eq!(row[1..5], [json!("ClusterIP"), json!("10.96.0.10"), json!("<none>"), json!("53/UDP,80/TCP")]);
        assert_eq!(row[6], "a=1,b=2");

        let row = service(
            json!({"type": "NodePort", "clusterIP": "10.96.0.11", "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}]}),
            json!({}),
        );
        assert_eq!(row[2..5], [json!("10.96.0.11"), json!("<none>"), json!("80:30080/TCP")]);
        assert_eq!(row[6], "<none>");

        let row = service(json!({"type": "LoadBalancer", "clusterIPs": ["10.0.0.1"], "ports": []}), json!({}));
        assert_eq!(row[3..5], [json!("<pending>"), json!("<none>")]);
        let row = service(
            json!({"type": "LoadBalancer", "externalIPs": ["5.6.7.8"]}),
            json!({"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}, {"hostname": "lb.example.com"}]}}),
        );
        assert_eq!(row[3], "1.2.3.4,lb.example.com,5.6.7.8");
        let row = service(json!({"type": "ExternalName", "externalName": "db.example.com"}), json!({}));
        assert_eq!(row[2..4], [json!("<none>"), json!("db.example.com")]);
    }

    #[test]
    fn simple_kinds() {
        let created = json!({"name": "x", "creationTimestamp": "2026-06-15T11:59:30Z"});
        let config_map = json!({"metadata": created, "data": {"a": "1"}, "binaryData": {"b": ""}});
        assert_eq!(cells(&def("", "ConfigMap"), &config_map), [json!("x"), json!(2), json!("30s")]);
        let secret = json!({"metadata": created, "type": "Opaque", "data": {"a": ""}});
        assert_eq!(cells(&def("", "Secret"), &secret), [json!("x"), json!("Opaque"), json!(1), json!("30s")]);
        let namespace = json!({"metadata": created, "status": {"phase": "Active"}});
        assert_eq!(cells(&def("", "Namespace"), &namespace), [json!("x"), json!("Active"), json!("30s")]);
        let account = json!({"metadata": created});
        assert_eq!(cells(&def("", "ServiceAccount"), &account), [json!("x"), json!(0), json!("30s")]);
        let binding = json!({"metadata": created, "roleRef": {"kind": "ClusterRole", "name": "view"},
            "subjects": [{"kind": "User", "name": "alice"}, {"kind": "ServiceAccount", "name": "sa", "namespace": "ns"},
                         {"kind": "Group", "name": "devs"}, {"kind": "User", "name": "bob"}]});
        assert_eq!(
            cells(&def("rbac.authorization.k8s.io", "RoleBinding"), &binding),
            [json!("x"), json!("ClusterRole/view"), json!("30s"), json!("alice, bob"), json!("devs"), json!("ns/sa")]
        );
        let lease = json!({"metadata": created, "spec": {"holderIdentity": "node-1"}});
        assert_eq!(cells(&def("coordination.k8s.io", "Lease"), &lease)[1], "node-1");
    }

    #[test]
    fn default_convertor_for_roles_and_crds() {
        let role = json!({"metadata": {"name": "admin", "creationTimestamp": "2026-06-15T04:14:51Z"}});
        for (group, kind) in
            [("rbac.authorization.k8s.io", "ClusterRole"), ("apiextensions.k8s.io", "CustomResourceDefinition")]
        {
            let table = table(&def(group, kind), [&role], IncludeObject::Metadata, now(), None);
            assert_eq!(column_names(&table), ["Name", "Created At"]);
            assert_eq!(table["columnDefinitions"][1]["type"], "date");
            assert_eq!(table["rows"][0]["cells"], json!(["admin", "2026-06-15T04:14:51Z"]));
        }
    }

    #[test]
    fn node_and_job_and_event() {
        let node = json!({
            "metadata": {"name": "n1", "creationTimestamp": "2026-06-14T12:00:00Z",
                         "labels": {"node-role.kubernetes.io/control-plane": "", "kubernetes.io/role": "worker"}},
            "spec": {"unschedulable": true},
            "status": {"conditions": [{"type": "Ready", "status": "True"}],
                       "addresses": [{"type": "InternalIP", "address": "192.168.1.5"}],
                       "nodeInfo": {"kubeletVersion": "v1.33.0", "osImage": "Debian"}}
        });
        assert_eq!(
            cells(&def("", "Node"), &node),
            [
                json!("n1"),
                json!("Ready,SchedulingDisabled"),
                json!("control-plane,worker"),
                json!("24h"),
                json!("v1.33.0"),
                json!("192.168.1.5"),
                json!("<none>"),
                json!("Debian"),
                json!("<unknown>"),
                json!("<unknown>")
            ]
        );

        let job = json!({"metadata": {"name": "j"}, "spec": {"completions": 3},
            "status": {"succeeded": 3, "startTime": "2026-06-15T11:00:00Z", "completionTime": "2026-06-15T11:00:45Z",
                       "conditions": [{"type": "Complete", "status": "True"}]}});
        assert_eq!(cells(&def("batch", "Job"), &job)[1..4], [json!("Complete"), json!("3/3"), json!("45s")]);
        let running = json!({"metadata": {"name": "j"}, "spec": {"parallelism": 2},
            "status": {"startTime": "2026-06-15T11:57:00Z"}});
        assert_eq!(cells(&def("batch", "Job"), &running)[1..4], [json!("Running"), json!("0/1 of 2"), json!("3m")]);

        let event = json!({"metadata": {"name": "p.1"}, "type": "Normal", "reason": "Started",
            "involvedObject": {"kind": "Pod", "name": "p", "fieldPath": "spec.containers{a}"},
            "source": {"component": "kubelet", "host": "n1"}, "message": "Started container a\n",
            "firstTimestamp": "2026-06-15T11:50:00Z", "lastTimestamp": "2026-06-15T11:59:00Z", "count": 2});
        let table = table(&def("", "Event"), [&event], IncludeObject::None, now(), None);
        assert_eq!(column_names(&table)[..4], ["Last Seen", "Type", "Reason", "Object"]);
        assert_eq!(
            table["rows"][0]["cells"],
            json!([
                "60s",
                "Normal",
                "Started",
                "pod/p",
                "spec.containers{a}",
                "kubelet, n1",
                "Started container a",
                "10m",
                2,
                "p.1"
            ])
        );
    }

    #[test]
    fn custom_resource_columns() {
        let columns = json!([
            {"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"},
            {"name": "Ready", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Ready\")].status",
             "priority": 1, "description": "readiness"},
            {"name": "Created", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
            {"name": "Tags", "type": "string", "jsonPath": ".spec.tags"},
            {"name": "Missing", "type": "string", "jsonPath": ".spec.nothing"},
            {"name": "First", "type": "string", "jsonPath": ".spec.items[0].name"},
            {"name": "Bad", "type": "string", "jsonPath": "..x"},
        ]);
        let object = json!({
            "metadata": {"name": "w", "creationTimestamp": "2026-06-15T09:00:00Z"},
            "spec": {"replicas": 3, "tags": ["a", "b"], "items": [{"name": "i0"}]},
            "status": {"conditions": [{"type": "Synced", "status": "False"}, {"type": "Ready", "status": "True"}]}
        });
        let table = table(&custom_def(), [&object], IncludeObject::Metadata, now(), Some(&columns));
        assert_eq!(column_names(&table), ["Name", "Replicas", "Ready", "Created", "Tags", "Missing", "First", "Bad"]);
        assert_eq!(table["columnDefinitions"][2]["priority"], 1);
        assert_eq!(table["columnDefinitions"][2]["description"], "readiness");
        assert_eq!(
            table["columnDefinitions"][1]["description"],
            "Custom resource definition column (in JSONPath format): .spec.replicas"
        );
        assert_eq!(table["rows"][0]["cells"], json!(["w", 3, "True", "3h", "[a b]", null, "i0", null]));

        let default = super::table(&custom_def(), [&object], IncludeObject::Metadata, now(), None);
        assert_eq!(column_names(&default), ["Name", "Age"]);
        assert_eq!(default["columnDefinitions"][1]["type"], "date");
        assert_eq!(default["rows"][0]["cells"], json!(["w", "3h"]));
    }

    #[test]
    fn json_path_subset() {
        let document = json!({"a": {"b.c": [1, 2, 3]}, "list": [{"n": 1, "v": "x"}, {"n": 5, "v": "y"}]});
        let values =
            |path: &str| JsonPath::parse(path).unwrap().evaluate(&document).into_iter().cloned().collect::<Vec<_>>();
        assert_eq!(values("{.a['b.c'][-1]}"), [json!(3)]);
        assert_eq!(values("$.a['b.c'][*]"), [json!(1), json!(2), json!(3)]);
        assert_eq!(values(".list[?(@.n > 2)].v"), [json!("y")]);
        assert_eq!(values(".list[?(@.v != 'y')].n"), [json!(1)]);
        assert_eq!(values(".list[?(@.v)].n"), [json!(1), json!(5)]);
        assert_eq!(values(".list[*].v"), [json!("x"), json!("y")]);
        assert!(values(".nothing.deeper").is_empty());
        assert!(JsonPath::parse("..a").is_err());
        assert!(JsonPath::parse(".a[").is_err());
        assert!(JsonPath::parse("").is_err());
    }

    #[test]
    fn watch_events_carry_column_definitions_only_first() {
        let object = pod(json!({"phase": "Running"}));
        let first = watch_event_table(&def("", "Pod"), &object, IncludeObject::Metadata, now(), None, true);
        let later = watch_event_table(&def("", "Pod"), &object, IncludeObject::Metadata, now(), None, false);
        assert!(first["columnDefinitions"].as_array().is_some_and(|c| c.len() == 9));
        assert_eq!(later["columnDefinitions"], Value::Null);
        assert_eq!(later["rows"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn include_object_query_values() {
        assert_eq!(IncludeObject::from_query(None).unwrap(), IncludeObject::Metadata);
        assert_eq!(IncludeObject::from_query(Some("")).unwrap(), IncludeObject::Metadata);
        assert_eq!(IncludeObject::from_query(Some("None")).unwrap(), IncludeObject::None);
        assert_eq!(IncludeObject::from_query(Some("Object")).unwrap(), IncludeObject::Object);
        assert_eq!(
            IncludeObject::from_query(Some("all")).unwrap_err().to_string(),
            "unrecognized includeObject value: \"all\""
        );
    }

    #[test]
    fn every_built_in_printer_fills_every_column() {
        let empty = json!({"metadata": {"name": "x"}});
        for def in built_in_resources() {
            let table = table(&def, [&empty], IncludeObject::None, now(), None);
            let columns = table["columnDefinitions"].as_array().unwrap().len();
            let cells = table["rows"][0]["cells"].as_array().unwrap().len();
            assert_eq!(columns, cells, "{}/{}", def.group, def.kind);
        }
    }
}
