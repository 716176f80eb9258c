//! The dashboard as a newcomer meets it: `rill bench --record` twice (and once on the native
//! backend) and `rill compat`, then `rill dashboard`, opened in headless Chromium (Debian's, driven by
//! playwright-core from tests/browser/): no console errors, the recorded runs charted with
//! their points, values on hover, a filter that changes what is shown, the regression panel and
//! the matrix sections. The screenshot is kept in the target folder.

mod common;

use common::server::Server;
use common::{model, ok_stdout};
use serde_json::Value;
use std::process::Command;

#[test]
fn the_dashboard_charts_recorded_runs_in_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("metrics.sqlite");
    let db = db.to_str().unwrap();
    let m = model();
    for backend in ["component", "component", "native"] {
        ok_stdout(&[
            "bench",
            "--model",
            &m,
            "--backend",
            backend,
            "--repeats",
            "1",
            "--prompt-tokens",
            "8",
            "--gen-tokens",
            "4",
            "--record",
            "--db",
            db,
        ]);
    }
    compat_on_every_host(&m, db);
    let mut cmd = common::rill_command();
    cmd.args(["dashboard", "--port", "0", "--db", db]);
    let server = Server::spawn(cmd, "rill dashboard", "listening on http://");
    let screenshot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/browser/dashboard_check.mjs");
    let out = Command::new("node")
        .arg(script)
        .arg(server.url("/dashboard/"))
        .arg(&screenshot)
        .args(["f-backend", "native"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let seen: Value = serde_json::from_slice(&out.stdout).unwrap();

    assert_eq!(seen["ready"], "true", "{seen}");
    assert_eq!(seen["console_errors"], Value::Array(vec![]), "{seen}");
    assert_eq!(seen["page_errors"], Value::Array(vec![]), "{seen}");
    assert_eq!(seen["run_count"], "3 of 3 runs");
    let charts = seen["charts"].as_array().unwrap();
    let chart = |title: &str| {
        charts
            .iter()
            .find(|c| c["title"].as_str().unwrap().starts_with(title))
            .unwrap_or_else(|| panic!("no {title} chart: {seen}"))
    };
    // Throughput: pp and tg of 3 runs; every chart is drawn.
    assert_eq!(chart("Throughput")["points"], 6);
    assert_eq!(chart("In-run ratios")["points"], 6);
    assert!(charts.iter().all(|c| c["canvas"] == true), "{seen}");
    let legend: Vec<&str> = chart("Throughput")["legend"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert!(
        legend.iter().any(|s| s.contains("tg4_tok_s · component/rill"))
            && legend.iter().any(|s| s.contains("tg4_tok_s · native/native")),
        "{legend:?}"
    );
    // Hovering the newest point shows numbers in the legend.
    assert!(
        seen["hover_values"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|v| v.as_str()?.parse::<f64>().ok())
            .count()
            >= 2,
        "{seen}"
    );
    // Filtering to the native backend leaves its one run (no memory figure: that is the component's).
    assert_eq!(seen["filtered_run_count"], "1 of 3 runs");
    let filtered = seen["filtered_charts"].as_array().unwrap();
    assert!(
        filtered.iter().all(|c| !c["legend"].to_string().contains("component")),
        "{seen}"
    );
    assert_eq!(
        filtered
            .iter()
            .find(|c| c["title"].as_str().unwrap().starts_with("Throughput"))
            .unwrap()["points"],
        2
    );
    // The second component run shows its change against the first, not yet judged.
    assert_eq!(seen["regression_rows"], 2, "{seen}");
    assert!(
        seen["regressions_text"]
            .as_str()
            .unwrap()
            .contains("not judged: 1 earlier run(s), 3 needed"),
        "{seen}"
    );
    // The matrix shows what `rill compat` found, per host and feature.
    let matrix = seen["matrix_text"].as_str().unwrap();
    assert!(
        [
            "rill (native)",
            "wasmtime serve",
            "jco",
            "Chromium",
            "relaxed-simd",
            "baked worker",
            "WebSocket",
            "✓"
        ]
        .iter()
        .all(|s| matrix.contains(s)),
        "{matrix}"
    );
    assert!(screenshot.metadata().unwrap().len() > 10_000);
}

/// `rill compat` with the pinned wasmtime and jco on PATH (as installed by scripts/setup.sh,
/// with Chromium and Firefox): every host passes the checks it can, per the store's matrix.
fn compat_on_every_host(model: &str, db: &str) {
    let dir_of = |tool: String| std::path::Path::new(&tool).parent().unwrap().to_path_buf();
    let dirs = [dir_of(common::tool("wasmtime-path")), dir_of(common::tool("jco-path"))];
    let path = std::env::join_paths(
        dirs.into_iter()
            .chain(std::env::split_paths(&std::env::var_os("PATH").unwrap())),
    )
    .unwrap();
    let out = common::rill_command()
        .args(["compat", "--model", model, "--db", db])
        .env("PATH", path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));

    let mut cmd = common::rill_command();
    cmd.args(["dashboard", "--port", "0", "--db", db]);
    let server = Server::spawn(cmd, "rill dashboard", "listening on http://");
    let matrix = server.get("/dashboard/api/matrix").json();
    let verdict = |host: &str, feature: &str| {
        let row = matrix
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["host"].as_str().unwrap().starts_with(host) && r["feature"] == feature);
        row.unwrap_or_else(|| panic!("no {host} {feature} row:\n{stdout}"))["passed"]
            .as_bool()
            .unwrap()
    };
    let must_pass = |host: &str, features: &[&str]| {
        for feature in features {
            assert!(verdict(host, feature), "{host} {feature} failed:\n{stdout}");
        }
    };
    must_pass(
        "rill (wasmtime",
        &["load", "stream", "simd128", "relaxed-simd", "SSE", "WebSocket"],
    );
    must_pass("rill (native)", &["load", "stream"]);
    for edge_host in ["wasmtime serve", "rill serve --worker", "jco"] {
        must_pass(edge_host, &["load", "stream", "SSE", "baked worker"]);
    }
    let browsers = [
        ("Chromium", "/usr/bin/chromium"),
        ("Mozilla Firefox", "/usr/bin/firefox"),
    ];
    for (browser, _) in browsers.iter().filter(|(_, path)| std::path::Path::new(path).exists()) {
        must_pass(browser, &["load", "stream", "simd128", "relaxed-simd"]);
        // Recorded either way; no WebGPU kernels yet, so it cannot pass.
        assert!(!verdict(browser, "WebGPU"), "{stdout}");
    }
}

