//! `ro-p2p-bot`: a headless Ragnarok Online client. Logs in (registering the account if
//! needed), selects or makes a character, enters the map, runs a script of JSON-lines actions
//! and prints JSON lines: one per step and one per packet the map server sent.
//!
//! ```text
//! ro-p2p-bot --login 127.0.0.1:6900 --user alice --password pass1234 --packetver 20211103 --script walk.jsonl
//! {"walk":{"x":159,"y":188}}
//! {"chat":{"text":"hello"}}
//! {"wait_for":{"id":"0x008e","timeout_ms":5000}}
//! ```

use std::io::BufRead;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use ro_p2p_core::gate::Sex;
use ro_p2p_rathena::{Bot, BotError};
use serde::Deserialize;
use serde_json::json;

#[derive(Parser)]
#[command(version, about = "A headless Ragnarok Online client for rAthena")]
struct Cli {
    /// The login server (or a proxy in front of it).
    #[arg(long)]
    login: SocketAddr,
    /// Account name (registered with the _M/_F suffix if it does not exist).
    #[arg(long)]
    user: String,
    /// Password (at least 4 characters for registration).
    #[arg(long)]
    password: String,
    /// PACKETVER of the server: 20211103 or 20151104.
    #[arg(long, default_value_t = 20211103)]
    packetver: u32,
    /// Sex of a new account: M or F.
    #[arg(long, default_value = "M")]
    sex: String,
    /// Character name [default: the user name].
    #[arg(long = "char")]
    char_name: Option<String>,
    /// JSON-lines actions ("-" reads stdin); without it the bot enters the map and leaves.
    #[arg(long)]
    script: Option<PathBuf>,
    /// How long to keep listening after the last action, in ms.
    #[arg(long, default_value_t = 1000)]
    linger_ms: u64,
}

/// One action of a script line.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum Action {
    Walk {
        x: u16,
        y: u16,
    },
    Turn {
        head: u8,
        dir: u8,
    },
    Chat {
        text: String,
    },
    Command {
        text: String,
    },
    Emote {
        kind: u8,
    },
    NpcClick {
        npc_id: u32,
    },
    NpcNext {
        npc_id: u32,
    },
    NpcMenu {
        npc_id: u32,
        choice: u8,
    },
    NpcClose {
        npc_id: u32,
    },
    /// A whole client packet in hex, plain id first.
    Raw {
        hex: String,
    },
    /// Waits for a packet with this id (hex) from the server.
    WaitFor {
        id: String,
        timeout_ms: u64,
    },
    /// Waits this long.
    Sleep {
        ms: u64,
    },
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

fn parse_id(s: &str) -> Option<u16> {
    u16::from_str_radix(s.trim_start_matches("0x").trim_start_matches("0X"), 16).ok()
}

fn print_new(bot: &Bot, printed: &mut usize) {
    for p in bot.received_since(*printed) {
        println!(
            "{}",
            json!({"event": "packet", "t_ms": p.t_ms, "id": format!("0x{:04x}", p.id), "len": p.bytes.len(), "hex": hex(&p.bytes)})
        );
    }
    *printed = bot.mark();
}

async fn act(bot: &mut Bot, action: Action) -> Result<(), String> {
    let r: Result<(), BotError> = match action {
        Action::Walk { x, y } => bot.walk_to(x, y).await,
        Action::Turn { head, dir } => bot.turn(head, dir).await,
        Action::Chat { text } => bot.chat(&text).await,
        Action::Command { text } => bot.command(&text).await,
        Action::Emote { kind } => bot.emote(kind).await,
        Action::NpcClick { npc_id } => bot.npc_click(npc_id).await,
        Action::NpcNext { npc_id } => bot.npc_next(npc_id).await,
        Action::NpcMenu { npc_id, choice } => bot.npc_menu(npc_id, choice).await,
        Action::NpcClose { npc_id } => bot.npc_close(npc_id).await,
        Action::Raw { hex } => match unhex(&hex) {
            Some(bytes) => bot.send_raw(&bytes).await,
            None => return Err(format!("bad hex {hex:?}")),
        },
        Action::WaitFor { id, timeout_ms } => {
            let Some(id) = parse_id(&id) else { return Err(format!("bad id {id:?}")) };
            bot.wait_for(|p| p.id == id, Duration::from_millis(timeout_ms)).await.map(|_| ())
        }
        Action::Sleep { ms } => {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok(())
        }
    };
    r.map_err(|e| e.to_string())
}

async fn run(cli: Cli) -> Result<(), String> {
    let sex = if cli.sex.eq_ignore_ascii_case("f") { Sex::Female } else { Sex::Male };
    let mut bot = Bot::connect_login(cli.login, &cli.user, &cli.password, sex, cli.packetver)
        .await
        .map_err(|e| e.to_string())?;
    println!(
        "{}",
        json!({"event": "login", "account_id": bot.account_id(), "web_auth_token": bot.web_auth_token()})
    );
    let name = cli.char_name.clone().unwrap_or_else(|| cli.user.clone());
    let c = bot.select_or_create_char(&name).await.map_err(|e| e.to_string())?;
    let zone = bot.zone().cloned();
    println!(
        "{}",
        json!({"event": "char", "char_id": c.char_id, "name": c.name, "slot": c.slot, "map_server": zone.map(|z| format!("{}:{}", z.ip, z.port))})
    );
    let (x, y) = bot.enter_map().await.map_err(|e| e.to_string())?;
    println!("{}", json!({"event": "map", "map": bot.map_name(), "x": x, "y": y}));
    let mut printed = 0;
    print_new(&bot, &mut printed);
    if let Some(path) = &cli.script {
        let reader: Box<dyn BufRead> = if path.as_os_str() == "-" {
            Box::new(std::io::stdin().lock())
        } else {
            Box::new(std::io::BufReader::new(
                std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?,
            ))
        };
        for (n, line) in reader.lines().enumerate() {
            let line = line.map_err(|e| e.to_string())?;
            if line.trim().is_empty() || line.trim_start().starts_with("//") {
                continue;
            }
            let action: Action =
                serde_json::from_str(&line).map_err(|e| format!("script line {}: {e}", n + 1))?;
            act(&mut bot, action).await.map_err(|e| format!("script line {}: {e}", n + 1))?;
            println!("{}", json!({"event": "done", "line": n + 1}));
            print_new(&bot, &mut printed);
        }
    }
    tokio::time::sleep(Duration::from_millis(cli.linger_ms)).await;
    print_new(&bot, &mut printed);
    if bot.is_closed() {
        return Err("the map server closed the connection".into());
    }
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            println!("{}", json!({"event": "error", "error": e}));
            ExitCode::FAILURE
        }
    }
}
