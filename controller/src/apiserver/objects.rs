//! The generic object handlers: one code path serves get, list, watch, create, update, patch, delete and
//! deletecollection for every resource in the registry, plus the status, scale and finalize subresources.
//!
//! Writes follow kube-apiserver's order: decode → prepare (identity, timestamps, generation, status/spec split)
//! → defaults (with LimitRange defaults) → mutating webhooks → validation (with LimitRange bounds) → validating
//! webhooks → ResourceQuota → admission (namespace lifecycle, allocations) → compare-and-swap in the store. Reads stamp the stored revision as
//! `metadata.resourceVersion`.

use std::net::Ipv4Addr;
use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use http::{Method, Response};
use rand::Rng;
use serde_json::{json, Map, Value};

use super::request::{Query, ResourcePath};
use super::{json_bytes_response, ApiServer, Body};
use crate::apiserver::admission_webhooks::{Attributes, Operation};
use crate::apiserver::auth::User;
use crate::apiserver::error::{success_status_json, ApiError, ApiResult, Cause, Details};
use crate::apiserver::field_order::FieldOrder;
use crate::apiserver::patch::{self, PatchType};
use crate::apiserver::registry::{ResourceDef, SchemaSource};
use crate::apiserver::selector::{FieldSelector, LabelSelector};
use crate::apiserver::storage::{decode, ObjectStore, Stored, Written};

/// Everything a handler needs from the HTTP request.
#[derive(Clone)]
pub struct ObjectRequest {
    pub user: User,
    pub method: Method,
    pub resource: ResourcePath,
    pub query: Query,
    pub accept: String,
    pub content_type: String,
    pub user_agent: String,
    pub body: Bytes,
}

/// What one write does, as the query parameters say.
struct WriteOptions {
    dry_run: bool,
    field_manager: String,
    field_validation: FieldValidation,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FieldValidation {
    Strict,
    Warn,
    Ignore,
}

impl WriteOptions {
    fn from_query(query: &Query, user_agent: &str) -> ApiResult<WriteOptions> {
        let dry_run = match query.get("dryRun") {
            None | Some("") => false,
            Some("All") => true,
            Some(other) => {
                return Err(ApiError::bad_request(format!("unsupported dry run value {other:?}: only \"All\" is")));
            }
        };
        let field_validation = match query.get("fieldValidation") {
            None | Some("") | Some("Warn") => FieldValidation::Warn,
            Some("Strict") => FieldValidation::Strict,
            Some("Ignore") => FieldValidation::Ignore,
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "fieldValidation {other:?} is not one of Ignore, Warn, Strict"
                )));
            }
        };
        let field_manager = query
            .get("fieldManager")
            .filter(|manager| !manager.is_empty())
            .map(str::to_string)
            .unwrap_or_else(|| default_manager(user_agent));
        if field_manager.len() > 128 {
            return Err(ApiError::bad_request("fieldManager may be at most 128 characters"));
        }
        Ok(WriteOptions { dry_run, field_manager, field_validation })
    }

    /// CreateOptions or UpdateOptions as an admission review's `options`.
    fn admission_options(&self, kind: &str) -> Value {
        let fields = Map::from_iter([("fieldManager".to_string(), json!(self.field_manager))]);
        Attributes::options(kind, self.dry_run, fields)
    }
}

/// Upstream's manager for writes that name none: the client's product name from its User-Agent
/// (`kubectl/v1.33.1 (linux/amd64) ...` is `kubectl`).
fn default_manager(user_agent: &str) -> String {
    let product = user_agent.split('/').next().unwrap_or("").trim();
    if product.is_empty() {
        "unknown".to_string()
    } else {
        product.chars().take(128).collect()
    }
}

impl ApiServer {
    pub(super) async fn serve_object(self: &Arc<Self>, request: ObjectRequest) -> ApiResult<Response<Body>> {
        let registry = self.registry();
        let path = &request.resource;
        let def = registry
            .get(&path.group, &path.version, &path.plural)
            .cloned()
            .ok_or_else(|| ApiError::new(404, "NotFound", "the server could not find the requested resource"))?;
        if path.namespace.is_some() && !def.namespaced {
            return Err(ApiError::new(404, "NotFound", "the server could not find the requested resource"));
        }
        if let Some(conversion) = def.conversion {
            return self.serve_converted(&def, conversion, request).await;
        }
        let namespace = path.namespace.clone();
        let name = path.name.clone();
        let subresource = path.subresource.clone();
        if let Some(name) = &name {
            node_restriction(&request.user, &def, namespace.as_deref(), name, &request.method)?;
        }
        match (&request.method, name, subresource.as_deref()) {
            (&Method::GET, None, None) => {
                if request.query.flag("watch")? {
                    self.watch(&def, namespace.as_deref(), &request).await
                } else {
                    self.list(&def, namespace.as_deref(), &request).await
                }
            }
            (&Method::POST, None, None) => self.create(&def, namespace.as_deref(), &request).await,
            (&Method::DELETE, None, None) => self.delete_collection(&def, namespace.as_deref(), &request).await,
            (&Method::GET, Some(name), None) => {
                let stored = self.get_existing(&def, namespace.as_deref(), &name).await?;
                self.respond_object(&def, 200, stored.object, &request)
            }
            (&Method::GET, Some(name), Some("approval")) if is_certificate_request(&def) => {
                let stored = self.get_existing(&def, namespace.as_deref(), &name).await?;
                self.respond_object(&def, 200, stored.object, &request)
            }
            (&Method::GET, Some(name), Some("status")) if def.status => {
                let stored = self.get_existing(&def, namespace.as_deref(), &name).await?;
                self.respond_object(&def, 200, stored.object, &request)
            }
            (&Method::PUT, Some(name), sub @ (None | Some("status") | Some("finalize") | Some("approval"))) => {
                let sub = sub.map(str::to_string);
                if sub.as_deref() == Some("status") && !def.status {
                    return Err(not_found_resource());
                }
                if sub.as_deref() == Some("approval") && !is_certificate_request(&def) {
                    return Err(not_found_resource());
                }
                if sub.as_deref() == Some("finalize") && def.plural != "namespaces" {
                    return Err(not_found_resource());
                }
                let body = decode_object(&request)?;
                self.update(&def, namespace.as_deref(), &name, sub.as_deref(), Change::Replace(body), &request).await
            }
            (&Method::PATCH, Some(name), sub @ (None | Some("status") | Some("approval"))) => {
                if sub == Some("status") && !def.status {
                    return Err(not_found_resource());
                }
                if sub == Some("approval") && !is_certificate_request(&def) {
                    return Err(not_found_resource());
                }
                let patch_type = PatchType::from_content_type(&request.content_type)
                    .ok_or_else(|| ApiError::unsupported_media_type(&request.content_type))?;
                if patch_type == PatchType::StrategicMerge && matches!(def.schema, SchemaSource::CustomResource(_)) {
                    return Err(ApiError::unsupported_media_type(&request.content_type));
                }
                let patch = decode_patch(&request, patch_type)?;
                let sub = sub.map(str::to_string);
                self.update(
                    &def,
                    namespace.as_deref(),
                    &name,
                    sub.as_deref(),
                    Change::Patch(patch_type, patch),
                    &request,
                )
                .await
            }
            (&Method::DELETE, Some(name), None) => self.delete(&def, namespace.as_deref(), &name, &request).await,
            (method, Some(name), Some("scale")) if def.scale.is_some() => {
                self.scale(&def, namespace.as_deref(), &name, method, &request).await
            }
            (&Method::POST, Some(name), Some("binding")) if def.plural == "pods" && def.group.is_empty() => {
                self.bind_pod(&def, namespace.as_deref(), &name, &request).await
            }
            (&Method::POST, Some(name), Some("eviction")) if def.plural == "pods" && def.group.is_empty() => {
                self.evict_pod(&def, namespace.as_deref(), &name, &request).await
            }
            (&Method::POST, Some(name), Some("token")) if def.group.is_empty() && def.plural == "serviceaccounts" => {
                self.token_request(&def, namespace.as_deref(), &name, &request).await
            }
            (_, _, Some(_)) => Err(not_found_resource()),
            (method, _, None) => Err(ApiError::method_not_allowed(format!(
                "the server does not allow this method on the requested resource ({method})"
            ))),
        }
    }

    pub(super) async fn get_existing(
        &self,
        def: &ResourceDef,
        namespace: Option<&str>,
        name: &str,
    ) -> ApiResult<Stored> {
        let key = ObjectStore::key(def, namespace, name);
        let mut stored = self.store.get(&key, true).await?.ok_or_else(|| not_found(def, name))?;
        self.in_served_version(def, vec![&mut stored.object]).await?;
        Ok(stored)
    }

    /// Encodes one object, or a one-row Table when the client asked for that.
    fn respond_object(
        &self,
        def: &ResourceDef,
        code: u16,
        object: Value,
        request: &ObjectRequest,
    ) -> ApiResult<Response<Body>> {
        if wants_table(&request.accept) {
            let table = super::watch::table_for(def, self.printer_columns(def).as_ref(), &[&object], &request.query)?;
            return Ok(object_response(code, &table, FieldOrder::BuiltIn));
        }
        Ok(object_response(code, &object, FieldOrder::of(def)))
    }

    async fn list(
        &self,
        def: &ResourceDef,
        namespace: Option<&str>,
        request: &ObjectRequest,
    ) -> ApiResult<Response<Body>> {
        let selection = Selection::from_query(&request.query, def)?;
        let limit = request.query.integer("limit")?.unwrap_or(0).max(0);
        let prefix = ObjectStore::prefix(def, namespace);
        let (mut revision, mut start) = (0, None);
        if let Some(token) = request.query.get("continue").filter(|token| !token.is_empty()) {
            let (token_revision, token_start) = decode_continue(token, &prefix)?;
            revision = token_revision;
            start = Some(token_start);
        } else if request.query.get("resourceVersionMatch") == Some("Exact") {
            revision = request
                .query
                .get("resourceVersion")
                .and_then(|rv| rv.parse().ok())
                .ok_or_else(|| ApiError::bad_request("resourceVersionMatch=Exact needs a resourceVersion"))?;
        }
        // Objects are decoded one at a time and, unless a Table is asked for, encoded into the answer at once: a
        // list of thousands of objects held whole as `serde_json::Value`s (several times their encoded size) was
        // the API server's largest transient use of memory.
        let table = wants_table(&request.accept);
        let mut values = Vec::new();
        let mut encoded = EncodedItems::new(def);
        let mut matched = 0i64;
        let mut next_start: Option<String>;
        let mut remaining: Option<i64> = None;
        loop {
            let chunk = if limit > 0 { (limit - matched).max(1) } else { 0 };
            let page = self.store.list_raw(&prefix, start.as_deref(), revision, chunk).await.map_err(|error| {
                if error.code == 410 && request.query.get("continue").is_some() {
                    // As upstream: a token for the same key at the latest revision (-1) lets the client go on.
                    let key = start.as_deref().unwrap_or(&prefix);
                    let token = encode_continue(-1, &key[prefix.len().min(key.len())..]);
                    ApiError::expired(
                        "The provided continue parameter is too old to display a consistent list result. You can \
                         start a new list without the continue parameter, or use the continue token in this \
                         response to retrieve the remainder of the results. Continuing with the provided token \
                         results in an inconsistent list - objects that were created, modified, or deleted between \
                         the time the first chunk was returned and now may show up in the list.",
                    )
                    .with_continue(token)
                } else {
                    error
                }
            })?;
            // The first page fixes the revision every later page (and every continue token) reads at.
            if revision == 0 {
                revision = page.revision;
            }
            let read = page.kvs.len() as i64;
            // With a conversion webhook the page is decoded whole, so that its objects go in one review; otherwise
            // one object at a time.
            let mut converted = None;
            let schema = crate::apiserver::admission::custom_schema(&self.registry(), def);
            if self.conversion_webhook(def).is_some() {
                let mut objects: Vec<Value> =
                    page.kvs.iter().map(|kv| decode(kv).map(|stored| stored.object)).collect::<ApiResult<_>>()?;
                self.in_served_version(def, objects.iter_mut().collect()).await?;
                converted = Some(objects.into_iter());
            }
            for kv in &page.kvs {
                let object = match converted.as_mut() {
                    Some(objects) => objects.next().unwrap_or_default(),
                    None => {
                        let mut object = decode(kv)?.object;
                        crate::apiserver::crd_conversion::served_form(def, schema.as_ref(), &mut object);
                        object
                    }
                };
                if selection.matches(def, &object)? {
                    matched += 1;
                    if table {
                        values.push(object);
                    } else {
                        encoded.push(object);
                    }
                }
            }
            next_start = page.next_start();
            if next_start.is_none() {
                break;
            }
            if limit > 0 && matched >= limit {
                if selection.is_empty() {
                    remaining = Some(page.count - read);
                }
                break;
            }
            start = next_start.clone();
        }
        let mut metadata = json!({"resourceVersion": revision.to_string()});
        if let Some(next) = &next_start {
            metadata["continue"] = json!(encode_continue(revision, &next[prefix.len()..]));
            if let Some(remaining) = remaining.filter(|remaining| *remaining > 0) {
                metadata["remainingItemCount"] = json!(remaining);
            }
        }
        if table {
            let refs: Vec<&Value> = values.iter().collect();
            let mut table = super::watch::table_for(def, self.printer_columns(def).as_ref(), &refs, &request.query)?;
            table["metadata"] = metadata;
            return Ok(object_response(200, &table, FieldOrder::BuiltIn));
        }
        Ok(encoded.response(def, metadata))
    }