/// `rill serve` serves the same page and API at /dashboard beside the OpenAI API; a newcomer's
/// first `rill bench --record` has already filled the matrix with this host's own checks.
#[test]
fn rill_serve_serves_the_dashboard_of_its_store() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("metrics.sqlite");
    let db = db.to_str().unwrap();
    ok_stdout(&[
        "bench",
        "--model",
        &model(),
        "--repeats",
        "1",
        "--prompt-tokens",
        "8",
        "--gen-tokens",
        "4",
        "--record",
        "--db",
        db,
    ]);
    let server = Server::start(&["--db", db], &[]);
    let page = server.get("/dashboard/");
    assert_eq!(page.status, 200);
    assert!(page.body.contains("<title>Rill performance</title>"));
    let runs = server.get("/dashboard/api/runs");
    assert_eq!(runs.status, 200, "{}", runs.body);
    assert_eq!(runs.json().as_array().unwrap().len(), 1);
    // The first recorded run also checked this host's own backends into the empty matrix.
    let matrix = server.get("/dashboard/api/matrix").json();
    let passed =
        |host: &str, feature: &str| {
            matrix.as_array().unwrap().iter().any(|r| {
                r["host"].as_str().unwrap().starts_with(host) && r["feature"] == feature && r["passed"] == true
            })
        };
    assert!(
        passed("rill (wasmtime", "stream")
            && passed("rill (native)", "stream")
            && passed("rill (wasmtime", "relaxed-simd"),
        "{matrix}"
    );
    assert!(server.get("/dashboard/uPlot.iife.min.js").body.len() > 40_000);
}
