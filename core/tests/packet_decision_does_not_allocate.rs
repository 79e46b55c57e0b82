//! The per-packet decision path (frame, de-obfuscate, classify, route, re-obfuscate) must not
//! allocate: measured with a counting global allocator on this test's thread.
// A global allocator needs `unsafe impl`; it only forwards to the system allocator.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use ro_p2p_core::packet::{ClientEncoder, Obfuscation, PacketVersion};
use ro_p2p_core::route::{GameStream, Policy, RouteContext, Verdict};

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

struct CountingAllocator;

unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

fn allocations() -> usize {
    ALLOCATIONS.with(Cell::get)
}

/// Walks, turns, chat, emotes, an NPC click: 20151104 ids, obfuscated.
fn capture(repeats: usize) -> Vec<u8> {
    let text = b"Alice : hello everyone";
    let mut chat = vec![0xF3, 0x00, (4 + text.len()) as u8, 0];
    chat.extend_from_slice(text);
    let packets: [&[u8]; 6] = [
        &[0x63, 0x03, 0x25, 0x8C, 0x84],
        &[0x28, 0x09, 1, 0, 5],
        &chat,
        &[0xBF, 0x00, 3],
        &[0x90, 0x00, 1, 0, 0, 0, 1],
        &[0xBF, 0x00, 60],
    ];
    let mut enc = ClientEncoder::new(PacketVersion::V20151104, Obfuscation::On);
    let mut out = Vec::new();
    for _ in 0..repeats {
        for p in packets {
            enc.encode(p, &mut out);
        }
    }
    out
}

#[test]
fn framing_classifying_and_routing_do_not_allocate_per_packet() {
    let bytes = capture(2000);
    for policy in [Policy::default(), "movement=peers,chat=peers,emote=peers".parse().unwrap()] {
        let mut stream = GameStream::new(PacketVersion::V20151104, Obfuscation::On);
        let _ = PacketVersion::V20151104.table(); // the table is built once, on first use
        let mut packets = 0usize;
        let mut peer_events = 0usize;
        let before = allocations();
        stream.feed(&bytes, &policy, &RouteContext::ALL_READY, |v| {
            if let Verdict::Packet(p) = v {
                packets += 1;
                peer_events += usize::from(p.route.to_peers().is_some());
            }
        });
        let after = allocations();
        assert_eq!(packets, 12_000);
        assert!(peer_events >= 8_000, "{peer_events}");
        assert_eq!(after - before, 0, "allocations while deciding {packets} packets");
        // The counter itself works.
        std::hint::black_box(vec![0u8; 16]);
        assert!(allocations() > after);
    }
}
