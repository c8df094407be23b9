//! Admission webhooks and policies: MutatingWebhookConfigurations and ValidatingWebhookConfigurations called, and
//! ValidatingAdmissionPolicies evaluated (`policies.rs`), as upstream's admission chain does.
//!
//! Order of a write (see `objects.rs`): built-in mutation (defaults, create-only steps) → mutating webhooks, in
//! the order of their configurations' names and then as listed, each seeing the previous one's changes; webhooks
//! with `reinvocationPolicy: IfNeeded` are called once more when a later webhook changed the object → built-in
//! validation → ValidatingAdmissionPolicies → validating webhooks, all at once → storage. DELETE calls both kinds
//! of webhook with `oldObject` (a mutating webhook's patch on a delete is ignored: there is no object to patch).
//!
//! The configurations are kept parsed in memory ([`WebhookCache`]): loaded once, then reloaded whenever the
//! datastore reports a write under `admissionregistration.k8s.io`. A write with no webhook configured costs a read
//! lock and an `Arc` clone. Webhook configurations and admission policies themselves never go to webhooks, so a
//! broken webhook cannot lock its own fix out.
//!
//! matchConditions (CEL, `cel.rs`) are evaluated after the rules and selectors match, over `object`, `oldObject`
//! and `request` as the AdmissionReview carries them: a false one skips the webhook, one that cannot be evaluated
//! follows the failure policy.
//!
//! Not built yet: the `authorizer` variable of matchConditions; CONNECT requests (exec, attach, port-forward) and
//! the `binding`, `token` and `scale` subresources are not sent to webhooks (scale writes go to the main
//! resource's webhooks as an UPDATE of the object); connections to webhooks are not reused between calls.

mod client;
pub mod config;
pub mod matching;
pub mod policies;
pub mod review;

use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde_json::{json, Map, Value};
use tokio_util::sync::CancellationToken;

use self::config::{SideEffects, Webhook};
use self::matching::{GroupVersionResource, RequestFacts};
use self::review::{ReviewRequest, Verdict};
use crate::apiserver::auth::User;
use crate::apiserver::error::{ApiError, ApiResult};
use crate::apiserver::registry::ResourceDef;
use crate::apiserver::selector::LabelSelector;
use crate::apiserver::storage::ObjectStore;
use crate::apiserver::ApiServer;

/// Every webhook configuration is stored under this prefix (admission policies too; their writes only cause a
/// reload).
const CONFIGURATIONS_PREFIX: &str = "/registry/admissionregistration.k8s.io/";
const MUTATING_PREFIX: &str = "/registry/admissionregistration.k8s.io/mutatingwebhookconfigurations/";
const VALIDATING_PREFIX: &str = "/registry/admissionregistration.k8s.io/validatingwebhookconfigurations/";

/// The parsed webhooks of every configuration, ordered by configuration name, then as listed; and every
/// ValidatingAdmissionPolicyBinding (by name) with the policy it binds.
#[derive(Default)]
pub struct Configurations {
    pub mutating: Vec<Arc<Webhook>>,
    pub validating: Vec<Arc<Webhook>>,
    pub policies: Vec<(Arc<policies::Policy>, policies::Binding)>,
}

/// The webhook configurations as last read from the datastore, followed by a task from the first request on.
#[derive(Default)]
pub struct WebhookCache {
    current: Arc<RwLock<Arc<Configurations>>>,
    following: tokio::sync::OnceCell<()>,
}

impl WebhookCache {
    /// The current configurations. The first call loads them and starts following the datastore until `stop`.
    async fn current(&self, store: &ObjectStore, stop: &CancellationToken) -> Arc<Configurations> {
        self.following
            .get_or_init(|| async {
                let from = store.revision();
                match load(store).await {
                    Ok(configurations) => replace(&self.current, configurations),
                    Err(error) => tracing::warn!(error = %error, "cannot load the admission webhook configurations"),
                }
                tokio::spawn(follow(store.clone(), self.current.clone(), from, stop.clone()));
            })
            .await;
        self.current.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }
}

fn replace(current: &RwLock<Arc<Configurations>>, configurations: Configurations) {
    *current.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(configurations);
}

