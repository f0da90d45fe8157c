//! The ledger: one row per authenticated request, durable before the client
//! gets its last byte, and never blocked on the database.
//!
//! ```text
//! pipeline ──row──▶ spool thread ──append (one write per batch)──▶ spool/ledger-N.jsonl
//!                      │  ack each row once its bytes are written
//!                      └──batch──▶ loader thread ──INSERT OR IGNORE──▶ SQLite
//!                                     deletes a segment once all its rows are in
//! ```
//!
//! Before a request is sent upstream, its [`Intent`] is written to the spool
//! the same way (write-ahead). The request's row resolves it. A segment is
//! deleted only once it is loaded *and* every intent in it is resolved, so
//! an intent whose request died with the process is still on disk at the
//! next start-up, where it becomes an `interrupted` row ([`Recovered`]).
//!
//! "Acknowledged" means the row's bytes were handed to the OS (`write(2)`),
//! which survives `kill -9`; `fsync = true` also makes it survive power loss.
//! At start-up every segment left behind is replayed into the database;
//! replay is idempotent by request id, so a row is never counted twice.
//! When the database is slow or down, the spool grows up to `max_bytes`; at
//! the bound the configured [`OnFull`] applies — never silent loss.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
// (`Condvar` paces the fsync spool thread's `block` policy.)
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::store::LedgerSink;

pub use crate::config::{OnFull, SpoolConfig};
pub use crate::record::{CacheOutcome, Endpoint, Intent, LedgerRow, UsageSource};

/// One line of the spool. Rows are nearly every line and move once through
/// a channel: boxing them would add an allocation per request for nothing.
#[allow(clippy::large_enum_variant)]
enum Item {
    Row(LedgerRow),
    Intent(Intent),
}

struct Job {
    item: Item,
    ack: Option<oneshot::Sender<()>>,
}

/// An intent's spool line: `{"intent":{…}}`, told from a row by its first key.
#[derive(serde::Serialize)]
struct IntentLine<'a> {
    intent: &'a Intent,
}

#[derive(serde::Deserialize)]
struct IntentLineOwned {
    intent: Intent,
}

const INTENT_PREFIX: &[u8] = b"{\"intent\":";

fn serialise(item: &Item, out: &mut Vec<u8>) -> serde_json::Result<()> {
    match item {
        Item::Row(r) => serde_json::to_writer(out, r),
        Item::Intent(i) => serde_json::to_writer(out, &IntentLine { intent: i }),
    }
}

/// Intents in the spool that no row has resolved yet, and how many each
/// segment holds (a segment holding one is not deleted).
#[derive(Default)]
struct OpenIntents {
    by_request: HashMap<String, u64>,
    per_segment: HashMap<u64, u32>,
}

impl OpenIntents {
    fn open(&mut self, request_id: String, seq: u64) {
        if self.by_request.insert(request_id, seq).is_none() {
            *self.per_segment.entry(seq).or_default() += 1;
        }
    }

    fn resolve(&mut self, request_id: &str) {
        if let Some(seq) = self.by_request.remove(request_id) {
            if let Some(n) = self.per_segment.get_mut(&seq) {
                *n -= 1;
                if *n == 0 {
                    self.per_segment.remove(&seq);
                }
            }
        }
    }

    fn holds(&self, seq: u64) -> bool {
        self.per_segment.contains_key(&seq)
    }

    /// Marks what one spool write carried: its intents opened (in segment
    /// `seq`), the intents of its rows resolved.
    fn record(&mut self, opened: &mut Vec<String>, rows: &[LedgerRow], seq: u64) {
        for id in opened.drain(..) {
            self.open(id, seq);
        }
        if !self.by_request.is_empty() {
            for r in rows {
                self.resolve(&r.request_id);
            }
        }
    }
}

type SharedIntents = Arc<Mutex<OpenIntents>>;

fn lock_intents(i: &SharedIntents) -> std::sync::MutexGuard<'_, OpenIntents> {
    i.lock().unwrap_or_else(|p| p.into_inner())
}

enum Load {
    Batch {
        bytes: u64,
        rows: Vec<LedgerRow>,
    },
    /// Every batch of this segment (by sequence number) was sent before this marker.
    Closed(u64),
}

/// Bytes spooled but not yet in the database, with a wake-up for `Block`.
#[derive(Default)]
struct Backlog {
    bytes: AtomicU64,
    lock: Mutex<()>,
    drained: Condvar,
}

