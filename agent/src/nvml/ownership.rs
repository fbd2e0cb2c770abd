//! Per-GPU ownership, so that several runs share a host: a run owns each of its
//! GPUs through a lock file in the state directory, `gpu-<UUID>.lock`, held with
//! `flock(LOCK_EX | LOCK_NB)` for the run's lifetime (the kernel releases it when
//! the process dies, SIGKILL included; the descriptor is close-on-exec, so the
//! training command never holds it), and a record beside it, `gpu-<UUID>.json`
//! (pid, job, the limit found at start), written before the run changes the limit
//! and removed once it is restored.
//!
//! A record whose lock is free was left by a run that died: whoever takes the lock
//! next (a new run, or `wattwise gpus` / `measure`) restores that GPU's limit first.
//! Two runs can never both own a GPU: only the holder of the lock writes the
//! record or the limit. Lock files are never removed (removing one would let two
//! processes lock two different files of the same name).

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::nvml::gpu::{GpuError, Gpus};

/// What can go wrong owning GPUs.
#[derive(Debug, thiserror::Error)]
pub enum OwnershipError {
    /// A live run owns the GPU.
    #[error("GPU {index} ({uuid}) is owned by another wattwise run ({owner}); choose other GPUs (CUDA_VISIBLE_DEVICES or --gpus) or wait for it to end")]
    Busy {
        /// NVML index.
        index: u32,
        /// UUID.
        uuid: String,
        /// Who owns it.
        owner: String,
    },
    /// A state file could not be used.
    #[error("GPU ownership file {path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// NVML failed.
    #[error(transparent)]
    Gpu(#[from] GpuError),
}

fn file_err(path: &Path, e: impl std::fmt::Display) -> OwnershipError {
    OwnershipError::File {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// A GPU's owner record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnerRecord {
    /// The owning agent's pid.
    pub pid: u32,
    /// The job (its id or id prefix from the job file).
    pub job: String,
    /// NVML index when the run started.
    pub index: u32,
    /// The GPU's UUID.
    pub uuid: String,
    /// The power limit found at start, mW.
    pub limit_mw: u32,
}

fn safe(uuid: &str) -> String {
    uuid.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn lock_path(dir: &Path, uuid: &str) -> PathBuf {
    dir.join(format!("gpu-{}.lock", safe(uuid)))
}

fn record_path(dir: &Path, uuid: &str) -> PathBuf {
    dir.join(format!("gpu-{}.json", safe(uuid)))
}

fn read_record(path: &Path) -> Result<Option<OwnerRecord>, OwnershipError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| file_err(path, e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(file_err(path, e)),
    }
}

fn write_record(path: &Path, record: &OwnerRecord) -> Result<(), OwnershipError> {
    let tmp = path.with_extension(format!("json.{}", std::process::id()));
    let body = serde_json::to_vec(record).map_err(|e| file_err(&tmp, e))?;
    std::fs::write(&tmp, body).map_err(|e| file_err(&tmp, e))?;
    if let Ok(f) = File::open(&tmp) {
        let _ = f.sync_all();
    }
    std::fs::rename(&tmp, path).map_err(|e| file_err(path, e))
}

fn remove(path: &Path) -> Result<(), OwnershipError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(file_err(path, e)),
    }
}

/// Opens (creating) `path` close-on-exec and tries to lock it without waiting:
/// `Ok(None)` when another process holds it.
fn try_lock(path: &Path) -> Result<Option<File>, OwnershipError> {
    // std opens files with O_CLOEXEC. Another user's lock file (a state directory
    // shared by several users) may be read-only to us: flock works on that too.
    let f = match std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
    {
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => File::open(path),
        other => other,
    }
    .map_err(|e| file_err(path, e))?;
    // SAFETY: a valid open descriptor.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        return Ok(Some(f));
    }
    let err = std::io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(None)
    } else {
        Err(file_err(path, err))
    }
}

