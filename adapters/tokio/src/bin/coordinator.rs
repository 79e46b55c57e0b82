//! `ro-p2p-coordinator`: the signaling coordinator (see docs/operating.md).

fn main() {
    eprintln!("ro-p2p-coordinator: the server is not built yet (issue 5)");
    std::process::exit(2);
}
