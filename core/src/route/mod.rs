//! Routing: where each classified packet goes. The operator's [`Policy`] picks, per peer
//! category (movement, public chat, emote), `server`, `mirror` (server and peers) or `peers`;
//! the [`RouteContext`] says whether peers are usable at all right now. A [`Route`] that reaches
//! peers carries a [`PeerEligible`], which only the classifier in [`crate::packet`] can build, so
//! no policy and no context can send npc, item, skill, quest, auth or other packets to a peer.
//!
//! A driver (the game client's hook, the FFI layer, the proxy, the simulation) owns one
//! [`GameStream`] per connection to the map server, pushes the bytes the game writes, and gets
//! one [`Verdict`] per packet: the framed packet, its classification by [`crate::packet`], the
//! route the policy chose, and the exact bytes to write to the server (ids re-obfuscated with
//! the server's own key sequence when packets were diverted). The dependency goes one way:
//! `route` uses `packet`, `packet` uses nothing of `route`.

mod stream;

use std::fmt;
use std::str::FromStr;

use crate::packet::{Category, Classified, PeerCategory, PeerEligible};
pub use stream::{
    DesyncReason, GameStream, OwnNameError, PacketVerdict, STREAM_BUFFER_BYTES, Verdict,
};

/// What the operator wants for one peer category.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Choice {
    /// Server only, as without ro-p2p.
    Server,
    /// Server and peers (the default: keeps an unmodified rAthena correct).
    Mirror,
    /// Peers only (the server never sees it; see docs/packets.md for what that breaks).
    Peers,
}

impl Choice {
    /// The name in the policy syntax.
    pub fn as_str(self) -> &'static str {
        match self {
            Choice::Server => "server",
            Choice::Mirror => "mirror",
            Choice::Peers => "peers",
        }
    }

    fn from_name(s: &str) -> Option<Choice> {
        [Choice::Server, Choice::Mirror, Choice::Peers].into_iter().find(|c| c.as_str() == s)
    }
}

/// The routing policy: one [`Choice`] per peer category. Every other category is server-only
/// by construction, so it has no field here.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Policy {
    /// Walking and turning.
    pub movement: Choice,
    /// Public chat (commands, whispers, party, guild, clan, battleground chat stay on the server).
    pub chat: Choice,
    /// Emotes (dice and mute emotes stay on the server).
    pub emote: Choice,
}

impl Default for Policy {
    fn default() -> Self {
        Policy { movement: Choice::Mirror, chat: Choice::Mirror, emote: Choice::Mirror }
    }
}

/// A policy string that does not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// An item without `=`.
    #[error("policy item {item:?} is not category=choice")]
    MissingEquals {
        /// The item.
        item: String,
    },
    /// A category name that does not exist.
    #[error("unknown policy category {category:?} (expected movement, chat or emote)")]
    UnknownCategory {
        /// The name given.
        category: String,
    },
    /// A choice that does not exist.
    #[error("unknown choice {value:?} for {category} (expected server, mirror or peers)")]
    UnknownChoice {
        /// The category.
        category: String,
        /// The value given.
        value: String,
    },
    /// An attempt to send a never-offloadable category to peers.
    #[error("{category} can only be routed to the server, not {value:?}")]
    NeverOffloadable {
        /// The category (npc, item, skill, quest, auth, other).
        category: Category,
        /// The value given.
        value: String,
    },
}

impl Policy {
    /// The choice for one peer category.
    pub fn choice(&self, category: PeerCategory) -> Choice {
        match category {
            PeerCategory::Movement => self.movement,
            PeerCategory::Chat => self.chat,
            PeerCategory::Emote => self.emote,
        }
    }

    /// Routes one classified packet. Peers are used only when `ctx` allows them; otherwise
    /// everything goes to the server.
    #[inline]
    pub fn route<'a>(&self, classified: Classified<'a>, ctx: &RouteContext) -> Route<'a> {
        let Classified::PeerEligible(packet) = classified else {
            return Route::Server;
        };
        if !ctx.peers_usable() {
            return Route::Server;
        }
        match self.choice(packet.category()) {
            Choice::Server => Route::Server,
            Choice::Mirror => Route::ServerAndPeers(packet),
            Choice::Peers if ctx.all_members_linked => Route::Peers(packet),
            // A member without a direct link would never see it: the server must fan it out.
            Choice::Peers => Route::ServerAndPeers(packet),
        }
    }
}

impl FromStr for Policy {
    type Err = PolicyError;

