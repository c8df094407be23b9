//! Reading a custom resource in the version asked for. Every served version of a CustomResourceDefinition shares
//! one storage key, and an object keeps the apiVersion it was written with; a reader of another version gets it
//! converted:
//! - strategy `None`: only `apiVersion` is rewritten;
//! - strategy `Webhook`: the CRD's conversion webhook converts it, through a `ConversionReview`
//!   (apiextensions.k8s.io/v1, or v1beta1 when that is all the CRD accepts). A list page or a watch event goes as one
//!   review holding every object that needs converting, whatever versions they are in.
//!
//! Either way the version's schema defaults are applied to what is read, as upstream defaults objects it decodes
//! from storage. Upstream converts objects to the storage version when it writes them instead; a client sees the same objects
//! either way, since every read is converted to the version it asks for. As upstream, a webhook may change
//! only the labels and annotations of an object's metadata: the rest is kept from the object sent.

use std::time::Duration;

use serde_json::{json, Map, Value};

use crate::apiserver::admission_webhooks::config::{parse_endpoint, tls_config};
use crate::apiserver::error::{ApiError, ApiResult};
use crate::apiserver::registry::{ResourceDef, SchemaSource};
use crate::apiserver::ApiServer;

/// Upstream's fixed timeout for a conversion webhook call.
const TIMEOUT: Duration = Duration::from_secs(30);

/// The ConversionReview versions kaasd speaks, preferred first.
const REVIEW_VERSIONS: [&str; 2] = ["v1", "v1beta1"];

impl ApiServer {
    /// Puts `objects` (as stored) into `def`'s version; see the module comment. A webhook that fails, or answers
    /// with something other than the objects it was sent in the version asked for, is a 500 naming the webhook.
    pub(super) async fn in_served_version(&self, def: &ResourceDef, mut objects: Vec<&mut Value>) -> ApiResult<()> {
        if !matches!(def.schema, SchemaSource::CustomResource(_)) {
            return Ok(());
        }
        let desired = def.api_version();
        let webhook = self.conversion_webhook(def);
        let pending: Vec<usize> =
            (0..objects.len()).filter(|i| objects[*i]["apiVersion"].as_str() != Some(desired.as_str())).collect();
        if let (Some(webhook), false) = (webhook, pending.is_empty()) {
            let sent: Vec<Value> = pending.iter().map(|i| objects[*i].clone()).collect();
            let converted = self.convert_by_webhook(&webhook, &desired, &sent).await.map_err(|reason| {
                let from = sent[0]["apiVersion"].as_str().unwrap_or_default();
                ApiError::internal(format!("conversion webhook for {from}, Kind={} failed: {reason}", def.kind))
            })?;
            for (i, converted) in pending.into_iter().zip(converted) {
                *objects[i] = converted;
            }
        }
        let schema = crate::apiserver::admission::custom_schema(&self.registry(), def);
        for object in objects {
            served_form(def, schema.as_ref(), object);
        }
        Ok(())
    }

    /// `spec.conversion.webhook` of the CRD behind `def`, when its strategy is Webhook.
    pub(super) fn conversion_webhook(&self, def: &ResourceDef) -> Option<Value> {
        if !matches!(def.schema, SchemaSource::CustomResource(_)) {
            return None;
        }
        let registry = self.registry();
        let conversion = registry.definition_of(def)?.pointer("/spec/conversion")?;
        (conversion["strategy"] == "Webhook").then(|| conversion.get("webhook").cloned().unwrap_or(Value::Null))
    }

    /// One ConversionReview round trip: the converted objects, checked against those sent.
    async fn convert_by_webhook(
        &self,
        webhook: &Value,
        desired: &str,
        objects: &[Value],
    ) -> Result<Vec<Value>, String> {
        let client_config = &webhook["clientConfig"];
        let endpoint = parse_endpoint(client_config)?;
        let tls = tls_config(client_config)?;
        let accepted = crate::apiserver::objects::string_list(webhook.get("conversionReviewVersions"));
        let version = REVIEW_VERSIONS
            .iter()
            .find(|known| accepted.iter().any(|version| version == *known))
            .ok_or_else(|| format!("none of the conversionReviewVersions {accepted:?} is supported (v1, v1beta1)"))?;
        let uid = uuid::Uuid::new_v4().to_string();
        let review = json!({
            "apiVersion": format!("apiextensions.k8s.io/{version}"),
            "kind": "ConversionReview",
            "request": {"uid": uid, "desiredAPIVersion": desired, "objects": objects},
        });
        let body = serde_json::to_vec(&review).map_err(|error| error.to_string())?;
        let answer = self.post_to_webhook(&endpoint, tls, TIMEOUT, body).await?;
        let answer: Value = serde_json::from_slice(&answer)
            .map_err(|error| format!("the answer is not a ConversionReview: {error}"))?;
        checked_answer(&answer, &uid, desired, objects)
    }
}