    async fn create(
        &self,
        def: &ResourceDef,
        namespace: Option<&str>,
        request: &ObjectRequest,
    ) -> ApiResult<Response<Body>> {
        self.create_object(def, namespace, request, false, request).await
    }

    /// Creates the object in the request body. `applied` objects come from server-side apply, which has recorded
    /// their field ownership already.
    async fn create_object(
        &self,
        def: &ResourceDef,
        namespace: Option<&str>,
        request: &ObjectRequest,
        applied: bool,
        // The body repeated keys are looked for in: the request's, or the apply configuration an object was made of.
        as_sent: &ObjectRequest,
    ) -> ApiResult<Response<Body>> {
        if !def.has_verb("create") {
            return Err(ApiError::method_not_allowed(format!("{} cannot be created", def.group_resource())));
        }
        let options = WriteOptions::from_query(&request.query, &request.user_agent)?;
        let custom = crate::apiserver::admission::custom_schema(&self.registry(), def);
        let mut object = decode_object(request)?;
        if let Some(response) = self.create_review(def, &object, request).await? {
            return Ok(response);
        }
        let mut warnings = Vec::new();
        check_type(def, &mut object)?;
        let applied_as = applied.then(|| {
            let name = object.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
            typed_patch_object(def, namespace, name)
        });
        check_unknown_fields(
            def,
            custom.as_ref(),
            &object,
            Some(as_sent),
            applied_as.as_deref(),
            options.field_validation,
            &mut warnings,
        )?;
        set_namespace(def, namespace, &mut object)?;
        let metadata = metadata_mut(&mut object)?;
        if metadata.get("resourceVersion").and_then(Value::as_str).is_some_and(|rv| !rv.is_empty()) {
            return Err(ApiError::bad_request("resourceVersion should not be set on objects to be created"));
        }
        let name = match metadata.get("name").and_then(Value::as_str).filter(|name| !name.is_empty()) {
            Some(name) => name.to_string(),
            None => match metadata.get("generateName").and_then(Value::as_str).filter(|prefix| !prefix.is_empty()) {
                Some(prefix) => format!("{prefix}{}", random_suffix()),
                None => {
                    return Err(ApiError::invalid(
                        &def.kind,
                        &def.group,
                        "",
                        format!(
                            "{} \"\" is invalid: metadata.name: Required value: name or generateName is required",
                            def.kind
                        ),
                        vec![Cause {
                            reason: "FieldValueRequired".into(),
                            message: "Required value: name or generateName is required".into(),
                            field: "metadata.name".into(),
                        }],
                    ));
                }
            },
        };
        metadata.insert("name".into(), json!(name));
        metadata.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
        metadata.insert("creationTimestamp".into(), json!(now()));
        for field in ["deletionTimestamp", "deletionGracePeriodSeconds", "selfLink"] {
            metadata.remove(field);
        }
        if object.get("spec").is_some() || def.status {
            metadata_mut(&mut object)?.insert("generation".into(), json!(1));
        }
        if def.status && !keeps_status_on_create(def) {
            set_status(def, &mut object, None);
        }
        let admission_started = std::time::Instant::now();
        self.admit_priority(def, &name, &mut object).await?;
        crate::apiserver::admission::prepare_for_create(def, &mut object, custom.as_ref());
        self.admit_service_account(def, namespace, &name, &mut object).await?;
        let limit_ranges = self.pod_limit_ranges(def, namespace).await?;
        crate::apiserver::limit_ranges::apply_pod_defaults(&mut object, &limit_ranges);
        self.admit_default_storage_class(def, &mut object).await?;
        if def.group == "certificates.k8s.io" && def.plural == "certificatesigningrequests" {
            record_requester(&mut object, &request.user);
        }
        node_restriction(&request.user, def, namespace, &name, &request.method)?;
        let mut admission = Attributes::new(def, Operation::Create, &request.user, &name);
        admission.namespace = namespace;
        admission.dry_run = options.dry_run;
        admission.options = options.admission_options("CreateOptions");
        if self.admit_by_mutating_webhooks(&admission, Some(&mut object), &mut warnings).await? {
            crate::apiserver::admission::default_after_webhooks(def, &mut object, custom.as_ref());
        }
        validate_object(def, custom.as_ref(), &object, None)?;
        crate::apiserver::limit_ranges::admit_pod(def, &name, &object, &limit_ranges)?;
        self.admit_by_validating_webhooks(&admission, Some(&object), &mut warnings).await?;
        self.admit_quota(def, namespace, &name, &object, options.dry_run).await?;
        self.admit_create(def, namespace, &mut object, options.dry_run).await?;
        self.create_admission.record(admission_started.elapsed());
        if !applied {
            record_managed_fields(def, None, &mut object, &options.field_manager, None);
        }
        if options.dry_run {
            let key = ObjectStore::key(def, namespace, &name);
            if self.store.get(&key, true).await?.is_some() {
                return Err(ApiError::already_exists(&def.group_resource(), &def.group, &def.plural, &name));
            }
            return self.respond_with_warnings(def, 201, object, request, &warnings);
        }
        let key = ObjectStore::key(def, namespace, &name);
        match self.store.create(&key, &object).await? {
            Written::Ok(revision) => {
                crate::apiserver::storage::set_resource_version(&mut object, revision);
                self.respond_with_warnings(def, 201, object, request, &warnings)
            }
            Written::Stale => {
                self.release_allocations(def, &object).await;
                Err(ApiError::already_exists(&def.group_resource(), &def.group, &def.plural, &name))
            }
        }
    }

    fn respond_with_warnings(
        &self,
        def: &ResourceDef,
        code: u16,
        object: Value,
        request: &ObjectRequest,
        warnings: &[String],
    ) -> ApiResult<Response<Body>> {
        let mut response = self.respond_object(def, code, object, request)?;
        append_warnings(&mut response, warnings);
        Ok(response)
    }

    /// Update, patch, status, finalize: read, change, write back if nothing changed in between; retry when the
    /// client did not pin a resourceVersion.
    async fn update(
        &self,
        def: &ResourceDef,
        namespace: Option<&str>,
        name: &str,
        subresource: Option<&str>,
        change: Change,
        request: &ObjectRequest,
    ) -> ApiResult<Response<Body>> {
        let options = WriteOptions::from_query(&request.query, &request.user_agent)?;
        let key = ObjectStore::key(def, namespace, name);
        let mut warnings = Vec::new();
        let custom = crate::apiserver::admission::custom_schema(&self.registry(), def);
        for _attempt in 0..16 {
            let current = self.store.get(&key, true).await?;
            let Some(mut current) = current else {
                return match &change {
                    Change::Patch(PatchType::Apply, applied) if subresource.is_none() => {
                        self.create_by_apply(def, namespace, name, applied, request, &options).await
                    }
                    _ => Err(not_found(def, name)),
                };
            };
            self.in_served_version(def, vec![&mut current.object]).await?;
            let mut proposed = match &change {
                Change::Replace(body) => body.clone(),
                Change::Patch(patch_type, patch) => apply_patch(
                    def,
                    custom.as_ref(),
                    &current.object,
                    *patch_type,
                    patch,
                    &options,
                    request,
                    subresource,
                )?,
            };
            check_type(def, &mut proposed)?;
            // A whole object or an apply configuration is checked; other patches only name what to change.
            let as_sent = match &change {
                Change::Replace(_) | Change::Patch(PatchType::Apply, _) => Some(request),
                Change::Patch(..) => None,
            };
            let applied_as =
                matches!(change, Change::Patch(PatchType::Apply, _)).then(|| typed_patch_object(def, namespace, name));
            check_unknown_fields(
                def,
                custom.as_ref(),
                &proposed,
                as_sent,
                applied_as.as_deref(),
                options.field_validation,
                &mut warnings,
            )?;
            let pinned = proposed
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
                .filter(|rv| !rv.is_empty())
                .map(str::to_string);
            if let Some(pinned) = &pinned {
                if pinned != &current.revision.to_string() {
                    return Err(ApiError::conflict(&def.group_resource(), &def.group, &def.plural, name));
                }
            }
            let mut updated = prepare_update(def, &current.object, proposed, subresource, namespace, name)?;
            crate::apiserver::admission::prepare_for_update(def, &mut updated, &current.object, custom.as_ref());
            let mut admission = Attributes::new(def, Operation::Update, &request.user, name);
            admission.subresource = subresource;
            admission.namespace = namespace;
            admission.old_object = Some(&current.object);
            admission.dry_run = options.dry_run;
            admission.options = options.admission_options("UpdateOptions");
            if self.admit_by_mutating_webhooks(&admission, Some(&mut updated), &mut warnings).await? {
                crate::apiserver::admission::default_after_webhooks(def, &mut updated, custom.as_ref());
            }
            validate_object(def, custom.as_ref(), &updated, Some(&current.object))?;
            self.admit_default_priority_class(def, name, &updated).await?;
            self.admit_by_validating_webhooks(&admission, Some(&updated), &mut warnings).await?;
            let manager_subresource = subresource.filter(|sub| *sub == "status");
            if !matches!(change, Change::Patch(PatchType::Apply, _)) {
                record_managed_fields(
                    def,
                    Some(&current.object),
                    &mut updated,
                    &options.field_manager,
                    manager_subresource,
                );
            }
            // Until it is written the object is at the current revision; an unchanged object is not written at all.
            crate::apiserver::storage::set_resource_version(&mut updated, current.revision);
            if options.dry_run {
                return self.respond_with_warnings(def, 200, updated, request, &warnings);
            }
            // An object being deleted whose last finalizer was just removed goes away now.
            if is_finalized(&updated) {
                return match self.store.delete(&key, current.revision).await? {
                    Written::Ok(_) => {
                        self.release_allocations(def, &updated).await;
                        self.respond_object(def, 200, updated, request)
                    }
                    // Written in between: start over. A pinned resourceVersion fails the check above next time.
                    Written::Stale => continue,
                };
            }
            if updated == current.object {
                return self.respond_with_warnings(def, 200, updated, request, &warnings);
            }
            match self.store.update(&key, current.revision, &updated).await? {
                Written::Ok(revision) => {
                    crate::apiserver::storage::set_resource_version(&mut updated, revision);
                    return self.respond_with_warnings(def, 200, updated, request, &warnings);
                }
                // Written in between: start over. A patch leaves the stored resourceVersion in what it proposes,
                // so only a resourceVersion the client pinned differs from the next read's, and fails the check above.
                Written::Stale => continue,
            }
        }
        Err(ApiError::conflict(&def.group_resource(), &def.group, &def.plural, name))
    }

