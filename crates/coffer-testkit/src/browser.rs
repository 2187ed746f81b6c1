//! Headless Chromium through chromedriver, spoken to in plain W3C WebDriver
//! (a handful of JSON calls, so no extra client library and its second copy
//! of `http`, `cookie` and ICU in the build).

use serde_json::{Value, json};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

fn find_program(candidates: &[&str]) -> Option<String> {
    candidates.iter().find(|p| Path::new(p).exists()).map(|p| (*p).to_owned()).or_else(|| {
        let name = candidates.first()?.rsplit('/').next()?;
        std::env::var_os("PATH")?
            .to_str()?
            .split(':')
            .map(|dir| format!("{dir}/{name}"))
            .find(|p| Path::new(p).exists())
    })
}

/// One browser session; the driver and browser stop when dropped.
pub struct Browser {
    driver: Child,
    endpoint: String,
    client: reqwest::Client,
    _profile: tempfile::TempDir,
}

impl Browser {
    pub async fn start() -> Browser {
        let driver_path = find_program(&["/usr/bin/chromedriver"]).unwrap_or_else(|| {
            panic!("chromedriver is not installed. Browser tests never skip: run `scripts/test`, which installs Debian's chromium and chromium-driver.")
        });
        let chromium = find_program(&["/usr/bin/chromium", "/usr/bin/chromium-browser"]).unwrap_or_else(|| {
            panic!("chromium is not installed. Browser tests never skip: run `scripts/test`, which installs it.")
        });
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port for chromedriver");
        let driver = Command::new(driver_path)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting chromedriver");
        let endpoint = format!("http://127.0.0.1:{port}");
        let client = crate::http_client();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = client.get(format!("{endpoint}/status")).send().await.ok();
            if let Some(r) = ready
                && let Ok(v) = r.json::<Value>().await
                && v["value"]["ready"] == true
            {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver did not become ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let profile = tempfile::tempdir().expect("a browser profile directory");
        let mut browser = Browser { driver, endpoint, client, _profile: profile };
        let args = json!([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1280,900",
            format!("--user-data-dir={}", browser._profile.path().display()),
        ]);
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium, "args": args}
        }}});
        let session = browser.call("POST", "/session", Some(caps)).await;
        let id = session["sessionId"].as_str().expect("a WebDriver session id").to_owned();
        browser.endpoint = format!("{}/session/{id}", browser.endpoint);
        browser
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.endpoint);
        let request = match method {
            "GET" => self.client.get(url),
            "DELETE" => self.client.delete(url),
            _ => self.client.post(url).json(&body.unwrap_or_else(|| json!({}))),
        };
        let response = request.send().await.expect("talking to chromedriver");
        let status = response.status();
        let value: Value = response.json().await.expect("chromedriver answers JSON");
        assert!(status.is_success(), "WebDriver {method} {path} failed: {value}");
        value["value"].clone()
    }

    pub async fn goto(&self, url: &str) {
        self.call("POST", "/url", Some(json!({"url": url}))).await;
    }

    pub async fn current_url(&self) -> String {
        self.call("GET", "/url", None).await.as_str().unwrap_or_default().to_owned()
    }

    pub async fn title(&self) -> String {
        self.call("GET", "/title", None).await.as_str().unwrap_or_default().to_owned()
    }

    /// Waits (up to 10 s) until the page title is `expected`, as after a
    /// form post the next page takes a moment to arrive.
    pub async fn wait_for_title(&self, expected: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let title = self.title().await;
            if title == expected {
                return;
            }
            assert!(Instant::now() < deadline, "the page title stayed {title:?}, expected {expected:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits (up to 10 s) until an element matches, as after a form post
    /// that comes back to a page of the same title; returns the first.
    pub async fn wait_for(&self, css: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.count(css).await == 0 {
            assert!(Instant::now() < deadline, "no element matched {css:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.find(css).await
    }

    /// Waits (up to 10 s) until the first element matching `css` shows text
    /// containing `needle`: after a form post that comes back to the same
    /// address, the old page may still be there for a moment. Read in one
    /// script, so a page replaced meanwhile is never a stale element.
    pub async fn wait_for_text(&self, css: &str, needle: &str) -> String {
        let script = "const e = document.querySelector(arguments[0]); return e ? e.innerText : null;";
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let found = self.call("POST", "/execute/sync", Some(json!({"script": script, "args": [css]}))).await;
            let text = found.as_str().unwrap_or_default().to_owned();
            if text.contains(needle) {
                return text;
            }
            assert!(Instant::now() < deadline, "{css:?} never showed {needle:?} (last: {text:?})");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The first element matching a CSS selector (panics when none does).
    pub async fn find(&self, css: &str) -> String {
        let found = self.call("POST", "/element", Some(json!({"using": "css selector", "value": css}))).await;
        found[ELEMENT_KEY].as_str().expect("an element reference").to_owned()
    }

    /// How many elements match a CSS selector.
    pub async fn count(&self, css: &str) -> usize {
        let found = self.call("POST", "/elements", Some(json!({"using": "css selector", "value": css}))).await;
        found.as_array().map_or(0, Vec::len)
    }

    /// The text of an element as a person sees it (rendered, not source).
    pub async fn text(&self, element: &str) -> String {
        self.call("GET", &format!("/element/{element}/text"), None).await.as_str().unwrap_or_default().to_owned()
    }

    /// Types text into an input, as a person would.
    pub async fn fill(&self, element: &str, text: &str) {
        self.call("POST", &format!("/element/{element}/value"), Some(json!({"text": text}))).await;
    }

    /// Picks the option of a `<select>` whose value is `value`, as a person
    /// picks it from the list.
    pub async fn choose(&self, select_css: &str, value: &str) {
        let option = self.find(&format!("{select_css} option[value=\"{value}\"]")).await;
        self.click(&option).await;
    }

    /// How far the page is wider than the window, in CSS pixels (0 when
    /// nothing scrolls sideways).
    pub async fn sideways_overflow(&self) -> i64 {
        let script = "return document.documentElement.scrollWidth - document.documentElement.clientWidth;";
        self.call("POST", "/execute/sync", Some(json!({"script": script, "args": []}))).await.as_i64().unwrap_or(-1)
    }

    /// Sets the window's size in CSS pixels (a phone is 390 wide).
    pub async fn resize(&self, width: u32, height: u32) {
        self.call("POST", "/window/rect", Some(json!({"width": width, "height": height}))).await;
    }

    /// Empties an input.
    pub async fn clear(&self, element: &str) {
        self.call("POST", &format!("/element/{element}/clear"), Some(json!({}))).await;
    }

    /// The current value of an input (what a person sees in the box).
    pub async fn value(&self, element: &str) -> String {
        self.call("GET", &format!("/element/{element}/property/value"), None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// An attribute of an element (`href`, say).
    pub async fn attribute(&self, element: &str, name: &str) -> String {
        self.call("GET", &format!("/element/{element}/attribute/{name}"), None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    pub async fn click(&self, element: &str) {
        self.call("POST", &format!("/element/{element}/click"), None).await;
    }

    /// Where an element is on the page: (x, y, width, height) in CSS pixels.
    pub async fn rect(&self, element: &str) -> (f64, f64, f64, f64) {
        let r = self.call("GET", &format!("/element/{element}/rect"), None).await;
        let get = |k: &str| r[k].as_f64().unwrap_or_default();
        (get("x"), get("y"), get("width"), get("height"))
    }

    /// A computed CSS property of an element.
    pub async fn css(&self, element: &str, property: &str) -> String {
        self.call("GET", &format!("/element/{element}/css/{property}"), None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Every cookie the browser holds for the current page, HttpOnly ones too.
    pub async fn cookies(&self) -> Vec<Value> {
        self.call("GET", "/cookie", None).await.as_array().cloned().unwrap_or_default()
    }

    /// Saves a PNG of the viewport.
    pub async fn screenshot(&self, path: &Path) {
        use base64::Engine;
        let data = self.call("GET", "/screenshot", None).await;
        // WebDriver sends screenshots as standard base64.
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(data.as_str().unwrap_or_default())
            .expect("screenshot is base64");
        std::fs::write(path, bytes).expect("writing the screenshot");
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Ends the session (closing Chromium) before stopping the driver.
        let endpoint = self.endpoint.clone();
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            runtime.block_on(async { crate::http_client().delete(endpoint).send().await.ok() })
        })
        .join();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
