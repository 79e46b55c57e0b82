//! `ro-p2p-rathena start|stop|status --dir DIR`: a real rAthena (MariaDB, login, char and map
//! servers) on free local ports, for trying ro-p2p by hand; `ro-p2p-rathena build --packetver N`
//! prepares (unpacks or builds) the servers for a PACKETVER without starting them. `start` leaves the processes running
//! and writes `DIR/harness.json` (ports, PIDs, logs); `stop` stops them by PID.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use ro_p2p_rathena::harness::{self, Harness, HarnessConfig, HarnessState, RathenaSource};

#[derive(Parser)]
#[command(version, about = "Start, stop and inspect a local rAthena for ro-p2p's tests")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Start MariaDB and the three servers; print their ports as JSON.
    Start {
        /// The instance's directory (created).
        #[arg(long)]
        dir: PathBuf,
        /// PACKETVER: 20211103 or 20151104 with the shared binaries.
        #[arg(long, default_value_t = 20211103)]
        packetver: u32,
        /// Load every map and NPC script (slow, ~450 MB) instead of fast mode.
        #[arg(long)]
        full: bool,
        /// An extra NPC script to load (repeatable).
        #[arg(long = "npc")]
        npc_scripts: Vec<PathBuf>,
        /// The shared directory with the rAthena tarballs [default: ../shared/rathena].
        #[arg(long)]
        shared: Option<PathBuf>,
        /// Build rAthena from this source tree instead of using the shared binaries.
        #[arg(long, conflicts_with = "shared")]
        source_tree: Option<PathBuf>,
    },
    /// Prepare the servers for a PACKETVER without starting them: unpack the shared binaries,
    /// or build them from the shared source where there are none (cached under
    /// `target/rathena/`; a test that needs them waits for a build in progress). Prints the
    /// tree and the time taken.
    Build {
        /// PACKETVER.
        #[arg(long)]
        packetver: u32,
        /// The shared directory with the rAthena tarballs [default: ../shared/rathena].
        #[arg(long)]
        shared: Option<PathBuf>,
    },
    /// Stop what `start` started in DIR.
    Stop {
        /// The instance's directory.
        #[arg(long)]
        dir: PathBuf,
    },
    /// Say which of the processes started in DIR are running.
    Status {
        /// The instance's directory.
        #[arg(long)]
        dir: PathBuf,
    },
}

fn state_file(dir: &std::path::Path) -> PathBuf {
    dir.join("harness.json")
}

fn read_state(dir: &std::path::Path) -> Result<HarnessState, String> {
    let path = state_file(dir);
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Start { dir, packetver, full, npc_scripts, shared, source_tree } => {
            let mut config = HarnessConfig::new(packetver);
            config.work_dir = dir.clone();
            config.fast = !full;
            config.npc_scripts = npc_scripts;
            if let Some(tree) = source_tree {
                config.source = RathenaSource::BuildFrom(tree);
            } else if let Some(shared) = shared {
                config.source = RathenaSource::Shared(shared);
            }
            match Harness::start(config) {
                Ok(h) => {
                    let secs = h.start_duration().as_secs_f64();
                    let state = h.detach();
                    let json = serde_json::to_string_pretty(&state).unwrap_or_default();
                    match std::fs::write(state_file(&dir), &json) {
                        Ok(()) => {
                            println!("{json}");
                            eprintln!(
                                "ready in {secs:.1} s; stop with: ro-p2p-rathena stop --dir {}",
                                dir.display()
                            );
                            Ok(())
                        }
                        Err(e) => {
                            harness::stop_state(&state);
                            Err(format!("write state: {e}"))
                        }
                    }
                }
                Err(e) => Err(e.to_string()),
            }
        }
        Cmd::Build { packetver, shared } => {
            let mut config = HarnessConfig::new(packetver);
            if let Some(shared) = shared {
                config.source = RathenaSource::Shared(shared);
            }
            let started = std::time::Instant::now();
            harness::prepare(&config).map_err(|e| e.to_string()).map(|tree| {
                println!("{}", tree.display());
                eprintln!("ready in {:.1} s", started.elapsed().as_secs_f64());
            })
        }
        Cmd::Stop { dir } => read_state(&dir).map(|state| {
            harness::stop_state(&state);
            println!("stopped");
        }),
        Cmd::Status { dir } => read_state(&dir).map(|state| {
            for (server, pid) in &state.pids {
                let up = if harness::pid_alive(*pid) { "up" } else { "down" };
                println!("{server} {up} pid {pid}");
            }
            println!(
                "login 127.0.0.1:{} char 127.0.0.1:{} map 127.0.0.1:{} db {}",
                state.ports.login, state.ports.char, state.ports.map, state.db_url
            );
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