    async fn create_by_apply(
        &self,
        def: &ResourceDef,
        namespace: Option<&str>,
        name: &str,
        applied: &Value,
        request: &ObjectRequest,
        options: &WriteOptions,
    ) -> ApiResult<Response<Body>> {
        let mut object = patch::apply(
            None,
            applied,
            &apply_request(def, options, request, None)?,
            &crate::apiserver::admission::facts(def),
        )
        .map_err(apply_error)?;
        if object.pointer("/metadata/name").and_then(Value::as_str).unwrap_or(name) != name {
            return Err(ApiError::bad_request("the name of the object does not match the name on the URL"));
        }
        metadata_mut(&mut object)?.insert("name".into(), json!(name));
        let body = Bytes::from(serde_json::to_vec(&object).unwrap_or_default());
        let create = ObjectRequest {
            user: request.user.clone(),
            method: Method::POST,
            resource: request.resource.clone(),
            query: request.query.clone(),
            accept: request.accept.clone(),
            content_type: "application/json".into(),
            user_agent: request.user_agent.clone(),
            body,
        };
        // The configuration as sent, not the object made from it, holds any repeated keys.
        Box::pin(self.create_object(def, namespace, &create, true, request)).await
    }

    async fn delete(
        &self,
        def: &ResourceDef,
        namespace: Option<&str>,
        name: &str,
        request: &ObjectRequest,
    ) -> ApiResult<Response<Body>> {
        if !def.has_verb("delete") {
            return Err(ApiError::method_not_allowed(format!("{} cannot be deleted", def.group_resource())));
        }
        let options = DeleteOptions::from_request(request)?;
        let (code, object, uid) = self.delete_one(def, namespace, name, &options).await?;
        match object {
            Some(object) => self.respond_object(def, code, object, request),
            None => {
                let details = Details {
                    name: name.into(),
                    group: def.group.clone(),
                    kind: def.plural.clone(),
                    uid,
                    ..Details::default()
                };
                Ok(json_bytes_response(200, success_status_json(0, Some(&details)), "application/json"))
            }
        }
    }

    /// Deletes one object; returns the object when it stays (finalizers, graceful deletion), `None` when gone,
    /// and the object's uid either way.
    pub(crate) async fn delete_one(
        &self,
        def: &ResourceDef,
        namespace: Option<&str>,
        name: &str,
        options: &DeleteOptions,
    ) -> ApiResult<(u16, Option<Value>, String)> {
        let key = ObjectStore::key(def, namespace, name);
        let mut node_revoked = false;
        for _attempt in 0..16 {
            let mut current = self.store.get(&key, true).await?.ok_or_else(|| not_found(def, name))?;
            self.in_served_version(def, vec![&mut current.object]).await?;
            let object = &current.object;
            let object_uid = object.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or_default().to_string();
            if let Some(uid) = &options.precondition_uid {
                let actual = object.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or("");
                if actual != uid {
                    return Err(ApiError::new(
                        409,
                        "Conflict",
                        format!("Precondition failed: UID in precondition: {uid}, UID in object meta: {actual}"),
                    ));
                }
            }
            options.check_resource_version(current.revision)?;
            // Webhooks see the delete before anything of it happens; their warnings have no way back yet.
            let mut admission = Attributes::new(def, Operation::Delete, &options.user, name);
            admission.namespace = namespace;
            admission.old_object = Some(object);
            admission.dry_run = options.dry_run;
            admission.options = options.admission_options();
            let mut warnings = Vec::new();
            self.admit_by_mutating_webhooks(&admission, None, &mut warnings).await?;
            self.admit_by_validating_webhooks(&admission, None, &mut warnings).await?;
            if def.group.is_empty() && def.plural == "nodes" && !options.dry_run && !node_revoked {
                // A removed node's credentials and tunnel go with it; rejoining takes a new token.
                self.revoke_node(name).await?;
                node_revoked = true;
            }
            let mut updated = object.clone();
            let mut finalizers: Vec<String> = string_list(updated.pointer("/metadata/finalizers"));
            match options.propagation.as_deref() {
                Some("Orphan") if !finalizers.iter().any(|f| f == "orphan") => finalizers.push("orphan".into()),
                Some("Foreground") if !finalizers.iter().any(|f| f == "foregroundDeletion") => {
                    finalizers.push("foregroundDeletion".into())
                }
                _ => {}
            }
            let grace = graceful_period(def, object, options.grace_period_seconds);
            let namespace_finalizers = def.group.is_empty()
                && def.plural == "namespaces"
                && !string_list(object.pointer("/spec/finalizers")).is_empty();
            let stays = !finalizers.is_empty() || grace > 0 || namespace_finalizers;
            if !stays {
                if options.dry_run {
                    return Ok((200, Some(current.object), object_uid));
                }
                match self.store.delete(&key, current.revision).await? {
                    Written::Ok(_) => {
                        self.release_allocations(def, &current.object).await;
                        return Ok((200, None, object_uid));
                    }
                    Written::Stale => continue,
                }
            }
            let metadata = metadata_mut(&mut updated)?;
            if !finalizers.is_empty() {
                metadata.insert("finalizers".into(), json!(finalizers));
            }
            let already_deleting = metadata.contains_key("deletionTimestamp");
            if !already_deleting {
                let when = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(grace);
                metadata.insert("deletionTimestamp".into(), json!(format_time(when)));
                metadata.insert("deletionGracePeriodSeconds".into(), json!(grace));
            } else if grace < metadata.get("deletionGracePeriodSeconds").and_then(Value::as_i64).unwrap_or(0) {
                // A shorter grace period may shorten a deletion already under way (kubectl delete --now).
                let when = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(grace);
                metadata.insert("deletionTimestamp".into(), json!(format_time(when)));
                metadata.insert("deletionGracePeriodSeconds".into(), json!(grace));
            }
            if namespace_finalizers {
                if let Some(map) = updated.as_object_mut() {
                    let status = map.entry("status").or_insert_with(|| json!({}));
                    status["phase"] = json!("Terminating");
                }
            }
            if options.dry_run || updated == current.object {
                return Ok((200, Some(updated), object_uid));
            }
            match self.store.update(&key, current.revision, &updated).await? {
                Written::Ok(revision) => {
                    crate::apiserver::storage::set_resource_version(&mut updated, revision);
                    return Ok((if finalizers.is_empty() { 200 } else { 202 }, Some(updated), object_uid));
                }
                Written::Stale => continue,
            }
        }
        Err(ApiError::conflict(&def.group_resource(), &def.group, &def.plural, name))
    }

    async fn delete_collection(
        &self,
        def: &ResourceDef,
        namespace: Option<&str>,
        request: &ObjectRequest,
    ) -> ApiResult<Response<Body>> {
        if !def.has_verb("deletecollection") {
            return Err(ApiError::method_not_allowed(format!(
                "{} cannot be deleted as a collection",
                def.group_resource()
            )));
        }
        let selection = Selection::from_query(&request.query, def)?;
        let options = DeleteOptions::from_request(request)?;
        // The collection as of one revision (objects created meanwhile are not deleted), read a page at a time
        // and each object decoded only while it is deleted; the answer's items are kept encoded. Decoding a
        // namespace's thousands of pods whole into values was the API server's largest peak of memory.
        let prefix = ObjectStore::prefix(def, namespace);
        let mut deleted = EncodedItems::new(def);
        let (mut revision, mut start) = (0, None::<String>);
        loop {
            let page = self.store.list_raw(&prefix, start.as_deref(), revision, DELETE_COLLECTION_PAGE).await?;
            if revision == 0 {
                revision = page.revision;
            }
            for kv in &page.kvs {
                let stored = decode(kv)?;
                if !selection.matches(def, &stored.object)? {
                    continue;
                }
                let name = stored.object.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("").to_string();
                let item_namespace =
                    stored.object.pointer("/metadata/namespace").and_then(Value::as_str).map(str::to_string);
                match self.delete_one(def, item_namespace.as_deref(), &name, &options).await {
                    Ok((_, remaining, _)) => deleted.push(remaining.unwrap_or(stored.object)),
                    Err(error) if error.code == 404 => {}
                    Err(error) => return Err(error),
                }
            }
            start = page.next_start();
            if start.is_none() {
                break;
            }
        }
        Ok(deleted.response(def, json!({"resourceVersion": self.store.revision().to_string()})))
    }

    /// The scale subresource: an autoscaling/v1 Scale view of the object's replicas.
    async fn scale(
        &self,
        def: &ResourceDef,
        namespace: Option<&str>,
        name: &str,
        method: &Method,
        request: &ObjectRequest,
    ) -> ApiResult<Response<Body>> {
        let paths = def.scale.clone().expect("checked by the router");
        let stored = self.get_existing(def, namespace, name).await?;
        if method == Method::GET {
            return Ok(object_response(200, &scale_of(def, &stored.object, &paths), FieldOrder::BuiltIn));
        }
        let current_scale = scale_of(def, &stored.object, &paths);
        let mut unpinned_scale = current_scale.clone();
        if let Some(metadata) = unpinned_scale.get_mut("metadata").and_then(Value::as_object_mut) {
            metadata.remove("resourceVersion");
        }
        let new_scale = match *method {
            Method::PUT => decode_object(request)?,
            // Patched onto the Scale without its resourceVersion: only one the patch itself sets pins the write
            // (else a write to the object in between would fail a patch that never named a version).
            Method::PATCH => {
                let patch_type = PatchType::from_content_type(&request.content_type)
                    .ok_or_else(|| ApiError::unsupported_media_type(&request.content_type))?;
                let patch = decode_patch(request, patch_type)?;
                match patch_type {
                    PatchType::Json => patch::json_patch(&unpinned_scale, &patch).map_err(patch_error)?,
                    _ => patch::merge_patch(&unpinned_scale, &patch),
                }
            }
            _ => return Err(ApiError::method_not_allowed(format!("{method} is not allowed on scale"))),
        };
        let replicas = new_scale
            .pointer("/spec/replicas")
            .and_then(Value::as_i64)
            .ok_or_else(|| ApiError::bad_request("spec.replicas of the Scale is required"))?;
        if replicas < 0 {
            return Err(ApiError::invalid("Scale", "autoscaling", name, format!("Scale.autoscaling \"{name}\" is invalid: spec.replicas: Invalid value: {replicas}: must be greater than or equal to 0"), vec![Cause { reason: "FieldValueInvalid".into(), message: format!("Invalid value: {replicas}: must be greater than or equal to 0"), field: "spec.replicas".into() }]));
        }
        let pinned = new_scale.pointer("/metadata/resourceVersion").and_then(Value::as_str).filter(|rv| !rv.is_empty());
        let mut patch = json!({});
        set_path(&mut patch, &paths.spec_replicas, json!(replicas));
        if let Some(rv) = pinned {
            patch["metadata"] = json!({"resourceVersion": rv});
        }
        let inner = ObjectRequest {
            user: request.user.clone(),
            method: Method::PATCH,
            resource: request.resource.clone(),
            query: request.query.clone(),
            accept: "application/json".into(),
            content_type: "application/merge-patch+json".into(),
            user_agent: request.user_agent.clone(),
            body: Bytes::new(),
        };
        let response = self.update(def, namespace, name, None, Change::Patch(PatchType::Merge, patch), &inner).await?;
        let _ = response;
        let stored = self.get_existing(def, namespace, name).await?;
        Ok(object_response(200, &scale_of(def, &stored.object, &paths), FieldOrder::BuiltIn))
    }

