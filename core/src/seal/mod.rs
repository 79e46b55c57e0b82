//! `seal`: see the module of this name in the design (docs/architecture.md).