async fn load(store: &ObjectStore) -> ApiResult<Configurations> {
    let mut configurations = Configurations::default();
    for (prefix, mutating) in [(MUTATING_PREFIX, true), (VALIDATING_PREFIX, false)] {
        // Keys sort by name: upstream calls configurations in name order.
        for stored in store.list(prefix, None, 0, 0).await?.items {
            let hooks = config::parse_configuration(&stored.object, mutating).into_iter().map(Arc::new);
            if mutating {
                configurations.mutating.extend(hooks);
            } else {
                configurations.validating.extend(hooks);
            }
        }
    }
    let policies: std::collections::HashMap<String, Arc<policies::Policy>> = store
        .list(policies::POLICIES_PREFIX, None, 0, 0)
        .await?
        .items
        .iter()
        .map(|stored| policies::parse_policy(&stored.object))
        .map(|policy| (policy.name.clone(), Arc::new(policy)))
        .collect();
    for stored in store.list(policies::BINDINGS_PREFIX, None, 0, 0).await?.items {
        let binding = policies::parse_binding(&stored.object);
        // A binding whose policy does not exist (yet) binds nothing, as upstream.
        if let Some(policy) = policies.get(&binding.policy) {
            configurations.policies.push((policy.clone(), binding));
        }
    }
    Ok(configurations)
}

/// Reloads the configurations after every write under their prefix, until `stop`.
async fn follow(store: ObjectStore, current: Arc<RwLock<Arc<Configurations>>>, mut from: i64, stop: CancellationToken) {
    loop {
        let watcher = tokio::select! {
            () = stop.cancelled() => return,
            watcher = store.watch(CONFIGURATIONS_PREFIX, from + 1) => watcher,
        };
        let mut watcher = match watcher {
            Ok(watcher) => watcher,
            Err(error) => {
                tracing::warn!(error = %error, "cannot watch the admission webhook configurations; retrying");
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
                // Whatever changed meanwhile is read by the reload below.
                from = store.revision();
                reload(&store, &current).await;
                continue;
            }
        };
        loop {
            let batch = tokio::select! {
                () = stop.cancelled() => return,
                batch = watcher.recv() => batch,
            };
            match batch {
                Ok(batch) => {
                    from = batch.revision;
                    reload(&store, &current).await;
                }
                Err(_) => break,
            }
        }
    }
}

async fn reload(store: &ObjectStore, current: &RwLock<Arc<Configurations>>) {
    match load(store).await {
        Ok(configurations) => replace(current, configurations),
        Err(error) => tracing::warn!(error = %error, "cannot reload the admission webhook configurations"),
    }
}

/// CREATE, UPDATE, DELETE (CONNECT is not sent yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Create,
    Update,
    Delete,
}

impl Operation {
    fn as_str(self) -> &'static str {
        match self {
            Operation::Create => "CREATE",
            Operation::Update => "UPDATE",
            Operation::Delete => "DELETE",
        }
    }
}

/// One write as admission sees it.
pub struct Attributes<'a> {
    pub def: &'a ResourceDef,
    pub subresource: Option<&'a str>,
    pub namespace: Option<&'a str>,
    pub name: &'a str,
    pub operation: Operation,
    pub user: &'a User,
    pub old_object: Option<&'a Value>,
    pub dry_run: bool,
    /// CreateOptions, UpdateOptions or DeleteOptions, as the review's `options`.
    pub options: Value,
    /// One uid for every webhook called for this request.
    pub uid: String,
}