    /// pods/binding: sets spec.nodeName of an unscheduled pod (what a scheduler does).
    async fn bind_pod(
        &self,
        def: &ResourceDef,
        namespace: Option<&str>,
        name: &str,
        request: &ObjectRequest,
    ) -> ApiResult<Response<Body>> {
        let binding = decode_object(request)?;
        let node = binding
            .pointer("/target/name")
            .and_then(Value::as_str)
            .filter(|node| !node.is_empty())
            .ok_or_else(|| ApiError::bad_request("a Binding needs target.name"))?
            .to_string();
        let key = ObjectStore::key(def, namespace, name);
        for _attempt in 0..16 {
            let current = self.store.get(&key, true).await?.ok_or_else(|| not_found(def, name))?;
            if current.object.pointer("/spec/nodeName").and_then(Value::as_str).is_some_and(|n| !n.is_empty()) {
                return Err(ApiError::new(409, "Conflict", format!("Operation cannot be fulfilled on pods/binding \"{name}\": pod {name} is already assigned to node {:?}", current.object.pointer("/spec/nodeName").and_then(Value::as_str).unwrap_or(""))));
            }
            let mut updated = current.object.clone();
            updated["spec"]["nodeName"] = json!(node);
            let conditions =
                updated["status"].as_object_mut().map(|status| status.entry("conditions").or_insert_with(|| json!([])));
            if let Some(Value::Array(conditions)) = conditions {
                conditions.retain(|condition| condition["type"] != "PodScheduled");
                conditions.push(json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": now()}));
            }
            match self.store.update(&key, current.revision, &updated).await? {
                Written::Ok(_) => {
                    return Ok(json_bytes_response(201, success_status_json(201, None), "application/json"));
                }
                Written::Stale => continue,
            }
        }
        Err(ApiError::conflict("pods/binding", "", "pods", name))
    }

    /// serviceaccounts/token (TokenRequest, `kubectl create token`): a signed, expiring token for the account.
    async fn token_request(
        &self,
        def: &ResourceDef,
        namespace: Option<&str>,
        name: &str,
        request: &ObjectRequest,
    ) -> ApiResult<Response<Body>> {
        let body = decode_object(request)?;
        let account = self.get_existing(def, namespace, name).await?;
        let namespace = namespace.unwrap_or_default();
        let expiration = body.pointer("/spec/expirationSeconds").and_then(Value::as_i64).unwrap_or(3600);
        if expiration < 600 {
            let message = "may not specify a duration less than 10 minutes".to_string();
            return Err(ApiError::invalid("TokenRequest", "authentication.k8s.io", name, format!("TokenRequest.authentication.k8s.io \"{name}\" is invalid: spec.expirationSeconds: Invalid value: {expiration}: {message}"), vec![Cause { reason: "FieldValueInvalid".into(), message, field: "spec.expirationSeconds".into() }]));
        }
        let expiration = expiration.min(1 << 32);
        let audiences: Vec<String> = match body.pointer("/spec/audiences").and_then(Value::as_array) {
            Some(list) if !list.is_empty() => {
                list.iter().filter_map(|audience| audience.as_str().map(str::to_string)).collect()
            }
            _ => vec![crate::apiserver::tokens::ISSUER.to_string()],
        };
        let mut bound = body.pointer("/spec/boundObjectRef").cloned();
        let bound_claims = crate::apiserver::auth::bound_object_claims(self, namespace, bound.as_ref()).await?;
        if let (Some(bound), Some(reference)) =
            (bound.as_mut(), bound_claims.pod.as_ref().or(bound_claims.secret.as_ref()).or(bound_claims.node.as_ref()))
        {
            bound["uid"] = json!(reference.uid);
        }
        let now = jiff::Timestamp::now();
        let claims = crate::apiserver::tokens::Claims {
            iss: crate::apiserver::tokens::ISSUER.to_string(),
            sub: format!("system:serviceaccount:{namespace}:{name}"),
            aud: audiences.clone(),
            exp: now.as_second() + expiration,
            iat: now.as_second(),
            nbf: now.as_second(),
            jti: uuid::Uuid::new_v4().to_string(),
            kubernetes: crate::apiserver::tokens::KubernetesClaims {
                namespace: namespace.to_string(),
                serviceaccount: crate::apiserver::tokens::Reference {
                    name: name.to_string(),
                    uid: account
                        .object
                        .pointer("/metadata/uid")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                },
                pod: bound_claims.pod,
                secret: bound_claims.secret,
                node: bound_claims.node,
            },
        };
        let token = self.tokens.sign(&claims).map_err(|error| ApiError::internal(error.to_string()))?;
        let expires = now + jiff::SignedDuration::from_secs(expiration);
        let mut spec = json!({"audiences": audiences, "expirationSeconds": expiration, "boundObjectRef": bound});
        if spec["boundObjectRef"].is_null() {
            spec.as_object_mut().map(|spec| spec.remove("boundObjectRef"));
        }
        Ok(object_response(
            201,
            &json!({
                "kind": "TokenRequest",
                "apiVersion": "authentication.k8s.io/v1",
                "metadata": {"name": name, "namespace": namespace, "creationTimestamp": format_time(now)},
                "spec": spec,
                "status": {"token": token, "expirationTimestamp": format_time(expires)},
            }),
            FieldOrder::BuiltIn,
        ))
    }

    /// Create-only kinds that are answered, not stored: SelfSubjectReview (`kubectl auth whoami`), the access and
    /// rules reviews (`kubectl auth can-i`, `--list`) and TokenReview.
    async fn create_review(
        &self,
        def: &ResourceDef,
        object: &Value,
        request: &ObjectRequest,
    ) -> ApiResult<Option<Response<Body>>> {
        let mut answer = object.clone();
        match (def.group.as_str(), def.kind.as_str()) {
            ("authentication.k8s.io", "SelfSubjectReview") => {
                answer["status"] = json!({"userInfo": request.user.to_user_info()});
            }
            ("authorization.k8s.io", "SelfSubjectAccessReview") => {
                let attributes = object.pointer("/spec/resourceAttributes").cloned();
                let non_resource = object.pointer("/spec/nonResourceAttributes").cloned();
                let decision =
                    crate::apiserver::rbac::review(self, &request.user, attributes.as_ref(), non_resource.as_ref())
                        .await?;
                answer["status"] = decision;
            }
            ("authorization.k8s.io", "SubjectAccessReview" | "LocalSubjectAccessReview") => {
                let spec = &object["spec"];
                let user = User::authenticated(
                    spec["user"].as_str().unwrap_or("").to_string(),
                    spec["uid"].as_str().unwrap_or("").to_string(),
                    string_list(spec.get("groups")),
                );
                let decision = crate::apiserver::rbac::review(
                    self,
                    &user,
                    spec.get("resourceAttributes"),
                    spec.get("nonResourceAttributes"),
                )
                .await?;
                answer["status"] = decision;
            }
            ("authorization.k8s.io", "SelfSubjectRulesReview") => {
                let namespace = object.pointer("/spec/namespace").and_then(Value::as_str).unwrap_or("");
                answer["status"] = crate::apiserver::rbac::rules_review(self, &request.user, namespace).await?;
            }
            ("authentication.k8s.io", "TokenReview") => {
                answer["status"] = crate::apiserver::auth::token_review(self, &object["spec"]).await?;
            }
            _ => return Ok(None),
        }
        // A review is not stored and has no Table form: a client that accepts nothing else gets upstream's 406.
        if accepts_only_tables(&request.accept) {
            return Err(ApiError::not_acceptable(format!(
                "the resource {} does not support being converted to a Table",
                def.group_resource()
            )));
        }
        answer["apiVersion"] = json!(def.api_version());
        answer["kind"] = json!(def.kind);
        if answer.get("metadata").is_none() {
            answer["metadata"] = json!({});
        }
        Ok(Some(object_response(201, &answer, FieldOrder::BuiltIn)))
    }

    /// Namespace lifecycle and the allocations some kinds need before they are stored.
    async fn admit_create(
        &self,
        def: &ResourceDef,
        namespace: Option<&str>,
        object: &mut Value,
        dry_run: bool,
    ) -> ApiResult<()> {
        if let Some(namespace) = namespace {
            let namespaces = self.registry().get("", "v1", "namespaces").cloned().expect("namespaces are built in");
            let key = ObjectStore::key(&namespaces, None, namespace);
            match self.store.get(&key, false).await? {
                None => {
                    return Err(ApiError::not_found("namespaces", "", "namespaces", namespace));
                }
                Some(stored) if stored.object.pointer("/metadata/deletionTimestamp").is_some() => {
                    let name = object.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("");
                    let message = format!(
                        "{} \"{name}\" is forbidden: unable to create new content in namespace {namespace} because it \
                         is being terminated",
                        def.group_resource()
                    );
                    let details = Details {
                        name: name.into(),
                        group: def.group.clone(),
                        kind: def.plural.clone(),
                        causes: vec![Cause {
                            reason: "NamespaceTerminating".into(),
                            message: format!("namespace {namespace} is being terminated"),
                            field: "metadata.namespace".into(),
                        }],
                        ..Details::default()
                    };
                    return Err(ApiError::forbidden(message, details));
                }
                Some(_) => {}
            }
        }
        if def.group.is_empty() && def.plural == "services" && !dry_run {
            self.allocate_service(object).await?;
        }
        Ok(())
    }

    /// Returns what an object held (its ClusterIP, node ports) when it is deleted or its creation failed.
    async fn release_allocations(&self, def: &ResourceDef, object: &Value) {
        if def.group.is_empty() && def.plural == "services" {
            self.release_service(object).await;
        }
        // A deleted CustomResourceDefinition takes its custom resources with it.
        if def.group == "apiextensions.k8s.io" && def.plural == "customresourcedefinitions" {
            if let Ok(defs) = crate::apiserver::crd::resource_defs(object) {
                if let Some(first) = defs.first() {
                    if let Err(error) = self.store.delete_prefix(&ObjectStore::prefix(first, None)).await {
                        tracing::warn!(error = %error, "cannot delete the custom resources of a deleted definition");
                    }
                }
            }
        }
    }
}

enum Change {
    Replace(Value),
    Patch(PatchType, Value),
}

/// DeleteOptions from the body and the query.
#[derive(Clone)]
pub(crate) struct DeleteOptions {
    pub propagation: Option<String>,
    pub grace_period_seconds: Option<i64>,
    pub precondition_uid: Option<String>,
    pub precondition_resource_version: Option<String>,
    pub dry_run: bool,
    /// Who deletes, for admission webhooks.
    pub user: User,
}

impl DeleteOptions {
    fn from_request(request: &ObjectRequest) -> ApiResult<DeleteOptions> {
        let body: Value = if request.body.iter().all(u8::is_ascii_whitespace) {
            json!({})
        } else {
            decode_body(&request.body, &request.content_type)?
        };
        DeleteOptions::from_body(&body, request)
    }

