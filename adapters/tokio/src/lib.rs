//! `ro-p2p-tokio`: tokio adapters of ro-p2p (coordinator server, client driver, tools).
