//! The configuration the hooks find in the game folder: `p2p_config.json`, else the game's
//! `Data/config.ini` (its `[P2P]` section) with `Data/resourceinfo.ini` (backup coordinators).

use std::path::{Path, PathBuf};

use ro_p2p_core::config::ClientSettings;

/// The JSON configuration's file name, in the game folder.
pub const JSON_FILE: &str = "p2p_config.json";
/// The INI configuration, relative to the game folder.
pub const INI_FILE: &str = "Data/config.ini";
/// The backup coordinators beside the INI configuration.
pub const RESOURCEINFO_FILE: &str = "Data/resourceinfo.ini";

/// Why no configuration could be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GameConfigError {
    /// Neither file is in the folder.
    #[error("neither {JSON_FILE} nor {INI_FILE} is in {folder}")]
    Missing {
        /// The game folder.
        folder: PathBuf,
    },
    /// A file could not be read.
    #[error("{path}: {source}")]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A file was read but is not a valid configuration (the message names the key).
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// Reads the configuration of the game in `folder`; also says which file it came from.
pub fn load(folder: &Path) -> Result<(ClientSettings, PathBuf), GameConfigError> {
    let read = |path: &Path| {
        std::fs::read_to_string(path)
            .map_err(|source| GameConfigError::Unreadable { path: path.to_path_buf(), source })
    };
    let json = folder.join(JSON_FILE);
    if json.is_file() {
        let text = read(&json)?;
        let settings = ClientSettings::from_json(&text)
            .map_err(|e| GameConfigError::Invalid { path: json.clone(), message: e.to_string() })?;
        return Ok((settings, json));
    }
    let ini = folder.join(INI_FILE);
    if ini.is_file() {
        let text = read(&ini)?;
        let resourceinfo = folder.join(RESOURCEINFO_FILE);
        let backups = if resourceinfo.is_file() { Some(read(&resourceinfo)?) } else { None };
        let settings = ClientSettings::from_ini(&text, backups.as_deref())
            .map_err(|e| GameConfigError::Invalid { path: ini.clone(), message: e.to_string() })?;
        return Ok((settings, ini));
    }
    Err(GameConfigError::Missing { folder: folder.to_path_buf() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("rop2p-hook-config-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("Data")).unwrap();
        dir
    }

    #[test]
    fn p2p_config_json_wins_over_config_ini() {
        let dir = folder("json");
        std::fs::write(
            dir.join(JSON_FILE),
            r#"{ coordinator: { websocket_url: "ws://127.0.0.1:1/ws" }, p2p: { packet_version: 20211103 } }"#,
        )
        .unwrap();
        std::fs::write(dir.join(INI_FILE), "[P2P]\nEnableP2P=maybe\n").unwrap();
        let (settings, from) = load(&dir).unwrap();
        assert_eq!(from, dir.join(JSON_FILE));
        assert_eq!(settings.coordinator_urls, ["ws://127.0.0.1:1/ws"]);
    }

    #[test]
    fn config_ini_takes_backup_coordinators_from_resourceinfo() {
        let dir = folder("ini");
        std::fs::write(
            dir.join(INI_FILE),
            "[P2P]\nEnableP2P=true\nCoordinatorURL=ws://10.0.0.1:8080/ws\n",
        )
        .unwrap();
        std::fs::write(dir.join(RESOURCEINFO_FILE), "[P2P_HOSTS]\n0=ws://10.0.0.2:8080/ws\n")
            .unwrap();
        let (settings, from) = load(&dir).unwrap();
        assert_eq!(from, dir.join(INI_FILE));
        assert_eq!(settings.coordinator_urls.len(), 2, "{:?}", settings.coordinator_urls);
    }

    #[test]
    fn an_empty_folder_names_both_files() {
        let dir = folder("empty");
        let e = load(&dir).unwrap_err().to_string();
        assert!(e.contains(JSON_FILE) && e.contains(INI_FILE), "{e}");
    }
}
