//! A real headless browser for the UI tests: Debian's chromium driven through chromedriver's
//! W3C WebDriver endpoints (plain JSON over HTTP, so no client crate).
use std::{
    io::{Read as _, Write as _},
    net::{TcpListener, TcpStream},
    path::Path,
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use base64::Engine as _;
use serde_json::{Value, json};

pub struct Browser {
    driver: Child,
    addr: String,
    session: String,
}

impl Browser {
    /// chromedriver on a free port and one headless chromium session, with the browser's
    /// console log kept and `window.gc` exposed (for heap figures after a collection).
    pub fn start() -> anyhow::Result<Browser> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting chromedriver")?;
        let addr = format!("127.0.0.1:{port}");
        let mut b = Browser {
            driver,
            addr,
            session: String::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while let Err(e) = b.call("GET", "/status", None) {
            if Instant::now() > deadline {
                bail!("chromedriver did not answer in 20 s: {e:#}");
            }
            thread::sleep(Duration::from_millis(100));
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            // The TLS test's agent serves a certificate of the test's own CA.
            "acceptInsecureCerts": true,
            "goog:loggingPrefs": {"browser": "ALL"},
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1400,1600",
                         "--enable-precise-memory-info", "--js-flags=--expose-gc"],
            },
        }}});
        let v = b.call("POST", "/session", Some(&caps))?;
        b.session = v["sessionId"]
            .as_str()
            .context("no session id")?
            .to_string();
        Ok(b)
    }

    /// One WebDriver command; its `value`, or the driver's error.
    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> anyhow::Result<Value> {
        let body = body.map(Value::to_string).unwrap_or_default();
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            self.addr,
            body.len()
        );
        let (code, answer) = exchange(&self.addr, &request)?;
        let v: Value = serde_json::from_str(&answer)
            .with_context(|| format!("{method} {path}: {code} {answer}"))?;
        if code != 200 {
            bail!("{method} {path}: {code} {}", v["value"]);
        }
        Ok(v["value"].clone())
    }

    fn session_call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        self.call(method, &format!("/session/{}{path}", self.session), body)
    }

    /// Navigates and waits for the document to load.
    pub fn goto(&self, url: &str) -> anyhow::Result<()> {
        self.session_call("POST", "/url", Some(&json!({"url": url})))?;
        Ok(())
    }

    pub fn url(&self) -> anyhow::Result<String> {
        Ok(self
            .session_call("GET", "/url", None)?
            .as_str()
            .unwrap_or("")
            .to_string())
    }

    /// Runs `script` (a function body; `return` gives the value) in the page.
    pub fn eval(&self, script: &str) -> anyhow::Result<Value> {
        self.session_call(
            "POST",
            "/execute/sync",
            Some(&json!({"script": script, "args": []})),
        )
    }

    /// Waits until `script` returns a truthy value; that value.
    pub fn wait_for(&self, what: &str, script: &str, within: Duration) -> anyhow::Result<Value> {
        let deadline = Instant::now() + within;
        loop {
            let v = self.eval(script)?;
            let truthy = !(v.is_null() || v == json!(false) || v == json!(0) || v == json!(""));
            if truthy {
                return Ok(v);
            }
            if Instant::now() > deadline {
                // What the page shows, for the failure's reader.
                let page = self
                    .eval("const s = document.getElementById('status'); return (s ? 'status: ' + s.textContent + '\\n' : '') + [...document.querySelectorAll('main > h1, main > section, main > p')].map(e => e.innerText.slice(0, 600)).join('\\n---\\n')")
                    .unwrap_or_default();
                let console =
                    self.session_call("POST", "/se/log", Some(&json!({"type": "browser"})));
                bail!(
                    "{what}: not within {within:?} at {}\npage: {}\nconsole: {console:?}",
                    self.url().unwrap_or_default(),
                    page.as_str().unwrap_or("")
                );
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Clicks the first element `css` selects (a real click, as a user's).
    pub fn click(&self, css: &str) -> anyhow::Result<()> {
        let el = self.session_call(
            "POST",
            "/element",
            Some(&json!({"using": "css selector", "value": css})),
        )?;
        let id = el
            .as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .with_context(|| format!("no element {css}"))?
            .to_string();
        self.session_call("POST", &format!("/element/{id}/click"), Some(&json!({})))?;
        Ok(())
    }

    /// Presses and releases one key (a WebDriver key code such as `\u{E004}`, Tab), sent to
    /// whatever has the focus, as a keyboard would.
    pub fn key(&self, key: &str) -> anyhow::Result<()> {
        self.session_call(
            "POST",
            "/actions",
            Some(
                &json!({"actions": [{"type": "key", "id": "keyboard", "actions": [
                {"type": "keyDown", "value": key}, {"type": "keyUp", "value": key}]}]}),
            ),
        )?;
        Ok(())
    }

    /// A Chrome DevTools Protocol command through chromedriver (e.g. extra request headers).
    pub fn cdp(&self, cmd: &str, params: Value) -> anyhow::Result<Value> {
        self.session_call(
            "POST",
            "/goog/cdp/execute",
            Some(&json!({"cmd": cmd, "params": params})),
        )
    }

    /// Console messages at level SEVERE since the last call (errors, failed loads).
    pub fn console_errors(&self) -> anyhow::Result<Vec<String>> {
        let log = self.session_call("POST", "/se/log", Some(&json!({"type": "browser"})))?;
        Ok(log
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["level"] == "SEVERE")
            .map(|e| e["message"].as_str().unwrap_or("").to_string())
            .collect())
    }

    /// A PNG of the viewport, written to `path`.
    pub fn screenshot(&self, path: &Path) -> anyhow::Result<()> {
        let v = self.session_call("GET", "/screenshot", None)?;
        let png =
            base64::engine::general_purpose::STANDARD.decode(v.as_str().context("no image")?)?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, png)?;
        Ok(())
    }
}

/// One request on a new connection, read to its Content-Length: chromedriver keeps the
/// connection open after answering, whatever the request asked.
fn exchange(addr: &str, request: &str) -> anyhow::Result<(u16, String)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    s.write_all(request.as_bytes())?;
    let mut raw = Vec::new();
    let mut chunk = [0u8; 65536];
    let (head_end, length) = loop {
        let n = s.read(&mut chunk)?;
        anyhow::ensure!(n > 0, "chromedriver closed the connection before answering");
        raw.extend_from_slice(&chunk[..n]);
        if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw[..i]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .context("no Content-Length")?;
            break (i + 4, length);
        }
    };
    while raw.len() < head_end + length {
        let n = s.read(&mut chunk)?;
        anyhow::ensure!(n > 0, "answer cut short");
        raw.extend_from_slice(&chunk[..n]);
    }
    let head = String::from_utf8_lossy(&raw[..head_end]);
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("no status code")?;
    Ok((
        code,
        String::from_utf8_lossy(&raw[head_end..head_end + length]).into_owned(),
    ))
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self.session_call("DELETE", "", None);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
