//! The Kubernetes API server and its controllers. Built by the API-server work; see docs/ARCHITECTURE.md.