/// Handle to the ledger. Cheap to clone.
#[derive(Clone)]
pub struct LedgerWriter {
    /// The spool thread's queue (used when every batch is fsynced: group commit).
    tx: Option<mpsc::UnboundedSender<Job>>,
    /// Without fsync, rows are appended by the request's own task: one
    /// `write(2)` under a short lock, no thread hop before the acknowledgement.
    inline: Option<Arc<Mutex<InlineSpool>>>,
    backlog: Arc<Backlog>,
    max_bytes: u64,
    on_full: OnFull,
    /// Records nothing (see [`LedgerWriter::disabled`]).
    disabled: bool,
}

/// Joins the ledger threads after every handle is dropped (graceful drain).
pub struct LedgerDrain {
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl LedgerDrain {
    /// Waits until every row handed to the writer is in the database.
    pub fn wait(self) {
        for t in self.threads {
            if t.join().is_err() {
                tracing::error!("a ledger thread panicked while draining");
            }
        }
    }
}

const MAX_BATCH: usize = 1024;
/// How long the loader waits for more rows before a commit (rows are already
/// durable in the spool; this only trades a few ms of report freshness for fewer commits).
const LOADER_LINGER: Duration = Duration::from_millis(5);
const SEGMENT_BYTES: u64 = 8 * 1024 * 1024;

fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("ledger-{seq:012}.jsonl"))
}

fn segments(dir: &Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let p = e?.path();
        let seq = p
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix("ledger-"))
            .and_then(|n| n.strip_suffix(".jsonl"))
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(s) = seq {
            out.push((s, p));
        }
    }
    out.sort();
    Ok(out)
}

/// What an earlier run left in the spool, once its rows are loaded.
#[derive(Debug, Default)]
pub struct Recovered {
    /// Rows loaded into the store.
    pub rows: u64,
    /// Intents that no row in the spool resolves: their request was at the
    /// provider when the gateway stopped, unless the row reached the
    /// database before the spool let it go (look it up before writing an
    /// `interrupted` row for it).
    pub intents: Vec<Intent>,
    /// The segments holding those intents, kept until they are resolved.
    held: Vec<PathBuf>,
}

