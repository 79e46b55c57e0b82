//! How the hosts of a world are named and reached: the ports every host listens on, the
//! coordinator's signaling URLs, and the instance ids of coordinator incarnations. Every layer
//! addresses hosts through these, so they sit at the bottom, beside the [`Plan`].

use ro_p2p_tokio::cluster::InstanceId;

use crate::plan::Plan;

/// Port of the coordinator's HTTP/WebSocket listener.
pub const COORDINATOR_PORT: u16 = 8001;
/// Port of the map server.
pub const MAP_PORT: u16 = 5121;
/// UDP port of every client's peer socket.
pub const PEER_PORT: u16 = 7000;
/// UDP port of the relay.
pub const RELAY_PORT: u16 = 3478;

/// The coordinator URL every client uses in a single-coordinator world.
pub const COORDINATOR_URL: &str = "ws://coordinator:8001/api/v1/signaling/ws";

/// The instance id of incarnation `n` of coordinator host `host`.
pub fn instance_id(host: &str, n: u64) -> InstanceId {
    InstanceId::sanitized(&format!("{host}.{n}"))
}

/// The coordinator host an instance id belongs to.
pub fn host_of(instance: &str) -> &str {
    instance.rsplit_once('.').map_or(instance, |(h, _)| h)
}

/// The signaling URLs of client `index` (1-based): its own instance first, then the others in
/// order, so clients are spread over the instances and move on when theirs is down.
pub fn coordinator_urls(plan: &Plan, index: usize) -> Vec<String> {
    let hosts = plan.coordinator_hosts();
    if hosts.len() <= 1 {
        return vec![COORDINATOR_URL.to_owned()];
    }
    let first = index.saturating_sub(1) % hosts.len();
    (0..hosts.len())
        .map(|i| {
            let host = &hosts[(first + i) % hosts.len()];
            format!("ws://{host}:{COORDINATOR_PORT}/api/v1/signaling/ws")
        })
        .collect()
}