    /// Parses `movement=mirror,chat=peers,emote=server` (any subset, any order; the rest keep
    /// their defaults). `npc`, `item`, `skill`, `quest`, `auth` and `other` accept only `server`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut policy = Policy::default();
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let (category, value) = item
                .split_once('=')
                .map(|(c, v)| (c.trim(), v.trim()))
                .ok_or_else(|| PolicyError::MissingEquals { item: item.to_string() })?;
            let slot = match category {
                "movement" => &mut policy.movement,
                "chat" => &mut policy.chat,
                "emote" => &mut policy.emote,
                other => {
                    let Some(category) = Category::from_name(other) else {
                        return Err(PolicyError::UnknownCategory { category: other.to_string() });
                    };
                    match Choice::from_name(value) {
                        Some(Choice::Server) => continue,
                        Some(_) => {
                            return Err(PolicyError::NeverOffloadable {
                                category,
                                value: value.to_string(),
                            });
                        }
                        None => {
                            return Err(PolicyError::UnknownChoice {
                                category: category.to_string(),
                                value: value.to_string(),
                            });
                        }
                    }
                }
            };
            *slot = Choice::from_name(value).ok_or_else(|| PolicyError::UnknownChoice {
                category: category.to_string(),
                value: value.to_string(),
            })?;
        }
        Ok(policy)
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "movement={},chat={},emote={}",
            self.movement.as_str(),
            self.chat.as_str(),
            self.emote.as_str()
        )
    }
}

/// What the router needs to know about the world right now.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RouteContext {
    /// P2P is enabled in the configuration and the coordinator is reachable.
    pub p2p_enabled: bool,
    /// The current zone (map) is in `p2p_enabled_zones`.
    pub zone_enabled: bool,
    /// The client has joined a session.
    pub joined: bool,
    /// At least one peer link is healthy and keyed.
    pub peers_ready: bool,
    /// Every other member of the session has a healthy, keyed link to us. Without it a
    /// `peers` choice is sent to the server too, so that no member loses the packet (a pair
    /// that cannot connect ends on server routing, never on lost traffic).
    pub all_members_linked: bool,
}

impl RouteContext {
    /// Everything available: what the `classify` tool assumes by default.
    pub const ALL_READY: RouteContext = RouteContext {
        p2p_enabled: true,
        zone_enabled: true,
        joined: true,
        peers_ready: true,
        all_members_linked: true,
    };
    /// Nothing available: everything goes to the server.
    pub const SERVER_ONLY: RouteContext = RouteContext {
        p2p_enabled: false,
        zone_enabled: false,
        joined: false,
        peers_ready: false,
        all_members_linked: false,
    };

    /// Whether peers may receive anything at all.
    #[inline]
    pub fn peers_usable(&self) -> bool {
        self.p2p_enabled && self.zone_enabled && self.joined && self.peers_ready
    }
}

/// Where one packet goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route<'a> {
    /// To the map server only.
    Server,
    /// To peers only.
    Peers(PeerEligible<'a>),
    /// To the map server and to peers.
    ServerAndPeers(PeerEligible<'a>),
}

impl<'a> Route<'a> {
    /// Whether the server receives the packet.
    #[inline]
    pub fn to_server(&self) -> bool {
        !matches!(self, Route::Peers(_))
    }

    /// The peer-eligible packet, when peers receive it.
    pub fn to_peers(&self) -> Option<&PeerEligible<'a>> {
        match self {
            Route::Server => None,
            Route::Peers(p) | Route::ServerAndPeers(p) => Some(p),
        }
    }

    /// `server`, `peers` or `server+peers`, as the `classify` tool prints it.
    pub fn as_str(&self) -> &'static str {
        match self {
            Route::Server => "server",
            Route::Peers(_) => "peers",
            Route::ServerAndPeers(_) => "server+peers",
        }
    }
}

#[cfg(test)]
mod stream_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_parses_subsets_and_keeps_defaults() {
        let p: Policy = "movement=server, chat=peers".parse().unwrap();
        assert_eq!(
            p,
            Policy { movement: Choice::Server, chat: Choice::Peers, emote: Choice::Mirror }
        );
        assert_eq!("".parse::<Policy>().unwrap(), Policy::default());
        assert_eq!(p.to_string().parse::<Policy>().unwrap(), p);
        assert_eq!("npc=server,item=server".parse::<Policy>().unwrap(), Policy::default());
    }

    #[test]
    fn policy_errors_name_the_bad_part() {
        assert_eq!(
            "walking=peers".parse::<Policy>(),
            Err(PolicyError::UnknownCategory { category: "walking".into() })
        );
        assert_eq!(
            "chat=everyone".parse::<Policy>(),
            Err(PolicyError::UnknownChoice { category: "chat".into(), value: "everyone".into() })
        );
        assert_eq!(
            "npc=peers".parse::<Policy>(),
            Err(PolicyError::NeverOffloadable { category: Category::Npc, value: "peers".into() })
        );
        assert_eq!(
            "item=mirror".parse::<Policy>(),
            Err(PolicyError::NeverOffloadable { category: Category::Item, value: "mirror".into() })
        );
        assert_eq!(
            "chat".parse::<Policy>(),
            Err(PolicyError::MissingEquals { item: "chat".into() })
        );
    }
}