/// Whether process `pid` exists.
pub fn pid_alive(pid: u32) -> bool {
    if pid == 0 || pid > i32::MAX as u32 {
        return false;
    }
    // SAFETY: signal 0 only checks that the process exists.
    let r = unsafe { libc::kill(pid as i32, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

fn index_of(gpus: &dyn Gpus, uuid: &str) -> Result<Option<u32>, GpuError> {
    for i in 0..gpus.count()? {
        if gpus.uuid(i)? == uuid {
            return Ok(Some(i));
        }
    }
    Ok(None)
}

/// Restores the limit a dead run recorded (the caller holds the GPU's lock).
fn restore_dead(
    gpus: &mut dyn Gpus,
    index: u32,
    rec: &OwnerRecord,
    path: &Path,
) -> Result<(), OwnershipError> {
    if gpus.power_limit(index)? != rec.limit_mw {
        gpus.set_power_limit(index, rec.limit_mw)?;
    }
    remove(path)
}

/// Restores the GPUs of runs that died (records whose lock is free), for the
/// commands that only read the GPUs. Live runs' GPUs are left alone. Returns the
/// `(NVML index, limit mW)` restored.
pub fn recover_dead(gpus: &mut dyn Gpus, dir: &Path) -> Result<Vec<(u32, u32)>, OwnershipError> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(Vec::new());
    };
    let mut restored = Vec::new();
    let mut names: Vec<String> = entries
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.starts_with("gpu-") && n.ends_with(".json"))
        .collect();
    names.sort();
    for name in names {
        let path = dir.join(&name);
        let Some(rec) = read_record(&path)? else {
            continue;
        };
        let Some(_lock) = try_lock(&lock_path(dir, &rec.uuid))? else {
            continue; // a live run owns it
        };
        // Under the lock: the record is what a dead run left (re-read it).
        let Some(rec) = read_record(&path)? else {
            continue;
        };
        match index_of(gpus, &rec.uuid)? {
            Some(index) => {
                restore_dead(gpus, index, &rec, &path)?;
                restored.push((index, rec.limit_mw));
            }
            None => {
                crate::log::log(format!(
                    "GPU {} of a dead run (pid {}) is gone from this host; its record {} stays",
                    rec.uuid,
                    rec.pid,
                    path.display()
                ));
            }
        }
    }
    Ok(restored)
}

/// The live owners' records of `uuids` (`None`: not owned by a live run).
pub fn owners(dir: &Path, uuids: &[String]) -> Vec<Option<OwnerRecord>> {
    uuids
        .iter()
        .map(|u| {
            read_record(&record_path(dir, u))
                .ok()
                .flatten()
                .filter(|r| pid_alive(r.pid))
        })
        .collect()
}

struct Held {
    _lock: File,
    record: OwnerRecord,
    path: PathBuf,
}

/// The GPUs a run owns; restores their limits with [`Ownership::restore`], and
/// releases them when dropped.
pub struct Ownership {
    held: Vec<Held>,
    restored: bool,
}

impl Ownership {
    /// Takes GPUs `indices` for `job`: restores first what a dead owner left, then
    /// records the limits found now. Refused, with nothing changed, when a live run
    /// owns one of them. A lock held without a live owner's record (a starting run
    /// not yet recorded, or a `wattwise gpus` restoring a dead run) is waited for up
    /// to `patience`. Returns what it restored of dead runs.
    pub fn acquire(
        gpus: &mut dyn Gpus,
        indices: &[u32],
        job: &str,
        dir: &Path,
        patience: Duration,
    ) -> Result<(Ownership, Vec<(u32, u32)>), OwnershipError> {
        std::fs::create_dir_all(dir).map_err(|e| file_err(dir, e))?;
        let mut own = Ownership {
            held: Vec::new(),
            restored: false,
        };
        let mut recovered = Vec::new();
        let me = std::process::id();
        let deadline = Instant::now() + patience;
        for &index in indices {
            let uuid = gpus.uuid(index)?;
            let path = record_path(dir, &uuid);
            let lock = loop {
                if let Some(f) = try_lock(&lock_path(dir, &uuid))? {
                    break f;
                }
                let rec = read_record(&path).ok().flatten();
                let live = rec.as_ref().filter(|r| r.pid != me && pid_alive(r.pid));
                if live.is_some() || Instant::now() >= deadline {
                    let owner = match live.or(rec.as_ref()) {
                        Some(r) => format!("pid {}, job {}", r.pid, r.job),
                        None => "a wattwise process that has not recorded itself yet".into(),
                    };
                    own.release_unchanged();
                    return Err(OwnershipError::Busy { index, uuid, owner });
                }
                std::thread::sleep(Duration::from_millis(20));
            };
            if let Some(dead) = read_record(&path)? {
                restore_dead(gpus, index, &dead, &path)?;
                recovered.push((index, dead.limit_mw));
            }
            let record = OwnerRecord {
                pid: me,
                job: job.to_string(),
                index,
                uuid,
                limit_mw: gpus.power_limit(index)?,
            };
            write_record(&path, &record)?;
            own.held.push(Held {
                _lock: lock,
                record,
                path,
            });
        }
        Ok((own, recovered))
    }