impl<'a> Attributes<'a> {
    pub fn new(def: &'a ResourceDef, operation: Operation, user: &'a User, name: &'a str) -> Attributes<'a> {
        Attributes {
            def,
            subresource: None,
            namespace: None,
            name,
            operation,
            user,
            old_object: None,
            dry_run: false,
            options: Value::Null,
            uid: uuid::Uuid::new_v4().to_string(),
        }
    }

    /// The options object upstream sends: `kind` and `apiVersion` of meta.k8s.io/v1 plus the given fields.
    pub fn options(kind: &str, dry_run: bool, fields: Map<String, Value>) -> Value {
        let mut options = Map::new();
        options.insert("kind".into(), json!(kind));
        options.insert("apiVersion".into(), json!("meta.k8s.io/v1"));
        if dry_run {
            options.insert("dryRun".into(), json!(["All"]));
        }
        options.extend(fields);
        Value::Object(options)
    }
}

/// Webhooks never see these: a broken webhook must not be able to block its own repair.
fn exempt(def: &ResourceDef) -> bool {
    def.group == "admissionregistration.k8s.io"
}

/// The request's resource in the version the client used.
fn requested_resource(def: &ResourceDef) -> GroupVersionResource {
    GroupVersionResource {
        group: def.group.clone(),
        version: def.version.clone(),
        resource: def.plural.clone(),
        kind: def.kind.clone(),
    }
}

/// Per-request state while deciding which webhooks to call: the namespace's labels are read at most once.
struct Matcher<'a> {
    attributes: &'a Attributes<'a>,
    requested: GroupVersionResource,
    equivalents: Vec<GroupVersionResource>,
    namespace_labels: Option<Map<String, Value>>,
}

/// A policy's params for one binding.
enum Params {
    /// The policy takes none.
    None,
    Found(Value),
    /// Missing, and the binding says to let requests through.
    MissingAllowed,
    /// Missing (or not findable), and the binding says to deny: why.
    Missing(String),
}

/// What a webhook, a policy or a binding says about which requests it covers.
struct Scope<'a> {
    rules: &'a [config::Rule],
    exclude: &'a [config::Rule],
    match_equivalent: bool,
    object_selector: &'a LabelSelector,
    namespace_selector: &'a LabelSelector,
}

impl ApiServer {
    /// Runs the mutating webhooks on `object` (`None` for a DELETE). Returns whether any changed it, so the caller
    /// defaults it again.
    pub(crate) async fn admit_by_mutating_webhooks(
        &self,
        attributes: &Attributes<'_>,
        mut object: Option<&mut Value>,
        warnings: &mut Vec<String>,
    ) -> ApiResult<bool> {
        if exempt(attributes.def) {
            return Ok(false);
        }
        let configurations = self.webhooks.current(&self.store, &self.draining).await;
        if configurations.mutating.is_empty() {
            return Ok(false);
        }
        let mut matcher = self.matcher(attributes);
        let mut changed_any = false;
        // Upstream's reinvocation: when a webhook changes the object, every IfNeeded webhook called before it is
        // called once more after the first round.
        let mut invoked_reinvocable: Vec<usize> = Vec::new();
        let mut to_reinvoke: Vec<usize> = Vec::new();
        for (index, webhook) in configurations.mutating.iter().enumerate() {
            let Some(resource) = self.should_call(webhook, &mut matcher, object.as_deref()).await? else { continue };
            let changed =
                self.call_mutating(webhook, attributes, &matcher, &resource, object.as_deref_mut(), warnings).await?;
            if changed {
                changed_any = true;
                to_reinvoke.append(&mut invoked_reinvocable);
            }
            if webhook.reinvoke_if_needed {
                invoked_reinvocable.push(index);
            }
        }
        to_reinvoke.sort_unstable();
        for index in to_reinvoke {
            let webhook = &configurations.mutating[index];
            let Some(resource) = self.should_call(webhook, &mut matcher, object.as_deref()).await? else { continue };
            changed_any |=
                self.call_mutating(webhook, attributes, &matcher, &resource, object.as_deref_mut(), warnings).await?;
        }
        Ok(changed_any)
    }