    /// DeleteOptions from a body (a DELETE's, or an Eviction's `deleteOptions`) and the request's query.
    pub(super) fn from_body(body: &Value, request: &ObjectRequest) -> ApiResult<DeleteOptions> {
        let propagation = body["propagationPolicy"]
            .as_str()
            .map(str::to_string)
            .or_else(|| request.query.get("propagationPolicy").map(str::to_string));
        if let Some(policy) = &propagation {
            if !["Orphan", "Background", "Foreground"].contains(&policy.as_str()) {
                return Err(ApiError::bad_request(format!(
                    "propagationPolicy {policy:?} is not one of Orphan, Background, Foreground"
                )));
            }
        }
        if body["orphanDependents"].as_bool() == Some(true) && propagation.is_some() {
            return Err(ApiError::bad_request("orphanDependents and propagationPolicy cannot both be set"));
        }
        let propagation =
            propagation.or_else(|| (body["orphanDependents"].as_bool() == Some(true)).then(|| "Orphan".to_string()));
        let grace_period_seconds =
            body["gracePeriodSeconds"].as_i64().or(request.query.integer("gracePeriodSeconds")?);
        let dry_run = body["dryRun"].as_array().is_some_and(|values| values.iter().any(|v| v == "All"))
            || request.query.get("dryRun") == Some("All");
        Ok(DeleteOptions {
            propagation,
            grace_period_seconds,
            precondition_uid: body.pointer("/preconditions/uid").and_then(Value::as_str).map(str::to_string),
            precondition_resource_version: body
                .pointer("/preconditions/resourceVersion")
                .and_then(Value::as_str)
                .map(str::to_string),
            dry_run,
            user: request.user.clone(),
        })
    }

    /// The resourceVersion precondition, if any, against the stored revision.
    pub(super) fn check_resource_version(&self, revision: i64) -> ApiResult<()> {
        match &self.precondition_resource_version {
            Some(expected) if *expected != revision.to_string() => Err(ApiError::new(
                409,
                "Conflict",
                format!(
                    "Precondition failed: ResourceVersion in precondition: {expected}, ResourceVersion in object \
                     meta: {revision}"
                ),
            )),
            _ => Ok(()),
        }
    }

    /// DeleteOptions as an admission review's `options`.
    fn admission_options(&self) -> Value {
        let mut fields = Map::new();
        if let Some(policy) = &self.propagation {
            fields.insert("propagationPolicy".into(), json!(policy));
        }
        if let Some(grace) = self.grace_period_seconds {
            fields.insert("gracePeriodSeconds".into(), json!(grace));
        }
        Attributes::options("DeleteOptions", self.dry_run, fields)
    }
}

/// Grace period of a delete: only pods already bound to a node wait for their node agent to stop them.
fn graceful_period(def: &ResourceDef, object: &Value, requested: Option<i64>) -> i64 {
    if !(def.group.is_empty() && def.plural == "pods") {
        return 0;
    }
    let bound = object.pointer("/spec/nodeName").and_then(Value::as_str).is_some_and(|node| !node.is_empty());
    let finished = matches!(object.pointer("/status/phase").and_then(Value::as_str), Some("Succeeded" | "Failed"));
    if !bound || finished {
        return 0;
    }
    requested
        .unwrap_or_else(|| object.pointer("/spec/terminationGracePeriodSeconds").and_then(Value::as_i64).unwrap_or(30))
        .max(0)
}

/// An object with a deletionTimestamp and nothing left to wait for.
fn is_finalized(object: &Value) -> bool {
    object.pointer("/metadata/deletionTimestamp").is_some()
        && string_list(object.pointer("/metadata/finalizers")).is_empty()
        && object.pointer("/metadata/deletionGracePeriodSeconds").and_then(Value::as_i64).unwrap_or(0) == 0
        && (object.get("kind").and_then(Value::as_str) != Some("Namespace")
            || string_list(object.pointer("/spec/finalizers")).is_empty())
}

/// The label and field selectors of a list, watch or deletecollection.
pub(super) struct Selection {
    labels: LabelSelector,
    fields: FieldSelector,
}

impl Selection {
    pub(super) fn from_query(query: &Query, def: &ResourceDef) -> ApiResult<Selection> {
        let labels = LabelSelector::parse(query.get("labelSelector").unwrap_or(""))
            .map_err(|error| ApiError::bad_request(error.to_string()))?;
        let fields = FieldSelector::parse(query.get("fieldSelector").unwrap_or(""))
            .map_err(|error| ApiError::bad_request(error.to_string()))?;
        fields.validate(&def.group, &def.kind).map_err(|error| ApiError::bad_request(error.to_string()))?;
        Ok(Selection { labels, fields })
    }

    pub(super) fn is_empty(&self) -> bool {
        self.labels.is_empty() && self.fields.is_empty()
    }

    pub(super) fn matches(&self, def: &ResourceDef, object: &Value) -> ApiResult<bool> {
        if !self.labels.matches(object.pointer("/metadata/labels").and_then(Value::as_object)) {
            return Ok(false);
        }
        if self.fields.is_empty() {
            return Ok(true);
        }
        Ok(self.fields.matches_kind(&def.group, &def.kind, object))
    }
}

#[allow(clippy::too_many_arguments)]
fn apply_patch(
    def: &ResourceDef,
    custom: Option<&Value>,
    current: &Value,
    patch_type: PatchType,
    patch: &Value,
    options: &WriteOptions,
    request: &ObjectRequest,
    subresource: Option<&str>,
) -> ApiResult<Value> {
    let facts = match custom {
        Some(schema) => crate::apiserver::schema::Schemas::shared().facts_for_custom_resource(schema),
        None => crate::apiserver::admission::facts(def),
    };
    match patch_type {
        PatchType::Json => patch::json_patch(current, patch).map_err(patch_error),
        PatchType::Merge => Ok(patch::merge_patch(current, patch)),
        PatchType::StrategicMerge => patch::strategic_merge_patch(current, patch, &facts).map_err(patch_error),
        PatchType::Apply => {
            patch::apply(Some(current), patch, &apply_request(def, options, request, subresource)?, &facts)
                .map_err(apply_error)
        }
    }
}

/// A JSON, merge or strategic merge patch applied to a built-in object, outside the write path (conversion.rs
/// computes patches on a served version this way). Apply patches go through [`apply_patch`].
pub(super) fn patch_object(
    def: &ResourceDef,
    current: &Value,
    patch_type: PatchType,
    patch: &Value,
) -> ApiResult<Value> {
    let facts = crate::apiserver::admission::facts(def);
    match patch_type {
        PatchType::Json => patch::json_patch(current, patch).map_err(patch_error),
        PatchType::Merge => Ok(patch::merge_patch(current, patch)),
        PatchType::StrategicMerge => patch::strategic_merge_patch(current, patch, &facts).map_err(patch_error),
        PatchType::Apply => Err(ApiError::internal("an apply patch needs the write path's field ownership")),
    }
}

fn apply_request(
    def: &ResourceDef,
    options: &WriteOptions,
    request: &ObjectRequest,
    subresource: Option<&str>,
) -> ApiResult<patch::ApplyRequest> {
    if request.query.get("fieldManager").is_none_or(str::is_empty) {
        let message = "is required for apply patch".to_string();
        return Err(ApiError::invalid(
            "PatchOptions",
            "meta.k8s.io",
            "",
            format!("PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: {message}"),
            vec![Cause {
                reason: "FieldValueRequired".into(),
                message: format!("Required value: {message}"),
                field: "fieldManager".into(),
            }],
        ));
    }
    Ok(patch::ApplyRequest {
        manager: options.field_manager.clone(),
        force: request.query.flag("force")?,
        api_version: def.api_version(),
        subresource: subresource.map(str::to_string),
        now: now(),
    })
}

fn patch_error(error: patch::PatchError) -> ApiError {
    match error.status_code() {
        400 => ApiError::bad_request(error.to_string()),
        code => ApiError::new(code, "Invalid", error.to_string()),
    }
}

fn apply_error(error: patch::ApplyError) -> ApiError {
    match error {
        patch::ApplyError::Conflict { message, causes } => {
            ApiError::new(409, "Conflict", message).with_details(Details {
                causes: causes
                    .into_iter()
                    .map(|cause| Cause {
                        reason: "FieldManagerConflict".into(),
                        message: cause.message,
                        field: cause.field,
                    })
                    .collect(),
                ..Details::default()
            })
        }
        other => ApiError::bad_request(other.to_string()),
    }
}

/// Carries over what a client cannot change with an update, splits spec from status by subresource, and bumps
/// the generation when the spec changed.
fn prepare_update(
    def: &ResourceDef,
    current: &Value,
    mut proposed: Value,
    subresource: Option<&str>,
    namespace: Option<&str>,
    name: &str,
) -> ApiResult<Value> {
    let proposed_name = proposed.pointer("/metadata/name").and_then(Value::as_str).unwrap_or(name);
    if proposed_name != name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({proposed_name}) does not match the name on the URL ({name})"
        )));
    }
    if let Some(uid) = proposed.pointer("/metadata/uid").and_then(Value::as_str).filter(|uid| !uid.is_empty()) {
        let actual = current.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or("");
        if uid != actual {
            return Err(ApiError::new(
                409,
                "Conflict",
                format!("Precondition failed: UID in precondition: {uid}, UID in object meta: {actual}"),
            ));
        }
    }
    set_namespace(def, namespace, &mut proposed)?;
    let subresource_metadata =
        subresource.and_then(|_| metadata_of_subresource_write(def, current, &proposed, subresource));
    let mut updated = match subresource {
        Some("status") => {
            let mut updated = current.clone();
            set_status(def, &mut updated, proposed.get("status").cloned());
            updated
        }
        Some("approval") => {
            // Only the approval conditions change here; the certificate itself is written through status.
            let mut updated = current.clone();
            updated["status"]["conditions"] = proposed.pointer("/status/conditions").cloned().unwrap_or(json!([]));
            updated
        }
        Some("finalize") => {
            let mut updated = current.clone();
            updated["spec"]["finalizers"] = proposed.pointer("/spec/finalizers").cloned().unwrap_or(json!([]));
            updated
        }
        _ => {
            // The stored status as it is, even none: a main-resource write never makes one up.
            if let (true, Some(map)) = (def.status, proposed.as_object_mut()) {
                match current.get("status") {
                    Some(status) => map.insert("status".into(), status.clone()),
                    None => map.remove("status"),
                };
            }
            proposed
        }
    };
    if let Some(metadata) = subresource_metadata {
        updated["metadata"] = metadata;
    }
    let current_metadata = current.get("metadata").cloned().unwrap_or(json!({}));
    let metadata = metadata_mut(&mut updated)?;
    for field in [
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
        "namespace",
        "name",
    ] {
        match current_metadata.get(field) {
            Some(value) => {
                metadata.insert(field.into(), value.clone());
            }
            None => {
                metadata.remove(field);
            }
        }
    }
    metadata.remove("resourceVersion");
    // A deleting object can lose finalizers but not gain new ones (upstream forbids adding them).
    if subresource.is_none() && spec_changed(current, &updated) {
        let generation = current.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(0) + 1;
        metadata_mut(&mut updated)?.insert("generation".into(), json!(generation));
    }
    Ok(updated)
}

