//! Prometheus metrics of the GPUs and of the run in progress: what the command
//! `wattwise exporter --listen ADDR` serves ([`crate::commands::exporter`]), and
//! `--metrics ADDR` on `measure` and `run`.
//!
//! Per GPU: the energy counter (J, a counter), the power drawn and the power limit
//! (W, gauges), with dcgm-exporter's GPU labels (`gpu`, `UUID`, `modelName`,
//! `Hostname`) so the series join with DCGM's. While a run is going: its job id,
//! trial number, batch size, epochs reported, the power optimizer's state, and
//! which GPUs it uses. The GPUs are read at each scrape through an NVML handle of
//! the exporter's own; `prometheus-client` writes the format (OpenMetrics when the
//! scraper accepts it, Prometheus text 0.0.4 otherwise). The HTTP side is a small
//! loop on a std `TcpListener`: one request per connection, `GET /metrics`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::{Registry, Unit};
use wattwise_core::power::PowerState;

use crate::log::log;
use crate::nvml::gpu::{GpuError, Gpus, NvmlGpus};

/// What can go wrong starting the exporter.
#[derive(Debug, thiserror::Error)]
pub enum ExporterError {
    /// The address does not parse or resolve.
    #[error("{flag} {addr:?}: must be HOST:PORT or a PORT ({reason})")]
    BadAddress {
        /// The flag that gave it.
        flag: &'static str,
        /// The text given.
        addr: String,
        /// Why it is refused.
        reason: String,
    },
    /// The address cannot be bound.
    #[error("{flag} {addr}: cannot listen there: {source}")]
    Bind {
        /// The flag that gave it.
        flag: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The OS's reason.
        source: std::io::Error,
    },
}

/// Parses a listen address: `HOST:PORT` (a name is resolved), or a bare port,
/// which binds 127.0.0.1.
pub fn parse_listen(flag: &'static str, text: &str) -> Result<SocketAddr, ExporterError> {
    let bad = |reason: String| ExporterError::BadAddress {
        flag,
        addr: text.to_string(),
        reason,
    };
    if let Ok(port) = text.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    text.to_socket_addrs()
        .map_err(|e| bad(e.to_string()))?
        .next()
        .ok_or_else(|| bad("it resolves to no address".into()))
}

/// A GPU's identity, read once.
#[derive(Clone, Debug, PartialEq)]
pub struct GpuIdentity {
    /// NVML index (dcgm-exporter's `gpu` label).
    pub index: u32,
    /// UUID (`UUID`).
    pub uuid: String,
    /// Model name (`modelName`).
    pub model: String,
}

/// A GPU's figures at one scrape.
#[derive(Clone, Debug, PartialEq)]
pub struct GpuReading {
    /// Which GPU.
    pub id: GpuIdentity,
    /// Energy counter, mJ (`None`: the GPU has none, as before Volta; no series).
    pub energy_mj: Option<u64>,
    /// Power drawn, mW.
    pub power_mw: u32,
    /// Power limit, mW.
    pub limit_mw: u32,
    /// How often the energy counter moves, s (learned once; `None` without a
    /// counter).
    pub energy_update_period_s: Option<f64>,
}

/// The run in progress, as the exporter shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct RunInfo {
    /// The job.
    pub job_id: String,
    /// The trial (run) number.
    pub trial_number: u64,
    /// The batch size of this run.
    pub batch_size: u32,
    /// Epochs reported so far.
    pub epochs: u32,
    /// The power limit optimizer's state: one of [`POWER_STATES`].
    pub power_state: &'static str,
    /// The GPUs the run uses (NVML indices).
    pub gpus: Vec<u32>,
}

/// The power optimizer's states, as the `state` label names them.
pub const POWER_STATES: [&str; 4] = ["ready", "warmup", "profiling", "done"];

/// The `state` label of a power optimizer state.
pub fn power_state_name(state: &PowerState) -> &'static str {
    match state {
        PowerState::Ready { .. } => POWER_STATES[0],
        PowerState::Warmup { .. } => POWER_STATES[1],
        PowerState::Profiling { .. } => POWER_STATES[2],
        PowerState::Done { .. } => POWER_STATES[3],
    }
}

