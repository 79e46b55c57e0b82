//! `ro-p2p-ffi`: the C ABI of ro-p2p.
