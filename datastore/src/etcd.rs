//! The etcd v3 gRPC API on top of [`crate::Store`].