/// The run's side of the exporter: `run` writes the run in progress here, the
/// exporter reads it at each scrape. Without an exporter every call does nothing.
#[derive(Clone, Debug, Default)]
pub struct RunStatus(Option<Arc<Mutex<Option<RunInfo>>>>);

impl RunStatus {
    fn enabled() -> RunStatus {
        RunStatus(Some(Arc::default()))
    }

    fn with(&self, f: impl FnOnce(&mut Option<RunInfo>)) {
        if let Some(shared) = &self.0 {
            let mut guard = match shared.lock() {
                Ok(g) => g,
                Err(poisoned) => poisoned.into_inner(),
            };
            f(&mut guard);
        }
    }

    /// A run started.
    pub fn start(&self, info: RunInfo) {
        self.with(|r| *r = Some(info));
    }

    /// Notes the epochs reported and the optimizer's state.
    pub fn progress(&self, epochs: u32, state: &PowerState) {
        self.with(|r| {
            if let Some(info) = r {
                info.epochs = epochs;
                info.power_state = power_state_name(state);
            }
        });
    }

    /// The run's command ended.
    pub fn end(&self) {
        self.with(|r| *r = None);
    }

    fn current(&self) -> Option<RunInfo> {
        let mut out = None;
        self.with(|r| out = r.clone());
        out
    }
}

/// Everything one scrape shows.
#[derive(Clone, Debug, PartialEq)]
pub struct Snapshot {
    /// This host's name (`Hostname`).
    pub hostname: String,
    /// The GPUs.
    pub gpus: Vec<GpuReading>,
    /// The run in progress, if any.
    pub run: Option<RunInfo>,
}

type Labels = Vec<(&'static str, String)>;

fn gpu_labels(id: &GpuIdentity, hostname: &str) -> Labels {
    vec![
        ("gpu", id.index.to_string()),
        ("UUID", id.uuid.clone()),
        ("modelName", id.model.clone()),
        ("Hostname", hostname.to_string()),
    ]
}

/// Hands a snapshot to `prometheus-client` at encoding time.
#[derive(Debug)]
struct SnapshotCollector(Snapshot);

fn family<M: EncodeMetric>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    series: &[(Labels, M)],
) -> Result<(), std::fmt::Error> {
    let Some((_, first)) = series.first() else {
        return Ok(());
    };
    let mut metric = encoder.encode_descriptor(name, help, unit, first.metric_type())?;
    for (labels, value) in series {
        value.encode(metric.encode_family(labels)?)?;
    }
    Ok(())
}