/// Everything but metadata and status counts as spec (ConfigMap data, Role rules, ...).
/// Metadata after a write to `/status`, `/approval` or `/finalize`. Built-in kinds take the request's metadata (the
/// labels and annotations sent with a status patch are kept, as upstream's status strategies only reset the spec),
/// except that `pods/status` cannot change owner references and `deployments/status` cannot change labels. Custom resources keep their stored metadata, as
/// upstream's status strategy for them copies everything but the status from the stored object.
/// `None` keeps the stored metadata.
fn metadata_of_subresource_write(
    def: &ResourceDef,
    current: &Value,
    proposed: &Value,
    subresource: Option<&str>,
) -> Option<Value> {
    if matches!(def.schema, SchemaSource::CustomResource(_)) {
        return None;
    }
    let mut metadata = proposed.get("metadata").filter(|metadata| metadata.is_object()).cloned()?;
    // Upstream's deployment status strategy resets the labels as well as the spec.
    if def.group == "apps" && def.plural == "deployments" && subresource == Some("status") {
        match current.pointer("/metadata/labels") {
            Some(labels) => metadata["labels"] = labels.clone(),
            None => {
                metadata.as_object_mut().map(|metadata| metadata.remove("labels"));
            }
        }
    }
    if def.group.is_empty() && def.plural == "pods" && subresource == Some("status") {
        match current.pointer("/metadata/ownerReferences") {
            Some(owners) => metadata["ownerReferences"] = owners.clone(),
            None => {
                metadata.as_object_mut().map(|metadata| metadata.remove("ownerReferences"));
            }
        }
    }
    Some(metadata)
}

fn spec_changed(current: &Value, updated: &Value) -> bool {
    let strip = |value: &Value| {
        let mut value = value.clone();
        if let Some(map) = value.as_object_mut() {
            map.remove("metadata");
            map.remove("status");
        }
        value
    };
    strip(current) != strip(updated)
}

fn scale_of(def: &ResourceDef, object: &Value, paths: &crate::apiserver::registry::ScalePaths) -> Value {
    let metadata = &object["metadata"];
    let selector = match paths.label_selector.as_deref() {
        Some(path) => match get_path(object, path) {
            Some(Value::String(text)) => text.clone(),
            Some(selector @ Value::Object(_)) => crate::apiserver::admission::selector_string(selector),
            _ => String::new(),
        },
        None => String::new(),
    };
    let mut status = json!({"replicas": get_path(object, &paths.status_replicas).and_then(Value::as_i64).unwrap_or(0)});
    if !selector.is_empty() {
        status["selector"] = json!(selector);
    }
    let _ = def;
    // The object's identity, without the fields it lacks (a cluster-scoped object has no namespace).
    let identity: Map<String, Value> = ["name", "namespace", "uid", "resourceVersion", "creationTimestamp"]
        .into_iter()
        .filter_map(|field| metadata.get(field).map(|value| (field.to_string(), value.clone())))
        .collect();
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": identity,
        "spec": {"replicas": get_path(object, &paths.spec_replicas).and_then(Value::as_i64).unwrap_or(0)},
        "status": status,
    })
}

/// Upstream's lists of built-in kinds carry apiVersion and kind only on the list; custom resources, being maps,
/// keep theirs on every item.
/// Objects a delete collection reads and deletes at a time.
const DELETE_COLLECTION_PAGE: i64 = 500;

/// The items of a list answer, encoded as they come instead of kept as values until the end.
struct EncodedItems {
    bytes: Vec<u8>,
    order: FieldOrder,
}

impl EncodedItems {
    fn new(def: &ResourceDef) -> Self {
        EncodedItems { bytes: Vec::new(), order: FieldOrder::of(def) }
    }

    fn push(&mut self, mut item: Value) {
        remove_type_meta(self.order, &mut item);
        if !self.bytes.is_empty() {
            self.bytes.push(b',');
        }
        crate::apiserver::field_order::write_list_item(&mut self.bytes, &item, self.order);
    }

    /// The list object with these items, encoded exactly as the list written whole as one value would be.
    fn response(self, def: &ResourceDef, metadata: Value) -> Response<Body> {
        json_bytes_response(200, self.into_list(def, metadata), "application/json")
    }

    fn into_list(self, def: &ResourceDef, metadata: Value) -> Vec<u8> {
        let envelope = Value::Object(Map::from_iter([
            ("kind".to_string(), Value::String(def.list_kind())),
            ("apiVersion".to_string(), Value::String(def.api_version())),
            ("metadata".to_string(), metadata),
            ("items".to_string(), Value::Array(Vec::new())),
        ]));
        let mut out = crate::apiserver::field_order::to_json(&envelope, self.order);
        // The items go between the brackets of `"items":[]`. Those bytes occur only as the envelope's key: inside
        // a JSON string a quote is escaped, and the other fields (kind, apiVersion, ListMeta) hold no `items`.
        let marker = b"\"items\":[]";
        let at = out.windows(marker.len()).position(|window| window == marker).expect("the envelope has items")
            + marker.len()
            - 1;
        out.splice(at..at, self.bytes);
        out
    }
}

/// A built-in kind's list items go without TypeMeta, as upstream writes them.
fn remove_type_meta(order: FieldOrder, item: &mut Value) {
    if order == FieldOrder::BuiltIn {
        if let Some(object) = item.as_object_mut() {
            object.remove("kind");
            object.remove("apiVersion");
        }
    }
}

fn object_response(code: u16, object: &Value, order: FieldOrder) -> Response<Body> {
    json_bytes_response(code, crate::apiserver::field_order::to_json(object, order), "application/json")
}

fn get_path<'a>(object: &'a Value, dotted: &str) -> Option<&'a Value> {
    dotted.trim_start_matches('.').split('.').try_fold(object, |value, key| value.get(key))
}

fn set_path(object: &mut Value, dotted: &str, new: Value) {
    let mut value = object;
    let keys: Vec<&str> = dotted.trim_start_matches('.').split('.').collect();
    for key in &keys[..keys.len() - 1] {
        if !value.get(*key).is_some_and(Value::is_object) {
            value[*key] = json!({});
        }
        value = value.get_mut(*key).expect("just inserted");
    }
    value[keys[keys.len() - 1]] = new;
}

/// Sets the status a create (`None`) or a `/status` write leaves, for built-in kinds and custom resources alike.
/// Where there is none, a built-in kind has an empty status (its Go struct always encodes one) and a custom resource
/// has no `status` field at all, as upstream stores them; so a custom resource's required status fields are not
/// checked until a client writes its status.
fn set_status(def: &ResourceDef, object: &mut Value, status: Option<Value>) {
    let Some(map) = object.as_object_mut() else { return };
    match (status, &def.schema) {
        (Some(status), _) => {
            map.insert("status".into(), status);
        }
        (None, SchemaSource::BuiltIn(_)) => {
            map.insert("status".into(), json!({}));
        }
        (None, SchemaSource::CustomResource(_)) => {
            map.remove("status");
        }
    }
}

/// Kinds whose status is the client's to set on create (nodes register with their status; events and the like
/// have none to reset).
fn keeps_status_on_create(def: &ResourceDef) -> bool {
    matches!(
        (def.group.as_str(), def.plural.as_str()),
        ("", "nodes") | ("certificates.k8s.io", "certificatesigningrequests")
    )
}

/// Adds one `Warning: 299 - "TEXT"` header for each warning.
pub(super) fn append_warnings(response: &mut Response<Body>, warnings: &[String]) {
    for warning in warnings {
        if let Ok(value) = http::HeaderValue::from_str(&format!("299 - \"{}\"", warning.replace('"', "\\\""))) {
            response.headers_mut().append("Warning", value);
        }
    }
}

/// Unknown and repeated fields of a body written through a converted version, checked against the served
/// version's schema: conversion drops what the storage form has no place for, so the storage path never sees them.
/// `as_sent` is true when `object` is the request's own body (not a patched object); `applied` marks a server-side
/// apply configuration. Returns the warnings `fieldValidation=Warn` asks for.
pub(super) fn check_served_fields(
    def: &ResourceDef,
    object: &Value,
    request: &ObjectRequest,
    as_sent: bool,
    applied: bool,
) -> ApiResult<Vec<String>> {
    let options = WriteOptions::from_query(&request.query, &request.user_agent)?;
    let applied_as = applied.then(|| {
        let name = object.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
        typed_patch_object(def, request.resource.namespace.as_deref(), name)
    });
    let mut warnings = Vec::new();
    check_unknown_fields(
        def,
        None,
        object,
        as_sent.then_some(request),
        applied_as.as_deref(),
        options.field_validation,
        &mut warnings,
    )?;
    Ok(warnings)
}

/// apiVersion and kind must be absent or name this resource; absent ones are filled in.
pub(super) fn check_type(def: &ResourceDef, object: &mut Value) -> ApiResult<()> {
    let Some(map) = object.as_object_mut() else {
        return Err(ApiError::bad_request("the request body must be a JSON or YAML object"));
    };
    let expected_version = def.api_version();
    match map.get("apiVersion").and_then(Value::as_str) {
        Some(version) if !version.is_empty() && version != expected_version => {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({version}) does not match the expected API version ({expected_version})"
            )));
        }
        _ => {
            map.insert("apiVersion".into(), json!(expected_version));
        }
    }
    match map.get("kind").and_then(Value::as_str) {
        Some(kind) if !kind.is_empty() && kind != def.kind => {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({kind}) does not match the expected kind ({}) of {}",
                def.kind,
                def.group_resource()
            )));
        }
        _ => {
            map.insert("kind".into(), json!(def.kind));
        }
    }
    if !map.get("metadata").is_none_or(Value::is_object) {
        return Err(ApiError::bad_request("metadata must be an object"));
    }
    map.entry("metadata").or_insert_with(|| json!({}));
    Ok(())
}

/// Repeated keys of a JSON or YAML request body (a whole object, or a server-side apply configuration).
fn duplicate_fields(request: &ObjectRequest) -> Vec<String> {
    match request.content_type.split(';').next().unwrap_or("").trim() {
        "" | "application/json" | "*/*" => crate::apiserver::duplicate_fields::in_json(&request.body),
        "application/yaml" | "application/apply-patch+yaml" | "text/yaml" => {
            crate::apiserver::duplicate_fields::in_yaml(&request.body)
        }
        _ => Vec::new(),
    }
}

/// How server-side apply names the object whose configuration it could not type: `(NAMESPACE/NAME; GROUP/VERSION,
/// Kind=KIND)`.
fn typed_patch_object(def: &ResourceDef, namespace: Option<&str>, name: &str) -> String {
    format!("({}/{name}; {}, Kind={})", namespace.unwrap_or_default(), def.api_version(), def.kind)
}

