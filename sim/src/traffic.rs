//! Game traffic: what a simulated player does, as the real packets of the seed's PACKETVER.
//!
//! Each [`Action`] is built into the plain (not yet obfuscated) bytes the game client would
//! send, with the sim's own ground truth beside it: whether rAthena's rules allow peers to see
//! it and, if so, the [`PeerEvent`] encoding a peer must receive. The checkers compare what
//! actually happened against this truth, which is written independently of the classifier.

use ro_p2p_core::Rng;
use ro_p2p_core::packet::{PacketLen, PacketSpec, PacketVersion, PeerEvent};

/// One thing a player does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Walk to a cell.
    Walk {
        /// Destination x.
        x: u16,
        /// Destination y.
        y: u16,
    },
    /// Turn head and body.
    Turn {
        /// Head direction 0..=2.
        head_dir: u8,
        /// Body direction 0..=7.
        dir: u8,
    },
    /// Public chat (may be an `@`/`#` command).
    Chat {
        /// The message part (after `"Name : "`).
        message: String,
    },
    /// A whisper (to a player or to an `NPC:` name).
    Whisper {
        /// The recipient name.
        to: String,
        /// The message.
        message: String,
    },
    /// An emote (dice and mute included).
    Emote {
        /// rAthena's `emotion_type`.
        kind: u8,
    },
    /// Click an NPC.
    NpcTalk,
    /// Use an item.
    UseItem,
    /// Use a skill on a target.
    UseSkill,
}

/// A built packet and its ground truth.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Built {
    /// The plain packet (id not obfuscated).
    pub plain: Vec<u8>,
    /// A short label for traces (`walk`, `chat-command`, `npc`, ...).
    pub label: &'static str,
    /// The peer event encoding peers may receive, or `None` when the packet is server-only by
    /// rAthena's rules (npc, item, skill, whisper, commands, dice/mute emotes).
    pub peer_payload: Option<Vec<u8>>,
}

/// The packet ids one client uses for each action at one version.
#[derive(Clone, Debug)]
pub struct Vocabulary {
    version: PacketVersion,
    walk: &'static PacketSpec,
    turn: &'static PacketSpec,
    chat: &'static PacketSpec,
    whisper: &'static PacketSpec,
    emote: &'static PacketSpec,
    npc: &'static PacketSpec,
    item: &'static PacketSpec,
    skill: &'static PacketSpec,
}

/// A version whose table lacks a handler the traffic needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MissingHandler(pub &'static str);

fn pick(
    version: PacketVersion,
    rng: &mut Rng,
    handler: &'static str,
    ok: fn(PacketLen) -> bool,
) -> Result<&'static PacketSpec, MissingHandler> {
    let rows: Vec<&'static PacketSpec> =
        version.table().iter().filter(|s| s.handler() == handler && ok(s.len())).collect();
    if rows.is_empty() {
        return Err(MissingHandler(handler));
    }
    let at = rng.below_inclusive(rows.len() as u64 - 1) as usize;
    rows.get(at).copied().ok_or(MissingHandler(handler))
}

fn fixed_at_least(n: u16) -> fn(PacketLen) -> bool {
    match n {
        3 => |l| matches!(l, PacketLen::Fixed(m) if m >= 3),
        _ => |l| matches!(l, PacketLen::Fixed(m) if m >= 2),
    }
}

impl Vocabulary {
    /// Picks, with `rng`, one id per action among the version's rows for that handler.
    pub fn new(version: PacketVersion, rng: &mut Rng) -> Result<Vocabulary, MissingHandler> {
        Ok(Vocabulary {
            version,
            walk: pick(version, rng, "clif_parse_WalkToXY", |l| {
                matches!(l, PacketLen::Fixed(5 | 9))
            })?,
            turn: pick(version, rng, "clif_parse_ChangeDir", |l| {
                matches!(l, PacketLen::Fixed(5 | 10))
            })?,
            chat: pick(version, rng, "clif_parse_GlobalMessage", |l| l == PacketLen::Variable)?,
            whisper: pick(version, rng, "clif_parse_WisMessage", |l| l == PacketLen::Variable)?,
            emote: pick(version, rng, "clif_parse_Emotion", |l| l == PacketLen::Fixed(3))?,
            npc: pick(version, rng, "clif_parse_NpcClicked", fixed_at_least(3))?,
            item: pick(version, rng, "clif_parse_UseItem", fixed_at_least(3))?,
            skill: pick(version, rng, "clif_parse_UseSkillToId", fixed_at_least(3))?,
        })
    }

    /// The packet version.
    pub fn version(&self) -> PacketVersion {
        self.version
    }

