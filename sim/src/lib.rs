//! `ro-p2p-sim`: deterministic simulation of ro-p2p under turmoil.
