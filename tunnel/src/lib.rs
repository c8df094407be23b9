//! Node identity and connectivity: the cluster's PKI (CA, serving and client certificates, kubeconfigs) and the
//! TLS configurations built from it. Join tokens and the reverse tunnel come with the join-and-tunnel work.
//! Knows nothing of Kubernetes objects.

pub mod pki;
pub mod tls;
pub mod token;
