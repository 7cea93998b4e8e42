//! Log lines on their way to the store, in batches: whatever lines arrive while one batch is
//! being committed go together in the next (one transaction for many invocations' lines), and a
//! writer that waits is answered once its lines are stored, so an invocation's lines can be read
//! as soon as its response is out. Lines the store could not take (a shared database restarting)
//! are kept and tried again with the next batch, up to [`MAX_UNSTORED_LINES`]; their writers
//! are answered at once, so that nothing waits for the store to come back.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::sync::oneshot;

use crate::store::LogEntry;
use crate::store::LogLines;
use crate::store::Store;

/// Most writes committed in one batch.
const MAX_BATCH: usize = 256;

/// Most lines kept while the store cannot take them; the oldest are dropped past it.
pub(crate) const MAX_UNSTORED_LINES: usize = 100_000;

/// How long lines the store refused wait before they are tried again (if no new ones come).
const RETRY_AFTER: std::time::Duration = std::time::Duration::from_millis(500);

/// One write: a function's lines, and who to tell once they are stored.
struct Write {
    lines: LogLines,
    stored: Option<oneshot::Sender<()>>,
}

/// Stores `lines`; those to try again later (the store could not take them for now). A batch
/// the store refuses for good is stored function by function, so that only the lines it
/// refuses are lost.
async fn store_or_keep(store: &dyn Store, lines: Vec<LogLines>) -> Vec<LogLines> {
    let err = match store.append_logs(lines.clone()).await {
        Ok(()) => return Vec::new(),
        Err(err) if crate::store::is_transient(&err) => return lines,
        Err(err) if lines.len() == 1 => {
            eprintln!("functions-host: storing log lines: {err:#}");
            return Vec::new();
        }
        Err(err) => err,
    };
    eprintln!("functions-host: storing log lines: {err:#}; storing them function by function");
    let mut kept = Vec::new();
    for one in lines {
        match store.append_logs(vec![one.clone()]).await {
            Ok(()) => {}
            Err(err) if crate::store::is_transient(&err) => kept.push(one),
            Err(err) => eprintln!(
                "functions-host: storing log lines of {}: {err:#}; they are dropped",
                one.name
            ),
        }
    }
    kept
}

/// Adds `new` to `lines`, with the lines of its function and owner if there are some.
fn merge(lines: &mut Vec<LogLines>, new: LogLines) {
    let same = |lines: &&mut LogLines| lines.name == new.name && lines.owner == new.owner;
    match lines.iter_mut().find(same) {
        Some(lines) => lines.entries.extend(new.entries),
        None => lines.push(new),
    }
}

/// `lines` without their oldest past [`MAX_UNSTORED_LINES`] (per function, oldest first).
fn keep_newest(mut lines: Vec<LogLines>) -> Vec<LogLines> {
    let mut excess = lines
        .iter()
        .map(|lines| lines.entries.len())
        .sum::<usize>()
        .saturating_sub(MAX_UNSTORED_LINES);
    if excess > 0 {
        eprintln!("functions-host: the store is unreachable: dropping {excess} log lines");
    }
    for lines in &mut lines {
        let drop = excess.min(lines.entries.len());
        lines.entries.drain(..drop);
        excess -= drop;
    }
    lines.retain(|lines| !lines.entries.is_empty());
    lines
}

/// The handle of the task that stores log lines.
#[derive(Clone)]
pub(crate) struct LogWriter {
    writes: mpsc::UnboundedSender<Write>,
}

impl LogWriter {
    /// Starts the task that writes to `store` (on the current tokio runtime).
    pub fn spawn(store: Arc<dyn Store>) -> Self {
        let (writes, mut queue) = mpsc::unbounded_channel::<Write>();
        tokio::spawn(async move {
            let mut batch = Vec::new();
            // Lines the store refused, oldest first, kept to be tried again.
            let mut unstored: Vec<LogLines> = Vec::new();
            loop {
                let received = if unstored.is_empty() {
                    queue.recv_many(&mut batch, MAX_BATCH).await
                } else {
                    tokio::select! {
                        received = queue.recv_many(&mut batch, MAX_BATCH) => received,
                        () = tokio::time::sleep(RETRY_AFTER) => usize::MAX,
                    }
                };
                if received == 0 {
                    return;
                }
                let mut lines = std::mem::take(&mut unstored);
                let mut waiting = Vec::new();
                for Write { lines: new, stored } in batch.drain(..) {
                    merge(&mut lines, new);
                    waiting.extend(stored);
                }
                if !lines.is_empty() {
                    unstored = keep_newest(store_or_keep(store.as_ref(), lines).await);
                }
                for stored in waiting {
                    let _ = stored.send(());
                }
            }
        });
        Self { writes }
    }

    /// Stores `entries` in `name`'s logs (while it is still `owner`'s: [`LogLines`]) and
    /// returns once they are (or could not be).
    pub async fn write(&self, name: &str, owner: Option<&str>, entries: Vec<LogEntry>) {
        if !entries.is_empty() {
            self.send(name, owner, entries).await;
        }
    }

    /// Queues `entries` of function `name` for the store, without waiting for them to be stored
    /// (callable from any thread).
    pub fn submit(&self, name: &str, owner: Option<&str>, entries: Vec<LogEntry>) {
        if !entries.is_empty() {
            let _ = self.writes.send(Write {
                lines: LogLines {
                    name: name.to_owned(),
                    owner: owner.map(str::to_owned),
                    entries,
                },
                stored: None,
            });
        }
    }

    /// Returns once every line written before is stored.
    pub async fn flush(&self) {
        self.send("", None, Vec::new()).await;
    }

    /// Queues a write and waits for its batch to be committed.
    async fn send(&self, name: &str, owner: Option<&str>, entries: Vec<LogEntry>) {
        self.queue(name, owner, entries).await;
    }

    /// Queues a write now (in order with every write queued before it, from any task) and
    /// returns what resolves once its batch is committed.
    pub fn queue(
        &self,
        name: &str,
        owner: Option<&str>,
        entries: Vec<LogEntry>,
    ) -> impl Future<Output = ()> + use<> {
        let (stored, done) = oneshot::channel();
        let write = Write {
            lines: LogLines {
                name: name.to_owned(),
                owner: owner.map(str::to_owned),
                entries,
            },
            stored: Some(stored),
        };
        let queued = self.writes.send(write).is_ok();
        async move {
            if queued {
                let _ = done.await;
            }
        }
    }
}
