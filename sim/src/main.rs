//! `ro-p2p-sim`: runs simulation seeds (see docs/simulation.md).

fn main() {
    eprintln!("ro-p2p-sim: the simulation is not built yet (issue 6)");
    std::process::exit(2);
}
