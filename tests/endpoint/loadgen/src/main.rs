//! Load generator for the endpoint benchmark.
//!
//! Registers `--jobs` jobs, then runs `--cycles` predict-and-report cycles (GET
//! /jobs/batch_size, then POST /report with a final, converged result) spread
//! round-robin over the jobs by `--concurrency` keep-alive connections, and prints
//! cycles/s, requests/s and per-request latency percentiles (one line of text and
//! one JSON line). The same wire works for wattwise and Zeus's server. One thread:
//! the machine's other core is left to the server under test.
//!
//! `wattwise-loadgen --url http://127.0.0.1:8080 [--jobs 256] [--concurrency 16]
//!  [--cycles 20000] [--warmup 1000] [--token T] [--label NAME]`

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

struct Args {
    url: String,
    jobs: u64,
    concurrency: u64,
    cycles: u64,
    warmup: u64,
    token: Option<String>,
    label: String,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        url: String::new(),
        jobs: 256,
        concurrency: 16,
        cycles: 20_000,
        warmup: 1_000,
        token: None,
        label: "endpoint".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag}: needs a value"));
        let num = |v: String| v.parse::<u64>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--url" => a.url = value()?,
            "--jobs" => a.jobs = num(value()?)?,
            "--concurrency" => a.concurrency = num(value()?)?,
            "--cycles" => a.cycles = num(value()?)?,
            "--warmup" => a.warmup = num(value()?)?,
            "--token" => a.token = Some(value()?),
            "--label" => a.label = value()?,
            other => return Err(format!("unknown flag {other}")),
        }
    }
    if a.url.is_empty() {
        return Err("--url is required".into());
    }
    if a.jobs == 0 || a.concurrency == 0 {
        return Err("--jobs and --concurrency must be > 0".into());
    }
    Ok(a)
}

/// One keep-alive HTTP/1.1 connection.
struct Conn {
    host: String,
    base_path: String,
    token: Option<String>,
    stream: BufReader<TcpStream>,
}

impl Conn {
    async fn open(url: &str, token: Option<String>) -> Result<Conn, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or("only http:// URLs are supported")?;
        let (host, base_path) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        let tcp = TcpStream::connect(host)
            .await
            .map_err(|e| format!("connect {host}: {e}"))?;
        tcp.set_nodelay(true).map_err(|e| e.to_string())?;
        Ok(Conn {
            host: host.to_string(),
            base_path: base_path.to_string(),
            token,
            stream: BufReader::new(tcp),
        })
    }

    async fn call(
        &mut self,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> Result<(u16, Vec<u8>), String> {
        let mut req = format!(
            "{method} {}{path} HTTP/1.1\r\nHost: {}\r\nConnection: keep-alive\r\n",
            self.base_path, self.host
        );
        if let Some(t) = &self.token {
            req.push_str(&format!("Authorization: Bearer {t}\r\n"));
        }
        let body = body.unwrap_or("");
        if !body.is_empty() || method == "POST" {
            req.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                body.len()
            ));
        }
        req.push_str("\r\n");
        req.push_str(body);
        let w = self.stream.get_mut();
        w.write_all(req.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut line = String::new();
        self.stream
            .read_line(&mut line)
            .await
            .map_err(|e| e.to_string())?;
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or(format!("bad status line {line:?}"))?;
        let mut length = 0usize;
        loop {
            line.clear();
            let n = self
                .stream
                .read_line(&mut line)
                .await
                .map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("connection closed".into());
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    length = v.trim().parse().map_err(|_| "bad content-length")?;
                } else if k.eq_ignore_ascii_case("transfer-encoding") {
                    return Err("chunked responses are not supported".into());
                }
            }
        }
        let mut buf = vec![0u8; length];
        self.stream
            .read_exact(&mut buf)
            .await
            .map_err(|e| e.to_string())?;
        Ok((status, buf))
    }
}

fn job_spec(job_id: &str, prefix: &str) -> String {
    json!({
        "job_id": job_id, "job_id_prefix": prefix,
        "batch_sizes": [32, 64, 128, 256, 512], "default_batch_size": 128,
        "eta_knob": 0.5, "beta_knob": 2.0, "target_metric": 0.5, "higher_is_better_metric": true,
        "max_epochs": 100, "num_pruning_rounds": 2, "window_size": 0,
        "mab_prior_mean": 0.0, "mab_prior_precision": 0.0, "mab_num_explorations": 2, "mab_seed": 1,
        "max_power": 3000.0, "number_of_gpus": 10, "gpu_model": "A100"
    })
    .to_string()
}

/// Per-epoch time and energy of a batch size: a bowl around 128.
fn workload(bs: u64) -> (f64, f64) {
    let x = (bs as f64 / 128.0).log2();
    (100.0 * (1.0 + 0.2 * x * x), 20_000.0 * (1.0 + 0.3 * x * x))
}

struct Samples {
    predict: Vec<u32>,
    report: Vec<u32>,
    errors: u64,
    first_error: Option<String>,
}