/// Strict field validation: unknown and repeated fields are an error (kubectl's default), Warn adds a warning
/// header for each, Ignore looks for neither (so a body is not walked twice unless asked). Reported as upstream's
/// strict decoder does: unknown ones first, each as `unknown field "PATH"`, then the repeated keys of `as_sent`'s
/// body as `duplicate field "PATH"`. A server-side apply configuration (`applied_as` names
/// its object) is typed against the schema instead, and its unknown fields are reported as structured-merge-diff
/// does: `.PATH: field not declared in schema` (list items by index, where upstream names them by their keys).
fn check_unknown_fields(
    def: &ResourceDef,
    custom: Option<&Value>,
    object: &Value,
    as_sent: Option<&ObjectRequest>,
    applied_as: Option<&str>,
    mode: FieldValidation,
    warnings: &mut Vec<String>,
) -> ApiResult<()> {
    if mode == FieldValidation::Ignore {
        return Ok(());
    }
    let unknown = crate::apiserver::admission::unknown_fields(def, object, custom);
    if let (Some(applied_as), FieldValidation::Strict, false) = (applied_as, mode, unknown.is_empty()) {
        let errors: Vec<String> =
            unknown.iter().map(|field| format!(".{field}: field not declared in schema")).collect();
        let errors = match errors.as_slice() {
            [one] => one.clone(),
            many => format!("errors:\n  {}", many.join("\n  ")),
        };
        return Err(ApiError::bad_request(format!("failed to create typed patch object {applied_as}: {errors}")));
    }
    let problems: Vec<String> = unknown
        .iter()
        .map(|field| format!("unknown field \"{field}\""))
        .chain(
            as_sent
                .map(duplicate_fields)
                .unwrap_or_default()
                .iter()
                .map(|field| format!("duplicate field \"{field}\"")),
        )
        .collect();
    if problems.is_empty() {
        return Ok(());
    }
    match mode {
        FieldValidation::Strict => {
            let details = problems.join(", ");
            Err(ApiError::bad_request(format!(
                "{} in version \"{}\" cannot be handled as a {}: strict decoding error: {details}",
                def.kind,
                def.api_version(),
                def.kind
            )))
        }
        _ => {
            warnings.extend(problems);
            Ok(())
        }
    }
}

fn set_namespace(def: &ResourceDef, namespace: Option<&str>, object: &mut Value) -> ApiResult<()> {
    let metadata = metadata_mut(object)?;
    if def.namespaced {
        let Some(namespace) = namespace else {
            return Err(ApiError::bad_request(format!(
                "{} is namespaced: use a path with /namespaces/<namespace>/",
                def.group_resource()
            )));
        };
        match metadata.get("namespace").and_then(Value::as_str) {
            Some(given) if !given.is_empty() && given != namespace => Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            )),
            _ => {
                metadata.insert("namespace".into(), json!(namespace));
                Ok(())
            }
        }
    } else {
        metadata.remove("namespace");
        Ok(())
    }
}

fn metadata_mut(object: &mut Value) -> ApiResult<&mut Map<String, Value>> {
    let map = object.as_object_mut().ok_or_else(|| ApiError::bad_request("the request body must be an object"))?;
    map.entry("metadata")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .ok_or_else(|| ApiError::bad_request("metadata must be an object"))
}

fn validate_object(def: &ResourceDef, custom: Option<&Value>, object: &Value, old: Option<&Value>) -> ApiResult<()> {
    let errors = crate::apiserver::admission::validate(def, object, old, custom);
    if errors.is_empty() {
        return Ok(());
    }
    let name = object.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("");
    Err(ApiError::invalid(
        &def.kind,
        &def.group,
        name,
        crate::apiserver::admission::invalid_message(def, name, &errors),
        errors,
    ))
}

fn record_managed_fields(
    def: &ResourceDef,
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    subresource: Option<&str>,
) {
    patch::record_update(
        old,
        new,
        manager,
        subresource,
        &def.api_version(),
        &now(),
        &crate::apiserver::admission::facts(def),
    );
}

pub(super) fn decode_object(request: &ObjectRequest) -> ApiResult<Value> {
    decode_body(&request.body, &request.content_type)
}

pub(super) fn decode_patch(request: &ObjectRequest, patch_type: PatchType) -> ApiResult<Value> {
    let media = if patch_type == PatchType::Apply { "application/yaml" } else { "application/json" };
    decode_body(&request.body, media)
}

/// JSON, or YAML for the YAML media types. Duplicate keys and overly deep documents are rejected, not guessed at.
pub(super) fn decode_body(body: &[u8], content_type: &str) -> ApiResult<Value> {
    let media = content_type.split(';').next().unwrap_or("").trim();
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request("the request body is empty; send a JSON or YAML object"));
    }
    match media {
        "" | "application/json" | "*/*" => serde_json::from_slice(body)
            .map_err(|error| ApiError::bad_request(format!("the request body is not valid JSON: {error}"))),
        "application/yaml" | "application/apply-patch+yaml" | "text/yaml" => {
            let value: Value = serde_yaml_ng::from_slice(body)
                .map_err(|error| ApiError::bad_request(format!("the request body is not valid YAML: {error}")))?;
            Ok(value)
        }
        "application/vnd.kubernetes.protobuf" => crate::apiserver::protobuf::decode(body)
            .map_err(|error| ApiError::bad_request(format!("the protobuf request body cannot be decoded: {error}"))),
        _ => Err(ApiError::unsupported_media_type(content_type)),
    }
}

/// Whether every media type an Accept header offers is a Table (no plain JSON to fall back to).
fn accepts_only_tables(accept: &str) -> bool {
    !accept.trim().is_empty() && accept.split(',').all(|part| part.contains("as=Table"))
}

pub(super) fn wants_table(accept: &str) -> bool {
    accept.split(',').next().is_some_and(|first| first.contains("as=Table"))
}

pub(super) fn not_found(def: &ResourceDef, name: &str) -> ApiError {
    ApiError::not_found(&def.group_resource(), &def.group, &def.plural, name)
}

fn not_found_resource() -> ApiError {
    ApiError::new(404, "NotFound", "the server could not find the requested resource")
}

