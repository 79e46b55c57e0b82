//! The drop-in DLL: hooks that install themselves when the DLL is loaded into the game client
//! and run the batteries layer on the map-server connection, with no code from the integrator.
//!
//! Three parts, each alone in a module: [`tracker`] (sans-IO: which socket is the login, char
//! or map server's, and what their replies said), [`engine`] (what each hooked Winsock call
//! does, over traits for the real functions and the batteries layer, tested on any host) and
//! the Windows glue (`windows`, 32- and 64-bit: import-table patching of the game module's
//! `ws2_32`/`wsock32` imports, `DllMain`, the hook functions), which only moves bytes.
//! [`config`] reads the game folder's configuration, [`batteries`] is the batteries layer as
//! the hooks use it. See `docs/dll.md`.

pub mod batteries;
pub mod config;
pub mod engine;
pub mod tracker;
#[cfg(windows)]
mod windows;