impl Collector for SnapshotCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = &self.0;
        let watts = Unit::Other("watts".into());
        let per_gpu = |f: &dyn Fn(&GpuReading) -> f64| -> Vec<(Labels, ConstGauge<f64>)> {
            s.gpus
                .iter()
                .map(|g| (gpu_labels(&g.id, &s.hostname), ConstGauge::new(f(g))))
                .collect()
        };
        let energy: Vec<(Labels, ConstCounter<f64>)> = s
            .gpus
            .iter()
            .filter_map(|g| {
                let joules = g.energy_mj? as f64 / 1000.0;
                Some((gpu_labels(&g.id, &s.hostname), ConstCounter::new(joules)))
            })
            .collect();
        family(
            &mut encoder,
            "wattwise_gpu_energy",
            "GPU energy counter since the driver loaded (NVML total energy consumption)",
            Some(&Unit::Joules),
            &energy,
        )?;
        let periods: Vec<(Labels, ConstGauge<f64>)> = s
            .gpus
            .iter()
            .filter(|g| g.energy_mj.is_some())
            .filter_map(|g| {
                let period = g.energy_update_period_s?;
                Some((gpu_labels(&g.id, &s.hostname), ConstGauge::new(period)))
            })
            .collect();
        family(
            &mut encoder,
            "wattwise_gpu_energy_update_period",
            "How often the GPU's energy counter moves, learned once by polling it: an increase over a window of fewer than a few periods is uncertain by up to a period of power at each edge",
            Some(&Unit::Seconds),
            &periods,
        )?;
        family(
            &mut encoder,
            "wattwise_gpu_power_usage",
            "GPU power draw",
            Some(&watts),
            &per_gpu(&|g| f64::from(g.power_mw) / 1000.0),
        )?;
        family(
            &mut encoder,
            "wattwise_gpu_power_limit",
            "GPU power limit (the one wattwise set while a run profiles or runs)",
            Some(&watts),
            &per_gpu(&|g| f64::from(g.limit_mw) / 1000.0),
        )?;
        let Some(run) = &s.run else {
            return Ok(());
        };
        let run_labels = || -> Labels {
            vec![
                ("job_id", run.job_id.clone()),
                ("trial_number", run.trial_number.to_string()),
                ("Hostname", s.hostname.clone()),
            ]
        };
        let gauge = |v: u32| vec![(run_labels(), ConstGauge::new(i64::from(v)))];
        family(
            &mut encoder,
            "wattwise_run_batch_size",
            "Batch size of the run in progress",
            None,
            &gauge(run.batch_size),
        )?;
        family(
            &mut encoder,
            "wattwise_run_epochs",
            "Epochs the run in progress has reported",
            None,
            &gauge(run.epochs),
        )?;
        let states: Vec<(Labels, ConstGauge<i64>)> = POWER_STATES
            .iter()
            .map(|&state| {
                let mut labels = run_labels();
                labels.push(("state", state.to_string()));
                (labels, ConstGauge::new(i64::from(state == run.power_state)))
            })
            .collect();
        family(
            &mut encoder,
            "wattwise_run_power_state",
            "Power limit optimizer of the run in progress: 1 for its state (ready, warmup, profiling, done), 0 for the others",
            None,
            &states,
        )?;
        let gpus: Vec<(Labels, ConstGauge<i64>)> = s
            .gpus
            .iter()
            .filter(|g| run.gpus.contains(&g.id.index))
            .map(|g| {
                let mut labels = run_labels();
                labels.extend(gpu_labels(&g.id, &s.hostname).into_iter().take(2));
                (labels, ConstGauge::new(1))
            })
            .collect();
        family(
            &mut encoder,
            "wattwise_run_gpu",
            "1 for each GPU the run in progress uses (join on gpu and Hostname)",
            None,
            &gpus,
        )
    }
}

/// Renders a snapshot: OpenMetrics text, or Prometheus text 0.0.4.
pub fn render(snapshot: &Snapshot, openmetrics: bool) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(SnapshotCollector(snapshot.clone())));
    let mut out = String::new();
    let encoded = if openmetrics {
        prometheus_client::encoding::text::encode(&mut out, &registry)
    } else {
        prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)
    };
    // Writing into a String cannot fail, and every name and value here is valid.
    encoded.expect("metrics encode into a String");
    out
}

/// This host's name.
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `len` bytes into the buffer.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "localhost".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// What the exporter reads at each scrape.
pub struct Source {
    gpus: Box<dyn Gpus + Send>,
    ids: Vec<GpuIdentity>,
    periods: Vec<f64>,
    hostname: String,
    run: RunStatus,
}

impl Source {
    /// The GPUs `indices` (all when `None`) through `gpus`.
    pub fn new(
        gpus: Box<dyn Gpus + Send>,
        indices: Option<&[u32]>,
        run: RunStatus,
    ) -> Result<Source, GpuError> {
        let indices: Vec<u32> = match indices {
            Some(list) => list.to_vec(),
            None => (0..gpus.count()?).collect(),
        };
        let ids = indices
            .iter()
            .map(|&index| {
                Ok(GpuIdentity {
                    index,
                    uuid: gpus.uuid(index)?,
                    model: gpus.name(index)?,
                })
            })
            .collect::<Result<_, GpuError>>()?;
        let periods = crate::nvml::energy_meter::learn::learned(&*gpus, &indices)?
            .iter()
            .map(|b| b.update_period_s)
            .collect();
        Ok(Source {
            gpus,
            ids,
            periods,
            hostname: hostname(),
            run,
        })
    }