    /// Runs the validating webhooks that match, all at once; the first denial (in webhook order) wins.
    pub(crate) async fn admit_by_validating_webhooks(
        &self,
        attributes: &Attributes<'_>,
        object: Option<&Value>,
        warnings: &mut Vec<String>,
    ) -> ApiResult<()> {
        if exempt(attributes.def) {
            return Ok(());
        }
        let configurations = self.webhooks.current(&self.store, &self.draining).await;
        if configurations.validating.is_empty() && configurations.policies.is_empty() {
            return Ok(());
        }
        let mut matcher = self.matcher(attributes);
        self.admit_by_policies(&configurations, &mut matcher, object, warnings).await?;
        let mut calls = Vec::new();
        for webhook in &configurations.validating {
            if let Some(resource) = self.should_call(webhook, &mut matcher, object).await? {
                calls.push((webhook.clone(), resource));
            }
        }
        let matcher = &matcher;
        let outcomes = futures::future::join_all(calls.iter().map(|(webhook, resource)| async move {
            let converted = object.map(|object| in_version(object, resource));
            let old = attributes.old_object.map(|old| in_version(old, resource));
            self.call(webhook, attributes, matcher, resource, converted.as_ref(), old.as_ref()).await
        }))
        .await;
        let mut first_error = None;
        for outcome in outcomes {
            match outcome {
                Ok(Some(Verdict::Allowed { warnings: more, .. })) => warnings.extend(more),
                Ok(Some(Verdict::Denied { error, warnings: more })) => {
                    warnings.extend(more);
                    first_error.get_or_insert(error);
                }
                Ok(None) => {}
                Err(error) => {
                    first_error.get_or_insert(error);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Runs every bound ValidatingAdmissionPolicy that covers the request (`policies.rs`): the first denial wins;
    /// bindings that only warn add warnings.
    async fn admit_by_policies(
        &self,
        configurations: &Configurations,
        matcher: &mut Matcher<'_>,
        object: Option<&Value>,
        warnings: &mut Vec<String>,
    ) -> ApiResult<()> {
        let attributes = matcher.attributes;
        let mut namespace_object: Option<Value> = None;
        for (policy, binding) in &configurations.policies {
            let selector_error =
                |error: &String| ApiError::internal(format!("ValidatingAdmissionPolicy '{}': {error}", policy.name));
            let policy_scope = Scope {
                rules: &policy.scope.rules,
                exclude: &policy.scope.exclude,
                match_equivalent: policy.scope.match_equivalent,
                object_selector: policy.scope.object_selector.as_ref().map_err(selector_error)?,
                namespace_selector: policy.scope.namespace_selector.as_ref().map_err(selector_error)?,
            };
            let Some(resource) = self.in_scope(&policy_scope, matcher, object).await? else { continue };
            if let Some(narrower) = &binding.scope {
                // A binding without resource rules narrows by its selectors alone.
                let everything = [config::Rule {
                    operations: vec!["*".into()],
                    api_groups: vec!["*".into()],
                    api_versions: vec!["*".into()],
                    resources: vec!["*".into(), "*/*".into()],
                    scope: "*".into(),
                }];
                let binding_scope = Scope {
                    rules: if narrower.rules.is_empty() { &everything } else { &narrower.rules },
                    exclude: &narrower.exclude,
                    match_equivalent: narrower.match_equivalent,
                    object_selector: narrower.object_selector.as_ref().map_err(selector_error)?,
                    namespace_selector: narrower.namespace_selector.as_ref().map_err(selector_error)?,
                };
                if self.in_scope(&binding_scope, matcher, object).await?.is_none() {
                    continue;
                }
            }
            let denied = |message: String, code: u16, reason: &'static str| {
                ApiError::new(
                    code,
                    reason,
                    format!(
                        "ValidatingAdmissionPolicy '{}' with binding '{}' denied request: {message}",
                        policy.name, binding.name
                    ),
                )
            };
            let params = match self.policy_params(policy, binding, attributes).await? {
                Params::Found(params) => params,
                Params::None => Value::Null,
                Params::MissingAllowed => continue,
                Params::Missing(why) if policy.fail_closed => return Err(denied(why, 403, "Forbidden")),
                Params::Missing(_) => continue,
            };
            if namespace_object.is_none() {
                namespace_object = Some(self.namespace_object(attributes).await?);
            }
            let converted = object.map(|object| in_version(object, &resource));
            let old = attributes.old_object.map(|old| in_version(old, &resource));
            let review = admission_review("v1", attributes, matcher, &resource, converted.as_ref(), old.as_ref());
            let (object_variable, old_variable, request) = expression_variables(&review);
            let bindings = [
                ("object", &object_variable),
                ("oldObject", &old_variable),
                ("request", &request),
                ("namespaceObject", namespace_object.as_ref().unwrap_or(&Value::Null)),
                ("params", &params),
            ];
            match conditions_hold(&policy.match_conditions, &bindings) {
                Ok(true) => {}
                Ok(false) => continue,
                Err(error) if policy.fail_closed => return Err(denied(error, 403, "Forbidden")),
                Err(_) => continue,
            }
            for decision in policies::evaluate(policy, &bindings) {
                let policies::Decision::Fail { message, reason } = decision else { continue };
                if binding.warn {
                    warnings.push(format!(
                        "Validation failed for ValidatingAdmissionPolicy '{}' with binding '{}': {message}",
                        policy.name, binding.name
                    ));
                }
                if binding.deny {
                    let reason: &'static str = match reason.as_str() {
                        "Unauthorized" => "Unauthorized",
                        "Forbidden" => "Forbidden",
                        "RequestEntityTooLarge" => "RequestEntityTooLarge",
                        _ => "Invalid",
                    };
                    return Err(denied(message, policies::status_code(reason), reason));
                }
            }
        }
        Ok(())
    }

    /// The namespace object of a namespaced request (`namespaceObject`), or null.
    async fn namespace_object(&self, attributes: &Attributes<'_>) -> ApiResult<Value> {
        let Some(namespace) = attributes.namespace.filter(|namespace| !namespace.is_empty()) else {
            return Ok(Value::Null);
        };
        Ok(self.stored_namespace(namespace).await?.unwrap_or(Value::Null))
    }

    async fn stored_namespace(&self, namespace: &str) -> ApiResult<Option<Value>> {
        let registry = self.registry();
        let namespaces = registry.get("", "v1", "namespaces").cloned().expect("namespaces are built in");
        let stored = self.store.get(&ObjectStore::key(&namespaces, None, namespace), false).await?;
        Ok(stored.map(|stored| stored.object))
    }

    /// The params object a binding names for its policy's `paramKind`.
    async fn policy_params(
        &self,
        policy: &policies::Policy,
        binding: &policies::Binding,
        attributes: &Attributes<'_>,
    ) -> ApiResult<Params> {
        let Some((api_version, kind)) = &policy.param_kind else { return Ok(Params::None) };
        let missing = |why: String, allow: bool| if allow { Params::MissingAllowed } else { Params::Missing(why) };
        let Some(reference) = &binding.param_ref else {
            return Ok(Params::Missing(format!(
                "policy '{}' needs params and binding '{}' names none",
                policy.name, binding.name
            )));
        };
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        let registry = self.registry();
        let Some(def) =
            registry.iter().find(|def| def.group == group && def.version == version && def.kind == *kind).cloned()
        else {
            return Ok(missing(
                format!("failed to configure binding: paramKind {api_version}, Kind={kind} is not served"),
                reference.allow_when_missing,
            ));
        };
        let Some(name) = &reference.name else {
            return Ok(missing(
                "failed to configure binding: paramRef.selector is not supported".into(),
                reference.allow_when_missing,
            ));
        };
        let namespace = reference.namespace.as_deref().or(attributes.namespace).filter(|_| def.namespaced);
        let stored = self.store.get(&ObjectStore::key(&def, namespace, name), false).await?;
        Ok(match stored {
            Some(stored) => Params::Found(stored.object),
            None => missing(
                "failed to configure binding: no params found for policy binding with `Deny` parameterNotFoundAction"
                    .into(),
                reference.allow_when_missing,
            ),
        })
    }

    fn matcher<'a>(&self, attributes: &'a Attributes<'a>) -> Matcher<'a> {
        let def = attributes.def;
        let registry = self.registry();
        let equivalents = registry
            .iter()
            .filter(|other| other.group == def.group && other.plural == def.plural)
            .map(|other| requested_resource(other))
            .collect();
        Matcher { attributes, requested: requested_resource(def), equivalents, namespace_labels: None }
    }

    /// Whether `webhook` is called for this request, and in which version: rules and matchPolicy, the object
    /// selector, the namespace selector, then whether it may be called for a dry run.
    async fn should_call(
        &self,
        webhook: &Webhook,
        matcher: &mut Matcher<'_>,
        object: Option<&Value>,
    ) -> ApiResult<Option<GroupVersionResource>> {
        let scope = Scope {
            rules: &webhook.rules,
            exclude: &[],
            match_equivalent: webhook.match_equivalent,
            object_selector: webhook.object_selector.as_ref().map_err(|error| selector_error(webhook, error))?,
            namespace_selector: webhook.namespace_selector.as_ref().map_err(|error| selector_error(webhook, error))?,
        };
        let resource = self.in_scope(&scope, matcher, object).await?;
        if resource.is_some() {
            check_dry_run(webhook, matcher.attributes)?;
        }
        Ok(resource)
    }

    /// The version a request is matched in when `scope` covers it: rules and matchPolicy, the object selector,
    /// then the namespace selector.
    async fn in_scope(
        &self,
        scope: &Scope<'_>,
        matcher: &mut Matcher<'_>,
        object: Option<&Value>,
    ) -> ApiResult<Option<GroupVersionResource>> {
        let attributes = matcher.attributes;
        let facts = RequestFacts {
            operation: attributes.operation.as_str(),
            subresource: attributes.subresource.unwrap_or(""),
            namespace: attributes.namespace.unwrap_or(""),
        };
        let Some(resource) = matching::matched_by_rules(
            scope.rules,
            scope.exclude,
            scope.match_equivalent,
            &matcher.requested,
            &matcher.equivalents,
            &facts,
        ) else {
            return Ok(None);
        };
        if !matching::object_selector_matches(scope.object_selector, object, attributes.old_object) {
            return Ok(None);
        }
        let namespace_selector = scope.namespace_selector;
        if !namespace_selector.is_empty() {
            let is_namespace = attributes.def.group.is_empty() && attributes.def.plural == "namespaces";
            let labels = if is_namespace && attributes.subresource.is_none() {
                // A Namespace's own labels decide (the new ones on create and update).
                object
                    .or(attributes.old_object)
                    .and_then(|namespace| namespace.pointer("/metadata/labels"))
                    .and_then(Value::as_object)
                    .cloned()
                    .unwrap_or_default()
            } else if let Some(namespace) = attributes.namespace.or(is_namespace.then_some(attributes.name)) {
                self.namespace_labels(matcher, namespace).await?
            } else {
                // Cluster-scoped objects other than Namespaces are never exempted by a namespace selector.
                return Ok(Some(resource));
            };
            if !namespace_selector.matches(Some(&labels)) {
                return Ok(None);
            }
        }
        Ok(Some(resource))
    }

    async fn namespace_labels(&self, matcher: &mut Matcher<'_>, namespace: &str) -> ApiResult<Map<String, Value>> {
        if let Some(labels) = &matcher.namespace_labels {
            return Ok(labels.clone());
        }
        let Some(stored) = self.stored_namespace(namespace).await? else {
            return Err(ApiError::not_found("namespaces", "", "namespaces", namespace));
        };
        let labels = stored.pointer("/metadata/labels").and_then(Value::as_object).cloned().unwrap_or_default();
        matcher.namespace_labels = Some(labels.clone());
        Ok(labels)
    }

    /// Calls one mutating webhook and applies its patch; true when the object changed.
    async fn call_mutating(
        &self,
        webhook: &Webhook,
        attributes: &Attributes<'_>,
        matcher: &Matcher<'_>,
        resource: &GroupVersionResource,
        object: Option<&mut Value>,
        warnings: &mut Vec<String>,
    ) -> ApiResult<bool> {
        let converted = object.as_deref().map(|object| in_version(object, resource));
        let old = attributes.old_object.map(|old| in_version(old, resource));
        let verdict = self.call(webhook, attributes, matcher, resource, converted.as_ref(), old.as_ref()).await?;
        let Some(verdict) = verdict else { return Ok(false) };
        let (patch, more) = match verdict {
            Verdict::Allowed { patch, warnings } => (patch, warnings),
            Verdict::Denied { error, warnings: more } => {
                warnings.extend(more);
                return Err(error);
            }
        };
        warnings.extend(more);
        let (Some(patch), Some(object), Some(converted)) = (patch, object, converted) else {
            return Ok(false);
        };
        let mut patched = crate::apiserver::patch::json_patch(&converted, &patch).map_err(|error| {
            ApiError::internal(format!(
                "admission webhook {:?} sent a patch that does not apply: {error}",
                webhook.name
            ))
        })?;
        if patched == converted {
            return Ok(false);
        }
        // Back to the version the client used (kaasd stores every version alike).
        if let Some(map) = patched.as_object_mut() {
            map.insert("apiVersion".into(), json!(attributes.def.api_version()));
        }
        let identity =
            |value: &Value| (value.pointer("/metadata/name").cloned(), value.pointer("/metadata/namespace").cloned());
        if identity(&patched) != identity(&*object) {
            return Err(ApiError::internal(format!(
                "admission webhook {:?} changed the object's name or namespace, which a webhook may not do",
                webhook.name
            )));
        }
        *object = patched;
        Ok(true)
    }

    /// Sends the review and reads the verdict. `Ok(None)`: calling failed and the failure policy ignores that.
    async fn call(
        &self,
        webhook: &Webhook,
        attributes: &Attributes<'_>,
        matcher: &Matcher<'_>,
        resource: &GroupVersionResource,
        object: Option<&Value>,
        old_object: Option<&Value>,
    ) -> ApiResult<Option<Verdict>> {
        let body = admission_review(webhook.review_version, attributes, matcher, resource, object, old_object);
        match matches_conditions(webhook, &body) {
            Ok(true) => {}
            Ok(false) => return Ok(None),
            Err(reason) if webhook.fail_closed => {
                return Err(ApiError::internal(format!("failed calling webhook {:?}: {reason}", webhook.name)));
            }
            Err(reason) => {
                tracing::warn!(webhook = %webhook.name, error = %reason, "matchCondition failed, skipping the webhook");
                return Ok(None);
            }
        }
        let outcome = match self.call_webhook(webhook, serde_json::to_vec(&body).unwrap_or_default()).await {
            Ok(answer) => {
                review::interpret(&webhook.name, &attributes.uid, webhook.review_version, webhook.mutating, &answer)
            }
            Err(reason) => Err(reason),
        };
        match outcome {
            Ok(verdict) => Ok(Some(verdict)),
            Err(reason) if webhook.fail_closed => {
                tracing::warn!(webhook = %webhook.name, error = %reason, "failed calling webhook, failing closed");
                Err(ApiError::internal(format!("failed calling webhook {:?}: {reason}", webhook.name)))
            }
            Err(reason) => {
                tracing::warn!(webhook = %webhook.name, error = %reason, "failed calling webhook, failing open");
                Ok(None)
            }
        }
    }
}

/// The AdmissionReview for a request, in `version`, with the objects in `resource`'s version.
fn admission_review(
    version: &str,
    attributes: &Attributes<'_>,
    matcher: &Matcher<'_>,
    resource: &GroupVersionResource,
    object: Option<&Value>,
    old_object: Option<&Value>,
) -> Value {
    let user_info = attributes.user.to_user_info();
    review::review(
        version,
        &ReviewRequest {
            uid: &attributes.uid,
            resource,
            requested: &matcher.requested,
            subresource: attributes.subresource.unwrap_or(""),
            name: attributes.name,
            namespace: attributes.namespace.unwrap_or(""),
            operation: attributes.operation.as_str(),
            user_info: &user_info,
            object,
            old_object,
            dry_run: attributes.dry_run,
            options: &attributes.options,
        },
    )
}

/// The variables CEL expressions see: `object`, `oldObject` (null when absent) and `request` (the
/// AdmissionRequest without the two objects).
fn expression_variables(review: &Value) -> (Value, Value, Value) {
    let request = &review["request"];
    let mut request_only = request.clone();
    if let Some(fields) = request_only.as_object_mut() {
        fields.remove("object");
        fields.remove("oldObject");
    }
    (request["object"].clone(), request["oldObject"].clone(), request_only)
}

/// Whether every matchCondition of `webhook` holds for the AdmissionReview `review` it would be sent, or why one
/// cannot be evaluated.
fn matches_conditions(webhook: &Webhook, review: &Value) -> Result<bool, String> {
    if webhook.match_conditions.is_empty() {
        return Ok(true);
    }
    let (object, old_object, request) = expression_variables(review);
    let bindings = [("object", &object), ("oldObject", &old_object), ("request", &request)];
    conditions_hold(&webhook.match_conditions, &bindings)
}

/// Whether every matchCondition holds. As upstream, one false condition decides even when another cannot be
/// evaluated; otherwise an error is returned.
fn conditions_hold(conditions: &[(String, String)], bindings: &[(&str, &Value)]) -> Result<bool, String> {
    let mut failure = None;
    for (name, expression) in conditions {
        match crate::apiserver::cel::condition(expression, bindings) {
            Ok(true) => {}
            Ok(false) => return Ok(false),
            Err(error) => {
                failure.get_or_insert(format!("matchCondition {name:?} cannot be evaluated: {error}"));
            }
        }
    }
    failure.map_or(Ok(true), Err)
}

/// The object as the webhook's version shows it: only `apiVersion` differs, since every served version of a
/// resource is stored alike.
fn in_version(object: &Value, resource: &GroupVersionResource) -> Value {
    let mut converted = object.clone();
    if let Some(map) = converted.as_object_mut() {
        let api_version = if resource.group.is_empty() {
            resource.version.clone()
        } else {
            format!("{}/{}", resource.group, resource.version)
        };
        map.insert("apiVersion".into(), json!(api_version));
    }
    converted
}

/// Upstream refuses a dry run a webhook with side effects would see.
fn check_dry_run(webhook: &Webhook, attributes: &Attributes<'_>) -> ApiResult<()> {
    if attributes.dry_run && matches!(webhook.side_effects, SideEffects::Some | SideEffects::Unknown) {
        return Err(ApiError::bad_request(format!("admission webhook {:?} does not support dry run", webhook.name)));
    }
    Ok(())
}

fn selector_error(webhook: &Webhook, error: &str) -> ApiError {
    ApiError::internal(format!("admission webhook {:?} has an invalid {error}", webhook.name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn webhook(side_effects: &str) -> Webhook {
        let configuration = json!({"metadata": {"name": "c"}, "webhooks": [{
            "name": "w.example.com", "clientConfig": {"url": "https://127.0.0.1/"}, "sideEffects": side_effects,
        }]});
        config::parse_configuration(&configuration, false).remove(0)
    }

    #[test]
    fn dry_runs_refuse_webhooks_with_side_effects() {
        let registry = crate::apiserver::registry::Registry::new(crate::apiserver::registry::built_in_resources());
        let def = registry.get("", "v1", "configmaps").unwrap();
        let user = User::authenticated("admin".into(), String::new(), Vec::new());
        let mut attributes = Attributes::new(def, Operation::Create, &user, "x");
        assert!(check_dry_run(&webhook("Some"), &attributes).is_ok(), "not a dry run");
        attributes.dry_run = true;
        for allowed in ["None", "NoneOnDryRun"] {
            assert!(check_dry_run(&webhook(allowed), &attributes).is_ok(), "{allowed}");
        }
        for refused in ["Some", "Unknown"] {
            let error = check_dry_run(&webhook(refused), &attributes).unwrap_err();
            assert_eq!(
                (error.code, error.message.as_str()),
                (400, "admission webhook \"w.example.com\" does not support dry run")
            );
        }
    }

    #[test]
    fn configurations_are_exempt_and_versions_only_change_api_version() {
        let registry = crate::apiserver::registry::Registry::new(crate::apiserver::registry::built_in_resources());
        assert!(exempt(registry.get("admissionregistration.k8s.io", "v1", "validatingwebhookconfigurations").unwrap()));
        assert!(!exempt(registry.get("", "v1", "pods").unwrap()));
        let v2 = GroupVersionResource {
            group: "g.example.com".into(),
            version: "v2".into(),
            resource: "ws".into(),
            kind: "W".into(),
        };
        let converted = in_version(&json!({"apiVersion": "g.example.com/v1", "kind": "W", "spec": {"a": 1}}), &v2);
        assert_eq!(converted, json!({"apiVersion": "g.example.com/v2", "kind": "W", "spec": {"a": 1}}));
        let core = GroupVersionResource {
            group: String::new(),
            version: "v1".into(),
            resource: "pods".into(),
            kind: "Pod".into(),
        };
        assert_eq!(in_version(&json!({"kind": "Pod"}), &core)["apiVersion"], "v1");
    }
}