pub(crate) fn string_list(value: Option<&Value>) -> Vec<String> {
    value
        .and_then(Value::as_array)
        .map(|items| items.iter().filter_map(|item| item.as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

/// RFC 3339 in seconds, as Kubernetes writes metav1.Time.
fn is_certificate_request(def: &ResourceDef) -> bool {
    def.group == "certificates.k8s.io" && def.plural == "certificatesigningrequests"
}

/// A CertificateSigningRequest records who asked, from the request's authentication, never from its body.
fn record_requester(object: &mut Value, user: &User) {
    let spec = object.as_object_mut().map(|map| map.entry("spec").or_insert_with(|| json!({})));
    if let Some(Value::Object(spec)) = spec {
        spec.insert("username".into(), json!(user.name));
        spec.insert("groups".into(), json!(user.groups));
        spec.remove("extra");
        if user.uid.is_empty() {
            spec.remove("uid");
        } else {
            spec.insert("uid".into(), json!(user.uid));
        }
    }
}

/// What a node's credentials may change beyond RBAC (upstream's NodeRestriction): only its own Node and its own
/// Lease in kube-node-lease, so one node can never register, update or renew as another.
fn node_restriction(
    user: &User,
    def: &ResourceDef,
    namespace: Option<&str>,
    name: &str,
    method: &Method,
) -> ApiResult<()> {
    let Some(node) = crate::tunnels::node_of(user) else { return Ok(()) };
    if matches!(*method, Method::GET | Method::HEAD) {
        return Ok(());
    }
    let own = match (def.group.as_str(), def.plural.as_str()) {
        ("", "nodes") => name == node,
        ("coordination.k8s.io", "leases") if namespace == Some("kube-node-lease") => name == node,
        _ => return Ok(()),
    };
    if own {
        return Ok(());
    }
    Err(ApiError::new(
        403,
        "Forbidden",
        format!("node {node:?} may not change {} {name:?}: a node may change only its own objects", def.plural),
    ))
}

pub fn now() -> String {
    format_time(jiff::Timestamp::now())
}

pub(crate) fn format_time(timestamp: jiff::Timestamp) -> String {
    timestamp.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Five characters from upstream's alphabet for generateName (no vowels, so no words; no look-alike digits).
fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    (0..5).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char).collect()
}

fn encode_continue(revision: i64, start: &str) -> String {
    let token = json!({"v": "meta.k8s.io/v1", "rv": revision, "start": start});
    base64::engine::general_purpose::URL_SAFE.encode(token.to_string())
}

fn decode_continue(token: &str, prefix: &str) -> ApiResult<(i64, String)> {
    let invalid =
        || ApiError::bad_request("continue key is not valid: start a new list without the continue parameter");
    let bytes = base64::engine::general_purpose::URL_SAFE
        .decode(token)
        .or_else(|_| base64::engine::general_purpose::STANDARD.decode(token))
        .map_err(|_| invalid())?;
    let token: Value = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
    // -1 is the inconsistent continuation an expired list hands out: go on at the latest revision (0 here).
    let revision = match token["rv"].as_i64() {
        Some(-1) => 0,
        Some(revision) if revision > 0 => revision,
        _ => return Err(invalid()),
    };
    let start = token["start"].as_str().ok_or_else(invalid)?;
    if start.contains("..") || start.starts_with('/') {
        return Err(invalid());
    }
    Ok((revision, format!("{prefix}{start}")))
}

/// Service ClusterIPs and NodePorts. A ClusterIP is claimed by creating its networking.k8s.io/v1 IPAddress object
/// (as kube-apiserver 1.33 does), a node port by creating a datastore key; both are create-if-absent writes, so two
/// controllers on one database can never hand out the same address.
pub(crate) struct ServiceAllocator {
    cidr: crate::Ipv4Cidr,
}

impl ApiServer {
    /// A custom resource's additionalPrinterColumns, for its Table.
    pub(super) fn printer_columns(&self, def: &ResourceDef) -> Option<Value> {
        self.registry().definition_of(def).and_then(|crd| crate::apiserver::crd::printer_columns(crd, &def.version))
    }
}

impl ServiceAllocator {
    pub fn new(cidr: crate::Ipv4Cidr) -> ServiceAllocator {
        ServiceAllocator { cidr }
    }
}

const NODE_PORTS: std::ops::RangeInclusive<u16> = 30000..=32767;

impl ApiServer {
    async fn allocate_service(&self, service: &mut Value) -> ApiResult<()> {
        let service_type = service.pointer("/spec/type").and_then(Value::as_str).unwrap_or("ClusterIP").to_string();
        let name = service.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("").to_string();
        let namespace = service.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or("").to_string();
        if service_type != "ExternalName" {
            let requested = service.pointer("/spec/clusterIP").and_then(Value::as_str).unwrap_or("").to_string();
            if requested != "None" {
                let address = if requested.is_empty() {
                    self.claim_free_address(&namespace, &name).await?
                } else {
                    let address: Ipv4Addr = requested.parse().map_err(|_| {
                        invalid_service("spec.clusterIP", &name, &requested, "must be a valid IP address")
                    })?;
                    if !self.services.cidr.contains(address) {
                        return Err(invalid_service(
                            "spec.clusterIP",
                            &name,
                            &requested,
                            &format!(
                                "the provided IP ({requested}) is not in the valid range. The range of valid IPs is {}",
                                self.services.cidr
                            ),
                        ));
                    }
                    if !self.claim_address(address, &namespace, &name).await? {
                        return Err(invalid_service(
                            "spec.clusterIP",
                            &name,
                            &requested,
                            &format!("failed to allocate IP {requested}: provided IP is already allocated"),
                        ));
                    }
                    address
                };
                service["spec"]["clusterIP"] = json!(address.to_string());
                service["spec"]["clusterIPs"] = json!([address.to_string()]);
            } else {
                service["spec"]["clusterIPs"] = json!(["None"]);
            }
        }
        if service_type == "NodePort" || service_type == "LoadBalancer" {
            let ports = service
                .pointer_mut("/spec/ports")
                .and_then(Value::as_array_mut)
                .map(std::mem::take)
                .unwrap_or_default();
            let mut allocated = Vec::new();
            for mut port in ports {
                let requested = port.get("nodePort").and_then(Value::as_u64).unwrap_or(0) as u16;
                let node_port = if requested == 0 {
                    self.claim_free_node_port().await?
                } else if !NODE_PORTS.contains(&requested) {
                    return Err(invalid_service(
                        "spec.ports[].nodePort",
                        &name,
                        &requested.to_string(),
                        "provided port is not in the valid range. The range of valid ports is 30000-32767",
                    ));
                } else if self.claim_node_port(requested).await? {
                    requested
                } else {
                    return Err(invalid_service(
                        "spec.ports[].nodePort",
                        &name,
                        &requested.to_string(),
                        "provided port is already allocated",
                    ));
                };
                port["nodePort"] = json!(node_port);
                allocated.push(port);
            }
            service["spec"]["ports"] = Value::Array(allocated);
        }
        Ok(())
    }

    async fn claim_free_address(&self, namespace: &str, name: &str) -> ApiResult<Ipv4Addr> {
        let size = self.services.cidr.size();
        // Random probing, as upstream: the first addresses are kept for the kubernetes and DNS services.
        for _attempt in 0..64 {
            let offset = rand::rng().random_range(11..size.saturating_sub(1).max(12));
            let address = self.services.cidr.nth(offset);
            if self.claim_address(address, namespace, name).await? {
                return Ok(address);
            }
        }
        for offset in 11..size.saturating_sub(1) {
            let address = self.services.cidr.nth(offset);
            if self.claim_address(address, namespace, name).await? {
                return Ok(address);
            }
        }
        Err(ApiError::internal(format!("failed to allocate a serviceIP: range is full ({})", self.services.cidr)))
    }

    /// Claims `address` for a service by creating its IPAddress object; false if another service has it.
    pub(crate) async fn claim_address(&self, address: Ipv4Addr, namespace: &str, name: &str) -> ApiResult<bool> {
        let registry = self.registry();
        let def = registry.get("networking.k8s.io", "v1", "ipaddresses").cloned().expect("ipaddresses are built in");
        let object = json!({
            "apiVersion": "networking.k8s.io/v1",
            "kind": "IPAddress",
            "metadata": {
                "name": address.to_string(),
                "uid": uuid::Uuid::new_v4().to_string(),
                "creationTimestamp": now(),
                "labels": {"ipaddress.kubernetes.io/ip-family": "IPv4", "ipaddress.kubernetes.io/managed-by": "ipallocator.k8s.io"},
            },
            "spec": {"parentRef": {"group": "", "resource": "services", "namespace": namespace, "name": name}},
        });
        Ok(matches!(
            self.store.create(&ObjectStore::key(&def, None, &address.to_string()), &object).await?,
            Written::Ok(_)
        ))
    }

    async fn claim_free_node_port(&self) -> ApiResult<u16> {
        for _attempt in 0..64 {
            let port = rand::rng().random_range(NODE_PORTS);
            if self.claim_node_port(port).await? {
                return Ok(port);
            }
        }
        for port in NODE_PORTS {
            if self.claim_node_port(port).await? {
                return Ok(port);
            }
        }
        Err(ApiError::internal("failed to allocate a nodePort: range is full"))
    }

    async fn claim_node_port(&self, port: u16) -> ApiResult<bool> {
        Ok(matches!(self.store.create(&node_port_key(port), &json!({"metadata": {}})).await?, Written::Ok(_)))
    }

    async fn release_service(&self, service: &Value) {
        let registry = self.registry();
        let def = registry.get("networking.k8s.io", "v1", "ipaddresses").cloned().expect("ipaddresses are built in");
        for address in string_list(service.pointer("/spec/clusterIPs")) {
            if address == "None" {
                continue;
            }
            let key = ObjectStore::key(&def, None, &address);
            if let Ok(Some(stored)) = self.store.get(&key, true).await {
                let _ = self.store.delete(&key, stored.revision).await;
            }
        }
        for port in service.pointer("/spec/ports").and_then(Value::as_array).into_iter().flatten() {
            if let Some(node_port) = port.get("nodePort").and_then(Value::as_u64) {
                let key = node_port_key(node_port as u16);
                if let Ok(Some(stored)) = self.store.get(&key, true).await {
                    let _ = self.store.delete(&key, stored.revision).await;
                }
            }
        }
    }
}

fn node_port_key(port: u16) -> String {
    format!("/registry/kaasd/nodeports/{port}")
}

fn invalid_service(field: &str, name: &str, value: &str, detail: &str) -> ApiError {
    let message = format!("Invalid value: \"{value}\": {detail}");
    ApiError::invalid(
        "Service",
        "",
        name,
        format!("Service \"{name}\" is invalid: {field}: {message}"),
        vec![Cause { reason: "FieldValueInvalid".into(), message, field: field.into() }],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continue_tokens_round_trip_and_reject_tampering() {
        let token = encode_continue(42, "default/web\u{0}");
        let (revision, start) = decode_continue(&token, "/registry/core/pods/").unwrap();
        assert_eq!((revision, start.as_str()), (42, "/registry/core/pods/default/web\u{0}"));
        assert!(decode_continue("not base64!", "/p/").is_err());
        let escaping = base64::engine::general_purpose::URL_SAFE.encode(r#"{"rv":1,"start":"../secrets/x"}"#);
        assert!(decode_continue(&escaping, "/p/").is_err());
    }

    #[test]
    fn items_encoded_one_by_one_make_the_list_encoded_whole() {
        let mut def =
            crate::apiserver::registry::built_in_resources().into_iter().find(|def| def.kind == "Pod").unwrap();
        let items = [
            json!({"apiVersion": "v1", "kind": "Pod", "spec": {"b": 1, "a": "<&>"}, "metadata": {"uid": "u1", "name": "items\":[]"}}),
            json!({"kind": "Pod", "apiVersion": "v1", "metadata": {"name": "b", "labels": {"items": "[]"}}, "status": {}}),
        ];
        let metadata = json!({"resourceVersion": "7", "continue": "abc", "remainingItemCount": 3});
        for custom in [false, true] {
            if custom {
                def.schema = SchemaSource::CustomResource("widgets.example.com".into());
            }
            for count in 0..=items.len() {
                let mut encoded = EncodedItems::new(&def);
                let mut whole = Vec::new();
                for item in &items[..count] {
                    encoded.push(item.clone());
                    let mut item = item.clone();
                    remove_type_meta(FieldOrder::of(&def), &mut item);
                    whole.push(item);
                }
                let list = json!({"kind": def.list_kind(), "apiVersion": def.api_version(), "metadata": metadata, "items": whole});
                assert_eq!(
                    String::from_utf8(encoded.into_list(&def, metadata.clone())).unwrap(),
                    String::from_utf8(crate::apiserver::field_order::to_json(&list, FieldOrder::of(&def))).unwrap()
                );
            }
        }
    }

    #[test]
    fn generation_moves_only_with_the_spec() {
        let def =
            crate::apiserver::registry::built_in_resources().into_iter().find(|def| def.kind == "Deployment").unwrap();
        let current = json!({"metadata": {"name": "web", "namespace": "default", "generation": 1, "uid": "u"}, "spec": {"replicas": 1}, "status": {"replicas": 1}});
        let relabelled = json!({"metadata": {"name": "web", "labels": {"a": "b"}}, "spec": {"replicas": 1}});
        let updated = prepare_update(&def, &current, relabelled, None, Some("default"), "web").unwrap();
        assert_eq!(updated["metadata"]["generation"], 1);
        assert_eq!(updated["status"]["replicas"], 1, "status is kept by the main resource");
        let scaled = json!({"metadata": {"name": "web"}, "spec": {"replicas": 3}, "status": {"replicas": 9}});
        let updated = prepare_update(&def, &current, scaled, None, Some("default"), "web").unwrap();
        assert_eq!(
            (updated["metadata"]["generation"].clone(), updated["status"]["replicas"].clone()),
            (json!(2), json!(1))
        );
        let status = json!({"metadata": {"name": "web"}, "spec": {"replicas": 7}, "status": {"replicas": 3}});
        let updated = prepare_update(&def, &current, status, Some("status"), Some("default"), "web").unwrap();
        assert_eq!((updated["spec"]["replicas"].clone(), updated["status"]["replicas"].clone()), (json!(1), json!(3)));
    }

    #[test]
    fn a_custom_resource_has_no_status_until_one_is_written_to_it() {
        let mut def =
            crate::apiserver::registry::built_in_resources().into_iter().find(|def| def.kind == "Deployment").unwrap();
        def.schema = SchemaSource::CustomResource("widgets.example.com".into());
        let mut created = json!({"metadata": {"name": "w"}, "spec": {"replicas": 1}, "status": null});
        set_status(&def, &mut created, None);
        assert_eq!(created.get("status"), None);
        let current = json!({"metadata": {"name": "w", "generation": 1, "uid": "u"}, "spec": {"replicas": 1}});
        let main = json!({"metadata": {"name": "w"}, "spec": {"replicas": 2}, "status": {"phase": "Made up"}});
        let updated = prepare_update(&def, &current, main, None, Some("default"), "w").unwrap();
        assert_eq!((updated.get("status"), &updated["spec"]["replicas"]), (None, &json!(2)));
        let status = json!({"metadata": {"name": "w"}, "spec": {"replicas": 5}, "status": {"phase": "Running"}});
        let updated = prepare_update(&def, &current, status, Some("status"), Some("default"), "w").unwrap();
        assert_eq!((&updated["status"], &updated["spec"]["replicas"]), (&json!({"phase": "Running"}), &json!(1)));
        let cleared = json!({"metadata": {"name": "w"}, "spec": {"replicas": 1}});
        let updated = prepare_update(&def, &updated, cleared, Some("status"), Some("default"), "w").unwrap();
        assert_eq!(updated.get("status"), None, "a status write without a status removes it");

        let built_in =
            crate::apiserver::registry::built_in_resources().into_iter().find(|def| def.kind == "Deployment").unwrap();
        let mut created = json!({"metadata": {"name": "w"}, "spec": {}, "status": {"replicas": 3}});
        set_status(&built_in, &mut created, None);
        assert_eq!(created["status"], json!({}), "a built-in kind's status is an empty struct");
    }

    #[test]
    fn bodies_decode_and_bad_ones_are_400() {
        assert_eq!(decode_body(b"a: 1\nb: [x]", "application/yaml").unwrap(), json!({"a": 1, "b": ["x"]}));
        assert_eq!(decode_body(b"{", "application/json").unwrap_err().code, 400);
        assert_eq!(decode_body(b"{}", "application/xml").unwrap_err().code, 415);
        let deep = "[".repeat(10_000) + &"]".repeat(10_000);
        assert_eq!(decode_body(deep.as_bytes(), "application/json").unwrap_err().code, 400);
    }
}