    /// Reads every GPU now.
    pub fn read(&self) -> Result<Snapshot, GpuError> {
        let gpus = self
            .ids
            .iter()
            .zip(&self.periods)
            .map(|(id, &period)| {
                Ok(GpuReading {
                    energy_update_period_s: Some(period),
                    energy_mj: match self.gpus.total_energy(id.index) {
                        Ok(mj) => Some(mj),
                        Err(GpuError::NotSupported { .. }) => None,
                        Err(e) => return Err(e),
                    },
                    power_mw: self.gpus.power_usage(id.index)?,
                    limit_mw: self.gpus.power_limit(id.index)?,
                    id: id.clone(),
                })
            })
            .collect::<Result<_, GpuError>>()?;
        Ok(Snapshot {
            hostname: self.hostname.clone(),
            gpus,
            run: self.run.current(),
        })
    }
}

/// An HTTP answer.
#[derive(Debug, PartialEq)]
pub struct Answer {
    /// Status line after `HTTP/1.1 `.
    pub status: &'static str,
    /// Content type.
    pub content_type: &'static str,
    /// Body (not sent for HEAD).
    pub body: String,
}

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
const PLAIN: &str = "text/plain; charset=utf-8";

/// Answers a request head (request line and headers); `read` takes the snapshot.
pub fn answer(head: &str, read: impl FnOnce() -> Result<Snapshot, GpuError>) -> Answer {
    let plain = |status, body: &str| Answer {
        status,
        content_type: PLAIN,
        body: body.to_string(),
    };
    let mut lines = head.lines();
    let mut request = lines.next().unwrap_or("").split_whitespace();
    let (method, target) = (request.next().unwrap_or(""), request.next().unwrap_or(""));
    if method != "GET" && method != "HEAD" {
        return plain("405 Method Not Allowed", "only GET /metrics\n");
    }
    match target.split('?').next().unwrap_or("") {
        "/metrics" => {}
        "/" => return plain("200 OK", "wattwise exporter: the metrics are at /metrics\n"),
        _ => return plain("404 Not Found", "not found: the metrics are at /metrics\n"),
    }
    let openmetrics = lines.any(|l| {
        l.split_once(':').is_some_and(|(k, v)| {
            k.trim().eq_ignore_ascii_case("accept") && v.contains("application/openmetrics-text")
        })
    });
    match read() {
        Ok(snapshot) => Answer {
            status: "200 OK",
            content_type: if openmetrics {
                OPENMETRICS
            } else {
                PROMETHEUS_TEXT
            },
            body: render(&snapshot, openmetrics),
        },
        Err(e) => plain("503 Service Unavailable", &format!("{e}\n")),
    }
}

/// Longest request head read.
const MAX_HEAD: usize = 16 * 1024;

