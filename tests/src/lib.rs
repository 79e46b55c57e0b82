//! `ro-p2p-tests`: cross-crate tests live in `tests/tests/`.
