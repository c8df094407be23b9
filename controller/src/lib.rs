//! The Kubernetes API server and its controllers.
//!
//! See docs/ARCHITECTURE.md for the data flow. In short: an HTTPS request is authenticated, authorized, decoded and
//! routed by its path to a [`registry::ResourceDef`]; objects are JSON values stored in the datastore under
//! `/registry/<group>/<resource>/<namespace>/<name>`, with the key's revision as `metadata.resourceVersion`.

pub mod defaults;
pub mod registry;
pub mod schema;
pub mod validation;