    /// Builds `action` as sent by the character `name`; `rng` fills opaque fields.
    pub fn build(&self, action: &Action, name: &str, rng: &mut Rng) -> Built {
        let nul = self.version.chat_nul_terminated();
        match action {
            Action::Walk { x, y } => {
                let (x, y) = (*x & 1023, *y & 1023);
                let packed = [
                    (x >> 2) as u8,
                    (((x & 3) << 6) as u8) | ((y >> 4) & 0x3F) as u8,
                    ((y & 0xF) << 4) as u8,
                ];
                let mut p = fixed(self.walk, rng);
                let at = if p.len() == 5 { 2 } else { 6 };
                p[at..at + 3].copy_from_slice(&packed);
                Built {
                    plain: p,
                    label: "walk",
                    peer_payload: Some(event(PeerEvent::Move { x, y })),
                }
            }
            Action::Turn { head_dir, dir } => {
                let mut p = fixed(self.turn, rng);
                let (h_at, d_at) = if p.len() == 5 { (2, 4) } else { (4, 9) };
                p[h_at] = *head_dir;
                p[d_at] = *dir;
                let ok = *head_dir <= 2 && *dir <= 7;
                Built {
                    plain: p,
                    label: "turn",
                    peer_payload: ok
                        .then(|| event(PeerEvent::Turn { head_dir: *head_dir, dir: *dir })),
                }
            }
            Action::Chat { message } => {
                let text = format!("{name} : {message}");
                let mut body = text.as_bytes().to_vec();
                if nul {
                    body.push(0);
                }
                let command = message.starts_with('@') || message.starts_with('#');
                Built {
                    plain: variable(self.chat, &body),
                    label: if command { "chat-command" } else { "chat" },
                    peer_payload: (!command && !message.is_empty())
                        .then(|| event(PeerEvent::Chat { text: text.as_bytes() })),
                }
            }
            Action::Whisper { to, message } => {
                let mut body = vec![0u8; 24];
                let n = to.len().min(23);
                body[..n].copy_from_slice(&to.as_bytes()[..n]);
                body.extend_from_slice(message.as_bytes());
                if nul {
                    body.push(0);
                }
                let label = if to.starts_with("NPC:") { "whisper-npc" } else { "whisper" };
                Built { plain: variable(self.whisper, &body), label, peer_payload: None }
            }
            Action::Emote { kind } => {
                let mut p = fixed(self.emote, rng);
                p[2] = *kind;
                let ok = *kind < 88 && *kind != 34 && !(58..=63).contains(kind);
                Built {
                    plain: p,
                    label: if ok { "emote" } else { "emote-server" },
                    peer_payload: ok.then(|| event(PeerEvent::Emote { kind: *kind })),
                }
            }
            Action::NpcTalk => {
                Built { plain: fixed(self.npc, rng), label: "npc", peer_payload: None }
            }
            Action::UseItem => {
                Built { plain: fixed(self.item, rng), label: "item", peer_payload: None }
            }
            Action::UseSkill => {
                Built { plain: fixed(self.skill, rng), label: "skill", peer_payload: None }
            }
        }
    }
}

fn event(e: PeerEvent<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    e.encode(&mut out);
    out
}

fn fixed(spec: &PacketSpec, rng: &mut Rng) -> Vec<u8> {
    let len = match spec.len() {
        PacketLen::Fixed(n) => usize::from(n).max(2),
        PacketLen::Variable => 4,
    };
    let mut p = vec![0u8; len];
    rng.fill_bytes(&mut p);
    p[..2].copy_from_slice(&spec.id().to_le_bytes());
    p
}

fn variable(spec: &PacketSpec, body: &[u8]) -> Vec<u8> {
    let len = (4 + body.len()).min(32768) as u16;
    let mut p = Vec::with_capacity(usize::from(len));
    p.extend_from_slice(&spec.id().to_le_bytes());
    p.extend_from_slice(&len.to_le_bytes());
    p.extend_from_slice(&body[..usize::from(len) - 4]);
    p
}

const CHATS: &[&str] = &[
    "hi all",
    "anyone for orc dungeon?",
    "selling jellopy 10z",
    "lol",
    "brb",
    "@warp prontera 156 191",
    "@go 3",
    "#where",
    "buying red potions",
];

/// Draws the next action of a player (zone changes are drawn by the client loop).
pub fn next_action(rng: &mut Rng) -> Action {
    match rng.below_inclusive(99) {
        0..=34 => {
            Action::Walk { x: rng.below_inclusive(400) as u16, y: rng.below_inclusive(400) as u16 }
        }
        35..=44 => Action::Turn {
            head_dir: rng.below_inclusive(2) as u8,
            dir: rng.below_inclusive(7) as u8,
        },
        45..=62 => {
            let at = rng.below_inclusive(CHATS.len() as u64 - 1) as usize;
            Action::Chat { message: CHATS.get(at).copied().unwrap_or("hi").to_owned() }
        }
        63..=67 => {
            let to = if rng.chance(1, 2) { "NPC:Kafra Employee" } else { "Player01" };
            Action::Whisper { to: to.to_owned(), message: "hello".to_owned() }
        }
        68..=79 => Action::Emote { kind: rng.below_inclusive(90) as u8 },
        80..=87 => Action::NpcTalk,
        88..=93 => Action::UseItem,
        _ => Action::UseSkill,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ro_p2p_core::packet::{Classified, classify_packet};

    #[test]
    fn every_version_builds_packets_the_classifier_agrees_with() {
        for version in PacketVersion::REFERENCE {
            let mut rng = Rng::from_seed(7);
            let vocab = Vocabulary::new(version, &mut rng).unwrap();
            for _ in 0..500 {
                let action = next_action(&mut rng);
                let built = vocab.build(&action, "Player07", &mut rng);
                let c = classify_packet(version, &built.plain).expect("framed");
                match (c, &built.peer_payload) {
                    (Classified::PeerEligible(p), Some(payload)) => {
                        let mut enc = Vec::new();
                        p.event().encode(&mut enc);
                        assert_eq!(&enc, payload, "{action:?} at {version}");
                    }
                    (Classified::ServerOnly(_), None) => {}
                    (c, p) => panic!("{action:?} at {version}: classifier {c:?}, truth {p:?}"),
                }
            }
        }
    }
}
