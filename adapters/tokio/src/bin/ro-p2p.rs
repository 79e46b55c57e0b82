//! `ro-p2p`: operator tools (`classify`).

fn main() {
    eprintln!("ro-p2p: no subcommands yet (issue 3)");
    std::process::exit(2);
}
