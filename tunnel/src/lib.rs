//! Node identity and connectivity: the cluster's PKI (CA, serving and client certificates, kubeconfigs) and the
//! TLS configurations built from it, and the reverse tunnel: a worker's agent dials out to the controller and
//! serves HTTP/2 `CONNECT` streams on that connection ([`agent`]), which the controller opens per proxied TCP
//! connection ([`session`]); join tokens ([`token`]); and sealing the cluster secrets for storage ([`sealed`]).
//! Knows nothing of Kubernetes objects.

pub mod agent;
pub mod pki;
pub mod sealed;
pub mod session;
pub mod tls;
pub mod token;
