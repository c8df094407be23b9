//! Node identity and connectivity (PKI, join tokens, the reverse tunnel). Built by the join-and-tunnel work; see docs/ARCHITECTURE.md.
