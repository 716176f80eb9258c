//! The hosts `rill compat` looks for on this machine (on PATH; jco also where the repository's
//! `scripts/jco-path` installs it), with the versions they report.

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Tool {
    pub path: PathBuf,
    /// What `--version` printed (its first line).
    pub version: String,
}

/// jco, the Node.js it runs on, and the WASI shim it brings (whose browser build a
/// transpiled component imports in a browser).
pub struct Jco {
    pub tool: Tool,
    pub node: String,
    /// The `@bytecodealliance/preview2-shim` package folder.
    pub shim: PathBuf,
}

/// The hosts `--only` may name.
pub const HOSTS: [&str; 6] = ["rill-serve", "wasmtime", "rill-worker", "jco", "chromium", "firefox"];

/// The hosts to check: those found and wanted (the backends in process are always checked).
pub struct Tools {
    pub rill_serve: bool,
    pub rill_worker: bool,
    pub jco_serve: bool,
    pub wasmtime: Option<Tool>,
    pub jco: Option<Jco>,
    pub chromium: Option<Tool>,
    pub firefox: Option<Tool>,
}

/// The repository's pinned jco, relative to a checkout (`scripts/jco-path` installs it).
const REPO_JCO: &str = "tests/jco/node_modules/.bin/jco";

impl Tools {
    /// Finds the hosts named in `only` (all of [`HOSTS`] when empty).
    pub fn find(only: &[String]) -> Tools {
        let wanted = |host: &str| only.is_empty() || only.iter().any(|o| o == host);
        let tools = Tools {
            rill_serve: wanted("rill-serve"),
            rill_worker: wanted("rill-worker"),
            jco_serve: wanted("jco"),
            wasmtime: tool(on_path(&["wasmtime"]).filter(|_| wanted("wasmtime"))),
            // The browsers need jco too: it transpiles the component for them.
            jco: ["jco", "chromium", "firefox"]
                .iter()
                .any(|h| wanted(h))
                .then(jco)
                .flatten(),
            chromium: tool(
                on_path(&["chromium", "chromium-browser", "google-chrome", "google-chrome-stable"])
                    .filter(|_| wanted("chromium")),
            ),
            firefox: tool(on_path(&["firefox", "firefox-esr"]).filter(|_| wanted("firefox"))),
        };
        let seen = |name: &str, tool: Option<&Tool>| match tool {
            Some(t) => eprintln!("rill compat: {name}: {} ({})", t.path.display(), t.version),
            None => eprintln!("rill compat: {name}: not found (or not in --only): not checked"),
        };
        seen("wasmtime", tools.wasmtime.as_ref());
        seen("jco", tools.jco.as_ref().map(|j| &j.tool));
        seen("Chromium", tools.chromium.as_ref());
        seen("Firefox", tools.firefox.as_ref());
        tools
    }
}

fn on_path(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |name| dir.join(name)))
        .find(|p| p.is_file())
}

fn tool(path: Option<PathBuf>) -> Option<Tool> {
    let path = path?;
    let version = version(&path)?;
    Some(Tool { path, version })
}

/// The first line `program --version` prints, when it runs.
fn version(program: &Path) -> Option<String> {
    let out = Command::new(program)
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(str::to_string)
}

fn jco() -> Option<Jco> {
    let path = on_path(&["jco"])
        .or_else(|| Some(PathBuf::from(REPO_JCO)).filter(|p| p.is_file()))?
        .canonicalize()
        .ok()?;
    let tool = tool(Some(path))?;
    let node = version(Path::new("node"))?;
    // The shim jco itself would load, found the way Node finds it from jco's own files.
    let resolve = "console.log(require.resolve('@bytecodealliance/preview2-shim/cli', { paths: [process.argv[1]] }))";
    let out = Command::new("node")
        .args(["-e", resolve])
        .arg(&tool.path)
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    let cli = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    // …/preview2-shim/dist/nodejs/cli.js
    let shim = cli.ancestors().nth(3)?.to_path_buf();
    Some(Jco { tool, node, shim })
}