impl Recovered {
    /// Deletes the segments kept for the intents, once each has its row.
    pub fn finish(self) -> std::io::Result<()> {
        for p in self.held {
            match std::fs::remove_file(&p) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }
}

/// Loads every row left by an earlier run into the store and deletes each
/// segment that holds no unresolved intent (see [`Recovered`]). A torn last
/// line (the process died mid-write) was never acknowledged and is skipped.
/// Running it again after a crash part-way is harmless: rows are keyed by
/// request id.
pub fn replay(dir: &Path, store: &dyn LedgerSink) -> Result<Recovered, crate::store::StoreError> {
    let mut n = 0;
    let found = segments(dir)?;
    // Request id → (intent, its segment). Rows come after their intent.
    let mut open: HashMap<String, (Intent, usize)> = HashMap::new();
    for (index, (_, path)) in found.iter().enumerate() {
        let mut rows = Vec::new();
        for line in BufReader::new(File::open(path)?).split(b'\n') {
            let line = line?;
            if line.is_empty() {
                continue;
            }
            if line.starts_with(INTENT_PREFIX) {
                match serde_json::from_slice::<IntentLineOwned>(&line) {
                    Ok(l) => {
                        open.insert(l.intent.request_id.clone(), (l.intent, index));
                    }
                    Err(e) => tracing::warn!(file = %path.display(), error = %e, "skipping a torn spool line"),
                }
                continue;
            }
            match serde_json::from_slice::<LedgerRow>(&line) {
                Ok(r) => {
                    open.remove(&r.request_id);
                    rows.push(r);
                }
                Err(e) => tracing::warn!(file = %path.display(), error = %e, "skipping a torn spool line"),
            }
        }
        for chunk in rows.chunks(MAX_BATCH) {
            let refs: Vec<&LedgerRow> = chunk.iter().collect();
            store.append(&refs)?;
        }
        n += rows.len() as u64;
    }
    let holding: std::collections::BTreeSet<usize> = open.values().map(|(_, i)| *i).collect();
    let mut held = Vec::new();
    for (index, (_, path)) in found.into_iter().enumerate() {
        if holding.contains(&index) {
            held.push(path);
        } else {
            std::fs::remove_file(&path)?;
        }
    }
    let mut intents: Vec<Intent> = open.into_values().map(|(i, _)| i).collect();
    intents.sort_by(|a, b| (a.time_ms, &a.request_id).cmp(&(b.time_ms, &b.request_id)));
    if n > 0 || !intents.is_empty() {
        tracing::info!(rows = n, unresolved_intents = intents.len(), "replayed the ledger spool");
    }
    Ok(Recovered { rows: n, intents, held })
}

impl LedgerWriter {
    /// Replays what an earlier run left in the spool, then starts the spool
    /// and loader threads.
    pub fn start(
        store: Arc<dyn LedgerSink>,
        cfg: SpoolConfig,
    ) -> Result<(LedgerWriter, LedgerDrain, Recovered), crate::store::StoreError> {
        std::fs::create_dir_all(&cfg.dir)?;
        #[cfg(unix)]
        std::fs::set_permissions(&cfg.dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
        // On a thread of its own: a sink may block on its own runtime (PostgreSQL's
        // does), which it cannot do on a thread that drives async tasks.
        let recovered = std::thread::scope(|s| s.spawn(|| replay(&cfg.dir, store.as_ref())).join())
            .map_err(|_| crate::store::StoreError::Task("the spool replay panicked".into()))??;
        // Past the segments kept for unresolved intents.
        let next_seq = segments(&cfg.dir)?.last().map_or(1, |(s, _)| s + 1);
        let intents = SharedIntents::default();

        let (load_tx, load_rx) = std::sync::mpsc::channel::<Load>();
        let backlog = Arc::new(Backlog::default());
        let mut threads = Vec::new();
        let (tx, inline) = if cfg.fsync {
            let (tx, rx) = mpsc::unbounded_channel::<Job>();
            let backlog = backlog.clone();
            let cfg = cfg.clone();
            let intents = intents.clone();
            threads.push(
                std::thread::Builder::new()
                    .name("ledger-spool".into())
                    .spawn(move || spool_thread(rx, load_tx, backlog, cfg, next_seq, intents))?,
            );
            (Some(tx), None)
        } else {
            let sp = InlineSpool {
                dir: cfg.dir.clone(),
                seq: next_seq,
                file: None,
                written: 0,
                load_tx,
                queued: Vec::with_capacity(64 * 1024),
                queued_rows: Vec::new(),
                queued_intents: Vec::new(),
                intents: intents.clone(),
                enqueued: 0,
                flushed: 0,
                torn: false,
                writes: 0,
            };
            (None, Some(Arc::new(Mutex::new(sp))))
        };
        let loader = {
            let backlog = backlog.clone();
            let dir = cfg.dir.clone();
            std::thread::Builder::new()
                .name("ledger-loader".into())
                .spawn(move || loader_thread(load_rx, store, backlog, dir, intents))?
        };
        threads.push(loader);
        Ok((
            LedgerWriter { tx, inline, backlog, max_bytes: cfg.max_bytes, on_full: cfg.on_full, disabled: false },
            LedgerDrain { threads },
            recovered,
        ))
    }

    /// A writer that records nothing (`[ledger] enabled = false`, for
    /// benchmarks that measure the ledger's own cost).
    pub fn disabled() -> (LedgerWriter, LedgerDrain) {
        let w = LedgerWriter {
            tx: None,
            inline: None,
            backlog: Arc::new(Backlog::default()),
            max_bytes: u64::MAX,
            on_full: OnFull::Block,
            disabled: true,
        };
        (w, LedgerDrain { threads: Vec::new() })
    }

    /// True when the spool is at its bound and the policy is to refuse new work.
    pub fn refusing(&self) -> bool {
        self.on_full == OnFull::Reject && self.backlog.bytes.load(Ordering::Acquire) >= self.max_bytes
    }

    /// Bytes waiting in the spool for the database.
    pub fn backlog_bytes(&self) -> u64 {
        self.backlog.bytes.load(Ordering::Acquire)
    }

    /// A read-only view of the backlog that does not keep the ledger open.
    pub fn backlog_probe(&self) -> BacklogProbe {
        BacklogProbe(self.backlog.clone())
    }
}

/// Watches how many acknowledged bytes are not yet in the database.
#[derive(Clone)]
pub struct BacklogProbe(Arc<Backlog>);

impl BacklogProbe {
    pub fn bytes(&self) -> u64 {
        self.0.bytes.load(Ordering::Acquire)
    }
}

impl LedgerWriter {
    /// Write a row and return once it is durable in the spool.
    pub async fn write(&self, row: LedgerRow) {
        self.put(Item::Row(row)).await;
    }

    /// Write a request's intent and return once it is durable in the spool:
    /// called just before the request goes upstream (see [`Intent`]).
    pub async fn intend(&self, intent: Intent) {
        self.put(Item::Intent(intent)).await;
    }

