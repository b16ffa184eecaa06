//! Stdout behind a thread of its own, written in batches.
//!
//! A logging thread appends its formatted line to a shared buffer under a mutex (a copy of a
//! few hundred bytes) and goes on; it never waits on a `write` to stdout. The writer thread
//! sleeps until the buffer has something, lets [`LINGER`] pass so that the lines of that moment
//! gather, and writes them in one system call. Under load that is a few hundred writes and
//! wake-ups a second instead of one per line: a channel with a thread woken per line
//! (tracing-appender's `non_blocking`) cost the api more CPU in context switches and spinning
//! than the writes it saved.
//!
//! Lines are never dropped: past [`MAX_PENDING`] bytes a logging thread waits for the writer.
//! Once the guard is dropped (the end of `main`), what is pending is written and later lines
//! go to stdout directly. A process killed outright loses at most the last [`LINGER`] of lines.

use std::io::{self, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

/// How long the writer lets lines gather after the first one of a batch.
pub(crate) const LINGER: Duration = Duration::from_millis(1);

/// Bytes waiting for the writer before logging threads wait too (a few seconds of request
/// lines at full load, so only a stalled stdout reaches it).
pub(crate) const MAX_PENDING: usize = 4 * 1024 * 1024;

#[derive(Debug, Default)]
struct Pending {
    lines: Vec<u8>,
    /// The writer thread is asleep waiting for lines.
    writer_idle: bool,
    /// The guard is gone: the writer writes what is left and stops; later lines go straight
    /// to the sink.
    closed: bool,
}

#[derive(Debug, Default)]
struct Shared {
    pending: Mutex<Pending>,
    /// Wakes the writer when lines arrive (or at close).
    lines_arrived: Condvar,
    /// Wakes logging threads waiting for room.
    room: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        // A panic while holding the lock leaves a valid (if partial) buffer: keep logging.
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The `MakeWriter` handed to the log formatter.
#[derive(Debug, Clone)]
pub(crate) struct BatchedWriter<W> {
    shared: Arc<Shared>,
    sink: Arc<Mutex<W>>,
}

/// Stops the writer thread when dropped, after it has written every pending line.
#[derive(Debug)]
pub(crate) struct WriterGuard {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// A batched writer in front of `sink`, and the guard that flushes and stops it.
pub(crate) fn batched<W>(sink: W, thread_name: &str) -> io::Result<(BatchedWriter<W>, WriterGuard)>
where
    W: Write + Send + 'static,
{
    let shared = Arc::new(Shared::default());
    let sink = Arc::new(Mutex::new(sink));
    let thread = std::thread::Builder::new()
        .name(thread_name.to_owned())
        .spawn({
            let shared = shared.clone();
            let sink = sink.clone();
            move || write_batches(&shared, &sink)
        })?;
    Ok((
        BatchedWriter {
            shared: shared.clone(),
            sink,
        },
        WriterGuard {
            shared,
            thread: Some(thread),
        },
    ))
}

/// The writer thread: waits for lines, lingers, writes the batch; until closed and empty.
fn write_batches<W: Write>(shared: &Shared, sink: &Mutex<W>) {
    let mut batch = Vec::new();
    loop {
        let mut pending = shared.lock();
        while pending.lines.is_empty() && !pending.closed {
            pending.writer_idle = true;
            pending = shared
                .lines_arrived
                .wait(pending)
                .unwrap_or_else(PoisonError::into_inner);
        }
        pending.writer_idle = false;
        if !pending.closed {
            drop(pending);
            std::thread::sleep(LINGER);
            pending = shared.lock();
        }
        std::mem::swap(&mut batch, &mut pending.lines);
        let last = pending.closed;
        drop(pending);
        shared.room.notify_all();
        write_to(sink, &batch);
        // Keep the capacity for the next batch, but not a burst's worth forever.
        batch.clear();
        batch.shrink_to(64 * 1024);
        if last {
            return;
        }
    }
}

/// Writes `bytes` to the sink and flushes; a sink that fails (stdout closed) cannot be logged
/// to, so the lines are dropped rather than retried forever.
fn write_to<W: Write>(sink: &Mutex<W>, bytes: &[u8]) {
    if bytes.is_empty() {
        return;
    }
    let mut sink = sink.lock().unwrap_or_else(PoisonError::into_inner);
    let _ = sink.write_all(bytes).and_then(|()| sink.flush());
}

impl<W: Write> Write for &BatchedWriter<W> {
    fn write(&mut self, line: &[u8]) -> io::Result<usize> {
        let mut pending = self.shared.lock();
        while pending.lines.len() >= MAX_PENDING && !pending.closed {
            pending = self
                .shared
                .room
                .wait(pending)
                .unwrap_or_else(PoisonError::into_inner);
        }
        if pending.closed {
            drop(pending);
            write_to(&self.sink, line);
            return Ok(line.len());
        }
        pending.lines.extend_from_slice(line);
        let wake = pending.writer_idle;
        pending.writer_idle = false;
        drop(pending);
        if wake {
            self.shared.lines_arrived.notify_one();
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        // The writer flushes after every batch; waiting for it here would undo the batching.
        Ok(())
    }
}

impl<'a, W: Write + 'a> MakeWriter<'a> for BatchedWriter<W> {
    type Writer = &'a BatchedWriter<W>;

    fn make_writer(&'a self) -> Self::Writer {
        self
    }
}

impl Drop for WriterGuard {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.lines_arrived.notify_one();
        self.shared.room.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sink that records each write call; while its gate is shut, writes wait.
    #[derive(Debug, Clone, Default)]
    struct Calls {
        calls: Arc<Mutex<Vec<Vec<u8>>>>,
        gate: Arc<(Mutex<bool>, Condvar)>,
    }

    impl Write for Calls {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            let (shut, opened) = &*self.gate;
            let mut shut = shut.lock().expect("gate");
            while *shut {
                shut = opened.wait(shut).expect("gate");
            }
            self.calls.lock().expect("calls").push(bytes.to_vec());
            Ok(bytes.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Calls {
        fn text(&self) -> String {
            String::from_utf8(self.calls.lock().expect("calls").concat()).expect("utf-8")
        }

        fn set_shut(&self, shut: bool) {
            *self.gate.0.lock().expect("gate") = shut;
            self.gate.1.notify_all();
        }
    }

    #[test]
    fn lines_logged_while_a_write_is_under_way_share_the_next_one() {
        let calls = Calls::default();
        calls.set_shut(true);
        let (writer, guard) = batched(calls.clone(), "test-log-writer").expect("thread");
        let mut expected = String::new();
        for n in 0..10_000 {
            let line = format!("line {n}\n");
            (&writer).write_all(line.as_bytes()).expect("write");
            expected.push_str(&line);
        }
        calls.set_shut(false);
        drop(guard);
        assert_eq!(
            calls.text(),
            expected,
            "every line, in order, flushed by the guard"
        );
        // At most one batch was taken before the sink let writes through; the rest is one.
        assert!(calls.calls.lock().expect("calls").len() <= 2);
    }

    #[test]
    fn lines_after_the_guard_is_gone_are_written_directly() {
        let calls = Calls::default();
        let (writer, guard) = batched(calls.clone(), "test-log-writer").expect("thread");
        drop(guard);
        (&writer).write_all(b"late\n").expect("write");
        assert_eq!(calls.text(), "late\n");
    }

    #[test]
    fn a_line_reaches_the_sink_without_a_flush() {
        let calls = Calls::default();
        let (writer, _guard) = batched(calls.clone(), "test-log-writer").expect("thread");
        (&writer).write_all(b"alone\n").expect("write");
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while calls.text().is_empty() {
            assert!(
                std::time::Instant::now() < deadline,
                "the line was never written"
            );
            std::thread::yield_now();
        }
        assert_eq!(calls.text(), "alone\n");
    }
}
