//! Handles: C holds a `uint64_t`, never a pointer, so a freed, stopped, forged or wrong-kind
//! handle is an error code instead of undefined behaviour (double free included).

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::status::{Failure, RoP2pStatus};

/// Freed handles remembered, so that a double free says "closed" rather than "invalid".
const CLOSED_REMEMBERED_MAX: usize = 4096;
/// Handles are `HANDLE_TAG << 32 | serial`: small integers and garbage rarely look valid.
const HANDLE_TAG: u64 = 0x524F_5032;

/// An object that can sit behind a handle.
pub(crate) trait Kind: Send + 'static {
    /// For messages, e.g. "router".
    const NAME: &'static str;
}

struct Entry {
    kind: &'static str,
    object: Option<Arc<dyn std::any::Any + Send + Sync>>,
}

#[derive(Default)]
struct Registry {
    next: u32,
    entries: BTreeMap<u64, Entry>,
    closed: VecDeque<u64>,
}

static REGISTRY: Mutex<Option<Registry>> = Mutex::new(None);

fn registry() -> MutexGuard<'static, Option<Registry>> {
    // The registry's own code does not panic while holding the lock; if anything did, the map is
    // still consistent (every mutation is a single insert or remove).
    REGISTRY.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Registers `object`, returning its handle.
pub(crate) fn insert<T: Kind>(object: T) -> u64 {
    let mut guard = registry();
    let reg = guard.get_or_insert_with(Registry::default);
    reg.next = reg.next.wrapping_add(1).max(1);
    let handle = (HANDLE_TAG << 32) | u64::from(reg.next);
    let object: Arc<dyn std::any::Any + Send + Sync> = Arc::new(Mutex::new(object));
    reg.entries.insert(handle, Entry { kind: T::NAME, object: Some(object) });
    handle
}

/// The object behind `handle`, if it is a live `T`.
pub(crate) fn get<T: Kind>(handle: u64) -> Result<Arc<Mutex<T>>, Failure> {
    let guard = registry();
    let entry = guard.as_ref().and_then(|r| r.entries.get(&handle));
    match entry {
        None => Err(Failure::new(
            RoP2pStatus::ErrInvalidHandle,
            format!("{handle:#x} is not a {} handle", T::NAME),
        )),
        Some(Entry { kind, .. }) if *kind != T::NAME => Err(Failure::new(
            RoP2pStatus::ErrInvalidHandle,
            format!("{handle:#x} is a {kind} handle, not a {}", T::NAME),
        )),
        Some(Entry { object: None, .. }) => Err(Failure::new(
            RoP2pStatus::ErrClosed,
            format!("{} handle {handle:#x} was already freed or stopped", T::NAME),
        )),
        Some(Entry { object: Some(object), .. }) => {
            object.clone().downcast::<Mutex<T>>().map_err(|_| {
                Failure::new(RoP2pStatus::ErrInvalidHandle, format!("{handle:#x}: wrong kind"))
            })
        }
    }
}

/// Closes `handle` and returns its object (to be dropped or shut down by the caller).
pub(crate) fn remove<T: Kind>(handle: u64) -> Result<Arc<Mutex<T>>, Failure> {
    let object = get::<T>(handle)?;
    let mut guard = registry();
    if let Some(reg) = guard.as_mut() {
        if let Some(entry) = reg.entries.get_mut(&handle) {
            entry.object = None;
        }
        reg.closed.push_back(handle);
        while reg.closed.len() > CLOSED_REMEMBERED_MAX {
            if let Some(old) = reg.closed.pop_front() {
                reg.entries.remove(&old);
            }
        }
    }
    Ok(object)
}

/// Locks an object; a panic during an earlier call leaves it poisoned and unusable.
pub(crate) fn lock<T: Kind>(object: &Mutex<T>) -> Result<MutexGuard<'_, T>, Failure> {
    object.lock().map_err(|_| {
        Failure::new(
            RoP2pStatus::ErrPanic,
            format!("this {} failed internally earlier; free it", T::NAME),
        )
    })
}