    async fn put(&self, item: Item) {
        if self.disabled {
            return;
        }
        if let Some(sp) = &self.inline {
            if self.on_full == OnFull::Block {
                while self.backlog.bytes.load(Ordering::Acquire) >= self.max_bytes {
                    tracing::warn!("ledger spool full; holding the acknowledgement");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            let intent = matches!(item, Item::Intent(_));
            let ticket = enqueue_inline(sp, item);
            // Requests that finish in the same scheduler tick join one `write(2)`:
            // under load, one syscall carries many rows; alone, a row is written at once.
            // An intent is written at once: it stands between the request and
            // its provider, and a turn of the scheduler there is latency.
            if !intent {
                tokio::task::yield_now().await;
            }
            let mut delay = Duration::from_millis(10);
            // Never drop a row: retry until the disk takes it.
            while let Err(e) = flush_inline(sp, &self.backlog, ticket) {
                tracing::error!(error = %e, "cannot append to the ledger spool; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
            return;
        }
        let (ack, done) = oneshot::channel();
        if self.tx.as_ref().is_none_or(|tx| tx.send(Job { item, ack: Some(ack) }).is_err()) {
            tracing::error!("ledger writer is gone; row not written");
            return;
        }
        let _ = done.await;
    }

    /// Write a row without awaiting (for paths that cannot await, e.g. `Drop`).
    pub fn write_detached(&self, row: LedgerRow) {
        if self.disabled {
            return;
        }
        if let Some(sp) = &self.inline {
            let ticket = enqueue_inline(sp, Item::Row(row));
            let mut delay = Duration::from_millis(10);
            while let Err(e) = flush_inline(sp, &self.backlog, ticket) {
                tracing::error!(error = %e, "cannot append to the ledger spool; retrying");
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_secs(2));
            }
            return;
        }
        if self.tx.as_ref().is_none_or(|tx| tx.send(Job { item: Item::Row(row), ack: None }).is_err()) {
            tracing::error!("ledger writer is gone; row not written");
        }
    }
}

/// The spool's current segment, written by request tasks themselves.
struct InlineSpool {
    dir: PathBuf,
    seq: u64,
    file: Option<File>,
    written: u64,
    load_tx: std::sync::mpsc::Sender<Load>,
    /// Lines queued for the next `write(2)`, and their rows.
    queued: Vec<u8>,
    queued_rows: Vec<LedgerRow>,
    /// Request ids of the intents among the queued lines.
    queued_intents: Vec<String>,
    intents: SharedIntents,
    /// Tickets: rows queued so far, and rows durably in the file so far.
    enqueued: u64,
    flushed: u64,
    /// The last write failed part-way: end any torn line before the next one.
    torn: bool,
    /// `write(2)` calls that succeeded (rows per write shows the grouping).
    writes: u64,
}

impl Drop for InlineSpool {
    fn drop(&mut self) {
        // The last writer is gone: once loaded, this segment can be deleted.
        if self.file.is_some() || self.written > 0 {
            let _ = self.load_tx.send(Load::Closed(self.seq));
        }
    }
}

/// Queues one line (serialised outside the lock); returns its ticket.
fn enqueue_inline(sp: &Mutex<InlineSpool>, item: Item) -> u64 {
    // A row always serialises (plain strings and numbers); never lose it if not.
    let mut line = Vec::with_capacity(1024);
    if let Err(e) = serialise(&item, &mut line) {
        tracing::error!(error = %e, "cannot serialise a ledger line for the spool");
        line.clear();
    }
    let mut g = sp.lock().unwrap_or_else(|p| p.into_inner());
    if !line.is_empty() {
        g.queued.extend_from_slice(&line);
        g.queued.push(b'\n');
    }
    match item {
        Item::Row(row) => g.queued_rows.push(row),
        Item::Intent(i) => g.queued_intents.push(i.request_id),
    }
    g.enqueued += 1;
    g.enqueued
}

/// Makes every row up to `ticket` durable in the spool (one `write(2)` for
/// all queued lines, unless an earlier caller's write already carried it) and
/// hands them to the loader.
fn flush_inline(sp: &Mutex<InlineSpool>, backlog: &Backlog, ticket: u64) -> std::io::Result<()> {
    let mut g = sp.lock().unwrap_or_else(|p| p.into_inner());
    if g.flushed >= ticket {
        return Ok(());
    }
    if g.file.is_none() {
        let f = open_segment(&g.dir, g.seq)?;
        g.file = Some(f);
    }
    let InlineSpool { file, queued, torn, .. } = &mut *g;
    if let Some(f) = file.as_mut() {
        let result = if *torn { f.write_all(b"\n").and_then(|()| f.write_all(queued)) } else { f.write_all(queued) };
        if let Err(e) = result {
            // The lines stay queued and are written again in full; a line
            // that made it twice is loaded once (rows are keyed by request id).
            *file = None;
            *torn = true;
            return Err(e);
        }
    }
    g.torn = false;
    g.writes += 1;
    let bytes = g.queued.len() as u64;
    g.queued.clear();
    let rows = std::mem::take(&mut g.queued_rows);
    {
        let InlineSpool { queued_intents, intents, seq, .. } = &mut *g;
        lock_intents(intents).record(queued_intents, &rows, *seq);
    }
    g.flushed = g.enqueued;
    backlog.bytes.fetch_add(bytes, Ordering::AcqRel);
    g.written += bytes;
    // Under the lock, so the loader sees a segment's rows before its close marker.
    let _ = g.load_tx.send(Load::Batch { bytes, rows });
    if g.written >= SEGMENT_BYTES {
        let _ = g.load_tx.send(Load::Closed(g.seq));
        g.file = None;
        g.seq += 1;
        g.written = 0;
    }
    Ok(())
}

fn open_segment(dir: &Path, seq: u64) -> std::io::Result<File> {
    let mut o = OpenOptions::new();
    o.create(true).append(true);
    // Spool lines hold attribution and spend: owner only.
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    o.open(segment_path(dir, seq))
}

fn spool_thread(
    mut rx: mpsc::UnboundedReceiver<Job>,
    load_tx: std::sync::mpsc::Sender<Load>,
    backlog: Arc<Backlog>,
    cfg: SpoolConfig,
    mut seq: u64,
    intents: SharedIntents,
) {
    let mut file: Option<File> = None;
    let mut written: u64 = 0;
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    let mut buf: Vec<u8> = Vec::with_capacity(256 * 1024);
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        buf.clear();
        for j in &batch {
            // Serialising a row cannot fail (plain data); a failure would be a bug.
            if let Err(e) = serialise(&j.item, &mut buf) {
                tracing::error!(error = %e, "cannot serialise a ledger line");
            }
            buf.push(b'\n');
        }
        if cfg.on_full == OnFull::Block {
            let mut guard = backlog.lock.lock().unwrap_or_else(|p| p.into_inner());
            while backlog.bytes.load(Ordering::Acquire) >= cfg.max_bytes {
                tracing::warn!(
                    bytes = backlog.bytes.load(Ordering::Acquire),
                    "ledger spool full; holding acknowledgements"
                );
                guard = backlog
                    .drained
                    .wait_timeout(guard, Duration::from_millis(200))
                    .map(|(g, _)| g)
                    .unwrap_or_else(|p| p.into_inner().0);
            }
        }
        // Never drop a row: retry the append until the disk takes it.
        let mut delay = Duration::from_millis(10);
        loop {
            let res = (|| -> std::io::Result<()> {
                if file.is_none() {
                    file = Some(open_segment(&cfg.dir, seq)?);
                }
                let f = file.as_mut().ok_or_else(|| std::io::Error::other("no spool segment"))?;
                f.write_all(&buf)?;
                if cfg.fsync {
                    f.sync_data()?;
                }
                Ok(())
            })();
            match res {
                Ok(()) => break,
                Err(e) => {
                    tracing::error!(error = %e, dir = %cfg.dir.display(), "cannot append to the ledger spool; retrying");
                    file = None;
                    std::thread::sleep(delay);
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
            }
        }
        let bytes = buf.len() as u64;
        backlog.bytes.fetch_add(bytes, Ordering::AcqRel);
        written += bytes;
        let mut rows = Vec::with_capacity(batch.len());
        let mut opened = Vec::new();
        let mut acks = Vec::with_capacity(batch.len());
        for job in batch.drain(..) {
            acks.extend(job.ack);
            match job.item {
                Item::Row(r) => rows.push(r),
                Item::Intent(i) => opened.push(i.request_id),
            }
        }
        // Before the acknowledgements: a row can only follow its intent's ack.
        lock_intents(&intents).record(&mut opened, &rows, seq);
        for ack in acks {
            let _ = ack.send(());
        }
        let _ = load_tx.send(Load::Batch { bytes, rows });
        if written >= SEGMENT_BYTES {
            file = None;
            let _ = load_tx.send(Load::Closed(seq));
            seq += 1;
            written = 0;
        }
    }
    if file.is_some() || written > 0 {
        let _ = load_tx.send(Load::Closed(seq));
    }
}

fn loader_thread(
    rx: std::sync::mpsc::Receiver<Load>,
    store: Arc<dyn LedgerSink>,
    backlog: Arc<Backlog>,
    dir: PathBuf,
    intents: SharedIntents,
) {
    let mut pending: Vec<LedgerRow> = Vec::new();
    let mut pending_bytes = 0u64;
    let mut closed: Vec<u64> = Vec::new();
    // Loaded segments that still hold an unresolved intent.
    let mut held: Vec<u64> = Vec::new();
    let mut disconnected = false;
    while !disconnected {
        // Gather what is waiting into one transaction. The first row wakes
        // this thread; then it sleeps through the linger instead of waiting
        // on the channel, so the rows that arrive meanwhile cost their senders
        // no wake-up (at 15k rows/s, one context switch per batch, not per row).
        match rx.recv() {
            Ok(m) => take(m, &mut pending, &mut pending_bytes, &mut closed),
            Err(_) => disconnected = true,
        }
        if !disconnected {
            std::thread::sleep(LOADER_LINGER);
        }
        while pending.len() < 8 * MAX_BATCH {
            match rx.try_recv() {
                Ok(m) => take(m, &mut pending, &mut pending_bytes, &mut closed),
                Err(std::sync::mpsc::TryRecvError::Empty) => break,
                Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                    disconnected = true;
                    break;
                }
            }
        }
        if !pending.is_empty() {
            let refs: Vec<&LedgerRow> = pending.iter().collect();
            let mut delay = Duration::from_millis(10);
            while let Err(error) = store.append(&refs) {
                tracing::error!(%error, rows = refs.len(), "ledger database write failed; rows stay in the spool, retrying");
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_secs(2));
            }
            pending.clear();
        }
        // Everything spooled so far is in the database now, intents included
        // (a batch of intents alone has no row to load but still drains).
        if pending_bytes > 0 {
            backlog.bytes.fetch_sub(pending_bytes, Ordering::AcqRel);
            pending_bytes = 0;
            backlog.drained.notify_all();
        }
        // Every row of a closed segment is now in the database; it goes once
        // the requests whose intents it holds have their rows in the spool.
        held.append(&mut closed);
        let done: Vec<u64> = {
            let open = lock_intents(&intents);
            held.iter().copied().filter(|s| !open.holds(*s)).collect()
        };
        held.retain(|s| !done.contains(s));
        for seq in done {
            let path = segment_path(&dir, seq);
            if let Err(e) = std::fs::remove_file(&path) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(file = %path.display(), error = %e, "cannot remove a loaded spool segment");
                }
            }
        }
    }
}

fn take(m: Load, pending: &mut Vec<LedgerRow>, bytes: &mut u64, closed: &mut Vec<u64>) {
    match m {
        Load::Batch { bytes: b, rows } => {
            *bytes += b;
            pending.extend(rows);
        }
        Load::Closed(p) => closed.push(p),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attribution::Attribution;
    use std::collections::BTreeMap;
    use std::sync::atomic::AtomicBool;

    /// A database stand-in: rows by request id (idempotent like the real
    /// sinks), and a lock that makes every append fail, as a locked or
    /// unreachable database does.
    #[derive(Default)]
    struct MemorySink {
        rows: Mutex<BTreeMap<String, LedgerRow>>,
        locked: AtomicBool,
    }

    impl LedgerSink for MemorySink {
        fn append(&self, rows: &[&LedgerRow]) -> Result<(), crate::store::StoreError> {
            if self.locked.load(Ordering::Acquire) {
                return Err(crate::store::StoreError::Task("database is locked".into()));
            }
            let mut all = self.rows.lock().unwrap();
            for r in rows {
                all.entry(r.request_id.clone()).or_insert_with(|| (*r).clone());
            }
            Ok(())
        }
    }

    fn sink() -> Arc<MemorySink> {
        Arc::new(MemorySink::default())
    }
    use tollgate_units::{Money, Usage};

    pub fn row(id: &str) -> LedgerRow {
        LedgerRow {
            request_id: id.into(),
            time_ms: 1_700_000_000_000,
            key_id: Some("key_x".into()),
            endpoint: crate::record::Endpoint::ChatCompletions,
            requested_model: Some("gpt-4o-mini".into()),
            model: Some("gpt-4o-mini-2024-07-18".into()),
            provider: Some("openai".into()),
            status: 200,
            error_code: None,
            usage: Usage { input: 10, cache_read: 5, output: 7, reasoning: 2, ..Usage::default() },
            usage_source: UsageSource::Provider,
            cost: Some(Money::from_nanos(12_345)),
            cache_savings: Money::from_nanos(100),
            response_cache_savings: Money::ZERO,
            tool_cost: Money::ZERO,
            provider_cost: None,
            streamed: true,
            client_disconnected: false,
            cache: crate::record::CacheOutcome::Off,
            latency_ms: 12,
            ttft_ms: Some(3),
            attempts: 1,
            prefix_hash: None,
            attempt_log: Vec::new(),
            attribution: Attribution::default(),
        }
    }

    fn count(store: &MemorySink) -> usize {
        store.rows.lock().unwrap().len()
    }

    #[test]
    fn concurrent_requests_share_spool_writes_and_every_row_lands_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(MemorySink::default());
        let cfg = SpoolConfig::beside(&dir.path().join("l.db"));
        let (w, drain, _) = LedgerWriter::start(store.clone(), cfg).unwrap();
        // The gateway's runtime on one core: tasks ready in the same tick share a write.
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let tasks: Vec<_> = (0..300)
                .map(|i| {
                    let w = w.clone();
                    tokio::spawn(async move { w.write(row(&format!("c{i:04}"))).await })
                })
                .collect();
            for t in tasks {
                t.await.unwrap();
            }
        });
        let writes = w.inline.as_ref().map(|sp| sp.lock().unwrap().writes).unwrap();
        assert!((1..30).contains(&writes), "300 concurrent rows took {writes} writes");
        drop(w);
        drain.wait();
        assert_eq!(count(&store), 300, "every row once");
    }

    #[test]
    fn spool_lines_round_trip() {
        let r = row("a");
        let line = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<LedgerRow>(&line).unwrap(), r);
    }

    #[test]
    fn replay_loads_leftovers_once_and_skips_a_torn_line() {
        let dir = tempfile::tempdir().unwrap();
        let store = MemorySink::default();
        let spool = dir.path().join("spool");
        std::fs::create_dir_all(&spool).unwrap();
        let mut text = String::new();
        for id in ["r1", "r2", "r1"] {
            text.push_str(&serde_json::to_string(&row(id)).unwrap());
            text.push('\n');
        }
        text.push_str("{\"request_id\":\"torn");
        std::fs::write(segment_path(&spool, 7), &text).unwrap();
        // r2 is already in the database (the loader committed it before the crash).
        store.append(&[&row("r2")]).unwrap();
        assert_eq!(replay(&spool, &store).unwrap().rows, 3);
        assert_eq!(count(&store), 2, "duplicates are stored once");
        assert!(segments(&spool).unwrap().is_empty());
    }

    #[tokio::test]
    async fn rows_reach_the_database_and_the_spool_empties_on_drain() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(MemorySink::default());
        let cfg = SpoolConfig::beside(&dir.path().join("l.db"));
        let (w, drain, _) = LedgerWriter::start(store.clone(), cfg.clone()).unwrap();
        for i in 0..500 {
            w.write(row(&format!("r{i:04}"))).await;
        }
        drop(w);
        tokio::task::spawn_blocking(move || drain.wait()).await.unwrap();
        assert_eq!(count(&store), 500);
        assert!(segments(&cfg.dir).unwrap().is_empty(), "loaded segments are removed");
    }

    #[tokio::test]
    async fn the_fsync_spool_thread_group_commits_and_drains() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(MemorySink::default());
        let mut cfg = SpoolConfig::beside(&dir.path().join("l.db"));
        cfg.fsync = true;
        let (w, drain, _) = LedgerWriter::start(store.clone(), cfg.clone()).unwrap();
        let mut tasks = Vec::new();
        for i in 0..200 {
            let w = w.clone();
            tasks.push(tokio::spawn(async move { w.write(row(&format!("f{i:04}"))).await }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        w.write_detached(row("detached"));
        drop(w);
        tokio::task::spawn_blocking(move || drain.wait()).await.unwrap();
        assert_eq!(count(&store), 201);
        assert!(segments(&cfg.dir).unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_locked_database_does_not_stop_acknowledgements() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("l.db");
        let store = sink();
        let (w, drain, _) = LedgerWriter::start(store.clone(), SpoolConfig::beside(&db)).unwrap();
        // The database refuses writes for a while.
        store.locked.store(true, Ordering::Release);
        for i in 0..50 {
            tokio::time::timeout(Duration::from_secs(2), w.write(row(&format!("b{i}"))))
                .await
                .expect("acked while the db is locked");
        }
        assert!(w.backlog_bytes() > 0, "rows wait in the spool");
        store.locked.store(false, Ordering::Release);
        drop(w);
        tokio::task::spawn_blocking(move || drain.wait()).await.unwrap();
        assert_eq!(count(&store), 50);
    }

    #[tokio::test]
    async fn reject_policy_refuses_at_the_bound() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("l.db");
        let store = sink();
        let mut cfg = SpoolConfig::beside(&db);
        cfg.max_bytes = 1000;
        cfg.on_full = OnFull::Reject;
        let (w, drain, _) = LedgerWriter::start(store.clone(), cfg).unwrap();
        store.locked.store(true, Ordering::Release);
        assert!(!w.refusing());
        for i in 0..5 {
            w.write(row(&format!("x{i}"))).await;
        }
        assert!(w.refusing(), "backlog {} over the bound", w.backlog_bytes());
        store.locked.store(false, Ordering::Release);
        for _ in 0..200 {
            if !w.refusing() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(!w.refusing(), "accepts again once the database caught up");
        drop(w);
        tokio::task::spawn_blocking(move || drain.wait()).await.unwrap();
        assert_eq!(count(&store), 5);
    }

    fn intent(id: &str, cost_nanos: i64) -> Intent {
        Intent {
            request_id: id.into(),
            time_ms: 1_700_000_000_000,
            key_id: Some("key_x".into()),
            endpoint: crate::record::Endpoint::ChatCompletions,
            requested_model: Some("gpt-4o-mini".into()),
            provider: Some("openai".into()),
            model: Some("gpt-4o-mini".into()),
            streamed: false,
            upper_bound: Some(Money::from_nanos(cost_nanos)),
            attribution: Attribution::default(),
        }
    }

    /// Both spool writers: an intent resolved by its row leaves nothing
    /// behind; one whose request never wrote its row keeps its segment on
    /// disk after the drain, and the next start-up hands it back.
    #[tokio::test]
    async fn an_intent_without_its_row_outlives_its_segment_and_comes_back_at_start_up() {
        for fsync in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let store = sink();
            let mut cfg = SpoolConfig::beside(&dir.path().join("l.db"));
            cfg.fsync = fsync;
            let (w, drain, recovered) = LedgerWriter::start(store.clone(), cfg.clone()).unwrap();
            assert!(recovered.intents.is_empty());
            w.intend(intent("done", 900)).await;
            w.intend(intent("lost", 1_234)).await;
            w.write(row("done")).await;
            w.write(row("other")).await;
            drop(w);
            tokio::task::spawn_blocking(move || drain.wait()).await.unwrap();
            assert_eq!(count(&store), 2, "rows are loaded; intents are not rows");
            assert_eq!(segments(&cfg.dir).unwrap().len(), 1, "fsync={fsync}: the segment holding `lost` is kept");

            let (w, drain, recovered) = LedgerWriter::start(store.clone(), cfg.clone()).unwrap();
            assert_eq!(recovered.rows, 2, "the kept segment's rows are loaded again (idempotent)");
            assert_eq!(recovered.intents, vec![intent("lost", 1_234)]);
            let r = recovered.intents[0].clone().interrupted();
            assert_eq!(
                (r.status, r.error_code.as_deref(), r.usage_source),
                (500, Some("interrupted"), UsageSource::Estimated)
            );
            assert_eq!(r.cost, Some(Money::from_nanos(1_234)));
            recovered.finish().unwrap();
            drop(w);
            tokio::task::spawn_blocking(move || drain.wait()).await.unwrap();
            assert!(segments(&cfg.dir).unwrap().is_empty(), "fsync={fsync}");
            assert_eq!(count(&store), 2);
        }
    }

    /// The spool lets a loaded segment go only when its intents are
    /// resolved, even when the resolving row lands in a later segment.
    #[test]
    fn replay_resolves_an_intent_by_its_row_in_a_later_segment() {
        let dir = tempfile::tempdir().unwrap();
        let store = sink();
        let line = |i: &Intent| serde_json::to_string(&IntentLine { intent: i }).unwrap() + "\n";
        let a = line(&intent("a", 5)) + &line(&intent("b", 7));
        std::fs::write(segment_path(dir.path(), 1), a).unwrap();
        let b = serde_json::to_string(&row("a")).unwrap() + "\n" + &line(&intent("c", 9)) + "{\"intent\":{\"requ";
        std::fs::write(segment_path(dir.path(), 2), b).unwrap();
        let r = replay(dir.path(), store.as_ref()).unwrap();
        assert_eq!(r.rows, 1);
        let ids: Vec<&str> = r.intents.iter().map(|i| i.request_id.as_str()).collect();
        assert_eq!(ids, ["b", "c"], "a torn intent line was never acknowledged, so never sent");
        assert_eq!(segments(dir.path()).unwrap().len(), 2, "both segments hold an open intent");
        r.finish().unwrap();
        assert!(segments(dir.path()).unwrap().is_empty());
    }
}
