//! A headless chromium driven through chromedriver (W3C WebDriver), for tests that use
//! the served UI the way a person does: open pages, type, click, read the DOM, take
//! screenshots.
//!
//! The protocol is a handful of JSON calls over HTTP, spoken with `ureq` (already in the
//! build through hf-hub); the WebDriver client crates (fantoccini, thirtyfour) would add
//! an async runtime and an HTTP stack to the test build for these few calls.

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use base64::Engine;
use serde_json::{Value, json};

/// The key under which WebDriver returns an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A free loopback port.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// A chromedriver process and one headless chromium session; both end on drop.
pub struct Browser {
    driver: Child,
    base: String,
    session: String,
}

/// A program on `PATH`, or a message saying how to install it.
fn program(name: &str) -> PathBuf {
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join(name))
                .find(|path| path.is_file())
        })
        .unwrap_or_else(|| panic!("{name} is missing: run `bash scripts/setup.sh --test-tools`"))
}

impl Browser {
    /// Starts chromedriver on a free port and opens a headless chromium session.
    pub fn start() -> Self {
        let port = free_port();
        let driver = Command::new(program("chromedriver"))
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting chromedriver");
        let base = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        while ureq::get(&format!("{base}/status")).call().is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "chromedriver did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut browser = Self {
            driver,
            base,
            session: String::new(),
        };
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": program("chromium"),
                "args": ["--headless", "--no-sandbox", "--disable-gpu",
                         "--hide-scrollbars", "--window-size=1200,1400"],
            },
        }}});
        let created = browser.call("POST", "/session", Some(capabilities));
        browser.session = created["sessionId"]
            .as_str()
            .expect("a session id")
            .to_string();
        browser
    }

    /// One WebDriver call; its `value`. Panics with the driver's message on an error.
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.base);
        let request = ureq::request(method, &url).timeout(Duration::from_secs(60));
        let response = match body {
            Some(body) => request
                .set("Content-Type", "application/json")
                .send_string(&body.to_string()),
            None => request.call(),
        };
        let text = match response {
            Ok(response) => response.into_string().unwrap(),
            Err(ureq::Error::Status(status, response)) => panic!(
                "WebDriver {method} {path}: {status} {}",
                response.into_string().unwrap_or_default()
            ),
            Err(error) => panic!("WebDriver {method} {path}: {error}"),
        };
        serde_json::from_str::<Value>(&text).unwrap()["value"].take()
    }

    fn session_call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.call(method, &format!("/session/{}{path}", self.session), body)
    }

    /// Opens `url` and waits for the page to load.
    pub fn open(&self, url: &str) {
        self.session_call("POST", "/url", Some(json!({"url": url})));
    }

    /// The URL shown now.
    pub fn url(&self) -> String {
        self.session_call("GET", "/url", None)
            .as_str()
            .unwrap()
            .to_string()
    }

    /// The DOM as HTML.
    pub fn dom(&self) -> String {
        self.session_call("GET", "/source", None)
            .as_str()
            .unwrap()
            .to_string()
    }

    /// The first element matching a CSS selector.
    pub fn find(&self, selector: &str) -> String {
        let found = self.session_call(
            "POST",
            "/element",
            Some(json!({"using": "css selector", "value": selector})),
        );
        found[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no element {selector}: {found}"))
            .to_string()
    }

    /// Replaces the text of an input or text area.
    pub fn type_into(&self, selector: &str, text: &str) {
        let element = self.find(selector);
        self.session_call(
            "POST",
            &format!("/element/{element}/clear"),
            Some(json!({})),
        );
        self.session_call(
            "POST",
            &format!("/element/{element}/value"),
            Some(json!({"text": text})),
        );
    }

    /// Clicks an element that leads to another page (a link, a form's button) and waits
    /// until the browser has loaded that page: the old document is marked first, and
    /// the call returns once a document without the mark is complete (WebDriver's click
    /// may return before a slow answer arrives).
    pub fn click(&self, selector: &str) {
        let element = self.find(selector);
        self.eval("window.__saeidxBefore = true; return null");
        self.session_call(
            "POST",
            &format!("/element/{element}/click"),
            Some(json!({})),
        );
        let started = Instant::now();
        let loaded =
            "return window.__saeidxBefore === undefined && document.readyState === 'complete'";
        while self.eval(loaded) != Value::Bool(true) {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "clicking {selector} loaded no new page"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Clicks an element that stays on the page (a link to an anchor of it).
    pub fn click_in_page(&self, selector: &str) {
        let element = self.find(selector);
        self.session_call(
            "POST",
            &format!("/element/{element}/click"),
            Some(json!({})),
        );
    }

    /// Runs a script in the page and returns its result.
    pub fn eval(&self, script: &str) -> Value {
        self.session_call(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": []})),
        )
    }

    /// Saves a PNG screenshot of the page at `path`.
    pub fn screenshot(&self, path: &Path) {
        let png = self.session_call("GET", "/screenshot", None);
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap())
            .unwrap();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::write(path, bytes).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let url = format!("{}/session/{}", self.base, self.session);
            let _ = ureq::delete(&url).call();
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
