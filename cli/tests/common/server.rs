//! A real server process (`rill serve`, or a host running the edge worker) on a free
//! port, and a plain HTTP/1.1 client that can send what well-behaved clients never do (invalid
//! UTF-8, oversized bodies, half-read streams).

use rill_lab::child_server::{kill_group, spawn_in_own_group};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub struct Server {
    child: Child,
    /// `host:port` it listens on.
    pub addr: String,
}

impl Server {
    /// Starts `rill serve --port 0` on the reference model with extra `args` and `env`, and
    /// waits until it listens.
    pub fn start(args: &[&str], env: &[(&str, &str)]) -> Server {
        let model = super::model();
        let mut cmd = super::rill_command();
        cmd.args(["serve", "--port", "0", "--model", &model])
            .args(args)
            .envs(env.iter().copied());
        Server::spawn(cmd, "rill serve", "listening on http://")
    }

    /// Starts `cmd` (a server told to listen on port 0) and waits until its stderr says
    /// `marker` followed by the address it listens on.
    pub fn spawn(mut cmd: Command, name: &'static str, marker: &'static str) -> Server {
        cmd.stderr(Stdio::piped()).stdout(Stdio::null());
        let mut child = spawn_in_own_group(&mut cmd).unwrap_or_else(|e| panic!("starting {name}: {e}"));
        let stderr = BufReader::new(child.stderr.take().unwrap());
        let (tx, rx) = mpsc::channel();
        // Keeps reading stderr for the life of the server (a full pipe would block it), echoing it.
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                eprintln!("[{name}] {line}");
                if let Some(addr) = line.split(marker).nth(1) {
                    let _ = tx.send(addr.trim().trim_end_matches(['/', '.']).to_string());
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(120))
            .unwrap_or_else(|_| panic!("{name} did not start listening"));
        Server { child, addr }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// One request on a fresh connection: (status, headers, body).
    pub fn request(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
        let mut conn = TcpStream::connect(&self.addr).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
            self.addr,
            body.len()
        );
        if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("content-type")) {
            head += "Content-Type: application/json\r\n";
        }
        for (k, v) in headers {
            head += &format!("{k}: {v}\r\n");
        }
        head += "\r\n";
        conn.write_all(head.as_bytes()).unwrap();
        // The server may answer (413) before reading a large body: a failed write is fine then.
        let _ = conn.write_all(body);
        let mut raw = Vec::new();
        conn.read_to_end(&mut raw).unwrap();
        Reply::parse(&raw)
    }

    pub fn post_json(&self, path: &str, body: &serde_json::Value) -> Reply {
        self.request("POST", path, &[], body.to_string().as_bytes())
    }

    pub fn get(&self, path: &str) -> Reply {
        self.request("GET", path, &[], b"")
    }

    /// A metric's value from /metrics (the first sample named exactly `name`).
    pub fn metric(&self, name: &str) -> f64 {
        let text = self.get("/metrics").body;
        metric_in(&text, name).unwrap_or_else(|| panic!("no metric {name} in:\n{text}"))
    }

    /// Polls `/metrics` until every `(name, value)` holds in one scrape; false if that never
    /// happens within `limit`.
    pub fn metrics_become(&self, expected: &[(&str, f64)], limit: Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < limit {
            let text = self.get("/metrics").body;
            if expected
                .iter()
                .all(|&(name, value)| metric_in(&text, name) == Some(value))
            {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let text = self.get("/metrics").body;
        eprintln!(
            "metrics never became {expected:?}; last: {:?}",
            expected
                .iter()
                .map(|(n, _)| (n, metric_in(&text, n)))
                .collect::<Vec<_>>()
        );
        false
    }

    pub fn assert_healthy(&self) {
        let r = self.get("/health");
        assert_eq!((r.status, r.json()["status"].as_str()), (200, Some("ok")), "{}", r.body);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // The whole group: jco serve leaves its node process running when only it is killed.
        kill_group(&mut self.child);
    }
}

pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    fn parse(raw: &[u8]) -> Reply {
        let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("an HTTP response");
        let head = String::from_utf8_lossy(&raw[..split]).into_owned();
        let mut lines = head.lines();
        let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let mut body = raw[split + 4..].to_vec();
        if headers.iter().any(|(k, v)| k == "transfer-encoding" && v == "chunked") {
            body = dechunk(&body);
        }
        Reply {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    /// Asserts an OpenAI error body with this status, whose message mentions `says`.
    pub fn assert_error(&self, status: u16, says: &str) -> serde_json::Value {
        assert_eq!(self.status, status, "{}", self.body);
        let error = self.json()["error"].clone();
        let message = error["message"]
            .as_str()
            .unwrap_or_else(|| panic!("no error message: {}", self.body));
        assert!(message.contains(says), "the error should mention {says:?}: {message}");
        assert!(error["type"].is_string(), "{}", self.body);
        error
    }
}

fn metric_in(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(name)
            .and_then(|rest| rest.strip_prefix(' '))
            .map(|v| v.trim().parse().unwrap())
    })
}

fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = body.windows(2).position(|w| w == b"\r\n").unwrap();
        let size = usize::from_str_radix(std::str::from_utf8(&body[..line_end]).unwrap().trim(), 16).unwrap();
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&body[line_end + 2..line_end + 2 + size]);
        body = &body[line_end + 2 + size + 2..];
    }
}
