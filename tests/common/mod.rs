//! Runs the real `tickfeed` binary on a free port and talks to it like a user would.
#![allow(dead_code)]

use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    process::{Child, ChildStdin, Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Generous bound for anything a test waits on, so a bug fails fast instead of hanging.
pub const WAIT: Duration = Duration::from_secs(20);

/// A running `tickfeed` process. Killed on drop.
pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    /// Whether the listening line said `https://` (started with --tls-cert).
    pub https: bool,
    pub stdin: Option<ChildStdin>,
    /// Log lines from stderr after the listening line.
    pub logs: mpsc::Receiver<String>,
}

impl Server {
    /// Starts `tickfeed --listen 127.0.0.1:0 ARGS…` and waits for its listening line.
    pub fn start(args: &[&str], envs: &[(&str, &str)]) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_tickfeed"));
        command
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (key, value) in envs {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("tickfeed binary starts");
        let stderr = child.stderr.take().expect("stderr piped");
        let (lines_tx, logs) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if lines_tx.send(line).is_err() {
                    break;
                }
            }
        });
        let (addr, https) = loop {
            let Ok(line) = logs.recv_timeout(WAIT) else {
                // Do not leak the process when the test fails here.
                let _ = child.kill();
                let _ = child.wait();
                panic!("tickfeed did not print its listening address");
            };
            let Some(url) = line.split("listening on ").nth(1) else { continue };
            let (https, rest) = match url.strip_prefix("https://") {
                Some(rest) => (true, rest),
                None => (false, url.strip_prefix("http://").unwrap_or(url)),
            };
            // With --log-format json the address is followed by the closing quote of `message`.
            if let Some(addr) = rest.split(|c: char| c.is_whitespace() || c == '"').next() {
                match addr.parse() {
                    Ok(addr) => break (addr, https),
                    Err(_) => {
                        let _ = child.kill();
                        panic!("unreadable listening address in {line:?}");
                    }
                }
            }
        };
        let stdin = child.stdin.take();
        Self { child, addr, https, stdin, logs }
    }

    /// Waits for a log line containing `needle`.
    pub fn wait_for_log(&self, needle: &str) -> String {
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let line = self.logs.recv_timeout(left).unwrap_or_else(|_| panic!("no log line with {needle:?}"));
            if line.contains(needle) {
                return line;
            }
        }
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let status = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().expect("kill runs");
        assert!(status.success());
    }

    /// Waits for the process to exit, failing after `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = std::time::Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(std::time::Instant::now() < deadline, "tickfeed did not exit within {limit:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn ws_url(&self, path_and_query: &str) -> String {
        format!("ws://{}{}", self.addr, path_and_query)
    }

    /// Resident memory of the process, from `/proc/<pid>/status` (Linux).
    pub fn rss_kib(&self) -> u64 {
        self.status_field("VmRSS:")
    }

    /// Threads of the process, from `/proc/<pid>/status` (Linux).
    pub fn threads(&self) -> u64 {
        self.status_field("Threads:")
    }

    /// Open file descriptors of the process: entries of `/proc/<pid>/fd` (Linux).
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id())).expect("/proc/<pid>/fd is readable").count()
    }

    fn status_field(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).expect("/proc/<pid>/status");
        status
            .lines()
            .find_map(|line| line.strip_prefix(field))
            .and_then(|value| value.split_whitespace().next())
            .and_then(|value| value.parse().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc/<pid>/status"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A minimal HTTP/1.1 GET over a real socket: returns status and body.
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("send request");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.expect("read response");
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("status line");
    let (head, body) = text.split_once("\r\n\r\n").expect("header end");
    let body = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") { dechunk(body) } else { body.to_owned() };
    (status, body)
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}
