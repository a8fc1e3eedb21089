//! A real Prometheus for benchmarks to compare against: a process started on a
//! free loopback port with its own storage directory and killed when dropped
//! (also when the benchmark panics), a tiny exporter for it to scrape, and
//! readers for its query API and its own `/metrics`.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The binary: `$WARDEN_BENCH_PROMETHEUS`, else `prometheus` on the `PATH`.
pub(crate) fn binary() -> String {
    std::env::var("WARDEN_BENCH_PROMETHEUS").unwrap_or_else(|_| "prometheus".into())
}

/// Returns the first line of `prometheus --version`, or why it cannot run.
pub(crate) fn version(binary: &str) -> Result<String, String> {
    match Command::new(binary).arg("--version").output() {
        Ok(out) if out.status.success() => {
            // Prometheus 2.x prints its version on stderr.
            let text = [out.stdout, out.stderr].concat();
            Ok(String::from_utf8_lossy(&text)
                .lines()
                .next()
                .unwrap_or("")
                .to_owned())
        }
        Ok(out) => Err(format!("`{binary} --version` failed with {}", out.status)),
        Err(e) => Err(format!("cannot run `{binary}`: {e}")),
    }
}

/// A port nobody listens on now. Another process could take it before
/// Prometheus binds it, which is rare enough on loopback for a benchmark.
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("cannot bind a loopback port")
        .port()
}

/// Serves `body` as Prometheus text format to every request, from a thread
/// that lives as long as the process. Returns its `host:port`.
pub(crate) fn serve_exposition(body: String) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("cannot bind the exporter");
    let addr = listener.local_addr().unwrap().to_string();
    let body: Arc<[u8]> = body.into_bytes().into();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            // Errors belong to one scrape only; Prometheus retries next interval.
            let _ = respond(stream, &body);
        }
    });
    addr
}

fn respond(stream: TcpStream, body: &[u8]) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream);
    // Prometheus sends a GET with no body: the request ends at the blank line.
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" || line == "\n" {
            break;
        }
    }
    let mut stream = reader.into_inner();
    write!(
        stream,
        "HTTP/1.1 200 OK\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    )?;
    stream.write_all(body)?;
    stream.flush()
}

/// A running Prometheus; dropping it kills the process.
pub(crate) struct Prometheus {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    log: PathBuf,
}

impl Prometheus {
    /// Starts `binary` with `config` (a prometheus.yml) in `dir`, storing its
    /// TSDB and log there, and waits until it reports ready.
    pub(crate) fn start(binary: &str, dir: &Path, config: &Path) -> Prometheus {
        let addr = format!("127.0.0.1:{}", free_port());
        let log = dir.join("prometheus.log");
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `{binary}`: {e}"));
        let mut p = Prometheus {
            child,
            url: format!("http://{addr}"),
            log,
        };
        p.wait_until("Prometheus reports ready", Duration::from_secs(60), |p| {
            ureq::get(&format!("{}/-/ready", p.url)).call().is_ok()
        });
        p
    }

    /// Polls `ready` every 100 ms until it is true; panics with Prometheus'
    /// log after `timeout`, or at once if the process has exited.
    pub(crate) fn wait_until(
        &mut self,
        what: &str,
        timeout: Duration,
        mut ready: impl FnMut(&Prometheus) -> bool,
    ) {
        let t = Instant::now();
        while !ready(self) {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "Prometheus exited ({status}) before {what}:\n{}",
                    self.log()
                );
            }
            assert!(
                t.elapsed() < timeout,
                "waited {timeout:?} for: {what}; Prometheus' log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// What Prometheus wrote to stderr so far.
    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The value of an instant query that yields one number, if it does now.
    pub(crate) fn query_number(&self, promql: &str) -> Option<f64> {
        let mut r = ureq::get(&format!("{}/api/v1/query", self.url))
            .query("query", promql)
            .call()
            .ok()?;
        let v: serde_json::Value =
            serde_json::from_str(&r.body_mut().read_to_string().ok()?).ok()?;
        v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
    }

    /// Prometheus' own `/metrics`, as text.
    pub(crate) fn self_metrics(&self) -> String {
        ureq::get(&format!("{}/metrics", self.url))
            .call()
            .and_then(|mut r| r.body_mut().read_to_string())
            .unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value of the sample of `metric` whose labels contain `label_part`, in
/// exposition `text`.
pub(crate) fn sample(text: &str, metric: &str, label_part: &str) -> Option<f64> {
    text.lines()
        .filter(|l| {
            l.strip_prefix(metric)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .find(|l| l.contains(label_part))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}