impl Samples {
    /// Counts a failed call, keeping the first failure's answer.
    fn error(&mut self, call: &str, status: u16, body: &[u8]) {
        self.errors += 1;
        self.first_error
            .get_or_insert_with(|| format!("{call} {status}: {}", String::from_utf8_lossy(body)));
    }
}

async fn worker(
    args: Arc<Args>,
    ids: Arc<Vec<String>>,
    next: Arc<AtomicU64>,
    total: u64,
    record_from: u64,
) -> Result<Samples, String> {
    let mut conn = Conn::open(&args.url, args.token.clone()).await?;
    let mut s = Samples {
        predict: Vec::new(),
        report: Vec::new(),
        errors: 0,
        first_error: None,
    };
    loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        if i >= total {
            return Ok(s);
        }
        let record = i >= record_from;
        let job = &ids[(i % ids.len() as u64) as usize];
        let t0 = Instant::now();
        let (status, body) = conn
            .call("GET", &format!("/jobs/batch_size?job_id={job}"), None)
            .await?;
        let t1 = Instant::now();
        if status != 200 {
            s.error("predict", status, &body);
            continue;
        }
        let trial: Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
        let bs = trial["batch_size"].as_u64().unwrap_or(128);
        let (t, e) = workload(bs);
        let report = json!({
            "job_id": job, "batch_size": bs, "trial_number": trial["trial_number"],
            "time": t, "energy": e, "metric": 0.9, "current_epoch": 1
        })
        .to_string();
        let (status, body) = conn.call("POST", "/report", Some(&report)).await?;
        let t2 = Instant::now();
        if status != 200 {
            s.error("report", status, &body);
            continue;
        }
        if record {
            s.predict.push((t1 - t0).as_micros() as u32);
            s.report.push((t2 - t1).as_micros() as u32);
        }
    }
}

fn pct(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args = match parse_args() {
        Ok(a) => Arc::new(a),
        Err(e) => {
            eprintln!("loadgen: {e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = run(args).await {
        eprintln!("loadgen: {e}");
        std::process::exit(1);
    }
}

async fn run(args: Arc<Args>) -> Result<(), String> {
    let prefix = format!(
        "bench{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() % 1_000_000_000)
            .unwrap_or(0)
    );
    let ids: Vec<String> = (0..args.jobs).map(|i| format!("{prefix}-{i}")).collect();
    let mut conn = Conn::open(&args.url, args.token.clone()).await?;
    for id in &ids {
        let (status, body) = conn
            .call("POST", "/jobs", Some(&job_spec(id, &prefix)))
            .await?;
        if status != 201 && status != 200 {
            return Err(format!(
                "register {id}: {status} {}",
                String::from_utf8_lossy(&body)
            ));
        }
    }
    drop(conn);
    let total = args.warmup + args.cycles;
    let next = Arc::new(AtomicU64::new(0));
    let ids = Arc::new(ids);
    let mut tasks = Vec::new();
    for _ in 0..args.concurrency {
        tasks.push(tokio::spawn(worker(
            args.clone(),
            ids.clone(),
            next.clone(),
            total,
            args.warmup,
        )));
    }
    // Wait for the warm-up to be handed out, then time the rest.
    while next.load(Ordering::Relaxed) < args.warmup {
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    let measured_from = Instant::now();
    let mut predict = Vec::new();
    let mut report = Vec::new();
    let mut errors = 0;
    let mut first_error = None;
    for t in tasks {
        let s = t.await.map_err(|e| e.to_string())??;
        predict.extend(s.predict);
        report.extend(s.report);
        errors += s.errors;
        first_error = first_error.or(s.first_error);
    }
    let secs = measured_from.elapsed().as_secs_f64();
    predict.sort_unstable();
    report.sort_unstable();
    let mut all: Vec<u32> = predict.iter().chain(&report).copied().collect();
    all.sort_unstable();
    let cycles = predict.len() as f64;
    let out = json!({
        "label": args.label, "jobs": args.jobs, "concurrency": args.concurrency,
        "cycles": predict.len(), "errors": errors, "seconds": secs,
        "cycles_per_s": cycles / secs, "requests_per_s": 2.0 * cycles / secs,
        "p50_ms": pct(&all, 0.5), "p90_ms": pct(&all, 0.9), "p99_ms": pct(&all, 0.99), "max_ms": pct(&all, 1.0),
        "predict_p50_ms": pct(&predict, 0.5), "predict_p99_ms": pct(&predict, 0.99),
        "report_p50_ms": pct(&report, 0.5), "report_p99_ms": pct(&report, 0.99),
    });
    println!(
        "{}: {} cycles over {} jobs, {} connections: {:.0} req/s ({:.0} cycles/s), p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms, {} errors",
        args.label, predict.len(), args.jobs, args.concurrency, 2.0 * cycles / secs, cycles / secs,
        pct(&all, 0.5), pct(&all, 0.99), pct(&all, 1.0), errors
    );
    println!("{out}");
    if let Some(e) = first_error {
        eprintln!("loadgen: first error: {e}");
    }
    if errors > 0 {
        return Err(format!("{errors} failed cycles"));
    }
    Ok(())
}
