//! The XDG base directories Rill uses.

use std::path::PathBuf;

/// `$XDG_CACHE_HOME`, else `~/.cache`, else the temp directory.
pub fn cache_home() -> PathBuf {
    xdg("XDG_CACHE_HOME", ".cache")
}

/// `$XDG_CONFIG_HOME`, else `~/.config`, else the temp directory.
pub fn config_home() -> PathBuf {
    xdg("XDG_CONFIG_HOME", ".config")
}

/// `$XDG_DATA_HOME`, else `~/.local/share`, else the temp directory.
pub fn data_home() -> PathBuf {
    xdg("XDG_DATA_HOME", ".local/share")
}

fn xdg(var: &str, under_home: &str) -> PathBuf {
    std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(under_home)))
        .unwrap_or_else(std::env::temp_dir)
}