fn read_head(stream: &mut TcpStream) -> std::io::Result<String> {
    let mut head = Vec::new();
    let mut buf = [0u8; 2048];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_HEAD {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}

/// A bound exporter.
pub struct Exporter {
    listener: TcpListener,
    source: Source,
}

impl Exporter {
    /// Binds `addr` (as [`parse_listen`] reads it).
    pub fn bind(flag: &'static str, addr: &str, source: Source) -> anyhow::Result<Exporter> {
        let addr = parse_listen(flag, addr)?;
        let listener =
            TcpListener::bind(addr).map_err(|source| ExporterError::Bind { flag, addr, source })?;
        Ok(Exporter { listener, source })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    fn serve_one(&self, mut stream: TcpStream) -> std::io::Result<()> {
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        stream.set_write_timeout(Some(Duration::from_secs(5)))?;
        let head = read_head(&mut stream)?;
        let a = answer(&head, || self.source.read());
        let mut out = format!(
            "HTTP/1.1 {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            a.status,
            a.content_type,
            a.body.len()
        );
        if !head.starts_with("HEAD ") {
            out.push_str(&a.body);
        }
        stream.write_all(out.as_bytes())
    }

    /// How many GPUs it reads.
    pub fn gpu_count(&self) -> usize {
        self.source.ids.len()
    }

    /// Serves until `stop` says so (checked at least every half second).
    pub fn serve(&self, stop: impl Fn() -> bool) -> std::io::Result<()> {
        self.listener.set_nonblocking(true)?;
        use std::os::fd::AsRawFd;
        let fd = self.listener.as_raw_fd();
        while !stop() {
            crate::run::child::wait_readable(&[fd], Duration::from_millis(500));
            if stop() {
                break;
            }
            // Non-blocking: the poll may have ended on a timeout or a signal.
            if let Ok((stream, _)) = self.listener.accept() {
                let _ = stream.set_nonblocking(false);
                // A client that hangs up or stalls costs only its own answer.
                let _ = self.serve_one(stream);
            }
        }
        Ok(())
    }

    /// Serves on a thread of its own for the rest of the process.
    pub fn spawn(self) -> std::io::Result<()> {
        self.listener.set_nonblocking(true)?;
        std::thread::Builder::new()
            .name("metrics".into())
            .spawn(move || {
                let _ = self.serve(|| false);
            })?;
        Ok(())
    }
}

/// Starts the exporter of `measure` or `run` when `addr` is given (`--metrics`),
/// over the GPUs `indices` (all when `None`); the returned status feeds it the run.
pub fn start(addr: Option<&str>, indices: Option<&[u32]>) -> anyhow::Result<RunStatus> {
    let Some(addr) = addr else {
        return Ok(RunStatus::default());
    };
    let status = RunStatus::enabled();
    let source = Source::new(Box::new(NvmlGpus::open()?), indices, status.clone())?;
    let exporter = Exporter::bind("--metrics", addr, source)?;
    log(format!(
        "metrics at http://{}/metrics",
        exporter.local_addr()?
    ));
    exporter.spawn()?;
    Ok(status)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nvml::gpu::fake::FakeGpus;

    fn source(run: RunStatus) -> Source {
        let mut g = FakeGpus::new(2);
        g.gpus[0].energy_mj = Some(1_234_567);
        g.gpus[1].limit_mw = 212_500;
        Source::new(Box::new(g), None, run).unwrap()
    }

    #[test]
    fn listen_addresses() {
        assert_eq!(
            parse_listen("--listen", "9400").unwrap(),
            "127.0.0.1:9400".parse().unwrap()
        );
        assert_eq!(
            parse_listen("--listen", "0.0.0.0:9400").unwrap(),
            "0.0.0.0:9400".parse().unwrap()
        );
        let err = parse_listen("--metrics", "nowhere")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("--metrics \"nowhere\": must be HOST:PORT"),
            "{err}"
        );
        assert!(parse_listen("--metrics", "127.0.0.1:99999").is_err());
    }

    #[test]
    fn gpu_series_carry_dcgm_labels_in_both_formats() {
        let snapshot = source(RunStatus::default()).read().unwrap();
        let text = render(&snapshot, true);
        let host = hostname();
        let first = format!(
            "wattwise_gpu_energy_joules_total{{gpu=\"0\",UUID=\"GPU-00000000-0000-0000-0000-000000000000\",modelName=\"Fake GPU\",Hostname=\"{host}\"}} 1234.567"
        );
        assert!(text.contains(&first), "{text}");
        assert!(
            text.contains("# TYPE wattwise_gpu_energy_joules counter"),
            "{text}"
        );
        assert!(
            text.contains("# UNIT wattwise_gpu_power_limit_watts watts"),
            "{text}"
        );
        assert!(
            text.contains("wattwise_gpu_power_limit_watts{gpu=\"1\""),
            "{text}"
        );
        assert!(text.contains("} 212.5\n"), "{text}");
        // The counter's update period, learned once (the fake's never moves: the
        // whole probe, conservatively).
        assert!(
            text.contains("# UNIT wattwise_gpu_energy_update_period_seconds seconds"),
            "{text}"
        );
        assert!(
            text.contains("wattwise_gpu_energy_update_period_seconds{gpu=\"0\""),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert!(
            !text.contains("wattwise_run"),
            "no run, no run series: {text}"
        );
        let classic = render(&snapshot, false);
        assert!(
            classic.contains("# TYPE wattwise_gpu_energy_joules_total counter"),
            "{classic}"
        );
        assert!(classic.contains(&first), "{classic}");
        assert!(!classic.contains("# EOF"), "{classic}");
    }

    #[test]
    fn run_series_follow_the_run() {
        let status = RunStatus::enabled();
        let src = source(status.clone());
        status.start(RunInfo {
            job_id: "mnist-1".into(),
            trial_number: 3,
            batch_size: 64,
            epochs: 0,
            power_state: "ready",
            gpus: vec![1],
        });
        status.progress(
            2,
            &PowerState::Profiling {
                limit_mw: 250_000,
                steps: 3,
                start: Default::default(),
            },
        );
        let text = render(&src.read().unwrap(), true);
        let run = format!(
            "job_id=\"mnist-1\",trial_number=\"3\",Hostname=\"{}\"",
            hostname()
        );
        for want in [
            format!("wattwise_run_batch_size{{{run}}} 64"),
            format!("wattwise_run_epochs{{{run}}} 2"),
            format!("wattwise_run_power_state{{{run},state=\"profiling\"}} 1"),
            format!("wattwise_run_power_state{{{run},state=\"done\"}} 0"),
            format!("wattwise_run_gpu{{{run},gpu=\"1\",UUID=\"GPU-00000001-0000-0000-0000-000000000000\"}} 1"),
        ] {
            assert!(text.contains(&want), "{want} missing from\n{text}");
        }
        assert!(
            !text.contains("gpu=\"0\",UUID=\"GPU-00000000-0000-0000-0000-000000000000\"}} 1\n"),
            "{text}"
        );
        status.end();
        assert!(!render(&src.read().unwrap(), true).contains("wattwise_run"));
        // Without an exporter the status is inert.
        let off = RunStatus::default();
        off.progress(1, &PowerState::Done { optimal_mw: 1 });
        assert_eq!(off.current(), None);
    }

    #[test]
    fn answers_by_path_method_and_accept() {
        let src = source(RunStatus::default());
        let get = |head: &str| answer(head, || src.read());
        let om = get("GET /metrics HTTP/1.1\r\nAccept: application/openmetrics-text;version=1.0.0,text/plain;q=0.5\r\n\r\n");
        assert_eq!((om.status, om.content_type), ("200 OK", OPENMETRICS));
        let classic = get("GET /metrics?x=1 HTTP/1.1\r\nAccept: */*\r\n\r\n");
        assert_eq!(
            (classic.status, classic.content_type),
            ("200 OK", PROMETHEUS_TEXT)
        );
        assert_eq!(get("GET /nope HTTP/1.1\r\n\r\n").status, "404 Not Found");
        assert_eq!(
            get("POST /metrics HTTP/1.1\r\n\r\n").status,
            "405 Method Not Allowed"
        );
        assert_eq!(get("garbage").status, "405 Method Not Allowed");
        let failed = answer("GET /metrics HTTP/1.1\r\n\r\n", || {
            Err(GpuError::Call {
                what: "read the energy counter",
                index: 0,
                reason: "gone".into(),
            })
        });
        assert_eq!(failed.status, "503 Service Unavailable");
        assert!(failed.body.contains("energy counter"), "{}", failed.body);
    }

    #[test]
    fn serves_over_tcp() {
        let exporter =
            Exporter::bind("--metrics", "127.0.0.1:0", source(RunStatus::default())).unwrap();
        let addr = exporter.local_addr().unwrap();
        exporter.spawn().unwrap();
        for _ in 0..2 {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
            let mut got = String::new();
            s.read_to_string(&mut got).unwrap();
            assert!(got.starts_with("HTTP/1.1 200 OK\r\n"), "{got}");
            assert!(
                got.contains("wattwise_gpu_energy_joules_total{gpu=\"1\""),
                "{got}"
            );
        }
        let taken = Exporter::bind("--metrics", &addr.to_string(), source(RunStatus::default()));
        let err = taken.err().unwrap().to_string();
        assert!(err.contains("cannot listen there"), "{err}");
    }
}