/// A custom resource as read in `def`'s version, without a conversion webhook: with strategy None it differs from
/// the stored object only in `apiVersion`. The version's schema defaults (`schema`) are applied too, so that a
/// default added to the CRD after an object was stored shows when it is read, as upstream defaults on read. Does
/// nothing to built-in kinds, which are stored in their served version.
pub(super) fn served_form(def: &ResourceDef, schema: Option<&Value>, object: &mut Value) {
    if !matches!(def.schema, SchemaSource::CustomResource(_)) {
        return;
    }
    if let Some(map) = object.as_object_mut() {
        map.insert("apiVersion".into(), Value::String(def.api_version()));
    }
    if let Some(schema) = schema {
        crate::apiserver::crd::apply_defaults(schema, object);
    }
}

/// The converted objects of a ConversionReview answer, as upstream checks them: a successful result for this
/// request, one object per object sent, each in the desired version and of the same kind; metadata other than
/// labels and annotations restored from the object sent.
fn checked_answer(answer: &Value, uid: &str, desired: &str, sent: &[Value]) -> Result<Vec<Value>, String> {
    let response = answer.get("response").ok_or("the ConversionReview has no response")?;
    if response["uid"].as_str() != Some(uid) {
        return Err(format!("expected response.uid={uid:?}, got {:?}", response["uid"].as_str().unwrap_or_default()));
    }
    if response.pointer("/result/status").and_then(Value::as_str) != Some("Success") {
        let message = response.pointer("/result/message").and_then(Value::as_str).unwrap_or("no message");
        return Err(format!("conversion request failed: {message}"));
    }
    let converted = response["convertedObjects"].as_array().ok_or("the response has no convertedObjects")?;
    if converted.len() != sent.len() {
        return Err(format!("expected {} converted objects, got {}", sent.len(), converted.len()));
    }
    converted
        .iter()
        .zip(sent)
        .map(|(object, original)| {
            if object["apiVersion"].as_str() != Some(desired) {
                return Err(format!(
                    "invalid converted object: expected apiVersion {desired:?}, got {:?}",
                    object["apiVersion"].as_str().unwrap_or_default()
                ));
            }
            if object["kind"] != original["kind"] {
                return Err(format!(
                    "invalid converted object: expected kind {}, got {}",
                    original["kind"], object["kind"]
                ));
            }
            let mut object = object.clone();
            let mut metadata = original.get("metadata").and_then(Value::as_object).cloned().unwrap_or_default();
            let returned: Map<String, Value> =
                object.get("metadata").and_then(Value::as_object).cloned().unwrap_or_default();
            for field in ["labels", "annotations"] {
                match returned.get(field) {
                    Some(value) => metadata.insert(field.into(), value.clone()),
                    None => metadata.remove(field),
                };
            }
            object["metadata"] = Value::Object(metadata);
            Ok(object)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn review_answer(uid: &str, objects: Value) -> Value {
        json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "ConversionReview",
               "response": {"uid": uid, "convertedObjects": objects, "result": {"status": "Success"}}})
    }

    #[test]
    fn answers_are_checked_and_keep_the_metadata_sent() {
        let sent = [json!({"apiVersion": "example.com/v1", "kind": "Widget",
            "metadata": {"name": "w", "uid": "u-1", "resourceVersion": "7", "labels": {"a": "1"}}, "hostPort": "h:1"})];
        let converted = json!([{"apiVersion": "example.com/v2", "kind": "Widget",
            "metadata": {"name": "renamed", "labels": {"a": "2"}}, "host": "h", "port": "1"}]);
        let objects = checked_answer(&review_answer("id", converted), "id", "example.com/v2", &sent).unwrap();
        assert_eq!(
            objects[0]["metadata"],
            json!({"name": "w", "uid": "u-1", "resourceVersion": "7", "labels": {"a": "2"}})
        );
        assert_eq!(objects[0]["host"], "h");

        let wrong_version = json!([{"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {}}]);
        let error = checked_answer(&review_answer("id", wrong_version), "id", "example.com/v2", &sent).unwrap_err();
        assert!(error.contains("expected apiVersion \"example.com/v2\""), "{error}");
        let error = checked_answer(&review_answer("other", json!([])), "id", "example.com/v2", &sent).unwrap_err();
        assert!(error.contains("response.uid"), "{error}");
        let failed = json!({"response": {"uid": "id", "result": {"status": "Failure", "message": "no way"}}});
        let error = checked_answer(&failed, "id", "example.com/v2", &sent).unwrap_err();
        assert_eq!(error, "conversion request failed: no way");
    }
}