    /// Drops the records of a run that changed nothing (the locks go with `self`).
    fn release_unchanged(&mut self) {
        for h in &self.held {
            let _ = remove(&h.path);
        }
        self.held.clear();
    }

    /// `(NVML index, limit mW)` found at start.
    pub fn original(&self) -> Vec<(u32, u32)> {
        self.held
            .iter()
            .map(|h| (h.record.index, h.record.limit_mw))
            .collect()
    }

    /// Whether [`Ownership::restore`] has put every limit back.
    pub fn is_restored(&self) -> bool {
        self.restored
    }

    /// Sets every owned GPU back to its limit found at start and removes the
    /// records. Tries every GPU even when one fails; the records of a failed
    /// restore stay, so the next start tries again.
    pub fn restore(&mut self, gpus: &mut dyn Gpus) -> Result<(), OwnershipError> {
        if self.restored {
            return Ok(());
        }
        let mut first_err = None;
        for h in &self.held {
            let (index, limit) = (h.record.index, h.record.limit_mw);
            if gpus.power_limit(index).ok() == Some(limit) {
                continue;
            }
            if let Err(e) = gpus.set_power_limit(index, limit) {
                first_err.get_or_insert(e);
            }
        }
        if let Some(e) = first_err {
            return Err(e.into());
        }
        self.restored = true;
        for h in &self.held {
            remove(&h.path)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nvml::gpu::fake::FakeGpus;

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("wattwise-owner-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn dead_record(g: &FakeGpus, dir: &Path, index: u32, limit_mw: u32) {
        std::fs::create_dir_all(dir).unwrap();
        let rec = OwnerRecord {
            pid: 0, // never alive
            job: "dead".into(),
            index,
            uuid: g.gpus[index as usize].uuid.clone(),
            limit_mw,
        };
        write_record(&record_path(dir, &rec.uuid), &rec).unwrap();
    }

    #[test]
    fn acquire_records_then_restore_puts_back_and_removes() {
        let dir = tmpdir("basic");
        let mut g = FakeGpus::new(3);
        g.gpus[1].limit_mw = 250_000;
        let (mut own, rec) =
            Ownership::acquire(&mut g, &[1, 2], "j", &dir, Duration::ZERO).unwrap();
        assert!(rec.is_empty());
        assert_eq!(own.original(), vec![(1, 250_000), (2, 300_000)]);
        let uuids: Vec<String> = g.gpus.iter().map(|x| x.uuid.clone()).collect();
        let o = owners(&dir, &uuids);
        assert!(o[0].is_none());
        assert_eq!(o[1].as_ref().unwrap().pid, std::process::id());
        assert_eq!(o[2].as_ref().unwrap().job, "j");
        g.set_power_limit(1, 150_000).unwrap();
        own.restore(&mut g).unwrap();
        assert_eq!(g.gpus[1].limit_mw, 250_000);
        assert!(owners(&dir, &uuids).iter().all(Option::is_none));
        let sets = g.sets.len();
        own.restore(&mut g).unwrap();
        assert_eq!(g.sets.len(), sets);
    }

    #[test]
    fn an_owned_gpu_is_refused_naming_it_and_the_owner_and_nothing_is_kept() {
        let dir = tmpdir("busy");
        let mut g = FakeGpus::new(3);
        let (_first, _) = Ownership::acquire(&mut g, &[2], "first", &dir, Duration::ZERO).unwrap();
        // flock locks belong to the open file description: a second open in the
        // same process conflicts like another process would; the record's pid is
        // ours, so the wait runs to its patience.
        let err = Ownership::acquire(&mut g, &[0, 2], "second", &dir, Duration::from_millis(50))
            .err()
            .unwrap();
        let text = err.to_string();
        assert!(
            text.contains("GPU 2") && text.contains("job first"),
            "{text}"
        );
        assert!(
            text.contains(&format!("pid {}", std::process::id())),
            "{text}"
        );
        // GPU 0, taken before the refusal, is free again and has no record.
        let uuids: Vec<String> = g.gpus.iter().map(|x| x.uuid.clone()).collect();
        assert!(owners(&dir, &uuids)[0].is_none());
        let (_zero, _) = Ownership::acquire(&mut g, &[0], "third", &dir, Duration::ZERO).unwrap();
        assert!(g.sets.is_empty());
    }

    #[test]
    fn a_dead_runs_gpus_are_restored_by_the_next_owner_or_reader() {
        let dir = tmpdir("dead");
        let mut g = FakeGpus::new(3);
        dead_record(&g, &dir, 0, 280_000);
        dead_record(&g, &dir, 2, 220_000);
        g.gpus[0].limit_mw = 120_000;
        g.gpus[2].limit_mw = 120_000;
        // A run on GPU 0 restores only GPU 0.
        let (mut own, rec) = Ownership::acquire(&mut g, &[0], "j", &dir, Duration::ZERO).unwrap();
        assert_eq!(rec, vec![(0, 280_000)]);
        assert_eq!(g.gpus[0].limit_mw, 280_000);
        assert_eq!(g.gpus[2].limit_mw, 120_000);
        assert_eq!(own.original(), vec![(0, 280_000)]);
        // A reader restores the rest, and leaves the live run's GPU alone.
        assert_eq!(recover_dead(&mut g, &dir).unwrap(), vec![(2, 220_000)]);
        assert_eq!(g.gpus[2].limit_mw, 220_000);
        assert!(record_path(&dir, &g.gpus[0].uuid).exists());
        assert!(recover_dead(&mut g, &dir).unwrap().is_empty());
        own.restore(&mut g).unwrap();
    }

    #[test]
    fn a_denied_restore_keeps_the_record_for_the_next_start() {
        let dir = tmpdir("denied");
        let mut g = FakeGpus::new(1);
        let (mut own, _) = Ownership::acquire(&mut g, &[0], "j", &dir, Duration::ZERO).unwrap();
        g.gpus[0].limit_mw = 200_000;
        g.deny = true;
        assert!(own.restore(&mut g).is_err());
        drop(own);
        g.deny = false;
        assert_eq!(recover_dead(&mut g, &dir).unwrap(), vec![(0, 300_000)]);
        assert_eq!(g.gpus[0].limit_mw, 300_000);
    }

    #[test]
    fn a_corrupt_record_is_an_error_naming_it() {
        let dir = tmpdir("corrupt");
        let mut g = FakeGpus::new(1);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(record_path(&dir, &g.gpus[0].uuid), b"{nope").unwrap();
        let err = Ownership::acquire(&mut g, &[0], "j", &dir, Duration::ZERO)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("gpu-") && err.contains(".json"), "{err}");
    }

    #[test]
    fn concurrent_acquires_give_each_gpu_to_exactly_one() {
        let dir = tmpdir("race");
        let winners = std::sync::atomic::AtomicU32::new(0);
        let tried = std::sync::Barrier::new(8);
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    let mut g = FakeGpus::new(2);
                    let got = Ownership::acquire(&mut g, &[1], "r", &dir, Duration::ZERO);
                    if got.is_ok() {
                        winners.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                    // The winner holds the GPU until every thread has tried.
                    tried.wait();
                    drop(got);
                });
            }
        });
        assert_eq!(winners.load(std::sync::atomic::Ordering::SeqCst), 1);
    }
}
