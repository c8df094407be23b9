//! The node agent. Built by the worker work; see docs/ARCHITECTURE.md.
