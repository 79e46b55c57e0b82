//! `ro-p2p-bot`: a headless Ragnarok Online client (work in progress).

fn main() {}
